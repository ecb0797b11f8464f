"""Smoke test of the accuracy experiment runner (bench/accuracy.py) on tiny simulated data.

Real runs take ~30 min each on EndoVis frames; here two fractions x two methods train for a
few steps, so the test checks the plumbing: output files, the table's columns, skip and resume.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from cct_surgical_seg.sim.dataset import write_dataset

REPO = Path(__file__).resolve().parents[1]


def _load_runner():
    spec = importlib.util.spec_from_file_location("bench_accuracy", REPO / "bench" / "accuracy.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_runner_writes_table_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "tiny"
    write_dataset(data, frames=12, unlabelled=6, seed=0, width=96, height=80, sequences=3)
    runner = _load_runner()
    argv = ["--dataset", str(data), "--fractions", "0.5", "1.0", "--no-poisson", "--steps", "3",
            "--warmup", "1", "--batch", "2", "--crop", "64", "80", "--eval-size", "64", "96",
            "--val-every", "3", "--workers", "0", "--aux-vat", "1",
            "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")]
    assert runner.main(argv) == 0

    report = json.loads((tmp_path / "out" / "accuracy-tiny.json").read_text())
    assert [(r["method"], r["fraction"]) for r in report["runs"]] == [
        ("sup", 0.5), ("cct", 0.5), ("sup", 1.0), ("cct", 1.0)]
    for r in report["runs"]:
        assert 0.0 <= r["binary_dice"] <= 1.0 and r["steps"] == 3
        assert set(r["tip_error_px"]) >= {"median", "matched", "missed"}
        assert r["latency_ms"]["frames"] > 0
        assert r["checkpoint"] == "last.pt" and 0.0 <= r["selected_on_val"]["binary_dice"] <= 1.0
    table = (tmp_path / "out" / "accuracy-tiny.md").read_text().splitlines()
    header = next(line for line in table if line.startswith("| method"))
    columns = ("fraction", "Dice shaft", "Dice manip.", "IoU shaft", "binary Dice", "tip err.", "best-on-val",
               "ms per frame", "steps")
    assert all(column in header for column in columns)
    curves_at = next(i for i, line in enumerate(table) if line.startswith("Binary Dice on the val video"))
    rows, curve_rows = table[:curves_at], table[curves_at:]
    assert len([line for line in rows if line.startswith(("| sup", "| cct"))]) == 4
    assert len([line for line in curve_rows if line.startswith(("| sup", "| cct"))]) == 4
    assert (tmp_path / "out" / "accuracy-tiny.png").stat().st_size > 0

    # An interrupted run (checkpoint written, no result yet) resumes; finished runs are skipped.
    last = tmp_path / "work" / "tiny" / "cct-1.000"
    (last / "result.json").unlink()
    (tmp_path / "out" / "accuracy-tiny.json").unlink()  # interrupted before it was reported
    capsys.readouterr()
    assert runner.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("done, skipped") == 3
    assert "--resume auto" in out.replace("'", "")
    assert json.loads((last / "result.json").read_text())["method"] == "cct"
    # --report-only trains nothing and rebuilds the reports, with the validation curves.
    (tmp_path / "out" / "accuracy-tiny.md").unlink()
    (tmp_path / "out" / "accuracy-tiny.json").unlink()
    (last / "result.json").unlink()
    capsys.readouterr()
    assert runner.main([*argv, "--report-only"]) == 0
    assert "cct_surgical_seg.train.cli" not in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "accuracy-tiny.json").read_text())
    done = [(r["method"], r["fraction"]) for r in report["runs"]]
    assert done == [("sup", 0.5), ("cct", 0.5), ("sup", 1.0)]
    assert all(r["val_curve"] and r["val_curve"][-1][0] == 3 for r in report["runs"])
    assert "step 3" in (tmp_path / "out" / "accuracy-tiny.md").read_text()
    # On a fresh machine (no --work), the committed report says which runs are done.
    capsys.readouterr()
    fresh = [*argv[:argv.index("--work")], "--work", str(tmp_path / "fresh-work"),
             "--out", str(tmp_path / "out"), "--report-only"]
    assert runner.main(fresh) == 0
    assert capsys.readouterr().out.count("done (published report), skipped") == 3
    again = json.loads((tmp_path / "out" / "accuracy-tiny.json").read_text())
    assert again["runs"] == report["runs"]
    # An ablation: extra cct-train overrides, one method, kept apart from the main table.
    ablation = [*argv, "--methods", "cct", "--tag", "ramp", "--set", "train.rampup_fraction=1.0"]
    assert runner.main(ablation) == 0
    tagged = json.loads((tmp_path / "out" / "accuracy-tiny-ramp.json").read_text())
    assert [(r["method"], r["fraction"]) for r in tagged["runs"]] == [("cct", 0.5), ("cct", 1.0)]
    assert tagged["meta"]["set"] == ["train.rampup_fraction=1.0"]
    resolved = (tmp_path / "work" / "tiny-ramp" / "cct-0.500" / "config.yaml").read_text()
    assert "rampup_fraction: 1.0" in resolved
    assert json.loads((tmp_path / "out" / "accuracy-tiny.json").read_text())["runs"] == report["runs"]
    with pytest.raises(SystemExit):
        runner.parse_args([*argv, "--set", "train.rampup_fraction=1.0"])  # an override needs a --tag
