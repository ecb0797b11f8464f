"""Articulated surgical instruments in 3D, their trajectories, and their rasterisation.

Why 3D: a segmentation or pose network trained on the simulator should see what a real
endoscope shows - perspective (shafts wider near the lens), foreshortened shafts seen nearly
end-on, wrists bent towards or away from the camera, jaws opening in any roll, tools crossing
and hiding each other - and the truth (tip, shaft axis, depth) should come from the same
geometry, so a second (stereo) camera can draw the very same state.

Conventions: metres, the left camera's optical frame (x right, y down, z forward). A tool is

* a trocar (remote-centre) point behind the lens plane, so always outside the view frustum;
* a shaft cylinder from the trocar to the wrist joint (radius 2.5-4 mm);
* a wrist joint (a ball) that bends the distal part by up to 60 deg (two angles: pitch, yaw);
* a short wrist segment ending at the jaw pivot;
* two tapered jaws (8-12 mm) opening symmetrically about the wrist direction (0..60 deg in
  all), in a plane turned by the roll angle about the wrist direction.

The grasp point - the tool's "tip" - is the midpoint of the two jaw tips.

Drawing: every part is a (possibly tapered) cylinder segment, whose silhouette is the convex
hull of its two projected end circles (exact for a cylinder, and right for end-on views too);
the ball is a circle about the view ray. Parts of all tools are painted farthest first
(painter's order by mean depth); the shaft is cut into short pieces so that order holds
along it. Each part is filled once into the image, class mask and instance mask, then shaded
with facets (Lambert from a light next to the lens, optional specular) so shafts look round.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

Z_NEAR = 0.008  # m: parts are clipped to lie beyond this depth
MAX_BEND = math.radians(60.0)
MAX_JAW_ANGLE = math.radians(60.0)
#: the smooth signals are shaped by powers (x -> x**p on 0..1) so that jaws are mostly nearly
#: closed and wrists mostly gently bent, with now and then a wide opening or a strong bend
JAW_POWER = 2.0
BEND_POWER = 3.0
TROCAR_CLEARANCE = 0.012  # m: a shaft axis keeps this far from the lens (the endoscope's radius)
SHIFT = 4  # fractional bits of the polygon vertices given to OpenCV
_RING = 16  # points per projected end circle
_LIGHT_OFFSET = math.radians(25.0)  # the light sits beside the lens: highlights are off-centre

CLASS_SHAFT = 1  # the class ids of scene.CLASS_SHAFT / CLASS_MANIPULATOR
CLASS_MANIPULATOR = 2


# ---------------------------------------------------------------------------- smooth signals
@dataclass(frozen=True)
class Motion:
    """A smooth scalar signal: centre + sum of a few sines with seeded frequencies and phases."""

    centre: float
    amplitudes: tuple[float, ...]
    freqs_hz: tuple[float, ...]
    phases: tuple[float, ...]

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        centre: float,
        spread: float,
        n: int = 3,
        freq_hz: tuple[float, float] = (0.04, 0.35),
    ) -> Motion:
        """``spread`` is the largest possible deviation from ``centre`` (all sines in phase)."""
        weights = rng.uniform(0.3, 1.0, n)
        weights = weights / weights.sum() * spread
        return cls(
            centre=centre,
            amplitudes=tuple(float(a) for a in weights),
            freqs_hz=tuple(float(f) for f in rng.uniform(*freq_hz, n)),
            phases=tuple(float(p) for p in rng.uniform(0, 2 * math.pi, n)),
        )

    def __call__(self, t: float) -> float:
        return self.centre + sum(
            a * math.sin(2 * math.pi * f * t + p)
            for a, f, p in zip(self.amplitudes, self.freqs_hz, self.phases, strict=True)
        )


# ---------------------------------------------------------------------------- 3D tool model
def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(math.sqrt(float(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])), 1e-12)


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of two 3-vectors (np.cross costs ~20 us of overhead per call)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def perpendicular_basis(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors completing the unit ``axis`` to a right-handed orthonormal frame."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = _unit(_cross(axis, helper))
    return e1, _cross(axis, e1)


def _rotate(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues: ``v`` turned by ``angle`` about the unit ``axis``."""
    c, s = math.cos(angle), math.sin(angle)
    return v * c + _cross(axis, v) * s + axis * float(np.dot(axis, v)) * (1.0 - c)


