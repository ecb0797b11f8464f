"""``cct-bag``: segment the images of a ROS 2 bag offline into a new bag holding what the live
node would have published.

Reads an mcap or sqlite3 bag (a folder with ``metadata.yaml``, or a single ``.mcap`` file) with
rosbags (no ROS installation needed), runs every image (``sensor_msgs/Image`` or
``CompressedImage``; the bag's only camera topic, or the one given with ``--topic``) through the
pipeline :func:`~cct_surgical_seg.deploy.pipeline.build_pipeline` makes, and writes for each
frame the messages ``segmentation_node`` publishes for it
(:func:`~cct_surgical_seg.messages.results.frame_messages`: the same score filter, detections
and markers): ``<prefix>/mask``, ``/confidence``, ``/detections``, ``/frame_confidence``,
``/markers`` and, for frames with a valid CameraInfo, ``/instrument_rays``, stamped with the input
header and written at the input's log time, plus a copy of the input topics unless ``--no-copy``.
The CameraInfo comes from the ``camera_info`` topic beside the image topic
(``--camera-info-topic``): the one with the frame's stamp, else the last valid one, as in the
node. When the bag carries ground truth (as ``cct-sim --bag`` writes it), it prints Dice/IoU,
tip error (median, p95) and, with the ``hidden_tips`` topic beside the truth tips, how often
the ``tip_visible`` flag is right.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2 import ReaderError, WriterError
from rosbags.serde import SerdeError
from tqdm import tqdm

from cct_surgical_seg.deploy.backends import KINDS
from cct_surgical_seg.deploy.errors import DeployError
from cct_surgical_seg.deploy.pipeline import PipelineSettings, SegmentationPipeline, build_pipeline
from cct_surgical_seg.messages.bag_types import BAG_TYPES, stamp_ns
from cct_surgical_seg.messages.camera import CameraInfoError, CameraModel
from cct_surgical_seg.messages.images import ConversionError, message_to_rgb
from cct_surgical_seg.messages.results import OutputOptions, frame_messages, reported_instruments
from cct_surgical_seg.offline.bag_io import (
    BagError,
    BagOutput,
    atomic_bag_writer,
    open_reader,
    pick_image_topic,
)
from cct_surgical_seg.offline.evaluation import ConfusionMatrix, TipErrors, format_rows, summary_rows
from cct_surgical_seg.resources import demo_model

DEFAULT_PREFIX = "/segmentation_node"
DEFAULT_GT_MASK_TOPIC = "/camera/gt/mask"  # what cct-sim writes
DEFAULT_GT_TIPS_TOPIC = "/camera/gt/tips"
AUTO = "auto"  # --camera-info-topic: the camera_info topic beside the image topic


class Interrupted(BaseException):
    """SIGINT/SIGTERM arrived: unwinds like KeyboardInterrupt, so the partial output is removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


@dataclass
class BagReport:
    """What one run did, for the CLI summary and the tests."""

    output: Path
    frames: int = 0
    bad_frames: int = 0
    bad_camera_infos: int = 0
    written: dict[str, int] = field(default_factory=dict)
    segmentation: ConfusionMatrix | None = None
    tips: TipErrors | None = None
    class_names: tuple[str, ...] = OutputOptions.class_names


@dataclass(frozen=True)
class InputTopics:
    """The input bag's connections that matter (None = not in the bag / not wanted)."""

    image: Any
    camera_info: Any
    gt_mask: Any
    gt_tips: Any
    gt_hidden_tips: Any = None  # the ``hidden_tips`` topic beside ``gt_tips``, as cct-sim writes it

    @classmethod
    def pick(
        cls,
        reader: AnyReader,
        image: str | None,
        camera_info: str | None,
        gt_mask: str | None,
        gt_tips: str | None,
    ) -> InputTopics:
        by_topic = {c.topic: c for c in reader.connections}
        image_conn = pick_image_topic(reader, image)
        if camera_info == AUTO:
            base = image_conn.topic.removesuffix("/compressed")
            camera_info = f"{base.rsplit('/', 1)[0]}/camera_info"
        elif camera_info and camera_info not in by_topic:
            raise BagError(f"camera info topic {camera_info} is not in the bag")
        hidden = f"{gt_tips.rsplit('/', 1)[0]}/hidden_tips" if gt_tips in by_topic else None
        return cls(
            image_conn,
            by_topic.get(camera_info) if camera_info else None,
            by_topic.get(gt_mask) if gt_mask else None,
            by_topic.get(gt_tips) if gt_tips else None,
            by_topic.get(hidden) if hidden else None,
        )

    def truth(self) -> tuple[Any, ...]:
        return (self.gt_mask, self.gt_tips, self.gt_hidden_tips)

    def used(self) -> list[Any]:
        return [c for c in (self.image, self.camera_info, *self.truth()) if c is not None]


