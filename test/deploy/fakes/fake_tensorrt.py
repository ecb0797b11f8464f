"""Fake ``tensorrt`` Python modules for major versions 10 and 11, for tests without a GPU.

Modelled on NVIDIA's public Python API (the ``tensorrt`` bindings' documentation for 10.x and
11.x and the 10.x -> 11.x migration guide's list of removed Python APIs), limited to the names
the backend and its callers touch, with the same enums, signatures and return conventions:

* ``__version__``; ``ILogger`` (subclassable, ``Severity`` enum) and ``Logger``.
* ``NetworkDefinitionCreationFlag``: 10.x has ``EXPLICIT_BATCH`` (0, deprecated) and
  ``STRONGLY_TYPED`` (1); 11.x has ``STRONGLY_TYPED`` only (0, deprecated: every network is
  strongly typed).
* ``BuilderFlag``: 11.x lacks FP16, INT8, BF16, FP8, INT4, FP4, OBEY/PREFER_PRECISION_CONSTRAINTS
  and DIRECT_IO; 10.x has them, and its builder fails (returns None, logs an error) when a
  precision flag is set on a strongly typed network. ``IBuilderConfig.int8_calibrator``,
  ``set_calibration_profile`` and ``IInt8EntropyCalibrator2`` exist in 10.x only.
* ``Builder.create_network(flags)``, ``create_builder_config()``, ``create_optimization_profile()``,
  ``build_serialized_network(network, config)`` -> ``IHostMemory`` or None.
* ``OnnxParser(network, logger).parse_from_file(path)`` -> bool, ``num_errors``, ``get_error(i)``;
  it refuses what the real parser refuses for our models: non-zero or uint8 zero points and
  dequantized non-int8 constants (symmetric int8 Q/DQ only).
* ``Runtime.deserialize_cuda_engine(buffer)`` -> ``ICudaEngine`` or None (foreign or corrupt
  plan, another TensorRT version, another compute capability).
* ``ICudaEngine``: ``num_io_tensors``, ``get_tensor_name/_mode/_dtype/_shape``,
  ``get_tensor_profile_shape(name, profile)``, ``create_execution_context()``.
* ``IExecutionContext``: ``set_input_shape`` -> bool (False outside the profile),
  ``get_tensor_shape``, ``set_tensor_address`` -> bool, ``execute_async_v3(stream)`` -> bool.

An engine "runs" with ONNX Runtime on the CPU: the plan embeds the ONNX file, and execution reads
the input from and writes the outputs to the fake CUDA memory (``fake_cuda``) at the addresses
the caller bound, in the dtypes the network declares, on the device that was current when the
engine was loaded. ``STATS`` counts builds, loads and executions; ``FAIL_BUILD`` makes the next
builds fail with that error message (as an out-of-memory or unsupported-layer build would).
"""

from __future__ import annotations

import enum
import json
import struct
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

from . import fake_cuda

MAGIC = b"FAKE-TRT-PLAN"
STATS = {"builds": 0, "loads": 0, "executions": 0}
NETWORKS: list[INetworkDefinition] = []  # every network created, to check how they were created
LOAD_DEVICES: list[int] = []  # the current device at each engine load
FAIL_BUILD: list[str] = []


class Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class ILogger:
    Severity = Severity
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = Severity

    def __init__(self) -> None:
        pass

    def log(self, severity: Severity, msg: str) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class Logger(ILogger):
    def __init__(self, min_severity: Severity = Severity.WARNING) -> None:
        super().__init__()
        self.min_severity = min_severity

    def log(self, severity: Severity, msg: str) -> None:
        if severity <= self.min_severity:
            print(f"[TRT] {msg}", file=sys.stderr)


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    BF16 = 7
    INT64 = 8
    INT4 = 9


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1
    DLA_LOCAL_DRAM = 2
    DLA_GLOBAL_DRAM = 3
    TACTIC_DRAM = 4
    TACTIC_SHARED_MEMORY = 5


ONNX_TO_TRT = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32, 9: DataType.BOOL,
               2: DataType.UINT8, 7: DataType.INT64, 16: DataType.BF16}  # fmt: skip
