"""Instrument poses on hand-drawn instruments with known tips: shafts (class 1), wrists and jaws
(class 2) drawn as OpenCV polygons, the truth tip being the grasp point (midpoint of the two jaw
tips), as in the simulator. The tip, axis, split and tracking cases fail with the definition
before the jaws were used (tip at the far end of the region's principal axis, one region one
tool); the others guard what must not break (one tool stays one, visible jaws are kept)."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from cct_surgical_seg.deploy.poses import Instrument, InstrumentTracker, PoseParams, extract_instruments

H, W = 360, 480
PARAMS = PoseParams(min_area_px=50)
TIP_TOL_PX = 4.0


def unit(angle_deg: float) -> np.ndarray:
    return np.array([math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))])


def quad(mask: np.ndarray, a: np.ndarray, b: np.ndarray, width_a: float, width_b: float, value: int) -> None:
    """Filled (tapered) bar from ``a`` to ``b``, ``width_a`` wide at ``a`` and ``width_b`` at ``b``."""
    d = (b - a) / np.linalg.norm(b - a)
    n = np.array([-d[1], d[0]])
    poly = np.array([a + n * width_a / 2, b + n * width_b / 2, b - n * width_b / 2, a - n * width_a / 2])
    cv2.fillConvexPoly(mask, np.round(poly * 16).astype(np.int32), value, lineType=cv2.LINE_8, shift=4)


def disc(mask: np.ndarray, centre: np.ndarray, radius: float, value: int) -> None:
    c = tuple(int(v) for v in np.round(centre * 16))
    cv2.circle(mask, c, round(radius * 16), value, -1, lineType=cv2.LINE_8, shift=4)


def draw_tool(
    mask: np.ndarray,
    entry: tuple[float, float],
    angle_deg: float,
    shaft_len: float,
    width: float = 18.0,
    *,
    bend_deg: float = 0.0,
    open_deg: float = 0.0,
    wrist_len: float = 8.0,
    jaw_len: float = 37.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Shaft from ``entry``, wrist ball, wrist segment bent by ``bend_deg`` and two tapered jaws
    opening by ``open_deg`` about it. Returns (grasp point, the two jaw tips)."""
    start = np.asarray(entry, np.float64)
    wrist = start + unit(angle_deg) * shaft_len
    quad(mask, start, wrist, width, width, 1)
    disc(mask, wrist, width / 2, 2)
    d2 = unit(angle_deg + bend_deg)
    across = np.array([-d2[1], d2[0]])
    pivot = wrist + d2 * wrist_len
    quad(mask, wrist, pivot, 0.8 * width, 0.8 * width, 2)
    tips = []
    for side in (1.0, -1.0):
        base = pivot + side * 0.2 * width * across
        tip = base + unit(angle_deg + bend_deg + side * open_deg / 2) * jaw_len
        quad(mask, base, tip, 0.4 * width, 0.2 * width, 2)
        disc(mask, tip, 0.1 * width, 2)
        tips.append(tip)
    return np.mean(tips, axis=0), np.array(tips)


def angle_between(axis: tuple[float, float], direction: np.ndarray) -> float:
    cos = (axis[0] * direction[0] + axis[1] * direction[1]) / np.linalg.norm(direction)
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def nearest(found: list[Instrument], point: np.ndarray) -> Instrument:
    return min(found, key=lambda inst: math.dist(inst.tip, point))


@pytest.mark.parametrize(("angle", "bend"), [(10.0, 60.0), (10.0, -60.0), (-35.0, 60.0), (200.0, 45.0)])
def test_bent_wrist_tip_is_the_grasp_point(angle: float, bend: float) -> None:
    mask = np.zeros((H, W), np.uint8)
    entry = (0.0, 170.0) if abs(angle) < 90 else (W - 1.0, 200.0)
    grasp, _ = draw_tool(mask, entry, angle, 220.0, bend_deg=bend)
    (inst,) = extract_instruments(mask, params=PARAMS)
    assert math.dist(inst.tip, grasp) <= TIP_TOL_PX
    assert inst.tip_visible
    assert angle_between(inst.axis, unit(angle)) <= 2.0  # the axis is the shaft's
    assert math.dist(inst.entry, entry) <= 10.0
    jaw_rows, jaw_cols = np.nonzero(mask == 2)
    assert np.min(np.hypot(jaw_cols - inst.tip[0], jaw_rows - inst.tip[1])) <= 2.0  # at the jaws


