"""What a deployed model promises: class names, input size, normalisation, extra outputs.

The ONNX file carries this in ``metadata_props`` (docs/design.md, "ONNX model"), so a model file
is self-describing: the ROS node publishes ``LabelInfo`` and the pipeline picks its resize target
from the model alone, without a side-car YAML that could drift from the weights.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cct_surgical_seg.deploy.errors import ModelLoadError

ONNX_FORMAT = "cct-onnx-v1"
INPUT_NAME = "image"
PROBS_NAME = "probs"
DISAGREEMENT_NAME = "disagreement"

KEY_FORMAT = "cct.format"
KEY_CLASS_NAMES = "cct.class_names"
KEY_INPUT_SIZE = "cct.input_size"
KEY_MEAN = "cct.mean"
KEY_STD = "cct.std"
KEY_MODEL_CONFIG = "cct.model_config"
REQUIRED_KEYS = (KEY_FORMAT, KEY_CLASS_NAMES, KEY_INPUT_SIZE, KEY_MEAN, KEY_STD)


@dataclass(frozen=True)
class ModelInfo:
    """Static facts about a deployed model; ``input_size`` is ``(H, W)`` or ``None`` if dynamic."""

    class_names: tuple[str, ...]
    input_size: tuple[int, int] | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    has_disagreement: bool = False

    def __post_init__(self) -> None:
        if len(self.class_names) < 2:
            raise ValueError(f"a segmentation model needs >= 2 classes, got {self.class_names!r}")
        if self.input_size is not None and (len(self.input_size) != 2 or min(self.input_size) < 1):
            raise ValueError(f"input_size must be (H, W) with positive sides, got {self.input_size!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std need one value per RGB channel")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_metadata(self, model_config: Mapping[str, Any] | None = None) -> dict[str, str]:
        """The ``metadata_props`` an export writes (all values JSON, so any runtime can parse them)."""
        props = {
            KEY_FORMAT: ONNX_FORMAT,
            KEY_CLASS_NAMES: json.dumps(list(self.class_names)),
            KEY_INPUT_SIZE: json.dumps(list(self.input_size) if self.input_size else None),
            KEY_MEAN: json.dumps(list(self.mean)),
            KEY_STD: json.dumps(list(self.std)),
        }
        if model_config is not None:
            props[KEY_MODEL_CONFIG] = json.dumps(dict(model_config))
        return props

    @classmethod
    def from_metadata(
        cls, props: Mapping[str, str], output_names: Sequence[str], source: str = "model"
    ) -> ModelInfo:
        """Parse ``metadata_props``; ``ModelLoadError`` names the file and the missing/bad key."""
        missing = [key for key in REQUIRED_KEYS if key not in props]
        if missing:
            raise ModelLoadError(
                f"{source}: not a cct_surgical_seg ONNX export (metadata lacks {', '.join(missing)}); "
                "export it with cct-export"
            )
        if props[KEY_FORMAT] != ONNX_FORMAT:
            raise ModelLoadError(
                f"{source}: unsupported format {props[KEY_FORMAT]!r}, expected {ONNX_FORMAT!r}"
            )
        try:
            size = json.loads(props[KEY_INPUT_SIZE])
            return cls(
                class_names=tuple(str(n) for n in json.loads(props[KEY_CLASS_NAMES])),
                input_size=None if size is None else (int(size[0]), int(size[1])),
                mean=tuple(float(v) for v in json.loads(props[KEY_MEAN])),  # type: ignore[arg-type]
                std=tuple(float(v) for v in json.loads(props[KEY_STD])),  # type: ignore[arg-type]
                has_disagreement=DISAGREEMENT_NAME in output_names,
            )
        except (ValueError, TypeError, IndexError) as exc:
            raise ModelLoadError(f"{source}: malformed cct metadata: {exc}") from exc


def read_onnx_info(path: str | os.PathLike[str]) -> ModelInfo:
    """Read ``ModelInfo`` from an ONNX file without creating an inference session."""
    import onnx

    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several unrelated types for a bad file
        raise ModelLoadError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    props = {p.key: p.value for p in model.metadata_props}
    outputs = [o.name for o in model.graph.output]
    return ModelInfo.from_metadata(props, outputs, source=str(path))
