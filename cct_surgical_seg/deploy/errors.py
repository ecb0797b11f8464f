"""Exceptions of the deploy layer.

Callers (the ROS node, ``cct-infer``, the simulator) catch these by type: a ``ModelLoadError`` at
start-up means "fix the model path or file", a ``BackendUnavailableError`` means "this machine
lacks the runtime", and neither should ever be confused with a bug in a frame.
"""

from __future__ import annotations


class DeployError(Exception):
    """Base class of every error raised on purpose by ``cct_surgical_seg.deploy``."""


class ModelLoadError(DeployError):
    """A model file is missing, corrupt, of the wrong kind or lacks what the pipeline needs."""


class BackendUnavailableError(DeployError):
    """The requested runtime (TensorRT, a CUDA provider, PyTorch) is not usable on this machine."""


class ExportError(DeployError):
    """An ONNX export failed or produced a graph a deployment target cannot run."""


class ImageFormatError(ValueError):
    """An input image has a dtype, shape or size the pipeline cannot interpret."""
