"""``cct-bag``: segment the images of a ROS 2 bag offline and write the results into a new bag.

Reads an mcap or sqlite3 bag (a folder with ``metadata.yaml``, or a single ``.mcap`` file) with
rosbags (no ROS installation needed), runs every image (``sensor_msgs/Image`` or
``CompressedImage``; the bag's only camera topic, or the one given with ``--topic`` when there
are several) through the same :class:`SegmentationPipeline` the ROS node uses, and writes
``<prefix>/mask`` (mono8 class ids), ``<prefix>/instruments`` (PoseArray, tips in pixels) and
``<prefix>/markers`` (MarkerArray) stamped with the input's header stamp and log time, plus a
copy of the input topics unless ``--no-copy``. When the bag carries ground truth (as written by
``cct-sim --bag``), it prints Dice/IoU and tip error.

Why the output is written to a temporary sibling and renamed: a bag is a folder (data file +
metadata.yaml), and a crash, Ctrl-C or a truncated input half-way must not leave something at
the output path that looks like a finished bag. On error the writer is still closed properly
(so the partial bag is valid), then removed - or kept next to the output with ``--keep-partial``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2 import ReaderError, StoragePlugin, Writer, WriterError
from rosbags.serde import SerdeError

from cct_surgical_seg.resources import demo_model
from cct_surgical_seg.sim import bag_messages as bm
from cct_surgical_seg.sim.evaluation import ConfusionMatrix, TipErrors, format_rows, summary_rows

IMAGE_TYPES = (bm.IMAGE, bm.COMPRESSED_IMAGE)
DEFAULT_PREFIX = "/segmentation_node"
DEFAULT_GT_MASK_TOPIC = "/camera/gt/mask"  # what cct-sim writes
DEFAULT_GT_TIPS_TOPIC = "/camera/gt/tips"


class BagError(RuntimeError):
    """A bag that cannot be used, with the reason in words (the CLI prints it, exit code 2)."""


class Interrupted(BaseException):
    """SIGINT/SIGTERM arrived: unwinds like KeyboardInterrupt, so the partial output is removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


@contextlib.contextmanager
def atomic_bag_writer(
    out: str | os.PathLike[str], storage: str = "mcap", *, overwrite: bool = False, keep_partial: bool = False
) -> Iterator[Writer]:
    """A rosbags Writer whose bag appears at ``out`` only once it is complete and closed."""
    out = Path(out)
    if storage not in ("mcap", "sqlite3"):
        raise ValueError(f"storage must be mcap or sqlite3, not {storage!r}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"output {out} exists (pass --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:  # whatever happens (an error, a signal at any point), the temporary folder goes
        tmp_bag = tmp_root / out.name
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        writer = Writer(tmp_bag, version=9, storage_plugin=plugin)
        writer.open()
        try:
            yield writer
        except BaseException:
            with contextlib.suppress(Exception):
                writer.close()
            if keep_partial and tmp_bag.exists():
                partial = out.with_name(out.name + ".partial")
                shutil.rmtree(partial, ignore_errors=True)
                os.replace(tmp_bag, partial)
            raise
        writer.close()
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp_bag, out)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)


@dataclass
class BagReport:
    """What one run did, for the CLI summary and the tests."""

    output: Path
    frames: int = 0
    bad_frames: int = 0
    written: dict[str, int] = field(default_factory=dict)
    segmentation: ConfusionMatrix | None = None
    tips: TipErrors | None = None
    class_names: tuple[str, ...] = ("background", "shaft", "manipulator")


def open_reader(path: str | os.PathLike[str]) -> AnyReader:
    """An opened AnyReader, or BagError saying why the bag cannot be read.

    A bag is a folder with ``metadata.yaml`` (mcap or sqlite3) or a single ``.mcap`` file.
    """
    path = Path(path)
    if not path.exists():
        raise BagError(f"input bag {path} does not exist")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        raise BagError(_not_a_bag_folder(path))
    try:
        reader = AnyReader([path])
        reader.open()
    except (AnyReaderError, ReaderError, OSError, ValueError, KeyError) as exc:
        raise BagError(f"cannot read bag {path}: {exc} (truncated, corrupt or not a ROS 2 bag?)") from exc
    return reader


def _not_a_bag_folder(path: Path) -> str:
    """Why a folder without metadata.yaml is not a bag, with the way out when there is one."""
    reason = f"{path} is not a ROS 2 bag: the folder has no metadata.yaml"
    mcaps = sorted(path.glob("*.mcap"))
    if len(mcaps) == 1:
        return f"{reason}; to read its only mcap file pass it directly: cct-bag {mcaps[0]} OUTPUT"
    return reason + (" and is empty" if not any(path.iterdir()) else "")


