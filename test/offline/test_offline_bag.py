"""cct-sim --bag and cct-bag: round trip, stamps, error handling, no half-written outputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("rosbags")

from failing_pipeline import FailsOnThirdFrame
from rosbags.highlevel import AnyReader

from cct_surgical_seg.deploy.pipeline import PipelineSettings, build_pipeline
from cct_surgical_seg.messages import bag_types
from cct_surgical_seg.messages.bag_types import stamp_ns
from cct_surgical_seg.messages.types import CLASSIFICATION, DETECTION_ARRAY, IMAGE, MARKER_ARRAY, POSE_ARRAY
from cct_surgical_seg.offline.bag import BagError, segment_bag
from cct_surgical_seg.offline.bag_cli import main as bag_main
from cct_surgical_seg.offline.bag_io import atomic_bag_writer
from cct_surgical_seg.sim import bag_messages as bm
from cct_surgical_seg.sim.publisher import main as sim_main

FRAMES = 6
ROOT = Path(__file__).resolve().parents[2]
SIZE = ["--width", "160", "--height", "128"]


def _sim_bag(path: Path, *extra: str) -> Path:
    assert (
        sim_main(
            ["--bag", str(path), "--frames", str(FRAMES), "--instruments", "2", *SIZE, "--quiet", *extra]
        )
        == 0
    )
    return path


@pytest.fixture(scope="module")
def sim_bag(tmp_path_factory) -> Path:
    return _sim_bag(tmp_path_factory.mktemp("bags") / "sim")


def _read(path: Path) -> dict[str, list[tuple[str, int, object]]]:
    out: dict[str, list[tuple[str, int, object]]] = {}
    with AnyReader([path]) as reader:
        for conn, logtime, raw in reader.messages():
            out.setdefault(conn.topic, []).append(
                (conn.msgtype, logtime, reader.deserialize(raw, conn.msgtype))
            )
    return out


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_sim_bag_contents(sim_bag: Path) -> None:
    topics = _read(sim_bag)
    assert {t: len(v) for t, v in topics.items()} == {
        "/camera/image_raw": FRAMES,
        "/camera/camera_info": FRAMES,
        "/camera/gt/mask": FRAMES,
        "/camera/gt/tips": FRAMES,
        "/camera/gt/hidden_tips": FRAMES,
    }
    for msgtype, logtime, msg in topics["/camera/image_raw"]:
        assert msgtype == IMAGE and msg.encoding == "bgr8" and (msg.width, msg.height) == (160, 128)
        assert stamp_ns(msg.header.stamp) == logtime


@pytest.mark.parametrize("storage,extra", [("mcap", []), ("sqlite3", ["--compressed"])])
def test_round_trip(tmp_path: Path, rule_onnx: Path, storage: str, extra: list[str], capsys) -> None:
    src = _sim_bag(tmp_path / "in", "--storage", storage, *extra)
    out = tmp_path / "out"
    assert (
        bag_main(
            [
                str(src),
                str(out),
                "--model",
                str(rule_onnx),
                "--backend",
                "onnxruntime",
                "--storage",
                storage,
                "--quiet",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "instrument Dice" in printed and "tip error" in printed
    topics = _read(out)
    image_topic = "/camera/image_raw/compressed" if extra else "/camera/image_raw"
    assert image_topic in topics and len(topics["/camera/gt/mask"]) == FRAMES  # inputs copied
    input_stamps = [stamp_ns(m.header.stamp) for _, _, m in topics[image_topic]]
    input_logtimes = [t for _, t, _ in topics[image_topic]]
    expected_types = {
        "mask": IMAGE,
        "confidence": IMAGE,
        "detections": DETECTION_ARRAY,
        "frame_confidence": CLASSIFICATION,
        "instrument_rays": POSE_ARRAY,  # the sim bag has a valid CameraInfo for every frame
        "markers": MARKER_ARRAY,
    }
    for name, msgtype in expected_types.items():
        msgs = topics[f"/segmentation_node/{name}"]
        assert len(msgs) == FRAMES
        assert {t for t, _, _ in msgs} == {msgtype}
        assert [t for _, t, _ in msgs] == input_logtimes
        if name != "markers":
            assert [stamp_ns(m.header.stamp) for _, _, m in msgs] == input_stamps
    for _, _, mask in topics["/segmentation_node/mask"]:
        assert mask.encoding == "mono8" and (mask.width, mask.height) == (160, 128)
        assert set(mask.data.tolist()) <= {0, 1, 2}
    assert _leftovers(tmp_path) == []


def test_no_copy_writes_only_results(tmp_path: Path, sim_bag: Path, rule_onnx: Path) -> None:
    out = tmp_path / "out"
    assert bag_main([str(sim_bag), str(out), "--model", str(rule_onnx), "--no-copy", "--quiet"]) == 0
    assert set(_read(out)) == {
        f"/segmentation_node/{name}"
        for name in ("mask", "confidence", "detections", "frame_confidence", "instrument_rays", "markers")
    }


def test_truncated_bag_is_a_clear_error(tmp_path: Path, rule_onnx: Path, capsys) -> None:
    src = _sim_bag(tmp_path / "in")
    data = next(src.glob("*.mcap"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    out = tmp_path / "out"
    assert bag_main([str(src), str(out), "--model", str(rule_onnx), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "truncated" in err and str(src) in err
    assert not out.exists() and _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "topic,reason", [("/nope", "not in the bag"), ("/camera/camera_info", "expected one of")]
)
def test_bad_topic_is_a_clear_error(
    tmp_path: Path, sim_bag: Path, rule_onnx: Path, topic: str, reason: str, capsys
) -> None:
    out = tmp_path / "out"
    assert bag_main([str(sim_bag), str(out), "--model", str(rule_onnx), "--topic", topic, "--quiet"]) == 2
    assert reason in capsys.readouterr().err
    assert not out.exists()


def test_existing_output_is_kept(tmp_path: Path, sim_bag: Path, rule_onnx: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious").write_text("x")
    assert bag_main([str(sim_bag), str(out), "--model", str(rule_onnx), "--quiet"]) == 2
    assert (out / "precious").read_text() == "x"


@pytest.mark.parametrize("keep_partial", [False, True])
def test_failure_midway_leaves_no_half_bag(
    tmp_path: Path, sim_bag: Path, rule_onnx: Path, keep_partial: bool
) -> None:
    out = tmp_path / "out"
    pipeline = FailsOnThirdFrame(build_pipeline(PipelineSettings(rule_onnx, "onnxruntime")))
    with pytest.raises(KeyboardInterrupt):
        segment_bag(sim_bag, out, pipeline, keep_partial=keep_partial)
    assert not out.exists() and _leftovers(tmp_path) == []
    partial = tmp_path / "out.partial"
    assert partial.exists() == keep_partial
    if keep_partial:  # what was written before the failure is a readable bag
        assert len(_read(partial)["/segmentation_node/mask"]) == 2


def test_missing_input_is_a_clear_error(tmp_path: Path, rule_onnx: Path) -> None:
    with pytest.raises(BagError, match="does not exist"):
        segment_bag(
            tmp_path / "missing", tmp_path / "out", build_pipeline(PipelineSettings(rule_onnx, "onnxruntime"))
        )


def test_a_single_mcap_file_is_a_bag(tmp_path: Path, sim_bag: Path, rule_onnx: Path) -> None:
    """``cct-bag BAG/BAG.mcap OUT``: a lone mcap carries no type hashes; the copy must still work."""
    out = tmp_path / "out"
    lone = next(sim_bag.glob("*.mcap"))
    assert bag_main([str(lone), str(out), "--model", str(rule_onnx), "--quiet"]) == 0
    topics = _read(out)
    assert len(topics["/segmentation_node/mask"]) == FRAMES
    assert len(topics["/camera/image_raw"]) == FRAMES  # the input copied, readable again


@pytest.mark.parametrize("content", ["empty", "random files", "a lone mcap"])
def test_a_folder_without_metadata_is_a_clear_error(
    tmp_path: Path, sim_bag: Path, rule_onnx: Path, content: str, capsys
) -> None:
    folder = tmp_path / "notabag"
    folder.mkdir()
    if content == "random files":
        (folder / "notes.txt").write_text("not a bag")
        (folder / "data.bin").write_bytes(bytes(range(256)))
    elif content == "a lone mcap":
        lone = next(sim_bag.glob("*.mcap"))
        (folder / lone.name).write_bytes(lone.read_bytes())
    out = tmp_path / "out"
    assert bag_main([str(folder), str(out), "--model", str(rule_onnx), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no metadata.yaml" in err and "Traceback" not in err
    if content == "a lone mcap":
        assert "pass it directly" in err and ".mcap" in err
    assert not out.exists()


def _two_camera_bag(path: Path) -> Path:
    import numpy as np

    with atomic_bag_writer(path) as writer:
        conns = {
            t: writer.add_connection(t, IMAGE, typestore=bag_types.typestore())
            for t in ("/left/image", "/right/image")
        }
        for i in range(3):
            for topic, conn in conns.items():
                frame = np.full((64, 80, 3), 40 * i, np.uint8)
                msg = bm.image(frame, "bgr8", bag_types.header(1_000_000_000 + i, topic.split("/")[1]))
                writer.write(conn, 1_000_000_000 + i, bag_types.serialize(msg))
    return path


def test_two_camera_topics_need_topic(tmp_path: Path, rule_onnx: Path, capsys) -> None:
    src = _two_camera_bag(tmp_path / "stereo")
    out = tmp_path / "out"
    assert bag_main([str(src), str(out), "--model", str(rule_onnx), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "/left/image" in err and "/right/image" in err and "--topic" in err
    assert not out.exists()
    assert (
        bag_main([str(src), str(out), "--model", str(rule_onnx), "--topic", "/right/image", "--quiet"]) == 0
    )
    assert len(_read(out)["/segmentation_node/mask"]) == 3


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_bag_exits_128_plus_signal_and_leaves_nothing(
    tmp_path: Path, rule_onnx: Path, ros_env: dict[str, str], sig: int, code: int
) -> None:
    src = tmp_path / "in"
    assert sim_main(["--bag", str(src), "--frames", "150", "--quiet"]) == 0  # 640x512: seconds of work
    out = tmp_path / "out"
    env = dict(ros_env, PYTHONPATH=os.pathsep.join([str(ROOT), ros_env.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "cct_surgical_seg.offline.bag_cli", str(src), str(out),
           "--model", str(rule_onnx), "--backend", "onnxruntime", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.startswith(".out.") for p in tmp_path.iterdir()):  # the writer is open
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, err
    assert "interrupted" in err and "Traceback" not in err, err
    assert not out.exists() and _leftovers(tmp_path) == []
