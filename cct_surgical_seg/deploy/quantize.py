"""``cct-quantize``: an exported FP32 ONNX model -> an INT8 model (explicit Q/DQ).

How: static quantization with ONNX Runtime's tooling, QDQ format (QuantizeLinear /
DequantizeLinear pairs around each quantized op), with ranges calibrated on real frames of the
user's own camera. The frames go through the pipeline's own ``preprocess``, so calibration sees
exactly what inference will. Two schemes (``--target``):

* ``any`` (default): symmetric quantization, every zero point 0: activations int8, weights int8
  per output channel, biases and the softmax left in float. This is the explicit quantization
  TensorRT 10 and 11 build from (their INT8 calibrator API is deprecated in 10 and gone in 11),
  and ONNX Runtime runs the same file, so one INT8 model serves both.
* ``cpu``: activations uint8 with calibrated zero points, weights int8 per channel. ONNX Runtime
  folds the ReLU/Clip activations into the quantized convolutions only with such zero points,
  which makes this the fast scheme on x86 CPUs with VNNI/AMX (the demo model, 224x288, one
  thread on the 2-core development machine: about half the time of FP32, while ``any`` takes as
  long as FP32 or a little longer); TensorRT refuses it.

Why the agreement check: a badly calibrated model still runs and still returns confident masks.
So frames held out from calibration (every fourth) are segmented by both models and the share
of pixels whose class agrees is measured; below ``min_agreement`` nothing is written and the
command fails with the numbers. The result is recorded in the model's metadata
(``cct.quantization``, ``cct.precision`` = int8), next to the metadata copied from the FP32 export.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cct_surgical_seg.deploy.errors import DeployError, ExportError, ModelLoadError
from cct_surgical_seg.deploy.export import KEY_PRECISION, check_tensorrt_quantization, model_precision
from cct_surgical_seg.deploy.model_info import INPUT_NAME, PROBS_NAME, ModelInfo
from cct_surgical_seg.deploy.pipeline import network_size, preprocess
from cct_surgical_seg.io_utils import atomic_write_bytes

LOG = logging.getLogger(__name__)

KEY_QUANTIZATION = "cct.quantization"
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
HOLD_OUT_EVERY = 4
#: ``--target`` -> (scheme recorded in the metadata, ONNX Runtime ``quantize_static`` settings).
TARGETS = ("any", "cpu")
SCHEMES = {
    "any": "int8 static QDQ, symmetric: activations int8, weights int8 per channel, zero points 0, "
    "float bias and softmax (ONNX Runtime and TensorRT)",
    "cpu": "int8 static QDQ: activations uint8, weights int8 per channel (ONNX Runtime on CPU; "
    "TensorRT refuses it)",
}


@dataclass(frozen=True)
class QuantizationReport:
    """What ``quantize_int8`` did, and how close the INT8 model stays to the FP32 one."""

    scheme: str
    calibration_method: str
    calibration_frames: int
    check_frames: int
    pixel_agreement: float  # share of pixels whose argmax class is the same in both models
    worst_frame_agreement: float
    target: str = "any"


def quantize_int8(
    model: str | Path,
    output: str | Path,
    frames: Iterable[np.ndarray],
    *,
    method: str = "minmax",
    min_agreement: float = 0.98,
    target: str = "any",
) -> QuantizationReport:
    """Quantize ``model`` (an FP32 ``cct-export`` ONNX file) with ``frames`` (uint8 RGB) as calibration.

    ``target``: ``any`` (symmetric, for ONNX Runtime and TensorRT) or ``cpu`` (module docstring).
    Every ``HOLD_OUT_EVERY``-th frame is kept out of calibration and used for the agreement
    check. Raises ``ModelLoadError`` for a file that is not a loadable cct export and
    ``ExportError`` for a model that is not FP32, too few frames or an agreement below
    ``min_agreement``, writing nothing; ``output`` is written atomically.
    """
    import onnx
    import onnxruntime as ort

    if method not in CALIBRATION_METHODS:
        raise ExportError(f"unknown calibration method {method!r}; choose one of {CALIBRATION_METHODS}")
    if target not in TARGETS:
        raise ExportError(f"unknown target {target!r}; choose one of {TARGETS}")
    fp32, metadata, info = _load_fp32(ort, model)
    calibration, check = _split_frames(frames, info)
    with tempfile.TemporaryDirectory(prefix="cct-quantize-") as tmp:
        quantized = Path(tmp) / "int8.onnx"
        _quantize_static(Path(model), quantized, calibration, method, target, Path(tmp))
        result = onnx.load(str(quantized))
        if target == "any":
            check_tensorrt_quantization(result)
        report = _agreement_report(
            fp32, _session(ort, str(quantized)), check, method, len(calibration), target
        )
    if report.pixel_agreement < min_agreement:
        raise ExportError(
            f"INT8 model agrees with FP32 on only {report.pixel_agreement:.2%} of pixels "
            f"(worst frame {report.worst_frame_agreement:.2%}, {len(check)} held-out frames; "
            f"required {min_agreement:.2%}); nothing written. Calibrate on more, more "
            "representative frames; if it stays low, many of this model's pixels are too close "
            "to call at 8 bits: deploy the FP32 model"
        )
    del result.metadata_props[:]
    extra = {KEY_QUANTIZATION: json.dumps(asdict(report)), KEY_PRECISION: "int8"}
    for key, value in {**metadata, **extra}.items():
        result.metadata_props.add(key=key, value=value)
    result.producer_name = "cct_surgical_seg"
    atomic_write_bytes(output, result.SerializeToString())
    LOG.info("wrote %s: %s", output, report)
    return report


def _load_fp32(ort, model: str | Path) -> tuple[object, dict[str, str], ModelInfo]:
    """The FP32 model's session, metadata and ``ModelInfo``; refuses anything but an FP32 export."""
    import onnx

    try:
        fp32 = _session(ort, str(model))
    except Exception as exc:  # ORT's own exception types (NoSuchFile, InvalidProtobuf, ...)
        raise ModelLoadError(f"{model}: ONNX Runtime cannot load it ({type(exc).__name__}: {exc})") from exc
    metadata = dict(fp32.get_modelmeta().custom_metadata_map)
    info = ModelInfo.from_metadata(metadata, [o.name for o in fp32.get_outputs()], source=str(model))
    if KEY_QUANTIZATION in metadata:
        raise ExportError(f"{model}: already quantized ({metadata[KEY_QUANTIZATION]})")
    precision = model_precision(onnx.load(str(model), load_external_data=False))
    if precision != "fp32":
        raise ExportError(f"{model}: the model is {precision}; quantize the FP32 export instead")
    return fp32, metadata, info


