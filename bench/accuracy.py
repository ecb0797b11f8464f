#!/usr/bin/env python3
"""Accuracy on real surgical frames: CCT against supervised-only, by label fraction (issue 7).

For each dataset and label fraction it trains, with the package's own ``cct-train``:
  (a) ``sup``          supervised only, on the labelled subset;
  (b) ``cct``          supervised warm-up then CCT, the rest of the train split (and
                       ``unlabelled/``) as unlabelled frames;
  (c) ``cct_poisson``  (b) plus Poisson-edited labelled frames, at the smallest fraction;
  (d) ``sup_poisson``  (a) plus the same Poisson-edited frames, at the smallest fraction, so
                       the table separates what Poisson editing adds from what CCT adds.
Every run uses the same network (ImageNet-initialised Lite0 DeepLabV3+), input size,
augmentation and step budget. Each run is then exported to ONNX and evaluated on the val video
through the deploy pipeline exactly as a user would run it (ONNX Runtime, full resolution):
Dice/IoU per class and binary, tip error (tips from the package's pose code on the predicted
and the ground-truth mask, matched per instrument), and per-frame latency.

Resumable and restartable: a finished run leaves ``result.json`` and is skipped; an interrupted
one continues from its last checkpoint (``cct-train --resume auto``). Run it in the background:

    nohup python bench/accuracy.py --dataset robotic --dataset rigid > runs/accuracy.log 2>&1 &

``--report-only`` rewrites the reports from the finished runs without training anything.

Ablations: ``--tag NAME --set KEY=VALUE ...`` adds ``cct-train`` overrides to every run and
keeps the runs and reports apart (``--work/<dataset>-NAME``, ``accuracy-<dataset>-NAME.*``);
``--methods`` restricts the plan, e.g. a longer consistency ramp for CCT at 1/8 only:

    python bench/accuracy.py --dataset robotic --fractions 0.125 --methods cct \
        --tag ramp-full --set train.rampup_fraction=1.0

Outputs: ``bench/results/accuracy-<dataset>.json``, ``.md`` (the table) and ``.png`` (binary Dice
against label fraction). The EndoVis data are research-only: nothing but numbers leaves
``--work`` (default ``runs/accuracy``, git-ignored), where checkpoints and models stay.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cct_surgical_seg.deploy.backends import create_backend  # noqa: E402
from cct_surgical_seg.deploy.export import export_onnx  # noqa: E402
from cct_surgical_seg.deploy.pipeline import SegmentationPipeline  # noqa: E402
from cct_surgical_seg.deploy.poses import PoseParams, extract_instruments  # noqa: E402
from cct_surgical_seg.io_utils import atomic_write_json, atomic_write_text  # noqa: E402
from cct_surgical_seg.metrics import ConfusionMatrix, TipErrors  # noqa: E402
from cct_surgical_seg.train.data import read_image, read_mask, scan_dataset  # noqa: E402

DATASETS = {
    "robotic": REPO.parent / "shared" / "data" / "endovis15-robotic",
    "rigid": REPO.parent / "shared" / "data" / "endovis15-rigid",
}
CLASS_NAMES = ("background", "shaft", "manipulator")
# Tips: regions under this area (pixels at full resolution) are noise, as in the node's default.
POSE_PARAMS = PoseParams(min_area_px=400)
TIP_MATCH_PX = 100.0


#: table and plot order; the supervised-only methods spend the whole budget in the warm-up stage
METHODS = ("sup", "sup_poisson", "cct", "cct_poisson")
SUPERVISED_ONLY = ("sup", "sup_poisson")
WITH_POISSON = ("sup_poisson", "cct_poisson")


@dataclass(frozen=True)
class Run:
    """One cell of the table: a method at a label fraction."""

    method: str  # one of METHODS
    fraction: float

    @property
    def name(self) -> str:
        return f"{self.method}-{self.fraction:.3f}"


def plan(fractions: list[float], poisson: bool) -> list[Run]:
    """Runs in the order that answers the goal soonest, since the table may span sessions.

    First supervised and CCT at the smallest fraction (the headline comparison), then fully
    labelled supervised (the 95 % reference), then CCT + Poisson and supervised + Poisson at
    the smallest fraction, then the remaining fractions.
    """
    smallest, largest = min(fractions), max(fractions)
    runs = [Run("sup", smallest), Run("cct", smallest)]
    if largest != smallest:
        runs.append(Run("sup", largest))
    if poisson:
        runs += [Run("cct_poisson", smallest), Run("sup_poisson", smallest)]
    for fraction in sorted(fractions):
        runs += [run for run in (Run("sup", fraction), Run("cct", fraction)) if run not in runs]
    return runs


def train_overrides(run: Run, args: argparse.Namespace) -> list[str]:
    """``--set`` overrides: identical budget for every method, CCT splitting it into two stages."""
    warmup = args.steps if run.method in SUPERVISED_ONLY else args.warmup
    sets = {
        "seed": args.seed,
        "device": args.device,
        "model.pretrained": True,
        "data.label_fraction": run.fraction,
        "data.label_seed": args.seed,
        "data.crop_size": f"[{args.crop[0]}, {args.crop[1]}]",
        "data.eval_size": f"[{args.eval_size[0]}, {args.eval_size[1]}]",
        "data.batch_size": args.batch,
        "data.unlabelled_batch_size": args.batch,
        "data.num_workers": args.workers,
        "data.poisson.count": args.poisson_count if run.method in WITH_POISSON else 0,
        "train.warmup_steps": warmup,
        "train.cct_steps": args.steps - warmup,
        "train.val_every": args.val_every,
        "train.checkpoint_every": args.val_every,
        "train.progress": False,
        "aux.vat": args.aux_vat,
    }
    return [f"{k}={v}" for k, v in sets.items()] + list(args.set)  # the ablation's overrides win


def train(run: Run, data: Path, run_dir: Path, args: argparse.Namespace) -> float:
    """Train (or resume) one run with cct-train; returns the wall time spent in this call."""
    cmd = [sys.executable, "-m", "cct_surgical_seg.train.cli", "--config",
           str(REPO / "config" / "train.yaml"), "--data", str(data), "--out", str(run_dir)]
    if (run_dir / "last.pt").exists():
        cmd += ["--resume", "auto"]
    for item in train_overrides(run, args):
        cmd += ["--set", item]
    print(f"[accuracy] {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    return time.perf_counter() - start


def evaluate(model: Path, data: Path) -> dict[str, object]:
    """Dice/IoU, tip error and latency of an exported model on the val split, at full resolution.

    The val split is the one training validated on (``scan_dataset`` with the same defaults).
    """
    pipeline = SegmentationPipeline(create_backend("onnxruntime", model), POSE_PARAMS, track=False)
    confusion = ConfusionMatrix(len(CLASS_NAMES))
    tips = TipErrors(max_match_px=TIP_MATCH_PX)
    latency_ms: list[float] = []
    for sample in scan_dataset(data).val:
        rgb, truth = read_image(sample.image), read_mask(sample.mask)
        start = time.perf_counter()
        result = pipeline(rgb)
        latency_ms.append((time.perf_counter() - start) * 1000.0)
        confusion.update(result.mask, truth)
        truth_tips = [inst.tip for inst in extract_instruments(truth, None, POSE_PARAMS)]
        tips.update([inst.tip for inst in result.instruments], truth_tips)
    summary = confusion.summary(CLASS_NAMES)
    summary["tip_error_px"] = tips.summary()
    summary["latency_ms"] = {"median": float(np.median(latency_ms)),
                             "p95": float(np.percentile(latency_ms, 95)), "frames": len(latency_ms)}
    return summary


def evaluate_checkpoint(run_dir: Path, name: str, data: Path, args: argparse.Namespace) -> dict[str, object]:
    """Export ``<name>.pt`` of a run to ONNX at the evaluation size and evaluate it on val."""
    model = run_dir / f"model-{name}.onnx"
    export_onnx(run_dir / f"{name}.pt", model, input_size=tuple(args.eval_size))
    return evaluate(model, data)


def validation_curve(run_dir: Path) -> list[list[float]]:
    """[step, binary Dice] of the validations during training (val video at the eval size).

    Why it is reported: it shows when each method peaks and how fast it overfits, which the
    last-checkpoint figure alone hides.
    """
    path = run_dir / "val_metrics.csv"
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [[int(row["step"]), float(row["binary_dice"])] for row in csv.DictReader(f)]


def settings(args: argparse.Namespace) -> dict[str, object]:
    """What a result depends on: a published result is reused only under the same settings."""
    return {"crop": list(args.crop), "eval_size": list(args.eval_size), "steps": args.steps,
            "warmup": args.warmup, "batch": args.batch, "seed": args.seed,
            "poisson_count": args.poisson_count, "aux_vat": args.aux_vat,
            **({"set": list(args.set)} if args.set else {})}


def published_results(report: Path, args: argparse.Namespace) -> dict[str, dict]:
    """Runs of an earlier report (``bench/results``, committed) made with these settings, by run name.

    Why: ``--work`` holds checkpoints and is not kept (git-ignored, large, research-only data),
    so on a fresh machine the report is what says which runs are done.
    """
    if not report.exists():
        return {}
    old = json.loads(report.read_text())
    meta = old.get("meta", {})
    if any(meta.get(key) != value for key, value in settings(args).items()):
        return {}
    return {Run(r["method"], r["fraction"]).name: r for r in old.get("runs", [])}


def run_one(run: Run, data: Path, work: Path, args: argparse.Namespace,
            published: dict[str, dict] | None = None) -> dict[str, object] | None:
    """Train (or resume, or skip) one run, then evaluate its last and its best checkpoint.

    The table reports the **last** checkpoint: the best one was chosen on the val video itself,
    which flatters every method; it is kept beside it (``selected_on_val``) for reference.
    With ``--report-only`` an unfinished run is left out (None). A run found in ``published``
    (the committed report) and not in ``work`` is taken from there.
    """
    run_dir = work / run.name
    done = run_dir / "result.json"
    if done.exists():
        print(f"[accuracy] {run.name}: done, skipped", flush=True)
        return {**json.loads(done.read_text()), "val_curve": validation_curve(run_dir)}
    if run.name in (published or {}):
        print(f"[accuracy] {run.name}: done (published report), skipped", flush=True)
        return published[run.name]
    if args.report_only:
        return None
    spent = train(run, data, run_dir, args)
    wall_file = run_dir / "wall.json"
    previous = json.loads(wall_file.read_text())["seconds"] if wall_file.exists() else 0.0
    wall = previous + spent
    atomic_write_json(wall_file, {"seconds": wall})
    result = {"method": run.method, "fraction": run.fraction, "steps": args.steps, "wall_s": wall,
              "checkpoint": "last.pt", **evaluate_checkpoint(run_dir, "last", data, args)}
    if (run_dir / "best.pt").exists():
        best = evaluate_checkpoint(run_dir, "best", data, args)
        result["selected_on_val"] = {key: best[key] for key in ("dice", "iou", "binary_dice", "binary_iou")}
    else:
        result["selected_on_val"] = None
    atomic_write_json(done, result)
    return {**result, "val_curve": validation_curve(run_dir)}


def fmt(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def write_report(dataset: str, results: list[dict], args: argparse.Namespace, out: Path) -> None:
    """JSON + Markdown table + PNG plot of binary Dice against label fraction."""
    meta = {"dataset": dataset, **settings(args),
            "note": "val = held-out video; last checkpoint; metrics at full resolution through ONNX Runtime; "
                    "ms per frame = the package's frame pipeline (resize, ONNX Runtime, poses) here"}
    atomic_write_json(out / f"accuracy-{dataset}.json", {"meta": meta, "runs": results})
    head = ("| method | fraction | Dice shaft | Dice manip. | IoU shaft | IoU manip. | binary Dice | "
            "binary IoU | tip err. px (median) | binary Dice, best-on-val ckpt | ms per frame (median) | "
            "steps | wall min |")
    lines = [f"# Accuracy on {dataset} (val video)", "", f"Settings: `{json.dumps(meta)}`", "", head,
             "|" + "---|" * 13]
    ordered = sorted(results, key=lambda r: (r["fraction"], METHODS.index(r["method"])))
    for r in ordered:
        best_on_val = (r["selected_on_val"] or {}).get("binary_dice")
        lines.append(
            f"| {r['method']} | {r['fraction']:.3f} | {fmt(r['dice']['shaft'])} | "
            f"{fmt(r['dice']['manipulator'])} | {fmt(r['iou']['shaft'])} | {fmt(r['iou']['manipulator'])} | "
            f"{fmt(r['binary_dice'])} | {fmt(r['binary_iou'])} | {fmt(r['tip_error_px']['median'])} | "
            f"{fmt(best_on_val)} | {r['latency_ms']['median']:.1f} | {r['steps']} | {r['wall_s'] / 60:.1f} |")
    steps = sorted({step for r in results for step, _ in r.get("val_curve", [])})
    if steps:
        lines += ["", "Binary Dice on the val video during training (all methods alike, at the eval size):",
                  "", "| method | fraction | " + " | ".join(f"step {s}" for s in steps) + " |",
                  "|" + "---|" * (len(steps) + 2)]
        for r in ordered:
            curve = dict(r.get("val_curve", []))
            lines.append(f"| {r['method']} | {r['fraction']:.3f} | "
                         + " | ".join(fmt(curve.get(s)) for s in steps) + " |")
    atomic_write_text(out / f"accuracy-{dataset}.md", "\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method in METHODS:
        pts = sorted((r["fraction"], r["binary_dice"]) for r in results if r["method"] == method)
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=method)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("label fraction of the train split")
    ax.set_ylabel("binary instrument Dice (val)")
    ax.set_title(f"EndoVis15 {dataset}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = out / f".accuracy-{dataset}.png.tmp.png"
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, out / f"accuracy-{dataset}.png")
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", action="append", required=True,
                   help="robotic, rigid, or a folder in the dataset layout (repeatable)")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.125, 0.25, 1.0])
    p.add_argument("--no-poisson", action="store_true", help="skip the runs with Poisson editing")
    p.add_argument("--steps", type=int, default=400,
                   help="optimiser steps per run, all methods (400: a CCT run fits 30 min on 2 cores)")
    p.add_argument("--warmup", type=int, default=100, help="CCT: supervised warm-up steps within --steps")
    p.add_argument("--batch", type=int, default=4, help="labelled (and unlabelled) frames per step")
    p.add_argument("--crop", type=int, nargs=2, default=[224, 288], metavar=("H", "W"))
    p.add_argument("--eval-size", type=int, nargs=2, default=[256, 320], metavar=("H", "W"))
    p.add_argument("--aux-vat", type=int, default=2, help="VAT decoders (the costliest perturbation)")
    p.add_argument("--poisson-count", type=int, default=60)
    p.add_argument("--val-every", type=int, default=100)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--work", type=Path, default=REPO / "runs" / "accuracy")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: rewrite the reports from the runs already finished")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                   help="run only these methods (default: all)")
    p.add_argument("--tag", default="", help="ablation name: runs and reports kept apart under it")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra cct-train override for every run (repeatable; give it a --tag)")
    args = p.parse_args(argv)
    if args.set and not args.tag:
        p.error("--set changes what a run means: give the ablation a --tag")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    datasets: dict[str, Path] = {}
    for dataset in args.dataset:
        data = DATASETS.get(dataset, Path(dataset))
        if not (data / "images").is_dir():
            raise SystemExit(f"dataset {data} has no images/ folder")
        datasets[dataset if dataset in DATASETS else data.name] = data
    if args.tag:
        datasets = {f"{name}-{args.tag}": data for name, data in datasets.items()}
    results: dict[str, list[dict]] = {name: [] for name in datasets}
    published = {name: published_results(args.out / f"accuracy-{name}.json", args) for name in datasets}
    # Fraction-major order: the headline comparison (smallest fraction) on every dataset first.
    for run in [run for run in plan(args.fractions, not args.no_poisson) if run.method in args.methods]:
        for name, data in datasets.items():
            result = run_one(run, data, args.work / name, args, published[name])
            if result is None:
                continue
            results[name].append(result)
            write_report(name, results[name], args, args.out)
            print(f"[accuracy] {name} {run.name}: binary Dice {fmt(results[name][-1]['binary_dice'])}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
