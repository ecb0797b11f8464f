"""``cct-sim``: the simulated endoscope, live on a ROS 2 graph, into a bag, or as a dataset.

Three outputs of one stream:

* live (default): publishes ``sensor_msgs/Image`` (or ``CompressedImage``), ``CameraInfo``,
  the ground-truth mask (mono8 class ids), ground-truth tips (``PoseArray``, pixels, the tips
  that are visible) and beside them ``hidden_tips`` (the instruments in view whose tip is not
  visible, at the true tip clipped into the image) at ``--rate``; with ``--clock`` it also
  publishes ``/clock`` and stamps frames in simulated time (starting at ``--start-time``), for
  ``use_sim_time`` nodes;
* ``--bag OUT``: the same messages written straight into a ROS 2 bag (mcap or sqlite3) with
  rosbags - no ROS graph, no rclpy, as fast as the frames render;
* ``--dataset DIR``: image/mask files for ``cct-train`` (see :mod:`cct_surgical_seg.sim.dataset`).

``--stereo`` (live and ``--bag``) publishes the rectified stereo pair instead, both eyes with one
stamp (the topics of :class:`StereoTopics`; the ``--*-topic`` options name the mono topics):
``/stereo/{left,right}/image_raw`` (or ``.../compressed``) and ``/stereo/{left,right}/camera_info``
(same K, R identity, P = [K | 0] on the left and Tx = P[0, 3] = -f * B on the right: the
simulated cameras have no distortion, so raw images are already rectified), the left view's
truth as in mono mode under ``/stereo/gt/`` (``mask``, ``tips``, ``hidden_tips``), and
``/stereo/gt/tips_3d`` (PoseArray in metres in the left optical frame: the visible tips, each
oriented by the rotation taking +x onto the 3D shaft direction, as the node's
``~/instrument_poses``).

Exit codes: 0 done, or a live run ended by SIGINT/SIGTERM (as ROS nodes do); 1 no frame was
published; 2 bad arguments or an existing output.

Why one message builder for both graph and bag: :class:`SimStream` builds rosbags messages and
CDR-serialises them; rclpy publishers accept serialised CDR bytes, so the live graph and the
bag carry byte-identical messages, and rclpy is imported only on the live path.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cct_surgical_seg.messages import bag_types
from cct_surgical_seg.messages.bag_types import BAG_TYPES
from cct_surgical_seg.messages.stereo_results import shaft_quaternion
from cct_surgical_seg.messages.types import CAMERA_INFO, COMPRESSED_IMAGE, IMAGE, POSE_ARRAY
from cct_surgical_seg.metrics import clip_to_image
from cct_surgical_seg.offline.bag_io import atomic_bag_writer
from cct_surgical_seg.sim import bag_messages as bm
from cct_surgical_seg.sim.scene import PALETTES, EndoscopeScene, SceneConfig, SceneFrame

DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
DEFAULT_CAMERA_INFO_TOPIC = "/camera/camera_info"
DEFAULT_GT_MASK_TOPIC = "/camera/gt/mask"
DEFAULT_GT_TIPS_TOPIC = "/camera/gt/tips"
CLOCK_TOPIC = "/clock"
FRAME_ID = "endoscope_optical_frame"
STEREO_FRAME_IDS = ("endoscope_left_optical_frame", "endoscope_right_optical_frame")
DEFAULT_START_TIME_S = 1_000.0  # simulated/bag time origin: far from wall time on purpose


@dataclass(frozen=True)
class Topics:
    image: str = DEFAULT_IMAGE_TOPIC
    camera_info: str = DEFAULT_CAMERA_INFO_TOPIC
    gt_mask: str = DEFAULT_GT_MASK_TOPIC
    gt_tips: str = DEFAULT_GT_TIPS_TOPIC

    @property
    def gt_hidden_tips(self) -> str:
        """Beside ``gt_tips``: the instruments in view whose tip is not visible (see ``messages``)."""
        return hidden_tips_topic(self.gt_tips)


@dataclass(frozen=True)
class StereoTopics:
    """Where ``--stereo`` publishes: the pair, and the left view's truth."""

    left_image: str = "/stereo/left/image_raw"
    left_camera_info: str = "/stereo/left/camera_info"
    right_image: str = "/stereo/right/image_raw"
    right_camera_info: str = "/stereo/right/camera_info"
    gt_mask: str = "/stereo/gt/mask"
    gt_tips: str = "/stereo/gt/tips"
    gt_tips_3d: str = "/stereo/gt/tips_3d"

    @property
    def gt_hidden_tips(self) -> str:
        return hidden_tips_topic(self.gt_tips)


