"""Pipeline results -> ROS messages: the one place a FrameResult becomes what the node publishes.

The live node (rclpy classes) and ``cct-bag`` (rosbags typestore) both call
:func:`frame_messages` with their :class:`~cct_surgical_seg.messages.types.MessageTypes`, so a
bag written offline holds the messages the node would have published for the same frames.
No node, no state: plain functions of (result, header, camera, options).

One meaning per topic; every message carries the input image's header:

* ``mask`` (sensor_msgs/Image mono8): class id per pixel, at the input size.
* ``confidence`` (mono8 with 255 = 1, or 32FC1): the maximum class probability per pixel.
* ``detections`` (vision_msgs/Detection2DArray): the instruments in **pixels** - bounding box,
  class, score, track id; ``results[0].pose.pose`` is the tip ``(x, y, 0)`` (x right, y down,
  origin at the centre of the top-left pixel) with the shaft direction as orientation, and
  ``results[0].pose.covariance`` says whether the tip is seen: a visible tip has a standard
  deviation of ``TIP_STD_PX`` in x and y; a tip that is not visible (the tool leaves the view,
  or its jaws are hidden) has ``HIDDEN_TIP_STD_PX`` along the shaft, because the reported point
  is only where the instrument stops being seen (:func:`tip_visible`).
* ``instrument_rays`` (geometry_msgs/PoseArray), only for frames with a valid CameraInfo: the
  tip as a **unit ray** in the camera optical frame (z forward, x right, y down, z > 0),
  undistorted with D. The depth is unknown from one mask, so the consumer scales the ray.
* orientation, both: the shaft direction (entry side -> tip) as a rotation about the optical
  axis (+z) by ``atan2(dy, dx)``; x of the rotated frame points along the shaft.
* ``frame_confidence`` (vision_msgs/Classification): one hypothesis, class ``frame_confidence``,
  whose score in [0, 1] says how far the frame's mask can be trusted (instrument pixels /
  instrument-like pixels, :func:`~cct_surgical_seg.deploy.pipeline.frame_confidence`): low when
  instruments are partly missed. Stamped like the mask, so control can gate that frame's poses.
* ``markers`` (visualization_msgs/MarkerArray): one DELETEALL (instruments that vanished
  disappear from RViz), then per instrument an arrow entry -> tip and a sphere at the tip,
  coloured by track id; the sphere of a tip that is not visible is translucent.

Only instruments whose score reaches ``score_threshold`` are reported (detections, rays,
markers); the mask and confidence cover every pixel.

The rays come from a validated CameraInfo (:mod:`cct_surgical_seg.messages.camera`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import cv2
import numpy as np

from cct_surgical_seg.deploy.poses import reported_instruments
from cct_surgical_seg.messages.camera import CameraModel
from cct_surgical_seg.messages.images import array_to_image
from cct_surgical_seg.messages.types import (
    CLASSIFICATION,
    DETECTION_ARRAY,
    LABEL_INFO,
    MARKER_ARRAY,
    POSE_ARRAY,
    MessageTypes,
)

#: standard deviation (pixels) of a visible tip's position, from the simulator benchmark
TIP_STD_PX = 4.0
#: ... and along the shaft of a tip that is not visible: it lies somewhere beyond the point seen
HIDDEN_TIP_STD_PX = 1000.0


def tip_covariance(axis: Sequence[float], visible: bool) -> np.ndarray:
    """Row-major 6x6 pose covariance (x, y, z, rot x, rot y, rot z) of a tip in pixels.

    Position: isotropic ``TIP_STD_PX`` when visible; otherwise ``HIDDEN_TIP_STD_PX`` along the
    shaft ``axis`` and ``TIP_STD_PX`` across it. z and the rotations are left at 0 (unused).
    """
    along = HIDDEN_TIP_STD_PX if not visible else TIP_STD_PX
    u = np.asarray(axis, dtype=np.float64)
    u = u / max(float(np.linalg.norm(u)), 1e-12)
    xy = along**2 * np.outer(u, u) + TIP_STD_PX**2 * (np.eye(2) - np.outer(u, u))
    cov = np.zeros((6, 6))
    cov[:2, :2] = xy
    return cov.reshape(-1)


def tip_visible(covariance: Sequence[float]) -> bool:
    """Whether a detection's tip pose covariance (from :func:`tip_covariance`) marks a visible tip."""
    return float(covariance[0]) + float(covariance[7]) < 2 * TIP_STD_PX**2 + 1.0


