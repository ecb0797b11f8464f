"""Launch segmentation_node in stereo mode with config/segmentation.yaml and optional overrides.

  ros2 launch cct_surgical_seg stereo.launch.py \
      [params_file:=...] [model:=...] [backend:=...] [transport:=raw|compressed] \
      [stereo_matching:=epipolar|batched] [stereo_sync_tolerance:=0.002] \
      [left_image_topic:=/stereo/left/image_rect] [left_camera_info_topic:=/stereo/left/camera_info] \
      [right_image_topic:=/stereo/right/image_rect] [right_camera_info_topic:=/stereo/right/camera_info] \
      [namespace:=...] [use_sim_time:=true] [autostart:=false] [log_level:=debug] [respawn:=true]

The node subscribes to the relative topics ``left/image``, ``left/camera_info``,
``right/image`` and ``right/camera_info``; the ``*_topic`` arguments remap them (relative names
resolve in ``namespace``). The images must be **rectified** (``stereo_image_proc``'s
``image_rect``, hence the defaults); ``cct-sim --stereo`` draws a distortion-free, already
rectified pair on ``/stereo/{left,right}/image_raw``:
``left_image_topic:=/stereo/left/image_raw right_image_topic:=/stereo/right/image_raw``.
With ``transport:=compressed`` the node takes ``<left_image_topic>/compressed`` and
``<right_image_topic>/compressed``. An argument no launch file declares fails the launch.

The arguments and the Node shared with segmentation.launch.py come from
:mod:`cct_surgical_seg.ros.launch_arguments`; this file holds the stereo topics and
parameters. ``stereo`` is always true here.
"""

from __future__ import annotations

from launch.actions import DeclareLaunchArgument
from launch_ros.actions import Node

from cct_surgical_seg.ros.launch_arguments import (
    Values,
    given_overrides,
    node_launch_description,
    segmentation_node,
)
from launch import LaunchDescription

# stereo launch argument -> node parameter (besides the shared ones); empty = the params file's
OVERRIDES = {"stereo_matching": "stereo_matching", "stereo_sync_tolerance": "stereo_sync_tolerance"}
# launch argument -> (the node's relative input topic it remaps, default)
REMAPS = {
    "left_image_topic": ("left/image", "/stereo/left/image_rect"),
    "left_camera_info_topic": ("left/camera_info", "/stereo/left/camera_info"),
    "right_image_topic": ("right/image", "/stereo/right/image_rect"),
    "right_camera_info_topic": ("right/camera_info", "/stereo/right/camera_info"),
}


def _overrides(value: Values) -> dict[str, object]:
    """The stereo parameters from the launch arguments: non-empty overrides, stereo on."""
    out = given_overrides(value, OVERRIDES)
    if "stereo_sync_tolerance" in out:
        out["stereo_sync_tolerance"] = float(out["stereo_sync_tolerance"])
    out["stereo"] = True
    return out


def _node(value: Values) -> Node:
    remappings = {arg: topic for arg, (topic, _) in REMAPS.items()}
    return segmentation_node(value, remappings, _overrides(value))


def generate_launch_description() -> LaunchDescription:
    own = [
        DeclareLaunchArgument(
            "stereo_matching",
            default_value="",
            choices=["", "epipolar", "batched"],
            description="stereo_matching override ('' = params file, epipolar by default)",
        ),
        DeclareLaunchArgument(
            "stereo_sync_tolerance",
            default_value="",
            description="stereo_sync_tolerance override in seconds ('' = params file, 0 = equal stamps)",
        ),
        *[
            DeclareLaunchArgument(arg, default_value=default, description=f"remaps the node's '{topic}'")
            for arg, (topic, default) in REMAPS.items()
        ],
    ]
    return node_launch_description(
        "parameters YAML for segmentation_node (stereo is set to true on top of it)",
        "transport override ('' = params file): raw Image on the image topics, "
        "compressed CompressedImage on <image topic>/compressed",
        own,
        _node,
    )
