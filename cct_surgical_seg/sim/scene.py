"""A procedural endoscope scene with exact ground truth, for demos, tests and training data.

Why procedural: the demo, the ROS graph tests and the bag tools need a video stream whose
ground truth (class mask, tool tips, shaft entry points) is known exactly, with nothing but
the repository. Every frame is a pure function of ``(SceneConfig, frame index)``, so a stream
can be re-rendered anywhere (publisher, bag writer, dataset writer, metrics) and compared.

What is drawn, cheapest first so a 640x512 frame stays well under 10 ms on one core:

* tissue: smooth multi-octave noise mapped to reddish/pink, darker vessel polylines and small
  wet specular spots, all rendered once into a larger canvas; each frame is a crop of it that
  drifts slowly (camera motion) - a slice, not a re-render;
* 1-3 instruments: a grey metallic shaft (banded to look cylindrical, wider towards the camera)
  entering from the image border, and a darker manipulator (wrist + closed jaws with a dark
  slit) at the tip, following smooth sum-of-sines trajectories in separate angular sectors so
  they rarely overlap;
* optional smoke (a drifting bright haze), a slight blur, and a circular vignette/field stop.

No ROS imports here: the layer rule in docs/design.md keeps this module usable without ROS.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

CLASS_BACKGROUND = 0
CLASS_SHAFT = 1
CLASS_MANIPULATOR = 2
CLASS_NAMES = ("background", "shaft", "manipulator")

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Palette:
    """Colours of one look of the scene (RGB).

    ``endoscope`` is the realistic look: saturated red mucosa, a bright unsaturated grey shaft
    and dark blue-black jaws. ``rule`` exists for tests with the colour-rule ONNX model of
    test/conftest.py (shaft: min(R,G,B) >= 170 and spread <= 40; manipulator: R >= 120 and
    R - max(G,B) >= 60): pale pink tissue that is neither, red jaws and a near-white shaft, with
    a gentle vignette, so a graph test gets a meaningful Dice without a trained model.
    """

    tissue_lo: RGB  # tissue colour at the darkest noise value
    tissue_hi: RGB  # ... and at the brightest
    vessel_lo: RGB
    vessel_hi: RGB
    shaft_shadow: RGB
    shaft: RGB
    shaft_highlight: RGB
    manipulator: RGB
    slit: RGB
    vignette_floor: float  # gain at the rim of the field stop
    wet_spots: bool


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
    ),
    "rule": Palette(
        tissue_lo=(165, 118, 122),
        tissue_hi=(212, 165, 170),
        vessel_lo=(140, 100, 105),
        vessel_hi=(160, 118, 122),
        shaft_shadow=(212, 214, 218),
        shaft=(228, 230, 233),
        shaft_highlight=(246, 247, 249),
        manipulator=(205, 35, 40),
        slit=(170, 20, 25),
        vignette_floor=0.92,
        wet_spots=False,
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
    specular: bool = True
    camera_motion: bool = True
    vignette: bool = True
    fov_deg: float = 70.0  # horizontal field of view of the pinhole model
    palette: str = "endoscope"  # a key of PALETTES

    def __post_init__(self) -> None:
        if self.width < 64 or self.height < 64:
            raise ValueError(f"scene size must be at least 64x64, got {self.width}x{self.height}")
        if not 1 <= self.num_instruments <= 3:
            raise ValueError(f"num_instruments must be 1..3, got {self.num_instruments}")
        if not 0.0 <= self.smoke <= 1.0:
            raise ValueError(f"smoke must be in [0, 1], got {self.smoke}")
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.palette not in PALETTES:
            raise ValueError(f"palette must be one of {sorted(PALETTES)}, got {self.palette!r}")


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


@dataclass(frozen=True)
class InstrumentTruth:
    """Ground truth of one instrument in one frame (pixels: x right, y down, pixel centres)."""

    index: int
    tip: tuple[float, float]  # distal end of the jaws, on manipulator pixels
    entry: tuple[float, float]  # where the shaft axis crosses the image border
    axis: tuple[float, float]  # unit vector from the entry towards the tip
    wrist: tuple[float, float]  # shaft/manipulator junction on the axis
    jaw_opening: float  # 0 closed .. 1 open (drawn as the slit width)
    tip_visible: bool  # the tip pixel shows this instrument's manipulator


@dataclass(frozen=True)
class SceneFrame:
    """One rendered frame: image, class mask, instance mask and per-instrument truth."""

    index: int
    time_s: float
    rgb: np.ndarray  # uint8 HxWx3
    mask: np.ndarray  # uint8 HxW class ids (0 background, 1 shaft, 2 manipulator)
    instance: np.ndarray  # uint8 HxW, 0 background, i + 1 for instrument i
    instruments: tuple[InstrumentTruth, ...] = field(default_factory=tuple)

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


@dataclass(frozen=True)
class _Motion:
    """A smooth scalar signal: centre + sum of a few sines with seeded frequencies and phases."""

    centre: float
    amplitudes: tuple[float, ...]
    freqs_hz: tuple[float, ...]
    phases: tuple[float, ...]

    @classmethod
    def random(cls, rng: np.random.Generator, centre: float, spread: float, n: int = 3) -> _Motion:
        weights = rng.uniform(0.3, 1.0, n)
        weights = weights / weights.sum() * spread
        return cls(
            centre=centre,
            amplitudes=tuple(float(a) for a in weights),
            freqs_hz=tuple(float(f) for f in rng.uniform(0.04, 0.35, n)),
            phases=tuple(float(p) for p in rng.uniform(0, 2 * math.pi, n)),
        )

    def __call__(self, t: float) -> float:
        return self.centre + sum(
            a * math.sin(2 * math.pi * f * t + p)
            for a, f, p in zip(self.amplitudes, self.freqs_hz, self.phases, strict=True)
        )


@dataclass(frozen=True)
class _ToolPlan:
    """Per-instrument trajectory: the tip in polar coordinates about the image centre, the
    shaft direction as a deviation from the radial direction, and the jaw opening."""

    sector: float  # radians, the direction the instrument comes from
    angle: _Motion  # tip polar angle (radians)
    radius: _Motion  # tip distance from the centre, fraction of min(H, W) / 2
    tilt: _Motion  # shaft direction deviation from the radial direction (radians)
    jaw: _Motion  # jaw opening, clipped to 0..1


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


class EndoscopeScene:
    """Renders frames of a deterministic procedural endoscope video.

    ``render(i)`` has no hidden state: frame ``i`` is the same whatever was rendered before,
    so publishers, bag writers and metrics can each re-render the truth they need.
    """

    def __init__(self, config: SceneConfig | None = None) -> None:
        self.config = config or SceneConfig()
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        self.palette = PALETTES[cfg.palette]
        self._margin = int(0.12 * max(cfg.width, cfg.height)) if cfg.camera_motion else 0
        self._tissue = self._make_tissue(rng)
        self._smoke_alpha = self._make_smoke(rng) if cfg.smoke > 0 else None
        self._vignette = self._make_vignette() if cfg.vignette else None
        self._field_stop = self._make_field_stop() if cfg.vignette else None
        self._drift = (_Motion.random(rng, 0.0, 1.0, 2), _Motion.random(rng, 0.0, 1.0, 2))
        self._plans = self._make_plans(rng)
        scale = min(cfg.width, cfg.height) / 512.0
        self._shaft_width = 32.0 * scale
        self._wrist_len = 24.0 * scale
        self._jaw_len = 34.0 * scale

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

    def time_of(self, index: int) -> float:
        return index / self.config.fps

    def render(self, index: int) -> SceneFrame:
        """Render frame ``index`` (>= 0) with its ground truth."""
        if index < 0:
            raise ValueError(f"frame index must be >= 0, got {index}")
        cfg = self.config
        t = self.time_of(index)
        img = self._tissue_crop(t).copy()
        mask = np.zeros((cfg.height, cfg.width), np.uint8)
        instance = np.zeros_like(mask)
        geoms = [self._tool_geometry(i, plan, t) for i, plan in enumerate(self._plans)]
        # Deepest tool first, so the one nearest the camera (the largest radius) is on top.
        for geom in sorted(geoms, key=lambda g: g["depth"]):
            self._draw_tool(img, mask, instance, geom)
        if self._smoke_alpha is not None:
            img = self._apply_smoke(img, t)
        if cfg.blur:
            img = cv2.GaussianBlur(img, (5, 5), 0.9)
        if self._vignette is not None:
            img = cv2.multiply(img, self._vignette, scale=1.0 / 255.0)
            mask[self._field_stop] = CLASS_BACKGROUND
            instance[self._field_stop] = 0
        truths = tuple(self._truth(g, mask, instance) for g in geoms)
        return SceneFrame(index, t, img, mask, instance, truths)

    def frames(self, count: int, start: int = 0, stride: int = 1) -> Iterator[SceneFrame]:
        for k in range(count):
            yield self.render(start + k * stride)

    # ------------------------------------------------------------------ static layers
    def _make_tissue(self, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        h, w = cfg.height + 2 * self._margin, cfg.width + 2 * self._margin
        base = _smooth_noise(rng, h, w)
        fine = cv2.GaussianBlur(rng.random((h, w), dtype=np.float32), (0, 0), 1.2) - 0.5
        lo = np.asarray(self.palette.tissue_lo, np.float32)
        hi = np.asarray(self.palette.tissue_hi, np.float32)
        # Mucosa: colour follows the smooth noise (folds), plus a little fine grain.
        tissue = lo + (hi - lo) * base[:, :, None] + np.float32(10.0) * fine[:, :, None]
        tissue = tissue.clip(0, 255).astype(np.uint8)
        self._draw_vessels(tissue, rng, self.palette)
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
        h, w = cfg.height + 2 * self._margin + 64, cfg.width + 2 * self._margin + 64
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

    def _make_plans(self, rng: np.random.Generator) -> list[_ToolPlan]:
        n = self.config.num_instruments
        first = float(rng.uniform(0, 2 * math.pi))
        plans = []
        for i in range(n):
            sector = first + 2 * math.pi * i / n
            spread = math.radians(28 if n > 1 else 60)
            plans.append(
                _ToolPlan(
                    sector=sector,
                    angle=_Motion.random(rng, sector, spread),
                    radius=_Motion.random(rng, 0.42, 0.22),
                    tilt=_Motion.random(rng, 0.0, math.radians(18)),
                    jaw=_Motion.random(rng, 0.5, 0.5, 2),
                )
            )
        return plans

    # ------------------------------------------------------------------ per frame
    def _tissue_crop(self, t: float) -> np.ndarray:
        cfg, m = self.config, self._margin
        dx = round(m * (0.5 + 0.45 * self._drift[0](t))) if m else 0
        dy = round(m * (0.5 + 0.45 * self._drift[1](t))) if m else 0
        dx, dy = min(max(dx, 0), 2 * m), min(max(dy, 0), 2 * m)
        return self._tissue[dy : dy + cfg.height, dx : dx + cfg.width]

    def _apply_smoke(self, img: np.ndarray, t: float) -> np.ndarray:
        cfg = self.config
        ox = int(32 + 30 * math.sin(0.21 * t)) + int(12 * t) % (2 * self._margin + 1)
        oy = int(32 + 30 * math.cos(0.17 * t))
        alpha = self._smoke_alpha[oy : oy + cfg.height, ox : ox + cfg.width]
        alpha3 = cv2.merge([alpha, alpha, alpha])
        keep = cv2.subtract(np.full_like(alpha3, 255), alpha3)
        out = cv2.multiply(img, keep, scale=1.0 / 255.0)
        return cv2.add(out, cv2.multiply(alpha3, np.full_like(alpha3, 225), scale=1.0 / 255.0))

    def _tool_geometry(self, index: int, plan: _ToolPlan, t: float) -> dict:
        cfg = self.config
        cx, cy = (cfg.width - 1) / 2.0, (cfg.height - 1) / 2.0
        half = min(cfg.width, cfg.height) / 2.0
        ang = plan.angle(t)
        rad = float(np.clip(plan.radius(t), 0.12, 0.8)) * half
        tip = np.array([cx + rad * math.cos(ang), cy + rad * math.sin(ang)])
        out_dir = ang + plan.tilt(t)  # shaft runs from the tip outward, towards its sector
        outward = np.array([math.cos(out_dir), math.sin(out_dir)])
        axis = -outward
        entry = self._border_hit(tip, outward)
        wrist = tip - axis * (self._wrist_len + self._jaw_len)
        return {
            "index": index,
            "tip": tip,
            "entry": entry,
            "axis": axis,
            "wrist": wrist,
            "jaw": float(np.clip(plan.jaw(t), 0.0, 1.0)),
            "depth": rad,
        }

    def _border_hit(self, start: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """First point where the ray start + s*direction leaves [0, W-1] x [0, H-1]."""
        cfg = self.config
        limits = ((0.0, cfg.width - 1.0), (0.0, cfg.height - 1.0))
        best = math.inf
        for k in range(2):
            if abs(direction[k]) < 1e-9:
                continue
            bound = limits[k][1] if direction[k] > 0 else limits[k][0]
            best = min(best, (bound - start[k]) / direction[k])
        hit = start + max(best, 0.0) * direction
        return np.array([min(max(hit[0], 0.0), cfg.width - 1.0), min(max(hit[1], 0.0), cfg.height - 1.0)])

    @staticmethod
    def _quad(
        a: np.ndarray,
        b: np.ndarray,
        normal: np.ndarray,
        off_a: tuple[float, float],
        off_b: tuple[float, float],
    ) -> np.ndarray:
        """A quadrilateral between points a and b with per-end offsets (lo, hi) along normal."""
        pts = [a + normal * off_a[0], b + normal * off_b[0], b + normal * off_b[1], a + normal * off_a[1]]
        return np.round(np.asarray(pts) * 16).astype(np.int32)  # 4 fractional bits

    def _fill(
        self,
        img: np.ndarray,
        mask: np.ndarray,
        instance: np.ndarray,
        poly: np.ndarray,
        colour: tuple[int, int, int],
        cls: int | None,
        inst: int,
    ) -> None:
        cv2.fillConvexPoly(img, poly, colour, cv2.LINE_8, shift=4)
        if cls is not None:
            cv2.fillConvexPoly(mask, poly, cls, cv2.LINE_8, shift=4)
            cv2.fillConvexPoly(instance, poly, inst, cv2.LINE_8, shift=4)

    def _draw_tool(self, img: np.ndarray, mask: np.ndarray, instance: np.ndarray, g: dict) -> None:
        axis, tip, wrist, entry = g["axis"], g["tip"], g["wrist"], g["entry"]
        pal = self.palette
        normal = np.array([-axis[1], axis[0]])
        inst = g["index"] + 1
        # Extend past the border so the polygon clearly covers the entry pixels.
        far = entry - axis * 4.0
        length_out = float(np.linalg.norm(far - wrist))
        w_tip = self._shaft_width / 2.0
        w_far = w_tip * (1.0 + min(length_out / (2.5 * self.config.width), 0.5))  # perspective
        # Shaft: full silhouette for the masks, then cylindrical bands for the look.
        self._fill(
            img,
            mask,
            instance,
            self._quad(wrist, far, normal, (-w_tip, w_tip), (-w_far, w_far)),
            pal.shaft_shadow,
            CLASS_SHAFT,
            inst,
        )
        bands = (
            (-0.75, 0.55, pal.shaft),
            (-0.35, 0.1, pal.shaft_highlight if self.config.specular else pal.shaft),
        )
        for lo, hi, colour in bands:
            self._fill(
                img,
                mask,
                instance,
                self._quad(wrist, far, normal, (lo * w_tip, hi * w_tip), (lo * w_far, hi * w_far)),
                colour,
                None,
                inst,
            )
        # Manipulator: wrist (slightly narrower than the shaft) then tapered closed jaws.
        jaw_base = tip - axis * self._jaw_len
        w_wrist = 0.9 * w_tip
        self._fill(
            img,
            mask,
            instance,
            self._quad(wrist, jaw_base, normal, (-w_wrist, w_wrist), (-w_wrist, w_wrist)),
            pal.manipulator,
            CLASS_MANIPULATOR,
            inst,
        )
        jaw_end = tip + axis * 1.5  # the truth tip sits just inside the drawn jaws
        self._fill(
            img,
            mask,
            instance,
            self._quad(jaw_base, jaw_end, normal, (-w_wrist, w_wrist), (-0.45 * w_wrist, 0.45 * w_wrist)),
            pal.manipulator,
            CLASS_MANIPULATOR,
            inst,
        )
        # The slit between the jaws widens as they open; it stays part of the manipulator.
        slit = 0.5 + 2.0 * g["jaw"]
        self._fill(
            img,
            mask,
            instance,
            self._quad(jaw_base + axis * 3, tip - axis * 3, normal, (-slit, slit), (-0.5 * slit, 0.5 * slit)),
            pal.slit,
            None,
            inst,
        )

    def _truth(self, g: dict, mask: np.ndarray, instance: np.ndarray) -> InstrumentTruth:
        h, w = mask.shape
        tx, ty = round(g["tip"][0]), round(g["tip"][1])
        visible = (
            0 <= tx < w
            and 0 <= ty < h
            and mask[ty, tx] == CLASS_MANIPULATOR
            and instance[ty, tx] == g["index"] + 1
        )
        return InstrumentTruth(
            index=g["index"],
            tip=(float(g["tip"][0]), float(g["tip"][1])),
            entry=(float(g["entry"][0]), float(g["entry"][1])),
            axis=(float(g["axis"][0]), float(g["axis"][1])),
            wrist=(float(g["wrist"][0]), float(g["wrist"][1])),
            jaw_opening=g["jaw"],
            tip_visible=bool(visible),
        )
