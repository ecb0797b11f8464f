"""The procedural scene: deterministic, its ground truth agrees with what is drawn and with the
3D geometry, the stream shows the hard cases (crossing, occlusion, end-on, bent wrists, tips
out of view), the stereo pair is consistent, and the colour-rule palette still works."""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np
import pytest

from cct_surgical_seg.sim.scene import (
    CLASS_MANIPULATOR,
    CLASS_SHAFT,
    MIN_BLUR_PX,
    EndoscopeScene,
    SceneConfig,
    SceneFrame,
)

CONFIGS = [
    SceneConfig(width=320, height=256, num_instruments=1, seed=3),
    SceneConfig(width=320, height=256, num_instruments=2, seed=5, smoke=0.3),
    SceneConfig(width=640, height=512, num_instruments=3, seed=11),
]


def project(k: np.ndarray, point: tuple[float, float, float]) -> np.ndarray:
    p = k @ np.asarray(point)
    return p[:2] / p[2]


def distance_to_hull(point: tuple[float, float], pixels: np.ndarray) -> float:
    """Distance (px) from ``point`` to the convex hull of a boolean pixel set (0 inside)."""
    ys, xs = np.nonzero(pixels)
    hull = cv2.convexHull(np.stack([xs, ys], axis=1).astype(np.float32))
    return max(-cv2.pointPolygonTest(hull, (float(point[0]), float(point[1])), True), 0.0)


def touching(frame: SceneFrame, a: int, b: int) -> bool:
    grown = cv2.dilate((frame.instance == a + 1).astype(np.uint8), np.ones((3, 3), np.uint8))
    return bool(np.any(grown.astype(bool) & (frame.instance == b + 1)))


def crossing(frame: SceneFrame, a: int, b: int) -> bool:
    """The two projected shaft axes (entry -> wrist) intersect inside the image."""
    p, q = np.asarray(frame.instruments[a].entry), np.asarray(frame.instruments[b].entry)
    r = np.asarray(frame.instruments[a].wrist) - p
    s = np.asarray(frame.instruments[b].wrist) - q
    den = r[0] * s[1] - r[1] * s[0]
    if abs(den) < 1e-9:
        return False
    t = ((q - p)[0] * s[1] - (q - p)[1] * s[0]) / den
    u = ((q - p)[0] * r[1] - (q - p)[1] * r[0]) / den
    hit = p + t * r
    h, w = frame.mask.shape
    return 0 <= t <= 1 and 0 <= u <= 1 and 0 <= hit[0] <= w - 1 and 0 <= hit[1] <= h - 1


def border_of(entry: tuple[float, float], w: int, h: int) -> str:
    x, y = entry
    return ("left", "right", "top", "bottom")[int(np.argmin([x, w - 1 - x, y, h - 1 - y]))]


def test_same_seed_same_frames_and_random_access() -> None:
    cfg = SceneConfig(width=320, height=256, num_instruments=3, seed=7, smoke=0.2)
    a, b = EndoscopeScene(cfg), EndoscopeScene(cfg)
    later_first = b.render(40)  # rendering order must not matter
    for i in (0, 40):
        fa, fb = a.render(i), (later_first if i == 40 else b.render(i))
        assert np.array_equal(fa.rgb, fb.rgb)
        assert np.array_equal(fa.mask, fb.mask)
        assert np.array_equal(fa.instance, fb.instance)
        assert fa.instruments == fb.instruments
    right = a.render(40, eye=1)
    assert (
        np.array_equal(right.rgb, b.render(40, eye=1).rgb)
        and right.instruments == b.render(40, 1).instruments
    )


