"""Instrument poses against the simulator's own truth.

Each case places articulated tools by hand (``ToolPose``: trocar behind the lens, wrist, bend,
roll, jaw opening), draws them with ``EndoscopeScene.draw`` and runs ``extract_instruments`` on
the frame's class mask; the frame's ``InstrumentTruth`` (tip = projected grasp point, shaft
axis, tip visibility) is the reference. Unlike the hand-drawn masks of
test/deploy/test_deploy_poses_cases.py, the silhouettes here come from perspective projection
of 3D cylinders and cones, so foreshortening, jaw thickness and occlusion are what a real
endoscope shows. The stream test checks the numbers the issue's goals need from the pose code.
"""

from __future__ import annotations

import itertools
import math
from functools import cache

import cv2
import numpy as np
import pytest

from cct_surgical_seg.deploy.poses import Instrument, extract_instruments
from cct_surgical_seg.sim.scene import EndoscopeScene, InstrumentTruth, SceneConfig, SceneFrame, SceneState
from cct_surgical_seg.sim.tools3d import ToolPose, ToolShape

W, H = 640, 512
Vec3 = tuple[float, float, float]
SHAPE = ToolShape(shaft_radius=0.0035, wrist_length=0.005, jaw_length=0.011)


@cache
def scene() -> EndoscopeScene:
    """A sharp, still scene: no motion blur, blur or smoke (they touch the image, not the mask)."""
    cfg = SceneConfig(
        width=W, height=H, seed=7, motion_blur=False, blur=False, smoke=0.0, camera_motion=False
    )
    return EndoscopeScene(cfg)


def unit(v: np.ndarray) -> np.ndarray:
    return v / float(np.linalg.norm(v))


def at_pixel(u: float, v: float, depth: float) -> tuple[float, float, float]:
    """The left-frame point at ``depth`` (m) that projects to pixel ``(u, v)``."""
    cam = scene().camera()
    return ((u - cam.cx) * depth / cam.fx, (v - cam.cy) * depth / cam.fy, depth)


def bend_direction(trocar: np.ndarray, wrist: np.ndarray, how: str) -> np.ndarray:
    """Unit 3D vector perpendicular to the shaft: ``side+`` / ``side-`` across the view ray
    (a bend in the image plane), ``towards`` / ``away`` the camera (a bend out of it)."""
    a = unit(wrist - trocar)
    side = unit(np.cross(a, unit(wrist)))
    towards = unit(np.cross(side, a))
    if float(np.dot(towards, wrist)) > 0:
        towards = -towards
    return {"side+": side, "side-": -side, "towards": towards, "away": -towards}[how]


def bend_angles(index: int, trocar: Vec3, wrist: Vec3, bend_deg: float, bend: str) -> tuple[float, float]:
    """(pitch, yaw) that bend the wrist by ``bend_deg`` towards ``bend_direction``. The shaft
    frame's normals are read off two probe poses (a pure pitch, a pure yaw) through their public
    distal axis, so the tool model's conventions stay in tools3d."""
    angle = math.radians(bend_deg)
    if angle == 0.0:
        return 0.0, 0.0
    normals = []
    for pitch, yaw in ((angle, 0.0), (0.0, angle)):
        probe = ToolPose(index, SHAPE, trocar, wrist, pitch, yaw, 0.0, 0.0)
        normals.append(unit(probe.distal_axis - math.cos(angle) * probe.shaft_axis))
    d = bend_direction(np.asarray(trocar, float), np.asarray(wrist, float), bend)
    return angle * float(np.dot(d, normals[0])), angle * float(np.dot(d, normals[1]))


def make_tool(
    index: int, trocar: Vec3, wrist: Vec3, bend_deg: float = 0.0, bend: str = "side+", jaw: float = 0.0
) -> ToolPose:
    """A tool bent by ``bend_deg`` in direction ``bend``, its jaws opened by ``jaw`` (0..1) in
    the plane across the view ray, so both jaw tips show side by side. The roll is read off two
    probe poses (roll 0 and 90 deg) through their jaw tips."""
    pitch, yaw = bend_angles(index, trocar, wrist, bend_deg, bend)
    probes = [ToolPose(index, SHAPE, trocar, wrist, pitch, yaw, r, 1.0) for r in (0.0, math.pi / 2)]
    o0, o90 = (unit(p.jaw_tips[0] - p.jaw_tips[1]) for p in probes)
    across = unit(np.cross(probes[0].distal_axis, unit(probes[0].jaw_pivot)))
    roll = math.atan2(float(np.dot(across, o90)), float(np.dot(across, o0)))
    return ToolPose(index, SHAPE, trocar, wrist, pitch, yaw, roll, jaw)


