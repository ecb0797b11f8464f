"""One check for a machine with a GPU: TensorRT and ONNX Runtime CUDA against ONNX Runtime CPU.

Run through ``bash scripts/gpu_check.sh`` (``--help`` for options). Every step skips cleanly,
with the reason in the summary, when what it needs is not installed (TensorRT, onnxruntime-gpu,
PyTorch, a GPU), so the same command also runs on a CPU-only machine.

1. versions: Python, NumPy, ONNX, ONNX Runtime (+ providers), PyTorch (+ CUDA, GPU), TensorRT.
2. models: the shipped demo model (``models/cct_demo.onnx``, 224x288) in FP32, its FP16
   conversion (as ``cct-export --precision fp16``) and its INT8 quantization (as
   ``cct-quantize``, symmetric, calibrated on simulated frames); for latency at the camera size,
   the demo architecture exported at the camera size (``--camera-size``, default 512x640) in the
   same three precisions, with random weights (latency does not depend on them; needs PyTorch).
3. engine cache: the FP16 demo engine is built into an empty cache, then a second backend (a
   restart) must load it from there instead of building.
4. accuracy: every GPU backend and precision against ONNX Runtime CPU running the FP32 demo model
   (and the same file), on simulated camera frames (``cct_surgical_seg/sim/scene.py``): the
   maximum probability difference at the network and the mask agreement at the frame.
5. latency at the camera size: network (``backend.infer``, host copies included) and end to end
   (``SegmentationPipeline``: resize, network, resize back, argmax, poses), median and p95.
6. profile: a batch above ``max_batch`` and a frame above the dynamic profile must be refused.
7. one JSON summary on stdout and in ``--out`` (saved after every step), with the goals of
   issue 18 evaluated.

A time budget (``--budget-s``, default 540 s) skips the steps that would not fit in 10 minutes;
TensorRT FP16 comes first in each step, as the deployment target.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a plain checkout works without installing the package

from cct_surgical_seg.deploy.backends import create_backend  # noqa: E402
from cct_surgical_seg.deploy.errors import BackendUnavailableError  # noqa: E402
from cct_surgical_seg.deploy.pipeline import SegmentationPipeline, network_size, preprocess  # noqa: E402
from cct_surgical_seg.io_utils import atomic_write_json  # noqa: E402

DEMO = REPO / "models" / "cct_demo.onnx"
CAMERA = (512, 640)  # H, W: the default camera and network size
#: Most telling first, in case the time budget runs out: TensorRT FP16 is the deployment target.
GPU_CANDIDATES = (("tensorrt", "fp16"), ("tensorrt", "fp32"), ("tensorrt", "int8"),
                  ("onnxruntime-cuda", "fp16"), ("onnxruntime-cuda", "fp32"))  # fmt: skip


class Run:
    """The summary under construction, the time budget, and steps that never stop the check.

    The summary is written to ``out`` after every step, so even a run stopped by the 10-minute
    limit leaves what it measured.
    """

    def __init__(self, budget_s: float, camera: tuple[int, int] = CAMERA, out: Path | None = None) -> None:
        self.start = time.monotonic()
        self.budget_s = budget_s
        self.camera = camera
        self.out = out
        self.summary: dict[str, Any] = {"skipped": [], "errors": [], "accuracy": [], "latency": []}

    def save(self) -> None:
        self.summary["elapsed_s"] = round(time.monotonic() - self.start, 1)
        if self.out is not None:
            atomic_write_json(self.out, self.summary)

    def left_s(self) -> float:
        return self.budget_s - (time.monotonic() - self.start)

    def step(self, name: str, fn: Callable[..., Any], *args: Any, need_s: float = 0.0) -> Any:
        """``fn(*args)``, or None with the reason recorded (out of time, unavailable, failed)."""
        if self.left_s() < need_s:
            self.summary["skipped"].append(
                f"{name}: out of time ({self.left_s():.0f} s left, needs ~{need_s:.0f})"
            )
            return None
        began = time.monotonic()
        try:
            result = fn(*args)
        except BackendUnavailableError as exc:
            self.summary["skipped"].append(f"{name}: {exc}")
            result = None
        except Exception as exc:  # one failing step must not hide the others' results
            self.summary["errors"].append(f"{name}: {type(exc).__name__}: {' '.join(str(exc).split())}")
            result = None
        print(f"[gpu_check] {name}: {time.monotonic() - began:.1f} s", file=sys.stderr)
        self.save()
        return result


def versions() -> dict[str, Any]:
    import onnx
    import onnxruntime

    found: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxruntime_providers": onnxruntime.get_available_providers(),
    }
    try:
        import torch

        found["torch"] = torch.__version__
        found["torch_cuda"] = torch.version.cuda
        found["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        found["torch"] = None
    try:
        import tensorrt

        found["tensorrt"] = tensorrt.__version__
    except Exception as exc:  # ImportError, or OSError from a broken install
        found["tensorrt"] = f"not importable: {type(exc).__name__}: {exc}"
    return found


def sim_frames(count: int, seed: int, size: tuple[int, int]) -> list[np.ndarray]:
    from cct_surgical_seg.sim.scene import EndoscopeScene, SceneConfig

    scene = EndoscopeScene(SceneConfig(width=size[1], height=size[0], seed=seed))
    return [scene.render(i * 7).rgb for i in range(count)]


def to_fp16(fp32: Path) -> Path:
    from cct_surgical_seg.deploy.export import convert_onnx_fp16

    convert_onnx_fp16(fp32, fp32.with_name(f"{fp32.stem}_fp16.onnx"))
    return fp32.with_name(f"{fp32.stem}_fp16.onnx")


def to_int8(fp32: Path, frames: list[np.ndarray], min_agreement: float) -> Path:
    from cct_surgical_seg.deploy.quantize import quantize_int8

    quantize_int8(fp32, fp32.with_name(f"{fp32.stem}_int8.onnx"), frames, min_agreement=min_agreement)
    return fp32.with_name(f"{fp32.stem}_int8.onnx")


def precision_set(run: Run, name: str, fp32: Path, frames: list[np.ndarray], min_agreement: float) -> dict:
    """``fp32`` plus those of its FP16 conversion and symmetric INT8 quantization that succeed."""
    models = {
        "fp32": fp32,
        "fp16": run.step(f"{name} fp16", to_fp16, fp32),
        "int8": run.step(f"{name} int8", to_int8, fp32, frames, min_agreement),
    }
    return {precision: path for precision, path in models.items() if path is not None}


def camera_models(run: Run, tmp: Path, frames: list[np.ndarray]) -> dict[str, Path]:
    """The demo architecture at the camera size (random weights) in three precisions, and dynamic."""
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailableError(
            "PyTorch is not installed (needed to export at the camera size)"
        ) from exc
    import onnx

    from cct_surgical_seg.deploy.export import export_onnx
    from cct_surgical_seg.model.checkpoint import make_payload, save_checkpoint
    from cct_surgical_seg.model.config import ModelConfig
    from cct_surgical_seg.model.deeplab import build_segmenter

    props = {p.key: p.value for p in onnx.load(str(DEMO), load_external_data=False).metadata_props}
    cfg = ModelConfig.from_dict({**json.loads(props["cct.model_config"]), "pretrained": False})
    torch.manual_seed(0)
    checkpoint = tmp / "camera.pt"
    save_checkpoint(checkpoint, make_payload(build_segmenter(cfg).eval(), cfg))
    export_onnx(checkpoint, tmp / "camera.onnx", input_size=run.camera)
    export_onnx(checkpoint, tmp / "dynamic.onnx", input_size=None)
    models = precision_set(run, "camera", tmp / "camera.onnx", frames, min_agreement=0.0)  # speed only
    return {**models, "dynamic": tmp / "dynamic.onnx"}


def cache_check(model: Path, cache: Path) -> dict[str, Any]:
    """A cold build into ``cache``, then a restart that must load the engine from it."""
    began = time.monotonic()
    cold = create_backend("tensorrt", model, cache_dir=cache)
    cold_s = time.monotonic() - began
    cold.close()
    began = time.monotonic()
    warm = create_backend("tensorrt", model, cache_dir=cache)
    return {
        "first_start": cold.engine_source,
        "first_start_s": round(cold_s, 2),
        "restart": warm.engine_source,
        "restart_s": round(time.monotonic() - began, 2),
        "engine": str(warm.cache_path),
        "reused": cold.engine_source == "built" and warm.engine_source == "cache",
    }


def open_backend(kind: str, model: Path, cache: Path) -> Any:
    """``create_backend`` with this run's engine cache for TensorRT (ONNX Runtime has no cache)."""
    return create_backend(kind, model, **({"cache_dir": cache} if kind == "tensorrt" else {}))


