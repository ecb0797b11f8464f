"""CCT feature perturbations, one small module each (Ouali et al. 2020; yassouali/CCT semantics).

Each module perturbs the shared encoder output (``N,C,h,w``; the ASPP output in the default
placement, see ``model/cct.py``) before an auxiliary decoder sees it. They share one call
signature so ``AuxDecoder`` can treat them alike::

    perturbation(x, main_logits=None, decoder=None) -> perturbed x (same shape)

``main_logits`` is the main decoder's prediction (``N,K,H,W``, any spatial size; detached by the
caller) for the perturbations guided by it (masking, cutout, VAT); ``decoder`` is the auxiliary
decoder itself, which VAT needs to find its adversarial direction. Class 0 is background: the
"object" of masking and cutout is ``argmax(main) > 0``. Defaults are the reference values of
yassouali/CCT ``configs/config.json``, except VAT's ``eps``, which is relative to the feature norm.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Decoder = Callable[[Tensor], Tensor]


def object_mask(main_logits: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """``N,1,h,w`` float mask, 1 where the main prediction is not background, at feature ``size``.

    argmax first, then nearest downsampling, so the mask stays binary (as in CCT).
    """
    fg = (main_logits.argmax(dim=1, keepdim=True) > 0).float()
    return F.interpolate(fg, size=tuple(size), mode="nearest")


def _require(value: Tensor | Decoder | None, what: str, who: str):
    if value is None:
        raise ValueError(f"{who} needs {what}")
    return value


class Perturbation(nn.Module):
    """Base class documenting the shared signature; subclasses override ``forward``."""

    def forward(  # pragma: no cover - interface only
        self, x: Tensor, main_logits: Tensor | None = None, decoder: Decoder | None = None
    ) -> Tensor:
        raise NotImplementedError


class FeatureNoise(Perturbation):
    """Multiplicative uniform noise ``x + x * n``, ``n ~ U(-r, r)``; reference r = 0.3.

    One noise map of shape ``C,h,w`` is shared by the whole batch (as in CCT), so the perturbation
    scales each activation by at most ``1 +- r`` and never changes its sign.
    """

    def __init__(self, noise_range: float = 0.3) -> None:
        super().__init__()
        if not 0.0 <= noise_range < 1.0:
            raise ValueError(f"noise_range must be in [0, 1), got {noise_range}")
        self.noise_range = noise_range

    def forward(self, x: Tensor, main_logits: Tensor | None = None, decoder: Decoder | None = None) -> Tensor:
        noise = torch.empty(x.shape[1:], device=x.device, dtype=x.dtype).uniform_(
            -self.noise_range, self.noise_range
        )
        return x + x * noise.unsqueeze(0)


class FeatureDrop(Perturbation):
    """Zero the most active positions: channel-mean activation >= max * U(low, high).

    Reference ``low, high = 0.7, 0.9``. The threshold is drawn per sample; positions whose
    channel-mean activation reaches it are zeroed in all channels, the rest kept unchanged. This
    forces the decoder to use the less salient parts of the representation. The channel mean
    measures activation strength only on non-negative (post-ReLU) features, which is why the
    default placement perturbs the ASPP output; a sample whose maximum is <= 0 is kept whole.
    """

    def __init__(self, low: float = 0.7, high: float = 0.9) -> None:
        super().__init__()
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"need 0 < low <= high <= 1, got {low}, {high}")
        self.low, self.high = low, high

    def forward(self, x: Tensor, main_logits: Tensor | None = None, decoder: Decoder | None = None) -> Tensor:
        attention = x.mean(dim=1, keepdim=True)  # N,1,h,w
        max_val = attention.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
        scale = torch.empty_like(max_val).uniform_(self.low, self.high)
        keep = (attention < max_val * scale).to(x.dtype)
        return x * keep


class SpatialDropout(Perturbation):
    """``Dropout2d``: zero whole channels with probability p (reference 0.5), rescale the rest.

    Active in training mode only (like any dropout); aux decoders are training-only anyway.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.dropout = nn.Dropout2d(p)

    def forward(self, x: Tensor, main_logits: Tensor | None = None, decoder: Decoder | None = None) -> Tensor:
        return self.dropout(x)


class ObjectMasking(Perturbation):
    """Remove the OBJECT: zero features where the main prediction is an instrument (argmax > 0).

    Keeps only the context (background), so the decoder must infer the object from its
    surroundings. CCT's ``ObjectMaskingDecoder`` (``x * (1 - mask)``).
    """

    def forward(self, x: Tensor, main_logits: Tensor | None = None, decoder: Decoder | None = None) -> Tensor:
        logits = _require(main_logits, "the main prediction", "ObjectMasking")
        return x * (1.0 - object_mask(logits, x.shape[-2:]))


class ContextMasking(Perturbation):
    """Remove the CONTEXT: zero features where the main prediction is background (argmax == 0).

    Keeps only the object, so the decoder must segment it without scene context. CCT's
    ``ContextMaskingDecoder`` (``x * mask``).
    """

    def forward(self, x: Tensor, main_logits: Tensor | None = None, decoder: Decoder | None = None) -> Tensor:
        logits = _require(main_logits, "the main prediction", "ContextMasking")
        return x * object_mask(logits, x.shape[-2:])


