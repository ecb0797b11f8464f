"""The training loop: two stages, checkpoints, exact resume, DDP, clean interruption.

A training step reads top to bottom in :meth:`Trainer.train_step`:

1. draw a labelled batch (and in stage 2 an unlabelled one);
2. stage 1 (supervised warm-up): ``CE(model(x_l), y_l)``;
   stage 2 (CCT): one ``model.forward_cct`` over ``[x_l; x_u]``, then
   ``CE(main[:n_l], y_l) + w(t) * consistency(main, aux)`` where ``w`` ramps up from the first
   stage-2 step (``losses.ConsistencyWeight``);
3. backward, optimiser step (SGD or AdamW, backbone at lr/10), poly LR decay.

Why warm up first: the consistency target is the main decoder's own prediction; from a random
head it is noise, and pulling 30 auxiliary decoders towards noise only slows the encoder down.

Resume is exact: a checkpoint holds model, aux decoders, optimiser, scheduler, AMP scaler,
step, best metric, every RNG (torch, CUDA, numpy, python; one set per DDP rank) and the two
batch streams' positions (see ``data.BatchStream``), all as tensors and plain types so it loads
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
import os
import random
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from cct_surgical_seg.io_utils import atomic_write_text
from cct_surgical_seg.model.cct import AuxConfig, CCTModel, shared_features
from cct_surgical_seg.model.checkpoint import CheckpointError, load_checkpoint, make_payload, save_checkpoint
from cct_surgical_seg.model.config import ModelConfig
from cct_surgical_seg.train import data as D
from cct_surgical_seg.train.config import ConfigError, TrainConfig, dump_config
from cct_surgical_seg.train.losses import ConsistencyWeight, consistency_loss, supervised_loss
from cct_surgical_seg.train.metrics import ConfusionMatrix, flat_metrics, summarize
from cct_surgical_seg.train.poisson import PoissonConfig, write_poisson_frames
from cct_surgical_seg.train.strong_view import strong_view

log = logging.getLogger("cct_surgical_seg.train")

TRAIN_COLUMNS = (
    "step",
    "stage",
    "epoch",
    "lr",
    "loss",
    "sup_loss",
    "cons_loss",
    "cons_weight",
    "sec_per_step",
)


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM arrived; the step was finished and ``last.pt`` written."""

    def __init__(self, signum: int, checkpoint: Path | None) -> None:
        self.signum = signum
        self.checkpoint = checkpoint
        super().__init__(f"interrupted by signal {signum}; last checkpoint: {checkpoint}")


# --------------------------------------------------------------------------- distributed


@dataclasses.dataclass(frozen=True)
class DistContext:
    """Who we are in a torchrun job (rank 0 of 1 when run plainly)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this rank's GPU if CUDA is available, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available")
        torch.cuda.set_device(device)
    return device


def init_distributed(device_name: str) -> tuple[DistContext, torch.device]:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 (nccl on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world <= 1:
        return DistContext(), device
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank), device


def _barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


# --------------------------------------------------------------------------- RNG state


def capture_rng() -> dict[str, Any]:
    """All RNG states as tensors/lists/ints (``weights_only``-loadable, no numpy objects)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": int(py_state[0]), "state": list(py_state[1]), "gauss": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- CSV log


class CsvLog:
    """An append-only CSV (flush + fsync per row) that a resume truncates to the checkpoint's step.

    Rows logged after the last checkpoint of an interrupted run are dropped on resume (the
    resumed run logs them again), so the file never holds a step twice.
    """

    def __init__(self, path: Path, columns: Sequence[str], keep_upto: int | None) -> None:
        """Start a fresh file (``keep_upto`` None) or keep the rows with step <= ``keep_upto``."""
        self.path = path
        self.columns = list(columns)
        if path.exists() and keep_upto is not None:
            with path.open(newline="", encoding="utf-8") as handle:
                rows = [r for r in csv.DictReader(handle) if int(float(r.get("step") or 0)) <= keep_upto]
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, self.columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
            atomic_write_text(path, buffer.getvalue())
        else:
            atomic_write_text(path, ",".join(self.columns) + "\n")

    def append(self, row: dict[str, Any]) -> None:
        buffer = io.StringIO()
        csv.DictWriter(buffer, self.columns, extrasaction="ignore").writerow(
            {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
        )
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())


