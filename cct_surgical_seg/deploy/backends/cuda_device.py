"""The CUDA side of the TensorRT backend: device identity, a device guard, a stream and buffers.

TensorRT creates engines and execution contexts on the *current* CUDA device and runs them on
a stream it is given, so the backend needs exactly these few operations, gathered here behind
``CudaDevice``. ``TorchCudaDevice`` implements them on PyTorch (``torch.cuda``), which every
machine of this project that runs TensorRT has; no pycuda / cuda-python dependency. Tests swap
in a fake with the same methods (``test/deploy/fakes``), so the backend's logic runs in CI.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from cct_surgical_seg.deploy.errors import BackendUnavailableError


@dataclass
class DeviceBuffer:
    """Device memory: ``ptr`` is the address TensorRT gets, ``handle`` keeps the memory alive."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    handle: Any


class CudaDevice(Protocol):
    """What the TensorRT backend needs from CUDA (one device, one stream)."""

    index: int
    name: str
    compute_capability: str  # "major.minor"

    def activate(self) -> contextlib.AbstractContextManager[None]:
        """Make this device current for the block (TensorRT uses the current device)."""

    @property
    def stream_handle(self) -> int:
        """The ``cudaStream_t`` TensorRT enqueues on, as an int."""

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> DeviceBuffer: ...

    def upload(self, array: np.ndarray) -> DeviceBuffer: ...

    def download(self, buffer: DeviceBuffer) -> np.ndarray:
        """Copy to the host once the work queued on the stream is done."""


class TorchCudaDevice:
    """``CudaDevice`` on ``torch.cuda``; ``BackendUnavailableError`` without PyTorch or the device."""

    def __init__(self, index: int = 0) -> None:
        try:
            import torch
        except ImportError as exc:
            raise BackendUnavailableError("the TensorRT backend needs PyTorch with CUDA for buffers") from exc
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                "no CUDA device available for TensorRT (torch.cuda.is_available() is False)"
            )
        count = torch.cuda.device_count()
        if not 0 <= index < count:
            raise BackendUnavailableError(f"CUDA device {index} does not exist ({count} device(s) here)")
        self._torch = torch
        self.index = index
        self.device = torch.device("cuda", index)
        self.name = torch.cuda.get_device_name(index)
        major, minor = torch.cuda.get_device_capability(index)
        self.compute_capability = f"{major}.{minor}"
        self._stream = torch.cuda.Stream(device=self.device)

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        with self._torch.cuda.device(self.index), self._torch.cuda.stream(self._stream):
            yield

    @property
    def stream_handle(self) -> int:
        return int(self._stream.cuda_stream)

    def _wrap(self, tensor: Any, dtype: np.dtype) -> DeviceBuffer:
        return DeviceBuffer(int(tensor.data_ptr()), tuple(tensor.shape), np.dtype(dtype), tensor)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> DeviceBuffer:
        torch_dtype = self._torch.from_numpy(np.empty(0, dtype)).dtype
        with self.activate():
            return self._wrap(self._torch.empty(shape, dtype=torch_dtype, device=self.device), dtype)

    def upload(self, array: np.ndarray) -> DeviceBuffer:
        with self.activate():
            tensor = self._torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
        return self._wrap(tensor, array.dtype)

    def download(self, buffer: DeviceBuffer) -> np.ndarray:
        with self.activate():  # .cpu() on the current (our) stream waits for the work queued on it
            return buffer.handle.cpu().numpy()