def pick_image_topic(reader: AnyReader, topic: str | None) -> Any:
    """The image connection: the named topic (which must be an image type), or the bag's only
    camera topic (image topics other than ground truth); with several, BagError lists them."""
    by_topic = {c.topic: c for c in reader.connections}
    if topic is not None:
        conn = by_topic.get(topic)
        if conn is None:
            raise BagError(
                f"topic {topic} is not in the bag (topics: {', '.join(sorted(by_topic)) or 'none'})"
            )
        if conn.msgtype not in IMAGE_TYPES:
            raise BagError(f"topic {topic} has type {conn.msgtype}; expected one of {', '.join(IMAGE_TYPES)}")
        return conn
    images = [
        c
        for c in reader.connections
        if c.msgtype in IMAGE_TYPES and "/gt/" not in c.topic and "mask" not in c.topic
    ]
    if not images:
        listing = ", ".join(f"{c.topic} [{c.msgtype}]" for c in reader.connections) or "none"
        raise BagError(
            f"no sensor_msgs/Image or CompressedImage topic found (topics: {listing}); pass --topic"
        )
    topics = sorted({c.topic for c in images})
    if len(topics) > 1:
        raise BagError(
            f"the bag has {len(topics)} camera topics ({', '.join(topics)}); pick one with --topic"
        )
    return images[0]


def make_pipeline(model: str | os.PathLike[str], backend: str = "auto", min_area_px: int = 200):
    """The deploy pipeline, imported lazily so ``--help`` and bag errors need no runtime."""
    from cct_surgical_seg.deploy.backends import create_backend
    from cct_surgical_seg.deploy.pipeline import SegmentationPipeline
    from cct_surgical_seg.deploy.poses import PoseParams

    return SegmentationPipeline(create_backend(backend, Path(model)), PoseParams(min_area_px=min_area_px))


def segment_bag(
    input_bag: str | os.PathLike[str],
    output_bag: str | os.PathLike[str],
    pipeline: Any,
    *,
    topic: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    copy_input: bool = True,
    gt_mask_topic: str | None = DEFAULT_GT_MASK_TOPIC,
    gt_tips_topic: str | None = DEFAULT_GT_TIPS_TOPIC,
    storage: str = "mcap",
    overwrite: bool = False,
    keep_partial: bool = False,
    show_progress: bool = False,
) -> BagReport:
    """Segment ``topic`` of ``input_bag`` into a new bag at ``output_bag`` (see module doc)."""
    from tqdm import tqdm

    from cct_surgical_seg.ros.conversions import ConversionError, message_to_rgb

    out = Path(output_bag)
    if Path(input_bag).resolve() == out.resolve():
        raise BagError("output bag must differ from the input bag")
    report = BagReport(out)
    names = getattr(getattr(pipeline, "info", None), "class_names", None)
    if names:
        report.class_names = tuple(names)
    with contextlib.closing(open_reader(input_bag)) as reader:
        image_conn = pick_image_topic(reader, topic)
        by_topic = {c.topic: c for c in reader.connections}
        gt_mask = by_topic.get(gt_mask_topic) if gt_mask_topic else None
        gt_tips = by_topic.get(gt_tips_topic) if gt_tips_topic else None
        if gt_mask is not None:
            report.segmentation = ConfusionMatrix(num_classes=max(3, len(report.class_names)))
        if gt_tips is not None:
            report.tips = TipErrors()
        wanted = (
            list(reader.connections) if copy_input else [image_conn] + [c for c in (gt_mask, gt_tips) if c]
        )
        truth_masks: dict[int, Any] = {}
        truth_tips: dict[int, list] = {}
        predictions: dict[int, tuple] = {}

        def score(stamp: int) -> None:
            pred = predictions.get(stamp)
            if pred is None:
                return
            if report.segmentation is not None and stamp in truth_masks:
                report.segmentation.update(pred[0], truth_masks.pop(stamp))
            if report.tips is not None and stamp in truth_tips:
                report.tips.update(pred[1], truth_tips.pop(stamp))

        try:
            with atomic_bag_writer(out, storage, overwrite=overwrite, keep_partial=keep_partial) as writer:
                out_conns: dict[str, Any] = {}

                def connection(name: str, msgtype: str, src: Any | None = None) -> Any:
                    if name not in out_conns:
                        kwargs: dict[str, Any] = {"typestore": bm.typestore()}
                        if src is not None and src.digest:  # copy the original definition
                            kwargs = {"msgdef": src.msgdef.data, "rihs01": src.digest}
                        elif src is not None:  # a lone .mcap has no type hashes: the reader's types
                            kwargs = {"typestore": reader.typestore}
                        out_conns[name] = writer.add_connection(name, msgtype, **kwargs)
                    return out_conns[name]

                def write(name: str, msgtype: str, stamp: int, data: bytes, src: Any | None = None) -> None:
                    writer.write(connection(name, msgtype, src), stamp, data)
                    report.written[name] = report.written.get(name, 0) + 1

                total = sum(c.msgcount for c in wanted)
                for conn, logtime, raw in tqdm(
                    reader.messages(connections=wanted),
                    total=total,
                    unit="msg",
                    desc="cct-bag",
                    disable=not show_progress,
                ):
                    if copy_input:
                        write(conn.topic, conn.msgtype, logtime, raw, conn)
                    if conn is image_conn:
                        msg = reader.deserialize(raw, conn.msgtype)
                        try:
                            rgb = message_to_rgb(msg)
                        except ConversionError as exc:
                            report.bad_frames += 1
                            print(f"cct-bag: skipping frame at {logtime}: {exc}", file=sys.stderr)
                            continue
                        result = pipeline(rgb)
                        report.frames += 1
                        hdr = msg.header
                        stamp = bm.stamp_ns(hdr.stamp)
                        tips = [i.tip for i in result.instruments]
                        write(
                            f"{prefix}/mask",
                            bm.IMAGE,
                            logtime,
                            bm.serialize(bm.image(result.mask, "mono8", hdr)),
                        )
                        write(
                            f"{prefix}/instruments",
                            bm.POSE_ARRAY,
                            logtime,
                            bm.serialize(bm.pose_array(tips, [i.axis for i in result.instruments], hdr)),
                        )
                        write(
                            f"{prefix}/markers",
                            bm.MARKER_ARRAY,
                            logtime,
                            bm.serialize(bm.marker_array(tips, [i.entry for i in result.instruments], hdr)),
                        )
                        predictions[stamp] = (result.mask, tips)
                        score(stamp)
                    elif conn is gt_mask:
                        msg = reader.deserialize(raw, conn.msgtype)
                        stamp = bm.stamp_ns(msg.header.stamp)
                        truth_masks[stamp] = message_to_rgb(msg)[:, :, 0].copy()
                        score(stamp)
                    elif conn is gt_tips:
                        msg = reader.deserialize(raw, conn.msgtype)
                        stamp = bm.stamp_ns(msg.header.stamp)
                        truth_tips[stamp] = [(p.position.x, p.position.y) for p in msg.poses]
                        score(stamp)
                    _forget_scored(predictions, truth_masks, truth_tips, keep=64)
        except (ReaderError, AnyReaderError, SerdeError, WriterError) as exc:
            raise BagError(
                f"failed while reading {input_bag}: {exc} (truncated or corrupt bag?); "
                f"no output written to {out}"
            ) from exc
    if report.frames == 0 and report.bad_frames == 0:
        raise BagError(f"no frames on {image_conn.topic} in {input_bag}")
    return report


