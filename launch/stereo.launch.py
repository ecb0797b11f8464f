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

Why an OpaqueFunction: an empty override argument means "keep the params file's value", which
needs the argument's value before the parameter list is built. ``stereo`` is always true here.
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from cct_surgical_seg.deploy.backends import KINDS
from cct_surgical_seg.ros.launch_arguments import refuse_unknown_arguments
from launch import LaunchDescription

PACKAGE = "cct_surgical_seg"
EXECUTABLE = "segmentation_node"
NODE_NAME = "segmentation_node"
# launch argument -> node parameter; an empty argument leaves the params file's value
OVERRIDES = {
    "model": "model_path",
    "backend": "backend",
    "transport": "transport",
    "stereo_matching": "stereo_matching",
    "stereo_sync_tolerance": "stereo_sync_tolerance",
}
# launch argument -> (the node's relative input topic it remaps, default)
REMAPS = {
    "left_image_topic": ("left/image", "/stereo/left/image_rect"),
    "left_camera_info_topic": ("left/camera_info", "/stereo/left/camera_info"),
    "right_image_topic": ("right/image", "/stereo/right/image_rect"),
    "right_camera_info_topic": ("right/camera_info", "/stereo/right/camera_info"),
}


def _true(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _overrides(value) -> dict[str, object]:
    """Node parameters from the launch arguments: non-empty overrides, stereo on."""
    out: dict[str, object] = {param: value(arg) for arg, param in OVERRIDES.items() if value(arg)}
    if "stereo_sync_tolerance" in out:
        out["stereo_sync_tolerance"] = float(out["stereo_sync_tolerance"])
    out["stereo"] = True
    out["use_sim_time"] = _true(value("use_sim_time"))
    out["autostart"] = _true(value("autostart"))
    return out


def _node(context, *args, **kwargs):
    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    return [
        Node(
            package=PACKAGE,
            executable=EXECUTABLE,
            name=NODE_NAME,
            namespace=value("namespace"),
            parameters=[value("params_file"), _overrides(value)],
            remappings=[(topic, value(arg)) for arg, (topic, _) in REMAPS.items()],
            arguments=["--ros-args", "--log-level", value("log_level")],
            output="screen",
            emulate_tty=True,
            additional_env={"RCUTILS_COLORIZED_OUTPUT": os.environ.get("RCUTILS_COLORIZED_OUTPUT", "0")},
            respawn=_true(value("respawn")),
            respawn_delay=float(value("respawn_delay")),
        )
    ]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    entities = [
        DeclareLaunchArgument(
            "params_file",
            default_value=os.path.join(share, "config", "segmentation.yaml"),
            description="parameters YAML for segmentation_node (stereo is set to true on top of it)",
        ),
        DeclareLaunchArgument("model", default_value="", description="model_path override (ONNX/.pt)"),
        DeclareLaunchArgument(
            "backend",
            default_value="",
            choices=["", *KINDS],
            description="backend override ('' = params file)",
        ),
        DeclareLaunchArgument(
            "transport",
            default_value="",
            choices=["", "raw", "compressed"],
            description="transport override ('' = params file): raw Image on the image topics, "
            "compressed CompressedImage on <image topic>/compressed",
        ),
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
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock"),
        DeclareLaunchArgument(
            "autostart",
            default_value="true",
            description="configure + activate at start (false: lifecycle commands)",
        ),
        DeclareLaunchArgument(
            "log_level", default_value="info", choices=["debug", "info", "warn", "error", "fatal"]
        ),
        DeclareLaunchArgument(
            "respawn", default_value="false", description="restart the node when its process exits"
        ),
        DeclareLaunchArgument("respawn_delay", default_value="2.0", description="seconds before a respawn"),
    ]
    return LaunchDescription([refuse_unknown_arguments(entities), *entities, OpaqueFunction(function=_node)])
