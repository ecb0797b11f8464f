"""Cross-Consistency Training wrapper: the Segmenter plus cheap auxiliary decoders.

One encoder pass feeds the main decoder (ASPP + low-level skip, the deployable ``Segmenter``)
and ``K`` auxiliary decoders, each seeing its own perturbed copy of ``Features.high``. On
unlabelled frames the trainer penalises the aux outputs' distance to the (detached) main
prediction; the gradient flows through the aux decoders into the shared encoder.

Auxiliary decoder design (``AuxHead``): 1x1 conv to ``hidden_channels`` (64) + BN + ReLU +
1x1 conv to classes, then bilinear upsampling to the main decoder's native resolution
(stride 4, where the consistency loss compares them). Why so small: the
reference CCT uses a decoder per perturbation as large as the main one; with 30 of them on a
DeepLabV3+ the CCT step would cost several supervised steps. On the stride-16, 320-channel map
a head costs ~0.02 GFLOP at 320x320 - 30 heads together are a few percent of the encoder - so
the CCT step stays within the ~1.8x budget of a supervised step on CPU. The consistency signal
still reaches the encoder, which is what CCT trains; the aux heads are discarded after training.

Consistency resolution: the reference compares softmaxes at the input size. Above stride 4 the
main prediction is only bilinear upsampling, so we compare at stride 4 (``CCTOutput.main_native``):
measured on CPU, 30 softmax-MSE terms at 320x320 cost as much as the whole supervised step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cct_surgical_seg.model.config import ModelConfig
from cct_surgical_seg.model.deeplab import Segmenter, build_segmenter, resize
from cct_surgical_seg.model.perturbations import (
    VAT,
    ContextMasking,
    Cutout,
    FeatureDrop,
    FeatureNoise,
    ObjectMasking,
    Perturbation,
    SpatialDropout,
)

# Kinds in the order aux decoders are built (stable, so aux state dicts reload by index).
AUX_KINDS: tuple[str, ...] = (
    "vat",
    "dropout",
    "cutout",
    "context_masking",
    "object_masking",
    "feature_drop",
    "feature_noise",
)


@dataclasses.dataclass(frozen=True)
class AuxConfig:
    """How many auxiliary decoders of each kind, and the perturbation strengths.

    Defaults are the CCT reference (REFERENCES.md): 2 VAT, 6 dropout, 6 cutout, 2 context
    masking, 2 object masking, 6 feature drop, 6 feature noise = 30 decoders.
    """

    vat: int = 2
    dropout: int = 6
    cutout: int = 6
    context_masking: int = 2
    object_masking: int = 2
    feature_drop: int = 6
    feature_noise: int = 6
    hidden_channels: int = 64
    vat_xi: float = 1e-6
    vat_eps: float = 2.0
    vat_iterations: int = 1
    drop_rate: float = 0.5
    erase: float = 0.4
    noise_range: float = 0.3
    feature_drop_low: float = 0.7
    feature_drop_high: float = 0.9

    def __post_init__(self) -> None:
        for kind in AUX_KINDS:
            count = getattr(self, kind)
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise ValueError(f"aux count {kind!r} must be an int >= 0, got {count!r}")
        if not isinstance(self.hidden_channels, int) or self.hidden_channels < 1:
            raise ValueError(f"hidden_channels must be a positive int, got {self.hidden_channels!r}")
        # The perturbation constructors validate their own strengths; build one of each to check.
        build_perturbation("vat", self)
        build_perturbation("cutout", self)
        build_perturbation("feature_drop", self)
        build_perturbation("feature_noise", self)
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {self.drop_rate}")

    @property
    def total(self) -> int:
        return sum(getattr(self, kind) for kind in AUX_KINDS)

    def kinds(self) -> list[str]:
        """One entry per aux decoder, in build order."""
        return [kind for kind in AUX_KINDS for _ in range(getattr(self, kind))]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuxConfig:
        """Build from a dict; unknown keys raise ValueError naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown AuxConfig keys: {unknown} (known: {sorted(known)})")
        return cls(**dict(data))


def build_perturbation(kind: str, cfg: AuxConfig) -> Perturbation:
    """The perturbation module for one aux decoder ``kind``."""
    if kind == "vat":
        return VAT(cfg.vat_xi, cfg.vat_eps, cfg.vat_iterations)
    if kind == "dropout":
        return SpatialDropout(cfg.drop_rate)
    if kind == "cutout":
        return Cutout(cfg.erase)
    if kind == "context_masking":
        return ContextMasking()
    if kind == "object_masking":
        return ObjectMasking()
    if kind == "feature_drop":
        return FeatureDrop(cfg.feature_drop_low, cfg.feature_drop_high)
    if kind == "feature_noise":
        return FeatureNoise(cfg.noise_range)
    raise ValueError(f"unknown aux decoder kind {kind!r} (known: {AUX_KINDS})")


