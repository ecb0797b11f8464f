"""Scoring predictions against simulator ground truth: Dice/IoU and tip error (numpy only).

Why here and not ``train/metrics.py``: that module works on torch tensors, while ``cct-bag``
and ``cct-demo`` must run where only ONNX Runtime is installed. The definitions agree with it:
one confusion matrix accumulated over all frames (dataset-level figures), Dice = 2TP/(2TP+FP+FN),
IoU = TP/(TP+FP+FN), and a binary "instrument" figure (class > 0 vs background).

Tip error: predicted tips are matched to true tips greedily by distance (few, well separated
tools), within ``max_match_px``; a true tip without a match counts as missed, an extra
prediction as a false alarm; the error is the pixel distance of matched pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

Point = tuple[float, float]


@dataclass
class SegmentationScore:
    num_classes: int = 3
    matrix: np.ndarray = field(default=None)  # type: ignore[assignment]
    frames: int = 0

    def __post_init__(self) -> None:
        if self.matrix is None:
            self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, prediction: np.ndarray, truth: np.ndarray) -> None:
        if prediction.shape != truth.shape:
            raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} differ in shape")
        n = self.num_classes
        p = np.minimum(prediction.astype(np.int64).ravel(), n - 1)
        t = np.minimum(truth.astype(np.int64).ravel(), n - 1)
        self.matrix += np.bincount(t * n + p, minlength=n * n).reshape(n, n)
        self.frames += 1

    def dice(self) -> list[float]:
        tp, fp, fn = self._counts()
        return [_ratio(2 * a, 2 * a + b + c) for a, b, c in zip(tp, fp, fn, strict=True)]

    def iou(self) -> list[float]:
        tp, fp, fn = self._counts()
        return [_ratio(a, a + b + c) for a, b, c in zip(tp, fp, fn, strict=True)]

    def binary_dice(self) -> float:
        """Instrument (any class > 0) vs background."""
        m = self.matrix
        tp = float(m[1:, 1:].sum())
        fp = float(m[0, 1:].sum())
        fn = float(m[1:, 0].sum())
        return _ratio(2 * tp, 2 * tp + fp + fn)

    def binary_iou(self) -> float:
        m = self.matrix
        tp = float(m[1:, 1:].sum())
        return _ratio(tp, tp + float(m[0, 1:].sum()) + float(m[1:, 0].sum()))

    def _counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        return tp, m.sum(0) - tp, m.sum(1) - tp


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else math.nan


def match_tips(predicted: Sequence[Point], truth: Sequence[Point], max_match_px: float) -> list[float]:
    """Distances of greedily matched (prediction, truth) pairs, nearest first."""
    pairs = sorted((math.dist(p, t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth))
    used_p: set[int] = set()
    used_t: set[int] = set()
    out = []
    for dist, i, j in pairs:
        if dist > max_match_px or i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
        out.append(dist)
    return out


@dataclass
class TipScore:
    max_match_px: float = 60.0
    errors: list[float] = field(default_factory=list)
    truths: int = 0
    predictions: int = 0

    def update(self, predicted: Sequence[Point], truth: Sequence[Point]) -> None:
        self.errors.extend(match_tips(predicted, truth, self.max_match_px))
        self.truths += len(truth)
        self.predictions += len(predicted)

    @property
    def matched(self) -> int:
        return len(self.errors)

    @property
    def missed(self) -> int:
        return self.truths - self.matched

    @property
    def false_alarms(self) -> int:
        return self.predictions - self.matched

    def mean(self) -> float:
        return float(np.mean(self.errors)) if self.errors else math.nan

    def median(self) -> float:
        return float(np.median(self.errors)) if self.errors else math.nan


def ray_to_pixel(ray: Sequence[float], k: Sequence[float]) -> Point:
    """Undo the node's camera-info convention (unit ray, z > 0) for a distortion-free camera."""
    x, y, z = ray
    fx, cx, fy, cy = k[0], k[2], k[4], k[5]
    return (fx * x / z + cx, fy * y / z + cy)


def pose_positions_to_pixels(
    positions: Sequence[tuple[float, float, float]], k: Sequence[float] | None
) -> list[Point]:
    """PoseArray positions as pixels: z == 0 means pixels already, z > 0 a ray (needs K)."""
    out = []
    for x, y, z in positions:
        if z > 0:
            if k is None:
                raise ValueError("instrument poses are rays but no camera matrix is known")
            out.append(ray_to_pixel((x, y, z), k))
        else:
            out.append((x, y))
    return out


def summary_rows(seg: SegmentationScore, tips: TipScore, class_names: Sequence[str]) -> list[tuple[str, str]]:
    """(label, value) rows for the printed tables of cct-bag and cct-demo."""
    rows = [
        ("frames scored", str(seg.frames)),
        ("instrument Dice / IoU", f"{seg.binary_dice():.3f} / {seg.binary_iou():.3f}"),
    ]
    for c, (d, i) in enumerate(zip(seg.dice(), seg.iou(), strict=True)):
        if c == 0:
            continue
        name = class_names[c] if c < len(class_names) else f"class {c}"
        rows.append((f"{name} Dice / IoU", f"{d:.3f} / {i:.3f}"))
    rows.append(("tip error mean / median (px)", f"{tips.mean():.1f} / {tips.median():.1f}"))
    rows.append(("tips matched / missed / extra", f"{tips.matched} / {tips.missed} / {tips.false_alarms}"))
    return rows


def format_table(rows: Sequence[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label.ljust(width)}  {value}" for label, value in rows)
