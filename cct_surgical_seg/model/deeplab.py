"""DeepLabV3+ on EfficientNet-Lite (0, 1 or 2): ASPP, decoder and the deployable ``Segmenter``.

Everything here must export to ONNX (opset 17) and parse in TensorRT, so the graph uses only
convolutions (incl. grouped/dilated), BatchNorm, ReLU, concat, a global mean for ASPP image
pooling (no adaptive pooling) and bilinear resize with ``align_corners=False``.

The 3x3 convolutions in ASPP and the decoder are depthwise-separable (as in the DeepLabV3+
paper's Xception variant): with 128 channels at stride 4 a plain 3x3 decoder would cost more
than the whole Lite0 encoder, which matters for CPU training and edge inference.

In CCT terms the shared encoder is the DeepLabV3+ encoder (backbone + ASPP): the auxiliary
decoders see perturbed copies of the ASPP output (post-ReLU, ``aspp_channels`` wide), and the main
decoder is the low-level skip and refinement (``DeepLabV3PlusDecoder``). ``model/cct.py`` wires it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cct_surgical_seg.model.config import ModelConfig
from cct_surgical_seg.model.encoder import Features, build_encoder

ASPP_DROPOUT = 0.1


def resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize with ``align_corners=False`` (the TensorRT-friendly convention).

    ``size`` is passed through untouched (no ``int()``), so a traced ONNX export keeps it
    dynamic when it comes from a tensor's shape.
    """
    return F.interpolate(x, size=tuple(size[-2:]), mode="bilinear", align_corners=False)


class ConvBNReLU(nn.Sequential):
    """1x1 (or kxk) conv -> BN -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, dilation: int = 1) -> None:
        super().__init__(
            nn.Conv2d(
                in_ch, out_ch, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation, bias=False
            ),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class SeparableConvBNReLU(nn.Sequential):
    """Depthwise 3x3 (optionally dilated) -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, dilation: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_ch, in_ch, 3, padding=dilation, dilation=dilation, groups=in_ch, bias=False),
            nn.BatchNorm2d(in_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


class ImagePooling(nn.Module):
    """ASPP image-level branch: global mean -> 1x1 conv -> ReLU -> broadcast back.

    No BatchNorm on the 1x1-pixel map: in training with batch 1 BN would see a single value
    per channel and fail; the conv bias does its job. The mean is ``x.mean((2, 3))`` rather
    than adaptive pooling so TensorRT parses it as a plain ReduceMean.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 1, bias=True)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.act(self.conv(x.mean(dim=(2, 3), keepdim=True)))
        return pooled.expand(-1, -1, x.shape[2], x.shape[3])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, three dilated 3x3, image pooling; project + dropout."""

    def __init__(self, in_ch: int, out_ch: int, rates: Sequence[int]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [ConvBNReLU(in_ch, out_ch, 1)] + [SeparableConvBNReLU(in_ch, out_ch, r) for r in rates]
        )
        self.pooling = ImagePooling(in_ch, out_ch)
        self.project = nn.Sequential(
            ConvBNReLU(out_ch * (len(rates) + 2), out_ch, 1),
            nn.Dropout(ASPP_DROPOUT),
        )

    def forward(self, x: Tensor) -> Tensor:
        outs = [branch(x) for branch in self.branches]
        outs.append(self.pooling(x))
        return self.project(torch.cat(outs, dim=1))


class DeepLabV3PlusDecoder(nn.Module):
    """Project low-level features, concat with upsampled ASPP output, refine, classify.

    Returns logits at the low-level (stride 4) resolution; ``Segmenter.decode`` resizes them.
    """

    def __init__(
        self, low_in: int, aspp_ch: int, low_level_ch: int, decoder_ch: int, num_classes: int
    ) -> None:
        super().__init__()
        self.low_project = ConvBNReLU(low_in, low_level_ch, 1)
        self.refine = nn.Sequential(
            SeparableConvBNReLU(aspp_ch + low_level_ch, decoder_ch),
            SeparableConvBNReLU(decoder_ch, decoder_ch),
        )
        self.classifier = nn.Conv2d(decoder_ch, num_classes, 1)

    def fuse(self, aspp_out: Tensor, low_projected: Tensor) -> Tensor:
        """Logits from the ASPP output and the already projected low-level features."""
        x = torch.cat([resize(aspp_out, low_projected.shape[-2:]), low_projected], dim=1)
        return self.classifier(self.refine(x))

    def forward(self, aspp_out: Tensor, low: Tensor) -> Tensor:
        return self.fuse(aspp_out, self.low_project(low))


class Segmenter(nn.Module):
    """The deployable main branch: normalised ``N,3,H,W`` in, logits ``N,C,H,W`` out.

    ``encode`` and ``decode`` are split so ``CCTModel`` can run the backbone once and reach the
    ASPP output and the low-level projection that its auxiliary decoders share with the main one.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = build_encoder(cfg.output_stride, pretrained=cfg.pretrained, variant=cfg.encoder)
        self.aspp = ASPP(self.encoder.high_channels, cfg.aspp_channels, cfg.effective_aspp_rates)
        self.decoder = DeepLabV3PlusDecoder(
            self.encoder.low_channels,
            cfg.aspp_channels,
            cfg.low_level_channels,
            cfg.decoder_channels,
            cfg.num_classes,
        )
        self._init_head()

    def _init_head(self) -> None:
        for module in (self.aspp, self.decoder):
            for m in module.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    @property
    def num_classes(self) -> int:
        return self.cfg.num_classes

    @property
    def high_channels(self) -> int:
        """Channels of ``Features.high`` (the backbone's stride-16 output, ASPP's input)."""
        return self.encoder.high_channels

    def encode(self, x: Tensor) -> Features:
        return self.encoder(x)

    def decode_native(self, features: Features) -> Tensor:
        """Main decoder logits at its own resolution (that of ``features.low``, stride 4).

        Everything finer is bilinear upsampling, so CCT compares predictions here: 16x fewer
        pixels than at the input size for the same information.
        """
        return self.decoder(self.aspp(features.high), features.low)

    def decode(self, features: Features, size: Sequence[int]) -> Tensor:
        """Main decoder: logits at ``size`` (H, W) from the encoder features."""
        return resize(self.decode_native(features), size)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x), x.shape[-2:])


def build_segmenter(cfg: ModelConfig) -> Segmenter:
    """A Segmenter for ``cfg`` (ImageNet encoder when ``cfg.pretrained``)."""
    return Segmenter(cfg)
