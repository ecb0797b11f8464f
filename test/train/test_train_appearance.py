"""Mask-guided appearance augmentation: regions recoloured independently, deterministic per seed."""

from __future__ import annotations

import numpy as np
import pytest

from cct_surgical_seg.train.appearance import AppearanceConfig, augment_appearance

OFF = {"instrument": 0.0, "tissue": 0.0, "gamma": 0.0, "fat": 0.0, "highlights": 0.0, "grayscale": 0.0}


def _frame() -> tuple[np.ndarray, np.ndarray]:
    """Reddish textured tissue with a bright grey bar (class 1) and a head (class 2)."""
    rng = np.random.default_rng(0)
    image = np.empty((96, 128, 3), np.uint8)
    image[...] = (170, 80, 70)
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((96, 128), np.uint8)
    mask[40:56, 10:90] = 1
    mask[36:60, 90:110] = 2
    image[mask > 0] = (200, 200, 205)
    return image, mask


def _interior(region: np.ndarray) -> np.ndarray:
    """The region shrunk by 4 px (away from the soft edge)."""
    import cv2

    return cv2.erode(region.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0


def test_instrument_recolouring_leaves_tissue_alone() -> None:
    image, mask = _frame()
    cfg = AppearanceConfig(**{**OFF, "instrument": 1.0})
    tissue, tool = _interior(mask == 0), _interior(mask > 0)
    changed = 0
    for seed in range(8):
        out = augment_appearance(image, mask, np.random.default_rng(seed), cfg)
        assert np.array_equal(out[tissue], image[tissue])
        changed += np.abs(out[tool].astype(int) - image[tool].astype(int)).mean() > 10
    assert changed >= 6


def test_instrument_can_become_darker_than_tissue() -> None:
    """Among the draws some shafts are black: the bright-instrument rule no longer holds."""
    image, mask = _frame()
    cfg = AppearanceConfig(**{**OFF, "instrument": 1.0})
    darker = 0
    for seed in range(40):
        out = augment_appearance(image, mask, np.random.default_rng(seed), cfg).astype(float)
        darker += out[_interior(mask > 0)].mean() < out[_interior(mask == 0)].mean()
    assert 5 <= darker <= 35


def test_tissue_fat_and_highlights_stay_off_the_instruments() -> None:
    image, mask = _frame()
    cfg = AppearanceConfig(**{**OFF, "tissue": 1.0, "fat": 1.0, "highlights": 1.0})
    changed = 0
    for seed in range(5):
        out = augment_appearance(image, mask, np.random.default_rng(seed), cfg)
        tool = _interior(mask > 0)
        assert np.array_equal(out[tool], image[tool])
        changed += not np.array_equal(out[_interior(mask == 0)], image[_interior(mask == 0)])
    assert changed == 5


def test_unlabelled_frames_get_global_changes_only_and_draws_are_reproducible() -> None:
    image, _ = _frame()
    cfg = AppearanceConfig(**{**OFF, "grayscale": 1.0})
    out = augment_appearance(image, None, np.random.default_rng(3), cfg)
    assert np.all(out.max(axis=2) - out.min(axis=2) <= 1)  # grey everywhere
    full = AppearanceConfig()
    a = augment_appearance(image, None, np.random.default_rng(7), full)
    b = augment_appearance(image, None, np.random.default_rng(7), full)
    assert np.array_equal(a, b)
    assert np.array_equal(
        augment_appearance(image, None, np.random.default_rng(7), AppearanceConfig(enabled=False)), image
    )


def test_probabilities_are_checked() -> None:
    with pytest.raises(ValueError, match=r"data\.appearance\.fat"):
        AppearanceConfig(fat=1.5)
