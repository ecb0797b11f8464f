"""Cross-Consistency Training wrapper: the Segmenter plus auxiliary decoders.

One backbone pass feeds the main decoder and ``K`` auxiliary decoders, each seeing its own
perturbed copy of the shared encoder output. On unlabelled frames the trainer penalises the aux
outputs' distance to the (detached) main prediction; the gradient flows through the aux decoders
into the shared encoder, which is what CCT trains. Aux decoders are discarded after training.

Placement (``AuxConfig.placement``):
- ``aspp`` (default): the shared encoder is the DeepLabV3+ encoder, backbone + ASPP, as DeepLabV3+
  defines it. Perturbations act on the ASPP output, which is post-ReLU (non-negative, as F-Drop's
  activation-strength attention needs), so ASPP receives the unlabelled signal too. Each aux
  decoder (``head``) can approach the main output when nothing is perturbed:
  ``upsample`` (default) is the reference CCT head, a 1x1 conv to ``classes x 4 x 4`` + pixel
  shuffle to stride 4; ``skip`` is a light copy of the main decoder (the ASPP output reduced to
  ``hidden_channels`` and upsampled, fused with the main decoder's low-level projection by a 1x1
  convolution, a depthwise 3x3, classified), which fits the main output closer and makes a CCT
  step about 10 % costlier on CPU (bench/bench_train_step.py).
- ``backbone``: perturbations act on the backbone's stride-16 output (signed, linear-bottleneck
  BN output) and each aux decoder is a 1x1 head (``AuxHead``); ASPP and the decoder get no
  unlabelled signal. Kept to compare the two placements in the accuracy table.

Consistency resolution: the reference compares softmaxes at the input size. Above stride 4 the
main prediction is only bilinear upsampling, so we compare at stride 4 (``CCTOutput.main_native``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cct_surgical_seg.model.config import ModelConfig
from cct_surgical_seg.model.deeplab import (
    ConvBNReLU,
    Segmenter,
    build_segmenter,
    resize,
)
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

PLACEMENTS: tuple[str, ...] = ("aspp", "backbone")
HEADS: tuple[str, ...] = ("upsample", "skip")

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

    Counts and strengths are the CCT reference (REFERENCES.md): 2 VAT, 6 dropout, 6 cutout,
    2 context masking, 2 object masking, 6 feature drop, 6 feature noise = 30 decoders, except
    ``vat_eps``, which is relative to each sample's feature L2 norm (see ``VAT``).
    ``placement`` and ``head`` are described in the module docstring.
    """

    vat: int = 2
    dropout: int = 6
    cutout: int = 6
    context_masking: int = 2
    object_masking: int = 2
    feature_drop: int = 6
    feature_noise: int = 6
    placement: str = "aspp"
    head: str = "upsample"
    hidden_channels: int = 32
    vat_xi: float = 1e-6
    vat_eps: float = 0.1
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
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {self.placement!r}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
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
    """Backbone placement: 1x1 conv -> BN -> ReLU -> 1x1 conv to class logits (no skip)."""

    def __init__(self, in_ch: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, num_classes, 1),
        )

    def forward(self, x: Tensor, low: Tensor, size: Sequence[int]) -> Tensor:
        return _fit(self.body(x), size)


class UpsampleHead(nn.Module):
    """The reference CCT decoder: 1x1 conv to ``classes * r^2`` + pixel shuffle by ``r`` (no skip)."""

    def __init__(self, in_ch: int, num_classes: int, upscale: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, num_classes * upscale**2, 1)
        self.shuffle = nn.PixelShuffle(upscale)

    def forward(self, x: Tensor, low: Tensor, size: Sequence[int]) -> Tensor:
        return _fit(self.shuffle(self.conv(x)), size)


