"""Stereo mode of segmentation_node.

Part 1, no graph: the pair checks and the 3D messages of ``messages/stereo_results.py`` on both
message factories (rosbags typestore, and rclpy's classes where installed), and the agreement
of ``launch/stereo.launch.py`` with the node.

Part 2, a real graph: the node in its own process (stereo mode, ``rule_onnx``: a colour rule
whose masks, and so 2D tips, are exact on the simulator's ``rule`` palette), this process
publishing simulated stereo pairs (``cct-sim --stereo``'s messages) and reading poses,
diagnostics, parameters and lifecycle services over DDS. One node serves the module.
"""

from __future__ import annotations

import ast
import importlib.util
import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from cct_surgical_seg.deploy.poses import Instrument
from cct_surgical_seg.deploy.stereo import Instrument3D
from cct_surgical_seg.messages.bag_types import BAG_TYPES, deserialize, serialize
from cct_surgical_seg.messages.camera import CameraModel
from cct_surgical_seg.messages.results import OutputOptions
from cct_surgical_seg.messages.stereo_results import (
    DETECTION_3D_ARRAY,
    SHAFT_ARROW_M,
    TIP_BOX_SIGMAS,
    StereoPairError,
    quaternion_axis,
    shaft_quaternion,
    stereo_camera_for,
    stereo_messages,
)

ROOT = Path(__file__).resolve().parents[2]
HAVE_RCLPY = importlib.util.find_spec("rclpy") is not None
F, CX, CY, B = 457.0, 319.5, 255.5, 0.0045


def _factories() -> list:
    out = [pytest.param(BAG_TYPES, id="rosbags")]
    if HAVE_RCLPY:
        from cct_surgical_seg.ros.msg_types import RCLPY_TYPES

        out.append(pytest.param(RCLPY_TYPES, id="rclpy"))
    return out


# --- part 1: messages and checks -----------------------------------------------------------------


def _pose(track_id: int, tip, axis, visible: bool = True, score: float = 0.9, class_id: int = 1):
    left = Instrument(
        track_id=track_id, class_id=class_id, area_px=900, centroid=(100.0, 100.0), axis=(1.0, 0.0),
        tip=(120.0, 100.0), entry=(0.0, 100.0), bbox=(0, 90, 121, 20), score=score, tip_visible=visible,
    )  # fmt: skip
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    cov = np.diag([1e-6, 4e-6, 2.5e-5])
    cov[0, 2] = cov[2, 0] = 1e-6
    return Instrument3D(
        track_id=track_id, class_id=class_id, score=score, tip_visible=visible, tip_xyz=tuple(tip),
        axis_xyz=tuple(axis), tip_std_m=tuple(np.sqrt(np.diag(cov))), disparity_px=20.0, left=left,
        tip_cov=tuple(cov.ravel()),
    )  # fmt: skip


@pytest.mark.parametrize(
    "axis", [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, 0, -1), (0.3, -0.5, 0.8), (-0.99, 0.1, 0.05)]
)
def test_shaft_quaternion_takes_x_onto_the_axis(axis) -> None:
    q = shaft_quaternion(BAG_TYPES, axis)
    assert math.isclose(q.x**2 + q.y**2 + q.z**2 + q.w**2, 1.0, abs_tol=1e-12)
    np.testing.assert_allclose(quaternion_axis(q), np.asarray(axis) / np.linalg.norm(axis), atol=1e-12)


