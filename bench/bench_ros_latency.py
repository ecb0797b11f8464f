#!/usr/bin/env python3
"""End-to-end ROS latency of segmentation_node: publish a bgr8 frame -> ~/mask received, with the
node in another process (``ros2 run``), ONNX Runtime on CPU.

Why beside a bare network figure: the same frames are also sent to an echo node (a second
process that republishes every Image it receives, no processing) so the report separates what
DDS transport costs on this machine from what segmentation costs.

Frames are sent one at a time (next frame after the previous mask arrives), so the figure is
latency, not throughput under back-pressure. They are simulated endoscope frames (``sim.scene``,
two instruments), cycled, so every stage - poses included - sees a realistic load.

  python bench/bench_ros_latency.py [--model M.onnx] [--frames 60] [--threads 2]
Without --model a random-init EfficientNet-Lite0 DeepLabV3+ is exported (cct-export, fixed size
per resolution) into a temporary folder. Writes bench/results/ros_latency.json and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SIZES = [(512, 640), (1024, 1280)]

ECHO_SOURCE = """
import sys, rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image
from cct_surgical_seg.ros import qos
rclpy.init()
n = Node("cct_bench_echo")
pub = n.create_publisher(Image, "/cct_bench/echo", qos.output_qos(1))
n.create_subscription(Image, "/cct_bench/echo_in", pub.publish, qos.input_qos("reliable", 1))
try:
    rclpy.spin(n)
except (KeyboardInterrupt, Exception):
    pass