NUMPY = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
         DataType.INT32: np.int32, DataType.BOOL: np.bool_, DataType.UINT8: np.uint8,
         DataType.INT64: np.int64}  # fmt: skip
#: ``BuilderFlag`` members of 10.x in value order (kFP16 = 0 ... kFP4 = 26).
BUILDER_FLAGS_10 = [
    "FP16", "INT8", "DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "TF32", "SPARSE_WEIGHTS",
    "SAFETY_SCOPE", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO",
    "REJECT_EMPTY_ALGORITHMS", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "FP8",
    "ERROR_ON_TIMING_CACHE_MISS", "BF16", "DISABLE_COMPILATION_CACHE", "STRIP_PLAN", "REFIT_IDENTICAL",
    "WEIGHT_STREAMING", "INT4", "REFIT_INDIVIDUAL", "STRICT_NANS", "MONITOR_MEMORY", "FP4",
]  # fmt: skip
REMOVED_IN_11 = {"FP16", "INT8", "FP8", "BF16", "INT4", "FP4", "OBEY_PRECISION_CONSTRAINTS",
                 "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO"}  # fmt: skip
PRECISION_FLAGS = {"FP16", "INT8", "FP8", "BF16", "INT4", "FP4"}


class Dims(tuple):
    """``trt.Dims``: a sequence of ints (-1 = dynamic)."""


