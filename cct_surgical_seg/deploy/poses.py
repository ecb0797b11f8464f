"""Instrument poses from a class mask: regions, shaft axis, jaw tip, entry point, and track ids.

Geometry conventions (docs/design.md): pixel coordinates with x right, y down and the origin at
the top-left pixel's centre, so pixel ``(row, col)`` sits at ``(x=col, y=row)``.

Class roles (``PoseParams``): ``shaft_classes`` (default 1) are the straight shaft,
``tip_classes`` (default 2, "manipulator": wrist and jaws) are the distal parts, any other
instrument class only counts towards a region. A region with neither (a binary model, or a
model with other class ids) is treated as all shaft: the class-blind rules (far end of the
principal axis).

Per region (an 8-connected component of instrument pixels; with ``merge_classes=True`` every
instrument class counts together, so a shaft and its jaws form one region):

* entries = runs of the region's pixels along the image border (gaps of up to a few pixels
  bridged, and a gap across an image corner that is shorter in a straight line than
  ``_CORNER_GAP`` of the image's smaller side: a round field stop cuts the corner off, and a
  tool entering there touches both borders); a run of mostly jaw pixels is where the jaws
  leave the view, not an entry. The entry of a lone instrument is the run farthest from its
  jaws, or the longest without jaws.
* jaws at an entry: a tool's jaws lie at its distal end, never beside its own entry. A jaw
  component on the border whose centre lies nearer to an entry run's body pixels than half
  the region's reach from them, and which reaches less far from them than the body does, is
  body (a dark field-stop corner, or a shaft's edge, that a model calls jaws); jaws capping a
  short stub reach farther than its shaft and stay jaws.
* axis = first principal component of the shaft pixels when there are enough of them, they
  are elongated (standard deviations along / across >= 2) and they do not lie along the border
  they enter through (their extent along that axis mostly the border run's: a strip of shaft on
  the border under jaws that fill the view near the lens). Else the whole region's, when that
  is elongated and not along the border. Else (a short, wide stub entering the view) the
  direction from the entry to the region's centroid, so a stub points into the image instead of
  along the border.
* orientation: tools enter from outside the view, so the axis points away from the entry. A
  region touching no border points towards its jaws; without jaws, from the end farther from the
  image centre towards the nearer one (tools reach in towards the site the endoscope centres).
* entry point = the point of the axis line at the smallest projection of the region's outline.
* tip, with jaws: start = the shaft's distal end (the largest projection of the shaft's
  outline on the axis, less shaft specks under a tenth of its largest piece's box; the entry,
  or the shaft centroid, when the shaft gave no axis). Shaft pixels beyond the jaws' centroid
  along the axis are jaws called shaft (thin jaw tips often are): they join the jaws, and start
  moves back to where the jaws begin. The jaw outline points ahead of it (towards the jaw
  centroid) are the candidates, less those within ``_INTERFACE_PX`` of the shaft (where the
  jaws meet the shaft, such as the corner of a cap of jaws on the shaft's end) and those on the
  entry run (a wrist's rim on the border beside the shaft), unless fewer than
  ``_MIN_END_PTS`` would be left. Of them, those within ``_TIP_REACH`` of the largest
  distance from the start are split into clusters side by side (one per open jaw, one for
  closed jaws); each cluster's end is the mean of its points within ``_TIP_BAND_PX`` of its own
  largest distance, and the tip is the mean of the ends: the midpoint between the two jaw tips
  of open jaws (the grasp point, the simulator's truth), the middle of the end of closed ones,
  whichever way the wrist bends. Distance rather than projection on the distal direction,
  because both tips of open jaws lie about a jaw's length from the wrist, while a few degrees
  of error in the direction move one tip's projection well behind the other's. Jaw groups
  under a tenth of the largest one are dropped (misclassified specks). Without jaws: the far
  end of the axis line (largest projection of the region's outline), as for a bare shaft.
* ``tip_visible`` is False when the instrument has no jaw pixels (with ``tip_classes`` empty it
  only depends on the next test), or when the tip or the jaw ends it averages lie on the image
  border (within ``_BORDER_MARGIN_PX``): the tool leaves the view at its far end. A dark field
  stop inside the image is not detected: a tip cut by it still counts as visible.
* score = mean confidence (max class probability) over the instrument's pixels; class_id = its
  majority class.

Touching and crossing tools: one region is split when it has two or more entries (runs of >= 3
body pixels) or two or more jaw groups (jaw components within ``_JAW_GAP_PX`` of each other form
a group; a group counts from ``max(20, min_area_px // 4)`` pixels and a tenth of the largest
group: a smaller one is a speck beside a tool's jaws). The split works on the body (non-jaw)
pixels, on a grid thinned to about ``_SPLIT_SAMPLES`` points.

1. Each entry seeds a ray: the principal axis of the body pixels near it (and nearer to it than
   to any other entry), pointing inwards. Jaw groups that no ray explains (matched one to one
   by distance across the ray) seed a line from the body pixels next to them that no ray
   explains; a jaw group without such pixels stays alone (an end-on tool).
2. k-line clustering (k-means with lines), a few rounds: every body pixel goes to the nearest
   segment; each segment is refitted by principal axes and trimmed to the stretch along it,
   counting every body pixel on its band, that holds its anchor (entry or jaws), so a shaft
   runs on through a crossing but stops where its jaws begin instead of running into the tool
   beyond. Lines with too few shaft pixels drop out.
3. Two lines are one tool, and the lighter one is dropped, when they are near parallel and
   their pixels together are no wider than the wider alone (one shaft in pieces along its
   length, or seen from both ends as it crosses the view), unless they point against each
   other with a jaw group between them (tools meeting tip to tip); or when together they are
   no wider than both side by side and the region has fewer than two jaw groups (one shaft cut
   lengthwise: a border run split by a hole, a wide shaft); or when most of one lies on the
   other's trimmed bar (a sliver).
4. Body pixels go to the nearest final segment (decided on the grid, spread to the pixels
   around each grid point). Each line's distal end is then set at its farthest pixel; each jaw
   group joins the line whose distal end it touches, divided pixel by pixel by the nearest end
   when two ends touch it (jaws gripping each other), though never to a line whose end the
   pixel lies behind by more than half the line's width (no wrist puts jaws there: jaws lying
   across another tool's shaft, whose end touches them too); a small group touching no end
   joins the nearest line's pixels as a speck. Each line with its pixels and jaws, and each
   lone jaw group, is an Instrument with its own bbox, area, centroid, class and score; every
   pixel of the region belongs to exactly one.

Limits: tools that enter through one merged border run and show no separate jaws stay one;
tools meeting tip to tip on one straight line without visible jaws read as one tool crossing
the view; tools side by side along their length split only with two jaw groups; tools crossing
at under ~15 deg, and jaws that overlap each other, are divided poorly; pixels where two shafts
overlap go to the nearer axis. Open jaws that overlap in the image (opening towards the lens)
show one jaw's tip, up to half a jaw beyond the grasp point; a crescent of jaws bent away
around the shaft's end gives one end of the crescent; a shaft seen end-on near the lens, its
wrist bent along the border, gives no usable axis.

Cost at 640x512 on the 2-core development machine (best of repeated runs; about 3x more while
other work loads the cores): three separate tools ~0.5 ms; two of them touching or crossing
~1.0-1.6 ms (the split); a shaft filling the frame and crossing it ~1.3 ms. OpenCV's
per-component statistics are avoided: they cost ~1-2 ms per frame by themselves (bounding
boxes come from the components' outer contours instead).

Tracking matches instruments to tracks greedily, smallest cost first: the centroids' distance
plus the mean distance between the ends (entry and tip, in either order, as the sense may have
turned). A pair is no match when the centroids or the ends lie farther apart than
``max_match_distance_px``, or when one area exceeds the other ``_MAX_AREA_RATIO`` times: a
track never moves to a region of very different size (a spurious blob in a dark corner, a
sliver of a split) or to a tool with its ends elsewhere. Unmatched tracks survive
``max_missed_frames`` frames before expiry, so a tool that flickers out for a frame keeps its
id. Greedy is Hungarian-equivalent for the few, well-separated instruments of an endoscope view
and needs no SciPy. A tracked instrument keeps its orientation sense: when its new axis points
against the previous one by more than 120 deg and its new tip lies nearer the previous entry
than its new entry does (it still touches the border it entered through, e.g. a tool crossing
the view whose longer border run changed sides), axis, tip and entry are turned back. An
instrument with a visible tip is only turned back when its ends swapped while the tool stayed
put (its tip nearer the previous entry than the previous tip, its entry nearer the previous
tip than the previous entry: jaws seen at the wrong end for a frame), and on at most
``_MAX_OVERRULED`` frames in a row: jaws that stay at the other end are believed, so a track
never locks onto its own turned-back tip. A tool that did turn, its entry moving elsewhere,
keeps what its jaws say. A turned-back tip is visible only when the track's was.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

Point = tuple[float, float]

_SHAFT, _TIP, _OTHER = 1, 2, 3  # roles of the class ids (see _role_table)
_MIN_AXIS_PX = 20  # fewer shaft pixels than this give no axis of their own
_MIN_ELONGATION = 2.0  # std along / std across of an elongated (axis-giving) pixel set
_TIP_BAND_PX = 3.0  # jaw outline points this close to a jaw's farthest point form its end
_TIP_REACH = 0.2  # jaw ends lie within this fraction of the farthest one's distance from the wrist
_BORDER_MARGIN_PX = 2.0  # a tip this close to the image border leaves the view
_INTERFACE_PX = 2  # jaw outline points this close to the shaft are where the jaws meet it
_MIN_END_PTS = 3  # ... unless fewer jaw outline points than this are left
_RUN_GAP_PX = 4  # border-contact runs this close along the border are one run
_CORNER_GAP = 0.08  # ... and across an image corner, this fraction of the smaller side apart
_MIN_ENTRY_PX = 3  # a border run of fewer pixels is no evidence of a separate tool
_MIN_JAW_GROUP_PX = 20  # a jaw group counts as a separate tool's from max(this, min_area_px // 4)
_JAW_GAP_PX = 4  # jaw components this close form one group (open jaws, segmentation holes)
_SEED_RADIUS_PX = (20.0, 80.0)  # local fits near an entry or jaw group use pixels this near
_SAME_LINE_DEG = 15.0  # two lines closer in angle than this may be one tool
_SPLIT_ROUNDS = 3  # k-line clustering rounds
_SPLIT_SAMPLES = 1000  # the clustering works on about this many body pixels (a grid) at most
_MIN_CLAIMED_PX = 8  # fewer shaft pixels beyond the jaws' centroid than this stay shaft
_FLIP_COS = -0.5  # cos(120 deg): a tracked axis turning farther than this is turned back
_MAX_OVERRULED = 2  # visible jaws are turned back on at most this many frames in a row
_MAX_AREA_RATIO = 3.0  # a track never moves to an instrument this many times larger or smaller


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
    #: class ids of the shaft (axis); none in a region = treat the whole region as shaft.
    shaft_classes: tuple[int, ...] = (1,)
    #: class ids of the wrist and jaws (tip); empty = the model has no such class.
    tip_classes: tuple[int, ...] = (2,)

    def __post_init__(self) -> None:
        for name in ("instrument_classes", "shaft_classes", "tip_classes"):
            value = getattr(self, name)
            if value is not None:  # lists from ROS parameters or YAML become hashable tuples
                object.__setattr__(self, name, tuple(int(c) for c in value))
        if self.min_area_px < 1 or self.max_match_distance_px <= 0 or self.max_missed_frames < 0:
            raise ValueError(f"invalid pose parameters: {self}")
        roles = (self.instrument_classes or ()) + self.shaft_classes + self.tip_classes
        if 0 in roles:
            raise ValueError("class 0 is background and cannot be an instrument class")
        if any(not 0 < c < 256 for c in roles):
            raise ValueError(f"class ids must lie in 1..255: {self}")
        if set(self.shaft_classes) & set(self.tip_classes):
            raise ValueError("a class cannot be both shaft and tip")


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
    tip_visible: bool = True  # False: no jaws of its own, or the tool leaves the view at its tip

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
            "tip_visible": self.tip_visible,
        }


# ---------------------------------------------------------------------------- small geometry
def _principal(a: float, b: float, c: float) -> tuple[np.ndarray, float, float]:
    """Unit major axis, elongation (std ratio) and minor std of the covariance [[a, b], [b, c]]."""
    theta = 0.5 * math.atan2(2.0 * b, a - c)
    half, spread = (a + c) / 2.0, math.hypot((a - c) / 2.0, b)
    major, minor = half + spread, max(half - spread, 0.0)
    elongation = math.sqrt(major / minor) if minor > 1e-12 else math.inf
    return np.array([math.cos(theta), math.sin(theta)]), elongation, math.sqrt(minor)


def _raw_moments(binary: np.ndarray, x: int = 0, y: int = 0) -> np.ndarray:
    """``[m00, m10, m01, m20, m11, m02]`` of a 0/1 uint8 crop whose top-left pixel is ``(x, y)``.

    Why not ``cv2.moments``: row and column sums plus one matrix-vector product give the same
    numbers in half the time, and raw moments add up, so the shaft's are the region's less the
    jaws' (computed on the jaws' own small box).
    """
    h, w = binary.shape
    cols = cv2.reduce(binary, 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel().astype(np.float64)
    rows = cv2.reduce(binary, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel().astype(np.float64)
    xs, ys = np.arange(w, dtype=np.float64) + x, np.arange(h, dtype=np.float64) + y
    row_x = binary.astype(np.float64) @ xs  # sum of x over each row's pixels
    return np.array([cols.sum(), cols @ xs, rows @ ys, cols @ (xs * xs), row_x @ ys, rows @ (ys * ys)])


def _centre(m: np.ndarray) -> np.ndarray:
    return np.array([m[1] / m[0], m[2] / m[0]])


def _moment_axis(m: np.ndarray) -> tuple[np.ndarray, float]:
    """Unit major axis and elongation of the pixels with raw moments ``m``."""
    cx, cy = m[1] / m[0], m[2] / m[0]
    axis, elongation, _ = _principal(m[3] / m[0] - cx * cx, m[4] / m[0] - cx * cy, m[5] / m[0] - cy * cy)
    return axis, elongation


def _sub_box(binary: np.ndarray) -> tuple[int, int, np.ndarray] | None:
    """``(x, y, crop)`` of the non-zero pixels' bounding box in ``binary``; None if empty."""
    bx, by, bw, bh = cv2.boundingRect(binary)
    return (bx, by, binary[by : by + bh, bx : bx + bw]) if bw else None


