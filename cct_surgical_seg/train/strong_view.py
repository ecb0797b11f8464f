"""A strong image-level view of a batch for weak-to-strong consistency (UniMatch, Yang et al. 2023).

With ``train.strong_view`` the auxiliary decoders see the encoder features of a strongly
augmented copy of the consistency batch, while their target stays the main prediction on the
weak (ordinary) view. Colour jitter, grayscale and blur change no pixel's class; CutMix pastes a
box of another frame of the batch and the target is pasted the same way, so the pair stays
aligned. Everything runs on the normalised float batch on the training device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

JITTER = 0.4  # per-frame, per-channel gain in 1 +- JITTER and offset in +- JITTER (normalised units)
GRAYSCALE_P = 0.2
BLUR_P = 0.5
CUTMIX_P = 0.5


def strong_view(x: Tensor, target: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """``(x_strong, target_strong)`` for a normalised ``N,3,H,W`` batch and its ``N,C,h,w`` target.

    ``H, W`` must be multiples of ``h, w`` (the target's stride), so CutMix boxes align.
    """
    n = x.shape[0]

    def draw(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator).to(x.device)

    gain = 1.0 + JITTER * (2.0 * draw(n, 3, 1, 1) - 1.0)
    offset = JITTER * (2.0 * draw(n, 3, 1, 1) - 1.0)
    out = x * gain + offset
    grey = draw(n, 1, 1, 1) < GRAYSCALE_P
    out = torch.where(grey, out.mean(dim=1, keepdim=True).expand_as(out), out)
    blurred = _blur(out, sigma=float(0.5 + 1.5 * draw(1)))
    out = torch.where(draw(n, 1, 1, 1) < BLUR_P, blurred, out)
    return _cutmix(out, target, draw)


def _blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur (5 taps), channel by channel."""
    taps = torch.arange(-2, 3, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    x = F.conv2d(
        F.pad(x, (2, 2, 0, 0), mode="replicate"), kernel.view(1, 1, 1, 5).repeat(c, 1, 1, 1), groups=c
    )
    return F.conv2d(
        F.pad(x, (0, 0, 2, 2), mode="replicate"), kernel.view(1, 1, 5, 1).repeat(c, 1, 1, 1), groups=c
    )


def _cutmix(x: Tensor, target: Tensor, draw) -> tuple[Tensor, Tensor]:
    """Paste a box of frame ``(i + 1) mod n`` into frame ``i`` (with probability CUTMIX_P), target alike."""
    n, _, height, width = x.shape
    h, w = target.shape[-2:]
    if n < 2 or height % h or width % w:
        return x, target
    stride = height // h
    x, target = x.clone(), target.clone()
    source_x, source_t = x.roll(1, dims=0), target.roll(1, dims=0)
    for i in range(n):
        if float(draw(1)) >= CUTMIX_P:
            continue
        side = 0.2 + 0.3 * float(draw(1))  # box side 0.2-0.5 of the frame
        bh, bw = max(1, round(h * side)), max(1, round(w * side))
        top, left = int(float(draw(1)) * (h - bh + 1)), int(float(draw(1)) * (w - bw + 1))
        target[i, :, top : top + bh, left : left + bw] = source_t[i, :, top : top + bh, left : left + bw]
        rows = slice(top * stride, (top + bh) * stride)
        cols = slice(left * stride, (left + bw) * stride)
        x[i, :, rows, cols] = source_x[i, :, rows, cols]
    return x, target
