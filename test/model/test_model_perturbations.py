"""Each CCT perturbation's defining property, on hand-made features and predictions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cct_surgical_seg.model.perturbations import (
    VAT,
    ContextMasking,
    Cutout,
    FeatureDrop,
    FeatureNoise,
    ObjectMasking,
    SpatialDropout,
    connected_components,
)


def _logits_with_object(n: int, h: int, w: int, box: tuple[int, int, int, int], cls: int = 1) -> torch.Tensor:
    """Logits ``n,3,h,w`` whose argmax is background except class ``cls`` inside box (y0, y1, x0, x1)."""
    logits = torch.zeros(n, 3, h, w)
    logits[:, 0] = 1.0
    y0, y1, x0, x1 = box
    logits[:, cls, y0:y1, x0:x1] = 5.0
    return logits


def test_feature_noise_is_multiplicative_bounded_and_shared() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 8, 5, 6)
    out = FeatureNoise(0.3)(x)
    assert out.shape == x.shape
    ratio = out / x  # 1 + n
    assert torch.all(ratio >= 0.7 - 1e-5) and torch.all(ratio <= 1.3 + 1e-5)
    assert not torch.allclose(out, x)
    # One noise map over the batch: the per-element factor is the same for every sample.
    assert torch.allclose(ratio[0], ratio[1], atol=1e-5) and torch.allclose(ratio[0], ratio[2], atol=1e-5)
    assert torch.equal(FeatureNoise(0.3)(torch.zeros(2, 4, 3, 3)), torch.zeros(2, 4, 3, 3))


def test_feature_drop_zeroes_exactly_the_most_active_positions() -> None:
    torch.manual_seed(0)
    x = torch.full((2, 4, 5, 6), 1.0)
    hot = torch.zeros(2, 1, 5, 6, dtype=torch.bool)
    hot[0, 0, 1, 2] = hot[0, 0, 3, 4] = True
    hot[1, 0, 0, 0] = True
    x = torch.where(hot, torch.full_like(x, 10.0), x)  # channel mean 10 at hot spots, 1 elsewhere
    x[1, :, 2, 2] = 8.5  # above 10 * 0.8 (drop) for sample 1
    out = FeatureDrop(0.8, 0.8)(x)
    dropped = (out == 0).all(dim=1, keepdim=True)
    expected = hot.clone()
    expected[1, 0, 2, 2] = True
    assert torch.equal(dropped, expected)
    assert torch.equal(out[~dropped.expand_as(out)], x[~dropped.expand_as(x)])


def test_spatial_dropout_zeroes_whole_channels() -> None:
    torch.manual_seed(0)
    module = SpatialDropout(0.5).train()
    out = module(torch.ones(4, 32, 5, 6))
    per_channel = out.flatten(2)
    zero = (per_channel == 0).all(dim=2)
    assert torch.all(zero | (per_channel == 2.0).all(dim=2))  # kept channels rescaled by 1/(1-p)
    assert 0 < zero.sum() < zero.numel()
    assert torch.equal(module.eval()(torch.ones(1, 3, 2, 2)), torch.ones(1, 3, 2, 2))


def test_object_and_context_masking_select_what_they_say() -> None:
    x = torch.rand(2, 5, 8, 10) + 0.5
    logits = _logits_with_object(2, 32, 40, (8, 20, 4, 24))  # feature cells rows 2..4, cols 1..5
    obj = torch.zeros(2, 1, 8, 10, dtype=torch.bool)
    obj[:, :, 2:5, 1:6] = True
    no_object = ObjectMasking()(x, main_logits=logits)
    only_object = ContextMasking()(x, main_logits=logits)
    assert no_object.shape == only_object.shape == x.shape
    assert torch.all(no_object[obj.expand_as(x)] == 0)
    assert torch.equal(no_object[~obj.expand_as(x)], x[~obj.expand_as(x)])
    assert torch.all(only_object[~obj.expand_as(x)] == 0)
    assert torch.equal(only_object[obj.expand_as(x)], x[obj.expand_as(x)])
    # Any non-background class counts as object.
    other = _logits_with_object(2, 32, 40, (8, 20, 4, 24), cls=2)
    assert torch.equal(ObjectMasking()(x, main_logits=other), no_object)
    with pytest.raises(ValueError, match="main prediction"):
        ObjectMasking()(x)


def test_cutout_erases_forty_percent_of_each_object_box() -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 3, 20, 20) + 0.5
    logits = torch.zeros(1, 3, 20, 20)
    logits[:, 0] = 1.0
    logits[:, 1, 0:10, 0:10] = 5.0  # object A: 10x10 box
    logits[:, 2, 12:17, 10:20] = 5.0  # object B: 5x10 box
    out = Cutout(0.4)(x, main_logits=logits)
    erased = (out == 0).all(dim=1)[0]
    assert erased[0:10, 0:10].sum() == 16  # 4x4
    assert erased[12:17, 10:20].sum() == 2 * 4
    assert erased.sum() == 16 + 8  # nothing outside the boxes
    ys, xs = torch.nonzero(erased[0:10, 0:10], as_tuple=True)
    assert ys.max() - ys.min() == 3 and xs.max() - xs.min() == 3  # one contiguous 4x4 block


def test_connected_components_separates_objects() -> None:
    mask = torch.zeros(1, 1, 5, 7)
    mask[0, 0, 0:2, 0:2] = 1
    mask[0, 0, 3:5, 4:7] = 1
    labels = connected_components(mask)[0, 0]
    assert len(labels.unique()) == 3
    assert len(labels[0:2, 0:2].unique()) == 1 and len(labels[3:5, 4:7].unique()) == 1


def _vat_setup():
    torch.manual_seed(0)
    head = torch.nn.Conv2d(6, 3, 1)
    size = (16, 20)

    def decoder(f: torch.Tensor) -> torch.Tensor:
        return F.interpolate(head(f), size=size, mode="bilinear", align_corners=False)

    x = torch.rand(3, 6, 4, 5) * 4.0  # post-ReLU-like features
    main = torch.randn(3, 3, *size)
    return head, decoder, x, main


def test_vat_perturbation_has_norm_relative_to_features_and_is_adversarial() -> None:
    head, decoder, x, main = _vat_setup()
    x.requires_grad_(True)
    vat = VAT(xi=1e-6, eps=0.1)
    out = vat(x, main_logits=main, decoder=decoder)
    r = (out - x).detach()
    assert out.shape == x.shape
    expected = 0.1 * x.detach().flatten(1).norm(dim=1)
    torch.testing.assert_close(r.flatten(1).norm(dim=1), expected, rtol=1e-4, atol=1e-4)
    assert head.weight.grad is None  # the direction search leaves no parameter gradients
    out.sum().backward()
    assert x.grad is not None  # the perturbed features still carry gradient to the encoder

    # The adversarial direction raises the KL to the main prediction more than a random one does.
    target = F.softmax(main, dim=1)

    def kl(f: torch.Tensor) -> float:
        return float(F.kl_div(F.log_softmax(decoder(f), dim=1), target, reduction="batchmean"))

    base = x.detach()
    rand = torch.randn_like(base)
    rand = expected.view(-1, 1, 1, 1) * rand / rand.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    with torch.no_grad():
        assert kl(base + r) > kl(base + rand)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_vat_direction_under_autocast_matches_the_float32_one(dtype: torch.dtype) -> None:
    """Under mixed precision (half-type features, autocast decoder) VAT finds the float32 direction.

    Shapes of the default placement: a 128-channel stride-16 map, logits at stride 4.
    """
    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Conv2d(128, 16, 1), torch.nn.ReLU(), torch.nn.Conv2d(16, 3, 1))

    def decoder(f: torch.Tensor) -> torch.Tensor:
        return F.interpolate(head(f), size=(56, 72), mode="bilinear", align_corners=False)

    x = torch.rand(4, 128, 14, 18) * 2.0
    main = torch.randn(4, 3, 56, 72) * 3.0
    vat = VAT()
    torch.manual_seed(1)
    exact = vat.adversarial_direction(x, main, decoder)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=dtype):
        mixed = vat.adversarial_direction(x.to(dtype), main.to(dtype), decoder)
    cosine = F.cosine_similarity(exact.flatten(1), mixed.float().flatten(1), dim=1)
    assert torch.all(cosine > 0.99), cosine
