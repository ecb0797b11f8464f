"""Parameters of ``segmentation_node``: declared once, with descriptors, ranges and choices.

Why a table: the declaration, the YAML (config/segmentation.yaml), the launch file and the
tests all need the same names, defaults and limits; one table keeps them from drifting
(test_ros_launch checks the YAML against it).

Two kinds of parameter:
- *run time* ones (thresholds, overlay switch, pixel budget, stereo matching) take effect on
  the next frame and can be changed with ``ros2 param set`` at any time;
- *structural* ones (model, backend, transport, QoS, stereo mode) can only change while the
  node is not active: model/backend/threads take effect on the next ``configure``,
  transport/QoS/stereo/stereo_sync_tolerance on the next ``activate``. Changing them while
  active is refused with a reason, because silently keeping the old value would make
  ``ros2 param get`` lie.
Numeric ranges are enforced by rclpy from the descriptor; choices and the structural rule by
:func:`validate`, which the node registers as its set-parameters callback.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from glob import glob
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
    SetParametersResult,
)

from cct_surgical_seg.deploy.backends import KINDS
from cct_surgical_seg.deploy.pipeline import PipelineSettings
from cct_surgical_seg.messages.results import OutputOptions
from cct_surgical_seg.resources import share_dir


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    runtime: bool = False
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None

    def descriptor(self) -> ParameterDescriptor:
        kind = {
            bool: ParameterType.PARAMETER_BOOL,
            int: ParameterType.PARAMETER_INTEGER,
            float: ParameterType.PARAMETER_DOUBLE,
            str: ParameterType.PARAMETER_STRING,
        }
        desc = ParameterDescriptor(
            name=self.name,
            type=kind[type(self.default)],
            description=self.description,
            additional_constraints=(
                f"one of: {', '.join(self.choices)}"
                if self.choices
                else ("" if self.runtime else "change only while not active (deactivate first)")
            ),
        )
        if self.low is not None and isinstance(self.default, int) and not isinstance(self.default, bool):
            desc.integer_range = [IntegerRange(from_value=int(self.low), to_value=int(self.high), step=0)]
        elif self.low is not None and isinstance(self.default, float):
            desc.floating_point_range = [
                FloatingPointRange(from_value=self.low, to_value=self.high, step=0.0)
            ]
        return desc


SPECS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "model_path",
        "",
        "ONNX file (or .pt checkpoint); empty = the demo model shipped in "
        "share/cct_surgical_seg/models; a relative path is also looked up there",
    ),
    ParamSpec(
        "backend",
        "auto",
        "inference backend",
        choices=KINDS,
    ),
    ParamSpec("inference_threads", 0, "CPU threads of the runtime; 0 = its default", low=0, high=256),
    ParamSpec(
        "transport",
        "raw",
        "raw = sensor_msgs/Image on 'image', compressed = sensor_msgs/CompressedImage on "
        "'<image>/compressed' (the remapped 'image' topic + /compressed, as image_transport names it)",
        choices=("raw", "compressed"),
    ),
    ParamSpec(
        "qos_reliability",
        "best_effort",
        "input subscription reliability",
        choices=("best_effort", "reliable"),
    ),
    ParamSpec("qos_depth", 1, "input subscription depth (keep last)", low=1, high=100),
    ParamSpec("output_qos_depth", 1, "output publishers depth (reliable, keep last)", low=1, high=100),
    ParamSpec(
        "min_instrument_area",
        PipelineSettings.min_instrument_area,
        "smallest instrument region reported, pixels",
        runtime=True,
        low=1,
        high=100_000_000,
    ),
    ParamSpec(
        "score_threshold",
        OutputOptions.score_threshold,
        "instruments with a lower mean confidence are not reported",
        runtime=True,
        low=0.0,
        high=1.0,
    ),
    ParamSpec(
        "max_image_pixels",
        4096 * 4096,
        "frames with more pixels are refused (bad input)",
        runtime=True,
        low=1,
        high=200_000_000,
    ),
    ParamSpec("publish_overlay", True, "draw ~/overlay (only when it has subscribers)", runtime=True),
    ParamSpec(
        "confidence_encoding",
        OutputOptions.confidence_encoding,
        "~/confidence as mono8 (0..255 = 0..1) or 32FC1",
        runtime=True,
        choices=("mono8", "32FC1"),
    ),
    ParamSpec(
        "marker_pixel_size",
        OutputOptions.marker_pixel_size,
        "RViz markers without camera info: metres per pixel",
        runtime=True,
        low=1e-6,
        high=1.0,
    ),
    ParamSpec(
        "marker_ray_length",
        OutputOptions.marker_ray_length,
        "RViz markers with camera info: metres along each tip ray",
        runtime=True,
        low=1e-3,
        high=10.0,
    ),
    ParamSpec(
        "stereo",
        False,
        "stereo mode: pair 'left/image' and 'right/image' (rectified, with 'left/camera_info' and "
        "'right/camera_info') by stamp and publish ~/instrument_poses and ~/detections_3d in metres",
    ),
    ParamSpec(
        "stereo_sync_tolerance",
        0.0,
        "stereo: largest left/right stamp difference that still pairs, seconds; 0 = equal stamps only",
        low=0.0,
        high=1.0,
    ),
    ParamSpec(
        "stereo_matching",
        "epipolar",
        "stereo: epipolar = segment the left view, search each tip along its row of the right image; "
        "batched = segment both views in one network call and match the instruments",
        runtime=True,
        choices=("epipolar", "batched"),
    ),
    ParamSpec("diagnostics_period", 1.0, "seconds between /diagnostics messages", low=0.1, high=60.0),
    ParamSpec("autostart", True, "configure + activate on start; false = wait for lifecycle commands"),
)

SPEC_BY_NAME = {s.name: s for s in SPECS}


@dataclass(frozen=True)
class Settings:
    """A snapshot of every parameter, typed; the node swaps the whole object on a change."""

    model_path: str
    backend: str
    inference_threads: int
    transport: str
    qos_reliability: str
    qos_depth: int
    output_qos_depth: int
    min_instrument_area: int
    score_threshold: float
    max_image_pixels: int
    publish_overlay: bool
    confidence_encoding: str
    marker_pixel_size: float
    marker_ray_length: float
    stereo: bool
    stereo_sync_tolerance: float
    stereo_matching: str
    diagnostics_period: float
    autostart: bool


assert {f.name for f in fields(Settings)} == set(SPEC_BY_NAME), "Settings and SPECS disagree"


def declare(node) -> None:
    """Declare every parameter with its descriptor (values from YAML / --ros-args win)."""
    for spec in SPECS:
        node.declare_parameter(spec.name, spec.default, spec.descriptor())


def read(node) -> Settings:
    return Settings(**{s.name: node.get_parameter(s.name).value for s in SPECS})


def pipeline_settings(s: Settings) -> PipelineSettings:
    """What ``build_pipeline`` needs from the parameters; FileNotFoundError for a missing model."""
    options = {"num_threads": s.inference_threads} if s.inference_threads > 0 else {}
    return PipelineSettings(resolve_model_path(s.model_path), s.backend, options, s.min_instrument_area)


def output_options(s: Settings, class_names: tuple[str, ...]) -> OutputOptions:
    """How this frame's results become messages (run-time parameters apply on the next frame)."""
    return OutputOptions(
        class_names=class_names,
        score_threshold=s.score_threshold,
        confidence_encoding=s.confidence_encoding,
        marker_pixel_size=s.marker_pixel_size,
        marker_ray_length=s.marker_ray_length,
    )


