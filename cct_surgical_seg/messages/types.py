"""Where message objects come from: one interface over rclpy's classes and the rosbags typestore.

The builders in :mod:`cct_surgical_seg.messages` construct every message through
``types.new(name, **fields)``, so the live node (rclpy classes, ``ros/msg_types.py``) and
``cct-bag`` (rosbags typestore, ``messages/bag_types.py``) publish and write field-for-field the
same messages from one piece of code. Fields a builder leaves out take the message definition's
zero value; builders set every field whose IDL default is not zero (Quaternion ``w``).
"""

from __future__ import annotations

from typing import Any, Protocol

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
POSE_ARRAY = "geometry_msgs/msg/PoseArray"
MARKER_ARRAY = "visualization_msgs/msg/MarkerArray"
DETECTION_ARRAY = "vision_msgs/msg/Detection2DArray"
LABEL_INFO = "vision_msgs/msg/LabelInfo"
CLASSIFICATION = "vision_msgs/msg/Classification"


class MessageTypes(Protocol):
    """Builds ROS messages by type name (``package/msg/Name``)."""

    def new(self, name: str, /, **fields: Any) -> Any:
        """A message of type ``name``; ``bytes`` for a uint8 sequence, sequences of messages as lists."""
        ...

    def has(self, name: str) -> bool:
        """Whether ``name`` can be built here (vision_msgs is optional for the node)."""
        ...
