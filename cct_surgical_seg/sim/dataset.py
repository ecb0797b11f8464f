"""Write a training/evaluation dataset folder from the procedural scene (layout: docs/design.md).

Why: the shipped demo model is trained with the package's own ``cct-train`` on simulator data,
and tests of the training/evaluation path need a dataset that any checkout can produce. The
folder follows the same layout as the EndoVis folders, so nothing downstream special-cases it:

    ROOT/images/<name>.png      labelled RGB frames
    ROOT/masks/<name>.png       uint8 class ids (0 background, 1 shaft, 2 manipulator)
    ROOT/unlabelled/<name>.png  unlabelled RGB frames (other sequences than the labelled ones)
    ROOT/MANIFEST.csv           file,video_or_group,split,mask

Frames come from several *sequences* (a scene seed each, with a varied instrument count and
smoke level) sampled with a stride, so consecutive samples differ; the validation split is a
whole sequence, never frames interleaved with training ones. Every file goes through
``io_utils`` (temp file + rename), so an interrupted run leaves only complete images.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from cct_surgical_seg.io_utils import atomic_write_bytes, atomic_write_text
from cct_surgical_seg.sim.scene import EndoscopeScene, SceneConfig

MANIFEST_NAME = "MANIFEST.csv"
MANIFEST_FIELDS = ("file", "video_or_group", "split", "mask")


@dataclass(frozen=True)
class DatasetSummary:
    root: Path
    labelled: int
    unlabelled: int
    train: int
    val: int
    groups: tuple[str, ...]


def _encode(image: np.ndarray, ext: str) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise ValueError(f"could not encode a {image.shape} image as {ext}")
    return buf.tobytes()


def _sequence_config(base: SceneConfig, seed: int) -> SceneConfig:
    """Vary instrument count and smoke per sequence, deterministically from its seed."""
    rng = np.random.default_rng(seed + 7919)
    return replace(
        base,
        seed=seed,
        num_instruments=int(rng.integers(1, 4)),
        smoke=float(rng.choice([0.0, 0.0, 0.2, 0.4])),
    )


def _split_counts(total: int, sequences: int) -> list[int]:
    base, extra = divmod(total, sequences)
    return [base + (1 if i < extra else 0) for i in range(sequences)]


def write_dataset(
    root: str | os.PathLike[str],
    frames: int,
    unlabelled: int = 0,
    *,
    seed: int = 0,
    width: int = 640,
    height: int = 512,
    sequences: int = 4,
    val_sequences: int = 1,
    stride: int = 7,
    image_format: str = "png",
    progress: Callable[[int], None] | None = None,
) -> DatasetSummary:
    """Render ``frames`` labelled and ``unlabelled`` unlabelled frames into ``root``.

    ``sequences`` labelled sequences (seeds ``seed``, ``seed + 1``, ...) share the labelled
    frames; the last ``val_sequences`` of them (when there are at least two) form the ``val``
    split. Unlabelled frames come from further sequences, so they are new footage, as in
    semi-supervised training. ``progress`` is called with the number of frames just written.
    """
    if frames < 0 or unlabelled < 0:
        raise ValueError("frame counts must be >= 0")
    if frames + unlabelled == 0:
        raise ValueError("nothing to write: frames and unlabelled are both 0")
    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format must be 'png' or 'jpg', not {image_format!r}")
    if stride < 1:
        raise ValueError("stride must be >= 1")
    root = Path(root)
    ext = f".{image_format}"
    base = SceneConfig(width=width, height=height)
    sequences = max(1, min(sequences, frames)) if frames else 0
    val_sequences = min(val_sequences, sequences - 1) if sequences >= 2 else 0
    rows: list[dict[str, str]] = []
    groups: list[str] = []
    train = val = 0

    for seq, count in enumerate(_split_counts(frames, sequences) if sequences else []):
        group = f"sim{seed + seq:04d}"
        groups.append(group)
        split = "val" if seq >= sequences - val_sequences else "train"
        scene = EndoscopeScene(_sequence_config(base, seed + seq))
        for k, frame in enumerate(scene.frames(count, stride=stride)):
            name = f"{group}_{k:05d}"
            atomic_write_bytes(root / "images" / f"{name}{ext}", _encode(frame.bgr, ext))
            atomic_write_bytes(root / "masks" / f"{name}.png", _encode(frame.mask, ".png"))
            rows.append(
                {
                    "file": f"images/{name}{ext}",
                    "video_or_group": group,
                    "split": split,
                    "mask": f"masks/{name}.png",
                }
            )
            train += split == "train"
            val += split == "val"
            if progress:
                progress(1)

    unlabelled_sequences = max(1, min(sequences or 1, unlabelled)) if unlabelled else 0
    for seq, count in enumerate(_split_counts(unlabelled, unlabelled_sequences) if unlabelled else []):
        group = f"sim{seed + 1000 + seq:04d}"
        groups.append(group)
        scene = EndoscopeScene(_sequence_config(base, seed + 1000 + seq))
        rows += _write_unlabelled(root, group, scene, count, stride, ext, progress)
    _write_manifest(root, rows)
    return DatasetSummary(root, frames, unlabelled, train, val, tuple(groups))


def _write_unlabelled(
    root: Path,
    group: str,
    scene: EndoscopeScene,
    count: int,
    stride: int,
    ext: str,
    progress: Callable[[int], None] | None,
) -> list[dict[str, str]]:
    """``count`` frames of ``scene`` into ``unlabelled/``; their manifest rows."""
    rows = []
    for k, frame in enumerate(scene.frames(count, stride=stride)):
        name = f"{group}_{k:05d}"
        atomic_write_bytes(root / "unlabelled" / f"{name}{ext}", _encode(frame.bgr, ext))
        rows.append(
            {"file": f"unlabelled/{name}{ext}", "video_or_group": group, "split": "unlabelled", "mask": ""}
        )
        if progress:
            progress(1)
    return rows


def _write_manifest(root: Path, rows: list[dict[str, str]]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(root / MANIFEST_NAME, text.getvalue())
