"""Native TensorRT backend (TensorRT 10.x and 11.x): a strongly typed engine, built once and cached.

Precision lives in the ONNX file, not in builder flags. TensorRT 11 builds strongly typed
networks only and has no ``BuilderFlag.FP16``/``INT8`` and no INT8 calibrators (10.x deprecates
them), so the network is created strongly typed on every supported version and TensorRT runs
each tensor in the type the graph gives it: the FP32 export gives an FP32 engine,
``cct-export --precision fp16`` an FP16 one, ``cct-quantize`` (symmetric Q/DQ) an INT8 one.

Supported: TensorRT 10.0 or later 10.x, and 11.x. Every call made here exists in that form from
10.0 on and is kept by 11: the named-tensor API (``num_io_tensors``, ``get_tensor_name``/
``_mode``/``_dtype``, ``get_tensor_profile_shape``, ``set_input_shape`` returning a bool,
``set_tensor_address``, ``execute_async_v3``), ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``
(GA in 10.0; deprecated and ignored in 11, where it is not passed), ``set_memory_pool_limit``,
and an ONNX parser for opsets 9-20 (our exports are opset 17 or 18). 8.x lacks strongly typed
networks; 9.x was a preview line; 12+ is refused until checked.

Building an engine takes minutes and ties it to the GPU and TensorRT version, so the serialised
engine is cached under a key made of everything that changes it (``engine_cache_key``). Failures
are ``DeployError``s with a one-line reason, so ``create_backend("auto")`` can fall back to ONNX
Runtime and the ROS node's ``configure`` can report it. Device buffers, the stream and the
device guard come from ``cuda_device`` (PyTorch).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cct_surgical_seg.deploy.backends.base import Backend, BackendOutput, check_model_file, is_zip_file
from cct_surgical_seg.deploy.backends.cuda_device import CudaDevice, DeviceBuffer, TorchCudaDevice
from cct_surgical_seg.deploy.errors import (
    BackendUnavailableError,
    DeployError,
    ExportError,
    ImageFormatError,
    ModelLoadError,
)
from cct_surgical_seg.deploy.export import PRECISIONS, check_tensorrt_quantization, model_precision
from cct_surgical_seg.deploy.model_info import DISAGREEMENT_NAME, INPUT_NAME, PROBS_NAME, ModelInfo
from cct_surgical_seg.io_utils import atomic_write_bytes

LOG = logging.getLogger(__name__)

MIN_TENSORRT_10_MINOR = 0
SUPPORTED_VERSIONS = "TensorRT 10.x (10.0 or later) or 11.x"
#: Changes whenever this module builds engines differently, so old cached engines are not reused.
BUILD_RECIPE = "strongly-typed-v1"
#: Optimisation profile for dynamic-size exports: (min, opt, max) of (H, W); batch 1..max_batch.
DEFAULT_DYNAMIC_PROFILE = ((64, 64), (512, 640), (1088, 1920))
#: TensorRT ``DataType`` member name -> NumPy type, for the tensors a cct model can have.
NUMPY_TYPES = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
}


def one_line(text: object) -> str:
    """Collapse a (possibly multi-line) message to one line for logs and error strings."""
    return " ".join(str(text).split())


def check_tensorrt_version(version: str) -> tuple[int, int]:
    """``(major, minor)`` of a supported TensorRT, else ``BackendUnavailableError`` saying why."""
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise BackendUnavailableError(
            f"TensorRT reports version {version!r}; this backend needs {SUPPORTED_VERSIONS}"
        )
    major, minor = int(match.group(1)), int(match.group(2))
    if (major == 10 and minor >= MIN_TENSORRT_10_MINOR) or major == 11:
        return major, minor
    raise BackendUnavailableError(
        f"TensorRT {version} is not supported; this backend needs {SUPPORTED_VERSIONS}"
    )


def import_tensorrt() -> Any:
    """Import a supported TensorRT or raise ``BackendUnavailableError`` saying why not."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(
            f"TensorRT is not installed (pip install tensorrt on a CUDA machine: {SUPPORTED_VERSIONS}), "
            "or use backend 'onnxruntime-cuda' / 'onnxruntime'"
        ) from exc
    except Exception as exc:  # a broken install: missing CUDA libraries raise OSError and friends
        raise BackendUnavailableError(
            f"TensorRT cannot be imported: {type(exc).__name__}: {one_line(exc)}"
        ) from exc
    check_tensorrt_version(str(getattr(trt, "__version__", "")))
    return trt


