"""Command lines ``cct-train`` and ``cct-eval`` (no ROS needed; run under torchrun for DDP).

    cct-train --config config/train.yaml --data DIR --out RUN_DIR [--set a.b=value ...]
              [--resume PATH|auto] [--synthetic]
    torchrun --nproc_per_node 2 -m cct_surgical_seg.train.cli --data DIR --out RUN_DIR
    cct-eval CHECKPOINT DATA_DIR [--split auto|val|test|train|all] [--json OUT] [--size H W | --native]

Exit codes: 0 done, 2 bad configuration/data/checkpoint (one message, no traceback),
128 + signal number when SIGINT/SIGTERM stopped training (``last.pt`` was written first).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("cct_surgical_seg.train")


def _setup_logging(verbose: bool, rank: int = 0) -> None:
    level = logging.DEBUG if verbose else (logging.INFO if rank == 0 else logging.WARNING)
    logging.basicConfig(level=level, format=f"%(asctime)s [rank {rank}] %(levelname)s %(message)s")


# --------------------------------------------------------------------------- cct-train


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cct-train",
        description="Train DeepLabV3+ with Cross-Consistency Training on labelled + unlabelled frames.",
    )
    p.add_argument("--config", type=Path, help="YAML config (default: built-in defaults = config/train.yaml)")
    p.add_argument("--data", type=Path, help="dataset root (images/, masks/, unlabelled/, MANIFEST.csv)")
    p.add_argument("--out", type=Path, required=True, help="run directory (checkpoints, CSV logs, config)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set optim.lr=5e-3 --set data.crop_size=[256,320]",
    )
    p.add_argument(
        "--unlabelled",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="more unlabelled frames: a folder of images or a video file (repeatable; "
        "adds to data.extra_unlabelled)",
    )
    p.add_argument(
        "--resume",
        metavar="PATH|auto",
        help="continue from a checkpoint; 'auto' = RUN_DIR/last.pt if it exists",
    )
    p.add_argument(
        "--synthetic",
        action="store_true",
        help="render a small simulator dataset into RUN_DIR/synthetic_data (data.synthetic)",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _synthetic_dataset(cfg: Any, run_dir: Path, is_main: bool) -> Path:
    """Render (once) the simulator dataset configured in ``data.synthetic``.

    Imported lazily: the simulator is another layer, and a training install may lack it.
    """
    from cct_surgical_seg.train.config import ConfigError

    try:
        sim_dataset = importlib.import_module("cct_surgical_seg.sim.dataset")
    except ImportError as exc:
        raise ConfigError(f"--synthetic needs cct_surgical_seg.sim.dataset ({exc})") from exc
    root = run_dir / "synthetic_data"
    s = cfg.data.synthetic
    if is_main and not (root / "MANIFEST.csv").is_file():
        log.info(
            "rendering a synthetic dataset (%d labelled, %d unlabelled) into %s", s.frames, s.unlabelled, root
        )
        sim_dataset.write_dataset(
            root, s.frames, s.unlabelled, seed=s.seed, width=s.width, height=s.height, sequences=s.sequences
        )
    return root


def train_main(argv: Sequence[str] | None = None) -> int:
    args = train_parser().parse_args(argv)
    # heavy imports after argument parsing, so --help is instant
    from cct_surgical_seg.model.checkpoint import CheckpointError
    from cct_surgical_seg.model.encoder import PretrainedWeightsError
    from cct_surgical_seg.train import trainer as T
    from cct_surgical_seg.train.config import ConfigError, load_config
    from cct_surgical_seg.train.data import DatasetError

    try:
        cfg = load_config(args.config, args.overrides)
        if args.data is not None:
            cfg.data.root = str(args.data)
        cfg.data.extra_unlabelled += [str(path) for path in args.unlabelled]
        ctx, device = T.init_distributed(cfg.device)
    except (ConfigError, ValueError, RuntimeError) as exc:
        print(f"cct-train: {exc}", file=sys.stderr)
        return 2
    _setup_logging(args.verbose, ctx.rank)
    run_dir: Path = args.out
    try:
        if args.synthetic:
            if args.data is not None:
                raise ConfigError("give either --data or --synthetic, not both")
            root = _synthetic_dataset(cfg, run_dir, ctx.is_main)
            T._barrier(ctx)
        elif cfg.data.root is None:
            raise ConfigError("no dataset: pass --data DIR (or data.root in the config, or --synthetic)")
        else:
            root = Path(cfg.data.root)
        cfg.data.root = str(root)
        data = T.prepare_data(cfg, root, run_dir, ctx)
        trainer = T.Trainer(cfg, data, run_dir, ctx, device)
        if args.resume:
            resume = run_dir / "last.pt" if args.resume == "auto" else Path(args.resume)
            if resume.is_file() or args.resume != "auto":
                trainer.resume(resume)
            elif ctx.is_main:
                log.info("--resume auto: no %s yet, starting from scratch", resume)
        log.info(
            "device %s, world size %d, %d steps (%d warm-up + %d CCT), %d aux decoders",
            device,
            ctx.world_size,
            cfg.total_steps,
            cfg.train.warmup_steps,
            cfg.train.cct_steps,
            len(trainer.model.aux_decoders),
        )
        metrics = trainer.fit()
    except T.TrainingInterrupted as exc:
        if ctx.is_main:
            print(f"cct-train: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except (ConfigError, DatasetError, CheckpointError, PretrainedWeightsError, ValueError) as exc:
        # ValueError: ModelConfig/AuxConfig reject bad model/aux keys with a message naming them
        log.debug("details", exc_info=True)
        print(f"cct-train: {exc}", file=sys.stderr)
        return 2
    finally:
        if ctx.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    if ctx.is_main and metrics:
        from cct_surgical_seg.train.metrics import format_table

        print(format_table(metrics))
        print(f"best {cfg.train.best_metric}: {trainer.best_metric:.4f}; checkpoints in {run_dir}")
    return 0


# --------------------------------------------------------------------------- cct-eval


def eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cct-eval", description="Per-class Dice/IoU of a checkpoint on a dataset."
    )
    p.add_argument("checkpoint", type=Path)
    p.add_argument("data", type=Path, help="dataset root (images/ + masks/ [+ MANIFEST.csv])")
    p.add_argument(
        "--split",
        choices=("auto", "val", "test", "train", "all"),
        default="auto",
        help="frames to score; auto = the manifest's val split if there is one, else all "
        "(all = train + val; test only when asked for)",
    )
    p.add_argument("--json", type=Path, help="also write the figures as JSON here")
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="network input size (default: the training eval_size stored in the checkpoint)",
    )
    size.add_argument("--native", action="store_true", help="run at each image's own size")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--num-workers", type=int, default=0)
    return p


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def eval_main(argv: Sequence[str] | None = None) -> int:
    args = eval_parser().parse_args(argv)
    from cct_surgical_seg.io_utils import atomic_write_json
    from cct_surgical_seg.model.checkpoint import CheckpointError, load_checkpoint, load_segmenter
    from cct_surgical_seg.train import data as D
    from cct_surgical_seg.train.metrics import format_table
    from cct_surgical_seg.train.trainer import evaluate, resolve_device

    _setup_logging(False)
    try:
        device = resolve_device(args.device)
        segmenter, model_cfg = load_segmenter(args.checkpoint, map_location=device)
        state = load_checkpoint(args.checkpoint).get("train_state") or {}
        data_cfg = (state.get("config") or {}).get("data") or {}
        index = D.scan_dataset(args.data, data_cfg.get("val_fraction", 0.2), data_cfg.get("split_seed", 0))
        split = args.split
        if split == "auto":
            split = "val" if (args.data / "MANIFEST.csv").is_file() and index.val else "all"
        samples = {
            "val": index.val,
            "test": index.test,
            "train": index.train,
            "all": index.train + index.val,
        }[split]
        ignore = int(data_cfg.get("ignore_index", 255))
        check = D.DatasetIndex(index.root, train=samples)
        D.validate_index(check, model_cfg.num_classes, ignore, splits=("train",))
        if args.native:
            size = None
        elif args.size:
            size = tuple(args.size)
        else:
            stored = data_cfg.get("eval_size")
            size = tuple(stored) if stored else None
        loader = D.eval_loader(samples, size, args.batch_size, args.num_workers)
        summary = evaluate(segmenter, loader, model_cfg, device, ignore)
    except (CheckpointError, D.DatasetError, RuntimeError) as exc:
        print(f"cct-eval: {exc}", file=sys.stderr)
        return 2
    print(
        f"{args.checkpoint} on {args.data} [{split}: {len(samples)} frames, "
        f"input {'native' if size is None else f'{size[0]}x{size[1]}'}]"
    )
    print(format_table(summary))
    if args.json:
        atomic_write_json(
            args.json,
            _json_safe(
                {
                    "checkpoint": str(args.checkpoint),
                    "data": str(args.data),
                    "split": split,
                    "frames": len(samples),
                    "input_size": list(size) if size else None,
                    "metrics": summary,
                }
            ),
        )
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":  # torchrun -m cct_surgical_seg.train.cli ...
    sys.exit(train_main())
