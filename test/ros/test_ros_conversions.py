"""messages.images and messages.results: every encoding, every kind of bad input, and the pose convention.

Pure functions over message objects; needs the message packages but no ROS graph.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2 Python) is not importable")
cv2 = pytest.importorskip("cv2")

from ros_graph_utils import compressed_image  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from cct_surgical_seg.messages import camera as cam  # noqa: E402
from cct_surgical_seg.messages import images, results  # noqa: E402
from cct_surgical_seg.messages.images import ConversionError  # noqa: E402
from cct_surgical_seg.messages.types import DETECTION_ARRAY  # noqa: E402
from cct_surgical_seg.ros.msg_types import RCLPY_TYPES  # noqa: E402

pytestmark = pytest.mark.ros

RGB = np.array([200, 100, 30], dtype=np.uint8)


def _rgb_frame(h: int = 6, w: int = 8) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _image(array: np.ndarray, encoding: str, step_pad: int = 0, bigendian: bool = False) -> Image:
    array = np.ascontiguousarray(array)
    h, w = array.shape[:2]
    row = array.reshape(h, -1).view(np.uint8)
    if step_pad:
        row = np.hstack([row, np.full((h, step_pad), 7, np.uint8)])
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=int(bigendian))
    msg.step = row.shape[1]
    msg.data = row.tobytes()
    return msg


@pytest.mark.parametrize("pad", [0, 5])
def test_colour_encodings_round_trip_to_rgb(pad: int) -> None:
    rgb = _rgb_frame()
    cases = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "8UC3": rgb[..., ::-1],
        "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)]),
        "bgra8": np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 9, np.uint8)]),
    }
    for encoding, pixels in cases.items():
        out = images.image_to_rgb(_image(pixels, encoding, step_pad=pad))
        assert out.dtype == np.uint8 and out.shape == rgb.shape, encoding
        np.testing.assert_array_equal(out, rgb, err_msg=encoding)


def test_mono8_becomes_grey_rgb() -> None:
    grey = _rgb_frame()[..., 0]
    out = images.image_to_rgb(_image(grey, "mono8", step_pad=3))
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
def test_16bit_is_scaled_to_8bit_and_honours_byte_order(encoding: str, bigendian: bool) -> None:
    values = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    stored = values.astype(">u2" if bigendian else "<u2")
    out = images.image_to_rgb(_image(stored, encoding, bigendian=bigendian))
    assert out[0, :, 0].tolist() == [0, 1, 255, 128]


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_patterns_demosaic_to_the_right_colour(pattern: str) -> None:
    # Build the mosaic of a flat colour as the named pattern samples it (top-left 2x2 block).
    h, w = 8, 8
    index = {"r": 0, "g": 1, "b": 2}
    mosaic = np.zeros((h, w), np.uint8)
    for dy in range(2):
        for dx in range(2):
            mosaic[dy::2, dx::2] = RGB[index[pattern[2 * dy + dx]]]
    out = images.image_to_rgb(_image(mosaic, f"bayer_{pattern}8"))
    centre = out[2:-2, 2:-2].reshape(-1, 3).astype(int)
    assert np.abs(centre - RGB.astype(int)).max() <= 2, (pattern, centre[0])


@pytest.mark.parametrize(
    ("mutate", "kind"),
    [
        (lambda m: setattr(m, "encoding", "yuv422_yuy2_weird"), "encoding"),
        (lambda m: setattr(m, "step", m.step - 1), "size"),
        (lambda m: setattr(m, "data", bytes(m.data)[:-5]), "size"),
        (lambda m: setattr(m, "data", bytes(m.data) + b"\0" * 3), "size"),
        (lambda m: (setattr(m, "width", 0), setattr(m, "step", 0), setattr(m, "data", b"")), "empty"),
        (lambda m: (setattr(m, "height", 0), setattr(m, "data", b"")), "empty"),
    ],
)
def test_bad_raw_images_raise_with_a_kind(mutate, kind: str) -> None:
    msg = _image(_rgb_frame(), "rgb8")
    mutate(msg)
    with pytest.raises(ConversionError) as info:
        images.image_to_rgb(msg)
    assert info.value.kind == kind
    assert info.value.reason


def test_pixel_budget_refuses_before_reading_data() -> None:
    msg = Image(height=4000, width=4000, encoding="rgb8", step=12000)  # no data at all
    with pytest.raises(ConversionError) as info:
        images.image_to_rgb(msg, max_pixels=1000 * 1000)
    assert info.value.kind == "too_large"


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_round_trip(fmt: str) -> None:
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:, :24] = RGB
    msg = compressed_image(rgb, Header(frame_id="cam"), fmt)
    out = images.message_to_rgb(msg)
    assert out.shape == rgb.shape
    tol = 0 if fmt == "png" else 12
    assert np.abs(out[4:-4, 4:20].astype(int) - RGB.astype(int)).max() <= tol


def test_compressed_bad_data_and_budget() -> None:
    with pytest.raises(ConversionError) as info:
        images.compressed_to_rgb(CompressedImage(format="jpeg", data=b"not a jpeg at all"))
    assert info.value.kind == "decode"
    with pytest.raises(ConversionError) as info:
        images.compressed_to_rgb(CompressedImage(format="jpeg", data=b""))
    assert info.value.kind == "empty"
    big = compressed_image(np.zeros((100, 100, 3), np.uint8), Header(), "png")
    with pytest.raises(ConversionError) as info:
        images.compressed_to_rgb(big, max_pixels=50 * 50)
    assert info.value.kind == "too_large"


def test_array_to_image_encodings_and_header() -> None:
    header = Header(frame_id="endo")
    header.stamp.sec, header.stamp.nanosec = 12, 34
    mask = np.arange(12, dtype=np.uint8).reshape(3, 4)
    msg = images.array_to_image(RCLPY_TYPES, mask, header)
    assert (msg.encoding, msg.width, msg.height, msg.step) == ("mono8", 4, 3, 4)
    assert msg.header.frame_id == "endo" and msg.header.stamp.nanosec == 34
    np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.uint8).reshape(3, 4), mask)
    conf = np.full((3, 4), 0.25, np.float32)
    msg = images.array_to_image(RCLPY_TYPES, conf, header)
    assert msg.encoding == "32FC1" and msg.step == 16
    assert msg.is_bigendian == int(sys.byteorder == "big")
    np.testing.assert_allclose(results.confidence_to_image(RCLPY_TYPES, conf, header).data[0], 64)


# --- messages: pose convention ----------------------------------------------------------------


class _Inst:
    """Duck-typed deploy.Instrument (same fields), so this module does not need deploy."""

    def __init__(
        self, tip, entry, axis, track_id=3, class_id=1, score=0.9, bbox=(10, 20, 30, 40), tip_visible=True
    ):
        self.tip, self.entry, self.axis, self.tip_visible = tip, entry, axis, tip_visible
        self.track_id, self.class_id, self.score, self.bbox = track_id, class_id, score, bbox
        self.area_px, self.centroid = 500, tip


def _camera_info(fx=500.0, fy=500.0, cx=320.0, cy=256.0) -> CameraInfo:
    info = CameraInfo(width=640, height=512, distortion_model="plumb_bob")
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    info.d = [0.0] * 5
    return info


@pytest.mark.skipif(not RCLPY_TYPES.has(DETECTION_ARRAY), reason="vision_msgs not installed")
def test_tips_in_pixels_are_detections() -> None:
    inst = _Inst(tip=(100.0, 50.0), entry=(0.0, 50.0), axis=(0.0, 1.0))
    dets = results.instruments_to_detections(
        RCLPY_TYPES, [inst], Header(frame_id="cam"), ("background", "shaft")
    )
    p = dets.detections[0].results[0].pose.pose
    assert (p.position.x, p.position.y, p.position.z) == (100.0, 50.0, 0.0)
    # axis straight down the image = +90 degrees about +z
    assert math.isclose(2 * math.atan2(p.orientation.z, p.orientation.w), math.pi / 2)
    assert dets.header.frame_id == "cam"


def test_tips_as_unit_rays_with_camera_info() -> None:
    camera = cam.CameraModel.from_camera_info(_camera_info())
    centre = _Inst(tip=(320.0, 256.0), entry=(0.0, 256.0), axis=(1.0, 0.0))
    right = _Inst(tip=(820.0, 256.0), entry=(0.0, 256.0), axis=(1.0, 0.0))
    poses = results.instruments_to_rays(RCLPY_TYPES, [centre, right], Header(frame_id="cam"), camera)
    a, b = poses.poses[0].position, poses.poses[1].position
    assert (a.x, a.y, a.z) == pytest.approx((0.0, 0.0, 1.0))
    s = 1 / math.sqrt(2)  # one focal length to the right = 45 degrees
    assert (b.x, b.y, b.z) == pytest.approx((s, 0.0, s))
    assert poses.poses[0].orientation.w == pytest.approx(1.0)
    assert poses.header.frame_id == "cam"


def _with(info: CameraInfo, **changes) -> CameraInfo:
    for name, value in changes.items():
        setattr(info, name, value)
    return info


@pytest.mark.parametrize(
    "info,kind",
    [
        (CameraInfo(), "uncalibrated"),
        (_with(_camera_info(), d=[0.1, 0.01, 0.0]), "distortion"),  # plumb_bob takes 5
        (_with(_camera_info(), distortion_model="rational_polynomial"), "distortion"),  # takes 8
        (_with(_camera_info(), distortion_model="kannala"), "distortion"),
        (_with(_camera_info(), distortion_model="", d=[0.1, 0.0, 0.0, 0.0, 0.0]), "distortion"),
        (_camera_info(cx=float("nan")), "non_finite"),
        (_camera_info(fx=float("inf")), "non_finite"),
        (_with(_camera_info(), p=[float("nan")] * 12), "non_finite"),
        (_camera_info(fx=0.0), "focal"),
        (_camera_info(fy=-500.0), "focal"),
    ],
)
def test_bad_camera_info_is_refused_with_a_kind(info: CameraInfo, kind: str) -> None:
    with pytest.raises(cam.CameraInfoError) as err:
        cam.CameraModel.from_camera_info(info)
    assert err.value.kind == kind and err.value.kind in cam.BAD_CAMERA_INFO_KINDS
    assert "\n" not in err.value.reason


def test_valid_distortion_models_give_unit_rays() -> None:
    for model, d in [("plumb_bob", [-0.2, 0.05, 0.001, 0.0, 0.0]), ("rational_polynomial", [0.01] * 8),
                     ("equidistant", [0.01, 0.0, 0.0, 0.0]), ("", [])]:  # fmt: skip
        camera = cam.CameraModel.from_camera_info(_with(_camera_info(), distortion_model=model, d=d))
        rays = camera.rays(np.array([[10.0, 20.0], [320.0, 256.0]]))
        np.testing.assert_allclose(np.linalg.norm(rays, axis=1), 1.0)
        assert rays[1] == pytest.approx([0.0, 0.0, 1.0], abs=1e-6), model


def test_markers_start_with_deleteall_and_pair_arrow_sphere() -> None:
    from visualization_msgs.msg import Marker

    insts = [
        _Inst(tip=(10.0, 10.0), entry=(0.0, 0.0), axis=(0.7, 0.7)),
        _Inst((50.0, 5.0), (0.0, 5.0), (1, 0)),
    ]
    out = results.instruments_to_markers(RCLPY_TYPES, insts, Header(frame_id="cam"))
    assert out.markers[0].action == Marker.DELETEALL
    assert [m.type for m in out.markers[1:]] == [Marker.ARROW, Marker.SPHERE] * 2
    assert len({m.id for m in out.markers[1:]}) == 4
    assert results.instruments_to_markers(RCLPY_TYPES, [], Header()).markers[0].action == Marker.DELETEALL


@pytest.mark.skipif(not RCLPY_TYPES.has(DETECTION_ARRAY), reason="vision_msgs not installed")
def test_detections_and_label_info() -> None:
    inst = _Inst(tip=(10.0, 10.0), entry=(0.0, 0.0), axis=(1.0, 0.0), track_id=7, class_id=2, score=0.8)
    dets = results.instruments_to_detections(
        RCLPY_TYPES, [inst], Header(frame_id="cam"), ("background", "shaft", "jaw")
    )
    d = dets.detections[0]
    assert d.id == "7" and d.results[0].hypothesis.class_id == "jaw"
    assert results.tip_visible(d.results[0].pose.covariance)
    assert d.results[0].hypothesis.score == pytest.approx(0.8)
    assert (d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x) == (25.0, 40.0, 30.0)
    info = results.label_info(RCLPY_TYPES, ("background", "shaft"), 0.5, Header(frame_id="cam"))
    assert info.header.frame_id == "cam"
    assert [(c.class_id, c.class_name) for c in info.class_map] == [(0, "background"), (1, "shaft")]
    assert info.threshold == pytest.approx(0.5)


@pytest.mark.skipif(not RCLPY_TYPES.has(DETECTION_ARRAY), reason="vision_msgs not installed")
def test_a_hidden_tip_is_uncertain_along_the_shaft_only() -> None:
    axis = (0.6, 0.8)
    hidden = _Inst(tip=(50.0, 60.0), entry=(0.0, 0.0), axis=axis, tip_visible=False)
    dets = results.instruments_to_detections(RCLPY_TYPES, [hidden], Header(), ("background", "shaft"))
    cov = np.asarray(dets.detections[0].results[0].pose.covariance).reshape(6, 6)
    assert not results.tip_visible(cov.reshape(-1))
    along, across = np.asarray(axis), np.asarray((-axis[1], axis[0]))
    assert along @ cov[:2, :2] @ along == pytest.approx(results.HIDDEN_TIP_STD_PX**2)
    assert across @ cov[:2, :2] @ across == pytest.approx(results.TIP_STD_PX**2)
    markers = results.instruments_to_markers(RCLPY_TYPES, [hidden], Header()).markers
    assert markers[2].color.a < 0.5 < markers[1].color.a  # translucent tip sphere, solid arrow
