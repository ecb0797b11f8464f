"""Segmentation and tip metrics in NumPy: one definition for training, bags, the demo and benchmarks.

Everything derives from one ``C x C`` confusion matrix (rows = truth, columns = prediction)
accumulated over all frames, i.e. dataset-level ("micro") figures: small frames and frames
without instruments get no per-frame vote. Dice = 2TP / (2TP + FP + FN), IoU = TP / (TP + FP + FN);
"binary" is instrument (any class > 0) against background, the figure comparable with binary
benchmarks. A class absent from both truth and prediction has an undefined score (NaN) and is
left out of the means. NumPy only, so ``cct-bag`` and ``cct-demo`` run where only ONNX Runtime is
installed; training accumulates its matrix in torch (for DDP) and summarises it here.

Tip error: predicted tips are matched to true tips greedily by distance (few, well separated
tools) within ``max_match_px``; a true tip without a match is missed, an extra prediction is a
false alarm, and the error is the pixel distance of matched pairs. Only visible true tips count
for the error. The ``tip_visible`` flag is scored separately: every instrument in view (visible
tips, and hidden ones at their true tip clipped into the image, where the estimate of a tool
that leaves the view lands) is matched to a prediction the same way, and a matched pair scores
when the predicted flag equals the truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Point = tuple[float, float]


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else math.nan


def _nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def confusion(
    prediction: np.ndarray, truth: np.ndarray, num_classes: int, ignore_index: int = 255
) -> np.ndarray:
    """``truth x prediction`` pixel counts of two class-id maps, skipping ``ignore_index`` pixels."""
    prediction, truth = np.asarray(prediction), np.asarray(truth)
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction {prediction.shape} and truth {truth.shape} differ in shape")
    valid = truth != ignore_index
    t = truth[valid].astype(np.int64)
    p = prediction[valid].astype(np.int64)
    for name, ids in (("truth", t), ("prediction", p)):
        if ids.size and (int(ids.max()) >= num_classes or int(ids.min()) < 0):
            raise ValueError(f"{name} class id {int(ids.max())} outside 0..{num_classes - 1}")
    n = num_classes
    return np.bincount(t * n + p, minlength=n * n).reshape(n, n)


def dice_iou(matrix: Any) -> tuple[list[float], list[float]]:
    """Per-class Dice and IoU of a confusion matrix (NumPy array or CPU tensor)."""
    m = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(m)
    fp = m.sum(0) - tp
    fn = m.sum(1) - tp
    dice = [_ratio(2 * a, 2 * a + b + c) for a, b, c in zip(tp, fp, fn, strict=True)]
    iou = [_ratio(a, a + b + c) for a, b, c in zip(tp, fp, fn, strict=True)]
    return dice, iou


def binary_dice_iou(matrix: Any) -> tuple[float, float]:
    """Instrument (class > 0) against background."""
    m = np.asarray(matrix, dtype=np.float64)
    tp = float(m[1:, 1:].sum())
    fp = float(m[0, 1:].sum())
    fn = float(m[1:, 0].sum())
    return _ratio(2 * tp, 2 * tp + fp + fn), _ratio(tp, tp + fp + fn)


def summarize(matrix: Any, class_names: Sequence[str]) -> dict[str, Any]:
    """The figures we report: per-class dicts, foreground means, binary scores, pixel count.

    ``mean_dice``/``mean_iou`` average the foreground classes (background Dice is ~0.95 for
    any model and would only hide differences); ``mean_iou_all`` includes background (mIoU).
    """
    dice, iou = dice_iou(matrix)
    bdice, biou = binary_dice_iou(matrix)
    return {
        "dice": dict(zip(class_names, dice, strict=True)),
        "iou": dict(zip(class_names, iou, strict=True)),
        "mean_dice": _nanmean(dice[1:]),
        "mean_iou": _nanmean(iou[1:]),
        "mean_iou_all": _nanmean(iou),
        "binary_dice": bdice,
        "binary_iou": biou,
        "pixels": int(np.asarray(matrix).sum()),
    }


def flat_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """One level of ``name: value`` (``dice/shaft``...), for CSV rows and TensorBoard."""
    flat: dict[str, float] = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            for name, v in value.items():
                flat[f"{key}/{name}"] = float(v)
        else:
            flat[key] = float(value)
    return flat


def format_table(summary: dict[str, Any]) -> str:
    """A plain-text table: one row per class, then the foreground means and the binary scores."""
    names = list(summary["dice"])
    width = max(12, *(len(n) for n in names))
    lines = [f"{'class':<{width}}  {'Dice':>7}  {'IoU':>7}", "-" * (width + 18)]
    for name in names:
        lines.append(f"{name:<{width}}  {summary['dice'][name]:7.4f}  {summary['iou'][name]:7.4f}")
    lines.append("-" * (width + 18))
    lines.append(f"{'mean (fg)':<{width}}  {summary['mean_dice']:7.4f}  {summary['mean_iou']:7.4f}")
    lines.append(f"{'binary (>0)':<{width}}  {summary['binary_dice']:7.4f}  {summary['binary_iou']:7.4f}")
    return "\n".join(lines)


@dataclass
class ConfusionMatrix:
    """Accumulates a confusion matrix over frames (NumPy; see ``train.metrics`` for torch/DDP)."""

    num_classes: int = 3
    ignore_index: int = 255
    matrix: np.ndarray = field(init=False)
    frames: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    def update(self, prediction: np.ndarray, truth: np.ndarray) -> None:
        self.matrix += confusion(prediction, truth, self.num_classes, self.ignore_index)
        self.frames += 1

    def summary(self, class_names: Sequence[str]) -> dict[str, Any]:
        return summarize(self.matrix, class_names)


def match_pairs(
    predicted: Sequence[Point], truth: Sequence[Point], max_match_px: float
) -> list[tuple[float, int, int]]:
    """Greedily matched ``(distance, prediction index, truth index)``, nearest first."""
    pairs = sorted((math.dist(p, t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth))
    used_p: set[int] = set()
    used_t: set[int] = set()
    out = []
    for dist, i, j in pairs:
        if dist > max_match_px or i in used_p or j in used_t:
            continue
        used_p.add(i)
        used_t.add(j)
        out.append((dist, i, j))
    return out


def match_tips(predicted: Sequence[Point], truth: Sequence[Point], max_match_px: float) -> list[float]:
    """Distances of greedily matched (prediction, truth) pairs, nearest first."""
    return [dist for dist, _, _ in match_pairs(predicted, truth, max_match_px)]


def clip_to_image(point: Point, width: int, height: int) -> Point:
    """The point of the image rectangle (pixel centres) nearest to ``point``."""
    return (min(max(point[0], 0.0), width - 1.0), min(max(point[1], 0.0), height - 1.0))


@dataclass
class TipErrors:
    """Tip errors over frames: matched distances, and counts of missed and extra tips."""

    max_match_px: float = 60.0
    errors: list[float] = field(default_factory=list)
    truths: int = 0
    predictions: int = 0
    hidden_matched: int = 0  # predictions matched to a hidden tip
    flags_matched: int = 0
    flags_correct: int = 0

    def update(
        self,
        predicted: Sequence[Point],
        truth: Sequence[Point],
        predicted_visible: Sequence[bool] | None = None,
        hidden: Sequence[Point] = (),
    ) -> None:
        """``truth``: the visible true tips; ``hidden``: true tips of instruments in view whose tip
        is not visible, already clipped into the image (:func:`clip_to_image`).
        ``predicted_visible``: the predictions' ``tip_visible`` flags (None: not scored).

        Predictions are matched to visible and hidden tips together: a prediction matched to a
        hidden tip is an instrument found (no false alarm) but has no tip error.
        """
        pairs = match_pairs(predicted, [*truth, *hidden], self.max_match_px)
        self.errors.extend(dist for dist, _, j in pairs if j < len(truth))
        self.hidden_matched += sum(j >= len(truth) for _, _, j in pairs)
        self.truths += len(truth)
        self.predictions += len(predicted)
        if predicted_visible is None:
            return
        for _, i, j in pairs:
            self.flags_matched += 1
            self.flags_correct += int(bool(predicted_visible[i]) == (j < len(truth)))

    @property
    def matched(self) -> int:
        return len(self.errors)

    @property
    def missed(self) -> int:
        return self.truths - self.matched

    @property
    def false_alarms(self) -> int:
        return self.predictions - self.matched - self.hidden_matched

    def mean(self) -> float:
        return float(np.mean(self.errors)) if self.errors else math.nan

    def median(self) -> float:
        return float(np.median(self.errors)) if self.errors else math.nan

    def p95(self) -> float:
        return float(np.percentile(self.errors, 95)) if self.errors else math.nan

    def visible_flag_accuracy(self) -> float:
        """Share of matched instruments whose ``tip_visible`` flag is right (NaN if none scored)."""
        return _ratio(self.flags_correct, self.flags_matched)

    def summary(self) -> dict[str, float | int]:
        return {
            "mean": self.mean(),
            "median": self.median(),
            "p95": self.p95(),
            "matched": self.matched,
            "missed": self.missed,
            "false_alarms": self.false_alarms,
            "visible_flag_accuracy": self.visible_flag_accuracy(),
            "visible_flag_scored": self.flags_matched,
        }