def read_cameras(reader: AnyReader, conn: Any, report: BagReport) -> dict[int, CameraModel]:
    """Valid cameras of the bag by header stamp; refused CameraInfos are counted in ``report``."""
    cameras: dict[int, CameraModel] = {}
    if conn is None:
        return cameras
    for _, _, raw in reader.messages(connections=[conn]):
        msg = reader.deserialize(raw, conn.msgtype)
        try:
            cameras[stamp_ns(msg.header.stamp)] = CameraModel.from_camera_info(msg)
        except CameraInfoError as err:
            report.bad_camera_infos += 1
            print(f"cct-bag: camera info refused ({err.kind}): {err.reason}", file=sys.stderr)
    return cameras


class Scorer:
    """Pairs written predictions with ground truth by header stamp (either may come first)."""

    KEEP = 64  # stamps that never find their partner are dropped oldest first

    def __init__(self, report: BagReport, topics: InputTopics) -> None:
        self.report = report
        if topics.gt_mask is not None:
            report.segmentation = ConfusionMatrix(num_classes=max(3, len(report.class_names)))
        if topics.gt_tips is not None:
            report.tips = TipErrors()
        self.with_hidden = topics.gt_hidden_tips is not None
        self.masks: dict[int, Any] = {}
        self.tips: dict[int, list] = {}
        self.hidden: dict[int, list] = {}
        self.predictions: dict[int, tuple] = {}

    def add(self, buffer: dict[int, Any], stamp: int, value: Any) -> None:
        buffer[stamp] = value
        pred = self.predictions.get(stamp)
        if pred is not None:
            mask, tips, flags = pred
            if self.report.segmentation is not None and stamp in self.masks:
                self.report.segmentation.update(mask, self.masks.pop(stamp))
            if (
                self.report.tips is not None
                and stamp in self.tips
                and (stamp in self.hidden or not self.with_hidden)
            ):
                hidden = self.hidden.pop(stamp, None)
                self.report.tips.update(
                    tips, self.tips.pop(stamp), flags if self.with_hidden else None, hidden or ()
                )
        for buf in (self.masks, self.tips, self.hidden, self.predictions):
            while len(buf) > self.KEEP:
                buf.pop(next(iter(buf)))


class BagSegmenter:
    """The per-message step of :func:`segment_bag`: segment images, track cameras, score."""

    def __init__(
        self,
        pipeline: SegmentationPipeline,
        options: OutputOptions,
        prefix: str,
        topics: InputTopics,
        cameras: dict[int, CameraModel],
        report: BagReport,
    ) -> None:
        self.pipeline, self.options, self.prefix = pipeline, options, prefix
        self.topics, self.cameras, self.report = topics, cameras, report
        self.last_camera: CameraModel | None = None
        self.scorer = Scorer(report, topics)

    def handle(self, reader: AnyReader, conn: Any, logtime: int, raw: bytes, output: BagOutput) -> None:
        t = self.topics
        if conn not in (t.image, t.camera_info, *t.truth()):
            return
        msg = reader.deserialize(raw, conn.msgtype)
        stamp = stamp_ns(msg.header.stamp)
        if conn is t.image:
            self.segment(msg, stamp, logtime, output)
        elif conn is t.camera_info:
            self.last_camera = self.cameras.get(stamp, self.last_camera)
        elif conn is t.gt_mask:
            self.scorer.add(self.scorer.masks, stamp, message_to_rgb(msg)[:, :, 0].copy())
        else:
            points = [(p.position.x, p.position.y) for p in msg.poses]
            self.scorer.add(self.scorer.tips if conn is t.gt_tips else self.scorer.hidden, stamp, points)

    def segment(self, msg: Any, stamp: int, logtime: int, output: BagOutput) -> None:
        try:
            rgb = message_to_rgb(msg)
        except ConversionError as exc:
            self.report.bad_frames += 1
            print(f"cct-bag: skipping frame at {logtime}: {exc}", file=sys.stderr)
            return
        result = self.pipeline(rgb)
        self.report.frames += 1
        camera = self.cameras.get(stamp, self.last_camera)
        for name, out_msg in frame_messages(BAG_TYPES, result, msg.header, camera, self.options).items():
            output.write(f"{self.prefix}/{name}", logtime, out_msg)
        reported = reported_instruments(result.instruments, self.options.score_threshold)
        tips, flags = [i.tip for i in reported], [i.tip_visible for i in reported]
        self.scorer.add(self.scorer.predictions, stamp, (result.mask, tips, flags))


def _messages(reader: AnyReader, conns: list[Any], show_progress: bool) -> Iterator[tuple[Any, int, bytes]]:
    total = sum(c.msgcount for c in conns)
    yield from tqdm(
        reader.messages(connections=conns), total=total, unit="msg", desc="cct-bag", disable=not show_progress
    )


