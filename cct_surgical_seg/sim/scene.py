"""A procedural endoscope scene with exact ground truth, for demos, tests and training data.

Why procedural: the demo, the ROS graph tests and the bag tools need a video stream whose
ground truth (class mask, tool tips, shaft entry points, 3D tool poses) is known exactly, with
nothing but the repository. Every frame is a pure function of ``(SceneConfig, frame index,
eye)``, so a stream can be re-rendered anywhere (publisher, bag writer, dataset writer,
metrics) and compared.

A frame is made in two steps, so that a second (stereo) camera can draw the same instant:

* ``state(i)``: the scene at time ``i / fps`` - the 3D poses of all tools (``tools3d``: a shaft
  from a trocar behind the lens, a bending wrist and two opening, rolling jaws, in metres in
  the left camera frame) and the camera drift;
* ``draw(state, eye)``: the image through the left (0) or right (1) camera, the right one
  moved by ``stereo_baseline_m`` along x with the same intrinsics.

What is drawn, cheapest first so a 640x512 frame stays well under 15 ms on one core:

* tissue: smooth multi-octave noise mapped to reddish/pink, darker vessel polylines, optional
  blood pools and streaks, and small wet specular spots, all rendered once into a larger
  canvas. The tissue is a plane at a fixed depth (``tissue_depth_m``); each frame is a crop
  of the canvas that drifts slowly (camera motion), and the right eye's crop is shifted by the
  plane's disparity f * B / Z, a whole number of pixels - a slice, not a re-render;
* 1-3 instruments projected through the pinhole K (``intrinsics``) and painted farthest first
  (``tools3d.draw_tools``): shaded metallic shafts and darker manipulators (wrist + jaws);
* optional directional motion blur of a fast-moving tool, smoke (a drifting bright haze), a
  slight blur, and a circular vignette/field stop.

No ROS imports here: the layer rule in docs/design.md keeps this module usable without ROS.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from cct_surgical_seg.sim.tools3d import (
    Z_NEAR,
    Motion,
    PinholeCamera,
    ToolColours,
    ToolPose,
    ToolTrajectory,
    draw_tools,
    project_shaft,
)

CLASS_BACKGROUND = 0
CLASS_SHAFT = 1
CLASS_MANIPULATOR = 2
CLASS_NAMES = ("background", "shaft", "manipulator")

RGB = tuple[int, int, int]

TISSUE_DEPTH_M = 0.16  # nominal depth of the tissue plane (the exact one gives whole-pixel disparity)
EXPOSURE_S = 1.0 / 60.0  # motion blur: the shutter time; a tool smears by its motion during it
MIN_BLUR_PX = 3.0  # slower tools stay sharp
MAX_BLUR_PX = 9  # longer kernels would make OpenCV switch to a slow DFT filter


@dataclass(frozen=True)
class Palette:
    """Colours of one look of the scene (RGB).

    ``endoscope`` is the realistic look: saturated red mucosa, a bright unsaturated grey shaft
    and dark blue-black jaws. ``rule`` exists for tests with the colour-rule ONNX model of
    test/conftest.py (shaft: min(R,G,B) >= 170 and spread <= 40; manipulator: R >= 120 and
    R - max(G,B) >= 60): pale pink tissue and blood that are neither, red jaws and a near-white
    shaft, with a gentle vignette, so a graph test gets a meaningful Dice without a trained model.
    """

    tissue_lo: RGB  # tissue colour at the darkest noise value
    tissue_hi: RGB  # ... and at the brightest
    vessel_lo: RGB
    vessel_hi: RGB
    shaft_shadow: RGB
    shaft: RGB
    shaft_highlight: RGB
    manipulator: RGB
    slit: RGB  # the manipulator's shadow side
    vignette_floor: float  # gain at the rim of the field stop
    wet_spots: bool
    blood: RGB = (92, 8, 14)

    @property
    def manipulator_highlight(self) -> RGB:
        return tuple(round(c + 0.35 * (255 - c)) for c in self.manipulator)  # type: ignore[return-value]


PALETTES: dict[str, Palette] = {
    "endoscope": Palette(
        tissue_lo=(150, 40, 50),
        tissue_hi=(235, 100, 100),
        vessel_lo=(95, 15, 25),
        vessel_hi=(130, 35, 45),
        shaft_shadow=(118, 122, 130),
        shaft=(178, 182, 188),
        shaft_highlight=(232, 234, 238),
        manipulator=(52, 56, 66),
        slit=(22, 24, 30),
        vignette_floor=0.55,
        wet_spots=True,
        blood=(92, 8, 14),
    ),
    "rule": Palette(
        tissue_lo=(160, 128, 131),  # R - max(G, B) ~ 30: blurred jaw edges rarely pass the rule's 60
        tissue_hi=(204, 168, 172),  # min(R, G, B) < 170: never "shaft"
        vessel_lo=(138, 108, 112),
        vessel_hi=(156, 124, 128),
        shaft_shadow=(212, 214, 218),
        shaft=(228, 230, 233),
        shaft_highlight=(246, 247, 249),
        manipulator=(212, 62, 66),
        slit=(178, 44, 48),
        vignette_floor=0.92,
        wet_spots=False,
        blood=(128, 98, 101),
    ),
}


@dataclass(frozen=True)
class SceneConfig:
    """Everything that determines the stream; two equal configs render identical frames."""

    width: int = 640
    height: int = 512
    num_instruments: int = 2
    seed: int = 0
    fps: float = 30.0
    smoke: float = 0.0  # 0..1, peak haze opacity
    blur: bool = True
    specular: bool = True  # wet spots on the tissue, highlights on the tools
    camera_motion: bool = True
    vignette: bool = True
    fov_deg: float = 70.0  # horizontal field of view of the pinhole model
    palette: str = "endoscope"  # a key of PALETTES
    blood: float = 0.4  # 0..1: how many and how opaque the blood pools on the tissue are
    motion_blur: bool = True  # blur a tool along its motion when it moves fast
    stereo_baseline_m: float = 0.0045  # right camera = left camera moved by this along +x

    def __post_init__(self) -> None:
        if self.width < 64 or self.height < 64:
            raise ValueError(f"scene size must be at least 64x64, got {self.width}x{self.height}")
        if not 1 <= self.num_instruments <= 3:
            raise ValueError(f"num_instruments must be 1..3, got {self.num_instruments}")
        if not 0.0 <= self.smoke <= 1.0:
            raise ValueError(f"smoke must be in [0, 1], got {self.smoke}")
        if not 0.0 <= self.blood <= 1.0:
            raise ValueError(f"blood must be in [0, 1], got {self.blood}")
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.palette not in PALETTES:
            raise ValueError(f"palette must be one of {sorted(PALETTES)}, got {self.palette!r}")
        if not 0.0 <= self.stereo_baseline_m <= 0.05:
            raise ValueError(f"stereo_baseline_m must be in [0, 0.05], got {self.stereo_baseline_m}")


@dataclass(frozen=True)
class CameraIntrinsics:
    """A CameraInfo-like pinhole model (plumb_bob, no distortion): what the publisher sends."""

    width: int
    height: int
    k: tuple[float, ...]  # row-major 3x3
    d: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)
    distortion_model: str = "plumb_bob"

    @property
    def matrix(self) -> np.ndarray:
        return np.asarray(self.k, dtype=np.float64).reshape(3, 3)

    @property
    def projection(self) -> tuple[float, ...]:
        """The 3x4 P matrix of a monocular camera: [K | 0]."""
        k = self.k
        return (k[0], k[1], k[2], 0.0, k[3], k[4], k[5], 0.0, k[6], k[7], k[8], 0.0)


Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class InstrumentTruth:
    """Ground truth of one instrument in one frame.

    2D fields are in the frame's own eye's pixels (x right, y down, pixel centres); 3D fields
    are metres in the left camera's optical frame (x right, y down, z forward), whatever the eye.
    """

    index: int
    tip: tuple[float, float]  # projection of the grasp point (midpoint of the two jaw tips)
    entry: tuple[float, float]  # where the projected shaft axis enters the image (on its border)
    axis: tuple[float, float]  # unit vector along the projected shaft, entry -> wrist
    wrist: tuple[float, float]  # projection of the wrist joint (shaft/manipulator junction)
    jaw_opening: float  # 0 closed .. 1 open (60 deg between the jaws)
    tip_visible: bool  # grasp point in view, in front, and a jaw tip pixel shows this tool's jaws
    tip_3d: Vec3 = (0.0, 0.0, 0.0)  # the grasp point
    shaft_axis_3d: Vec3 = (0.0, 0.0, 1.0)  # unit, along the shaft towards the tip
    wrist_3d: Vec3 = (0.0, 0.0, 0.0)  # the wrist joint
    entry_3d: Vec3 = (0.0, 0.0, 0.0)  # the shaft-axis point that projects to ``entry`` (else the trocar)
    trocar_3d: Vec3 = (0.0, 0.0, 0.0)  # the remote centre the shaft pivots about (behind the lens)
    wrist_bend_deg: float = 0.0  # angle between the shaft and the wrist direction
    jaw_angle_deg: float = 0.0  # full angle between the two jaws


@dataclass(frozen=True)
class SceneFrame:
    """One rendered frame: image, class mask, instance mask and per-instrument truth."""

    index: int
    time_s: float
    rgb: np.ndarray  # uint8 HxWx3
    mask: np.ndarray  # uint8 HxW class ids (0 background, 1 shaft, 2 manipulator)
    instance: np.ndarray  # uint8 HxW, 0 background, i + 1 for instrument i
    instruments: tuple[InstrumentTruth, ...] = field(default_factory=tuple)
    eye: int = 0  # 0 left, 1 right

    @property
    def tips(self) -> np.ndarray:
        """Float array (N, 2) of tip positions, in instrument order."""
        return np.asarray([i.tip for i in self.instruments], dtype=np.float64).reshape(-1, 2)

    @property
    def entries(self) -> np.ndarray:
        """Float array (N, 2) of shaft entry points, in instrument order."""
        return np.asarray([i.entry for i in self.instruments], dtype=np.float64).reshape(-1, 2)

    @property
    def bgr(self) -> np.ndarray:
        return np.ascontiguousarray(self.rgb[:, :, ::-1])

    def hidden_instruments(self) -> list[InstrumentTruth]:
        """Instruments with pixels in view whose tip is not visible (out of view or hidden)."""
        in_view = {int(v) - 1 for v in np.unique(self.instance) if v}
        return [i for i in self.instruments if not i.tip_visible and i.index in in_view]


@dataclass(frozen=True)
class SceneState:
    """The scene at one instant, independent of the camera that draws it."""

    index: int
    time_s: float
    tools: tuple[ToolPose, ...]  # left camera frame
    previous: tuple[ToolPose, ...]  # the same tools EXPOSURE_S earlier (empty without motion blur)
    crop: tuple[int, int]  # (x, y) of the left eye's tissue crop in the canvas


def _smooth_noise(rng: np.random.Generator, height: int, width: int, octaves: int = 4) -> np.ndarray:
    """Fractal value noise in [0, 1]: random grids upsampled bicubically and summed."""
    out = np.zeros((height, width), np.float32)
    total = 0.0
    for octave in range(octaves):
        cells = 3 * 2**octave
        grid = rng.random((cells + 1, int(cells * width / height) + 1), dtype=np.float32)
        weight = 0.55**octave
        out += weight * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        total += weight
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def _line_kernel(shift: np.ndarray) -> np.ndarray:
    """A normalised line kernel along the 2D displacement ``shift`` (its length in pixels)."""
    length = min(float(np.hypot(*shift)), float(MAX_BLUR_PX))
    size = 2 * math.ceil(length / 2) + 1
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    half = shift / max(float(np.hypot(*shift)), 1e-9) * length / 2
    p0 = (round((c - half[0]) * 16), round((c - half[1]) * 16))
    p1 = (round((c + half[0]) * 16), round((c + half[1]) * 16))
    cv2.line(kernel, p0, p1, 1.0, 1, cv2.LINE_AA, 4)
    return kernel / max(float(kernel.sum()), 1e-9)


class EndoscopeScene:
    """Renders frames of a deterministic procedural endoscope video.

    ``render(i)`` has no hidden state: frame ``i`` is the same whatever was rendered before,
    so publishers, bag writers and metrics can each re-render the truth they need.
    ``render(i, eye=1)`` draws the same instant through the right camera of the stereo pair.
    """

    def __init__(self, config: SceneConfig | None = None) -> None:
        self.config = config or SceneConfig()
        cfg = self.config
        tissue_rng = np.random.default_rng([cfg.seed, 0])
        motion_rng = np.random.default_rng([cfg.seed, 1])
        self.palette = PALETTES[cfg.palette]
        f = self.intrinsics.k[0]
        baseline_px = f * cfg.stereo_baseline_m
        #: right-eye disparity of the tissue plane, whole pixels (0 without a baseline)
        self.tissue_disparity_px = max(1, round(baseline_px / TISSUE_DEPTH_M)) if baseline_px > 0 else 0
        #: depth (m) of the tissue plane: the one nearest TISSUE_DEPTH_M with a whole-pixel disparity
        self.tissue_depth_m = baseline_px / self.tissue_disparity_px if baseline_px > 0 else TISSUE_DEPTH_M
        self._margin = int(0.12 * max(cfg.width, cfg.height)) if cfg.camera_motion else 0
        self._tissue = self._make_tissue(tissue_rng)
        self._smoke_alpha = self._make_smoke(tissue_rng) if cfg.smoke > 0 else None
        self._vignette = self._make_vignette() if cfg.vignette else None
        self._field_stop = self._make_field_stop() if cfg.vignette else None
        self._drift = (Motion.random(motion_rng, 0.0, 1.0, 2), Motion.random(motion_rng, 0.0, 1.0, 2))
        half_extent = min(cfg.width, cfg.height) / 2.0 / f
        first = float(motion_rng.uniform(0, 2 * math.pi))
        self._trajectories = tuple(
            ToolTrajectory.random(motion_rng, i, cfg.num_instruments, half_extent, first)
            for i in range(cfg.num_instruments)
        )
        pal = self.palette
        self._colours = ToolColours(
            shaft=(pal.shaft_shadow, pal.shaft, pal.shaft_highlight),
            manipulator=(pal.slit, pal.manipulator, pal.manipulator_highlight),
            specular=cfg.specular,
        )

    # ------------------------------------------------------------------ public API
    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.config.height, self.config.width

    @property
    def intrinsics(self) -> CameraIntrinsics:
        cfg = self.config
        f = (cfg.width / 2.0) / math.tan(math.radians(cfg.fov_deg) / 2.0)
        cx, cy = (cfg.width - 1) / 2.0, (cfg.height - 1) / 2.0
        return CameraIntrinsics(cfg.width, cfg.height, (f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0))

    def camera(self, eye: int = 0) -> PinholeCamera:
        """The pinhole camera of ``eye`` (0 left, 1 right: moved by the baseline along +x)."""
        _check_eye(eye)
        k, cfg = self.intrinsics.k, self.config
        return PinholeCamera(k[0], k[4], k[2], k[5], cfg.width, cfg.height, eye * cfg.stereo_baseline_m)

    def stereo_projection(self, eye: int = 0) -> tuple[float, ...]:
        """The 3x4 P of ``eye`` as ROS CameraInfo defines it: [K | (Tx, 0, 0)], Tx = -f * B
        for the right eye (so x_right = x_left - f * B / Z), 0 for the left."""
        _check_eye(eye)
        k = self.intrinsics.k
        tx = -k[0] * self.config.stereo_baseline_m * eye
        return (k[0], k[1], k[2], tx, k[3], k[4], k[5], 0.0, k[6], k[7], k[8], 0.0)

    def time_of(self, index: int) -> float:
        return index / self.config.fps

    def state(self, index: int) -> SceneState:
        """The 3D scene at frame ``index`` (>= 0): tool poses and camera drift."""
        if index < 0:
            raise ValueError(f"frame index must be >= 0, got {index}")
        t = self.time_of(index)
        tools = tuple(traj.pose(t) for traj in self._trajectories)
        previous = (
            tuple(traj.pose(t - EXPOSURE_S) for traj in self._trajectories) if self.config.motion_blur else ()
        )
        return SceneState(index, t, tools, previous, self._crop_origin(t))

    def render(self, index: int, eye: int = 0) -> SceneFrame:
        """Render frame ``index`` (>= 0) through ``eye`` (0 left, 1 right) with its ground truth."""
        return self.draw(self.state(index), eye)

    def draw(self, state: SceneState, eye: int = 0) -> SceneFrame:
        """Draw ``state`` through the camera of ``eye``."""
        cam = self.camera(eye)
        cfg = self.config
        tissue = self._tissue_crop(state.crop, eye)
        img = tissue.copy()
        mask = np.zeros((cfg.height, cfg.width), np.uint8)
        instance = np.zeros_like(mask)
        draw_tools(img, mask, instance, cam, state.tools, self._colours)
        # shading bands may round a pixel past a silhouette: the masks decide what is tool
        cv2.copyTo(tissue, cv2.compare(mask, 0, cv2.CMP_EQ), img)
        for before, now in zip(state.previous, state.tools, strict=False):  # no previous: no blur
            self._motion_blur(img, instance, cam, before, now)
        if self._smoke_alpha is not None:
            img = self._apply_smoke(img, state.time_s, eye)
        if cfg.blur:
            img = cv2.GaussianBlur(img, (5, 5), 0.9)
        if self._vignette is not None:
            img = cv2.multiply(img, self._vignette, scale=1.0 / 255.0)
            mask[self._field_stop] = CLASS_BACKGROUND
            instance[self._field_stop] = 0
        truths = tuple(self._truth(pose, cam, mask, instance) for pose in state.tools)
        return SceneFrame(state.index, state.time_s, img, mask, instance, truths, eye)

    def frames(self, count: int, start: int = 0, stride: int = 1) -> Iterator[SceneFrame]:
        for k in range(count):
            yield self.render(start + k * stride)

    # ------------------------------------------------------------------ static layers
    def _make_tissue(self, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        h = cfg.height + 2 * self._margin
        w = cfg.width + 2 * self._margin + self.tissue_disparity_px
        base = _smooth_noise(rng, h, w)
        fine = cv2.GaussianBlur(rng.random((h, w), dtype=np.float32), (0, 0), 1.2) - 0.5
        lo = np.asarray(self.palette.tissue_lo, np.float32)
        hi = np.asarray(self.palette.tissue_hi, np.float32)
        # Mucosa: colour follows the smooth noise (folds), plus a little fine grain.
        tissue = lo + (hi - lo) * base[:, :, None] + np.float32(10.0) * fine[:, :, None]
        tissue = tissue.clip(0, 255).astype(np.uint8)
        self._draw_vessels(tissue, rng, self.palette)
        if cfg.blood > 0:
            self._draw_blood(tissue, np.random.default_rng([cfg.seed, 2]), base)
        if cfg.specular and self.palette.wet_spots:
            self._draw_wet_spots(tissue, rng)
        return tissue

    @staticmethod
    def _draw_vessels(tissue: np.ndarray, rng: np.random.Generator, palette: Palette) -> None:
        """Darker red branching random walks, softened so they read as sub-surface vessels."""
        h, w = tissue.shape[:2]
        layer = tissue.copy()
        for _ in range(int(rng.integers(5, 10))):
            p = rng.uniform([0, 0], [w, h])
            heading = rng.uniform(0, 2 * math.pi)
            width = float(rng.uniform(1.5, 4.0))
            points = [p.copy()]
            for _ in range(int(rng.integers(15, 40))):
                heading += rng.normal(0, 0.35)
                p = p + 12.0 * np.array([math.cos(heading), math.sin(heading)])
                points.append(p.copy())
            pts = np.round(np.asarray(points)).astype(np.int32).reshape(-1, 1, 2)
            colour = tuple(
                int(rng.integers(a, b + 1)) for a, b in zip(palette.vessel_lo, palette.vessel_hi, strict=True)
            )
            cv2.polylines(layer, [pts], False, colour, max(1, round(width)), cv2.LINE_AA)
        blurred = cv2.GaussianBlur(layer, (0, 0), 1.0)
        cv2.addWeighted(blurred, 0.7, tissue, 0.3, 0, dst=tissue)

    def _draw_blood(self, tissue: np.ndarray, rng: np.random.Generator, noise: np.ndarray) -> None:
        """Dark red pools (clusters of overlapping blobs with noise-ragged edges) and thin drips
        running off them in one downhill direction, blended into the tissue."""
        h, w = tissue.shape[:2]
        amount = self.config.blood
        scale = min(self.config.width, self.config.height) / 512.0
        alpha = np.zeros((h, w), np.float32)
        downhill = float(rng.uniform(0, 2 * math.pi))
        for _ in range(1 + round(5 * amount)):
            centre = rng.uniform([0, 0], [w, h])
            size = float(rng.uniform(8, 30)) * scale
            for _ in range(int(rng.integers(3, 8))):
                c = centre + rng.normal(0, 0.6 * size, 2)
                axes = np.maximum(rng.uniform(0.3, 1.0, 2) * size, 1.0)
                cv2.ellipse(
                    alpha, (int(c[0]), int(c[1])), (int(axes[0]), int(axes[1])), float(rng.uniform(0, 180)),
                    0, 360, 1.0, -1,
                )  # fmt: skip
            for _ in range(int(rng.integers(0, 3))):
                self._draw_drip(alpha, rng, centre + rng.normal(0, 0.5 * size, 2), downhill, scale)
        alpha = cv2.GaussianBlur(alpha, (0, 0), 1.5 * scale + 0.5)
        alpha = np.clip(alpha * (0.5 + noise), 0.0, 1.0) * np.float32(0.6 + 0.35 * amount)
        colour = np.asarray(self.palette.blood, np.float32) * (0.8 + 0.4 * noise[:, :, None])
        mixed = tissue * (1.0 - alpha[:, :, None]) + colour * alpha[:, :, None]
        tissue[:] = mixed.clip(0, 255).astype(np.uint8)

    @staticmethod
    def _draw_drip(
        alpha: np.ndarray, rng: np.random.Generator, start: np.ndarray, heading: float, scale: float
    ):
        """A thinning, wandering streak from ``start`` roughly along ``heading``."""
        heading += float(rng.normal(0, 0.4))
        width = float(rng.uniform(1.5, 3.5)) * scale
        p = start
        for _ in range(int(rng.integers(5, 14))):
            heading += float(rng.normal(0, 0.15))
            q = p + 6.0 * scale * np.array([math.cos(heading), math.sin(heading)])
            cv2.line(
                alpha, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 0.9, max(1, round(width)), cv2.LINE_AA
            )
            p, width = q, width * 0.93

    @staticmethod
    def _draw_wet_spots(tissue: np.ndarray, rng: np.random.Generator) -> None:
        """Small near-white ellipses: the specular reflections of wet mucosa."""
        h, w = tissue.shape[:2]
        layer = np.zeros_like(tissue)
        for _ in range(int(rng.integers(20, 40))):
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.integers(2, 9)), int(rng.integers(1, 5)))
            cv2.ellipse(layer, centre, axes, float(rng.uniform(0, 180)), 0, 360, (255, 245, 240), -1)
        layer = cv2.GaussianBlur(layer, (0, 0), 1.5)
        cv2.max(tissue, layer, dst=tissue)

    def _make_smoke(self, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        h = cfg.height + 2 * self._margin + 64
        w = cfg.width + 2 * self._margin + 64 + self.tissue_disparity_px
        haze = _smooth_noise(rng, h, w, octaves=3)
        return (255.0 * cfg.smoke * np.clip(haze * 1.4 - 0.2, 0, 1)).astype(np.uint8)

    def _make_vignette(self) -> np.ndarray:
        """Cosine fall-off to a dark field stop that only clips the far corners."""
        cfg = self.config
        yy, xx = np.mgrid[0 : cfg.height, 0 : cfg.width].astype(np.float32)
        cx, cy = (cfg.width - 1) / 2.0, (cfg.height - 1) / 2.0
        r = np.hypot(xx - cx, yy - cy) / self._field_radius()
        floor = self.palette.vignette_floor
        falloff = np.maximum(np.cos(np.clip(r, 0, 1) * math.pi / 2), 0) ** 0.8
        gain = np.where(r < 1.0, floor + (1.0 - floor) * falloff, 0.0)
        return np.repeat((255 * gain).astype(np.uint8)[:, :, None], 3, axis=2)

    def _field_radius(self) -> float:
        cfg = self.config
        return 0.96 * math.hypot(cfg.width, cfg.height) / 2.0

    def _make_field_stop(self) -> np.ndarray:
        cfg = self.config
        yy, xx = np.mgrid[0 : cfg.height, 0 : cfg.width].astype(np.float32)
        cx, cy = (cfg.width - 1) / 2.0, (cfg.height - 1) / 2.0
        return np.hypot(xx - cx, yy - cy) >= self._field_radius()

    # ------------------------------------------------------------------ per frame
    def _crop_origin(self, t: float) -> tuple[int, int]:
        m = self._margin
        dx = round(m * (0.5 + 0.45 * self._drift[0](t))) if m else 0
        dy = round(m * (0.5 + 0.45 * self._drift[1](t))) if m else 0
        return min(max(dx, 0), 2 * m), min(max(dy, 0), 2 * m)

    def _tissue_crop(self, crop: tuple[int, int], eye: int) -> np.ndarray:
        """The tissue plane seen by ``eye``: the right eye sees it shifted left by the disparity,
        i.e. its pixel x shows the canvas column of the left eye's x + disparity."""
        cfg = self.config
        dx, dy = crop[0] + eye * self.tissue_disparity_px, crop[1]
        return self._tissue[dy : dy + cfg.height, dx : dx + cfg.width]

    def _apply_smoke(self, img: np.ndarray, t: float, eye: int) -> np.ndarray:
        cfg = self.config
        ox = int(32 + 30 * math.sin(0.21 * t)) + int(12 * t) % (2 * self._margin + 1)
        ox += eye * self.tissue_disparity_px  # the haze hangs near the tissue
        oy = int(32 + 30 * math.cos(0.17 * t))
        alpha = self._smoke_alpha[oy : oy + cfg.height, ox : ox + cfg.width]
        alpha3 = cv2.merge([alpha, alpha, alpha])
        keep = cv2.subtract(np.full_like(alpha3, 255), alpha3)
        out = cv2.multiply(img, keep, scale=1.0 / 255.0)
        return cv2.add(out, cv2.multiply(alpha3, np.full_like(alpha3, 225), scale=1.0 / 255.0))

    @staticmethod
    def _motion_blur(
        img: np.ndarray, instance: np.ndarray, cam: PinholeCamera, before: ToolPose, now: ToolPose
    ) -> None:
        """Smear a tool along the image motion of its tip during one exposure, over its box."""
        shift = cam.project(now.grasp_point) - cam.project(before.grasp_point)
        if float(np.hypot(*shift)) < MIN_BLUR_PX:
            return
        own = (instance == now.index + 1).view(np.uint8)
        x, y, w, h = cv2.boundingRect(own)
        if w == 0 or h == 0:
            return
        kernel = _line_kernel(shift)
        pad = kernel.shape[0] // 2 + 1
        x0, y0 = max(x - pad, 0), max(y - pad, 0)
        x1, y1 = min(x + w + pad, img.shape[1]), min(y + h + pad, img.shape[0])
        roi = img[y0:y1, x0:x1]
        alpha = cv2.filter2D(own[y0:y1, x0:x1].astype(np.float32), -1, kernel)
        smeared = cv2.filter2D(roi, -1, kernel)
        roi[:] = cv2.blendLinear(smeared, roi, alpha, 1.0 - alpha)

    def _truth(
        self, pose: ToolPose, cam: PinholeCamera, mask: np.ndarray, instance: np.ndarray
    ) -> InstrumentTruth:
        shaft = project_shaft(cam, pose)
        tip = cam.project(pose.grasp_point)
        vec = lambda v: (float(v[0]), float(v[1]), float(v[2]))  # noqa: E731
        return InstrumentTruth(
            index=pose.index,
            tip=(float(tip[0]), float(tip[1])),
            entry=(float(shaft.entry[0]), float(shaft.entry[1])),
            axis=(float(shaft.axis[0]), float(shaft.axis[1])),
            wrist=(float(shaft.wrist[0]), float(shaft.wrist[1])),
            jaw_opening=pose.jaw_opening,
            tip_visible=self._tip_visible(pose, cam, tip, mask, instance),
            tip_3d=vec(pose.grasp_point),
            shaft_axis_3d=vec(pose.shaft_axis),
            wrist_3d=vec(pose.wrist_point),
            entry_3d=vec(shaft.entry_3d),
            trocar_3d=vec(pose.trocar_point),
            wrist_bend_deg=math.degrees(pose.bend),
            jaw_angle_deg=math.degrees(pose.jaw_angle),
        )

    def _tip_visible(
        self, pose: ToolPose, cam: PinholeCamera, tip: np.ndarray, mask: np.ndarray, instance: np.ndarray
    ) -> bool:
        """Grasp point in front, inside the image and the field stop, and at least one jaw tip
        pixel showing this tool's manipulator (not hidden by another tool)."""
        if cam.to_camera(pose.grasp_point)[2] <= Z_NEAR or not cam.contains(tip):
            return False
        if self._field_stop is not None and self._field_stop[round(tip[1]), round(tip[0])]:
            return False
        h, w = mask.shape
        for jx, jy in cam.project(pose.jaw_tips):
            x, y = round(jx), round(jy)
            if (
                0 <= x < w
                and 0 <= y < h
                and mask[y, x] == CLASS_MANIPULATOR
                and instance[y, x] == pose.index + 1
            ):
                return True
        return False


def _check_eye(eye: int) -> None:
    if eye not in (0, 1):
        raise ValueError(f"eye must be 0 (left) or 1 (right), got {eye!r}")
