"""Shared test fixtures: a private ROS 2 environment and small models made on the fly.

Nothing here needs a GPU, a dataset or a network connection.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _private_domain_id() -> int:
    """A ROS domain id of our own (1..101) so parallel runs on one machine never see each other."""
    if "CCT_TEST_ROS_DOMAIN_ID" in os.environ:
        return int(os.environ["CCT_TEST_ROS_DOMAIN_ID"])
    return random.Random(os.getpid()).randint(1, 101)


# Set before any test imports rclpy, so in-process nodes and child processes share one graph.
os.environ["ROS_DOMAIN_ID"] = str(_private_domain_id())
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="cct-test-roslog-"))
os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(REPO_ROOT / "config" / "fastdds_shm.xml"))
if os.environ.get("VIRTUAL_ENV") and "AMENT_PREFIX_PATH" not in os.environ:
    os.environ["AMENT_PREFIX_PATH"] = os.environ["VIRTUAL_ENV"]


@pytest.fixture(scope="session")
def ros_env() -> dict[str, str]:
    """Environment for child processes that join the test's private ROS graph."""
    return dict(os.environ)


def rclpy_available() -> bool:
    try:
        import rclpy  # noqa: F401
    except ImportError:
        return False
    return True


# --- model fixtures (owned by deploy: tiny_checkpoint, tiny_onnx, rule_onnx) ---
