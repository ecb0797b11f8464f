"""segmentation_node as an integrator runs it: relative input topics resolved in its namespace,
the resolved names in its log, and a clean exit (code 0, no traceback) on SIGINT, SIGTERM and
the lifecycle ``shutdown`` transition.

Each test starts its own node process (the lib/ wrapper ``ros2 run`` uses, without ``ros2 run``
in between, so the signal reaches the node itself).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python) is not importable")

from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from ros_graph_utils import Probe, wait_for

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def _node_executable() -> list[str]:
    wrapper = (
        Path(os.environ.get("VIRTUAL_ENV", "/nonexistent")) / "lib" / "cct_surgical_seg" / "segmentation_node"
    )
    if wrapper.exists():
        return [str(wrapper)]
    return [sys.executable, "-m", "cct_surgical_seg.ros.segmentation_node"]


@pytest.fixture
def probe():
    p = Probe("cct_exit_probe")
    yield p
    p.close()


def _start(namespace: str, rule_onnx: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    cmd = [*_node_executable(), "--ros-args", "-r", f"__ns:={namespace}", "-p", f"model_path:={rule_onnx}",
           "-p", "backend:=onnxruntime", "-p", "inference_threads:=1"]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _state(probe: Probe, node: str) -> str:
    try:
        return probe.call(GetState, f"{node}/get_state", GetState.Request(), timeout=5).current_state.label
    except TimeoutError:
        return ""


def _wait_active(probe: Probe, proc: subprocess.Popen, node: str, log: Path) -> None:
    wait_for(lambda: proc.poll() is not None or _state(probe, node) == "active", 90, f"{node} active")
    assert proc.poll() is None, log.read_text()


def _exit_code(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"process {proc.pid} still running {timeout:.0f} s later") from None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_node_subscribes_relative_topics_and_exits_0_on_a_signal(
    sig: int, probe: Probe, rule_onnx: Path, ros_env: dict[str, str], tmp_path: Path
) -> None:
    namespace = f"/cct_exit_{sig}"
    log = tmp_path / "node.log"
    proc = _start(namespace, rule_onnx, ros_env, log)
    try:
        _wait_active(probe, proc, f"{namespace}/segmentation_node", log)
        # relative 'image' / 'camera_info' resolve in the node's namespace: two namespaced
        # nodes see two cameras, and the log names the topics actually subscribed
        wait_for(
            lambda: (
                probe.node.count_subscribers(f"{namespace}/image") == 1
                and probe.node.count_subscribers(f"{namespace}/camera_info") == 1
            ),
            30,
            "subscriptions in the node's namespace",
        )
        assert probe.node.count_subscribers("/camera/image_raw") == 0
        wait_for(lambda: f"'{namespace}/image'" in log.read_text(), 10, "the resolved topic in the log")
        proc.send_signal(sig)
        code = _exit_code(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text, text


def test_lifecycle_shutdown_ends_the_process(
    probe: Probe, rule_onnx: Path, ros_env: dict[str, str], tmp_path: Path
) -> None:
    namespace = "/cct_exit_lifecycle"
    node = f"{namespace}/segmentation_node"
    log = tmp_path / "node.log"
    proc = _start(namespace, rule_onnx, ros_env, log)
    try:
        _wait_active(probe, proc, node, log)
        request = ChangeState.Request(transition=Transition(id=Transition.TRANSITION_ACTIVE_SHUTDOWN))
        assert probe.call(ChangeState, f"{node}/change_state", request).success
        code = _exit_code(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert code == 0, text
    assert "Traceback" not in text, text
