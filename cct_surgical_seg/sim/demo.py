"""``cct-demo``: the demo graph (``launch/demo.launch.py``: simulated endoscope -> segmentation
node) in a real ROS 2 graph, scored live.

Runs ``ros2 launch`` on demo.launch.py - the one definition of the demo graph, so the demo and
``ros2 launch cct_surgical_seg demo.launch.py`` run the same processes with the same parameters
and QoS - on a private ROS domain (localhost discovery, the repository's Fast DDS shared-memory
profile), listens to the graph from this process, and once the simulator's ``--duration``
seconds of frames went through prints per-frame latency (image stamp -> mask received),
Dice/IoU against the simulator's ground-truth masks, tip error (median, p95) against its
ground-truth tips, how often the node's ``tip_visible`` flag is right and the node's own frame
counters from ``/diagnostics`` (received, processed, dropped, bad input: where a missing mask
went); saves an overlay strip (PNG), a JSON summary and optionally an mp4.

``--stereo`` runs the graph with ``stereo:=true`` (the simulator's rectified pair under
``/stereo/``, the node in stereo mode) and adds the 3D figures: tip error in mm of the node's
``~/instrument_poses`` against the simulator's ``/stereo/gt/tips_3d`` (both in metres in the
left optical frame, matched by header stamp; visible true tips, greedy matching within 20 mm),
matched/missed/extra counts, stereo latency (left image stamp -> poses received) and the
node's pair counters from ``/diagnostics``; the figures above are then the left view's.

Why separate processes and a real graph: that is how the node runs on a robot, so the demo
exercises discovery, QoS matching, serialisation and the node's threading, not just the
pipeline. Exit code 1 when no mask (with ``--stereo``: no instrument poses) arrived (nothing
to show is a failure, not a summary of zeros), 2 for bad arguments or a missing model.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray

from cct_surgical_seg.deploy.backends import KINDS
from cct_surgical_seg.deploy.overlay import draw_overlay
from cct_surgical_seg.io_utils import atomic_write_bytes, atomic_write_json
from cct_surgical_seg.messages.images import image_to_rgb
from cct_surgical_seg.messages.results import tip_visible
from cct_surgical_seg.metrics import binary_dice_iou, dice_iou
from cct_surgical_seg.offline.evaluation import (
    ConfusionMatrix,
    TipErrors,
    format_rows,
    pose_positions_to_pixels,
    summary_rows,
)
from cct_surgical_seg.resources import FASTDDS_PROFILE, checkout_root, demo_model, find_data_file
from cct_surgical_seg.sim.publisher import StereoTopics, Topics

DEMO_LAUNCH = ("launch", "demo.launch.py")
NODE_PREFIX = "/segmentation_node"  # the node's name in segmentation.launch.py, no namespace
CLASS_NAMES = ("background", "shaft", "manipulator")
MATCH_3D_M = 0.02  # a predicted 3D tip farther than this from every true tip is extra
#: /diagnostics counters of the node kept by the demo (the largest value heard of each)
NODE_FRAME_COUNTERS = ("frames_received", "frames_processed", "frames_dropped", "bad_input_total")
NODE_PAIR_COUNTERS = ("stereo_pairs", "stereo_pairs_processed", "stereo_refused_total")
DIAGNOSTICS_WAIT_S = 2.5  # > the node's diagnostics_period (config/segmentation.yaml: 1 s)
Point3 = tuple[float, float, float]


def view_topics(stereo: bool) -> Topics:
    """The simulator's topics of the scored 2D view: the mono camera, or the left eye."""
    if not stereo:
        return Topics()
    s = StereoTopics()
    return Topics(image=s.left_image, camera_info=s.left_camera_info, gt_mask=s.gt_mask, gt_tips=s.gt_tips)