def hidden_tips_topic(gt_tips: str) -> str:
    return f"{gt_tips.rsplit('/', 1)[0]}/hidden_tips"


@dataclass(frozen=True)
class Message:
    topic: str
    msgtype: str
    data: bytes  # CDR, ready for a bag writer or an rclpy publisher


class SimStream:
    """Renders frames (one per eye: one, or two with ``stereo``) and turns each instant into the
    list of serialised messages that describe it."""

    def __init__(
        self,
        config: SceneConfig,
        topics: Topics = Topics(),
        encoding: str = "bgr8",
        compressed: bool = False,
        clock: bool = False,
        stereo: StereoTopics | None = None,
    ) -> None:
        if encoding not in ("bgr8", "rgb8"):
            raise ValueError(f"encoding must be bgr8 or rgb8, not {encoding!r}")
        self.scene = EndoscopeScene(config)
        self.topics = topics
        self.encoding = encoding
        self.compressed = compressed
        self.clock = clock
        self.stereo = stereo

    def _image_topic(self, base: str) -> str:
        return f"{base}/compressed" if self.compressed else base

    @property
    def image_topic(self) -> str:
        """The image topic (stereo: the left one) live runs wait for subscribers on."""
        return self._image_topic(self.topics.image if self.stereo is None else self.stereo.left_image)

    def connections(self) -> list[tuple[str, str]]:
        """(topic, msgtype) of every topic this stream writes, in a stable order."""
        image = COMPRESSED_IMAGE if self.compressed else IMAGE
        if self.stereo is None:
            t = self.topics
            out = [(self.image_topic, image), (t.camera_info, CAMERA_INFO)]
        else:
            t = self.stereo
            out = [
                (self._image_topic(t.left_image), image),
                (t.left_camera_info, CAMERA_INFO),
                (self._image_topic(t.right_image), image),
                (t.right_camera_info, CAMERA_INFO),
                (t.gt_tips_3d, POSE_ARRAY),
            ]
        out += [(t.gt_mask, IMAGE), (t.gt_tips, POSE_ARRAY), (t.gt_hidden_tips, POSE_ARRAY)]
        return ([(CLOCK_TOPIC, bm.CLOCK)] if self.clock else []) + out

    def render(self, index: int) -> tuple[SceneFrame, ...]:
        """Frame ``index`` through each eye: (frame,), or (left, right) of one scene state."""
        if self.stereo is None:
            return (self.scene.render(index),)
        state = self.scene.state(index)
        return self.scene.draw(state, 0), self.scene.draw(state, 1)

    def messages(self, frames: Sequence[SceneFrame], stamp_ns: int) -> list[Message]:
        """The serialised messages of one instant (``frames`` from :meth:`render`)."""
        if self.stereo is None:
            msgs = self._mono_messages(frames[0], stamp_ns)
        else:
            msgs = self._stereo_messages(frames, stamp_ns, self.stereo)
        if self.clock:
            msgs.insert(0, (CLOCK_TOPIC, bm.clock(stamp_ns)))
        return [Message(topic, msg.__msgtype__, bag_types.serialize(msg)) for topic, msg in msgs]

    def _image(self, frame: SceneFrame, hdr) -> object:
        if self.compressed:
            return bm.compressed_image(frame.bgr, hdr)
        return bm.image(frame.bgr if self.encoding == "bgr8" else frame.rgb, self.encoding, hdr)

    def _mono_messages(self, frame: SceneFrame, stamp_ns: int) -> list[tuple[str, object]]:
        hdr = bag_types.header(stamp_ns, FRAME_ID)
        t = self.topics
        return [
            (self.image_topic, self._image(frame, hdr)),
            (t.camera_info, bm.camera_info(self.scene.intrinsics, hdr)),
            *_truth_messages(frame, hdr, t.gt_mask, t.gt_tips, t.gt_hidden_tips),
        ]

    def _stereo_messages(
        self, frames: Sequence[SceneFrame], stamp_ns: int, t: StereoTopics
    ) -> list[tuple[str, object]]:
        """Both eyes with one stamp and their own optical frames; truth in the left view's."""
        left, right = frames
        hdr_l, hdr_r = (bag_types.header(stamp_ns, frame_id) for frame_id in STEREO_FRAME_IDS)
        return [
            (self._image_topic(t.left_image), self._image(left, hdr_l)),
            (t.left_camera_info, self._camera_info(0, hdr_l)),
            (self._image_topic(t.right_image), self._image(right, hdr_r)),
            (t.right_camera_info, self._camera_info(1, hdr_r)),
            (t.gt_tips_3d, tips_3d(left, hdr_l)),
            *_truth_messages(left, hdr_l, t.gt_mask, t.gt_tips, t.gt_hidden_tips),
        ]

    def _camera_info(self, eye: int, hdr) -> object:
        """The eye's CameraInfo: the mono one with P of the rectified pair."""
        info = bm.camera_info(self.scene.intrinsics, hdr)
        return replace(info, p=np.asarray(self.scene.stereo_projection(eye), np.float64))

    def stamped_frames(self, count: int, start_ns: int) -> Iterator[tuple[int, tuple[SceneFrame, ...]]]:
        period_ns = round(1e9 / self.scene.config.fps)
        for i in range(count):
            yield start_ns + i * period_ns, self.render(i)