def _split_frames(frames: Iterable[np.ndarray], info: ModelInfo) -> tuple[list, list]:
    """Network-ready batches: (calibration, held-out check), every ``HOLD_OUT_EVERY``-th held out."""
    batches = [
        preprocess(rgb, network_size(rgb.shape[:2], info.input_size), info.input_size is None)
        for rgb in frames
    ]
    calibration = [b for i, b in enumerate(batches) if i % HOLD_OUT_EVERY != HOLD_OUT_EVERY - 1]
    check = [b for i, b in enumerate(batches) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1]
    if len(calibration) < 4 or not check:
        raise ExportError(f"need at least 5 frames (4 to calibrate, 1 to check), got {len(batches)}")
    return calibration, check


def _quantize_static(
    model: Path, output: Path, calibration: list[np.ndarray], method: str, target: str, tmp: Path
) -> None:
    """ONNX Runtime's static QDQ quantization with the ``target``'s settings."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    prepared = tmp / "prepared.onnx"
    quant_pre_process(str(model), str(prepared))  # shape inference + graph clean-up, ORT's advice
    if target == "any":  # TensorRT: symmetric int8, float bias (it has no int32 dequantize), float softmax
        symmetric_float_bias = {
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "QuantizeBias": False,
            "QDQDisableWeightAdjustForInt32Bias": True,  # no int32 bias, so no weight scale to widen for one
        }
        settings = {
            "activation_type": QuantType.QInt8,
            "extra_options": symmetric_float_bias,
            "nodes_to_exclude": [
                n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "Softmax"
            ],
        }
    else:
        settings = {"activation_type": QuantType.QUInt8}
    quantize_static(
        str(prepared),
        str(output),
        Reader(),
        quant_format=QuantFormat.QDQ,
        weight_type=QuantType.QInt8,
        per_channel=True,
        calibrate_method={
            "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy,
        }[method],
        **settings,
    )


def _agreement_report(
    fp32, int8, check: list[np.ndarray], method: str, calibration_frames: int, target: str
) -> QuantizationReport:
    """Share of held-out pixels whose class the INT8 model keeps."""
    agreements = [
        float(np.mean(fp32.run([PROBS_NAME], {INPUT_NAME: b})[0].argmax(1)
                      == int8.run([PROBS_NAME], {INPUT_NAME: b})[0].argmax(1)))
        for b in check
    ]  # fmt: skip
    return QuantizationReport(
        scheme=SCHEMES[target],
        calibration_method=method,
        calibration_frames=calibration_frames,
        check_frames=len(check),
        pixel_agreement=float(np.mean(agreements)),
        worst_frame_agreement=float(np.min(agreements)),
        target=target,
    )


def _session(ort, path: str):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


def spread_indices(total: int, count: int) -> list[int]:
    """``min(count, total)`` distinct indices into ``total`` items, spread evenly, first and last
    included: calibration should see every part of a recording, not its first minute."""
    return sorted(set(np.linspace(0, total - 1, num=min(count, total)).round().astype(int).tolist()))


def calibration_frames(source: Path, count: int) -> list[np.ndarray]:
    """Up to ``count`` RGB frames spread evenly over a folder of images or a video file."""
    from cct_surgical_seg.deploy.cli import iter_frames

    total, frames = iter_frames(source)
    if total is None:  # a stream of unknown length: take the first ``count``
        return [rgb for _, rgb in zip(range(count), frames, strict=False)]
    wanted = set(spread_indices(total, count))
    return [rgb for index, (_, rgb) in enumerate(frames) if index in wanted]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cct-quantize",
        description="Quantize an FP32 cct-export ONNX model to INT8 (explicit Q/DQ, for ONNX Runtime "
        "and TensorRT), calibrated on frames of your camera, and check it against the FP32 model.",
    )
    parser.add_argument("model", type=Path, help="FP32 ONNX model written by cct-export")
    parser.add_argument("-o", "--output", type=Path, required=True, help="INT8 ONNX file to write")
    parser.add_argument(
        "--calibration",
        type=Path,
        required=True,
        help="folder of images (e.g. a dataset's images/) or a video of the target camera",
    )
    parser.add_argument("--frames", type=int, default=80, help="frames to use, spread evenly (default: 80)")
    parser.add_argument("--method", choices=CALIBRATION_METHODS, default="minmax")
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=0.98,
        help="refuse to write a model whose classes agree with FP32 on fewer pixels (default: 0.98)",
    )
    parser.add_argument(
        "--target",
        choices=TARGETS,
        default="any",
        help="any: symmetric int8, runs on ONNX Runtime and TensorRT (default); cpu: uint8 "
        "activations, about twice as fast on ONNX Runtime CPUs, refused by TensorRT",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        frames = calibration_frames(args.calibration, args.frames)
        report = quantize_int8(
            args.model,
            args.output,
            frames,
            method=args.method,
            min_agreement=args.min_agreement,
            target=args.target,
        )
    except (DeployError, FileNotFoundError, ValueError) as exc:
        print(f"cct-quantize: error: {exc}", file=sys.stderr)
        return 2  # bad input, as in every cct-* command
    print(
        f"wrote {args.output}: {report.calibration_frames} calibration frames, pixel agreement with "
        f"FP32 {report.pixel_agreement:.2%} (worst frame {report.worst_frame_agreement:.2%}) on "
        f"{report.check_frames} held-out frames"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
