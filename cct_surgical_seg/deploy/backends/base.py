"""The one interface every inference runtime implements.

The pipeline never knows which runtime it drives: each backend takes the same float32
``N,3,H,W`` RGB 0..255 batch (normalisation lives inside the model, so a backend cannot get
it wrong) and returns softmax probabilities at the same size.
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cct_surgical_seg.deploy.errors import ImageFormatError, ModelLoadError
from cct_surgical_seg.deploy.model_info import ModelInfo

ZIP_MAGIC = b"PK\x03\x04"  # torch.save files are zip archives


@dataclass
class BackendOutput:
    """``probs`` float32 ``N,C,H,W``; ``disagreement`` float32 ``N`` (uncertainty exports only)."""

    probs: np.ndarray
    disagreement: np.ndarray | None = None


class Backend(abc.ABC):
    """A loaded model on one runtime. Construct through ``create_backend``."""

    name: str = "backend"
    info: ModelInfo
    #: Human-readable "why this backend" (set by ``create_backend("auto")``), for logs/diagnostics.
    selection_reason: str = ""

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> BackendOutput:
        """Run the network on a float32 ``N,3,H,W`` RGB 0..255 batch."""

    def describe(self) -> str:
        """One line naming runtime and device, e.g. ``onnxruntime[CPUExecutionProvider]``."""
        return self.name

    def close(self) -> None:  # noqa: B027 - optional hook, most runtimes free on GC
        """Release runtime resources early (optional)."""

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        """Validate the batch contract here so every runtime fails with the same clear message."""
        if not isinstance(batch, np.ndarray) or batch.dtype != np.float32 or batch.ndim != 4:
            raise ImageFormatError(
                f"{self.name}: expected a float32 N,3,H,W array, got "
                f"{getattr(batch, 'dtype', type(batch).__name__)} {getattr(batch, 'shape', '')}"
            )
        if batch.shape[1] != 3:
            raise ImageFormatError(f"{self.name}: expected 3 channels (RGB), got shape {batch.shape}")
        size = self.info.input_size
        if size is not None and tuple(batch.shape[2:]) != tuple(size):
            raise ImageFormatError(
                f"{self.name}: model input is fixed at {size[0]}x{size[1]}, "
                f"got {batch.shape[2]}x{batch.shape[3]}"
            )
        return np.ascontiguousarray(batch)


def check_model_file(path: str | os.PathLike[str], kind: str) -> Path:
    """Fail early with a readable message for the commonest start-up mistakes.

    Runtimes report an empty or missing file with cryptic protobuf/zip messages; checking here
    names the file and what was expected.
    """
    p = Path(path)
    what = kind if kind.endswith("model") else f"{kind} model"  # "model", "ONNX" -> "ONNX model"
    if not p.is_file():
        raise ModelLoadError(f"{what} file not found: {p}")
    size = p.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{what} file is empty: {p}")
    return p


def is_zip_file(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == ZIP_MAGIC
