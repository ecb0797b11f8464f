"""Pipeline pre/post-processing through the real ONNX Runtime path with the colour-rule model."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cct_surgical_seg.deploy.backends import create_backend
from cct_surgical_seg.deploy.errors import ImageFormatError
from cct_surgical_seg.deploy.overlay import class_palette, colorize_mask, draw_overlay
from cct_surgical_seg.deploy.pipeline import (
    SegmentationPipeline,
    frame_confidence,
    network_size,
    postprocess,
    to_rgb,
)
from cct_surgical_seg.deploy.poses import PoseParams

GREY, RED = (220, 220, 215), (230, 30, 20)


def scene(h: int, w: int) -> np.ndarray:
    """Dark tissue with a grey shaft from the left border ending in red jaws."""
    rgb = np.full((h, w, 3), (90, 40, 35), np.uint8)
    cv2.rectangle(rgb, (0, h // 2 - 4), (w // 2, h // 2 + 4), GREY, -1)
    cv2.rectangle(rgb, (w // 2, h // 2 - 6), (w // 2 + 10, h // 2 + 6), RED, -1)
    return rgb


@pytest.fixture(scope="module")
def rule_pipeline(rule_onnx):
    return SegmentationPipeline(
        create_backend("onnxruntime", rule_onnx, num_threads=1), PoseParams(min_area_px=20)
    )


@pytest.mark.parametrize("size", [(67, 93), (64, 64), (120, 161)])
def test_rule_model_mask_is_exact_at_input_size(rule_pipeline, rule_mask, size) -> None:
    rgb = scene(*size)
    result = rule_pipeline(rgb)
    assert result.mask.shape == size and result.mask.dtype == np.uint8
    assert result.confidence.shape == size and result.confidence.dtype == np.float32
    np.testing.assert_array_equal(result.mask, rule_mask(rgb))
    assert set(np.unique(result.mask)) == {0, 1, 2}
    assert float(result.confidence.min()) > 0.99
    assert set(result.timings_ms) == {"pre", "net", "post", "poses", "total"}
    assert result.disagreement is None


def test_pipeline_finds_the_instrument_and_its_tip(rule_pipeline) -> None:
    rule_pipeline.reset_tracking()
    result = rule_pipeline(scene(120, 160))
    (inst,) = result.instruments
    assert inst.class_id == 1  # shaft pixels outnumber jaw pixels
    assert inst.tip[0] == pytest.approx(90, abs=2) and inst.entry[0] == pytest.approx(0, abs=2)
    assert inst.track_id >= 1 and inst.score > 0.99
    assert result.frame_confidence == frame_confidence(result.mask, result.confidence) > 0.9


def test_grayscale_and_rgba_inputs(rule_pipeline, rule_mask) -> None:
    gray = np.zeros((50, 70), np.uint8)
    gray[10:30, 5:60] = 230
    expected = rule_mask(cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB))
    assert (expected == 1).sum() == 20 * 55
    for image in (gray, gray[..., None]):
        np.testing.assert_array_equal(rule_pipeline(image).mask, expected)
    rgb = scene(67, 93)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    np.testing.assert_array_equal(rule_pipeline(rgba).mask, rule_mask(rgb))


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((10, 10, 2), np.uint8), "shape"),
        (np.zeros((2, 10, 10, 3), np.uint8), "shape"),
        ([[0, 1]], "numpy"),
    ],
)
def test_bad_images_raise_clear_errors(rule_pipeline, image, message) -> None:
    with pytest.raises(ImageFormatError, match=message):
        rule_pipeline(image)
    with pytest.raises(ImageFormatError, match=message):
        to_rgb(image)


def test_disagreement_output_reaches_the_frame_result(rule_onnx_uncertain) -> None:
    backend = create_backend("onnxruntime", rule_onnx_uncertain)
    assert backend.info.has_disagreement
    rgb = np.zeros((32, 32, 3), np.uint8)  # a multiple of 32: no padding, the fraction is exact
    rgb[:, :10] = RED
    result = SegmentationPipeline(backend)(rgb)
    assert result.disagreement == pytest.approx(10 / 32, abs=1e-6)


def test_network_size_and_postprocess_resize() -> None:
    assert network_size((67, 93), None) == (96, 96)
    assert network_size((64, 640), None) == (64, 640)
    assert network_size((67, 93), (256, 320)) == (256, 320)
    probs = np.zeros((3, 4, 4), np.float32)
    probs[0] = 1.0
    probs[2, :, 2:] = 2.0  # right half class 2
    mask, conf = postprocess(probs, (8, 10), pad=False)
    assert mask.shape == (8, 10) and (mask[:, :4] == 0).all() and (mask[:, 6:] == 2).all()
    assert conf.max() == pytest.approx(2.0)


def test_overlay_draws_classes_and_instruments(rule_pipeline) -> None:
    rgb = scene(120, 160)
    result = rule_pipeline(rgb)
    out = draw_overlay(
        rgb, result.mask, result.instruments, class_names=("background", "shaft", "manipulator")
    )
    assert out.shape == rgb.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[5:20, 120:], rgb[5:20, 120:])  # untouched background
    assert not np.array_equal(out[result.mask == 1], rgb[result.mask == 1])
    assert colorize_mask(np.array([[0, 1, 2]], np.uint8), 3).tolist() == [class_palette(3).tolist()]
    assert len({tuple(c) for c in class_palette(8)}) == 8


def test_frame_confidence_is_low_when_instrument_like_pixels_are_left_as_background() -> None:
    mask = np.zeros((40, 60), np.uint8)
    confidence = np.full((40, 60), 0.99, np.float32)
    assert frame_confidence(mask, confidence) == 1.0  # nothing instrument-like: a sure empty frame
    mask[10:20, 0:30] = 1
    assert frame_confidence(mask, confidence) == 1.0  # found it all, background sure
    confidence[10:20, 30:60] = 0.6  # the rest of the shaft: background, but doubtful
    assert frame_confidence(mask, confidence) == pytest.approx(0.5)
    assert frame_confidence(mask[:, :30], confidence[:, :30]) == 1.0  # the same instrument, small
