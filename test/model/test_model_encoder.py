"""EfficientNet-Lite0: feature shapes/strides and the strict ImageNet weight mapping."""

from __future__ import annotations

import pytest
import torch

from cct_surgical_seg.model.encoder import (
    DROPPED_PRETRAINED_PREFIXES,
    EfficientNetLite,
    PretrainedWeightsError,
    build_encoder,
    default_pretrained_path,
    load_pretrained,
    map_pretrained_state_dict,
)


@pytest.fixture(scope="module")
def imagenet_state() -> dict[str, torch.Tensor]:
    return torch.load(default_pretrained_path(), map_location="cpu", weights_only=True)


@pytest.mark.parametrize(("output_stride", "high_hw"), [(16, (4, 5)), (8, (8, 10))])
def test_feature_shapes(output_stride: int, high_hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    enc = EfficientNetLite(output_stride).eval()
    with torch.no_grad():
        feats = enc(torch.randn(2, 3, 64, 80))
    assert feats.low.shape == (2, 24, 16, 20)
    assert feats.high.shape == (2, 320, *high_hw)


def test_imagenet_weights_load_every_key(imagenet_state: dict[str, torch.Tensor]) -> None:
    enc = EfficientNetLite(16)
    used = [k for k in imagenet_state if not k.startswith(DROPPED_PRETRAINED_PREFIXES)]
    mapped = map_pretrained_state_dict(imagenet_state, enc)
    assert set(mapped) == set(enc.state_dict())
    assert len(mapped) == len(used)
    load_pretrained(enc)
    # The weights really arrived (not just a shape check).
    assert torch.equal(enc.stem_conv.weight, imagenet_state["_conv_stem.weight"])
    assert torch.equal(enc.blocks[15].project_bn.running_var, imagenet_state["_blocks.15._bn2.running_var"])
    assert torch.equal(
        enc.blocks[3].depthwise_conv.weight, imagenet_state["_blocks.3._depthwise_conv.weight"]
    )


def test_only_head_and_classifier_are_dropped(imagenet_state: dict[str, torch.Tensor]) -> None:
    dropped = {k for k in imagenet_state if k.startswith(DROPPED_PRETRAINED_PREFIXES)}
    assert {k.split(".")[0] for k in dropped} == {"_conv_head", "_bn1", "_fc"}
    assert not any(k.startswith("_blocks") for k in dropped)


def test_missing_key_is_named(imagenet_state: dict[str, torch.Tensor]) -> None:
    broken = dict(imagenet_state)
    del broken["_blocks.7._expand_conv.weight"]
    with pytest.raises(PretrainedWeightsError, match=r"missing keys.*blocks\.7\.expand_conv\.weight"):
        map_pretrained_state_dict(broken, EfficientNetLite(16))


def test_unexpected_and_mismatched_keys_are_named(imagenet_state: dict[str, torch.Tensor]) -> None:
    broken = dict(imagenet_state)
    broken["_blocks.3._se_reduce.weight"] = torch.zeros(1)
    broken["_blocks.0._project_conv.weight"] = torch.zeros(8, 32, 1, 1)
    with pytest.raises(PretrainedWeightsError) as info:
        map_pretrained_state_dict(broken, EfficientNetLite(16))
    message = str(info.value)
    assert "_blocks.3._se_reduce.weight" in message
    assert "blocks.0.project_conv.weight" in message and "(8, 32, 1, 1)" in message


def test_unreadable_weight_file_fails_clearly(tmp_path) -> None:
    bad = tmp_path / "lite0.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(PretrainedWeightsError, match=r"lite0\.pth"):
        load_pretrained(EfficientNetLite(16), bad)


@pytest.mark.parametrize(
    ("variant", "high", "blocks"), [("efficientnet_lite1", 320, 21), ("efficientnet_lite2", 352, 21)]
)
def test_larger_lite_variants_take_their_imagenet_weights(variant: str, high: int, blocks: int) -> None:
    """Lite1/Lite2 follow the Lite scaling (unscaled first/last stage); their shipped weights fit exactly."""
    enc = build_encoder(16, pretrained=True, variant=variant).eval()
    assert enc.high_channels == high and len(enc.blocks) == blocks
    feats = enc(torch.randn(1, 3, 64, 96))
    assert feats.low.shape == (1, 24, 16, 24) and feats.high.shape == (1, high, 4, 6)
