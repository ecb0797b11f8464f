"""One call per frame: pre-processing -> backend -> post-processing -> poses.

All image maths between a camera frame and a backend lives here, so the ROS node, ``cct-infer``,
the bag tools and the benchmark cannot disagree on it.

* Fixed-size models: the frame is **resized** (stretched) to the network size, not letterboxed.
  Endoscope streams keep one aspect ratio and the model is exported at that ratio, so letterbox
  bars would only waste network pixels; a mismatched ratio costs some shape distortion, which
  the resize back undoes. Shrinking uses area averaging although training resizes bilinearly
  and bilinear is several times faster: on the EndoVis rigid val video (640x480 -> 256x320)
  bilinear costs 0.3-4.4 points of binary Dice across the accuracy runs; at exactly half size
  (robotic, 640x512) the two are identical.
* Dynamic-size models: the frame is **padded** (edge-replicated, bottom/right) to the next
  multiple of 32, the encoder's total stride, and the output cropped back: no resampling at all,
  so mask pixels line up exactly with the frame.
* Back to the frame: the probabilities (not the argmax) are resized bilinearly to the frame size,
  then ``mask = argmax`` and ``confidence = max probability``; this gives smoother, more faithful
  boundaries than upsampling a label image with nearest neighbour.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from cct_surgical_seg.deploy.backends import create_backend
from cct_surgical_seg.deploy.backends.base import Backend
from cct_surgical_seg.deploy.errors import ImageFormatError
from cct_surgical_seg.deploy.poses import Instrument, InstrumentTracker, PoseParams, extract_instruments

STRIDE = 32


@dataclass
class FrameResult:
    """Everything one frame yields; arrays are at the input frame's resolution."""

    mask: np.ndarray  # uint8 HxW class ids
    confidence: np.ndarray  # float32 HxW, max class probability
    instruments: list[Instrument]
    disagreement: float | None
    timings_ms: dict[str, float] = field(default_factory=dict)  # pre, net, post, poses, total
    frame_confidence: float = 1.0  # see frame_confidence()


def to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 grayscale (HxW, HxWx1), RGB (HxWx3) or RGBA (HxWx4) -> contiguous uint8 RGB HxWx3.

    Raises ``ImageFormatError`` for non-uint8, empty or otherwise shaped images, because a float
    image in 0..1 silently pushed through would give a black frame and confident garbage.
    """
    if not isinstance(image, np.ndarray):
        raise ImageFormatError(f"expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageFormatError(f"expected uint8 pixels (0..255), got {image.dtype}; convert before inference")
    if image.size == 0 or image.ndim < 2 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageFormatError(f"empty image, shape {image.shape}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2RGB)
    raise ImageFormatError(f"expected HxW, HxWx1, HxWx3 or HxWx4, got shape {image.shape}")


def network_size(frame_hw: tuple[int, int], input_size: tuple[int, int] | None) -> tuple[int, int]:
    """The ``(H, W)`` the network runs at: the model's fixed size, else the frame padded up to x32."""
    if input_size is not None:
        return int(input_size[0]), int(input_size[1])
    h, w = frame_hw
    return -(-h // STRIDE) * STRIDE, -(-w // STRIDE) * STRIDE


def preprocess(rgb: np.ndarray, net_hw: tuple[int, int], pad: bool) -> np.ndarray:
    """uint8 RGB HxWx3 -> float32 1,3,H,W (0..255) at ``net_hw`` by resize or edge padding."""
    h, w = rgb.shape[:2]
    if pad:
        image = cv2.copyMakeBorder(rgb, 0, net_hw[0] - h, 0, net_hw[1] - w, cv2.BORDER_REPLICATE)
    elif (h, w) != tuple(net_hw):
        image = cv2.resize(
            rgb, (net_hw[1], net_hw[0]), interpolation=cv2.INTER_AREA if h > net_hw[0] else cv2.INTER_LINEAR
        )
    else:
        image = rgb
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)


#: a background pixel whose max probability is below this is "instrument-like" (p(instrument) > 0.2)
DOUBT_BELOW = 0.8


