"""cct-sim --stereo --bag and cct-bag --stereo: what the node's stereo mode publishes, per pair, at
the left image's log time and stamp; unpaired frames counted and giving nothing; 3D tip error
against the simulator's truth; nothing left behind on error.

The model is ``rule_onnx`` (a colour rule) on the simulator's ``rule`` palette, seed 1 (both tips
visible in the first frames, as in test/ros/test_ros_stereo.py), so masks are nearly exact and
the 3D tips land within millimetres of the truth.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags")

from failing_pipeline import FailsOnThirdFrame
from rosbags.highlevel import AnyReader

from cct_surgical_seg.deploy.pipeline import PipelineSettings, build_pipeline
from cct_surgical_seg.messages import bag_types
from cct_surgical_seg.messages.bag_types import stamp_ns
from cct_surgical_seg.messages.stereo_results import DETECTION_3D_ARRAY
from cct_surgical_seg.messages.types import IMAGE, MARKER_ARRAY, POSE_ARRAY
from cct_surgical_seg.offline.bag_cli import main as bag_main
from cct_surgical_seg.offline.bag_io import atomic_bag_writer
from cct_surgical_seg.offline.bag_stereo import segment_stereo_bag
from cct_surgical_seg.sim.publisher import SimStream, StereoTopics
from cct_surgical_seg.sim.publisher import main as sim_main
from cct_surgical_seg.sim.scene import SceneConfig

FRAMES = 4
SEED = 1
START_NS = 1_000_000_000_000  # cct-sim's --start-time default, 1000 s
LEFT, RIGHT = "/stereo/left/image_raw", "/stereo/right/image_raw"
NODE = "/segmentation_node"
OUTPUTS_3D = {"instrument_poses": POSE_ARRAY, "detections_3d": DETECTION_3D_ARRAY, "markers": MARKER_ARRAY}
LEFT_OUTPUTS = ("mask", "confidence", "detections", "frame_confidence", "instrument_rays")
LEFT_FRAME_ID = "endoscope_left_optical_frame"
SPHERE = 2  # visualization_msgs/Marker type


def _sim_bag(path: Path, *extra: str) -> Path:
    args = [
        "--stereo",
        "--bag",
        str(path),
        "--frames",
        str(FRAMES),
        "--instruments",
        "2",
        "--seed",
        str(SEED),
    ]
    assert sim_main([*args, "--palette", "rule", "--quiet", *extra]) == 0
    return path


@pytest.fixture(scope="module")
def stereo_bag(tmp_path_factory) -> Path:
    return _sim_bag(tmp_path_factory.mktemp("stereo_bags") / "sim")


def _write_stereo_bag(path: Path, drop_right: tuple[int, ...] = (), right_shift_ns: int = 0) -> list[int]:
    """A stereo sim bag written frame by frame: the right image of the frames ``drop_right``
    left out, the right eye's stamps and log times ``right_shift_ns`` later; returns the stamps."""
    stream = SimStream(SceneConfig(num_instruments=2, seed=SEED, palette="rule"), stereo=StereoTopics())
    t = stream.stereo
    right_topics = (t.right_image, t.right_camera_info)
    stamps = []
    with atomic_bag_writer(path) as writer:
        conns = {
            topic: writer.add_connection(topic, msgtype, typestore=bag_types.typestore())
            for topic, msgtype in stream.connections()
        }
        for i, (stamp, views) in enumerate(stream.stamped_frames(FRAMES, START_NS)):
            stamps.append(stamp)
            right = {m.topic: m for m in stream.messages(views, stamp + right_shift_ns)}
            for msg in stream.messages(views, stamp):
                if msg.topic not in right_topics:
                    writer.write(conns[msg.topic], stamp, msg.data)
                elif not (msg.topic == t.right_image and i in drop_right):
                    writer.write(conns[msg.topic], stamp + right_shift_ns, right[msg.topic].data)
    return stamps


def _read(path: Path) -> dict[str, list[tuple[str, int, object]]]:
    out: dict[str, list[tuple[str, int, object]]] = {}
    with AnyReader([path]) as reader:
        for conn, logtime, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            out.setdefault(conn.topic, []).append((conn.msgtype, logtime, msg))
    return out


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".partial"))


def _header(msg) -> object:
    return msg.markers[-1].header if hasattr(msg, "markers") else msg.header


def _xyz(pose) -> tuple[float, float, float]:
    return (pose.position.x, pose.position.y, pose.position.z)


