"""Checkpoint round trip and the CheckpointError cases."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cct_surgical_seg.model import (
    CHECKPOINT_FORMAT,
    AuxConfig,
    CCTModel,
    CheckpointError,
    ModelConfig,
    build_segmenter,
    load_checkpoint,
    load_segmenter,
    make_payload,
    save_checkpoint,
)

CFG = ModelConfig(num_classes=2, class_names=("background", "tool"), pretrained=False)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = build_segmenter(CFG).eval()
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, make_payload(model, CFG, train_state={"step": 7}, metrics={"miou": 0.5}))
    return path, model


def test_round_trip(saved) -> None:
    path, model = saved
    data = load_checkpoint(path)
    assert data["format"] == CHECKPOINT_FORMAT
    assert data["train_state"] == {"step": 7} and data["metrics"] == {"miou": 0.5}
    assert data["aux_config"] is None and data["aux_decoders"] is None
    loaded, cfg = load_segmenter(path)
    assert cfg == CFG and not loaded.training
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_round_trip_with_aux(tmp_path) -> None:
    aux_cfg = AuxConfig(
        vat=1, dropout=1, cutout=0, context_masking=0, object_masking=0, feature_drop=0, feature_noise=1
    )
    cct = CCTModel(CFG, aux_cfg)
    path = tmp_path / "cct.pt"
    save_checkpoint(
        path, make_payload(cct.segmenter, CFG, aux_config=aux_cfg.to_dict(), aux_decoders=cct.aux_decoders)
    )
    data = load_checkpoint(path)
    again = CCTModel(CFG, AuxConfig.from_dict(data["aux_config"]))
    again.aux_decoders.load_state_dict(data["aux_decoders"])
    torch.testing.assert_close(again.aux_decoders.state_dict(), cct.aux_decoders.state_dict(), rtol=0, atol=0)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found") as info:
        load_checkpoint(tmp_path / "nope.pt")
    assert info.value.path.endswith("nope.pt")


def test_empty_file(tmp_path) -> None:
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty.pt")


def test_truncated_file(saved, tmp_path) -> None:
    path, _ = saved
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt"):
        load_checkpoint(tmp_path / "cut.pt")


def test_garbage_file(tmp_path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_foreign_torch_files(tmp_path) -> None:
    torch.save(build_segmenter(CFG).state_dict(), tmp_path / "bare_state.pt")
    with pytest.raises(CheckpointError, match="no 'format' key"):
        load_checkpoint(tmp_path / "bare_state.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="top level is list"):
        load_checkpoint(tmp_path / "list.pt")
    torch.save({"format": "someone-else/v9", "model_config": {}, "segmenter": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="unsupported format"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save({"format": CHECKPOINT_FORMAT, "model_config": CFG.to_dict()}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match=r"missing keys.*segmenter"):
        load_checkpoint(tmp_path / "partial.pt")


def test_state_dict_not_matching_config(saved, tmp_path) -> None:
    path, _ = saved
    data = load_checkpoint(path)
    # Claim three classes while the weights have two: the classifier shapes disagree.
    data["model_config"] = dataclasses.replace(
        CFG, num_classes=3, class_names=("background", "shaft", "manipulator")
    ).to_dict()
    save_checkpoint(tmp_path / "wrong.pt", data)
    with pytest.raises(CheckpointError, match=r"shape mismatches.*decoder\.classifier\.weight"):
        load_segmenter(tmp_path / "wrong.pt")
    data = load_checkpoint(path)
    del data["segmenter"]["aspp.pooling.conv.bias"]
    save_checkpoint(tmp_path / "missing.pt", data)
    with pytest.raises(CheckpointError, match=r"missing 1 keys.*aspp\.pooling\.conv\.bias"):
        load_segmenter(tmp_path / "missing.pt")


def test_invalid_model_config_in_checkpoint(saved, tmp_path) -> None:
    path, _ = saved
    data = load_checkpoint(path)
    data["model_config"]["output_stride"] = 4
    save_checkpoint(tmp_path / "badcfg.pt", data)
    with pytest.raises(CheckpointError, match=r"invalid model_config.*output_stride"):
        load_segmenter(tmp_path / "badcfg.pt")


def test_atomic_save_leaves_no_temp_files(tmp_path) -> None:
    save_checkpoint(tmp_path / "a.pt", make_payload(build_segmenter(CFG), CFG))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]
    with pytest.raises(ValueError, match="format"):
        save_checkpoint(tmp_path / "b.pt", {"format": "x", "model_config": {}, "segmenter": {}})