@dataclass(frozen=True)
class ToolShape:
    """Fixed dimensions of one instrument (metres)."""

    shaft_radius: float
    wrist_length: float
    jaw_length: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> ToolShape:
        return cls(
            shaft_radius=float(rng.uniform(0.0025, 0.004)),
            wrist_length=float(rng.uniform(0.004, 0.006)),
            jaw_length=float(rng.uniform(0.008, 0.012)),
        )

    @property
    def joint_radius(self) -> float:
        return 0.95 * self.shaft_radius

    @property
    def wrist_radius(self) -> float:
        return 0.85 * self.shaft_radius

    @property
    def jaw_radii(self) -> tuple[float, float]:
        """(base, tip) radius of a jaw's cone."""
        return 0.42 * self.shaft_radius, 0.2 * self.shaft_radius


@dataclass(frozen=True)
class ToolPose:
    """One instrument at one instant, in the left camera frame; the derived points are cached."""

    index: int
    shape: ToolShape
    trocar: tuple[float, float, float]
    wrist: tuple[float, float, float]  # the wrist joint, end of the shaft
    # the wrist bend as a 2D vector (rad) along the shaft frame's two normals: its direction is
    # where the distal part leans, its length (capped at MAX_BEND) the bend angle
    pitch: float
    yaw: float
    roll: float  # rad, jaw plane about the wrist direction
    jaw_opening: float  # 0 closed .. 1 open (MAX_JAW_ANGLE)

    @cached_property
    def wrist_point(self) -> np.ndarray:
        return np.asarray(self.wrist, dtype=np.float64)

    @cached_property
    def trocar_point(self) -> np.ndarray:
        return np.asarray(self.trocar, dtype=np.float64)

    @cached_property
    def shaft_axis(self) -> np.ndarray:
        """Unit vector along the shaft, from the trocar towards the tip."""
        return _unit(self.wrist_point - self.trocar_point)

    @cached_property
    def _shaft_frame(self) -> tuple[np.ndarray, np.ndarray]:
        """Normals of the shaft that turn smoothly with it: the minimal rotation of the camera's
        x and y axes onto the shaft (well defined because the shaft always points forward)."""
        a = self.shaft_axis
        z = np.array([0.0, 0.0, 1.0])
        v = _cross(z, a)
        s = float(np.linalg.norm(v))
        if s < 1e-12:
            return np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
        turn, angle = v / s, math.atan2(s, float(a[2]))
        return _rotate(np.array([1.0, 0.0, 0.0]), turn, angle), _rotate(
            np.array([0.0, 1.0, 0.0]), turn, angle
        )

    @property
    def bend(self) -> float:
        """Wrist bend (rad, 0..MAX_BEND): angle between the shaft and the wrist direction."""
        return min(math.hypot(self.pitch, self.yaw), MAX_BEND)

    @property
    def jaw_angle(self) -> float:
        """Full opening angle between the two jaws (rad)."""
        return self.jaw_opening * MAX_JAW_ANGLE

    @cached_property
    def _distal_frame(self) -> tuple[np.ndarray, np.ndarray]:
        """(wrist direction, jaw opening direction)."""
        a = self.shaft_axis
        e1, e2 = self._shaft_frame
        psi = math.atan2(self.yaw, self.pitch)
        towards = math.cos(psi) * e1 + math.sin(psi) * e2
        d2 = math.cos(self.bend) * a + math.sin(self.bend) * towards
        hinge = _cross(a, towards)  # the bend turns the shaft frame about this axis
        f1 = _rotate(e1, hinge, self.bend)
        f2 = _rotate(e2, hinge, self.bend)
        opening = math.cos(self.roll) * f1 + math.sin(self.roll) * f2
        return d2, _unit(opening - d2 * float(np.dot(opening, d2)))

    @property
    def distal_axis(self) -> np.ndarray:
        return self._distal_frame[0]

    @cached_property
    def jaw_pivot(self) -> np.ndarray:
        return self.wrist_point + self.shape.wrist_length * self.distal_axis

    @cached_property
    def jaw_bases(self) -> np.ndarray:
        """(2, 3) centres of the jaws' base circles, side by side across the opening plane."""
        o = self._distal_frame[1]
        off = 0.4 * self.shape.shaft_radius * o
        return np.stack([self.jaw_pivot + off, self.jaw_pivot - off])

    @cached_property
    def jaw_tips(self) -> np.ndarray:
        """(2, 3) jaw tip points (centres of their end circles)."""
        d2, o = self._distal_frame
        half = self.jaw_angle / 2.0
        length = self.shape.jaw_length
        dirs = [math.cos(half) * d2 + math.sin(half) * o, math.cos(half) * d2 - math.sin(half) * o]
        return np.stack([self.jaw_pivot + length * d for d in dirs])

    @cached_property
    def grasp_point(self) -> np.ndarray:
        """The tool's tip: the midpoint of the two jaw tips."""
        return self.jaw_tips.mean(axis=0)

    def visible_shaft_start(self) -> np.ndarray:
        """The shaft's near end: the trocar, or where the axis reaches Z_NEAR + radius."""
        start, a = self.trocar_point, self.shaft_axis
        z_min = Z_NEAR + self.shape.shaft_radius
        if start[2] >= z_min:
            return start
        s = (z_min - start[2]) / max(float(a[2]), 1e-9)
        return start + s * a


