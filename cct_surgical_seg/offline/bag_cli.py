"""``cct-bag``'s command line: arguments, the mono or stereo run, the printed report, exit codes.

What the command does is :mod:`cct_surgical_seg.offline.bag` (mono) and
:mod:`cct_surgical_seg.offline.bag_stereo` (``--stereo``); this module only dispatches, so the
two stay free of each other's imports.
"""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cct_surgical_seg.deploy.backends import KINDS
from cct_surgical_seg.deploy.errors import DeployError
from cct_surgical_seg.deploy.pipeline import PipelineSettings, SegmentationPipeline, build_pipeline
from cct_surgical_seg.deploy.stereo_step import STEREO_MATCHING
from cct_surgical_seg.messages.results import OutputOptions
from cct_surgical_seg.offline import bag
from cct_surgical_seg.offline.bag import (
    AUTO,
    DEFAULT_GT_MASK_TOPIC,
    DEFAULT_GT_TIPS_TOPIC,
    DEFAULT_LEFT_TOPIC,
    DEFAULT_PREFIX,
    DEFAULT_RIGHT_TOPIC,
    DEFAULT_STEREO_GT_MASK_TOPIC,
    DEFAULT_STEREO_GT_TIPS_TOPIC,
    BagReport,
    WriteSettings,
    segment_bag,
)
from cct_surgical_seg.offline.bag_io import BagError, open_reader
from cct_surgical_seg.offline.bag_stereo import segment_stereo_bag
from cct_surgical_seg.offline.evaluation import TipErrors, format_rows, summary_rows
from cct_surgical_seg.resources import demo_model


class Interrupted(BaseException):
    """SIGINT/SIGTERM arrived: unwinds like KeyboardInterrupt, so the partial output is removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cct-bag",
        description=bag.__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("input", type=Path, help="input bag (folder, or a single .mcap/.db3 file)")
    p.add_argument("output", type=Path, help="output bag folder (must not exist unless --overwrite)")
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        help="ONNX model or .pt checkpoint (default: the shipped models/cct_demo.onnx)",
    )
    p.add_argument("--backend", default="auto", choices=KINDS)
    p.add_argument("--topic", default=None, help="image topic (default: the bag's only camera topic)")
    p.add_argument(
        "--camera-info-topic",
        default=AUTO,
        help=f"CameraInfo topic ('{AUTO}' = camera_info beside the image topic, '' = none)",
    )
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="namespace of the output topics")
    p.add_argument("--no-copy", action="store_true", help="do not copy the input topics to the output")
    p.add_argument(
        "--gt-mask-topic",
        default=AUTO,
        help=f"ground-truth mask topic ('{AUTO}' = {DEFAULT_GT_MASK_TOPIC}, with --stereo "
        f"{DEFAULT_STEREO_GT_MASK_TOPIC}; '' = none)",
    )
    p.add_argument(
        "--gt-tips-topic",
        default=AUTO,
        help=f"ground-truth tips topic ('{AUTO}' = {DEFAULT_GT_TIPS_TOPIC}, with --stereo "
        f"{DEFAULT_STEREO_GT_TIPS_TOPIC}; '' = none); hidden_tips and, with --stereo, tips_3d "
        "are read beside it",
    )
    node = "as the node's parameter of the same name"
    _add_stereo_arguments(p, node)
    p.add_argument(
        "--min-area",
        type=int,
        default=PipelineSettings.min_instrument_area,
        help=f"smallest instrument region, pixels ({node} min_instrument_area)",
    )
    p.add_argument("--score-threshold", type=float, default=OutputOptions.score_threshold, help=node)
    p.add_argument(
        "--confidence-encoding",
        choices=("mono8", "32FC1"),
        default=OutputOptions.confidence_encoding,
        help=node,
    )
    p.add_argument("--marker-pixel-size", type=float, default=OutputOptions.marker_pixel_size, help=node)
    p.add_argument("--marker-ray-length", type=float, default=OutputOptions.marker_ray_length, help=node)
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument(
        "--keep-partial", action="store_true", help="on error keep what was written as OUTPUT.partial"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 2 bad bag/model/arguments, 128 + signal number (130 SIGINT, 143
    SIGTERM) when interrupted; nothing is left at the output path unless it completed."""
    args = build_parser().parse_args(argv)
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(args)
    except Interrupted as exc:
        print(f"cct-bag: interrupted by {exc}; no output written to {args.output}", file=sys.stderr)
        return 128 + exc.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _add_stereo_arguments(p: argparse.ArgumentParser, node: str) -> None:
    p.add_argument(
        "--stereo",
        action="store_true",
        help="a rectified stereo bag: pair --left-topic and --right-topic by stamp as the node's stereo "
        "mode does, write its 3D outputs too (instrument_poses, detections_3d, 3D markers)",
    )
    p.add_argument("--left-topic", default=DEFAULT_LEFT_TOPIC, help="--stereo: left image topic")
    p.add_argument("--right-topic", default=DEFAULT_RIGHT_TOPIC, help="--stereo: right image topic")
    p.add_argument(
        "--stereo-sync-tolerance",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help=f"--stereo: largest left/right stamp difference that still pairs ({node})",
    )
    p.add_argument(
        "--stereo-matching", choices=STEREO_MATCHING, default=STEREO_MATCHING[0], help=f"--stereo: {node}"
    )


