"""Simulated endoscope + segmentation node together: the demo graph (``cct-demo`` runs this file
and scores what it hears).

  ros2 launch cct_surgical_seg demo.launch.py [model:=...] [backend:=auto] [instruments:=2]
      [rate:=15] [width:=640] [height:=512] [seed:=0] [smoke:=0.0] [palette:=endoscope]
      [frames:=0] [wait_for_subscribers:=0] [min_subscribers:=1] [use_sim_time:=false]

``frames:=N`` stops the simulator after N frames (0 = endless); ``wait_for_subscribers:=S``
holds its first frame up to S seconds until ``min_subscribers`` nodes subscribe to the images.

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

from cct_surgical_seg.deploy.backends import KINDS
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
    argv += ["--palette", value("palette")]
    if int(value("frames")) > 0:
        argv += ["--frames", value("frames")]
    if float(value("wait_for_subscribers")) > 0:
        argv += ["--wait-for-subscribers", value("wait_for_subscribers")]
        argv += ["--min-subscribers", value("min_subscribers")]
    return [Node(package=PACKAGE, executable="cct-sim", name="cct_sim", arguments=argv, output="screen")]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    shipped = os.path.join(share, "models", "cct_demo.onnx")
    entities = [
        DeclareLaunchArgument("model", default_value=shipped, description="ONNX model for the node"),
        DeclareLaunchArgument(
            "backend",
            default_value="auto",
            choices=list(KINDS),
            description="inference backend",
        ),
        DeclareLaunchArgument("rate", default_value="15.0", description="simulator frames per second"),
        DeclareLaunchArgument("width", default_value="640"),
        DeclareLaunchArgument("height", default_value="512"),
        DeclareLaunchArgument("instruments", default_value="2", description="1..3"),
        DeclareLaunchArgument("seed", default_value="0"),
        DeclareLaunchArgument("smoke", default_value="0.0", description="0..1 haze"),
        DeclareLaunchArgument(
            "palette", default_value="endoscope", description="scene colours ('rule': the colour-rule model)"
        ),
        DeclareLaunchArgument("frames", default_value="0", description="frames to send (0 = endless)"),
        DeclareLaunchArgument(
            "wait_for_subscribers", default_value="0", description="seconds to wait for image subscribers"
        ),
        DeclareLaunchArgument("min_subscribers", default_value="1", description="see wait_for_subscribers"),
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