def _truth_messages(
    frame: SceneFrame, hdr, mask_topic: str, tips_topic: str, hidden_topic: str
) -> list[tuple[str, object]]:
    """Ground truth of one view: class mask, visible tips, tips of instruments hidden or cut off."""
    visible = [i for i in frame.instruments if i.tip_visible]
    hidden = frame.hidden_instruments()
    h, w = frame.mask.shape
    hidden_tips = [clip_to_image(i.tip, w, h) for i in hidden]
    return [
        (mask_topic, bm.image(frame.mask, "mono8", hdr)),
        (tips_topic, bm.pose_array([i.tip for i in visible], [i.axis for i in visible], hdr)),
        (hidden_topic, bm.pose_array(hidden_tips, [i.axis for i in hidden], hdr)),
    ]


def tips_3d(frame: SceneFrame, hdr) -> object:
    """PoseArray of the visible tips in metres (left optical frame), +x along the 3D shaft."""
    poses = [
        BAG_TYPES.new(
            "geometry_msgs/msg/Pose",
            position=BAG_TYPES.new("geometry_msgs/msg/Point", x=i.tip_3d[0], y=i.tip_3d[1], z=i.tip_3d[2]),
            orientation=shaft_quaternion(BAG_TYPES, i.shaft_axis_3d),
        )
        for i in frame.instruments
        if i.tip_visible
    ]
    return BAG_TYPES.new(POSE_ARRAY, header=hdr, poses=poses)


def write_bag(
    stream: SimStream,
    out: Path,
    frames: int,
    start_ns: int,
    storage: str = "mcap",
    overwrite: bool = False,
    show_progress: bool = True,
) -> int:
    """Write ``frames`` frames of ``stream`` into a new bag at ``out``; returns messages written."""
    from tqdm import tqdm

    written = 0
    with atomic_bag_writer(out, storage, overwrite=overwrite) as writer:
        conns = {
            topic: writer.add_connection(topic, msgtype, typestore=bag_types.typestore())
            for topic, msgtype in stream.connections()
        }
        for stamp_ns, views in tqdm(
            stream.stamped_frames(frames, start_ns),
            total=frames,
            desc="cct-sim",
            unit="frame",
            disable=not show_progress,
        ):
            for msg in stream.messages(views, stamp_ns):
                writer.write(conns[msg.topic], stamp_ns, msg.data)
                written += 1
    return written


@dataclass(frozen=True)
class LiveRun:
    sent: int  # frames published
    interrupted: bool  # SIGINT/SIGTERM (rclpy's handlers shut the context down) ended it


