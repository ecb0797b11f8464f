"""Fuzz of the node's input path: hostile Image, CompressedImage and CameraInfo results.

The invariant, for every generated message: it is either refused with a counted kind
(:class:`ConversionError` / :class:`CameraInfoError`, whose kinds are diagnostics counters) or it
becomes a frame the pipeline segments; no other exception escapes, and no call allocates more
than its own pixel budget allows. The functions are the ones ``SegmentationNode.process_frame``
and ``_on_camera_info`` call, exercised directly (no DDS). Seeded and bounded for CI: the
examples are the same in every run and the module takes a few seconds.
"""

from __future__ import annotations

import math
import struct
import tracemalloc
import zlib

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python) is not importable")
hypothesis = pytest.importorskip("hypothesis")
cv2 = pytest.importorskip("cv2")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from cct_surgical_seg.messages import images, results  # noqa: E402
from cct_surgical_seg.messages.camera import BAD_CAMERA_INFO_KINDS, CameraInfoError, CameraModel  # noqa: E402
from cct_surgical_seg.messages.images import ConversionError  # noqa: E402
from cct_surgical_seg.ros.diagnostics import FrameStats  # noqa: E402
from cct_surgical_seg.ros.msg_types import RCLPY_TYPES  # noqa: E402

pytestmark = pytest.mark.ros