def tool_with_tip(index: int, trocar: Vec3, tip: tuple[float, float], depth: float, **kwargs) -> ToolPose:
    """``make_tool`` with the wrist at ``depth`` placed so that the grasp point projects to pixel
    ``tip`` (a few fixed-point steps: the wrist moves by the tip's pixel error)."""
    cam = scene().camera()
    wrist = np.asarray(tip, float)
    for _ in range(6):
        pose = make_tool(index, trocar, at_pixel(*wrist, depth), **kwargs)
        wrist = wrist + np.asarray(tip) - cam.project(pose.grasp_point)
    return make_tool(index, trocar, at_pixel(*wrist, depth), **kwargs)


def draw(*tools: ToolPose) -> SceneFrame:
    return scene().draw(SceneState(0, 0.0, tuple(tools), (), (0, 0)))


def angle_deg(a: tuple[float, float], b: tuple[float, float]) -> float:
    cos = (a[0] * b[0] + a[1] * b[1]) / (math.hypot(*a) * math.hypot(*b))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def match(frame: SceneFrame, found: list[Instrument]) -> list[tuple[InstrumentTruth, Instrument]]:
    """Truth-instrument pairs that minimise the summed distance between each tool's pixel
    centroid (instance mask) and the instrument's centroid: matching on neither tip nor axis,
    the quantities under test."""
    truths, centres = [], []
    for truth in frame.instruments:
        ys, xs = np.nonzero(frame.instance == truth.index + 1)
        if xs.size:
            truths.append(truth)
            centres.append((float(xs.mean()), float(ys.mean())))
    k = min(len(truths), len(found))
    best: tuple[float, list[tuple[int, int]]] = (math.inf, [])
    for ts in itertools.permutations(range(len(truths)), k):
        for fs in itertools.permutations(range(len(found)), k):
            cost = sum(math.dist(centres[a], found[b].centroid) for a, b in zip(ts, fs, strict=True))
            if cost < best[0]:
                best = (cost, list(zip(ts, fs, strict=True)))
    return [(truths[a], found[b]) for a, b in best[1]]


def tips_error(truth: InstrumentTruth, inst: Instrument) -> float:
    return math.dist(truth.tip, inst.tip)


def one_region(frame: SceneFrame) -> bool:
    return cv2.connectedComponents((frame.mask > 0).view(np.uint8), connectivity=8)[0] == 2


# Tip tolerances, from what a class mask can show at all (f = 457 px, shaft radius 3.5 mm):
#: jaws across the view: the silhouette ends one jaw-tip radius (0.2 r = 0.7 mm, ~4 px at 8 cm)
#: past the grasp point's projection, and the pose code places the tip inside that end
TIP_TOL_PX = 4.0
#: jaws tilted towards the lens: their tip is nearer (~7 cm), so its radius is ~5 px
TIP_TOL_TILTED_PX = 5.0
#: jaws within ~30 deg of the view ray (bent away, end-on): the silhouette's far end lies on the
#: rim of the jaws' cross-section rather than at their tips, up to a jaw-base radius away
#: (0.42 r = 1.5 mm, ~7 px at 9.5 cm)
TIP_TOL_END_ON_PX = 8.0
AXIS_TOL_DEG = 5.0

#: the articulated cases: a shaft ~65 deg from the optical axis (trocar 20 cm to the left),
#: wrist near the image centre at 8 cm, so bends towards and away from the lens stay in view
ART_TROCAR = (-0.2, 0.01, -0.012)
ART_WRIST_PX = (330.0, 250.0)


@pytest.mark.parametrize("jaw", [0.0, 0.8])
@pytest.mark.parametrize(
    ("bend", "tol"),
    [
        ("side+", TIP_TOL_PX),
        ("side-", TIP_TOL_PX),
        ("towards", TIP_TOL_TILTED_PX),
        ("away", TIP_TOL_END_ON_PX),
    ],
)
def test_articulated_wrist(bend: str, tol: float, jaw: float) -> None:
    """A wrist bent 55 deg sideways (in the image) or towards / away from the lens (out of it),
    jaws closed or open across the view: the tip is the grasp point, the axis the shaft's."""
    tool = make_tool(0, ART_TROCAR, at_pixel(*ART_WRIST_PX, 0.08), 55.0, bend, jaw)
    frame = draw(tool)
    (truth,) = frame.instruments
    assert truth.wrist_bend_deg == pytest.approx(55.0) and truth.tip_visible
    (inst,) = extract_instruments(frame.mask)
    assert tips_error(truth, inst) <= tol
    assert angle_deg(inst.axis, truth.axis) <= AXIS_TOL_DEG
    assert inst.tip_visible


