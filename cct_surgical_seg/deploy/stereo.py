"""Stereo instrument poses: a rectified camera pair, left/right matching and triangulation in metres.

Inputs are **rectified** images, the ones the CameraInfo ``P`` matrices describe: feed
``image_rect`` / ``image_rect_color`` (``stereo_image_proc`` output, or a driver that rectifies
on board), never the raw images - on raw images rows are not epipolar lines and ``P`` does not
apply. ROS stereo drivers publish a rectified pair as two CameraInfos whose ``P`` share fx, fy,
cx, cy and differ only in ``Tx = P[0, 3]``: 0 for the left camera and ``-fx * B`` for the right
one (B: the baseline in metres). :class:`StereoCamera` checks exactly that and triangulates:
``Z = fx * B / d`` with the disparity ``d = x_left - x_right``, in the left optical frame
(x right, y down, z forward).

Why sub-pixel matching: the depth error is ``Z^2 / (fx * B)`` per pixel of disparity, about
5 mm/px at 100 mm for a 457 px focal length and a 4.5 mm endoscope baseline, while the tips
of two independently segmented views disagree by a pixel or more. So the disparity of each tip
is refined by normalised cross-correlation (``cv2.matchTemplate`` TM_CCOEFF_NORMED) of a patch
around the left tip along the same row of the right image, with a parabola through the peak.
The template is weighted by the instrument mask (dilated a little so the silhouette edge
counts) times a Gaussian about the tip: the tissue behind a tip, and the wrist and shaft,
which usually lie nearer the lens than the tip, would pull the match towards their depth. On
the simulator with exact 2D tips this gives ~1.9 mm median 3D tip error, mostly a residual
~0.25 px near bias of the grasp point between open jaws; end to end the 2D tip of the
segmentation dominates (test/deploy/test_deploy_stereo.py prints both).

Two modes (:class:`StereoStats` counts what happened to each left instrument):

* :func:`stereo_instruments` (both views segmented in one batched network call,
  ``SegmentationPipeline.segment_views``): each left instrument is matched to a right one by
  the epipolar constraint - same rows, and shaft lines whose disparity at the tip's row lies
  within the depth range - and class and 2D axis similarity (:func:`match_instruments`);
  that disparity seeds a search of +- ``search_margin_px`` (then the whole range).
* :func:`epipolar_instruments` (left view segmented only, half the network cost): the tip
  disparity comes from the same search over the whole depth range.

The 3D shaft axis, towards the tip, comes from two points of the left shaft line triangulated
by the same row search, kept in the plane through the left camera centre and that line
(``stereo_axis="points"``, both modes), or, with both views segmented, from the intersection
of the two planes through each camera centre and that view's 2D shaft line (``"planes"``).
The planes are exact for exact 2D lines, but the two planes meet at only ~B/Z (~3 deg) so a
fraction of a degree of 2D line error turns the axis by several degrees: on the simulator
with the demo model the points give 2-3 deg median error, the planes ~6 deg. Lines nearly
parallel to the rows (the baseline) leave the depth along the shaft unobservable to both;
there the axis lies in the left plane, perpendicular to the tip's viewing ray, and
``axis_reliable`` is False.

An unmatched left instrument (or one whose search finds no clear peak) gets no 3D pose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from cct_surgical_seg.deploy.pipeline import FrameResult
from cct_surgical_seg.deploy.poses import Instrument

Vec3 = tuple[float, float, float]


# ---------------------------------------------------------------------------- camera pair
@dataclass(frozen=True)
class StereoCamera:
    """A rectified, horizontally displaced camera pair (the right camera at +``baseline_m`` on x)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float  # left principal point
    cy: float
    baseline_m: float
    cx_right: float  # equal to cx within the validation tolerance; kept so d is exact

    @classmethod
    def from_projections(
        cls,
        p_left: Any,
        p_right: Any,
        size_left: tuple[int, int],
        size_right: tuple[int, int],
        tolerance_px: float = 0.01,
    ) -> StereoCamera:
        """The pair of two 3x4 ``P`` (row-major 12 or 3x4) and ``(width, height)`` sizes.

        Raises ``ValueError`` (one line) for anything but a rectified horizontal pair.
        """
        pl, pr = _projection(p_left, "left"), _projection(p_right, "right")
        if tuple(size_left) != tuple(size_right):
            raise ValueError(f"stereo: left and right image sizes differ: {size_left} vs {size_right}")
        if abs(pl[0, 3]) > 1e-9 * max(1.0, pl[0, 0]) or pl[1, 3] != 0 or pl[2, 3] != 0:
            raise ValueError(
                f"stereo: left P must have Tx = Ty = 0 (P[0,3]={pl[0, 3]}, P[1,3]={pl[1, 3]}); "
                "are left and right swapped?"
            )
        if pr[1, 3] != 0 or pr[2, 3] != 0:
            raise ValueError(
                f"stereo: right P has Ty={pr[1, 3]}, Tz={pr[2, 3]}: only horizontal pairs are supported"
            )
        for name, (i, j) in (("fx", (0, 0)), ("fy", (1, 1)), ("cx", (0, 2)), ("cy", (1, 2))):
            if abs(pl[i, j] - pr[i, j]) > tolerance_px:
                raise ValueError(
                    f"stereo: left and right P differ in {name} ({pl[i, j]} vs {pr[i, j]}): "
                    "not a rectified pair"
                )
        if pl[0, 0] <= 0 or pl[1, 1] <= 0:
            raise ValueError(f"stereo: focal lengths must be > 0, got fx={pl[0, 0]}, fy={pl[1, 1]}")
        if not pr[0, 3] < 0:
            raise ValueError(
                f"stereo: right P[0,3] must be -fx*B < 0, got {pr[0, 3]}; are left and right swapped?"
            )
        width, height = (int(v) for v in size_left)
        return cls(
            width=width,
            height=height,
            fx=float(pl[0, 0]),
            fy=float(pl[1, 1]),
            cx=float(pl[0, 2]),
            cy=float(pl[1, 2]),
            baseline_m=float(-pr[0, 3] / pr[0, 0]),
            cx_right=float(pr[0, 2]),
        )

    @classmethod
    def from_models(cls, left: Any, right: Any, tolerance_px: float = 0.01) -> StereoCamera:
        """The pair of two validated ``messages.camera.CameraModel`` (which carry ``P``)."""
        for name, model in (("left", left), ("right", right)):
            if getattr(model, "P", None) is None:
                raise ValueError(f"stereo: the {name} camera model has no projection matrix P")
        return cls.from_projections(
            left.P, right.P, (left.width, left.height), (right.width, right.height), tolerance_px
        )

    @property
    def f(self) -> float:
        return self.fx

    @property
    def c(self) -> tuple[float, float]:
        return self.cx, self.cy

    def projection(self, eye: int) -> np.ndarray:
        """The 3x4 P of ``eye`` (0 left, 1 right), as the CameraInfo gives it."""
        cx, tx = (self.cx, 0.0) if eye == 0 else (self.cx_right, -self.fx * self.baseline_m)
        return np.array([[self.fx, 0.0, cx, tx], [0.0, self.fy, self.cy, 0.0], [0.0, 0.0, 1.0, 0.0]])

    def disparity_of_depth(self, z_m: Any) -> Any:
        """Disparity (px, x_left - x_right) of a point at depth ``z_m``."""
        return self.fx * self.baseline_m / np.asarray(z_m, np.float64) + (self.cx - self.cx_right)

    def triangulate(self, xl: Any, yl: Any, xr: Any) -> np.ndarray:
        """Left/right pixel coordinates (scalars or arrays) -> xyz (..., 3), metres, left frame.

        A non-positive disparity (a point at or beyond infinity) gives non-finite values.
        """
        xl, yl, xr = (np.asarray(v, np.float64) for v in (xl, yl, xr))
        d = (xl - self.cx) - (xr - self.cx_right)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(d > 0, self.fx * self.baseline_m / d, np.inf)
        return np.stack([(xl - self.cx) * z / self.fx, (yl - self.cy) * z / self.fy, z], axis=-1)

    def depth_std(self, z_m: Any, disparity_std_px: Any = 1.0) -> Any:
        """Depth standard deviation (m) at ``z_m`` for a disparity error of ``disparity_std_px``."""
        z = np.asarray(z_m, np.float64)
        return z * z / (self.fx * self.baseline_m) * np.asarray(disparity_std_px, np.float64)

    def covariance(self, xyz: Any, pixel_std_px: float, disparity_std_px: float) -> np.ndarray:
        """3x3 covariance (m^2) of a triangulated point from independent errors of the left pixel
        (``pixel_std_px`` in x and y) and of the disparity (first-order propagation)."""
        x, y, z = (float(v) for v in xyz)
        d = self.fx * self.baseline_m / z
        jacobian = np.array([[z / self.fx, 0.0, -x / d], [0.0, z / self.fy, -y / d], [0.0, 0.0, -z / d]])
        sigma = np.diag([pixel_std_px**2, pixel_std_px**2, disparity_std_px**2])
        return jacobian @ sigma @ jacobian.T

    def axis_from_lines(
        self,
        point_l: Sequence[float],
        dir_l: Sequence[float],
        point_r: Sequence[float],
        dir_r: Sequence[float],
    ) -> tuple[np.ndarray, float]:
        """3D direction of a line seen as 2D lines in both views, and the sine of the angle
        between the two back-projected planes (small = ill-conditioned: near-epipolar lines).

        The result is a unit vector with the sign of ``dir_l`` (its projection near
        ``point_l`` points along ``dir_l``).
        """
        n_l = self.plane_normal(point_l, dir_l, eye=0)
        n_r = self.plane_normal(point_r, dir_r, eye=1)
        axis = np.cross(n_l, n_r)
        sine = float(np.linalg.norm(axis))
        if sine < 1e-12:
            return np.zeros(3), 0.0
        return self.orient(axis / sine, point_l, dir_l), sine

    def plane_normal(self, point: Sequence[float], direction: Sequence[float], eye: int = 0) -> np.ndarray:
        """Unit normal of the plane through the centre of camera ``eye`` and its image line
        (point, direction). Both cameras share the orientation, so normals compare directly."""
        cx = self.cx if eye == 0 else self.cx_right
        ray_a = np.array([(point[0] - cx) / self.fx, (point[1] - self.cy) / self.fy, 1.0])
        ray_b = ray_a + np.array([direction[0] / self.fx, direction[1] / self.fy, 0.0])
        normal = np.cross(ray_a, ray_b)
        return normal / np.linalg.norm(normal)

    def orient(self, axis: np.ndarray, point: Sequence[float], direction: Sequence[float]) -> np.ndarray:
        """``axis`` or ``-axis``, whichever moves the left projection of ``point`` along ``direction``."""
        u, v = (point[0] - self.cx) / self.fx, (point[1] - self.cy) / self.fy
        image_dir = np.array([self.fx * (axis[0] - u * axis[2]), self.fy * (axis[1] - v * axis[2])])
        return -axis if float(image_dir @ np.asarray(direction, np.float64)) < 0 else axis


