"""``cct-bag --stereo``: segment a rectified stereo bag offline into what the node's stereo mode
would have published.

The left and right image topics (``--left-topic``, ``--right-topic``; each one's CameraInfo is
the ``camera_info`` topic beside it) are paired by header stamp with the node's pairer
(:class:`~cct_surgical_seg.deploy.stereo_pairing.StereoPairer`, ``--stereo-sync-tolerance``),
a completed pair is checked (:func:`~cct_surgical_seg.messages.stereo_results.stereo_camera_for`)
and run through the node's stereo step
(:func:`~cct_surgical_seg.deploy.stereo_step.stereo_pair_poses`, ``--stereo-matching``). For a
pair the output holds what the node publishes: ``<prefix>/instrument_poses``, ``/detections_3d``
and ``/markers`` in 3D (:func:`~cct_surgical_seg.messages.stereo_results.stereo_messages`),
then the left view's usual outputs less its 2D markers, all with the left image's header at the
left image's log time. A frame that never pairs, or a refused pair, gives no output, as in the
node; both are counted (``BagReport.stereo``).

Truth, as ``cct-sim --stereo --bag`` writes it: the left view's mask, tips and hidden tips score
the left view as in mono mode; ``tips_3d`` beside the tips topic (PoseArray in metres, the left
optical frame, the visible tips) scores the 3D tips (``BagReport.tips_3d``, metres, matched
within :data:`MATCH_3D_M`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader

from cct_surgical_seg.deploy.pipeline import SegmentationPipeline
from cct_surgical_seg.deploy.poses import reported_instruments
from cct_surgical_seg.deploy.stereo import StereoCamera, StereoStats
from cct_surgical_seg.deploy.stereo_pairing import LEFT, RIGHT, StereoPair, StereoPairer
from cct_surgical_seg.deploy.stereo_step import STEREO_MATCHING, stereo_pair_poses
from cct_surgical_seg.messages.bag_types import BAG_TYPES, stamp_ns
from cct_surgical_seg.messages.camera import CameraModel
from cct_surgical_seg.messages.results import OutputOptions
from cct_surgical_seg.messages.stereo_results import StereoPairError, stereo_camera_for, stereo_messages
from cct_surgical_seg.metrics import TipErrors
from cct_surgical_seg.offline.bag import (
    AUTO,
    DEFAULT_LEFT_TOPIC,
    DEFAULT_PREFIX,
    DEFAULT_RIGHT_TOPIC,
    DEFAULT_STEREO_GT_MASK_TOPIC,
    DEFAULT_STEREO_GT_TIPS_TOPIC,
    BagReport,
    BagSegmenter,
    InputTopics,
    WriteSettings,
    beside,
    camera_info_connection,
    check_output,
    read_cameras,
    run_steps,
)
from cct_surgical_seg.offline.bag_io import BagError, BagOutput, open_reader, pick_image_topic

#: a predicted 3D tip farther than this from every true one (metres) is an extra, the truth missed
MATCH_3D_M = 0.02


def _view(reader: AnyReader, topic: str) -> Any:
    """The image connection of ``topic``, or of ``topic/compressed`` when only that is in the bag."""
    topics = {c.topic for c in reader.connections}
    if topic not in topics and f"{topic}/compressed" in topics:
        topic = f"{topic}/compressed"
    return pick_image_topic(reader, topic)


@dataclass(frozen=True)
class StereoTopics:
    """The stereo bag's connections: the left view as in mono mode (image, camera_info, truth),
    the right image and camera_info, and the 3D truth (None = not in the bag / not wanted)."""

    left: InputTopics
    right_image: Any
    right_camera_info: Any
    gt_tips_3d: Any

    @classmethod
    def pick(
        cls, reader: AnyReader, left: str, right: str, gt_mask: str | None, gt_tips: str | None
    ) -> StereoTopics:
        left_conn, right_conn = _view(reader, left), _view(reader, right)
        if left_conn.topic == right_conn.topic:
            raise BagError(f"--left-topic and --right-topic are both {left_conn.topic}")
        by_topic = {c.topic: c for c in reader.connections}
        return cls(
            InputTopics.pick(reader, left_conn.topic, AUTO, gt_mask, gt_tips),
            right_conn,
            camera_info_connection(reader, right_conn, AUTO),
            by_topic.get(beside(gt_tips, "tips_3d")) if gt_tips else None,
        )

    def right(self) -> tuple[Any, ...]:
        return (self.right_image, self.right_camera_info, self.gt_tips_3d)

    def used(self) -> list[Any]:
        return [*self.left.used(), *(c for c in self.right() if c is not None)]


class TipScorer3D:
    """Pairs predicted 3D tips with the true ones by stamp (either may come first)."""

    KEEP = 64  # stamps that never find their partner are dropped oldest first

    def __init__(self, tips: TipErrors) -> None:
        self.tips = tips
        self.truth: dict[int, list] = {}
        self.predicted: dict[int, list] = {}

    def add(self, buffer: dict[int, list], stamp: int, points: list) -> None:
        buffer[stamp] = points
        if stamp in self.truth and stamp in self.predicted:
            self.tips.update(self.predicted.pop(stamp), self.truth.pop(stamp))
        for buf in (self.truth, self.predicted):
            while len(buf) > self.KEEP:
                buf.pop(next(iter(buf)))


@dataclass(frozen=True)
class StereoSettings:
    """How pairs are made and matched (the node's stereo_sync_tolerance and stereo_matching)."""

    sync_tolerance_ns: int = 0
    matching: str = "epipolar"

    def __post_init__(self) -> None:
        if self.matching not in STEREO_MATCHING:
            raise ValueError(f"matching must be one of {', '.join(STEREO_MATCHING)}, not {self.matching!r}")


class StereoBagSegmenter(BagSegmenter):
    """The per-message step of :func:`segment_stereo_bag`: the left view is the mono step's
    image (its camera_info and truth handled as in mono mode); images are segmented once their
    pair completes."""

    def __init__(
        self,
        pipeline: SegmentationPipeline,
        options: OutputOptions,
        prefix: str,
        topics: StereoTopics,
        cameras: tuple[dict[int, CameraModel], dict[int, CameraModel]],
        report: BagReport,
        settings: StereoSettings,
    ) -> None:
        super().__init__(pipeline, options, prefix, topics.left, cameras[LEFT], report)
        self.stereo, self.right_cameras, self.matching = topics, cameras[RIGHT], settings.matching
        self.last_right: CameraModel | None = None
        self.pairer: StereoPairer = StereoPairer(settings.sync_tolerance_ns)
        self.instruments = StereoStats()
        self.refused: Counter[str] = Counter()
        self.scorer_3d = (
            None if topics.gt_tips_3d is None else TipScorer3D(TipErrors(max_match_px=MATCH_3D_M))
        )
        report.tips_3d = None if self.scorer_3d is None else self.scorer_3d.tips

    def handle(self, reader: AnyReader, conn: Any, logtime: int, raw: bytes, output: BagOutput) -> None:
        s = self.stereo
        if conn not in s.right():
            super().handle(reader, conn, logtime, raw, output)
            return
        msg = reader.deserialize(raw, conn.msgtype)
        stamp = stamp_ns(msg.header.stamp)
        if conn is s.right_image:
            self.pair(self.pairer.add_right(stamp, (msg, logtime)), output)
        elif conn is s.right_camera_info:
            self.last_right = self.right_cameras.get(stamp, self.last_right)
        elif self.scorer_3d is not None:
            points = [(p.position.x, p.position.y, p.position.z) for p in msg.poses]
            self.scorer_3d.add(self.scorer_3d.truth, stamp, points)

    def segment(self, msg: Any, stamp: int, logtime: int, output: BagOutput) -> None:
        """A left image: to the pairer; segmented once its right partner is there."""
        self.pair(self.pairer.add_left(stamp, (msg, logtime)), output)

    def pair(self, pair: StereoPair | None, output: BagOutput) -> None:
        """A completed pair (None: none yet) -> 3D outputs, then the left view's, at its log time."""
        if pair is None:
            return
        (left_msg, logtime), (right_msg, right_logtime) = pair.left, pair.right
        left_rgb, right_rgb = self.convert(left_msg, logtime), self.convert(right_msg, right_logtime)
        if left_rgb is None or right_rgb is None:
            return
        camera = self.camera_pair(left_msg, right_msg, left_rgb, right_rgb, logtime)
        if camera is None:
            return
        threshold = self.options.score_threshold
        result, poses = stereo_pair_poses(
            self.pipeline, left_rgb, right_rgb, camera, self.matching, threshold, self.instruments
        )
        for name, out_msg in stereo_messages(BAG_TYPES, poses, left_msg.header, self.options).items():
            output.write(f"{self.prefix}/{name}", logtime, out_msg)
        self.write_frame(result, left_msg.header, pair.stamp, logtime, output, skip=("markers",))
        if self.scorer_3d is not None:
            tips = [p.tip_xyz for p in reported_instruments(poses, threshold)]
            self.scorer_3d.add(self.scorer_3d.predicted, pair.stamp, tips)

    def camera_pair(
        self, left_msg: Any, right_msg: Any, left_rgb: np.ndarray, right_rgb: np.ndarray, logtime: int
    ) -> StereoCamera | None:
        """The pair's rectified cameras, or None for a refused pair (counted, reported)."""
        left = self.cameras.get(stamp_ns(left_msg.header.stamp), self.last_camera)
        right = self.right_cameras.get(stamp_ns(right_msg.header.stamp), self.last_right)
        try:
            return stereo_camera_for(left_msg, right_msg, left_rgb, right_rgb, left, right)
        except StereoPairError as err:
            self.refused[err.kind] += 1
            print(f"cct-bag: stereo pair at {logtime} refused ({err.kind}): {err.reason}", file=sys.stderr)
            return None

    def finish(self) -> None:
        """The counters into the report; frames still waiting for a partner are unpaired.
        BagError when no left frame found a right one (so nothing is left at the output)."""
        counters = self.pairer.counters()
        pending_left, pending_right = self.pairer.pending()
        self.report.stereo = {
            "pairs": counters["pairs"],
            "unpaired_left": counters["unpaired_left"] + pending_left,
            "unpaired_right": counters["unpaired_right"] + pending_right,
            "stale": counters["stale"],
            "refused": sum(self.refused.values()),
            **{f"refused_{kind}": n for kind, n in sorted(self.refused.items())},
            "instruments_matched": self.instruments.matched,
            "instruments_unmatched": self.instruments.unmatched,
        }
        if counters["pairs"] == 0:
            left, right = self.stereo.left.image.topic, self.stereo.right_image.topic
            raise BagError(
                f"no frame of {left} paired with one of {right} (stamps further apart than "
                f"--stereo-sync-tolerance {self.pairer.tolerance_ns / 1e9:g} s, or a view without frames)"
            )


def segment_stereo_bag(
    input_bag: str | os.PathLike[str],
    output_bag: str | os.PathLike[str],
    pipeline: SegmentationPipeline,
    *,
    left_topic: str = DEFAULT_LEFT_TOPIC,
    right_topic: str = DEFAULT_RIGHT_TOPIC,
    sync_tolerance: float = 0.0,
    matching: str = "epipolar",
    prefix: str = DEFAULT_PREFIX,
    options: OutputOptions | None = None,
    gt_mask_topic: str | None = DEFAULT_STEREO_GT_MASK_TOPIC,
    gt_tips_topic: str | None = DEFAULT_STEREO_GT_TIPS_TOPIC,
    copy_input: bool = True,
    storage: str = "mcap",
    overwrite: bool = False,
    keep_partial: bool = False,
    show_progress: bool = False,
) -> BagReport:
    """Segment the stereo pairs of ``input_bag`` into a new bag at ``output_bag`` (module doc);
    ``sync_tolerance`` in seconds; the other options as :func:`~.bag.segment_bag`'s.
    ``report.frames`` counts the pairs segmented."""
    out = check_output(input_bag, output_bag)
    options = options or OutputOptions(class_names=tuple(pipeline.info.class_names))
    report = BagReport(out, class_names=options.class_names)
    settings = StereoSettings(round(sync_tolerance * 1e9), matching)
    writing = WriteSettings(copy_input, storage, overwrite, keep_partial, show_progress)
    with contextlib.closing(open_reader(input_bag)) as reader:
        topics = StereoTopics.pick(reader, left_topic, right_topic, gt_mask_topic, gt_tips_topic)

        def step() -> StereoBagSegmenter:
            cameras = tuple(
                read_cameras(reader, conn, report)
                for conn in (topics.left.camera_info, topics.right_camera_info)
            )
            return StereoBagSegmenter(pipeline, options, prefix, topics, cameras, report, settings)

        report.written = run_steps(reader, input_bag, out, step, topics.used(), writing)
    return report