@pytest.mark.parametrize(("bend", "opening"), [(0.0, 50.0), (30.0, 60.0), (-40.0, 40.0)])
def test_open_jaws_give_the_point_between_the_jaw_tips(bend: float, opening: float) -> None:
    mask = np.zeros((H, W), np.uint8)
    grasp, tips = draw_tool(mask, (0.0, 180.0), -5.0, 230.0, bend_deg=bend, open_deg=opening)
    (inst,) = extract_instruments(mask, params=PARAMS)
    assert math.dist(inst.tip, grasp) <= TIP_TOL_PX
    half_gap = float(np.linalg.norm(tips[0] - tips[1])) / 2
    assert all(math.dist(inst.tip, t) >= half_gap - TIP_TOL_PX for t in tips)  # not on one jaw
    assert inst.tip_visible


def test_tool_crossing_the_view_has_no_visible_tip() -> None:
    mask = np.zeros((H, W), np.uint8)
    quad(mask, np.array([0.0, 100.0]), np.array([W - 1.0, 260.0]), 20.0, 26.0, 1)
    (inst,) = extract_instruments(mask, params=PARAMS)
    assert not inst.tip_visible
    assert inst.to_dict()["tip_visible"] is False
    # the tip it reports is where the tool leaves the view, on the far border
    assert min(inst.tip[0], W - 1 - inst.tip[0]) <= 2.0 and min(inst.entry[0], W - 1 - inst.entry[0]) <= 2.0


def test_jaws_leaving_the_view_and_bare_shafts_have_no_visible_tip() -> None:
    mask = np.zeros((H, W), np.uint8)
    draw_tool(mask, (0.0, 120.0), 0.0, W - 30.0)  # jaws cut by the right border
    quad(mask, np.array([200.0, H - 1.0]), np.array([240.0, 250.0]), 16.0, 16.0, 1)  # shaft only
    found = extract_instruments(mask, params=PARAMS)
    assert len(found) == 2 and not any(inst.tip_visible for inst in found)
    cut = min(found, key=lambda inst: inst.centroid[1])
    assert cut.tip[0] >= W - 3.0
    bare = max(found, key=lambda inst: inst.centroid[1])
    assert math.dist(bare.tip, (240.0, 250.0)) <= 3.0  # far end of the shaft, as before


def test_fully_visible_jaws_have_a_visible_tip() -> None:
    mask = np.zeros((H, W), np.uint8)
    grasp, _ = draw_tool(mask, (W - 1.0, 60.0), 160.0, 200.0)
    (inst,) = extract_instruments(mask, params=PARAMS)
    assert inst.tip_visible and math.dist(inst.tip, grasp) <= TIP_TOL_PX


@pytest.mark.parametrize(
    ("entry", "inward"), [((240.0, H - 1.0), -90.0), ((0.0, 150.0), 0.0), ((W - 1.0, 40.0), 180.0)]
)
def test_short_wide_stub_points_into_the_image(entry: tuple[float, float], inward: float) -> None:
    mask = np.zeros((H, W), np.uint8)
    start = np.asarray(entry)
    quad(mask, start - unit(inward) * 5, start + unit(inward + 10) * 14, 40.0, 40.0, 1)  # 14 deep, 40 wide
    (inst,) = extract_instruments(mask, params=PARAMS)
    assert angle_between(inst.axis, unit(inward)) <= 25.0  # into the image, not along the border
    assert math.dist(inst.entry, entry) <= 6.0
    assert not inst.tip_visible


@pytest.mark.parametrize("contact", ["tip to tip", "jaws on shaft"])
def test_two_touching_tools_are_two_instruments(contact: str) -> None:
    mask = np.zeros((H, W), np.uint8)
    a_grasp, _ = draw_tool(mask, (0.0, 140.0), 10.0, 190.0, bend_deg=20.0)
    if contact == "tip to tip":  # b comes up from the bottom border; its jaws meet a's
        b_grasp, _ = draw_tool(mask, (283.4, H - 1.0), -105.0, 123.2, bend_deg=-15.0)
        assert math.dist(a_grasp, b_grasp) <= 8.0
    else:  # b's jaws press on the lower edge of a's shaft
        b_grasp, _ = draw_tool(mask, (100.0, H - 1.0), -80.0, 145.0, width=16.0)
    assert cv2.connectedComponents((mask > 0).view(np.uint8))[0] == 2  # one region
    found = extract_instruments(mask, params=PARAMS)
    assert len(found) == 2
    a, b = nearest(found, a_grasp), nearest(found, b_grasp)
    assert a is not b
    assert math.dist(a.tip, a_grasp) <= TIP_TOL_PX and math.dist(b.tip, b_grasp) <= TIP_TOL_PX
    assert angle_between(a.axis, unit(10.0)) <= 3.0
    assert a.tip_visible and b.tip_visible
    assert sum(inst.area_px for inst in found) == int(np.count_nonzero(mask))  # every pixel once


