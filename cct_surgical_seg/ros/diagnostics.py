"""``/diagnostics`` of the node: frame counters, a latency window, and the DiagnosticArray."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from cct_surgical_seg.messages.camera import BAD_CAMERA_INFO_KINDS
from cct_surgical_seg.messages.images import BAD_INPUT_KINDS


class FrameStats:
    """Counters and a latency window for /diagnostics (written by the worker, read by a timer)."""

    def __init__(self, window: int = 300) -> None:
        self._lock = threading.Lock()
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.errors = 0
        self.bad_input: Counter[str] = Counter({k: 0 for k in BAD_INPUT_KINDS})
        self.camera_infos = 0
        self.bad_camera_info: Counter[str] = Counter({k: 0 for k in BAD_CAMERA_INFO_KINDS})
        self._latency_ms: deque[float] = deque(maxlen=window)
        self._done_times: deque[float] = deque(maxlen=window)

    def frame_received(self, dropped_one: bool) -> None:
        with self._lock:
            self.received += 1
            self.dropped += int(dropped_one)

    def frame_done(self, latency_ms: float) -> None:
        with self._lock:
            self.processed += 1
            self._latency_ms.append(latency_ms)
            self._done_times.append(time.monotonic())

    def bad(self, kind: str) -> None:
        with self._lock:
            self.bad_input[kind] += 1

    def error(self) -> None:
        with self._lock:
            self.errors += 1

    def camera_info(self, refused_kind: str | None) -> None:
        with self._lock:
            self.camera_infos += 1
            if refused_kind is not None:
                self.bad_camera_info[refused_kind] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            lat = np.array(self._latency_ms) if self._latency_ms else np.zeros(1)
            times = list(self._done_times)
            rate = (
                (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
            )
            if times and time.monotonic() - times[-1] > 2.0:
                rate = 0.0
            values: dict[str, Any] = {
                "frames_received": self.received,
                "frames_processed": self.processed,
                "frames_dropped": self.dropped,
                "processing_errors": self.errors,
                "bad_input_total": sum(self.bad_input.values()),
                **{f"bad_input_{k}": v for k, v in sorted(self.bad_input.items())},
                "camera_info_received": self.camera_infos,
                "bad_camera_info_total": sum(self.bad_camera_info.values()),
                **{f"bad_camera_info_{k}": v for k, v in sorted(self.bad_camera_info.items())},
                "rate_hz": float(rate),
                "latency_ms_median": float(np.median(lat)),
                "latency_ms_p95": float(np.percentile(lat, 95)),
                "latency_ms_max": float(lat.max()),
            }
        return values


def diagnostics(
    stamp, name: str, hardware_id: str, level: int, message: str, values: dict[str, object]
) -> DiagnosticArray:
    """One DiagnosticStatus; values are stringified (floats with 3 decimals)."""
    status = DiagnosticStatus(level=bytes([level]), name=name, message=message, hardware_id=hardware_id)
    status.values = [
        KeyValue(key=k, value=f"{v:.3f}" if isinstance(v, float) else str(v)) for k, v in values.items()
    ]
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = [status]
    return msg
