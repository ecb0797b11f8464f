#!/usr/bin/env python3
"""Does INT8 cost accuracy on real frames? FP32 vs ``cct-quantize`` INT8, same models, same val.

For every finished run of ``bench/accuracy.py`` (its ``--work`` folder) the exported model is
quantized with frames of the dataset's *train* split (80, spread over the videos; the
unlabelled/ frames are not used, so any reader can repeat it with labelled frames only) and
both models are evaluated on the val video by the accuracy runner's own ``evaluate``: binary
and per-class Dice, tip error, per-frame latency. FP32 and INT8 of one run are evaluated back
to back, so they share the machine's state.

    python bench/bench_int8_accuracy.py [--dataset robotic --dataset rigid] [--runs cct-0.125 ...]

Writes ``bench/results/int8_accuracy.json`` and ``.md``. Models stay in ``--work`` (EndoVis
terms: nothing but numbers leaves it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import accuracy

from cct_surgical_seg.deploy.quantize import quantize_int8, spread_indices
from cct_surgical_seg.io_utils import atomic_write_json, atomic_write_text
from cct_surgical_seg.train.data import read_image, scan_dataset


def train_frames(data: Path, count: int) -> list[np.ndarray]:
    """``count`` labelled train frames spread evenly over the train split (all videos)."""
    train = scan_dataset(data).train
    return [read_image(train[i].image) for i in spread_indices(len(train), count)]


def row(dataset: str, run: str, precision: str, r: dict) -> dict:
    return {
        "dataset": dataset,
        "run": run,
        "precision": precision,
        "binary_dice": r["binary_dice"],
        "dice_shaft": r["dice"]["shaft"],
        "dice_manipulator": r["dice"]["manipulator"],
        "tip_error_px_median": r["tip_error_px"]["median"],
        "latency_ms_median": r["latency_ms"]["median"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", action="append", choices=sorted(accuracy.DATASETS))
    p.add_argument("--runs", nargs="+", default=["sup-0.125", "cct-0.125", "cct_poisson-0.125", "sup-1.000"])
    p.add_argument("--frames", type=int, default=80, help="calibration frames (every 4th is held out)")
    p.add_argument("--work", type=Path, default=accuracy.REPO / "runs" / "accuracy")
    p.add_argument("--out", type=Path, default=accuracy.REPO / "bench" / "results" / "int8_accuracy.json")
    args = p.parse_args()

    rows: list[dict] = []
    for dataset in args.dataset or ["robotic", "rigid"]:
        data = accuracy.DATASETS[dataset]
        frames = train_frames(data, args.frames)
        for run in args.runs:
            fp32 = args.work / dataset / run / "model-last.onnx"
            if not fp32.is_file():
                print(f"[int8] {dataset} {run}: no {fp32.name}, skipped", flush=True)
                continue
            int8 = fp32.with_name("model-last-int8.onnx")
            report = quantize_int8(fp32, int8, frames, min_agreement=0.0)  # agreement is reported
            a = row(dataset, run, "fp32", accuracy.evaluate(fp32, data))
            b = row(dataset, run, "int8", accuracy.evaluate(int8, data))
            b["pixel_agreement_held_out_train"] = report.pixel_agreement
            rows += [a, b]
            print(
                f"[int8] {dataset} {run}: binary Dice fp32 {a['binary_dice']:.3f} "
                f"int8 {b['binary_dice']:.3f}, latency {a['latency_ms_median']:.1f} -> "
                f"{b['latency_ms_median']:.1f} ms",
                flush=True,
            )

    atomic_write_json(args.out, {"what": __doc__.splitlines()[0], "calibration_frames": args.frames,
                                 "rows": rows})  # fmt: skip
    lines = [
        "# FP32 vs INT8 (cct-quantize) on the val videos",
        "",
        "| dataset | run | precision | binary Dice | Dice shaft | Dice manip. | tip err. px | "
        "pipeline ms (median) | pixel agreement (held-out train frames) |",
        "|" + "---|" * 9,
    ]
    for r in rows:
        agreement = r.get("pixel_agreement_held_out_train")
        lines.append(
            f"| {r['dataset']} | {r['run']} | {r['precision']} | {r['binary_dice']:.3f} | "
            f"{r['dice_shaft']:.3f} | {r['dice_manipulator']:.3f} | "
            f"{accuracy.fmt(r['tip_error_px_median'])} | {r['latency_ms_median']:.1f} | "
            f"{'-' if agreement is None else f'{agreement:.4f}'} |"
        )
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print(json.dumps({"wrote": [str(args.out), str(args.out.with_suffix(".md"))]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