def _tensorboard(run_dir: Path, enabled: bool) -> Any | None:
    """A SummaryWriter when tensorboard is importable, else None (it is optional)."""
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("tensorboard is not installed; logging to CSV only")
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


# --------------------------------------------------------------------------- data


@dataclasses.dataclass
class TrainData:
    """The frames a run trains and validates on, after subsetting and Poisson editing."""

    labelled: list[D.Sample]
    unlabelled: list[D.Sample]
    val: list[D.Sample]


def prepare_data(cfg: TrainConfig, root: Path, run_dir: Path, ctx: DistContext = DistContext()) -> TrainData:
    """Index and validate the dataset, apply the label fraction, add Poisson frames.

    Fails with ``DatasetError`` before any training if a file is missing, unreadable, the wrong
    size or holds an unknown class id.
    """
    model_cfg = ModelConfig.from_dict(cfg.model)
    d = cfg.data
    index = D.scan_dataset(root, d.val_fraction, d.split_seed)
    D.validate_index(index, model_cfg.num_classes, d.ignore_index)
    labelled, dropped = D.select_label_fraction(index.train, d.label_fraction, d.label_seed)
    unlabelled = list(index.unlabelled) + dropped
    if d.extra_unlabelled:
        unlabelled += D.extra_unlabelled(d.extra_unlabelled, run_dir / "unlabelled_video", d.video_stride)
    D.check_no_leak(labelled, list(index.val) + list(index.test))
    if d.poisson.count > 0:
        folder = run_dir / "poisson"
        if ctx.is_main:
            frames = [(D.read_image(s.image), D.read_mask(s.mask)) for s in labelled if s.mask]
            poisson = PoissonConfig(**dataclasses.asdict(d.poisson))
            write_poisson_frames(frames, poisson, folder, d.ignore_index)
        _barrier(ctx)
        made = sorted((folder / "images").glob("poisson_*.png"))[: d.poisson.count]
        labelled += [D.Sample(p, folder / "masks" / p.name, "poisson", "train") for p in made]
    if ctx.is_main:
        log.info(
            "%s; training on %d labelled (label_fraction %.3g) + %d unlabelled, validating on %d",
            index.summary(),
            len(labelled),
            d.label_fraction,
            len(unlabelled),
            len(index.val),
        )
    return TrainData(labelled, unlabelled, list(index.val))


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(
    segmenter: nn.Module,
    loader: Any,
    model_cfg: ModelConfig,
    device: torch.device,
    ignore_index: int = 255,
    ctx: DistContext = DistContext(),
) -> dict[str, Any]:
    """Per-class Dice/IoU and binary Dice of ``segmenter`` over ``loader`` (all ranks summed).

    Logits are upsampled to each mask's native size before the argmax, so the figures do not
    depend on the size the network ran at. Always float32: these are the figures a run reports.
    """
    was_training = segmenter.training
    segmenter.eval()
    cm = ConfusionMatrix(model_cfg.num_classes, ignore_index)
    for batch in loader:
        x = D.normalize(batch["image"].to(device), model_cfg.mean, model_cfg.std)
        logits = segmenter(x)
        for k, mask in enumerate(batch["mask"]):
            item = logits[k : k + 1].float()
            if item.shape[-2:] != mask.shape:
                item = F.interpolate(item, size=tuple(mask.shape), mode="bilinear", align_corners=False)
            cm.update(item.argmax(1)[0], mask.to(device))
    matrix = cm.matrix
    if ctx.distributed:
        matrix = matrix.to(device)
        dist.all_reduce(matrix)
        matrix = matrix.cpu()
    segmenter.train(was_training)
    return summarize(matrix, model_cfg.class_names)


