"""Static agreement of launch/segmentation.launch.py (with the shared arguments and Node of
cct_surgical_seg/ros/launch_arguments.py), setup.py, config/segmentation.yaml and the parameter
table. Plain text/AST parsing, so it runs everywhere (no ROS needed)."""

from __future__ import annotations

import ast
import contextlib
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = ROOT / "launch" / "segmentation.launch.py"
LAUNCH_ARGUMENTS = ROOT / "cct_surgical_seg" / "ros" / "launch_arguments.py"
CONFIG = ROOT / "config" / "segmentation.yaml"
DECLARED = re.compile(r'DeclareLaunchArgument\(\s*"(\w+)"')


def _constants(path: Path) -> dict[str, object]:
    tree = ast.parse(path.read_text())
    out: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError):  # not a literal: not a constant we compare
                out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


def _launch_constants() -> dict[str, object]:
    """The launch file's constants over the shared ones of launch_arguments.py."""
    return {**_constants(LAUNCH_ARGUMENTS), **_constants(LAUNCH)}


def _declared_launch_arguments() -> set[str]:
    """The launch file's own arguments and, when it calls node_launch_description(), the shared
    ones of node_arguments()."""
    text = LAUNCH.read_text()
    shared = DECLARED.findall(LAUNCH_ARGUMENTS.read_text()) if "node_launch_description(" in text else []
    return {*DECLARED.findall(text), *shared}


def _spec_names() -> list[str]:
    source = (ROOT / "cct_surgical_seg" / "ros" / "parameters.py").read_text()
    return re.findall(r'ParamSpec\(\s*"(\w+)"', source)


def test_launch_executable_and_node_name_match_setup_py() -> None:
    launch = _launch_constants()
    setup = _constants(ROOT / "setup.py")
    assert launch["PACKAGE"] == setup["PACKAGE"] == "cct_surgical_seg"
    entry = setup["ENTRY_POINTS"][launch["EXECUTABLE"]]
    assert entry == "cct_surgical_seg.ros.segmentation_node:main"
    wrapper = ROOT / "bin" / launch["EXECUTABLE"]
    assert wrapper.is_file() and "segmentation_node import main" in wrapper.read_text()
    node_name = _constants(ROOT / "cct_surgical_seg" / "ros" / "segmentation_node.py")["NODE_NAME"]
    assert launch["NODE_NAME"] == node_name


def test_launch_arguments_cover_the_contract_and_map_to_real_parameters() -> None:
    args = _declared_launch_arguments()
    assert {
        "params_file",
        "model",
        "backend",
        "transport",
        "image_topic",
        "camera_info_topic",
        "namespace",
        "use_sim_time",
        "autostart",
        "log_level",
        "respawn",
        "respawn_delay",
    } <= args
    launch = _launch_constants()
    assert set(launch["OVERRIDES"]) <= args
    assert set(launch["OVERRIDES"].values()) <= set(_spec_names())
    assert set(launch["REMAPS"]) <= args
    node_source = (ROOT / "cct_surgical_seg" / "ros" / "segmentation_node.py").read_text()
    for topic in launch["REMAPS"].values():  # the node's relative input names, remapped by launch
        assert f'= "{topic}"' in node_source, topic


def test_yaml_targets_the_node_and_sets_exactly_the_declared_parameters() -> None:
    doc = yaml.safe_load(CONFIG.read_text())
    assert list(doc) == ["/**/" + _launch_constants()["NODE_NAME"]]
    params = doc["/**/segmentation_node"]["ros__parameters"]
    assert sorted(params) == sorted(_spec_names())


def test_yaml_values_are_valid_for_their_descriptors() -> None:
    import pytest

    pytest.importorskip("rcl_interfaces", reason="rcl_interfaces (ROS 2) not importable")
    from cct_surgical_seg.ros import parameters

    params = yaml.safe_load(CONFIG.read_text())["/**/segmentation_node"]["ros__parameters"]
    for name, value in params.items():
        spec = parameters.SPEC_BY_NAME[name]
        assert type(value) is type(spec.default), name
        if spec.choices:
            assert value in spec.choices, name
        if spec.low is not None:
            assert spec.low <= value <= spec.high, name


def test_setup_installs_launch_and_config() -> None:
    text = (ROOT / "setup.py").read_text()
    assert 'glob("launch/*.py")' in text and 'glob("config/*.yaml")' in text
    assert 'glob("config/*.xml")' in text  # the Fast DDS profile
    assert (ROOT / "config" / "fastdds_shm.xml").is_file()


def test_every_place_that_lists_backends_lists_deploy_backends_kinds() -> None:
    """The YAML comment and the launch files offer every backend ``create_backend`` takes; the
    launch files (the node's arguments in launch_arguments.py) and the CLIs take the list from
    ``deploy.backends.KINDS`` itself."""
    from cct_surgical_seg.deploy.backends import KINDS

    comment = re.search(r"^\s*backend: \w+\s+#(.*)$", CONFIG.read_text(), re.M)
    assert comment and [k.strip() for k in comment.group(1).split("|")] == list(KINDS)
    for path in [LAUNCH_ARGUMENTS, ROOT / "launch" / "demo.launch.py"]:  # the node's, the demo's
        assert "from cct_surgical_seg.deploy.backends import KINDS" in path.read_text(), path
    for module in ("offline/bag_cli.py", "sim/demo.py", "deploy/cli.py", "ros/parameters.py"):
        source = (ROOT / "cct_surgical_seg" / module).read_text()
        assert "KINDS" in source and "choices=KINDS" in source, module
