"""Golden output of the shipped demo model: a fixed simulated frame -> a stored mask.

Catches a silent change to pre- or post-processing (resize mode, channel order, normalisation,
argmax, the probability resize) that every other test would miss because they compare the
pipeline with itself. ONNX Runtime may differ in the last float bits between versions and
machines, which can flip a few pixels on class boundaries, so the check is agreement >= 99.9 %
with the stored mask and per-class pixel counts within 0.1 % of the frame - far below what any
processing change costs (a BGR/RGB swap or nearest-neighbour resize moves several percent).

The input (``test/data/golden_input.png``, 320x256 so the model's 288x224 input is a resize)
and the mask (``golden_demo_mask.png``) are regenerated, after a deliberate change, with
``python test/deploy/test_deploy_golden.py``; the diff of the PNGs then goes to review.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cct_surgical_seg.deploy.pipeline import PipelineSettings, build_pipeline
from cct_surgical_seg.resources import demo_model

DATA = Path(__file__).resolve().parents[1] / "data"
INPUT = DATA / "golden_input.png"
MASK = DATA / "golden_demo_mask.png"


def _segment() -> tuple[np.ndarray, list]:
    rgb = cv2.cvtColor(cv2.imread(str(INPUT), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    pipeline = build_pipeline(PipelineSettings(demo_model(), "onnxruntime", {"num_threads": 1}, track=False))
    result = pipeline(rgb)
    return result.mask, result.instruments


def test_demo_model_gives_the_stored_mask() -> None:
    if not demo_model().is_file():
        pytest.skip("models/cct_demo.onnx is not in this checkout")
    mask, instruments = _segment()
    golden = cv2.imread(str(MASK), cv2.IMREAD_UNCHANGED)
    assert mask.shape == golden.shape and mask.dtype == np.uint8
    agreement = float((mask == golden).mean())
    assert agreement >= 0.999, f"{agreement:.4%} of pixels agree with the stored mask"
    counts = np.bincount(mask.ravel(), minlength=3)
    golden_counts = np.bincount(golden.ravel(), minlength=3)
    assert golden_counts[1:].min() > 500, "the stored frame must show both instrument classes"
    np.testing.assert_allclose(counts, golden_counts, atol=0.001 * mask.size)
    assert len(instruments) >= 1


def _regenerate() -> None:
    from cct_surgical_seg.sim.scene import EndoscopeScene, SceneConfig

    frame = EndoscopeScene(SceneConfig(width=320, height=256, num_instruments=2, seed=5)).render(40)
    cv2.imwrite(str(INPUT), frame.bgr, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    mask, _ = _segment()
    cv2.imwrite(str(MASK), mask, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {INPUT} and {MASK}: class counts {np.bincount(mask.ravel(), minlength=3).tolist()}")


if __name__ == "__main__":
    _regenerate()
    sys.exit(0)
