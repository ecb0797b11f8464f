"""Where the package's data files (demo model, configs) are: a checkout or the install's share dir.

In a source checkout they sit beside the package (``models/``, ``config/``); installed with pip or
colcon they are under ``share/cct_surgical_seg`` of the prefix, found through the ament index.
The checkout wins so that a developer's edited files are the ones used. No ROS import unless the
share directory is asked for, and then only ``ament_index_python`` (optional).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = "cct_surgical_seg"
DEMO_MODEL = ("models", "cct_demo.onnx")
FASTDDS_PROFILE = ("config", "fastdds_shm.xml")


def checkout_root() -> Path:
    """The folder holding the ``cct_surgical_seg`` package (the repository root in a checkout)."""
    return Path(__file__).resolve().parent.parent


def share_dir() -> Path | None:
    """``share/cct_surgical_seg`` of the installed package, or None (not installed, no ament index)."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(PACKAGE))
    except (PackageNotFoundError, ValueError, LookupError, KeyError):
        return None


def find_data_file(*parts: str) -> Path | None:
    """``parts`` under the checkout, else under the share directory; None if in neither."""
    for base in (checkout_root(), share_dir()):
        if base is not None and base.joinpath(*parts).is_file():
            return base.joinpath(*parts)
    return None


def demo_model() -> Path:
    """The shipped demo model; its checkout path when it is nowhere (so errors name a real place)."""
    return find_data_file(*DEMO_MODEL) or checkout_root().joinpath(*DEMO_MODEL)
