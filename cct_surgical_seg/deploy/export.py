"""``cct-export``: a training checkpoint -> a self-describing ONNX model for deployment.

What goes into the graph: the main branch only (the CCT auxiliary decoders are training
scaffolding), with the 0..255 -> normalised conversion in front and a softmax at the end, so
every runtime receives raw RGB and returns probabilities (docs/design.md, "ONNX model").
``--uncertainty`` additionally keeps auxiliary decoder heads (unperturbed) and adds the
per-frame ``disagreement`` output.

Exporter (``--exporter``): torch 2.13 has the TorchScript exporter (``dynamo=False``, opset 17)
and the ``torch.export``-based one (``dynamo=True``, onnxscript, opset 18, the lowest it
implements natively: asking it for 17 triggers a lossy version conversion). Both give graphs
that ONNX Runtime runs identically and that pass the TensorRT allow-list below. The default is
TorchScript: it exports this network in ~2 s where the dynamo path takes ~25 s on a 2-core CPU
(that difference is most of an export test run). torch marks it for eventual removal; then
``--exporter dynamo``, whose optimiser also folds the shape arithmetic around ``Resize``, becomes
the default.

Input shapes: the batch dimension is always dynamic. H and W are fixed (``--height/--width``,
the default and the fastest for TensorRT) or, with ``--dynamic``, symbolic multiples of 32 (the
pipeline pads frames to a multiple of 32 for such models).

Precision (``--precision``, recorded as ``cct.precision``): ``fp32`` (default) or ``fp16``. The
FP16 model holds FP16 weights and computes in FP16 inside, but keeps the float32 ``image`` input
and float32 ``probs`` output (a Cast at each end, softmax in float32), so every backend and the
pipeline see the same interface. It is what TensorRT needs for FP16: TensorRT 10 and 11 build
strongly typed networks, which run every tensor in the type the graph gives it (TensorRT 11 has
no FP16 builder flag). The conversion is ONNX Runtime's float16 converter applied to the checked
FP32 graph; ``cct-export model.onnx --precision fp16 -o model_fp16.onnx`` converts an existing
FP32 export the same way. INT8 comes from ``cct-quantize`` (explicit Q/DQ).

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

KEY_PRECISION = "cct.precision"
PRECISIONS = ("fp32", "fp16", "int8")
EXPORT_PRECISIONS = ("fp32", "fp16")
#: Ops kept in float32 by the FP16 conversion: ONNX Runtime's defaults (non-numeric and
#: index-like ops) plus Softmax, so probabilities are computed and returned at full precision.
FP16_KEEP_FLOAT32_OPS = ("Softmax",)

#: opset per exporter (see the module docstring).
OPSETS = {"torchscript": 17, "dynamo": 18}
DEFAULT_EXPORTER = "torchscript"
DEFAULT_SIZE = (512, 640)
STRIDE = 32

#: ONNX operators (default domain) the TensorRT 10 ONNX parser supports, restricted to the ones a
#: CNN segmenter plausibly emits. Extend it deliberately, after checking TensorRT's
#: "operators.md" for the op and its attributes, never to silence a failure.
TENSORRT_OPS = frozenset(
    {
        "Abs", "Add", "And", "ArgMax", "ArgMin", "AveragePool", "BatchNormalization", "Cast", "Ceil",
        "Clip", "Concat", "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "CumSum",
        "DepthToSpace", "DequantizeLinear", "Div", "Dropout", "Einsum", "Elu", "Equal", "Erf", "Exp",
        "Expand", "Flatten", "Floor", "Gather", "GatherElements", "GatherND", "Gemm",
        "GlobalAveragePool", "GlobalMaxPool", "Greater", "GreaterOrEqual", "HardSigmoid", "HardSwish",
        "Identity", "If", "InstanceNormalization", "LayerNormalization", "LeakyRelu", "Less",
        "LessOrEqual", "Log", "LogSoftmax", "MatMul", "Max", "MaxPool", "Mean", "Min", "Mod", "Mul",
        "Neg", "Not", "Or", "Pad", "Pow", "PRelu", "QuantizeLinear", "Range", "Reciprocal", "ReduceL1",
        "ReduceL2", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum",
        "ReduceSumSquare", "Relu", "Reshape", "Resize", "Round", "ScatterElements", "ScatterND",
        "Selu", "Shape", "Sigmoid", "Sign", "Sin", "Cos", "Size", "Slice", "Softmax", "Softplus",
        "Softsign", "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tanh", "Tile", "TopK",
        "Transpose", "Unsqueeze", "Upsample", "Where", "Xor",
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


def check_tensorrt_quantization(model) -> None:  # model: onnx.ModelProto
    """Raise ``ExportError`` unless every Q/DQ node is one TensorRT's explicit quantization takes.

    TensorRT quantizes symmetrically: zero points must be int8 (or absent) and all zero, and
    ``DequantizeLinear`` only takes int8 inputs (an int32-quantized bias is refused by its parser).
    Checking here names the cause instead of a parser error minutes into an engine build.
    """
    constants = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        values = [a.t for a in node.attribute if a.name == "value"] if node.op_type == "Constant" else []
        if values:
            constants[node.output[0]] = values[0]
    problems = [
        problem
        for node in model.graph.node
        if node.op_type in ("QuantizeLinear", "DequantizeLinear")
        for problem in _tensorrt_qdq_problems(node, constants)
    ]
    if problems:
        raise ExportError(
            f"TensorRT refuses this quantization ({len(problems)} problems, e.g. {problems[0]}); it takes "
            "symmetric int8 Q/DQ only: quantize the FP32 export with cct-quantize (default --target any)"
        )


def _tensorrt_qdq_problems(node, constants: dict) -> list[str]:
    from onnx import TensorProto, numpy_helper

    problems = []
    zero_point = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if zero_point is not None:
        kind = TensorProto.DataType.Name(zero_point.data_type).lower()
        if zero_point.data_type != TensorProto.INT8:
            problems.append(f"{node.op_type} {node.name or '?'} has a {kind} zero point")
        elif numpy_helper.to_array(zero_point).any():
            problems.append(f"{node.op_type} {node.name or '?'} has a non-zero zero point")
    quantized = constants.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
    if quantized is not None and quantized.data_type != TensorProto.INT8:
        kind = TensorProto.DataType.Name(quantized.data_type).lower()
        problems.append(f"DequantizeLinear {node.name or '?'} dequantizes {kind} constants")
    return problems


def model_precision(model) -> str:  # model: onnx.ModelProto
    """``fp32``, ``fp16`` or ``int8``: the ``cct.precision`` metadata, else read from the graph.

    Exports written before the key existed are classified by content: Q/DQ nodes mean int8,
    float16 initializers fp16, anything else fp32.
    """
    from onnx import TensorProto

    props = {p.key: p.value for p in model.metadata_props}
    if props.get(KEY_PRECISION) in PRECISIONS:
        return props[KEY_PRECISION]
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        return "int8"
    if any(t.data_type == TensorProto.FLOAT16 for t in model.graph.initializer):
        return "fp16"
    return "fp32"


def convert_to_fp16(model):  # onnx.ModelProto -> onnx.ModelProto
    """FP16 weights and compute, float32 graph inputs and outputs, softmax in float32.

    ONNX Runtime's float16 converter (``keep_io_types``: a Cast after each input and before each
    output) does the conversion; it appends those Casts at the end of the node list, so the graph
    is sorted topologically again before ``onnx.checker`` sees it.
    """
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST
    from onnxruntime.transformers.onnx_model import OnnxModel

    if model_precision(model) != "fp32":
        raise ExportError(f"only an FP32 model converts to FP16, this one is {model_precision(model)}")
    wrapper = OnnxModel(model)
    try:
        wrapper.convert_float_to_float16(
            use_symbolic_shape_infer=False,
            keep_io_types=True,
            op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP16_KEEP_FLOAT32_OPS],
        )
        wrapper.topological_sort()
    except Exception as exc:  # the converter raises assorted types for graphs it cannot handle
        raise ExportError(f"FP16 conversion failed: {type(exc).__name__}: {exc}") from exc
    converted = wrapper.model
    _set_metadata(converted, {KEY_PRECISION: "fp16"})
    return converted


def _set_metadata(model, values: dict[str, str]) -> None:
    """Add or replace ``metadata_props`` entries, keeping the others in order."""
    props = {p.key: p.value for p in model.metadata_props}
    props.update(values)
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)


def convert_onnx_fp16(source: str | os.PathLike[str], output: str | os.PathLike[str]) -> ModelInfo:
    """An FP32 ``cct-export`` ONNX file -> its FP16 twin at ``output`` (checked, written atomically)."""
    import onnx

    from cct_surgical_seg.deploy.model_info import read_onnx_info

    info = read_onnx_info(source)  # ModelLoadError for a missing, unreadable or foreign file
    model = convert_to_fp16(onnx.load(os.fspath(source)))
    check_graph(model)
    atomic_write_bytes(output, model.SerializeToString())
    LOG.info("wrote %s (fp16 copy of %s)", output, source)
    return info


def export_onnx(
    checkpoint: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    input_size: tuple[int, int] | None = DEFAULT_SIZE,
    uncertainty: bool = False,
    max_heads: int | None = None,
    exporter: str = DEFAULT_EXPORTER,
    precision: str = "fp32",
) -> ModelInfo:
    """Export ``checkpoint`` to ``output`` (written atomically) and return its ``ModelInfo``.

    ``input_size``: fixed (H, W), or None for dynamic H/W (multiples of 32). ``uncertainty``:
    keep up to ``max_heads`` auxiliary heads (all if None) and add the ``disagreement`` output.
    ``exporter``: "torchscript" or "dynamo"; ``precision``: "fp32" or "fp16" (module docstring).
    """
    import torch

    if exporter not in OPSETS:
        raise ExportError(f"unknown exporter {exporter!r}; choose one of {sorted(OPSETS)}")
    if precision not in EXPORT_PRECISIONS:
        raise ExportError(f"precision must be fp32 or fp16 (int8: cct-quantize), got {precision!r}")

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
    if input_size is not None and min(input_size) < STRIDE:
        raise ExportError(f"input size {input_size} is smaller than the encoder stride {STRIDE}")
    # Batch 2 in the example: torch.export specialises dimensions whose example size is 0 or 1.
    hw = (2 * STRIDE, 3 * STRIDE) if input_size is None else (int(input_size[0]), int(input_size[1]))
    example = torch.rand(2, 3, *hw) * 255
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # exporter deprecation chatter, not actionable for users
            if exporter == "torchscript":
                model = _export_torchscript(module, example, outputs, dynamic_hw=input_size is None)
            else:
                model = _export_dynamo(module, example, outputs, dynamic_hw=input_size is None)
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from exc
    info = ModelInfo(
        class_names=tuple(cfg.class_names),
        input_size=None if input_size is None else (int(input_size[0]), int(input_size[1])),
        mean=tuple(cfg.mean),  # type: ignore[arg-type]
        std=tuple(cfg.std),  # type: ignore[arg-type]
        has_disagreement=uncertainty,
    )
    del model.metadata_props[:]
    _set_metadata(model, {**info.to_metadata(cfg.to_dict()), KEY_PRECISION: "fp32"})
    model.producer_name = "cct_surgical_seg"
    check_graph(model)
    got = [o.name for o in model.graph.output]
    if got != outputs:
        raise ExportError(f"exported outputs {got}, expected {outputs}")
    if precision == "fp16":
        model = convert_to_fp16(model)
        check_graph(model)
    atomic_write_bytes(output, model.SerializeToString())
    LOG.info(
        "wrote %s (%s, %s, %s exporter, opset %d, %d nodes)",
        output,
        "dynamic" if input_size is None else f"{input_size[0]}x{input_size[1]}",
        precision,
        exporter,
        OPSETS[exporter],
        len(model.graph.node),
    )
    return info


def _export_torchscript(module, example, outputs: list[str], dynamic_hw: bool):  # -> onnx.ModelProto
    """The TorchScript exporter, through memory (no half-written file on failure)."""
    import io

    import onnx
    import torch

    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_hw else {0: "batch"}
    buffer = io.BytesIO()
    torch.onnx.export(
        module,
        (example,),
        buffer,
        dynamo=False,
        opset_version=OPSETS["torchscript"],
        input_names=[INPUT_NAME],
        output_names=outputs,
        dynamic_axes={INPUT_NAME: axes, **{name: {0: "batch"} for name in outputs}},
    )
    return onnx.load_from_string(buffer.getvalue())


def _export_dynamo(module, example, outputs: list[str], dynamic_hw: bool):  # -> onnx.ModelProto
    """The torch.export-based exporter (onnxscript)."""
    import torch

    for noisy in ("onnxscript", "onnx_ir"):  # per-rewrite INFO lines drown the user's log
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger(noisy).level))
    batch = torch.export.Dim("batch", min=1, max=64)
    dims = {0: batch}
    if dynamic_hw:
        h32, w32 = torch.export.Dim("h32", min=1, max=128), torch.export.Dim("w32", min=1, max=128)
        dims = {0: batch, 2: STRIDE * h32, 3: STRIDE * w32}
    program = torch.onnx.export(
        module,
        (example,),
        dynamo=True,
        opset_version=OPSETS["dynamo"],
        input_names=[INPUT_NAME],
        output_names=outputs,
        dynamic_shapes={"image": dims},
        verbose=False,
    )
    return program.model_proto


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cct-export",
        description="Export a cct_surgical_seg checkpoint to ONNX (normalisation + softmax inside, "
        "class names and input size in the metadata), or convert an FP32 export to FP16.",
    )
    parser.add_argument(
        "checkpoint",
        type=Path,
        help="training checkpoint (.pt), or an FP32 .onnx export to convert (with --precision fp16)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="ONNX file to write")
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help=f"fixed network input size (default: {DEFAULT_SIZE[0]} {DEFAULT_SIZE[1]})",
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
    parser.add_argument(
        "--exporter",
        choices=sorted(OPSETS),
        default=None,
        help=f"torch ONNX exporter (default: {DEFAULT_EXPORTER}, opset {OPSETS[DEFAULT_EXPORTER]})",
    )
    parser.add_argument(
        "--precision",
        choices=EXPORT_PRECISIONS,
        default="fp32",
        help="fp16: FP16 weights and compute inside, float32 image in and probs out (what TensorRT "
        "needs for FP16); int8 comes from cct-quantize (default: fp32)",
    )
    return parser


def _convert_existing(args: argparse.Namespace) -> ModelInfo:
    """``cct-export model.onnx --precision fp16``: the graph options belong to a checkpoint export."""
    given = [flag for flag, value in (("--size", args.size), ("--dynamic", args.dynamic),
             ("--uncertainty", args.uncertainty), ("--max-heads", args.max_heads),
             ("--exporter", args.exporter)) if value]  # fmt: skip
    if given or args.precision != "fp16":
        raise ExportError(
            f"{args.checkpoint} is an ONNX model: only --precision fp16 applies to it"
            + (f" (not {', '.join(given)})" if given else "")
        )
    return convert_onnx_fp16(args.checkpoint, args.output)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.checkpoint.suffix.lower() == ".onnx":
            info = _convert_existing(args)
        else:
            info = export_onnx(
                args.checkpoint,
                args.output,
                input_size=None if args.dynamic else tuple(args.size or DEFAULT_SIZE),
                uncertainty=args.uncertainty,
                max_heads=args.max_heads,
                exporter=args.exporter or DEFAULT_EXPORTER,
                precision=args.precision,
            )
    except DeployError as exc:
        print(f"cct-export: error: {exc}", file=sys.stderr)
        return 2  # bad input, as in every cct-* command
    size = "dynamic" if info.input_size is None else f"{info.input_size[0]}x{info.input_size[1]}"
    print(
        f"wrote {args.output}: classes {list(info.class_names)}, input {size}, "
        f"disagreement {'yes' if info.has_disagreement else 'no'}, precision {args.precision}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
