"""Smoke test of the accuracy experiment runner (bench/accuracy.py) on tiny simulated data.

Real runs take ~30 min each on EndoVis frames; here two fractions x two methods train for a
few steps, so the test checks the plumbing: output files, the table's columns, skip and resume.
"""

from __future__ import annotations

import csv
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
def test_runner_writes_fold_table_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "tiny"
    write_dataset(data, frames=12, unlabelled=6, seed=0, width=96, height=80, sequences=3)
    runner = _load_runner()
    argv = [
        "--dataset",
        str(data),
        "--fractions",
        "0.5",
        "1.0",
        "--folds",
        "2",
        "--methods",
        "sup",
        "cct",
        "cct_adapt",
        "--steps",
        "3",
        "--warmup",
        "1",
        "--batch",
        "2",
        "--crop",
        "64",
        "80",
        "--eval-size",
        "64",
        "96",
        "--val-every",
        "3",
        "--workers",
        "0",
        "--work",
        str(tmp_path / "work"),
        "--out",
        str(tmp_path / "out"),
    ]
    assert runner.main(argv) == 0

    report = json.loads((tmp_path / "out" / "accuracy-folds-tiny.json").read_text())
    videos = report["meta"]["videos"]
    runs = [(r["method"], r["fraction"], r["fold"]) for r in report["runs"]]
    single = videos.index("sim0002")  # write_dataset's val video: the one-fold rows run on it
    assert runs == [
        ("sup", 0.5, 0),
        ("cct", 0.5, 0),
        ("sup", 0.5, 1),
        ("cct", 0.5, 1),
        ("sup", 1.0, 0),
        ("cct", 1.0, 0),
        ("sup", 1.0, 1),
        ("cct", 1.0, 1),
        ("cct_adapt", 0.5, single),
    ]
    for r in report["runs"]:
        assert 0.0 <= r["binary_dice"] <= 1.0 and r["steps"] == 3
        assert set(r["tip_error_px"]) >= {"median", "matched", "missed"}
        assert len(r["frames"]) == r["latency_ms"]["frames"] > 0
        assert all(0.0 <= i["score"] <= 1.0 and 0.0 <= i["precision"] <= 1.0 for i in r["instruments"])
        held_out = videos[r["fold"]]
        assert all(f["frame"].startswith(held_out) for f in r["frames"])
    cells = {(row["method"], row["fraction"]): row for row in report["summary"]}
    assert cells[("cct", 0.5)]["folds"] == [0, 1] and len(cells[("cct", 0.5)]["binary_dice"]) == 2
    assert cells[("cct_adapt", 0.5)]["folds"] == [single]
    # A fold never trains on its held-out video; the adaptation row adds its images unlabelled.
    fold0 = tmp_path / "work" / "tiny" / "folds" / "fold0" / "MANIFEST.csv"
    rows = list(csv.DictReader(fold0.open()))
    assert {r["split"] for r in rows if Path(r["file"]).name.startswith(videos[0])} == {"val"}
    adapt_log = (tmp_path / "work" / "tiny" / f"cct_adapt-0.500-fold{single}" / "config.yaml").read_text()
    assert "heldout_images" in adapt_log
    table = (tmp_path / "out" / "accuracy-folds-tiny.md").read_text()
    assert "| cct | 0.500 | 2 |" in table and "conf. Spearman" in table and "step 3" in table
    assert "score Spearman" in table
    assert (tmp_path / "out" / "accuracy-folds-tiny.png").stat().st_size > 0

    # An interrupted run (checkpoint written, no result yet) resumes; finished runs are skipped.
    last = tmp_path / "work" / "tiny" / "cct-1.000-fold1"
    (last / "result.json").unlink()
    # a finished run scored before the per-instrument figures existed gets them, untrained
    first = tmp_path / "work" / "tiny" / "sup-0.500-fold0" / "result.json"
    old = json.loads(first.read_text())
    first.write_text(json.dumps({k: v for k, v in old.items() if k != "instruments"}))
    capsys.readouterr()
    assert runner.main(argv) == 0
    assert json.loads(first.read_text())["instruments"] == old["instruments"]
    out = capsys.readouterr().out
    assert out.count("done, skipped") == 8
    assert "--resume auto" in out.replace("'", "")
    # --report-only trains nothing and rebuilds the reports.
    (last / "result.json").unlink()
    capsys.readouterr()
    assert runner.main([*argv, "--report-only"]) == 0
    assert "cct_surgical_seg.train.cli" not in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "accuracy-folds-tiny.json").read_text())
    assert len(report["runs"]) == 8


