"""Launch files: refuse ``name:=value`` arguments that no launch file of the call declares.

Why: ``ros2 launch`` hands every ``name:=value`` to the launch file, and launch silently ignores
the ones nothing declares, so a misspelt or unsupported argument looks accepted while it does
nothing. :func:`refuse_unknown_arguments` compares the command line's arguments with what the
launch description declares (includes too) and fails the launch with the list of valid names.
It checks once per launch: the outermost of the package's launch files checks for itself and
what it includes, so a file that is included skips the check.
"""

from __future__ import annotations

from collections.abc import Iterable

from launch.actions import OpaqueFunction

from launch import LaunchContext, LaunchDescription

_CHECKED = "cct_surgical_seg_launch_arguments_checked"
#: arguments that ``ros2 launch`` options (--launch-prefix ...) add to the command line
ROS2_LAUNCH_ARGUMENTS = frozenset({"launch-prefix", "launch-prefix-filter"})


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