def compare(backend: Any, reference: Any, frames: list[np.ndarray]) -> dict[str, float]:
    """Max probability difference at the network, argmax agreement there and at the frame."""
    size = backend.info.input_size
    diffs, net_agree, frame_agree = [], [], []
    for rgb in frames:
        batch = preprocess(rgb, network_size(rgb.shape[:2], size), size is None)
        got, want = backend.infer(batch).probs, reference.infer(batch).probs
        diffs.append(float(np.abs(got - want).max()))
        net_agree.append(float((got.argmax(1) == want.argmax(1)).mean()))
        a = SegmentationPipeline(backend, track=False)(rgb).mask
        b = SegmentationPipeline(reference, track=False)(rgb).mask
        frame_agree.append(float((a == b).mean()))
    return {
        "max_prob_diff": max(diffs),
        "network_mask_agreement": float(np.mean(net_agree)),
        "mask_agreement": float(np.mean(frame_agree)),
        "worst_frame_mask_agreement": min(frame_agree),
    }


def accuracy_row(kind: str, precision: str, model: Path, frames: list[np.ndarray], cache: Path) -> dict:
    """One GPU backend on ``model`` against ONNX Runtime CPU on the FP32 demo model and on ``model``."""
    backend = open_backend(kind, model, cache)
    row = {
        "backend": backend.describe(),
        "kind": kind,
        "precision": precision,
        "vs_onnxruntime_cpu_fp32": compare(
            backend, create_backend("onnxruntime", DEMO, device="cpu"), frames
        ),
        "vs_onnxruntime_cpu_same_model": compare(
            backend, create_backend("onnxruntime", model, device="cpu"), frames
        ),
    }
    backend.close()
    return row