# --------------------------------------------------------------------------- precision, weight averaging


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of training steps for config ``precision`` (None = float32).

    ``auto``: bf16 on GPUs that support it (else fp16) and on CPUs with AMX tiles, float32 on
    other CPUs: with AVX512-BF16 alone (no AMX) a bf16 step of this network is no faster than a
    float32 channels-last one (bench/bench_train_step.py), while it costs precision.
    """
    if name == "fp32":
        return None
    if name in ("bf16", "fp16"):
        return torch.bfloat16 if name == "bf16" else torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and torch.cpu._is_amx_tile_supported():
        return torch.bfloat16
    return None


def build_ema(segmenter: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel | None:
    """An exponential moving average of ``segmenter``'s weights and buffers (None when decay is 0).

    The effective decay ramps as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the
    average follows the fast-changing early weights instead of remembering the initial ones.
    BatchNorm statistics are averaged with the weights (``use_buffers``); integer buffers copy.
    """
    if decay <= 0:
        return None

    @torch.no_grad()
    def update(averaged: list[Tensor], current: list[Tensor], n_averaged: Tensor) -> None:
        if not torch.is_floating_point(averaged[0]):
            torch._foreach_copy_(averaged, current)
            return
        n = float(n_averaged)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1.0 + n) / (10.0 + n)))

    return torch.optim.swa_utils.AveragedModel(segmenter, multi_avg_fn=update, use_buffers=True)


# --------------------------------------------------------------------------- optimiser


def build_optimizer(model: CCTModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (CCT reference) or AdamW; the pretrained encoder learns at ``lr * backbone_lr_mult``.

    With ``aux_lr_mult != 1`` the auxiliary decoders get their own group at ``lr * aux_lr_mult``
    (only then, so checkpoints of runs without it keep their two groups and resume).
    """
    o = cfg.optim
    backbone = list(model.segmenter.encoder.parameters())
    aux = list(model.aux_decoders.parameters()) if o.aux_lr_mult != 1.0 else []
    grouped = {id(p) for p in backbone + aux}
    head = [p for p in model.parameters() if id(p) not in grouped]
    groups = [
        {"params": backbone, "lr": o.lr * o.backbone_lr_mult, "name": "backbone"},
        {"params": head, "lr": o.lr, "name": "head"},
    ]
    if aux:
        groups.append({"params": aux, "lr": o.lr * o.aux_lr_mult, "name": "aux"})
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)


class _StepModule(nn.Module):
    """What DDP wraps: DDP only hooks ``forward``, so route both stages' passes through it."""

    def __init__(self, model: CCTModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, cct: bool, **options: Any) -> Any:
        return self.model.forward_cct(x, **options) if cct else self.model(x)


# --------------------------------------------------------------------------- trainer