@pytest.mark.xfail(
    strict=True,
    reason="open jaws bent 60 deg away from the lens show as a crescent around the shaft's end, "
    "both jaw tips visible; the pose code takes one jaw's tip, not their midpoint (23.8 px off)",
)
def test_open_jaws_bent_away_around_the_shaft_end() -> None:
    tool = make_tool(0, ART_TROCAR, at_pixel(*ART_WRIST_PX, 0.08), 60.0, "away", 0.8)
    frame = draw(tool)
    (truth,) = frame.instruments
    assert truth.tip_visible
    (inst,) = extract_instruments(frame.mask)
    assert tips_error(truth, inst) <= TIP_TOL_END_ON_PX


def test_crossing_shafts() -> None:
    """The nearer tool (left trocar, 7 cm) crosses in front of the farther one (right, 9 cm)."""
    near = make_tool(0, (-0.2, -0.06, -0.012), at_pixel(430, 340, 0.07), 30.0, "side+", 0.3)
    far = make_tool(1, (0.2, -0.08, -0.012), at_pixel(200, 330, 0.09), 40.0, "side-", 0.6)
    frame = draw(near, far)
    assert one_region(frame)
    found = extract_instruments(frame.mask)
    assert len(found) == 2
    pairs = match(frame, found)
    assert len(pairs) == 2
    for truth, inst in pairs:
        assert truth.tip_visible and inst.tip_visible
        assert tips_error(truth, inst) <= TIP_TOL_PX
        assert angle_deg(inst.axis, truth.axis) <= AXIS_TOL_DEG


#: a shaft from below the lens, ~6 deg from the optical axis and 4 cm away: 70-80 px wide,
#: seen over a few tens of pixels above the bottom border
STUB_TROCAR = (0.0, 0.03, -0.01)


@pytest.mark.parametrize(
    ("wrist_y", "bend_deg"),
    [
        pytest.param(0.024, 20.0, id="jaws-in-view"),
        pytest.param(0.025, 60.0, id="jaws-out-of-view"),
        pytest.param(0.025, 20.0, id="end-on-jaws-at-the-border"),  # the wrist's rim on the border
    ],
)
def test_stub_points_into_the_image(wrist_y: float, bend_deg: float) -> None:
    """A tool barely entering over the bottom border, its jaws bent away from the lens: just
    in view (a cap above the shaft's end, whose wrist ball's rim may reach the border beside the
    shaft: not jaws leaving the view) or out of it (behind the shaft, below the border)."""
    frame = draw(make_tool(0, STUB_TROCAR, (0.0, wrist_y, 0.04), bend_deg, "away"))
    (truth,) = frame.instruments
    (inst,) = extract_instruments(frame.mask)
    _, y, w, h = inst.bbox
    assert w > h and y + h == H  # a short, wide stub on the bottom border
    assert inst.axis[1] < 0 and angle_deg(inst.axis, truth.axis) <= AXIS_TOL_DEG  # inwards, no flip
    assert abs(inst.entry[1] - (H - 1)) <= 2.0
    assert inst.tip_visible == truth.tip_visible
    if truth.tip_visible:
        assert tips_error(truth, inst) <= TIP_TOL_END_ON_PX


@pytest.mark.xfail(
    strict=True,
    reason="near the lens, a wrist bent 60 deg puts more jaw than shaft pixels on the border: "
    "the pose code reads the run as jaws leaving the view (tip 212 px off, axis 95 deg off, "
    "tip_visible False; truth: visible)",
)
def test_wrist_bent_along_the_border_near_the_lens() -> None:
    frame = draw(make_tool(0, (0.02, 0.10, -0.01), at_pixel(330, 500, 0.04), 60.0, "side+"))
    (truth,) = frame.instruments
    assert truth.tip_visible
    (inst,) = extract_instruments(frame.mask)
    assert inst.tip_visible
    assert tips_error(truth, inst) <= TIP_TOL_PX
    assert angle_deg(inst.axis, truth.axis) <= AXIS_TOL_DEG


