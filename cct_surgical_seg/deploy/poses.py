"""Instrument poses from a class mask: regions, shaft axis, tip, entry point, and track ids.

Geometry conventions (docs/design.md): pixel coordinates with x right, y down and the origin at
the top-left pixel's centre, so pixel ``(row, col)`` sits at ``(x=col, y=row)``.

Per region:
* region = 8-connected component of instrument pixels. By default every non-background class
  counts together (``merge_classes=True``), so a shaft and its jaws form one instrument; its
  ``class_id`` is the majority class. Two instruments whose masks touch merge into one region:
  the mask alone cannot separate them.
* axis = first principal component of the pixel coordinates (second-order image moments).
* orientation: instruments enter the view from outside, so the axis points away from the image
  border the region touches most (entry side). A region that touches no border (shaft occluded,
  tool fully in view) is oriented from the end farther from the image centre towards the end
  nearer to it, because tools reach in towards the operating site, which the endoscope centres.
* tip / entry = the points on the axis line at the largest / smallest projection of the
  region's pixels, so ``entry``, ``centroid`` and ``tip`` are collinear and the tip sits at the
  centre of the far end of a straight shaft.
* score = mean confidence (max class probability) over the region.

Tracking matches regions to tracks greedily by centroid distance (smallest first, within
``max_match_distance_px``); unmatched tracks survive ``max_missed_frames`` frames before expiry,
so a tool that flickers out for a frame keeps its id. Greedy is Hungarian-equivalent for the
few, well-separated instruments of an endoscope view and needs no SciPy.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

Point = tuple[float, float]


@dataclass(frozen=True)
class PoseParams:
    """Knobs of region extraction and tracking (ROS parameters map onto these one-to-one)."""

    #: class ids that are instrument; None = every class except 0 (background).
    instrument_classes: tuple[int, ...] | None = None
    #: True: all instrument classes form one region; False: regions per class.
    merge_classes: bool = True
    #: regions smaller than this (pixels, at the mask's resolution) are ignored as noise.
    min_area_px: int = 200
    #: a region farther than this from a track's last centroid starts a new track.
    max_match_distance_px: float = 80.0
    #: a track unmatched for more than this many consecutive frames is dropped.
    max_missed_frames: int = 5

    def __post_init__(self) -> None:
        if self.min_area_px < 1 or self.max_match_distance_px <= 0 or self.max_missed_frames < 0:
            raise ValueError(f"invalid pose parameters: {self}")
        if self.instrument_classes is not None and 0 in self.instrument_classes:
            raise ValueError("class 0 is background and cannot be an instrument class")


@dataclass(frozen=True)
class Instrument:
    """One instrument in one frame. ``track_id`` is -1 until a tracker assigns one."""

    track_id: int
    class_id: int
    area_px: int
    centroid: Point
    axis: Point  # unit vector (dx, dy) from the entry side towards the tip
    tip: Point
    entry: Point
    bbox: tuple[int, int, int, int]  # x, y, w, h
    score: float

    def angle_deg(self) -> float:
        """Axis direction in image coordinates (0 = +x, 90 = +y i.e. downwards)."""
        return float(np.degrees(np.arctan2(self.axis[1], self.axis[0])))

    def to_dict(self) -> dict[str, object]:
        return {
            "track_id": self.track_id,
            "class_id": self.class_id,
            "area_px": self.area_px,
            "centroid": list(self.centroid),
            "axis": list(self.axis),
            "tip": list(self.tip),
            "entry": list(self.entry),
            "bbox": list(self.bbox),
            "score": self.score,
        }


def _border_contact(region: np.ndarray, x: int, y: int, width: int, height: int) -> Point | None:
    """Mean point of the region's pixels on the image border it touches most (None if none).

    ``region`` is the 0/1 crop of the region's bounding box at ``(x, y)``; only the crop edges
    that lie on the image border can hold border pixels, so four 1-D slices answer it.
    """
    h, w = region.shape
    sides = []  # (pixels on that border, their mean point), in the order left, right, top, bottom
    for on_border, line, fixed, along_offset, vertical in (
        (x == 0, region[:, 0], 0.0, y, True),
        (x + w == width, region[:, w - 1], float(width - 1), y, True),
        (y == 0, region[0, :], 0.0, x, False),
        (y + h == height, region[h - 1, :], float(height - 1), x, False),
    ):
        idx = np.flatnonzero(line) if on_border else np.empty(0, np.intp)
        along = float(idx.mean()) + along_offset if idx.size else 0.0
        sides.append((idx.size, (fixed, along) if vertical else (along, fixed)))
    count, point = max(sides, key=lambda side: side[0])  # first of equals, like argmax
    return point if count else None


def _region_pose(
    region: np.ndarray, x: int, y: int, width: int, height: int
) -> tuple[Point, Point, Point, Point]:
    """``(centroid, axis, tip, entry)`` of the region given as its 0/1 bounding-box crop.

    Why moments and contours: centroid and covariance come from the region's image moments, and
    the largest / smallest projection of the region's pixels onto the axis (tip, entry) is always
    reached on its outer contour, whose straight runs OpenCV compresses to their end points. So
    the cost grows with the outline, not the area, and a frame-filling region costs about a
    tenth of per-pixel NumPy, with the same results.
    """
    m = cv2.moments(region, binaryImage=True)
    centroid = np.array([m["m10"] / m["m00"] + x, m["m01"] / m["m00"] + y])
    cov = np.array([[m["mu20"], m["mu11"]], [m["mu11"], m["mu02"]]]) / m["m00"]
    _, vecs = np.linalg.eigh(cov)
    axis = vecs[:, -1]  # eigenvector of the largest eigenvalue
    contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x, y))
    outline = np.concatenate(contours).reshape(-1, 2).astype(np.float64) - centroid
    contact = _border_contact(region, x, y, width, height)
    if contact is not None:
        # the entry side must project negatively onto an axis that points to the tip
        if float(np.dot(np.asarray(contact) - centroid, axis)) > 0:
            axis = -axis
    else:
        centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
        proj = outline @ axis
        end_pos, end_neg = centroid + axis * proj.max(), centroid + axis * proj.min()
        if np.linalg.norm(end_pos - centre) > np.linalg.norm(end_neg - centre):
            axis = -axis
    proj = outline @ axis
    tip = centroid + axis * proj.max()
    entry = centroid + axis * proj.min()
    as_point = lambda v: (float(v[0]), float(v[1]))  # noqa: E731
    return as_point(centroid), as_point(axis / np.linalg.norm(axis)), as_point(tip), as_point(entry)


def extract_instruments(
    mask: np.ndarray, confidence: np.ndarray | None = None, params: PoseParams | None = None
) -> list[Instrument]:
    """Instruments (untracked, ``track_id=-1``) in a uint8 class-id mask, largest first."""
    params = params or PoseParams()
    if mask.ndim != 2:
        raise ValueError(f"mask must be HxW class ids, got shape {mask.shape}")
    if mask.dtype != np.uint8:  # OpenCV's histogram below counts uint8 class ids
        if mask.size and (mask.min() < 0 or mask.max() > 255):
            raise ValueError(f"class ids must lie in 0..255, got {mask.min()}..{mask.max()}")
        mask = mask.astype(np.uint8)
    height, width = mask.shape
    candidate = mask > 0 if params.instrument_classes is None else np.isin(mask, params.instrument_classes)
    class_groups = [candidate] if params.merge_classes else [mask == c for c in np.unique(mask[candidate])]

    found: list[Instrument] = []
    for group in class_groups:
        count, labels, stats, _ = cv2.connectedComponentsWithStats(group.astype(np.uint8), connectivity=8)
        for label in range(1, count):
            area = int(stats[label, cv2.CC_STAT_AREA])
            if area < params.min_area_px:
                continue
            x, y, w, h = (
                int(stats[label, k])
                for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP, cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT)
            )
            # work on the bounding box only: cost per region ~ its box, not the whole frame
            region = (labels[y : y + h, x : x + w] == label).view(np.uint8)
            class_hist = cv2.calcHist([mask[y : y + h, x : x + w]], [0], region, [256], [0, 256])
            class_id = int(class_hist.argmax())
            centroid, axis, tip, entry = _region_pose(region, x, y, width, height)
            score = (
                float(cv2.mean(confidence[y : y + h, x : x + w], mask=region)[0])
                if confidence is not None
                else 1.0
            )
            found.append(Instrument(-1, class_id, area, centroid, axis, tip, entry, (x, y, w, h), score))
    found.sort(key=lambda inst: inst.area_px, reverse=True)
    return found


@dataclass
class _Track:
    track_id: int
    centroid: Point
    missed: int = 0


@dataclass
class InstrumentTracker:
    """Keeps instrument identities across frames (see the module docstring for the rules)."""

    params: PoseParams = field(default_factory=PoseParams)
    _tracks: list[_Track] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def reset(self) -> None:
        """Forget all tracks (e.g. after a camera switch); ids keep counting up, never reused."""
        self._tracks.clear()

    def update(self, instruments: Sequence[Instrument]) -> list[Instrument]:
        """Return ``instruments`` with ``track_id`` set; advance every track's missed count."""
        pairs = sorted(
            (float(np.hypot(inst.centroid[0] - tr.centroid[0], inst.centroid[1] - tr.centroid[1])), i, t)
            for i, inst in enumerate(instruments)
            for t, tr in enumerate(self._tracks)
        )
        assigned: dict[int, int] = {}
        used_tracks: set[int] = set()
        for dist, i, t in pairs:
            if dist > self.params.max_match_distance_px:
                break
            if i in assigned or t in used_tracks:
                continue
            assigned[i] = t
            used_tracks.add(t)
        out: list[Instrument] = []
        for i, inst in enumerate(instruments):
            if i in assigned:
                track = self._tracks[assigned[i]]
                track.centroid, track.missed = inst.centroid, 0
            else:
                track = _Track(next(self._ids), inst.centroid)
                self._tracks.append(track)
                used_tracks.add(len(self._tracks) - 1)
            out.append(replace(inst, track_id=track.track_id))
        for t, track in enumerate(self._tracks):
            if t not in used_tracks:
                track.missed += 1
        self._tracks = [tr for tr in self._tracks if tr.missed <= self.params.max_missed_frames]
        return out