# ---------------------------------------------------------------------------- trajectories
def _keep_clear(trocar: np.ndarray, wrist: np.ndarray, clearance: float) -> np.ndarray:
    """Turn the shaft about the wrist so its axis passes at least ``clearance`` from the lens."""
    d = wrist - trocar
    s = float(np.clip(-np.dot(trocar, d) / max(float(np.dot(d, d)), 1e-12), 0.0, 1.0))
    closest = trocar + s * d
    dist = float(np.linalg.norm(closest))
    if dist >= clearance or s >= 1.0:
        return trocar
    side = closest if math.hypot(closest[0], closest[1]) > 1e-9 else trocar
    away = _unit(np.array([side[0], side[1], 0.0]))  # sideways: the trocar stays behind the lens
    # moving the trocar by x moves the closest point by about x * (1 - s)
    return trocar + away * (clearance - dist) / max(1.0 - s, 0.05)


@dataclass(frozen=True)
class ToolTrajectory:
    """Smooth, seeded motion of one instrument; ``pose(t)`` is a pure function of ``t``.

    The trocar sits behind the lens plane at a drifting azimuth about the optical axis (the side
    the shaft enters the image from) and lateral offset; the wrist is placed by its normalised
    image position (along / across the trocar's azimuth, in units of the image's half extent)
    and depth. ``along`` < 0 puts the wrist past the image centre, so shafts cross; large
    ``along`` / ``across`` takes the tip out of view; a small trocar offset gives shafts close
    to the optical axis, seen nearly end-on (strongly foreshortened) when the wrist is on the
    far side of the image centre.
    """

    index: int
    shape: ToolShape
    half_extent: float  # min(W, H) / 2 / f: the image's half extent in normalised coordinates
    azimuth: Motion
    trocar_offset: Motion
    trocar_depth: Motion
    along: Motion
    across: Motion
    depth: Motion
    pitch: Motion
    yaw: Motion
    jaw: Motion
    roll: Motion

    @classmethod
    def random(
        cls, rng: np.random.Generator, index: int, count: int, half_extent: float, first: float
    ) -> ToolTrajectory:
        """Tool ``index`` of ``count``: trocars spread evenly in azimuth from ``first`` (rad)."""
        sector = first + 2 * math.pi * index / count
        swing = math.radians(55 if count > 1 else 90)
        slow, quick = (0.015, 0.12), (0.05, 0.3)  # Hz: placement, and wrist / jaws
        return cls(
            index=index,
            shape=ToolShape.random(rng),
            half_extent=half_extent,
            azimuth=Motion.random(rng, sector, swing, freq_hz=slow),
            trocar_offset=Motion.random(rng, 0.1, 0.09, freq_hz=slow),
            trocar_depth=Motion.random(rng, -0.012, 0.008, freq_hz=slow),
            along=Motion.random(rng, 0.25, 1.35, freq_hz=slow),
            across=Motion.random(rng, 0.0, 1.0, freq_hz=slow),
            depth=Motion.random(rng, 0.09, 0.05, freq_hz=slow),
            pitch=Motion.random(rng, 0.0, math.radians(55), freq_hz=quick),
            yaw=Motion.random(rng, 0.0, math.radians(55), freq_hz=quick),
            jaw=Motion.random(rng, 0.3, 0.8, 2, quick),
            roll=Motion.random(rng, float(rng.uniform(0, 2 * math.pi)), math.pi / 2, freq_hz=quick),
        )

    def pose(self, t: float) -> ToolPose:
        phi = self.azimuth(t)
        side = np.array([math.cos(phi), math.sin(phi)])
        normal = np.array([-side[1], side[0]])
        z_w = float(np.clip(self.depth(t), 0.04, 0.135))
        xy = self.half_extent * (self.along(t) * side + self.across(t) * normal) * z_w
        wrist = np.array([xy[0], xy[1], z_w])
        rho = float(np.clip(self.trocar_offset(t), 0.02, 0.2))
        trocar = np.array([rho * side[0], rho * side[1], min(self.trocar_depth(t), -0.004)])
        trocar = _keep_clear(trocar, wrist, TROCAR_CLEARANCE)
        pitch, yaw = self.pitch(t), self.yaw(t)
        # bend' = MAX_BEND * (bend / MAX_BEND) ** BEND_POWER, in the direction of (pitch, yaw)
        bend = math.hypot(pitch, yaw)
        gain = (min(bend, MAX_BEND) / MAX_BEND) ** (BEND_POWER - 1.0)
        return ToolPose(
            index=self.index,
            shape=self.shape,
            trocar=tuple(float(v) for v in trocar),
            wrist=tuple(float(v) for v in wrist),
            pitch=pitch * gain,
            yaw=yaw * gain,
            roll=self.roll(t),
            jaw_opening=float(np.clip(self.jaw(t), 0.0, 1.0)) ** JAW_POWER,
        )


