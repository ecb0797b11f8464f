"""Pipeline results -> ROS messages. No node, no state: plain functions of (result, header).

One meaning per topic; every message carries the input image's header:

* ``~/detections`` (vision_msgs/Detection2DArray): the instruments in **pixels** - bounding box,
  class, score, track id; ``results[0].pose.pose`` is the tip ``(x, y, 0)`` (x right, y down,
  origin at the centre of the top-left pixel) with the shaft direction as orientation.
* ``~/instrument_rays`` (geometry_msgs/PoseArray), only for frames with a valid CameraInfo: the
  tip as a **unit ray** in the camera optical frame (z forward, x right, y down, z > 0),
  undistorted with D. The depth is unknown from one mask, so the consumer scales the ray.
* orientation, both: the shaft direction (entry side -> tip) as a rotation about the optical
  axis (+z) by ``atan2(dy, dx)``; x of the rotated frame points along the shaft.

A CameraInfo is validated before use (:meth:`CameraModel.from_camera_info`): finite K, D, R, P,
positive focal lengths, and as many D coefficients as its ``distortion_model`` has.

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


#: reasons a CameraInfo is refused; each one is a diagnostics counter
BAD_CAMERA_INFO_KINDS = ("uncalibrated", "non_finite", "focal", "distortion")

#: distortion_model -> accepted numbers of D coefficients ("" = pinhole: D empty or all zero)
DISTORTION_COEFFICIENTS = {"plumb_bob": (4, 5), "rational_polynomial": (8,), "equidistant": (4,)}


class CameraInfoError(ValueError):
    """A CameraInfo that cannot give rays; ``kind`` is one of :data:`BAD_CAMERA_INFO_KINDS`."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class CameraModel:
    """Intrinsics from a validated sensor_msgs/CameraInfo; only what the tip ray needs."""

    K: np.ndarray  # 3x3
    D: np.ndarray  # distortion coefficients (may be empty)
    model: str  # distortion_model
    width: int
    height: int

    @classmethod
    def from_camera_info(cls, info) -> CameraModel:
        """The camera of ``info``, or :class:`CameraInfoError` saying why it cannot be used.

        Drivers publish uncalibrated infos (K all zero); those are refused as "uncalibrated".
        """
        K = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
        D = np.asarray(info.d, dtype=np.float64)
        arrays = {"K": K, "D": D, "R": np.asarray(info.r, np.float64), "P": np.asarray(info.p, np.float64)}
        bad = [name for name, values in arrays.items() if not np.isfinite(values).all()]
        if bad:
            raise CameraInfoError("non_finite", f"CameraInfo {'/'.join(bad)} holds NaN or infinity")
        if not K.any():
            raise CameraInfoError("uncalibrated", "CameraInfo is uncalibrated (K is all zero)")
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise CameraInfoError("focal", f"CameraInfo focal lengths fx={K[0, 0]}, fy={K[1, 1]} must be > 0")
        model = str(info.distortion_model)
        _check_distortion(model, D)
        camera = cls(K=K, D=D, model=model, width=int(info.width), height=int(info.height))
        camera._check_rays()
        return camera

    def _check_rays(self) -> None:
        """Extreme (finite) coefficients can still overflow: probe the image corners and centre."""
        w = self.width if self.width > 0 else 2.0 * self.K[0, 2]
        h = self.height if self.height > 0 else 2.0 * self.K[1, 2]
        probe = np.array([[0, 0], [w, 0], [0, h], [w, h], [w / 2, h / 2]], dtype=np.float64)
        try:
            with np.errstate(all="ignore"):
                rays = self.rays(probe)
                finite = np.isfinite(probe).all() and np.isfinite(rays).all() and (rays[:, 2] > 0).all()
        except cv2.error as exc:  # OpenCV refuses the coefficients outright
            reason = f"OpenCV cannot undistort with this CameraInfo: {exc}"
            raise CameraInfoError("distortion", reason) from exc
        if not finite:
            raise CameraInfoError("non_finite", "CameraInfo gives non-finite rays inside the image")

    def rays(self, pixels: np.ndarray) -> np.ndarray:
        """Unit rays (N,3) in the optical frame for pixel coordinates (N,2)."""
        pts = np.asarray(pixels, dtype=np.float64).reshape(-1, 1, 2)
        if not (self.D.size and np.any(self.D)):
            norm = (pts.reshape(-1, 2) - self.K[:2, 2]) / np.diag(self.K)[:2]
        elif self.model == "equidistant":
            norm = cv2.fisheye.undistortPoints(pts, self.K, self.D).reshape(-1, 2)
        else:
            norm = cv2.undistortPoints(pts, self.K, self.D).reshape(-1, 2)
        rays = np.column_stack([norm, np.ones(len(norm))])
        length = np.hypot(np.hypot(rays[:, 0], rays[:, 1]), 1.0)  # no overflow for huge x, y
        return rays / length[:, None]


def _check_distortion(model: str, D: np.ndarray) -> None:
    if model == "":
        if np.any(D):
            raise CameraInfoError("distortion", "CameraInfo has D coefficients but no distortion_model")
        return
    lengths = DISTORTION_COEFFICIENTS.get(model)
    if lengths is None:
        raise CameraInfoError(
            "distortion",
            f"CameraInfo distortion_model '{model}' is not supported ({', '.join(DISTORTION_COEFFICIENTS)})",
        )
    if D.size not in lengths:
        raise CameraInfoError(
            "distortion",
            f"CameraInfo distortion_model '{model}' takes {' or '.join(map(str, lengths))} D coefficients, "
            f"got {D.size}",
        )


def yaw_quaternion(dx: float, dy: float) -> Quaternion:
    """Rotation about +z taking +x onto the image direction (dx, dy)."""
    half = 0.5 * math.atan2(dy, dx)
    return Quaternion(x=0.0, y=0.0, z=math.sin(half), w=math.cos(half))


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


def instruments_to_rays(instruments: Sequence, header, camera: CameraModel) -> PoseArray:
    """``~/instrument_rays``: per instrument the tip as a unit ray, oriented along the shaft."""
    msg = PoseArray(header=header)
    tips = np.array([inst.tip for inst in instruments], dtype=np.float64).reshape(-1, 2)
    for inst, pos in zip(instruments, camera.rays(tips), strict=True):
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
    """vision_msgs/Detection2DArray in pixels: bbox centre/size, class name, score, track id, and
    the tip ``(x, y, 0)`` with the shaft direction as the hypothesis pose."""
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
    """vision_msgs/LabelInfo: mask value -> class name (published latched, with the frame_id of
    the images the masks belong to)."""
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