def test_two_crossing_tools_are_two_instruments() -> None:
    mask = np.zeros((H, W), np.uint8)
    a_grasp, _ = draw_tool(mask, (0.0, 60.0), 30.0, 300.0, bend_deg=25.0)
    b_grasp, _ = draw_tool(mask, (0.0, 300.0), -28.0, 310.0, width=22.0)
    found = extract_instruments(mask, params=PARAMS)
    assert len(found) == 2
    a, b = nearest(found, a_grasp), nearest(found, b_grasp)
    assert a is not b
    assert math.dist(a.tip, a_grasp) <= TIP_TOL_PX and math.dist(b.tip, b_grasp) <= TIP_TOL_PX
    assert angle_between(a.axis, unit(30.0)) <= 3.0 and angle_between(b.axis, unit(-28.0)) <= 3.0
    assert math.dist(a.entry, (0.0, 60.0)) <= 10.0 and math.dist(b.entry, (0.0, 300.0)) <= 10.0
    bx, by, _, bh = b.bbox
    assert bx == 0 and by + bh >= 300  # each box covers its own tool only
    assert a.bbox[1] <= 60 - 5 and a.bbox[1] + a.bbox[3] < 300


def test_three_tools_two_touching_one_apart() -> None:
    mask = np.zeros((H, W), np.uint8)
    truths = [
        draw_tool(mask, (0.0, 140.0), 10.0, 190.0, bend_deg=20.0)[0],
        draw_tool(mask, (283.4, H - 1.0), -105.0, 123.2, bend_deg=-15.0)[0],
        draw_tool(mask, (W - 1.0, 30.0), 170.0, 120.0, bend_deg=-50.0)[0],
    ]
    found = extract_instruments(mask, params=PARAMS)
    assert len(found) == 3
    for truth in truths:
        assert math.dist(nearest(found, truth).tip, truth) <= TIP_TOL_PX


def test_one_tool_with_a_hole_in_its_border_run_stays_one() -> None:
    """A shaft whose border contact is cut in two by a misclassified notch: two entry runs side
    by side, one tool."""
    mask = np.zeros((H, W), np.uint8)
    grasp, _ = draw_tool(mask, (-20.0, 205.4), -15.0, 220.0, width=26.0, bend_deg=30.0)
    mask[195:205, 0:12] = 0  # the notch: 10 px of the 27 px run
    runs = np.flatnonzero(np.diff(np.flatnonzero(mask[:, 0])) > 1)
    assert runs.size == 1  # two runs along the left border
    (inst,) = extract_instruments(mask, params=PARAMS)
    assert math.dist(inst.tip, grasp) <= TIP_TOL_PX and inst.area_px == int(np.count_nonzero(mask))


def test_open_jaws_in_two_separate_pieces_stay_one_tool() -> None:
    mask = np.zeros((H, W), np.uint8)
    grasp, _ = draw_tool(mask, (0.0, 180.0), 0.0, 230.0, open_deg=70.0)
    cv2.circle(mask, (round(230.0 + 8.0), 180), 9, 1, -1)  # jaw bases seen as shaft: the jaws part
    assert cv2.connectedComponents((mask == 2).view(np.uint8))[0] - 1 >= 2
    (inst,) = extract_instruments(mask, params=PARAMS)
    assert math.dist(inst.tip, grasp) <= TIP_TOL_PX and inst.tip_visible


