"""ModelConfig: everything needed to rebuild a Segmenter, in plain types.

Plain types (str, int, float, bool, tuples) so that the same object round-trips through YAML
training configs, checkpoints (``torch.load(weights_only=True)`` accepts only plain types) and
ONNX metadata (JSON). ``to_dict`` emits lists instead of tuples because YAML's safe dumper and
JSON know lists only; ``from_dict`` turns them back into tuples.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

SUPPORTED_ENCODERS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
SUPPORTED_OUTPUT_STRIDES = (8, 16)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of the deployable DeepLabV3+ segmenter (see docs/design.md).

    Class 0 is always background: the CCT object/context masking perturbations and the
    instrument pose code rely on it.
    """

    num_classes: int = 3
    class_names: tuple[str, ...] = ("background", "shaft", "manipulator")
    encoder: str = "efficientnet_lite0"
    pretrained: bool = True
    output_stride: int = 16
    aspp_rates: tuple[int, ...] = (6, 12, 18)
    aspp_channels: int = 128
    decoder_channels: int = 128
    low_level_channels: int = 48
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        # Accept lists (YAML/JSON) but store tuples, so the config stays hashable and immutable.
        for name in ("class_names", "aspp_rates", "mean", "std"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, name, tuple(value))
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent field."""
        if not _is_int(self.num_classes) or self.num_classes < 2:
            raise ValueError(
                f"num_classes must be an int >= 2 (background + >= 1 class), got {self.num_classes!r}"
            )
        if not isinstance(self.class_names, tuple) or not all(
            isinstance(n, str) and n for n in self.class_names
        ):
            raise ValueError(f"class_names must be a sequence of non-empty strings, got {self.class_names!r}")
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"len(class_names)={len(self.class_names)} does not match num_classes={self.num_classes}"
            )
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names must be unique, got {self.class_names!r}")
        if self.encoder not in SUPPORTED_ENCODERS:
            raise ValueError(f"encoder must be one of {SUPPORTED_ENCODERS}, got {self.encoder!r}")
        if not isinstance(self.pretrained, bool):
            raise ValueError(f"pretrained must be a bool, got {self.pretrained!r}")
        if self.output_stride not in SUPPORTED_OUTPUT_STRIDES or not _is_int(self.output_stride):
            raise ValueError(f"output_stride must be 8 or 16, got {self.output_stride!r}")
        if (
            not isinstance(self.aspp_rates, tuple)
            or len(self.aspp_rates) != 3
            or not all(_is_int(r) and r >= 1 for r in self.aspp_rates)
        ):
            raise ValueError(f"aspp_rates must be three positive ints (for OS 16), got {self.aspp_rates!r}")
        for name in ("aspp_channels", "decoder_channels", "low_level_channels"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if (
                not isinstance(value, tuple)
                or len(value) != 3
                or not all(_is_number(v) and math.isfinite(v) for v in value)
            ):
                raise ValueError(f"{name} must be three finite numbers (RGB), got {value!r}")
        if not all(s > 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std!r}")

    # ------------------------------------------------------------------ derived values
    @property
    def effective_aspp_rates(self) -> tuple[int, ...]:
        """ASPP dilation rates at the configured output stride.

        ``aspp_rates`` are given for OS 16 (the DeepLab convention); at OS 8 the feature map is
        twice as large, so the rates double to keep the same receptive field in pixels.
        """
        scale = 16 // self.output_stride
        return tuple(r * scale for r in self.aspp_rates)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain dict with lists for sequences (YAML/JSON/checkpoint safe)."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Build from a dict; unknown keys raise ValueError (a typo must not be silently ignored).

        Missing keys take their defaults, so configs written by older versions still load.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"ModelConfig.from_dict expects a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys: {unknown} (known: {sorted(known)})")
        return cls(**dict(data))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
