"""Drawing results onto a frame: class colours, instrument axes, tips and track ids.

Used by ``cct-infer`` and the ROS node's ``~/overlay`` topic. Works in RGB like the rest of the
pipeline; the ROS node converts to bgr8 at the message boundary (``cv2.cvtColor``).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from cct_surgical_seg.deploy.poses import Instrument

#: RGB colours: background unused, shaft cyan, manipulator orange, further classes from a colormap.
BASE_PALETTE = ((0, 0, 0), (0, 200, 255), (255, 120, 0))


def class_palette(num_classes: int) -> np.ndarray:
    """``num_classes x 3`` uint8 RGB colours, stable across runs (class 0 = black)."""
    palette = np.zeros((max(num_classes, 1), 3), dtype=np.uint8)
    for c in range(num_classes):
        if c < len(BASE_PALETTE):
            palette[c] = BASE_PALETTE[c]
        else:
            hue = np.uint8((c * 47) % 180)
            palette[c] = cv2.cvtColor(np.array([[[hue, 220, 255]]], np.uint8), cv2.COLOR_HSV2RGB)[0, 0]
    return palette


def colorize_mask(mask: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """uint8 class-id mask -> uint8 RGB image (unknown ids beyond ``num_classes`` clip to the last)."""
    n = int(num_classes if num_classes is not None else int(mask.max(initial=0)) + 1)
    palette = class_palette(n)
    return palette[np.minimum(mask, n - 1)]


def draw_overlay(
    rgb: np.ndarray,
    mask: np.ndarray,
    instruments: Sequence[Instrument] = (),
    *,
    num_classes: int | None = None,
    alpha: float = 0.45,
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """A new RGB image: classes blended over ``rgb``, each instrument's entry->tip axis, tip and id."""
    if rgb.shape[:2] != mask.shape:
        raise ValueError(f"image {rgb.shape[:2]} and mask {mask.shape} sizes differ")
    n = num_classes if num_classes is not None else (len(class_names) if class_names else None)
    colours = colorize_mask(mask, n)
    out = rgb.copy()
    fg = mask > 0
    out[fg] = cv2.addWeighted(rgb, 1.0 - alpha, colours, alpha, 0.0)[fg]
    scale = max(1, round(min(rgb.shape[:2]) / 240))
    for inst in instruments:
        entry = (round(inst.entry[0]), round(inst.entry[1]))
        tip = (round(inst.tip[0]), round(inst.tip[1]))
        cv2.line(out, entry, tip, (255, 255, 0), scale, cv2.LINE_AA)
        cv2.circle(out, tip, 3 * scale, (255, 0, 255), -1, cv2.LINE_AA)
        x, y, w, h = inst.bbox
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), (255, 255, 255), 1)
        name = (
            class_names[inst.class_id]
            if class_names and inst.class_id < len(class_names)
            else str(inst.class_id)
        )
        label = (
            f"#{inst.track_id} {name} {inst.score:.2f}" if inst.track_id >= 0 else f"{name} {inst.score:.2f}"
        )
        cv2.putText(
            out,
            label,
            (x, max(y - 3, 10)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35 * scale,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    return out