def _projection(p: Any, name: str) -> np.ndarray:
    arr = np.asarray(p, np.float64)
    if arr.size != 12:
        raise ValueError(f"stereo: {name} P must have 12 values (3x4), got {arr.size}")
    arr = arr.reshape(3, 4)
    if not np.isfinite(arr).all():
        raise ValueError(f"stereo: {name} P holds NaN or infinity")
    return arr


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True)
class StereoParams:
    """Knobs of matching and disparity refinement."""

    #: tips of a near-horizontal shaft lie on rows this close in the two views (px)
    row_tolerance_px: float = 32.0
    #: the row spans of a match share at least this fraction of the shorter one
    min_row_overlap: float = 0.5
    #: depth range of instruments (m): bounds the disparity search
    min_depth_m: float = 0.03
    max_depth_m: float = 0.25
    #: 2D shaft axes of a match differ by at most this (deg)
    max_axis_angle_deg: float = 30.0
    #: half size of the square template around the left tip (px)
    template_half_px: int = 12
    #: template pixels are weighted by a Gaussian of this sigma about the tip (px; 0: flat)
    template_sigma_px: float = 4.0
    #: the refined disparity is searched within +- this of the tips' disparity (px)
    search_margin_px: int = 8
    #: instrument mask dilation around the template (px): keeps the silhouette edge in the match
    mask_dilate_px: int = 2
    #: a correlation peak below this is not trusted
    min_peak_score: float = 0.5
    #: standard deviations behind ``tip_std_m``: the left tip's position (the segmentation's
    #: tip error: raise it for a weak model), the refined and the coarse disparity (px)
    tip_pixel_std_px: float = 2.0
    refined_disparity_std_px: float = 0.4
    coarse_disparity_std_px: float = 2.0
    #: stereo_instruments' shaft axis: "planes" (two back-projected 2D shaft lines; shaft
    #: points when the planes meet at less than ``min_plane_angle_deg``) or "points" (always
    #: two shaft points triangulated by row searches, as the epipolar mode does)
    stereo_axis: str = "points"
    min_plane_angle_deg: float = 0.5
    #: shaft points for the axis: one this far / 2 behind the tip's foot on the shaft line, the
    #: other a quarter of the way from the entry; shafts shorter than twice this get no points
    axis_point_px: float = 40.0

    def __post_init__(self) -> None:
        if self.stereo_axis not in ("planes", "points"):
            raise ValueError(f"stereo_axis must be 'planes' or 'points', got {self.stereo_axis!r}")
        if not 0 < self.min_depth_m < self.max_depth_m:
            raise ValueError(
                f"need 0 < min_depth_m < max_depth_m, got {self.min_depth_m}, {self.max_depth_m}"
            )
        if self.template_half_px < 3 or self.search_margin_px < 1:
            raise ValueError("template_half_px must be >= 3 and search_margin_px >= 1")


