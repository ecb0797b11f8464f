"""cct-sim (live) ends cleanly on SIGINT and SIGTERM: exit code 0 and no traceback, whether the
signal comes while it publishes or while it waits for subscribers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import rclpy_available

pytestmark = pytest.mark.skipif(not rclpy_available(), reason="rclpy not installed")

ROOT = Path(__file__).resolve().parents[2]


def _sim(topic: str, env: dict[str, str], *extra: str) -> subprocess.Popen:
    env = dict(env, PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "cct_surgical_seg.sim.publisher", "--width", "64", "--height", "64",
           "--rate", "10", "--image-topic", topic, *extra]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def probe():
    """An rclpy node of the test, on its own context."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("cct_signal_probe", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    context.try_shutdown()


def _spin_until(executor, done, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and not done():
        executor.spin_once(timeout_sec=0.1)
    return bool(done())


def _signal_and_collect(sim: subprocess.Popen, sig: int) -> str:
    try:
        sim.send_signal(sig)
        _, err = sim.communicate(timeout=30)
    finally:
        if sim.poll() is None:
            sim.kill()
            sim.communicate()
    return err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_live_sim_exits_0_on_a_signal_while_publishing(sig: int, probe, ros_env: dict[str, str]) -> None:
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    node, executor = probe
    topic = f"/cct_signal_{sig}/image"
    heard: list[int] = []
    node.create_subscription(
        Image, topic, lambda _: heard.append(1), QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
    )
    sim = _sim(topic, ros_env)
    published = _spin_until(executor, lambda: heard, 60)
    err = _signal_and_collect(sim, sig)
    assert published, f"cct-sim published nothing: {err}"
    assert sim.returncode == 0, err
    assert "Traceback" not in err, err
    assert "(interrupted)" in err


def test_live_sim_exits_0_on_sigterm_while_waiting_for_subscribers(probe, ros_env: dict[str, str]) -> None:
    node, executor = probe
    topic = "/cct_signal_wait/image"
    sim = _sim(topic, ros_env, "--wait-for-subscribers", "120", "--min-subscribers", "5")
    up = _spin_until(executor, lambda: node.count_publishers(topic) > 0, 60)
    err = _signal_and_collect(sim, signal.SIGTERM)
    assert up, f"cct-sim never advertised {topic}: {err}"
    assert sim.returncode == 0, err
    assert "Traceback" not in err and "published 0 frames (interrupted)" in err, err
