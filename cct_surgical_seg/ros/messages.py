"""Pipeline results -> ROS messages. No node, no state: plain functions of (result, header).

Pose convention (``~/instruments``, geometry_msgs/PoseArray, header = the input image's):
one pose per instrument, in the order of ``FrameResult.instruments``.

* position, **without camera info**: the tip in pixels, ``(x, y, 0)``; x right, y down,
  origin at the centre of the top-left pixel.
* position, **with camera info** (K, D of a sensor_msgs/CameraInfo): the tip as a *unit ray*
  in the camera optical frame (z forward, x right, y down), undistorted with D. The depth is
  unknown from one mask, so the consumer scales the ray. ``z > 0`` for a ray and ``z == 0``
  for pixels, so the two cases can be told apart from the message alone.
* orientation, both cases: the shaft direction (entry side -> tip) as a rotation about the
  optical axis (+z) by ``atan2(dy, dx)``; x of the rotated frame points along the shaft.

Markers (``~/markers``) show the same: an arrow entry -> tip and a sphere at the tip per
instrument, preceded by one DELETEALL so instruments that vanished disappear from RViz.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, PoseArray, Quaternion
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

try:
    from vision_msgs.msg import (
        BoundingBox2D,
        Detection2D,
        Detection2DArray,
        LabelInfo,
        ObjectHypothesisWithPose,
        VisionClass,
    )

    HAVE_VISION_MSGS = True
except ImportError:  # vision_msgs is optional
    HAVE_VISION_MSGS = False

from .conversions import array_to_image

# --- camera model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CameraModel:
    """Intrinsics from sensor_msgs/CameraInfo; only what the tip ray needs."""

    K: np.ndarray  # 3x3
    D: np.ndarray  # distortion coefficients (may be empty)
    width: int
    height: int

    @classmethod
    def from_camera_info(cls, info) -> CameraModel | None:
        """None for an uncalibrated CameraInfo (K all zero), which drivers do publish."""
        K = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            return None
        D = np.asarray(info.d, dtype=np.float64)
        if info.distortion_model not in ("plumb_bob", "rational_polynomial", ""):
            D = np.zeros(0)  # equidistant etc.: use the pinhole part only
        return cls(K=K, D=D, width=int(info.width), height=int(info.height))

    def rays(self, pixels: np.ndarray) -> np.ndarray:
        """Unit rays (N,3) in the optical frame for pixel coordinates (N,2)."""
        pts = np.asarray(pixels, dtype=np.float64).reshape(-1, 1, 2)
        if self.D.size and np.any(self.D):
            norm = cv2.undistortPoints(pts, self.K, self.D).reshape(-1, 2)
        else:
            norm = (pts.reshape(-1, 2) - self.K[:2, 2]) / np.diag(self.K)[:2]
        rays = np.column_stack([norm, np.ones(len(norm))])
        return rays / np.linalg.norm(rays, axis=1, keepdims=True)


def yaw_quaternion(dx: float, dy: float) -> Quaternion:
    """Rotation about +z taking +x onto the image direction (dx, dy)."""
    half = 0.5 * math.atan2(dy, dx)
    return Quaternion(x=0.0, y=0.0, z=math.sin(half), w=math.cos(half))


def _tip_positions(instruments: Sequence, camera: CameraModel | None) -> np.ndarray:
    tips = np.array([inst.tip for inst in instruments], dtype=np.float64).reshape(-1, 2)
    if camera is None:
        return np.column_stack([tips, np.zeros(len(tips))])
    return camera.rays(tips)


# --- per-frame outputs --------------------------------------------------------------------------


def mask_to_image(mask: np.ndarray, header):
    """Class-id mask (uint8 HxW) as mono8: pixel value = class id."""
    return array_to_image(mask.astype(np.uint8, copy=False), header, "mono8")


def confidence_to_image(confidence: np.ndarray, header, encoding: str = "mono8"):
    """Max class probability per pixel: 32FC1 as is, or mono8 with 255 = probability 1."""
    if encoding == "32FC1":
        return array_to_image(confidence.astype(np.float32, copy=False), header, "32FC1")
    scaled = cv2.convertScaleAbs(confidence, alpha=255.0)  # rounded, saturated; one SIMD pass
    return array_to_image(scaled, header, "mono8")


def instruments_to_pose_array(instruments: Sequence, header, camera: CameraModel | None = None) -> PoseArray:
    msg = PoseArray(header=header)
    for inst, pos in zip(instruments, _tip_positions(instruments, camera), strict=True):
        pose = Pose()
        pose.position = Point(x=float(pos[0]), y=float(pos[1]), z=float(pos[2]))
        pose.orientation = yaw_quaternion(float(inst.axis[0]), float(inst.axis[1]))
        msg.poses.append(pose)
    return msg


_PALETTE = ((0.1, 0.9, 0.2), (0.2, 0.5, 1.0), (1.0, 0.6, 0.1), (0.9, 0.2, 0.8), (0.2, 0.9, 0.9))


def instruments_to_markers(
    instruments: Sequence,
    header,
    camera: CameraModel | None = None,
    pixel_size: float = 0.001,
    ray_length: float = 0.1,
    namespace: str = "instruments",
) -> MarkerArray:
    """DELETEALL, then per instrument an arrow (entry -> tip) and a sphere (tip).

    Without camera info, pixel coordinates are drawn scaled by ``pixel_size`` metres per pixel
    in the image frame; with it, points lie ``ray_length`` metres along their rays.
    """
    out = MarkerArray()
    clear = Marker(header=header, ns=namespace, action=Marker.DELETEALL)
    out.markers.append(clear)
    if not instruments:
        return out
    ends = np.array([[inst.entry, inst.tip] for inst in instruments], dtype=np.float64).reshape(-1, 2)
    if camera is None:
        points = np.column_stack([ends * pixel_size, np.zeros(len(ends))])
        size = max(pixel_size * 8.0, 1e-4)
    else:
        points = camera.rays(ends) * ray_length
        size = ray_length * 0.02
    for i, inst in enumerate(instruments):
        r, g, b = _PALETTE[int(inst.track_id) % len(_PALETTE)]
        color = ColorRGBA(r=r, g=g, b=b, a=1.0)
        entry, tip = points[2 * i], points[2 * i + 1]
        arrow = Marker(header=header, ns=namespace, id=2 * i, type=Marker.ARROW, action=Marker.ADD)
        arrow.points = [
            Point(x=float(entry[0]), y=float(entry[1]), z=float(entry[2])),
            Point(x=float(tip[0]), y=float(tip[1]), z=float(tip[2])),
        ]
        arrow.scale.x, arrow.scale.y, arrow.scale.z = size * 0.5, size, size * 1.5
        arrow.color = color
        sphere = Marker(header=header, ns=namespace, id=2 * i + 1, type=Marker.SPHERE, action=Marker.ADD)
        sphere.pose.position = Point(x=float(tip[0]), y=float(tip[1]), z=float(tip[2]))
        sphere.pose.orientation.w = 1.0
        sphere.scale.x = sphere.scale.y = sphere.scale.z = size * 2.0
        sphere.color = color
        out.markers.extend([arrow, sphere])
    return out


def instruments_to_detections(instruments: Sequence, header, class_names: Sequence[str]):
    """vision_msgs/Detection2DArray: bbox centre/size in pixels, class name, score, track id."""
    msg = Detection2DArray(header=header)
    for inst in instruments:
        x, y, w, h = (float(v) for v in inst.bbox)
        det = Detection2D(header=header)
        det.id = str(int(inst.track_id))
        det.bbox = BoundingBox2D()
        det.bbox.center.position.x = x + w / 2.0
        det.bbox.center.position.y = y + h / 2.0
        det.bbox.size_x, det.bbox.size_y = w, h
        hyp = ObjectHypothesisWithPose()
        cid = int(inst.class_id)
        hyp.hypothesis.class_id = class_names[cid] if 0 <= cid < len(class_names) else str(cid)
        hyp.hypothesis.score = float(inst.score)
        hyp.pose.pose.position.x, hyp.pose.pose.position.y = (float(v) for v in inst.tip)
        hyp.pose.pose.orientation = yaw_quaternion(float(inst.axis[0]), float(inst.axis[1]))
        det.results.append(hyp)
        msg.detections.append(det)
    return msg


def label_info(class_names: Sequence[str], threshold: float, header):
    """vision_msgs/LabelInfo: mask value -> class name (published latched)."""
    msg = LabelInfo(header=header, threshold=float(threshold))
    msg.class_map = [VisionClass(class_id=i, class_name=str(n)) for i, n in enumerate(class_names)]
    return msg


# --- diagnostics --------------------------------------------------------------------------------


def diagnostics(
    stamp, name: str, hardware_id: str, level: int, message: str, values: dict[str, object]
) -> DiagnosticArray:
    """One DiagnosticStatus; values are stringified (floats with 3 decimals)."""
    status = DiagnosticStatus(level=bytes([level]), name=name, message=message, hardware_id=hardware_id)
    status.values = [
        KeyValue(key=k, value=f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in values.items()
    ]
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = [status]
    return msg
