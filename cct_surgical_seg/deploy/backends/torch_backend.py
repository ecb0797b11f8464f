"""PyTorch backend: the reference every other runtime is compared against.

``DeployedSegmenter`` is the exact graph ``cct-export`` traces (0..255 RGB in, normalisation,
Segmenter, softmax out), so "ONNX matches PyTorch" compares the same computation, not two
hand-written copies of the pre-processing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from cct_surgical_seg.deploy.backends.base import Backend, BackendOutput, check_model_file
from cct_surgical_seg.deploy.errors import BackendUnavailableError, ModelLoadError
from cct_surgical_seg.deploy.model_info import ModelInfo

LOG = logging.getLogger(__name__)

try:  # torch is an optional extra ("train"); the deploy layer must import without it
    import torch
    from torch import Tensor, nn
except ImportError:  # pragma: no cover - exercised on ROS machines without torch
    torch = None  # type: ignore[assignment]


def _require_torch() -> None:
    if torch is None:
        raise BackendUnavailableError(
            "PyTorch is not installed (pip install torch), use backend 'onnxruntime'"
        )


if torch is not None:

    class DeployedSegmenter(nn.Module):
        """0..255 RGB ``N,3,H,W`` -> softmax probabilities ``N,C,H,W`` (+ disagreement ``N``).

        Normalisation sits inside so no runtime or caller can forget or double it. ``net`` is a
        ``Segmenter`` (logits out, softmax applied here) or a ``model.cct.UncertaintyModel``
        (already returns ``(probs, disagreement)``).
        """

        def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("mean255", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
            self.register_buffer("std255", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)

        def forward(self, image: Tensor) -> Tensor | tuple[Tensor, Tensor]:
            out = self.net((image - self.mean255) / self.std255)
            if isinstance(out, tuple):
                return out
            return torch.softmax(out, dim=1)


def load_checkpoint_segmenter(path: str | os.PathLike[str]):  # -> (Segmenter, ModelConfig)
    """``load_segmenter`` with every failure turned into ``ModelLoadError``."""
    _require_torch()
    from cct_surgical_seg.model.checkpoint import CheckpointError, load_segmenter

    check_model_file(path, "checkpoint")
    try:
        return load_segmenter(path, map_location="cpu")
    except CheckpointError as exc:
        raise ModelLoadError(f"cannot load checkpoint: {exc}") from exc


def load_uncertainty_net(path: str | os.PathLike[str], max_heads: int | None = None):
    """Segmenter + the checkpoint's aux heads as a ``UncertaintyModel`` -> ``(net, ModelConfig)``."""
    _require_torch()
    from cct_surgical_seg.model.cct import AuxConfig, CCTModel, build_uncertainty_model
    from cct_surgical_seg.model.checkpoint import CheckpointError, check_state_dict, load_checkpoint

    segmenter, cfg = load_checkpoint_segmenter(path)
    try:
        data = load_checkpoint(path)
        if not data.get("aux_config") or not data.get("aux_decoders"):
            raise ModelLoadError(
                f"{path}: no auxiliary decoders stored; the uncertainty export needs a CCT checkpoint"
            )
        cct = CCTModel(cfg, AuxConfig.from_dict(data["aux_config"]), segmenter=segmenter)
        check_state_dict(cct.aux_decoders, data["aux_decoders"], path, "aux_decoders")
        cct.aux_decoders.load_state_dict(data["aux_decoders"], strict=True)
    except (CheckpointError, ValueError) as exc:
        raise ModelLoadError(f"cannot load auxiliary decoders: {exc}") from exc
    if len(cct.aux_decoders) == 0:
        raise ModelLoadError(f"{path}: the checkpoint's aux_config has zero auxiliary decoders")
    return build_uncertainty_model(segmenter, cct.aux_decoders, max_heads).eval(), cfg


def info_from_config(
    cfg, input_size: tuple[int, int] | None = None, has_disagreement: bool = False
) -> ModelInfo:
    return ModelInfo(
        class_names=tuple(cfg.class_names),
        input_size=input_size,
        mean=tuple(cfg.mean),  # type: ignore[arg-type]
        std=tuple(cfg.std),  # type: ignore[arg-type]
        has_disagreement=has_disagreement,
    )


class TorchBackend(Backend):
    """Runs a ``.pt`` checkpoint's Segmenter in PyTorch (eval mode, no autograd).

    ``uncertainty``: also run the checkpoint's aux heads (up to ``max_heads``) for ``disagreement``.
    ``input_size``: pretend the model is fixed-size (H, W) so the pipeline resizes exactly as for
    an ONNX export of that size; None = dynamic (pipeline pads to a multiple of 32).
    """

    name = "torch"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        num_threads: int | None = None,
        input_size: tuple[int, int] | None = None,
        uncertainty: bool = False,
        max_heads: int | None = None,
    ) -> None:
        if uncertainty:
            net, cfg = load_uncertainty_net(model_path, max_heads)
        else:
            net, cfg = load_checkpoint_segmenter(model_path)
        if num_threads is not None:
            torch.set_num_threads(int(num_threads))
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError("torch backend: CUDA requested but not available")
        self.device = torch.device(device)
        self.module = DeployedSegmenter(net, cfg.mean, cfg.std).to(self.device).eval()
        self.model_config = cfg
        size = (int(input_size[0]), int(input_size[1])) if input_size else None
        self.info = info_from_config(cfg, size, has_disagreement=uncertainty)
        LOG.info("torch: loaded %s on %s", model_path, self.device)

    def describe(self) -> str:
        return f"{self.name}[{self.device}]"

    def infer(self, batch: np.ndarray) -> BackendOutput:
        batch = self.check_batch(batch)
        with torch.inference_mode():
            out = self.module(torch.from_numpy(batch).to(self.device))
        if isinstance(out, tuple):
            return BackendOutput(
                probs=out[0].float().cpu().numpy(), disagreement=out[1].float().cpu().numpy()
            )
        return BackendOutput(probs=out.float().cpu().numpy())
