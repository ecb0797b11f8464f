"""launch_testing: ``launch/segmentation.launch.py`` (the installed one) starts the node with its
config, every launch argument takes effect (``transport:=compressed`` and the ``image_topic``
remapping included), the node reaches ``active``, a frame yields a mask, the node's output holds
no ANSI colour codes, and shutdown leaves no process behind.

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
import yaml
from ament_index_python.packages import get_package_share_directory
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from lifecycle_client import call_service, wait_until_active
from rcl_interfaces.srv import GetParameters
from rclpy.executors import SingleThreadedExecutor
from ros_graph_utils import compressed_image
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from cct_surgical_seg.ros import qos
from launch import LaunchDescription

NAMESPACE = "cct_launch"
NODE = f"/{NAMESPACE}/segmentation_node"
IMAGE_TOPIC = f"/{NAMESPACE}/camera/image"
SHARE = Path(get_package_share_directory("cct_surgical_seg"))
WORKDIR = Path(tempfile.mkdtemp(prefix="cct-launch-test-"))
PARAMS_FILE = WORKDIR / "segmentation.yaml"
SHIPPED = yaml.safe_load((SHARE / "config" / "segmentation.yaml").read_text())["/**/segmentation_node"][
    "ros__parameters"
]


def _model() -> str | None:
    """A model the node can load: the rule model (tests' own builder) or the shipped demo model.

    None when there is none. No ``pytest.skip`` here: launch_testing's collection hook imports
    this module, and a skip raised there would skip every test of the directory.
    """
    env = os.environ.get("CCT_TEST_LAUNCH_MODEL")
    if env:
        return env
    try:
        from conftest import build_rule_onnx  # type: ignore[attr-defined]

        return str(build_rule_onnx(WORKDIR / "rule.onnx"))
    except ImportError:
        pass
    shipped = sorted((SHARE / "models").glob("*.onnx"))
    if shipped:
        return str(shipped[0])
    return None


MODEL = _model()


@pytest.mark.launch_test
def generate_test_description():
    if MODEL is None:  # the tests skip themselves
        return LaunchDescription([launch_testing.actions.ReadyToTest()])
    # the shipped config with one value changed, so we can tell it was this file that was read
    params = {"/**/segmentation_node": {"ros__parameters": {**SHIPPED, "score_threshold": 0.25}}}
    PARAMS_FILE.write_text(yaml.safe_dump(params))
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(SHARE / "launch" / "segmentation.launch.py")),
        launch_arguments={
            "params_file": str(PARAMS_FILE),
            "model": MODEL,
            "backend": "onnxruntime",
            "image_topic": IMAGE_TOPIC,
            "transport": "compressed",
            "namespace": NAMESPACE,
            "use_sim_time": "true",
            "log_level": "info",
        }.items(),
    )
    return LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestSegmentationLaunch(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        if MODEL is None:
            raise unittest.SkipTest(
                "no model for the launch test (no conftest.build_rule_onnx, no demo model)"
            )
        cls.context = rclpy.Context()
        rclpy.init(context=cls.context)
        cls.node = rclpy.create_node("cct_launch_probe", context=cls.context)
        cls.executor = SingleThreadedExecutor(context=cls.context)
        cls.executor.add_node(cls.node)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.executor.shutdown()
        cls.node.destroy_node()
        cls.context.try_shutdown()

    def _call(self, srv, name, request):
        return call_service(self.node, self.executor, srv, name, request)

    def _wait_active(self) -> None:
        wait_until_active(self.node, self.executor, NODE, timeout=60.0)

    def test_1_node_reaches_active_in_the_namespace(self) -> None:
        self._wait_active()
        # the node's name reaches the graph cache on its own discovery message, which can
        # trail its services by a moment on a loaded machine
        deadline = time.monotonic() + 10.0
        while NODE not in self.node.get_fully_qualified_node_names() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.2)
        self.assertIn(NODE, self.node.get_fully_qualified_node_names())

    def test_2_launch_arguments_and_params_file_take_effect(self) -> None:
        self._wait_active()
        names = [
            "model_path",
            "backend",
            "transport",
            "score_threshold",
            "use_sim_time",
            "max_image_pixels",
            "qos_reliability",
        ]
        values = self._call(
            GetParameters, f"{NODE}/get_parameters", GetParameters.Request(names=names)
        ).values
        got = dict(zip(names, values, strict=True))
        self.assertEqual(got["model_path"].string_value, MODEL)
        self.assertEqual(got["backend"].string_value, "onnxruntime")
        self.assertEqual(got["transport"].string_value, "compressed")
        self.assertAlmostEqual(got["score_threshold"].double_value, 0.25)  # from params_file
        self.assertTrue(got["use_sim_time"].bool_value)
        self.assertEqual(got["max_image_pixels"].integer_value, SHIPPED["max_image_pixels"])
        self.assertEqual(got["qos_reliability"].string_value, SHIPPED["qos_reliability"])

    def test_3_a_frame_produces_a_mask(self) -> None:
        self._wait_active()
        masks: list[Image] = []
        self.node.create_subscription(Image, f"{NODE}/mask", masks.append, qos.output_qos(10))
        pub = self.node.create_publisher(CompressedImage, IMAGE_TOPIC + "/compressed", qos.output_qos(10))
        frame = np.zeros((64, 80, 3), np.uint8)
        frame[20:30, :50] = 255
        header = Header(frame_id="launch_cam")
        header.stamp.sec, header.stamp.nanosec = 42, 7
        end = time.monotonic() + 30
        while time.monotonic() < end and not masks:
            pub.publish(compressed_image(frame, header, "png"))
            self.executor.spin_once(timeout_sec=0.3)
        self.assertTrue(masks, "no mask received")
        self.assertEqual((masks[0].width, masks[0].height, masks[0].encoding), (80, 64, "mono8"))
        self.assertEqual((masks[0].header.stamp.sec, masks[0].header.stamp.nanosec), (42, 7))
        self.assertEqual(masks[0].header.frame_id, "launch_cam")


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_clean_exit(self, proc_info) -> None:
        if MODEL is None:
            self.skipTest("nothing was launched (no model)")
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, 130])

    def test_output_has_no_ansi_colour_codes(self, proc_output) -> None:
        if MODEL is None:
            self.skipTest("nothing was launched (no model)")
        text = b"".join(io.text for io in proc_output)
        self.assertIn(b"active: compressed images on", text)
        self.assertNotIn(b"\x1b[", text, "colour escape codes in the node's launch output")

    def test_no_process_left_behind(self) -> None:
        end = time.monotonic() + 10
        leftovers: list[str] = []
        while time.monotonic() < end:
            leftovers = []
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if str(PARAMS_FILE) in cmdline:
                    leftovers.append(f"{proc.name}: {cmdline}")
            if not leftovers:
                return
            time.sleep(0.2)
        self.fail(f"processes left behind: {leftovers}")
