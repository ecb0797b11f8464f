"""model: PyTorch networks only (encoder, DeepLabV3+ Segmenter, CCT wrapper, checkpoints).

No ROS, no data loading. See docs/design.md for the contract.
"""

from cct_surgical_seg.model.cct import (
    AuxConfig,
    AuxDecoder,
    CCTModel,
    CCTOutput,
    UncertaintyModel,
    build_uncertainty_model,
)
from cct_surgical_seg.model.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    load_checkpoint,
    load_segmenter,
    make_payload,
    save_checkpoint,
)
from cct_surgical_seg.model.config import ModelConfig
from cct_surgical_seg.model.deeplab import Segmenter, build_segmenter
from cct_surgical_seg.model.encoder import Features

__all__ = [
    "CHECKPOINT_FORMAT",
    "AuxConfig",
    "AuxDecoder",
    "CCTModel",
    "CCTOutput",
    "CheckpointError",
    "Features",
    "ModelConfig",
    "Segmenter",
    "UncertaintyModel",
    "build_segmenter",
    "build_uncertainty_model",
    "load_checkpoint",
    "load_segmenter",
    "make_payload",
    "save_checkpoint",
]