def test_other_seed_or_time_changes_the_frame() -> None:
    cfg = SceneConfig(width=320, height=256, seed=1)
    f0 = EndoscopeScene(cfg).render(0)
    assert not np.array_equal(
        f0.rgb, EndoscopeScene(SceneConfig(width=320, height=256, seed=2)).render(0).rgb
    )
    f30 = EndoscopeScene(cfg).render(30)
    assert not np.array_equal(f0.mask, f30.mask), "instruments must move"


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.num_instruments}tools")
def test_ground_truth_matches_the_drawing(cfg: SceneConfig) -> None:
    scene = EndoscopeScene(cfg)
    h, w = cfg.height, cfg.width
    visible_tips = 0
    for index in range(0, 90, 9):
        frame = scene.render(index)
        assert frame.rgb.shape == (h, w, 3) and frame.rgb.dtype == np.uint8
        assert frame.mask.shape == (h, w) and set(np.unique(frame.mask)) <= {0, 1, 2}
        assert len(frame.instruments) == cfg.num_instruments
        # class mask and instance mask describe the same pixels
        assert np.array_equal(frame.mask > 0, frame.instance > 0)
        assert set(np.unique(frame.instance)) <= set(range(cfg.num_instruments + 1))
        for truth in frame.instruments:
            own = frame.instance == truth.index + 1
            ex, ey = truth.entry
            assert min(ex, ey, w - 1 - ex, h - 1 - ey) < 1e-6, "the entry lies on the border"
            assert abs(np.hypot(*truth.axis) - 1.0) < 1e-9
            if truth.tip_visible:
                visible_tips += 1
                tx, ty = truth.tip
                assert 0 <= tx <= w - 1 and 0 <= ty <= h - 1
                jaws = own & (frame.mask == CLASS_MANIPULATOR)
                # the grasp point lies on this tool's jaws, or between them when they are open
                assert distance_to_hull(truth.tip, jaws) <= 2.0, (index, truth)
        # instrument pixels look like instruments: shaft brighter/greyer than tissue, jaws darker
        shaft = frame.rgb[frame.mask == CLASS_SHAFT].astype(float)
        tissue = frame.rgb[frame.mask == 0].astype(float)
        jaws = frame.rgb[frame.mask == CLASS_MANIPULATOR].astype(float)
        if len(shaft) and len(jaws):
            assert np.mean(shaft[:, 0] - shaft[:, 2]) < np.mean(tissue[:, 0] - tissue[:, 2])
            assert jaws.mean() < shaft.mean()
    assert visible_tips >= cfg.num_instruments * 10 * 0.6


def test_tip_visibility_follows_the_masks() -> None:
    """tip_visible <=> the grasp point is in view and a jaw tip pixel shows this tool's jaws."""
    scene = EndoscopeScene(SceneConfig(width=320, height=256, num_instruments=3, seed=4))
    seen = {True: 0, False: 0}
    for index in range(0, 300, 6):
        frame, state = scene.render(index), scene.state(index)
        cam = scene.camera(0)
        for truth, pose in zip(frame.instruments, state.tools, strict=True):
            seen[truth.tip_visible] += 1
            tip_in_view = 0 <= truth.tip[0] <= 319 and 0 <= truth.tip[1] <= 255
            jaw_pixels = [
                (round(x), round(y))
                for x, y in cam.project(pose.jaw_tips)
                if 0 <= x < 319.5 and 0 <= y < 255.5
            ]
            shows_jaw = any(
                frame.mask[y, x] == CLASS_MANIPULATOR and frame.instance[y, x] == truth.index + 1
                for x, y in jaw_pixels
            )
            field_stop = (
                np.hypot(truth.tip[0] - 159.5, truth.tip[1] - 127.5) >= 0.96 * math.hypot(320, 256) / 2
            )
            assert truth.tip_visible == (tip_in_view and shows_jaw and not field_stop)
    assert seen[True] > 0 and seen[False] > 0


def test_3d_truth_projects_to_the_2d_truth() -> None:
    scene = EndoscopeScene(SceneConfig(num_instruments=3, seed=2))
    k = scene.intrinsics.matrix
    for index in range(0, 200, 20):
        for truth in scene.render(index).instruments:
            assert np.allclose(project(k, truth.tip_3d), truth.tip, atol=1e-6)
            assert np.allclose(project(k, truth.wrist_3d), truth.wrist, atol=1e-6)
            axis = np.asarray(truth.shaft_axis_3d)
            assert abs(np.linalg.norm(axis) - 1) < 1e-9 and axis[2] > 0
            # wrist, entry point and trocar lie on the shaft axis
            for point in (truth.entry_3d, truth.trocar_3d):
                offset = np.asarray(truth.wrist_3d) - np.asarray(point)
                assert np.linalg.norm(np.cross(offset, axis)) < 1e-9
            assert truth.trocar_3d[2] < 0, "the trocar is outside the view frustum"
            if scene.camera(0).contains(np.asarray(truth.wrist)):
                assert np.allclose(project(k, truth.entry_3d), truth.entry, atol=1e-6)
            assert 0.03 < truth.tip_3d[2] < 0.17
            assert 0 <= truth.wrist_bend_deg <= 60 and 0 <= truth.jaw_angle_deg <= 60
            assert truth.jaw_angle_deg == pytest.approx(60 * truth.jaw_opening)


