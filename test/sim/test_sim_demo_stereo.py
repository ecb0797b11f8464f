"""``cct-demo --stereo``: the stereo demo graph (``demo.launch.py stereo:=true``) in a real
(private) ROS 2 graph, and the 3D scoring it reports.

The graph test runs the simulator's rectified pair through the node in stereo mode with the
colour-rule model (``rule_onnx``, no training) and checks that the summary holds the 3D figures
(tips matched in metres, finite errors in mm, stereo latency), the node's pair counters and the
left view's 2D figures. No accuracy or timing floors: those are measured, not tested here.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import rclpy_available
from demo_run import run_rule_demo

pytestmark = pytest.mark.skipif(not rclpy_available(), reason="rclpy not installed")


def test_stereo_summary_scores_3d_tips_in_mm() -> None:
    from cct_surgical_seg.sim.demo import Collected, stereo_summary

    data = Collected()
    data.gt_tips_3d = {1: [(0.0, 0.0, 0.1), (0.05, 0.0, 0.1)], 2: [(0.0, 0.01, 0.08)], 3: [(0.0, 0.0, 0.1)]}
    # stamp 1: one tip 3 mm off, the second tool missed; stamp 2: 4 mm off plus a tip 25 mm away
    # (beyond the 20 mm gate: extra, not matched); stamp 3: no poses heard, so not scored
    data.poses_3d = {1: [(0.003, 0.0, 0.1)], 2: [(0.0, 0.014, 0.08), (0.025, 0.01, 0.08)], 9: []}
    data.pose_latency_ms = {1: 10.0, 2: 30.0, 9: 20.0}
    s = stereo_summary(data)
    assert (s["truth_heard"], s["poses_received"], s["pairs_scored"]) == (3, 3, 2)
    err = s["tip_error_3d_mm"]
    assert (err["matched"], err["missed"], err["extra"]) == (2, 1, 1)
    assert err["median"] == pytest.approx(3.5) and err["mean"] == pytest.approx(3.5)
    assert s["latency_ms"]["p50"] == pytest.approx(20.0) and s["latency_ms"]["max"] == pytest.approx(30.0)
    assert s["node"]["stereo_pairs"] is None  # no /diagnostics heard


def test_demo_stereo_reports_3d_tip_error(tmp_path: Path, rule_onnx: Path, ros_env: dict[str, str]) -> None:
    proc, summary = run_rule_demo(tmp_path, rule_onnx, ros_env, "--stereo")
    assert "3D tip error median / p95 (mm)" in proc.stdout
    stereo = summary["stereo"]
    # the node received pairs (its own counters) and published poses for them
    assert stereo["node"]["stereo_pairs"] > 0 and stereo["node"]["stereo_pairs_processed"] > 0
    assert stereo["poses_received"] > 0 and stereo["pairs_scored"] > 0
    err = stereo["tip_error_3d_mm"]
    assert err["matched"] > 0
    assert all(math.isfinite(err[k]) for k in ("mean", "median", "p95"))
    assert all(math.isfinite(stereo["latency_ms"][k]) for k in ("mean", "p50", "p95"))
    # the left view's 2D figures, from the /stereo/ topics
    assert summary["frames_scored"] > 0 and summary["tip_error_px"]["matched"] > 0
    assert math.isfinite(summary["instrument_dice"])
