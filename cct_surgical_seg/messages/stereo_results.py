"""Stereo pairs -> checks and 3D messages: what the node's stereo mode publishes besides the left
view's usual outputs (:func:`~cct_surgical_seg.messages.results.frame_messages`).

Like :mod:`cct_surgical_seg.messages.results`, every builder takes a
:class:`~cct_surgical_seg.messages.types.MessageTypes`, so the live node (rclpy classes) and a
bag tool (rosbags typestore) produce field-for-field the same messages. Plain functions, no
node, no state.

Before any 3D work a pair is checked (:func:`stereo_camera_for`): both views the same size and
encoding, a valid CameraInfo for each eye, CameraInfos that describe images of that size and
form a rectified horizontal pair (:class:`~cct_surgical_seg.deploy.stereo.StereoCamera`). A
refused pair raises :class:`StereoPairError` whose ``kind`` (one of
:data:`STEREO_REFUSED_KINDS`) is a diagnostics counter.

One meaning per topic; every message carries the **left** image's header (stamp and the left
optical frame: x right, y down, z forward), positions in metres:

* ``instrument_poses`` (geometry_msgs/PoseArray): per 3D instrument the tip, oriented by the
  rotation that takes +x onto the 3D shaft direction (entry side -> tip). The roll about the
  shaft is not observed: the rotation is the shortest one from +x (a shaft pointing along -x
  turns by 180 deg about +z).
* ``detections_3d`` (vision_msgs/Detection3DArray, only where vision_msgs exists): per
  instrument, in the same order, one hypothesis (class name, score) whose pose is that tip and
  orientation with the tip covariance (m^2, from the disparity and 2D tip errors) in the
  position block of the 6x6 covariance (rotations 0: not estimated); the bbox is centred on the
  tip, axis-aligned with the optical frame, ``TIP_BOX_SIGMAS`` standard deviations wide on each
  axis; ``id`` is the track id.
* ``markers`` (visualization_msgs/MarkerArray): DELETEALL, then per instrument an arrow along
  the shaft ending at the tip and a sphere at the tip (translucent when the tip is not visible),
  coloured by track id as in mono mode.

Only instruments whose score reaches ``score_threshold`` are reported, as in mono mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cct_surgical_seg.deploy.poses import reported_instruments
from cct_surgical_seg.deploy.stereo import Instrument3D, StereoCamera
from cct_surgical_seg.messages.camera import CameraModel
from cct_surgical_seg.messages.results import OutputOptions, _pose, instrument_detection, shaft_markers
from cct_surgical_seg.messages.types import POSE_ARRAY, MessageTypes

DETECTION_3D_ARRAY = "vision_msgs/msg/Detection3DArray"

#: reasons a stereo pair is refused; each one is a diagnostics counter
STEREO_REFUSED_KINDS = (
    "size_mismatch",
    "encoding_mismatch",
    "no_camera_info",
    "camera_info_size",
    "not_rectified",
)

#: the detection bbox spans this many standard deviations of the tip on each axis (+-3 sigma)
TIP_BOX_SIGMAS = 6.0
#: RViz: length of the shaft arrow ending at the tip, and the tip sphere's diameter (m)
SHAFT_ARROW_M = 0.04
TIP_SPHERE_M = 0.004


class StereoPairError(ValueError):
    """A pair that cannot give 3D poses; ``kind`` is one of :data:`STEREO_REFUSED_KINDS`."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


# --- checks ---------------------------------------------------------------------------------------


def view_encoding(msg: Any) -> str:
    """The encoding of an Image, or the ``format`` of a CompressedImage."""
    return str(msg.encoding) if hasattr(msg, "encoding") else str(msg.format)


def stereo_camera_from_infos(left: Any, right: Any, tolerance_px: float = 0.01) -> StereoCamera:
    """The rectified pair of two sensor_msgs/CameraInfo, each validated by ``CameraModel`` first;
    ``ValueError`` (one line) for an uncalibrated or unrectified pair."""
    return StereoCamera.from_models(
        CameraModel.from_camera_info(left), CameraModel.from_camera_info(right), tolerance_px
    )


def stereo_camera_for(
    left_msg: Any,
    right_msg: Any,
    left_rgb: np.ndarray,
    right_rgb: np.ndarray,
    left_camera: CameraModel | None,
    right_camera: CameraModel | None,
) -> StereoCamera:
    """The rectified camera pair of two converted views, or :class:`StereoPairError` saying why
    the pair cannot be used (checked in this order: encodings, sizes, CameraInfos present, their
    size, rectification)."""
    if view_encoding(left_msg) != view_encoding(right_msg):
        raise StereoPairError(
            "encoding_mismatch",
            f"left and right encodings differ: {view_encoding(left_msg)!r} vs {view_encoding(right_msg)!r}",
        )
    if left_rgb.shape != right_rgb.shape:
        raise StereoPairError(
            "size_mismatch",
            f"left and right images differ in size: {_wxh(left_rgb)} vs {_wxh(right_rgb)}",
        )
    if left_camera is None or right_camera is None:
        missing = [name for name, cam in (("left", left_camera), ("right", right_camera)) if cam is None]
        raise StereoPairError(
            "no_camera_info", f"no valid CameraInfo yet for the {' and '.join(missing)} eye"
        )
    for name, cam in (("left", left_camera), ("right", right_camera)):
        if cam.width > 0 and cam.height > 0 and (cam.width, cam.height) != _size(left_rgb):
            raise StereoPairError(
                "camera_info_size",
                f"the {name} CameraInfo is for {cam.width}x{cam.height} images, the pair is {_wxh(left_rgb)}",
            )
    try:
        return StereoCamera.from_models(left_camera, right_camera)
    except ValueError as err:
        raise StereoPairError("not_rectified", str(err)) from err


