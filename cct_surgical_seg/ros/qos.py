"""QoS profiles of the segmentation node, in one place so the node and the tests agree.

Why these choices:
- input: a camera stream is only worth its newest frame, so the default is the sensor-data
  profile (best effort, keep last 1); ``reliable`` is there for recorded or remote sources
  that only offer reliable. A best-effort subscription also matches reliable publishers.
  Camera infos keep the last 10: they are paired with frames by stamp, so none may be lost to
  the one that follows it.
- outputs: reliable, keep last ``depth``: a control consumer that asks for reliable gets it,
  and best-effort subscribers (RViz, sensor-data QoS) are compatible too. Keep-last never
  blocks the publisher.
- latched: LabelInfo and other slowly changing facts are transient local, depth 1, so a late
  subscriber gets the class map at once (the REFERENCES.md convention).
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

RELIABILITY_CHOICES = ("best_effort", "reliable")
CAMERA_INFO_DEPTH = 10


def input_qos(reliability: str = "best_effort", depth: int = 1) -> QoSProfile:
    """Subscription profile for images and camera info."""
    if reliability not in RELIABILITY_CHOICES:
        raise ValueError(f"qos_reliability must be one of {RELIABILITY_CHOICES}, got '{reliability}'")
    if depth < 1:
        raise ValueError(f"qos_depth must be >= 1, got {depth}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=(
            ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else ReliabilityPolicy.RELIABLE
        ),
        durability=DurabilityPolicy.VOLATILE,
    )


def camera_info_qos(reliability: str = "best_effort") -> QoSProfile:
    """Camera infos are tiny and paired with frames by stamp: keep the last 10, not only 1."""
    return input_qos(reliability, CAMERA_INFO_DEPTH)


def output_qos(depth: int = 1) -> QoSProfile:
    """Publisher profile for per-frame outputs (mask, confidence, overlay, poses, markers)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=max(1, depth),
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def latched_qos() -> QoSProfile:
    """Transient-local depth 1: late joiners receive the last message (label_info)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )
