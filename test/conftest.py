"""Shared test fixtures: a private ROS 2 environment and small models made on the fly.

Nothing here needs a GPU, a dataset or a network connection.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _private_domain_id() -> int:
    """A ROS domain id of our own (1..101) so parallel runs on one machine never see each other."""
    if "CCT_TEST_ROS_DOMAIN_ID" in os.environ:
        return int(os.environ["CCT_TEST_ROS_DOMAIN_ID"])
    return random.Random(os.getpid()).randint(1, 101)


# Set before any test imports rclpy, so in-process nodes and child processes share one graph.
os.environ["ROS_DOMAIN_ID"] = str(_private_domain_id())
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="cct-test-roslog-"))
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO_ROOT / "config" / "fastdds_shm.xml"))
if os.environ.get("VIRTUAL_ENV") and "AMENT_PREFIX_PATH" not in os.environ:
    os.environ["AMENT_PREFIX_PATH"] = os.environ["VIRTUAL_ENV"]


@pytest.fixture(scope="session")
def ros_env() -> dict[str, str]:
    """Environment for child processes that join the test's private ROS graph."""
    return dict(os.environ)


def rclpy_available() -> bool:
    try:
        import rclpy  # noqa: F401
    except ImportError:
        return False
    return True


# --- model fixtures (owned by deploy: tiny_checkpoint, tiny_onnx, rule_onnx) ---
# Session-scoped and built on the fly (no files in the repo, no network). The ONNX export of the
# tiny model takes a few seconds on 2 cores, so it happens once per session and only for
# tests that ask for it; ``rule_onnx`` is built from onnx.helper in milliseconds and needs no torch.