@pytest.mark.parametrize("types", _factories())
def test_stereo_messages_in_metres_in_the_order_of_the_instruments(types) -> None:
    poses = [
        _pose(3, (0.01, -0.02, 0.11), (0.2, -0.6, 0.77)),
        _pose(7, (-0.005, 0.01, 0.09), (-0.1, 0.8, 0.6), visible=False, class_id=2),
        _pose(9, (0.0, 0.0, 0.1), (0, 0, 1), score=0.2),  # below the threshold: not reported
    ]
    header = types.new("std_msgs/msg/Header", frame_id="left_optical")
    out = stereo_messages(types, poses, header, OutputOptions(score_threshold=0.5))
    assert set(out) == {"instrument_poses", "markers", "detections_3d"}
    if types is BAG_TYPES:  # what a bag tool writes must serialise
        out = {name: deserialize(serialize(msg), msg.__msgtype__) for name, msg in out.items()}
    array = out["instrument_poses"]
    assert array.header.frame_id == "left_optical" and len(array.poses) == 2
    for pose, expected in zip(array.poses, poses, strict=False):
        p = pose.position
        assert (p.x, p.y, p.z) == expected.tip_xyz
        np.testing.assert_allclose(quaternion_axis(pose.orientation), expected.axis_xyz, atol=1e-12)

    detections = out["detections_3d"].detections
    assert [d.id for d in detections] == ["3", "7"]
    assert [d.results[0].hypothesis.class_id for d in detections] == ["shaft", "manipulator"]
    for det, expected, pose in zip(detections, poses, array.poses, strict=False):
        assert det.header.frame_id == "left_optical"
        assert det.results[0].hypothesis.score == pytest.approx(expected.score)
        assert det.results[0].pose.pose == pose  # same pose as ~/instrument_poses
        cov = np.asarray(det.results[0].pose.covariance).reshape(6, 6)
        np.testing.assert_allclose(cov[:3, :3], np.asarray(expected.tip_cov).reshape(3, 3))
        assert not cov[3:].any() and not cov[:, 3:].any()
        c = det.bbox.center.position
        assert (c.x, c.y, c.z) == expected.tip_xyz
        size = det.bbox.size
        np.testing.assert_allclose([size.x, size.y, size.z], TIP_BOX_SIGMAS * np.asarray(expected.tip_std_m))

    markers = out["markers"].markers
    assert markers[0].action == 3  # DELETEALL
    assert [(m.type, m.id) for m in markers[1:]] == [(0, 0), (2, 1), (0, 2), (2, 3)]
    for i, expected in enumerate(poses[:2]):
        arrow, sphere = markers[1 + 2 * i], markers[2 + 2 * i]
        tail, tip = ([q.x, q.y, q.z] for q in arrow.points)
        np.testing.assert_allclose(tip, expected.tip_xyz)
        np.testing.assert_allclose(np.subtract(tip, tail), SHAFT_ARROW_M * np.asarray(expected.axis_xyz))
        s = sphere.pose.position
        assert (s.x, s.y, s.z) == expected.tip_xyz
        assert sphere.header.frame_id == "left_optical"
    assert markers[2].color.a == 1.0 and markers[4].color.a < 0.5  # hidden tip: translucent


def test_stereo_messages_without_vision_msgs_leave_out_detections_3d() -> None:
    class NoVision:
        def new(self, name, /, **fields):
            return BAG_TYPES.new(name, **fields)

        def has(self, name):
            return name != DETECTION_3D_ARRAY

    out = stereo_messages(NoVision(), [], BAG_TYPES.new("std_msgs/msg/Header"), OutputOptions())
    assert set(out) == {"instrument_poses", "markers"}
    assert out["instrument_poses"].poses == [] and out["markers"].markers[0].action == 3


@pytest.mark.skipif(not HAVE_RCLPY, reason="rclpy (ROS 2 Python) is not importable")
@pytest.mark.parametrize("name", ["BoundingBox3D", "Detection3D", "Detection3DArray"])
def test_bag_definitions_of_the_3d_detections_match_the_installed_vision_msgs(name: str) -> None:
    from rosidl_runtime_py.utilities import get_message

    from cct_surgical_seg.messages.bag_types import typestore

    installed = list(get_message(f"vision_msgs/msg/{name}").get_fields_and_field_types())
    assert [field for field, _ in typestore().fielddefs[f"vision_msgs/msg/{name}"][1]] == installed


def _info(tx: float = 0.0, width: int = 640, height: int = 512, cx: float = CX):
    k = [F, 0, cx, 0, F, CY, 0, 0, 1]
    p = [F, 0, cx, tx, 0, F, CY, 0, 0, 0, 1, 0]
    return SimpleNamespace(k=k, d=[0.0] * 5, r=list(np.eye(3).ravel()), p=p, distortion_model="plumb_bob",
                           width=width, height=height)  # fmt: skip


