"""Soak test of segmentation_node: a steady camera stream with one fault injected every second.

    python bench/soak.py [--duration 600] [--rate 30] [--width 640 --height 512] [--model M.onnx]

The node runs in its own process (the installed ``segmentation_node``, namespace ``/cct_soak``,
ONNX Runtime); this process publishes simulated endoscope frames (bgr8) and a valid CameraInfo
with each frame's stamp at ``--rate``, and once a second injects the next fault of the cycle:

1. a bad frame (truncated data, wrong step, unsupported encoding, a frame above the pixel budget),
2. a bad CameraInfo (NaN in K, three D coefficients for plumb_bob, fx <= 0),
3. a parameter change (score_threshold toggled; an out-of-range value, which must be refused),
4. a lifecycle deactivate + activate.

It reports, per ``--window`` seconds: frames sent and masks received, the node's own counters
(received / processed / dropped, bad input and refused camera infos by kind), the node's
resident memory, and latency (frame stamp -> mask received) p50 / p99. It writes the whole run
to ``bench/results/soak.json`` (``--out``) and exits non-zero when the node died, its resident
memory grew by more than 10 % after the warm-up, or any output carried a NaN. Latency figures
are only meaningful on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NAMESPACE = "/cct_soak"
NODE = f"{NAMESPACE}/segmentation_node"
FAULTS = ("bad_frame", "bad_camera_info", "parameter", "lifecycle")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds of streaming")
    p.add_argument("--rate", type=float, default=30.0, help="frames per second")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--model", type=Path, default=None, help="ONNX model (default: the demo model)")
    p.add_argument("--threads", type=int, default=2, help="the node's inference threads")
    p.add_argument("--window", type=float, default=10.0, help="seconds per report row")
    p.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds before RSS is baselined (default: min(60, duration/4))",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    return p.parse_args(argv)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def start_node(model: Path, threads: int, log: Path) -> subprocess.Popen:
    wrapper = (
        Path(os.environ.get("VIRTUAL_ENV", sys.prefix)) / "lib" / "cct_surgical_seg" / "segmentation_node"
    )
    exe = (
        [str(wrapper)]
        if wrapper.exists()
        else [sys.executable, "-m", "cct_surgical_seg.ros.segmentation_node"]
    )
    params = {"model_path": model, "backend": "onnxruntime", "inference_threads": threads,
              "qos_reliability": "reliable", "diagnostics_period": 1.0}  # fmt: skip
    cmd = [*exe, "--ros-args", "-r", f"__ns:={NAMESPACE}"]
    for key, value in params.items():
        cmd += ["-p", f"{key}:={value}"]
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)


class Soak:
    """The publishing/collecting side: one rclpy node, spun by a background thread."""

    def __init__(self, args: argparse.Namespace) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseArray
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import CameraInfo, Image
        from vision_msgs.msg import Detection2DArray

        from cct_surgical_seg.ros import qos

        rclpy.init()
        self.args = args
        self.node = rclpy.create_node("cct_soak_driver")
        self.lock = threading.Lock()
        self.sent_at: dict[tuple[int, int], int] = {}
        self.latency_ms: list[tuple[float, float]] = []  # (time s, ms)
        self.masks = 0
        self.nan_outputs: Counter[str] = Counter()
        self.diag: dict[str, str] = {}
        out = qos.output_qos(10)
        self.image_pub = self.node.create_publisher(Image, f"{NAMESPACE}/image", out)
        self.info_pub = self.node.create_publisher(CameraInfo, f"{NAMESPACE}/camera_info", out)
        self.node.create_subscription(Image, f"{NODE}/mask", self._on_mask, out)
        self.node.create_subscription(PoseArray, f"{NODE}/instrument_rays", self._on_rays, out)
        self.node.create_subscription(Detection2DArray, f"{NODE}/detections", self._on_detections, out)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.spinner = threading.Thread(target=self._spin, daemon=True)
        self.spinner.start()
        self.t0 = time.monotonic()

    def _spin(self) -> None:
        import rclpy

        while rclpy.ok():
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except Exception:  # shutting down
                return

    # --- outputs ------------------------------------------------------------------------------

    def _on_mask(self, msg) -> None:
        now = time.time_ns()
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        with self.lock:
            self.masks += 1
            if key in self.sent_at:
                self.latency_ms.append((time.monotonic() - self.t0, (now - self.sent_at.pop(key)) / 1e6))

    def _on_rays(self, msg) -> None:
        values = [
            v
            for p in msg.poses
            for v in (p.position.x, p.position.y, p.position.z, p.orientation.z, p.orientation.w)
        ]
        if not all(math.isfinite(v) for v in values):
            with self.lock:
                self.nan_outputs["instrument_rays"] += 1

    def _on_detections(self, msg) -> None:
        values = []
        for d in msg.detections:
            box = d.bbox
            values += [box.center.position.x, box.center.position.y, box.size_x, box.size_y]
            for r in d.results:
                values += [r.hypothesis.score, r.pose.pose.position.x, r.pose.pose.position.y]
        if not all(math.isfinite(v) for v in values):
            with self.lock:
                self.nan_outputs["detections"] += 1

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith(NODE):
                with self.lock:
                    self.diag = {kv.key: kv.value for kv in status.values}

    # --- inputs -------------------------------------------------------------------------------

    def header(self, frame_id: str = "endoscope_optical_frame"):
        from std_msgs.msg import Header

        now = time.time_ns()
        header = Header(frame_id=frame_id)
        header.stamp.sec, header.stamp.nanosec = divmod(now, 1_000_000_000)
        return header, now

    def publish_frame(self, bgr: np.ndarray, info) -> None:
        from cct_surgical_seg.messages.images import array_to_image
        from cct_surgical_seg.ros.msg_types import RCLPY_TYPES

        header, now = self.header()
        info.header = header
        self.info_pub.publish(info)
        with self.lock:
            self.sent_at[(header.stamp.sec, header.stamp.nanosec)] = now
            if len(self.sent_at) > 1000:  # frames the node dropped never come back
                for key in list(self.sent_at)[:500]:
                    del self.sent_at[key]
        self.image_pub.publish(array_to_image(RCLPY_TYPES, bgr, header, "bgr8"))

    def call(self, srv_type, name: str, request, timeout: float = 10.0):
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                return None
            future = client.call_async(request)
            end = time.monotonic() + timeout
            while not future.done() and time.monotonic() < end:
                time.sleep(0.005)
            return future.result() if future.done() else None
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown()


def camera_info(width: int, height: int):
    from sensor_msgs.msg import CameraInfo

    from cct_surgical_seg.sim.scene import EndoscopeScene, SceneConfig

    cam = EndoscopeScene(SceneConfig(width=width, height=height)).intrinsics
    info = CameraInfo(width=width, height=height, distortion_model=cam.distortion_model)
    info.k, info.d, info.p = list(cam.k), list(cam.d), list(cam.projection)
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    return info


def bad_frames(width: int, height: int) -> list:
    from sensor_msgs.msg import Image

    good = bytes(width * height * 3)
    return [
        Image(width=width, height=height, encoding="bgr8", step=width * 3, data=good[: len(good) // 2]),
        Image(width=width, height=height, encoding="bgr8", step=width * 3 - 1, data=good),
        Image(
            width=width,
            height=height,
            encoding="yuv422_yuy2",
            step=width * 2,
            data=good[: width * height * 2],
        ),
        Image(width=5000, height=4000, encoding="mono8", step=5000, data=bytes(16)),
    ]


def bad_infos(width: int, height: int) -> list:
    good = camera_info(width, height)
    nan_k, short_d, bad_focal = (
        camera_info(width, height),
        camera_info(width, height),
        camera_info(width, height),
    )
    nan_k.k = [float("nan"), *list(good.k)[1:]]
    short_d.d = [0.1, 0.01, 0.0]
    k = list(good.k)
    k[0] = -1.0
    bad_focal.k = k
    return [nan_k, short_d, bad_focal]


def inject(soak: Soak, index: int, bad: list, infos: list) -> str:
    """The next fault of the cycle; returns what was done."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    kind = FAULTS[index % len(FAULTS)]
    turn = index // len(FAULTS)
    if kind == "bad_frame":
        msg = bad[turn % len(bad)]
        msg.header, _ = soak.header()
        soak.image_pub.publish(msg)
    elif kind == "bad_camera_info":
        info = infos[turn % len(infos)]
        info.header, _ = soak.header()
        soak.info_pub.publish(info)
    elif kind == "parameter":
        value = (0.5, 0.55, 2.0)[turn % 3]  # 2.0 is out of range: must be refused
        pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        req = SetParameters.Request(parameters=[Parameter(name="score_threshold", value=pv)])
        res = soak.call(SetParameters, f"{NODE}/set_parameters", req)
        ok = bool(res and res.results[0].successful)
        if ok == (value > 1.0):
            return f"parameter: score_threshold={value} was {'accepted' if ok else 'refused'} (wrong)"
    else:
        for transition in (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_ACTIVATE):
            res = soak.call(
                ChangeState, f"{NODE}/change_state", ChangeState.Request(transition=Transition(id=transition))
            )
            if not (res and res.success):
                return f"lifecycle: transition {transition} failed"
    return kind