def _check_outputs(topics: dict, left_stamps: list[int], left_logtimes: list[int]) -> list:
    """Every output once per pair, at the left log time with the left header; 3D in metres; returns
    the instrument_poses messages."""
    for name in (*OUTPUTS_3D, *LEFT_OUTPUTS):
        msgs = topics[f"{NODE}/{name}"]
        assert [t for _, t, _ in msgs] == left_logtimes, name
        assert [stamp_ns(_header(m).stamp) for _, _, m in msgs] == left_stamps, name
        assert {_header(m).frame_id for _, _, m in msgs} == {LEFT_FRAME_ID}, name
        if name in OUTPUTS_3D:
            assert {t for t, _, _ in msgs} == {OUTPUTS_3D[name]}
    poses = [m for _, _, m in topics[f"{NODE}/instrument_poses"]]
    detections = [m for _, _, m in topics[f"{NODE}/detections_3d"]]
    markers = [m for _, _, m in topics[f"{NODE}/markers"]]
    for pose_array, det3d, marker_array in zip(poses, detections, markers, strict=True):
        xyz = [_xyz(p) for p in pose_array.poses]
        assert all(0.02 <= z <= 0.5 for _, _, z in xyz), xyz  # metres, not pixels or rays
        assert [_xyz(d.results[0].pose.pose) for d in det3d.detections] == xyz
        assert [_xyz(m.pose) for m in marker_array.markers if m.type == SPHERE] == xyz  # the 3D markers
    return poses


