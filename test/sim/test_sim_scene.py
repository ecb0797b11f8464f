"""The procedural scene: deterministic, and its ground truth agrees with what is drawn."""

from __future__ import annotations

import numpy as np
import pytest

from cct_surgical_seg.sim.scene import (
    CLASS_MANIPULATOR,
    CLASS_SHAFT,
    EndoscopeScene,
    SceneConfig,
)

CONFIGS = [
    SceneConfig(width=320, height=256, num_instruments=1, seed=3),
    SceneConfig(width=320, height=256, num_instruments=2, seed=5, smoke=0.3),
    SceneConfig(width=640, height=512, num_instruments=3, seed=11),
]


def test_same_seed_same_frames_and_random_access() -> None:
    cfg = SceneConfig(width=320, height=256, num_instruments=3, seed=7, smoke=0.2)
    a, b = EndoscopeScene(cfg), EndoscopeScene(cfg)
    later_first = b.render(40)  # rendering order must not matter
    for i in (0, 40):
        fa, fb = a.render(i), (later_first if i == 40 else b.render(i))
        assert np.array_equal(fa.rgb, fb.rgb)
        assert np.array_equal(fa.mask, fb.mask)
        assert fa.instruments == fb.instruments


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
        for truth in frame.instruments:
            own = frame.instance == truth.index + 1
            assert np.any(own & (frame.mask == CLASS_SHAFT)), "every tool shows some shaft"
            assert np.any(own & (frame.mask == CLASS_MANIPULATOR)), "every tool shows its jaws"
            # entry point lies on the image border
            ex, ey = truth.entry
            assert min(ex, ey, w - 1 - ex, h - 1 - ey) < 1e-6
            assert abs(np.hypot(*truth.axis) - 1.0) < 1e-9
            tx, ty = (round(v) for v in truth.tip)
            if truth.tip_visible:
                visible_tips += 1
                assert frame.mask[ty, tx] == CLASS_MANIPULATOR
                assert frame.instance[ty, tx] == truth.index + 1
        # instrument pixels look like instruments: shaft brighter/greyer than tissue, jaws darker
        shaft = frame.rgb[frame.mask == CLASS_SHAFT].astype(float)
        tissue = frame.rgb[frame.mask == 0].astype(float)
        jaws = frame.rgb[frame.mask == CLASS_MANIPULATOR].astype(float)
        assert np.mean(shaft[:, 0] - shaft[:, 2]) < np.mean(tissue[:, 0] - tissue[:, 2])
        assert jaws.mean() < shaft.mean()
    assert visible_tips >= cfg.num_instruments * 10 * 0.8


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
    ],
)
def test_invalid_config_is_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        SceneConfig(**bad)


def test_rule_palette_satisfies_the_colour_rule_model(rule_mask) -> None:
    """The graph tests rely on this: rule_onnx's colour rule recovers the drawn classes."""
    scene = EndoscopeScene(SceneConfig(width=320, height=256, num_instruments=3, seed=2, palette="rule"))
    for index in (0, 25, 50):
        frame = scene.render(index)
        predicted = rule_mask(frame.rgb)
        for cls in (CLASS_SHAFT, CLASS_MANIPULATOR):
            truth, pred = frame.mask == cls, predicted == cls
            dice = 2 * np.sum(truth & pred) / (truth.sum() + pred.sum())
            assert dice > 0.85, (index, cls, dice)
