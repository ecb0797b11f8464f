"""Run ``cct-demo`` small and fast for the graph tests: the colour-rule model on the rule
palette, 3 s at 8 Hz, 320x256, on the test's private ROS domain."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_rule_demo(
    tmp_path: Path, rule_onnx: Path, ros_env: dict[str, str], *extra: str
) -> tuple[subprocess.CompletedProcess, dict[str, Any]]:
    """``cct-demo [extra]``: exit 0 is asserted; returns the process and demo_summary.json."""
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "cct_surgical_seg.sim.demo", *extra, "--model", str(rule_onnx)]
    cmd += ["--backend", "onnxruntime", "--duration", "3", "--rate", "8", "--width", "320", "--height", "256"]
    cmd += ["--palette", "rule", "--out", str(out), "--domain-id", ros_env["ROS_DOMAIN_ID"]]
    cmd += ["--node-log", str(tmp_path / "node.log")]
    proc = subprocess.run(cmd, env=ros_env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr + (tmp_path / "node.log").read_text()
    return proc, json.loads((out / "demo_summary.json").read_text())