def _bag_args(src: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return [str(src), str(out), "--model", str(model), "--backend", "onnxruntime", "--min-area", "50",
            "--stereo", "--quiet", *extra]  # fmt: skip


SIM_TOPICS = (LEFT, RIGHT, "/stereo/left/camera_info", "/stereo/right/camera_info", "/stereo/gt/mask",
              "/stereo/gt/tips", "/stereo/gt/hidden_tips", "/stereo/gt/tips_3d")  # fmt: skip


def test_sim_stereo_bag_has_the_pair_and_metric_truth(stereo_bag: Path) -> None:
    topics = _read(stereo_bag)
    assert {t: len(v) for t, v in topics.items()} == dict.fromkeys(SIM_TOPICS, FRAMES)
    for (_, lt, left), (_, rt, right) in zip(topics[LEFT], topics[RIGHT], strict=True):
        assert left.encoding == right.encoding and stamp_ns(left.header.stamp) == stamp_ns(right.header.stamp)
        assert lt == rt == stamp_ns(left.header.stamp)
    for _, _, info in topics["/stereo/right/camera_info"]:
        assert info.p[3] < 0  # Tx = -f * B
    for (_, _, tips_3d), (_, _, tips) in zip(
        topics["/stereo/gt/tips_3d"], topics["/stereo/gt/tips"], strict=True
    ):
        assert tips_3d.header.frame_id == LEFT_FRAME_ID and len(tips_3d.poses) == len(tips.poses) > 0
        assert all(0.02 <= p.position.z <= 0.5 for p in tips_3d.poses)  # metres


@pytest.mark.parametrize("matching", ["epipolar", "batched"])
def test_stereo_bag_writes_the_node_outputs_per_pair_and_scores_3d_tips(
    tmp_path: Path, stereo_bag: Path, rule_onnx: Path, matching: str, capsys
) -> None:
    out = tmp_path / "out"
    assert bag_main(_bag_args(stereo_bag, out, rule_onnx, "--stereo-matching", matching)) == 0
    printed = capsys.readouterr().out
    assert "tip error median / p95 (px)" in printed and "instrument Dice" in printed  # the 2D report
    median_mm = float(re.search(r"3D tip error median / p95 \(mm\)\s+([\d.]+) / [\d.]+", printed).group(1))
    matched = re.search(r"3D tips matched / missed / extra\s+(\d+) / (\d+) / (\d+)", printed)
    assert median_mm < 10.0 and int(matched.group(1)) >= FRAMES, printed
    assert f"pairs {FRAMES}, unpaired_left 0, unpaired_right 0" in printed
    topics = _read(out)
    assert len(topics[LEFT]) == len(topics["/stereo/gt/tips_3d"]) == FRAMES  # inputs copied
    stamps = [stamp_ns(m.header.stamp) for _, _, m in topics[LEFT]]
    poses = _check_outputs(topics, stamps, [t for _, t, _ in topics[LEFT]])
    assert sum(len(p.poses) for p in poses) >= FRAMES
    assert _leftovers(tmp_path) == []


def test_report_counts_pairs_and_the_3d_tips_against_truth(
    tmp_path: Path, stereo_bag: Path, rule_onnx
) -> None:
    pipeline = build_pipeline(PipelineSettings(rule_onnx, "onnxruntime", min_instrument_area=50))
    report = segment_stereo_bag(stereo_bag, tmp_path / "out", pipeline, copy_input=False)
    truths = sum(len(m.poses) for _, _, m in _read(stereo_bag)["/stereo/gt/tips_3d"])
    assert report.frames == FRAMES and report.stereo["pairs"] == FRAMES
    assert report.tips_3d is not None and report.tips_3d.truths == truths
    assert report.tips_3d.matched >= truths - 1 and report.tips_3d.median() < 0.01  # metres
    assert report.segmentation is not None and report.segmentation.frames == FRAMES  # left view, 2D
    assert set(report.written) == {f"{NODE}/{name}" for name in (*OUTPUTS_3D, *LEFT_OUTPUTS)}


@pytest.mark.parametrize("dropped", [1, FRAMES - 1], ids=["middle", "last"])
def test_a_left_frame_without_its_right_partner_is_counted_and_gives_nothing(
    tmp_path: Path, rule_onnx: Path, dropped: int
) -> None:
    stamps = _write_stereo_bag(tmp_path / "in", drop_right=(dropped,))
    pipeline = build_pipeline(PipelineSettings(rule_onnx, "onnxruntime", min_instrument_area=50))
    report = segment_stereo_bag(tmp_path / "in", tmp_path / "out", pipeline)
    assert report.stereo["pairs"] == report.frames == FRAMES - 1
    assert (report.stereo["unpaired_left"], report.stereo["unpaired_right"]) == (1, 0)
    paired = [s for i, s in enumerate(stamps) if i != dropped]
    topics = _read(tmp_path / "out")
    _check_outputs(topics, paired, paired)  # cct-sim logs at the stamp
    assert report.tips_3d is not None and report.tips_3d.truths == sum(
        len(m.poses) for _, t, m in topics["/stereo/gt/tips_3d"] if t != stamps[dropped]
    )  # the lone frame's truth is not scored


def test_stamps_apart_pair_only_within_the_sync_tolerance(tmp_path: Path, rule_onnx: Path, capsys) -> None:
    shift = 4_000_000  # the right eye 4 ms after the left one
    stamps = _write_stereo_bag(tmp_path / "in", right_shift_ns=shift)
    out = tmp_path / "out"
    assert bag_main(_bag_args(tmp_path / "in", out, rule_onnx)) == 2  # tolerance 0: nothing pairs
    err = capsys.readouterr().err
    assert "paired" in err and "--stereo-sync-tolerance" in err and "Traceback" not in err
    assert not out.exists() and _leftovers(tmp_path) == []
    assert bag_main(_bag_args(tmp_path / "in", out, rule_onnx, "--stereo-sync-tolerance", "0.005")) == 0
    _check_outputs(_read(out), stamps, stamps)  # the left stamps and log times, not the right ones


def test_compressed_views_are_found_beside_the_default_topics(tmp_path: Path, rule_onnx: Path) -> None:
    src = _sim_bag(tmp_path / "in", "--compressed")
    assert bag_main(_bag_args(src, tmp_path / "out", rule_onnx, "--no-copy")) == 0
    topics = _read(tmp_path / "out")
    assert len(topics[f"{NODE}/instrument_poses"]) == len(topics[f"{NODE}/mask"]) == FRAMES


@pytest.mark.parametrize("keep_partial", [False, True])
def test_failure_midway_leaves_no_half_bag(
    tmp_path: Path, stereo_bag: Path, rule_onnx: Path, keep_partial: bool
) -> None:
    out = tmp_path / "out"
    pipeline = FailsOnThirdFrame(build_pipeline(PipelineSettings(rule_onnx, "onnxruntime")))
    with pytest.raises(KeyboardInterrupt):
        segment_stereo_bag(stereo_bag, out, pipeline, keep_partial=keep_partial)
    assert not out.exists() and not any(p.name.startswith(".") for p in tmp_path.iterdir())
    partial = tmp_path / "out.partial"
    assert partial.exists() == keep_partial
    if keep_partial:  # what was written before the failure is a readable bag
        assert len(_read(partial)[f"{NODE}/instrument_poses"]) == 2


@pytest.mark.parametrize(
    "extra,words",
    [
        (["--topic", LEFT], "--topic and --camera-info-topic are for mono bags"),
        (["--left-topic", "/nope"], "/nope is not in the bag"),
        (["--right-topic", LEFT], "are both"),
        (["--right-topic", "/stereo/left/camera_info"], "expected one of"),
    ],
)
def test_bad_stereo_options_are_clear_errors(
    tmp_path: Path, stereo_bag: Path, rule_onnx: Path, extra: list[str], words: str, capsys
) -> None:
    out = tmp_path / "out"
    assert bag_main(_bag_args(stereo_bag, out, rule_onnx, *extra)) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_stereo_options_need_stereo(tmp_path: Path, stereo_bag: Path, rule_onnx: Path, capsys) -> None:
    args = [str(stereo_bag), str(tmp_path / "out"), "--model", str(rule_onnx), "--stereo-matching", "batched"]
    assert bag_main(args) == 2
    assert "need --stereo" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_left_view_outputs_match_a_mono_run_on_the_left_topic(
    tmp_path: Path, stereo_bag: Path, rule_onnx: Path
) -> None:
    """The left view's 2D outputs are the mono step's: same masks as cct-bag --topic LEFT."""
    mono = tmp_path / "mono"
    args = ["--topic", LEFT, "--gt-mask-topic", "/stereo/gt/mask", "--no-copy", "--quiet"]
    assert bag_main([str(stereo_bag), str(mono), "--model", str(rule_onnx), "--min-area", "50", *args]) == 0
    assert bag_main(_bag_args(stereo_bag, tmp_path / "stereo", rule_onnx, "--no-copy")) == 0
    masks = [
        [np.asarray(m.data) for _, _, m in _read(tmp_path / name)[f"{NODE}/mask"]]
        for name in ("mono", "stereo")
    ]
    assert len(masks[0]) == FRAMES and all(np.array_equal(a, b) for a, b in zip(*masks, strict=True))
    assert {t for t, _, _ in _read(mono)[f"{NODE}/mask"]} == {IMAGE}