def test_end_on_view_gives_a_tip_inside_the_jaws() -> None:
    mask = np.zeros((H, W), np.uint8)
    disc(mask, np.array([240.0, 180.0]), 28.0, 1)  # the shaft seen end-on, behind the jaws
    disc(mask, np.array([244.0, 176.0]), 26.0, 2)
    (inst,) = extract_instruments(mask, params=PARAMS)
    x, y = round(inst.tip[0]), round(inst.tip[1])
    assert mask[y, x] == 2
    assert math.isclose(math.hypot(*inst.axis), 1.0, rel_tol=1e-6)
    assert inst.tip_visible


def test_tip_ignores_a_misclassified_speck_of_jaw_class() -> None:
    mask = np.zeros((H, W), np.uint8)
    grasp, _ = draw_tool(mask, (0.0, 170.0), 0.0, 200.0, bend_deg=45.0)
    mask[168:171, 100:103] = 2  # 9 jaw pixels on the shaft
    (inst,) = extract_instruments(mask, params=PARAMS)
    assert math.dist(inst.tip, grasp) <= TIP_TOL_PX


@pytest.mark.parametrize("bend", [0.0, 40.0])
def test_jaw_tips_labelled_shaft_still_give_the_tip(bend: float) -> None:
    """A network often calls thin jaw tips shaft: the tip search must still reach them."""
    mask = np.zeros((H, W), np.uint8)
    grasp, _ = draw_tool(mask, (0.0, 170.0), 0.0, 200.0, bend_deg=bend)
    rows, cols = np.nonzero(mask == 2)
    d2 = unit(bend)
    along = (cols - 200.0) * d2[0] + (rows - 170.0) * d2[1]  # from the wrist along the jaws
    distal = along > 0.6 * float(along.max())
    mask[rows[distal], cols[distal]] = 1
    (inst,) = extract_instruments(mask, params=PARAMS)
    assert math.dist(inst.tip, grasp) <= 2 * TIP_TOL_PX
    assert inst.tip_visible and angle_between(inst.axis, unit(0.0)) <= 3.0  # jaw pixels pull it a little


def test_a_shaft_speck_beyond_the_jaw_tips_does_not_move_the_tip() -> None:
    """A few pixels at the jaws' far end called shaft, too few to be jaw tips labelled shaft:
    the shaft still ends at the wrist, and the tip stays at the jaws."""
    mask = np.zeros((H, W), np.uint8)
    grasp, _ = draw_tool(mask, (0.0, 120.0), 10.0, 200.0, bend_deg=30.0)
    d = unit(40.0)
    rows, cols = np.nonzero(mask == 2)
    far = int(np.argmax(cols * d[0] + rows * d[1]))
    mask[rows[far] : rows[far] + 2, cols[far] : cols[far] + 2] = 1
    (inst,) = extract_instruments(mask, params=PARAMS)
    assert math.dist(inst.tip, grasp) <= TIP_TOL_PX and inst.tip_visible


def test_jaw_class_pixels_at_the_entry_are_not_the_tools_jaws() -> None:
    """A jaw-class blob on the border in the corner beside the shaft's entry (a dark field-stop
    corner that a model calls jaws): one instrument, its tip at its own jaws."""
    mask = np.zeros((H, W), np.uint8)
    grasp, _ = draw_tool(mask, (25.0, 0.0), 45.0, 200.0, width=24.0)
    disc(mask, np.array([4.0, 10.0]), 12.0, 2)
    assert cv2.connectedComponents((mask > 0).view(np.uint8))[0] == 2  # one region
    (inst,) = extract_instruments(mask, params=PARAMS)
    assert math.dist(inst.tip, grasp) <= TIP_TOL_PX and inst.tip_visible
    assert math.dist(inst.entry, (25.0, 0.0)) <= 20.0


def test_tool_entering_through_a_cut_off_corner_is_one_instrument() -> None:
    """A round field stop cuts the corner the tool enters through: two border runs, one on each
    side of the corner, one tool."""
    mask = np.zeros((H, W), np.uint8)
    grasp, _ = draw_tool(mask, (-10.0, -10.0), 45.0, 220.0, width=30.0)
    rows, cols = np.mgrid[0:H, 0:W]
    mask[np.hypot(rows, cols) < 18.0] = 0
    assert mask[0].any() and mask[:, 0].any() and not mask[0, :12].any()  # two runs
    (inst,) = extract_instruments(mask, params=PARAMS)
    assert math.dist(inst.tip, grasp) <= TIP_TOL_PX and inst.tip_visible
    assert angle_between(inst.axis, unit(45.0)) <= 3.0


