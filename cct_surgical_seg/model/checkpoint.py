"""Checkpoint files: one ``torch.save``d dict of tensors and plain types (docs/design.md).

Loaded with ``torch.load(weights_only=True)`` only, so opening a checkpoint never runs code from
the file. Writes are atomic (``io_utils.atomic_write_with``): a crash mid-save leaves the previous
checkpoint intact. Every failure to read one becomes a ``CheckpointError`` naming the file and the
reason, so the CLI and the ROS node can report it in one line.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cct_surgical_seg.io_utils import atomic_write_with
from cct_surgical_seg.model.config import ModelConfig
from cct_surgical_seg.model.deeplab import Segmenter

CHECKPOINT_FORMAT = "cct_surgical_seg/checkpoint-v1"
REQUIRED_KEYS = ("format", "model_config", "segmenter")
OPTIONAL_KEYS = ("aux_config", "aux_decoders", "train_state", "metrics")


class CheckpointError(RuntimeError):
    """A checkpoint could not be read or does not fit; ``path`` and ``reason`` say why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def make_payload(
    segmenter: nn.Module,
    model_config: ModelConfig,
    *,
    aux_config: Mapping[str, Any] | None = None,
    aux_decoders: nn.Module | None = None,
    train_state: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict for a segmenter (+ optional CCT and training state)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "model_config": model_config.to_dict(),
        "segmenter": segmenter.state_dict(),
        "aux_config": dict(aux_config) if aux_config is not None else None,
        "aux_decoders": aux_decoders.state_dict() if aux_decoders is not None else None,
        "train_state": dict(train_state) if train_state is not None else None,
        "metrics": dict(metrics) if metrics is not None else {},
    }


def save_checkpoint(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> None:
    """Validate the header of ``payload`` and write it atomically to ``path``."""
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise ValueError(f"checkpoint payload lacks required keys {missing}")
    if payload["format"] != CHECKPOINT_FORMAT:
        raise ValueError(
            f"checkpoint payload format must be {CHECKPOINT_FORMAT!r}, got {payload['format']!r}"
        )
    data = dict(payload)
    for key in OPTIONAL_KEYS:
        data.setdefault(key, None)
    atomic_write_with(path, lambda handle: torch.save(data, handle))


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and check a checkpoint; raise CheckpointError for missing/empty/corrupt/foreign files."""
    file = Path(path)
    if not file.exists():
        raise CheckpointError(file, "file not found")
    if not file.is_file():
        raise CheckpointError(file, "not a regular file")
    if file.stat().st_size == 0:
        raise CheckpointError(file, "file is empty")
    try:
        data = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, zipfile errors...
        raise CheckpointError(file, f"not a readable checkpoint: {_unreadable_reason(file, exc)}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(file, f"not a cct_surgical_seg checkpoint (top level is {type(data).__name__})")
    if "format" not in data:
        raise CheckpointError(file, "not a cct_surgical_seg checkpoint (no 'format' key)")
    if data["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(file, f"unsupported format {data['format']!r} (expected {CHECKPOINT_FORMAT!r})")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise CheckpointError(file, f"missing keys {missing}")
    if not isinstance(data["model_config"], dict) or not isinstance(data["segmenter"], dict):
        raise CheckpointError(file, "'model_config' and 'segmenter' must be dicts")
    for key in OPTIONAL_KEYS:
        data.setdefault(key, None)
    return data


_EXPECTED = "expected a cct_surgical_seg checkpoint (cct-train's last.pt or best.pt)"


def _unreadable_reason(file: Path, exc: Exception) -> str:
    """What the file is, in one line, instead of torch's multi-paragraph weights_only advice."""
    if file.suffix.lower() == ".onnx":
        return f"an ONNX model (ONNX models run with cct-infer and the node); {_EXPECTED}"
    text = str(exc)
    if "Weights only load failed" in text:
        pickled = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        what = f" (it pickles {pickled.group(1)})" if pickled else ""
        return (
            f"a PyTorch file that holds Python objects, not only tensors and plain types{what}, "
            f"e.g. a whole pickled model; {_EXPECTED}, which loads with weights_only=True"
        )
    with file.open("rb") as f:
        head = f.read(4)
    if head[:2] == b"PK" or head[:1] == b"\x80":  # torch's zip format / a legacy pickle
        first_line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        return f"a truncated or corrupt PyTorch file ({first_line.split('. ')[0][:120]}); {_EXPECTED}"
    return f"not a PyTorch file (it starts with {head!r}); {_EXPECTED}"


def model_config_from_checkpoint(
    data: Mapping[str, Any], path: str | os.PathLike[str] = "<checkpoint>"
) -> ModelConfig:
    """The ModelConfig stored in a loaded checkpoint (CheckpointError if invalid)."""
    try:
        return ModelConfig.from_dict(data["model_config"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(path, f"invalid model_config: {exc}") from exc


def check_state_dict(
    model: nn.Module, state: Mapping[str, Any], path: str | os.PathLike[str], what: str
) -> None:
    """Raise CheckpointError naming missing/unexpected/shape-mismatched keys of ``state``."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and (not torch.is_tensor(state[k]) or tuple(state[k].shape) != tuple(expected[k].shape))
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys {missing[:8]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys {unexpected[:8]}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches {mismatched[:8]}")
        raise CheckpointError(path, f"{what} weights do not match the model config: " + "; ".join(parts))


def load_segmenter(path: str | os.PathLike[str], map_location: str | torch.device = "cpu"):
    """Rebuild the Segmenter from a checkpoint -> ``(segmenter in eval mode, ModelConfig)``.

    The network is built with ``pretrained=False`` (the checkpoint holds all weights, no need to
    read ImageNet ones); the returned config is the stored one.
    """
    data = load_checkpoint(path, map_location=map_location)
    cfg = model_config_from_checkpoint(data, path)
    segmenter = Segmenter(dataclasses.replace(cfg, pretrained=False))
    check_state_dict(segmenter, data["segmenter"], path, "segmenter")
    segmenter.load_state_dict(data["segmenter"], strict=True)
    segmenter.cfg = cfg
    segmenter.to(map_location).eval()
    return segmenter, cfg
