"""The training loop's confusion matrix, accumulated in torch so DDP ranks sum it with one
``all_reduce``; the figures themselves (Dice, IoU, binary, tables) are defined once, in
``cct_surgical_seg.metrics``, and re-exported here.
"""

from __future__ import annotations

import torch

from cct_surgical_seg.metrics import binary_dice_iou, dice_iou, flat_metrics, format_table, summarize


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


__all__ = ["ConfusionMatrix", "binary_dice_iou", "dice_iou", "flat_metrics", "format_table", "summarize"]
