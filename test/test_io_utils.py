"""Atomic writes: all or nothing, and normal file permissions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cct_surgical_seg.io_utils import atomic_write_bytes, atomic_write_json, atomic_write_with


def test_written_file_has_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "model.onnx", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "model.onnx").stat().st_mode & 0o777 == 0o644


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "result.json"
    atomic_write_json(target, {"ok": 1})

    def broken(handle) -> None:
        handle.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write_with(target, broken)
    assert target.read_text() == '{\n  "ok": 1\n}\n'
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"]