@dataclass
class StereoStats:
    """Counters over calls (diagnostics): what happened to each left instrument."""

    matched: int = 0  # got a 3D pose
    unmatched: int = 0  # no right partner / no disparity: no 3D pose
    refined: int = 0  # of the matched: sub-pixel template match used
    coarse: int = 0  # of the matched: template match failed, the tips' disparity used

    def as_dict(self) -> dict[str, int]:
        return {
            "matched": self.matched,
            "unmatched": self.unmatched,
            "refined": self.refined,
            "coarse": self.coarse,
        }


@dataclass(frozen=True)
class Instrument3D:
    """One instrument's tip and shaft direction in metres, in the left camera's optical frame."""

    track_id: int
    class_id: int
    score: float
    tip_visible: bool
    tip_xyz: Vec3  # metres
    axis_xyz: Vec3  # unit shaft direction towards the tip
    tip_std_m: Vec3  # standard deviations of tip_xyz (sqrt of tip_cov's diagonal)
    disparity_px: float  # of the tip, x_left - x_right
    left: Instrument  # the 2D instrument in the left view
    right: Instrument | None = None  # its match in the right view (None: epipolar mode)
    tip_cov: tuple[float, ...] = field(default=(0.0,) * 9)  # 3x3 row-major, m^2
    refined: bool = True  # sub-pixel template match; False: coarse tips' disparity
    axis_reliable: bool = True  # False: near-epipolar shaft, axis assumed fronto-parallel
    match_score: float = 0.0  # correlation peak of the template match (0 when not refined)

    def to_dict(self) -> dict[str, object]:
        return {
            "track_id": self.track_id,
            "class_id": self.class_id,
            "score": self.score,
            "tip_visible": self.tip_visible,
            "tip_xyz": list(self.tip_xyz),
            "axis_xyz": list(self.axis_xyz),
            "tip_std_m": list(self.tip_std_m),
            "disparity_px": self.disparity_px,
            "refined": self.refined,
            "axis_reliable": self.axis_reliable,
            "match_score": self.match_score,
        }


