"""Dataset layout, validation (each failure names its file), label fraction, augmentation, streams."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_train_helpers import make_dataset, make_frame, write_png

from cct_surgical_seg.train import data as D
from cct_surgical_seg.train.appearance import AppearanceConfig

NUM_CLASSES = 3


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "ds", labelled=12, unlabelled=6, groups=3)


def _problem(root: Path) -> str:
    index = D.scan_dataset(root)
    with pytest.raises(D.DatasetError) as info:
        D.validate_index(index, NUM_CLASSES)
    return str(info.value)


def test_manifest_layout_is_read_as_is(dataset: Path) -> None:
    index = D.scan_dataset(dataset)
    assert len(index.train) == 8 and len(index.val) == 4 and len(index.unlabelled) == 6
    assert {s.group for s in index.val} == {"vid2"}
    assert all(s.mask is None for s in index.unlabelled)
    assert all(s.mask is not None and s.mask.is_file() for s in index.train)
    D.validate_index(index, NUM_CLASSES)  # sound data pass


def test_without_manifest_val_is_drawn_by_whole_groups(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", labelled=12, unlabelled=3, groups=4, manifest=False)
    index = D.scan_dataset(root, val_fraction=0.25, seed=1)
    train_groups = {s.group for s in index.train}
    val_groups = {s.group for s in index.val}
    assert val_groups and train_groups and not (train_groups & val_groups)
    assert len(index.train) + len(index.val) == 12 and len(index.unlabelled) == 3
    assert [s.image for s in D.scan_dataset(root, 0.25, seed=1).val] == [s.image for s in index.val]


def test_split_files_are_supported(dataset: Path) -> None:
    (dataset / "MANIFEST.csv").unlink()
    (dataset / "splits").mkdir()
    names = sorted(p.name for p in (dataset / "images").iterdir())
    (dataset / "splits" / "train.txt").write_text("\n".join(f"images/{n}" for n in names[:9]))
    (dataset / "splits" / "val.txt").write_text("\n".join(f"images/{n}" for n in names[9:]))
    index = D.scan_dataset(dataset)
    assert len(index.train) == 9 and len(index.val) == 3 and not index.unlabelled
    D.validate_index(index, NUM_CLASSES)


def test_missing_image_is_named(dataset: Path) -> None:
    victim = dataset / "images" / "vid0_f000.png"
    victim.unlink()
    assert str(victim) in _problem(dataset)


def test_missing_mask_is_named(dataset: Path) -> None:
    victim = dataset / "masks" / "vid1_f001.png"
    victim.unlink()
    message = _problem(dataset)
    assert str(victim) in message and "missing" in message


def test_unreadable_image_is_named(dataset: Path) -> None:
    victim = dataset / "unlabelled" / "vid0_u000.png"
    victim.write_bytes(b"not a png at all")
    assert str(victim) in _problem(dataset)


def test_size_mismatch_is_named(dataset: Path) -> None:
    victim = dataset / "masks" / "vid0_f003.png"
    write_png(victim, np.zeros((24, 32), np.uint8))
    message = _problem(dataset)
    assert str(victim) in message and "32x24" in message and "64x48" in message


def test_unknown_class_id_is_named_but_ignore_index_is_fine(dataset: Path) -> None:
    mask_path = dataset / "masks" / "vid1_f004.png"
    mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    mask[0, :5] = 255  # ignore index: allowed
    write_png(mask_path, mask)
    D.validate_index(D.scan_dataset(dataset), NUM_CLASSES)
    mask[1, :5] = 7
    write_png(mask_path, mask)
    message = _problem(dataset)
    assert str(mask_path) in message and "[7]" in message


def test_empty_split_fails(dataset: Path) -> None:
    rows = list(csv.reader((dataset / "MANIFEST.csv").open()))
    with (dataset / "MANIFEST.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([r for r in rows if r[2] != "val"])
    assert "split 'val' is empty" in _problem(dataset)


def test_problems_are_listed_together(dataset: Path) -> None:
    a, b = dataset / "masks" / "vid0_f000.png", dataset / "images" / "vid1_f001.png"
    a.unlink()
    b.unlink()
    message = _problem(dataset)
    assert str(a) in message and str(b) in message


def _labelled(groups: dict[str, int]) -> list[D.Sample]:
    return [
        D.Sample(Path(f"images/{g}_f{k:03d}.png"), Path(f"masks/{g}_f{k:03d}.png"), g, "train")
        for g, n in groups.items()
        for k in range(n)
    ]


def test_label_fraction_is_deterministic_and_spread_over_groups() -> None:
    samples = _labelled({"seq1": 40, "seq2": 24, "seq3": 16})
    kept, dropped = D.select_label_fraction(samples, 0.125, seed=3)
    assert len(kept) == 10 and len(kept) + len(dropped) == len(samples)
    per_group = {g: sum(s.group == g for s in kept) for g in ("seq1", "seq2", "seq3")}
    assert per_group == {"seq1": 5, "seq2": 3, "seq3": 2}
    # spread over time inside a group, not a run of neighbouring frames
    frames = sorted(int(s.image.stem.split("_f")[1]) for s in kept if s.group == "seq1")
    assert min(np.diff(frames)) >= 4
    # dropped frames become unlabelled; same seed, same subset; other seed, other subset
    assert all(s.mask is None and s.split == "unlabelled" for s in dropped)
    assert [s.image for s in D.select_label_fraction(samples, 0.125, seed=3)[0]] == [s.image for s in kept]
    assert [s.image for s in D.select_label_fraction(samples, 0.125, seed=4)[0]] != [s.image for s in kept]
    assert D.select_label_fraction(samples, 1.0, seed=0) == (samples, [])


def _class_image(mask: np.ndarray) -> np.ndarray:
    colours = np.array([[0, 0, 0], [200, 200, 200], [90, 40, 160]], np.uint8)
    return colours[mask]


def test_augmentation_keeps_image_and_mask_aligned() -> None:
    rng = np.random.default_rng(0)
    _, mask = make_frame(rng)
    image = _class_image(mask)
    cfg = D.AugmentConfig(
        crop_size=(40, 40),
        scale_range=(0.6, 1.8),
        hflip=True,
        vflip=True,
        brightness=0,
        contrast=0,
        saturation=0,
        hue=0,
        appearance=AppearanceConfig(enabled=False),
    )
    for seed in range(12):
        out_image, out_mask = D.augment(image, mask, np.random.default_rng(seed), cfg)
        assert out_image.shape == (40, 40, 3) and out_mask.shape == (40, 40)
        padded = out_mask == 255
        assert np.all(out_image[padded] == 0)
        valid = ~padded
        # interpolation blurs class borders by a pixel; everywhere else colour == class colour
        expected = _class_image(np.where(valid, out_mask, 0))
        agree = np.all(np.abs(out_image.astype(int) - expected) <= 3, axis=2)
        assert agree[valid].mean() > 0.9, seed


def test_colour_jitter_changes_colours_not_geometry() -> None:
    rng = np.random.default_rng(1)
    image, mask = make_frame(rng)
    base = D.AugmentConfig(crop_size=(32, 32), brightness=0, contrast=0, saturation=0, hue=0)
    jitter = D.AugmentConfig(crop_size=(32, 32), brightness=0.4, contrast=0.4, saturation=0.4, hue=0.05)
    plain_img, plain_mask = D.augment(image, mask, np.random.default_rng(5), base)
    jit_img, jit_mask = D.augment(image, mask, np.random.default_rng(5), jitter)
    assert np.array_equal(plain_mask, jit_mask)
    assert not np.array_equal(plain_img, jit_img)


def test_batch_stream_resumes_exactly_and_shards_disjointly(dataset: Path) -> None:
    index = D.scan_dataset(dataset)
    frames = D.TrainFrames(index.train, D.AugmentConfig(crop_size=(32, 32)), labelled=True)
    straight = D.BatchStream(frames, batch_size=3, seed=7)
    batches = [next(straight) for _ in range(7)]  # crosses epoch boundaries (8 frames, 2 batches/epoch)
    resumed = D.BatchStream(frames, batch_size=3, seed=7)
    for _ in range(3):
        next(resumed)
    state = resumed.state_dict()
    again = D.BatchStream(frames, batch_size=3, seed=7, num_workers=0)
    again.load_state_dict(state)
    for expected in batches[3:]:
        got = next(again)
        assert np.array_equal(got["image"], expected["image"])
        assert np.array_equal(got["mask"], expected["mask"])
    r0 = D.BatchStream(frames, 2, seed=7, rank=0, world_size=2).batches_of_epoch(0)
    r1 = D.BatchStream(frames, 2, seed=7, rank=1, world_size=2).batches_of_epoch(0)
    assert len(r0) == len(r1) == 2
    assert not {i for b in r0 for i, _ in b} & {i for b in r1 for i, _ in b}


_STREAM_AFTER_OPENCV_POOL = """
import sys
import cv2
import numpy as np
from cct_surgical_seg.train import data as D

