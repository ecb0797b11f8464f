"""segmentation_node in a real graph: node in its own process (``ros2 run``), this test process
publishes frames and reads outputs, parameters and lifecycle services over DDS.

One node process serves the whole module (start-up dominates the cost). The expected mask for a
frame comes from running the same model in-process through ``deploy.SegmentationPipeline``, so
any difference is the ROS path's fault (colour order, stride, size, stamps) - and the frame is
chosen so that the ``rule_onnx`` model marks a known bar as instrument.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python) is not importable")

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from ros_graph_utils import (
    Probe,
    compressed_image,
    diag_values,
    image_array,
    node_command,
    start_process,
    stop_process,
    wait_for,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Classification, Detection2DArray, LabelInfo

from cct_surgical_seg.messages import images
from cct_surgical_seg.ros import qos
from cct_surgical_seg.ros.msg_types import RCLPY_TYPES

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NODE = "/cct_graph/segmentation_node"
IMAGE_TOPIC = "/cct_graph/camera/image"
INFO_TOPIC = "/cct_graph/camera/camera_info"
H, W = 96, 128
MAX_PIXELS = 400 * 400
_stamp_counter = [1000]


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_file(request) -> Path:
    try:
        return Path(request.getfixturevalue("rule_onnx"))
    except pytest.FixtureLookupError:
        pytest.skip("the rule_onnx fixture (deploy layer) is not available yet")


@pytest.fixture(scope="module")
def reference(model_file: Path):
    """The same model in-process, and a bar colour it calls instrument (black = background)."""
    from cct_surgical_seg.deploy.backends import create_backend
    from cct_surgical_seg.deploy.pipeline import SegmentationPipeline

    pipeline = SegmentationPipeline(create_backend("onnxruntime", str(model_file)), track=False)
    for colour in [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (200, 200, 200)]:
        rgb = _bar_frame(colour)
        result = pipeline(rgb)
        if result.mask[40, 30] != 0 and result.mask[80, 120] == 0 and len(result.instruments) == 1:
            return pipeline, colour
    pytest.fail("rule_onnx marks none of the test colours as instrument on a black background")


def _bar_frame(colour: tuple[int, int, int]) -> np.ndarray:
    """Black frame with one horizontal bar entering from the left edge, tip near x = 69."""
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[34:46, 0:70] = colour
    return rgb


@pytest.fixture(scope="module")
def node(model_file: Path, ros_env: dict[str, str], tmp_path_factory):
    tmp = tmp_path_factory.mktemp("graph")
    params = tmp / "params.yaml"
    params.write_text(
        "/**/segmentation_node:\n  ros__parameters:\n"
        f"    model_path: '{model_file}'\n    backend: onnxruntime\n    inference_threads: 1\n"
        "    qos_reliability: reliable\n"
        f"    qos_depth: 1\n    min_instrument_area: 50\n    score_threshold: 0.3\n"
        f"    max_image_pixels: {MAX_PIXELS}\n    diagnostics_period: 0.2\n"
    )
    log = tmp / "node.log"
    remaps = ["-r", "__ns:=/cct_graph", "-r", f"image:={IMAGE_TOPIC}", "-r", f"camera_info:={INFO_TOPIC}"]
    proc = start_process(node_command([*remaps, "--params-file", str(params)]), ros_env, log)
    yield proc, log
    stop_process(proc)
    assert proc.returncode is not None


@pytest.fixture(scope="module")
def probe(node):
    p = Probe()
    reliable = qos.output_qos(10)
    p.collect("mask", Image, f"{NODE}/mask", reliable)
    p.collect("confidence", Image, f"{NODE}/confidence", reliable)
    p.collect("detections", Detection2DArray, f"{NODE}/detections", reliable)
    p.collect("rays", PoseArray, f"{NODE}/instrument_rays", reliable)
    p.collect("frame_confidence", Classification, f"{NODE}/frame_confidence", reliable)
    p.collect("label_info", LabelInfo, f"{NODE}/label_info", qos.latched_qos())
    p.collect("diag", DiagnosticArray, "/diagnostics", 50)
    p.raw_pub = p.node.create_publisher(Image, IMAGE_TOPIC, qos.output_qos(10))
    p.jpeg_pub = p.node.create_publisher(CompressedImage, IMAGE_TOPIC + "/compressed", qos.output_qos(10))
    p.info_pub = p.node.create_publisher(CameraInfo, INFO_TOPIC, qos.output_qos(10))
    proc, log = node
    try:
        wait_for(lambda: _state(p) == "active" or proc.poll() is not None, 60, "node to become active")
        assert proc.poll() is None, log.read_text()
        wait_for(lambda: p.raw_pub.get_subscription_count() > 0, 30, "node to subscribe")
        yield p
    finally:
        p.close()


# --- helpers --------------------------------------------------------------------------------


def _header(frame_id: str = "endoscope_optical") -> Header:
    _stamp_counter[0] += 1
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = 1700, _stamp_counter[0]
    return header


def _state(p: Probe) -> str:
    try:
        return p.call(GetState, f"{NODE}/get_state", GetState.Request(), timeout=5).current_state.label
    except TimeoutError:
        return ""


def _transition(p: Probe, transition_id: int) -> bool:
    return p.call(
        ChangeState, f"{NODE}/change_state", ChangeState.Request(transition=Transition(id=transition_id))
    ).success


def _set(p: Probe, name: str, value) -> tuple[bool, str]:
    pv = ParameterValue()
    if isinstance(value, bool):
        pv.type, pv.bool_value = ParameterType.PARAMETER_BOOL, value
    elif isinstance(value, int):
        pv.type, pv.integer_value = ParameterType.PARAMETER_INTEGER, value
    elif isinstance(value, float):
        pv.type, pv.double_value = ParameterType.PARAMETER_DOUBLE, value
    else:
        pv.type, pv.string_value = ParameterType.PARAMETER_STRING, value
    res = p.call(
        SetParameters,
        f"{NODE}/set_parameters",
        SetParameters.Request(parameters=[Parameter(name=name, value=pv)]),
    ).results[0]
    return res.successful, res.reason


def _get(p: Probe, *names: str) -> list:
    values = p.call(GetParameters, f"{NODE}/get_parameters", GetParameters.Request(names=list(names))).values
    out = []
    for v in values:
        out.append(
            {
                ParameterType.PARAMETER_BOOL: v.bool_value,
                ParameterType.PARAMETER_INTEGER: v.integer_value,
                ParameterType.PARAMETER_DOUBLE: v.double_value,
                ParameterType.PARAMETER_STRING: v.string_value,
            }.get(v.type)
        )
    return out


def _with_stamp(p: Probe, key: str, header: Header):
    for msg in p.messages(key):
        if msg.header.stamp == header.stamp:
            return msg
    return None


def _send_until_output(p: Probe, make_msg, key: str = "mask", timeout: float = 30.0):
    """Publish frames until ``key`` holds the output of one of them; returns (header, output)."""
    sent: list[Header] = []

    def publish() -> None:
        header = _header()
        sent.append(header)
        msg = make_msg(header)
        (p.jpeg_pub if isinstance(msg, CompressedImage) else p.raw_pub).publish(msg)

    def found():
        for header in sent:
            out = _with_stamp(p, key, header)
            if out is not None:
                return header, out
        return None

    return wait_for(found, timeout, f"{key} for a published frame", every=publish, period=0.3)


def _latest_diag(p: Probe, after: float = 0.0) -> dict[str, str]:
    p.clear("diag")
    msgs = wait_for(
        lambda: [m for m in p.messages("diag") if m.status and NODE in m.status[0].name],
        15,
        "/diagnostics from the node",
    )
    return diag_values(msgs[-1])


def _bgr_msg(rgb: np.ndarray):
    return lambda header: images.array_to_image(
        RCLPY_TYPES, np.ascontiguousarray(rgb[..., ::-1]), header, "bgr8"
    )


# --- tests ----------------------------------------------------------------------------------


def test_mask_carries_the_input_stamp_size_and_expected_classes(probe, reference, rule_mask) -> None:
    pipeline, colour = reference
    rgb = _bar_frame(colour)
    header, mask_msg = _send_until_output(probe, _bgr_msg(rgb))
    np.testing.assert_array_equal(image_array(mask_msg), rule_mask(rgb))  # the model's known rule
    assert mask_msg.header.frame_id == "endoscope_optical"
    assert (mask_msg.encoding, mask_msg.width, mask_msg.height) == ("mono8", W, H)
    np.testing.assert_array_equal(image_array(mask_msg), pipeline(rgb).mask)
    assert image_array(mask_msg)[40, 30] != 0 and image_array(mask_msg)[80, 120] == 0
    conf = wait_for(lambda: _with_stamp(probe, "confidence", header), 10, "confidence with the same stamp")
    assert (conf.width, conf.height, conf.header.frame_id) == (W, H, "endoscope_optical")
    frame = wait_for(
        lambda: _with_stamp(probe, "frame_confidence", header), 10, "frame confidence, same stamp"
    )
    [hypothesis] = frame.results
    assert hypothesis.class_id == "frame_confidence"
    assert hypothesis.score == pytest.approx(pipeline(rgb).frame_confidence, abs=1e-6)


def test_overlay_is_drawn_once_someone_subscribes(probe, reference) -> None:
    _, colour = reference
    probe.collect("overlay", Image, f"{NODE}/overlay", qos.output_qos(10))
    _, overlay = _send_until_output(probe, _bgr_msg(_bar_frame(colour)), key="overlay")
    assert (overlay.encoding, overlay.width, overlay.height) == ("bgr8", W, H)
    assert overlay.header.frame_id == "endoscope_optical"


def test_tip_of_a_known_instrument_in_pixels_and_no_rays_without_camera_info(probe, reference) -> None:
    _, colour = reference
    header, dets = _send_until_output(probe, _bgr_msg(_bar_frame(colour)), key="detections")
    assert dets.header.frame_id == "endoscope_optical"
    assert len(dets.detections) == 1
    pose = dets.detections[0].results[0].pose.pose
    # The bar enters at the left edge, so the tip is its right end, in pixels.
    assert pose.position.x == pytest.approx(69, abs=2)
    assert pose.position.y == pytest.approx(39.5, abs=2)
    assert pose.position.z == 0.0
    yaw = 2 * math.atan2(pose.orientation.z, pose.orientation.w)
    assert abs(math.remainder(yaw, 2 * math.pi)) < math.radians(5)
    assert _with_stamp(probe, "rays", header) is None  # no CameraInfo yet: no rays topic output
    label = wait_for(lambda: probe.messages("label_info"), 10, "LabelInfo")[-1]
    assert label.header.frame_id == "endoscope_optical"
    assert [c.class_name for c in label.class_map] == ["background", "shaft", "manipulator"]


def _info(header: Header, fx: float = 100.0, **changes) -> CameraInfo:
    info = CameraInfo(header=header, width=W, height=H, distortion_model="plumb_bob")
    info.k = [fx, 0.0, 64.0, 0.0, fx, 48.0, 0.0, 0.0, 1.0]
    info.d = [0.0] * 5
    for name, value in changes.items():
        setattr(info, name, value)
    return info


def _expected_ray(tip: tuple[float, float], fx: float) -> np.ndarray:
    ray = np.array([(tip[0] - 64.0) / fx, (tip[1] - 48.0) / fx, 1.0])
    return ray / np.linalg.norm(ray)


def test_rays_pair_camera_info_by_stamp_and_bad_ones_are_counted(probe, reference) -> None:
    _, colour = reference
    tip = (69.0, 39.5)
    stamp_a, stamp_b = _header(), _header()
    wait_for(lambda: probe.info_pub.get_subscription_count() > 0, 30, "the camera info subscription")
    probe.info_pub.publish(_info(stamp_a, fx=100.0))
    probe.info_pub.publish(_info(stamp_b, fx=400.0))  # newer, but not frame a's
    wait_for(lambda: int(_latest_diag(probe)["camera_info_received"]) >= 2, 15, "both camera infos")

    frame_a = images.array_to_image(
        RCLPY_TYPES, np.ascontiguousarray(_bar_frame(colour)[..., ::-1]), stamp_a, "bgr8"
    )
    rays = wait_for(
        lambda: _with_stamp(probe, "rays", stamp_a),
        30,
        "rays for the frame with camera info a's stamp",
        every=lambda: probe.raw_pub.publish(frame_a),
        period=0.3,
    )
    got = rays.poses[0].position
    np.testing.assert_allclose([got.x, got.y, got.z], _expected_ray(tip, 100.0), atol=0.02)

    before = _latest_diag(probe)
    bad = {
        "distortion": _info(_header(), d=[0.1, 0.0, 0.0]),
        "non_finite": _info(_header(), fx=float("nan")),
        "focal": _info(_header(), fx=-5.0),
    }
    for info in bad.values():
        probe.info_pub.publish(info)
    now = wait_for(
        lambda: (
            (d := _latest_diag(probe))
            and all(int(d[f"bad_camera_info_{k}"]) > int(before[f"bad_camera_info_{k}"]) for k in bad)
            and d
        ),
        15,
        "the bad camera infos to be counted",
    )
    assert now["camera_info"] == "valid"
    # A frame with no CameraInfo of its own uses the last valid one (fx = 400), never the bad ones.
    _, rays = _send_until_output(probe, _bgr_msg(_bar_frame(colour)), key="rays")
    got = rays.poses[0].position
    np.testing.assert_allclose([got.x, got.y, got.z], _expected_ray(tip, 400.0), atol=0.02)


def _bad_messages() -> dict[str, object]:
    good = images.array_to_image(RCLPY_TYPES, np.zeros((H, W, 3), np.uint8), Header(), "bgr8")

    def variant(**changes):
        msg = Image(height=good.height, width=good.width, encoding=good.encoding, step=good.step)
        msg.data = bytes(good.data)
        for k, v in changes.items():
            setattr(msg, k, v)
        return msg

    big_w, big_h = 500, 400  # 200000 px > MAX_PIXELS
    return {
        "encoding": variant(encoding="yuv999"),
        "size": variant(step=good.step - 3),
        "size ": variant(data=bytes(good.data)[: len(good.data) // 2]),  # truncated
        "empty": Image(height=0, width=0, encoding="bgr8", step=0),
        "too_large": Image(
            height=big_h, width=big_w, encoding="mono8", step=big_w, data=bytes(big_w * big_h)
        ),
    }


def test_bad_raw_inputs_are_counted_and_the_node_survives(probe, node, reference) -> None:
    before = _latest_diag(probe)
    expected: dict[str, int] = {}
    for kind, msg in _bad_messages().items():
        msg.header = _header()
        probe.raw_pub.publish(msg)
        expected[kind.strip()] = expected.get(kind.strip(), 0) + 1
        time.sleep(0.15)  # one at a time: the mailbox keeps only the newest frame

    def counted():
        now = _latest_diag(probe)
        return (
            now
            if all(
                int(now[f"bad_input_{k}"]) >= int(before[f"bad_input_{k}"]) + n for k, n in expected.items()
            )
            else None
        )

    now = wait_for(counted, 20, "bad-input counters to rise")
    assert int(now["bad_input_total"]) >= int(before["bad_input_total"]) + len(_bad_messages())
    assert node[0].poll() is None, "node died on bad input"
    _, colour = reference
    _send_until_output(probe, _bgr_msg(_bar_frame(colour)))  # still processing


def test_parameters_from_yaml_and_at_run_time(probe, reference) -> None:
    assert _get(probe, "transport", "min_instrument_area", "score_threshold", "backend") == [
        "raw",
        50,
        pytest.approx(0.3),
        "onnxruntime",
    ]
    # good run-time change, with an effect on the next frame
    assert _set(probe, "min_instrument_area", 5000) == (True, "")
    _, colour = reference
    _, dets = _send_until_output(probe, _bgr_msg(_bar_frame(colour)), key="detections")
    assert dets.detections == []  # the 840-px bar is now below the area threshold
    assert _set(probe, "min_instrument_area", 50)[0]
    assert _set(probe, "score_threshold", 0.6)[0]
    assert _get(probe, "score_threshold") == [pytest.approx(0.6)]
    # bad values are refused, with a reason, and the old value stays
    for name, value, why in [
        ("score_threshold", 1.5, "range"),
        ("qos_depth", 0, "range"),
        ("transport", "carrier-pigeon", "one of"),
        ("score_threshold", "high", ""),
        ("transport", "compressed", "deactivate first"),
    ]:
        ok, reason = _set(probe, name, value)
        assert not ok, (name, value)
        assert why in reason, reason
    assert _get(probe, "score_threshold", "transport") == [pytest.approx(0.6), "raw"]
    assert _set(probe, "score_threshold", 0.3)[0]


def test_burst_of_200_frames_drops_are_counted_and_the_last_frame_arrives(probe, reference) -> None:
    _, colour = reference
    before = _latest_diag(probe)
    rgb = _bar_frame(colour)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    headers = [_header() for _ in range(200)]
    for header in headers:
        probe.raw_pub.publish(images.array_to_image(RCLPY_TYPES, bgr, header, "bgr8"))
    last = headers[-1]
    wait_for(lambda: _with_stamp(probe, "mask", last), 60, "the mask of the burst's last frame")

    def settled():
        d = _latest_diag(probe)
        received = int(d["frames_received"]) - int(before["frames_received"])
        done = (
            int(d["frames_processed"])
            - int(before["frames_processed"])
            + int(d["frames_dropped"])
            - int(before["frames_dropped"])
        )
        return (d, received, done) if received == done else None

    d, received, _ = wait_for(settled, 20, "every received frame processed or counted as dropped")
    assert 1 <= received <= 200
    assert float(d["latency_ms_p95"]) > 0.0 and math.isfinite(float(d["latency_ms_max"]))


def test_lifecycle_transitions_and_compressed_transport(probe, reference) -> None:
    _, colour = reference
    rgb = _bar_frame(colour)
    assert _state(probe) == "active"
    assert _transition(probe, Transition.TRANSITION_DEACTIVATE)
    assert _state(probe) == "inactive"
    wait_for(lambda: probe.raw_pub.get_subscription_count() == 0, 10, "the node to unsubscribe")
    # structural parameters may change now; switch to the compressed transport
    assert _set(probe, "transport", "compressed") == (True, "")
    assert _transition(probe, Transition.TRANSITION_ACTIVATE)
    assert _state(probe) == "active"
    wait_for(lambda: probe.jpeg_pub.get_subscription_count() > 0, 10, "the compressed subscription")
    _send_until_output(probe, lambda h: compressed_image(rgb, h, "png"))
    before = _latest_diag(probe)
    garbage = CompressedImage(header=_header(), format="jpeg", data=b"\xff\xd8 definitely not a jpeg")
    probe.jpeg_pub.publish(garbage)
    wait_for(
        lambda: int(_latest_diag(probe)["bad_input_decode"]) > int(before["bad_input_decode"]),
        15,
        "the decode counter to rise",
    )

    # cleanup -> configure with a missing model fails cleanly and the node stays up
    assert _transition(probe, Transition.TRANSITION_DEACTIVATE)
    assert _transition(probe, Transition.TRANSITION_CLEANUP)
    assert _state(probe) == "unconfigured"
    good_model = _get(probe, "model_path")[0]
    assert _set(probe, "model_path", "/nonexistent/model.onnx")[0]
    assert not _transition(probe, Transition.TRANSITION_CONFIGURE)
    assert _state(probe) == "unconfigured"
    wait_for(
        lambda: any("nonexistent" in m.status[0].message for m in probe.messages("diag")),
        10,
        "the configure error in /diagnostics",
    )

    # back to the good model and raw transport
    assert _set(probe, "model_path", good_model)[0]
    assert _set(probe, "transport", "raw")[0]
    assert _transition(probe, Transition.TRANSITION_CONFIGURE)
    assert _transition(probe, Transition.TRANSITION_ACTIVATE)
    assert _state(probe) == "active"
    wait_for(lambda: probe.raw_pub.get_subscription_count() > 0, 10, "the raw subscription")
    _send_until_output(probe, _bgr_msg(rgb))
