"""Simulated endoscope + segmentation node together: the demo graph (``cct-demo`` runs this file
and scores what it hears).

  ros2 launch cct_surgical_seg demo.launch.py [model:=...] [backend:=auto] [instruments:=2]
      [rate:=15] [width:=640] [height:=512] [seed:=0] [smoke:=0.0] [palette:=endoscope]
      [frames:=0] [wait_for_subscribers:=0] [min_subscribers:=1] [use_sim_time:=false] [stereo:=false]

``frames:=N`` stops the simulator after N frames (0 = endless); ``wait_for_subscribers:=S``
holds its first frame up to S seconds until ``min_subscribers`` nodes subscribe to the images.

With ``use_sim_time:=true`` the simulator publishes /clock and stamps frames in simulated time,
and the node runs on that clock (outputs and diagnostics in simulated time). The node itself
comes from segmentation.launch.py, so its parameters and YAML stay defined in one place; the
arguments of the included files are accepted here, any other fails the launch.

With ``stereo:=true`` the simulator publishes its rectified pair (``cct-sim --stereo``:
``/stereo/{left,right}/image_raw`` and ``camera_info``, truth under ``/stereo/gt/``) and the
node comes from stereo.launch.py on those topics, adding ``~/instrument_poses`` in metres; the
simulator then waits for subscribers on the left image.
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.conditions import IfCondition, UnlessCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from cct_surgical_seg.deploy.backends import KINDS
from cct_surgical_seg.ros.launch_arguments import PACKAGE, is_true, launch_values, refuse_unknown_arguments
from launch import LaunchDescription

SIM_ARGS = ("rate", "width", "height", "instruments", "seed", "smoke")
# stereo.launch.py argument -> the simulator's topic (cct-sim --stereo, already rectified)
STEREO_TOPICS = {
    "left_image_topic": "/stereo/left/image_raw",
    "left_camera_info_topic": "/stereo/left/camera_info",
    "right_image_topic": "/stereo/right/image_raw",
    "right_camera_info_topic": "/stereo/right/camera_info",
}


def _sim(context, *args, **kwargs):
    value = launch_values(context)
    argv = []
    for name in SIM_ARGS:
        argv += [f"--{name}", value(name)]
    argv += ["--fps", value("rate")]
    if is_true(value("use_sim_time")):
        argv.append("--clock")
    if is_true(value("stereo")):
        argv.append("--stereo")
    argv += ["--palette", value("palette")]
    if int(value("frames")) > 0:
        argv += ["--frames", value("frames")]
    if float(value("wait_for_subscribers")) > 0:
        argv += ["--wait-for-subscribers", value("wait_for_subscribers")]
        argv += ["--min-subscribers", value("min_subscribers")]
    return [Node(package=PACKAGE, executable="cct-sim", name="cct_sim", arguments=argv, output="screen")]


def _node(share: str) -> list[IncludeLaunchDescription]:
    """The segmentation node: segmentation.launch.py on the mono topics, or with ``stereo``
    stereo.launch.py on the simulator's pair; model, backend and clock from this launch."""
    common = {
        "model": LaunchConfiguration("model"),
        "backend": LaunchConfiguration("backend"),
        "use_sim_time": LaunchConfiguration("use_sim_time"),
    }
    mono = {"image_topic": "/camera/image_raw", "camera_info_topic": "/camera/camera_info"}
    stereo = LaunchConfiguration("stereo")

    def include(name: str, topics: dict[str, str], condition) -> IncludeLaunchDescription:
        return IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(share, "launch", name)),
            launch_arguments={**common, **topics}.items(),
            condition=condition,
        )

    return [
        include("segmentation.launch.py", mono, UnlessCondition(stereo)),
        include("stereo.launch.py", STEREO_TOPICS, IfCondition(stereo)),
    ]


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
        DeclareLaunchArgument(
            "stereo",
            default_value="false",
            choices=["true", "false"],
            description="the simulator's stereo pair and the node in stereo mode (3D poses in metres)",
        ),
        OpaqueFunction(function=_sim),
        *_node(share),
    ]
    return LaunchDescription([refuse_unknown_arguments(entities), *entities])