#: the default stream's first frame (seed 0, rounded): the nearer tool's jaws (wrist at 6.6 cm)
#: reach across the farther tool's shaft, whose own jaws hide behind the nearer shaft
JAWS_ACROSS_A_SHAFT = (
    ToolPose(
        0,
        ToolShape(0.00364, 0.00592, 0.00851),
        trocar=(0.0354, 0.0691, -0.0063),
        wrist=(-0.00879, 0.00811, 0.0657),
        pitch=-0.527,
        yaw=-0.0734,
        roll=3.923,
        jaw_opening=0.131,
    ),
    ToolPose(
        1,
        ToolShape(0.00364, 0.00582, 0.01143),
        trocar=(-0.0340, -0.0999, -0.0123),
        wrist=(-0.01403, 0.01055, 0.0839),
        pitch=-0.0029,
        yaw=-0.0278,
        roll=5.025,
        jaw_opening=0.032,
    ),
)


def test_jaws_across_another_tools_shaft() -> None:
    """The jaws lying over the other tool's shaft are the nearer tool's: that shaft's end
    touches them too, but they reach back behind it, where no jaws of its own can be."""
    frame = draw(*JAWS_ACROSS_A_SHAFT)
    assert one_region(frame)
    found = extract_instruments(frame.mask)
    assert len(found) == 2
    visible = [(truth, inst) for truth, inst in match(frame, found) if truth.tip_visible]
    assert len(visible) == 1
    truth, inst = visible[0]
    assert inst.tip_visible
    assert tips_error(truth, inst) <= TIP_TOL_TILTED_PX  # the jaws' tip is nearer the lens
    assert angle_deg(inst.axis, truth.axis) <= AXIS_TOL_DEG


#: seed 2, frame 144 (rounded): two tools with closed jaws bent a little, seen from behind their
#: wrists, so the jaws show as caps on the shafts' ends
JAW_CAPS = (
    ToolPose(
        0,
        ToolShape(0.00361, 0.00598, 0.01086),
        trocar=(0.0690, 0.0389, -0.0170),
        wrist=(-0.02534, 0.01108, 0.1033),
        pitch=-0.0204,
        yaw=0.0275,
        roll=6.164,
        jaw_opening=0.0,
    ),
    ToolPose(
        1,
        ToolShape(0.00326, 0.00429, 0.01084),
        trocar=(-0.0835, -0.0393, -0.0156),
        wrist=(-0.04120, 0.00630, 0.0671),
        pitch=-0.0139,
        yaw=0.0274,
        roll=-0.221,
        jaw_opening=0.0,
    ),
)


def test_jaw_caps_on_the_shaft_ends() -> None:
    """Where a cap of jaws meets the edge of its shaft is no jaw end: the tip is the cap's far
    corner, the grasp point."""
    frame = draw(*JAW_CAPS)
    found = extract_instruments(frame.mask)
    assert len(found) == 2
    pairs = match(frame, found)
    assert len(pairs) == 2
    for truth, inst in pairs:
        assert truth.tip_visible and inst.tip_visible
        assert tips_error(truth, inst) <= TIP_TOL_TILTED_PX
        assert angle_deg(inst.axis, truth.axis) <= AXIS_TOL_DEG


def touching_pair(contact: str) -> tuple[ToolPose, ToolPose]:
    """Tool a from the left (8 cm, wrist bent 20 deg) and tool b touching it: jaw tips against
    a's jaw tips (b from the right, its wrist at 8 or 9 cm), or pressing on the lower edge of
    a's shaft (b from below, nearer the lens, so its jaws show in front)."""
    a = make_tool(0, (-0.2, 0.0, -0.012), at_pixel(300, 260, 0.08), 20.0, "side+")
    if contact == "jaws on shaft":
        return a, tool_with_tip(1, (0.05, 0.25, -0.012), (240.0, 280.0), 0.07)
    b_tip = np.asarray(draw(a).instruments[0].tip) + np.array([4.0, 4.0])
    depth = 0.08 if contact == "tip to tip" else 0.09
    return a, tool_with_tip(1, (0.2, 0.05, -0.012), (b_tip[0], b_tip[1]), depth, bend_deg=20.0)


