"""cct-export: metadata round trip, graph checks, dynamic + uncertainty exports against PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from cct_surgical_seg.deploy.backends import create_backend
from cct_surgical_seg.deploy.errors import ExportError
from cct_surgical_seg.deploy.export import (
    DEFAULT_EXPORTER,
    OPSETS,
    check_graph,
    check_tensorrt_ops,
    export_onnx,
    main,
    model_precision,
)
from cct_surgical_seg.deploy.model_info import ModelInfo, read_onnx_info
from cct_surgical_seg.deploy.pipeline import SegmentationPipeline


def test_metadata_round_trips_into_model_info(tiny_checkpoint, tiny_onnx) -> None:
    from cct_surgical_seg.model.checkpoint import load_checkpoint

    info = read_onnx_info(tiny_onnx)
    assert info == ModelInfo(("background", "shaft", "manipulator"), (64, 80), (0.485, 0.456, 0.406),
                             (0.229, 0.224, 0.225), False)  # fmt: skip
    model = onnx.load(str(tiny_onnx))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["cct.format"] == "cct-onnx-v1"
    assert json.loads(props["cct.model_config"]) == load_checkpoint(tiny_checkpoint)["model_config"]
    assert ModelInfo.from_metadata(info.to_metadata(), ["probs"]) == info
    assert [i.name for i in model.graph.input] == ["image"] and [o.name for o in model.graph.output] == [
        "probs"
    ]
    opsets = {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")}
    assert opsets == {OPSETS[DEFAULT_EXPORTER]}
    check_graph(model)  # the exported graph passes its own checks


def test_tensorrt_allow_list_names_the_offending_op(rule_onnx) -> None:
    model = onnx.load(str(rule_onnx))
    check_tensorrt_ops(model)
    model.graph.node.append(helper.make_node("NonMaxSuppression", ["probs"], ["nms"], name="my_nms"))
    model.graph.node.append(helper.make_node("Foo", ["probs"], ["foo"], domain="com.example"))
    with pytest.raises(ExportError, match=r"NonMaxSuppression \(node my_nms\)") as err:
        check_tensorrt_ops(model)
    assert "com.example::Foo" in str(err.value)


def test_checker_failure_is_an_export_error() -> None:
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.INT64, [1])])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(ExportError, match=r"onnx\.checker"):
        check_graph(model)


def test_dynamic_uncertainty_export_matches_torch(tiny_checkpoint, tmp_path, capsys) -> None:
    out = tmp_path / "dyn_unc.onnx"
    assert main([str(tiny_checkpoint), "-o", str(out), "--dynamic", "--uncertainty", "--max-heads", "2"]) == 0
    assert "disagreement yes" in capsys.readouterr().out
    info = read_onnx_info(out)
    assert info.input_size is None and info.has_disagreement
    dims = onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim
    assert all(d.dim_param for d in (dims[0], dims[2], dims[3])) and dims[1].dim_value == 3

    ort_pipe = SegmentationPipeline(create_backend("onnxruntime", out, num_threads=1))
    torch_pipe = SegmentationPipeline(create_backend("torch", tiny_checkpoint, uncertainty=True, max_heads=2))
    rng = np.random.default_rng(3)
    for size in ((67, 93), (64, 96)):  # padded to 96x96, and already a multiple of 32
        rgb = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        a, b = ort_pipe(rgb), torch_pipe(rgb)
        assert a.mask.shape == size
        assert (a.mask == b.mask).mean() >= 0.999
        assert a.disagreement is not None and 0.0 <= a.disagreement <= 1.0
        assert a.disagreement == pytest.approx(b.disagreement, abs=1e-4)


def test_uncertainty_export_needs_aux_decoders(tmp_path) -> None:
    from cct_surgical_seg.model.checkpoint import make_payload, save_checkpoint
    from cct_surgical_seg.model.config import ModelConfig
    from cct_surgical_seg.model.deeplab import build_segmenter

    cfg = ModelConfig(pretrained=False, aspp_channels=8, decoder_channels=8, low_level_channels=8)
    save_checkpoint(tmp_path / "plain.pt", make_payload(build_segmenter(cfg), cfg))
    assert main([str(tmp_path / "plain.pt"), "-o", str(tmp_path / "x.onnx"), "--uncertainty"]) == 2
    assert not (tmp_path / "x.onnx").exists()
    assert main([str(tmp_path / "missing.pt"), "-o", str(tmp_path / "x.onnx")]) == 2


def test_dynamo_exporter_gives_the_same_probabilities(tiny_checkpoint, tiny_onnx, tmp_path) -> None:
    """The non-default exporter stays usable: same outputs as the default export, opset 18."""
    import numpy as np

    from cct_surgical_seg.deploy.backends import create_backend

    out = tmp_path / "dynamo.onnx"
    export_onnx(tiny_checkpoint, out, input_size=(64, 80), exporter="dynamo")
    model = onnx.load(str(out))
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {OPSETS["dynamo"]}
    batch = np.random.default_rng(0).uniform(0, 255, (2, 3, 64, 80)).astype(np.float32)
    ref = create_backend("onnxruntime", tiny_onnx).infer(batch).probs
    got = create_backend("onnxruntime", out).infer(batch).probs
    np.testing.assert_allclose(got, ref, atol=1e-4)
    with pytest.raises(ExportError, match="unknown exporter"):
        export_onnx(tiny_checkpoint, tmp_path / "x.onnx", exporter="tensorflow")


def _io_types(model: onnx.ModelProto) -> list[int]:
    return [v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)]


def test_fp16_export_keeps_the_float32_interface_and_the_masks(
    tiny_checkpoint, tiny_onnx, tmp_path, capsys
) -> None:
    out = tmp_path / "fp16.onnx"
    assert main([str(tiny_checkpoint), "-o", str(out), "--size", "64", "80", "--precision", "fp16"]) == 0
    assert "precision fp16" in capsys.readouterr().out
    model = onnx.load(str(out))
    assert _io_types(model) == [TensorProto.FLOAT, TensorProto.FLOAT]
    assert model_precision(model) == "fp16" and model_precision(onnx.load(str(tiny_onnx))) == "fp32"
    weights = [t for t in model.graph.initializer if t.dims and len(t.dims) == 4]
    assert weights and all(t.data_type == TensorProto.FLOAT16 for t in weights)
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    assert softmax.output[0] == "probs"  # softmax in float32, no cast after it
    check_graph(model)
    assert read_onnx_info(out) == read_onnx_info(tiny_onnx)
    batch = np.random.default_rng(1).uniform(0, 255, (2, 3, 64, 80)).astype(np.float32)
    ref = create_backend("onnxruntime", tiny_onnx).infer(batch).probs
    got = create_backend("onnxruntime", out).infer(batch).probs
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=0.02)
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.99


def test_demo_model_converts_to_fp16_with_its_masks(tmp_path, capsys) -> None:
    from cct_surgical_seg.sim.scene import EndoscopeScene, SceneConfig

    demo = Path(__file__).resolve().parents[2] / "models" / "cct_demo.onnx"
    out = tmp_path / "demo_fp16.onnx"
    assert main([str(demo), "-o", str(out), "--precision", "fp16"]) == 0
    assert "precision fp16" in capsys.readouterr().out
    fp32, fp16 = create_backend("onnxruntime", demo), create_backend("onnxruntime", out)
    scene = EndoscopeScene(SceneConfig(width=640, height=512, seed=3))
    for index in range(3):
        rgb = scene.render(index * 9).rgb
        a, b = SegmentationPipeline(fp32, track=False)(rgb), SegmentationPipeline(fp16, track=False)(rgb)
        assert (a.mask == b.mask).mean() >= 0.998  # ONNX Runtime's CPU emulation of FP16; TensorRT: gpu_check


def test_onnx_input_takes_only_the_fp16_conversion(tiny_onnx, tmp_path, capsys) -> None:
    out = tmp_path / "x.onnx"
    assert main([str(tiny_onnx), "-o", str(out), "--size", "64", "80", "--precision", "fp16"]) == 2
    assert "only --precision fp16 applies to it (not --size)" in capsys.readouterr().err
    assert main([str(tiny_onnx), "-o", str(out)]) == 2
    assert not out.exists()
    assert main([str(tiny_onnx), "-o", str(out), "--precision", "fp16"]) == 0
    assert main([str(out), "-o", str(tmp_path / "y.onnx"), "--precision", "fp16"]) == 2
    assert "only an FP32 model converts to FP16, this one is fp16" in capsys.readouterr().err
    with pytest.raises(ExportError, match="precision must be fp32 or fp16"):
        export_onnx(tiny_onnx, tmp_path / "z.onnx", precision="int8")
