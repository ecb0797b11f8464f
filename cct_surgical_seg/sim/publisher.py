"""``cct-sim``: the simulated endoscope, live on a ROS 2 graph, into a bag, or as a dataset.

Three outputs of one stream:

* live (default): publishes ``sensor_msgs/Image`` (or ``CompressedImage``), ``CameraInfo``,
  the ground-truth mask (mono8 class ids) and ground-truth tips (``PoseArray``, pixels, only
  tips that are visible) at ``--rate``; with ``--clock`` it also publishes ``/clock`` and
  stamps frames in simulated time (starting at ``--start-time``), for ``use_sim_time`` nodes;
* ``--bag OUT``: the same messages written straight into a ROS 2 bag (mcap or sqlite3) with
  rosbags - no ROS graph, no rclpy, as fast as the frames render;
* ``--dataset DIR``: image/mask files for ``cct-train`` (see :mod:`cct_surgical_seg.sim.dataset`).

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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cct_surgical_seg.messages import bag_types
from cct_surgical_seg.messages.types import CAMERA_INFO, COMPRESSED_IMAGE, IMAGE, POSE_ARRAY
from cct_surgical_seg.offline.bag_io import atomic_bag_writer
from cct_surgical_seg.sim import bag_messages as bm
from cct_surgical_seg.sim.scene import PALETTES, EndoscopeScene, SceneConfig, SceneFrame

DEFAULT_IMAGE_TOPIC = "/camera/image_raw"
DEFAULT_CAMERA_INFO_TOPIC = "/camera/camera_info"
DEFAULT_GT_MASK_TOPIC = "/camera/gt/mask"
DEFAULT_GT_TIPS_TOPIC = "/camera/gt/tips"
CLOCK_TOPIC = "/clock"
FRAME_ID = "endoscope_optical_frame"
DEFAULT_START_TIME_S = 1_000.0  # simulated/bag time origin: far from wall time on purpose


@dataclass(frozen=True)
class Topics:
    image: str = DEFAULT_IMAGE_TOPIC
    camera_info: str = DEFAULT_CAMERA_INFO_TOPIC
    gt_mask: str = DEFAULT_GT_MASK_TOPIC
    gt_tips: str = DEFAULT_GT_TIPS_TOPIC


@dataclass(frozen=True)
class Message:
    topic: str
    msgtype: str
    data: bytes  # CDR, ready for a bag writer or an rclpy publisher


class SimStream:
    """Renders frames and turns each into the list of serialised messages that describe it."""

    def __init__(
        self,
        config: SceneConfig,
        topics: Topics = Topics(),
        encoding: str = "bgr8",
        compressed: bool = False,
        clock: bool = False,
    ) -> None:
        if encoding not in ("bgr8", "rgb8"):
            raise ValueError(f"encoding must be bgr8 or rgb8, not {encoding!r}")
        self.scene = EndoscopeScene(config)
        self.topics = topics
        self.encoding = encoding
        self.compressed = compressed
        self.clock = clock

    @property
    def image_topic(self) -> str:
        return f"{self.topics.image}/compressed" if self.compressed else self.topics.image

    def connections(self) -> list[tuple[str, str]]:
        """(topic, msgtype) of every topic this stream writes, in a stable order."""
        out = [
            (self.image_topic, COMPRESSED_IMAGE if self.compressed else IMAGE),
            (self.topics.camera_info, CAMERA_INFO),
            (self.topics.gt_mask, IMAGE),
            (self.topics.gt_tips, POSE_ARRAY),
        ]
        return ([(CLOCK_TOPIC, bm.CLOCK)] if self.clock else []) + out

    def messages(self, frame: SceneFrame, stamp_ns: int) -> list[Message]:
        hdr = bag_types.header(stamp_ns, FRAME_ID)
        if self.compressed:
            img = bm.compressed_image(frame.bgr, hdr)
        else:
            img = bm.image(frame.bgr if self.encoding == "bgr8" else frame.rgb, self.encoding, hdr)
        visible = [i for i in frame.instruments if i.tip_visible]
        msgs = [
            (self.image_topic, img),
            (self.topics.camera_info, bm.camera_info(self.scene.intrinsics, hdr)),
            (self.topics.gt_mask, bm.image(frame.mask, "mono8", hdr)),
            (self.topics.gt_tips, bm.pose_array([i.tip for i in visible], [i.axis for i in visible], hdr)),
        ]
        if self.clock:
            msgs.insert(0, (CLOCK_TOPIC, bm.clock(stamp_ns)))
        return [Message(topic, msg.__msgtype__, bag_types.serialize(msg)) for topic, msg in msgs]

    def stamped_frames(self, count: int, start_ns: int) -> Iterator[tuple[int, SceneFrame]]:
        period_ns = round(1e9 / self.scene.config.fps)
        for i in range(count):
            yield start_ns + i * period_ns, self.scene.render(i)


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
        for stamp_ns, frame in tqdm(
            stream.stamped_frames(frames, start_ns),
            total=frames,
            desc="cct-sim",
            unit="frame",
            disable=not show_progress,
        ):
            for msg in stream.messages(frame, stamp_ns):
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
            frame = stream.scene.render(sent)
            stamp = (
                start_ns + sent * period_ns if start_ns is not None else node.get_clock().now().nanoseconds
            )
            for msg in stream.messages(frame, stamp):
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
    stream = SimStream(config, topics, args.encoding, args.compressed, clock=args.clock)
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
