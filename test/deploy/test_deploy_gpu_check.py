"""bench/gpu_check.py end to end: on fake TensorRT (every step runs) and with no TensorRT at all.

The script is meant for a machine with a GPU, which CI lacks; run here on the fakes of
``fakes/`` it executes every TensorRT step (models, engine cache, accuracy, profile refusals,
latency, summary), so its first run on a GPU is not its first run. Small sizes keep it short.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from fakes import fake_cuda, fake_tensorrt

from cct_surgical_seg.deploy.backends import tensorrt_backend

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--frames", "2", "--calibration-frames", "5", "--repeats", "2", "--camera-size", "64", "96"]


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_every_step_runs_on_fake_tensorrt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt.make_tensorrt("11.4.0.1"))
    monkeypatch.setattr(tensorrt_backend, "open_cuda_device", fake_cuda.FakeCudaDevice)
    fake_cuda.reset()
    out = tmp_path / "summary.json"
    assert load_gpu_check().main(["--out", str(out), *SMALL]) == 0
    summary = json.loads(out.read_text())
    assert summary == json.loads(capsys.readouterr().out)
    assert summary["errors"] == []
    assert all("onnxruntime-cuda" in s or "CUDAExecutionProvider" in s for s in summary["skipped"])
    assert summary["versions"]["tensorrt"] == "11.4.0.1"
    assert summary["engine_cache"]["reused"] is True and summary["engine_cache"]["restart"] == "cache"
    rows = {row["precision"]: row for row in summary["accuracy"] if row["kind"] == "tensorrt"}
    assert sorted(rows) == ["fp16", "fp32", "int8"]
    for row in rows.values():  # the fake engine runs the same file on ONNX Runtime: identical
        assert row["vs_onnxruntime_cpu_same_model"]["max_prob_diff"] < 1e-5
    assert rows["fp32"]["vs_onnxruntime_cpu_fp32"]["mask_agreement"] == 1.0
    assert rows["fp16"]["vs_onnxruntime_cpu_fp32"]["mask_agreement"] >= 0.99
    refusals = summary["profile_refusals"]
    assert refusals["batch_above_max"].startswith("refused: tensorrt: batch of 2")
    assert refusals["frame_above_profile"].startswith("refused: tensorrt: input 96x96 is outside")
    latency = {(row["kind"], row["precision"]) for row in summary["latency"]}
    assert latency == {
        ("tensorrt", "fp32"),
        ("tensorrt", "fp16"),
        ("tensorrt", "int8"),
        ("onnxruntime", "fp32"),
    }
    assert all(
        row["network_size"] == [64, 96] and row["end_to_end"]["median_ms"] > 0 for row in summary["latency"]
    )
    assert summary["goals"] == {
        "tensorrt_fp16_mask_agreement_ge_0.999": rows["fp16"]["vs_onnxruntime_cpu_fp32"]["mask_agreement"]
        >= 0.999,
        "engine_reused_across_restarts": True,
        "tensorrt_fp16_network_le_2ms_at_512x640": None,  # measured at 64x96 here
    }


@pytest.mark.slow
def test_without_tensorrt_or_a_gpu_it_skips_with_reasons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    out = tmp_path / "summary.json"
    assert load_gpu_check().main(["--out", str(out), *SMALL]) == 0
    summary = json.loads(out.read_text())
    assert summary["errors"] == [] and summary["accuracy"] == [] and summary["engine_cache"] is None
    assert any(s.startswith("engine cache: TensorRT is not installed") for s in summary["skipped"])
    assert [row["kind"] for row in summary["latency"]] == ["onnxruntime"]
    assert set(summary["goals"].values()) == {None}


def test_steps_past_the_budget_are_skipped_and_failures_recorded() -> None:
    gpu_check = load_gpu_check()
    run = gpu_check.Run(budget_s=10.0)
    assert run.step("quick", lambda: 42) == 42
    assert run.step("long", lambda: 1, need_s=60.0) is None
    assert run.step("broken", lambda: 1 / 0) is None
    assert len(run.summary["skipped"]) == 1 and run.summary["skipped"][0].startswith("long: out of time (")
    assert run.summary["errors"] == ["broken: ZeroDivisionError: division by zero"]
