"""One rectified stereo pair -> the left view's segmentation and its instruments' 3D poses.

The step both ``segmentation_node`` (stereo mode) and ``cct-bag --stereo`` run for a pair that
passed the checks of :func:`~cct_surgical_seg.messages.stereo_results.stereo_camera_for`, so a
bag segmented offline holds the poses the node would have published for the same pair.

``matching`` picks how the right view is used (the node's ``stereo_matching`` parameter):

* ``epipolar``: only the left view is segmented; each reported tip is searched along its row
  of the right image (:func:`~cct_surgical_seg.deploy.stereo.epipolar_instruments`);
* ``batched``: both views are segmented in one network call and the instruments matched
  (:func:`~cct_surgical_seg.deploy.stereo.stereo_instruments`).

Only the left instruments whose score reaches ``score_threshold`` get 3D work, the ones the
left view's outputs report.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cct_surgical_seg.deploy.pipeline import FrameResult, SegmentationPipeline
from cct_surgical_seg.deploy.poses import reported_instruments
from cct_surgical_seg.deploy.stereo import (
    Instrument3D,
    StereoCamera,
    StereoStats,
    epipolar_instruments,
    stereo_instruments,
)

#: the values of ``matching`` (the node's ``stereo_matching`` parameter, cct-bag's --stereo-matching)
STEREO_MATCHING = ("epipolar", "batched")


def stereo_pair_poses(
    pipeline: SegmentationPipeline,
    left_rgb: np.ndarray,
    right_rgb: np.ndarray,
    camera: StereoCamera,
    matching: str,
    score_threshold: float,
    stats: StereoStats | None = None,
) -> tuple[FrameResult, list[Instrument3D]]:
    """The left view's result (all its instruments) and the 3D poses of its reported ones;
    ``stats`` counts what happened to each reported left instrument."""
    if matching not in STEREO_MATCHING:
        raise ValueError(f"matching must be one of {', '.join(STEREO_MATCHING)}, not {matching!r}")
    if matching == "batched":
        left, right = pipeline.segment_views([left_rgb, right_rgb])
    else:
        left, right = pipeline(left_rgb), None
    reported = replace(left, instruments=reported_instruments(left.instruments, score_threshold))
    if right is None:
        poses = epipolar_instruments(reported, left_rgb, right_rgb, camera, stats=stats)
    else:
        poses = stereo_instruments(reported, right, left_rgb, right_rgb, camera, stats=stats)
    return left, poses
