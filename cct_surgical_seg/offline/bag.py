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

``--stereo``: a rectified stereo bag, paired and segmented as the node's stereo mode does, with
the 3D outputs and the 3D tip error (:mod:`cct_surgical_seg.offline.bag_stereo`, which builds on
the per-message step here: :class:`BagSegmenter`, :func:`run_steps`). The command line is
:mod:`cct_surgical_seg.offline.bag_cli`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2 import ReaderError, WriterError
from rosbags.serde import SerdeError
from tqdm import tqdm

from cct_surgical_seg.deploy.pipeline import (
    FrameResult,
    SegmentationPipeline,
)
from cct_surgical_seg.deploy.poses import reported_instruments
from cct_surgical_seg.messages.bag_types import BAG_TYPES, stamp_ns
from cct_surgical_seg.messages.camera import CameraInfoError, CameraModel
from cct_surgical_seg.messages.images import ConversionError, message_to_rgb
from cct_surgical_seg.messages.results import OutputOptions, frame_messages
from cct_surgical_seg.offline.bag_io import (
    BagError,
    BagOutput,
    atomic_bag_writer,
    open_reader,
    pick_image_topic,
)
from cct_surgical_seg.offline.evaluation import ConfusionMatrix, TipErrors

DEFAULT_PREFIX = "/segmentation_node"
DEFAULT_GT_MASK_TOPIC = "/camera/gt/mask"  # what cct-sim writes
DEFAULT_GT_TIPS_TOPIC = "/camera/gt/tips"
DEFAULT_LEFT_TOPIC = "/stereo/left/image_raw"  # what cct-sim --stereo writes
DEFAULT_RIGHT_TOPIC = "/stereo/right/image_raw"
DEFAULT_STEREO_GT_MASK_TOPIC = "/stereo/gt/mask"  # the left view's truth
DEFAULT_STEREO_GT_TIPS_TOPIC = "/stereo/gt/tips"
AUTO = "auto"  # --camera-info-topic: the camera_info topic beside the image topic; --gt-*: per mode


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
    stereo: dict[str, int] | None = None  # --stereo: pairing and 3D counters (``bag_stereo``)
    tips_3d: TipErrors | None = None  # --stereo: 3D tip errors in metres


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
        hidden = beside(gt_tips, "hidden_tips") if gt_tips in by_topic else None
        return cls(
            image_conn,
            camera_info_connection(reader, image_conn, camera_info),
            by_topic.get(gt_mask) if gt_mask else None,
            by_topic.get(gt_tips) if gt_tips else None,
            by_topic.get(hidden) if hidden else None,
        )

    def truth(self) -> tuple[Any, ...]:
        return (self.gt_mask, self.gt_tips, self.gt_hidden_tips)

    def used(self) -> list[Any]:
        return [c for c in (self.image, self.camera_info, *self.truth()) if c is not None]


def beside(topic: str, name: str) -> str:
    """The topic ``name`` in the namespace of ``topic`` (``/camera/gt/tips`` -> ``/camera/gt/NAME``)."""
    return f"{topic.rsplit('/', 1)[0]}/{name}"