def open_cuda_device(index: int) -> CudaDevice:
    """The CUDA layer the backend runs on (tests replace this function with a fake)."""
    return TorchCudaDevice(index)


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
    profile: Sequence[Any],
    builder_options: Mapping[str, Any],
) -> str:
    """A hex digest that changes whenever anything that shapes the engine changes."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    fields = {
        "onnx_sha256": onnx_sha256,
        "tensorrt": trt_version,
        "gpu": gpu_name,
        "cc": compute_capability,
        "precision": precision,
        "profile": json.loads(json.dumps(profile)),
        "builder": json.loads(json.dumps(dict(builder_options), sort_keys=True)),
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


def optimisation_profile(
    input_size: tuple[int, int] | None, max_batch: int, dynamic: Sequence[Sequence[int]]
) -> list[list[int]]:
    """``[min, opt, max]`` input shapes (N, 3, H, W); fixed-size exports vary only the batch."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    sizes = [tuple(input_size)] * 3 if input_size is not None else [tuple(s) for s in dynamic]
    if len(sizes) != 3 or any(len(s) != 2 for s in sizes):
        raise ValueError(f"dynamic_profile must be three (H, W) pairs (min, opt, max), got {dynamic!r}")
    if not all(a <= b <= c for a, b, c in zip(*sizes, strict=True)):
        raise ValueError(f"dynamic_profile must satisfy min <= opt <= max, got {dynamic!r}")
    return [[b, 3, int(h), int(w)] for b, (h, w) in zip((1, 1, max_batch), sizes, strict=True)]


def numpy_dtype(trt: Any, dtype: Any) -> np.dtype:
    """The NumPy dtype of a TensorRT ``DataType`` (read from the engine, never assumed)."""
    for name, np_type in NUMPY_TYPES.items():
        if getattr(trt.DataType, name, None) == dtype:
            return np.dtype(np_type)
    raise ModelLoadError(f"the engine has a tensor of type {dtype}, which has no NumPy equivalent")


