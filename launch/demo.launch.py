"""Simulated endoscope + segmentation node together (what ``cct-demo`` runs, without scoring).

  ros2 launch cct_surgical_seg demo.launch.py [model:=...] [backend:=auto] [instruments:=2]
      [rate:=15] [width:=640] [height:=512] [seed:=0] [smoke:=0.0] [use_sim_time:=false]

With ``use_sim_time:=true`` the simulator publishes /clock and stamps frames in simulated time,
and the node runs on that clock (outputs and diagnostics in simulated time). The node itself
comes from segmentation.launch.py, so its parameters and YAML stay defined in one place; the
arguments of both files are accepted here, any other fails the launch.
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from cct_surgical_seg.ros.launch_arguments import refuse_unknown_arguments
from launch import LaunchDescription

PACKAGE = "cct_surgical_seg"
SIM_ARGS = ("rate", "width", "height", "instruments", "seed", "smoke")


def _sim(context, *args, **kwargs):
    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    argv = []
    for name in SIM_ARGS:
        argv += [f"--{name}", value(name)]
    argv += ["--fps", value("rate")]
    if value("use_sim_time").strip().lower() in ("1", "true", "yes", "on"):
        argv.append("--clock")
    return [Node(package=PACKAGE, executable="cct-sim", name="cct_sim", arguments=argv, output="screen")]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    shipped = os.path.join(share, "models", "cct_demo.onnx")
    entities = [
        DeclareLaunchArgument("model", default_value=shipped, description="ONNX model for the node"),
        DeclareLaunchArgument(
            "backend",
            default_value="auto",
            choices=["auto", "onnxruntime", "tensorrt", "torch"],
            description="inference backend",
        ),
        DeclareLaunchArgument("rate", default_value="15.0", description="simulator frames per second"),
        DeclareLaunchArgument("width", default_value="640"),
        DeclareLaunchArgument("height", default_value="512"),
        DeclareLaunchArgument("instruments", default_value="2", description="1..3"),
        DeclareLaunchArgument("seed", default_value="0"),
        DeclareLaunchArgument("smoke", default_value="0.0", description="0..1 haze"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="simulated clock"),
        OpaqueFunction(function=_sim),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(share, "launch", "segmentation.launch.py")),
            launch_arguments={
                "model": LaunchConfiguration("model"),
                "backend": LaunchConfiguration("backend"),
                "image_topic": "/camera/image_raw",
                "camera_info_topic": "/camera/camera_info",
                "use_sim_time": LaunchConfiguration("use_sim_time"),
            }.items(),
        ),
    ]
    return LaunchDescription([refuse_unknown_arguments(entities), *entities])