def _point_axis(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Mean, unit major axis, elongation and minor std of an (N, 2) point set."""
    mean = pts.mean(axis=0)
    d = pts - mean
    cov = (d.T @ d) / pts.shape[0]
    axis, elongation, minor = _principal(float(cov[0, 0]), float(cov[0, 1]), float(cov[1, 1]))
    return mean, axis, elongation, minor


def _outline(binary: np.ndarray, x: int, y: int, method: int) -> np.ndarray:
    """Outer contour points (float (N, 2), image coordinates) of a 0/1 crop at ``(x, y)``."""
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, method, offset=(x, y))
    return np.concatenate(contours).reshape(-1, 2).astype(np.float64)


def _on_border(pts: np.ndarray, width: int, height: int, margin: float) -> bool:
    pts = pts.reshape(-1, 2)
    return bool(
        np.any(
            (pts[:, 0] <= margin)
            | (pts[:, 0] >= width - 1 - margin)
            | (pts[:, 1] <= margin)
            | (pts[:, 1] >= height - 1 - margin)
        )
    )


def _as_point(v: np.ndarray) -> Point:
    return float(v[0]), float(v[1])


# ---------------------------------------------------------------------------- frame set-up
@functools.lru_cache(maxsize=16)
def _role_table(
    instrument_classes: tuple[int, ...] | None, shaft_classes: tuple[int, ...], tip_classes: tuple[int, ...]
) -> np.ndarray:
    """uint8[256]: class id -> 0 (not instrument), _SHAFT, _TIP or _OTHER."""
    table = np.zeros(256, np.uint8)
    table[list(range(1, 256)) if instrument_classes is None else list(instrument_classes)] = _OTHER
    for classes, role in ((shaft_classes, _SHAFT), (tip_classes, _TIP)):
        for c in classes:
            if table[c]:
                table[c] = role
    table.flags.writeable = False
    return table


@functools.lru_cache(maxsize=8)
def _perimeter(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the image border as one closed, clockwise loop without repeats."""
    ys, xs = [np.zeros(width, np.intp)], [np.arange(width)]
    ys.append(np.arange(1, height))
    xs.append(np.full(height - 1, width - 1))
    if height > 1 and width > 1:
        ys += [np.full(width - 1, height - 1), np.arange(height - 2, 0, -1)]
        xs += [np.arange(width - 2, -1, -1), np.zeros(height - 2, np.intp)]
    rows, cols = np.concatenate(ys).astype(np.intp), np.concatenate(xs).astype(np.intp)
    rows.flags.writeable = cols.flags.writeable = False
    return rows, cols


def _component_boxes(group: np.ndarray, labels: np.ndarray, count: int) -> dict[int, tuple[int, ...]]:
    """Bounding box per component label, from the components' outer contours.

    Why: OpenCV's per-component statistics cost ~2 ms per 640x512 frame, labels alone and the
    contours ~0.2 ms. Every 8-connected component has exactly one outer border; RETR_CCOMP puts
    it at the top level even for a component inside another one's hole.
    """
    contours, hierarchy = cv2.findContours(group, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    boxes: dict[int, tuple[int, ...]] = {}
    for contour, (_, _, _, parent) in zip(
        contours, hierarchy[0] if hierarchy is not None else (), strict=True
    ):
        if parent < 0:
            col, row = contour[0, 0]
            boxes[int(labels[row, col])] = cv2.boundingRect(contour)
    for label in set(range(1, count)) - boxes.keys():  # never expected; keeps the result exact
        boxes[label] = cv2.boundingRect((labels == label).view(np.uint8))
    return boxes


@dataclass(frozen=True)
class _Run:
    """Pixels of a region along the image border, contiguous up to small gaps."""

    pts: np.ndarray  # (N, 2) x, y of its pixels
    tip_fraction: float

    @property
    def point(self) -> np.ndarray:
        """Mean of its pixels: the entry point."""
        return self.pts.mean(axis=0)

    @property
    def count(self) -> int:
        return int(self.pts.shape[0])


def _border_runs(on: np.ndarray, tip: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> list[_Run]:
    """Runs of ``on`` along the closed border loop (wrapping at its start). Gaps of up to
    ``_RUN_GAP_PX`` are bridged, and so is a gap across an image corner that is shorter in a
    straight line than ``_CORNER_GAP`` of the image's smaller side (a tool entering through a
    corner that a round field stop cuts off)."""
    idx = np.flatnonzero(on)
    if idx.size == 0:
        return []
    corner_gap = _CORNER_GAP * (min(int(rows.max()), int(cols.max())) + 1)
    ends = np.append(idx, idx[0])  # each gap runs from ends[i] to ends[i + 1], the last one wraps
    along = np.diff(ends) % on.size
    straight = np.hypot(np.diff(cols[ends]), np.diff(rows[ends]))
    bridged = (along <= _RUN_GAP_PX + 1) | ((straight <= corner_gap) & (straight < 0.9 * along))
    groups = np.split(idx, np.flatnonzero(~bridged[:-1]) + 1)
    if len(groups) > 1 and bridged[-1]:
        groups[0] = np.concatenate([groups.pop(), groups[0]])
    return [
        _Run(np.column_stack([cols[g], rows[g]]).astype(np.float64), float(tip[g].mean())) for g in groups
    ]


@dataclass
class _Frame:
    """Per-frame inputs shared by every region."""

    mask: np.ndarray
    confidence: np.ndarray | None
    roles: np.ndarray  # uint8[256] role table
    params: PoseParams
    rows: np.ndarray  # border loop
    cols: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        return self.mask.shape[1], self.mask.shape[0]


@dataclass
class _Part:
    """One instrument's pixels as 0/1 crops of its region's box at ``(x, y)``."""

    x: int
    y: int
    pixels: np.ndarray
    shaft: np.ndarray
    jaws: np.ndarray
    run: _Run | None  # the border run it enters through

    @property
    def contact(self) -> np.ndarray | None:
        return None if self.run is None else self.run.point


# ---------------------------------------------------------------------------- one instrument
def _orient(axis: np.ndarray, origin: np.ndarray, part: _Part, jaw_centroid: np.ndarray | None,
            outline: np.ndarray, size: tuple[int, int]) -> np.ndarray:  # fmt: skip
    """Flip ``axis`` so that it points from the entry towards the distal end (module docstring)."""
    if part.contact is not None:
        return -axis if float(np.dot(part.contact - origin, axis)) > 0 else axis
    if jaw_centroid is not None and abs(float(np.dot(jaw_centroid - origin, axis))) >= 1.0:
        return -axis if float(np.dot(jaw_centroid - origin, axis)) < 0 else axis
    centre = np.array([(size[0] - 1) / 2.0, (size[1] - 1) / 2.0])
    proj = (outline - origin) @ axis
    end_pos, end_neg = origin + axis * proj.max(), origin + axis * proj.min()
    return -axis if np.linalg.norm(end_pos - centre) > np.linalg.norm(end_neg - centre) else axis


def _jaw_ends(pts: np.ndarray, dist: np.ndarray, direction: np.ndarray) -> list[np.ndarray]:
    """The jaw ends among outline points ``pts`` at distances ``dist`` from the shaft's end.

    Points within ``_TIP_REACH`` of the largest distance are split into clusters side by side
    across ``direction`` (at gaps over ``_TIP_BAND_PX``): one per jaw when the jaws are open,
    one for closed jaws. Each cluster's end is the mean of its points within ``_TIP_BAND_PX``
    of its own largest distance, so each jaw counts once however many outline points it has.
    Clusters under a quarter of the largest one's points are specks and are dropped.
    """
    far = float(dist.max())
    near = dist >= far - max(_TIP_BAND_PX, _TIP_REACH * far)
    pts, dist = pts[near], dist[near]
    across = pts @ np.array([-direction[1], direction[0]])
    order = np.argsort(across, kind="stable")
    cuts = np.flatnonzero(np.diff(across[order]) > _TIP_BAND_PX) + 1
    clusters = [(pts[idx], dist[idx]) for idx in np.split(order, cuts)]
    least = max(2, 0.25 * max(len(c) for c, _ in clusters))
    return [c[d >= d.max() - _TIP_BAND_PX] for c, d in clusters if len(c) >= least] or [
        pts[dist >= far - _TIP_BAND_PX]
    ]


def _by_the_shaft(part: _Part, bx: int, by: int, shape: tuple[int, ...], pts: np.ndarray) -> np.ndarray:
    """Which jaw outline points ``pts`` lie within ``_INTERFACE_PX`` of the part's shaft pixels
    (not its jaws): where the jaws meet the shaft, not where they end."""
    r = _INTERFACE_PX
    h, w = part.pixels.shape
    x0, y0 = max(bx - r, 0), max(by - r, 0)
    x1, y1 = min(bx + shape[1] + r, w), min(by + shape[0] + r, h)
    shaft = cv2.subtract(part.shaft[y0:y1, x0:x1], part.jaws[y0:y1, x0:x1])
    near = cv2.dilate(shaft, np.ones((2 * r + 1, 2 * r + 1), np.uint8))
    cols = pts[:, 0].astype(np.intp) - part.x - x0
    rows = pts[:, 1].astype(np.intp) - part.y - y0
    return near[rows, cols] > 0


def _on_entry(part: _Part, pts: np.ndarray) -> np.ndarray:
    """Which outline points ``pts`` are pixels of the part's entry run: jaws on the border where
    the tool enters are a wrist's rim beside the shaft, not jaw ends leaving the view."""
    if part.run is None:
        return np.zeros(pts.shape[0], bool)
    key = part.run.pts[:, 0] * 65536.0 + part.run.pts[:, 1]
    return np.isin(pts[:, 0] * 65536.0 + pts[:, 1], key)


def _jaw_tip(part: _Part, start: np.ndarray, jaw_centroid: np.ndarray, axis: np.ndarray,
             size: tuple[int, int]) -> tuple[np.ndarray, bool]:  # fmt: skip
    """Tip from the jaws (module docstring) and whether it lies on the image border.

    The outline points ahead of the shaft's end ``start`` are ranked by their distance from it,
    not by their projection on the distal direction: both tips of open jaws lie about a jaw's
    length from the wrist, while a few degrees of error in the direction move one tip's
    projection well behind the other's.
    """
    bx, by, jaws = _sub_box(part.jaws)  # type: ignore[misc]  # callers ensure jaws exist
    pts = _outline(jaws, part.x + bx, part.y + by, cv2.CHAIN_APPROX_NONE)
    towards = jaw_centroid - start
    norm = float(np.hypot(*towards))
    direction = towards / norm if norm >= 1.0 else axis
    rel = pts - start
    keep = (rel @ direction >= 0) & ~_by_the_shaft(part, bx, by, jaws.shape, pts) & ~_on_entry(part, pts)
    if np.count_nonzero(keep) >= _MIN_END_PTS:
        pts, rel = pts[keep], rel[keep]
    else:
        ahead = rel @ direction >= 0
        if ahead.any():
            pts, rel = pts[ahead], rel[ahead]
    ends = _jaw_ends(pts, np.hypot(rel[:, 0], rel[:, 1]), direction)
    tip = np.mean([end.mean(axis=0) for end in ends], axis=0)
    on_border = any(_on_border(end, *size, 0.5) for end in ends) or _on_border(tip, *size, _BORDER_MARGIN_PX)
    return tip, on_border


def _jaw_moments(part: _Part) -> np.ndarray:
    box = _sub_box(part.jaws)
    return np.zeros(6) if box is None else _raw_moments(box[2], part.x + box[0], part.y + box[1])


def _part_moments(part: _Part) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw moments (image coordinates) of the part's pixels, shaft and jaws."""
    m_all = _raw_moments(part.pixels, part.x, part.y)
    m_jaws = _jaw_moments(part)
    if part.shaft is part.pixels:
        m_shaft = m_all
    elif cv2.countNonZero(part.shaft) + m_jaws[0] == m_all[0]:  # no pixels of other classes
        m_shaft = m_all - m_jaws
    else:
        m_shaft = _raw_moments(part.shaft, part.x, part.y)
    return m_all, m_shaft, m_jaws


def _along_border(axis: np.ndarray, outline: np.ndarray, run: _Run | None) -> bool:
    """True when the extent of ``outline`` (a region's, or its shaft's) along ``axis`` is mostly
    its border run's: those pixels lie along the border (a wide stub, a strip of shaft under
    jaws), so their long axis says nothing about where the tool points."""
    if run is None:
        return False
    along, own = outline @ axis, run.pts @ axis
    return float(own.max() - own.min()) + 1.0 >= 0.7 * float(along.max() - along.min())


def _shaft_along_border(part: _Part, axis: np.ndarray) -> bool:
    """:func:`_along_border` of the shaft's own outline (traced only when there is an entry run)."""
    if part.run is None:
        return False
    return _along_border(axis, _outline(part.shaft, part.x, part.y, cv2.CHAIN_APPROX_SIMPLE), part.run)


def _axis(part: _Part, m_all: np.ndarray, m_shaft: np.ndarray, outline: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray, bool]:  # fmt: skip
    """``(origin, axis, from_shaft)``: the axis source of the module docstring, unoriented."""
    if m_shaft[0] >= _MIN_AXIS_PX:
        axis, elongation = _moment_axis(m_shaft)
        if elongation >= _MIN_ELONGATION and not _shaft_along_border(part, axis):
            return _centre(m_shaft), axis, True
    centroid = _centre(m_all)
    axis, elongation = _moment_axis(m_all)
    if part.run is not None and (elongation < _MIN_ELONGATION or _along_border(axis, outline, part.run)):
        towards = centroid - part.run.point
        if float(np.hypot(*towards)) >= 1.0:  # a stub: from its entry to its centroid
            axis = towards / float(np.hypot(*towards))
    return centroid, axis, False


def _claim_distal_shaft(part: _Part, origin: np.ndarray, axis: np.ndarray, jaw_centroid: np.ndarray
                        ) -> tuple[_Part, np.ndarray, float]:  # fmt: skip
    """Shaft pixels beyond the jaws' centroid along the axis, joined to the jaws.

    A shaft ends where its wrist begins, behind the jaws' centroid whichever way the wrist
    bends; shaft pixels beyond it are jaws the segmentation called shaft (thin, dark jaw tips
    often are). Left as shaft they would put the shaft's end, and so the start of the tip
    search, past the jaws. Returns the part with those pixels as jaws, the jaws' centroid, and
    where the jaws begin along the axis (``inf`` when no pixel moved, so the shaft's end holds).
    """
    rows, cols = np.nonzero(part.shaft)
    t = (cols + (part.x - origin[0])) * axis[0] + (rows + (part.y - origin[1])) * axis[1]
    beyond = t > float((jaw_centroid - origin) @ axis)
    if np.count_nonzero(beyond) < _MIN_CLAIMED_PX:
        return part, jaw_centroid, math.inf
    jaw_rows, jaw_cols = np.nonzero(part.jaws)
    begin = float(
        np.min((jaw_cols + (part.x - origin[0])) * axis[0] + (jaw_rows + (part.y - origin[1])) * axis[1])
    )
    jaws = part.jaws.copy()
    jaws[rows[beyond], cols[beyond]] = 1
    all_rows, all_cols = np.nonzero(jaws)
    centroid = np.array([all_cols.mean() + part.x, all_rows.mean() + part.y])
    return replace(part, jaws=jaws), centroid, begin


def _shaft_end(part: _Part, origin: np.ndarray, axis: np.ndarray) -> float:
    """The shaft's distal end along ``axis`` from ``origin``: the largest projection of the outline
    of its pieces, less specks (pieces under a tenth of the largest one's box, which a split
    leaves now and then beside the shaft)."""
    contours, _ = cv2.findContours(part.shaft, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE,
                                   offset=(part.x, part.y))  # fmt: skip
    if len(contours) > 1:
        sizes = [cv2.boundingRect(c)[2] * cv2.boundingRect(c)[3] for c in contours]
        contours = [c for c, size in zip(contours, sizes, strict=True) if size >= 0.1 * max(sizes)]
    outline = np.concatenate(contours).reshape(-1, 2).astype(np.float64)
    return float(((outline - origin) @ axis).max())


def _pose(part: _Part, size: tuple[int, int], has_tip_classes: bool
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:  # fmt: skip
    """``(centroid, axis, tip, entry, tip_visible)`` of one instrument (module docstring)."""
    m_all, m_shaft, m_jaws = _part_moments(part)
    jaw_centroid = _centre(m_jaws) if m_jaws[0] > 0 else None
    outline = _outline(part.pixels, part.x, part.y, cv2.CHAIN_APPROX_SIMPLE)
    origin, axis, from_shaft = _axis(part, m_all, m_shaft, outline)
    axis = _orient(axis, origin, part, jaw_centroid, outline, size)
    proj = (outline - origin) @ axis
    entry, far = origin + axis * proj.min(), origin + axis * proj.max()
    if jaw_centroid is None:
        visible = not has_tip_classes and not _on_border(far, *size, _BORDER_MARGIN_PX)
        return _centre(m_all), axis, far, entry, visible
    if from_shaft:  # the shaft's distal end
        shaft_end = _shaft_end(part, origin, axis)
        part, jaw_centroid, jaws_begin = _claim_distal_shaft(part, origin, axis, jaw_centroid)
        start = origin + axis * min(shaft_end, jaws_begin)
    elif part.contact is not None:
        start = part.contact
    elif m_shaft[0] > 0 and part.shaft is not part.pixels:
        start = _centre(m_shaft)
    else:
        start = entry
    tip, on_border = _jaw_tip(part, start, jaw_centroid, axis, size)
    return _centre(m_all), axis, tip, entry, not on_border


def _instrument(frame: _Frame, part: _Part, box: tuple[int, int, int, int] | None = None,
                area: int | None = None) -> Instrument:  # fmt: skip
    """Measure one instrument's pixels and pose into an Instrument (untracked)."""
    h, w = part.pixels.shape
    x, y = part.x, part.y
    hist = cv2.calcHist([frame.mask[y : y + h, x : x + w]], [0], part.pixels, [256], [0, 256])
    score = (
        float(cv2.mean(frame.confidence[y : y + h, x : x + w], mask=part.pixels)[0])
        if frame.confidence is not None
        else 1.0
    )
    if box is None:
        bx, by, bw, bh = cv2.boundingRect(part.pixels)
        box = (bx + x, by + y, bw, bh)
    centroid, axis, tip, entry, visible = _pose(part, frame.size, bool(frame.params.tip_classes))
    return Instrument(
        track_id=-1,
        class_id=int(hist.argmax()),
        area_px=int(area if area is not None else cv2.countNonZero(part.pixels)),
        centroid=_as_point(centroid),
        axis=_as_point(axis / np.linalg.norm(axis)),
        tip=_as_point(tip),
        entry=_as_point(entry),
        bbox=(int(box[0]), int(box[1]), int(box[2]), int(box[3])),
        score=score,
        tip_visible=visible,
    )


# ---------------------------------------------------------------------------- touching tools
@dataclass(frozen=True)
class _JawGroup:
    """Jaw pixels within ``_JAW_GAP_PX`` of each other (crop coordinates)."""

    rows: np.ndarray
    cols: np.ndarray
    centroid: np.ndarray  # (x, y)

    @property
    def area(self) -> int:
        return int(self.rows.size)

    def points(self) -> np.ndarray:
        return np.column_stack([self.cols, self.rows]).astype(np.float64)


@dataclass(frozen=True)
class _Line:
    """A shaft hypothesis: a segment of a line, in crop coordinates, pointing distally."""

    origin: np.ndarray
    direction: np.ndarray
    lo: float  # extent along ``direction`` from ``origin``
    hi: float
    anchor: np.ndarray  # its entry point or seeding jaw centroid: the stretch it keeps holds it
    width: float  # sqrt(12) * std across: the width of a uniform bar
    run: _Run | None  # its entry run; None when seeded by jaws
    weight: int  # run length or pixel count: the larger of two duplicates wins
    pts: np.ndarray  # the body pixels it was fitted to

    def end(self) -> np.ndarray:
        return self.origin + self.direction * self.hi

    def across(self, pts: np.ndarray) -> np.ndarray:
        """Distance of each point from the (infinite) line."""
        return np.abs((pts - self.origin) @ np.array([-self.direction[1], self.direction[0]]))

    def distance2(self, pts: np.ndarray) -> np.ndarray:
        """Squared distance of each point from the segment."""
        rel = pts - self.origin
        t = rel @ self.direction
        beyond = t - np.clip(t, self.lo, self.hi)
        return (rel @ np.array([-self.direction[1], self.direction[0]])) ** 2 + beyond**2


@dataclass(frozen=True)
class _Samples:
    """A region's body pixels (crop coordinates) on a grid of ``step`` px, so that the
    clustering handles about ``_SPLIT_SAMPLES`` points at most, however large the region."""

    pts: np.ndarray
    is_shaft: np.ndarray
    step: int

    def count(self, pixels: int) -> int:
        """A pixel count at full resolution, in samples."""
        return max(3, math.ceil(pixels / self.step**2))


def _sample(base: _Part) -> _Samples:
    """The region's body pixels on the sampling grid (module docstring)."""
    body = cv2.subtract(base.pixels, base.jaws)
    step = max(1, math.ceil(math.sqrt(cv2.countNonZero(body) / _SPLIT_SAMPLES)))
    rows, cols = np.nonzero(body[::step, ::step])
    rows, cols = rows * step, cols * step
    pts = np.column_stack([cols, rows]).astype(np.float64)
    return _Samples(pts, base.shaft[rows, cols] > 0, step)


def _jaw_groups(jaws: np.ndarray) -> list[_JawGroup]:
    """Jaw components, those within ``_JAW_GAP_PX`` of each other grouped (dilation, then labels)."""
    box = _sub_box(jaws)
    if box is None:
        return []
    bx, by, sub = box
    size = 2 * (_JAW_GAP_PX // 2) + 1
    grown = cv2.dilate(sub, np.ones((size, size), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    _, labels = cv2.connectedComponents(grown, connectivity=8)
    rows, cols = np.nonzero(sub)
    ids = labels[rows, cols]
    rows, cols = rows + by, cols + bx
    order = np.argsort(ids, kind="stable")
    rows, cols, ids = rows[order], cols[order], ids[order]
    cuts = np.flatnonzero(np.diff(ids)) + 1
    return [
        _JawGroup(r, c, np.array([c.mean(), r.mean()]))
        for r, c in zip(np.split(rows, cuts), np.split(cols, cuts), strict=True)
    ]


def _entry_lines(samples: _Samples, runs: Sequence[_Run], offset: np.ndarray) -> list[_Line]:
    """Per entry run, the local principal axis of the body pixels near it, pointing into the
    image. Each run only takes pixels nearer to it than to the other runs, so two tools that
    enter side by side do not blend into one wide blob."""
    pts = samples.pts
    anchors = [run.point - offset for run in runs]
    d2 = np.stack([np.sum((pts - a) ** 2, axis=1) for a in anchors])
    owner = np.argmin(d2, axis=0)
    lines = []
    for i, (run, anchor) in enumerate(zip(runs, anchors, strict=True)):
        radius = float(np.clip(2.5 * run.count, *_SEED_RADIUS_PX))
        near = pts[(owner == i) & (d2[i] <= radius**2)]
        if near.shape[0] < samples.count(_MIN_AXIS_PX):
            continue
        mean, axis, _, minor = _point_axis(near)
        if float(np.dot(mean - anchor, axis)) < 0:
            axis = -axis
        lines.append(
            _Line(anchor, axis, -radius, math.inf, anchor, math.sqrt(12.0) * minor, run, run.count, near)
        )
    return lines


def _same_line(a: _Line, b: _Line, groups: Sequence[_JawGroup]) -> bool:
    """Whether two line hypotheses are one tool (module docstring). ``groups``: the jaw groups
    large enough to be a tool's.

    Both must be near parallel. Then they are pieces of one shaft along its length (their
    pixels together are no wider than the wider alone: a shaft seen in pieces, or from both
    ends when it crosses the view), unless they point against each other with a jaw group
    between their anchors (tools meeting tip to tip); or pieces of one shaft across its width
    (together no wider than both side by side: a border run split by a hole, a wide shaft
    halved), unless the region has two jaw groups (two tools side by side).
    """
    if abs(float(np.dot(a.direction, b.direction))) < math.cos(math.radians(_SAME_LINE_DEG)):
        return False
    width = math.sqrt(12.0) * _point_axis(np.concatenate([a.pts, b.pts]))[3]
    collinear = width <= 1.25 * max(a.width, b.width) + 2.0
    side_by_side = width <= 1.15 * (a.width + b.width) + 2.0 and len(groups) < 2
    if collinear and float(np.dot(a.direction, b.direction)) < 0:
        return not _jaws_between(a, b, groups)
    return collinear or side_by_side


def _jaws_between(a: _Line, b: _Line, groups: Sequence[_JawGroup]) -> bool:
    """Whether a jaw group lies on the line between the two anchors (tools meeting tip to tip)."""
    span = b.anchor - a.anchor
    length2 = float(span @ span)
    for g in groups:
        s = float((g.centroid - a.anchor) @ span) / length2 if length2 > 0 else 0.0
        near = a.across(g.centroid[None])[0] <= 0.5 * max(a.width, b.width) + 0.5 * math.sqrt(g.area)
        if 0.1 < s < 0.9 and near:
            return True
    return False


def _on_bar(a: _Line, b: _Line) -> bool:
    """Whether most of ``b``'s pixels lie on ``a``'s trimmed bar: ``b`` is a sliver of it."""
    if not math.isfinite(a.hi):
        return False  # a ray from an entry still covers everything ahead of it
    rel = b.pts - a.origin
    t = rel @ a.direction
    across = np.abs(rel @ np.array([-a.direction[1], a.direction[0]]))
    inside = (across <= 0.5 * a.width + 2.0) & (t >= a.lo - 2.0) & (t <= a.hi + 2.0)
    return float(np.mean(inside)) >= 0.8


def _merge_same(lines: list[_Line], groups: Sequence[_JawGroup]) -> list[_Line]:
    """Drop each line that is one tool with a heavier one (``_same_line``, ``_on_bar``)."""
    out: list[_Line] = []
    for line in sorted(lines, key=lambda ln: -ln.weight):
        if not any(_on_bar(kept, line) or _same_line(line, kept, groups) for kept in out):
            out.append(line)
    return out


def _seed_from_jaws(samples: _Samples, lines: list[_Line], groups: Sequence[_JawGroup]
                    ) -> tuple[list[_Line], list[_JawGroup]]:  # fmt: skip
    """Lines for jaw groups that no line explains, from the body pixels next to them that no
    line explains either; a group without such pixels stays alone (an end-on tool)."""
    pairs = sorted(
        (float(line.across(g.centroid[None])[0]), gi, li)
        for gi, g in enumerate(groups)
        for li, line in enumerate(lines)
        if float((g.centroid - line.anchor) @ line.direction) > 0
        and float(line.across(g.centroid[None])[0]) <= line.width + math.sqrt(g.area)
    )
    explained: set[int] = set()
    used: set[int] = set()
    for _, gi, li in pairs:
        if gi not in explained and li not in used:
            explained.add(gi)
            used.add(li)
    seeded, alone = list(lines), []
    pts = samples.pts
    free = np.ones(pts.shape[0], bool)
    for line in lines:
        free &= line.across(pts) > 0.5 * line.width + 4.0
    for gi, g in enumerate(groups):
        if gi in explained:
            continue
        radius = float(np.clip(3.0 * math.sqrt(g.area), *_SEED_RADIUS_PX))
        near = pts[free & (np.sum((pts - g.centroid) ** 2, axis=1) <= radius**2)]
        if near.shape[0] < samples.count(_MIN_AXIS_PX):
            alone.append(g)
            continue
        mean, axis, _, minor = _point_axis(near)
        if float(np.dot(g.centroid - mean, axis)) < 0:
            axis = -axis
        hi = float(np.dot(g.centroid - mean, axis))
        seeded.append(
            _Line(mean, axis, -math.inf, hi, g.centroid, math.sqrt(12.0) * minor, None, near.shape[0], near)
        )
    return seeded, alone


def _contiguous(t: np.ndarray, start: float, bin_px: float = 2.0) -> tuple[float, float]:
    """The stretch of projections ``t`` (gaps up to 3 bins) nearest to ``start``."""
    t0 = float(t.min())
    occupied = np.flatnonzero(np.bincount(((t - t0) / bin_px).astype(np.intp)))
    runs = np.split(occupied, np.flatnonzero(np.diff(occupied) > 3) + 1)
    s = (start - t0) / bin_px
    best = min(runs, key=lambda r: max(r[0] - s, s - r[-1] - 1.0, 0.0))
    return t0 + bin_px * best[0], t0 + bin_px * (best[-1] + 1)


def _refit(line: _Line, own: np.ndarray, pts: np.ndarray, bin_px: float) -> _Line:
    """Principal axis of the line's own pixels, trimmed to the stretch along it that holds its
    anchor. The stretch counts every body pixel on the line's band, so a shaft runs on through
    a crossing whose pixels went to the other tool, and stops where its jaws begin."""
    mean, axis, _, minor = _point_axis(own)
    if float(np.dot(axis, line.direction)) < 0:
        axis = -axis
    width = math.sqrt(12.0) * minor
    rel = pts - mean
    # at least a pixel either side: the own pixels of a one-pixel-wide line have width ~0
    on_band = np.abs(rel @ np.array([-axis[1], axis[0]])) <= max(0.5 * width, 1.0)
    lo, hi = _contiguous(rel[on_band] @ axis, float(np.dot(line.anchor - mean, axis)), bin_px)
    return replace(line, origin=mean, direction=axis, lo=lo, hi=hi, width=width, weight=own.shape[0], pts=own)


def _assign(pts: np.ndarray, lines: Sequence[_Line]) -> np.ndarray:
    return np.argmin(np.stack([line.distance2(pts) for line in lines]), axis=0)


def _cluster(samples: _Samples, lines: list[_Line], min_px: int, groups: Sequence[_JawGroup]) -> list[_Line]:
    """k-line clustering: assign to the nearest segment, refit and trim, a few rounds; lines
    with fewer than ``min_px`` shaft pixels drop out, lines that became one merge."""
    pts, bin_px = samples.pts, max(2.0, float(samples.step))
    for _ in range(_SPLIT_ROUNDS):
        if not lines:
            break
        assign = _assign(pts, lines)
        refitted = []
        for i, line in enumerate(lines):
            own = pts[(assign == i) & samples.is_shaft]
            if own.shape[0] >= samples.count(min_px):
                refitted.append(_refit(line, own, pts, bin_px))
        lines = _merge_same(refitted, groups)
    return lines


def _jaw_owners(g: _JawGroup, lines: Sequence[_Line], big: bool) -> np.ndarray | int:
    """Which line each pixel of a jaw group joins (module docstring): the line whose distal end
    touches the group, or the nearest of such ends pixel by pixel when several do. A small
    group touching no end is a misclassified speck: ``-1 - i`` says it joins line ``i``'s
    pixels, not its jaws."""
    gp = g.points()
    d2 = np.stack([np.sum((gp - line.end()) ** 2, axis=1) for line in lines])
    reach = np.array([max(8.0, line.width) for line in lines])
    touching = np.flatnonzero(np.sqrt(d2.min(axis=1)) <= reach)
    if touching.size >= 2:
        # a jaw pixel farther behind a line's end than half its width is not that line's
        behind = np.stack(
            [(gp - lines[i].end()) @ lines[i].direction < -0.5 * lines[i].width for i in touching]
        )
        cost = np.where(behind & ~behind.all(axis=0), np.inf, d2[touching])
        return touching[np.argmin(cost, axis=0)]
    if touching.size == 1 or big:
        return int(touching[0]) if touching.size else int(np.argmin(d2.min(axis=1)))
    return -1 - int(np.argmin([float(line.distance2(g.centroid[None])[0]) for line in lines]))


def _touches_an_end(g: _JawGroup, lines: Sequence[_Line]) -> bool:
    gp = g.points()
    return any(float(np.min(np.sum((gp - ln.end()) ** 2, axis=1))) <= max(8.0, ln.width) ** 2 for ln in lines)


def _jaw_min(groups: Sequence[_JawGroup], params: PoseParams) -> float:
    """Size from which a jaw group counts as a tool's own (module docstring)."""
    largest = max((g.area for g in groups), default=0)
    return max(_MIN_JAW_GROUP_PX, params.min_area_px // 4, 0.1 * largest)


def _split(frame: _Frame, base: _Part, entries: Sequence[_Run], groups: Sequence[_JawGroup]
           ) -> list[_Part] | None:  # fmt: skip
    """Instruments of a region that holds several (module docstring), or None for one."""
    params = frame.params
    samples = _sample(base)
    if not groups and base.jaws.any():
        groups = _jaw_groups(base.jaws)
    jaw_min = _jaw_min(groups, params)
    big = [g for g in groups if g.area >= jaw_min]
    offset = np.array([base.x, base.y], np.float64)
    lines = _merge_same(_entry_lines(samples, entries, offset) if entries else [], big)
    lines, alone = _seed_from_jaws(samples, lines, big)
    if len(lines) + len(alone) < 2:
        return None
    lines = _cluster(samples, lines, max(_MIN_AXIS_PX, params.min_area_px // 4), big)
    if not lines:
        return None
    alone = [g for g in alone if not _touches_an_end(g, lines)]
    if len(lines) + len(alone) < 2:
        return None
    return _parts(base, samples.step, lines, alone, groups, jaw_min)


def _body_owners(base: _Part, rows: np.ndarray, cols: np.ndarray, step: int, lines: Sequence[_Line]
                 ) -> np.ndarray:  # fmt: skip
    """The nearest line segment of each body pixel, decided on the sampling grid (at the samples
    and next to them) and spread to the pixels around each grid point, so the cost stays that
    of the samples; the few pixels left over are decided one by one."""
    pts = np.column_stack([cols, rows]).astype(np.float64)
    if step == 1:
        return _assign(pts, lines)
    near = cv2.dilate(cv2.subtract(base.pixels, base.jaws)[::step, ::step], np.ones((3, 3), np.uint8))
    grid_rows, grid_cols = np.nonzero(near)
    grid = np.full(near.shape, -1, np.intp)
    grid[grid_rows, grid_cols] = _assign(
        np.column_stack([grid_cols, grid_rows]).astype(np.float64) * step, lines
    )
    half = step // 2
    owner = grid[
        np.minimum((rows + half) // step, grid.shape[0] - 1),
        np.minimum((cols + half) // step, grid.shape[1] - 1),
    ]
    missing = owner < 0
    if missing.any():
        owner[missing] = _assign(pts[missing], lines)
    return owner


def _parts(base: _Part, step: int, lines: Sequence[_Line], alone: Sequence[_JawGroup],
           groups: Sequence[_JawGroup], jaw_min: float) -> list[_Part]:  # fmt: skip
    """Each line's body pixels and jaws, and each lone jaw group, as crops of their own boxes.

    One label image of the region's box holds who owns each pixel (line ``i`` is ``i + 1``,
    lone jaw groups follow), so each part is cut out by comparisons in its own box.
    """
    rows, cols = np.nonzero(cv2.subtract(base.pixels, base.jaws))
    label = np.zeros(base.pixels.shape, np.uint8)
    label[rows, cols] = _body_owners(base, rows, cols, step, lines) + 1
    lines = [_exact_end(line, label, i + 1, step) for i, line in enumerate(lines)]
    jaws = base.jaws.copy()
    lone_ids = {id(g) for g in alone}
    for g in groups:
        if id(g) in lone_ids:
            continue
        who = _jaw_owners(g, lines, g.area >= jaw_min)
        if isinstance(who, int) and who < 0:  # a speck: the line's pixels, not its jaws
            who = -1 - who
            jaws[g.rows, g.cols] = 0
        label[g.rows, g.cols] = np.asarray(who) + 1
    for j, g in enumerate(alone):
        label[g.rows, g.cols] = len(lines) + 1 + j
    runs = [line.run for line in lines] + [None] * len(alone)
    parts = [_cut(base, label, jaws, value + 1, run) for value, run in enumerate(runs)]
    return [p for p in parts if p is not None]


def _exact_end(line: _Line, label: np.ndarray, value: int, step: int) -> _Line:
    """The line with its distal end at its full-resolution pixels' farthest point (within a
    sampling step of the end the samples gave): where its jaws begin."""
    box = _sub_box((label == value).view(np.uint8))
    if box is None:
        return line
    t = (_outline(box[2], box[0], box[1], cv2.CHAIN_APPROX_SIMPLE) - line.origin) @ line.direction
    t = t[t <= line.hi + 2.0 * step]
    return replace(line, hi=float(t.max())) if t.size else line


def _cut(base: _Part, label: np.ndarray, jaws: np.ndarray, value: int, run: _Run | None) -> _Part | None:
    """The part whose pixels carry ``value`` in ``label``, cropped to its own box."""
    box = _sub_box((label == value).view(np.uint8))
    if box is None:
        return None
    bx, by, pixels = box
    crop = (slice(by, by + pixels.shape[0]), slice(bx, bx + pixels.shape[1]))
    return _Part(base.x + bx, base.y + by, pixels, cv2.bitwise_and(base.shaft[crop], pixels),
                 cv2.bitwise_and(jaws[crop], pixels), run)  # fmt: skip


# ---------------------------------------------------------------------------- regions
def _entry_run(runs: Sequence[_Run], part: _Part) -> _Run | None:
    """Entry of a lone instrument: the body run farthest from its jaws, or the longest."""
    body = [r for r in runs if r.tip_fraction < 0.5] or list(runs)
    if not body:
        return None
    m = _jaw_moments(part)
    if m[0] > 0:
        jc = _centre(m)
        return max(body, key=lambda r: float(np.hypot(*(r.point - jc))))
    return max(body, key=lambda r: r.count)


def _without_entry_jaws(pixels: np.ndarray, jaws: np.ndarray, runs: Sequence[_Run], x: int, y: int
                        ) -> np.ndarray:  # fmt: skip
    """Jaws less the jaw components on the image border near an entry (module docstring): their
    centre nearer to the entry run's body pixels than half the region's reach from them, and
    no part of them reaching as far as the body does."""
    entries, on_border = [], []
    for run in runs:
        cols, rows = run.pts[:, 0].astype(np.intp) - x, run.pts[:, 1].astype(np.intp) - y
        on_jaws = jaws[rows, cols] > 0
        if on_jaws.any():
            on_border.append((rows[on_jaws], cols[on_jaws]))
        if run.count >= _MIN_ENTRY_PX and run.tip_fraction < 0.5:
            entries.append(run.pts[~on_jaws].mean(axis=0))
    if not entries or not on_border:
        return jaws
    _, labels = cv2.connectedComponents(jaws, connectivity=8)
    outline = _outline(pixels, x, y, cv2.CHAIN_APPROX_SIMPLE)
    body = outline[jaws[outline[:, 1].astype(np.intp) - y, outline[:, 0].astype(np.intp) - x] == 0]
    if body.shape[0] == 0:
        return jaws
    reach = [(float(np.sqrt(np.max(np.sum((outline - p) ** 2, axis=1)))),
              float(np.sqrt(np.max(np.sum((body - p) ** 2, axis=1))))) for p in entries]  # fmt: skip
    drop = []
    for label in np.unique(np.concatenate([labels[r, c] for r, c in on_border])):
        jr, jc = np.nonzero(labels == label)
        pts = np.column_stack([jc + x, jr + y]).astype(np.float64)
        centre = pts.mean(axis=0)
        for p, (region, own) in zip(entries, reach, strict=True):
            far = float(np.sqrt(np.max(np.sum((pts - p) ** 2, axis=1))))
            if math.dist(centre, p) < 0.5 * region and far < own:
                drop.append(label)
                break
    if not drop:
        return jaws
    return cv2.bitwise_and(jaws, (~np.isin(labels, drop)).view(np.uint8))


def _without_specks(jaws: np.ndarray, groups: Sequence[_JawGroup]) -> np.ndarray:
    """Jaws less the groups smaller than a tenth of the largest (misclassified specks)."""
    largest = max(g.area for g in groups)
    out = np.zeros_like(jaws)
    for g in groups:
        if g.area >= 0.1 * largest:
            out[g.rows, g.cols] = 1
    return out


def _region_instruments(frame: _Frame, pixels: np.ndarray, box: tuple[int, int, int, int],
                        runs: list[_Run]) -> list[Instrument]:  # fmt: skip
    """The instruments of one region (its 0/1 crop ``pixels`` at ``box``): one, or several
    when the evidence for touching tools holds (module docstring)."""
    x, y, w, h = box
    roles = cv2.multiply(cv2.LUT(frame.mask[y : y + h, x : x + w], frame.roles), pixels)
    shaft, jaws = (roles == _SHAFT).view(np.uint8), (roles == _TIP).view(np.uint8)
    if not jaws.any() and not shaft.any():
        shaft = pixels  # no class roles: the whole region is shaft (class-blind rules)
    jaws = _without_entry_jaws(pixels, jaws, runs, x, y)
    base = _Part(x, y, pixels, shaft, jaws, None)
    groups: list[_JawGroup] = []
    jaw_box = _sub_box(jaws)
    if (
        jaw_box is not None
        and len(cv2.findContours(jaw_box[2], cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]) > 1
    ):
        groups = _jaw_groups(jaws)
    entries = [r for r in runs if r.count >= _MIN_ENTRY_PX and r.tip_fraction < 0.5]
    jaw_min = _jaw_min(groups, frame.params)
    if len(entries) >= 2 or sum(g.area >= jaw_min for g in groups) >= 2:
        parts = _split(frame, base, entries, groups)
        if parts is not None:
            return [_instrument(frame, part) for part in parts]
    if groups:
        base.jaws = _without_specks(jaws, groups)
    base.run = _entry_run(runs, base)
    return [_instrument(frame, base, box, cv2.countNonZero(pixels))]


def extract_instruments(
    mask: np.ndarray, confidence: np.ndarray | None = None, params: PoseParams | None = None
) -> list[Instrument]:
    """Instruments (untracked, ``track_id=-1``) in a uint8 class-id mask, largest first."""
    params = params or PoseParams()
    if mask.ndim != 2:
        raise ValueError(f"mask must be HxW class ids, got shape {mask.shape}")
    if mask.dtype != np.uint8:  # OpenCV's look-up table and histogram count uint8 class ids
        if mask.size and (mask.min() < 0 or mask.max() > 255):
            raise ValueError(f"class ids must lie in 0..255, got {mask.min()}..{mask.max()}")
        mask = mask.astype(np.uint8)
    if mask.size == 0:
        return []
    mask = np.ascontiguousarray(mask)
    rows, cols = _perimeter(*mask.shape)
    roles = _role_table(params.instrument_classes, params.shaft_classes, params.tip_classes)
    frame = _Frame(mask, confidence, roles, params, rows, cols)
    candidate = cv2.LUT(mask, roles) > 0
    class_groups = [candidate] if params.merge_classes else [mask == c for c in np.unique(mask[candidate])]
    border_tip = roles[mask[rows, cols]] == _TIP
    found: list[Instrument] = []
    for group in class_groups:
        count, labels = cv2.connectedComponents(group.view(np.uint8), connectivity=8)
        if count < 2:
            continue
        boxes = _component_boxes(group.view(np.uint8), labels, count)
        border_labels = labels[rows, cols]
        for label in range(1, count):
            x, y, w, h = boxes[label]
            if w * h < params.min_area_px:
                continue
            # work on the bounding box only: cost per region ~ its box, not the whole frame
            pixels = (labels[y : y + h, x : x + w] == label).view(np.uint8)
            if cv2.countNonZero(pixels) < params.min_area_px:
                continue
            runs = _border_runs(border_labels == label, border_tip, rows, cols)
            found.extend(_region_instruments(frame, pixels, (x, y, w, h), runs))
    found.sort(key=lambda inst: inst.area_px, reverse=True)
    return found


def reported_instruments(instruments: Sequence, score_threshold: float) -> list:
    """The instruments that are published (node, cct-bag): score at least ``score_threshold``."""
    return [inst for inst in instruments if inst.score >= score_threshold]


# ---------------------------------------------------------------------------- tracking
@dataclass
class _Track:
    track_id: int
    centroid: Point
    axis: Point
    entry: Point
    tip: Point
    area: int
    tip_visible: bool
    missed: int = 0
    overruled: int = 0  # consecutive frames whose visible jaws were turned back

    def follow(self, inst: Instrument) -> None:
        self.centroid, self.axis, self.entry, self.tip, self.area, self.tip_visible = _track_fields(inst)
        self.missed = 0


def _track_fields(inst: Instrument) -> tuple[Point, Point, Point, Point, int, bool]:
    return inst.centroid, inst.axis, inst.entry, inst.tip, inst.area_px, inst.tip_visible


def _ends_distance(inst: Instrument, track: _Track) -> float:
    """Mean distance between the instrument's ends (entry, tip) and the track's, in either order."""
    same = math.dist(inst.entry, track.entry) + math.dist(inst.tip, track.tip)
    swapped = math.dist(inst.entry, track.tip) + math.dist(inst.tip, track.entry)
    return 0.5 * min(same, swapped)


def _match_cost(inst: Instrument, track: _Track, max_distance: float) -> float | None:
    """Centroid plus ends distance of a possible match (module docstring); None: not a match."""
    centroids = math.dist(inst.centroid, track.centroid)
    if centroids > max_distance:
        return None
    if max(inst.area_px, track.area) > _MAX_AREA_RATIO * max(min(inst.area_px, track.area), 1):
        return None
    ends = _ends_distance(inst, track)
    return None if ends > max_distance else centroids + ends


def _keep_sense(inst: Instrument, track: _Track) -> Instrument:
    """Turn back an instrument whose axis turned against its track's (module docstring)."""
    if inst.axis[0] * track.axis[0] + inst.axis[1] * track.axis[1] >= _FLIP_COS:
        return inst
    tip_to_entry = math.dist(inst.tip, track.entry)
    if tip_to_entry >= math.dist(inst.entry, track.entry):
        return inst
    swapped = tip_to_entry < math.dist(inst.tip, track.tip) and math.dist(inst.entry, track.tip) < math.dist(
        inst.entry, track.entry
    )
    if inst.tip_visible and not (swapped and track.overruled < _MAX_OVERRULED):
        return inst
    return replace(
        inst,
        axis=(-inst.axis[0], -inst.axis[1]),
        tip=inst.entry,
        entry=inst.tip,
        tip_visible=inst.tip_visible and track.tip_visible,
    )


@dataclass
class InstrumentTracker:
    """Keeps instrument identities and orientation across frames (module docstring)."""

    params: PoseParams = field(default_factory=PoseParams)
    _tracks: list[_Track] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def reset(self) -> None:
        """Forget all tracks (e.g. after a camera switch); ids keep counting up, never reused."""
        self._tracks.clear()

    def update(self, instruments: Sequence[Instrument]) -> list[Instrument]:
        """Return ``instruments`` with ``track_id`` set; advance every track's missed count."""
        limit = self.params.max_match_distance_px
        pairs = sorted(
            (cost, i, t)
            for i, inst in enumerate(instruments)
            for t, tr in enumerate(self._tracks)
            if (cost := _match_cost(inst, tr, limit)) is not None
        )
        assigned: dict[int, int] = {}
        used_tracks: set[int] = set()
        for _, i, t in pairs:
            if i not in assigned and t not in used_tracks:
                assigned[i] = t
                used_tracks.add(t)
        out: list[Instrument] = []
        for i, inst in enumerate(instruments):
            if i in assigned:
                track = self._tracks[assigned[i]]
                kept = _keep_sense(inst, track)
                track.overruled = track.overruled + 1 if kept is not inst and inst.tip_visible else 0
                inst = kept
            else:
                track = _Track(next(self._ids), *_track_fields(inst))
                self._tracks.append(track)
                used_tracks.add(len(self._tracks) - 1)
            track.follow(inst)
            out.append(replace(inst, track_id=track.track_id))
        for t, track in enumerate(self._tracks):
            if t not in used_tracks:
                track.missed += 1
        self._tracks = [tr for tr in self._tracks if tr.missed <= self.params.max_missed_frames]
        return out