def test_a_jaw_speck_under_a_tenth_of_the_jaws_does_not_split_the_tool() -> None:
    """36 jaw-class pixels on the shaft near the entry: more than the smallest jaw group that
    counts alone, but a speck beside the tool's own jaws (~20 times as large)."""
    mask = np.zeros((H, W), np.uint8)
    grasp, _ = draw_tool(mask, (0.0, 180.0), 0.0, 220.0)
    mask[177:183, 60:66] = 2
    (inst,) = extract_instruments(mask, params=PARAMS)
    assert math.dist(inst.tip, grasp) <= TIP_TOL_PX and inst.area_px == int(np.count_nonzero(mask))


def test_a_shaft_strip_along_the_border_gives_no_axis() -> None:
    """Jaws near the lens fill a blob standing on the bottom border, the visible shaft a strip
    along the border under them: elongated, but along the border, so the axis comes from the
    entry towards the region and points into the image, the tip at the jaws' far end."""
    mask = np.zeros((H, W), np.uint8)
    cv2.ellipse(mask, (200, H - 45), (25, 42), 0, 0, 360, 2, -1)
    mask[H - 7 :, 195:236] = 1
    (inst,) = extract_instruments(mask, params=PARAMS)
    assert inst.axis[1] < -0.9
    assert math.dist(inst.tip, (200.0, H - 87.0)) <= TIP_TOL_PX


def test_binary_model_without_a_tip_class() -> None:
    """tip_classes=() (a model without a manipulator class): the far end, visible inside the view."""
    mask = np.zeros((H, W), np.uint8)
    quad(mask, np.array([0.0, 100.0]), np.array([200.0, 150.0]), 16.0, 16.0, 1)
    (inst,) = extract_instruments(mask, params=PoseParams(min_area_px=50, tip_classes=()))
    assert inst.tip_visible and math.dist(inst.tip, (200.0, 150.0)) <= 2.0


def test_tracker_never_flips_a_tool_crossing_the_view() -> None:
    """The tool's wider end (its longer border run, its entry) alternates between the two borders
    from frame to frame; the tracked axis keeps its first sense, tip and entry follow."""
    tracker = InstrumentTracker(PARAMS)
    senses = []
    for frame in range(6):
        mask = np.zeros((H, W), np.uint8)
        left, right = (30.0, 18.0) if frame % 2 == 0 else (18.0, 30.0)
        quad(mask, np.array([0.0, 150.0 + frame]), np.array([W - 1.0, 210.0 + frame]), left, right, 1)
        (raw,) = extract_instruments(mask, params=PARAMS)
        (inst,) = tracker.update([raw])
        assert inst.track_id == 1
        senses.append((raw.axis[0] > 0, inst.axis[0] > 0))
        assert inst.tip[0] > inst.entry[0]  # entered on the left, leaves on the right
    assert {raw for raw, _ in senses} == {True, False}  # the raw axis does flip
    assert all(kept for _, kept in senses)
    tracker.reset()
    (inst,) = tracker.update([raw])
    assert inst.track_id == 2 and inst.axis == raw.axis  # a fresh track takes what it sees


def test_tracker_keeps_a_visible_jaw_tip() -> None:
    """Visible jaws decide the sense by themselves: a matched tool that turned is not turned back."""
    params = PoseParams(min_area_px=50, max_match_distance_px=400.0)
    tracker = InstrumentTracker(params)
    first = np.zeros((H, W), np.uint8)
    draw_tool(first, (0.0, 180.0), 0.0, 200.0)
    tracker.update(extract_instruments(first, params=params))
    second = np.zeros((H, W), np.uint8)
    grasp, _ = draw_tool(second, (W - 1.0, 180.0), 180.0, 200.0)
    (inst,) = tracker.update(extract_instruments(second, params=params))
    assert inst.track_id == 1 and inst.axis[0] < 0 and math.dist(inst.tip, grasp) <= TIP_TOL_PX