def test_the_default_stream_shows_the_hard_cases() -> None:
    """Within the first 600 frames of the default config with 3 tools: shafts crossing, tools
    touching, a tip not visible, a tip outside the image, a nearly end-on shaft, a strongly bent
    wrist, opening and closing jaws, and entries on at least 3 borders."""
    cfg = SceneConfig(num_instruments=3)
    scene = EndoscopeScene(cfg)
    found: dict[str, int] = {}
    borders, openings, shares = set(), [], []
    for index in range(0, 600, 3):
        frame = scene.render(index)
        tools = frame.instruments
        shares.append(float(np.mean(frame.mask > 0)))
        pairs = [(a, b) for a in range(len(tools)) for b in range(a + 1, len(tools))]
        cases = {
            "crossing": any(crossing(frame, a, b) for a, b in pairs),
            "touching": any(touching(frame, a, b) for a, b in pairs),
            "tip hidden": any(not t.tip_visible for t in tools),
            "tip out of image": any(
                not (0 <= t.tip[0] <= cfg.width - 1 and 0 <= t.tip[1] <= cfg.height - 1)
                and np.any(frame.instance == t.index + 1)
                for t in tools
            ),
            "end-on": any(math.degrees(math.acos(t.shaft_axis_3d[2])) < 25 for t in tools),
            "bent wrist": any(t.wrist_bend_deg > 30 for t in tools),
        }
        for name, happened in cases.items():
            if happened:
                found.setdefault(name, index)
        borders |= {
            border_of(t.entry, cfg.width, cfg.height) for t in tools if np.any(frame.instance == t.index + 1)
        }
        openings += [t.jaw_opening for t in tools]
    missing = {"crossing", "touching", "tip hidden", "tip out of image", "end-on", "bent wrist"} - set(found)
    assert not missing, f"never seen: {missing}; first frames of the others: {found}"
    assert len(borders) >= 3, borders
    assert min(openings) < 0.05 and max(openings) > 0.5
    assert 0.03 <= float(np.median(shares)) <= 0.25, np.median(shares)


def test_right_eye_is_the_same_instant_seen_from_the_baseline() -> None:
    cfg = SceneConfig(
        width=320, height=256, num_instruments=2, seed=6, blur=False, vignette=False, motion_blur=False
    )
    scene = EndoscopeScene(cfg)
    f, baseline = scene.intrinsics.k[0], cfg.stereo_baseline_m
    p_left, p_right = (np.asarray(scene.stereo_projection(e)).reshape(3, 4) for e in (0, 1))
    assert np.allclose(p_left, np.asarray(scene.intrinsics.projection).reshape(3, 4))
    assert p_right[0, 3] == pytest.approx(-f * baseline) and np.allclose(p_right[:, :3], p_left[:, :3])
    d = scene.tissue_disparity_px
    assert d >= 1 and f * baseline / scene.tissue_depth_m == pytest.approx(d)
    assert abs(scene.tissue_depth_m - 0.16) < 0.02
    for index in (0, 50, 100):
        left, right = scene.render(index), scene.render(index, eye=1)
        assert right.eye == 1 and left.eye == 0
        for lt, rt in zip(left.instruments, right.instruments, strict=True):
            z = lt.tip_3d[2]
            assert rt.tip == pytest.approx((lt.tip[0] - f * baseline / z, lt.tip[1]), abs=1e-6)
            assert rt.tip_3d == lt.tip_3d and rt.shaft_axis_3d == lt.shaft_axis_3d  # 3D: left frame
            homogeneous = p_right @ np.append(rt.tip_3d, 1.0)
            assert np.allclose(homogeneous[:2] / homogeneous[2], rt.tip, atol=1e-6)
            assert rt.wrist[0] == pytest.approx(lt.wrist[0] - f * baseline / lt.wrist_3d[2], abs=1e-6)
        # the tissue plane: right pixel x shows what the left one shows at x + disparity
        background = (right.mask[:, :-d] == 0) & (left.mask[:, d:] == 0)
        assert np.array_equal(right.rgb[:, :-d][background], left.rgb[:, d:][background])
        assert not np.array_equal(left.mask, right.mask), "the tools shift by their own disparity"


