"""ModelConfig: defaults, round trips and the validation errors other layers rely on."""

from __future__ import annotations

import json

import pytest

from cct_surgical_seg.model.config import ModelConfig


def test_defaults_match_design() -> None:
    cfg = ModelConfig()
    assert cfg.num_classes == 3
    assert cfg.class_names == ("background", "shaft", "manipulator")
    assert cfg.output_stride == 16 and cfg.aspp_rates == (6, 12, 18)
    assert cfg.effective_aspp_rates == (6, 12, 18)
    assert ModelConfig(output_stride=8).effective_aspp_rates == (12, 24, 36)


def test_round_trip_through_json() -> None:
    cfg = ModelConfig(num_classes=2, class_names=("background", "tool"), output_stride=8, pretrained=False)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert isinstance(data["class_names"], list)
    back = ModelConfig.from_dict(data)
    assert back == cfg
    assert isinstance(back.mean, tuple)


def test_unknown_keys_are_named() -> None:
    data = ModelConfig().to_dict()
    data["outptu_stride"] = 8
    with pytest.raises(ValueError, match="outptu_stride"):
        ModelConfig.from_dict(data)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"output_stride": 32}, "output_stride"),
        ({"num_classes": 1, "class_names": ("background",)}, "num_classes"),
        ({"num_classes": 4}, "len\\(class_names\\)"),
        ({"encoder": "resnet50"}, "encoder"),
        ({"aspp_rates": (6, 12)}, "aspp_rates"),
        ({"decoder_channels": 0}, "decoder_channels"),
        ({"std": (0.2, 0.0, 0.2)}, "std"),
        ({"mean": (0.5, 0.5)}, "mean"),
        ({"class_names": ("background", "background", "x")}, "unique"),
    ],
)
def test_invalid_values_raise(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        ModelConfig(**kwargs)