def accuracy(run: Run, models: dict[str, Path], frames: list[np.ndarray], cache: Path) -> None:
    for kind, precision in GPU_CANDIDATES:
        if precision in models:
            name = f"accuracy {kind} {precision}"
            row = run.step(name, accuracy_row, kind, precision, models[precision], frames, cache, need_s=45.0)
            if row is not None:
                run.summary["accuracy"].append(row)


def profile_check(
    fixed_model: Path, dynamic_model: Path | None, cache: Path, camera: tuple[int, int]
) -> dict:
    """The refusals' messages; a shape that is not refused is an error of this check."""
    from cct_surgical_seg.deploy.errors import ImageFormatError

    results = {}
    fixed = create_backend("tensorrt", fixed_model, cache_dir=cache, max_batch=1)
    h, w = fixed.info.input_size
    cases = [("batch_above_max", fixed, np.zeros((2, 3, h, w), np.float32))]
    if dynamic_model is not None:
        dynamic = create_backend("tensorrt", dynamic_model, cache_dir=cache,
                                 dynamic_profile=((64, 64), (64, 64), camera))  # fmt: skip
        cases.append(
            ("frame_above_profile", dynamic, np.zeros((1, 3, camera[0] + 32, camera[1]), np.float32))
        )
    for name, backend, batch in cases:
        try:
            backend.infer(batch)
        except ImageFormatError as exc:
            results[name] = f"refused: {exc}"
        else:
            raise AssertionError(f"{name}: shape {batch.shape} was not refused")
    return results


def timed(fn: Callable[[], Any], warmup: int, repeats: int) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - began) * 1000)
    return {"median_ms": float(np.median(samples)), "p95_ms": float(np.percentile(samples, 95)), "n": repeats}


