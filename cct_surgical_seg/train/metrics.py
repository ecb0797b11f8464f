"""Segmentation metrics from a confusion matrix: per-class Dice and IoU, binary instrument Dice.

Everything derives from one ``C x C`` confusion matrix (rows = truth, columns = prediction)
accumulated over the whole split, i.e. dataset-level ("micro") figures: small frames and
frames without instruments do not get a per-frame vote. The matrix is a plain tensor, so DDP
ranks sum theirs with one ``all_reduce``. A class absent from both truth and prediction has
an undefined score (NaN) and is left out of the means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch


class ConfusionMatrix:
    """Accumulates ``truth x prediction`` counts, skipping ``ignore_index`` pixels."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add class-id maps of equal shape (any device)."""
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")
        valid = target != self.ignore_index
        t = target[valid].long().cpu()
        p = prediction[valid].long().cpu()
        if t.numel() and int(t.max()) >= self.num_classes:
            raise ValueError(f"target class id {int(t.max())} >= num_classes {self.num_classes}")
        n = self.num_classes
        self.matrix += torch.bincount(t * n + p, minlength=n * n).view(n, n)

    def reset(self) -> None:
        self.matrix.zero_()


def _safe_ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def dice_iou(matrix: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-class Dice = 2TP / (2TP + FP + FN) and IoU = TP / (TP + FP + FN)."""
    m = matrix.double()
    tp = m.diag()
    fp = m.sum(0) - tp
    fn = m.sum(1) - tp
    dice = [_safe_ratio(2 * float(a), float(2 * a + b + c)) for a, b, c in zip(tp, fp, fn, strict=True)]
    iou = [_safe_ratio(float(a), float(a + b + c)) for a, b, c in zip(tp, fp, fn, strict=True)]
    return dice, iou


def binary_dice_iou(matrix: torch.Tensor) -> tuple[float, float]:
    """Instrument vs background (class > 0), the figure comparable with binary benchmarks."""
    m = matrix.double()
    tp = float(m[1:, 1:].sum())
    fp = float(m[0, 1:].sum())
    fn = float(m[1:, 0].sum())
    return _safe_ratio(2 * tp, 2 * tp + fp + fn), _safe_ratio(tp, tp + fp + fn)


def _nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def summarize(matrix: torch.Tensor, class_names: Sequence[str]) -> dict[str, Any]:
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
        "pixels": int(matrix.sum()),
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
