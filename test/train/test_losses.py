"""Losses: cross-entropy, consistency (and where its gradient goes), ramp-up."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cct_surgical_seg.train.losses import ConsistencyWeight, consistency_loss, sigmoid_rampup, supervised_loss


def test_supervised_loss_ignores_index_and_weights() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5)
    target = torch.randint(0, 3, (2, 4, 5))
    expected = torch.nn.functional.cross_entropy(logits, target)
    torch.testing.assert_close(supervised_loss(logits, target), expected)
    ignored = target.clone()
    ignored[0] = 255
    torch.testing.assert_close(
        supervised_loss(logits, ignored), torch.nn.functional.cross_entropy(logits[1:], target[1:])
    )
    weights = torch.tensor([0.0, 1.0, 1.0])
    only_fg = torch.nn.functional.cross_entropy(logits, target, weight=weights)
    torch.testing.assert_close(supervised_loss(logits, target, class_weights=weights), only_fg)
    all_ignored = supervised_loss(logits.requires_grad_(), torch.full((2, 4, 5), 255))
    assert all_ignored.item() == 0.0
    all_ignored.backward()


def test_consistency_zero_when_equal_positive_otherwise() -> None:
    torch.manual_seed(0)
    main = torch.randn(2, 3, 4, 5)
    assert consistency_loss(main, [main.clone(), main.clone()]).item() == 0.0
    assert consistency_loss(main, [main.clone(), torch.randn(2, 3, 4, 5)]).item() > 0.0
    with pytest.raises(ValueError, match="shape"):
        consistency_loss(main, [torch.randn(2, 3, 4, 6)])


def test_consistency_is_mean_of_per_decoder_mse() -> None:
    torch.manual_seed(0)
    main, a, b = torch.randn(3, 2, 3, 4, 5).unbind(0)
    sm = torch.softmax
    expected = ((sm(a, 1) - sm(main, 1)).square().mean() + (sm(b, 1) - sm(main, 1)).square().mean()) / 2
    torch.testing.assert_close(consistency_loss(main, [a, b]), expected)


def test_consistency_gradient_never_reaches_main_through_target() -> None:
    torch.manual_seed(0)
    main = torch.randn(2, 3, 4, 5, requires_grad=True)
    aux = torch.randn(2, 3, 4, 5, requires_grad=True)
    consistency_loss(main, [aux]).backward()
    assert main.grad is None
    assert aux.grad is not None and aux.grad.abs().sum() > 0


def test_sigmoid_rampup_values() -> None:
    assert sigmoid_rampup(0, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(50, 100) == pytest.approx(math.exp(-5 * 0.25))
    assert sigmoid_rampup(100, 100) == 1.0
    assert sigmoid_rampup(1000, 100) == 1.0
    assert sigmoid_rampup(-5, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(3, 0) == 1.0


def test_consistency_weight_schedule() -> None:
    weight = ConsistencyWeight(final_weight=30, rampup_steps=100, start_step=10)
    assert weight(0) == 0.0
    assert weight(10) == pytest.approx(30 * math.exp(-5))
    assert weight(60) == pytest.approx(30 * math.exp(-1.25))
    assert weight(110) == pytest.approx(30.0)
    assert weight(10_000) == pytest.approx(30.0)


def test_confidence_threshold_keeps_only_confident_target_pixels() -> None:
    torch.manual_seed(0)
    main = torch.zeros(1, 2, 2, 2)
    main[0, 0, 0, 0] = 8.0  # one confident pixel, three at probability 0.5
    aux = torch.randn(1, 2, 2, 2)
    masked = consistency_loss(main, [aux], threshold=0.9)
    p_aux, p_main = torch.softmax(aux, 1), torch.softmax(main, 1)
    expected = (p_aux[0, :, 0, 0] - p_main[0, :, 0, 0]).square().mean()
    torch.testing.assert_close(masked, expected)
    assert consistency_loss(main, [aux], threshold=0.0) == pytest.approx(float(F.mse_loss(p_aux, p_main)))
    assert consistency_loss(main, [aux], threshold=0.9999999) == 0.0