class IHostMemory:
    """A serialised engine; ``bytes(memory)`` gives its contents."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.nbytes = len(data)

    def __bytes__(self) -> bytes:
        return self._data


class ITensor:
    def __init__(self, name: str, shape: Dims, dtype: DataType) -> None:
        self.name, self.shape, self.dtype = name, shape, dtype


class INetworkDefinition:
    def __init__(self, flags: int, strongly_typed: bool) -> None:
        self.flags = flags
        self.strongly_typed = strongly_typed
        self.inputs: list[ITensor] = []
        self.outputs: list[ITensor] = []
        self.onnx_bytes = b""

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_input(self, index: int) -> ITensor:
        return self.inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self.outputs[index]


class ParserError:
    def __init__(self, desc: str, node: int = -1) -> None:
        self._desc, self._node = desc, node

    def desc(self) -> str:
        return self._desc

    def node(self) -> int:
        return self._node

    def __str__(self) -> str:
        return f"In node {self._node} (parseGraph): INVALID_NODE: {self._desc}"


def _tensor(value_info, initializers: set[str]) -> ITensor | None:
    if value_info.name in initializers:
        return None
    tensor_type = value_info.type.tensor_type
    dims = Dims(d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim)
    return ITensor(value_info.name, dims, ONNX_TO_TRT[tensor_type.elem_type])


def _qdq_errors(model) -> list[ParserError]:
    """What onnx-tensorrt refuses in Q/DQ nodes: asymmetric quantization, non-int8 DQ constants."""
    from onnx import TensorProto, numpy_helper

    constants = {t.name: t for t in model.graph.initializer}
    errors = []
    for index, node in enumerate(model.graph.node):
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zero = constants.get(node.input[2]) if len(node.input) > 2 else None
        if zero is not None and (zero.data_type != TensorProto.INT8 or numpy_helper.to_array(zero).any()):
            errors.append(ParserError("TensorRT only supports symmetric quantization: the zero point "
                                      "must be int8 and all zeros", index))  # fmt: skip
        data = constants.get(node.input[0])
        if node.op_type == "DequantizeLinear" and data is not None and data.data_type != TensorProto.INT8:
            errors.append(ParserError("only activation types allowed as input to this layer", index))
    return errors


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
        self._network, self._logger = network, logger
        self._errors: list[ParserError] = []

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> ParserError:
        return self._errors[index]

    def clear_errors(self) -> None:
        self._errors.clear()

    def parse_from_file(self, model: str) -> bool:
        import onnx

        try:
            data = Path(model).read_bytes()
            proto = onnx.load_from_string(data)
        except Exception as exc:
            self._errors.append(ParserError(f"Failed to parse ONNX model from file: {model}: {exc}"))
            return False
        self._errors.extend(_qdq_errors(proto))
        if self._errors:
            return False
        initializers = {t.name for t in proto.graph.initializer}
        self._network.inputs = [t for t in (_tensor(v, initializers) for v in proto.graph.input) if t]
        self._network.outputs = [_tensor(v, set()) for v in proto.graph.output]
        self._network.onnx_bytes = data
        return True


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, list[Dims]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # the bindings' parameter names
        shapes = [Dims(int(d) for d in s) for s in (min, opt, max)]
        if len({len(s) for s in shapes}) != 1 or not all(
            a <= b <= c for a, b, c in zip(*shapes, strict=True)
        ):
            raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
        self.shapes[input] = shapes

    def get_shape(self, input: str) -> list[Dims]:
        return self.shapes.get(input, [])


class IBuilderConfig:
    def __init__(self, module: types.ModuleType) -> None:
        self._module = module
        self.flags: set[Any] = set()
        self.pool_limits: dict[MemoryPoolType, int] = {}
        self.profiles: list[IOptimizationProfile] = []
        self.builder_optimization_level = 3

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        self.pool_limits[pool] = int(pool_size)

    def get_memory_pool_limit(self, pool: MemoryPoolType) -> int:
        return self.pool_limits.get(pool, 1 << 40)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_flag(self, flag: Any) -> None:
        self.flags.add(flag)

    def get_flag(self, flag: Any) -> bool:
        return flag in self.flags

    def clear_flag(self, flag: Any) -> None:
        self.flags.discard(flag)


class IBuilderConfig10(IBuilderConfig):
    """10.x only: the implicit-quantization (calibrator) API, deprecated since 10.1."""

    int8_calibrator = None

    def set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
        self.calibration_profile = profile
        return True


def _plan(module: types.ModuleType, network: INetworkDefinition, profile: IOptimizationProfile) -> bytes:
    device = fake_cuda.current_device()
    header = {
        "version": module.__version__,
        "cc": fake_cuda.DEVICES[device][1],
        "inputs": [[t.name, list(t.shape), int(t.dtype)] for t in network.inputs],
        "outputs": [[t.name, list(t.shape), int(t.dtype)] for t in network.outputs],
        "profile": {name: [list(s) for s in shapes] for name, shapes in profile.shapes.items()},
    }
    blob = json.dumps(header).encode()
    return MAGIC + struct.pack("<I", len(blob)) + blob + network.onnx_bytes


class Builder:
    _module: types.ModuleType  # set on the per-version subclass by make_tensorrt

    def __init__(self, logger: ILogger) -> None:
        self.logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        module = self._module
        bit = 1 << int(module.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = INetworkDefinition(flags, strongly_typed=module.MAJOR >= 11 or bool(flags & bit))
        NETWORKS.append(network)
        return network

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig(self._module) if self._module.MAJOR >= 11 else IBuilderConfig10(self._module)

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def _error(self, message: str) -> None:
        self.logger.log(Severity.ERROR, message)

    def build_serialized_network(
        self, network: INetworkDefinition, config: IBuilderConfig
    ) -> IHostMemory | None:
        if not network.inputs:
            self._error("Network must have at least one input and one output.")
            return None
        precision = {f.name for f in config.flags if f.name in PRECISION_FLAGS}
        if network.strongly_typed and precision:
            flag = sorted(precision)[0]
            self._error(
                f"BuilderFlag::k{flag} is not allowed with a strongly typed network; type the network"
            )
            return None
        if FAIL_BUILD:
            self._error(FAIL_BUILD[0])
            return None
        profile = config.profiles[0] if config.profiles else IOptimizationProfile()
        for tensor in network.inputs:
            shapes = profile.get_shape(tensor.name)
            fits = shapes and all(
                len(s) == len(tensor.shape)
                and all(d in (-1, v) for d, v in zip(tensor.shape, s, strict=True))
                for s in shapes
            )
            if not fits:
                self._error(
                    f"{tensor.name}: the optimization profile does not match dimensions {tensor.shape}"
                )
                return None
        STATS["builds"] += 1
        return IHostMemory(_plan(self._module, network, profile))


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self._shapes: dict[str, Dims] = {}
        self._addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: Any) -> bool:
        engine = self.engine
        if engine.get_tensor_mode(name) != TensorIOMode.INPUT:
            engine.error(f"setInputShape: {name} is not an input tensor")
            return False
        low, _, high = engine.get_tensor_profile_shape(name, 0)
        shape = Dims(int(d) for d in shape)
        if len(shape) != len(low) or not all(a <= d <= b for d, a, b in zip(shape, low, high, strict=True)):
            engine.error(f"IExecutionContext::setInputShape: {name} dimensions {shape} are outside the "
                         f"optimization profile [{low}, {high}]")  # fmt: skip
            return False
        self._shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> Dims:
        """Inputs: the shape set; outputs: inferred from the input shapes (-1 while they are unset)."""
        engine = self.engine
        if name in engine.inputs:
            return self._shapes.get(name, engine.get_tensor_shape(name))
        if name not in engine.outputs or any(n not in self._shapes for n in engine.inputs):
            return engine.get_tensor_shape(name)
        return engine.output_shapes({n: self._shapes[n] for n in engine.inputs})[name]

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if self.engine.get_tensor_mode(name) == TensorIOMode.NONE:
            self.engine.error(f"setTensorAddress: no tensor named {name}")
            return False
        self._addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        engine = self.engine
        device = fake_cuda.current_device()
        if device != engine.device or fake_cuda.STREAMS.get(int(stream_handle)) != engine.device:
            stream_device = fake_cuda.STREAMS.get(int(stream_handle))
            engine.error(
                f"Cuda Runtime (invalid resource handle): engine on device {engine.device}, current device "
                f"{device}, stream of device {stream_device}"
            )
            return False
        missing = [n for n in engine.names if n not in self._addresses] + [
            n for n in engine.inputs if n not in self._shapes
        ]
        if missing:
            engine.error(f"IExecutionContext::enqueueV3: tensors not set: {missing}")
            return False
        try:
            feeds = {n: fake_cuda.read(self._addresses[n], self._shapes[n], NUMPY[engine.dtypes[n]], device)
                     for n in engine.inputs}  # fmt: skip
            results = engine.session.run(engine.outputs, {n: a.copy() for n, a in feeds.items()})
            for name, value in zip(engine.outputs, results, strict=True):
                if tuple(value.shape) != tuple(self.get_tensor_shape(name)):
                    raise RuntimeError(f"output {name} shape {value.shape} != {self.get_tensor_shape(name)}")
                target = fake_cuda.read(
                    self._addresses[name], value.shape, NUMPY[engine.dtypes[name]], device
                )
                target[...] = value.astype(NUMPY[engine.dtypes[name]])
        except (RuntimeError, ValueError) as exc:
            engine.error(f"Cuda Runtime: {exc}")
            return False
        STATS["executions"] += 1
        return True


class ICudaEngine:
    def __init__(self, header: dict, onnx_bytes: bytes, logger: ILogger, device: int) -> None:
        import onnxruntime

        self.logger, self.device = logger, device
        self.inputs = [t[0] for t in header["inputs"]]
        self.outputs = [t[0] for t in header["outputs"]]
        self.names = self.inputs + self.outputs
        self.shapes = {t[0]: Dims(t[1]) for t in header["inputs"] + header["outputs"]}
        self.dtypes = {t[0]: DataType(t[2]) for t in header["inputs"] + header["outputs"]}
        self.profile = {name: [Dims(s) for s in shapes] for name, shapes in header["profile"].items()}
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        self._inferred: dict[tuple, dict[str, Dims]] = {}

    def error(self, message: str) -> None:
        self.logger.log(Severity.ERROR, message)

    def output_shapes(self, input_shapes: dict[str, Dims]) -> dict[str, Dims]:
        """Shape inference, done by running the network once on zeros per set of input shapes."""
        key = tuple(sorted(input_shapes.items()))
        if key not in self._inferred:
            feeds = {n: np.zeros(s, NUMPY[self.dtypes[n]]) for n, s in input_shapes.items()}
            results = self.session.run(self.outputs, feeds)
            self._inferred[key] = {n: Dims(r.shape) for n, r in zip(self.outputs, results, strict=True)}
        return self._inferred[key]

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    @property
    def num_optimization_profiles(self) -> int:
        return 1

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        if name in self.inputs:
            return TensorIOMode.INPUT
        return TensorIOMode.OUTPUT if name in self.outputs else TensorIOMode.NONE

    def get_tensor_dtype(self, name: str) -> DataType:
        return self.dtypes[name]

    def get_tensor_shape(self, name: str) -> Dims:
        return self.shapes[name]

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
        if profile_index != 0 or name not in self.profile:
            self.error(f"getProfileShape: no profile {profile_index} for input {name}")
            return []
        return list(self.profile[name])

    def create_execution_context(self) -> IExecutionContext | None:
        if fake_cuda.current_device() != self.device:
            self.error(f"createExecutionContext: engine loaded on device {self.device}, current device "
                       f"{fake_cuda.current_device()}")  # fmt: skip
            return None
        return IExecutionContext(self)


class Runtime:
    _module: types.ModuleType  # set on the per-version subclass by make_tensorrt

    def __init__(self, logger: ILogger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, serialized_engine: Any) -> ICudaEngine | None:
        data = bytes(serialized_engine)
        device = fake_cuda.current_device()
        if not data.startswith(MAGIC):
            self.logger.log(Severity.ERROR, "IRuntime::deserializeCudaEngine: Serialization assertion "
                            "magicTagRead == kMAGIC_TAG failed. Magic tag does not match")  # fmt: skip
            return None
        (length,) = struct.unpack("<I", data[len(MAGIC) : len(MAGIC) + 4])
        start = len(MAGIC) + 4
        header = json.loads(data[start : start + length])
        if header["version"] != self._module.__version__:
            expected = self._module.__version__
            self.logger.log(
                Severity.ERROR,
                f"The engine plan file is not compatible with this version of TensorRT, "
                f"expecting {expected}, got {header['version']}",
            )
            return None
        if header["cc"] != fake_cuda.DEVICES[device][1]:
            self.logger.log(Severity.ERROR, "The engine plan file is generated on an incompatible device")
            return None
        STATS["loads"] += 1
        LOAD_DEVICES.append(device)
        return ICudaEngine(header, data[start + length :], self.logger, device)


def nptype(trt_type: DataType) -> type:
    if trt_type not in NUMPY:
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
    return NUMPY[trt_type]


def make_tensorrt(version: str) -> types.ModuleType:
    """A fresh fake ``tensorrt`` module of ``version`` (its major decides the API surface)."""
    major = int(version.split(".")[0])
    module = types.ModuleType("tensorrt")
    module.__version__ = version
    module.MAJOR = major
    if major >= 11:
        flags = {"STRONGLY_TYPED": 0, "PREFER_AOT_PYTHON_PLUGINS": 1, "PREFER_JIT_PYTHON_PLUGINS": 2}
        builder_flags = [f for f in BUILDER_FLAGS_10 if f not in REMOVED_IN_11]
    else:
        flags = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1, "PREFER_AOT_PYTHON_PLUGINS": 2,
                 "PREFER_JIT_PYTHON_PLUGINS": 3}  # fmt: skip
        builder_flags = list(BUILDER_FLAGS_10)

        class IInt8EntropyCalibrator2:
            def __init__(self) -> None:
                pass

        module.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    module.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", flags)
    module.BuilderFlag = enum.IntEnum("BuilderFlag", {name: i for i, name in enumerate(builder_flags)})
    for name in ("ILogger", "Logger", "Severity", "TensorIOMode", "DataType", "MemoryPoolType", "Dims",
                 "IHostMemory", "OnnxParser", "ICudaEngine", "IExecutionContext", "IBuilderConfig",
                 "IOptimizationProfile", "INetworkDefinition", "nptype"):  # fmt: skip
        setattr(module, name, globals()[name])
    module.Builder = type("Builder", (Builder,), {"_module": module})
    module.Runtime = type("Runtime", (Runtime,), {"_module": module})
    return module
