"""Per-stage latency of every backend available here, side by side, at two frame sizes.

Measures the deploy pipeline as the ROS node runs it (``SegmentationPipeline.__call__``):
``pre`` (resize + layout), ``net`` (the backend), ``post`` (resize probabilities back, argmax)
and ``poses``, each as median and p95 over ``--repeats`` frames after ``--warmup`` frames.

The model is a RANDOM-INIT EfficientNet-Lite0 DeepLabV3+ at the default ModelConfig
(pretrained=False): latency does not depend on the weights, and this keeps the benchmark free
of trained files. Each size gets its own fixed-size ONNX export (network size = frame size, so
``pre``/``post`` measure layout and argmax, not resampling). PyTorch and ONNX Runtime get the same
thread count (``--threads``, default 2: the shared-core budget of the robot PC).

Usage: ``python bench/bench_backends.py [--threads 2] [--repeats 30]``; results go to
``bench/results/backends.json`` and ``bench/results/backends.png``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cct_surgical_seg.deploy.backends import create_backend
from cct_surgical_seg.deploy.errors import BackendUnavailableError
from cct_surgical_seg.deploy.export import export_onnx
from cct_surgical_seg.deploy.pipeline import SegmentationPipeline
from cct_surgical_seg.io_utils import atomic_write_bytes, atomic_write_json

SIZES = ((256, 320), (512, 640))
STAGES = ("pre", "net", "post", "poses")
RESULTS = Path(__file__).resolve().parent / "results"


def make_checkpoint(directory: Path) -> Path:
    import torch

    from cct_surgical_seg.model.checkpoint import make_payload, save_checkpoint
    from cct_surgical_seg.model.config import ModelConfig
    from cct_surgical_seg.model.deeplab import build_segmenter

    torch.manual_seed(0)
    cfg = ModelConfig(pretrained=False)
    path = directory / "lite0_random.pt"
    save_checkpoint(path, make_payload(build_segmenter(cfg).eval(), cfg))
    return path


def measure(pipeline: SegmentationPipeline, frame: np.ndarray, warmup: int, repeats: int) -> dict:
    for _ in range(warmup):
        pipeline(frame)
    samples = {stage: [] for stage in (*STAGES, "total")}
    for _ in range(repeats):
        timings = pipeline(frame).timings_ms
        for stage in samples:
            samples[stage].append(timings[stage])
    return {
        stage: {"median_ms": float(np.median(v)), "p95_ms": float(np.percentile(v, 95))}
        for stage, v in samples.items()
    }


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['backend']}\n{r['size'][0]}x{r['size'][1]}" for r in results["runs"]]
    fig, ax = plt.subplots(figsize=(1.6 * len(labels) + 2, 4))
    bottom = np.zeros(len(labels))
    for stage in STAGES:
        values = np.array([r["stages"][stage]["median_ms"] for r in results["runs"]])
        ax.bar(labels, values, bottom=bottom, label=stage)
        bottom += values
    ax.set_ylabel("median latency per frame [ms]")
    ax.set_title(f"cct_surgical_seg pipeline, random-init Lite0, {results['threads']} threads")
    ax.legend()
    fig.tight_layout()
    with tempfile.NamedTemporaryFile(suffix=".png") as tmp:
        fig.savefig(tmp.name, dpi=100)
        atomic_write_bytes(path, Path(tmp.name).read_bytes())
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--output", type=Path, default=RESULTS / "backends.json")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = make_checkpoint(Path(tmp))
        for size in SIZES:
            onnx_path = Path(tmp) / f"lite0_{size[0]}x{size[1]}.onnx"
            export_onnx(checkpoint, onnx_path, input_size=size)
            frame = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            candidates = [
                ("torch", checkpoint, {"input_size": size, "num_threads": args.threads}),
                ("onnxruntime", onnx_path, {"num_threads": args.threads}),
                ("tensorrt", onnx_path, {}),
            ]
            for kind, model, options in candidates:
                try:
                    backend = create_backend(kind, model, **options)
                except BackendUnavailableError as exc:
                    print(f"skip {kind}: {exc}", file=sys.stderr)
                    continue
                stages = measure(SegmentationPipeline(backend), frame, args.warmup, args.repeats)
                runs.append(
                    {"backend": backend.describe(), "kind": kind, "size": list(size), "stages": stages}
                )
                print(f"{backend.describe():32s} {size[0]}x{size[1]}: "
                      + "  ".join(f"{s} {stages[s]['median_ms']:.1f}/{stages[s]['p95_ms']:.1f}" for s in
                                  (*STAGES, "total")) + "  (median/p95 ms)")  # fmt: skip
    ratios = {}
    for size in SIZES:
        net = {r["kind"]: r["stages"]["net"]["median_ms"] for r in runs if r["size"] == list(size)}
        if "torch" in net and "onnxruntime" in net:
            ratios[f"{size[0]}x{size[1]}"] = net["onnxruntime"] / net["torch"]
    results = {
        "model": "EfficientNet-Lite0 DeepLabV3+, default ModelConfig, RANDOM INIT (pretrained=False)",
        "threads": args.threads,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnxruntime": __import__("onnxruntime").__version__,
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "ort_over_torch_net_median": ratios,
        "runs": runs,
    }
    atomic_write_json(args.output, results)
    plot(results, args.output.with_suffix(".png"))
    print(f"ORT/torch network median ratio: {ratios} (goal <= 0.6 at 256x320)")
    print(f"wrote {args.output} and {args.output.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
