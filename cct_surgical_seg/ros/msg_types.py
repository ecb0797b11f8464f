"""rclpy's message classes behind :class:`~cct_surgical_seg.messages.types.MessageTypes`."""

from __future__ import annotations

from functools import cache
from typing import Any

from rosidl_runtime_py.utilities import get_message


@cache
def _message_class(name: str) -> Any:
    return get_message(name)


class RclpyTypes:
    """Messages of the installed ROS interface packages (what the node publishes)."""

    def new(self, name: str, /, **fields: Any) -> Any:
        return _message_class(name)(**fields)

    def has(self, name: str) -> bool:
        try:
            _message_class(name)
        except (AttributeError, ModuleNotFoundError, ValueError):
            return False
        return True


RCLPY_TYPES = RclpyTypes()