def _size(rgb: np.ndarray) -> tuple[int, int]:
    """(width, height) of an image array."""
    return int(rgb.shape[1]), int(rgb.shape[0])


def _wxh(rgb: np.ndarray) -> str:
    return f"{rgb.shape[1]}x{rgb.shape[0]}"


# --- messages -------------------------------------------------------------------------------------


def stereo_messages(
    types: MessageTypes, poses: Sequence[Instrument3D], header: Any, options: OutputOptions
) -> dict[str, Any]:
    """Output name (``instrument_poses``, ``detections_3d``, ``markers``) -> message for the 3D
    instruments of one pair; ``detections_3d`` only where vision_msgs exists."""
    reported = reported_instruments(poses, options.score_threshold)
    out = {
        "instrument_poses": poses_to_pose_array(types, reported, header),
        "markers": poses_to_markers(types, reported, header),
    }
    if types.has(DETECTION_3D_ARRAY):
        out["detections_3d"] = poses_to_detections_3d(types, reported, header, options.class_names)
    return out


def shaft_quaternion(types: MessageTypes, axis: Sequence[float]) -> Any:
    """The shortest rotation taking +x onto the unit vector ``axis`` (180 deg about +z for -x)."""
    a = np.asarray(axis, np.float64)
    a = a / max(float(np.linalg.norm(a)), 1e-12)
    w = 1.0 + float(a[0])
    if w < 1e-9:
        return types.new("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=1.0, w=0.0)
    q = np.array([0.0, -a[2], a[1], w])  # (x cross a, 1 + x.a), normalised below
    q /= float(np.linalg.norm(q))
    return types.new("geometry_msgs/msg/Quaternion", x=q[0], y=q[1], z=q[2], w=q[3])


def _tip_pose(types: MessageTypes, pose: Instrument3D) -> Any:
    return _pose(types, pose.tip_xyz, shaft_quaternion(types, pose.axis_xyz))


def poses_to_pose_array(types: MessageTypes, poses: Sequence[Instrument3D], header: Any) -> Any:
    """``instrument_poses``: the tips in metres, oriented along the 3D shaft."""
    return types.new(POSE_ARRAY, header=header, poses=[_tip_pose(types, p) for p in poses])


def pose_covariance(tip_cov: Sequence[float]) -> np.ndarray:
    """Row-major 6x6 (x, y, z, rot x, rot y, rot z) with the 3x3 ``tip_cov`` as position block."""
    cov = np.zeros((6, 6))
    cov[:3, :3] = np.asarray(tip_cov, np.float64).reshape(3, 3)
    return cov.reshape(-1)


def poses_to_detections_3d(
    types: MessageTypes, poses: Sequence[Instrument3D], header: Any, class_names: Sequence[str]
) -> Any:
    """vision_msgs/Detection3DArray: class, score, tip pose with covariance, a box about the tip."""
    detections = []
    for p in poses:
        std = np.sqrt(np.clip(np.diag(np.asarray(p.tip_cov, np.float64).reshape(3, 3)), 0.0, None))
        sx, sy, sz = (TIP_BOX_SIGMAS * std).tolist()
        size = types.new("geometry_msgs/msg/Vector3", x=sx, y=sy, z=sz)
        bbox = types.new("vision_msgs/msg/BoundingBox3D", center=_pose(types, p.tip_xyz), size=size)
        pose, covariance = _tip_pose(types, p), pose_covariance(p.tip_cov)
        detections.append(
            instrument_detection(
                types, "vision_msgs/msg/Detection3D", header, p, class_names, pose, covariance, bbox
            )
        )
    return types.new(DETECTION_3D_ARRAY, header=header, detections=detections)


def poses_to_markers(
    types: MessageTypes,
    poses: Sequence[Instrument3D],
    header: Any,
    arrow_length: float = SHAFT_ARROW_M,
    sphere_size: float = TIP_SPHERE_M,
    namespace: str = "instruments",
) -> Any:
    """DELETEALL, then per instrument an arrow along the shaft ending at the tip and a sphere at
    the tip (alpha 0.3 when the tip is not visible), coloured by track id."""
    tips = np.array([p.tip_xyz for p in poses], np.float64).reshape(-1, 3)
    axes = np.array([p.axis_xyz for p in poses], np.float64).reshape(-1, 3)
    ends = np.stack([tips - arrow_length * axes, tips], axis=1).reshape(-1, 3)  # tail, tip per pose
    return shaft_markers(types, header, namespace, poses, ends, sphere_size, sphere_size)


def quaternion_axis(q: Any) -> tuple[float, float, float]:
    """The image of +x under quaternion ``q`` (x, y, z, w fields): the shaft direction of a pose."""
    x, y, z, w = float(q.x), float(q.y), float(q.z), float(q.w)
    return (1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y + w * z), 2.0 * (x * z - w * y))