def _check(left_enc="bgr8", right_enc="bgr8", right_hw=(512, 640), left_info=None, right_info=None):
    left_cam = CameraModel.from_camera_info(left_info or _info())
    right_cam = CameraModel.from_camera_info(right_info or _info(-F * B))
    msgs = SimpleNamespace(encoding=left_enc), SimpleNamespace(encoding=right_enc)
    rgbs = np.zeros((512, 640, 3), np.uint8), np.zeros((*right_hw, 3), np.uint8)
    return stereo_camera_for(*msgs, *rgbs, left_cam, right_cam)


def test_a_good_pair_gives_its_baseline() -> None:
    cam = _check()
    assert cam.baseline_m == pytest.approx(B) and (cam.width, cam.height) == (640, 512)


@pytest.mark.parametrize(
    ("kwargs", "kind", "words"),
    [
        ({"right_enc": "rgb8"}, "encoding_mismatch", "encodings differ"),
        ({"right_hw": (256, 320)}, "size_mismatch", "640x512"),
        ({"right_info": _info(-F * B, 320, 256)}, "camera_info_size", "right CameraInfo is for 320x256"),
        ({"right_info": _info(0.0)}, "not_rectified", "right P[0,3] must be -fx*B < 0"),
        ({"left_info": _info(-F * B), "right_info": _info(0.0)}, "not_rectified", "swapped"),
        ({"right_info": _info(-F * B, cx=330.0)}, "not_rectified", "differ in cx"),
    ],
)
def test_pairs_that_cannot_give_3d_are_refused_with_a_kind(kwargs, kind, words) -> None:
    with pytest.raises(StereoPairError, match=re.escape(words)) as err:
        _check(**kwargs)
    assert err.value.kind == kind


def test_a_pair_without_a_camera_info_names_the_eye() -> None:
    msgs = SimpleNamespace(encoding="bgr8"), SimpleNamespace(encoding="bgr8")
    rgb = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(StereoPairError, match="right eye") as err:
        stereo_camera_for(*msgs, rgb, rgb, CameraModel.from_camera_info(_info()), None)
    assert err.value.kind == "no_camera_info"
    with pytest.raises(StereoPairError, match="left and right eye"):
        stereo_camera_for(*msgs, rgb, rgb, None, None)
    compressed = SimpleNamespace(format="bgr8; jpeg compressed bgr8"), SimpleNamespace(format="png")
    with pytest.raises(StereoPairError, match="encodings differ"):  # CompressedImage: the format
        stereo_camera_for(*compressed, rgb, rgb, None, None)


