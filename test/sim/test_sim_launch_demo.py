"""launch_testing: ``launch/demo.launch.py`` (the installed one) starts the simulator and, through
``segmentation.launch.py``, the segmentation node; the node reaches ``active``, masks come back
for the simulator's frames (same stamps), the launch arguments take effect, and shutdown leaves
no process behind.

One launch with every simulator argument off its default and ``use_sim_time:=true``: frames are
then stamped ``1000 s + i / rate`` exactly, so each received frame can be rendered again here
(``EndoscopeScene`` with the launch's width/height/instruments/seed/smoke/rate) and compared
pixel for pixel, which shows the arguments reached the simulator. The model is the shipped demo
model under another name (a symlink), so ``model:=`` is seen to take effect and the masks are a
real network's; their Dice against the scene's ground truth is checked with a loose floor.

Collected by launch_testing's pytest plugin (``generate_test_description``).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import unittest
from pathlib import Path

import pytest

pytest.importorskip("launch", reason="launch (ros2-extras) not importable")
pytest.importorskip("launch_testing", reason="launch_testing (ros2-extras) not importable")
pytest.importorskip("launch_ros", reason="launch_ros (ros2-extras) not importable")
pytest.importorskip("rclpy", reason="rclpy not importable")
# test/ holds helpers shared with other launch tests; launch_test (unlike pytest) does not add it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import launch_testing
import launch_testing.actions
import launch_testing.asserts
import numpy as np
import rclpy
from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_context import LaunchContext
from launch.launch_description_sources import (
    PythonLaunchDescriptionSource,
    get_launch_description_from_python_launch_file,
)
from launch.utilities import perform_substitutions
from lifecycle_client import call_service, wait_until_active
from rcl_interfaces.srv import GetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from cct_surgical_seg.ros import qos
from cct_surgical_seg.sim.publisher import DEFAULT_START_TIME_S, FRAME_ID
from cct_surgical_seg.sim.scene import EndoscopeScene, SceneConfig
from launch import LaunchDescription

SHARE = Path(get_package_share_directory("cct_surgical_seg"))
DEMO_LAUNCH = SHARE / "launch" / "demo.launch.py"
SHIPPED_MODEL = SHARE / "models" / "cct_demo.onnx"
WORKDIR = Path(tempfile.mkdtemp(prefix="cct-demo-launch-test-"))
MODEL = WORKDIR / "demo_model_alias.onnx"  # -> SHIPPED_MODEL; the node must report this path
NODE = "/segmentation_node"
IMAGE_TOPIC = "/camera/image_raw"

# every simulator argument off its default (see demo.launch.py), plus sim time and the backend
RATE, WIDTH, HEIGHT, INSTRUMENTS, SEED, SMOKE = 5.0, 320, 256, 3, 11, 0.15
LAUNCH_ARGS = {
    "model": str(MODEL),
    "backend": "onnxruntime",
    "rate": str(RATE),
    "width": str(WIDTH),
    "height": str(HEIGHT),
    "instruments": str(INSTRUMENTS),
    "seed": str(SEED),
    "smoke": str(SMOKE),
    "use_sim_time": "true",
}
START_NS = round(DEFAULT_START_TIME_S * 1e9)
PERIOD_NS = round(1e9 / RATE)
MASKS_WANTED = 4
MIN_BINARY_DICE = 0.6  # the demo model scores ~0.9 on the simulator; this only catches nonsense


@pytest.mark.launch_test
def generate_test_description():
    if not MODEL.is_symlink():
        MODEL.symlink_to(SHIPPED_MODEL)  # dangling if the model is missing: test_0 says so
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(DEMO_LAUNCH)), launch_arguments=LAUNCH_ARGS.items()
    )
    return LaunchDescription([include, launch_testing.actions.ReadyToTest()])


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _ours(pid: int) -> bool:
    """A live process of this package (lib/cct_surgical_seg/...) on this test's ROS domain."""
    if not _pid_alive(pid) or not any("lib/cct_surgical_seg/" in a for a in _cmdline(pid)):
        return False
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID', '')}".encode() in env


def _started_pid(proc_info, name: str) -> int | None:
    """pid of the launched process whose launch name contains ``name`` (None: not started yet)."""
    if not any(name in n for n in proc_info.process_names()):
        return None
    return getattr(proc_info[name], "pid", None)


