"""The 3D tool model: geometry of the articulated tool, trajectories, projection and painting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cct_surgical_seg.sim.tools3d import (
    CLASS_MANIPULATOR,
    CLASS_SHAFT,
    MAX_BEND,
    MAX_JAW_ANGLE,
    TROCAR_CLEARANCE,
    PinholeCamera,
    ToolColours,
    ToolPose,
    ToolShape,
    ToolTrajectory,
    draw_tools,
    project_shaft,
)

W, H = 640, 512
F = (W / 2) / math.tan(math.radians(35))
CAM = PinholeCamera(F, F, (W - 1) / 2, (H - 1) / 2, W, H)
SHAPE = ToolShape(shaft_radius=0.003, wrist_length=0.005, jaw_length=0.01)
COLOURS = ToolColours(
    shaft=((118, 122, 130), (178, 182, 188), (232, 234, 238)),
    manipulator=((22, 24, 30), (52, 56, 66), (120, 124, 130)),
)


def pose(trocar, wrist, index: int = 0, pitch=0.0, yaw=0.0, roll=0.0, jaw=0.0, shape=SHAPE) -> ToolPose:
    return ToolPose(index, shape, tuple(trocar), tuple(wrist), pitch, yaw, roll, jaw)


def paint(cam: PinholeCamera, *poses: ToolPose) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    img = np.zeros((cam.height, cam.width, 3), np.uint8)
    mask = np.zeros((cam.height, cam.width), np.uint8)
    instance = np.zeros_like(mask)
    draw_tools(img, mask, instance, cam, poses, COLOURS)
    return img, mask, instance


def random_poses(count: int, seed: int = 0) -> list[ToolPose]:
    rng = np.random.default_rng(seed)
    half = min(W, H) / 2 / F
    out = []
    for k in range(count):
        traj = ToolTrajectory.random(rng, 0, 1, half, float(rng.uniform(0, 2 * math.pi)))
        out.append(traj.pose(float(k) * 0.7))
    return out


def angle(u: np.ndarray, v: np.ndarray) -> float:
    return math.acos(float(np.clip(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v), -1, 1)))


def test_side_on_shaft_is_as_wide_as_perspective_says() -> None:
    for depth in (0.06, 0.1, 0.14):
        tool = pose((-0.3, 0.0, depth), (0.02, 0.0, depth))
        _, mask, instance = paint(CAM, tool)
        column = round(CAM.cx + F * -0.02 / depth)
        rows = np.flatnonzero(mask[:, column] == CLASS_SHAFT)
        expected = 2 * F * SHAPE.shaft_radius / depth
        assert abs(len(rows) - expected) <= 1.5, (depth, len(rows), expected)
        assert abs(rows.mean() - CAM.cy) <= 1.0  # centred on the projected axis
        assert np.array_equal(mask > 0, instance == 1)


def test_jaw_tips_and_wrist_are_drawn_where_they_project() -> None:
    hits = total = 0
    for tool in random_poses(60):
        _, mask, _ = paint(CAM, tool)
        for tip in CAM.project(tool.jaw_tips):
            x, y = round(tip[0]), round(tip[1])
            if 0 <= x < W and 0 <= y < H:
                total += 1
                hits += mask[y, x] == CLASS_MANIPULATOR
        grasp = CAM.project(tool.grasp_point)
        if CAM.contains(grasp):
            ys, xs = np.nonzero(mask == CLASS_MANIPULATOR)
            assert (
                np.min(np.hypot(xs - grasp[0], ys - grasp[1]))
                < 0.5 * F * SHAPE.jaw_length / tool.grasp_point[2]
            )
    assert total >= 30 and hits / total >= 0.9, (hits, total)


def test_nearer_tool_hides_the_farther_one_where_they_cross() -> None:
    centre = (round(CAM.cx), round(CAM.cy))
    for near, far, owner in ((0.08, 0.12, 1), (0.12, 0.08, 2)):
        horizontal = pose((-0.3, 0.0, near), (0.03, 0.0, near), index=0)
        vertical = pose((0.0, -0.3, far), (0.0, 0.04, far), index=1)
        _, mask, instance = paint(CAM, horizontal, vertical)
        assert instance[centre[1], centre[0]] == owner
        assert mask[centre[1], centre[0]] == CLASS_SHAFT
        assert {1, 2} <= set(np.unique(instance))  # both tools still show


def test_shaded_shaft_looks_round() -> None:
    img, mask, _ = paint(CAM, pose((-0.3, 0.0, 0.08), (0.02, 0.0, 0.08)))
    column = round(CAM.cx - 0.05 * F / 0.08)
    rows = np.flatnonzero(mask[:, column] == CLASS_SHAFT)
    profile = img[rows, column].astype(float).mean(axis=1)
    third = len(rows) // 3
    assert profile[third:-third].max() > profile[:3].mean() + 40  # bright middle, dark rims
    assert profile[third:-third].max() > profile[-3:].mean() + 40


def test_articulation_geometry() -> None:
    base = dict(trocar=(0.05, -0.04, -0.02), wrist=(0.0, 0.01, 0.09))
    for pitch, yaw, roll, jaw in ((0.3, -0.2, 0.4, 0.5), (1.5, 0.0, 2.0, 1.0), (0.0, 0.0, 0.0, 0.0)):
        tool = pose(**base, pitch=pitch, yaw=yaw, roll=roll, jaw=jaw)
        a, d = tool.shaft_axis, tool.distal_axis
        assert abs(np.linalg.norm(a) - 1) < 1e-12 and abs(np.linalg.norm(d) - 1) < 1e-12
        assert angle(a, d) == pytest.approx(min(math.hypot(pitch, yaw), MAX_BEND), abs=1e-9)
        assert tool.bend <= MAX_BEND
        jaws = tool.jaw_tips - tool.jaw_pivot
        assert np.linalg.norm(jaws, axis=1) == pytest.approx([SHAPE.jaw_length] * 2)
        assert angle(jaws[0], jaws[1]) == pytest.approx(jaw * MAX_JAW_ANGLE, abs=1e-6)
        assert angle(tool.grasp_point - tool.jaw_pivot, d) < 1e-6  # symmetric about the wrist
        assert np.allclose(tool.jaw_pivot, tool.wrist_point + SHAPE.wrist_length * d)
    # roll turns the plane the jaws open in about the wrist direction
    opened = [pose(**base, pitch=0.3, roll=r, jaw=1.0) for r in (0.0, math.pi / 2)]
    planes = [t.jaw_tips[0] - t.jaw_tips[1] for t in opened]
    assert abs(float(np.dot(planes[0], planes[1]))) < 1e-9
    assert np.allclose(opened[0].grasp_point, opened[1].grasp_point)


def test_projected_shaft_entry_axis_and_3d_entry() -> None:
    for tool in random_poses(80, seed=1):
        shaft = project_shaft(CAM, tool)
        ex, ey = shaft.entry
        assert min(ex, ey, W - 1 - ex, H - 1 - ey) < 1e-6, "the entry lies on the border"
        assert abs(np.linalg.norm(shaft.axis) - 1) < 1e-9
        assert np.allclose(shaft.wrist, CAM.project(tool.wrist_point))
        if CAM.contains(shaft.wrist):
            assert np.allclose(CAM.project(shaft.entry_3d), shaft.entry, atol=1e-6)
            # entry_3d lies on the shaft axis, between the trocar and the wrist
            along = shaft.entry_3d - tool.trocar_point
            assert angle(along, tool.shaft_axis) < 1e-6
            assert np.linalg.norm(along) < np.linalg.norm(tool.wrist_point - tool.trocar_point)
            step = shaft.wrist - shaft.entry
            if np.linalg.norm(step) > 1:
                assert np.allclose(step / np.linalg.norm(step), shaft.axis, atol=1e-6)


def test_ray_exit() -> None:
    centre = np.array([CAM.cx, CAM.cy])
    assert np.allclose(CAM.ray_exit(centre, np.array([1.0, 0.0])), [W - 1, CAM.cy])
    assert np.allclose(CAM.ray_exit(np.array([-50.0, 10.0]), np.array([1.0, 0.0])), [W - 1, 10])
    assert np.allclose(CAM.ray_exit(centre, np.array([-1.0, -1.0]) / math.sqrt(2)), [CAM.cx - CAM.cy, 0])
    assert CAM.ray_exit(np.array([-50.0, 10.0]), np.array([-1.0, 0.0])) is None
    assert CAM.ray_exit(np.array([-50.0, -10.0]), np.array([1.0, 0.0])) is None


def test_trajectories_are_smooth_seeded_and_keep_the_trocar_outside_the_view() -> None:
    half = min(W, H) / 2 / F
    a = ToolTrajectory.random(np.random.default_rng(4), 1, 3, half, 0.3)
    b = ToolTrajectory.random(np.random.default_rng(4), 1, 3, half, 0.3)
    assert a == b and a.pose(3.2) == b.pose(3.2)
    for t in np.arange(0.0, 40.0, 0.37):
        now, soon = a.pose(float(t)), a.pose(float(t) + 1e-3)
        assert now.trocar[2] < 0, "the trocar is behind the lens, outside the frustum"
        assert 0.03 <= now.grasp_point[2] <= 0.17
        assert np.linalg.norm(soon.grasp_point - now.grasp_point) < 1e-3  # < 1 m/s
        # the shaft never passes through the endoscope
        d = now.wrist_point - now.trocar_point
        s = np.clip(-np.dot(now.trocar_point, d) / np.dot(d, d), 0, 1)
        assert np.linalg.norm(now.trocar_point + s * d) > 0.8 * TROCAR_CLEARANCE


def test_right_camera_sees_points_shifted_by_the_disparity() -> None:
    baseline = 0.0045
    right = PinholeCamera(F, F, CAM.cx, CAM.cy, W, H, baseline)
    points = np.array([[0.01, -0.02, 0.05], [-0.03, 0.01, 0.12], [0.0, 0.0, 0.16]])
    left_px, right_px = CAM.project(points), right.project(points)
    assert np.allclose(right_px[:, 0], left_px[:, 0] - F * baseline / points[:, 2])
    assert np.allclose(right_px[:, 1], left_px[:, 1])


def test_shading_brightens_towards_the_light_and_specular_is_optional() -> None:
    dark, lit = COLOURS.shade(CLASS_SHAFT, 0.0), COLOURS.shade(CLASS_SHAFT, 1.0)
    assert lit.tolist() == [232, 234, 238] and dark.tolist() == [118, 122, 130]
    matte = ToolColours(COLOURS.shaft, COLOURS.manipulator, specular=False)
    assert matte.shade(CLASS_SHAFT, 1.0).tolist() == [178, 182, 188]
    bands = COLOURS.facet_colours(CLASS_MANIPULATOR, 6)
    assert len(bands) == 6 and max(bands) > min(bands)
