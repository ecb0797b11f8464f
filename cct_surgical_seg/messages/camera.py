"""sensor_msgs/CameraInfo -> the pinhole/distortion model the tip rays need, validated.

A CameraInfo is validated before use (:meth:`CameraModel.from_camera_info`): finite K, D, R, P,
positive focal lengths, and as many D coefficients as its ``distortion_model`` has; a refused
one raises :class:`CameraInfoError` with a ``kind`` (a diagnostics counter). :class:`CameraByStamp`
pairs frames with the CameraInfo of the same stamp, as the node and ``cct-bag`` both do.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

#: reasons a CameraInfo is refused; each one is a diagnostics counter
BAD_CAMERA_INFO_KINDS = ("uncalibrated", "non_finite", "focal", "distortion")

#: distortion_model -> accepted numbers of D coefficients ("" = pinhole: D empty or all zero)
DISTORTION_COEFFICIENTS = {"plumb_bob": (4, 5), "rational_polynomial": (8,), "equidistant": (4,)}


class CameraInfoError(ValueError):
    """A CameraInfo that cannot give rays; ``kind`` is one of :data:`BAD_CAMERA_INFO_KINDS`."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class CameraModel:
    """A validated sensor_msgs/CameraInfo: intrinsics for the tip rays, P for stereo."""

    K: np.ndarray  # 3x3
    D: np.ndarray  # distortion coefficients (may be empty)
    model: str  # distortion_model
    width: int
    height: int
    P: np.ndarray | None = None  # 3x4 projection of the rectified image (stereo: P[0, 3] = -fx * B)

    @classmethod
    def from_camera_info(cls, info) -> CameraModel:
        """The camera of ``info``, or :class:`CameraInfoError` saying why it cannot be used.

        Drivers publish uncalibrated infos (K all zero); those are refused as "uncalibrated".
        """
        K = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
        D = np.asarray(info.d, dtype=np.float64)
        arrays = {"K": K, "D": D, "R": np.asarray(info.r, np.float64), "P": np.asarray(info.p, np.float64)}
        bad = [name for name, values in arrays.items() if not np.isfinite(values).all()]
        if bad:
            raise CameraInfoError("non_finite", f"CameraInfo {'/'.join(bad)} holds NaN or infinity")
        if not K.any():
            raise CameraInfoError("uncalibrated", "CameraInfo is uncalibrated (K is all zero)")
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise CameraInfoError("focal", f"CameraInfo focal lengths fx={K[0, 0]}, fy={K[1, 1]} must be > 0")
        model = str(info.distortion_model)
        _check_distortion(model, D)
        P = arrays["P"].reshape(3, 4) if arrays["P"].size == 12 else None
        camera = cls(K=K, D=D, model=model, width=int(info.width), height=int(info.height), P=P)
        camera._check_rays()
        return camera

    def _check_rays(self) -> None:
        """Extreme (finite) coefficients can still overflow: probe the image corners and centre."""
        w = self.width if self.width > 0 else 2.0 * self.K[0, 2]
        h = self.height if self.height > 0 else 2.0 * self.K[1, 2]
        probe = np.array([[0, 0], [w, 0], [0, h], [w, h], [w / 2, h / 2]], dtype=np.float64)
        try:
            with np.errstate(all="ignore"):
                rays = self.rays(probe)
                finite = np.isfinite(probe).all() and np.isfinite(rays).all() and (rays[:, 2] > 0).all()
        except cv2.error as exc:  # OpenCV refuses the coefficients outright
            reason = f"OpenCV cannot undistort with this CameraInfo: {exc}"
            raise CameraInfoError("distortion", reason) from exc
        if not finite:
            raise CameraInfoError("non_finite", "CameraInfo gives non-finite rays inside the image")

    def rays(self, pixels: np.ndarray) -> np.ndarray:
        """Unit rays (N,3) in the optical frame for pixel coordinates (N,2)."""
        pts = np.asarray(pixels, dtype=np.float64).reshape(-1, 1, 2)
        if not (self.D.size and np.any(self.D)):
            norm = (pts.reshape(-1, 2) - self.K[:2, 2]) / np.diag(self.K)[:2]
        elif self.model == "equidistant":
            norm = cv2.fisheye.undistortPoints(pts, self.K, self.D).reshape(-1, 2)
        else:
            norm = cv2.undistortPoints(pts, self.K, self.D).reshape(-1, 2)
        rays = np.column_stack([norm, np.ones(len(norm))])
        length = np.hypot(np.hypot(rays[:, 0], rays[:, 1]), 1.0)  # no overflow for huge x, y
        return rays / length[:, None]


def _check_distortion(model: str, D: np.ndarray) -> None:
    if model == "":
        if np.any(D):
            raise CameraInfoError("distortion", "CameraInfo has D coefficients but no distortion_model")
        return
    lengths = DISTORTION_COEFFICIENTS.get(model)
    if lengths is None:
        raise CameraInfoError(
            "distortion",
            f"CameraInfo distortion_model '{model}' is not supported ({', '.join(DISTORTION_COEFFICIENTS)})",
        )
    if D.size not in lengths:
        raise CameraInfoError(
            "distortion",
            f"CameraInfo distortion_model '{model}' takes {' or '.join(map(str, lengths))} D coefficients, "
            f"got {D.size}",
        )


class CameraByStamp:
    """Valid cameras by header stamp (the newest ``keep``) and the last valid one.

    Written by the camera-info callback (executor thread), read by the worker: a frame uses the
    CameraInfo with its own stamp when one arrived, else the last valid one.
    """

    def __init__(self, keep: int = 32) -> None:
        self._lock = threading.Lock()
        self._by_stamp: OrderedDict[tuple[int, int], CameraModel] = OrderedDict()
        self._keep = keep
        self.last: CameraModel | None = None

    def add(self, stamp: Any, camera: CameraModel) -> None:
        with self._lock:
            self._by_stamp[(int(stamp.sec), int(stamp.nanosec))] = camera
            while len(self._by_stamp) > self._keep:
                self._by_stamp.popitem(last=False)
            self.last = camera

    def for_stamp(self, stamp: Any) -> CameraModel | None:
        with self._lock:
            return self._by_stamp.get((int(stamp.sec), int(stamp.nanosec)), self.last)

    def clear(self) -> None:
        with self._lock:
            self._by_stamp.clear()
            self.last = None
