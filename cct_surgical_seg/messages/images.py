"""sensor_msgs Image / CompressedImage <-> numpy, without cv_bridge (and without rclpy).

Why our own path: cv_bridge is not on PyPI for this ROS distribution (and the PyPI package of
that name is unrelated), so the package decodes camera messages itself. Reading is duck-typed:
rclpy messages (the node) and rosbags messages (``cct-bag``, ``cct-demo``) go through the same
functions; writing builds through a :class:`~cct_surgical_seg.messages.types.MessageTypes`.
Every message is checked *before* any array is built, because a malformed frame from a driver
must cost one log line and one counter, never the node: a wrong ``step``, truncated ``data``,
an empty frame, an unknown encoding or a frame over the pixel budget all raise
:class:`ConversionError` with a short machine-readable ``kind`` (the diagnostics counter it
goes to) and a human reason.

Everything returned is RGB ``uint8 HxWx3`` because that is what
``deploy.SegmentationPipeline`` takes. Supported raw encodings: ``rgb8``, ``bgr8``, ``rgba8``,
``bgra8``, ``mono8``/``8UC1``, ``8UC3`` (read as bgr8, like cv_bridge), ``bayer_{rggb,bggr,
gbrg,grbg}8`` (OpenCV demosaicing), ``mono16``/``16UC1`` (scaled to 8 bit by /257, i.e. the full
16-bit range, so brightness does not flicker with frame content) with ``is_bigendian`` honoured.
Anything else goes to cv_bridge when it happens to be importable, else it is refused.
Compressed frames must be PNG or JPEG: their size is read from the header (Pillow) and checked
against the pixel budget before a single pixel is decoded.
"""

from __future__ import annotations

import io
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image as PILImage

from cct_surgical_seg.messages.types import IMAGE, MessageTypes

try:  # optional: only used for encodings outside our own table
    from cv_bridge import CvBridge as _CvBridge  # type: ignore[import-not-found]
except Exception:  # ImportError in a pip-only environment; the PyPI port breaks on NumPy 2 otherwise
    _CvBridge = None

#: reasons a frame is refused; each one is a diagnostics counter
BAD_INPUT_KINDS = ("encoding", "size", "empty", "too_large", "decode")

#: compressed formats the node decodes (what image_transport's compressed plugin writes)
COMPRESSED_FORMATS = ("PNG", "JPEG")

# The pixel budget (``max_image_pixels``) is checked on the header before decoding, so Pillow's
# own decompression-bomb warning would only repeat it; its hard limit (an exception) stays.
warnings.filterwarnings("ignore", category=PILImage.DecompressionBombWarning)


