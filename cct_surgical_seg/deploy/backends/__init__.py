"""Inference runtimes behind one interface, and ``create_backend`` to pick one.

``auto`` prefers the fastest runtime that works on this machine: native TensorRT, then ONNX
Runtime with CUDA, then ONNX Runtime on CPU. A GPU candidate that fails for any reason (not
installed, unsupported version, no GPU, an engine that does not build, ...) is skipped; each
skipped candidate's reason is logged once and kept in ``backend.selection_reason``, because "why
is this robot running on the CPU?" is the first question anyone asks when latency is high. A
kind asked for by name never falls back: it raises the one-line reason.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from cct_surgical_seg.deploy.backends.base import Backend, BackendOutput, check_model_file, is_zip_file
from cct_surgical_seg.deploy.errors import BackendUnavailableError, ModelLoadError

LOG = logging.getLogger(__name__)

KINDS = ("auto", "tensorrt", "onnxruntime-cuda", "onnxruntime", "torch")
_TRT_OPTIONS = {"precision", "cache_dir", "workspace_mb", "max_batch", "dynamic_profile", "device_index"}
_ORT_OPTIONS = {"device", "device_index", "num_threads", "spin"}
_TORCH_OPTIONS = {"device", "num_threads", "input_size", "uncertainty", "max_heads"}
#: ``auto``'s candidates, fastest first: (label, kind, option overrides).
_AUTO_CANDIDATES = (
    ("tensorrt", "tensorrt", {}),
    ("onnxruntime CUDA", "onnxruntime-cuda", {}),
    ("onnxruntime CPU", "onnxruntime", {"device": "cpu"}),
)

__all__ = ["KINDS", "Backend", "BackendOutput", "create_backend"]


def _pick(options: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k in allowed and v is not None}


def _make(kind: str, path: Path, options: dict[str, Any]) -> Backend:
    if kind in ("onnxruntime", "onnxruntime-cuda"):
        from cct_surgical_seg.deploy.backends.onnxruntime_backend import OnnxRuntimeBackend

        picked = _pick(options, _ORT_OPTIONS)
        return OnnxRuntimeBackend(
            path, **({**picked, "device": "cuda"} if kind == "onnxruntime-cuda" else picked)
        )
    if kind == "torch":
        from cct_surgical_seg.deploy.backends.torch_backend import TorchBackend

        return TorchBackend(path, **_pick(options, _TORCH_OPTIONS))
    if kind == "tensorrt":
        from cct_surgical_seg.deploy.backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(path, **_pick(options, _TRT_OPTIONS))
    raise ValueError(f"backend kind must be one of {KINDS}, got {kind!r}")


def _skip_reason(label: str, exc: Exception) -> str:
    """One line: why ``auto`` passed over a candidate."""
    if isinstance(exc, BackendUnavailableError):
        return " ".join(f"{label} unavailable ({exc})".split())
    return " ".join(f"{label} failed ({type(exc).__name__}: {exc})".split())


def _auto(path: Path, options: dict[str, Any]) -> Backend:
    if is_zip_file(path):
        backend = _make("torch", path, options)
        backend.selection_reason = (
            "auto: the model is a PyTorch checkpoint, which only the torch backend runs"
        )
        LOG.info("%s -> %s", backend.selection_reason, backend.describe())
        return backend
    skipped: list[str] = []
    for label, kind, override in _AUTO_CANDIDATES:
        last = kind == _AUTO_CANDIDATES[-1][1]
        try:
            backend = _make(kind, path, {**options, **override})
        except BackendUnavailableError as exc:
            skipped.append(_skip_reason(label, exc))
            if last:
                raise BackendUnavailableError("auto: no backend available: " + "; ".join(skipped)) from exc
            continue
        except Exception as exc:  # any failure of a GPU runtime falls back; the CPU one's is final
            if last:
                raise
            skipped.append(_skip_reason(label, exc))
            LOG.warning("auto: %s; falling back", skipped[-1])
            continue
        why = f"auto: picked {label}" + (
            f" because {'; '.join(skipped)}" if skipped else " (fastest available)"
        )
        backend.selection_reason = why
        LOG.info("%s -> %s", backend.selection_reason, backend.describe())
        return backend
    raise AssertionError("unreachable: the last candidate returns or raises")


def create_backend(kind: str, model_path: str | os.PathLike[str], **options: Any) -> Backend:
    """Load ``model_path`` on ``kind`` (one of ``KINDS``).

    Options (ignored where a runtime has no such knob, so one config serves every kind):
    ``device`` (onnxruntime: cpu|cuda|tensorrt; torch: cpu|cuda), ``device_index`` (CUDA device of
    onnxruntime's GPU providers and of tensorrt), ``num_threads``, ``spin`` (onnxruntime:
    busy-waiting worker threads, default off), ``input_size`` (torch),
    ``precision``/``cache_dir``/``workspace_mb``/``max_batch``/``dynamic_profile`` (tensorrt).
    ``onnxruntime-cuda`` is onnxruntime with ``device="cuda"``. ``ModelLoadError`` for a bad
    model file, ``BackendUnavailableError`` when the runtime is missing.
    """
    if kind not in KINDS:
        raise ValueError(f"backend kind must be one of {KINDS}, got {kind!r}")
    path = check_model_file(model_path, "model")
    if kind == "auto":
        return _auto(path, options)
    if kind != "torch" and is_zip_file(path):
        raise ModelLoadError(
            f"{path}: a PyTorch checkpoint cannot run on '{kind}'; use 'torch' or cct-export it"
        )
    backend = _make(kind, path, options)
    backend.selection_reason = f"requested {kind}"
    LOG.info("backend %s: %s", backend.describe(), path)
    return backend
