"""``cct-export``: a training checkpoint -> a self-describing ONNX model for deployment.

What goes into the graph: the main branch only (the CCT auxiliary decoders are training
scaffolding), with the 0..255 -> normalised conversion in front and a softmax at the end, so
every runtime receives raw RGB and returns probabilities (docs/design.md, "ONNX model").
``--uncertainty`` additionally keeps auxiliary decoder heads (unperturbed) and adds the
per-frame ``disagreement`` output.

Exporter: torch 2.13 has both the legacy TorchScript exporter (``dynamo=False``, deprecated and
slated for removal) and the ``torch.export``-based one (``dynamo=True``, onnxscript). We use the
dynamo exporter only: it is the supported path going forward and its optimiser already folds
shape arithmetic the legacy one leaves behind (Shape/Equal/Where chains around ``Resize``), which
TensorRT would otherwise have to evaluate. We request opset 18, the lowest it implements natively
(asking for 17 triggers a lossy version conversion).

Input shapes: the batch dimension is always dynamic. H and W are fixed (``--height/--width``,
the default and the fastest for TensorRT) or, with ``--dynamic``, symbolic multiples of 32 (the
pipeline pads frames to a multiple of 32 for such models).

After export the graph is checked with ``onnx.checker`` and against ``TENSORRT_OPS``, an explicit
allow-list of ONNX operators the TensorRT 10 ONNX parser supports, so an unsupported op fails
here, on the training machine, instead of on the robot.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from cct_surgical_seg.deploy.errors import DeployError, ExportError
from cct_surgical_seg.deploy.model_info import DISAGREEMENT_NAME, INPUT_NAME, PROBS_NAME, ModelInfo
from cct_surgical_seg.io_utils import atomic_write_bytes

LOG = logging.getLogger(__name__)

OPSET = 18
STRIDE = 32

#: ONNX operators (default domain) the TensorRT 10 ONNX parser supports, restricted to the ones a
#: CNN segmenter plausibly emits. Extend it deliberately, after checking TensorRT's
#: "operators.md" for the op and its attributes, never to silence a failure.
TENSORRT_OPS = frozenset(
    {
        "Abs", "Add", "And", "ArgMax", "ArgMin", "AveragePool", "BatchNormalization", "Cast", "Ceil",
        "Clip", "Concat", "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "CumSum",
        "DepthToSpace", "Div", "Dropout", "Einsum", "Elu", "Equal", "Erf", "Exp", "Expand", "Flatten",
        "Floor", "Gather", "GatherElements", "GatherND", "Gemm", "GlobalAveragePool", "GlobalMaxPool",
        "Greater", "GreaterOrEqual", "HardSigmoid", "HardSwish", "Identity", "If",
        "InstanceNormalization", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log",
        "LogSoftmax", "MatMul", "Max", "MaxPool", "Mean", "Min", "Mod", "Mul", "Neg", "Not", "Or",
        "Pad", "Pow", "PRelu", "Range", "Reciprocal", "ReduceL1", "ReduceL2", "ReduceLogSumExp",
        "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu",
        "Reshape", "Resize", "Round", "ScatterElements", "ScatterND", "Selu", "Shape", "Sigmoid",
        "Sign", "Sin", "Cos", "Size", "Slice", "Softmax", "Softplus", "Softsign", "SpaceToDepth",
        "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tanh", "Tile", "TopK", "Transpose", "Unsqueeze",
        "Upsample", "Where", "Xor",
    }
)  # fmt: skip


def check_tensorrt_ops(model) -> None:  # model: onnx.ModelProto
    """Raise ``ExportError`` naming every node whose op TensorRT's ONNX parser would reject."""
    bad: dict[str, str] = {}

    def visit(graph) -> None:
        for node in graph.node:
            if node.domain not in ("", "ai.onnx") or node.op_type not in TENSORRT_OPS:
                bad.setdefault(f"{node.domain + '::' if node.domain else ''}{node.op_type}", node.name)
            for attr in node.attribute:  # If / Loop bodies
                if attr.g is not None and attr.g.node:
                    visit(attr.g)

    visit(model.graph)
    if bad:
        listing = ", ".join(f"{op} (node {name or '?'})" for op, name in sorted(bad.items()))
        raise ExportError(f"the graph uses operators outside the TensorRT allow-list: {listing}")