"""


def export_random_lite0(size: tuple[int, int], workdir: Path) -> Path:
    """A random-init full-width Lite0 model (same compute as a trained one), fixed input size."""
    import torch

    from cct_surgical_seg.model.checkpoint import make_payload, save_checkpoint
    from cct_surgical_seg.model.config import ModelConfig
    from cct_surgical_seg.model.deeplab import build_segmenter

    ckpt = workdir / "lite0_random.pt"
    if not ckpt.exists():
        torch.manual_seed(0)
        cfg = ModelConfig(pretrained=False)
        save_checkpoint(ckpt, make_payload(build_segmenter(cfg).eval(), cfg))
    out = workdir / f"lite0_random_{size[0]}x{size[1]}.onnx"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cct_surgical_seg.deploy.export",
            str(ckpt),
            "-o",
            str(out),
            "--size",
            str(size[0]),
            str(size[1]),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return out


def endoscope_frames(height: int, width: int, count: int = 16) -> list[np.ndarray]:
    """Simulated endoscope frames with two instruments: a realistic load for the pose stage,
    which a random-noise frame (one region covering the whole view) is not."""
    from cct_surgical_seg.sim.scene import EndoscopeScene, SceneConfig

    scene = EndoscopeScene(SceneConfig(width=width, height=height, seed=0))
    return [scene.render(i * 3).bgr for i in range(count)]


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass


class Prober:
    """Publishes frames and times the arrival of the reply on ``reply_topic``."""

    def __init__(self, node, send_topic: str, reply_topic: str) -> None:
        from sensor_msgs.msg import Image

        from cct_surgical_seg.ros import qos

        self.node = node
        self.pub = node.create_publisher(Image, send_topic, qos.output_qos(1))
        self.event = threading.Event()
        self.want = 0
        self.arrived = 0.0
        self.sub = node.create_subscription(Image, reply_topic, self._reply, qos.output_qos(1))

    def _reply(self, msg) -> None:
        if msg.header.stamp.nanosec == self.want:
            self.arrived = time.perf_counter()
            self.event.set()

    def run(self, bgrs: list[np.ndarray], frames: int, warmup: int, timeout: float = 30.0) -> list[float]:
        from std_msgs.msg import Header

        from cct_surgical_seg.ros.conversions import array_to_image

        out: list[float] = []
        for i in range(frames + warmup):
            header = Header(frame_id="bench")
            header.stamp.sec, header.stamp.nanosec = 1, i + 1
            msg = array_to_image(bgrs[i % len(bgrs)], header, "bgr8")  # built before the clock starts
            self.want, self.event = i + 1, threading.Event()
            sent = time.perf_counter()
            self.pub.publish(msg)
            if not self.event.wait(timeout):
                raise TimeoutError(f"no reply for frame {i}")
            if i >= warmup:
                out.append((self.arrived - sent) * 1e3)
        return out


def summary(values: list[float]) -> dict[str, float]:
    a = np.asarray(values)
    return {
        "median_ms": float(np.median(a)),
        "p95_ms": float(np.percentile(a, 95)),
        "min_ms": float(a.min()),
        "max_ms": float(a.max()),
        "n": len(values),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="ONNX model (default: random-init Lite0 exported per size)")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="ORT threads (0 = ORT default)")
    ap.add_argument("--out", type=Path, default=RESULTS / "ros_latency.json")
    args = ap.parse_args()

    env = dict(os.environ)
    env.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 101)))
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(ROOT / "config" / "fastdds_shm.xml"))
    env.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="cct-bench-log-"))
    if env.get("VIRTUAL_ENV"):
        env.setdefault("AMENT_PREFIX_PATH", env["VIRTUAL_ENV"])
    os.environ.update(env)

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    work = Path(tempfile.mkdtemp(prefix="cct-bench-"))
    rclpy.init()
    probe = rclpy.create_node("cct_bench_probe")
    executor = SingleThreadedExecutor()
    executor.add_node(probe)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()

    echo = start([sys.executable, "-c", ECHO_SOURCE], env, work / "echo.log")
    results: dict[str, object] = {
        "what": "publish bgr8 frame -> ~/mask received in another process (ros2 run segmentation_node)",
        "backend": "onnxruntime CPU",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "rmw": env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp (default)"),
        "transport_profile": env["FASTDDS_DEFAULT_PROFILES_FILE"],
        "frames": args.frames,
        "sizes": {},
    }
    try:
        for h, w in SIZES:
            model = Path(args.model) if args.model else export_random_lite0((h, w), work)
            bgrs = endoscope_frames(h, w)
            node = start(
                [
                    "ros2",
                    "run",
                    "cct_surgical_seg",
                    "segmentation_node",
                    "--ros-args",
                    "-r",
                    "__ns:=/cct_bench",
                    "-p",
                    f"model_path:={model}",
                    "-p",
                    "backend:=onnxruntime",
                    "-p",
                    "image_topic:=/cct_bench/image",
                    "-p",
                    "qos_reliability:=reliable",
                    "-p",
                    f"inference_threads:={args.threads}",
                    "-p",
                    "camera_info_topic:=''",
                ],
                env,
                work / f"node_{h}x{w}.log",
            )
            try:
                seg = Prober(probe, "/cct_bench/image", "/cct_bench/segmentation_node/mask")
                net = Prober(probe, "/cct_bench/echo_in", "/cct_bench/echo")
                deadline = time.monotonic() + 60
                while (
                    seg.pub.get_subscription_count() < 1
                    or net.pub.get_subscription_count() < 1
                    or seg.sub.get_publisher_count() < 1
                    or net.sub.get_publisher_count() < 1
                ):
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            "node/echo did not come up: " + (work / f"node_{h}x{w}.log").read_text()
                        )
                    time.sleep(0.1)
                net_ms = net.run(bgrs, args.frames, args.warmup)
                seg_ms = seg.run(bgrs, args.frames, args.warmup)
                results["sizes"][f"{w}x{h}"] = {
                    "end_to_end": summary(seg_ms),
                    "network_only": summary(net_ms),
                    "model": str(model),
                    "raw_end_to_end_ms": seg_ms,
                    "raw_network_ms": net_ms,
                }
                print(
                    f"{w}x{h}: end-to-end median {np.median(seg_ms):.1f} ms p95 "
                    f"{np.percentile(seg_ms, 95):.1f} ms; network only median {np.median(net_ms):.2f} ms "
                    f"p95 {np.percentile(net_ms, 95):.2f} ms",
                    flush=True,
                )
                probe.destroy_subscription(seg.sub)
                probe.destroy_subscription(net.sub)
                probe.destroy_publisher(seg.pub)
                probe.destroy_publisher(net.pub)
            finally:
                stop(node)
    finally:
        stop(echo)
        executor.shutdown()
        probe.destroy_node()
        rclpy.try_shutdown()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(results["sizes"])
    fig, ax = plt.subplots(figsize=(6, 4))
    data, labels = [], []
    for s in sizes:
        data += [results["sizes"][s]["raw_network_ms"], results["sizes"][s]["raw_end_to_end_ms"]]
        labels += [f"{s}\nnetwork only", f"{s}\nend-to-end"]
    ax.boxplot(data, tick_labels=labels, showfliers=True)
    ax.axhline(33, color="r", ls="--", lw=1, label="33 ms goal (640x512)")
    ax.set_ylabel("ms (publish -> reply received)")
    ax.set_title(f"segmentation_node latency, {results['backend']}, {results['machine']['cpus']} CPUs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
