"""cct-infer end to end on an image folder and a video, with the colour-rule model."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np

from cct_surgical_seg.deploy.cli import main


def tool_frame(h: int, w: int, shift: int = 0) -> np.ndarray:
    rgb = np.full((h, w, 3), (80, 40, 40), np.uint8)
    cv2.rectangle(rgb, (0, 30 + shift), (60, 42 + shift), (225, 225, 225), -1)
    cv2.rectangle(rgb, (61, 28 + shift), (75, 44 + shift), (240, 20, 20), -1)
    return rgb


def test_image_folder_gives_masks_overlays_and_poses(tmp_path, rule_onnx, rule_mask) -> None:
    images = tmp_path / "images"
    images.mkdir()
    frames = {"a": tool_frame(90, 120), "b": tool_frame(67, 93, shift=5)}
    for name, rgb in frames.items():
        cv2.imwrite(str(images / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    assert main([str(images), "-m", str(rule_onnx), "-o", str(out), "--backend", "onnxruntime",
                 "--min-area", "50", "--threads", "1"]) == 0  # fmt: skip
    for name, rgb in frames.items():
        mask = cv2.imread(str(out / "masks" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(mask, rule_mask(rgb))
        assert cv2.imread(str(out / "overlays" / f"{name}.png")).shape == rgb.shape
    poses = json.loads((out / "poses.json").read_text())
    assert poses["class_names"] == ["background", "shaft", "manipulator"]
    assert [r["frame"] for r in poses["instruments"]] == ["a", "b"]
    assert all(r["track_id"] == -1 and r["class_name"] == "shaft" for r in poses["instruments"])
    assert abs(poses["instruments"][0]["tip"][0] - 75) <= 2


def test_video_with_csv_poses(tmp_path, rule_onnx) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (120, 90))
    assert writer.isOpened()
    for i in range(4):
        writer.write(cv2.cvtColor(tool_frame(90, 120, shift=i), cv2.COLOR_RGB2BGR))
    writer.release()
    out = tmp_path / "out"
    assert main([str(video), "-m", str(rule_onnx), "-o", str(out), "--poses-format", "csv", "--no-overlays",
                 "--min-area", "50"]) == 0  # fmt: skip
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{i:06d}.png" for i in range(4)]
    assert not (out / "overlays").exists()
    rows = list(csv.DictReader((out / "poses.csv").open()))
    assert len(rows) == 4 and {r["track_id"] for r in rows} == {"1"}  # one tool, tracked across frames


def test_bad_model_exits_with_message(tmp_path, capsys) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    (tmp_path / "images").mkdir()
    assert main([str(tmp_path / "images"), "-m", str(tmp_path / "bad.onnx"), "-o", str(tmp_path / "o")]) == 2
    assert "bad.onnx" in capsys.readouterr().err