def window_row(soak: Soak, t_from: float, t_to: float, sent: int, pid: int) -> dict:
    with soak.lock:
        lat = np.array([ms for t, ms in soak.latency_ms if t_from <= t < t_to])
        diag = dict(soak.diag)
        masks = soak.masks
    counters = {
        k: int(v) for k, v in diag.items() if k.startswith(("frames_", "bad_", "processing_")) and v.isdigit()
    }
    return {
        "t_s": round(t_to, 1),
        "frames_sent": sent,
        "masks_received": masks,
        "rss_mb": round(rss_mb(pid), 1),
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
        "latency_ms_p99": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
        **counters,
    }


class Stream:
    """What one run streams: cycled frames, a valid CameraInfo, and the bad inputs."""

    def __init__(self, args: argparse.Namespace) -> None:
        from cct_surgical_seg.sim.scene import EndoscopeScene, SceneConfig

        scene = EndoscopeScene(SceneConfig(width=args.width, height=args.height, num_instruments=2, seed=0))
        self.frames = [np.ascontiguousarray(scene.render(i * 3).bgr) for i in range(60)]
        self.info = camera_info(args.width, args.height)
        self.bad = bad_frames(args.width, args.height)
        self.bad_infos = bad_infos(args.width, args.height)


def stream(soak: Soak, node: subprocess.Popen, args: argparse.Namespace, warmup: float) -> dict:
    """Publish at ``--rate`` with one fault a second; a report row every ``--window`` s."""
    inputs = Stream(args)
    rows: list[dict] = []
    problems: list[str] = []
    faults: Counter[str] = Counter()
    soak.t0 = start = time.monotonic()
    period, sent, fault_index, baseline_rss = 1.0 / args.rate, 0, 0, None
    next_tick, next_fault, next_row = start, start + 1.0, start + args.window
    while (now := time.monotonic()) < start + args.duration and node.poll() is None:
        if now >= next_tick:
            soak.publish_frame(inputs.frames[sent % len(inputs.frames)], inputs.info)
            sent += 1
            next_tick = max(next_tick + period, now)  # late: no burst to catch up
        if now >= next_fault:
            done = inject(soak, fault_index, inputs.bad, inputs.bad_infos)
            faults[FAULTS[fault_index % len(FAULTS)]] += 1
            if done not in FAULTS:
                problems.append(done)
            fault_index, next_fault = fault_index + 1, next_fault + 1.0
        if now >= next_row:
            rows.append(window_row(soak, next_row - args.window - start, next_row - start, sent, node.pid))
            print(json.dumps(rows[-1]), flush=True)
            if baseline_rss is None and next_row - start >= warmup:
                baseline_rss = rows[-1]["rss_mb"]
            next_row += args.window
        time.sleep(max(0.0, min(next_tick, next_fault, next_row) - time.monotonic()))
    if node.poll() is None:  # the last, possibly partial, window
        rows.append(window_row(soak, next_row - args.window - start, args.duration, sent, node.pid))
        print(json.dumps(rows[-1]), flush=True)
    return {"rows": rows, "problems": problems, "faults": dict(faults), "baseline_rss_mb": baseline_rss}


