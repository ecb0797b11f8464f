"""The shared NumPy metrics: confusion matrix, Dice/IoU, binary figures, tip matching."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cct_surgical_seg.metrics import ConfusionMatrix, TipErrors, clip_to_image, match_tips

NAMES = ("background", "shaft", "manipulator")


def test_confusion_matrix_figures_on_hand_made_masks() -> None:
    truth = np.array([[0, 0, 1, 1, 1, 2, 2, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 1, 0, 2, 1, 2]], np.uint8)
    cm = ConfusionMatrix(3)
    cm.update(pred, truth)
    cm.update(pred, truth)  # dataset-level: doubling every count changes no ratio
    s = cm.summary(NAMES)
    assert cm.frames == 2 and s["pixels"] == 14  # the ignore pixel is skipped
    # shaft: TP 2, FP 2, FN 1; manipulator: TP 1, FP 0, FN 1; binary: TP 4, FP 1, FN 1
    assert s["dice"]["shaft"] == pytest.approx(4 / 7)
    assert s["iou"]["manipulator"] == pytest.approx(1 / 2)
    assert s["binary_dice"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 1))
    assert s["mean_dice"] == pytest.approx((4 / 7 + 2 / 3) / 2)


def test_absent_class_is_nan_and_left_out_of_means() -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.array([[0, 1]]), np.array([[0, 1]]))
    s = cm.summary(NAMES)
    assert math.isnan(s["dice"]["manipulator"])
    assert s["mean_dice"] == 1.0


def test_out_of_range_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="truth class id 3"):
        ConfusionMatrix(3).update(np.array([[0]]), np.array([[3]]))
    with pytest.raises(ValueError, match="differ in shape"):
        ConfusionMatrix(3).update(np.zeros((2, 2)), np.zeros((2, 3)))


def test_tip_matching_pairs_nearest_within_radius() -> None:
    assert match_tips([(0, 0), (100, 0)], [(3, 4), (500, 500)], max_match_px=60) == [5.0]
    tips = TipErrors(max_match_px=60)
    tips.update([(0, 0), (100, 0)], [(3, 4), (500, 500)])
    assert (tips.matched, tips.missed, tips.false_alarms) == (1, 1, 1)
    assert tips.median() == 5.0
    assert math.isnan(TipErrors().mean())


def test_visible_flag_scored_against_visible_and_hidden_truth() -> None:
    tips = TipErrors(max_match_px=30)
    # truth: one visible tip at (10, 10); one hidden tip outside the view, clipped to (99, 50)
    hidden = [clip_to_image((140.0, 50.0), width=100, height=80)]
    assert hidden == [(99.0, 50.0)]
    tips.update([(12, 10), (97, 52)], [(10, 10)], predicted_visible=[True, True], hidden=hidden)
    assert tips.errors == [2.0]  # the hidden tip is not part of the error
    assert (tips.flags_matched, tips.flags_correct) == (2, 1)  # the border tip was called visible
    tips.update([(97, 52)], [], predicted_visible=[False], hidden=hidden)
    assert tips.visible_flag_accuracy() == pytest.approx(2 / 3)
    assert tips.summary()["p95"] == 2.0
    assert (tips.hidden_matched, tips.false_alarms) == (2, 0)  # found instruments with hidden tips
    assert math.isnan(TipErrors().visible_flag_accuracy())
