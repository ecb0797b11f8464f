"""CCTModel: aux decoder counts, output shapes, gradient paths, the uncertainty module."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cct_surgical_seg.model import (
    AuxConfig,
    CCTModel,
    ModelConfig,
    Segmenter,
    build_uncertainty_model,
)
from cct_surgical_seg.model.cct import shared_features
from cct_surgical_seg.model.perturbations import FeatureDrop

CFG = ModelConfig(pretrained=False)


def test_aux_config_defaults_follow_reference() -> None:
    aux = AuxConfig()
    assert aux.total == 30
    assert aux.kinds().count("vat") == 2 and aux.kinds().count("feature_noise") == 6
    assert AuxConfig.from_dict(aux.to_dict()) == aux
    with pytest.raises(ValueError, match="vat_epz"):
        AuxConfig.from_dict({"vat_epz": 1.0})
    with pytest.raises(ValueError, match="cutout"):
        AuxConfig(cutout=-1)


def test_forward_cct_shapes_and_gradient_paths() -> None:
    torch.manual_seed(0)
    model = CCTModel(CFG, AuxConfig()).train()
    assert len(model.aux_decoders) == 30
    assert isinstance(model.segmenter, Segmenter)
    # Aux decoders are not part of the deployable segmenter.
    assert not any(k.startswith("aux") for k in model.segmenter.state_dict())
    x = torch.randn(2, 3, 64, 80)
    out = model.forward_cct(x)
    assert out.main.shape == (2, 3, 64, 80)
    assert len(out.aux) == 30 and all(a.shape == out.main_native.shape for a in out.aux)
    assert out.main.shape[-2:] == x.shape[-2:] and out.main_native.shape[-1] == -(-x.shape[-1] // 4)
    # A loss on the aux outputs alone trains the encoder, not the main decoder.
    sum(a.square().mean() for a in out.aux).backward()
    assert model.segmenter.encoder.stem_conv.weight.grad.abs().sum() > 0
    assert model.segmenter.decoder.classifier.weight.grad is None
    assert model.forward_cct(x, compute_aux=False).aux == []
    assert model(x).shape == (2, 3, 64, 80)


def test_uncertainty_model_outputs_and_exports(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    aux_cfg = AuxConfig(
        vat=0, dropout=1, cutout=0, context_masking=0, object_masking=0, feature_drop=1, feature_noise=1
    )
    model = CCTModel(CFG, aux_cfg).eval()
    unc = build_uncertainty_model(model.segmenter, model.aux_decoders, max_heads=2).eval()
    assert len(unc.heads) == 2
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        probs, disagreement = unc(x)
    assert probs.shape == (2, 3, 64, 80)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 64, 80))
    assert disagreement.shape == (2,) and torch.all((disagreement >= 0) & (disagreement <= 1))
    assert torch.all(disagreement > 0)  # random heads disagree with the main decoder

    path = tmp_path / "unc.onnx"
    torch.onnx.export(
        unc,
        (x,),
        str(path),
        opset_version=17,
        dynamo=False,
        input_names=["image"],
        output_names=["probs", "disagreement"],
        dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}},
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_probs, onnx_dis = session.run(None, {"image": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(onnx_probs), probs, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(torch.from_numpy(onnx_dis), disagreement, rtol=1e-3, atol=1e-5)


def _endoscope_batch(n: int = 2) -> torch.Tensor:
    """Normalised simulated endoscope frames (tissue with instruments), 128x160."""
    import numpy as np

    from cct_surgical_seg.sim.scene import EndoscopeScene, SceneConfig
    from cct_surgical_seg.train.data import normalize

    scene = EndoscopeScene(SceneConfig(width=160, height=128, seed=3))
    frames = [scene.render(10 * i).rgb for i in range(n)]
    images = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
    return normalize(images, CFG.mean, CFG.std)


def test_feature_drop_removes_the_most_active_positions_of_the_real_encoder_output() -> None:
    """The perturbed tensor is post-ReLU, so F-Drop's channel-mean attention ranks activation strength."""
    torch.manual_seed(0)
    model = CCTModel(ModelConfig(), AuxConfig()).eval()  # ImageNet encoder
    with torch.no_grad():
        x = shared_features(model.segmenter, _endoscope_batch(), model.aux_cfg.placement).x
    assert torch.all(x >= 0)
    out = FeatureDrop(0.8, 0.8)(x)
    strength = x.norm(dim=1)  # N,h,w activation strength per position
    dropped = (out == 0).all(dim=1) & (x != 0).any(dim=1)
    for i in range(x.shape[0]):
        assert dropped[i].any()
        kept = strength[i][~dropped[i] & (strength[i] > 0)]
        assert strength[i][dropped[i]].mean() > torch.quantile(kept, 0.9)


def _fit_error(placement: str, head: str, steps: int = 300) -> float:
    """MSE between the softmax of one fresh aux head, trained alone, and the main decoder's."""
    torch.manual_seed(0)
    aux = AuxConfig(
        vat=0,
        dropout=1,
        cutout=0,
        context_masking=0,
        object_masking=0,
        feature_drop=0,
        feature_noise=0,
        placement=placement,
        head=head,
        hidden_channels=32,
    )
    model = CCTModel(CFG, aux).train()
    with torch.no_grad():
        model.segmenter.decoder.classifier.weight.mul_(8.0)  # a confident, detailed main output
        shared = shared_features(model.segmenter, _endoscope_batch(4), placement)
    target = torch.softmax(shared.native, dim=1)
    module = model.aux_decoders[0].head
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = F.mse_loss(torch.softmax(module(shared.x, shared.low, target.shape[-2:]), dim=1), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def test_aux_decoders_fit_the_main_output_when_nothing_is_perturbed() -> None:
    """On the ASPP output both aux heads can approach the main prediction (the skip head best);
    a 1x1 head on the backbone output stalls far from it (consistency would be part distillation)."""
    backbone = _fit_error("backbone", "skip")
    upsample = _fit_error("aspp", "upsample")
    skip = _fit_error("aspp", "skip")
    assert skip < upsample < backbone / 2.5 and skip < backbone / 5, (skip, upsample, backbone)
