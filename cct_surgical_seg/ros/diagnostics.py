"""``/diagnostics`` of the node: frame counters, latency windows, and the DiagnosticArray.

In stereo mode a "frame" is a left/right pair; :class:`PairStats` adds what only pairs have
(pairing outcomes, refused pairs by kind, instruments with and without a 3D pose, and the
stereo latency: first image of the pair received -> ``~/instrument_poses`` published, so it
includes the wait for the other eye).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from cct_surgical_seg.messages.camera import BAD_CAMERA_INFO_KINDS
from cct_surgical_seg.messages.images import BAD_INPUT_KINDS
from cct_surgical_seg.messages.stereo_results import STEREO_REFUSED_KINDS


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
                **latency_values("latency_ms", self._latency_ms),
            }
        return values


def latency_values(prefix: str, window: deque[float]) -> dict[str, float]:
    """``<prefix>_median``, ``_p95`` and ``_max`` of a latency window (0 when empty)."""
    lat = np.array(window) if window else np.zeros(1)
    return {
        f"{prefix}_median": float(np.median(lat)),
        f"{prefix}_p95": float(np.percentile(lat, 95)),
        f"{prefix}_max": float(lat.max()),
    }


class PairStats:
    """Stereo counters for /diagnostics: written by the worker (pairs) and the image callbacks
    (pairing, through the pairer's own counters), read by the diagnostics timer."""

    def __init__(self, window: int = 300) -> None:
        self._lock = threading.Lock()
        self.pairs_processed = 0
        self.refused: Counter[str] = Counter({k: 0 for k in STEREO_REFUSED_KINDS})
        self.pairing: Counter[str] = Counter()  # of pairers replaced at a reactivation
        self.instruments: Counter[str] = Counter()  # matched / unmatched / refined / coarse
        self._latency_ms: deque[float] = deque(maxlen=window)

    def refuse(self, kind: str) -> None:
        with self._lock:
            self.refused[kind] += 1

    def pair_done(self, latency_ms: float, instruments: dict[str, int]) -> None:
        """One pair published; ``instruments``: this pair's deploy.stereo.StereoStats counts."""
        with self._lock:
            self.pairs_processed += 1
            self._latency_ms.append(latency_ms)
            self.instruments.update(instruments)

    def retire_pairer(self, counters: dict[str, int], pending: tuple[int, int]) -> None:
        """Keep a replaced pairer's counts; its pending frames will never pair: unpaired."""
        with self._lock:
            self.pairing.update(counters)
            self.pairing.update({"unpaired_left": pending[0], "unpaired_right": pending[1]})

    def snapshot(self, pairer_counters: dict[str, int]) -> dict[str, Any]:
        """Stereo values; ``pairer_counters``: the current pairer's (added to the retired ones)."""
        with self._lock:
            pairing = Counter(self.pairing)
            pairing.update(pairer_counters)
            return {
                "stereo_pairs": pairing["pairs"],
                "stereo_pairs_processed": self.pairs_processed,
                "stereo_unpaired_left": pairing["unpaired_left"],
                "stereo_unpaired_right": pairing["unpaired_right"],
                "stereo_stale": pairing["stale"],
                "stereo_refused_total": sum(self.refused.values()),
                **{f"stereo_refused_{k}": v for k, v in sorted(self.refused.items())},
                **{f"stereo_instruments_{k}": self.instruments[k] for k in ("matched", "unmatched")},
                **latency_values("stereo_latency_ms", self._latency_ms),
            }


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