# ---------------------------------------------------------------------------- row search
@dataclass(frozen=True)
class RowMatch:
    """A sub-pixel disparity (x_left - x_right, px) and its correlation peak."""

    disparity_px: float
    score: float


def match_along_row(
    left_rgb: np.ndarray,
    right_rgb: np.ndarray,
    point: Sequence[float],
    disparities: tuple[int, int],
    half: int,
    mask: np.ndarray | None = None,
    sigma_px: float = 0.0,
) -> RowMatch | None:
    """Disparity of the left patch centred at ``point`` (rounded) along the same right row.

    ``disparities`` = (lowest, highest) whole-pixel disparity searched. The template's pixels
    are weighted by ``mask`` (the left image's instrument mask, uint8 0/1, or None) times a
    Gaussian of ``sigma_px`` about the centre (0: flat), so the match follows the instrument at
    the point rather than the tissue behind it or the parts of the shaft farther off. The peak
    of TM_CCOEFF_NORMED is refined by a parabola through it and its neighbours; a peak at either
    end of the searched range (the true one lies outside) or on a flat response gives None.
    """
    height, width = left_rgb.shape[:2]
    xi, yi = round(float(point[0])), round(float(point[1]))
    half = min(int(half), xi, yi, width - 1 - xi, height - 1 - yi)
    if half < 3:
        return None
    x0 = max(0, xi - int(disparities[1]) - half)
    x1 = min(width, xi - int(disparities[0]) + half + 1)
    if x1 - x0 < 2 * half + 3:  # fewer than three positions: no bracketed peak
        return None
    rows, cols = slice(yi - half, yi + half + 1), slice(xi - half, xi + half + 1)
    weights = _weights(None if mask is None else mask[rows, cols], half, sigma_px)
    strip, template = right_rgb[rows, x0:x1], left_rgb[rows, cols]
    response = cv2.matchTemplate(strip, template, cv2.TM_CCOEFF_NORMED, mask=weights)[0]
    response = np.nan_to_num(response, nan=-1.0, posinf=-1.0, neginf=-1.0)
    k = int(np.argmax(response))
    if k == 0 or k == response.size - 1:
        return None
    a, b, c = (float(v) for v in response[k - 1 : k + 2])
    curvature = a - 2.0 * b + c
    if curvature >= 0:
        return None
    offset = 0.5 * (a - c) / curvature
    return RowMatch(float(xi - (x0 + k + offset + half)), b)


