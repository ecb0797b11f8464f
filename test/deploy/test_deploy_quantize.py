"""cct-quantize on the shipped demo model with simulated frames, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from cct_surgical_seg.deploy.backends import create_backend
from cct_surgical_seg.deploy.errors import ExportError, ModelLoadError
from cct_surgical_seg.deploy.export import KEY_PRECISION, check_tensorrt_quantization, convert_onnx_fp16
from cct_surgical_seg.deploy.pipeline import SegmentationPipeline
from cct_surgical_seg.deploy.quantize import KEY_QUANTIZATION, calibration_frames, main, quantize_int8
from cct_surgical_seg.sim.scene import EndoscopeScene, SceneConfig

DEMO_MODEL = Path(__file__).resolve().parents[2] / "models" / "cct_demo.onnx"


def sim_frames(count: int, seed: int) -> list[np.ndarray]:
    scene = EndoscopeScene(SceneConfig(width=320, height=256, seed=seed))
    return [scene.render(i * 5).rgb for i in range(count)]


@pytest.fixture(scope="module")
def demo_int8(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("int8") / "demo_int8.onnx"
    report = quantize_int8(DEMO_MODEL, out, sim_frames(12, seed=1))
    return out, report


def zero_points(model: onnx.ModelProto) -> list[np.ndarray]:
    inits = {t.name: t for t in model.graph.initializer}
    return [
        onnx.numpy_helper.to_array(inits[n.input[2]])
        for n in model.graph.node
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2
    ]


def test_demo_model_quantizes_to_int8_and_keeps_its_masks(demo_int8) -> None:
    path, report = demo_int8
    assert report.calibration_frames == 9 and report.check_frames == 3
    assert 0.98 <= report.pixel_agreement <= 1.0 and report.worst_frame_agreement <= report.pixel_agreement

    model = onnx.load(str(path))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) > 20  # every convolution's weights
    # symmetric, as TensorRT takes it: int8 zero points, all 0; no int32 (bias) dequantization
    points = zero_points(model)
    assert len(points) > 100 and all(z.dtype == np.int8 and not z.any() for z in points)
    assert not any(t.data_type == onnx.TensorProto.INT32 for t in model.graph.initializer)
    check_tensorrt_quantization(model)
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    assert softmax.output[0] == "probs"  # probabilities leave the graph unquantized
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta[KEY_QUANTIZATION])["pixel_agreement"] == pytest.approx(report.pixel_agreement)
    assert json.loads(meta[KEY_QUANTIZATION])["target"] == "any" and meta[KEY_PRECISION] == "int8"

    fp32 = create_backend("onnxruntime", str(DEMO_MODEL))
    int8 = create_backend("onnxruntime", str(path))
    assert int8.info == fp32.info  # class names, input size, normalisation carried over
    frame = sim_frames(1, seed=7)[0]  # a scene neither calibration nor the check saw
    a, b = SegmentationPipeline(fp32)(frame), SegmentationPipeline(int8)(frame)
    assert np.mean(a.mask == b.mask) >= 0.97
    assert len(a.instruments) == len(b.instruments)


def test_already_quantized_model_is_refused(demo_int8, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="already quantized"):
        quantize_int8(demo_int8[0], tmp_path / "twice.onnx", sim_frames(5, seed=2))


def test_cpu_target_is_uint8_and_tensorrt_check_names_it(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "cpu.onnx"
    report = quantize_int8(tiny_onnx, out, sim_frames(5, seed=6), min_agreement=0.0, target="cpu")
    assert report.target == "cpu" and "uint8" in report.scheme
    model = onnx.load(str(out))
    assert any(z.dtype == np.uint8 for z in zero_points(model))
    with pytest.raises(ExportError, match="TensorRT refuses this quantization"):
        check_tensorrt_quantization(model)


def test_fp16_model_is_refused(tiny_onnx: Path, tmp_path: Path) -> None:
    fp16 = tmp_path / "fp16.onnx"
    convert_onnx_fp16(tiny_onnx, fp16)
    with pytest.raises(ExportError, match="the model is fp16; quantize the FP32 export"):
        quantize_int8(fp16, tmp_path / "x.onnx", sim_frames(5, seed=2))
    assert not (tmp_path / "x.onnx").exists()


def test_agreement_below_the_bar_writes_nothing(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match="agrees with FP32 on only"):
        quantize_int8(tiny_onnx, out, sim_frames(5, seed=3), min_agreement=1.01)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_too_few_frames_and_non_models_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="at least 5 frames"):
        quantize_int8(DEMO_MODEL, tmp_path / "x.onnx", sim_frames(3, seed=4))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not an onnx model")
    with pytest.raises(ModelLoadError, match="cannot load"):
        quantize_int8(garbage, tmp_path / "y.onnx", sim_frames(5, seed=4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.onnx"]


def test_cli_calibrates_on_an_image_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for i, rgb in enumerate(sim_frames(10, seed=5)):
        cv2.imwrite(str(images / f"{i:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert len(calibration_frames(images, 6)) == 6  # spread over the folder
    out = tmp_path / "int8.onnx"
    assert main([str(DEMO_MODEL), "-o", str(out), "--calibration", str(images), "--frames", "8"]) == 0
    assert "6 calibration frames" in capsys.readouterr().out and out.is_file()

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(DEMO_MODEL), "-o", str(tmp_path / "z.onnx"), "--calibration", str(empty)]) == 2
    assert "no images" in capsys.readouterr().err


def test_uncertainty_export_keeps_its_disagreement_at_int8(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """An INT8 copy of an uncertainty export still gives the per-frame disagreement."""
    from cct_surgical_seg.deploy.export import export_onnx

    fp32 = tmp_path / "unc.onnx"
    export_onnx(tiny_checkpoint, fp32, input_size=(64, 96), uncertainty=True)
    int8 = tmp_path / "unc_int8.onnx"
    quantize_int8(fp32, int8, sim_frames(5, seed=7), min_agreement=0.0)
    backend = create_backend("onnxruntime", int8, num_threads=1)
    assert backend.info.has_disagreement
    reference = create_backend("onnxruntime", fp32, num_threads=1)
    batch = np.stack([preprocess_sim(rgb) for rgb in sim_frames(2, seed=8)])
    out, want = backend.infer(batch), reference.infer(batch)
    assert out.disagreement.shape == (2,) and np.all((out.disagreement >= 0) & (out.disagreement <= 1))
    assert out.disagreement == pytest.approx(want.disagreement, abs=0.05)


def preprocess_sim(rgb: np.ndarray) -> np.ndarray:
    """A simulated frame as one network input row at 64x96 (0..255 float32 3,H,W)."""
    small = cv2.resize(rgb, (96, 64), interpolation=cv2.INTER_AREA)
    return small.transpose(2, 0, 1).astype(np.float32)