def segment_bag(
    input_bag: str | os.PathLike[str],
    output_bag: str | os.PathLike[str],
    pipeline: SegmentationPipeline,
    *,
    topic: str | None = None,
    camera_info_topic: str | None = AUTO,
    prefix: str = DEFAULT_PREFIX,
    options: OutputOptions | None = None,
    copy_input: bool = True,
    gt_mask_topic: str | None = DEFAULT_GT_MASK_TOPIC,
    gt_tips_topic: str | None = DEFAULT_GT_TIPS_TOPIC,
    storage: str = "mcap",
    overwrite: bool = False,
    keep_partial: bool = False,
    show_progress: bool = False,
) -> BagReport:
    """Segment ``topic`` of ``input_bag`` into a new bag at ``output_bag`` (see module doc)."""
    out = Path(output_bag)
    if Path(input_bag).resolve() == out.resolve():
        raise BagError("output bag must differ from the input bag")
    options = options or OutputOptions(class_names=tuple(pipeline.info.class_names))
    report = BagReport(out, class_names=options.class_names)
    with contextlib.closing(open_reader(input_bag)) as reader:
        topics = InputTopics.pick(reader, topic, camera_info_topic, gt_mask_topic, gt_tips_topic)
        try:
            step = BagSegmenter(
                pipeline, options, prefix, topics, read_cameras(reader, topics.camera_info, report), report
            )
            with atomic_bag_writer(out, storage, overwrite=overwrite, keep_partial=keep_partial) as writer:
                output = BagOutput(writer, reader)
                conns = list(reader.connections) if copy_input else topics.used()
                for conn, logtime, raw in _messages(reader, conns, show_progress):
                    if copy_input:
                        output.write_raw(conn.topic, conn.msgtype, logtime, raw, conn)
                    step.handle(reader, conn, logtime, raw, output)
            report.written = output.written
        except (ReaderError, AnyReaderError, SerdeError, WriterError) as exc:
            raise BagError(
                f"failed while reading {input_bag}: {exc} (truncated or corrupt bag?); "
                f"no output written to {out}"
            ) from exc
    if report.frames == 0 and report.bad_frames == 0:
        raise BagError(f"no frames on {topics.image.topic} in {input_bag}")
    return report


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
        help="ONNX model or .pt checkpoint (default: the shipped models/cct_demo.onnx)",
    )
    p.add_argument("--backend", default="auto", choices=KINDS)
    p.add_argument("--topic", default=None, help="image topic (default: the bag's only camera topic)")
    p.add_argument(
        "--camera-info-topic",
        default=AUTO,
        help=f"CameraInfo topic ('{AUTO}' = camera_info beside the image topic, '' = none)",
    )
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="namespace of the output topics")
    p.add_argument("--no-copy", action="store_true", help="do not copy the input topics to the output")
    p.add_argument(
        "--gt-mask-topic", default=DEFAULT_GT_MASK_TOPIC, help="ground-truth mask topic ('' = none)"
    )
    p.add_argument(
        "--gt-tips-topic", default=DEFAULT_GT_TIPS_TOPIC, help="ground-truth tips topic ('' = none)"
    )
    node = "as the node's parameter of the same name"
    p.add_argument(
        "--min-area",
        type=int,
        default=PipelineSettings.min_instrument_area,
        help=f"smallest instrument region, pixels ({node} min_instrument_area)",
    )
    p.add_argument("--score-threshold", type=float, default=OutputOptions.score_threshold, help=node)
    p.add_argument(
        "--confidence-encoding",
        choices=("mono8", "32FC1"),
        default=OutputOptions.confidence_encoding,
        help=node,
    )
    p.add_argument("--marker-pixel-size", type=float, default=OutputOptions.marker_pixel_size, help=node)
    p.add_argument("--marker-ray-length", type=float, default=OutputOptions.marker_ray_length, help=node)
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
        open_reader(args.input).close()  # fail on a bad bag before loading a model
        if not Path(model).is_file():
            raise BagError(f"model {model} not found (pass --model)")
        pipeline = build_pipeline(PipelineSettings(model, args.backend, min_instrument_area=args.min_area))
        options = OutputOptions(
            class_names=tuple(pipeline.info.class_names),
            score_threshold=args.score_threshold,
            confidence_encoding=args.confidence_encoding,
            marker_pixel_size=args.marker_pixel_size,
            marker_ray_length=args.marker_ray_length,
        )
        report = segment_bag(
            args.input,
            args.output,
            pipeline,
            topic=args.topic,
            camera_info_topic=args.camera_info_topic or None,
            prefix=args.prefix,
            options=options,
            copy_input=not args.no_copy,
            gt_mask_topic=args.gt_mask_topic or None,
            gt_tips_topic=args.gt_tips_topic or None,
            storage=args.storage,
            overwrite=args.overwrite,
            keep_partial=args.keep_partial,
            show_progress=not args.quiet,
        )
    except (BagError, FileExistsError, DeployError) as exc:
        print(f"cct-bag: error: {exc}", file=sys.stderr)
        return 2
    _print_report(report)
    return 0


def _print_report(report: BagReport) -> None:
    print(f"cct-bag: {report.frames} frames segmented ({report.bad_frames} skipped) -> {report.output}")
    for name, count in sorted(report.written.items()):
        print(f"  {name}: {count}")
    if report.segmentation is not None and report.segmentation.frames:
        print("ground truth comparison:")
        print(format_rows(summary_rows(report.segmentation, report.tips or TipErrors(), report.class_names)))


if __name__ == "__main__":
    sys.exit(main())