class Trainer:
    """Owns model, optimiser, schedule, data streams and run directory of one training run."""

    def __init__(
        self,
        cfg: TrainConfig,
        train_data: TrainData,
        run_dir: str | Path,
        ctx: DistContext = DistContext(),
        device: torch.device | None = None,
    ) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.run_dir = Path(run_dir)
        self.device = device if device is not None else resolve_device(cfg.device)
        self.model_cfg = ModelConfig.from_dict(cfg.model)
        self.aux_cfg = AuxConfig.from_dict(cfg.aux)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

        seed_everything(cfg.seed)  # same initial weights on every rank
        self.model = CCTModel(self.model_cfg, self.aux_cfg).to(self.device)
        if ctx.distributed and self.device.type == "cuda":
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.ema = build_ema(self.model.segmenter, cfg.train.ema_decay)
        seed_everything(cfg.seed + 1000 * ctx.rank)  # independent perturbations per rank
        self.net: nn.Module = _StepModule(self.model)
        if ctx.distributed:
            self.net = nn.parallel.DistributedDataParallel(
                self.net,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=cfg.train.warmup_steps > 0,  # aux decoders idle in stage 1
            )
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = torch.optim.lr_scheduler.PolynomialLR(
            self.optimizer, total_iters=cfg.total_steps, power=cfg.optim.poly_power
        )
        self.autocast_dtype = resolve_precision(cfg.precision, self.device)
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.device.type == "cuda" and self.autocast_dtype == torch.float16
        )
        t = cfg.train
        self.consistency_weight = ConsistencyWeight(
            t.consistency_weight, round(t.rampup_fraction * t.cct_steps), start_step=t.warmup_steps
        )
        if t.class_weights is not None and len(t.class_weights) != self.model_cfg.num_classes:
            raise ConfigError(
                f"train.class_weights has {len(t.class_weights)} values for "
                f"{self.model_cfg.num_classes} classes"
            )
        self.class_weights = torch.tensor(t.class_weights, dtype=torch.float32) if t.class_weights else None

        self.labelled, self.unlabelled = self._batch_streams(train_data)
        if self.unlabelled is None and t.cct_steps > 0 and ctx.is_main:
            log.warning("no unlabelled frames: the CCT stage uses the labelled frames only")
        self.val_frames = train_data.val
        self.step = 0
        self.best_metric = -math.inf
        self.last_metrics: dict[str, Any] = {}
        self._stop_signal: int | None = None
        self._train_csv: CsvLog | None = None
        self._val_csv: CsvLog | None = None
        self._tb: Any | None = None

    def _batch_streams(self, train_data: TrainData) -> tuple[D.BatchStream, D.BatchStream | None]:
        """This rank's labelled stream and, when there are unlabelled frames, the unlabelled one."""
        d, ctx = self.cfg.data, self.ctx
        aug = D.AugmentConfig.from_data(d)
        pin = self.device.type == "cuda"

        def stream(frames: Sequence[D.Sample], labelled: bool, batch_size: int, seed: int) -> D.BatchStream:
            dataset = D.TrainFrames(frames, aug, labelled=labelled)
            return D.BatchStream(dataset, batch_size, seed, d.num_workers, ctx.rank, ctx.world_size, pin)

        labelled = stream(train_data.labelled, True, d.batch_size, self.cfg.seed)
        if not train_data.unlabelled:
            return labelled, None
        return labelled, stream(train_data.unlabelled, False, d.unlabelled_batch_size, self.cfg.seed + 1)

    # ------------------------------------------------------------------ the step

    def stage_of(self, step: int) -> int:
        """1 = supervised warm-up, 2 = CCT."""
        return 1 if step < self.cfg.train.warmup_steps else 2

    def _input(self, images: Tensor) -> Tensor:
        """uint8 N,3,H,W batch -> normalised float input on the device, in the model's memory format."""
        x = D.normalize(images.to(self.device, non_blocking=True), self.model_cfg.mean, self.model_cfg.std)
        return x.contiguous(memory_format=self.memory_format)

    @torch.no_grad()
    def _teacher_target(self, x: Tensor) -> Tensor | None:
        """The EMA model's stride-4 logits on ``x`` (eval mode) when it is the consistency target."""
        if self.cfg.train.consistency_target != "ema":
            return None
        teacher = self.ema.module
        teacher.eval()
        return shared_features(teacher, x, "aspp").native

    @property
    def deployable(self) -> nn.Module:
        """The segmenter that validation, checkpoints and export see: the EMA one when EMA is on."""
        return self.ema.module if self.ema is not None else self.model.segmenter

    def train_step(self) -> dict[str, float]:
        """One optimiser step at ``self.step``; returns the loss terms."""
        t, dev = self.cfg.train, self.device
        stage = self.stage_of(self.step)
        batch = next(self.labelled)
        x_l = self._input(batch["image"])
        y_l = batch["mask"].to(dev, non_blocking=True)
        weight = self.consistency_weight(self.step)
        self.model.train()
        autocast = (
            torch.autocast(dev.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else nullcontext()
        )
        with autocast:
            if stage == 1:
                logits = self.net(x_l, cct=False)
                sup = supervised_loss(logits, y_l, self.class_weights, self.cfg.data.ignore_index)
                cons = torch.zeros((), device=dev)
                loss = sup
            else:
                x = x_l
                if self.unlabelled is not None:
                    x = torch.cat([x_l, self._input(next(self.unlabelled)["image"])])
                out = self.net(
                    x, cct=True, target=self._teacher_target(x), strong=strong_view if t.strong_view else None
                )
                n_l = x_l.shape[0]
                sup = supervised_loss(out.main[:n_l], y_l, self.class_weights, self.cfg.data.ignore_index)
                first = 0 if t.consistency_on_labelled or self.unlabelled is None else n_l
                aux = [a[first:] for a in out.aux]
                cons = consistency_loss(out.target[first:], aux, t.confidence_threshold)
                loss = sup + weight * cons
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model.segmenter)
        self.step += 1
        return {
            "loss": float(loss.detach()),
            "sup_loss": float(sup.detach()),
            "cons_loss": float(cons.detach()),
            "cons_weight": float(weight),
            "stage": stage,
        }

    # ------------------------------------------------------------------ the loop

    def fit(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train to ``total_steps`` (or, like an interruption without the error, to ``stop_at``).

        SIGINT/SIGTERM finish the current step, write ``last.pt`` and raise
        :class:`TrainingInterrupted`. Returns the last validation figures.
        """
        t = self.cfg.train
        total = self.cfg.total_steps
        end = total if stop_at is None else min(total, stop_at)
        main = self.ctx.is_main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "config.yaml", dump_config(self.cfg))
            names = self.model_cfg.class_names
            empty = summarize(torch.zeros(len(names), len(names)), names)
            val_columns = ["step", "stage", *flat_metrics(empty)]
            keep = self.step if self.step > 0 else None  # resumed or continued: drop later rows
            self._train_csv = CsvLog(self.run_dir / "train_metrics.csv", TRAIN_COLUMNS, keep)
            self._val_csv = CsvLog(self.run_dir / "val_metrics.csv", val_columns, keep)
        self._tb = _tensorboard(self.run_dir, t.tensorboard) if main else None
        bar = None
        if main and t.progress:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=self.step, desc="cct-train", dynamic_ncols=True)
        saved_at = self.step if self.step > 0 else -1
        tick = time.perf_counter()
        try:
            with self._signals():
                while self.step < end:
                    terms = self.train_step()
                    step = self.step
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(
                            stage=terms["stage"],
                            loss=f"{terms['loss']:.3f}",
                            sup=f"{terms['sup_loss']:.3f}",
                            cons=f"{terms['cons_loss']:.4f}",
                            w=f"{terms['cons_weight']:.2f}",
                            refresh=False,
                        )
                    if main and (step % t.log_every == 0 or step == end):
                        now = time.perf_counter()
                        self._log_train(step, terms, (now - tick) / max(1, t.log_every))
                        tick = now
                    if step % t.val_every == 0 or step == total:
                        self._validate_and_log()
                    if step % t.checkpoint_every == 0 or step == total:
                        self.save("last.pt")
                        saved_at = step
                    if self._should_stop():
                        break
            if saved_at != self.step:  # stopped early: make the stopping point resumable
                self.save("last.pt")
            self.sync_buffers()
            _barrier(self.ctx)
            if self._stop_signal is not None:
                raise TrainingInterrupted(self._stop_signal, self.run_dir / "last.pt")
        finally:
            if bar is not None:
                bar.close()
            if self._tb is not None:
                self._tb.close()
        return self.last_metrics

    def _log_train(self, step: int, terms: dict[str, float], sec_per_step: float) -> None:
        row = {
            "step": step,
            "epoch": self.labelled.epoch,
            "lr": self.optimizer.param_groups[1]["lr"],  # the head group: the configured lr
            "sec_per_step": sec_per_step,
            **terms,
        }
        self._train_csv.append(row)
        if self._tb is not None:
            for key in ("loss", "sup_loss", "cons_loss", "cons_weight", "lr"):
                self._tb.add_scalar(f"train/{key}", row[key], step)

    def _validate_and_log(self) -> None:
        metrics = self.validate()
        if not metrics:
            return
        flat = flat_metrics(metrics)
        if self.ctx.is_main:
            self._val_csv.append({"step": self.step, "stage": self.stage_of(self.step - 1), **flat})
            if self._tb is not None:
                for key, value in flat.items():
                    self._tb.add_scalar(f"val/{key}", value, self.step)
            log.info(
                "step %d: %s %.4f (binary Dice %.4f)",
                self.step,
                self.cfg.train.best_metric,
                metrics[self.cfg.train.best_metric],
                metrics["binary_dice"],
            )
        score = metrics[self.cfg.train.best_metric]  # identical on every rank (summed matrix)
        if not math.isnan(score) and score > self.best_metric:
            self.best_metric = score
            self.save("best.pt")

    def sync_buffers(self) -> None:
        """Give every rank rank 0's BatchNorm statistics.

        DDP broadcasts buffers at the start of each forward, so after a step each rank holds
        statistics updated by its own batch. Validation shards and checkpoints must all see the
        same model; this is also exactly what the next training forward would do anyway.
        """
        if self.ctx.distributed:
            for buffer in self.model.buffers():
                dist.broadcast(buffer, src=0)
            if self.ema is not None:
                for buffer in self.ema.module.buffers():
                    dist.broadcast(buffer, src=0)

    def validate(self) -> dict[str, Any]:
        """Validation figures on this run's val frames ({} when there are none)."""
        if not self.val_frames:
            return {}
        self.sync_buffers()
        d = self.cfg.data
        size = tuple(d.eval_size) if d.eval_size else None
        loader = D.eval_loader(
            self.val_frames, size, d.eval_batch_size, d.num_workers, self.ctx.rank, self.ctx.world_size
        )
        self.last_metrics = evaluate(
            self.deployable, loader, self.model_cfg, self.device, d.ignore_index, self.ctx
        )
        return self.last_metrics

    # ------------------------------------------------------------------ interruption

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM only set a flag; the loop finishes its step, saves and stops."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, _frame: Any) -> None:
            if self._stop_signal is not None:  # second Ctrl-C: give up at once
                raise KeyboardInterrupt
            self._stop_signal = signum
            log.warning("signal %d: finishing the step, then writing last.pt", signum)

        for s in previous:
            signal.signal(s, handler)
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _should_stop(self) -> bool:
        flag = 0 if self._stop_signal is None else self._stop_signal
        if self.ctx.distributed:  # every rank must leave the loop at the same step
            tensor = torch.tensor([flag], device=self.device if self.device.type == "cuda" else "cpu")
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
            flag = int(tensor.item())
            if flag and self._stop_signal is None:
                self._stop_signal = flag
        return flag != 0

    # ------------------------------------------------------------------ checkpoints

    def train_state(self) -> dict[str, Any]:
        rng = capture_rng()
        if self.ctx.distributed:
            every: list[Any] = [None] * self.ctx.world_size
            dist.all_gather_object(every, rng)
            rngs = every
        else:
            rngs = [rng]
        return {
            "step": self.step,
            "stage": self.stage_of(max(0, self.step - 1)),
            "epoch": self.labelled.epoch,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rngs,
            "data": {
                "labelled": self.labelled.state_dict(),
                "unlabelled": self.unlabelled.state_dict() if self.unlabelled else None,
            },
            "ramp": {
                "final_weight": self.consistency_weight.final_weight,
                "rampup_steps": self.consistency_weight.rampup_steps,
                "start_step": self.consistency_weight.start_step,
            },
            "best_metric": self.best_metric,
            **(
                {
                    "ema": {
                        "n_averaged": int(self.ema.n_averaged),
                        "raw_segmenter": self.model.segmenter.state_dict(),
                    }
                }
                if self.ema is not None
                else {}
            ),
            "world_size": self.ctx.world_size,
            "config": self.cfg.to_dict(),
        }

    def save(self, name: str) -> Path:
        """Write ``RUN_DIR/name`` atomically on rank 0 (every rank calls it: RNGs are gathered)."""
        path = self.run_dir / name
        self.sync_buffers()
        state = self.train_state()
        if self.ctx.is_main:
            payload = make_payload(
                self.deployable,
                self.model_cfg,
                aux_config=self.aux_cfg.to_dict(),
                aux_decoders=self.model.aux_decoders,
                train_state=state,
                metrics=self.last_metrics,
            )
            save_checkpoint(path, payload)
        return path

    def resume(self, path: str | Path) -> None:
        """Restore everything from a checkpoint written by :meth:`save` (any rank count)."""
        data = load_checkpoint(path, map_location="cpu")
        state = data.get("train_state")
        if not state:
            raise CheckpointError(path, "has no train_state (not a training checkpoint); cannot resume")
        if data["model_config"] != self.model_cfg.to_dict():
            raise CheckpointError(path, "model_config differs from this run's model section")
        if self.ema is not None:
            if "ema" not in state:
                raise CheckpointError(path, "has no EMA state; resume with train.ema_decay=0 or start afresh")
            self.ema.module.load_state_dict(data["segmenter"])
            self.ema.n_averaged.fill_(int(state["ema"]["n_averaged"]))
            self.model.segmenter.load_state_dict(state["ema"]["raw_segmenter"])
        else:
            self.model.segmenter.load_state_dict(data["segmenter"])
        if data.get("aux_decoders") is not None:
            self.model.aux_decoders.load_state_dict(data["aux_decoders"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.best_metric = float(state["best_metric"])
        self.last_metrics = dict(data.get("metrics") or {})
        self.labelled.load_state_dict(state["data"]["labelled"])
        if self.unlabelled is not None and state["data"]["unlabelled"] is not None:
            self.unlabelled.load_state_dict(state["data"]["unlabelled"])
        rngs = state["rng"]
        restore_rng(rngs[self.ctx.rank] if self.ctx.rank < len(rngs) else rngs[0])
        if state.get("config") != self.cfg.to_dict() and self.ctx.is_main:
            log.warning("resuming with a config that differs from the checkpoint's; using the current one")
        if self.ctx.is_main:
            log.info("resumed from %s at step %d (stage %d)", path, self.step, self.stage_of(self.step))
