#!/usr/bin/env python3
"""Training throughput: today's recipe against the baseline, supervised and CCT steps, side by side.

Each case is ``Trainer.train_step`` itself (normalise, forward, losses, backward, SGD, poly LR,
EMA update) on fixed in-memory batches, so disk and augmentation do not blur the comparison.
Cases run in interleaved rounds (a busy or throttling machine slows all of them alike); the
median of ``--repeats`` is reported as training images per second.

Cases (same batch, crop and aux decoder count throughout):
- ``baseline``: float32, contiguous (NCHW) tensors; CCT with 1x1 aux heads on the backbone output.
- ``channels_last``: float32 in NHWC.
- ``bf16``: bf16 autocast in NHWC.
- CCT only: ``channels_last-skip``: the skip aux head instead of the default upsampling head.
The CCT cases other than ``baseline`` use the default placement (ASPP output).

    python bench/bench_train_step.py [--batch 4] [--size 224 288] [--repeats 5]

Writes bench/results/train_step_<device>.json. Goal: >= 2x the baseline's images/s.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cct_surgical_seg.io_utils import atomic_write_json  # noqa: E402
from cct_surgical_seg.train import data as D  # noqa: E402
from cct_surgical_seg.train import trainer as T  # noqa: E402
from cct_surgical_seg.train.config import TrainConfig  # noqa: E402

BASELINE_AUX = {"placement": "backbone", "hidden_channels": 64}
RECIPES = {  # name: (precision, channels_last, aux overrides)
    "baseline": ("fp32", False, BASELINE_AUX),
    "channels_last": ("fp32", True, {}),
    "bf16": ("bf16", True, {}),
    "channels_last-skip": ("fp32", True, {"head": "skip"}),
}


class _Fixed:
    """An endless stream that always yields the same batch (what the trainer's streams yield)."""

    def __init__(self, batch: dict[str, torch.Tensor]) -> None:
        self.batch = batch
        self.epoch = 0

    def __next__(self) -> dict[str, torch.Tensor]:
        return self.batch


def _trainer(cfg: TrainConfig, device: torch.device, batch: int, cct: bool, size) -> T.Trainer:
    fake = D.Sample(Path("unused.png"), Path("unused.png"), "g", "train")
    trainer = T.Trainer(cfg, T.TrainData([fake], [fake], []), ROOT / "bench" / "results", device=device)
    g = torch.Generator().manual_seed(0)
    h, w = size
    image = torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8, generator=g)
    mask = torch.randint(0, 3, (batch, h, w), generator=g)
    trainer.labelled = _Fixed({"image": image, "mask": mask})
    unl = torch.randint(0, 256, (batch, 3, h, w), dtype=torch.uint8, generator=g)
    trainer.unlabelled = _Fixed({"image": unl}) if cct else None
    return trainer


def _time_step(trainer: T.Trainer, stage: int) -> float:
    trainer.step = 0 if stage == 1 else trainer.cfg.train.warmup_steps
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    terms = trainer.train_step()  # float(loss) inside synchronises
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    assert terms["stage"] == stage
    return time.perf_counter() - t0


def _config(precision: str, channels_last: bool, aux: dict, args: argparse.Namespace) -> TrainConfig:
    big = 10**9  # never reach the end of the poly schedule
    return TrainConfig.from_dict(
        {
            "model": {"pretrained": False},  # weights do not change the cost
            "precision": precision,
            "channels_last": channels_last,
            "aux": aux,
            "train": {"warmup_steps": big, "cct_steps": big, "rampup_fraction": 0.0, "progress": False},
            "data": {"crop_size": list(args.size), "batch_size": args.batch},
        }
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument(
        "--batch", type=int, default=4, help="labelled frames per step (CCT adds as many unlabelled)"
    )
    p.add_argument("--size", type=int, nargs=2, default=[224, 288], metavar=("H", "W"))
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = T.resolve_device(args.device)
    cases = {}
    for method, stage in (("supervised", 1), ("cct", 2)):
        for recipe, (precision, channels_last, aux) in RECIPES.items():
            if method == "supervised" and recipe == "channels_last-skip":
                continue
            torch.manual_seed(0)
            cfg = _config(precision, channels_last, aux, args)
            cases[f"{method}/{recipe}"] = (_trainer(cfg, device, args.batch, stage == 2, args.size), stage)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for k in range(args.warmup + args.repeats):
        for name, (trainer, stage) in cases.items():
            seconds = _time_step(trainer, stage)
            if k >= args.warmup:
                times[name].append(seconds)
    results = {}
    for name, (_, stage) in cases.items():
        median = statistics.median(times[name])
        images = args.batch * (2 if stage == 2 else 1)
        method = name.split("/")[0]
        speedup = statistics.median(times[f"{method}/baseline"]) / median
        results[name] = {
            "images_per_step": images,
            "median_s": median,
            "images_per_s": images / median,
            "speedup_vs_baseline": speedup,
            "times_s": times[name],
        }
        print(
            f"{name:26s} {images:2d} images  median {median * 1000:8.1f} ms  "
            f"{images / median:6.2f} img/s  {speedup:5.2f}x baseline",
            flush=True,
        )
    report = {
        "benchmark": "train_step",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "native_bf16": T.resolve_precision("auto", device) == torch.bfloat16,
        "batch": args.batch,
        "size": args.size,
        "aux_decoders": 30,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "recipes": {k: [*v[:2], v[2]] for k, v in RECIPES.items()},
        "results": results,
        "goal_speedup": 2.0,
    }
    out = args.out or ROOT / "bench" / "results" / f"train_step_{device.type}.json"
    atomic_write_json(out, report)
    print(f"wrote {out}")
    print(json.dumps({k: round(v["speedup_vs_baseline"], 2) for k, v in results.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