class SkipHead(nn.Module):
    """A light copy of the main decoder: ``classify(relu(up(reduce(x)) + project(low)))``.

    That is a 1x1 convolution over the concatenation of the upsampled, reduced encoder output and
    the main decoder's low-level projection, written as a sum so that no concatenated stride-4
    tensor is built: with 30 decoders the stride-4 work dominates a CCT step's cost.
    """

    def __init__(self, in_ch: int, low_ch: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.reduce = ConvBNReLU(in_ch, hidden, 1)
        self.project = nn.Conv2d(low_ch, hidden, 1)
        self.refine = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.classifier = nn.Conv2d(hidden, num_classes, 1)

    def forward(self, x: Tensor, low: Tensor, size: Sequence[int]) -> Tensor:
        low = low.to(x.dtype)  # VAT runs the head in float32 on features computed under autocast
        fused = F.relu(_fit(self.reduce(x), low.shape[-2:]) + self.project(low))
        return _fit(self.classifier(F.relu(self.refine(fused))), size)


def _fit(x: Tensor, size: Sequence[int]) -> Tensor:
    """``x`` resized to ``size`` (H, W) unless it already has it."""
    return x if tuple(x.shape[-2:]) == tuple(size[-2:]) else resize(x, size)


def build_head(cfg: AuxConfig, segmenter: Segmenter) -> nn.Module:
    """The aux decoder body for ``cfg.placement`` / ``cfg.head``."""
    num_classes = segmenter.num_classes
    if cfg.placement == "backbone":
        return AuxHead(segmenter.high_channels, cfg.hidden_channels, num_classes)
    if cfg.head == "upsample":
        return UpsampleHead(segmenter.cfg.aspp_channels, num_classes, segmenter.cfg.output_stride // 4)
    return SkipHead(
        segmenter.cfg.aspp_channels, segmenter.cfg.low_level_channels, cfg.hidden_channels, num_classes
    )


class AuxDecoder(nn.Module):
    """A perturbation in front of a head: ``(x, low, main_logits) -> logits at main_logits' size``.

    ``x`` is the shared encoder output the perturbation acts on; ``low`` the main decoder's
    low-level projection (used by ``SkipHead`` only, never perturbed).
    """

    def __init__(
        self, kind: str, perturbation: Perturbation, head: nn.Module, placement: str = "aspp"
    ) -> None:
        super().__init__()
        self.kind = kind
        self.placement = placement
        self.perturbation = perturbation
        self.head = head

    def forward(self, x: Tensor, low: Tensor, main_logits: Tensor) -> Tensor:
        size = main_logits.shape[-2:]
        main = main_logits.detach()
        perturbed = self.perturbation(x, main_logits=main, decoder=lambda f: self.head(f, low, size))
        return self.head(perturbed, low, size)


class SharedFeatures(NamedTuple):
    """What one encoder pass gives the decoders: the main logits at stride 4, the tensor the
    perturbations act on (``x``) and the low-level projection."""

    native: Tensor
    x: Tensor
    low: Tensor


def shared_features(segmenter: Segmenter, image: Tensor, placement: str) -> SharedFeatures:
    """Run the segmenter once and keep what the aux decoders of ``placement`` need."""
    features = segmenter.encode(image)
    aspp = segmenter.aspp(features.high)
    low = segmenter.decoder.low_project(features.low)
    native = segmenter.decoder.fuse(aspp, low)
    return SharedFeatures(native, aspp if placement == "aspp" else features.high, low)


class CCTOutput(NamedTuple):
    """Main logits at the input size (for the supervised loss), the same logits at the decoder's
    native stride-4 resolution, one aux logits tensor of ``main_native``'s shape per decoder, and
    the consistency target the aux outputs are compared with (``main_native`` unless a teacher's
    prediction or a strong view replaced it)."""

    main: Tensor
    aux: list[Tensor]
    main_native: Tensor
    target: Tensor


StrongView = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


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
                build_head(self.aux_cfg, self.segmenter),
                self.aux_cfg.placement,
            )
            for kind in self.aux_cfg.kinds()
        )

    def forward(self, x: Tensor) -> Tensor:
        """Main logits only (what evaluation and deployment use)."""
        return self.segmenter(x)

    def forward_cct(
        self,
        x: Tensor,
        compute_aux: bool = True,
        target: Tensor | None = None,
        strong: StrongView | None = None,
    ) -> CCTOutput:
        """One encoder pass -> main logits and (if ``compute_aux``) every aux decoder's logits.

        ``target``: consistency target logits at stride 4 (default: the main prediction, detached
        by the decoders and the loss). ``strong``: ``(x, target) -> (x_strong, target_strong)``;
        the aux decoders then see a second encoder pass over ``x_strong`` and are compared with
        ``target_strong`` (weak-to-strong consistency).
        """
        shared = shared_features(self.segmenter, x, self.aux_cfg.placement)
        main = resize(shared.native, x.shape[-2:])
        target = shared.native.detach() if target is None else target.detach()
        if not compute_aux:
            return CCTOutput(main, [], shared.native, target)
        seen = shared
        if strong is not None:
            x_strong, target = strong(x, target)
            seen = shared_features(self.segmenter, x_strong, self.aux_cfg.placement)
        aux = [decoder(seen.x, seen.low, target) for decoder in self.aux_decoders]
        return CCTOutput(main, aux, shared.native, target)


class UncertaintyModel(nn.Module):
    """Exportable ``x -> (probs N,C,H,W, disagreement N)`` from a segmenter and aux heads.

    ``x`` is normalised like the Segmenter's input (deploy wraps the 0..255 normalisation).
    The aux heads run on the UNperturbed shared features (perturbations are training-time
    only and VAT/cutout are not exportable). Trained to agree with the main decoder under
    perturbation, they disagree where the representation is ambiguous, so
    ``disagreement = mean over heads and pixels of 0.5 * sum_c |p_main - p_aux|`` (total variation,
    in [0, 1]) is a cheap per-frame uncertainty score.
    """

    def __init__(self, segmenter: Segmenter, heads: Sequence[nn.Module], placement: str = "aspp") -> None:
        super().__init__()
        if len(heads) == 0:
            raise ValueError("UncertaintyModel needs at least one aux head")
        self.segmenter = segmenter
        self.heads = nn.ModuleList(heads)
        self.placement = placement

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        size = x.shape[-2:]
        shared = shared_features(self.segmenter, x, self.placement)
        probs = F.softmax(resize(shared.native, size), dim=1)
        total = torch.zeros_like(probs[:, 0, 0, 0])
        for head in self.heads:
            aux = F.softmax(resize(head(shared.x, shared.low, shared.native.shape[-2:]), size), dim=1)
            total = total + 0.5 * (aux - probs).abs().sum(dim=1).mean(dim=(1, 2))
        return probs, total / len(self.heads)


def build_uncertainty_model(
    segmenter: Segmenter, aux_decoders: Sequence[AuxDecoder] | nn.ModuleList, max_heads: int | None = None
) -> UncertaintyModel:
    """UncertaintyModel from a segmenter and (the heads of) up to ``max_heads`` aux decoders."""
    decoders = list(aux_decoders)
    if max_heads is not None:
        decoders = decoders[:max_heads]
    placement = decoders[0].placement if decoders else "aspp"
    return UncertaintyModel(segmenter, [d.head for d in decoders], placement)