def test_tracker_never_moves_a_track_to_a_much_smaller_region() -> None:
    """A tool missing for a frame while a small blob shows near its centroid: the blob (a
    twentieth of its area) gets an id of its own, and the tool keeps its id when it is back."""
    tracker = InstrumentTracker(PARAMS)
    tool = np.zeros((H, W), np.uint8)
    draw_tool(tool, (0.0, 180.0), 0.0, 150.0)
    blob = np.zeros((H, W), np.uint8)
    blob[185:197, 100:112] = 1
    (first,) = tracker.update(extract_instruments(tool, params=PARAMS))
    (speck,) = tracker.update(extract_instruments(blob, params=PARAMS))
    assert math.dist(speck.centroid, first.centroid) <= PARAMS.max_match_distance_px
    assert speck.track_id != first.track_id
    (back,) = tracker.update(extract_instruments(tool, params=PARAMS))
    assert back.track_id == first.track_id


def test_tracker_never_moves_a_track_to_far_away_ends() -> None:
    """A tool from the left gone, one from the top in its place: their centroids are close, but
    entry and tip lie ~170 px away, so the new tool is a new track."""
    tracker = InstrumentTracker(PARAMS)
    left, top = np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8)
    quad(left, np.array([0.0, 180.0]), np.array([220.0, 180.0]), 18.0, 18.0, 1)
    quad(top, np.array([100.0, 0.0]), np.array([100.0, 250.0]), 18.0, 18.0, 1)
    (a,) = tracker.update(extract_instruments(left, params=PARAMS))
    (b,) = tracker.update(extract_instruments(top, params=PARAMS))
    assert math.dist(a.centroid, b.centroid) <= PARAMS.max_match_distance_px
    assert a.track_id != b.track_id


def test_tracker_turns_back_jaws_seen_at_the_wrong_end() -> None:
    """A tool touching no border (seen from above its trocar) whose jaws the model finds at the
    other end for a frame: its ends swapped while the tool stayed put, so the tracked axis, tip
    and entry are turned back; the next frame's jaws are at the right end again."""
    tracker = InstrumentTracker(PARAMS)
    senses = []
    for frame, jaws_at in enumerate((330.0, 150.0, 330.0)):
        mask = np.zeros((H, W), np.uint8)
        quad(mask, np.array([150.0, 180.0 + frame]), np.array([330.0, 180.0 + frame]), 24.0, 24.0, 1)
        disc(mask, np.array([jaws_at, 180.0 + frame]), 14.0, 2)
        (raw,) = extract_instruments(mask, params=PARAMS)
        (inst,) = tracker.update([raw])
        assert inst.track_id == 1 and inst.tip_visible
        senses.append((raw.axis[0] > 0, inst.axis[0] > 0))
        assert inst.tip[0] > 300.0 and inst.entry[0] < 180.0
    assert senses == [(True, True), (False, True), (True, True)]


def test_tracker_follows_jaws_that_stay_at_the_other_end() -> None:
    """The same tool, its jaws found at the other end frame after frame: the tracker turns them
    back for two frames at most, then follows the jaws (a track never locks onto its own
    turned-back tip)."""
    tracker = InstrumentTracker(PARAMS)
    kept = []
    for frame, jaws_at in enumerate((330.0, 150.0, 150.0, 150.0, 150.0)):
        mask = np.zeros((H, W), np.uint8)
        quad(mask, np.array([150.0, 180.0 + frame]), np.array([330.0, 180.0 + frame]), 24.0, 24.0, 1)
        disc(mask, np.array([jaws_at, 180.0 + frame]), 14.0, 2)
        (inst,) = tracker.update(extract_instruments(mask, params=PARAMS))
        assert inst.track_id == 1
        kept.append(inst.tip[0] > 300.0)
    assert kept == [True, True, True, False, False]


def test_class_roles_are_validated() -> None:
    assert PoseParams(shaft_classes=[1, 3], tip_classes=[2]).shaft_classes == (1, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="both"):
        PoseParams(shaft_classes=(1, 2), tip_classes=(2,))
    with pytest.raises(ValueError, match="background"):
        PoseParams(tip_classes=(0,))
    with pytest.raises(ValueError, match=r"1\.\.255"):
        PoseParams(shaft_classes=(300,))


def test_split_survives_a_line_fitted_to_one_row_of_samples() -> None:
    """A demo-model mask (simulated frame) whose split fits a line to collinear samples: the
    line's band has zero width, and the stretch along it must still hold its own pixels."""
    path = Path(__file__).resolve().parents[1] / "data" / "poses_split_thin_line_mask.png"
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    found = extract_instruments(mask)
    assert len(found) == 2 and all(inst.area_px > 1000 for inst in found)