def frame_confidence(mask: np.ndarray, confidence: np.ndarray) -> float:
    """How decisively the frame is segmented: instrument pixels / instrument-like pixels, in [0, 1].

    Instrument-like pixels are the predicted instrument pixels plus the background pixels whose
    instrument probability exceeds 0.2 (max probability below ``DOUBT_BELOW``). A frame whose
    instruments are partly missed leaves them as doubtful background and scores low, whatever the
    size of what was found; so does a frame with a wide band of doubt around thin instruments.
    A frame with nothing instrument-like anywhere scores 1. Mean max-probability and the
    auxiliary heads' disagreement grow with the predicted area instead, and rank frames the
    wrong way on unseen video (docs/accuracy.md).
    """
    committed = mask > 0
    doubtful = ~committed & (confidence < DOUBT_BELOW)
    found = int(np.count_nonzero(committed))
    like = found + int(np.count_nonzero(doubtful))
    return 1.0 if like == 0 else found / like


def postprocess(probs: np.ndarray, frame_hw: tuple[int, int], pad: bool) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``C,h,w`` probabilities -> (uint8 mask, float32 confidence) at ``frame_hw``.

    Works plane by plane: resizing each contiguous class plane and a running max/argmax is
    several times faster than resizing an interleaved HxWxC array and ``argmax(axis=2)``, with
    identical results (ties go to the lower class id).
    """
    h, w = frame_hw
    if pad:
        planes = [plane[:h, :w] for plane in probs]
    elif probs.shape[1:] != (h, w):
        planes = [cv2.resize(plane, (w, h), interpolation=cv2.INTER_LINEAR) for plane in probs]
    else:
        planes = list(probs)
    confidence = np.array(planes[0], dtype=np.float32)
    mask = np.zeros((h, w), np.uint8)
    for class_id, plane in enumerate(planes[1:], start=1):
        np.putmask(mask, plane > confidence, class_id)
        np.maximum(confidence, plane, out=confidence)
    return mask, confidence


class SegmentationPipeline:
    """Backend + pre/post + poses for one camera stream (keeps its instrument tracks).

    ``track=False`` leaves ``track_id`` at -1 (useful for shuffled image folders).
    """

    def __init__(
        self, backend: Backend, pose_params: PoseParams | None = None, *, track: bool = True
    ) -> None:
        self.backend = backend
        self.pose_params = pose_params or PoseParams()
        self.tracker = InstrumentTracker(self.pose_params) if track else None

    @property
    def info(self):
        return self.backend.info

    def reset_tracking(self) -> None:
        if self.tracker is not None:
            self.tracker.reset()

    def __call__(self, rgb: np.ndarray) -> FrameResult:
        t0 = time.perf_counter()
        view = self._prepare(rgb)
        t1 = time.perf_counter()
        out = self.backend.infer(view.batch)
        t2 = time.perf_counter()
        return self._finish(view, out.probs[0], out.disagreement, 0, self.tracker, (t0, t1, t2))

    def segment_views(self, frames: Sequence[np.ndarray]) -> list[FrameResult]:
        """Segment several views of one instant (a stereo pair: left, right) in one network call.

        All views go through the backend as one batch when their network sizes agree and the
        backend takes that batch (``max_views_per_call``); otherwise in as few calls as it takes.
        Each result equals what ``self(frame)`` gives for that view, except tracking: the first
        view uses this pipeline's tracker, the other views are untracked (``track_id`` -1), so
        the left stream keeps its track ids. Timings: ``pre``, ``post``, ``poses`` are the
        view's own; ``net`` is the whole call that ran the view (shared by the views in it), and
        ``total`` = pre + net + post + poses of the view.
        """
        views = [self._prepare(frame) for frame in frames]
        results: list[FrameResult | None] = [None] * len(views)
        for group in self._batches(views):
            t1 = time.perf_counter()
            out = self.backend.infer(np.concatenate([views[i].batch for i in group]))
            t2 = time.perf_counter()
            for row, i in enumerate(group):
                t0 = t1 - views[i].pre_s
                tracker = self.tracker if i == 0 else None
                results[i] = self._finish(
                    views[i], out.probs[row], out.disagreement, row, tracker, (t0, t1, t2)
                )
        return [r for r in results if r is not None]

    def max_views_per_call(self) -> int | None:
        """The largest batch the backend takes (None = no limit known).

        cct-export models have a dynamic batch dimension, so ONNX Runtime and torch take any
        batch; a TensorRT engine takes up to its profile's ``max_batch`` (the ``max_batch``
        backend option, default 1: give 2 for stereo).
        """
        profile = getattr(self.backend, "profile", None)
        if profile is None:
            return None
        try:
            return max(1, int(profile[2][0]))
        except (TypeError, IndexError, ValueError):
            return 1

    def _batches(self, views: list[_View]) -> list[list[int]]:
        """View indices grouped into backend calls: same network input shape, at most the limit."""
        limit = self.max_views_per_call() or len(views)
        groups: list[list[int]] = []
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, view in enumerate(views):
            group = by_shape.get(view.batch.shape)
            if group is None or len(group) >= limit:
                group = by_shape[view.batch.shape] = []
                groups.append(group)
            group.append(i)
        return groups

    def _prepare(self, rgb: np.ndarray) -> _View:
        """Validate/convert one frame and make its 1,3,H,W network input."""
        t0 = time.perf_counter()
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            rgb = to_rgb(rgb)  # validates and converts gray/RGBA; raises ImageFormatError otherwise
        frame_hw = (int(rgb.shape[0]), int(rgb.shape[1]))
        if min(frame_hw) == 0:
            raise ImageFormatError(f"empty image, shape {rgb.shape}")
        pad = self.backend.info.input_size is None
        net_hw = network_size(frame_hw, self.backend.info.input_size)
        batch = preprocess(rgb, net_hw, pad)
        return _View(frame_hw, pad, batch, time.perf_counter() - t0)

    def _finish(
        self,
        view: _View,
        probs: np.ndarray,
        disagreement: np.ndarray | None,
        row: int,
        tracker: InstrumentTracker | None,
        times: tuple[float, float, float],
    ) -> FrameResult:
        """Probabilities of one view -> mask, confidence, instruments (tracked when given)."""
        t0, t1, t2 = times
        mask, confidence = postprocess(probs, view.frame_hw, view.pad)
        t3 = time.perf_counter()
        instruments = extract_instruments(mask, confidence, self.pose_params)
        if tracker is not None:
            instruments = tracker.update(instruments)
        t4 = time.perf_counter()
        timings = {
            "pre": (t1 - t0) * 1e3,
            "net": (t2 - t1) * 1e3,
            "post": (t3 - t2) * 1e3,
            "poses": (t4 - t3) * 1e3,
        }
        timings["total"] = sum(timings.values())
        score = None if disagreement is None else float(disagreement[row])
        return FrameResult(mask, confidence, instruments, score, timings, frame_confidence(mask, confidence))


@dataclass
class _View:
    """One frame ready for the network: its size, how it was fitted, the input, the prep time."""

    frame_hw: tuple[int, int]
    pad: bool
    batch: np.ndarray  # float32 1,3,H,W
    pre_s: float


@dataclass(frozen=True)
class PipelineSettings:
    """What :func:`build_pipeline` needs; the node, ``cct-bag`` and ``cct-infer`` fill it in."""

    model_path: str | os.PathLike[str]
    backend: str = "auto"  # one of deploy.backends.KINDS
    backend_options: Mapping[str, Any] = field(default_factory=dict)  # num_threads, device, precision
    min_instrument_area: int = PoseParams.min_area_px  # pixels
    track: bool = True  # False for unordered frames (image folders)


def build_pipeline(settings: PipelineSettings) -> SegmentationPipeline:
    """Load the model on its backend and wrap it; raises ``DeployError`` subclasses (one line) for
    a model or runtime that cannot be used."""
    backend = create_backend(settings.backend, settings.model_path, **dict(settings.backend_options))
    return SegmentationPipeline(
        backend, PoseParams(min_area_px=settings.min_instrument_area), track=settings.track
    )
