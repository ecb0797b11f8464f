"""``cct-infer``: segment an image folder or a video file offline, without ROS.

Writes ``<out>/masks/<frame>.png`` (uint8 class ids, viewable as-is only by tools that scale),
``<out>/overlays/<frame>.png`` (RGB overlay) and ``<out>/poses.json`` or ``poses.csv`` (one
record per instrument per frame), all through atomic writes so an interrupted run never leaves
half a PNG behind. Frames of a video are named by index (``000000``), images by their stem.
Tracking is on for videos (consecutive frames) and off for folders (no temporal order implied).
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from cct_surgical_seg.deploy.backends import KINDS
from cct_surgical_seg.deploy.errors import DeployError
from cct_surgical_seg.deploy.overlay import draw_overlay
from cct_surgical_seg.deploy.pipeline import PipelineSettings, build_pipeline, to_rgb
from cct_surgical_seg.io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text

LOG = logging.getLogger("cct-infer")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
CSV_FIELDS = (
    "frame",
    "track_id",
    "class_id",
    "class_name",
    "area_px",
    "centroid_x",
    "centroid_y",
    "axis_dx",
    "axis_dy",
    "tip_x",
    "tip_y",
    "entry_x",
    "entry_y",
    "bbox_x",
    "bbox_y",
    "bbox_w",
    "bbox_h",
    "score",
    "disagreement",
)


def iter_frames(source: Path) -> tuple[int | None, Iterator[tuple[str, np.ndarray]]]:
    """``(frame count or None, iterator of (name, uint8 RGB))`` for a folder or a video file."""
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {source}")

        def images() -> Iterator[tuple[str, np.ndarray]]:
            for path in files:
                image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
                if image is None:
                    LOG.warning("skipping unreadable image %s", path)
                    continue
                if image.dtype != np.uint8:  # 16-bit PNGs: keep the top 8 bits
                    image = (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else image
                if image.ndim == 3:
                    code = cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
                    image = cv2.cvtColor(image, code)
                yield path.stem, to_rgb(image)

        return len(files), images()
    if not source.is_file():
        raise FileNotFoundError(f"input not found: {source}")
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise ValueError(f"cannot open video {source}")
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None

    def video() -> Iterator[tuple[str, np.ndarray]]:
        index = 0
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                yield f"{index:06d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                index += 1
        finally:
            capture.release()

    return count, video()


def encode_png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return data.tobytes()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cct-infer", description="Segment surgical instruments in images/video."
    )
    parser.add_argument("input", type=Path, help="folder of images or a video file")
    parser.add_argument(
        "-m", "--model", type=Path, required=True, help=".onnx export (or .pt for --backend torch)"
    )
    parser.add_argument("-o", "--output-dir", type=Path, required=True)
    parser.add_argument("-b", "--backend", choices=KINDS, default="auto")
    parser.add_argument("--device", default=None, help="onnxruntime: cpu|cuda|tensorrt; torch: cpu|cuda")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for the runtime")
    parser.add_argument(
        "--precision",
        choices=("fp32", "fp16", "int8"),
        default=None,
        help="tensorrt: refuse a model of another precision (TensorRT builds the precision the ONNX "
        "holds: cct-export --precision fp16, cct-quantize for int8)",
    )
    parser.add_argument("--poses-format", choices=("json", "csv"), default="json")
    parser.add_argument(
        "--min-area",
        type=int,
        default=PipelineSettings.min_instrument_area,
        help="minimum instrument area (px)",
    )
    parser.add_argument("--no-masks", action="store_true")
    parser.add_argument("--no-overlays", action="store_true")
    parser.add_argument("--limit", type=int, default=None, help="stop after N frames")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = PipelineSettings(
        args.model,
        args.backend,
        {"device": args.device, "num_threads": args.threads, "precision": args.precision},
        min_instrument_area=args.min_area,
        track=not args.input.is_dir(),  # no temporal order in a folder
    )
    try:
        pipeline = build_pipeline(settings)
        count, frames = iter_frames(args.input)
    except (DeployError, FileNotFoundError, ValueError) as exc:
        print(f"cct-infer: error: {exc}", file=sys.stderr)
        return 2  # bad input, as in every cct-* command
    backend = pipeline.backend
    LOG.info("backend %s (%s)", backend.describe(), backend.selection_reason)
    names = backend.info.class_names
    out = args.output_dir
    records: list[dict[str, object]] = []
    total = min(count, args.limit) if count and args.limit else (count or args.limit)
    for index, (name, rgb) in enumerate(tqdm(frames, total=total, unit="frame", desc="cct-infer")):
        if args.limit is not None and index >= args.limit:
            break
        result = pipeline(rgb)
        if not args.no_masks:
            atomic_write_bytes(out / "masks" / f"{name}.png", encode_png(result.mask))
        if not args.no_overlays:
            overlay = draw_overlay(rgb, result.mask, result.instruments, class_names=names)
            atomic_write_bytes(
                out / "overlays" / f"{name}.png", encode_png(cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
            )
        for inst in result.instruments:
            records.append(
                {
                    "frame": name,
                    **inst.to_dict(),
                    "class_name": names[inst.class_id],
                    "disagreement": result.disagreement,
                }
            )
    if args.poses_format == "json":
        atomic_write_json(
            out / "poses.json",
            {
                "model": str(args.model),
                "backend": backend.describe(),
                "class_names": list(names),
                "instruments": records,
            },
        )
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for rec in records:
            flat = {
                k: rec[k]
                for k in ("frame", "track_id", "class_id", "class_name", "area_px", "score", "disagreement")
            }
            for key, (a, b) in (
                ("centroid", ("x", "y")),
                ("axis", ("dx", "dy")),
                ("tip", ("x", "y")),
                ("entry", ("x", "y")),
            ):
                flat[f"{key}_{a}"], flat[f"{key}_{b}"] = rec[key]  # type: ignore[misc]
            flat["bbox_x"], flat["bbox_y"], flat["bbox_w"], flat["bbox_h"] = rec["bbox"]  # type: ignore[misc]
            writer.writerow(flat)
        atomic_write_text(out / "poses.csv", buffer.getvalue())
    LOG.info("wrote results for %s to %s", args.input, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
