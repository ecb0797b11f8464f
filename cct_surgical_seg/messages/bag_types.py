"""The rosbags typestore behind :class:`~cct_surgical_seg.messages.types.MessageTypes` (no rclpy).

``cct-sim --bag`` and ``cct-bag`` write ROS 2 bags on machines without a ROS installation, so
they build messages from the rosbags typestore of the targeted distribution (Kilted), extended
with the vision_msgs definitions the node publishes (``~/detections``, ``~/frame_confidence``,
``~/label_info``, and in stereo mode ``~/detections_3d``).
Unlike rclpy's classes, typestore classes take every field at construction: :meth:`BagTypes.new`
fills the ones a builder leaves out with the definition's zero value.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.base import Nodetype

# vision_msgs 4.x (the node's ~/detections, ~/frame_confidence, ~/label_info and ~/detections_3d),
# comments stripped.
_VISION_MSGS = {
    "Point2D": "float64 x\nfloat64 y\n",
    "Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "ObjectHypothesis": "string class_id\nfloat64 score\n",
    "ObjectHypothesisWithPose": (
        "vision_msgs/ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n"
    ),
    "Detection2D": (
        "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n"
        "vision_msgs/BoundingBox2D bbox\nstring id\n"
    ),
    "Detection2DArray": "std_msgs/Header header\nvision_msgs/Detection2D[] detections\n",
    "Classification": "std_msgs/Header header\nvision_msgs/ObjectHypothesis[] results\n",
    "VisionClass": "uint16 class_id\nstring class_name\n",
    "LabelInfo": "std_msgs/Header header\nvision_msgs/VisionClass[] class_map\nfloat32 threshold\n",
    "BoundingBox3D": "geometry_msgs/Pose center\ngeometry_msgs/Vector3 size\n",
    "Detection3D": (
        "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n"
        "vision_msgs/BoundingBox3D bbox\nstring id\n"
    ),
    "Detection3DArray": "std_msgs/Header header\nvision_msgs/Detection3D[] detections\n",
}

_NUMPY_TYPES = {
    "bool": np.bool_,
    "byte": np.uint8,
    "char": np.uint8,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "uint32": np.uint32,
    "int64": np.int64,
    "uint64": np.uint64,
    "float32": np.float32,
    "float64": np.float64,
}


@cache
def typestore() -> Any:
    """Kilted's message definitions plus vision_msgs."""
    store = get_typestore(Stores.ROS2_KILTED)
    for name, text in _VISION_MSGS.items():
        store.register(get_types_from_msg(text, f"vision_msgs/msg/{name}"))
    return store


def _zero(node: tuple[Any, Any]) -> Any:
    """The zero value of one field definition (a rosbags ``(Nodetype, details)`` pair)."""
    kind, detail = node
    if kind == Nodetype.NAME:
        return BAG_TYPES.new(detail)
    if kind == Nodetype.BASE:
        base = detail[0]
        if base == "string":
            return ""
        return False if base == "bool" else _NUMPY_TYPES[base](0).item()
    sub, length = detail  # ARRAY (fixed length) or SEQUENCE
    count = length if kind == Nodetype.ARRAY else 0
    if sub[0] == Nodetype.BASE and sub[1][0] != "string":
        return np.zeros(count, _NUMPY_TYPES[sub[1][0]])
    return [_zero(sub) for _ in range(count)]


class BagTypes:
    """Messages of :func:`typestore`; ``bytes`` become uint8 arrays as the typestore expects."""

    def new(self, name: str, /, **fields: Any) -> Any:
        store = typestore()
        values = {
            field: fields[field] if field in fields else _zero(node)
            for field, node in store.fielddefs[name][1]
        }
        for field, value in values.items():
            if isinstance(value, (bytes, bytearray)):
                values[field] = np.frombuffer(value, np.uint8)
        unknown = set(fields) - set(values)
        if unknown:
            raise TypeError(f"{name} has no field(s) {sorted(unknown)}")
        return store.types[name](**values)

    def has(self, name: str) -> bool:
        return name in typestore().types


BAG_TYPES = BagTypes()


def serialize(msg: Any) -> bytes:
    return bytes(typestore().serialize_cdr(msg, msg.__msgtype__))


def deserialize(data: bytes | memoryview, msgtype: str) -> Any:
    return typestore().deserialize_cdr(data, msgtype)


def stamp(ns: int) -> Any:
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return BAG_TYPES.new("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)


def stamp_ns(msg_stamp: Any) -> int:
    return int(msg_stamp.sec) * 1_000_000_000 + int(msg_stamp.nanosec)


def header(ns: int, frame_id: str) -> Any:
    return BAG_TYPES.new("std_msgs/msg/Header", stamp=stamp(ns), frame_id=frame_id)