def connected_components(mask: Tensor, max_iterations: int | None = None) -> Tensor:
    """4-connected component labels of a binary ``N,1,h,w`` mask (0 = background).

    Plain-torch label propagation (each object pixel repeatedly takes the largest label among
    its 4-neighbours) so ``model/`` needs no OpenCV; cheap at feature resolution (e.g. 20x20).
    Labels are arbitrary positive ints, unique per component within a sample.
    """
    n, _, h, w = mask.shape
    fg = mask > 0
    labels = torch.arange(1, h * w + 1, device=mask.device, dtype=torch.float32).view(1, 1, h, w)
    labels = labels.expand(n, 1, h, w) * fg
    limit = max_iterations if max_iterations is not None else h * w
    for _ in range(limit):
        padded = F.pad(labels, (1, 1, 1, 1))
        neighbours = torch.stack(
            [
                labels,
                padded[..., :-2, 1:-1],
                padded[..., 2:, 1:-1],
                padded[..., 1:-1, :-2],
                padded[..., 1:-1, 2:],
            ]
        ).amax(dim=0)
        updated = neighbours * fg
        if torch.equal(updated, labels):
            break
        labels = updated
    return labels.long()


class Cutout(Perturbation):
    """Erase ``erase`` (reference 0.4) of each predicted object's bounding box.

    Objects are the 4-connected components of ``argmax(main) > 0`` at feature resolution; for each
    one a box of ``erase * box_h x erase * box_w`` at a random position inside its bounding box is
    zeroed (CCT's ``guided_cutout``). Everything outside those boxes is kept unchanged.
    """

    def __init__(self, erase: float = 0.4) -> None:
        super().__init__()
        if not 0.0 < erase <= 1.0:
            raise ValueError(f"erase must be in (0, 1], got {erase}")
        self.erase = erase

    def cut_mask(self, main_logits: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
        """``N,1,h,w`` keep-mask (0 inside the erased boxes)."""
        labels = connected_components(object_mask(main_logits, size))
        keep = torch.ones(labels.shape, device=main_logits.device)
        for i in range(labels.shape[0]):
            for label in labels[i].unique().tolist():
                if label == 0:
                    continue
                ys, xs = torch.nonzero(labels[i, 0] == label, as_tuple=True)
                y0, y1 = int(ys.min()), int(ys.max()) + 1
                x0, x1 = int(xs.min()), int(xs.max()) + 1
                ch = max(1, round((y1 - y0) * self.erase))
                cw = max(1, round((x1 - x0) * self.erase))
                top = y0 + int(torch.randint(0, y1 - y0 - ch + 1, ()).item())
                left = x0 + int(torch.randint(0, x1 - x0 - cw + 1, ()).item())
                keep[i, 0, top : top + ch, left : left + cw] = 0.0
        return keep

    def forward(self, x: Tensor, main_logits: Tensor | None = None, decoder: Decoder | None = None) -> Tensor:
        logits = _require(main_logits, "the main prediction", "Cutout")
        return x * self.cut_mask(logits, x.shape[-2:]).to(x.dtype)


def _l2_normalize(d: Tensor) -> Tensor:
    """Scale each sample of ``d`` to unit L2 norm (over all non-batch dims)."""
    norm = d.flatten(1).norm(dim=1).view(-1, *([1] * (d.dim() - 1)))
    return d / (norm + 1e-12)


class VAT(Perturbation):
    """Intermediate virtual adversarial training: ``x + r_adv``, ``||r_adv||_2 = eps * ||x||_2`` per sample.

    Reference ``xi=1e-6``, one power iteration. Starting from a random unit direction ``d``, the
    gradient of ``KL(softmax(main) || softmax(decoder(x + xi ||x|| d)))`` with respect to ``d``
    gives the direction that changes the decoder's output most; ``r_adv`` is that direction
    scaled to ``eps`` times the sample's feature norm. The reference's absolute ``eps = 2`` is a
    vanishing fraction of the norm of a 128- or 320-channel map, and its meaning would change
    with the map's size; a relative ``eps`` (default 0.1) does not. The search runs in float32
    with autocast off: in bf16/fp16 a step of ``xi`` is below the features' resolution and the
    gradient direction would be noise. The KL target is the main prediction (detached).
    Gradients are taken with ``torch.autograd.grad`` on ``d`` only, so the search never leaves
    gradients on the decoder's parameters or reaches the encoder.
    """

    def __init__(self, xi: float = 1e-6, eps: float = 0.1, iterations: int = 1) -> None:
        super().__init__()
        if xi <= 0 or eps <= 0 or iterations < 1:
            raise ValueError(f"need xi > 0, eps > 0, iterations >= 1; got {xi}, {eps}, {iterations}")
        self.xi, self.eps, self.iterations = xi, eps, iterations

    def adversarial_direction(self, x: Tensor, main_logits: Tensor, decoder: Decoder) -> Tensor:
        """``r_adv`` (float32, same shape as ``x``), detached, L2 norm ``eps * ||x||`` per sample."""
        x32 = x.detach().float()
        scale = x32.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))
        target = F.softmax(main_logits.detach().float(), dim=1)
        d = _l2_normalize(torch.rand_like(x32) - 0.5)
        with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
            for _ in range(self.iterations):
                d = d.detach().requires_grad_(True)
                log_p_hat = F.log_softmax(decoder(x32 + self.xi * scale * d).float(), dim=1)
                distance = F.kl_div(log_p_hat, target, reduction="batchmean")
                (grad,) = torch.autograd.grad(distance, d)
                # A sample with a vanishing gradient keeps its current (random) direction.
                flat_norm = grad.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))
                d = torch.where(flat_norm > 0, _l2_normalize(grad), d.detach())
        return (self.eps * scale * _l2_normalize(d)).detach()

    def forward(self, x: Tensor, main_logits: Tensor | None = None, decoder: Decoder | None = None) -> Tensor:
        logits = _require(main_logits, "the main prediction", "VAT")
        dec = _require(decoder, "the auxiliary decoder", "VAT")
        return x + self.adversarial_direction(x, logits, dec).to(x.dtype)
