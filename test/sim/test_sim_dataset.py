"""The dataset writer follows the layout of docs/design.md and keeps splits by sequence."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from cct_surgical_seg.sim.dataset import MANIFEST_FIELDS, write_dataset
from cct_surgical_seg.sim.publisher import main as sim_main


def _manifest(root: Path) -> list[dict[str, str]]:
    with open(root / "MANIFEST.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == MANIFEST_FIELDS
        return list(reader)


def test_layout_masks_and_splits(tmp_path: Path) -> None:
    summary = write_dataset(tmp_path, frames=9, unlabelled=4, width=160, height=128, sequences=3, stride=3)
    rows = _manifest(tmp_path)
    labelled = [r for r in rows if r["split"] in ("train", "val")]
    unlabelled = [r for r in rows if r["split"] == "unlabelled"]
    assert len(labelled) == 9 and len(unlabelled) == 4
    assert summary.train + summary.val == 9 and summary.val == 3
    # validation is whole sequences, disjoint from training ones
    train_groups = {r["video_or_group"] for r in labelled if r["split"] == "train"}
    val_groups = {r["video_or_group"] for r in labelled if r["split"] == "val"}
    assert train_groups and val_groups and not train_groups & val_groups
    assert not {r["video_or_group"] for r in unlabelled} & (train_groups | val_groups)
    for row in labelled:
        image = cv2.imread(str(tmp_path / row["file"]), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(tmp_path / row["mask"]), cv2.IMREAD_UNCHANGED)
        assert image.shape == (128, 160, 3)
        assert mask.shape == (128, 160) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1, 2} and mask.max() > 0
    for row in unlabelled:
        assert row["mask"] == "" and row["file"].startswith("unlabelled/")
        assert (tmp_path / row["file"]).is_file()
    on_disk = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    listed = {r["file"] for r in rows} | {r["mask"] for r in labelled} | {"MANIFEST.csv"}
    assert on_disk == listed, "no stray (temporary) files"


def test_cli_dataset_mode(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    rc = sim_main(
        [
            "--dataset",
            str(out),
            "--frames",
            "4",
            "--unlabelled",
            "2",
            "--width",
            "96",
            "--height",
            "80",
            "--sequences",
            "2",
            "--image-format",
            "jpg",
            "--quiet",
        ]
    )
    assert rc == 0
    assert len(list((out / "images").glob("*.jpg"))) == 4
    assert len(list((out / "masks").glob("*.png"))) == 4
    assert len(list((out / "unlabelled").glob("*.jpg"))) == 2
