"""Backends: PyTorch/ONNX Runtime agreement, model-file errors, auto selection, TensorRT plumbing.

The TensorRT backend itself runs on fake TensorRT modules in ``test_deploy_tensorrt.py``.
"""

from __future__ import annotations

import logging
import sys
import types

import numpy as np
import pytest

from cct_surgical_seg.deploy.backends import create_backend
from cct_surgical_seg.deploy.backends.tensorrt_backend import (
    engine_cache_key,
    engine_cache_path,
    file_sha256,
    import_tensorrt,
)
from cct_surgical_seg.deploy.errors import BackendUnavailableError, ImageFormatError, ModelLoadError
from cct_surgical_seg.deploy.pipeline import SegmentationPipeline


def frames(n: int = 3, size: tuple[int, int] = (67, 93)) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    out = []
    for _ in range(n):
        base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)  # smooth-ish content, not pure noise
        import cv2

        out.append(cv2.resize(base, (size[1], size[0]), interpolation=cv2.INTER_CUBIC))
    return out


def test_onnxruntime_matches_torch(tiny_checkpoint, tiny_onnx) -> None:
    ort_backend = create_backend("onnxruntime", tiny_onnx, num_threads=1)
    torch_backend = create_backend("torch", tiny_checkpoint, input_size=ort_backend.info.input_size)
    assert ort_backend.info == torch_backend.info
    ort_pipe, torch_pipe = SegmentationPipeline(ort_backend), SegmentationPipeline(torch_backend)
    for rgb in frames():
        a, b = ort_pipe(rgb), torch_pipe(rgb)
        assert a.mask.shape == rgb.shape[:2]
        assert (a.mask == b.mask).mean() >= 0.999
        np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-3)
    batch = np.stack([f[:64, :80].transpose(2, 0, 1) for f in frames(2)]).astype(np.float32)
    np.testing.assert_allclose(ort_backend.infer(batch).probs, torch_backend.infer(batch).probs, atol=1e-4)


def test_fixed_size_backend_rejects_wrong_batch(tiny_onnx) -> None:
    backend = create_backend("onnxruntime", tiny_onnx)
    with pytest.raises(ImageFormatError, match="64x80"):
        backend.infer(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(ImageFormatError, match="float32"):
        backend.infer(np.zeros((1, 3, 64, 80), np.uint8))


@pytest.mark.parametrize("kind", ["onnxruntime", "auto"])
def test_corrupt_onnx_files_give_model_load_error(tmp_path, tiny_onnx, kind) -> None:
    data = tiny_onnx.read_bytes()
    cases = {
        "empty.onnx": b"",
        "truncated.onnx": data[: len(data) // 3],
        "random.onnx": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ModelLoadError, match=name):
            create_backend(kind, tmp_path / name)
    with pytest.raises(ModelLoadError, match="not found"):
        create_backend(kind, tmp_path / "missing.onnx")


def test_checkpoint_given_to_onnxruntime_and_onnx_given_to_torch(tiny_checkpoint, tiny_onnx) -> None:
    with pytest.raises(ModelLoadError, match="PyTorch checkpoint"):
        create_backend("onnxruntime", tiny_checkpoint)
    with pytest.raises(ModelLoadError, match="checkpoint"):
        create_backend("torch", tiny_onnx)


def test_checkpoint_without_segmenter(tmp_path) -> None:
    import torch

    from cct_surgical_seg.model.checkpoint import CHECKPOINT_FORMAT
    from cct_surgical_seg.model.config import ModelConfig

    path = tmp_path / "no_segmenter.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model_config": ModelConfig().to_dict()}, path)
    with pytest.raises(ModelLoadError, match="segmenter"):
        create_backend("torch", path)
    with pytest.raises(ModelLoadError, match="segmenter"):
        create_backend("auto", path)


def test_foreign_onnx_without_metadata(tmp_path, rule_onnx) -> None:
    import onnx

    model = onnx.load(str(rule_onnx))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "foreign.onnx"))
    with pytest.raises(ModelLoadError, match=r"cct\.class_names"):
        create_backend("onnxruntime", tmp_path / "foreign.onnx")


