"""Poisson image editing: pasted instruments land exactly where the new mask says."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from cct_surgical_seg.train.poisson import (
    OPENCV_ERODE,
    PoissonConfig,
    blend_instruments,
    make_poisson_frames,
    write_poisson_frames,
)

H, W = 64, 80


def _frame(seed: int, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Textured reddish tissue with one grey instrument (shaft 1, 6-px tip 2) in ``box`` (x, y, w, h)."""
    rng = np.random.default_rng(seed)
    image = np.stack(
        [rng.integers(120, 180, (H, W)), rng.integers(30, 70, (H, W)), rng.integers(30, 70, (H, W))], axis=2
    ).astype(np.uint8)
    mask = np.zeros((H, W), np.uint8)
    x, y, w, h = box
    mask[y : y + h, x : x + w] = 1
    mask[y : y + h, x + w - 6 : x + w] = 2
    shade = rng.integers(190, 230, (H, W))
    image[mask > 0] = np.stack([shade, shade, shade], axis=2)[mask > 0]
    return image, mask


def _ring_mean(image: np.ndarray, region: np.ndarray) -> float:
    """Mean intensity of a 4-pixel ring just outside ``region``."""
    grown = cv2.dilate(region.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    return float(image[grown & ~region].mean())


def test_blend_writes_source_classes_where_pasted_and_keeps_the_rest() -> None:
    src_img, src_mask = _frame(0, (0, 8, 40, 10))
    dst_img, dst_mask = _frame(1, (30, 44, 46, 8))
    image, mask = blend_instruments(src_img, src_mask, dst_img, dst_mask, margin=3)
    # the source instrument (minus the 1-pixel image border OpenCV never blends) is labelled in place
    inner = np.zeros_like(src_mask, bool)
    inner[1:-1, 1:-1] = True
    pasted = (src_mask > 0) & inner
    assert np.array_equal(mask[pasted], src_mask[pasted])
    # the target's own instrument survives, and nothing else became foreground
    assert np.array_equal(mask[dst_mask > 0], dst_mask[dst_mask > 0])
    assert np.array_equal(mask > 0, pasted | (dst_mask > 0))
    # the image shows the bright instrument where the mask says it is (brighter than its surroundings)
    assert image[pasted].mean() > _ring_mean(image, pasted) + 50
    # colours change only near the pasted region (instrument grown by margin + OpenCV's erosion)
    grow = 3 + OPENCV_ERODE
    near = cv2.dilate((src_mask > 0).astype(np.uint8), np.ones((2 * grow + 1,) * 2, np.uint8)) > 0
    changed = np.any(image != dst_img, axis=2)
    assert changed.any() and not np.any(changed & ~near)


def test_shifted_paste_keeps_image_and_mask_aligned() -> None:
    src_img, src_mask = _frame(2, (20, 10, 30, 8))
    dst_img, dst_mask = _frame(3, (10, 50, 20, 6))
    image, mask = blend_instruments(src_img, src_mask, dst_img, dst_mask, offset=(7, 20), margin=2)
    moved = np.zeros_like(src_mask)
    moved[30:38, 27:57] = src_mask[10:18, 20:50]
    assert np.array_equal(mask[moved > 0], moved[moved > 0])
    assert np.array_equal(mask > 0, (moved > 0) | (dst_mask > 0))
    assert image[moved > 0].mean() > _ring_mean(image, moved > 0) + 50
    changed = np.any(image != dst_img, axis=2)
    assert changed[moved > 0].mean() > 0.9 and not changed[: 30 - 2 - OPENCV_ERODE].any()


def test_frames_are_deterministic_by_seed_and_written_as_files(tmp_path: Path) -> None:
    frames = [_frame(s, (0, 5 + 6 * s, 30 + 3 * s, 8)) for s in range(5)]
    cfg = PoissonConfig(count=4, seed=11, max_shift=0.1)
    first = make_poisson_frames(frames, cfg)
    second = make_poisson_frames(frames, cfg)
    assert len(first) == 4
    for (a_img, a_mask, a_s, a_t), (b_img, b_mask, b_s, b_t) in zip(first, second, strict=True):
        assert (a_s, a_t) == (b_s, b_t) and a_s != a_t
        assert np.array_equal(a_img, b_img) and np.array_equal(a_mask, b_mask)
    other = make_poisson_frames(frames, PoissonConfig(count=4, seed=12, max_shift=0.1))
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other, strict=True))
    paths = write_poisson_frames(frames, cfg, tmp_path)
    assert len(paths) == 4
    image = cv2.cvtColor(cv2.imread(str(paths[0][0])), cv2.COLOR_BGR2RGB)
    assert np.array_equal(image, first[0][0])
    assert np.array_equal(cv2.imread(str(paths[0][1]), cv2.IMREAD_UNCHANGED), first[0][1])
