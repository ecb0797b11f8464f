"""Helpers of the ROS graph tests: start/stop the node in its own process group, and a probe
node (in the test process) that publishes frames and collects outputs.

Why a separate process: the contract is what another process sees over DDS (stamps, sizes,
QoS compatibility), which an in-process node would not exercise.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

NODE = "segmentation_node"


def node_command(ros_args: list[str]) -> list[str]:
    """``ros2 run`` when the ros2 CLI is installed, else the lib/ wrapper, else ``python -m``."""
    ros2 = shutil.which("ros2")
    if ros2:
        return [ros2, "run", "cct_surgical_seg", NODE, "--ros-args", *ros_args]
    prefix = Path(os.environ.get("VIRTUAL_ENV", "/nonexistent"))
    wrapper = prefix / "lib" / "cct_surgical_seg" / NODE
    if wrapper.exists():
        return [str(wrapper), "--ros-args", *ros_args]
    import sys

    return [sys.executable, "-m", "cct_surgical_seg.ros.segmentation_node", "--ros-args", *ros_args]


def start_process(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGINT the whole process group (ros2 run + the node), then SIGKILL what is left."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    except ProcessLookupError:
        pass


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


class Probe:
    """A node in the test process, spun by a background thread; outputs land in ``self.inbox``."""

    def __init__(self, name: str = "cct_test_probe") -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.inbox: dict[str, list[Any]] = {}
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # shutting down
                if not self.context.ok():
                    return

    def collect(self, key: str, msg_type: Any, topic: str, qos: Any = 10) -> None:
        self.inbox[key] = []

        def cb(msg: Any) -> None:
            with self.lock:
                self.inbox[key].append(msg)

        self.node.create_subscription(msg_type, topic, cb, qos)

    def messages(self, key: str) -> list[Any]:
        with self.lock:
            return list(self.inbox[key])

    def clear(self, key: str) -> None:
        with self.lock:
            self.inbox[key].clear()

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 20.0) -> Any:
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f"service {name} not available")
            future = client.call_async(request)
            end = time.monotonic() + timeout
            while not future.done():
                if time.monotonic() > end:
                    raise TimeoutError(f"service {name} did not answer")
                time.sleep(0.01)
            return future.result()
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.context.try_shutdown()
        self._thread.join(timeout=2.0)


def wait_for(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    every: Callable[[], None] | None = None,
    period: float = 0.1,
) -> Any:
    """Poll ``predicate`` until truthy; ``every`` runs each round (e.g. re-publish a frame)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if every is not None:
            every()
        value = predicate()
        if value:
            return value
        time.sleep(period)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def image_array(msg: Any) -> np.ndarray:
    """mono8 Image -> uint8 HxW (tests only read what the node writes: tight rows)."""
    data = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    return data[:, : msg.width]


def diag_values(msg: Any) -> dict[str, str]:
    return {kv.key: kv.value for status in msg.status for kv in status.values}


def compressed_image(rgb: np.ndarray, header: Any, fmt: str = "jpeg", quality: int = 90) -> Any:
    """RGB uint8 as sensor_msgs/CompressedImage, as image_transport's compressed plugin writes it."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    ext = ".jpg" if fmt == "jpeg" else ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"could not encode {fmt}")
    return CompressedImage(header=header, format=f"rgb8; {fmt} compressed bgr8", data=buf.tobytes())
