#!/usr/bin/env python3
"""End-to-end ROS latency of segmentation_node: publish a bgr8 frame -> ~/mask received, with the
node in another process (``ros2 run``), ONNX Runtime on CPU.

Why beside a bare network figure: the same frames are also sent to an echo node (a second
process that republishes every Image it receives, no processing) so the report separates what
DDS transport costs on this machine from what segmentation costs.

Frames are sent one at a time (next frame after the previous mask arrives), so the figure is
latency, not throughput under back-pressure. They are simulated endoscope frames (``sim.scene``,
two instruments), cycled, so every stage - poses included - sees a realistic load.

With ``--baseline B.onnx`` a second model runs as another node, interleaved the same way, so two
networks (an encoder against the default one) are compared in one run on the same load.

With ``--int8`` an INT8 copy of the model (``cct-quantize --target cpu``, calibrated on other simulated
frames) runs as a second node; echo, FP32 node and INT8 node take every frame in turn.

  python bench/bench_ros_latency.py [--model M.onnx] [--baseline B.onnx] [--int8] [--frames 60] [--threads 2]
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
    """Publishes frames to one target and times the arrival of its reply on ``reply_topic``."""

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

    def connected(self) -> bool:
        return self.pub.get_subscription_count() >= 1 and self.sub.get_publisher_count() >= 1

    def once(self, msg, timeout: float = 30.0) -> float:
        """Send one frame (its stamp's nanosec identifies the reply), wait for it; ms."""
        self.want, self.event = msg.header.stamp.nanosec, threading.Event()
        sent = time.perf_counter()
        self.pub.publish(msg)
        if not self.event.wait(timeout):
            raise TimeoutError(f"no reply on {self.sub.topic_name} for frame {self.want - 1}")
        return (self.arrived - sent) * 1e3

    def close(self) -> None:
        self.node.destroy_subscription(self.sub)
        self.node.destroy_publisher(self.pub)


def interleaved(probers: dict[str, Prober], bgrs: list[np.ndarray], frames: int, warmup: int
                ) -> dict[str, list[float]]:  # fmt: skip
    """Round trips per target, frame by frame in turn (echo, fp32 node, int8 node, echo, ...).

    Why interleaved: this machine's speed drifts by tens of percent over minutes; taking the
    targets in turn on every frame puts the same drift into every column of the comparison.
    """
    from std_msgs.msg import Header

    from cct_surgical_seg.messages.images import array_to_image
    from cct_surgical_seg.ros.msg_types import RCLPY_TYPES

    out: dict[str, list[float]] = {name: [] for name in probers}
    for i in range(frames + warmup):
        header = Header(frame_id="bench")
        header.stamp.sec, header.stamp.nanosec = 1, i + 1
        # once per frame, off the clock
        msg = array_to_image(RCLPY_TYPES, bgrs[i % len(bgrs)], header, "bgr8")
        for name, prober in probers.items():
            ms = prober.once(msg)
            if i >= warmup:
                out[name].append(ms)
    return out


def quantized_copy(model: Path, height: int, width: int, workdir: Path) -> tuple[Path, float]:
    """INT8 copy of ``model`` calibrated on simulated frames that the benchmark does not send."""
    from cct_surgical_seg.deploy.quantize import quantize_int8
    from cct_surgical_seg.sim.scene import EndoscopeScene, SceneConfig

    scene = EndoscopeScene(SceneConfig(width=width, height=height, seed=1))
    out = workdir / f"{model.stem}_{height}x{width}_int8.onnx"
    frames = [scene.render(i * 4).rgb for i in range(32)]
    # the CPU scheme: ONNX Runtime fuses its uint8 activations with ReLU; the symmetric default does not
    report = quantize_int8(model, out, frames, min_agreement=0.0, target="cpu")  # agreement is reported
    return out, report.pixel_agreement


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
    ap.add_argument(
        "--int8",
        action="store_true",
        help="also run an INT8 copy of the model (cct-quantize on simulated frames), interleaved",
    )
    ap.add_argument("--baseline", help="ONNX model run as a second node, interleaved, for comparison")
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
        "threads": args.threads,
        "order": "interleaved per frame: network_only, then each model variant",
        "sizes": {},
    }
    try:
        for h, w in SIZES:
            models = {"fp32": Path(args.model) if args.model else export_random_lite0((h, w), work)}
            entry: dict[str, object] = {"model": str(models["fp32"])}
            if args.baseline:
                models["baseline"] = Path(args.baseline)
                entry["baseline"] = args.baseline
            if args.int8:
                models["int8"], entry["int8_pixel_agreement"] = quantized_copy(models["fp32"], h, w, work)
            nodes = [start_node(name, path, args.threads, env, work / f"node_{name}_{h}x{w}.log")
                     for name, path in models.items()]  # fmt: skip
            probers: dict[str, Prober] = {}
            try:
                probers["network_only"] = Prober(probe, "/cct_bench/echo_in", "/cct_bench/echo")
                for name in models:
                    probers[name] = Prober(
                        probe, f"/cct_bench/{name}/image", f"/cct_bench/{name}/segmentation_node/mask"
                    )
                deadline = time.monotonic() + 60
                while not all(p.connected() for p in probers.values()):
                    if time.monotonic() > deadline:
                        logs = "\n".join(p.read_text() for p in work.glob(f"node_*_{h}x{w}.log"))
                        raise TimeoutError("node/echo did not come up:\n" + logs)
                    time.sleep(0.1)
                raw = interleaved(probers, endoscope_frames(h, w), args.frames, args.warmup)
                entry.update({name: summary(ms) for name, ms in raw.items()})
                entry["raw_ms"] = raw
                results["sizes"][f"{w}x{h}"] = entry
                print(f"{w}x{h}: " + "; ".join(
                    f"{name} median {np.median(ms):.1f} ms p95 {np.percentile(ms, 95):.1f} ms"
                    for name, ms in raw.items()), flush=True)  # fmt: skip
            finally:
                for prober in probers.values():
                    prober.close()
                for node in nodes:
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


def start_node(name: str, model: Path, threads: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    """``ros2 run`` segmentation_node in namespace ``/cct_bench/<name>``: its relative ``image``
    input is ``<ns>/image``."""
    params = {
        "model_path": model,
        "backend": "onnxruntime",
        "qos_reliability": "reliable",
        "inference_threads": threads,
    }
    cmd = ["ros2", "run", "cct_surgical_seg", "segmentation_node", "--ros-args"]
    cmd += ["-r", f"__ns:=/cct_bench/{name}"]
    for key, value in params.items():
        cmd += ["-p", f"{key}:={value}"]
    return start(cmd, env, log)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    data, labels = [], []
    for size, entry in results["sizes"].items():
        for name, raw in entry["raw_ms"].items():
            data.append(raw)
            labels.append(f"{size}\n{'DDS echo' if name == 'network_only' else name + ' e2e'}")
    ax.boxplot(data, tick_labels=labels, showfliers=True)
    ax.axhline(33, color="r", ls="--", lw=1, label="33 ms goal (640x512)")
    ax.set_ylabel("ms (publish -> reply received)")
    ax.set_title(f"segmentation_node latency, {results['backend']}, {results['machine']['cpus']} CPUs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