def make_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` that routes TensorRT's messages to Python logging and keeps the last error.

    Errors are logged at DEBUG only: the last one becomes part of the exception the backend raises
    (and ``auto`` logs that once), so the reason is not printed twice.
    """

    class TensorRTLog(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.last_error = ""

        def log(self, severity: Any, msg: str) -> None:
            level = int(severity)
            if level <= int(trt.ILogger.Severity.ERROR):
                self.last_error = one_line(msg)
                LOG.debug("TensorRT error: %s", self.last_error)
            elif level == int(trt.ILogger.Severity.WARNING):
                LOG.warning("TensorRT: %s", one_line(msg))
            else:
                LOG.debug("TensorRT: %s", one_line(msg))

    return TensorRTLog()


class TensorRTBackend(Backend):
    """Runs a ``cct-export`` ONNX file (FP32, FP16 or INT8) through a cached TensorRT engine.

    ``precision``: None (the model's, default) or the precision the model must have (a check:
    TensorRT builds what the ONNX holds). ``max_batch``/``dynamic_profile``: the optimisation
    profile; inputs outside it are refused before enqueue. ``device_index``: the CUDA device the
    engine is built, loaded and run on. ``workspace_mb``: TensorRT's build workspace.
    """

    name = "tensorrt"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        precision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        workspace_mb: int = 2048,
        max_batch: int = 1,
        dynamic_profile: Sequence[Sequence[int]] = DEFAULT_DYNAMIC_PROFILE,
        device_index: int = 0,
    ) -> None:
        trt = import_tensorrt()
        self._trt = trt
        path = check_model_file(model_path, "ONNX")
        if is_zip_file(path):
            raise ModelLoadError(f"{path}: this is a PyTorch checkpoint; TensorRT needs the ONNX export")
        self.info, self.precision = _read_model(path, precision)
        profile = optimisation_profile(self.info.input_size, int(max_batch), dynamic_profile)
        self.cuda = open_cuda_device(int(device_index))
        self.gpu = self.cuda.name
        self._log = make_logger(trt)
        options = {"workspace_mb": int(workspace_mb), "recipe": BUILD_RECIPE}
        key = engine_cache_key(
            file_sha256(path), trt.__version__, self.gpu, self.cuda.compute_capability, self.precision,
            profile, options,
        )  # fmt: skip
        self.cache_path = engine_cache_path(cache_dir, path, key)
        try:
            with self.cuda.activate():
                self._load(path, profile, int(workspace_mb))
            self.warm_up()
        except DeployError:
            raise
        except Exception as exc:  # TensorRT/CUDA raise RuntimeError, TypeError, ... on failure
            raise ModelLoadError(f"{path}: TensorRT failed: {type(exc).__name__}: {one_line(exc)}") from exc

    def _load(self, path: Path, profile: list[list[int]], workspace_mb: int) -> None:
        """Engine (cache or build), execution context and tensor bindings, on the current device."""
        self._runtime = self._trt.Runtime(self._log)
        self._engine = self._load_cached()
        self.engine_source = "cache"
        if self._engine is None:
            serialized = self._build(path, profile, workspace_mb)
            self._store(serialized)
            self._engine = self._runtime.deserialize_cuda_engine(serialized)
            self.engine_source = "built"
            if self._engine is None:
                raise ModelLoadError(
                    f"{path}: TensorRT cannot load the engine it built: {self._log.last_error}"
                )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise ModelLoadError(
                f"{path}: TensorRT cannot create an execution context: {self._log.last_error}"
            )
        self._bind_tensors(path)

    def _load_cached(self) -> Any:
        """The cached engine, or None (absent, unreadable, or from another TensorRT/GPU: rebuilt)."""
        if not self.cache_path.is_file():
            LOG.info("tensorrt: no cached engine at %s", self.cache_path)
            return None
        try:
            engine = self._runtime.deserialize_cuda_engine(self.cache_path.read_bytes())
        except Exception as exc:  # OSError reading it, RuntimeError from TensorRT
            LOG.warning(
                "tensorrt: cached engine %s unusable (%s); rebuilding", self.cache_path, one_line(exc)
            )
            return None
        if engine is None:
            LOG.warning(
                "tensorrt: cached engine %s unusable (%s); rebuilding", self.cache_path, self._log.last_error
            )
        else:
            LOG.info("tensorrt: loaded cached engine %s", self.cache_path)
        return engine

    def _build(self, path: Path, profile: list[list[int]], workspace_mb: int) -> Any:
        """Parse the ONNX into a strongly typed network and build a serialised engine."""
        trt = self._trt
        self._log.last_error = ""
        LOG.info(
            "tensorrt: building a %s engine for %s on %s; this takes a while", self.precision, path, self.gpu
        )
        builder = trt.Builder(self._log)
        network = builder.create_network(strongly_typed_flags(trt))
        parser = trt.OnnxParser(network, self._log)
        if not parser.parse_from_file(str(path)):
            errors = "; ".join(one_line(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelLoadError(
                f"{path}: TensorRT's ONNX parser refused it: {errors or self._log.last_error}"
            )
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(INPUT_NAME, *[tuple(shape) for shape in profile])
        config.add_optimization_profile(opt_profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ModelLoadError(
                f"{path}: TensorRT could not build an engine: {self._log.last_error or 'no reason given'}"
            )
        return serialized

    def _store(self, serialized: Any) -> None:
        """Cache the engine; a cache that cannot be written costs the next start a rebuild, no more."""
        try:
            atomic_write_bytes(self.cache_path, bytes(serialized))
        except OSError as exc:
            LOG.warning("tensorrt: engine not cached (%s); the next start builds it again", one_line(exc))
        else:
            LOG.info("tensorrt: cached the engine at %s", self.cache_path)

    def _bind_tensors(self, path: Path) -> None:
        """Tensor names, modes and NumPy dtypes, and the input's profile bounds, from the engine."""
        trt, engine = self._trt, self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        modes = {name: engine.get_tensor_mode(name) for name in names}
        self._outputs = [n for n in names if modes[n] == trt.TensorIOMode.OUTPUT]
        if modes.get(INPUT_NAME) != trt.TensorIOMode.INPUT or PROBS_NAME not in self._outputs:
            raise ModelLoadError(
                f"{path}: engine tensors {names} lack input '{INPUT_NAME}'/output '{PROBS_NAME}'"
            )
        self._dtypes = {name: numpy_dtype(trt, engine.get_tensor_dtype(name)) for name in names}
        bounds = engine.get_tensor_profile_shape(INPUT_NAME, 0)
        self.profile = tuple(tuple(int(d) for d in shape) for shape in bounds)

    def check_profile(self, shape: tuple[int, ...]) -> None:
        """``ImageFormatError`` for a batch shape outside the engine's optimisation profile."""
        low, _, high = self.profile
        if not low[0] <= shape[0] <= high[0]:
            raise ImageFormatError(
                f"tensorrt: batch of {shape[0]} is outside the engine's {low[0]}..{high[0]} (max_batch)"
            )
        if not all(lo <= s <= hi for s, lo, hi in zip(shape[2:], low[2:], high[2:], strict=True)):
            raise ImageFormatError(
                f"tensorrt: input {shape[2]}x{shape[3]} is outside the engine's profile "
                f"{low[2]}x{low[3]} .. {high[2]}x{high[3]} (dynamic_profile)"
            )

    def warm_up(self) -> None:
        """One inference at the profile's optimum shape, so the first real frame pays no set-up."""
        self.infer(np.zeros(self.profile[1], np.float32))

    def describe(self) -> str:
        return f"{self.name}[{self.precision}, {self.gpu}]"

    def infer(self, batch: np.ndarray) -> BackendOutput:
        batch = self.check_batch(batch)
        self.check_profile(batch.shape)
        with self.cuda.activate():
            host = self._execute(batch)
        disagreement = host.get(DISAGREEMENT_NAME)
        return BackendOutput(
            probs=host[PROBS_NAME].astype(np.float32, copy=False),
            disagreement=None if disagreement is None else disagreement.astype(np.float32).reshape(-1),
        )

    def _execute(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        context, log = self._context, self._log
        log.last_error = ""  # errors below are this call's
        buffers: dict[str, DeviceBuffer] = {
            INPUT_NAME: self.cuda.upload(batch.astype(self._dtypes[INPUT_NAME], copy=False))
        }
        if not context.set_input_shape(INPUT_NAME, tuple(batch.shape)):
            raise ImageFormatError(
                f"tensorrt: the engine refused input shape {batch.shape}: {log.last_error}"
            )
        for name in self._outputs:
            shape = tuple(int(d) for d in context.get_tensor_shape(name))
            if min(shape, default=0) < 0:
                raise RuntimeError(f"tensorrt: output '{name}' has an unresolved shape {shape}")
            buffers[name] = self.cuda.empty(shape, self._dtypes[name])
        for name, buffer in buffers.items():
            if not context.set_tensor_address(name, buffer.ptr):
                raise RuntimeError(f"tensorrt: cannot bind '{name}': {log.last_error}")
        if not context.execute_async_v3(self.cuda.stream_handle):
            raise RuntimeError(f"tensorrt: inference failed: {log.last_error or 'no reason given'}")
        return {name: self.cuda.download(buffers[name]) for name in self._outputs}

    def close(self) -> None:
        self._context = self._engine = self._runtime = None


def strongly_typed_flags(trt: Any) -> int:
    """``create_network`` flags: strongly typed on 10.x; 11 is always strongly typed (flag ignored)."""
    if check_tensorrt_version(trt.__version__)[0] >= 11:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _read_model(path: Path, required: str | None) -> tuple[ModelInfo, str]:
    """``ModelInfo`` and precision of the ONNX file; refuses a precision mismatch or bad Q/DQ."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several unrelated types for a bad file
        raise ModelLoadError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    if required is not None and required not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS} or None (the model's), got {required!r}")
    props = {p.key: p.value for p in model.metadata_props}
    info = ModelInfo.from_metadata(props, [o.name for o in model.graph.output], source=str(path))
    precision = model_precision(model)
    if required is not None and required != precision:
        raise ModelLoadError(
            f"{path} is an {precision} model but precision {required} was asked for: TensorRT builds the "
            "precision the ONNX holds (fp16: cct-export --precision fp16; int8: cct-quantize)"
        )
    if precision == "int8":
        try:
            check_tensorrt_quantization(model)
        except ExportError as exc:
            raise ModelLoadError(f"{path}: {exc}") from exc
    return info, precision