def _weights(patch_mask: np.ndarray | None, half: int, sigma_px: float) -> np.ndarray | None:
    """float32 template weights: instrument pixels (when enough) times a centred Gaussian."""
    if patch_mask is not None and cv2.countNonZero(patch_mask) < 4 * half:
        patch_mask = None  # too few instrument pixels to stand alone: use the whole patch
    if sigma_px <= 0:
        return patch_mask
    g = cv2.getGaussianKernel(2 * half + 1, sigma_px, cv2.CV_32F)
    weights = g @ g.T
    if patch_mask is not None:
        weights *= patch_mask
    return weights / float(weights.max())


def _template_mask(mask: np.ndarray, dilate_px: int) -> np.ndarray:
    """uint8 0/1 instrument mask of a class mask, grown by ``dilate_px``."""
    binary = (mask > 0).view(np.uint8)
    if dilate_px <= 0:
        return binary
    size = 2 * dilate_px + 1
    return cv2.dilate(binary, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))


def _disparity_range(camera: StereoCamera, params: StereoParams) -> tuple[int, int]:
    near = float(camera.disparity_of_depth(params.min_depth_m))
    far = float(camera.disparity_of_depth(params.max_depth_m))
    return math.floor(far) - 1, math.ceil(near) + 1


# ---------------------------------------------------------------------------- matching
def match_instruments(
    left: Sequence[Instrument], right: Sequence[Instrument], camera: StereoCamera, params: StereoParams
) -> dict[int, tuple[int, float]]:
    """Left index -> (right index, coarse disparity) of the left instruments seen on the right.

    In a rectified pair an instrument spans the same rows in both views and its shaft lines are
    shifted by the disparity. A pair must therefore have 2D shaft lines within
    ``max_axis_angle_deg`` (as lines: a tool touching no border may be oriented differently
    in the two views), overlapping row spans (``min_row_overlap`` of the shorter one) and
    a coarse disparity (:func:`_coarse_disparity`) within the depth range widened by
    ``search_margin_px``; for shafts near the horizontal, whose lines say little about the
    disparity, the tips' rows must also agree within ``row_tolerance_px``. Tips alone are a
    poor guide: each view's segmentation places its tip on its own, often tens of pixels
    apart along the tool. Among the valid pairs the lowest cost (line angle, missing row
    overlap, class or orientation disagreement) goes first; each instrument is used once.
    """
    d_far, d_near = _disparity_range(camera, params)
    slack = params.search_margin_px
    candidates: list[tuple[float, int, int, float]] = []
    for i, a in enumerate(left):
        for j, b in enumerate(right):
            cosine = float(np.dot(a.axis, b.axis))
            angle = math.degrees(math.acos(min(1.0, abs(cosine))))  # lines: the sense may differ
            overlap = _row_overlap(a.bbox, b.bbox)
            if angle > params.max_axis_angle_deg or overlap < params.min_row_overlap:
                continue
            shallow = min(abs(a.axis[1]), abs(b.axis[1])) < _MIN_LINE_SLOPE
            if shallow and abs(a.tip[1] - b.tip[1]) > params.row_tolerance_px:
                continue
            d = _coarse_disparity(a, b)
            if not d_far - slack <= d <= d_near + slack:
                continue
            cost = angle / params.max_axis_angle_deg + (1.0 - overlap)
            cost += (0.5 if a.class_id != b.class_id else 0.0) + (0.25 if cosine < 0 else 0.0)
            candidates.append((cost, i, j, d))
    pairs: dict[int, tuple[int, float]] = {}
    used: set[int] = set()
    for _, i, j, d in sorted(candidates):
        if i not in pairs and j not in used:
            pairs[i] = (j, d)
            used.add(j)
    return pairs


