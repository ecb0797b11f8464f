"""Segmenter: output at the input size for odd sizes, and a faithful ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cct_surgical_seg.model import ModelConfig, build_segmenter


@pytest.mark.parametrize("output_stride", [8, 16])
def test_logits_at_input_size_for_odd_sizes(output_stride: int) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(pretrained=False, output_stride=output_stride)
    model = build_segmenter(cfg).eval()
    x = torch.randn(2, 3, 67, 93)
    with torch.no_grad():
        logits = model(x)
        feats = model.encode(x)
        again = model.decode(feats, (67, 93))
    assert logits.shape == (2, 3, 67, 93)
    assert torch.allclose(logits, again)
    assert feats.high.shape[1] == model.high_channels == 320


def test_train_mode_backward_reaches_encoder() -> None:
    torch.manual_seed(0)
    model = build_segmenter(ModelConfig(pretrained=False))
    model.train()
    model(torch.randn(1, 3, 64, 80)).sum().backward()  # batch 1: image pooling has no BN
    assert model.encoder.stem_conv.weight.grad is not None


def test_onnx_export_matches_pytorch(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = build_segmenter(ModelConfig(pretrained=False, output_stride=16)).eval()
    path = tmp_path / "seg.onnx"
    # The TorchScript exporter (dynamo=False): torch 2.13's default dynamo exporter emits
    # opset 18 and fails converting down to 17.
    torch.onnx.export(
        model,
        (torch.randn(1, 3, 67, 93),),
        str(path),
        opset_version=17,
        dynamo=False,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}},
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 67, 93), (2, 3, 64, 80)]:
        x = torch.randn(*shape)
        (onnx_out,) = session.run(None, {"image": x.numpy()})
        with torch.no_grad():
            torch_out = model(x).numpy()
        assert onnx_out.shape == torch_out.shape
        np.testing.assert_allclose(onnx_out, torch_out, rtol=1e-3, atol=1e-4)

    import onnx

    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    # Every op is one TensorRT's ONNX parser supports; image pooling is a plain ReduceMean.
    tensorrt_ok = {
        "Add", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv", "Equal", "Expand",
        "Gather", "Identity", "Mul", "ReduceMean", "Relu", "Reshape", "Resize", "Shape", "Slice",
        "Unsqueeze", "Where",
    }  # fmt: skip
    assert ops <= tensorrt_ok, ops - tensorrt_ok
    assert "ReduceMean" in ops and "Resize" in ops
