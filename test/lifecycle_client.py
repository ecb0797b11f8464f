"""Client side of a lifecycle node, for the launch tests: call a service, wait for ``active``.

Lives at the top of ``test/`` (on ``sys.path`` through ``test/conftest.py``) because the launch
tests of ``ros/`` and ``sim/`` both drive the node the same way.
"""

from __future__ import annotations

import time
from typing import Any


def call_service(node: Any, executor: Any, srv: Any, name: str, request: Any, timeout: float = 30.0) -> Any:
    """One service call from ``node``, spun on ``executor``; AssertionError when it goes unanswered."""
    client = node.create_client(srv, name)
    try:
        if not client.wait_for_service(timeout_sec=timeout):
            raise AssertionError(f"{name} not available after {timeout:.0f} s")
        future = client.call_async(request)
        executor.spin_until_future_complete(future, timeout_sec=timeout)
        if not future.done():
            raise AssertionError(f"{name} did not answer within {timeout:.0f} s")
        return future.result()
    finally:
        node.destroy_client(client)


def wait_until_active(node: Any, executor: Any, target: str, timeout: float = 60.0) -> None:
    """Poll ``<target>/get_state`` until the lifecycle node ``target`` reports ``active``."""
    from lifecycle_msgs.srv import GetState

    end = time.monotonic() + timeout
    label = ""
    while time.monotonic() < end:
        state = call_service(node, executor, GetState, f"{target}/get_state", GetState.Request())
        label = state.current_state.label
        if label == "active":
            return
        time.sleep(0.2)
    raise AssertionError(f"{target} is '{label}', not active, after {timeout:.0f} s")