# ---------------------------------------------------------------------------- camera
@dataclass(frozen=True)
class PinholeCamera:
    """A pinhole camera whose centre is the left camera's centre moved by ``baseline`` along x:
    a point ``X`` of the left frame is ``X - [baseline, 0, 0]`` in this camera's frame."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    baseline: float = 0.0

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        out = np.array(points, dtype=np.float64)
        out[..., 0] -= self.baseline
        return out

    def project(self, points: np.ndarray) -> np.ndarray:
        """Pixels (..., 2) of left-frame points (..., 3) in front of the camera."""
        points = np.asarray(points, dtype=np.float64)
        z = np.maximum(points[..., 2], 1e-9)
        out = np.empty((*points.shape[:-1], 2))
        out[..., 0] = self.fx * (points[..., 0] - self.baseline) / z + self.cx
        out[..., 1] = self.fy * points[..., 1] / z + self.cy
        return out

    def contains(self, pixel: np.ndarray) -> bool:
        return bool(0 <= pixel[0] <= self.width - 1 and 0 <= pixel[1] <= self.height - 1)

    def ray_exit(self, start: np.ndarray, direction: np.ndarray) -> np.ndarray | None:
        """The farthest point of the ray ``start + s * direction`` (s >= 0) on the image
        rectangle [0, W-1] x [0, H-1], or None when the ray misses it (Liang-Barsky)."""
        lo, hi = 0.0, math.inf
        for k, size in ((0, self.width - 1.0), (1, self.height - 1.0)):
            if abs(direction[k]) < 1e-12:
                if not 0.0 <= start[k] <= size:
                    return None
                continue
            s0, s1 = (0.0 - start[k]) / direction[k], (size - start[k]) / direction[k]
            lo, hi = max(lo, min(s0, s1)), min(hi, max(s0, s1))
        if hi < lo or not math.isfinite(hi):
            return None
        end = start + hi * direction
        return np.array([min(max(end[0], 0.0), self.width - 1.0), min(max(end[1], 0.0), self.height - 1.0)])


@dataclass(frozen=True)
class ShaftProjection:
    """The projected shaft axis of one tool in one camera."""

    entry: np.ndarray  # pixel where the shaft axis enters the image (on its border)
    axis: np.ndarray  # 2D unit vector from the entry side towards the wrist
    wrist: np.ndarray  # pixel of the wrist joint
    entry_3d: np.ndarray  # left-frame point of the shaft axis that projects to ``entry``


def project_shaft(cam: PinholeCamera, pose: ToolPose) -> ShaftProjection:
    """Entry point, direction and wrist of the projected shaft axis.

    Going from the wrist back along the shaft, the projection runs along a 2D ray to infinity
    (the shaft reaches the lens plane behind which its trocar lies); the entry is where that
    ray leaves the image rectangle for the last time. Where the ray misses the image, the entry
    is the border point nearest the wrist's projection and ``entry_3d`` is the trocar.
    """
    w3, a3 = pose.wrist_point, pose.shaft_axis
    wrist = cam.project(w3)
    step = 0.25 * (cam.to_camera(w3)[2] - Z_NEAR) / max(float(a3[2]), 1e-9)
    back = cam.project(w3 - min(step, 0.02) * a3) - wrist
    norm = float(np.linalg.norm(back))
    if norm < 1e-9:  # exactly end-on: any direction will do
        back = wrist - np.array([cam.cx, cam.cy])
        norm = float(np.linalg.norm(back)) or 1.0
        back = back if norm > 1e-9 else np.array([1.0, 0.0])
    back = back / max(float(np.linalg.norm(back)), 1e-12)
    entry = cam.ray_exit(wrist, back)
    if entry is None:
        nearest = np.array(
            [min(max(wrist[0], 0.0), cam.width - 1.0), min(max(wrist[1], 0.0), cam.height - 1.0)]
        )
        return ShaftProjection(nearest, -back, wrist, pose.trocar_point.copy())
    return ShaftProjection(entry, -back, wrist, _unproject_on_line(cam, entry, w3, a3))


def _unproject_on_line(
    cam: PinholeCamera, pixel: np.ndarray, point: np.ndarray, axis: np.ndarray
) -> np.ndarray:
    """The point ``point - s * axis`` that projects to ``pixel`` (both image coordinates give a
    linear equation in s; the better conditioned one is used)."""
    p = cam.to_camera(point)
    best, s = 0.0, 0.0
    for k, f, c in ((0, cam.fx, cam.cx), (1, cam.fy, cam.cy)):
        u = pixel[k] - c
        denom = u * axis[2] - f * axis[k]
        if abs(denom) > abs(best):
            best, s = denom, (u * p[2] - f * p[k]) / denom
    return point - s * axis


# ---------------------------------------------------------------------------- parts
@dataclass(frozen=True)
class Part:
    """A cylinder segment ``a -> b`` (radii ``ra``, ``rb``) or, with ``ball``, a ball at ``a``."""

    tool: int
    cls: int
    a: np.ndarray
    b: np.ndarray
    ra: float
    rb: float
    facets: int
    ball: bool = False
    #: how far (m) the shading bands reach past ``a`` / ``b`` into the neighbouring shaft piece:
    #: they cover the end-disc bulge that the neighbour's silhouette paints in its base colour
    overlap: tuple[float, float] = (0.0, 0.0)

    @property
    def depth(self) -> float:
        return 0.5 * float(self.a[2] + self.b[2])


def tool_parts(pose: ToolPose, max_piece: float = 0.02) -> list[Part]:
    """Parts of one tool: shaft pieces (class 1), joint ball, wrist segment and jaws (class 2)."""
    shape, i = pose.shape, pose.index
    start, wrist = pose.visible_shaft_start(), pose.wrist_point
    r = shape.shaft_radius
    pieces = int(np.clip(math.ceil(float(np.linalg.norm(wrist - start)) / max_piece), 1, 8))
    ends = [start + (wrist - start) * k / pieces for k in range(pieces + 1)]
    parts = [
        Part(i, CLASS_SHAFT, ends[k], ends[k + 1], r, r, 14, overlap=(r * (k > 0), r * (k < pieces - 1)))
        for k in range(pieces)
    ]
    parts.append(Part(i, CLASS_MANIPULATOR, wrist, wrist, shape.joint_radius, shape.joint_radius, 0, True))
    rw = shape.wrist_radius
    parts.append(Part(i, CLASS_MANIPULATOR, wrist, pose.jaw_pivot, rw, rw, 6))
    rb, rt = shape.jaw_radii
    for base, tip in zip(pose.jaw_bases, pose.jaw_tips, strict=True):
        parts.append(Part(i, CLASS_MANIPULATOR, base, tip, rb, rt, 4))
    return [p for p in parts if min(p.a[2], p.b[2]) - max(p.ra, p.rb) > Z_NEAR]


# ---------------------------------------------------------------------------- drawing
@dataclass(frozen=True)
class ToolColours:
    """RGB colours of the shaded parts: (dark, base, light) for shaft and manipulator."""

    shaft: tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]
    manipulator: tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]
    specular: bool = True

    def shade(self, cls: int, light: np.ndarray | float) -> np.ndarray:
        """Colours (..., 3) of surfaces lit with cosine ``light`` (0..1): Lambert from the dark
        to the base colour, plus a tight specular lobe towards the light colour."""
        dark, base, bright = (np.asarray(c, np.float64) for c in self._triple(cls))
        light = np.asarray(light, np.float64)[..., None]
        colour = dark + (base - dark) * light**0.8
        if self.specular:
            colour = colour + (bright - colour) * light**12
        return np.round(colour).astype(np.int32)

    def facet_colours(self, cls: int, facets: int) -> list[tuple[int, int, int]]:
        """Colours of the ``facets`` bands of a cylinder's visible half, in the order of
        ``_facets``; the same for every part, since bands are laid out about the view ray."""
        return _facet_colours(self, cls, facets)

    def _triple(self, cls: int):
        return self.shaft if cls == CLASS_SHAFT else self.manipulator


@functools.lru_cache(maxsize=64)
def _facet_colours(colours: ToolColours, cls: int, facets: int) -> list[tuple[int, int, int]]:
    alphas = _facet_angles(facets)
    lights = np.maximum(np.cos(0.5 * (alphas[:-1] + alphas[1:]) - _LIGHT_OFFSET), 0.0)
    return [tuple(int(v) for v in c) for c in colours.shade(cls, lights)]


@functools.lru_cache(maxsize=64)
def _base_colour(colours: ToolColours, cls: int, ball: bool) -> tuple[int, int, int]:
    """Fill colour of a silhouette: the shadow colour under the bands, mid-grey for the ball."""
    return tuple(int(v) for v in colours.shade(cls, 0.55 if ball else 0.0))


_RING_COS = np.cos(np.linspace(0, 2 * math.pi, _RING, endpoint=False))[:, None]
_RING_SIN = np.sin(np.linspace(0, 2 * math.pi, _RING, endpoint=False))[:, None]
_INSET = math.cos(math.pi / _RING)  # facets stay inside the silhouette's inscribed polygon


def _facet_angles(facets: int) -> np.ndarray:
    return np.linspace(-math.pi / 2, math.pi / 2, facets + 1)


@functools.lru_cache(maxsize=16)
def _facet_table(facets: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cos, sin) of the band edges as columns, and the corner indices (facets, 4) of each band
    in the corner array [edges at ``a``..., edges at ``b``...]."""
    alphas = _facet_angles(facets)[:, None]
    k = np.arange(facets)
    n = facets + 1
    return np.cos(alphas), np.sin(alphas), np.stack([k, n + k, n + k + 1, k + 1], axis=1)