def _constants(path: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return out


def test_stereo_launch_remaps_the_node_inputs_and_overrides_real_parameters() -> None:
    launch_path = ROOT / "launch" / "stereo.launch.py"
    # the constants the launch file shares with segmentation.launch.py (EXECUTABLE, NODE_NAME)
    launch = {
        **_constants(ROOT / "cct_surgical_seg" / "ros" / "launch_arguments.py"),
        **_constants(launch_path),
    }
    node = _constants(ROOT / "cct_surgical_seg" / "ros" / "segmentation_node.py")
    stereo_inputs = {node[k] for k in node if k.startswith(("LEFT_", "RIGHT_")) and k.endswith("_TOPIC")}
    assert {topic for topic, _ in launch["REMAPS"].values()} == stereo_inputs == {
        "left/image", "left/camera_info", "right/image", "right/camera_info"
    }  # fmt: skip
    assert (launch["EXECUTABLE"], launch["NODE_NAME"]) == ("segmentation_node", node["NODE_NAME"])
    params = set(
        re.findall(r'ParamSpec\(\s*"(\w+)"', (ROOT / "cct_surgical_seg/ros/parameters.py").read_text())
    )
    assert set(launch["OVERRIDES"].values()) <= params and "stereo" in params
    declared = set(re.findall(r'DeclareLaunchArgument\(\s*"(\w+)"', launch_path.read_text()))
    assert set(launch["OVERRIDES"]) <= declared
    assert '"stereo"] = True' in launch_path.read_text()


# --- part 2: the graph ---------------------------------------------------------------------------

graph = pytest.mark.skipif(not HAVE_RCLPY, reason="rclpy (ROS 2 Python) is not importable")
NS = "/cct_stereo"
NODE = f"{NS}/segmentation_node"
TOPICS = {  # cct-sim --stereo's topics, inside the test's namespace
    "left_image": f"{NS}/stereo/left/image_raw",
    "left_info": f"{NS}/stereo/left/camera_info",
    "right_image": f"{NS}/stereo/right/image_raw",
    "right_info": f"{NS}/stereo/right/camera_info",
}
TOLERANCE_M = 0.015
SIM_SEED, SIM_INDICES = 1, (0, 6, 30, 36)  # both tips visible in these frames
_stamp_ns = [5_000 * 1_000_000_000]


def _next_stamp(step_ns: int = 100_000_000) -> int:
    _stamp_ns[0] += step_ns
    return _stamp_ns[0]


@pytest.fixture(scope="module")
def sim():
    from cct_surgical_seg.sim.publisher import SimStream, StereoTopics
    from cct_surgical_seg.sim.scene import SceneConfig

    return SimStream(SceneConfig(seed=SIM_SEED, palette="rule"), stereo=StereoTopics())


@pytest.fixture(scope="module")
def stereo_node(rule_onnx: Path, ros_env: dict[str, str], tmp_path_factory):
    from ros_graph_utils import node_command, start_process, stop_process

    tmp = tmp_path_factory.mktemp("stereo")
    params = tmp / "params.yaml"
    params.write_text(
        "/**/segmentation_node:\n  ros__parameters:\n"
        f"    model_path: '{rule_onnx}'\n    backend: onnxruntime\n    inference_threads: 1\n"
        "    qos_reliability: reliable\n    qos_depth: 5\n    min_instrument_area: 50\n"
        "    score_threshold: 0.3\n    diagnostics_period: 0.2\n    stereo: true\n"
    )
    log = tmp / "node.log"
    remaps = ["-r", f"__ns:={NS}"]
    for topic, key in (("left/image", "left_image"), ("left/camera_info", "left_info"),
                       ("right/image", "right_image"), ("right/camera_info", "right_info")):  # fmt: skip
        remaps += ["-r", f"{topic}:={TOPICS[key]}"]
    proc = start_process(node_command([*remaps, "--params-file", str(params)]), ros_env, log)
    yield proc, log
    stop_process(proc)


@pytest.fixture(scope="module")
def probe(stereo_node):
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseArray
    from ros_graph_utils import Probe, wait_for
    from sensor_msgs.msg import CameraInfo, Image
    from vision_msgs.msg import Detection2DArray, Detection3DArray
    from visualization_msgs.msg import MarkerArray

    from cct_surgical_seg.ros import qos

    p = Probe("cct_stereo_probe")
    reliable = qos.output_qos(10)
    for key, kind, name in [
        ("poses", PoseArray, "instrument_poses"),
        ("det3d", Detection3DArray, "detections_3d"),
        ("det2d", Detection2DArray, "detections"),
        ("mask", Image, "mask"),
        ("markers", MarkerArray, "markers"),
    ]:
        p.collect(key, kind, f"{NODE}/{name}", reliable)
    p.collect("diag", DiagnosticArray, "/diagnostics", 50)
    p.pubs = {
        key: p.node.create_publisher(Image if key.endswith("image") else CameraInfo, topic, reliable)
        for key, topic in TOPICS.items()
    }
    proc, log = stereo_node
    try:
        wait_for(lambda: _state(p) == "active" or proc.poll() is not None, 60, "node to become active")
        assert proc.poll() is None, log.read_text()
        _wait_subscribed(p)
        yield p
    finally:
        p.close()


def _wait_subscribed(p) -> None:
    from ros_graph_utils import wait_for

    wait_for(lambda: all(pub.get_subscription_count() > 0 for pub in p.pubs.values()), 30, "subscriptions")


def _state(p) -> str:
    from lifecycle_msgs.srv import GetState

    try:
        return p.call(GetState, f"{NODE}/get_state", GetState.Request(), timeout=5).current_state.label
    except TimeoutError:
        return ""


def _transition(p, transition_id: int) -> bool:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    request = ChangeState.Request(transition=Transition(id=transition_id))
    return p.call(ChangeState, f"{NODE}/change_state", request).success


def _set(p, name: str, value) -> tuple[bool, str]:
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    pv = ParameterValue()
    if isinstance(value, float):
        pv.type, pv.double_value = ParameterType.PARAMETER_DOUBLE, value
    else:
        pv.type, pv.string_value = ParameterType.PARAMETER_STRING, value
    request = SetParameters.Request(parameters=[Parameter(name=name, value=pv)])
    result = p.call(SetParameters, f"{NODE}/set_parameters", request).results[0]
    return result.successful, result.reason


def _sim_messages(sim, index: int, stamp_ns: int) -> dict[str, object]:
    """cct-sim --stereo's messages of frame ``index`` as rclpy messages, by TOPICS key."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CameraInfo, Image

    by_topic = {m.topic: m for m in sim.messages(sim.render(index), stamp_ns)}
    t = sim.stereo
    out = {}
    for key, topic in [("left_image", t.left_image), ("left_info", t.left_camera_info),
                       ("right_image", t.right_image), ("right_info", t.right_camera_info)]:  # fmt: skip
        out[key] = deserialize_message(by_topic[topic].data, Image if key.endswith("image") else CameraInfo)
    return out


def _ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def _with_stamp(p, key: str, stamp_ns: int):
    for msg in p.messages(key):
        header = msg.markers[-1].header if key == "markers" and msg.markers else getattr(msg, "header", None)
        if header is not None and _ns(header.stamp) == stamp_ns:
            return msg
    return None


def _diag(p) -> dict[str, int | float | str]:
    from ros_graph_utils import diag_values, wait_for

    p.clear("diag")
    msgs = wait_for(
        lambda: [m for m in p.messages("diag") if m.status and NODE in m.status[0].name], 15, "/diagnostics"
    )
    return diag_values(msgs[-1])


def _wait_counter(p, key: str, above: int, what: str) -> dict:
    from ros_graph_utils import wait_for

    def risen():
        d = _diag(p)
        return d if int(d.get(key, -1)) > above else None

    return wait_for(risen, 20, what)


def _send_pair(p, sim, index: int, keys=("left_info", "right_info", "left_image", "right_image")) -> int:
    """Publish frame ``index`` with a new stamp (camera infos first); returns the stamp."""
    stamp = _next_stamp()
    msgs = _sim_messages(sim, index, stamp)
    for key in keys:
        p.pubs[key].publish(msgs[key])
    return stamp


def _send_until_poses(p, sim, index: int, timeout: float = 30.0) -> tuple[int, object]:
    """Pairs of frame ``index`` (new stamps) until one's ~/instrument_poses arrives."""
    from ros_graph_utils import wait_for

    sent: list[int] = []

    def found():
        return next(((s, m) for s in sent if (m := _with_stamp(p, "poses", s)) is not None), None)

    return wait_for(
        found, timeout, "instrument poses", every=lambda: sent.append(_send_pair(p, sim, index)), period=1.0
    )


def _check_poses_against_truth(p, sim, index: int, stamp: int, poses) -> None:
    """Left header; each pose within TOLERANCE_M of a visible simulated tip (every visible tip
    matched); ~/detections_3d in the same order; the left view's usual outputs, same stamp."""
    from ros_graph_utils import wait_for

    left = sim.render(index)[0]
    truth = np.array([t.tip_3d for t in left.instruments if t.tip_visible])
    assert poses.header.frame_id == "endoscope_left_optical_frame"
    got = np.array([[q.position.x, q.position.y, q.position.z] for q in poses.poses]).reshape(-1, 3)
    assert len(got) == len(truth), (got, truth)
    errors = np.linalg.norm(got[:, None] - truth[None], axis=2)
    assert sorted(np.argmin(errors, axis=1)) == list(range(len(truth)))  # one pose per tip
    assert errors.min(axis=1).max() < TOLERANCE_M, errors
    for q in poses.poses:  # the shaft points away from the lens, towards the tip: +z mostly
        assert quaternion_axis(q.orientation)[2] > 0.2
    det3d = wait_for(lambda: _with_stamp(p, "det3d", stamp), 10, "detections_3d, same stamp")
    assert [d.results[0].pose.pose.position for d in det3d.detections] == [q.position for q in poses.poses]
    assert all(
        np.all(np.diag(np.reshape(d.results[0].pose.covariance, (6, 6)))[:3] > 0) for d in det3d.detections
    )
    mask = wait_for(lambda: _with_stamp(p, "mask", stamp), 10, "the left mask, same stamp")
    assert (mask.width, mask.height, mask.header.frame_id) == (640, 512, "endoscope_left_optical_frame")
    det2d = wait_for(lambda: _with_stamp(p, "det2d", stamp), 10, "the left detections, same stamp")
    tips_2d = np.array([[d.results[0].pose.pose.position.x, d.results[0].pose.pose.position.y]
                        for d in det2d.detections])  # fmt: skip
    projected = got[:, :2] / got[:, 2:] * sim.scene.intrinsics.k[0] + (CX, CY)
    assert np.abs(projected[:, None] - tips_2d[None]).max(axis=2).min(axis=1).max() < 0.01  # left tips
    markers = wait_for(lambda: _with_stamp(p, "markers", stamp), 10, "3D markers, same stamp")
    spheres = [m.pose.position for m in markers.markers if m.type == 2]
    assert spheres == [q.position for q in poses.poses]


@graph
@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.parametrize("matching", ["epipolar", "batched"])
def test_a_simulated_pair_gives_metric_poses_with_the_left_header(probe, sim, matching) -> None:
    assert _set(probe, "stereo_matching", matching) == (True, "")
    for index in SIM_INDICES[:2] if matching == "epipolar" else SIM_INDICES[2:]:
        stamp, poses = _send_until_poses(probe, sim, index)
        _check_poses_against_truth(probe, sim, index, stamp, poses)
    d = _diag(probe)
    assert int(d["stereo_pairs_processed"]) >= 2 and float(d["stereo_latency_ms_max"]) > 0
    assert int(d["stereo_instruments_matched"]) >= 4 and d["right_camera_info"] == "valid"


@graph
@pytest.mark.ros
@pytest.mark.slow
def test_a_left_frame_without_a_right_partner_gives_no_pose_and_counts_as_unpaired(probe, sim) -> None:
    before = _diag(probe)
    lonely = _send_pair(probe, sim, 0, keys=("left_info", "left_image"))
    stamp, _ = _send_until_poses(probe, sim, 6)
    assert stamp > lonely
    _wait_counter(
        probe, "stereo_unpaired_left", int(before["stereo_unpaired_left"]), "an unpaired left frame"
    )
    for key in ("poses", "mask", "det3d"):
        assert _with_stamp(probe, key, lonely) is None, key


@graph
@pytest.mark.ros
@pytest.mark.slow
def test_a_pair_of_different_sizes_is_refused_and_counted(probe, sim) -> None:
    import cv2

    from cct_surgical_seg.messages.images import array_to_image
    from cct_surgical_seg.ros.msg_types import RCLPY_TYPES

    before = _diag(probe)
    stamp = _next_stamp()
    msgs = _sim_messages(sim, 30, stamp)
    half = cv2.resize(sim.render(30)[1].bgr, (320, 256), interpolation=cv2.INTER_AREA)
    msgs["right_image"] = array_to_image(RCLPY_TYPES, half, msgs["right_image"].header, "bgr8")
    for key in ("left_info", "right_info", "left_image", "right_image"):
        probe.pubs[key].publish(msgs[key])
    key = "stereo_refused_size_mismatch"
    d = _wait_counter(probe, key, int(before[key]), "the size mismatch to be counted")
    assert int(d["stereo_refused_total"]) > int(before["stereo_refused_total"])
    assert _with_stamp(probe, "poses", stamp) is None and _with_stamp(probe, "mask", stamp) is None


@graph
@pytest.mark.ros
@pytest.mark.slow
def test_a_pair_without_a_right_camera_info_is_refused_until_one_arrives(probe, sim) -> None:
    from lifecycle_msgs.msg import Transition

    # cleanup forgets every CameraInfo; configure + activate start afresh
    for transition in ("DEACTIVATE", "CLEANUP", "CONFIGURE", "ACTIVATE"):
        assert _transition(probe, getattr(Transition, f"TRANSITION_{transition}")), transition
    _wait_subscribed(probe)
    before = _diag(probe)
    assert before["right_camera_info"] == "none"
    stamp = _send_pair(probe, sim, 30, keys=("left_info", "left_image", "right_image"))
    key = "stereo_refused_no_camera_info"
    _wait_counter(probe, key, int(before[key]), "the pair without a right CameraInfo to be counted")
    assert _with_stamp(probe, "poses", stamp) is None
    _, poses = _send_until_poses(probe, sim, 30)  # with both camera infos: poses again
    assert len(poses.poses) == 2


@graph
@pytest.mark.ros
@pytest.mark.slow
def test_a_few_ms_between_the_eyes_pair_only_within_the_sync_tolerance(probe, sim) -> None:
    from lifecycle_msgs.msg import Transition
    from ros_graph_utils import wait_for

    def send_offset(offset_ns: int) -> int:
        stamp = _next_stamp()
        left, right = _sim_messages(sim, 36, stamp), _sim_messages(sim, 36, stamp + offset_ns)
        for key, msgs in (
            ("left_info", left),
            ("right_info", right),
            ("left_image", left),
            ("right_image", right),
        ):
            probe.pubs[key].publish(msgs[key])
        return stamp

    before = _diag(probe)
    exact = send_offset(3_000_000)  # 3 ms apart, tolerance 0: never a pair
    ok, reason = _set(probe, "stereo_sync_tolerance", 0.005)
    assert not ok and "deactivate first" in reason  # structural: refused while active
    assert _transition(probe, Transition.TRANSITION_DEACTIVATE)
    d = _diag(probe)  # the frames left waiting count as unpaired once the pairer is retired
    assert int(d["stereo_unpaired_left"]) > int(before["stereo_unpaired_left"])
    assert int(d["stereo_unpaired_right"]) > int(before["stereo_unpaired_right"])
    assert _with_stamp(probe, "poses", exact) is None
    assert _set(probe, "stereo_sync_tolerance", 0.005) == (True, "")
    assert _transition(probe, Transition.TRANSITION_ACTIVATE)
    _wait_subscribed(probe)
    sent: list[int] = []
    wait_for(
        lambda: any(_with_stamp(probe, "poses", s) for s in sent),
        30,
        "poses of a pair 3 ms apart",
        every=lambda: sent.append(send_offset(3_000_000)),
        period=1.0,
    )
    poses = next(m for s in sent if (m := _with_stamp(probe, "poses", s)) is not None)
    assert poses.header.frame_id == "endoscope_left_optical_frame" and len(poses.poses) == 2


@graph
@pytest.mark.ros
@pytest.mark.slow
def test_compressed_transport_takes_both_eyes_on_image_compressed(probe, sim) -> None:
    from lifecycle_msgs.msg import Transition
    from ros_graph_utils import compressed_image, wait_for
    from sensor_msgs.msg import CompressedImage

    from cct_surgical_seg.ros import qos

    pubs = {
        key: probe.node.create_publisher(CompressedImage, TOPICS[key] + "/compressed", qos.output_qos(10))
        for key in ("left_image", "right_image")
    }
    assert _transition(probe, Transition.TRANSITION_DEACTIVATE)
    assert _set(probe, "transport", "compressed") == (True, "")
    assert _transition(probe, Transition.TRANSITION_ACTIVATE)
    wait_for(
        lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 30, "compressed subscriptions"
    )
    views = sim.render(30)
    sent: list[int] = []

    def send() -> None:
        stamp = _next_stamp()
        msgs = _sim_messages(sim, 30, stamp)
        probe.pubs["left_info"].publish(msgs["left_info"])
        probe.pubs["right_info"].publish(msgs["right_info"])
        for key, view in zip(("left_image", "right_image"), views, strict=True):  # PNG: lossless
            pubs[key].publish(compressed_image(view.rgb, msgs[key].header, "png"))
        sent.append(stamp)

    wait_for(lambda: any(_with_stamp(probe, "poses", s) for s in sent), 30, "poses", every=send, period=1.0)
    stamp = next(s for s in sent if _with_stamp(probe, "poses", s))
    _check_poses_against_truth(probe, sim, 30, stamp, _with_stamp(probe, "poses", stamp))