def _check_stereo_arguments(args: argparse.Namespace) -> None:
    """BagError for options of the other mode (they would be ignored silently) and a tolerance
    outside the node parameter's range."""
    if args.stereo and (args.topic is not None or args.camera_info_topic != AUTO):
        raise BagError(
            "--topic and --camera-info-topic are for mono bags; with --stereo name the views with "
            "--left-topic and --right-topic (each one's camera_info is read beside it)"
        )
    stereo_only = (args.left_topic, args.right_topic, args.stereo_sync_tolerance, args.stereo_matching)
    if not args.stereo and stereo_only != (DEFAULT_LEFT_TOPIC, DEFAULT_RIGHT_TOPIC, 0.0, STEREO_MATCHING[0]):
        raise BagError("--left-topic, --right-topic and --stereo-* need --stereo")
    if not 0.0 <= args.stereo_sync_tolerance <= 1.0:
        raise BagError(f"--stereo-sync-tolerance must be within 0..1 s, not {args.stereo_sync_tolerance}")


def _run(args: argparse.Namespace) -> int:
    model = args.model or demo_model()
    try:
        _check_stereo_arguments(args)
        open_reader(args.input).close()  # fail on a bad bag before loading a model
        if not Path(model).is_file():
            raise BagError(f"model {model} not found (pass --model)")
        pipeline = build_pipeline(PipelineSettings(model, args.backend, min_instrument_area=args.min_area))
        options = OutputOptions(
            class_names=tuple(pipeline.info.class_names),
            score_threshold=args.score_threshold,
            confidence_encoding=args.confidence_encoding,
            marker_pixel_size=args.marker_pixel_size,
            marker_ray_length=args.marker_ray_length,
        )
        writing = WriteSettings(
            not args.no_copy, args.storage, args.overwrite, args.keep_partial, not args.quiet
        )
        report = _segment(args, pipeline, options, writing)
    except (BagError, FileExistsError, DeployError) as exc:
        print(f"cct-bag: error: {exc}", file=sys.stderr)
        return 2
    _print_report(report)
    return 0


def _segment(
    args: argparse.Namespace, pipeline: SegmentationPipeline, options: OutputOptions, writing: WriteSettings
) -> BagReport:
    """The mono or the stereo run: each mode's own topics and truth defaults, then what both take."""
    if args.stereo:
        run, gt_mask, gt_tips = segment_stereo_bag, DEFAULT_STEREO_GT_MASK_TOPIC, DEFAULT_STEREO_GT_TIPS_TOPIC
        own = {
            "left_topic": args.left_topic,
            "right_topic": args.right_topic,
            "sync_tolerance": args.stereo_sync_tolerance,
            "matching": args.stereo_matching,
        }
    else:
        run, gt_mask, gt_tips = segment_bag, DEFAULT_GT_MASK_TOPIC, DEFAULT_GT_TIPS_TOPIC
        own = {"topic": args.topic, "camera_info_topic": args.camera_info_topic or None}
    return run(
        args.input,
        args.output,
        pipeline,
        **own,
        prefix=args.prefix,
        options=options,
        gt_mask_topic=_gt_topic(args.gt_mask_topic, gt_mask),
        gt_tips_topic=_gt_topic(args.gt_tips_topic, gt_tips),
        **asdict(writing),
    )


def _gt_topic(value: str, auto: str) -> str | None:
    """A --gt-*-topic value: ``AUTO`` = ``auto``, '' = none."""
    return auto if value == AUTO else (value or None)


def _print_report(report: BagReport) -> None:
    what = "frames" if report.stereo is None else "stereo pairs"
    print(
        f"cct-bag: {report.frames} {what} segmented ({report.bad_frames} frames skipped) -> {report.output}"
    )
    if report.stereo is not None:
        print("  stereo: " + ", ".join(f"{name} {count}" for name, count in report.stereo.items()))
    for name, count in sorted(report.written.items()):
        print(f"  {name}: {count}")
    rows = []
    if report.segmentation is not None and report.segmentation.frames:
        rows = summary_rows(report.segmentation, report.tips or TipErrors(), report.class_names)
    if report.tips_3d is not None:
        t = report.tips_3d
        rows.append(("3D tip error median / p95 (mm)", f"{1e3 * t.median():.1f} / {1e3 * t.p95():.1f}"))
        rows.append(("3D tips matched / missed / extra", f"{t.matched} / {t.missed} / {t.false_alarms}"))
    if rows:
        print("ground truth comparison:")
        print(format_rows(rows))


if __name__ == "__main__":
    sys.exit(main())
