"""Tiny datasets and configs made on the fly for the training tests (no files from outside).

Frames are 48x64 with a dark textured background and one or two bright rectangles as
instruments (class 1 "shaft", class 2 "manipulator" at its tip), so a few training steps
already learn something measurable on CPU.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from cct_surgical_seg.train.config import TrainConfig

H, W = 48, 64


def make_frame(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An RGB frame and its class-id mask: a shaft rectangle entering from the left, a tip."""
    image = rng.integers(20, 70, (H, W, 3), dtype=np.uint8)
    image[..., 0] = np.clip(image[..., 0].astype(int) + 60, 0, 255)  # reddish tissue
    mask = np.zeros((H, W), np.uint8)
    y = int(rng.integers(6, H - 16))
    length = int(rng.integers(20, 44))
    thick = int(rng.integers(6, 11))
    mask[y : y + thick, 0:length] = 1
    mask[y - 2 : y + thick + 2, length : length + 8] = 2
    shade = int(rng.integers(170, 230))
    image[mask == 1] = (shade, shade, shade)
    image[mask == 2] = (shade - 80, shade - 80, shade - 60)
    return image, mask


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    assert cv2.imwrite(str(path), data)


def make_dataset(
    root: Path,
    labelled: int = 12,
    unlabelled: int = 12,
    groups: int = 3,
    seed: int = 0,
    manifest: bool = True,
    val_groups: int = 1,
) -> Path:
    """``labelled`` frames in ``groups`` videos (the last ``val_groups`` are val) + unlabelled ones."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(labelled):
        g = k % groups
        name = f"vid{g}_f{k:03d}"
        image, mask = make_frame(rng)
        write_png(root / "images" / f"{name}.png", image)
        write_png(root / "masks" / f"{name}.png", mask)
        split = "val" if g >= groups - val_groups else "train"
        rows.append([f"images/{name}.png", f"vid{g}", split, f"masks/{name}.png"])
    for k in range(unlabelled):
        name = f"vid{k % max(1, groups - val_groups)}_u{k:03d}"
        image, _ = make_frame(rng)
        write_png(root / "unlabelled" / f"{name}.png", image)
        rows.append([f"unlabelled/{name}.png", f"vid{k % max(1, groups - val_groups)}", "unlabelled", ""])
    if manifest:
        with (root / "MANIFEST.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file", "video_or_group", "split", "mask"])
            writer.writerows(rows)
    return root


def tiny_config(**train: object) -> TrainConfig:
    """A CPU-sized config: small heads, 3 aux decoders, 32x48 crops, no workers, no bar."""
    data = {
        "model": {"pretrained": False, "aspp_channels": 16, "decoder_channels": 16, "low_level_channels": 8},
        "aux": {
            "vat": 1,
            "dropout": 0,
            "cutout": 1,
            "context_masking": 0,
            "object_masking": 0,
            "feature_drop": 0,
            "feature_noise": 1,
            "hidden_channels": 8,
        },
        "data": {
            "crop_size": [32, 48],
            "eval_size": [48, 64],
            "batch_size": 4,
            "unlabelled_batch_size": 4,
            "eval_batch_size": 8,
            "num_workers": 0,
            "scale_range": [0.8, 1.2],
        },
        "optim": {"lr": 0.02},
        "train": {
            "warmup_steps": 2,
            "cct_steps": 4,
            "val_every": 3,
            "checkpoint_every": 3,
            "log_every": 1,
            "progress": False,
            "tensorboard": False,
            **train,
        },
    }
    return TrainConfig.from_dict(data)