def _row_overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Shared rows of two boxes (x, y, w, h) as a fraction of the shorter one's height."""
    shared = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0.0, shared) / max(1, min(a[3], b[3]))


#: a shaft line steeper than this (|sin| of its angle to the rows) gives the coarse disparity
_MIN_LINE_SLOPE = math.sin(math.radians(20.0))


def _coarse_disparity(left: Instrument, right: Instrument) -> float:
    """Disparity of the two shaft lines at the left tip's row, or of the tips (shallow lines)."""
    y = left.tip[1]
    if min(abs(left.axis[1]), abs(right.axis[1])) < _MIN_LINE_SLOPE:
        return left.tip[0] - right.tip[0]
    x_left = left.entry[0] + (y - left.entry[1]) * left.axis[0] / left.axis[1]
    x_right = right.entry[0] + (y - right.entry[1]) * right.axis[0] / right.axis[1]
    return x_left - x_right


# ---------------------------------------------------------------------------- 3D poses
def stereo_instruments(
    left: FrameResult,
    right: FrameResult,
    left_rgb: np.ndarray,
    right_rgb: np.ndarray,
    camera: StereoCamera,
    params: StereoParams | None = None,
    stats: StereoStats | None = None,
) -> list[Instrument3D]:
    """3D poses of the left instruments matched in the right view (module docstring).

    ``left``/``right``: ``segment_views`` results of the rectified pair ``left_rgb``/``right_rgb``.
    Unmatched left instruments get no pose and count as ``stats.unmatched``.
    """
    params = params or StereoParams()
    stats = stats if stats is not None else StereoStats()
    mask = _template_mask(left.mask, params.mask_dilate_px)
    full = _disparity_range(camera, params)
    pairs = match_instruments(left.instruments, right.instruments, camera, params)
    poses: list[Instrument3D] = []
    for i, inst in enumerate(left.instruments):
        if i not in pairs:
            stats.unmatched += 1
            continue
        j, coarse = pairs[i]
        partner = right.instruments[j]
        found = _refine(left_rgb, right_rgb, inst.tip, coarse, mask, full, params)
        disparity = coarse if found is None else found.disparity_px
        tip = camera.triangulate(inst.tip[0], inst.tip[1], inst.tip[0] - disparity)
        if not np.isfinite(tip).all():
            stats.unmatched += 1
            continue
        views = (left_rgb, right_rgb, mask, full)
        axis, reliable = _stereo_axis(camera, inst, partner, tip, views, params)
        poses.append(_pose(inst, partner, tip, axis, reliable, disparity, found, camera, params, stats))
    return poses