def test_auto_picks_onnxruntime_cpu_and_says_why(rule_onnx, monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # deterministic: TensorRT import fails
    # launch_pytest installs a logger class that does not propagate, so listen on the logger itself
    logger = logging.getLogger("cct_surgical_seg.deploy.backends")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            backend = create_backend("auto", rule_onnx, num_threads=1)
    finally:
        logger.removeHandler(caplog.handler)
    assert backend.name == "onnxruntime" and backend.providers[0] == "CPUExecutionProvider"
    assert "picked onnxruntime CPU" in backend.selection_reason
    assert "TensorRT is not installed" in backend.selection_reason
    assert "CUDAExecutionProvider" in backend.selection_reason
    assert "picked onnxruntime CPU" in caplog.text


def test_auto_runs_checkpoints_on_torch(tiny_checkpoint) -> None:
    backend = create_backend("auto", tiny_checkpoint)
    assert backend.name == "torch" and "checkpoint" in backend.selection_reason


def test_onnxruntime_cuda_unavailable_is_clear(rule_onnx) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has the CUDA provider")
    with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider"):
        create_backend("onnxruntime", rule_onnx, device="cuda")
    with pytest.raises(BackendUnavailableError, match="install onnxruntime-gpu"):
        create_backend("onnxruntime-cuda", rule_onnx)


def test_cuda_provider_that_falls_back_to_cpu_is_reported_not_run(rule_onnx, monkeypatch) -> None:
    """onnxruntime-gpu without its CUDA libraries lists the provider, then runs on the CPU."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has the CUDA provider")
    listed = [*onnxruntime.get_available_providers(), "CUDAExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: listed)
    with pytest.raises(BackendUnavailableError, match="could not start CUDAExecutionProvider"):
        create_backend("onnxruntime-cuda", rule_onnx, device_index=0)
    backend = create_backend("auto", rule_onnx, num_threads=1)
    assert backend.providers[0] == "CPUExecutionProvider"
    assert "onnxruntime CUDA unavailable (ONNX Runtime could not start" in backend.selection_reason


def test_tensorrt_not_installed_error(rule_onnx, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed"):
        create_backend("tensorrt", rule_onnx)
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.6.1"))
    with pytest.raises(BackendUnavailableError, match=r"TensorRT 8\.6\.1 is not supported"):
        import_tensorrt()


def test_engine_cache_key_changes_with_every_component() -> None:
    base = dict(onnx_sha256="a" * 64, trt_version="10.3.0", gpu_name="NVIDIA H100", compute_capability="9.0",
                precision="fp16", profile=[[1, 3, 256, 320]] * 3,
                builder_options={"workspace_mb": 2048, "recipe": "strongly-typed-v1"})  # fmt: skip
    key = engine_cache_key(**base)
    assert key == engine_cache_key(**base)  # deterministic
    variants = {
        "onnx_sha256": "b" * 64,
        "trt_version": "10.4.0",
        "gpu_name": "NVIDIA RTX 4090",
        "compute_capability": "8.9",
        "precision": "int8",
        "profile": [[1, 3, 512, 640]] * 3,
        "builder_options": {"workspace_mb": 1024, "recipe": "strongly-typed-v1"},
    }
    keys = {name: engine_cache_key(**{**base, name: value}) for name, value in variants.items()}
    assert key not in keys.values() and len(set(keys.values())) == len(variants)
    with pytest.raises(ValueError, match="precision"):
        engine_cache_key(**{**base, "precision": "fp8"})


def test_engine_cache_path_and_sha(tmp_path, rule_onnx, monkeypatch) -> None:
    key = engine_cache_key(file_sha256(rule_onnx), "10.0.1", "gpu", "8.6", "fp16", [[1, 3, 64, 64]] * 3, {})
    assert len(file_sha256(rule_onnx)) == 64
    path = engine_cache_path(tmp_path, rule_onnx, key)
    assert path.parent == tmp_path and path.name == f"rule-{key[:16]}.engine"
    monkeypatch.setenv("CCT_ENGINE_CACHE", str(tmp_path / "env"))
    assert engine_cache_path(None, rule_onnx, key).parent == tmp_path / "env"