def _forget_scored(*buffers: dict, keep: int) -> None:
    """Bound memory: stamps that never found their partner are dropped oldest first."""
    for buf in buffers:
        while len(buf) > keep:
            buf.pop(next(iter(buf)))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cct-bag",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("input", type=Path, help="input bag (folder, or a single .mcap/.db3 file)")
    p.add_argument("output", type=Path, help="output bag folder (must not exist unless --overwrite)")
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="ONNX model or .pt checkpoint "
        "(default: models/cct_demo.onnx of the repository or the installed share dir)",
    )
    p.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "tensorrt", "torch"))
    p.add_argument("--topic", default=None, help="image topic (default: auto-detect)")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="namespace of the output topics")
    p.add_argument("--no-copy", action="store_true", help="do not copy the input topics to the output")
    p.add_argument(
        "--gt-mask-topic", default=DEFAULT_GT_MASK_TOPIC, help="ground-truth mask topic ('' = none)"
    )
    p.add_argument(
        "--gt-tips-topic", default=DEFAULT_GT_TIPS_TOPIC, help="ground-truth tips topic ('' = none)"
    )
    p.add_argument("--min-area", type=int, default=200, help="smallest instrument region, pixels")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument(
        "--keep-partial", action="store_true", help="on error keep what was written as OUTPUT.partial"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 2 bad bag/model/arguments, 128 + signal number (130 SIGINT, 143
    SIGTERM) when interrupted; nothing is left at the output path unless it completed."""
    args = build_parser().parse_args(argv)
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(args)
    except Interrupted as exc:
        print(f"cct-bag: interrupted by {exc}; no output written to {args.output}", file=sys.stderr)
        return 128 + exc.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(args: argparse.Namespace) -> int:
    model = args.model or demo_model()
    try:
        reader = open_reader(args.input)  # fail on a bad bag before loading a model
        reader.close()
        if not Path(model).is_file():
            raise BagError(f"model {model} not found (pass --model)")
        pipeline = make_pipeline(model, args.backend, args.min_area)
        report = segment_bag(
            args.input,
            args.output,
            pipeline,
            topic=args.topic,
            prefix=args.prefix,
            copy_input=not args.no_copy,
            gt_mask_topic=args.gt_mask_topic or None,
            gt_tips_topic=args.gt_tips_topic or None,
            storage=args.storage,
            overwrite=args.overwrite,
            keep_partial=args.keep_partial,
            show_progress=not args.quiet,
        )
    except (BagError, FileExistsError) as exc:
        print(f"cct-bag: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # model load errors and the like: one line, not a traceback
        if type(exc).__name__ in ("ModelLoadError", "BackendUnavailableError"):
            print(f"cct-bag: error: {exc}", file=sys.stderr)
            return 2
        raise
    print(f"cct-bag: {report.frames} frames segmented ({report.bad_frames} skipped) -> {report.output}")
    for name, count in sorted(report.written.items()):
        print(f"  {name}: {count}")
    if report.segmentation is not None and report.segmentation.frames:
        print("ground truth comparison:")
        print(format_rows(summary_rows(report.segmentation, report.tips or TipErrors(), report.class_names)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