class ConversionError(ValueError):
    """A message that cannot become an image; ``kind`` is one of :data:`BAD_INPUT_KINDS`."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class _Layout:
    channels: int
    dtype: np.dtype


_LAYOUTS: dict[str, _Layout] = {
    "rgb8": _Layout(3, np.dtype(np.uint8)),
    "bgr8": _Layout(3, np.dtype(np.uint8)),
    "8UC3": _Layout(3, np.dtype(np.uint8)),
    "rgba8": _Layout(4, np.dtype(np.uint8)),
    "bgra8": _Layout(4, np.dtype(np.uint8)),
    "8UC4": _Layout(4, np.dtype(np.uint8)),
    "mono8": _Layout(1, np.dtype(np.uint8)),
    "8UC1": _Layout(1, np.dtype(np.uint8)),
    "mono16": _Layout(1, np.dtype(np.uint16)),
    "16UC1": _Layout(1, np.dtype(np.uint16)),
    "bayer_rggb8": _Layout(1, np.dtype(np.uint8)),
    "bayer_bggr8": _Layout(1, np.dtype(np.uint8)),
    "bayer_gbrg8": _Layout(1, np.dtype(np.uint8)),
    "bayer_grbg8": _Layout(1, np.dtype(np.uint8)),
}

# ROS names the Bayer pattern by its top-left 2x2 block; OpenCV's codes name it by the second
# row's middle pixels, so the names look swapped. test/ros/test_ros_conversions.py checks each mapping on a
# synthetic mosaic of a known colour.
_BAYER_TO_RGB = {
    "bayer_rggb8": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr8": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg8": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg8": cv2.COLOR_BayerGB2RGB,
}

SUPPORTED_ENCODINGS = tuple(_LAYOUTS)


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ConversionError("empty", f"empty image ({width}x{height})")
    if max_pixels > 0 and width * height > max_pixels:
        raise ConversionError(
            "too_large", f"{width}x{height} = {width * height} px exceeds max_image_pixels={max_pixels}"
        )


def image_to_rgb(msg, max_pixels: int = 0) -> np.ndarray:
    """A sensor_msgs/Image as RGB uint8 HxWx3 (a new array; the message is not kept).

    ``max_pixels`` > 0 refuses bigger frames before touching the data, so a misconfigured
    camera cannot make the node allocate without bound.
    """
    width, height, step, encoding = int(msg.width), int(msg.height), int(msg.step), str(msg.encoding)
    _check_pixels(width, height, max_pixels)
    layout = _LAYOUTS.get(encoding)
    if layout is None:
        return _via_cv_bridge(msg, encoding)
    row_bytes = width * layout.channels * layout.dtype.itemsize
    if step < row_bytes:
        raise ConversionError("size", f"step {step} < width*channels*bytes = {row_bytes} for {encoding}")
    data = msg.data
    size = len(data)
    if size != step * height:
        what = "truncated data" if size < step * height else "data larger than step*height"
        raise ConversionError("size", f"{what}: {size} bytes, expected {step}*{height} = {step * height}")

    buf = np.frombuffer(_as_bytes(data), dtype=np.uint8).reshape(height, step)[:, :row_bytes]
    if layout.dtype.itemsize == 1:
        pixels = buf.reshape(height, width, layout.channels)
    else:
        dtype = layout.dtype.newbyteorder(">" if msg.is_bigendian else "<")
        pixels = np.ascontiguousarray(buf).view(dtype).reshape(height, width)
        pixels = (pixels.astype(np.uint32) * 255 // 65535).astype(np.uint8)[..., None]
    return _to_rgb(pixels, encoding)


def _as_bytes(data) -> bytes | memoryview | np.ndarray:
    """rclpy gives ``array.array('B')`` (or bytes); both expose the buffer protocol."""
    return data if isinstance(data, (bytes, bytearray, np.ndarray)) else memoryview(data)


def _to_rgb(pixels: np.ndarray, encoding: str) -> np.ndarray:
    if encoding in _BAYER_TO_RGB:
        return cv2.cvtColor(np.ascontiguousarray(pixels[..., 0]), _BAYER_TO_RGB[encoding])
    channels = pixels.shape[2]
    if channels == 1:
        return cv2.cvtColor(np.ascontiguousarray(pixels[..., 0]), cv2.COLOR_GRAY2RGB)
    if encoding == "rgb8":
        return np.ascontiguousarray(pixels)
    # OpenCV's SIMD channel shuffles take the (possibly row-padded) view directly, an order of
    # magnitude faster than NumPy's strided copy of pixels[..., ::-1].
    if encoding == "rgba8":
        return cv2.cvtColor(pixels, cv2.COLOR_RGBA2RGB)
    if channels == 4:  # bgra8, 8UC4
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)  # bgr8, 8UC3


def _via_cv_bridge(msg, encoding: str) -> np.ndarray:
    if _CvBridge is None:
        raise ConversionError(
            "encoding", f"unsupported encoding '{encoding}' (supported: {', '.join(SUPPORTED_ENCODINGS)})"
        )
    try:
        return np.ascontiguousarray(_CvBridge().imgmsg_to_cv2(msg, desired_encoding="rgb8"))
    except Exception as exc:  # cv_bridge raises its own CvBridgeError and others
        raise ConversionError("encoding", f"cv_bridge could not convert '{encoding}': {exc}") from exc


def compressed_header(data: bytes | memoryview | np.ndarray) -> tuple[int, int, str]:
    """(width, height, format) read from a PNG or JPEG header, without decoding any pixel.

    Pillow's lazy ``Image.open`` reads only the PNG IHDR chunk or the JPEG markers up to the
    SOFn frame header; OpenCV has no header-only API. Anything that is not a readable PNG or
    JPEG header raises :class:`ConversionError` ("decode"), a header above Pillow's own
    decompression-bomb limit "too_large".
    """
    try:
        with PILImage.open(io.BytesIO(data), formats=COMPRESSED_FORMATS) as image:
            width, height = image.size
            return int(width), int(height), str(image.format)
    except PILImage.DecompressionBombError as exc:
        raise ConversionError("too_large", f"compressed image header: {exc}") from exc
    except Exception as exc:  # hostile bytes: Pillow raises many types (OSError, SyntaxError, ...)
        raise ConversionError(
            "decode", f"not a readable {' or '.join(COMPRESSED_FORMATS)} header ({type(exc).__name__})"
        ) from exc


def compressed_to_rgb(msg, max_pixels: int = 0) -> np.ndarray:
    """A sensor_msgs/CompressedImage (jpeg/png, as image_transport writes it) as RGB uint8.

    The size is read from the PNG/JPEG header and checked against ``max_pixels`` before
    anything is decoded, so a small file that claims a huge image costs no memory; the decoded
    image must then have exactly the header's size.
    """
    raw = _as_bytes(msg.data)
    data = np.frombuffer(raw, dtype=np.uint8)
    if data.size == 0:
        raise ConversionError("empty", "empty compressed data")
    width, height, fmt = compressed_header(data)
    _check_pixels(width, height, max_pixels)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ConversionError("decode", f"could not decode {data.size} bytes of {fmt} data")
    if image.shape[:2] != (height, width):
        raise ConversionError(
            "decode", f"{fmt} decoded to {image.shape[1]}x{image.shape[0]}, header says {width}x{height}"
        )
    if image.dtype == np.uint16:
        image = (image.astype(np.uint32) * 255 // 65535).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def message_to_rgb(msg, max_pixels: int = 0) -> np.ndarray:
    """Either message type: dispatches on the presence of ``format`` (CompressedImage)."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return compressed_to_rgb(msg, max_pixels)
    return image_to_rgb(msg, max_pixels)