def run_live(
    stream: SimStream,
    frames: int | None,
    rate: float,
    start_ns: int | None,
    wait_for_subscribers: float,
    min_subscribers: int = 1,
    node_name: str = "cct_sim",
) -> LiveRun:
    """Publish on the ROS graph until ``frames`` were sent or a signal arrives.

    ``start_ns`` None stamps with wall time; otherwise frames are stamped start_ns + i/fps
    (simulated time, announced on /clock when the stream has ``clock``). Nothing spins once
    the context is shut down (a signal), so a signal ends the run cleanly.
    """
    import importlib

    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.qos import QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy

    rclpy.init()
    node = rclpy.create_node(node_name)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    qos = QoSProfile(
        history=QoSHistoryPolicy.KEEP_LAST,
        depth=5,
        reliability=QoSReliabilityPolicy.RELIABLE,
        durability=QoSDurabilityPolicy.VOLATILE,
    )

    def msg_class(msgtype: str):
        pkg, _, name = msgtype.split("/")
        return getattr(importlib.import_module(f"{pkg}.msg"), name)

    def spin_for(seconds: float, until=lambda: False) -> None:
        end = time.monotonic() + seconds
        while rclpy.ok() and time.monotonic() < end and not until():
            executor.spin_once(timeout_sec=0.05)

    pubs = {
        topic: node.create_publisher(msg_class(msgtype), topic, qos)
        for topic, msgtype in stream.connections()
    }
    image_pub = pubs[stream.image_topic]
    sent = 0
    try:
        spin_for(wait_for_subscribers, until=lambda: image_pub.get_subscription_count() >= min_subscribers)
        period = 1.0 / rate
        period_ns = round(1e9 / stream.scene.config.fps)
        next_tick = time.monotonic()
        while rclpy.ok() and (frames is None or sent < frames):
            views = stream.render(sent)
            stamp = (
                start_ns + sent * period_ns if start_ns is not None else node.get_clock().now().nanoseconds
            )
            for msg in stream.messages(views, stamp):
                pubs[msg.topic].publish(msg.data)
            sent += 1
            next_tick += period
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_tick = time.monotonic()  # fell behind: do not burst to catch up
        spin_for(0.5)  # reliable subscribers drain the last messages before the participant goes
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:  # rclpy's RCLError from a publish racing the signal's context shutdown
        if rclpy.ok():
            raise
    finally:
        # the loop ends early only when a signal shut the context down (or interrupted a call)
        interrupted = frames is None or sent < frames
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return LiveRun(sent, interrupted)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cct-sim",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--instruments", type=int, default=2, help="1..3")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=float, default=30.0, help="scene frame rate (stamp spacing)")
    p.add_argument("--rate", type=float, default=None, help="live publish rate in Hz (default: --fps)")
    p.add_argument("--smoke", type=float, default=0.0, help="0..1 haze opacity")
    p.add_argument(
        "--palette",
        choices=sorted(PALETTES),
        default="endoscope",
        help="scene colours; 'rule' matches the colour-rule test model",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument(
        "--frames", type=int, default=None, help="frames to send/write (labelled frames with --dataset)"
    )
    length.add_argument("--duration", type=float, default=None, help="seconds of scene time")
    p.add_argument("--encoding", choices=("bgr8", "rgb8"), default="bgr8")
    p.add_argument(
        "--compressed", action="store_true", help="CompressedImage (jpeg) on <image-topic>/compressed"
    )
    p.add_argument(
        "--stereo",
        action="store_true",
        help="publish the stereo pair and its truth under /stereo/ (left/right image_raw and "
        "camera_info, gt/tips_3d in metres) instead of the mono topics",
    )
    p.add_argument(
        "--clock",
        action="store_true",
        help="publish /clock and stamp in simulated time from --start-time (for use_sim_time)",
    )
    p.add_argument(
        "--start-time",
        type=float,
        default=DEFAULT_START_TIME_S,
        help="seconds: first stamp with --clock and in --bag",
    )
    p.add_argument("--image-topic", default=DEFAULT_IMAGE_TOPIC)
    p.add_argument("--camera-info-topic", default=DEFAULT_CAMERA_INFO_TOPIC)
    p.add_argument("--gt-mask-topic", default=DEFAULT_GT_MASK_TOPIC)
    p.add_argument("--gt-tips-topic", default=DEFAULT_GT_TIPS_TOPIC)
    p.add_argument(
        "--wait-for-subscribers",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="live: wait up to this long for --min-subscribers image subscribers",
    )
    p.add_argument("--min-subscribers", type=int, default=1, help="see --wait-for-subscribers")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--bag", type=Path, default=None, help="write a ROS 2 bag here instead of publishing")
    out.add_argument("--dataset", type=Path, default=None, help="write a training dataset folder here")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="--bag storage plugin")
    p.add_argument("--overwrite", action="store_true", help="--bag: replace an existing output")
    p.add_argument("--unlabelled", type=int, default=0, help="--dataset: unlabelled frames")
    p.add_argument("--sequences", type=int, default=4, help="--dataset: labelled sequences (last one = val)")
    p.add_argument("--stride", type=int, default=7, help="--dataset: frames skipped between samples")
    p.add_argument("--image-format", choices=("png", "jpg"), default="png", help="--dataset image files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _frame_count(args: argparse.Namespace, default: int | None) -> int | None:
    if args.frames is not None:
        return args.frames
    if args.duration is not None:
        return max(1, round(args.duration * args.fps))
    return default


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv if argv is not None else _strip_ros_args(sys.argv[1:]))
    try:
        config = SceneConfig(
            width=args.width,
            height=args.height,
            num_instruments=args.instruments,
            seed=args.seed,
            fps=args.fps,
            smoke=args.smoke,
            palette=args.palette,
        )
    except ValueError as exc:
        print(f"cct-sim: {exc}", file=sys.stderr)
        return 2
    if args.dataset is not None:
        return _main_dataset(args)
    topics = Topics(args.image_topic, args.camera_info_topic, args.gt_mask_topic, args.gt_tips_topic)
    stereo = StereoTopics() if args.stereo else None
    stream = SimStream(config, topics, args.encoding, args.compressed, clock=args.clock, stereo=stereo)
    start_ns = round(args.start_time * 1e9)
    if args.bag is not None:
        frames = _frame_count(args, default=round(10 * args.fps))
        try:
            n = write_bag(stream, args.bag, frames, start_ns, args.storage, args.overwrite, not args.quiet)
        except (FileExistsError, ValueError) as exc:
            print(f"cct-sim: {exc}", file=sys.stderr)
            return 2
        print(f"cct-sim: wrote {frames} frames ({n} messages) to {args.bag}")
        return 0
    live = run_live(
        stream,
        _frame_count(args, default=None),
        args.rate or args.fps,
        start_ns if args.clock else None,
        args.wait_for_subscribers,
        args.min_subscribers,
    )
    print(
        f"cct-sim: published {live.sent} frames" + (" (interrupted)" if live.interrupted else ""),
        file=sys.stderr,
    )
    return 0 if live.sent or live.interrupted else 1


def _main_dataset(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cct_surgical_seg.sim.dataset import write_dataset

    frames = _frame_count(args, default=200)
    total = frames + args.unlabelled
    with tqdm(total=total, desc="cct-sim dataset", unit="frame", disable=args.quiet) as bar:
        try:
            summary = write_dataset(
                args.dataset,
                frames,
                args.unlabelled,
                seed=args.seed,
                width=args.width,
                height=args.height,
                sequences=args.sequences,
                stride=args.stride,
                image_format=args.image_format,
                progress=bar.update,
            )
        except ValueError as exc:
            print(f"cct-sim: {exc}", file=sys.stderr)
            return 2
    print(
        f"cct-sim: dataset {summary.root}: {summary.train} train, {summary.val} val, "
        f"{summary.unlabelled} unlabelled frames"
    )
    return 0


def _strip_ros_args(argv: list[str]) -> list[str]:
    """``ros2 run``/launch append ``--ros-args ...``; those belong to rclpy, not to argparse."""
    if "--ros-args" in argv:
        return argv[: argv.index("--ros-args")]
    return argv


if __name__ == "__main__":
    sys.exit(main())
