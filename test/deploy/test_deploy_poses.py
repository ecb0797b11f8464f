"""Instrument geometry and tracking on synthetic masks with known answers."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from cct_surgical_seg.deploy.poses import InstrumentTracker, PoseParams, extract_instruments

H, W = 240, 320


def draw_shaft(mask: np.ndarray, start: tuple[float, float], angle_deg: float, length: float, width: float,
               class_id: int = 1) -> tuple[float, float]:  # fmt: skip
    """Flat-ended bar from ``start`` along ``angle_deg``; returns the centre of its far end (the tip)."""
    d = np.array([math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))])
    n = np.array([-d[1], d[0]])
    s = np.array(start, float)
    tip = s + d * length
    poly = np.array([s + n * width / 2, tip + n * width / 2, tip - n * width / 2, s - n * width / 2])
    cv2.fillConvexPoly(mask, np.round(poly * 16).astype(np.int32), class_id, lineType=cv2.LINE_8, shift=4)
    return float(tip[0]), float(tip[1])


def angle_between(axis: tuple[float, float], angle_deg: float) -> float:
    got = math.degrees(math.atan2(axis[1], axis[0]))
    return abs((got - angle_deg + 180) % 360 - 180)


@pytest.mark.parametrize(
    ("start", "angle"),
    [((0, 120), 20.0), ((319, 60), 160.0), ((150, 239), -70.0), ((100, 0), 55.0)],
)
def test_shaft_from_border_gives_tip_and_axis(start: tuple[int, int], angle: float) -> None:
    mask = np.zeros((H, W), np.uint8)
    tip = draw_shaft(mask, start, angle, length=150, width=14)
    (inst,) = extract_instruments(mask, params=PoseParams(min_area_px=50))
    assert math.dist(inst.tip, tip) <= 2.0
    assert angle_between(inst.axis, angle) <= 2.0
    assert math.isclose(math.hypot(*inst.axis), 1.0, rel_tol=1e-6)
    # the entry point lies at the border the shaft comes in from
    assert math.dist(inst.entry, start) <= 8.0
    assert inst.class_id == 1 and inst.track_id == -1 and inst.score == 1.0


def test_shaft_and_jaws_form_one_instrument_with_majority_class() -> None:
    mask = np.zeros((H, W), np.uint8)
    tip = draw_shaft(mask, (0, 100), 0.0, length=160, width=16, class_id=1)
    cv2.rectangle(mask, (150, 92), (185, 108), 2, -1)  # jaws at the end, smaller than the shaft
    (inst,) = extract_instruments(mask, params=PoseParams(min_area_px=50))
    assert inst.class_id == 1
    assert inst.tip[0] == pytest.approx(185, abs=1.5) and inst.tip[1] == pytest.approx(tip[1], abs=2)
    per_class = extract_instruments(mask, params=PoseParams(min_area_px=50, merge_classes=False))
    assert sorted(i.class_id for i in per_class) == [1, 2]


def test_two_instruments_and_small_regions_ignored() -> None:
    mask = np.zeros((H, W), np.uint8)
    left_tip = draw_shaft(mask, (0, 200), -30.0, length=130, width=12)
    right_tip = draw_shaft(mask, (319, 200), -150.0, length=110, width=12, class_id=2)
    cv2.circle(mask, (160, 30), 4, 1, -1)  # ~50 px speck: below min area
    found = extract_instruments(mask, params=PoseParams(min_area_px=200))
    assert len(found) == 2
    tips = sorted((i.tip for i in found), key=lambda t: t[0])
    assert math.dist(tips[0], left_tip) <= 2.0 and math.dist(tips[1], right_tip) <= 2.0
    assert found[0].area_px >= found[1].area_px  # largest first
    assert {i.class_id for i in found} == {1, 2}


def test_region_without_border_contact_points_towards_centre() -> None:
    mask = np.zeros((H, W), np.uint8)
    # bar entirely inside the view, lying on the left side, pointing right (towards the centre)
    tip = draw_shaft(mask, (20, 120), 0.0, length=100, width=10)
    (inst,) = extract_instruments(mask, params=PoseParams(min_area_px=50))
    assert math.dist(inst.tip, tip) <= 2.0
    assert angle_between(inst.axis, 0.0) <= 2.0


def test_score_is_mean_confidence_and_bbox_covers_region() -> None:
    mask = np.zeros((H, W), np.uint8)
    mask[100:120, 0:150] = 1
    confidence = np.full((H, W), 0.5, np.float32)
    confidence[100:110, 0:150] = 0.9
    (inst,) = extract_instruments(mask, confidence, PoseParams(min_area_px=10))
    assert inst.score == pytest.approx(0.7, abs=1e-6)
    assert inst.bbox == (0, 100, 150, 20) and inst.area_px == 3000
    assert inst.centroid == pytest.approx((74.5, 109.5))


def test_integer_masks_of_any_dtype_give_the_same_instruments() -> None:
    mask = np.zeros((H, W), np.uint8)
    draw_shaft(mask, (0, 120), 20.0, length=150, width=14, class_id=2)
    want = extract_instruments(mask, params=PoseParams(min_area_px=50))
    assert extract_instruments(mask.astype(np.int64), params=PoseParams(min_area_px=50)) == want
    with pytest.raises(ValueError, match=r"0\.\.255"):
        extract_instruments(mask.astype(np.int32) * 200)


def test_instrument_classes_restricts_regions() -> None:
    mask = np.zeros((H, W), np.uint8)
    mask[10:40, 0:100] = 1
    mask[150:190, 0:100] = 2
    only_two = extract_instruments(mask, params=PoseParams(instrument_classes=(2,), min_area_px=10))
    assert [i.class_id for i in only_two] == [2]
    with pytest.raises(ValueError, match="background"):
        PoseParams(instrument_classes=(0, 1))


def reference_pose(mask: np.ndarray, confidence: np.ndarray) -> list[tuple]:
    """The definitions in the poses module docstring, computed pixel by pixel (slow, obvious)."""
    height, width = mask.shape
    count, labels = cv2.connectedComponents((mask > 0).astype(np.uint8), connectivity=8)
    out = []
    for label in range(1, count):
        ys, xs = np.nonzero(labels == label)
        pts = np.stack([xs, ys], axis=1).astype(np.float64)
        centroid = pts.mean(axis=0)
        centred = pts - centroid
        axis = np.linalg.eigh(centred.T @ centred / len(pts))[1][:, -1]
        sides = [xs == 0, xs == width - 1, ys == 0, ys == height - 1]
        best = int(np.argmax([s.sum() for s in sides]))
        if sides[best].any():
            contact = np.array([xs[sides[best]].mean(), ys[sides[best]].mean()])
            if np.dot(contact - centroid, axis) > 0:
                axis = -axis
        else:
            centre = np.array([(width - 1) / 2, (height - 1) / 2])
            proj = centred @ axis
            if np.linalg.norm(centroid + axis * proj.max() - centre) > np.linalg.norm(
                centroid + axis * proj.min() - centre
            ):
                axis = -axis
        proj = centred @ axis
        out.append(
            (
                len(pts),
                int(np.bincount(mask[ys, xs]).argmax()),
                tuple(centroid),
                tuple(axis),
                tuple(centroid + axis * proj.max()),
                tuple(centroid + axis * proj.min()),
                float(confidence[ys, xs].astype(np.float64).mean()),
            )
        )
    return sorted(out, key=lambda r: -r[0])


def random_bars(rng: np.random.Generator, count: int) -> np.ndarray:
    """Separate straight bars of class 1 (a binary model's mask): most enter from a border,
    some lie inside the view; all end inside it and are at least 3x longer than wide."""
    mask = np.zeros((H, W), np.uint8)
    for _ in range(count):
        for _attempt in range(100):
            layer = np.zeros_like(mask)
            if rng.random() < 0.75:
                side = int(rng.integers(4))
                start = [(0, rng.uniform(20, H - 20)), (W - 1, rng.uniform(20, H - 20)),
                         (rng.uniform(20, W - 20), 0), (rng.uniform(20, W - 20), H - 1)][side]  # fmt: skip
                angle = (0.0, 180.0, 90.0, -90.0)[side] + rng.uniform(-50, 50)
            else:
                start, angle = (rng.uniform(30, W - 30), rng.uniform(30, H - 30)), rng.uniform(-180, 180)
            tip = draw_shaft(layer, start, angle, rng.uniform(60, 160), rng.uniform(6, 18))
            inside = 5 <= tip[0] <= W - 6 and 5 <= tip[1] <= H - 6
            apart = not np.any(cv2.dilate(mask, np.ones((5, 5), np.uint8)) & layer)
            if inside and apart:
                mask |= layer
                break
    return mask


@pytest.mark.parametrize("seed", range(6))
def test_binary_masks_keep_the_per_pixel_definition(seed: int) -> None:
    """A mask of shafts only (a binary model, or tools whose jaws are not seen) keeps the
    class-blind definition: area, class, centroid, axis, tip, entry and score as computed pixel
    by pixel, and no visible tip. (Blobs of both classes follow the class-aware rules: class 2
    gives the tip, touching blobs are split, short wide stubs point into the image.)"""
    rng = np.random.default_rng(seed)
    mask = random_bars(rng, 4)
    mask[rng.random((H, W)) < 0.02] = 0  # pepper: holes and ragged outlines
    confidence = rng.uniform(0.3, 1.0, (H, W)).astype(np.float32)
    got = extract_instruments(mask, confidence, PoseParams(min_area_px=1))
    want = reference_pose(mask, confidence)
    assert len(got) == len(want) >= 3
    for inst, (area, class_id, centroid, axis, tip, entry, score) in zip(got, want, strict=True):
        assert inst.area_px == area and inst.class_id == class_id
        assert inst.centroid == pytest.approx(centroid, abs=1e-6)
        assert inst.axis == pytest.approx(axis, abs=1e-6)
        assert inst.tip == pytest.approx(tip, abs=1e-6)
        assert inst.entry == pytest.approx(entry, abs=1e-6)
        assert inst.score == pytest.approx(score, abs=1e-5)
        assert not inst.tip_visible


@pytest.mark.parametrize("seed", range(8))
def test_irregular_regions_of_both_classes_are_shared_out_whole(seed: int) -> None:
    """Blobs of all shapes (touching borders or not, with holes, two classes, overlapping, so
    some regions are split): every pixel of every region above the minimum area belongs to
    exactly one instrument, whose area, centroid and score add up to the region's."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((H, W), np.uint8)
    for _ in range(5):
        centre = (int(rng.integers(-20, W + 20)), int(rng.integers(-20, H + 20)))
        axes = (int(rng.integers(10, 90)), int(rng.integers(4, 30)))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, int(rng.integers(1, 3)), -1)
    mask[rng.random((H, W)) < 0.02] = 0
    confidence = rng.uniform(0.3, 1.0, (H, W)).astype(np.float32)
    found = extract_instruments(mask, confidence, PoseParams(min_area_px=30))
    count, labels = cv2.connectedComponents((mask > 0).view(np.uint8), connectivity=8)
    areas = np.bincount(labels.ravel())
    kept = np.isin(labels, [k for k in range(1, count) if areas[k] >= 30])
    ys, xs = np.nonzero(kept)
    assert sum(i.area_px for i in found) == ys.size > 0
    assert sum(i.area_px * i.centroid[0] for i in found) == pytest.approx(xs.sum(), rel=1e-9)
    assert sum(i.area_px * i.centroid[1] for i in found) == pytest.approx(ys.sum(), rel=1e-9)
    assert sum(i.area_px * i.score for i in found) == pytest.approx(
        confidence[kept].astype(np.float64).sum(), rel=1e-5
    )
    for inst in found:
        x, y, w, h = inst.bbox
        assert x >= 0 and y >= 0 and x + w <= W and y + h <= H
        assert x <= inst.centroid[0] <= x + w - 1 and y <= inst.centroid[1] <= y + h - 1
        assert math.isclose(math.hypot(*inst.axis), 1.0, rel_tol=1e-9)
        assert all(math.isfinite(v) for v in inst.tip + inst.entry)