def latency_row(
    kind: str, precision: str, model: Path, cache: Path, repeats: int, camera: tuple[int, int]
) -> dict[str, Any]:
    backend = open_backend(kind, model, cache)
    frame = sim_frames(1, 11, camera)[0]
    size = backend.info.input_size
    batch = preprocess(frame, network_size(frame.shape[:2], size), size is None)
    pipeline = SegmentationPipeline(backend, track=False)
    row = {
        "backend": backend.describe(),
        "kind": kind,
        "precision": precision,
        "network_size": list(batch.shape[2:]),
        "network": timed(lambda: backend.infer(batch), warmup=max(2, repeats // 10), repeats=repeats),
        "frame_size": list(frame.shape[:2]),
        "end_to_end": timed(lambda: pipeline(frame), warmup=2, repeats=max(3, repeats // 2)),
    }
    backend.close()
    return row


def latency(run: Run, models: dict[str, Path], cache: Path, repeats: int) -> None:
    for kind, precision in [*GPU_CANDIDATES, ("onnxruntime", "fp32")]:
        if precision in models:
            count = repeats if kind != "onnxruntime" else max(3, repeats // 20)  # the CPU: a slow reference
            name = f"latency {kind} {precision}"
            row = run.step(name, latency_row, kind, precision, models[precision], cache, count, run.camera,
                           need_s=45.0)  # fmt: skip
            if row is not None:
                run.summary["latency"].append(row)


def goals(summary: dict[str, Any]) -> dict[str, Any]:
    """Issue 18's goals, None where this machine could not measure them."""

    def tensorrt_fp16(rows: list[dict] | None) -> dict | None:
        found = [r for r in rows or [] if r["kind"] == "tensorrt" and r["precision"] == "fp16"]
        return found[0] if found else None

    fp16, fast = tensorrt_fp16(summary.get("accuracy")), tensorrt_fp16(summary.get("latency"))
    if fast is not None and fast["network_size"] != list(CAMERA):
        fast = None  # the goal is stated at 512x640
    cache = summary.get("engine_cache")
    return {
        "tensorrt_fp16_mask_agreement_ge_0.999": (
            fp16["vs_onnxruntime_cpu_fp32"]["mask_agreement"] >= 0.999 if fp16 else None
        ),
        "engine_reused_across_restarts": cache["reused"] if cache else None,
        "tensorrt_fp16_network_le_2ms_at_512x640": fast["network"]["median_ms"] <= 2.0 if fast else None,
    }


def check(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Every step in order of importance; the summary is saved after each."""
    run = Run(args.budget_s, tuple(args.camera_size), args.out)
    run.summary["versions"] = run.step("versions", versions)
    frames = sim_frames(args.frames, 1, run.camera)
    calibration = sim_frames(args.calibration_frames, 2, run.camera)
    cache = tmp / "engines"
    shutil.copy(DEMO, tmp / "demo.onnx")  # its FP16 and INT8 twins are written beside it
    demo = precision_set(run, "demo", tmp / "demo.onnx", calibration, 0.98)
    fixed = demo.get("fp16", demo["fp32"])
    run.summary["engine_cache"] = run.step("engine cache", cache_check, fixed, cache, need_s=60.0)
    accuracy(run, demo, frames, cache)
    camera = run.step("camera-size models", camera_models, run, tmp, calibration, need_s=60.0) or {}
    latency(run, camera, cache, args.repeats)
    run.summary["profile_refusals"] = run.step(
        "profile", profile_check, fixed, camera.get("dynamic"), cache, run.camera, need_s=30.0
    )
    run.summary["goals"] = goals(run.summary)
    run.save()
    return run.summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="summary file (JSON)")
    parser.add_argument("--budget-s", type=float, default=540.0, help="skip steps past this (default 540)")
    parser.add_argument("--frames", type=int, default=8, help="simulated frames for accuracy (default 8)")
    parser.add_argument("--calibration-frames", type=int, default=24, help="INT8 calibration frames")
    parser.add_argument("--repeats", type=int, default=200, help="timed network runs per backend")
    parser.add_argument("--camera-size", type=int, nargs=2, default=CAMERA, metavar=("H", "W"),
                        help="frame and latency network size (default 512 640)")  # fmt: skip
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cct-gpu-check-") as tmp:
        summary = check(args, Path(tmp))
    print(json.dumps(summary, indent=1))
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
