#!/usr/bin/env python3
"""Time one supervised step and one CCT step (30 aux decoders, default config) at equal batch.

Goal: CCT step <= 1.8x the supervised step. Both are ``Trainer.train_step`` itself (normalise,
forward, losses, backward, SGD, poly LR), fed fixed in-memory batches so disk and augmentation
do not blur the comparison. Each is warmed up, then timed ``--repeats`` times in interleaved
rounds (load on a shared machine hits every case alike); the median is reported.
"Equal batch": the CCT step sees as many frames as the supervised one (half labelled, half
unlabelled). For reference the real training CCT step (``--batch`` labelled + ``--batch``
unlabelled frames) is timed too.

    python bench/bench_train_step.py [--batch 8] [--size 320 320] [--repeats 7] [--device auto]

Writes bench/results/train_step_<device>.json.
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
from cct_surgical_seg.model.cct import AuxConfig  # noqa: E402
from cct_surgical_seg.train import data as D  # noqa: E402
from cct_surgical_seg.train import trainer as T  # noqa: E402
from cct_surgical_seg.train.config import TrainConfig  # noqa: E402


class _Fixed:
    """An endless stream that always yields the same batch (what the trainer's streams yield)."""

    def __init__(self, batch: dict[str, torch.Tensor]) -> None:
        self.batch = batch
        self.epoch = 0

    def __next__(self) -> dict[str, torch.Tensor]:
        return self.batch


def _trainer(cfg: TrainConfig, device: torch.device, n_labelled: int, n_unlabelled: int, size) -> T.Trainer:
    fake = D.Sample(Path("unused.png"), Path("unused.png"), "g", "train")
    trainer = T.Trainer(cfg, T.TrainData([fake], [fake], []), ROOT / "bench" / "results", device=device)
    g = torch.Generator().manual_seed(0)
    h, w = size
    image = torch.randint(0, 256, (n_labelled, 3, h, w), dtype=torch.uint8, generator=g)
    mask = torch.randint(0, cfg.model.get("num_classes", 3), (n_labelled, h, w), generator=g)
    trainer.labelled = _Fixed({"image": image, "mask": mask})
    unl = torch.randint(0, 256, (max(1, n_unlabelled), 3, h, w), dtype=torch.uint8, generator=g)
    trainer.unlabelled = _Fixed({"image": unl}) if n_unlabelled else None
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8, help="frames per step (default: data.batch_size)")
    p.add_argument("--size", type=int, nargs=2, default=[320, 320], metavar=("H", "W"))
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = T.resolve_device(args.device)
    big = 10**9  # never reach the end of the poly schedule
    cfg = TrainConfig.from_dict({
        "model": {"pretrained": False},  # weights do not change the cost
        "amp": args.amp,
        "train": {"warmup_steps": big, "cct_steps": big, "rampup_fraction": 0.0, "progress": False},
        "data": {"crop_size": list(args.size), "batch_size": args.batch},
    })
    assert AuxConfig.from_dict(cfg.aux).total == 30
    b, half = args.batch, args.batch // 2
    cases = {
        "supervised": (b, 0, 1),
        "cct_equal_batch": (b - half, half, 2),
        "cct_training_batch": (b, b, 2),
    }
    trainers = {}
    for name, (n_l, n_u, _stage) in cases.items():
        torch.manual_seed(0)
        trainers[name] = _trainer(cfg, device, n_l, n_u, args.size)
    # interleaved rounds: a busy or throttling machine slows all cases alike, not one of them
    times: dict[str, list[float]] = {name: [] for name in cases}
    for k in range(args.warmup + args.repeats):
        for name, (_, _, stage) in cases.items():
            seconds = _time_step(trainers[name], stage)
            if k >= args.warmup:
                times[name].append(seconds)
    results = {}
    for name, (n_l, n_u, _stage) in cases.items():
        median = statistics.median(times[name])
        results[name] = {"labelled": n_l, "unlabelled": n_u, "median_s": median, "times_s": times[name]}
        print(f"{name:20s} {n_l:2d}+{n_u:2d} frames  median {median * 1000:9.1f} ms", flush=True)
    ratio = results["cct_equal_batch"]["median_s"] / results["supervised"]["median_s"]
    ratio_train = results["cct_training_batch"]["median_s"] / results["supervised"]["median_s"]
    print(f"CCT / supervised at equal batch: {ratio:.2f}x (goal <= 1.8x); "
          f"training CCT step ({b}+{b}) / supervised ({b}): {ratio_train:.2f}x")
    report = {
        "benchmark": "train_step", "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or platform.machine(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "amp": args.amp,
        "batch": b, "size": args.size, "aux_decoders": 30, "warmup": args.warmup, "repeats": args.repeats,
        "results": results, "ratio_cct_over_supervised_equal_batch": ratio,
        "ratio_cct_training_batch_over_supervised": ratio_train, "goal_ratio": 1.8,
        "meets_goal": ratio <= 1.8,
    }
    out = args.out or ROOT / "bench" / "results" / f"train_step_{device.type}.json"
    atomic_write_json(out, report)
    print(f"wrote {out}")
    print(json.dumps({"ratio": round(ratio, 3), "meets_goal": ratio <= 1.8}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
