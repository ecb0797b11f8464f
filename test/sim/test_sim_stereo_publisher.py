"""cct-sim --stereo: the pair of one instant, its CameraInfos, the left view's truth and the 3D
tips, in messages (what live runs publish) and in a bag; the mono stream is untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")

from rosbags.highlevel import AnyReader

from cct_surgical_seg.messages.bag_types import deserialize, stamp_ns
from cct_surgical_seg.messages.stereo_results import quaternion_axis, stereo_camera_from_infos
from cct_surgical_seg.sim.publisher import STEREO_FRAME_IDS, SimStream, StereoTopics, Topics
from cct_surgical_seg.sim.publisher import main as sim_main
from cct_surgical_seg.sim.scene import EndoscopeScene, SceneConfig

CONFIG = SceneConfig(width=320, height=256, seed=1)
STEREO_TOPICS = {
    "/stereo/left/image_raw",
    "/stereo/left/camera_info",
    "/stereo/right/image_raw",
    "/stereo/right/camera_info",
    "/stereo/gt/mask",
    "/stereo/gt/tips",
    "/stereo/gt/hidden_tips",
    "/stereo/gt/tips_3d",
}


def _messages(stream: SimStream, index: int, stamp: int) -> dict[str, object]:
    return {m.topic: deserialize(m.data, m.msgtype) for m in stream.messages(stream.render(index), stamp)}


def _image(msg) -> np.ndarray:
    return np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, -1).squeeze()


def test_one_instant_is_a_rectified_pair_with_one_stamp_and_the_left_truth() -> None:
    stream = SimStream(CONFIG, stereo=StereoTopics())
    assert {topic for topic, _ in stream.connections()} == STEREO_TOPICS
    scene = EndoscopeScene(CONFIG)
    msgs = _messages(stream, 12, 7_000_000_123)
    for topic, msg in msgs.items():
        assert stamp_ns(msg.header.stamp) == 7_000_000_123, topic
        expected = STEREO_FRAME_IDS[1] if "/right/" in topic else STEREO_FRAME_IDS[0]
        assert msg.header.frame_id == expected, topic
    left, right = scene.render(12, 0), scene.render(12, 1)
    np.testing.assert_array_equal(_image(msgs["/stereo/left/image_raw"]), left.bgr)
    np.testing.assert_array_equal(_image(msgs["/stereo/right/image_raw"]), right.bgr)
    assert not np.array_equal(left.bgr, right.bgr)
    np.testing.assert_array_equal(_image(msgs["/stereo/gt/mask"]), left.mask)

    cam = stereo_camera_from_infos(msgs["/stereo/left/camera_info"], msgs["/stereo/right/camera_info"])
    assert cam.baseline_m == pytest.approx(CONFIG.stereo_baseline_m)
    right_info = msgs["/stereo/right/camera_info"]
    np.testing.assert_array_equal(right_info.k, msgs["/stereo/left/camera_info"].k)
    np.testing.assert_array_equal(right_info.r, np.eye(3).ravel())
    assert right_info.p[3] == pytest.approx(-right_info.k[0] * CONFIG.stereo_baseline_m)

    visible = [t for t in left.instruments if t.tip_visible]
    assert visible
    tips = msgs["/stereo/gt/tips_3d"].poses
    assert [(p.position.x, p.position.y, p.position.z) for p in tips] == [t.tip_3d for t in visible]
    for pose, truth in zip(tips, visible, strict=True):
        np.testing.assert_allclose(quaternion_axis(pose.orientation), truth.shaft_axis_3d, atol=1e-9)
    tips_2d = msgs["/stereo/gt/tips"].poses
    assert [(p.position.x, p.position.y) for p in tips_2d] == [t.tip for t in visible]


def test_the_right_eye_sees_the_tips_at_their_disparity() -> None:
    """The 3D truth, the CameraInfos and the right image agree: projecting a tip through the
    right P gives the right view's own 2D tip."""
    stream = SimStream(CONFIG, stereo=StereoTopics())
    msgs = _messages(stream, 30, 1)
    p_right = np.asarray(msgs["/stereo/right/camera_info"].p).reshape(3, 4)
    left, right = stream.render(30)
    seen = [r for t, r in zip(left.instruments, right.instruments, strict=True) if t.tip_visible]
    assert seen
    for pose, truth in zip(msgs["/stereo/gt/tips_3d"].poses, seen, strict=True):
        xyz = np.array([pose.position.x, pose.position.y, pose.position.z, 1.0])
        u, v, w = p_right @ xyz
        np.testing.assert_allclose((u / w, v / w), truth.tip, atol=1e-6)


def test_the_mono_stream_keeps_its_topics() -> None:
    mono = SimStream(CONFIG, Topics())
    topics = {topic for topic, _ in mono.connections()}
    assert not topics & STEREO_TOPICS and "/camera/image_raw" in topics
    (frame,) = mono.render(3)
    msgs = _messages(mono, 3, 5)
    np.testing.assert_array_equal(_image(msgs["/camera/image_raw"]), frame.bgr)
    assert msgs["/camera/camera_info"].p[3] == 0.0


def test_cli_stereo_bag_holds_every_topic_once_per_frame(tmp_path: Path) -> None:
    out = tmp_path / "stereo_bag"
    argv = ["--stereo", "--bag", str(out), "--frames", "3", "--width", "160", "--height", "128",
            "--compressed", "--quiet"]  # fmt: skip
    assert sim_main(argv) == 0
    counts: dict[str, int] = {}
    stamps: dict[str, list[int]] = {}
    with AnyReader([out]) as reader:
        for conn, logtime, raw in reader.messages():
            counts[conn.topic] = counts.get(conn.topic, 0) + 1
            msg = reader.deserialize(raw, conn.msgtype)
            assert stamp_ns(msg.header.stamp) == logtime
            stamps.setdefault(conn.topic, []).append(logtime)
    compressed = {t.replace("image_raw", "image_raw/compressed") for t in STEREO_TOPICS}
    assert counts == dict.fromkeys(compressed, 3)
    assert stamps["/stereo/left/image_raw/compressed"] == stamps["/stereo/right/image_raw/compressed"]
