"""Scoring segmentation output against simulator ground truth (for ``cct-bag`` and ``cct-demo``).

The figures are ``cct_surgical_seg.metrics`` (NumPy only); this module adds what is specific to
reading them back from ROS messages: tips as camera rays or pixels, and the printed summary.
"""

from __future__ import annotations

from collections.abc import Sequence

from cct_surgical_seg.metrics import ConfusionMatrix, Point, TipErrors, binary_dice_iou, dice_iou


def ray_to_pixel(ray: Sequence[float], k: Sequence[float]) -> Point:
    """Undo the node's camera-info convention (unit ray, z > 0) for a distortion-free camera."""
    x, y, z = ray
    fx, cx, fy, cy = k[0], k[2], k[4], k[5]
    return (fx * x / z + cx, fy * y / z + cy)


def pose_positions_to_pixels(
    positions: Sequence[tuple[float, float, float]], k: Sequence[float] | None
) -> list[Point]:
    """PoseArray positions as pixels: z == 0 means pixels already, z > 0 a ray (needs K)."""
    out = []
    for x, y, z in positions:
        if z > 0:
            if k is None:
                raise ValueError("instrument poses are rays but no camera matrix is known")
            out.append(ray_to_pixel((x, y, z), k))
        else:
            out.append((x, y))
    return out


def summary_rows(seg: ConfusionMatrix, tips: TipErrors, class_names: Sequence[str]) -> list[tuple[str, str]]:
    """(label, value) rows for the printed tables of cct-bag and cct-demo."""
    bdice, biou = binary_dice_iou(seg.matrix)
    rows = [
        ("frames scored", str(seg.frames)),
        ("instrument Dice / IoU", f"{bdice:.3f} / {biou:.3f}"),
    ]
    for c, (d, i) in enumerate(zip(*dice_iou(seg.matrix), strict=True)):
        if c == 0:
            continue
        name = class_names[c] if c < len(class_names) else f"class {c}"
        rows.append((f"{name} Dice / IoU", f"{d:.3f} / {i:.3f}"))
    rows.append(("tip error median / p95 (px)", f"{tips.median():.1f} / {tips.p95():.1f}"))
    rows.append(("tips matched / missed / extra", f"{tips.matched} / {tips.missed} / {tips.false_alarms}"))
    if tips.flags_matched:
        rows.append(("tip_visible right", f"{tips.visible_flag_accuracy():.1%} of {tips.flags_matched}"))
    return rows


def format_rows(rows: Sequence[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label.ljust(width)}  {value}" for label, value in rows)
