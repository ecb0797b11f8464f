"""Launch segmentation_node with config/segmentation.yaml and optional overrides.

  ros2 launch cct_surgical_seg segmentation.launch.py \
      [params_file:=...] [model:=...] [backend:=...] [image_topic:=...] [namespace:=...] \
      [use_sim_time:=true] [autostart:=false] [log_level:=debug]

Why an OpaqueFunction: an empty ``model``/``backend``/``image_topic`` argument means "keep the
params file's value", which needs the argument's value before the parameter list is built.
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "cct_surgical_seg"
EXECUTABLE = "segmentation_node"
NODE_NAME = "segmentation_node"
# launch argument -> node parameter; an empty argument leaves the params file's value
OVERRIDES = {"model": "model_path", "backend": "backend", "image_topic": "image_topic"}


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
            arguments=["--ros-args", "--log-level", value("log_level")],
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(share, "config", "segmentation.yaml"),
                description="parameters YAML for segmentation_node",
            ),
            DeclareLaunchArgument("model", default_value="", description="model_path override (ONNX/.pt)"),
            DeclareLaunchArgument(
                "backend", default_value="", description="backend override: auto|onnxruntime|tensorrt|torch"
            ),
            DeclareLaunchArgument("image_topic", default_value="", description="image_topic override"),
            DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock"),
            DeclareLaunchArgument(
                "autostart",
                default_value="true",
                description="configure + activate at start (false: lifecycle commands)",
            ),
            DeclareLaunchArgument("log_level", default_value="info", description="debug|info|warn|error"),
            OpaqueFunction(function=_node),
        ]
    )
