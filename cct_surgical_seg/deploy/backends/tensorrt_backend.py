"""Native TensorRT 10 backend: builds an engine from the ONNX file once and caches it.

Written against the TensorRT 10 named-tensor API (``num_io_tensors`` / ``get_tensor_name`` /
``set_tensor_address`` / ``execute_async_v3``); the 8.x binding API is gone in 10. Building an
engine takes minutes and is specific to the GPU and TensorRT version, so the serialised engine is
cached under a key made of everything that invalidates it: the ONNX file's sha256, the TensorRT
version, the GPU name and compute capability, the precision and the optimisation profile. A
changed model or driver stack therefore rebuilds instead of loading a stale engine.

Device buffers and the CUDA stream come from PyTorch (``torch.cuda``), which every TensorRT
machine of this project has; no pycuda / cuda-python dependency.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cct_surgical_seg.deploy.backends.base import Backend, BackendOutput, check_model_file, is_zip_file
from cct_surgical_seg.deploy.errors import BackendUnavailableError, ModelLoadError
from cct_surgical_seg.deploy.model_info import DISAGREEMENT_NAME, INPUT_NAME, PROBS_NAME, read_onnx_info
from cct_surgical_seg.io_utils import atomic_write_bytes

LOG = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
#: Optimisation profile for dynamic-size exports: (min, opt, max) of (H, W); batch 1..max_batch.
DEFAULT_DYNAMIC_PROFILE = ((64, 64), (512, 640), (1088, 1920))


def import_tensorrt() -> Any:
    """Import TensorRT >= 10 or raise ``BackendUnavailableError`` saying how to get it."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(
            "TensorRT is not installed (pip install 'tensorrt>=10' on a CUDA machine, or use "
            "backend 'onnxruntime')"
        ) from exc
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise BackendUnavailableError(f"TensorRT {trt.__version__} found; this backend needs TensorRT 10+")
    return trt


