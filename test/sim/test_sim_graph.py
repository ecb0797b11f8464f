"""Simulator and segmentation node as separate processes in a real (private) ROS 2 graph.

The model is ``rule_onnx`` (a colour rule, no training), and the scene's shaft/jaw colours
satisfy that rule, so the Dice and tip-error floors below measure the whole loop: publisher,
DDS, the node's conversions, pipeline and poses, messages back, and the scoring.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import rclpy_available
from demo_run import run_rule_demo

pytestmark = pytest.mark.skipif(not rclpy_available(), reason="rclpy not installed")

START_S = 1000  # simulated epoch: far from wall time, so a wall-clock stamp cannot pass


def test_demo_closed_loop_reaches_floor(tmp_path: Path, rule_onnx: Path, ros_env: dict[str, str]) -> None:
    out = tmp_path / "demo"
    proc, summary = run_rule_demo(tmp_path, rule_onnx, ros_env)
    # the node's own counters (from /diagnostics) say where frames went if masks are missing
    assert summary["node"]["frames_received"] > 0, proc.stdout
    assert summary["masks_received"] >= 5, proc.stdout + (tmp_path / "node.log").read_text()
    assert summary["frames_scored"] >= 5
    assert summary["instrument_dice"] >= 0.7
    assert summary["tip_error_px"]["matched"] >= summary["frames_scored"]  # >= one tool per frame
    assert summary["tip_error_px"]["median"] <= 6.0
    assert (out / "demo_strip.png").stat().st_size > 0


def test_demo_without_a_node_output_fails(tmp_path: Path, ros_env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cct_surgical_seg.sim.demo", "--model", str(tmp_path / "missing.onnx")],
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "not found" in proc.stderr


def test_node_runs_in_sim_time(tmp_path: Path, rule_onnx: Path, ros_env: dict[str, str]) -> None:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    env = dict(
        ros_env,
        PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]), ros_env.get("PYTHONPATH", "")]),
    )
    node = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cct_surgical_seg.ros.segmentation_node",
            "--ros-args",
            "-r",
            "image:=/camera/image_raw",
            "-p",
            "use_sim_time:=true",
            "-p",
            f"model_path:={rule_onnx}",
            "-p",
            "backend:=onnxruntime",
            "-p",
            "qos_reliability:=reliable",
            "-p",
            "diagnostics_period:=0.5",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sim = None
    rclpy.init()
    listener = rclpy.create_node("sim_time_check")
    inputs: list[int] = []
    masks: list[int] = []
    diag: list[int] = []
    ns = lambda m: m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec  # noqa: E731
    reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    listener.create_subscription(Image, "/camera/image_raw", lambda m: inputs.append(ns(m)), reliable)
    listener.create_subscription(Image, "/segmentation_node/mask", lambda m: masks.append(ns(m)), reliable)

    def on_diag(msg) -> None:
        if any("segmentation" in s.name for s in msg.status):
            diag.append(ns(msg))

    listener.create_subscription(DiagnosticArray, "/diagnostics", on_diag, reliable)
    try:
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cct_surgical_seg.sim.publisher",
                "--clock",
                "--start-time",
                str(START_S),
                "--frames",
                "40",
                "--rate",
                "10",
                "--fps",
                "10",
                "--width",
                "160",
                "--height",
                "128",
                "--palette",
                "rule",
                "--wait-for-subscribers",
                "90",
                "--min-subscribers",
                "2",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and (sim.poll() is None or len(masks) < 3):
            rclpy.spin_once(listener, timeout_sec=0.1)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            rclpy.spin_once(listener, timeout_sec=0.05)
    finally:
        for proc in (sim, node):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        listener.destroy_node()
        rclpy.try_shutdown()
    assert inputs and masks, f"heard {len(inputs)} images and {len(masks)} masks"
    assert set(masks) <= set(inputs), "every mask carries the stamp of its input frame"
    assert all(START_S * 10**9 <= s < (START_S + 10) * 10**9 for s in inputs)
    node_diag = [s for s in diag if s > 0]
    assert node_diag, "the node published diagnostics"
    assert all(s < (START_S + 60) * 10**9 for s in node_diag), "diagnostics are stamped in sim time"
    assert any(s >= START_S * 10**9 for s in node_diag)
