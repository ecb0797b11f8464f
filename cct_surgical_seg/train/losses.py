"""Training losses: supervised cross-entropy, CCT consistency and its ramp-up weight.

The consistency target is ``softmax(main).detach()``: in CCT the main decoder learns only from
labels, while the unsupervised signal trains the shared encoder through the auxiliary decoders.
Letting gradient reach the main branch through the target would let it drift towards the
perturbed predictions instead.

VAT needs no loss of its own here: ``model.perturbations.VAT`` finds its adversarial direction
internally, and its aux decoder's output enters ``consistency_loss`` like any other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor


def supervised_loss(
    logits: Tensor, target: Tensor, class_weights: Tensor | None = None, ignore_index: int = 255
) -> Tensor:
    """Pixel-wise cross-entropy of ``N,C,H,W`` logits against ``N,H,W`` class ids.

    Pixels equal to ``ignore_index`` do not count. A batch with no valid pixel returns a zero
    that still depends on ``logits`` (so ``backward`` works) rather than the NaN of an empty mean.
    """
    if logits.dim() != 4 or target.dim() != 3 or logits.shape[0] != target.shape[0]:
        raise ValueError(
            f"expected logits N,C,H,W and target N,H,W; got {tuple(logits.shape)}, {tuple(target.shape)}"
        )
    if logits.shape[-2:] != target.shape[-2:]:
        raise ValueError(f"logits size {tuple(logits.shape[-2:])} != target size {tuple(target.shape[-2:])}")
    target = target.long()
    if not bool((target != ignore_index).any()):
        return logits.sum() * 0.0
    logits = logits.float()  # losses in float32 whatever the autocast dtype of the network
    weight = class_weights.to(device=logits.device, dtype=logits.dtype) if class_weights is not None else None
    return F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index)


def consistency_loss(main_logits: Tensor, aux_logits: Sequence[Tensor], threshold: float = 0.0) -> Tensor:
    """Mean over aux decoders of ``MSE(softmax(aux), softmax(main).detach())``.

    The MSE averages over frames, classes and pixels (CCT's ``softmax_mse_loss``). With
    ``threshold`` > 0 only pixels whose target's max probability reaches it count (confidence
    masking); the mean is then over those pixels. With no aux decoders, or no pixel left, the
    loss is a zero that depends on ``main_logits``.
    """
    if len(aux_logits) == 0:
        return main_logits.sum() * 0.0
    target = F.softmax(main_logits.detach().float(), dim=1)
    keep = (target.amax(dim=1, keepdim=True) >= threshold).float()
    kept = keep.sum() * target.shape[1]
    if kept == 0:
        return main_logits.sum() * 0.0
    total = target.new_zeros(())
    for index, aux in enumerate(aux_logits):
        if aux.shape != main_logits.shape:
            raise ValueError(
                f"aux output {index} has shape {tuple(aux.shape)}, main {tuple(main_logits.shape)}"
            )
        total = total + ((F.softmax(aux.float(), dim=1) - target).square() * keep).sum() / kept
    return total / len(aux_logits)


def sigmoid_rampup(step: float, rampup_steps: float) -> float:
    """``exp(-5 (1 - t)^2)`` with ``t = step / rampup_steps`` clipped to [0, 1] (Laine & Aila).

    ``rampup_steps <= 0`` means no ramp (1.0).
    """
    if rampup_steps <= 0:
        return 1.0
    t = min(max(float(step) / float(rampup_steps), 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


class ConsistencyWeight:
    """Weight of the consistency loss at a training step: ``final_weight * sigmoid_rampup``.

    Reference: ``final_weight`` 30, ramp over the first 10% of training. Steps before
    ``start_step`` (e.g. a supervised warm-up stage) get weight 0; the ramp starts at
    ``start_step``.
    """

    def __init__(self, final_weight: float = 30.0, rampup_steps: int = 0, start_step: int = 0) -> None:
        if final_weight < 0 or rampup_steps < 0 or start_step < 0:
            raise ValueError("final_weight, rampup_steps and start_step must be >= 0")
        self.final_weight = float(final_weight)
        self.rampup_steps = int(rampup_steps)
        self.start_step = int(start_step)

    def __call__(self, step: int) -> float:
        if step < self.start_step:
            return 0.0
        return self.final_weight * sigmoid_rampup(step - self.start_step, self.rampup_steps)

    def __repr__(self) -> str:
        return (
            f"ConsistencyWeight(final_weight={self.final_weight}, rampup_steps={self.rampup_steps}, "
            f"start_step={self.start_step})"
        )


__all__ = ["ConsistencyWeight", "consistency_loss", "sigmoid_rampup", "supervised_loss"]