def test_motion_blur_smears_fast_tools_only() -> None:
    cfg = SceneConfig(num_instruments=3, seed=0, blur=False, vignette=False)
    sharp_scene = EndoscopeScene(replace(cfg, motion_blur=False))
    blurred_scene = EndoscopeScene(cfg)
    cam = blurred_scene.camera(0)
    fast, slow = [], []
    for index in range(0, 600, 5):
        state = blurred_scene.state(index)
        speeds = [
            np.hypot(*(cam.project(now.grasp_point) - cam.project(before.grasp_point)))
            for now, before in zip(state.tools, state.previous, strict=True)
        ]
        (fast if max(speeds) > MIN_BLUR_PX + 0.5 else slow if max(speeds) < MIN_BLUR_PX - 0.5 else []).append(
            index
        )
    assert fast and slow
    for index in fast[:3] + slow[:3]:
        sharp, blurred = sharp_scene.render(index), blurred_scene.render(index)
        assert np.array_equal(sharp.mask, blurred.mask) and sharp.instruments == blurred.instruments
        near_tools = cv2.dilate((sharp.mask > 0).astype(np.uint8), np.ones((21, 21), np.uint8)) > 0
        assert np.array_equal(sharp.rgb[~near_tools], blurred.rgb[~near_tools])
        assert np.array_equal(sharp.rgb, blurred.rgb) == (index in slow)


def test_blood_darkens_the_tissue_only() -> None:
    clean = EndoscopeScene(SceneConfig(width=320, height=256, seed=9, blood=0.0)).render(5)
    bloody = EndoscopeScene(SceneConfig(width=320, height=256, seed=9, blood=1.0)).render(5)
    assert np.array_equal(clean.mask, bloody.mask)
    tissue = (clean.mask == 0) & (bloody.mask == 0)
    darker = bloody.rgb.astype(int).sum(axis=2) < clean.rgb.astype(int).sum(axis=2) - 60
    assert 0.002 < np.mean(darker[tissue]) < 0.3


def test_intrinsics_are_a_centred_pinhole() -> None:
    scene = EndoscopeScene(SceneConfig(width=640, height=512))
    k = scene.intrinsics.matrix
    assert k[0, 0] == k[1, 1] > 0
    assert (k[0, 2], k[1, 2]) == (319.5, 255.5)
    assert len(scene.intrinsics.projection) == 12


@pytest.mark.parametrize(
    "bad",
    [
        dict(num_instruments=0),
        dict(num_instruments=4),
        dict(width=10),
        dict(smoke=1.5),
        dict(fps=0),
        dict(palette="neon"),
        dict(blood=-0.1),
        dict(stereo_baseline_m=-0.001),
    ],
)
def test_invalid_config_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        SceneConfig(**bad)


def test_invalid_eye_or_index_is_refused() -> None:
    scene = EndoscopeScene(SceneConfig(width=64, height=64))
    with pytest.raises(ValueError):
        scene.render(0, eye=2)
    with pytest.raises(ValueError):
        scene.render(-1)


def test_rule_palette_satisfies_the_colour_rule_model(rule_mask) -> None:
    """The graph tests rely on this: rule_onnx's colour rule recovers the drawn classes, and
    tissue and blood are never taken for an instrument."""
    cfg = SceneConfig(width=320, height=256, num_instruments=3, seed=2, palette="rule", blood=1.0)
    scene = EndoscopeScene(cfg)
    for index in (0, 25, 50, 100, 150):
        frame = scene.render(index)
        predicted = rule_mask(frame.rgb)
        for cls in (CLASS_SHAFT, CLASS_MANIPULATOR):
            truth, pred = frame.mask == cls, predicted == cls
            dice = 2 * np.sum(truth & pred) / (truth.sum() + pred.sum())
            assert dice > 0.85, (index, cls, dice)
        far = cv2.erode((frame.mask == 0).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        assert not np.any(predicted[far]), "tissue away from the tools is background"
