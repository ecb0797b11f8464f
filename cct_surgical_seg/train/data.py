"""Training data: dataset layout, validation, label-fraction subsets, augmentation, loaders.

Layout (docs/design.md)::

    ROOT/images/<name>.(png|jpg)      labelled frames (RGB)
    ROOT/masks/<name>.png             uint8 class ids, same size as the image
    ROOT/unlabelled/<name>.(png|jpg)  optional unlabelled frames
    ROOT/MANIFEST.csv                 optional: file,video_or_group,split,mask
    ROOT/splits/{train,val,test,unlabelled}.txt   optional instead of a manifest: one image path a line

Splits: ``train`` (labelled training frames), ``val`` (validated on during training), ``test``
(never read by training; scored with ``cct-eval --split test``), ``unlabelled``.

Why so much checking up front: a training run takes hours, and a bad mask found at step
40 000 (or, worse, a class id the loss silently ignores) wastes all of it. ``validate_index``
reads every file once before the first step and raises one :class:`DatasetError` naming the
first problems.

Why the loaders look unusual: every random choice (sample order, augmentation) is a pure
function of ``(seed, epoch, position)``. A resumed run only has to restore two integers per
stream to draw exactly the batches the uninterrupted run would have drawn, whatever
``num_workers`` is, and DDP ranks see disjoint shards of the same permutation.
"""

from __future__ import annotations

import csv
import math
import multiprocessing
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cct_surgical_seg.train.appearance import AppearanceConfig, augment_appearance

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "val", "test", "unlabelled")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
MAX_REPORTED_PROBLEMS = 20


class DatasetError(ValueError):
    """The dataset cannot be trained on; the message lists the offending files."""


@dataclass(frozen=True)
class Sample:
    """One frame: an image, its mask (None when unlabelled), its video/group and split."""

    image: Path
    mask: Path | None
    group: str
    split: str


@dataclass
class DatasetIndex:
    """All frames of a dataset root, by split."""

    root: Path
    train: list[Sample] = field(default_factory=list)
    val: list[Sample] = field(default_factory=list)
    test: list[Sample] = field(default_factory=list)
    unlabelled: list[Sample] = field(default_factory=list)

    def summary(self) -> str:
        groups = sorted({s.group for s in self.train})
        test = f", test {len(self.test)}" if self.test else ""
        return (
            f"{self.root}: train {len(self.train)} labelled ({len(groups)} groups), "
            f"val {len(self.val)}{test}, unlabelled {len(self.unlabelled)}"
        )


# --------------------------------------------------------------------------- layout


def group_of(name: str) -> str:
    """Video/group of a file without a manifest: the name up to its first '_' (``seq1_f0003``).

    Frames of one video are nearly identical, so splits must never cut through a video.
    """
    stem = Path(name).stem
    return re.split(r"[_\-]", stem, maxsplit=1)[0] or stem


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _mask_for(root: Path, image: Path) -> Path:
    return root / "masks" / (image.stem + ".png")