def _ring(axis: np.ndarray) -> np.ndarray:
    e1, e2 = perpendicular_basis(axis)
    return _RING_COS * e1 + _RING_SIN * e2


def _fixed(pixels: np.ndarray) -> np.ndarray:
    """Pixel coordinates as OpenCV fixed-point vertices (SHIFT fractional bits), clamped so
    points near the lens plane cannot overflow."""
    return np.round(np.clip(pixels, -1e5, 1e5) * (1 << SHIFT)).astype(np.int32)


def silhouette(cam: PinholeCamera, part: Part) -> np.ndarray:
    """Fixed-point convex polygon of the part's projected outline."""
    if part.ball:
        view = _unit(cam.to_camera(part.a))
        pts = part.a + part.ra * _ring(view)
    else:
        ring = _ring(_unit(part.b - part.a))
        pts = np.concatenate([part.a + part.ra * ring, part.b + part.rb * ring])
    return cv2.convexHull(_fixed(cam.project(pts)))


def _facing(cam: PinholeCamera, point: np.ndarray, axis: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(u, w): the normal of the cylinder at ``point`` facing the camera, and ``axis x u``."""
    to_cam = -cam.to_camera(point)
    u = to_cam - axis * float(np.dot(to_cam, axis))
    if float(np.dot(u, u)) < 1e-18:
        return None
    u = _unit(u)
    return u, _cross(axis, u)


def _facets(cam: PinholeCamera, part: Part) -> np.ndarray | None:
    """Fixed-point quads (facets, 4, 2) of the bands of the cylinder's visible half. The bands
    are laid out about the view ray at each end, so adjacent shaft pieces join seamlessly."""
    axis = _unit(part.b - part.a)
    a, b = part.a - part.overlap[0] * axis, part.b + part.overlap[1] * axis
    ends = [_facing(cam, a, axis), _facing(cam, b, axis)]
    if ends[0] is None or ends[1] is None or min(a[2], b[2]) - part.ra <= Z_NEAR:
        return None
    cos, sin, corner_index = _facet_table(part.facets)
    corners = np.concatenate(
        [
            a + _INSET * part.ra * (cos * ends[0][0] + sin * ends[0][1]),
            b + _INSET * part.rb * (cos * ends[1][0] + sin * ends[1][1]),
        ]
    )
    return _fixed(cam.project(corners))[corner_index]


def _on_screen(poly: np.ndarray, cam: PinholeCamera) -> bool:
    x, y, w, h = cv2.boundingRect(poly)
    scale = 1 << SHIFT
    return x < cam.width * scale and y < cam.height * scale and x + w > 0 and y + h > 0


def draw_tools(
    img: np.ndarray,
    mask: np.ndarray,
    instance: np.ndarray,
    cam: PinholeCamera,
    poses: list[ToolPose] | tuple[ToolPose, ...],
    colours: ToolColours,
) -> None:
    """Paint all tools' parts farthest first into the image, class mask and instance mask."""
    parts = [p for pose in poses for p in tool_parts(pose)]
    parts.sort(key=lambda p: -p.depth)
    for part in parts:
        poly = silhouette(cam, part)
        if not _on_screen(poly, cam):
            continue
        cv2.fillConvexPoly(img, poly, _base_colour(colours, part.cls, part.ball), cv2.LINE_8, SHIFT)
        cv2.fillConvexPoly(mask, poly, part.cls, cv2.LINE_8, SHIFT)
        cv2.fillConvexPoly(instance, poly, part.tool + 1, cv2.LINE_8, SHIFT)
        if part.ball:
            continue
        quads = _facets(cam, part)
        if quads is None:
            continue
        for quad, colour in zip(quads, colours.facet_colours(part.cls, part.facets), strict=True):
            cv2.fillConvexPoly(img, quad, colour, cv2.LINE_8, SHIFT)