def graph_env(domain_id: int) -> dict[str, str]:
    """Environment for the children: private domain, localhost only, our DDS profile."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    profile = find_data_file(*FASTDDS_PROFILE)
    if profile is not None:
        env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(checkout_root()), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    if env.get("VIRTUAL_ENV") and "AMENT_PREFIX_PATH" not in env:
        env["AMENT_PREFIX_PATH"] = env["VIRTUAL_ENV"]
    return env


@dataclass
class Collected:
    """Everything heard on the graph, keyed by header stamp (ns)."""

    images: dict[int, np.ndarray] = field(default_factory=dict)
    gt_masks: dict[int, np.ndarray] = field(default_factory=dict)
    gt_tips: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    gt_hidden: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    masks: dict[int, np.ndarray] = field(default_factory=dict)
    tips: dict[int, list[tuple[float, float, float]]] = field(default_factory=dict)
    tip_flags: dict[int, list[bool]] = field(default_factory=dict)
    latency_ms: dict[int, float] = field(default_factory=dict)
    k: tuple[float, ...] | None = None
    gt_tips_3d: dict[int, list[Point3]] = field(default_factory=dict)  # stereo: metres, visible tips
    poses_3d: dict[int, list[Point3]] = field(default_factory=dict)  # stereo: the node's tips, metres
    pose_latency_ms: dict[int, float] = field(default_factory=dict)
    node_counters: dict[str, int] = field(default_factory=dict)
    diagnostics_heard: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Listener:
    """An rclpy node in this process that records the simulator's truth and the node's output:
    of one view (``topics``: the mono camera or the left eye), and with ``stereo`` the 3D tips."""

    def __init__(
        self,
        keep_images: int,
        topics: Topics | None = None,
        stereo: bool = False,
        node_prefix: str = NODE_PREFIX,
    ) -> None:
        self._to_rgb = image_to_rgb
        self.data = Collected()
        self.keep_images = keep_images
        self.node_prefix = node_prefix
        self.node = rclpy.create_node("cct_demo_listener")
        self._reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self._topics = topics or Topics()
        sub = self._subscribe
        self._outputs = [
            sub(Image, f"{node_prefix}/mask", self._on_mask),
            sub(Detection2DArray, f"{node_prefix}/detections", self._on_detections),
        ]
        sub(DiagnosticArray, "/diagnostics", self._on_diagnostics)
        sub(Image, self._topics.gt_mask, self._on_gt_mask)
        sub(PoseArray, self._topics.gt_tips, self._on_gt_tips)
        sub(PoseArray, self._topics.gt_hidden_tips, self._on_gt_hidden)
        sub(CameraInfo, self._topics.camera_info, self._on_info)
        if stereo:
            self._outputs.append(sub(PoseArray, f"{node_prefix}/instrument_poses", self._on_poses_3d))
            sub(PoseArray, StereoTopics().gt_tips_3d, self._on_gt_tips_3d)
        self._image_sub = None

    def _subscribe(self, msg_type, topic: str, callback):
        return self.node.create_subscription(msg_type, topic, callback, self._reliable)

    def hears_node(self) -> bool:
        """Whether each of the node's outputs this listener records has a matched publisher."""
        return all(s.get_publisher_count() > 0 for s in self._outputs)

    def subscribe_to_camera(self) -> None:
        """Subscribe to the camera image last: the simulator holds its first frame until this
        subscription (and the node's) match, so by then the node's outputs are matched too
        (:meth:`hears_node`) and no early mask is lost to discovery."""
        if self._image_sub is None:
            self._image_sub = self._subscribe(Image, self._topics.image, self._on_image)

    @staticmethod
    def _stamp(msg) -> int:
        return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec

    @staticmethod
    def _positions(msg) -> list[Point3]:
        return [(p.position.x, p.position.y, p.position.z) for p in msg.poses]

    def _on_image(self, msg) -> None:
        if len(self.data.images) < self.keep_images:
            with self.data.lock:
                self.data.images[self._stamp(msg)] = self._to_rgb(msg)

    def _on_gt_mask(self, msg) -> None:
        with self.data.lock:
            self.data.gt_masks[self._stamp(msg)] = self._to_rgb(msg)[:, :, 0].copy()

    def _on_gt_tips(self, msg) -> None:
        with self.data.lock:
            self.data.gt_tips[self._stamp(msg)] = [(p.position.x, p.position.y) for p in msg.poses]

    def _on_gt_hidden(self, msg) -> None:
        with self.data.lock:
            self.data.gt_hidden[self._stamp(msg)] = [(p.position.x, p.position.y) for p in msg.poses]

    def _on_info(self, msg) -> None:
        self.data.k = tuple(float(v) for v in msg.k)

    def _on_mask(self, msg) -> None:
        now = time.time_ns()
        stamp = self._stamp(msg)
        with self.data.lock:
            self.data.masks[stamp] = self._to_rgb(msg)[:, :, 0].copy()
            self.data.latency_ms[stamp] = (now - stamp) / 1e6

    def _on_detections(self, msg) -> None:
        """Tips in pixels: the pose of each detection's hypothesis, and whether it is visible
        (its covariance, ``messages.results``)."""
        poses = [det.results[0].pose for det in msg.detections if det.results]
        with self.data.lock:
            self.data.tips[self._stamp(msg)] = [
                (p.pose.position.x, p.pose.position.y, p.pose.position.z) for p in poses
            ]
            self.data.tip_flags[self._stamp(msg)] = [tip_visible(p.covariance) for p in poses]

    def _on_gt_tips_3d(self, msg) -> None:
        with self.data.lock:
            self.data.gt_tips_3d[self._stamp(msg)] = self._positions(msg)

    def _on_poses_3d(self, msg) -> None:
        now = time.time_ns()
        stamp = self._stamp(msg)
        with self.data.lock:
            self.data.poses_3d[stamp] = self._positions(msg)
            self.data.pose_latency_ms[stamp] = (now - stamp) / 1e6

    def _on_diagnostics(self, msg) -> None:
        """The node's frame and pair counters: the largest value heard of each."""
        self.data.diagnostics_heard += 1
        for status in msg.status:
            if status.hardware_id != self.node_prefix:
                continue
            for kv in status.values:
                if kv.key in NODE_FRAME_COUNTERS + NODE_PAIR_COUNTERS and kv.value.isdigit():
                    counters = self.data.node_counters
                    counters[kv.key] = max(counters.get(kv.key, 0), int(kv.value))

    def spin_until(self, done, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rclpy.spin_once(self.node, timeout_sec=0.05)
            if done():
                return True
        return False


def score(data: Collected, class_names: tuple[str, ...]) -> tuple[ConfusionMatrix, TipErrors, list[int]]:
    """Scores over every stamp that has both a prediction and the truth."""
    seg, tips = ConfusionMatrix(num_classes=max(3, len(class_names))), TipErrors()
    scored = sorted(set(data.masks) & set(data.gt_masks))
    for stamp in scored:
        seg.update(data.masks[stamp], data.gt_masks[stamp])
        if stamp in data.tips and stamp in data.gt_tips:
            pred = pose_positions_to_pixels(data.tips[stamp], data.k)
            hidden = data.gt_hidden.get(stamp)
            flags = data.tip_flags[stamp] if hidden is not None else None
            tips.update(pred, data.gt_tips[stamp], flags, hidden or ())
    return seg, tips, scored


def score_3d(data: Collected) -> tuple[TipErrors, list[int]]:
    """3D tip errors (metres) over every stamp with both the node's poses and the 3D truth."""
    tips = TipErrors(max_match_px=MATCH_3D_M)  # math.dist: the same greedy matching in 3D
    scored = sorted(set(data.poses_3d) & set(data.gt_tips_3d))
    for stamp in scored:
        tips.update(data.poses_3d[stamp], data.gt_tips_3d[stamp])
    return tips, scored


def overlay(rgb: np.ndarray, mask: np.ndarray, pred_tips: list, true_tips: list) -> np.ndarray:
    """BGR frame with the predicted classes tinted (``cct-infer``'s palette), true tips (green
    rings) and predicted tips (crosses)."""
    out = cv2.cvtColor(draw_overlay(rgb, mask, num_classes=len(CLASS_NAMES)), cv2.COLOR_RGB2BGR)
    for x, y in true_tips:
        cv2.circle(out, (round(x), round(y)), 9, (60, 230, 60), 2, cv2.LINE_AA)
    for x, y in pred_tips:
        cv2.drawMarker(out, (round(x), round(y)), (0, 255, 255), cv2.MARKER_TILTED_CROSS, 14, 2, cv2.LINE_AA)
    return out


def _terminate(proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """SIGINT to ``ros2 launch`` (it shuts its processes down), then SIGKILL to what is left."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def launch_command(args: argparse.Namespace, model: Path, frames: int) -> list[str]:
    """``ros2 launch`` of demo.launch.py with this run's arguments; the listener is the second
    image subscriber the simulator waits for."""
    ros2 = shutil.which("ros2") or str(Path(sys.executable).with_name("ros2"))
    launch_file = find_data_file(*DEMO_LAUNCH) or checkout_root().joinpath(*DEMO_LAUNCH)
    values = {
        "model": model,
        "backend": args.backend,
        "rate": args.rate,
        "width": args.width,
        "height": args.height,
        "instruments": args.instruments,
        "seed": args.seed,
        "smoke": args.smoke,
        "palette": args.palette,
        "frames": frames,
        "wait_for_subscribers": args.startup_timeout,
        "min_subscribers": 2,
        "stereo": "true" if args.stereo else "false",
    }
    return [ros2, "launch", str(launch_file), *(f"{k}:={v}" for k, v in values.items())]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cct-demo",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", type=Path, default=None, help="ONNX model (default: models/cct_demo.onnx)")
    p.add_argument("--backend", default="auto", choices=KINDS)
    p.add_argument("--duration", type=float, default=6.0, help="seconds of video to stream")
    p.add_argument("--rate", type=float, default=15.0, help="frames per second sent by the simulator")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--instruments", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", type=float, default=0.0)
    p.add_argument(
        "--palette",
        choices=("endoscope", "rule"),
        default="endoscope",
        help="scene colours ('rule': for the colour-rule test model)",
    )
    p.add_argument(
        "--stereo",
        action="store_true",
        help="the stereo graph: score the node's 3D instrument poses (mm) and the left view",
    )
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="folder for the strip, JSON, video")
    p.add_argument("--video", action="store_true", help="also save an mp4 of the overlays")
    p.add_argument("--strip-frames", type=int, default=5)
    p.add_argument(
        "--startup-timeout",
        type=float,
        default=90.0,
        help="seconds to wait for the node to load its model and subscribe",
    )
    p.add_argument("--domain-id", type=int, default=None, help="ROS domain (default: a random private one)")
    p.add_argument("--node-log", type=Path, default=None, help="write the launch's output here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    model = (args.model or demo_model()).resolve()
    if not model.is_file():
        print(
            f"cct-demo: model {model} not found; train one (cct-train on cct-sim --dataset data, then "
            "cct-export) or pass --model",
            file=sys.stderr,
        )
        return 2
    domain = args.domain_id if args.domain_id is not None else random.Random(os.getpid()).randint(1, 101)
    env = graph_env(domain)
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    if "FASTDDS_DEFAULT_PROFILES_FILE" in env:
        os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = env["FASTDDS_DEFAULT_PROFILES_FILE"]
    frames = max(1, round(args.duration * args.rate))
    what = "stereo pairs" if args.stereo else "frames"
    print(f"cct-demo: ROS_DOMAIN_ID={domain}, model {model}, {frames} {what} at {args.rate:g} Hz")
    rclpy.init()
    listener = Listener(keep_images=frames, topics=view_topics(args.stereo), stereo=args.stereo)
    log: IO[Any] | int = open(args.node_log, "w") if args.node_log else subprocess.DEVNULL  # noqa: SIM115
    graph = subprocess.Popen(
        launch_command(args, model, frames),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wall = _run(listener, graph, frames, args)
    finally:
        _terminate(graph)
        listener.node.destroy_node()
        rclpy.try_shutdown()
        if not isinstance(log, int):
            log.close()
    if not listener.data.masks:
        where = f" (log: {args.node_log})" if args.node_log else " (pass --node-log FILE for its output)"
        print(f"cct-demo: the demo graph sent no mask{where}", file=sys.stderr)
    return report(listener.data, frames, wall, args)


def _run(listener: Listener, graph: subprocess.Popen, frames: int, args: argparse.Namespace) -> float:
    """Listen until the simulator's frames went through the node; the stream's wall time."""
    data = listener.data
    # The simulator holds its first frame until the node (active: model loaded) and this
    # listener subscribe to the camera, and the listener subscribes only once it hears the
    # node's outputs, so no frame is sent into a half-built graph.
    listener.spin_until(lambda: graph.poll() is not None or listener.hears_node(), args.startup_timeout + 10)
    listener.subscribe_to_camera()
    listener.spin_until(lambda: graph.poll() is not None or bool(data.gt_masks), args.startup_timeout + 10)
    start = time.monotonic()
    listener.spin_until(
        lambda: graph.poll() is not None or len(data.gt_masks) >= frames, args.duration * 3 + 10
    )
    # The last frames are still in flight through the node: wait while its outputs keep coming.
    while _outstanding(data) > 0:
        before = _received(data)
        if not listener.spin_until(lambda n=before: _received(data) > n, 3.0):
            break
    wall = time.monotonic() - start
    # The node's counters come once per diagnostics period: hear one more for the final ones.
    heard = data.diagnostics_heard
    listener.spin_until(lambda: data.diagnostics_heard > heard, DIAGNOSTICS_WAIT_S)
    return wall


def _received(data: Collected) -> int:
    """The node's outputs heard: masks, and in stereo mode pose arrays."""
    return len(data.masks) + len(data.poses_3d)


def _outstanding(data: Collected) -> int:
    """Truth heard for which the node's output has not come (yet, or ever: dropped frames)."""
    return len(data.gt_masks) - len(data.masks) + len(data.gt_tips_3d) - len(data.poses_3d)


def report(data: Collected, sent: int, wall_s: float, args: argparse.Namespace) -> int:
    """Print the summary; write the strip, the JSON (and the video). 1 when nothing came back."""
    seg, tips, scored = score(data, CLASS_NAMES)
    lat = latency_figures([data.latency_ms[s] for s in scored if s in data.latency_ms])
    stereo = stereo_summary(data) if args.stereo else None
    node = {name: data.node_counters.get(name) for name in NODE_FRAME_COUNTERS}
    rows = [
        ("frames sent / truth heard / masks received", f"{sent} / {len(data.gt_masks)} / {len(data.masks)}"),
        ("node frames received / processed / dropped / bad", _slashed(node, NODE_FRAME_COUNTERS, "d")),
    ]
    if lat["mean"] is not None:
        rows.append(("latency mean / p50 / p95 / max (ms)", _slashed(lat, ("mean", "p50", "p95", "max"))))
    rows.append(("stream wall time (s)", f"{wall_s:.1f}"))
    if scored:
        rows += summary_rows(seg, tips, CLASS_NAMES)
    if stereo is not None:
        rows += stereo_rows(stereo)
    print("cct-demo summary:")
    print(format_rows(rows))
    missing = _missing_output(data, args.stereo)
    if missing:
        print(f"cct-demo: no {missing} arrived from segmentation_node", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    _write_overlays(data, scored, args)
    summary = {
        "frames_sent": sent,
        "masks_received": len(data.masks),
        "frames_scored": len(scored),
        "node": node,
        "latency_ms": lat,
        "instrument_dice": _f(binary_dice_iou(seg.matrix)[0]),
        "instrument_iou": _f(binary_dice_iou(seg.matrix)[1]),
        "class_dice": [_f(v) for v in dice_iou(seg.matrix)[0]],
        "class_iou": [_f(v) for v in dice_iou(seg.matrix)[1]],
        "tip_error_px": tip_figures(tips),
        "tip_visible_accuracy": _f(tips.visible_flag_accuracy()),
        "tip_visible_scored": tips.flags_matched,
        "model": str(args.model or demo_model()),
    }
    if stereo is not None:
        summary["stereo"] = stereo
    atomic_write_json(args.out / "demo_summary.json", summary)
    return 0


def _missing_output(data: Collected, stereo: bool) -> str | None:
    """The output of the node that never came ('mask', 'instrument_poses'), or None."""
    if not data.masks:
        return "mask"
    if stereo and not data.poses_3d:
        return "instrument_poses"
    return None


def latency_figures(values_ms: Sequence[float]) -> dict[str, float | None]:
    """mean / p50 / p95 / max of latencies in ms (all None when there are none)."""
    lat = np.asarray(values_ms, np.float64)
    if not lat.size:
        return dict.fromkeys(("mean", "p50", "p95", "max"))
    return {
        "mean": _f(lat.mean()),
        "p50": _f(np.percentile(lat, 50)),
        "p95": _f(np.percentile(lat, 95)),
        "max": _f(lat.max()),
    }


def tip_figures(tips: TipErrors, scale: float = 1.0) -> dict[str, float | int | None]:
    """Tip error mean / median / p95 (times ``scale``: pixels, or metres -> mm) and the counts."""
    return {
        "mean": _f(tips.mean() * scale),
        "median": _f(tips.median() * scale),
        "p95": _f(tips.p95() * scale),
        "matched": tips.matched,
        "missed": tips.missed,
        "extra": tips.false_alarms,
    }


def stereo_summary(data: Collected) -> dict[str, Any]:
    """The stereo figures: 3D tip error in mm, counts, latency to ``~/instrument_poses``, and
    the node's pair counters (largest values heard on /diagnostics)."""
    tips, scored = score_3d(data)
    return {
        "truth_heard": len(data.gt_tips_3d),
        "poses_received": len(data.poses_3d),
        "pairs_scored": len(scored),
        "max_match_mm": MATCH_3D_M * 1000.0,
        "tip_error_3d_mm": tip_figures(tips, scale=1000.0),
        "latency_ms": latency_figures(list(data.pose_latency_ms.values())),
        "node": {name: data.node_counters.get(name) for name in NODE_PAIR_COUNTERS},
    }


def stereo_rows(stereo: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows of :func:`stereo_summary` for the printed table."""
    err, lat, node = stereo["tip_error_3d_mm"], stereo["latency_ms"], stereo["node"]
    return [
        (
            "stereo truth heard / poses received / scored",
            f"{stereo['truth_heard']} / {stereo['poses_received']} / {stereo['pairs_scored']}",
        ),
        (
            "node pairs formed / processed",
            f"{_text(node['stereo_pairs'])} / {_text(node['stereo_pairs_processed'])}",
        ),
        ("3D tip error median / p95 (mm)", _slashed(err, ("median", "p95"))),
        (
            f"3D tips matched / missed / extra (<= {stereo['max_match_mm']:g} mm)",
            f"{err['matched']} / {err['missed']} / {err['extra']}",
        ),
        ("stereo latency mean / p50 / p95 (ms)", _slashed(lat, ("mean", "p50", "p95"))),
    ]


def _text(value: float | int | None, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def _slashed(figures: dict[str, Any], keys: Sequence[str], spec: str = ".1f") -> str:
    return " / ".join(_text(figures[k], spec) for k in keys)


def _write_overlays(data: Collected, scored: list[int], args: argparse.Namespace) -> None:
    """The overlay strip of ``--strip-frames`` scored frames (PNG), and with ``--video`` an mp4."""
    with_images = [s for s in scored if s in data.images]
    picks = [
        with_images[round(i)]
        for i in np.linspace(0, len(with_images) - 1, min(args.strip_frames, len(with_images)))
    ]
    panels = []
    for stamp in with_images if args.video else picks:
        pred = pose_positions_to_pixels(data.tips.get(stamp, []), data.k)
        panels.append(
            (stamp, overlay(data.images[stamp], data.masks[stamp], pred, data.gt_tips.get(stamp, [])))
        )
    if not panels:
        return
    strip = np.hstack([p for s, p in panels if s in picks])
    ok, png = cv2.imencode(".png", strip)
    if ok:
        atomic_write_bytes(args.out / "demo_strip.png", png.tobytes())
        print(f"cct-demo: overlay strip -> {args.out / 'demo_strip.png'}")
    if args.video:
        _write_video(args.out / "demo.mp4", [p for _, p in panels], args.rate)


def _f(v: float) -> float | None:
    return None if v is None or math.isnan(float(v)) else round(float(v), 4)


def _write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """mp4 via OpenCV's bundled encoder, written next to the target then renamed into place."""
    tmp = path.with_name(f".{path.stem}.tmp.mp4")
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        print("cct-demo: this OpenCV build cannot write mp4; skipped the video", file=sys.stderr)
        return
    for frame in frames:
        writer.write(frame)
    writer.release()
    os.replace(tmp, path)
    print(f"cct-demo: video -> {path}")


if __name__ == "__main__":
    sys.exit(main())