def camera_info_connection(reader: AnyReader, image_conn: Any, camera_info: str | None) -> Any:
    """The CameraInfo connection of an image topic: ``AUTO`` = ``camera_info`` beside it (None
    when absent), a name (BagError when absent), or None for none."""
    by_topic = {c.topic: c for c in reader.connections}
    if camera_info == AUTO:
        camera_info = beside(image_conn.topic.removesuffix("/compressed"), "camera_info")
    elif camera_info and camera_info not in by_topic:
        raise BagError(f"camera info topic {camera_info} is not in the bag")
    return by_topic.get(camera_info) if camera_info else None


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
        rgb = self.convert(msg, logtime)
        if rgb is not None:
            self.write_frame(self.pipeline(rgb), msg.header, stamp, logtime, output)

    def convert(self, msg: Any, logtime: int) -> np.ndarray | None:
        """RGB array of an image message, or None for a bad frame (counted, reported)."""
        try:
            return message_to_rgb(msg)
        except ConversionError as exc:
            self.report.bad_frames += 1
            print(f"cct-bag: skipping frame at {logtime}: {exc}", file=sys.stderr)
            return None

    def write_frame(
        self,
        result: FrameResult,
        header: Any,
        stamp: int,
        logtime: int,
        output: BagOutput,
        skip: Iterable[str] = (),
    ) -> None:
        """A view's outputs (``frame_messages`` less ``skip``) at ``logtime``, and its score."""
        self.report.frames += 1
        camera = self.cameras.get(stamp, self.last_camera)
        for name, out_msg in frame_messages(BAG_TYPES, result, header, camera, self.options).items():
            if name not in skip:
                output.write(f"{self.prefix}/{name}", logtime, out_msg)
        reported = reported_instruments(result.instruments, self.options.score_threshold)
        tips, flags = [i.tip for i in reported], [i.tip_visible for i in reported]
        self.scorer.add(self.scorer.predictions, stamp, (result.mask, tips, flags))

    def finish(self) -> None:
        """After the last message, before the output is moved into place: BagError when no
        frame was on the image topic (so nothing is left at the output path)."""
        if self.report.frames == 0 and self.report.bad_frames == 0:
            raise BagError(f"no frames on {self.topics.image.topic}")


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
    out = check_output(input_bag, output_bag)
    options = options or OutputOptions(class_names=tuple(pipeline.info.class_names))
    report = BagReport(out, class_names=options.class_names)
    writing = WriteSettings(copy_input, storage, overwrite, keep_partial, show_progress)
    with contextlib.closing(open_reader(input_bag)) as reader:
        topics = InputTopics.pick(reader, topic, camera_info_topic, gt_mask_topic, gt_tips_topic)

        def step() -> BagSegmenter:
            cameras = read_cameras(reader, topics.camera_info, report)
            return BagSegmenter(pipeline, options, prefix, topics, cameras, report)

        report.written = run_steps(reader, input_bag, out, step, topics.used(), writing)
    return report


def check_output(input_bag: str | os.PathLike[str], output_bag: str | os.PathLike[str]) -> Path:
    out = Path(output_bag)
    if Path(input_bag).resolve() == out.resolve():
        raise BagError("output bag must differ from the input bag")
    return out


@dataclass(frozen=True)
class WriteSettings:
    """How the output bag is written (the CLI's --no-copy, --storage, --overwrite ...)."""

    copy_input: bool = True
    storage: str = "mcap"
    overwrite: bool = False
    keep_partial: bool = False
    show_progress: bool = False


def run_steps(
    reader: AnyReader,
    input_bag: str | os.PathLike[str],
    out: Path,
    make_step: Callable[[], BagSegmenter],
    used: list[Any],
    writing: WriteSettings,
) -> dict[str, int]:
    """Feed the bag's messages (all with ``copy_input``, else ``used``) through the step made by
    ``make_step`` into a new bag at ``out``; returns the messages written per topic. A reading
    error is a BagError and, like any exception (the step's ``finish`` included), leaves
    nothing at ``out``."""
    try:
        step = make_step()
        w = writing
        with atomic_bag_writer(out, w.storage, overwrite=w.overwrite, keep_partial=w.keep_partial) as writer:
            output = BagOutput(writer, reader)
            conns = list(reader.connections) if w.copy_input else used
            for conn, logtime, raw in _messages(reader, conns, w.show_progress):
                if w.copy_input:
                    output.write_raw(conn.topic, conn.msgtype, logtime, raw, conn)
                step.handle(reader, conn, logtime, raw, output)
            step.finish()
        return output.written
    except (ReaderError, AnyReaderError, SerdeError, WriterError) as exc:
        raise BagError(
            f"failed while reading {input_bag}: {exc} (truncated or corrupt bag?); no output written to {out}"
        ) from exc
