"""Dice/IoU on hand-made masks."""

from __future__ import annotations

import math

import pytest
import torch

from cct_surgical_seg.train.metrics import ConfusionMatrix, format_table, summarize

NAMES = ("background", "shaft", "manipulator")


def test_dice_iou_per_class_and_binary() -> None:
    target = torch.tensor([[0, 0, 1, 1, 1, 2, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1, 0, 2, 1, 2]])
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    # bg: TP1 FP1 FN1; shaft: TP2 FP2 FN1; manipulator: TP1 FP0 FN1; ignore pixel skipped
    s = summarize(cm.matrix, NAMES)
    assert s["dice"]["background"] == pytest.approx(2 / 4)
    assert s["iou"]["background"] == pytest.approx(1 / 3)
    assert s["dice"]["shaft"] == pytest.approx(4 / 7)
    assert s["iou"]["shaft"] == pytest.approx(2 / 5)
    assert s["dice"]["manipulator"] == pytest.approx(2 / 3)
    assert s["iou"]["manipulator"] == pytest.approx(1 / 2)
    assert s["mean_dice"] == pytest.approx((4 / 7 + 2 / 3) / 2)
    # binary: instrument = class > 0; truth fg 5 px, predicted fg 5 px, overlap 4
    assert s["binary_dice"] == pytest.approx(8 / 10)
    assert s["binary_iou"] == pytest.approx(4 / 6)
    assert s["pixels"] == 7


def test_accumulates_over_batches_and_absent_class_is_nan() -> None:
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([[0, 1], [1, 0]]), torch.tensor([[0, 1], [1, 1]]))
    cm.update(torch.tensor([[1, 1]]), torch.tensor([[1, 0]]))
    s = summarize(cm.matrix, NAMES)
    assert math.isnan(s["dice"]["manipulator"]) and math.isnan(s["iou"]["manipulator"])
    assert s["dice"]["shaft"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert s["mean_dice"] == pytest.approx(s["dice"]["shaft"])  # NaN class left out of the mean
    table = format_table(s)
    assert "shaft" in table and "binary" in table


def test_perfect_prediction_scores_one() -> None:
    target = torch.randint(0, 3, (2, 16, 16))
    cm = ConfusionMatrix(3)
    cm.update(target.clone(), target)
    s = summarize(cm.matrix, NAMES)
    assert all(v == 1.0 for v in s["dice"].values()) and s["binary_dice"] == 1.0