def sync_tolerance_ns(s: Settings) -> int:
    """``stereo_sync_tolerance`` in nanoseconds, as the stereo pairer takes it."""
    return round(s.stereo_sync_tolerance * 1e9)


def validate(params, structural_locked: bool) -> SetParametersResult:
    """Refuse unknown choices, and structural changes while ``structural_locked`` (active).

    Types and numeric ranges were already checked by rclpy from the descriptors.
    """
    for param in params:
        spec = SPEC_BY_NAME.get(param.name)
        if spec is None:
            continue  # e.g. use_sim_time: rclpy's own
        if spec.choices and param.value not in spec.choices:
            return SetParametersResult(
                successful=False, reason=f"{param.name}='{param.value}' is not one of {list(spec.choices)}"
            )
        if not spec.runtime and structural_locked:
            return SetParametersResult(
                successful=False,
                reason=f"{param.name} cannot change while the node is active; deactivate first "
                "(model/backend apply on configure, transport/QoS/stereo on activate)",
            )
    return SetParametersResult(successful=True)


def resolve_model_path(value: str) -> Path:
    """The model file to load; FileNotFoundError with every place looked at."""
    looked: list[str] = []
    share = share_dir()
    if value:
        path = Path(value).expanduser()
        looked.append(str(path))
        if path.is_file():
            return path
        if share is not None and not path.is_absolute():
            candidate = share / "models" / path
            looked.append(str(candidate))
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"model_path '{value}' not found (looked at: {', '.join(looked)})")
    if share is not None:
        shipped = sorted(glob(str(share / "models" / "*.onnx")))
        if shipped:
            return Path(shipped[0])
        looked.append(str(share / "models" / "*.onnx"))
    raise FileNotFoundError(
        "model_path is empty and no demo model is installed"
        + (f" (looked at: {', '.join(looked)})" if looked else " (package share directory not found)")
    )
