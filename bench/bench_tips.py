#!/usr/bin/env python3
"""How far are the tips from the simulator's truth, and how much is the network's doing?

For simulated 640x512 frames (several seeds, every other frame) the pose code runs twice, side
by side on the same frames: on the simulator's own class mask (the pose code's floor) and on
the mask of a model through the ONNX Runtime pipeline (what the node publishes). Both are scored
with ``metrics.TipErrors`` against the visible true tips and the clipped hidden ones: median and
p95 tip error, matched / missed / extra, and how often ``tip_visible`` is right. The pipeline
tracks every frame, as the node does, and the axis flips of its tracked instruments between
consecutive frames are counted.

    python bench/bench_tips.py [--model models/cct_demo.onnx] [--seeds 0 1 2 3 4 5] [--frames 300]

Writes ``bench/results/tips_sim.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cct_surgical_seg.deploy.pipeline import PipelineSettings, build_pipeline
from cct_surgical_seg.deploy.poses import extract_instruments
from cct_surgical_seg.io_utils import atomic_write_json, atomic_write_text
from cct_surgical_seg.metrics import TipErrors, clip_to_image
from cct_surgical_seg.resources import demo_model
from cct_surgical_seg.sim.scene import EndoscopeScene, SceneConfig, SceneFrame

RESULTS = Path(__file__).resolve().parent / "results"


def score(errors: TipErrors, frame: SceneFrame, instruments: list) -> None:
    h, w = frame.mask.shape
    visible = [t.tip for t in frame.instruments if t.tip_visible]
    hidden = [clip_to_image(t.tip, w, h) for t in frame.hidden_instruments()]
    errors.update([i.tip for i in instruments], visible, [i.tip_visible for i in instruments], hidden)


def axis_flips(previous: dict[int, tuple[float, float]], instruments: list) -> int:
    """Tracked instruments whose axis turned by more than 90 deg since the previous frame."""
    flips = 0
    for inst in instruments:
        before = previous.get(inst.track_id)
        flips += before is not None and before[0] * inst.axis[0] + before[1] * inst.axis[1] < 0
        previous[inst.track_id] = inst.axis
    return flips


def run(model: Path, seeds: list[int], frames: int) -> dict[str, dict]:
    """Every other frame is scored; the tracker sees every frame, as the node does."""
    pipeline = build_pipeline(PipelineSettings(model, "onnxruntime"))
    truth_mask, network = TipErrors(), TipErrors()
    flips = tracked = 0
    for seed in seeds:
        scene = EndoscopeScene(SceneConfig(seed=seed))
        pipeline.reset_tracking()
        previous: dict[int, tuple[float, float]] = {}
        for index in range(2 * frames):
            frame = scene.render(index)
            instruments = pipeline(frame.rgb).instruments
            flips += axis_flips(previous, instruments)
            tracked += len(instruments)
            if index % 2 == 0:
                score(truth_mask, frame, extract_instruments(frame.mask))
                score(network, frame, instruments)
    return {
        "simulator mask": truth_mask.summary(),
        "network mask": {**network.summary(), "axis_flips": flips, "tracked_instruments": tracked},
    }


def table(results: dict[str, dict]) -> str:
    rows = [
        "| poses on | tip error median / p95 (px) | matched / missed / extra | tip_visible right |",
        "|---|---|---|---|",
    ]
    for name, s in results.items():
        rows.append(
            f"| {name} | {s['median']:.1f} / {s['p95']:.1f} | {s['matched']} / {s['missed']} / "
            f"{s['false_alarms']} | {100 * s['visible_flag_accuracy']:.1f} % of {s['visible_flag_scored']} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, help="ONNX model (default: the demo model)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    p.add_argument("--frames", type=int, default=300, help="frames scored per seed (every other one)")
    p.add_argument("--out", type=Path, default=RESULTS / "tips_sim")
    args = p.parse_args(argv)
    model = args.model or demo_model()
    results = run(model, args.seeds, args.frames)
    settings = {
        "model": Path(model).name,
        "seeds": args.seeds,
        "frames_per_seed": args.frames,
        "size": [640, 512],
    }
    atomic_write_json(args.out.with_suffix(".json"), {"settings": settings, "results": results})
    net = results["network mask"]
    flips = (
        "Axis flips of a tracked instrument between consecutive frames (network): "
        f"{net['axis_flips']} of {net['tracked_instruments']} tracked instruments."
    )
    text = f"# Tip error on simulated frames\n\nSettings: `{settings}`\n\n{table(results)}\n\n{flips}\n"
    atomic_write_text(args.out.with_suffix(".md"), text)
    print(table(results))
    print(flips)
    return 0


if __name__ == "__main__":
    sys.exit(main())
