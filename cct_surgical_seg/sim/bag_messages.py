"""Scene frames and their ground truth -> rosbags messages (``cct-sim --bag``; no rclpy).

Built with the same builders as the node's outputs (:mod:`cct_surgical_seg.messages`) on the
rosbags typestore, so the conventions match the live graph: images in bgr8/rgb8, masks as mono8
class ids, ground-truth tips in pixels (x right, y down) with z = 0 and the yaw of the shaft axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from cct_surgical_seg.messages.bag_types import BAG_TYPES, stamp
from cct_surgical_seg.messages.images import array_to_image
from cct_surgical_seg.messages.results import yaw_quaternion
from cct_surgical_seg.messages.types import CAMERA_INFO, COMPRESSED_IMAGE, POSE_ARRAY
from cct_surgical_seg.sim.scene import CameraIntrinsics

CLOCK = "rosgraph_msgs/msg/Clock"


def image(array: np.ndarray, encoding: str, hdr: Any) -> Any:
    """uint8 HxW (mono8) or HxWx3 (bgr8/rgb8, channels already in that order) as Image."""
    return array_to_image(BAG_TYPES, np.asarray(array, dtype=np.uint8), hdr, encoding)


def compressed_image(bgr: np.ndarray, hdr: Any, fmt: str = "jpeg") -> Any:
    ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr)
    if not ok:
        raise ValueError(f"could not encode {fmt}")
    return BAG_TYPES.new(
        COMPRESSED_IMAGE, header=hdr, format=f"bgr8; {fmt} compressed bgr8", data=buf.tobytes()
    )


def camera_info(cam: CameraIntrinsics, hdr: Any) -> Any:
    return BAG_TYPES.new(
        CAMERA_INFO,
        header=hdr,
        height=cam.height,
        width=cam.width,
        distortion_model=cam.distortion_model,
        d=np.asarray(cam.d, np.float64),
        k=np.asarray(cam.k, np.float64),
        r=np.eye(3).reshape(-1),
        p=np.asarray(cam.projection, np.float64),
    )


def pose_array(points: Sequence[tuple[float, float]], axes: Sequence[tuple[float, float]], hdr: Any) -> Any:
    """Tips in pixels, oriented along the shaft axis (yaw in the image plane)."""
    poses = [
        BAG_TYPES.new(
            "geometry_msgs/msg/Pose",
            position=BAG_TYPES.new("geometry_msgs/msg/Point", x=float(p[0]), y=float(p[1]), z=0.0),
            orientation=yaw_quaternion(BAG_TYPES, float(a[0]), float(a[1])),
        )
        for p, a in zip(points, axes, strict=True)
    ]
    return BAG_TYPES.new(POSE_ARRAY, header=hdr, poses=poses)


def clock(ns: int) -> Any:
    return BAG_TYPES.new(CLOCK, clock=stamp(ns))