def _read_manifest(root: Path, manifest: Path) -> list[Sample]:
    samples: list[Sample] = []
    with manifest.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"file", "split"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{manifest}: missing column(s) {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            split = (row.get("split") or "").strip()
            if split not in SPLITS:
                raise DatasetError(f"{manifest}:{line}: split {split!r} is not one of {SPLITS}")
            image = root / row["file"].strip()
            mask_field = (row.get("mask") or "").strip()
            if split == "unlabelled":
                mask = None
            elif mask_field:
                mask = root / mask_field
            else:
                mask = _mask_for(root, image)
            group = (row.get("video_or_group") or "").strip() or group_of(image.name)
            samples.append(Sample(image, mask, group, split))
    return samples


def _read_split_files(root: Path, folder: Path) -> list[Sample]:
    samples: list[Sample] = []
    for split in SPLITS:
        listing = folder / f"{split}.txt"
        if not listing.is_file():
            continue
        for raw in listing.read_text(encoding="utf-8").splitlines():
            name = raw.strip()
            if not name or name.startswith("#"):
                continue
            image = root / name
            mask = None if split == "unlabelled" else _mask_for(root, image)
            samples.append(Sample(image, mask, group_of(image.name), split))
    return samples


def split_by_group(
    samples: Sequence[Sample], fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Split ``samples`` into (kept, drawn) with about ``fraction`` of them drawn, whole groups at a time.

    With a single group there is nothing to keep apart, so frames are drawn as evenly spaced
    blocks instead (still better than random frames, whose neighbours would leak).
    """
    if fraction <= 0 or not samples:
        return list(samples), []
    groups = sorted({s.group for s in samples})
    rng = np.random.default_rng(seed)
    if len(groups) > 1:
        order = [groups[i] for i in rng.permutation(len(groups))]
        target = fraction * len(samples)
        drawn_groups: set[str] = set()
        count = 0
        sizes = {g: sum(1 for s in samples if s.group == g) for g in groups}
        for g in order:
            if count >= target or len(drawn_groups) == len(groups) - 1:
                break
            drawn_groups.add(g)
            count += sizes[g]
        drawn = [s for s in samples if s.group in drawn_groups]
        kept = [s for s in samples if s.group not in drawn_groups]
        return kept, drawn
    n_drawn = max(1, round(fraction * len(samples)))
    start = int(rng.integers(0, len(samples) - n_drawn + 1))
    drawn = list(samples[start : start + n_drawn])
    kept = list(samples[:start]) + list(samples[start + n_drawn :])
    return kept, drawn


def scan_dataset(root: str | Path, val_fraction: float = 0.2, seed: int = 0) -> DatasetIndex:
    """Index a dataset root: MANIFEST.csv, else splits/*.txt, else images/ + masks/ + unlabelled/.

    Without a manifest or split files every labelled frame is ``train`` and a validation split
    of about ``val_fraction`` is drawn by group (deterministic with ``seed``).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist or is not a folder")
    manifest = root / "MANIFEST.csv"
    if manifest.is_file():
        samples = _read_manifest(root, manifest)
    elif (root / "splits").is_dir():
        samples = _read_split_files(root, root / "splits")
    else:
        samples = [
            Sample(p, _mask_for(root, p), group_of(p.name), "train") for p in _images_in(root / "images")
        ]
        samples += [Sample(p, None, group_of(p.name), "unlabelled") for p in _images_in(root / "unlabelled")]
        labelled = [s for s in samples if s.split == "train"]
        train, val = split_by_group(labelled, val_fraction, seed)
        samples = (
            train + [replace(s, split="val") for s in val] + [s for s in samples if s.split == "unlabelled"]
        )
    index = DatasetIndex(root)
    for s in samples:
        getattr(index, s.split).append(s)
    return index


# --------------------------------------------------------------------------- extra unlabelled frames


def extra_unlabelled(sources: Sequence[str | Path], cache: Path, video_stride: int = 10) -> list[Sample]:
    """Unlabelled frames from folders of images and from video files (every ``video_stride``-th frame).

    This is how a site adds its own unlabelled video to training. Video frames are written once
    to ``cache/<video stem>/`` as JPEG (a rerun or a resume reuses them), so the loaders read
    them like any other frame. The group of a frame is its folder's or video's name.
    """
    samples: list[Sample] = []
    for source in map(Path, sources):
        if source.is_dir():
            frames = _images_in(source)
        elif source.is_file() and source.suffix.lower() in VIDEO_SUFFIXES:
            frames = _video_frames(source, cache / source.stem, video_stride)
        else:
            raise DatasetError(
                f"{source}: extra unlabelled source must be a folder of images or a video "
                f"({', '.join(VIDEO_SUFFIXES)})"
            )
        if not frames:
            raise DatasetError(f"{source}: no frames found")
        samples += [Sample(frame, None, source.stem, "unlabelled") for frame in frames]
    return samples


def _video_frames(video: Path, folder: Path, stride: int) -> list[Path]:
    """Every ``stride``-th frame of ``video`` as ``folder/<stem>_f<index>.jpg`` (written once)."""
    done = folder / ".complete"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        capture = cv2.VideoCapture(str(video))
        if not capture.isOpened():
            raise DatasetError(f"{video}: cannot open video")
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % stride == 0:
                name = folder / f"{video.stem}_f{index:06d}.jpg"
                cv2.imwrite(str(name), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
            index += 1
        capture.release()
        done.touch()
    return _images_in(folder)


def check_no_leak(labelled: Sequence[Sample], held_out: Sequence[Sample]) -> None:
    """Raise if a frame that is held out (val or test) would be trained on with its mask."""
    held = {s.image.resolve() for s in held_out}
    leaked = sorted(str(s.image) for s in labelled if s.image.resolve() in held)
    if leaked:
        raise DatasetError(
            f"{len(leaked)} val/test frame(s) are also labelled training frames, e.g. {leaked[:3]}"
        )


# --------------------------------------------------------------------------- validation


def read_image(path: Path) -> np.ndarray:
    """An RGB uint8 HxWx3 image (grey and RGBA files are converted)."""
    data = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if data is None:
        raise DatasetError(f"{path}: cannot read image (missing, unsupported or corrupt)")
    return cv2.cvtColor(data, cv2.COLOR_BGR2RGB)


def read_mask(path: Path) -> np.ndarray:
    """A uint8 HxW class-id mask; a 3-channel file is accepted when all channels are equal."""
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise DatasetError(f"{path}: cannot read mask (missing, unsupported or corrupt)")
    if data.ndim == 3:
        if not (np.array_equal(data[..., 0], data[..., 1]) and np.array_equal(data[..., 0], data[..., 2])):
            raise DatasetError(f"{path}: mask has colour channels; expected single-channel class ids")
        data = data[..., 0]
    if data.dtype != np.uint8:
        raise DatasetError(f"{path}: mask dtype is {data.dtype}; expected uint8 class ids")
    return data


def _image_size(path: Path) -> tuple[int, int] | None:
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return None if data is None else (int(data.shape[0]), int(data.shape[1]))


def find_problems(
    index: DatasetIndex,
    num_classes: int,
    ignore_index: int = 255,
    splits: Sequence[str] = SPLITS,
    limit: int = MAX_REPORTED_PROBLEMS,
) -> list[str]:
    """Read every file of ``splits`` once; return up to ``limit`` problems, each naming its file."""
    problems: list[str] = []

    def add(msg: str) -> bool:
        problems.append(msg)
        return len(problems) >= limit

    for split in splits:
        empty = split in ("train", "val") and not getattr(index, split)
        if empty and add(f"{index.root}: split '{split}' is empty"):
            return problems
    for split in splits:
        for s in getattr(index, split):
            if not s.image.is_file():
                if add(f"{s.image}: image file missing ({split})"):
                    return problems
                continue
            size = _image_size(s.image)
            if size is None:
                if add(f"{s.image}: cannot read image ({split})"):
                    return problems
                continue
            if s.mask is None:
                continue
            if not s.mask.is_file():
                if add(f"{s.mask}: mask file missing for {s.image.name} ({split})"):
                    return problems
                continue
            try:
                mask = read_mask(s.mask)
            except DatasetError as err:
                if add(str(err)):
                    return problems
                continue
            if mask.shape != size:
                if add(
                    f"{s.mask}: mask size {mask.shape[1]}x{mask.shape[0]} != image size "
                    f"{size[1]}x{size[0]} ({s.image.name})"
                ):
                    return problems
                continue
            ids = np.unique(mask)
            bad = [int(v) for v in ids if v >= num_classes and v != ignore_index]
            if bad and add(
                f"{s.mask}: unknown class id(s) {bad} (num_classes={num_classes}, "
                f"ignore_index={ignore_index})"
            ):
                return problems
    return problems


def validate_index(
    index: DatasetIndex, num_classes: int, ignore_index: int = 255, splits: Sequence[str] = SPLITS
) -> None:
    """Raise one :class:`DatasetError` listing the first problems, or return if the data are sound."""
    problems = find_problems(index, num_classes, ignore_index, splits)
    if problems:
        more = " (first problems only)" if len(problems) >= MAX_REPORTED_PROBLEMS else ""
        raise DatasetError(f"dataset {index.root} is not usable{more}:\n  " + "\n  ".join(problems))


# --------------------------------------------------------------------------- label fraction


def select_label_fraction(
    samples: Sequence[Sample], fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Keep about ``fraction`` of the labelled frames, spread over every group and over time.

    Returns ``(kept, dropped)``; the dropped frames lose their masks and join the unlabelled
    pool (that is the semi-supervised experiment). Each group keeps its share (largest
    remainder, at least one frame) picked at evenly spaced positions in name order from a
    seeded offset, because neighbouring video frames are near duplicates and a random pick
    would waste labels on them.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"label_fraction must be in (0, 1], got {fraction}")
    if fraction >= 1 or not samples:
        return list(samples), []
    by_group: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_group[s.group].append(s)
    groups = sorted(by_group)
    total = max(len(groups), round(fraction * len(samples)))
    exact = {g: total * len(by_group[g]) / len(samples) for g in groups}
    quota = {g: min(len(by_group[g]), max(1, math.floor(exact[g]))) for g in groups}
    for g in sorted(groups, key=lambda g: exact[g] - math.floor(exact[g]), reverse=True):
        if sum(quota.values()) >= total:
            break
        if quota[g] < len(by_group[g]):
            quota[g] += 1
    rng = np.random.default_rng(seed)
    kept_ids: set[int] = set()
    for g in groups:
        frames = sorted(by_group[g], key=lambda s: s.image.name)
        step = len(frames) / quota[g]
        offset = rng.uniform(0, step)
        for k in range(quota[g]):
            kept_ids.add(id(frames[min(len(frames) - 1, int(offset + k * step))]))
    kept = [s for s in samples if id(s) in kept_ids]
    dropped = [replace(s, mask=None, split="unlabelled") for s in samples if id(s) not in kept_ids]
    return kept, dropped


# --------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation; see config/train.yaml (``data``) for what each knob means."""

    crop_size: tuple[int, int] = (320, 320)
    scale_range: tuple[float, float] = (0.75, 1.5)
    hflip: bool = True
    vflip: bool = False
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02
    ignore_index: int = 255
    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)

    @classmethod
    def from_data(cls, data: Any) -> AugmentConfig:
        """The augmentation fields of a ``TrainConfig.data`` section (lists become tuples)."""
        values = {f.name: getattr(data, f.name) for f in fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def color_jitter(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Brightness, contrast, saturation and hue jitter of an RGB uint8 image (geometry untouched)."""
    out = image.astype(np.float32)
    if cfg.brightness > 0:
        out *= rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    if cfg.contrast > 0:
        mean = out.mean()
        out = (out - mean) * rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) + mean
    if cfg.saturation > 0:
        grey = out @ np.array([0.299, 0.587, 0.114], np.float32)
        out = (out - grey[..., None]) * rng.uniform(1 - cfg.saturation, 1 + cfg.saturation) + grey[..., None]
    out = np.clip(out, 0, 255).astype(np.uint8)
    if cfg.hue > 0:
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)
        shift = round(rng.uniform(-cfg.hue, cfg.hue) * 180)
        hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return out


def random_scale_crop(
    image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[np.ndarray, np.ndarray | None]:
    """Scale by a random factor, then crop (padding if needed) to ``crop_size``, image and mask alike.

    The factor is relative to the scale at which the image just covers the crop, so a
    640x512 frame and a 320x320 crop see most of the frame at 1.0 and a zoom at 1.5.
    Padding is black in the image and ``ignore_index`` in the mask, so it never counts.
    """
    ch, cw = cfg.crop_size
    h, w = image.shape[:2]
    scale = max(ch / h, cw / w) * rng.uniform(*cfg.scale_range)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    if mask is not None:
        mask = cv2.resize(mask, (nw, nh), interpolation=cv2.INTER_NEAREST)
    ph, pw = max(0, ch - nh), max(0, cw - nw)
    if ph or pw:
        image = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        if mask is not None:
            mask = cv2.copyMakeBorder(mask, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=cfg.ignore_index)
    y = int(rng.integers(0, image.shape[0] - ch + 1))
    x = int(rng.integers(0, image.shape[1] - cw + 1))
    image = image[y : y + ch, x : x + cw]
    if mask is not None:
        mask = mask[y : y + ch, x : x + cw]
    return image, mask


def augment(
    image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[np.ndarray, np.ndarray | None]:
    """The training augmentation: scale + crop, flips (aligned), then appearance (mask-guided
    recolouring, ``train/appearance.py``) and colour jitter (image only)."""
    image, mask = random_scale_crop(image, mask, rng, cfg)
    if cfg.hflip and rng.random() < 0.5:
        image = image[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]
    if cfg.vflip and rng.random() < 0.5:
        image = image[::-1]
        mask = None if mask is None else mask[::-1]
    image, mask = np.ascontiguousarray(image), None if mask is None else np.ascontiguousarray(mask)
    image = augment_appearance(image, mask, rng, cfg.appearance, cfg.ignore_index)
    return color_jitter(image, rng, cfg), mask


def to_tensor_image(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW uint8 tensor (normalised later, on the device, which is cheaper)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 N,3,H,W RGB -> the float input the networks expect: (x/255 - mean) / std."""
    m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - m) / s


# --------------------------------------------------------------------------- datasets


class TrainFrames(Dataset):
    """Augmented training frames; an item key is ``(index, seed)`` so augmentation is reproducible.

    Returns ``{"image": uint8 3xHxW, "mask": int64 HxW}`` (no mask for unlabelled frames).
    """

    def __init__(self, samples: Sequence[Sample], aug: AugmentConfig, labelled: bool) -> None:
        self.samples = list(samples)
        self.aug = aug
        self.labelled = labelled

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = key
        sample = self.samples[index]
        rng = np.random.default_rng(seed)
        image = read_image(sample.image)
        mask = read_mask(sample.mask) if self.labelled and sample.mask is not None else None
        image, mask = augment(image, mask, rng, self.aug)
        item = {"image": to_tensor_image(image)}
        if mask is not None:
            item["mask"] = torch.from_numpy(mask.astype(np.int64))
        return item


class EvalFrames(Dataset):
    """Validation frames: the image resized to ``size`` (H, W), the mask at its native size.

    Metrics are computed at the mask's own resolution (logits are upsampled), so figures do
    not depend on the evaluation size. ``size=None`` keeps the native image size.
    """

    def __init__(self, samples: Sequence[Sample], size: tuple[int, int] | None) -> None:
        self.samples = [s for s in samples if s.mask is not None]
        self.size = size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        image = read_image(sample.image)
        if self.size is not None:
            image = cv2.resize(image, (self.size[1], self.size[0]), interpolation=cv2.INTER_LINEAR)
        mask = read_mask(sample.mask)  # type: ignore[arg-type]
        return {
            "image": to_tensor_image(image),
            "mask": torch.from_numpy(mask.astype(np.int64)),
            "name": sample.image.name,
        }


def collate_eval(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack images (same size); keep masks as a list (native sizes may differ)."""
    return {
        "image": torch.stack([it["image"] for it in items]),
        "mask": [it["mask"] for it in items],
        "name": [it["name"] for it in items],
    }


def eval_loader(
    samples: Sequence[Sample],
    size: tuple[int, int] | None,
    batch_size: int,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """A deterministic loader over this rank's share of the validation frames."""
    dataset = EvalFrames(samples, size)
    indices = list(range(rank, len(dataset), world_size))
    subset = torch.utils.data.Subset(dataset, indices)
    return DataLoader(
        subset,
        batch_size=batch_size if size is not None else 1,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_eval,
        worker_init_fn=_worker_init if num_workers > 0 else None,
        multiprocessing_context=worker_context(num_workers),
    )


# --------------------------------------------------------------------------- resumable streams


def worker_context(num_workers: int) -> multiprocessing.context.BaseContext | None:
    """Loader workers start from a fork server, not as forks of the training process.

    Why: a fork of a process whose OpenCV thread pool is running (after Poisson blending, or
    any parallel cv2 call in the trainer) copies the pool's locks but not its threads; the
    worker's first cv2 call then waits forever (a training run hung this way). The fork server
    is a clean process that has only imported this module, so its forks start cheaply and sane.
    None (the platform default) where there is no fork server (Windows) or no worker at all.
    """
    if num_workers == 0 or "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # torch, cv2 and this module, imported once
    return context


def _worker_init(_worker_id: int) -> None:
    """One thread per loader worker: N workers x M OpenCV/torch threads would oversubscribe the CPU."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (stable across processes, unlike ``hash``)."""
    return int(np.random.SeedSequence(list(values)).generate_state(2, np.uint32).view(np.uint64)[0] >> 1)


class BatchStream:
    """An endless, resumable stream of training batches from one dataset.

    Epoch ``e`` visits ``randperm(n, seed=(seed, e))``, cut into this rank's share (the
    permutation is padded by wrapping so every rank gets as many batches), then into full
    batches. Each item carries its own augmentation seed ``(seed, e, position)``. The state is
    just ``(epoch, batch)``: the number of batches *consumed*, so prefetching workers do not
    disturb it.
    """

    def __init__(
        self,
        dataset: TrainFrames,
        batch_size: int,
        seed: int,
        num_workers: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pin_memory: bool = False,
    ) -> None:
        if len(dataset) == 0:
            raise DatasetError("cannot build a batch stream over an empty set of frames")
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.rank = rank
        self.world_size = world_size
        self.pin_memory = pin_memory
        self.epoch = 0
        self.batch = 0
        self._epoch_length = 0
        self._iter: Iterator[dict[str, torch.Tensor]] | None = None

    def batches_of_epoch(self, epoch: int) -> list[list[tuple[int, int]]]:
        n = len(self.dataset)
        g = torch.Generator().manual_seed(_mix(self.seed, epoch))
        order = torch.randperm(n, generator=g).tolist()
        per_rank = max(self.batch_size, math.ceil(n / self.world_size))  # tiny sets repeat frames
        total = per_rank * self.world_size
        order = [order[i % n] for i in range(total)]
        positions = list(range(self.rank, total, self.world_size))
        keys = [(order[p], _mix(self.seed, epoch, p)) for p in positions]
        count = len(keys) // self.batch_size
        return [keys[i * self.batch_size : (i + 1) * self.batch_size] for i in range(count)]

    def _batch_keys(self, epoch: int, batch: int) -> Iterator[list[tuple[int, int]]]:
        """Every batch from ``(epoch, batch)`` on, across epochs, without end."""
        while True:
            yield from self.batches_of_epoch(epoch)[batch:]
            epoch, batch = epoch + 1, 0

    def _start(self) -> None:
        """One DataLoader for the whole stream: its worker lives across epochs, so an epoch
        boundary costs no process start (with few labelled frames an epoch is a few steps)."""
        loader = DataLoader(
            self.dataset,
            batch_sampler=self._batch_keys(self.epoch, self.batch),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=False,
            worker_init_fn=_worker_init if self.num_workers > 0 else None,
            multiprocessing_context=worker_context(self.num_workers),
            generator=torch.Generator(),  # never draw from the global RNG (resume must not shift it)
        )
        self._iter = iter(loader)
        self._epoch_length = len(self.batches_of_epoch(self.epoch))

    def __next__(self) -> dict[str, torch.Tensor]:
        if self._iter is None:
            self._start()
        batch = next(self._iter)  # type: ignore[arg-type]
        self.batch += 1
        if self.batch == self._epoch_length:
            self.epoch, self.batch = self.epoch + 1, 0
            self._epoch_length = len(self.batches_of_epoch(self.epoch))
        return batch

    def __iter__(self) -> BatchStream:
        return self

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
        self._iter = None