def yaw_quaternion(types: MessageTypes, dx: float, dy: float) -> Any:
    """Rotation about +z taking +x onto the image direction (dx, dy)."""
    half = 0.5 * math.atan2(dy, dx)
    return types.new("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=math.sin(half), w=math.cos(half))


def _point(types: MessageTypes, xyz: Sequence[float]) -> Any:
    return types.new("geometry_msgs/msg/Point", x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def _pose(types: MessageTypes, xyz: Sequence[float], orientation: Any = None) -> Any:
    if orientation is None:  # identity; spelled out because rosbags' zero Quaternion has w = 0
        orientation = types.new("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=1.0)
    return types.new("geometry_msgs/msg/Pose", position=_point(types, xyz), orientation=orientation)


# --- what one frame publishes -------------------------------------------------------------------


@dataclass(frozen=True)
class OutputOptions:
    """How results become messages; the defaults are the node's parameter defaults."""

    class_names: tuple[str, ...] = ("background", "shaft", "manipulator")
    score_threshold: float = 0.5
    confidence_encoding: str = "mono8"
    marker_pixel_size: float = 0.001
    marker_ray_length: float = 0.1


def frame_messages(
    types: MessageTypes, result: Any, header: Any, camera: CameraModel | None, options: OutputOptions
) -> dict[str, Any]:
    """Output name (``mask``, ``confidence``, ``detections``, ``frame_confidence``,
    ``instrument_rays``, ``markers``) -> message for one
    :class:`~cct_surgical_seg.deploy.pipeline.FrameResult`.

    ``instrument_rays`` only with a camera; ``detections`` and ``frame_confidence`` only where
    vision_msgs exists.
    """
    instruments = reported_instruments(result.instruments, options.score_threshold)
    out = {
        "mask": mask_to_image(types, result.mask, header),
        "confidence": confidence_to_image(types, result.confidence, header, options.confidence_encoding),
    }
    if camera is not None:
        out["instrument_rays"] = instruments_to_rays(types, instruments, header, camera)
    out["markers"] = instruments_to_markers(
        types, instruments, header, camera, options.marker_pixel_size, options.marker_ray_length
    )
    if types.has(DETECTION_ARRAY):
        out["detections"] = instruments_to_detections(types, instruments, header, options.class_names)
    if types.has(CLASSIFICATION):
        out["frame_confidence"] = frame_confidence_message(types, result.frame_confidence, header)
    return out


def frame_confidence_message(types: MessageTypes, confidence: float, header: Any) -> Any:
    """vision_msgs/Classification with one hypothesis ``frame_confidence`` scored ``confidence``."""
    hypothesis = types.new(
        "vision_msgs/msg/ObjectHypothesis", class_id="frame_confidence", score=float(confidence)
    )
    return types.new(CLASSIFICATION, header=header, results=[hypothesis])


def mask_to_image(types: MessageTypes, mask: np.ndarray, header: Any) -> Any:
    """Class-id mask (uint8 HxW) as mono8: pixel value = class id."""
    return array_to_image(types, mask.astype(np.uint8, copy=False), header, "mono8")


def confidence_to_image(
    types: MessageTypes, confidence: np.ndarray, header: Any, encoding: str = "mono8"
) -> Any:
    """Max class probability per pixel: 32FC1 as is, or mono8 with 255 = probability 1."""
    if encoding == "32FC1":
        return array_to_image(types, confidence.astype(np.float32, copy=False), header, "32FC1")
    scaled = cv2.convertScaleAbs(confidence, alpha=255.0)  # rounded, saturated; one SIMD pass
    return array_to_image(types, scaled, header, "mono8")


def instruments_to_rays(types: MessageTypes, instruments: Sequence, header: Any, camera: CameraModel) -> Any:
    """``instrument_rays``: per instrument the tip as a unit ray, oriented along the shaft."""
    tips = np.array([inst.tip for inst in instruments], dtype=np.float64).reshape(-1, 2)
    poses = [
        _pose(types, ray, yaw_quaternion(types, float(inst.axis[0]), float(inst.axis[1])))
        for inst, ray in zip(instruments, camera.rays(tips), strict=True)
    ]
    return types.new(POSE_ARRAY, header=header, poses=poses)


#: marker colour per track id (RGB, 0..1)
TRACK_COLOURS = ((0.1, 0.9, 0.2), (0.2, 0.5, 1.0), (1.0, 0.6, 0.1), (0.9, 0.2, 0.8), (0.2, 0.9, 0.9))
_ARROW, _SPHERE = 0, 2  # visualization_msgs/Marker types
_ADD, _DELETEALL = 0, 3  # visualization_msgs/Marker actions


def _marker_points(
    instruments: Sequence, camera: CameraModel | None, pixel_size: float, ray_length: float
) -> tuple[np.ndarray, float]:
    """(entry, tip) points of every instrument, 2N x 3 in metres, and the marker size.

    Without camera info, pixel coordinates are scaled by ``pixel_size`` metres per pixel in the
    image frame; with it, points lie ``ray_length`` metres along their rays.
    """
    ends = np.array([[inst.entry, inst.tip] for inst in instruments], dtype=np.float64).reshape(-1, 2)
    if camera is None:
        return np.column_stack([ends * pixel_size, np.zeros(len(ends))]), max(pixel_size * 8.0, 1e-4)
    return camera.rays(ends) * ray_length, ray_length * 0.02


def instruments_to_markers(
    types: MessageTypes,
    instruments: Sequence,
    header: Any,
    camera: CameraModel | None = None,
    pixel_size: float = 0.001,
    ray_length: float = 0.1,
    namespace: str = "instruments",
) -> Any:
    """DELETEALL, then per instrument an arrow (entry -> tip) and a sphere (tip)."""
    points, size = _marker_points(instruments, camera, pixel_size, ray_length)
    return shaft_markers(types, header, namespace, instruments, points, size, size * 2.0)


def _marker(
    types: MessageTypes,
    header: Any,
    namespace: str,
    mid: int,
    kind: int,
    action: int,
    position: Sequence[float],
    scale: Sequence[float],
    **kw: Any,
) -> Any:
    """One visualization_msgs/Marker at ``position`` (identity orientation)."""
    return types.new(
        "visualization_msgs/msg/Marker",
        header=header,
        ns=namespace,
        id=mid,
        type=kind,
        action=action,
        pose=_pose(types, position),
        scale=types.new("geometry_msgs/msg/Vector3", x=scale[0], y=scale[1], z=scale[2]),
        **kw,
    )


def shaft_markers(
    types: MessageTypes,
    header: Any,
    namespace: str,
    instruments: Sequence,
    ends: np.ndarray,
    arrow_size: float,
    sphere_size: float,
) -> Any:
    """The ``markers`` MarkerArray of mono and stereo mode: DELETEALL (instruments that vanished
    disappear from RViz), then per instrument ``i`` (``track_id``, ``tip_visible``) an arrow
    ``ends[2i] -> ends[2i + 1]`` (shaft ``arrow_size / 2`` wide, head ``arrow_size`` wide and
    ``1.5 arrow_size`` long) and a sphere of diameter ``sphere_size`` at ``ends[2i + 1]``, the
    tip, coloured by track id; the sphere of a tip that is not visible has alpha 0.3."""
    origin = (0.0, 0.0, 0.0)
    arrow_scale = (arrow_size * 0.5, arrow_size, arrow_size * 1.5)  # shaft, head diameter, head length
    marker = partial(_marker, types, header, namespace)
    markers = [marker(0, _ARROW, _DELETEALL, origin, origin)]
    for i, inst in enumerate(instruments):
        r, g, b = TRACK_COLOURS[int(inst.track_id) % len(TRACK_COLOURS)]
        color = types.new("std_msgs/msg/ColorRGBA", r=r, g=g, b=b, a=1.0)
        tip_color = types.new("std_msgs/msg/ColorRGBA", r=r, g=g, b=b, a=1.0 if inst.tip_visible else 0.3)
        tip = ends[2 * i + 1]
        points = [_point(types, ends[2 * i]), _point(types, tip)]
        markers.append(marker(2 * i, _ARROW, _ADD, origin, arrow_scale, points=points, color=color))
        markers.append(marker(2 * i + 1, _SPHERE, _ADD, tip, (sphere_size,) * 3, color=tip_color))
    return types.new(MARKER_ARRAY, markers=markers)


def instrument_detection(
    types: MessageTypes,
    kind: str,
    header: Any,
    inst: Any,
    class_names: Sequence[str],
    pose: Any,
    covariance: Sequence[float],
    bbox: Any,
) -> Any:
    """One vision_msgs Detection2D or Detection3D (``kind``) of an instrument (``class_id``,
    ``score``, ``track_id``): one hypothesis, its class name (the id when out of range) and score
    with ``pose`` and ``covariance``; ``bbox``; the track id as ``id``."""
    cid = int(inst.class_id)
    hypothesis = types.new(
        "vision_msgs/msg/ObjectHypothesis",
        class_id=class_names[cid] if 0 <= cid < len(class_names) else str(cid),
        score=float(inst.score),
    )
    result = types.new(
        "vision_msgs/msg/ObjectHypothesisWithPose",
        hypothesis=hypothesis,
        pose=types.new("geometry_msgs/msg/PoseWithCovariance", pose=pose, covariance=covariance),
    )
    return types.new(kind, header=header, results=[result], bbox=bbox, id=str(int(inst.track_id)))


def instruments_to_detections(
    types: MessageTypes, instruments: Sequence, header: Any, class_names: Sequence[str]
) -> Any:
    """vision_msgs/Detection2DArray in pixels: bbox centre/size, class name, score, track id, and
    the tip ``(x, y, 0)`` with the shaft direction as the hypothesis pose, its covariance telling
    a visible tip from a hidden one (:func:`tip_covariance`)."""
    detections = []
    for inst in instruments:
        x, y, w, h = (float(v) for v in inst.bbox)
        tip = (float(inst.tip[0]), float(inst.tip[1]), 0.0)
        pose = _pose(types, tip, yaw_quaternion(types, float(inst.axis[0]), float(inst.axis[1])))
        centre = types.new(
            "vision_msgs/msg/Pose2D",
            position=types.new("vision_msgs/msg/Point2D", x=x + w / 2.0, y=y + h / 2.0),
        )
        bbox = types.new("vision_msgs/msg/BoundingBox2D", center=centre, size_x=w, size_y=h)
        covariance = tip_covariance(inst.axis, inst.tip_visible)
        detections.append(
            instrument_detection(
                types, "vision_msgs/msg/Detection2D", header, inst, class_names, pose, covariance, bbox
            )
        )
    return types.new(DETECTION_ARRAY, header=header, detections=detections)


def label_info(types: MessageTypes, class_names: Sequence[str], threshold: float, header: Any) -> Any:
    """vision_msgs/LabelInfo: mask value -> class name (published latched, with the frame_id of
    the images the masks belong to)."""
    class_map = [
        types.new("vision_msgs/msg/VisionClass", class_id=i, class_name=str(n))
        for i, n in enumerate(class_names)
    ]
    return types.new(LABEL_INFO, header=header, class_map=class_map, threshold=float(threshold))
