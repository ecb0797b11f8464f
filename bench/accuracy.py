#!/usr/bin/env python3
"""Accuracy on unseen surgical video: CCT against supervised-only, over folds of videos.

Each labelled video of a dataset is the held-out video of one fold: the fold trains on the other
videos (their labelled frames, their unlabelled frames) and is scored on the held-out one, which
gives no frame to training (except in the ``cct_adapt`` row, which adds its images, never its
masks, as unlabelled frames). Every cell of the table is the mean and std over the folds it ran.

Methods (``METHODS``), every one with the same network, budget and settings, fixed before the runs:
  sup          supervised only, on the labelled subset
  cct          supervised warm-up, then CCT with the rest of the train videos as unlabelled frames
  cct_poisson  cct plus Poisson-edited labelled frames
  cct_backbone cct with the perturbations on the backbone output and 1x1 aux heads
  cct_skip     cct with the skip aux head instead of the upsampling head
  cct_auxlr    cct with the auxiliary decoders learning at 10x the head learning rate
  sup_noaug, cct_noaug   without the mask-guided appearance augmentation
  cct_adapt    cct plus the held-out video's images as unlabelled frames (adaptation to a site)
  cct_lite1, cct_lite2   cct with the EfficientNet-Lite1 / Lite2 encoder
The main methods (sup, cct) run on every fold; the others on one fold (``--single-fold``), or on
every fold when named in ``--every-fold``.

Each run is trained with ``cct-train`` (EMA weights, the last checkpoint: nothing is picked on
the held-out video), exported to ONNX and scored through the deploy pipeline as a user runs it:
Dice/IoU per class and binary at full resolution, tip error, per-frame figures for the
confidence analysis, each instrument's score against its precision, and the learning curve on
the held-out video (every ``--val-every`` steps).

Resumable: a finished run leaves ``result.json`` and is skipped; an interrupted one continues
with ``cct-train --resume auto``. ``--report-only`` rewrites the reports from finished runs.

    nohup python bench/accuracy.py --dataset robotic --dataset rigid > runs/accuracy.log 2>&1 &

Outputs ``bench/results/accuracy-folds-<dataset>.{json,md,png}``. The EndoVis data are
research-only: nothing but numbers leaves ``--work`` (default ``runs/accuracy-folds``).
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
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
POSE_PARAMS = PoseParams(min_area_px=400)  # regions under this area are noise, as in the node
TIP_MATCH_PX = 100.0
BAND_PX = 15  # width of the band around predicted instruments in the per-frame confidence figures


@dataclass(frozen=True)
class Method:
    """A row of the table: whether it has a CCT stage, and what it changes."""

    cct: bool
    sets: tuple[str, ...] = ()
    poisson: bool = False
    adapt: bool = False


NO_AUG = ("data.appearance.enabled=false",)
METHODS: dict[str, Method] = {
    "sup": Method(cct=False),
    "cct": Method(cct=True),
    "cct_poisson": Method(cct=True, poisson=True),
    "cct_backbone": Method(cct=True, sets=("aux.placement=backbone", "aux.hidden_channels=64")),
    "cct_skip": Method(cct=True, sets=("aux.head=skip",)),
    "cct_auxlr": Method(cct=True, sets=("optim.aux_lr_mult=10",)),
    "sup_noaug": Method(cct=False, sets=NO_AUG),
    "cct_noaug": Method(cct=True, sets=NO_AUG),
    "cct_adapt": Method(cct=True, adapt=True),
    "cct_lite1": Method(cct=True, sets=("model.encoder=efficientnet_lite1",)),
    "cct_lite2": Method(cct=True, sets=("model.encoder=efficientnet_lite2",)),
}
MAIN_METHODS = ("sup", "cct")


@dataclass(frozen=True)
class Run:
    """One training run: a method at a label fraction on one fold."""

    method: str
    fraction: float
    fold: int

    @property
    def name(self) -> str:
        return f"{self.method}-{self.fraction:.3f}-fold{self.fold}"

    @classmethod
    def from_name(cls, name: str) -> Run | None:
        """The run a ``name`` (a run folder's) stands for; None for any other folder name."""
        method, _, rest = name.partition("-")
        fraction, _, fold = rest.partition("-fold")
        try:
            run = cls(method, float(fraction), int(fold))
        except ValueError:
            return None
        return run if run.name == name else None


# --------------------------------------------------------------------------- folds


def labelled_videos(data: Path) -> list[str]:
    """The dataset's labelled videos (train and val splits), in name order."""
    index = scan_dataset(data)
    return sorted({s.group for s in index.train + index.val})


def write_fold(data: Path, fold: int, folder: Path) -> Path:
    """A dataset root for ``fold``: a MANIFEST.csv with absolute paths into ``data``.

    The fold's video is ``val``; the other labelled videos are ``train``; unlabelled frames of
    the held-out video are left out. Also writes ``heldout_images/`` (links to the held-out
    video's images) for the adaptation row.
    """
    index = scan_dataset(data)
    held_out = labelled_videos(data)[fold]
    rows = [["file", "video_or_group", "split", "mask"]]
    for s in index.train + index.val:
        split = "val" if s.group == held_out else "train"
        rows.append([str(s.image.resolve()), s.group, split, str(s.mask.resolve())])
    rows += [
        [str(s.image.resolve()), s.group, "unlabelled", ""] for s in index.unlabelled if s.group != held_out
    ]
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "MANIFEST.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    images = folder / "heldout_images"
    images.mkdir(exist_ok=True)
    for s in index.train + index.val:
        link = images / s.image.name
        if s.group == held_out and not link.exists():
            link.symlink_to(s.image.resolve())
    return folder


# --------------------------------------------------------------------------- plan and training


def plan(
    fractions: list[float], folds: int, single_fold: int, methods: list[str], every_fold: Sequence[str] = ()
) -> list[Run]:
    """Runs in the order that answers the goals soonest, since the table spans sessions.

    The smallest fraction on every fold first (the headline comparison), then the largest (the
    fully supervised reference), then the one-fold rows, then the other folds of the one-fold
    methods in ``every_fold``, then any other fraction.
    """
    smallest, largest = min(fractions), max(fractions)
    main = [m for m in MAIN_METHODS if m in methods]
    others = [m for m in methods if m not in MAIN_METHODS]
    runs = [Run(m, smallest, k) for k in range(folds) for m in main]
    runs += [Run(m, largest, k) for k in range(folds) for m in main]
    runs += [Run(m, smallest, single_fold) for m in others]
    runs += [Run(m, smallest, k) for k in range(folds) for m in others if m in every_fold]
    runs += [Run(m, f, k) for f in sorted(fractions) for k in range(folds) for m in main]
    unique: list[Run] = []
    for run in runs:
        if run not in unique:
            unique.append(run)
    return unique


def finished_runs(work: Path, methods: Sequence[str]) -> list[Run]:
    """Runs of ``methods`` with a ``result.json`` under ``work`` (one dataset's folder), so that
    every report shows every finished run, whichever invocation trained it."""
    runs = [Run.from_name(done.parent.name) for done in sorted(work.glob("*/result.json"))]
    return [run for run in runs if run is not None and run.method in methods]


def train_command(run: Run, data: Path, run_dir: Path, args: argparse.Namespace) -> list[str]:
    """The cct-train command line of ``run``: identical budget for every method."""
    method = METHODS[run.method]
    warmup = args.warmup if method.cct else args.steps
    sets = {
        "seed": args.seed + run.fold,
        "device": args.device,
        "model.pretrained": True,
        "precision": "bf16",
        "data.label_fraction": run.fraction,
        "data.label_seed": args.seed + run.fold,
        "data.crop_size": f"[{args.crop[0]}, {args.crop[1]}]",
        "data.eval_size": f"[{args.eval_size[0]}, {args.eval_size[1]}]",
        "data.batch_size": args.batch,
        "data.unlabelled_batch_size": args.batch,
        "data.num_workers": args.workers,
        "data.poisson.count": args.poisson_count if method.poisson else 0,
        "train.warmup_steps": warmup,
        "train.cct_steps": args.steps - warmup,
        "train.val_every": args.val_every,
        "train.checkpoint_every": args.val_every,
        "train.progress": False,
    }
    overrides = [f"{k}={v}" for k, v in sets.items()] + list(method.sets) + list(args.set)
    cmd = [
        sys.executable,
        "-m",
        "cct_surgical_seg.train.cli",
        "--config",
        str(REPO / "config" / "train.yaml"),
        "--data",
        str(data),
        "--out",
        str(run_dir),
    ]
    if method.adapt:
        cmd += ["--unlabelled", str(data / "heldout_images")]
    if (run_dir / "last.pt").exists():
        cmd += ["--resume", "auto"]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


def train(run: Run, data: Path, run_dir: Path, args: argparse.Namespace) -> float:
    """Train (or resume) one run; returns the wall time spent in this call."""
    cmd = train_command(run, data, run_dir, args)
    print(f"[accuracy] {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    return time.perf_counter() - start


# --------------------------------------------------------------------------- evaluation


def _band(pred: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of the predicted instruments, outside them."""
    return (cv2.dilate(pred.astype(np.uint8), np.ones((2 * width + 1,) * 2, np.uint8)) > 0) & ~pred


def _mean_in(values: np.ndarray, region: np.ndarray) -> float:
    return float(values[region].mean()) if region.any() else float("nan")


def frame_figures(mask: np.ndarray, truth: np.ndarray, confidence: np.ndarray) -> dict[str, float]:
    """Per-frame binary Dice and the raw figures a frame confidence can be built from.

    ``confidence`` is the pipeline's max class probability; on a pixel predicted background,
    ``1 - confidence`` bounds the probability that it is an instrument from below.
    """
    pred, true = mask > 0, truth > 0
    total = pred.sum() + true.sum()
    dice = 1.0 if total == 0 else 2.0 * float((pred & true).sum()) / float(total)
    return {
        "binary_dice": dice,
        "pred_area": float(pred.mean()),
        "true_area": float(true.mean()),
        "conf_frame": float(confidence.mean()),
        "conf_pred": _mean_in(confidence, pred),
        "conf_band": _mean_in(confidence, _band(pred, BAND_PX)),
        "bg_doubt": float((~pred & (confidence < 0.8)).mean()),
    }


class AuxProbe:
    """Per-frame figures from a CCT checkpoint's auxiliary heads (unperturbed), in PyTorch.

    At the main decoder's stride-4 resolution: the main/aux total-variation disagreement over the
    frame, inside and around the predicted instruments, and the share of pixels the main decoder
    calls background while the mean of the auxiliary heads calls them instrument.
    """

    def __init__(self, checkpoint: Path, eval_size: tuple[int, int]) -> None:
        from cct_surgical_seg.deploy.backends.torch_backend import load_uncertainty_net

        self.net, self.cfg = load_uncertainty_net(checkpoint)
        self.size = eval_size

    def __call__(self, rgb: np.ndarray) -> dict[str, float]:
        import torch
        import torch.nn.functional as F

        from cct_surgical_seg.model.cct import shared_features
        from cct_surgical_seg.train.data import normalize

        small = cv2.resize(rgb, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)
        x = normalize(torch.from_numpy(small).permute(2, 0, 1)[None], self.cfg.mean, self.cfg.std)
        with torch.no_grad():
            shared = shared_features(self.net.segmenter, x, self.net.placement)
            main = F.softmax(shared.native, dim=1)[0]
            heads = [F.softmax(h(shared.x, shared.low, main.shape[-2:]), dim=1)[0] for h in self.net.heads]
        aux = torch.stack(heads).mean(dim=0)
        tv = torch.stack([0.5 * (h - main).abs().sum(dim=0) for h in heads]).mean(dim=0).numpy()
        pred = (main.argmax(dim=0) > 0).numpy()
        return {
            "dis_frame": float(tv.mean()),
            "dis_pred": _mean_in(tv, pred),
            "dis_band": _mean_in(tv, _band(pred, 4)),
            "aux_miss": float((~pred & (aux[0] < 0.5).numpy()).mean()),
        }


def instrument_figures(instruments: list, mask: np.ndarray, truth: np.ndarray) -> list[dict[str, float]]:
    """Per predicted instrument: its score, and as its error the share of the predicted
    instrument pixels in its box that are background in truth (the masks have no instances)."""
    out = []
    for inst in instruments:
        x, y, w, h = inst.bbox
        pred = mask[y : y + h, x : x + w] > 0
        n = int(pred.sum())
        if n:
            true = truth[y : y + h, x : x + w] > 0
            precision = float((pred & true).sum()) / n
            out.append({"score": float(inst.score), "precision": precision, "area_px": int(inst.area_px)})
    return out


def evaluate(model: Path, data: Path, probe: AuxProbe | None = None) -> dict[str, object]:
    """Dice/IoU, tip error, latency and per-frame figures of an exported model on the val split."""
    pipeline = SegmentationPipeline(create_backend("onnxruntime", model), POSE_PARAMS, track=False)
    confusion = ConfusionMatrix(len(CLASS_NAMES))
    tips = TipErrors(max_match_px=TIP_MATCH_PX)
    latency_ms: list[float] = []
    frames: list[dict[str, float]] = []
    instruments: list[dict[str, float]] = []
    for sample in scan_dataset(data).val:
        rgb, truth = read_image(sample.image), read_mask(sample.mask)
        start = time.perf_counter()
        result = pipeline(rgb)
        latency_ms.append((time.perf_counter() - start) * 1000.0)
        confusion.update(result.mask, truth)
        truth_tips = [inst.tip for inst in extract_instruments(truth, None, POSE_PARAMS)]
        tips.update([inst.tip for inst in result.instruments], truth_tips)
        instruments += instrument_figures(result.instruments, result.mask, truth)
        figures = {
            **frame_figures(result.mask, truth, result.confidence),
            "frame_confidence": result.frame_confidence,
        }
        frames.append({"frame": sample.image.name, **figures, **(probe(rgb) if probe else {})})
    summary = confusion.summary(CLASS_NAMES)
    summary["tip_error_px"] = tips.summary()
    summary["latency_ms"] = {
        "median": float(np.median(latency_ms)),
        "p95": float(np.percentile(latency_ms, 95)),
        "frames": len(latency_ms),
    }
    summary["frames"] = frames
    summary["instruments"] = instruments
    return summary


def validation_curve(run_dir: Path) -> list[list[float]]:
    """[step, binary Dice] on the held-out video during training (at the eval size)."""
    path = run_dir / "val_metrics.csv"
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [[int(row["step"]), float(row["binary_dice"])] for row in csv.DictReader(f)]


def run_one(run: Run, data: Path, run_dir: Path, args: argparse.Namespace) -> dict[str, object] | None:
    """Train (or resume, or skip) one run, then evaluate its last (EMA) checkpoint."""
    done = run_dir / "result.json"
    if done.exists():
        print(f"[accuracy] {run_dir.parent.name}/{run.name}: done, skipped", flush=True)
        result = json.loads(done.read_text())
        if "instruments" not in result and not args.report_only:  # finished before they were scored
            result["instruments"] = evaluate(run_dir / "model-last.onnx", data)["instruments"]
            atomic_write_json(done, result)
        return {**result, "val_curve": validation_curve(run_dir)}
    if args.report_only:
        return None
    spent = train(run, data, run_dir, args)
    wall_file = run_dir / "wall.json"
    wall = spent + (json.loads(wall_file.read_text())["seconds"] if wall_file.exists() else 0.0)
    atomic_write_json(wall_file, {"seconds": wall})
    model = run_dir / "model-last.onnx"
    export_onnx(run_dir / "last.pt", model, input_size=tuple(args.eval_size))
    probe = AuxProbe(run_dir / "last.pt", tuple(args.eval_size)) if METHODS[run.method].cct else None
    result = {
        "method": run.method,
        "fraction": run.fraction,
        "fold": run.fold,
        "steps": args.steps,
        "wall_s": wall,
        "checkpoint": "last.pt",
        **evaluate(model, data, probe),
    }
    atomic_write_json(done, result)
    return {**result, "val_curve": validation_curve(run_dir)}


# --------------------------------------------------------------------------- reports


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman rank correlation (NaN pairs dropped)."""
    pairs = [(a, b) for a, b in zip(x, y, strict=True) if not (math.isnan(a) or math.isnan(b))]
    if len(pairs) < 3:
        return float("nan")
    ranks = [np.argsort(np.argsort(column)) for column in zip(*pairs, strict=True)]
    return float(np.corrcoef(*ranks)[0, 1])


def frame_confidence_of(frame: dict[str, float]) -> float:
    """The pipeline's frame confidence (``deploy.pipeline.frame_confidence``) of a scored frame.

    Results written before the pipeline reported it hold the same quantity as areas.
    """
    if "frame_confidence" in frame:
        return frame["frame_confidence"]
    like = frame["pred_area"] + frame["bg_doubt"]
    return 1.0 if like == 0 else frame["pred_area"] / like


def confidence_ranking(frames: list[dict[str, float]]) -> dict[str, float]:
    """How well the frame confidence ranks frames by Dice: Spearman, and the least-confident 20 %."""
    conf = [frame_confidence_of(f) for f in frames]
    dice = [f["binary_dice"] for f in frames]
    order = np.argsort(conf)
    worst = order[: max(1, len(order) // 5)]
    return {
        "spearman": spearman(conf, dice),
        "dice_least_confident_20": float(np.mean([dice[i] for i in worst])),
    }


def score_ranking(instruments: list[dict[str, float]]) -> dict[str, float]:
    """How well the per-instrument score ranks instruments by their precision: Spearman, and the
    precision of the least-confident 20 %."""
    if not instruments:
        return {"spearman": float("nan"), "precision_least_confident_20": float("nan")}
    score = [i["score"] for i in instruments]
    precision = [i["precision"] for i in instruments]
    worst = np.argsort(score)[: max(1, len(score) // 5)]
    return {
        "spearman": spearman(score, precision),
        "precision_least_confident_20": float(np.mean([precision[i] for i in worst])),
    }


def _stats(values: list[float]) -> tuple[float, float]:
    """Mean and std (NaN, NaN for none)."""
    return (float(np.mean(values)), float(np.std(values))) if values else (math.nan, math.nan)


def summarise(results: list[dict]) -> list[dict]:
    """One row per (method, fraction): mean and std over the folds that ran, and per-fold values."""
    rows = []
    for method in METHODS:
        for fraction in sorted({r["fraction"] for r in results}):
            cell = sorted(
                (r for r in results if r["method"] == method and r["fraction"] == fraction),
                key=lambda r: r["fold"],
            )
            if not cell:
                continue
            ranking = [confidence_ranking(r["frames"]) for r in cell]
            scores = [score_ranking(r["instruments"]) for r in cell if "instruments" in r]
            rows.append(
                {
                    "method": method,
                    "fraction": fraction,
                    "folds": [r["fold"] for r in cell],
                    "binary_dice": _stats([r["binary_dice"] for r in cell]),
                    "binary_dice_per_fold": [r["binary_dice"] for r in cell],
                    "dice_shaft": _stats([r["dice"]["shaft"] for r in cell]),
                    "dice_manipulator": _stats([r["dice"]["manipulator"] for r in cell]),
                    "binary_iou": _stats([r["binary_iou"] for r in cell]),
                    "tip_median_px": _stats([r["tip_error_px"]["median"] for r in cell]),
                    "confidence_spearman": _stats([c["spearman"] for c in ranking]),
                    "dice_least_confident_20": _stats([c["dice_least_confident_20"] for c in ranking]),
                    "score_spearman": _stats([c["spearman"] for c in scores]),
                    "precision_least_confident_20": _stats(
                        [c["precision_least_confident_20"] for c in scores]
                    ),
                    "latency_ms": float(np.median([r["latency_ms"]["median"] for r in cell])),
                    "wall_min": float(np.mean([r["wall_s"] for r in cell]) / 60.0),
                }
            )
    return rows


def write_report(name: str, videos: list[str], results: list[dict], args: argparse.Namespace) -> None:
    """JSON (every run, every frame) + Markdown table (mean ± std over folds) + PNG learning curves."""
    meta = {
        "dataset": name,
        "videos": videos,
        **settings(args),
        "note": "each fold holds one labelled video out; EMA weights, last checkpoint; metrics at full "
        "resolution through ONNX Runtime; mean ± std over the folds that ran",
    }
    rows = summarise(results)
    atomic_write_json(
        args.out / f"accuracy-folds-{name}.json", {"meta": meta, "summary": rows, "runs": results}
    )
    lines = [
        f"# Accuracy on {name}: held-out videos ({', '.join(videos)})",
        "",
        f"Settings: `{json.dumps(meta)}`",
        "",
        "| method | labels | folds | binary Dice | per fold | Dice shaft | Dice manip. | binary IoU | "
        "tip err. px | conf. Spearman | Dice, least conf. 20 % | score Spearman | "
        "precision, least score 20 % | ms/frame | wall min |",
        "|" + "---|" * 15,
    ]
    for r in rows:
        pm = {k: f"{fmt(r[k][0])} ± {fmt(r[k][1])}" for k in r if isinstance(r[k], tuple)}
        lines.append(
            f"| {r['method']} | {r['fraction']:.3f} | {len(r['folds'])} | {pm['binary_dice']} | "
            f"{' / '.join(fmt(v) for v in r['binary_dice_per_fold'])} | {pm['dice_shaft']} | "
            f"{pm['dice_manipulator']} | {pm['binary_iou']} | {fmt(r['tip_median_px'][0], 0)} | "
            f"{pm['confidence_spearman']} | {pm['dice_least_confident_20']} | {pm['score_spearman']} | "
            f"{pm['precision_least_confident_20']} | {r['latency_ms']:.1f} | "
            f"{r['wall_min']:.1f} |"
        )
    lines += [
        "",
        "Confidence: the pipeline's frame confidence (instrument pixels / instrument-like pixels), "
        "against the frame's binary Dice. Score: each instrument's score (mean max class probability "
        "over its pixels), against its precision (share of the predicted instrument pixels in its box "
        "that are instrument in truth). ms/frame and wall min: wall-clock time of the evaluation "
        "per frame and of the whole run, with whatever else shared the CPU meanwhile (a paused run "
        "counts its pause): bookkeeping, not latency; bench/bench_ros_latency.py measures that.",
        "",
    ]
    lines += curve_table(results)
    atomic_write_text(args.out / f"accuracy-folds-{name}.md", "\n".join(lines) + "\n")
    plot_curves(name, results, args.out / f"accuracy-folds-{name}.png")


def curve_table(results: list[dict]) -> list[str]:
    steps = sorted({s for r in results for s, _ in r.get("val_curve", [])})
    if not steps:
        return []
    lines = [
        "Binary Dice on the held-out video during training (EMA weights, at the eval size):",
        "",
        "| run | " + " | ".join(f"step {s}" for s in steps) + " |",
        "|" + "---|" * (len(steps) + 1),
    ]
    for r in sorted(results, key=lambda r: (r["fraction"], list(METHODS).index(r["method"]), r["fold"])):
        curve = dict(r.get("val_curve", []))
        lines.append(
            f"| {r['method']} {r['fraction']:.3f} fold {r['fold']} | "
            + " | ".join(fmt(curve.get(s)) for s in steps)
            + " |"
        )
    return lines


def plot_curves(name: str, results: list[dict], path: Path) -> None:
    """Learning curves: sup, CCT and the methods run on more than one fold, every fold (left),
    and every run on the one-fold rows' fold (right); solid 1/8 labels, dashed all labels; each
    method and fraction labelled once."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [r for r in results if r.get("val_curve")]
    single = [r["fold"] for r in curves if r["method"] not in MAIN_METHODS]
    single_fold = max(set(single), key=single.count) if single else None
    folds_of: dict[str, set[int]] = {}
    for r in curves:
        folds_of.setdefault(r["method"], set()).add(r["fold"])
    every = [r for r in curves if r["method"] in MAIN_METHODS or len(folds_of[r["method"]]) > 1]
    panels = [("methods on every fold", every)]
    if single_fold is not None:
        panels.append((f"every row, fold {single_fold}", [r for r in curves if r["fold"] == single_fold]))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), sharey=True, squeeze=False)
    palette = [*plt.get_cmap("tab10").colors, *plt.get_cmap("tab20").colors[1::2]]  # 20 distinct colours
    colours = {m: palette[i % len(palette)] for i, m in enumerate(METHODS)}
    for ax, (title, runs) in zip(axes[0], panels, strict=True):
        labelled: set[tuple[str, float]] = set()
        for r in runs:
            key = (r["method"], r["fraction"])
            steps, dice = zip(*r["val_curve"], strict=True)
            style = "-" if r["fraction"] < 1 else "--"
            label = None if key in labelled else f"{r['method']} {r['fraction']:.3g}"
            labelled.add(key)
            ax.plot(steps, dice, style, color=colours[r["method"]], alpha=0.85, label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("binary Dice, held-out video")
    fig.suptitle(f"EndoVis15 {name}: learning curves (one line per run)")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    plt.close(fig)


def settings(args: argparse.Namespace) -> dict[str, object]:
    return {
        "crop": list(args.crop),
        "eval_size": list(args.eval_size),
        "steps": args.steps,
        "warmup": args.warmup,
        "batch": args.batch,
        "seed": args.seed,
        "poisson_count": args.poisson_count,
        **({"set": list(args.set)} if args.set else {}),
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--dataset",
        action="append",
        required=True,
        help="robotic, rigid, or a folder in the dataset layout (repeatable)",
    )
    p.add_argument("--fractions", type=float, nargs="+", default=[0.125, 1.0])
    p.add_argument("--folds", type=int, default=3, help="folds of the main methods (<= labelled videos)")
    p.add_argument(
        "--single-fold",
        type=int,
        default=-1,
        help="fold of the one-fold rows (default: the dataset's own val video)",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        choices=list(METHODS),
        default=list(METHODS),
        help="methods to train (the reports show every finished run under --work)",
    )
    p.add_argument(
        "--every-fold",
        nargs="+",
        choices=list(METHODS),
        default=[],
        help="one-fold methods to run on every fold too (after all one-fold rows)",
    )
    p.add_argument("--steps", type=int, default=600, help="optimiser steps per run, every method")
    p.add_argument("--warmup", type=int, default=100, help="CCT methods: supervised warm-up within --steps")
    p.add_argument("--batch", type=int, default=4, help="labelled (and unlabelled) frames per step")
    p.add_argument("--crop", type=int, nargs=2, default=[224, 288], metavar=("H", "W"))
    p.add_argument("--eval-size", type=int, nargs=2, default=[256, 320], metavar=("H", "W"))
    p.add_argument("--poisson-count", type=int, default=60)
    p.add_argument("--val-every", type=int, default=100)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="fold k trains with seed and label draw seed + k")
    p.add_argument("--device", default="auto")
    p.add_argument("--work", type=Path, default=REPO / "runs" / "accuracy-folds")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--report-only", action="store_true", help="train nothing: rewrite the reports")
    p.add_argument("--tag", default="", help="name of a variant: its runs and reports are kept apart")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra cct-train override for every run (repeatable; needs --tag)",
    )
    args = p.parse_args(argv)
    if args.set and not args.tag:
        p.error("--set changes what a run means: give the variant a --tag")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    datasets: dict[str, tuple[Path, list[str]]] = {}
    for dataset in args.dataset:
        data = DATASETS.get(dataset, Path(dataset))
        if not (data / "images").is_dir():
            raise SystemExit(f"dataset {data} has no images/ folder")
        videos = labelled_videos(data)
        if len(videos) < args.folds:
            raise SystemExit(f"{data}: {len(videos)} labelled videos, fewer than --folds {args.folds}")
        name = (dataset if dataset in DATASETS else data.name) + (f"-{args.tag}" if args.tag else "")
        datasets[name] = (data, videos)
    results: dict[str, list[dict]] = {name: [] for name in datasets}
    for name, (data, videos) in datasets.items():
        single = args.single_fold
        if single < 0:
            val_groups = sorted({s.group for s in scan_dataset(data).val})
            single = videos.index(val_groups[0]) if val_groups else 0
        datasets[name] = (data, videos, single)  # type: ignore[assignment]
    order = {
        name: plan(args.fractions, args.folds, d[2], args.methods, args.every_fold)
        for name, d in datasets.items()
    }
    for name, runs in order.items():  # finished runs of any method first: every report shows them all
        finished = finished_runs(args.work / name, list(METHODS))
        order[name] = finished + [run for run in runs if run not in finished]
    # Run-major across datasets: the headline cells fill in on every dataset first.
    for position in range(max(len(runs) for runs in order.values())):
        for name, (data, videos, _) in datasets.items():
            if position >= len(order[name]):
                continue
            run = order[name][position]
            fold_data = write_fold(data, run.fold, args.work / name / "folds" / f"fold{run.fold}")
            result = run_one(run, fold_data, args.work / name / run.name, args)
            if result is None:
                continue
            results[name].append(result)
            write_report(name, videos, results[name], args)
            print(f"[accuracy] {name} {run.name}: binary Dice {fmt(result['binary_dice'])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