@pytest.mark.parametrize(
    "contact",
    [
        "jaws on shaft",
        "tip to tip, b farther",
        pytest.param(
            "tip to tip",
            marks=pytest.mark.xfail(
                strict=True,
                reason="jaws meeting tip to tip form one jaw group, which the pose code divides "
                "by distance to the two shafts' ends; b's jaws are longer in the image, so the "
                "boundary falls inside them: tip errors 8.1 px (a) and 5.2 px (b)",
            ),
        ),
    ],
)
def test_touching_tools(contact: str) -> None:
    """Two tools touching (one region of the mask) are two instruments with their own tips."""
    a, b = touching_pair(contact)
    frame = draw(a, b)
    assert one_region(frame)
    found = extract_instruments(frame.mask)
    assert len(found) == 2
    pairs = match(frame, found)
    assert len(pairs) == 2
    for truth, inst in pairs:
        assert truth.tip_visible and inst.tip_visible
        assert tips_error(truth, inst) <= TIP_TOL_PX
        assert angle_deg(inst.axis, truth.axis) <= AXIS_TOL_DEG


def test_border_cut_tools_have_no_visible_tip() -> None:
    """One tool's jaws leave the view on the right; another crosses the view, its wrist beyond
    the right border: both leave the view at their far end, where the pose code puts the tip."""
    cut = make_tool(0, (-0.2, -0.08, -0.012), at_pixel(590, 150, 0.08), 20.0, "side+", 0.3)
    across = make_tool(1, (-0.15, 0.12, -0.012), at_pixel(700, 300, 0.10))
    frame = draw(cut, across)
    found = extract_instruments(frame.mask)
    assert len(found) == 2
    pairs = match(frame, found)
    assert len(pairs) == 2
    for truth, inst in pairs:
        assert not truth.tip_visible and not inst.tip_visible
        assert inst.tip[0] >= W - 3.0  # on the right border
        assert angle_deg(inst.axis, truth.axis) <= AXIS_TOL_DEG


@pytest.mark.parametrize(
    ("trocar", "wrist", "bend_deg", "bend", "jaw"),
    [
        pytest.param((0.018, 0.012, -0.01), (0.0, 0.0, 0.08), 0.0, "side+", 0.6, id="straight-open"),
        pytest.param((0.02, -0.015, -0.01), (-0.005, 0.005, 0.07), 20.0, "side+", 0.0, id="bent-sideways"),
        pytest.param((-0.015, 0.02, -0.01), (0.01, -0.005, 0.09), 30.0, "towards", 0.4, id="bent-towards"),
    ],
)
def test_end_on_shaft(
    trocar: Vec3,
    wrist: Vec3,
    bend_deg: float,
    bend: str,
    jaw: float,
) -> None:
    """A shaft within 25 deg of the optical axis, foreshortened to a cone. Closed jaws pointing
    straight away hide behind the shaft's end face but for a rim of the wrist ball: the truth
    calls that tip hidden, which the class mask cannot show, so no case here asks it."""
    tool = make_tool(0, trocar, wrist, bend_deg, bend, jaw)
    assert math.degrees(math.acos(tool.shaft_axis[2])) <= 25.0  # mostly along the optical axis
    frame = draw(tool)
    (truth,) = frame.instruments
    (inst,) = extract_instruments(frame.mask)
    assert inst.tip_visible == truth.tip_visible
    if truth.tip_visible:
        assert tips_error(truth, inst) <= TIP_TOL_END_ON_PX
    assert angle_deg(inst.axis, truth.axis) <= AXIS_TOL_DEG


def stream_numbers(frames: range) -> tuple[int, int, float, list[float]]:
    """(truths in view, matched, flag agreement, tip errors of visible tips) over ``frames`` of
    the default scene, poses taken on the true class mask."""
    sim = EndoscopeScene(SceneConfig(seed=0))
    in_view = matched = agree = 0
    errors: list[float] = []
    for index in frames:
        frame = sim.render(index)
        in_view += sum(bool(np.any(frame.instance == t.index + 1)) for t in frame.instruments)
        for truth, inst in match(frame, extract_instruments(frame.mask)):
            matched += 1
            agree += inst.tip_visible == truth.tip_visible
            if truth.tip_visible:
                errors.append(tips_error(truth, inst))
    return in_view, matched, agree / max(matched, 1), errors


def test_stream_flags_and_tip_error() -> None:
    """What the issue's goals need from the pose code itself: on the default stream, the tip
    flag agrees with the truth on >= 95 % of the matched instruments and the median error of
    the visible tips is <= 4 px."""
    in_view, matched, agreement, errors = stream_numbers(range(0, 121, 2))
    assert matched >= 0.9 * in_view and len(errors) >= 60
    assert agreement >= 0.95
    assert float(np.median(errors)) <= TIP_TOL_PX
