"""Pairs left and right camera frames by header stamp, for the stereo mode of the node.

Why a class of its own: the two image topics arrive on separate callbacks, in any order and
with drops, and the node must turn them into pairs without ROS message filters (so the rule
is testable without ROS and the same in the node and the bag tools). Stamps are integers in
nanoseconds.

Rules:

* a frame pairs with the other side's pending frame of the same stamp, or, with
  ``tolerance_ns > 0`` (drivers that do not stamp both eyes with one trigger time), the pending
  frame whose stamp is nearest within the tolerance;
* newest pair wins: once a pair completes, every pending frame not newer than it (on either
  side) is dropped and counted as unpaired, and a frame that arrives later with a stamp not
  newer than its side's last paired frame is dropped on arrival, so pairs come out in stamp
  order and a late frame cannot resurrect an old instant;
* stale: a frame older than ``max_age_ns`` relative to the newest stamp seen on either side is
  dropped (pending or on arrival) and counted as stale, so a side that stops publishing does
  not keep the other side's frames forever;
* bounded: at most ``max_pending`` frames wait per side; the oldest beyond that is dropped as
  unpaired.

Thread-safe: both callbacks may run on different executor threads.
"""

from __future__ import annotations

import threading
from typing import Any, Generic, NamedTuple, TypeVar

T = TypeVar("T")

LEFT, RIGHT = 0, 1


class StereoPair(NamedTuple):
    """A completed pair; ``stamp`` is the left frame's stamp (ns). Unpacks as
    ``stamp, left, right``. (Not generic: generic NamedTuples need Python 3.11.)"""

    stamp: int
    left: Any
    right: Any


class StereoPairer(Generic[T]):
    """Matches left/right frames by stamp (module docstring). ``add_*`` return a pair or None."""

    def __init__(self, tolerance_ns: int = 0, max_age_ns: int = 1_000_000_000, max_pending: int = 8) -> None:
        if tolerance_ns < 0 or max_age_ns <= 0 or max_pending < 1:
            raise ValueError(
                f"need tolerance_ns >= 0, max_age_ns > 0, max_pending >= 1; got {tolerance_ns}, "
                f"{max_age_ns}, {max_pending}"
            )
        self.tolerance_ns = int(tolerance_ns)
        self.max_age_ns = int(max_age_ns)
        self.max_pending = int(max_pending)
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget pending frames and zero the counters."""
        with self._lock:
            self._pending: tuple[dict[int, T], dict[int, T]] = ({}, {})
            self._last_paired: list[int | None] = [None, None]
            self._newest: int | None = None
            self.pairs = 0
            self.unpaired_left = 0
            self.unpaired_right = 0
            self.stale = 0

    def add_left(self, stamp: int, item: T) -> StereoPair | None:
        return self._add(LEFT, int(stamp), item)

    def add_right(self, stamp: int, item: T) -> StereoPair | None:
        return self._add(RIGHT, int(stamp), item)

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {
                "pairs": self.pairs,
                "unpaired_left": self.unpaired_left,
                "unpaired_right": self.unpaired_right,
                "stale": self.stale,
            }

    def pending(self) -> tuple[int, int]:
        """Numbers of frames waiting on the left and on the right."""
        with self._lock:
            return len(self._pending[LEFT]), len(self._pending[RIGHT])

    # ------------------------------------------------------------------ internals
    def _add(self, side: int, stamp: int, item: T) -> StereoPair | None:
        with self._lock:
            self._newest = stamp if self._newest is None else max(self._newest, stamp)
            self._expire()
            if stamp < self._newest - self.max_age_ns:
                self.stale += 1
                return None
            last = self._last_paired[side]
            if last is not None and stamp <= last:
                self._count_unpaired(side)
                return None
            partner = self._nearest(1 - side, stamp)
            if partner is None:
                self._wait(side, stamp, item)
                return None
            other = self._pending[1 - side].pop(partner)
            left_stamp, right_stamp = (stamp, partner) if side == LEFT else (partner, stamp)
            self._last_paired = [left_stamp, right_stamp]
            self._drop_not_newer(LEFT, left_stamp)
            self._drop_not_newer(RIGHT, right_stamp)
            self.pairs += 1
            left, right = (item, other) if side == LEFT else (other, item)
            return StereoPair(left_stamp, left, right)

    def _nearest(self, side: int, stamp: int) -> int | None:
        """The pending stamp of ``side`` nearest ``stamp`` within the tolerance (ties: older)."""
        best: int | None = None
        for candidate in self._pending[side]:
            dt = abs(candidate - stamp)
            if dt <= self.tolerance_ns and (best is None or (dt, candidate) < (abs(best - stamp), best)):
                best = candidate
        return best

    def _wait(self, side: int, stamp: int, item: T) -> None:
        pending = self._pending[side]
        if stamp in pending:  # a repeated stamp replaces the earlier frame
            self._count_unpaired(side)
        pending[stamp] = item
        while len(pending) > self.max_pending:
            del pending[min(pending)]
            self._count_unpaired(side)

    def _drop_not_newer(self, side: int, stamp: int) -> None:
        pending = self._pending[side]
        for old in [s for s in pending if s <= stamp]:
            del pending[old]
            self._count_unpaired(side)

    def _expire(self) -> None:
        assert self._newest is not None
        limit = self._newest - self.max_age_ns
        for pending in self._pending:
            for old in [s for s in pending if s < limit]:
                del pending[old]
                self.stale += 1

    def _count_unpaired(self, side: int) -> None:
        if side == LEFT:
            self.unpaired_left += 1
        else:
            self.unpaired_right += 1