#: pids of the two launched processes, found by the active tests, checked after shutdown
LAUNCHED: dict[str, int] = {}


class TestDemoLaunch(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.context = rclpy.Context()
        rclpy.init(context=cls.context)
        cls.node = rclpy.create_node("cct_demo_launch_probe", context=cls.context)
        cls.executor = SingleThreadedExecutor(context=cls.context)
        cls.executor.add_node(cls.node)
        cls.frames: dict[int, Image] = {}
        cls.masks: list[Image] = []
        cls.clock: list[int] = []
        stamp = lambda m: m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec  # noqa: E731
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        cls.node.create_subscription(
            Image, IMAGE_TOPIC, lambda m: cls.frames.setdefault(stamp(m), m), reliable
        )
        cls.node.create_subscription(Image, f"{NODE}/mask", cls.masks.append, qos.output_qos(10))
        cls.node.create_subscription(
            Clock, "/clock", lambda m: cls.clock.append(m.clock.sec * 1_000_000_000 + m.clock.nanosec), 10
        )
        cls.stamp = staticmethod(stamp)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.executor.shutdown()
        cls.node.destroy_node()
        cls.context.try_shutdown()

    def _spin_until(self, predicate, timeout: float, what: str):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = predicate()
            if value:
                return value
            self.executor.spin_once(timeout_sec=0.1)
        self.fail(f"timed out after {timeout:.0f} s waiting for {what}")

    def _call(self, srv, name, request):
        return call_service(self.node, self.executor, srv, name, request, timeout=20.0)

    def _wait_active(self) -> None:
        wait_until_active(self.node, self.executor, NODE, timeout=40.0)

    def test_0_defaults_of_the_launch_file(self) -> None:
        self.assertTrue(SHIPPED_MODEL.is_file(), f"shipped model missing: {SHIPPED_MODEL}")
        entities = get_launch_description_from_python_launch_file(str(DEMO_LAUNCH)).entities
        defaults = {
            e.name: perform_substitutions(LaunchContext(), e.default_value)
            for e in entities
            if isinstance(e, DeclareLaunchArgument)
        }
        self.assertLessEqual(set(LAUNCH_ARGS), set(defaults))
        self.assertEqual(defaults["model"], str(SHIPPED_MODEL))  # the shipped model by default
        for name, value in LAUNCH_ARGS.items():  # the test really changes every argument
            if name != "backend":
                self.assertNotEqual(defaults[name], value, name)

    def test_1_both_processes_come_up(self, proc_info) -> None:
        for name, marker in (("cct-sim", "lib/cct_surgical_seg/cct-sim"),
                             ("segmentation_node", "lib/cct_surgical_seg/segmentation_node")):  # fmt: skip
            pid = self._spin_until(lambda n=name: _started_pid(proc_info, n), 20, f"{name} to start")
            LAUNCHED[name] = pid
            self.assertTrue(_pid_alive(pid), f"{name} (pid {pid}) is not running")
            self.assertTrue(any(marker in arg for arg in _cmdline(pid)), _cmdline(pid))
        sim_argv = _cmdline(LAUNCHED["cct-sim"])
        expected = [
            "--rate", str(RATE), "--width", str(WIDTH), "--height", str(HEIGHT),
            "--instruments", str(INSTRUMENTS), "--seed", str(SEED), "--smoke", str(SMOKE),
            "--fps", str(RATE), "--clock",
        ]  # fmt: skip
        joined = " ".join(sim_argv)
        self.assertIn(" ".join(expected), joined)
        self.assertIn("__node:=cct_sim", joined)

        def names():
            have = {f"{ns.rstrip('/')}/{n}" for n, ns in self.node.get_node_names_and_namespaces()}
            return {"/cct_sim", NODE} <= have

        self._spin_until(names, 20, "nodes /cct_sim and /segmentation_node in the graph")

    def test_2_node_reaches_active(self) -> None:
        self._wait_active()

    def test_3_launch_arguments_reach_the_node(self) -> None:
        self._wait_active()
        names = ["model_path", "backend", "use_sim_time"]
        values = self._call(GetParameters, f"{NODE}/get_parameters", GetParameters.Request(names=names))
        got = dict(zip(names, values.values, strict=True))
        self.assertEqual(got["model_path"].string_value, str(MODEL))
        self.assertEqual(got["backend"].string_value, "onnxruntime")
        self.assertTrue(got["use_sim_time"].bool_value)
        # the node's relative 'image' input is remapped onto the simulator's topic
        self._spin_until(
            lambda: self.node.count_subscribers(IMAGE_TOPIC) >= 2, 20, "the node on " + IMAGE_TOPIC
        )

    def test_4_masks_for_the_simulators_frames(self) -> None:
        self._wait_active()
        first_frame = self._spin_until(lambda: min(self.frames, default=None), 20, "a camera frame")

        def matched():
            ours = [m for m in self.masks if self.stamp(m) >= first_frame]
            return len([m for m in ours if self.stamp(m) in self.frames]) >= MASKS_WANTED and ours

        ours = self._spin_until(matched, 25, f"{MASKS_WANTED} masks for received frames")
        # every mask (after our first frame) belongs to a frame the simulator published
        missing = [self.stamp(m) for m in ours if self.stamp(m) not in self.frames]
        self.assertFalse(missing, f"masks with stamps of no camera frame: {missing}")
        for mask in ours:
            frame = self.frames[self.stamp(mask)]
            self.assertEqual((mask.width, mask.height, mask.encoding), (WIDTH, HEIGHT, "mono8"))
            self.assertEqual(mask.header.frame_id, frame.header.frame_id)
        self.assertEqual(frame.header.frame_id, FRAME_ID)

        # sim time (use_sim_time:=true -> --clock): /clock runs and stamps are 1000 s + i / rate
        self.assertTrue(self.clock and min(self.clock) >= START_NS, self.clock[:3])
        for stamp in self.frames:
            self.assertGreaterEqual(stamp, START_NS)
            self.assertEqual((stamp - START_NS) % PERIOD_NS, 0, f"stamp {stamp} is not on the {RATE} Hz grid")

        # the frames are exactly the scene of these arguments; the masks segment them
        scene = EndoscopeScene(
            SceneConfig(width=WIDTH, height=HEIGHT, num_instruments=INSTRUMENTS, seed=SEED, fps=RATE,
                        smoke=SMOKE)
        )  # fmt: skip
        inter = total = 0
        for mask in ours:
            msg = self.frames[self.stamp(mask)]
            self.assertEqual((msg.width, msg.height, msg.encoding), (WIDTH, HEIGHT, "bgr8"))
            truth = scene.render((self.stamp(msg) - START_NS) // PERIOD_NS)
            got = np.frombuffer(bytes(msg.data), np.uint8).reshape(HEIGHT, msg.step)[:, : WIDTH * 3]
            np.testing.assert_array_equal(got.reshape(HEIGHT, WIDTH, 3), truth.rgb[..., ::-1])
            pred = np.frombuffer(bytes(mask.data), np.uint8).reshape(HEIGHT, mask.step)[:, :WIDTH] > 0
            gt = truth.mask > 0
            inter += int((pred & gt).sum())
            total += int(pred.sum() + gt.sum())
        dice = 2 * inter / max(total, 1)
        self.assertGreaterEqual(dice, MIN_BINARY_DICE, f"binary Dice {dice:.3f} of {len(ours)} masks")


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_both_processes_ran_and_exited_cleanly(self, proc_info) -> None:
        names = proc_info.process_names()
        for name in ("cct-sim", "segmentation_node"):
            self.assertTrue(any(name in n for n in names), f"{name} not among launched {names}")
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, 130])

    def test_no_process_left_behind(self) -> None:
        self.assertEqual(set(LAUNCHED), {"cct-sim", "segmentation_node"}, "active tests did not see both")
        end = time.monotonic() + 10
        alive: dict[str, int] = {}
        while time.monotonic() < end:
            alive = {name: pid for name, pid in LAUNCHED.items() if _pid_alive(pid)}
            # ... nor any other package executable on this test's private ROS domain
            for proc in Path("/proc").iterdir():
                if proc.name.isdigit() and _ours(int(proc.name)):
                    alive[" ".join(_cmdline(int(proc.name)))] = int(proc.name)
            if not alive:
                return
            time.sleep(0.2)
        self.fail(f"processes left behind: {alive}")