def verdict(run: dict, soak: Soak, node: subprocess.Popen, log: Path) -> list[str]:
    """Why the run failed: the node died, RSS grew > 10 % after warm-up, an output held NaN."""
    problems = list(run["problems"])
    if node.returncode is not None and node.returncode != 0:
        problems.append(f"the node exited with code {node.returncode} (log: {log})")
    baseline, rows = run["baseline_rss_mb"], run["rows"]
    final = rows[-1]["rss_mb"] if rows else None
    if baseline and final and final > 1.10 * baseline:
        problems.append(
            f"RSS grew {100 * (final / baseline - 1):.1f} % after warm-up ({baseline} -> {final} MB)"
        )
    if soak.nan_outputs:
        problems.append(f"outputs with NaN: {dict(soak.nan_outputs)}")
    return problems


def wait_for_node(soak: Soak, node: subprocess.Popen, timeout: float = 120.0) -> bool:
    end = time.monotonic() + timeout
    while soak.image_pub.get_subscription_count() == 0:
        if node.poll() is not None or time.monotonic() > end:
            return False
        time.sleep(0.1)
    return True


def stop(node: subprocess.Popen) -> None:
    if node.poll() is None:
        node.send_signal(signal.SIGINT)
        try:
            node.wait(timeout=20)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()


def run(args: argparse.Namespace) -> int:
    from cct_surgical_seg.resources import demo_model

    model = (args.model or demo_model()).resolve()
    warmup = args.warmup if args.warmup is not None else min(60.0, args.duration / 4)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log = args.out.with_suffix(".node.log")
    node = start_node(model, args.threads, log)
    soak = Soak(args)
    try:
        if not wait_for_node(soak, node):
            print(f"soak: the node did not come up (log: {log})", file=sys.stderr)
            return 1
        print(f"soak: {args.duration:.0f} s at {args.rate:g} Hz, {args.width}x{args.height}, {model}")
        result = stream(soak, node, args, warmup)
        alive = node.poll() is None
    finally:
        soak.close()
        stop(node)
    problems = verdict(result, soak, node, log) + ([] if alive else ["the node died during the run"])
    summary = {
        "duration_s": args.duration,
        "rate_hz": args.rate,
        "size": [args.width, args.height],
        "model": str(model),
        "warmup_s": warmup,
        "baseline_rss_mb": result["baseline_rss_mb"],
        "faults_injected": result["faults"],
        "nan_outputs": dict(soak.nan_outputs),
        "node_exit_code": node.returncode,
        "problems": problems,
        "windows": result["rows"],
        "machine": {"cpus": os.cpu_count(), "note": "latency figures are only meaningful on an idle machine"},
    }
    args.out.write_text(json.dumps(summary, indent=2))
    print(f"soak: faults injected {result['faults']}; wrote {args.out}")
    for problem in problems:
        print(f"soak: FAIL {problem}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
