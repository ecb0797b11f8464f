"""TrainConfig: config/train.yaml + ``--set a.b=value`` overrides, checked before anything runs.

Sections are small dataclasses so that a typo (``optim.lr_rate``) fails at start-up with the
known keys listed, instead of being silently ignored. ``model`` and ``aux`` are kept as plain
dicts and checked by their owners (``ModelConfig.from_dict``, ``AuxConfig``), so this file does
not need to change when the model grows a knob. The whole resolved config is stored in every
checkpoint (plain types only) and written to ``RUN_DIR/config.yaml``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from cct_surgical_seg.train.appearance import AppearanceConfig

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


class ConfigError(ValueError):
    """The training configuration is invalid; the message names the key."""


@dataclasses.dataclass
class PoissonSection:
    count: int = 0
    seed: int = 0
    max_shift: float = 0.0
    flip_prob: float = 0.5
    margin: int = 3


@dataclasses.dataclass
class SyntheticSection:
    frames: int = 240
    unlabelled: int = 480
    width: int = 320
    height: int = 256
    sequences: int = 5
    seed: int = 0


@dataclasses.dataclass
class DataSection:
    root: str | None = None
    val_fraction: float = 0.2
    split_seed: int = 0
    label_fraction: float = 1.0
    label_seed: int = 0
    crop_size: list[int] = dataclasses.field(default_factory=lambda: [320, 320])
    eval_size: list[int] | None = dataclasses.field(default_factory=lambda: [512, 640])
    scale_range: list[float] = dataclasses.field(default_factory=lambda: [0.75, 1.5])
    hflip: bool = True
    vflip: bool = False
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02
    ignore_index: int = 255
    batch_size: int = 8
    unlabelled_batch_size: int = 8
    eval_batch_size: int = 4
    num_workers: int = 2
    extra_unlabelled: list[str] = dataclasses.field(default_factory=list)
    video_stride: int = 10
    appearance: AppearanceConfig = dataclasses.field(default_factory=AppearanceConfig)
    poisson: PoissonSection = dataclasses.field(default_factory=PoissonSection)
    synthetic: SyntheticSection = dataclasses.field(default_factory=SyntheticSection)


@dataclasses.dataclass
class OptimSection:
    name: str = "sgd"
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 1e-4
    backbone_lr_mult: float = 0.1
    aux_lr_mult: float = 1.0
    poly_power: float = 0.9
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float = 0.0


@dataclasses.dataclass
class TrainSection:
    warmup_steps: int = 1000
    cct_steps: int = 9000
    consistency_weight: float = 30.0
    rampup_fraction: float = 0.1
    consistency_on_labelled: bool = True
    consistency_target: str = "main"
    confidence_threshold: float = 0.0
    strong_view: bool = False
    class_weights: list[float] | None = None
    val_every: int = 500
    checkpoint_every: int = 500
    log_every: int = 10
    best_metric: str = "mean_dice"
    ema_decay: float = 0.999
    progress: bool = True
    tensorboard: bool = True


@dataclasses.dataclass
class TrainConfig:
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    deterministic: bool = False
    model: dict[str, Any] = dataclasses.field(default_factory=dict)
    aux: dict[str, Any] = dataclasses.field(default_factory=dict)
    data: DataSection = dataclasses.field(default_factory=DataSection)
    optim: OptimSection = dataclasses.field(default_factory=OptimSection)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)

    @property
    def total_steps(self) -> int:
        return self.train.warmup_steps + self.train.cct_steps

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML and ``weights_only`` checkpoint safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        cfg = _build(cls, data, "")
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Cross-field checks that a dataclass cannot express."""
        d, o, t = self.data, self.optim, self.train
        if len(d.crop_size) != 2 or min(d.crop_size) < 8:
            raise ConfigError(f"data.crop_size must be [H, W] >= 8, got {d.crop_size}")
        if d.eval_size is not None and (len(d.eval_size) != 2 or min(d.eval_size) < 8):
            raise ConfigError(f"data.eval_size must be [H, W] or null, got {d.eval_size}")
        if len(d.scale_range) != 2 or not 0 < d.scale_range[0] <= d.scale_range[1]:
            raise ConfigError(f"data.scale_range must be [min, max] with 0 < min <= max, got {d.scale_range}")
        if not 0 < d.label_fraction <= 1:
            raise ConfigError(f"data.label_fraction must be in (0, 1], got {d.label_fraction}")
        if not 0 <= d.val_fraction < 1:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {d.val_fraction}")
        for name in ("batch_size", "unlabelled_batch_size", "eval_batch_size"):
            if getattr(d, name) < 1:
                raise ConfigError(f"data.{name} must be >= 1")
        if d.video_stride < 1:
            raise ConfigError("data.video_stride must be >= 1")
        if d.num_workers < 0:
            raise ConfigError("data.num_workers must be >= 0")
        if o.name not in ("sgd", "adamw"):
            raise ConfigError(f"optim.name must be 'sgd' or 'adamw', got {o.name!r}")
        if o.lr <= 0 or o.backbone_lr_mult < 0 or o.aux_lr_mult <= 0:
            raise ConfigError("optim.lr and optim.aux_lr_mult must be > 0 and optim.backbone_lr_mult >= 0")
        if t.warmup_steps < 0 or t.cct_steps < 0 or self.total_steps < 1:
            raise ConfigError("train.warmup_steps and train.cct_steps must be >= 0 with a positive sum")
        if not 0 <= t.rampup_fraction <= 1:
            raise ConfigError(f"train.rampup_fraction must be in [0, 1], got {t.rampup_fraction}")
        if t.best_metric not in ("mean_dice", "mean_iou", "binary_dice", "binary_iou", "mean_iou_all"):
            raise ConfigError(f"train.best_metric {t.best_metric!r} is not a reported metric")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if t.consistency_target not in ("main", "ema"):
            raise ConfigError(f"train.consistency_target must be main or ema, got {t.consistency_target!r}")
        if t.consistency_target == "ema" and t.ema_decay <= 0:
            raise ConfigError("train.consistency_target 'ema' needs train.ema_decay > 0")
        if not 0 <= t.confidence_threshold < 1:
            raise ConfigError(f"train.confidence_threshold must be in [0, 1), got {t.confidence_threshold}")
        if not 0 <= t.ema_decay < 1:
            raise ConfigError(f"train.ema_decay must be in [0, 1) (0 = off), got {t.ema_decay}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(
            f"unknown config key(s) {[prefix + k for k in unknown]} in {where}; known: {sorted(fields)}"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        default = (
            fields[name].default_factory()
            if fields[name].default_factory is not dataclasses.MISSING
            else fields[name].default
        )
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value or {}, f"{prefix}{name}.")
        elif isinstance(default, dict):
            if value is not None and not isinstance(value, Mapping):
                raise ConfigError(f"{prefix}{name} must be a mapping")
            kwargs[name] = dict(value or {})
        else:
            kwargs[name] = _coerce(value, default, f"{prefix}{name}")
    return cls(**kwargs)


def _coerce(value: Any, default: Any, key: str) -> Any:
    """Check a leaf against its default's type (ints become floats where floats are expected)."""
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true/false, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, float) and isinstance(value, str):  # YAML 1.1 reads "5e-3" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(default, int) and isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(default, str) and isinstance(value, str):
        return value
    if isinstance(default, list) and isinstance(value, (list, tuple)):
        return list(value)
    name = type(default).__name__
    raise ConfigError(f"{key} must be {'an' if name[0] in 'aeiou' else 'a'} {name}, got {value!r}")


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` strings (value parsed as YAML: ``1e-3``, ``[256, 320]``, ``null``)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part} is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def load_config(path: str | Path | None, overrides: Iterable[str] = ()) -> TrainConfig:
    """Read a YAML file (None = all defaults), apply overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file {file} not found")
        loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{file}: top level must be a mapping")
        data = loaded or {}
    return TrainConfig.from_dict(apply_overrides(data, overrides))


def dump_config(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
