"""config/train.yaml equals the built-in defaults; overrides and typos are handled."""

from __future__ import annotations

from pathlib import Path

import pytest

from cct_surgical_seg.model.cct import AuxConfig
from cct_surgical_seg.model.config import ModelConfig
from cct_surgical_seg.train import data as D
from cct_surgical_seg.train.config import ConfigError, TrainConfig, load_config

YAML = Path(__file__).resolve().parents[2] / "config" / "train.yaml"


def test_shipped_yaml_matches_defaults_and_reference() -> None:
    cfg = load_config(YAML)
    defaults = TrainConfig().to_dict()
    loaded = cfg.to_dict()
    sections = ("seed", "device", "precision", "channels_last", "deterministic", "data", "optim", "train")
    for section in sections:
        assert loaded[section] == defaults[section], section
    assert ModelConfig.from_dict(cfg.model) == ModelConfig()
    assert AuxConfig.from_dict(cfg.aux) == AuxConfig() and AuxConfig.from_dict(cfg.aux).total == 30
    assert (
        cfg.optim.lr,
        cfg.optim.momentum,
        cfg.optim.weight_decay,
        cfg.optim.backbone_lr_mult,
        cfg.optim.poly_power,
        cfg.train.consistency_weight,
        cfg.train.rampup_fraction,
    ) == (1e-2, 0.9, 1e-4, 0.1, 0.9, 30.0, 0.1)


def test_overrides_are_parsed_as_yaml() -> None:
    cfg = load_config(
        YAML,
        [
            "optim.lr=5e-3",
            "data.crop_size=[256, 320]",
            "data.eval_size=null",
            "model.pretrained=false",
            "train.cct_steps=0",
            "data.poisson.count=3",
        ],
    )
    assert cfg.optim.lr == 5e-3 and cfg.data.crop_size == [256, 320] and cfg.data.eval_size is None
    assert cfg.model["pretrained"] is False and cfg.total_steps == 1000 and cfg.data.poisson.count == 3


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("optim.lr_rate=1", "optim.lr_rate"),
        ("train.best_metric=accuracy", "best_metric"),
        ("data.label_fraction=0", "label_fraction"),
        ("optim.name=adam", "optim.name"),
        ("train.warmup_steps=abc", "train.warmup_steps"),
        ("nonsense", "key=value"),
    ],
)
def test_bad_values_name_the_key(override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_config(None, [override])


def test_augmentation_is_read_from_the_data_section() -> None:
    cfg = load_config(YAML, ["data.crop_size=[256, 320]", "data.hue=0.07", "data.vflip=true"])
    aug = D.AugmentConfig.from_data(cfg.data)
    assert (aug.crop_size, aug.hue, aug.vflip) == ((256, 320), 0.07, True)
    assert aug.scale_range == tuple(cfg.data.scale_range) and aug.appearance == cfg.data.appearance
