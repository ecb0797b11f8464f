"""A fake CUDA layer with the methods of ``cuda_device.CudaDevice``, on host memory.

It keeps the state the TensorRT fake checks, as CUDA would: which device is current (set only
inside ``activate()``), which addresses are allocated on which device and how large they are,
and which stream handles exist. The fake ``tensorrt`` module reads and writes "device memory"
through ``MEMORY`` by address, so a wrong address, size, dtype or device in the backend shows up
as a failed execution or wrong numbers, as on a GPU.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from cct_surgical_seg.deploy.backends.cuda_device import DeviceBuffer
from cct_surgical_seg.deploy.errors import BackendUnavailableError

#: (name, compute capability) of the fake machine's GPUs, by index.
DEVICES = [("NVIDIA H100 80GB HBM3", "9.0"), ("NVIDIA RTX A4000", "8.6")]


@dataclass
class Allocation:
    device: int
    array: np.ndarray  # flat uint8 bytes


#: address -> allocation; the TensorRT fake resolves tensor addresses here.
MEMORY: dict[int, Allocation] = {}
#: stream handle -> device index.
STREAMS: dict[int, int] = {}
_current = [0]  # CUDA makes device 0 current until a program sets another
_handles = itertools.count(0x7F00_0000)


def current_device() -> int:
    """The device an enclosing ``activate()`` made current, else 0 (CUDA's default)."""
    return _current[0]


def reset() -> None:
    MEMORY.clear()
    STREAMS.clear()
    _current[0] = 0


def read(ptr: int, shape: tuple[int, ...], dtype: np.dtype, device: int) -> np.ndarray:
    """The array at ``ptr``, as a kernel on ``device`` would see it; RuntimeError if it cannot."""
    allocation = MEMORY.get(ptr)
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if allocation is None or allocation.device != device or allocation.array.nbytes < nbytes:
        raise RuntimeError(f"illegal memory access at {ptr:#x} ({nbytes} bytes on device {device})")
    return allocation.array[:nbytes].view(dtype).reshape(shape)


class FakeCudaDevice:
    """Same constructor and methods as ``TorchCudaDevice``, same errors for a missing device."""

    def __init__(self, index: int = 0) -> None:
        if not 0 <= index < len(DEVICES):
            raise BackendUnavailableError(
                f"CUDA device {index} does not exist ({len(DEVICES)} device(s) here)"
            )
        self.index = index
        self.name, self.compute_capability = DEVICES[index]
        self._stream = next(_handles)
        STREAMS[self._stream] = index

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        previous, _current[0] = _current[0], self.index
        try:
            yield
        finally:
            _current[0] = previous

    @property
    def stream_handle(self) -> int:
        return self._stream

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> DeviceBuffer:
        data = np.full(max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize), 0xAB, np.uint8)  # not zeros
        ptr = data.ctypes.data
        MEMORY[ptr] = Allocation(self.index, data)
        return DeviceBuffer(ptr, tuple(shape), np.dtype(dtype), data)

    def upload(self, array: np.ndarray) -> DeviceBuffer:
        buffer = self.empty(array.shape, array.dtype)
        buffer.handle[: array.nbytes] = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
        return buffer

    def download(self, buffer: DeviceBuffer) -> np.ndarray:
        return read(buffer.ptr, buffer.shape, buffer.dtype, self.index).copy()