class AuxHead(nn.Module):
    """The cheap aux decoder body: 1x1 conv -> BN -> ReLU -> 1x1 conv to class logits."""

    def __init__(self, in_ch: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, num_classes, 1),
        )

    def forward(self, high: Tensor, size: Sequence[int]) -> Tensor:
        return resize(self.body(high), size)


class AuxDecoder(nn.Module):
    """A perturbation in front of an ``AuxHead``: ``(high, main_logits) -> logits at their size``."""

    def __init__(self, kind: str, perturbation: Perturbation, head: AuxHead) -> None:
        super().__init__()
        self.kind = kind
        self.perturbation = perturbation
        self.head = head

    def forward(self, high: Tensor, main_logits: Tensor) -> Tensor:
        size = main_logits.shape[-2:]
        main = main_logits.detach()
        perturbed = self.perturbation(high, main_logits=main, decoder=lambda f: self.head(f, size))
        return self.head(perturbed, size)


class CCTOutput(NamedTuple):
    """Main logits at the input size (for the supervised loss), the same logits at the decoder's
    native stride-4 resolution, and one aux logits tensor of ``main_native``'s shape per decoder."""

    main: Tensor
    aux: list[Tensor]
    main_native: Tensor


class CCTModel(nn.Module):
    """``.segmenter`` (deployable) + ``.aux_decoders`` (training only, never exported with it)."""

    def __init__(
        self, cfg: ModelConfig, aux_cfg: AuxConfig | None = None, segmenter: Segmenter | None = None
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.aux_cfg = aux_cfg if aux_cfg is not None else AuxConfig()
        self.segmenter = segmenter if segmenter is not None else build_segmenter(cfg)
        self.aux_decoders = nn.ModuleList(
            AuxDecoder(
                kind,
                build_perturbation(kind, self.aux_cfg),
                AuxHead(self.segmenter.high_channels, self.aux_cfg.hidden_channels, cfg.num_classes),
            )
            for kind in self.aux_cfg.kinds()
        )

    def forward(self, x: Tensor) -> Tensor:
        """Main logits only (what evaluation and deployment use)."""
        return self.segmenter(x)

    def forward_cct(self, x: Tensor, compute_aux: bool = True) -> CCTOutput:
        """One encoder pass -> main logits and (if ``compute_aux``) every aux decoder's logits."""
        features = self.segmenter.encode(x)
        native = self.segmenter.decode_native(features)
        main = resize(native, x.shape[-2:])
        if not compute_aux:
            return CCTOutput(main, [], native)
        return CCTOutput(main, [decoder(features.high, native) for decoder in self.aux_decoders], native)


class UncertaintyModel(nn.Module):
    """Exportable ``x -> (probs N,C,H,W, disagreement N)`` from a segmenter and aux heads.

    ``x`` is normalised like the Segmenter's input (deploy wraps the 0..255 normalisation).
    The aux heads run on the UNperturbed ``Features.high`` (perturbations are training-time
    only and VAT/cutout are not exportable). Trained to agree with the main decoder under
    perturbation, they disagree where the representation is ambiguous, so
    ``disagreement = mean over heads and pixels of 0.5 * sum_c |p_main - p_aux|`` (total variation,
    in [0, 1]) is a cheap per-frame uncertainty score.
    """

    def __init__(self, segmenter: Segmenter, heads: Sequence[AuxHead]) -> None:
        super().__init__()
        if len(heads) == 0:
            raise ValueError("UncertaintyModel needs at least one aux head")
        self.segmenter = segmenter
        self.heads = nn.ModuleList(heads)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        size = x.shape[-2:]
        features = self.segmenter.encode(x)
        probs = F.softmax(self.segmenter.decode(features, size), dim=1)
        total = torch.zeros_like(probs[:, 0, 0, 0])
        for head in self.heads:
            aux = F.softmax(head(features.high, size), dim=1)
            total = total + 0.5 * (aux - probs).abs().sum(dim=1).mean(dim=(1, 2))
        return probs, total / len(self.heads)


def build_uncertainty_model(
    segmenter: Segmenter, aux_decoders: Sequence[AuxDecoder] | nn.ModuleList, max_heads: int | None = None
) -> UncertaintyModel:
    """UncertaintyModel from a segmenter and (the heads of) up to ``max_heads`` aux decoders."""
    decoders = list(aux_decoders)
    if max_heads is not None:
        decoders = decoders[:max_heads]
    return UncertaintyModel(segmenter, [d.head for d in decoders])