def epipolar_instruments(
    left: FrameResult,
    left_rgb: np.ndarray,
    right_rgb: np.ndarray,
    camera: StereoCamera,
    params: StereoParams | None = None,
    stats: StereoStats | None = None,
) -> list[Instrument3D]:
    """3D poses from the left segmentation alone: each tip's disparity is searched over the
    whole depth range of the right image (no right segmentation, so half the network cost).
    A tip without a clear correlation peak gets no pose (``stats.unmatched``)."""
    params = params or StereoParams()
    stats = stats if stats is not None else StereoStats()
    mask = _template_mask(left.mask, params.mask_dilate_px)
    full = _disparity_range(camera, params)
    poses: list[Instrument3D] = []
    for inst in left.instruments:
        found = _search(left_rgb, right_rgb, inst.tip, full, mask, params)
        tip = (
            None
            if found is None
            else camera.triangulate(inst.tip[0], inst.tip[1], inst.tip[0] - found.disparity_px)
        )
        if tip is None or not np.isfinite(tip).all():
            stats.unmatched += 1
            continue
        axis = _axis_from_points(camera, inst, (left_rgb, right_rgb, mask, full), params)
        reliable = axis is not None
        if axis is None:
            axis = _fronto_parallel_axis(camera, inst, tip)
        poses.append(_pose(inst, None, tip, axis, reliable, found.disparity_px, found, camera, params, stats))
    return poses


def _refine(
    left_rgb: np.ndarray,
    right_rgb: np.ndarray,
    point: Sequence[float],
    coarse: float,
    mask: np.ndarray,
    full: tuple[int, int],
    params: StereoParams,
) -> RowMatch | None:
    """The row search within ``search_margin_px`` of the coarse disparity, else over ``full``."""
    margin = params.search_margin_px
    near = (math.floor(coarse) - margin, math.ceil(coarse) + margin)
    return _search(left_rgb, right_rgb, point, near, mask, params) or _search(
        left_rgb, right_rgb, point, full, mask, params
    )


def _search(
    left_rgb: np.ndarray,
    right_rgb: np.ndarray,
    point: Sequence[float],
    window: tuple[int, int],
    mask: np.ndarray,
    params: StereoParams,
) -> RowMatch | None:
    """``match_along_row`` with the parameters' template, None below ``min_peak_score``."""
    found = match_along_row(
        left_rgb, right_rgb, point, window, params.template_half_px, mask, params.template_sigma_px
    )
    return found if found is not None and found.score >= params.min_peak_score else None


def _pose(
    inst: Instrument,
    partner: Instrument | None,
    tip: np.ndarray,
    axis: np.ndarray,
    reliable: bool,
    disparity: float,
    found: RowMatch | None,
    camera: StereoCamera,
    params: StereoParams,
    stats: StereoStats,
) -> Instrument3D:
    """Assemble one Instrument3D and count it."""
    stats.matched += 1
    if found is None:
        stats.coarse += 1
    else:
        stats.refined += 1
    d_std = params.coarse_disparity_std_px if found is None else params.refined_disparity_std_px
    cov = camera.covariance(tip, params.tip_pixel_std_px, d_std)
    visible = bool(inst.tip_visible and (partner is None or partner.tip_visible))
    return Instrument3D(
        track_id=inst.track_id,
        class_id=inst.class_id,
        score=inst.score,
        tip_visible=visible,
        tip_xyz=_vec3(tip),
        axis_xyz=_vec3(axis),
        tip_std_m=_vec3(np.sqrt(np.diag(cov))),
        disparity_px=float(disparity),
        left=inst,
        right=partner,
        tip_cov=tuple(float(v) for v in cov.reshape(-1)),
        refined=found is not None,
        axis_reliable=reliable,
        match_score=0.0 if found is None else found.score,
    )


