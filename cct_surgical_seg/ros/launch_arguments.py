"""Launch files: the segmentation node's shared launch arguments and Node action, and the refusal
of ``name:=value`` arguments that no launch file of the call declares.

segmentation.launch.py (mono) and stereo.launch.py start the same node with the same params
file, overrides and process options; :func:`node_arguments` declares those once and
:func:`segmentation_node` builds the Node from them, so each launch file holds only its own
topics and parameters. An empty override argument (``model``, ``backend``, ``transport`` ...)
means "keep the params file's value", which needs the argument's value before the parameter
list is built: :func:`node_launch_description` calls the launch file's node builder (which
uses :func:`segmentation_node`) from an ``OpaqueFunction``.
Log colours: ``RCUTILS_COLORIZED_OUTPUT`` is 0 for the node unless set, so launch's log files
hold no ANSI escape codes (``emulate_tty`` keeps the output line-buffered).

Why the refusal: ``ros2 launch`` hands every ``name:=value`` to the launch file, and launch
silently ignores the ones nothing declares, so a misspelt or unsupported argument looks accepted
while it does nothing. :func:`refuse_unknown_arguments` compares the command line's arguments
with what the launch description declares (includes too) and fails the launch with the list of
valid names. It checks once per launch: the outermost of the package's launch files checks for
itself and what it includes, so a file that is included skips the check.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from cct_surgical_seg.deploy.backends import KINDS
from launch import LaunchContext, LaunchDescription

PACKAGE = "cct_surgical_seg"
EXECUTABLE = "segmentation_node"
NODE_NAME = "segmentation_node"
#: launch argument -> node parameter, for both node launch files; an empty argument leaves the
#: params file's value
OVERRIDES = {"model": "model_path", "backend": "backend", "transport": "transport"}
_CHECKED = "cct_surgical_seg_launch_arguments_checked"
#: arguments that ``ros2 launch`` options (--launch-prefix ...) add to the command line
ROS2_LAUNCH_ARGUMENTS = frozenset({"launch-prefix", "launch-prefix-filter"})

#: name -> the launch argument's value (what :func:`launch_values` returns)
Values = Callable[[str], str]


def is_true(text: str) -> bool:
    """A boolean launch argument's value: 1, true, yes or on (any case) is true."""
    return text.strip().lower() in ("1", "true", "yes", "on")


def launch_values(context: LaunchContext) -> Values:
    """name -> the value of that launch argument in ``context``."""
    return lambda name: LaunchConfiguration(name).perform(context)


def given_overrides(value: Values, overrides: Mapping[str, str]) -> dict[str, object]:
    """parameter -> value for each argument of ``overrides`` (argument -> parameter) that is not
    empty; an empty one leaves the params file's value."""
    return {param: value(arg) for arg, param in overrides.items() if value(arg)}


def node_arguments(
    params_description: str, transport_description: str, own: Sequence[DeclareLaunchArgument]
) -> list[DeclareLaunchArgument]:
    """The node's launch arguments in ``--show-args`` order: the params file (described by
    ``params_description``) and the :data:`OVERRIDES`, then ``own`` (the launch file's topics and
    parameters), then namespace, clock, lifecycle start, log level and respawn."""
    share = get_package_share_directory(PACKAGE)
    return [
        DeclareLaunchArgument(
            "params_file",
            default_value=os.path.join(share, "config", "segmentation.yaml"),
            description=params_description,
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
            description=transport_description,
        ),
        *own,
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


def segmentation_node(value: Values, remappings: Mapping[str, str], overrides: Mapping[str, object]) -> Node:
    """The segmentation node from the arguments of :func:`node_arguments`: the params file, then
    the non-empty :data:`OVERRIDES`, the clock and autostart, then ``overrides`` (the launch
    file's own parameters); ``remappings``: launch argument -> the node's relative input topic
    it remaps."""
    parameters: dict[str, object] = {
        **given_overrides(value, OVERRIDES),
        "use_sim_time": is_true(value("use_sim_time")),
        "autostart": is_true(value("autostart")),
        **overrides,
    }
    return Node(
        package=PACKAGE,
        executable=EXECUTABLE,
        name=NODE_NAME,
        namespace=value("namespace"),
        parameters=[value("params_file"), parameters],
        remappings=[(topic, value(arg)) for arg, topic in remappings.items()],
        arguments=["--ros-args", "--log-level", value("log_level")],
        output="screen",
        emulate_tty=True,
        additional_env={"RCUTILS_COLORIZED_OUTPUT": os.environ.get("RCUTILS_COLORIZED_OUTPUT", "0")},
        respawn=is_true(value("respawn")),
        respawn_delay=float(value("respawn_delay")),
    )


def node_launch_description(
    params_description: str,
    transport_description: str,
    own: Sequence[DeclareLaunchArgument],
    node: Callable[[Values], Node],
) -> LaunchDescription:
    """A node launch file's description: the check of undeclared arguments, the
    :func:`node_arguments` (``own`` among them), then ``node(values)`` once they are known."""
    entities = node_arguments(params_description, transport_description, own)
    start = OpaqueFunction(function=lambda context, *args, **kwargs: [node(launch_values(context))])
    return LaunchDescription([refuse_unknown_arguments(entities), *entities, start])


# --- undeclared arguments ------------------------------------------------------------------------


class UnknownLaunchArgumentError(RuntimeError):
    """The command line names a launch argument that is not declared."""


def given_arguments(argv: Iterable[str]) -> list[str]:
    """Names of the ``name:=value`` launch arguments in ``argv``."""
    return [arg.split(":=", 1)[0] for arg in argv if ":=" in arg and not arg.startswith("-")]


def unknown_arguments(argv: Iterable[str], declared: Iterable[str]) -> list[str]:
    return sorted(set(given_arguments(argv)) - set(declared) - ROS2_LAUNCH_ARGUMENTS)


def refuse_unknown_arguments(entities: list) -> OpaqueFunction:
    """An action (put it first) that fails the launch on an undeclared command-line argument."""
    declared = sorted({arg.name for arg in LaunchDescription(entities).get_launch_arguments()})

    def check(context: LaunchContext) -> list:
        if context.get_locals_as_dict().get(_CHECKED):
            return []  # an including launch file checked already
        context.extend_globals({_CHECKED: True})
        unknown = unknown_arguments(context.argv, declared)
        if unknown:
            raise UnknownLaunchArgumentError(
                f"unknown launch argument(s): {', '.join(unknown)}; declared: {', '.join(declared)} "
                "(ros2 launch ... --show-args describes them)"
            )
        return []

    return OpaqueFunction(function=check)
