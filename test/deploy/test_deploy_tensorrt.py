"""The TensorRT backend on fake TensorRT 10 and 11 modules and a fake CUDA layer (no GPU needed).

The fakes (``fakes/``) model the public Python API of both majors, including what 11 removed
(``BuilderFlag.FP16``/``INT8``, the INT8 calibrators), and "run" an engine with ONNX Runtime on
the ONNX file embedded in the plan, through the fake device memory the backend binds. So these
tests exercise the backend's real code paths: version check, strongly typed build, engine cache,
profile checks, device guard, dtypes from the engine, warm-up, and ``auto``'s fallback.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from fakes import fake_cuda, fake_tensorrt
from fakes.fake_tensorrt import make_tensorrt

from cct_surgical_seg.deploy.backends import create_backend
from cct_surgical_seg.deploy.backends import tensorrt_backend as trt_backend
from cct_surgical_seg.deploy.errors import BackendUnavailableError, ImageFormatError, ModelLoadError
from cct_surgical_seg.deploy.export import KEY_PRECISION, convert_onnx_fp16
from cct_surgical_seg.deploy.pipeline import SegmentationPipeline
from cct_surgical_seg.deploy.quantize import quantize_int8
from cct_surgical_seg.sim.scene import EndoscopeScene, SceneConfig

VERSIONS = ["10.0.1.6", "11.4.0.1"]  # the oldest supported 10.x and a current 11.x


@pytest.fixture(params=VERSIONS)
def trt(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """A fake ``tensorrt`` of each supported major in ``sys.modules``, and the fake CUDA layer."""
    module = make_tensorrt(request.param)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setattr(trt_backend, "open_cuda_device", fake_cuda.FakeCudaDevice)
    fake_cuda.reset()
    fake_tensorrt.STATS.update(builds=0, loads=0, executions=0)
    fake_tensorrt.LOAD_DEVICES.clear()
    fake_tensorrt.NETWORKS.clear()
    fake_tensorrt.FAIL_BUILD.clear()
    yield module
    fake_cuda.reset()
    fake_tensorrt.FAIL_BUILD.clear()


@contextlib.contextmanager
def captured(caplog: pytest.LogCaptureFixture, name: str, level: int = logging.INFO) -> Iterator[None]:
    """caplog for ``name``: launch_pytest installs a logger class that does not propagate."""
    logger = logging.getLogger(name)
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(level, logger=name):
            yield
    finally:
        logger.removeHandler(caplog.handler)


def sim_frames(count: int, size: tuple[int, int] = (128, 160)) -> list[np.ndarray]:
    scene = EndoscopeScene(SceneConfig(width=size[1], height=size[0], seed=4))
    return [scene.render(i * 4).rgb for i in range(count)]


@pytest.fixture(scope="module")
def tiny_fp16(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trt_models") / "tiny_fp16.onnx"
    convert_onnx_fp16(tiny_onnx, out)
    return out


@pytest.fixture(scope="module")
def tiny_int8(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trt_models") / "tiny_int8.onnx"
    quantize_int8(tiny_onnx, out, sim_frames(6), min_agreement=0.0)  # random weights: plumbing only
    return out


def ort_probs(model: Path, batch: np.ndarray) -> np.ndarray:
    return create_backend("onnxruntime", model, num_threads=1).infer(batch).probs


def random_batch(n: int, hw: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(n).uniform(0, 255, (n, 3, *hw)).astype(np.float32)


def test_fp32_engine_is_built_strongly_typed_warmed_up_and_matches_onnxruntime(
    trt, tiny_onnx, tmp_path
) -> None:
    backend = create_backend("tensorrt", tiny_onnx, cache_dir=tmp_path, max_batch=2)
    assert backend.name == "tensorrt" and backend.precision == "fp32" and backend.engine_source == "built"
    assert backend.describe() == "tensorrt[fp32, NVIDIA H100 80GB HBM3]"
    assert fake_tensorrt.STATS["builds"] == 1 and fake_tensorrt.STATS["executions"] == 1  # the warm-up
    assert [n.strongly_typed for n in fake_tensorrt.NETWORKS] == [True]
    assert backend.profile == ((1, 3, 64, 80), (1, 3, 64, 80), (2, 3, 64, 80))
    batch = random_batch(2, (64, 80))
    out = backend.infer(batch)
    assert out.probs.dtype == np.float32 and out.probs.shape == (2, 3, 64, 80) and out.disagreement is None
    np.testing.assert_allclose(out.probs, ort_probs(tiny_onnx, batch), atol=1e-5)


def test_fp16_and_int8_models_build_without_precision_flags(trt, tiny_fp16, tiny_int8, tmp_path) -> None:
    batch = random_batch(1, (64, 80))
    for model, precision in ((tiny_fp16, "fp16"), (tiny_int8, "int8")):
        backend = create_backend("tensorrt", model, cache_dir=tmp_path)
        assert backend.precision == precision
        np.testing.assert_allclose(backend.infer(batch).probs, ort_probs(model, batch), atol=1e-5)
    assert fake_tensorrt.STATS["builds"] == 2
    assert all(n.strongly_typed for n in fake_tensorrt.NETWORKS)


def test_engine_cache_hit_on_restart_and_miss_when_the_engine_would_differ(trt, tiny_onnx, tmp_path) -> None:
    first = create_backend("tensorrt", tiny_onnx, cache_dir=tmp_path)
    assert first.engine_source == "built" and first.cache_path.is_file()
    first.close()
    again = create_backend("tensorrt", tiny_onnx, cache_dir=tmp_path)  # a restart: new runtime, same cache
    assert again.engine_source == "cache" and again.cache_path == first.cache_path
    assert fake_tensorrt.STATS["builds"] == 1 and fake_tensorrt.STATS["loads"] == 2
    bigger = create_backend("tensorrt", tiny_onnx, cache_dir=tmp_path, max_batch=4)  # another profile
    other_gpu = create_backend("tensorrt", tiny_onnx, cache_dir=tmp_path, device_index=1)
    workspace = create_backend("tensorrt", tiny_onnx, cache_dir=tmp_path, workspace_mb=512)
    paths = {first.cache_path, bigger.cache_path, other_gpu.cache_path, workspace.cache_path}
    assert len(paths) == 4 and fake_tensorrt.STATS["builds"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


def test_unusable_cached_engine_is_rebuilt_and_replaced(trt, tiny_onnx, tmp_path, caplog) -> None:
    path = create_backend("tensorrt", tiny_onnx, cache_dir=tmp_path).cache_path
    older = make_tensorrt("10.0.0.1")  # a plan from another TensorRT release, as after an upgrade
    plan = older.Builder(older.Logger())
    network = plan.create_network(0)
    older.OnnxParser(network, older.Logger()).parse_from_file(str(tiny_onnx))
    profile = plan.create_optimization_profile()
    profile.set_shape("image", (1, 3, 64, 80), (1, 3, 64, 80), (1, 3, 64, 80))
    config = plan.create_builder_config()
    config.add_optimization_profile(profile)
    for content in (bytes(plan.build_serialized_network(network, config)), b"\x00garbage"):
        path.write_bytes(content)
        caplog.clear()
        with captured(caplog, trt_backend.LOG.name, logging.WARNING):
            backend = create_backend("tensorrt", tiny_onnx, cache_dir=tmp_path)
        assert backend.engine_source == "built" and "unusable" in caplog.text
        assert path.read_bytes().startswith(fake_tensorrt.MAGIC) and path.read_bytes() != content


def test_a_cache_that_cannot_be_written_costs_a_rebuild_not_the_backend(
    trt, tiny_onnx, tmp_path, caplog
) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache directory should be")
    with captured(caplog, trt_backend.LOG.name, logging.WARNING):
        backend = create_backend("tensorrt", tiny_onnx, cache_dir=blocker / "engines")
    assert "engine not cached" in caplog.text
    assert backend.infer(random_batch(1, (64, 80))).probs.shape == (1, 3, 64, 80)


def test_shapes_outside_the_profile_are_refused_before_enqueue(trt, tiny_onnx, rule_onnx, tmp_path) -> None:
    fixed = create_backend("tensorrt", tiny_onnx, cache_dir=tmp_path, max_batch=2)
    runs = fake_tensorrt.STATS["executions"]
    with pytest.raises(ImageFormatError, match=r"batch of 3 is outside the engine's 1\.\.2"):
        fixed.infer(random_batch(3, (64, 80)))
    dynamic = create_backend(
        "tensorrt", rule_onnx, cache_dir=tmp_path, dynamic_profile=((32, 32), (64, 64), (128, 160))
    )
    assert dynamic.profile == ((1, 3, 32, 32), (1, 3, 64, 64), (1, 3, 128, 160))
    runs = fake_tensorrt.STATS["executions"]
    for hw in ((160, 96), (96, 192), (16, 64)):
        with pytest.raises(ImageFormatError, match=r"outside the engine's profile 32x32 \.\. 128x160"):
            dynamic.infer(random_batch(1, hw))
    assert fake_tensorrt.STATS["executions"] == runs  # nothing reached TensorRT
    pipeline = SegmentationPipeline(dynamic, track=False)
    rgb = np.full((100, 150, 3), 235, np.uint8)  # padded to 128x160: inside
    assert (pipeline(rgb).mask == 1).all()
    with pytest.raises(ImageFormatError, match="outside the engine's profile"):
        pipeline(np.zeros((130, 150, 3), np.uint8))  # padded to 160x160


def test_output_dtype_is_read_from_the_engine(trt, rule_onnx, tmp_path) -> None:
    model = onnx.load(str(rule_onnx))
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    softmax.output[0] = "probs_fp32"
    model.graph.node.append(
        onnx.helper.make_node("Cast", ["probs_fp32"], ["probs"], to=onnx.TensorProto.FLOAT16)
    )
    model.graph.output[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    path = tmp_path / "half_out.onnx"
    onnx.save(model, str(path))
    backend = create_backend("tensorrt", path, cache_dir=tmp_path)
    batch = np.full((1, 3, 64, 64), 235, np.float32)
    probs = backend.infer(batch).probs
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs, ort_probs(path, batch).astype(np.float32), atol=1e-3)
    assert probs[0, 1].min() > 0.99  # the shaft class everywhere


def test_disagreement_output_comes_back(trt, rule_onnx_uncertain, tmp_path) -> None:
    backend = create_backend("tensorrt", rule_onnx_uncertain, cache_dir=tmp_path)
    batch = np.zeros((1, 3, 64, 64), np.float32)
    batch[:, 0, :16] = 250  # a red quarter: manipulator
    out = backend.infer(batch)
    assert out.disagreement is not None and out.disagreement == pytest.approx([0.25])


def test_device_index_builds_loads_and_runs_on_that_device(trt, tiny_onnx, tmp_path) -> None:
    backend = create_backend("tensorrt", tiny_onnx, cache_dir=tmp_path, device_index=1)
    assert backend.describe() == "tensorrt[fp32, NVIDIA RTX A4000]"
    assert fake_tensorrt.LOAD_DEVICES == [1]
    assert backend.infer(random_batch(1, (64, 80))).probs.shape == (1, 3, 64, 80)
    assert fake_cuda.current_device() == 0  # the guard restores the caller's device
    with pytest.raises(BackendUnavailableError, match="CUDA device 7 does not exist"):
        create_backend("tensorrt", tiny_onnx, cache_dir=tmp_path, device_index=7)


def test_precision_is_the_models_and_a_mismatch_is_refused(trt, tiny_onnx, tiny_fp16, tmp_path) -> None:
    assert create_backend("tensorrt", tiny_fp16, cache_dir=tmp_path, precision="fp16").precision == "fp16"
    with pytest.raises(ModelLoadError, match="is an fp32 model but precision fp16 was asked for"):
        create_backend("tensorrt", tiny_onnx, cache_dir=tmp_path, precision="fp16")


def test_build_failure_is_one_line_and_auto_falls_back_once(trt, tiny_onnx, tmp_path, caplog) -> None:
    fake_tensorrt.FAIL_BUILD.append("out of memory\nwhile allocating 4 GiB of workspace")
    with pytest.raises(ModelLoadError) as err:
        create_backend("tensorrt", tiny_onnx, cache_dir=tmp_path)
    assert "\n" not in str(err.value)
    assert "could not build an engine: out of memory while allocating 4 GiB" in str(err.value)
    with captured(caplog, "cct_surgical_seg.deploy.backends"):
        backend = create_backend("auto", tiny_onnx, cache_dir=tmp_path, num_threads=1)
    assert backend.name == "onnxruntime" and backend.providers[0] == "CPUExecutionProvider"
    assert (
        "tensorrt failed (ModelLoadError" in backend.selection_reason
        and "out of memory" in backend.selection_reason
    )
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "falling back" in r.message]
    assert len(warnings) == 1 and "out of memory" in warnings[0].message


def test_quantization_tensorrt_refuses_is_named_before_any_build(trt, tiny_onnx, tmp_path) -> None:
    cpu_int8 = tmp_path / "cpu_int8.onnx"
    quantize_int8(tiny_onnx, cpu_int8, sim_frames(6), min_agreement=0.0, target="cpu")
    with pytest.raises(ModelLoadError, match=r"TensorRT refuses this quantization.*zero point"):
        create_backend("tensorrt", cpu_int8, cache_dir=tmp_path)
    # the same graph without the precision key still gets the check; with a wrong key, the parser refuses it
    model = onnx.load(str(cpu_int8))
    next(p for p in model.metadata_props if p.key == KEY_PRECISION).value = "fp32"
    onnx.save(model, str(tmp_path / "mislabelled.onnx"))
    with pytest.raises(ModelLoadError, match=r"ONNX parser refused it.*symmetric quantization") as err:
        create_backend("tensorrt", tmp_path / "mislabelled.onnx", cache_dir=tmp_path)
    assert "\n" not in str(err.value) and fake_tensorrt.STATS["builds"] == 0
    assert create_backend("auto", cpu_int8, num_threads=1).name == "onnxruntime"


@pytest.mark.parametrize("version", ["8.6.1", "9.3.0.1", "12.0.0", "ten"])
def test_unsupported_tensorrt_versions_are_refused_in_one_line(version, tiny_onnx, monkeypatch) -> None:
    fake = make_tensorrt("10.0.1.6")
    fake.__version__ = version
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    with pytest.raises(
        BackendUnavailableError, match=r"backend needs TensorRT 10\.x \(10\.0 or later\) or 11\.x"
    ):
        create_backend("tensorrt", tiny_onnx)
    assert create_backend("auto", tiny_onnx, num_threads=1).name == "onnxruntime"


def test_broken_tensorrt_install_and_missing_gpu_fall_back(tiny_onnx, tmp_path, monkeypatch) -> None:
    broken = tmp_path / "site"
    broken.mkdir()
    (broken / "tensorrt.py").write_text("raise OSError('libnvinfer.so.10: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(broken))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    with pytest.raises(BackendUnavailableError, match="TensorRT cannot be imported: OSError: libnvinfer"):
        create_backend("tensorrt", tiny_onnx)
    monkeypatch.setitem(
        sys.modules, "tensorrt", make_tensorrt("11.4.0.1")
    )  # TensorRT, but the real CUDA layer
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(BackendUnavailableError, match="no CUDA device"):
        create_backend("tensorrt", tiny_onnx)
    assert "no CUDA device" in create_backend("auto", tiny_onnx, num_threads=1).selection_reason