def _vec3(v: np.ndarray) -> Vec3:
    return float(v[0]), float(v[1]), float(v[2])


def _fronto_parallel_axis(camera: StereoCamera, inst: Instrument, tip: np.ndarray) -> np.ndarray:
    """The direction in the left back-projected plane of the shaft line perpendicular to the
    viewing ray of the tip: the best guess when depth along the shaft is unobservable."""
    normal = camera.plane_normal(inst.entry, inst.axis)
    axis = np.cross(normal, tip / np.linalg.norm(tip))
    axis /= np.linalg.norm(axis)
    return camera.orient(axis, inst.entry, inst.axis)


def _stereo_axis(
    camera: StereoCamera,
    inst: Instrument,
    partner: Instrument,
    tip: np.ndarray,
    views: _Views,
    params: StereoParams,
) -> tuple[np.ndarray, bool]:
    """The shaft axis of a matched pair by ``params.stereo_axis``, falling back to the other
    method, then to the fronto-parallel guess (``axis_reliable`` False)."""
    planes, sine = camera.axis_from_lines(inst.entry, inst.axis, partner.entry, partner.axis)
    planes_ok = sine >= math.sin(math.radians(params.min_plane_angle_deg))
    if params.stereo_axis == "planes" and planes_ok:
        return planes, True
    points = _axis_from_points(camera, inst, views, params)
    if points is not None:
        return points, True
    if planes_ok:
        return planes, True
    return _fronto_parallel_axis(camera, inst, tip), False


#: what the row searches need: left and right image, left template mask, full disparity range
_Views = tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]


def _on_mask(mask: np.ndarray, point: np.ndarray) -> bool:
    x, y = round(float(point[0])), round(float(point[1]))
    return bool(0 <= x < mask.shape[1] and 0 <= y < mask.shape[0] and mask[y, x])


def _axis_from_points(
    camera: StereoCamera, inst: Instrument, views: _Views, params: StereoParams
) -> np.ndarray | None:
    """Shaft direction from two points of the left shaft line, each triangulated by a row
    search and kept in the left plane of that line; None when the shaft is too short or a
    point is off the instrument or finds no peak.

    The near point starts half ``axis_point_px`` behind the tip's foot on the line and steps
    back by as much until it lies on the instrument: a bent wrist carries the tip off the
    shaft line."""
    left_rgb, right_rgb, mask, window = views
    axis2d = np.asarray(inst.axis, np.float64)
    entry = np.asarray(inst.entry, np.float64)
    length = float((np.asarray(inst.tip) - entry) @ axis2d)  # entry -> foot of the tip on the line
    if length < 2 * params.axis_point_px:
        return None
    far_at = max(params.axis_point_px / 2, 0.25 * length)
    steps = np.arange(
        length - params.axis_point_px / 2, far_at + params.axis_point_px, -params.axis_point_px / 2
    )
    near_at = next((t for t in steps if _on_mask(mask, entry + axis2d * t)), None)
    if near_at is None:
        return None
    points = []
    for p in (entry + axis2d * near_at, entry + axis2d * far_at):
        if not _on_mask(mask, p):
            return None
        found = _search(left_rgb, right_rgb, p, window, mask, params)
        if found is None:
            return None
        points.append(camera.triangulate(p[0], p[1], p[0] - found.disparity_px))
    direction = points[0] - points[1]
    normal = camera.plane_normal(inst.entry, inst.axis)
    direction -= normal * float(direction @ normal)
    norm = float(np.linalg.norm(direction))
    if not np.isfinite(norm) or norm < 1e-9:
        return None
    return camera.orient(direction / norm, inst.entry, inst.axis)
