"""Poisson image editing: new labelled frames by blending instruments into other frames.

With few labelled frames the network sees few instrument/background combinations. Cutting the
instruments out of one labelled frame and blending them (``cv2.seamlessClone``, gradient-domain
editing, so lighting and colour adapt to the new surroundings) into another labelled frame makes
new, still exactly labelled frames: the new mask is the target's mask with the source's class
ids written wherever the instrument was pasted.

Alignment is the whole point, so the pasted region is computed exactly the way OpenCV places it:
``seamlessClone`` zeroes the mask's outer 1-pixel border, takes the bounding box of what is
left, and puts that box's top-left at ``center - (w // 2, h // 2)``. We choose the destination
top-left ourselves and derive ``center`` from it. It also erodes the mask by 3 pixels before
reading source gradients, so the blended region is the instrument grown by ``margin`` + 4.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cct_surgical_seg.io_utils import atomic_write_bytes

# seamlessClone erodes the mask by 3 pixels (3 x 3x3) before taking source gradients; a region
# that hugs the instrument would lose the instrument's own edges and paste a flat smear.
OPENCV_ERODE = 4


@dataclass(frozen=True)
class PoissonConfig:
    """``data.poisson`` in config/train.yaml."""

    count: int = 0  # new frames to make (0 = off)
    seed: int = 0
    max_shift: float = 0.0  # random shift of the pasted instrument, as a fraction of W/H
    flip_prob: float = 0.5  # probability of mirroring the source frame left-right first
    margin: int = 3  # extra pixels of source context blended around the instrument


def blend_instruments(
    src_image: np.ndarray,
    src_mask: np.ndarray,
    dst_image: np.ndarray,
    dst_mask: np.ndarray,
    offset: tuple[int, int] = (0, 0),
    margin: int = 3,
    ignore_index: int = 255,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Blend the instrument pixels (``src_mask > 0``) of ``src`` into ``dst`` moved by ``offset`` (dx, dy).

    The blended region is the instrument grown by ``margin + OPENCV_ERODE`` pixels; only the
    instrument pixels themselves are written into the mask. Returns ``(image, mask)``, or None
    when there is nothing to paste or it would not fit.
    Images are HxWx3 uint8 (any channel order, unchanged), masks HxW uint8 class ids. The
    source must be the destination's size.
    """
    if src_image.shape != dst_image.shape or src_mask.shape != dst_mask.shape:
        raise ValueError("source and destination frames must have the same size")
    h, w = dst_mask.shape
    instrument = ((src_mask > 0) & (src_mask != ignore_index)).astype(np.uint8)
    grow = margin + OPENCV_ERODE
    region = cv2.dilate(instrument, np.ones((2 * grow + 1,) * 2, np.uint8))
    region = region * 255
    region[0, :] = region[-1, :] = 0  # what seamlessClone does internally; we must agree with it
    region[:, 0] = region[:, -1] = 0
    x, y, bw, bh = cv2.boundingRect(region)
    if bw == 0 or bh == 0:
        return None
    tx, ty = x + offset[0], y + offset[1]
    # seamlessClone needs the box strictly inside the image (one pixel for the Poisson boundary)
    tx = int(np.clip(tx, 1, w - bw - 1)) if w - bw - 1 >= 1 else -1
    ty = int(np.clip(ty, 1, h - bh - 1)) if h - bh - 1 >= 1 else -1
    if tx < 0 or ty < 0:
        return None
    center = (tx + bw // 2, ty + bh // 2)
    src_box = src_mask[y : y + bh, x : x + bw]
    pasted = (instrument[y : y + bh, x : x + bw] > 0) & (region[y : y + bh, x : x + bw] > 0)
    # a copy: OpenCV rewrites the mask argument in place
    image = cv2.seamlessClone(src_image, dst_image, region.copy(), center, cv2.NORMAL_CLONE)
    mask = dst_mask.copy()
    dst_box = mask[ty : ty + bh, tx : tx + bw]
    dst_box[pasted] = src_box[pasted]
    return image, mask


def make_poisson_frames(
    frames: Sequence[tuple[np.ndarray, np.ndarray]], cfg: PoissonConfig, ignore_index: int = 255
) -> list[tuple[np.ndarray, np.ndarray, int, int]]:
    """``cfg.count`` new ``(image, mask, source_index, target_index)`` from labelled ``frames``.

    Pairs are drawn with ``cfg.seed`` (deterministic); sources without instruments and pairs
    of different sizes are skipped, so fewer frames may come back if the data allow no more.
    """
    if cfg.count <= 0 or len(frames) < 2:
        return []
    rng = np.random.default_rng(cfg.seed)
    with_instruments = [i for i, (_, m) in enumerate(frames) if np.any((m > 0) & (m != ignore_index))]
    if not with_instruments:
        return []
    out: list[tuple[np.ndarray, np.ndarray, int, int]] = []
    attempts = 0
    while len(out) < cfg.count and attempts < cfg.count * 10:
        attempts += 1
        s = int(with_instruments[rng.integers(len(with_instruments))])
        t = int(rng.integers(len(frames) - 1))
        t = t + 1 if t >= s else t  # any frame but the source
        src_image, src_mask = frames[s]
        dst_image, dst_mask = frames[t]
        flip = rng.random() < cfg.flip_prob
        h, w = dst_mask.shape
        dx = round(rng.uniform(-cfg.max_shift, cfg.max_shift) * w)
        dy = round(rng.uniform(-cfg.max_shift, cfg.max_shift) * h)
        if src_mask.shape != dst_mask.shape:
            continue
        if flip:
            src_image, src_mask = src_image[:, ::-1].copy(), src_mask[:, ::-1].copy()
        result = blend_instruments(
            src_image, src_mask, dst_image, dst_mask, (dx, dy), cfg.margin, ignore_index
        )
        if result is not None:
            out.append((*result, s, t))
    return out


def write_poisson_frames(
    frames: Sequence[tuple[np.ndarray, np.ndarray]],
    cfg: PoissonConfig,
    out_dir: Path,
    ignore_index: int = 255,
) -> list[tuple[Path, Path]]:
    """Make the frames and write them as ``out_dir/images/poisson_NNNN.png`` + ``masks/`` (RGB in).

    Written as files so the training loader treats them like any other labelled frame;
    existing files are overwritten (the result is deterministic, so a resume rewrites the same).
    """
    paths: list[tuple[Path, Path]] = []
    for k, (image, mask, _s, _t) in enumerate(make_poisson_frames(frames, cfg, ignore_index)):
        image_path = out_dir / "images" / f"poisson_{k:04d}.png"
        mask_path = out_dir / "masks" / f"poisson_{k:04d}.png"
        ok_i, png_i = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        ok_m, png_m = cv2.imencode(".png", mask)
        if not (ok_i and ok_m):
            raise RuntimeError(f"cannot encode Poisson frame {k}")
        atomic_write_bytes(image_path, png_i.tobytes())
        atomic_write_bytes(mask_path, png_m.tobytes())
        paths.append((image_path, mask_path))
    return paths