cv2.setNumThreads(2)
big = np.random.default_rng(0).integers(0, 255, (1500, 1500, 3), dtype=np.uint8)
for _ in range(3):
    cv2.GaussianBlur(big, (31, 31), 0)  # runs OpenCV's thread pool in this process (as Poisson does)
index = D.scan_dataset(sys.argv[1])
frames = D.TrainFrames(index.train, D.AugmentConfig(crop_size=(32, 32)), labelled=True)
stream = D.BatchStream(frames, batch_size=3, seed=7, num_workers=1)
for _ in range(5):  # crosses epochs: every epoch starts a new worker
    next(stream)
print("batches ok")
"""


def test_loader_workers_survive_a_running_opencv_pool(dataset: Path) -> None:
    """A worker forked from a process with OpenCV's thread pool running hung on its first cv2 call."""
    import subprocess
    import sys

    try:
        done = subprocess.run(
            [sys.executable, "-c", _STREAM_AFTER_OPENCV_POOL, str(dataset)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("loader worker hung after the parent had used OpenCV's thread pool")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "batches ok" in done.stdout


def _with_test_video(root: Path) -> Path:
    """A dataset whose manifest also names a 'test' video (vid9) with masks."""
    data = make_dataset(root, labelled=9, unlabelled=3, groups=3)
    rng = np.random.default_rng(9)
    with (data / "MANIFEST.csv").open("a", newline="") as handle:
        writer = csv.writer(handle)
        for k in range(3):
            image, mask = make_frame(rng)
            write_png(data / "images" / f"vid9_f{k:03d}.png", image)
            write_png(data / "masks" / f"vid9_f{k:03d}.png", mask)
            writer.writerow([f"images/vid9_f{k:03d}.png", "vid9", "test", f"masks/vid9_f{k:03d}.png"])
    return data


def _video(path: Path, frames: int) -> Path:
    rng = np.random.default_rng(1)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(frames):
        writer.write(make_frame(rng)[0])
    writer.release()
    return path


def test_test_split_is_indexed_and_never_trained_on(tmp_path: Path) -> None:
    from test_train_helpers import tiny_config

    from cct_surgical_seg.train.trainer import prepare_data

    data = _with_test_video(tmp_path / "ds")
    index = D.scan_dataset(data)
    assert [s.group for s in index.test] == ["vid9"] * 3
    D.validate_index(index, num_classes=3)
    cfg = tiny_config()
    used = prepare_data(cfg, data, tmp_path / "run")
    trained = {s.image.name for s in used.labelled + used.unlabelled}
    assert not any(name.startswith("vid9") for name in trained)
    with pytest.raises(D.DatasetError, match="val/test frame"):
        D.check_no_leak(index.train + index.test[:1], index.test)


def test_extra_unlabelled_frames_from_folders_and_videos(tmp_path: Path) -> None:
    from test_train_helpers import tiny_config

    from cct_surgical_seg.train.trainer import prepare_data

    data = make_dataset(tmp_path / "ds", labelled=6, unlabelled=2, groups=3)
    folder = tmp_path / "site"
    for k in range(4):
        write_png(folder / f"frame{k}.png", make_frame(np.random.default_rng(k))[0])
    video = _video(tmp_path / "op.avi", frames=25)
    cfg = tiny_config()
    cfg.data.extra_unlabelled = [str(folder), str(video)]
    cfg.data.video_stride = 10
    base = len(prepare_data(tiny_config(), data, tmp_path / "run0").unlabelled)
    used = prepare_data(cfg, data, tmp_path / "run")
    extra = [s for s in used.unlabelled if s.group in ("site", "op")]
    assert len(used.unlabelled) == base + 4 + 3  # video frames 0, 10, 20
    assert all(s.mask is None for s in extra)
    cached = sorted((tmp_path / "run" / "unlabelled_video" / "op").glob("*.jpg"))
    assert [p.name for p in cached] == ["op_f000000.jpg", "op_f000010.jpg", "op_f000020.jpg"]
    assert D.read_image(cached[0]).shape == (48, 64, 3)
    with pytest.raises(D.DatasetError, match="folder of images or a video"):
        D.extra_unlabelled([tmp_path / "nothing.txt"], tmp_path / "cache")