MAX_PIXELS = 64 * 64
SLACK_BYTES = 256 * 1024  # Python objects, OpenCV headers, exception text
FUZZ = settings(
    max_examples=120,
    derandomize=True,  # same examples in every run (CI)
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Pillow loads its PNG/JPEG plugins on first use; load them now so the memory bound below measures
# the calls, not the imports.
for _ext in (".png", ".jpg"):
    images.compressed_header(cv2.imencode(_ext, np.zeros((2, 2, 3), np.uint8))[1].tobytes())

ENCODINGS = [*images.SUPPORTED_ENCODINGS, "yuv422", "32FC1", "", "bgr8 ", "BGR8"]
sizes = st.one_of(st.integers(0, 48), st.sampled_from([1, 2, 3, 65, 4096, 100_000, 2**31 - 1]))


@st.composite
def raw_images(draw) -> Image:
    encoding = draw(st.sampled_from(ENCODINGS))
    width, height = draw(sizes), draw(sizes)
    layout = images._LAYOUTS.get(encoding)
    row = width * (layout.channels * layout.dtype.itemsize if layout else 3)
    step = max(0, row + draw(st.sampled_from([0, 0, 0, 1, 3, -1, -3, 64])))
    honest = step * height if step * height <= 48 * 48 * 8 else 0
    length = draw(st.one_of(st.just(honest), st.integers(0, 48 * 48 * 8)))
    data = draw(st.binary(min_size=min(length, 4096), max_size=min(length, 4096)))
    data = (data * (length // max(1, len(data)) + 1))[:length] if data else bytes(length)
    return Image(
        height=height,
        width=width,
        encoding=encoding,
        step=min(step, 2**32 - 1),
        is_bigendian=draw(st.integers(0, 1)),
        data=data,
    )


def _png_claiming(width: int, height: int, payload: bytes) -> bytes:
    """A PNG whose IHDR says ``width`` x ``height`` (grey, 8 bit) around ``payload``."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(payload)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@st.composite
def compressed_images(draw) -> CompressedImage:
    kind = draw(st.sampled_from(["encoded", "encoded", "claim", "garbage", "truncated"]))
    if kind == "garbage":
        data = draw(st.binary(max_size=2048))
    elif kind == "claim":  # a small file whose header claims up to a gigapixel
        w, h = draw(st.integers(1, 40_000)), draw(st.integers(1, 40_000))
        data = _png_claiming(w, h, draw(st.binary(max_size=512)))
    else:
        h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
        seed = draw(st.integers(0, 2**16))
        pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
        ext = draw(st.sampled_from([".png", ".jpg"]))
        data = cv2.imencode(ext, pixels)[1].tobytes()
        if kind == "truncated":
            data = data[: draw(st.integers(0, len(data)))]
    fmt = draw(st.sampled_from(["jpeg", "png", "rgb8; jpeg compressed bgr8", "", "tiff"]))
    return CompressedImage(format=fmt, data=data)


def _assert_refused_or_frame(msg, call) -> np.ndarray | None:
    """Run ``call`` under tracemalloc: a counted refusal or an RGB frame within the budget."""
    tracemalloc.start()
    try:
        rgb = call()
    except ConversionError as err:
        assert err.kind in images.BAD_INPUT_KINDS, err.kind
        assert err.reason and "\n" not in err.reason
        stats = FrameStats()
        stats.bad(err.kind)
        assert stats.snapshot()[f"bad_input_{err.kind}"] == 1
        return None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak <= 8 * 3 * MAX_PIXELS + 3 * len(msg.data) + SLACK_BYTES, peak
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[0] * rgb.shape[1] <= MAX_PIXELS
    return rgb


@pytest.fixture(scope="module")
def pipeline(request):
    """The real pipeline on the colour-rule model: accepted frames must segment."""
    from cct_surgical_seg.deploy.backends import create_backend
    from cct_surgical_seg.deploy.pipeline import SegmentationPipeline

    model = request.getfixturevalue("rule_onnx")
    return SegmentationPipeline(create_backend("onnxruntime", str(model), num_threads=1), track=False)


@FUZZ
@given(msg=raw_images())
def test_raw_images_are_refused_with_a_kind_or_segmented(msg: Image, pipeline) -> None:
    rgb = _assert_refused_or_frame(msg, lambda: images.message_to_rgb(msg, MAX_PIXELS))
    if rgb is not None:
        assert rgb.shape[:2] == (msg.height, msg.width)
        assert pipeline(rgb).mask.shape == rgb.shape[:2]


@FUZZ
@given(msg=compressed_images())
def test_compressed_images_are_refused_with_a_kind_or_segmented(msg: CompressedImage, pipeline) -> None:
    rgb = _assert_refused_or_frame(msg, lambda: images.message_to_rgb(msg, MAX_PIXELS))
    if rgb is not None:
        assert pipeline(rgb).mask.shape == rgb.shape[:2]


floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-2000.0, 2000.0),
    st.sampled_from([0.0, 1e-300, -1.0, 1e300]),
)


@st.composite
def camera_infos(draw) -> CameraInfo:
    fx, fy = (
        draw(st.one_of(st.floats(50.0, 2000.0), floats)),
        draw(st.one_of(st.floats(50.0, 2000.0), floats)),
    )
    cx, cy = draw(st.one_of(st.floats(0.0, 640.0), floats)), draw(st.one_of(st.floats(0.0, 512.0), floats))
    k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    if draw(st.booleans()):
        k = draw(st.lists(floats, min_size=9, max_size=9))
    d_len = draw(st.sampled_from([0, 3, 4, 5, 8, 12, 14]))
    d = draw(st.lists(st.one_of(st.floats(-0.5, 0.5), floats), min_size=d_len, max_size=d_len))
    info = CameraInfo(
        width=draw(st.sampled_from([0, 640, 1])),
        height=draw(st.sampled_from([0, 512, 1])),
        distortion_model=draw(
            st.sampled_from(["plumb_bob", "rational_polynomial", "equidistant", "", "fisheye", "PLUMB_BOB"])
        ),
    )
    info.k, info.d = k, d
    info.r = draw(
        st.one_of(st.just([1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]), st.lists(floats, min_size=9, max_size=9))
    )
    info.p = draw(st.one_of(st.just([0.0] * 12), st.lists(floats, min_size=12, max_size=12)))
    return info


class _Tip:
    def __init__(self, x: float, y: float) -> None:
        self.tip, self.entry, self.axis = (x, y), (0.0, y), (1.0, 0.0)


@FUZZ
@given(info=camera_infos(), u=st.floats(0.0, 1.0), v=st.floats(0.0, 1.0))
def test_camera_infos_are_refused_with_a_kind_or_give_finite_unit_rays(info: CameraInfo, u, v) -> None:
    try:
        camera = CameraModel.from_camera_info(info)
    except CameraInfoError as err:
        assert err.kind in BAD_CAMERA_INFO_KINDS, err.kind
        assert err.reason and "\n" not in err.reason
        return
    width = camera.width or 2 * camera.K[0, 2]
    height = camera.height or 2 * camera.K[1, 2]
    rays = results.instruments_to_rays(RCLPY_TYPES, [_Tip(u * width, v * height)], Header(), camera)
    p = rays.poses[0].position
    assert all(math.isfinite(c) for c in (p.x, p.y, p.z))
    assert math.isclose(p.x**2 + p.y**2 + p.z**2, 1.0, rel_tol=1e-6)


BOMB_SCRIPT = """
import resource, struct, sys, zlib
from sensor_msgs.msg import CompressedImage
from cct_surgical_seg.messages import images

def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

rows = zlib.compress(bytes(12_001) * 12_000, 9)
bomb = b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 12_000, 12_000, 8, 0, 0, 0, 0))
bomb += chunk(b"IDAT", rows) + chunk(b"IEND", b"")
msg = CompressedImage(format="png", data=bomb)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    images.compressed_to_rgb(msg, max_pixels=4096 * 4096)
    print("accepted")
except images.ConversionError as err:
    print(err.kind, len(bomb), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_a_png_bomb_is_refused_from_its_header_without_decoding(ros_env) -> None:
    """A ~140 KB PNG that decodes to 12000x12000 (144 MB) is refused before OpenCV decodes it.

    Measured in a fresh process: its peak resident memory must not grow by the decoded size.
    """
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", BOMB_SCRIPT], env=ros_env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    kind, size, grown_kb = out.stdout.split()
    assert kind == "too_large" and int(size) < 300_000
    assert int(grown_kb) < 40_000, f"peak memory grew by {int(grown_kb) // 1024} MB for a refused frame"
