"""Appearance augmentation that breaks the brightness shortcut between instruments and tissue.

A network trained on a few videos learns that instruments are the bright, grey pixels: on a new
video it then misses dark shafts and marks white fat and specular highlights as instrument. A
global colour jitter cannot break that rule, because it keeps the instrument brighter than its
background. Here instruments and tissue are recoloured independently through the mask:

- instruments become dark (black shafts), grey, silver or tinted, with their own gamma;
- tissue gets its own brightness, hue and gamma, and sometimes bright fat-like patches;
- specular highlights are painted on tissue, and sometimes the whole frame turns grey.

Frames without a mask (unlabelled) get only what needs no mask: highlights anywhere, a global
gamma and grayscale. Every draw comes from the ``rng`` passed in, so augmentation stays a pure
function of the item's seed (resumable training).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], np.float32)
FAT_COLOURS = np.array([[235, 225, 170], [245, 240, 215], [225, 205, 150]], np.float32)


@dataclass(frozen=True)
class AppearanceConfig:
    """Probabilities of each recolouring (0 turns one off); see config/train.yaml ``data.appearance``."""

    enabled: bool = True
    instrument: float = 0.6  # recolour the instruments (dark / grey / silver / tinted)
    tissue: float = 0.5  # recolour the tissue (brightness, hue, saturation)
    gamma: float = 0.5  # a gamma per region (per frame without a mask)
    fat: float = 0.3  # paint bright fat-like patches on tissue
    highlights: float = 0.4  # paint specular highlights (on tissue when the mask is known)
    grayscale: float = 0.1  # the whole frame in grey

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if name != "enabled" and not 0.0 <= value <= 1.0:
                raise ValueError(f"data.appearance.{name} must be a probability in [0, 1], got {value}")


def augment_appearance(
    image: np.ndarray,
    mask: np.ndarray | None,
    rng: np.random.Generator,
    cfg: AppearanceConfig,
    ignore_index: int = 255,
) -> np.ndarray:
    """Recolour an RGB uint8 image; ``mask`` (class ids, 0 = background) guides the regions."""
    if not cfg.enabled:
        return image
    out = image.astype(np.float32)
    if mask is not None:
        tool = _soft_region((mask > 0) & (mask != ignore_index))
        tissue = _soft_region(mask == 0)
        if rng.random() < cfg.instrument:
            out = _blend(out, _recolour_instrument(out, rng), tool)
        if rng.random() < cfg.tissue:
            out = _blend(out, _recolour_tissue(out, rng), tissue)
        if rng.random() < cfg.gamma:
            out = _blend(out, _gamma(out, rng), tool)
        if rng.random() < cfg.gamma:
            out = _blend(out, _gamma(out, rng), tissue)
        if rng.random() < cfg.fat:
            out = _blend(
                out, _fat(out, rng), tissue * _blobs(out.shape[:2], rng, count=(1, 4), size=(0.08, 0.25))
            )
        paint_on = tissue
    else:
        if rng.random() < cfg.gamma:
            out = _gamma(out, rng)
        paint_on = np.ones(out.shape[:2], np.float32)
    if rng.random() < cfg.highlights:
        spots = _blobs(out.shape[:2], rng, count=(2, 12), size=(0.005, 0.03))
        out = _blend(out, np.full_like(out, 255.0), paint_on * spots)
    if rng.random() < cfg.grayscale:
        out = np.repeat((out @ LUMA)[..., None], 3, axis=2)
    return np.clip(out, 0, 255).astype(np.uint8)


def _soft_region(region: np.ndarray) -> np.ndarray:
    """A float weight map of a boolean region with a 1-2 px soft edge (no halo of the old colour)."""
    return cv2.GaussianBlur(region.astype(np.float32), (5, 5), 1.0)


def _blend(base: np.ndarray, other: np.ndarray, weight: np.ndarray) -> np.ndarray:
    w = weight[..., None]
    return base * (1.0 - w) + other * w


def _recolour_instrument(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dark, grey, silver or tinted metal, keeping the instrument's own shading."""
    luma = image @ LUMA
    shading = luma / max(float(luma.mean()), 1.0)
    mode = rng.integers(4)
    if mode == 0:  # black shaft
        level = rng.uniform(10, 60)
        colour = np.full(3, level, np.float32)
    elif mode == 1:  # mid grey
        colour = np.full(3, rng.uniform(70, 150), np.float32)
    elif mode == 2:  # bright silver
        colour = np.full(3, rng.uniform(160, 235), np.float32)
    else:  # tinted (anodised, blood-stained, coloured light)
        colour = rng.uniform(40, 220, size=3).astype(np.float32)
    contrast = rng.uniform(0.3, 1.0)
    return colour * (1.0 + contrast * (shading[..., None] - 1.0))


def _recolour_tissue(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Tissue with another brightness, saturation and hue."""
    out = np.clip(image * rng.uniform(0.5, 1.4), 0, 255).astype(np.uint8)
    hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-12, 12)) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.5, 1.3), 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)


def _gamma(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return 255.0 * (image / 255.0) ** rng.uniform(0.6, 1.7)


def _fat(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bright yellow-white tissue, shaded like the frame underneath."""
    colour = FAT_COLOURS[rng.integers(len(FAT_COLOURS))]
    shading = np.clip((image @ LUMA) / 255.0 + 0.5, 0.6, 1.1)
    return colour * shading[..., None]


def _blobs(
    shape: tuple[int, int], rng: np.random.Generator, count: tuple[int, int], size: tuple[float, float]
) -> np.ndarray:
    """A soft float map of random ellipses; ``size`` is the radius range as a fraction of the diagonal."""
    h, w = shape
    canvas = np.zeros((h, w), np.float32)
    diagonal = float(np.hypot(h, w))
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        centre = (int(rng.integers(w)), int(rng.integers(h)))
        radius = rng.uniform(*size) * diagonal
        axes = (max(1, round(radius)), max(1, round(radius * rng.uniform(0.3, 1.0))))
        cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    sigma = max(1.0, 0.01 * diagonal)
    return np.clip(cv2.GaussianBlur(canvas, (0, 0), sigma), 0.0, 1.0)