# --- numpy -> messages --------------------------------------------------------------------------

_ENCODING_OF = {
    (np.dtype(np.uint8), 1): "mono8",
    (np.dtype(np.uint8), 3): "bgr8",
    (np.dtype(np.uint16), 1): "mono16",
    (np.dtype(np.float32), 1): "32FC1",
}


def array_to_image(types: MessageTypes, array: np.ndarray, header: Any, encoding: str | None = None) -> Any:
    """A numpy image as sensor_msgs/Image of ``types`` with the given header (kept by reference).

    ``encoding`` defaults from dtype and channels (uint8 HxW -> mono8, uint8 HxWx3 -> bgr8,
    float32 HxW -> 32FC1); pass ``rgb8`` explicitly for RGB data.
    """
    array = np.ascontiguousarray(array)
    channels = 1 if array.ndim == 2 else array.shape[2]
    if encoding is None:
        encoding = _ENCODING_OF.get((array.dtype, channels))
        if encoding is None:
            raise ValueError(f"no default encoding for dtype {array.dtype} with {channels} channels")
    return types.new(
        IMAGE,
        header=header,
        height=int(array.shape[0]),
        width=int(array.shape[1]),
        encoding=encoding,
        is_bigendian=int(sys.byteorder == "big" and array.dtype.itemsize > 1),
        step=int(array.strides[0]),
        data=array.tobytes(),
    )