def test_instrument_score_ranking() -> None:
    """Each instrument's error is the share of its box's predicted pixels that truth calls
    background; the ranking says how well the scores order instruments by it."""
    import numpy as np

    from cct_surgical_seg.deploy.poses import Instrument

    runner = _load_runner()
    mask, truth = np.zeros((40, 60), np.uint8), np.zeros((40, 60), np.uint8)
    mask[5:15, 5:25] = 1  # a real tool
    truth[5:15, 5:25] = 1
    mask[25:35, 30:50] = 2  # half of it is tissue
    truth[25:35, 30:40] = 2

    def tool(box: tuple[int, int, int, int], score: float) -> Instrument:
        return Instrument(-1, 1, box[2] * box[3], (0.0, 0.0), (1.0, 0.0), (0.0, 0.0), (0.0, 0.0), box, score)

    figures = runner.instrument_figures([tool((5, 5, 20, 10), 0.9), tool((30, 25, 20, 10), 0.6)], mask, truth)
    assert [f["precision"] for f in figures] == [1.0, 0.5]
    pairs = ((0.9, 1.0), (0.8, 0.9), (0.6, 0.5), (0.5, 0.2), (0.7, 0.8))
    good = [{"score": s, "precision": p} for s, p in pairs]
    ranking = runner.score_ranking(good)
    assert ranking["spearman"] == pytest.approx(1.0) and ranking["precision_least_confident_20"] == 0.2
    bad = [{"score": 1.0 - g["score"], "precision": g["precision"]} for g in good]
    assert runner.score_ranking(bad)["spearman"] == pytest.approx(-1.0)
    assert np.isnan(runner.score_ranking([])["spearman"])


def test_plan_runs_headline_cells_first_and_every_fold_methods_last() -> None:
    runner = _load_runner()
    runs = runner.plan([0.125, 1.0], 3, 2, ["sup", "cct", "cct_poisson", "cct_skip"], ["cct_poisson"])
    names = [r.name for r in runs]
    assert names[:6] == [f"{m}-0.125-fold{k}" for k in range(3) for m in ("sup", "cct")]
    assert names[12:] == [
        "cct_poisson-0.125-fold2",
        "cct_skip-0.125-fold2",
        "cct_poisson-0.125-fold0",
        "cct_poisson-0.125-fold1",
    ]


def test_finished_runs_outside_the_plan_are_found_for_the_report(tmp_path: Path) -> None:
    runner = _load_runner()
    for name in ("cct_poisson-0.125-fold0", "cct-1.000-fold2", "sup-0.125-fold1"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text("{}")
    (tmp_path / "cct-0.125-fold0").mkdir()  # interrupted: no result yet
    (tmp_path / "folds").mkdir()
    found = runner.finished_runs(tmp_path, ["cct", "cct_poisson"])
    assert found == [runner.Run("cct", 1.0, 2), runner.Run("cct_poisson", 0.125, 0)]


def test_learning_curves_plot_every_method(tmp_path: Path) -> None:
    """One curve per method, even with more methods than the colour cycle has colours."""
    runner = _load_runner()
    curve = [[100, 0.5], [200, 0.6]]
    results = [{"method": m, "fraction": 0.125, "fold": 0, "val_curve": curve} for m in runner.METHODS]
    runner.plot_curves("tiny", results, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0
