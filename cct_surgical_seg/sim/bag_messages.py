"""numpy arrays / scene truth -> rosbags typestore messages (no rclpy).

Why a separate module: ``cct-sim --bag`` and ``cct-bag`` write ROS 2 bags on machines without
a ROS installation, so they build messages from the ``rosbags`` typestore rather than from
rclpy message classes. The encodings and conventions match what the live graph sends
(``cct-sim`` on a ROS graph, ``segmentation_node``): images in bgr8/rgb8, masks as mono8
class ids, points in pixels (x right, y down) with z = 0 and the yaw of the shaft axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from rosbags.typesys import Stores, get_typestore

from cct_surgical_seg.sim.scene import CameraIntrinsics

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POSE_ARRAY = "geometry_msgs/msg/PoseArray"
MARKER_ARRAY = "visualization_msgs/msg/MarkerArray"
CLOCK = "rosgraph_msgs/msg/Clock"


@lru_cache(maxsize=1)
def typestore():
    """The message definitions of the ROS distribution this package targets (Kilted)."""
    return get_typestore(Stores.ROS2_KILTED)


def _t(name: str) -> Any:
    return typestore().types[name]


def stamp(ns: int) -> Any:
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return _t("builtin_interfaces/msg/Time")(sec=sec, nanosec=nanosec)


def stamp_ns(msg_stamp: Any) -> int:
    return int(msg_stamp.sec) * 1_000_000_000 + int(msg_stamp.nanosec)


def header(ns: int, frame_id: str) -> Any:
    return _t("std_msgs/msg/Header")(stamp=stamp(ns), frame_id=frame_id)


def image(array: np.ndarray, encoding: str, hdr: Any) -> Any:
    """uint8 HxW (mono8) or HxWx3 (bgr8/rgb8, channels already in that order) as Image."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return _t(IMAGE)(
        header=hdr,
        height=int(array.shape[0]),
        width=int(array.shape[1]),
        encoding=encoding,
        is_bigendian=0,
        step=int(array.strides[0]),
        data=array.reshape(-1),
    )


def compressed_image(bgr: np.ndarray, hdr: Any, fmt: str = "jpeg") -> Any:
    import cv2

    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr)
    if not ok:
        raise ValueError(f"could not encode {fmt}")
    return _t(COMPRESSED_IMAGE)(
        header=hdr, format=f"bgr8; {fmt} compressed bgr8", data=np.frombuffer(buf.tobytes(), np.uint8)
    )


def camera_info(cam: CameraIntrinsics, hdr: Any) -> Any:
    return _t(CAMERA_INFO)(
        header=hdr,
        height=cam.height,
        width=cam.width,
        distortion_model=cam.distortion_model,
        d=np.asarray(cam.d, np.float64),
        k=np.asarray(cam.k, np.float64),
        r=np.eye(3).reshape(-1),
        p=np.asarray(cam.projection, np.float64),
        binning_x=0,
        binning_y=0,
        roi=_t("sensor_msgs/msg/RegionOfInterest")(
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        ),
    )


def _pose(x: float, y: float, yaw: float) -> Any:
    point = _t("geometry_msgs/msg/Point")(x=float(x), y=float(y), z=0.0)
    quat = _t("geometry_msgs/msg/Quaternion")(x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2))
    return _t("geometry_msgs/msg/Pose")(position=point, orientation=quat)


def pose_array(points: Sequence[tuple[float, float]], axes: Sequence[tuple[float, float]], hdr: Any) -> Any:
    """Tips in pixels, oriented along the shaft axis (yaw in the image plane)."""
    poses = [_pose(p[0], p[1], math.atan2(a[1], a[0])) for p, a in zip(points, axes, strict=True)]
    return _t(POSE_ARRAY)(header=hdr, poses=poses)


def marker_array(
    tips: Sequence[tuple[float, float]],
    entries: Sequence[tuple[float, float]],
    hdr: Any,
    pixel_size: float = 0.001,
    ns: str = "instruments",
) -> Any:
    """One line (entry -> tip) and one sphere (tip) per instrument, pixels scaled to metres,
    preceded by DELETEALL so instruments that vanished do not linger in RViz."""
    marker = _t("visualization_msgs/msg/Marker")
    duration = _t("builtin_interfaces/msg/Duration")(sec=0, nanosec=0)
    vec = _t("geometry_msgs/msg/Vector3")
    rgba = _t("std_msgs/msg/ColorRGBA")
    point = _t("geometry_msgs/msg/Point")
    mesh = _t("visualization_msgs/msg/MeshFile")(filename="", data=np.zeros(0, np.uint8))
    empty_texture = _t(COMPRESSED_IMAGE)(header=hdr, format="", data=np.zeros(0, np.uint8))

    def make(mid: int, kind: int, action: int, pts: list, colour: tuple, scale: float) -> Any:
        return marker(
            header=hdr,
            ns=ns,
            id=mid,
            type=kind,
            action=action,
            pose=_pose(0, 0, 0),
            scale=vec(x=scale, y=scale, z=scale),
            color=rgba(r=colour[0], g=colour[1], b=colour[2], a=1.0),
            lifetime=duration,
            frame_locked=False,
            points=pts,
            colors=[],
            texture_resource="",
            texture=empty_texture,
            uv_coordinates=[],
            text="",
            mesh_resource="",
            mesh_file=mesh,
            mesh_use_embedded_materials=False,
        )

    markers = [make(0, 0, 3, [], (0.0, 0.0, 0.0), 0.0)]  # DELETEALL
    for i, (tip, entry) in enumerate(zip(tips, entries, strict=True)):
        line = [
            point(x=entry[0] * pixel_size, y=entry[1] * pixel_size, z=0.0),
            point(x=tip[0] * pixel_size, y=tip[1] * pixel_size, z=0.0),
        ]
        markers.append(make(2 * i + 1, 4, 0, line, (0.2, 0.8, 1.0), 4 * pixel_size))
        sphere = make(2 * i + 2, 2, 0, [], (1.0, 0.9, 0.1), 12 * pixel_size)
        sphere.pose = _pose(tip[0] * pixel_size, tip[1] * pixel_size, 0.0)
        markers.append(sphere)
    return _t(MARKER_ARRAY)(markers=markers)


def clock(ns: int) -> Any:
    return _t(CLOCK)(clock=stamp(ns))


def serialize(msg: Any) -> bytes:
    return bytes(typestore().serialize_cdr(msg, msg.__msgtype__))


def deserialize(data: bytes | memoryview, msgtype: str) -> Any:
    return typestore().deserialize_cdr(data, msgtype)
