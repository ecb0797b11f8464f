"""``cct-bag`` writes what the live node publishes: the same frames through both, compared message
for message (mask, confidence, detections, instrument rays, markers).

The live side is a real graph: ``segmentation_node`` in its own process, fed the bag's images and
camera infos by a probe node over DDS. The offline side is ``segment_bag`` on the same bag. The
bag's messages are deserialized into rclpy classes, so "identical" is rclpy's own field-by-field
equality of the two messages.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("rosbags")
rclpy = pytest.importorskip("rclpy")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ros"))

from geometry_msgs.msg import PoseArray  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from ros_graph_utils import (  # noqa: E402
    Probe,
    diag_values,
    node_command,
    start_process,
    stop_process,
    wait_for,
)
from rosbags.highlevel import AnyReader  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from cct_surgical_seg.deploy.pipeline import PipelineSettings, build_pipeline  # noqa: E402
from cct_surgical_seg.offline.bag import segment_bag  # noqa: E402
from cct_surgical_seg.resources import demo_model  # noqa: E402
from cct_surgical_seg.ros import qos  # noqa: E402
from cct_surgical_seg.sim.publisher import main as sim_main  # noqa: E402

vision_msgs = pytest.importorskip("vision_msgs.msg")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

FRAMES = 8
OUTPUTS = {
    "mask": Image,
    "confidence": Image,
    "detections": vision_msgs.Detection2DArray,
    "frame_confidence": vision_msgs.Classification,
    "instrument_rays": PoseArray,
    "markers": MarkerArray,
}


def _read_bag(path: Path) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    with AnyReader([path]) as reader:
        for conn, _, raw in reader.messages():
            out.setdefault(conn.topic, []).append(bytes(raw))
    return out


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> tuple[Path, Path]:
    """A simulated bag (two instruments, CameraInfo every frame) and cct-bag's output for it."""
    tmp = tmp_path_factory.mktemp("same")
    src = tmp / "sim"
    assert sim_main(["--bag", str(src), "--frames", str(FRAMES), "--instruments", "2", "--quiet"]) == 0
    pipeline = build_pipeline(PipelineSettings(demo_model(), "onnxruntime", {"num_threads": 1}))
    segment_bag(src, tmp / "out", pipeline, copy_input=False)
    return src, tmp / "out"


@pytest.fixture(scope="module")
def live(bags, ros_env: dict[str, str], tmp_path_factory) -> dict[str, list]:
    """Every output the node published for the bag's frames, in frame order."""
    src, _ = bags
    tmp = tmp_path_factory.mktemp("live")
    params = tmp / "params.yaml"
    params.write_text(
        "/**/segmentation_node:\n  ros__parameters:\n"
        f"    model_path: '{demo_model()}'\n    backend: onnxruntime\n    inference_threads: 1\n"
        "    qos_reliability: reliable\n    diagnostics_period: 0.2\n"
    )
    remaps = ["-r", "image:=/camera/image_raw", "-r", "camera_info:=/camera/camera_info"]
    proc = start_process(node_command([*remaps, "--params-file", str(params)]), ros_env, tmp / "node.log")
    probe = Probe("cct_same_probe")
    try:
        return _feed(probe, proc, tmp / "node.log", _read_bag(src))
    finally:
        probe.close()
        stop_process(proc)


def _feed(probe: Probe, proc, log: Path, inputs: dict[str, list[bytes]]) -> dict[str, list]:
    """Camera infos first (the node keys them by stamp), then one frame at a time, each frame's
    outputs awaited before the next is sent, so the node drops nothing."""
    for name, msg_type in OUTPUTS.items():
        probe.collect(name, msg_type, f"/segmentation_node/{name}", qos.output_qos(50))
    probe.collect("diag", DiagnosticArray, "/diagnostics", 50)
    image_pub = probe.node.create_publisher(Image, "/camera/image_raw", qos.output_qos(10))
    info_pub = probe.node.create_publisher(CameraInfo, "/camera/camera_info", qos.output_qos(50))
    wait_for(
        lambda: image_pub.get_subscription_count() > 0 or proc.poll() is not None, 120, "node subscribed"
    )
    assert proc.poll() is None, log.read_text()
    wait_for(lambda: info_pub.get_subscription_count() > 0, 30, "camera info subscription")
    for raw in inputs["/camera/camera_info"]:
        info_pub.publish(deserialize_message(raw, CameraInfo))

    def infos_received() -> bool:
        diags = probe.messages("diag")
        return bool(diags) and int(diag_values(diags[-1]).get("camera_info_received", 0)) >= FRAMES

    wait_for(infos_received, 30, "the node to take every camera info")
    for i, raw in enumerate(inputs["/camera/image_raw"]):
        image_pub.publish(deserialize_message(raw, Image))
        wait_for(
            lambda n=i + 1: all(len(probe.messages(k)) >= n for k in OUTPUTS), 60, f"outputs of frame {i}"
        )
    return {name: probe.messages(name) for name in OUTPUTS}


def test_cct_bag_writes_what_the_node_publishes(bags, live: dict[str, list]) -> None:
    _, out = bags
    written = _read_bag(out)
    assert set(written) == {f"/segmentation_node/{name}" for name in OUTPUTS}
    for name, msg_type in OUTPUTS.items():
        offline = [deserialize_message(raw, msg_type) for raw in written[f"/segmentation_node/{name}"]]
        assert len(offline) == len(live[name]) == FRAMES, name
        for i, (a, b) in enumerate(zip(offline, live[name], strict=True)):
            assert a == b, f"{name} of frame {i} differs between cct-bag and the node"
    detected = sum(len(m.detections) for m in live["detections"])
    assert detected > 0, "the frames must exercise detections, rays and markers, not only masks"
