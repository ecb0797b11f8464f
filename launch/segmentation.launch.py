"""Launch segmentation_node with config/segmentation.yaml and optional overrides.

  ros2 launch cct_surgical_seg segmentation.launch.py \
      [params_file:=...] [model:=...] [backend:=...] [transport:=raw|compressed] \
      [image_topic:=camera/image_raw] [camera_info_topic:=camera/camera_info] [namespace:=...] \
      [use_sim_time:=true] [autostart:=false] [log_level:=debug] [respawn:=true] [respawn_delay:=2.0]

The node subscribes to the relative topics ``image`` and ``camera_info``; ``image_topic`` and
``camera_info_topic`` remap them (relative names resolve in ``namespace``, so two namespaced
nodes see two cameras). With ``transport:=compressed`` it takes ``<image_topic>/compressed``.
An argument the launch files do not declare fails the launch (``--show-args`` lists them).

Why an OpaqueFunction: an empty ``model``/``backend``/``transport`` argument means "keep the
params file's value", which needs the argument's value before the parameter list is built.
Log colours: ``RCUTILS_COLORIZED_OUTPUT`` is 0 for the node unless set, so launch's log files
hold no ANSI escape codes (``emulate_tty`` keeps the output line-buffered).
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
OVERRIDES = {"model": "model_path", "backend": "backend", "transport": "transport"}
# launch argument -> the node's relative input topic it remaps
REMAPS = {"image_topic": "image", "camera_info_topic": "camera_info"}


def _true(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _node(context, *args, **kwargs):
    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    overrides: dict[str, object] = {param: value(arg) for arg, param in OVERRIDES.items() if value(arg)}
    overrides["use_sim_time"] = _true(value("use_sim_time"))
    overrides["autostart"] = _true(value("autostart"))
    return [
        Node(
            package=PACKAGE,
            executable=EXECUTABLE,
            name=NODE_NAME,
            namespace=value("namespace"),
            parameters=[value("params_file"), overrides],
            remappings=[(topic, value(arg)) for arg, topic in REMAPS.items()],
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
            description="parameters YAML for segmentation_node",
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
            description="transport override ('' = params file): raw Image on image_topic, "
            "compressed CompressedImage on <image_topic>/compressed",
        ),
        DeclareLaunchArgument(
            "image_topic", default_value="camera/image_raw", description="remaps the node's 'image'"
        ),
        DeclareLaunchArgument(
            "camera_info_topic",
            default_value="camera/camera_info",
            description="remaps the node's 'camera_info'",
        ),
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