def test_tracking_keeps_ids_on_small_motion_and_numbers_new_ones() -> None:
    params = PoseParams(min_area_px=50, max_match_distance_px=30, max_missed_frames=1)
    tracker = InstrumentTracker(params)

    def frame(offset: float, third: bool = False):
        mask = np.zeros((H, W), np.uint8)
        draw_shaft(mask, (0, 60 + offset), 10.0, 120, 12)
        draw_shaft(mask, (319, 180 - offset), 190.0, 120, 12)
        if third:
            draw_shaft(mask, (160, 0), 90.0, 60, 12)
        return tracker.update(extract_instruments(mask, params=params))

    def ids_by_side(found):
        return {("left" if i.centroid[0] < 120 else "right" if i.centroid[0] > 200 else "top"): i.track_id
                for i in found}  # fmt: skip

    first = ids_by_side(frame(0))
    assert sorted(first.values()) == [1, 2]
    moved = ids_by_side(frame(5))
    assert moved == first
    with_new = ids_by_side(frame(8, third=True))
    assert with_new["left"] == first["left"] and with_new["right"] == first["right"]
    assert with_new["top"] == 3
    # the third tool vanishes for 2 frames (> max_missed_frames=1), then reappears: new id
    frame(8)
    frame(8)
    assert ids_by_side(frame(8, third=True))["top"] == 4


def test_tracking_assigns_new_id_beyond_max_distance() -> None:
    params = PoseParams(min_area_px=50, max_match_distance_px=20)
    tracker = InstrumentTracker(params)
    mask = np.zeros((H, W), np.uint8)
    mask[100:120, 0:100] = 1
    (a,) = tracker.update(extract_instruments(mask, params=params))
    mask[:] = 0
    mask[100:120, 150:250] = 1  # jumped 150 px
    (b,) = tracker.update(extract_instruments(mask, params=params))
    assert a.track_id != b.track_id
