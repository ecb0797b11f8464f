"""``backend:=tensorrt`` on a machine without TensorRT: configure fails with the one-line reason
in the log and on /diagnostics, and the node stays up (unconfigured, answering services).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python) is not importable")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.srv import GetState
from ros_graph_utils import Probe, node_command, start_process, stop_process, wait_for

from cct_surgical_seg.resources import demo_model

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NODE = "/cct_no_trt/segmentation_node"
REASON = "configure failed: BackendUnavailableError: TensorRT is not installed"


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_tensorrt_without_tensorrt_fails_configure_and_the_node_stays_up(
    ros_env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "node.log"
    args = ["-r", "__ns:=/cct_no_trt", "-p", f"model_path:={demo_model()}", "-p", "backend:=tensorrt",
            "-p", "diagnostics_period:=0.2"]  # fmt: skip
    proc = start_process(node_command(args), ros_env, log)
    probe = Probe("cct_no_trt_probe")
    try:
        probe.collect("diag", DiagnosticArray, "/diagnostics", 50)

        def error_status():
            for msg in probe.messages("diag"):
                for status in msg.status:
                    if NODE in status.name and status.level == DiagnosticStatus.ERROR:
                        return status
            return None

        status = wait_for(lambda: error_status() or proc.poll() is not None, 60, "an ERROR on /diagnostics")
        assert proc.poll() is None, log.read_text()
        assert status.message.startswith(REASON) and "\n" not in status.message, status.message
        state = probe.call(GetState, f"{NODE}/get_state", GetState.Request(), timeout=10).current_state
        assert state.label == "unconfigured"
        errors = [line for line in log.read_text().splitlines() if "configure failed" in line]
        assert len(errors) == 1 and REASON in errors[0] and "Traceback" not in log.read_text()
    finally:
        probe.close()
        stop_process(proc)
    assert proc.returncode == 0, log.read_text()
