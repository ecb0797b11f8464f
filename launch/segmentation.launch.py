"""Launch segmentation_node with config/segmentation.yaml and optional overrides.

  ros2 launch cct_surgical_seg segmentation.launch.py \
      [params_file:=...] [model:=...] [backend:=...] [transport:=raw|compressed] \
      [image_topic:=camera/image_raw] [camera_info_topic:=camera/camera_info] [namespace:=...] \
      [use_sim_time:=true] [autostart:=false] [log_level:=debug] [respawn:=true] [respawn_delay:=2.0]

The node subscribes to the relative topics ``image`` and ``camera_info``; ``image_topic`` and
``camera_info_topic`` remap them (relative names resolve in ``namespace``, so two namespaced
nodes see two cameras). With ``transport:=compressed`` it takes ``<image_topic>/compressed``.
An argument the launch files do not declare fails the launch (``--show-args`` lists them).

The arguments and the Node shared with stereo.launch.py come from
:mod:`cct_surgical_seg.ros.launch_arguments` (with why the Node is built from the arguments'
values, and the log colours); this file holds the mono topics.
"""

from __future__ import annotations

from launch.actions import DeclareLaunchArgument
from launch_ros.actions import Node

from cct_surgical_seg.ros.launch_arguments import Values, node_launch_description, segmentation_node
from launch import LaunchDescription

# launch argument -> the node's relative input topic it remaps
REMAPS = {"image_topic": "image", "camera_info_topic": "camera_info"}


def _node(value: Values) -> Node:
    return segmentation_node(value, REMAPS, {})


def generate_launch_description() -> LaunchDescription:
    topics = [
        DeclareLaunchArgument(
            "image_topic", default_value="camera/image_raw", description="remaps the node's 'image'"
        ),
        DeclareLaunchArgument(
            "camera_info_topic",
            default_value="camera/camera_info",
            description="remaps the node's 'camera_info'",
        ),
    ]
    return node_launch_description(
        "parameters YAML for segmentation_node",
        "transport override ('' = params file): raw Image on image_topic, "
        "compressed CompressedImage on <image_topic>/compressed",
        topics,
        _node,
    )