def gpu_identity(device_index: int = 0) -> tuple[str, str]:
    """``(gpu name, "major.minor")`` of the CUDA device, or ``BackendUnavailableError``."""
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailableError("the TensorRT backend needs PyTorch with CUDA for buffers") from exc
    if not torch.cuda.is_available():
        raise BackendUnavailableError("no CUDA device available for TensorRT")
    major, minor = torch.cuda.get_device_capability(device_index)
    return torch.cuda.get_device_name(device_index), f"{major}.{minor}"


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def engine_cache_key(
    onnx_sha256: str,
    trt_version: str,
    gpu_name: str,
    compute_capability: str,
    precision: str,
    profile: Sequence[Any] | None = None,
) -> str:
    """A hex digest that changes whenever any input that shapes the engine changes."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    fields = {
        "onnx_sha256": onnx_sha256,
        "tensorrt": trt_version,
        "gpu": gpu_name,
        "cc": compute_capability,
        "precision": precision,
        "profile": json.loads(json.dumps(profile)) if profile is not None else None,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def default_cache_dir() -> Path:
    """``$CCT_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/cct_surgical_seg/engines`` (``~/.cache`` default)."""
    if os.environ.get("CCT_ENGINE_CACHE"):
        return Path(os.environ["CCT_ENGINE_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "cct_surgical_seg" / "engines"


def engine_cache_path(
    cache_dir: str | os.PathLike[str] | None, onnx_path: str | os.PathLike[str], key: str
) -> Path:
    """``<cache_dir>/<onnx stem>-<key[:16]>.engine``: the stem keeps the cache browsable by hand."""
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return directory / f"{Path(onnx_path).stem}-{key[:16]}.engine"


def _make_calibrator(trt: Any, frames: np.ndarray, cache_file: Path) -> Any:
    """An entropy calibrator over preprocessed float32 ``N,3,H,W`` frames (fed one at a time)."""
    import torch

    class FrameCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self._frames = frames
            self._index = 0
            self._device = torch.empty(frames.shape[1:], dtype=torch.float32, device="cuda").unsqueeze(0)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self._index >= len(self._frames):
                return None
            self._device.copy_(torch.from_numpy(self._frames[self._index : self._index + 1]))
            self._index += 1
            return [int(self._device.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            atomic_write_bytes(cache_file, bytes(cache))

    return FrameCalibrator()


class TensorRTBackend(Backend):
    """Runs a ``cct-export`` ONNX file through a cached TensorRT engine.

    ``precision``: ``fp16`` (default), ``fp32`` or ``int8`` (needs ``calibration_frames``: float32
    ``N,3,H,W`` RGB 0..255 at the network size, e.g. from ``pipeline.preprocess``).
    """

    name = "tensorrt"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        precision: str = "fp16",
        cache_dir: str | os.PathLike[str] | None = None,
        calibration_frames: np.ndarray | None = None,
        workspace_mb: int = 2048,
        max_batch: int = 1,
        dynamic_profile: Sequence[tuple[int, int]] = DEFAULT_DYNAMIC_PROFILE,
        device_index: int = 0,
    ) -> None:
        trt = import_tensorrt()
        import torch

        path = check_model_file(model_path, "ONNX")
        if is_zip_file(path):
            raise ModelLoadError(f"{path}: this is a PyTorch checkpoint; TensorRT needs the ONNX export")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "int8" and calibration_frames is None:
            raise ValueError("int8 needs calibration_frames (float32 N,3,H,W at the network size)")
        self.info = read_onnx_info(path)
        gpu, cc = gpu_identity(device_index)
        self._torch = torch
        self._device = torch.device("cuda", device_index)
        self._logger = trt.Logger(trt.Logger.WARNING)
        profile = self._profile(max_batch, dynamic_profile)
        key = engine_cache_key(file_sha256(path), trt.__version__, gpu, cc, precision, profile)
        self.cache_path = engine_cache_path(cache_dir, path, key)
        self.precision = precision

        runtime = trt.Runtime(self._logger)
        engine = None
        if self.cache_path.is_file():
            engine = runtime.deserialize_cuda_engine(self.cache_path.read_bytes())
            if engine is None:
                LOG.warning("tensorrt: cached engine %s unreadable, rebuilding", self.cache_path)
            else:
                LOG.info("tensorrt: loaded cached engine %s", self.cache_path)
        if engine is None:
            LOG.info(
                "tensorrt: building %s engine for %s on %s (cc %s); this takes a while",
                precision,
                path,
                gpu,
                cc,
            )
            serialized = self._build(trt, path, precision, workspace_mb, profile, calibration_frames)
            atomic_write_bytes(self.cache_path, bytes(serialized))
            engine = runtime.deserialize_cuda_engine(serialized)
            if engine is None:
                raise ModelLoadError(f"{path}: TensorRT built an engine it cannot deserialise")
        self._engine = engine
        self._context = engine.create_execution_context()
        self._stream = torch.cuda.Stream(device=self._device)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if INPUT_NAME not in names or PROBS_NAME not in self._outputs:
            raise ModelLoadError(f"{path}: engine tensors {names} lack '{INPUT_NAME}'/'{PROBS_NAME}'")
        self.gpu = gpu

    def _profile(self, max_batch: int, dynamic: Sequence[tuple[int, int]]) -> list[list[int]]:
        """``[min, opt, max]`` input shapes; fixed-size exports vary only the batch."""
        if self.info.input_size is not None:
            sizes = [self.info.input_size] * 3
        else:
            sizes = [tuple(s) for s in dynamic]
        batches = (1, 1, max(1, max_batch))
        return [[b, 3, int(h), int(w)] for b, (h, w) in zip(batches, sizes, strict=True)]

    def _build(
        self,
        trt: Any,
        path: Path,
        precision: str,
        workspace_mb: int,
        profile: list[list[int]],
        calibration_frames: np.ndarray | None,
    ) -> Any:
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse_from_file(str(path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelLoadError(f"{path}: TensorRT ONNX parser failed: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(INPUT_NAME, *[tuple(s) for s in profile])
        config.add_optimization_profile(opt_profile)
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            config.set_calibration_profile(opt_profile)
            frames = np.ascontiguousarray(calibration_frames, dtype=np.float32)
            config.int8_calibrator = _make_calibrator(trt, frames, self.cache_path.with_suffix(".calib"))
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ModelLoadError(f"{path}: TensorRT failed to build an engine (see the TensorRT log)")
        return serialized

    def describe(self) -> str:
        return f"{self.name}[{self.precision}, {self.gpu}]"

    def infer(self, batch: np.ndarray) -> BackendOutput:
        torch = self._torch
        batch = self.check_batch(batch)
        with torch.cuda.stream(self._stream):
            x = torch.from_numpy(batch).to(self._device, non_blocking=True)
            self._context.set_input_shape(INPUT_NAME, tuple(x.shape))
            self._context.set_tensor_address(INPUT_NAME, int(x.data_ptr()))
            outputs: dict[str, Any] = {}
            for name in self._outputs:
                shape = tuple(self._context.get_tensor_shape(name))
                outputs[name] = torch.empty(shape, dtype=torch.float32, device=self._device)
                self._context.set_tensor_address(name, int(outputs[name].data_ptr()))
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            host = {name: t.cpu() for name, t in outputs.items()}
        self._stream.synchronize()
        disagreement = host.get(DISAGREEMENT_NAME)
        return BackendOutput(
            probs=host[PROBS_NAME].numpy(),
            disagreement=None if disagreement is None else disagreement.numpy().reshape(-1),
        )
