"""``cct-quantize``: an exported ONNX model -> an INT8 model for ONNX Runtime on CPU.

Why: on a CPU the network is most of a frame's cost, and x86 CPUs with VNNI/AMX run INT8
convolutions markedly faster than FP32 (the demo model in the ROS node on 2 cores, 640x512
frames: 31.5 -> 24.7 ms median end to end, ``bench/bench_ros_latency.py --int8``). GPUs do not
need this file: TensorRT builds FP16 from the FP32 export.

How: static quantization with ONNX Runtime's tooling, QDQ format (QuantizeLinear /
DequantizeLinear pairs around each quantized op, the form ORT and TensorRT both understand),
weights int8 per output channel, activations uint8 with ranges calibrated on real frames of the
user's own camera. The frames go through the pipeline's own ``preprocess``, so calibration sees
exactly what inference will.

Why the agreement check: a badly calibrated model still runs and still returns confident masks.
So frames held out from calibration (every fourth) are segmented by both models and the share
of pixels whose class agrees is measured; below ``min_agreement`` nothing is written and the
command fails with the numbers. The result is recorded in the model's metadata
(``cct.quantization``), next to the metadata copied from the FP32 export.
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
from cct_surgical_seg.deploy.model_info import INPUT_NAME, PROBS_NAME, ModelInfo
from cct_surgical_seg.deploy.pipeline import network_size, preprocess
from cct_surgical_seg.io_utils import atomic_write_bytes

LOG = logging.getLogger(__name__)

KEY_QUANTIZATION = "cct.quantization"
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
HOLD_OUT_EVERY = 4


@dataclass(frozen=True)
class QuantizationReport:
    """What ``quantize_int8`` did, and how close the INT8 model stays to the FP32 one."""

    scheme: str
    calibration_method: str
    calibration_frames: int
    check_frames: int
    pixel_agreement: float  # share of pixels whose argmax class is the same in both models
    worst_frame_agreement: float


def quantize_int8(
    model: str | Path,
    output: str | Path,
    frames: Iterable[np.ndarray],
    *,
    method: str = "minmax",
    min_agreement: float = 0.98,
) -> QuantizationReport:
    """Quantize ``model`` (a ``cct-export`` ONNX file) with ``frames`` (uint8 RGB) as calibration.

    Every ``HOLD_OUT_EVERY``-th frame is kept out of calibration and used for the agreement
    check. Raises ``ModelLoadError`` for a file that is not a loadable cct export and
    ``ExportError`` for too few frames or an agreement below ``min_agreement``, writing nothing;
    ``output`` is written atomically.
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ExportError(f"unknown calibration method {method!r}; choose one of {CALIBRATION_METHODS}")
    try:
        fp32 = _session(ort, str(model))
    except Exception as exc:  # ORT's own exception types (NoSuchFile, InvalidProtobuf, ...)
        raise ModelLoadError(f"{model}: ONNX Runtime cannot load it ({type(exc).__name__}: {exc})") from exc
    metadata = dict(fp32.get_modelmeta().custom_metadata_map)
    info = ModelInfo.from_metadata(metadata, [o.name for o in fp32.get_outputs()], source=str(model))
    if KEY_QUANTIZATION in metadata:
        raise ExportError(f"{model}: already quantized ({metadata[KEY_QUANTIZATION]})")

    batches = [
        preprocess(rgb, network_size(rgb.shape[:2], info.input_size), info.input_size is None)
        for rgb in frames
    ]
    calibration = [b for i, b in enumerate(batches) if i % HOLD_OUT_EVERY != HOLD_OUT_EVERY - 1]
    check = [b for i, b in enumerate(batches) if i % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1]
    if len(calibration) < 4 or not check:
        raise ExportError(f"need at least 5 frames (4 to calibrate, 1 to check), got {len(batches)}")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory(prefix="cct-quantize-") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(model), str(prepared))  # shape inference + graph clean-up, ORT's advice
        quantize_static(
            str(prepared),
            str(quantized),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method={
                "minmax": CalibrationMethod.MinMax,
                "percentile": CalibrationMethod.Percentile,
                "entropy": CalibrationMethod.Entropy,
            }[method],
        )
        int8 = _session(ort, str(quantized))
        agreements = [
            float(np.mean(fp32.run([PROBS_NAME], {INPUT_NAME: b})[0].argmax(1)
                          == int8.run([PROBS_NAME], {INPUT_NAME: b})[0].argmax(1)))
            for b in check
        ]  # fmt: skip
        report = QuantizationReport(
            scheme="int8 static QDQ: weights int8 per channel, activations uint8",
            calibration_method=method,
            calibration_frames=len(calibration),
            check_frames=len(check),
            pixel_agreement=float(np.mean(agreements)),
            worst_frame_agreement=float(np.min(agreements)),
        )
        if report.pixel_agreement < min_agreement:
            raise ExportError(
                f"INT8 model agrees with FP32 on only {report.pixel_agreement:.2%} of pixels "
                f"(worst frame {report.worst_frame_agreement:.2%}, {len(check)} held-out frames; "
                f"required {min_agreement:.2%}); nothing written. Calibrate on more, more "
                "representative frames; if it stays low, many of this model's pixels are too close "
                "to call at 8 bits: deploy the FP32 model"
            )
        result = onnx.load(str(quantized))
    del result.metadata_props[:]
    for key, value in {**metadata, KEY_QUANTIZATION: json.dumps(asdict(report))}.items():
        result.metadata_props.add(key=key, value=value)
    result.producer_name = "cct_surgical_seg"
    atomic_write_bytes(output, result.SerializeToString())
    LOG.info("wrote %s: %s", output, report)
    return report


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
        description="Quantize a cct-export ONNX model to INT8 for ONNX Runtime on CPU, calibrated on "
        "frames of your camera, and check it against the FP32 model.",
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        frames = calibration_frames(args.calibration, args.frames)
        report = quantize_int8(
            args.model, args.output, frames, method=args.method, min_agreement=args.min_agreement
        )
    except (DeployError, FileNotFoundError, ValueError) as exc:
        print(f"cct-quantize: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {args.output}: {report.calibration_frames} calibration frames, pixel agreement with "
        f"FP32 {report.pixel_agreement:.2%} (worst frame {report.worst_frame_agreement:.2%}) on "
        f"{report.check_frames} held-out frames"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