def check_graph(model) -> None:
    """``onnx.checker`` (with shape inference) + the TensorRT op allow-list."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"onnx.checker rejected the exported graph: {exc}") from exc
    check_tensorrt_ops(model)


def export_onnx(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    input_size: tuple[int, int] | None = (512, 640),
    uncertainty: bool = False,
    max_heads: int | None = None,
) -> ModelInfo:
    """Export ``checkpoint`` to ``output`` (written atomically) and return its ``ModelInfo``.

    ``input_size``: fixed (H, W), or None for dynamic H/W (multiples of 32). ``uncertainty``:
    keep up to ``max_heads`` auxiliary heads (all if None) and add the ``disagreement`` output.
    """
    import torch

    from cct_surgical_seg.deploy.backends.torch_backend import (
        DeployedSegmenter,
        load_checkpoint_segmenter,
        load_uncertainty_net,
    )

    if uncertainty:
        net, cfg = load_uncertainty_net(checkpoint, max_heads)
    else:
        net, cfg = load_checkpoint_segmenter(checkpoint)
    module = DeployedSegmenter(net, cfg.mean, cfg.std).eval()
    outputs = [PROBS_NAME, DISAGREEMENT_NAME] if uncertainty else [PROBS_NAME]
    # torch.export specialises dimensions whose example size is 0 or 1, so examples use batch 2.
    batch = torch.export.Dim("batch", min=1, max=64)
    if input_size is None:
        example = torch.rand(2, 3, 2 * STRIDE, 3 * STRIDE) * 255
        h32, w32 = torch.export.Dim("h32", min=1, max=128), torch.export.Dim("w32", min=1, max=128)
        dims = {0: batch, 2: STRIDE * h32, 3: STRIDE * w32}
    else:
        if min(input_size) < STRIDE:
            raise ExportError(f"input size {input_size} is smaller than the encoder stride {STRIDE}")
        example = torch.rand(2, 3, int(input_size[0]), int(input_size[1])) * 255
        dims = {0: batch}
    for noisy in ("onnxscript", "onnx_ir"):  # per-rewrite INFO lines drown the user's log
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger(noisy).level))
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # exporter deprecation chatter, not actionable for users
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=outputs,
                dynamic_shapes={"image": dims},
                verbose=False,
            )
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from exc
    model = program.model_proto
    info = ModelInfo(
        class_names=tuple(cfg.class_names),
        input_size=None if input_size is None else (int(input_size[0]), int(input_size[1])),
        mean=tuple(cfg.mean),  # type: ignore[arg-type]
        std=tuple(cfg.std),  # type: ignore[arg-type]
        has_disagreement=uncertainty,
    )
    del model.metadata_props[:]
    for key, value in info.to_metadata(cfg.to_dict()).items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name = "cct_surgical_seg"
    check_graph(model)
    got = [o.name for o in model.graph.output]
    if got != outputs:
        raise ExportError(f"exported outputs {got}, expected {outputs}")
    atomic_write_bytes(output, model.SerializeToString())
    LOG.info(
        "wrote %s (%s, opset %d, %d nodes)",
        output,
        "dynamic" if input_size is None else f"{input_size[0]}x{input_size[1]}",
        OPSET,
        len(model.graph.node),
    )
    return info


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cct-export",
        description="Export a cct_surgical_seg checkpoint to ONNX (normalisation + softmax inside, "
        "class names and input size in the metadata).",
    )
    parser.add_argument("checkpoint", type=Path, help="training checkpoint (.pt)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="ONNX file to write")
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=(512, 640),
        help="fixed network input size (default: 512 640)",
    )
    size.add_argument(
        "--dynamic",
        action="store_true",
        help="dynamic H/W (multiples of 32; frames are padded by the pipeline)",
    )
    parser.add_argument(
        "--uncertainty",
        action="store_true",
        help="keep auxiliary heads and add the per-frame 'disagreement' output",
    )
    parser.add_argument(
        "--max-heads", type=int, default=None, help="with --uncertainty: use only the first N auxiliary heads"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        info = export_onnx(
            args.checkpoint,
            args.output,
            input_size=None if args.dynamic else (args.size[0], args.size[1]),
            uncertainty=args.uncertainty,
            max_heads=args.max_heads,
        )
    except DeployError as exc:
        print(f"cct-export: error: {exc}", file=sys.stderr)
        return 1
    size = "dynamic" if info.input_size is None else f"{info.input_size[0]}x{info.input_size[1]}"
    print(
        f"wrote {args.output}: classes {list(info.class_names)}, input {size}, "
        f"disagreement {'yes' if info.has_disagreement else 'no'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
