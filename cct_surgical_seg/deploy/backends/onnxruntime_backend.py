"""ONNX Runtime backend: the default on CPU, and on GPU through the CUDA / TensorRT providers.

ONNX Runtime is the one runtime every install has (it is a hard dependency), so this backend is
also the fallback of ``create_backend("auto")``. Its CUDA execution provider (the
``onnxruntime-gpu`` package, kind ``onnxruntime-cuda``) is the GPU path for machines without
TensorRT. A provider that is listed but cannot start (CUDA or cuDNN libraries missing) makes ONNX
Runtime fall back to the CPU on its own; that is reported as ``BackendUnavailableError`` here,
never run silently on the CPU.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from cct_surgical_seg.deploy.backends.base import Backend, BackendOutput, check_model_file, is_zip_file
from cct_surgical_seg.deploy.errors import BackendUnavailableError, ModelLoadError
from cct_surgical_seg.deploy.model_info import DISAGREEMENT_NAME, INPUT_NAME, PROBS_NAME, ModelInfo

LOG = logging.getLogger(__name__)

#: device option -> provider list, best first; ORT falls back along the list per node.
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
DEVICE_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OnnxRuntimeBackend(Backend):
    """Runs a ``cct-export`` ONNX file with ONNX Runtime.

    ``device``: ``cpu`` | ``cuda`` | ``tensorrt`` (ORT's execution providers, not our native
    TensorRT backend); ``device_index``: the CUDA device of the GPU providers. ``num_threads``:
    intra-op threads (None = ORT default, all cores); pin it on shared robots so segmentation does
    not starve the controller.
    """

    name = "onnxruntime"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        device_index: int = 0,
        num_threads: int | None = None,
        spin: bool = False,
    ) -> None:
        """``spin``: let ORT's worker threads busy-wait between runs. Off by default: spinning
        wins a little throughput on an idle machine, but in a ROS process it burns the cores that
        DDS, the executor and other nodes need between frames, which costs far more latency."""
        import onnxruntime as ort

        path = check_model_file(model_path, "ONNX")
        if is_zip_file(path):
            raise ModelLoadError(
                f"{path}: this is a PyTorch checkpoint, not an ONNX model; use backend 'torch' "
                "or export it with cct-export"
            )
        if device not in DEVICE_PROVIDERS:
            raise ValueError(f"device must be one of {sorted(DEVICE_PROVIDERS)}, got {device!r}")
        wanted = DEVICE_PROVIDERS[device]
        if wanted[0] not in ort.get_available_providers():
            raise BackendUnavailableError(
                f"ONNX Runtime has no {wanted[0]} here (available: {ort.get_available_providers()}); "
                "install onnxruntime-gpu or use device='cpu'"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
        if num_threads is not None:
            options.intra_op_num_threads = int(num_threads)
            options.inter_op_num_threads = 1
        providers = [(p, {"device_id": int(device_index)}) if p in GPU_PROVIDERS else p for p in wanted]
        try:
            self._session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # ORT raises its own exception types (InvalidProtobuf, Fail, ...)
            raise ModelLoadError(
                f"{path}: ONNX Runtime cannot load it ({type(exc).__name__}: {exc})"
            ) from exc
        started = self._session.get_providers()
        if started[0] != wanted[0]:
            raise BackendUnavailableError(
                f"ONNX Runtime could not start {wanted[0]} (it fell back to {started[0]}); check the "
                "CUDA/cuDNN libraries onnxruntime-gpu needs, or use device='cpu'"
            )
        inputs = [i.name for i in self._session.get_inputs()]
        outputs = [o.name for o in self._session.get_outputs()]
        if inputs != [INPUT_NAME] or PROBS_NAME not in outputs:
            raise ModelLoadError(
                f"{path}: expected input '{INPUT_NAME}' and output '{PROBS_NAME}', got inputs {inputs}, "
                f"outputs {outputs}"
            )
        meta = self._session.get_modelmeta().custom_metadata_map
        self.info = ModelInfo.from_metadata(meta, outputs, source=str(path))
        self._outputs = [PROBS_NAME] + ([DISAGREEMENT_NAME] if self.info.has_disagreement else [])
        self.device = device
        self.providers = self._session.get_providers()
        LOG.info("onnxruntime: loaded %s with providers %s", path, self.providers)

    def describe(self) -> str:
        return f"{self.name}[{self.providers[0]}]"

    def infer(self, batch: np.ndarray) -> BackendOutput:
        batch = self.check_batch(batch)
        results = self._session.run(self._outputs, {INPUT_NAME: batch})
        disagreement = results[1].astype(np.float32).reshape(-1) if len(results) > 1 else None
        return BackendOutput(probs=results[0], disagreement=disagreement)
