"""One-line error messages a user meets with the wrong file or value (issue 17, item 9).

A non-checkpoint file given where a checkpoint is expected says what the file is and what was
expected, in one line, without PyTorch's multi-paragraph ``weights_only`` advice; the typos
"model model file" and "a int" are gone.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from cct_surgical_seg.model.checkpoint import CheckpointError, load_checkpoint  # noqa: E402

EXPECTED = "expected a cct_surgical_seg checkpoint"


def _message(path: Path) -> str:
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    text = str(err.value)
    assert "\n" not in text, text
    assert "weights_only=False" not in text and "file an issue" not in text, text
    assert EXPECTED in text and str(path) in text, text
    return text


def test_a_pickled_module_or_numpy_file_is_named_as_such(tmp_path: Path) -> None:
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pt")
    assert "holds Python objects" in _message(tmp_path / "model.pt")
    assert "torch.nn.modules.linear.Linear" in _message(tmp_path / "model.pt")
    np = pytest.importorskip("numpy")
    torch.save(np.zeros(3), tmp_path / "array.pt")
    assert "numpy" in _message(tmp_path / "array.pt")


def test_an_onnx_file_is_named_as_such(tmp_path: Path, rule_onnx: Path) -> None:
    copy = tmp_path / "exported.onnx"
    copy.write_bytes(rule_onnx.read_bytes())
    assert "an ONNX model" in _message(copy)


def test_a_text_file_and_a_truncated_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "notes.pt").write_text("hello")
    assert "not a PyTorch file" in _message(tmp_path / "notes.pt")
    torch.save({"x": torch.zeros(1000)}, tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt PyTorch file" in _message(tmp_path / "cut.pt")


def test_missing_model_file_message_has_no_doubled_word(tmp_path: Path) -> None:
    from cct_surgical_seg.deploy.backends import create_backend
    from cct_surgical_seg.deploy.errors import ModelLoadError

    with pytest.raises(ModelLoadError) as err:
        create_backend("auto", tmp_path / "missing.onnx")
    assert "model model" not in str(err.value) and "model file not found" in str(err.value)


def test_config_type_errors_use_the_right_article() -> None:
    from cct_surgical_seg.train.config import ConfigError, load_config

    with pytest.raises(ConfigError) as err:
        load_config(None, ["train.cct_steps=many"])
    assert "must be an int" in str(err.value) and "a int" not in str(err.value)
