"""cct-train and cct-eval end to end (in-process: the console scripts call these functions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from test_train_helpers import make_dataset, tiny_config

from cct_surgical_seg.train.cli import eval_main, train_main


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Train 4 steps with a YAML config + --set overrides; return (run dir, dataset)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("cli")
    data = make_dataset(base / "ds", labelled=12, unlabelled=6, groups=3)
    config = base / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config().to_dict()))
    rc = train_main(
        [
            "--config",
            str(config),
            "--data",
            str(data),
            "--out",
            str(base / "run"),
            "--set",
            "train.warmup_steps=2",
            "--set",
            "train.cct_steps=2",
            "--set",
            "train.val_every=2",
        ]
    )
    torch.set_num_threads(previous)
    assert rc == 0
    return base / "run", data


def test_train_writes_the_run_directory(trained: tuple[Path, Path]) -> None:
    run, _ = trained
    for name in ("last.pt", "best.pt", "config.yaml", "train_metrics.csv", "val_metrics.csv"):
        assert (run / name).is_file(), name
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["cct_steps"] == 2 and saved["data"]["root"]


def test_eval_prints_the_table_and_writes_json(trained: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    run, data = trained
    out = tmp_path / "eval.json"
    assert eval_main([str(run / "best.pt"), str(data), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for word in ("background", "shaft", "manipulator", "binary", "Dice", "IoU", "val: 4 frames"):
        assert word in printed, word
    report = json.loads(out.read_text())
    assert report["split"] == "val" and report["frames"] == 4 and report["input_size"] == [48, 64]
    assert set(report["metrics"]["dice"]) == {"background", "shaft", "manipulator"}
    assert 0 <= report["metrics"]["binary_dice"] <= 1


def test_eval_any_folder_without_manifest(trained: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    run, _ = trained
    folder = make_dataset(tmp_path / "plain", labelled=5, unlabelled=0, groups=1, manifest=False)
    assert eval_main([str(run / "last.pt"), str(folder), "--native"]) == 0
    assert "all: 5 frames, input native" in capsys.readouterr().out


def test_errors_are_one_message_and_exit_2(trained: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    _, data = trained
    assert eval_main([str(tmp_path / "missing.pt"), str(data)]) == 2
    assert "missing.pt" in capsys.readouterr().err
    broken = make_dataset(tmp_path / "broken", labelled=6, unlabelled=0, groups=2)
    (broken / "masks" / "vid0_f000.png").unlink()
    args = ["--data", str(broken), "--out", str(tmp_path / "r"), "--set", "model.pretrained=false"]
    assert train_main(args) == 2
    assert "vid0_f000.png" in capsys.readouterr().err
    assert train_main(["--out", str(tmp_path / "r"), "--set", "optim.lr_rate=1"]) == 2
    assert "optim.lr_rate" in capsys.readouterr().err


def test_synthetic_dataset_when_the_simulator_is_installed(tmp_path: Path) -> None:
    pytest.importorskip("cct_surgical_seg.sim.dataset")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(warmup_steps=1, cct_steps=1, val_every=2).to_dict()))
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        small = "{frames: 9, unlabelled: 6, width: 80, height: 64, sequences: 3}"
        rc = train_main(
            [
                "--config",
                str(config),
                "--synthetic",
                "--out",
                str(tmp_path / "run"),
                "--set",
                f"data.synthetic={small}",
            ]
        )
    finally:
        torch.set_num_threads(previous)
    assert rc == 0
    assert (tmp_path / "run" / "synthetic_data" / "MANIFEST.csv").is_file()
    assert (tmp_path / "run" / "last.pt").is_file()


def test_eval_scores_the_test_split_when_asked(trained: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    import csv

    run, _ = trained
    data = make_dataset(tmp_path / "ds", labelled=9, unlabelled=0, groups=3)
    rows = list(csv.reader((data / "MANIFEST.csv").open()))
    for row in rows[1:]:
        if row[2] == "val":
            row[2] = "test"
    with (data / "MANIFEST.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    assert eval_main([str(run / "last.pt"), str(data), "--split", "test"]) == 0
    assert "test: 3 frames" in capsys.readouterr().out