#: The fixed network size of ``tiny_onnx`` (H, W): deliberately not the frame size of most tests,
#: so the resize path of the pipeline is exercised, and not a multiple of 32 in W.
TINY_INPUT_SIZE = (64, 80)
RULE_CLASS_NAMES = ("background", "shaft", "manipulator")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path to a ``checkpoint-v1`` file of a random-init small Segmenter (``pretrained=False``).

    Default classes (background, shaft, manipulator), narrow ASPP/decoder (32/32/16 channels) on
    the real EfficientNet-Lite0 encoder, plus three small CCT aux decoders (dropout, feature drop,
    feature noise; 16 hidden channels) so uncertainty exports and ``torch`` with
    ``uncertainty=True`` work. Seeded: the weights are the same in every session.
    """
    import torch

    from cct_surgical_seg.model.cct import AuxConfig, CCTModel
    from cct_surgical_seg.model.checkpoint import make_payload, save_checkpoint
    from cct_surgical_seg.model.config import ModelConfig

    torch.manual_seed(0)
    cfg = ModelConfig(pretrained=False, aspp_channels=32, decoder_channels=32, low_level_channels=16)
    aux = AuxConfig(vat=0, dropout=1, cutout=0, context_masking=0, object_masking=0, feature_drop=1,
                    feature_noise=1, hidden_channels=16)  # fmt: skip
    model = CCTModel(cfg, aux).eval()
    path = tmp_path_factory.mktemp("tiny_model") / "tiny.pt"
    payload = make_payload(model.segmenter, cfg, aux_config=aux.to_dict(), aux_decoders=model.aux_decoders)
    save_checkpoint(path, payload)
    return path


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint: Path) -> Path:
    """``cct-export`` of ``tiny_checkpoint`` at a FIXED input of 64x80 (``TINY_INPUT_SIZE``).

    Outputs ``probs`` only (no disagreement); batch dimension dynamic. Frames of any size work:
    the pipeline resizes them to 64x80 and the mask back to the frame size.
    """
    from cct_surgical_seg.deploy.export import export_onnx

    path = tiny_checkpoint.parent / "tiny_64x80.onnx"
    export_onnx(tiny_checkpoint, path, input_size=TINY_INPUT_SIZE)
    return path


def rule_mask_of(rgb):  # numpy reference of the rule_onnx colour rule
    """Expected class ids of ``rule_onnx`` for a uint8 RGB HxWx3 image (see ``rule_onnx``)."""
    import numpy as np

    x = rgb.astype(np.int32)
    lo, hi = x.min(axis=2), x.max(axis=2)
    shaft = (lo >= 170) & (hi - lo <= 40)
    manip = (x[..., 0] >= 120) & (x[..., 0] - np.maximum(x[..., 1], x[..., 2]) >= 60)
    mask = np.zeros(rgb.shape[:2], np.uint8)
    mask[shaft] = 1
    mask[manip] = 2
    return mask


def build_rule_onnx(path: Path, with_disagreement: bool = False) -> Path:
    """Write the colour-rule model (see ``rule_onnx``) to ``path``; returns ``path``."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from cct_surgical_seg.deploy.model_info import ModelInfo

    def const(name: str, value, dtype=np.float32):
        return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)

    nodes = [
        helper.make_node("Split", ["image"], ["r", "g", "b"], axis=1, num_outputs=3),
        helper.make_node("ReduceMax", ["image", "ax1"], ["hi"], keepdims=1),
        helper.make_node("ReduceMin", ["image", "ax1"], ["lo"], keepdims=1),
        helper.make_node("Sub", ["hi", "lo"], ["spread"]),
        helper.make_node("GreaterOrEqual", ["lo", "c170"], ["bright"]),
        helper.make_node("LessOrEqual", ["spread", "c40"], ["grey"]),
        helper.make_node("And", ["bright", "grey"], ["shaft_b"]),
        helper.make_node("Max", ["g", "b"], ["gb"]),
        helper.make_node("Sub", ["r", "gb"], ["red_margin"]),
        helper.make_node("GreaterOrEqual", ["r", "c120"], ["red_high"]),
        helper.make_node("GreaterOrEqual", ["red_margin", "c60"], ["red_dom"]),
        helper.make_node("And", ["red_high", "red_dom"], ["manip_b"]),
        helper.make_node("Cast", ["shaft_b"], ["shaft"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["manip_b"], ["manip"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["shaft", "manip"], ["fg"]),
        helper.make_node("Sub", ["one", "fg"], ["bg"]),
        helper.make_node("Concat", ["bg", "shaft", "manip"], ["onehot"], axis=1),
        helper.make_node("Mul", ["onehot", "sharp"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    outputs = [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 3, "H", "W"])]
    inits = [const("ax1", [1], np.int64), const("c170", 170.0), const("c40", 40.0), const("c120", 120.0),
             const("c60", 60.0), const("one", 1.0), const("sharp", 6.0)]  # fmt: skip
    if with_disagreement:
        inits.append(const("ax123", [1, 2, 3], np.int64))
        nodes.append(helper.make_node("ReduceMean", ["manip", "ax123"], ["disagreement"], keepdims=0))
        outputs.append(helper.make_tensor_value_info("disagreement", TensorProto.FLOAT, ["N"]))
    graph = helper.make_graph(
        nodes,
        "cct_colour_rule",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        outputs,
        inits,
    )
    opset = [helper.make_opsetid("", 18)]
    model = helper.make_model(graph, opset_imports=opset, producer_name="cct-test-rule")
    model.ir_version = 8  # readable by every ONNX Runtime this project supports
    info = ModelInfo(RULE_CLASS_NAMES, None, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), with_disagreement)
    for key, value in info.to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def rule_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hand-built ONNX model with a real export's interface and KNOWN output.

    Same input (``image`` float32 N,3,H,W RGB 0..255), output (``probs`` N,3,H,W softmax) and
    ``cct.*`` metadata as ``cct-export`` (classes background/shaft/manipulator, input_size null =
    dynamic, so the pipeline pads to x32 and crops; every size works). Per pixel:

    * shaft (1): near-white grey, ``min(R,G,B) >= 170`` and ``max - min <= 40``;
    * manipulator (2): strongly red, ``R >= 120`` and ``R - max(G,B) >= 60``;
    * background (0): everything else.

    The winning class gets probability e^6/(e^6+2) ~= 0.995, the others ~0.0025 each.
    ``rule_mask`` (fixture) is the numpy reference. Pure colour rule: no torch needed.
    """
    return build_rule_onnx(tmp_path_factory.mktemp("rule_model") / "rule.onnx")


@pytest.fixture(scope="session")
def rule_onnx_uncertain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``rule_onnx`` plus the ``disagreement`` output = fraction of manipulator pixels per frame.

    A known, controllable stand-in for an uncertainty export: paint k% of the frame red and the
    model reports disagreement k/100.
    """
    return build_rule_onnx(tmp_path_factory.mktemp("rule_model_u") / "rule_uncertain.onnx", True)


@pytest.fixture(scope="session")
def rule_mask():
    """The numpy reference of ``rule_onnx``: ``rule_mask(rgb uint8 HxWx3) -> uint8 HxW`` class ids."""
    return rule_mask_of
