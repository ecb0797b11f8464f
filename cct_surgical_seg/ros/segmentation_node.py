"""``segmentation_node``: a managed (lifecycle) ROS 2 node around ``deploy.SegmentationPipeline``.

The node holds ROS wiring only - parameters, QoS, lifecycle, a mailbox and a timer; pixels are
handled by ``messages.images`` (message -> array), ``deploy`` (array -> FrameResult, built by
``deploy.pipeline.build_pipeline``) and ``messages.results`` (FrameResult -> messages, the same
code ``cct-bag`` writes bags with). :meth:`SegmentationNode.process_frame` is the whole per-frame
path.

Threading, and why: the subscription callback only drops the message into a one-slot mailbox
(newest frame wins, the one it replaces is counted as dropped) and returns, so the executor is
never blocked by inference and nothing queues without bound. One worker thread takes frames
from the mailbox; ONNX Runtime releases the GIL while it runs, so services (lifecycle,
parameters) and diagnostics stay responsive while a frame is processed.

Lifecycle:
  configure  - read parameters, load the model (a bad path or file -> FAILURE with the reason in
               the log and in /diagnostics; the node stays up, unconfigured), create publishers
  activate   - subscribe to images and camera info, start the worker; LabelInfo (latched) goes
               out with the first frame's frame_id (at once when a frame was seen before)
  deactivate - unsubscribe, stop the worker; publishers stay but are disabled
  cleanup    - drop publishers and the model
  shutdown   - all of the above from any state, then ``main`` returns and the process exits
With ``autostart`` true (the default) the node configures and activates itself at start.

Topics (``~/`` = ``<namespace>/segmentation_node/``; every output carries the input header):
  in   ``image`` sensor_msgs/Image (transport raw) or ``<image>/compressed`` CompressedImage
       (transport compressed), ``camera_info`` CameraInfo: relative names, remapped by launch
       (``image:=/camera/image_raw``), as image_proc does; a CameraInfo is used for the frame
       with the same stamp, else the last valid one
  out  ~/mask (mono8 class ids, input size), ~/confidence (mono8|32FC1), ~/overlay (bgr8, only
       drawn while subscribed), ~/detections (Detection2DArray, pixels), ~/frame_confidence
       (Classification, how far the frame's mask can be trusted), ~/instrument_rays
       (PoseArray, unit rays; only with a valid CameraInfo), ~/markers (MarkerArray),
       ~/label_info (LabelInfo, transient local), /diagnostics.

Stereo mode (``stereo: true``; :meth:`SegmentationNode.process_pair` is the whole per-pair path):
  in   ``left/image``, ``left/camera_info``, ``right/image``, ``right/camera_info`` (relative,
       remapped by launch/stereo.launch.py; compressed: ``<left/image>/compressed`` ...), a
       **rectified** pair whose CameraInfo P matrices differ only in Tx = -fx * B
  pairing: the image callbacks pair frames by stamp (``deploy.stereo_pairing.StereoPairer``,
       within ``stereo_sync_tolerance``) and put completed pairs into the same one-slot mailbox;
       frames that never pair (unpaired, stale) are counted and never give a pose
  checks: both views converted (bad input counted as in mono), then same size and encoding, a
       valid CameraInfo per eye, of the images' size, forming a rectified pair
       (``messages.stereo_results.stereo_camera_for``); a refused pair publishes nothing
  out  the left view's usual outputs (left header, left CameraInfo), plus ~/instrument_poses
       (PoseArray, metres, left optical frame), ~/detections_3d (Detection3DArray) and ~/markers
       in 3D (``messages.stereo_results``); ``stereo_matching`` picks epipolar or batched.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import replace
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseArray
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleState, Node, TransitionCallbackReturn
from rclpy.task import Future
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from cct_surgical_seg.deploy.overlay import draw_overlay
from cct_surgical_seg.deploy.pipeline import FrameResult, SegmentationPipeline, build_pipeline
from cct_surgical_seg.deploy.poses import reported_instruments
from cct_surgical_seg.deploy.stereo import Instrument3D, StereoCamera, StereoStats
from cct_surgical_seg.deploy.stereo_pairing import LEFT, RIGHT, StereoPair, StereoPairer
from cct_surgical_seg.deploy.stereo_step import stereo_pair_poses
from cct_surgical_seg.messages.camera import CameraByStamp, CameraInfoError, CameraModel
from cct_surgical_seg.messages.images import ConversionError, array_to_image, message_to_rgb
from cct_surgical_seg.messages.results import frame_messages, label_info
from cct_surgical_seg.messages.stereo_results import (
    DETECTION_3D_ARRAY,
    StereoPairError,
    stereo_camera_for,
    stereo_messages,
)
from cct_surgical_seg.messages.types import DETECTION_ARRAY
from cct_surgical_seg.ros import parameters, qos
from cct_surgical_seg.ros.diagnostics import FrameStats, PairStats, diagnostics
from cct_surgical_seg.ros.msg_types import RCLPY_TYPES

NODE_NAME = "segmentation_node"
IMAGE_TOPIC = "image"  # relative: remap with image:=/camera/image_raw
CAMERA_INFO_TOPIC = "camera_info"
# stereo mode: relative, remapped by launch/stereo.launch.py
LEFT_IMAGE_TOPIC = "left/image"
LEFT_CAMERA_INFO_TOPIC = "left/camera_info"
RIGHT_IMAGE_TOPIC = "right/image"
RIGHT_CAMERA_INFO_TOPIC = "right/camera_info"


class LatestFrame:
    """A one-slot mailbox: ``put`` replaces what is waiting, ``take`` blocks until something is."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._closed = False

    def put(self, item: Any) -> bool:
        """Store ``item``; True when an unprocessed item was replaced (a dropped frame)."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self) -> Any:
        """The waiting item, or None once closed."""
        with self._cond:
            while self._item is None and not self._closed:
                self._cond.wait()
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._item = None
            self._cond.notify_all()


class SegmentationNode(Node):
    """See the module docstring; constructed unconfigured, ``main`` drives autostart."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        parameters.declare(self)
        self._settings = parameters.read(self)
        self._active = False
        self.add_on_set_parameters_callback(
            lambda params: parameters.validate(params, structural_locked=self._active)
        )
        self.add_post_set_parameters_callback(self._on_parameters_set)

        self._stats = FrameStats()
        self._mailbox = LatestFrame()
        self._worker: threading.Thread | None = None
        self._pipeline: SegmentationPipeline | None = None
        self._backend_name = ""
        self._model_path = ""
        self._class_names: tuple[str, ...] = ()
        self._cameras = CameraByStamp()  # the mono camera, or the left eye's
        self._right_cameras = CameraByStamp()
        self._pairer: StereoPairer = StereoPairer()
        self._pair_stats = PairStats()
        self._label_frame_id: str | None = None  # frame_id of the images seen (LabelInfo's)
        self._last_error = ""
        self.finished = Future()  # done once the lifecycle shutdown transition ran: main returns
        self._pubs: dict[str, Any] = {}
        self._subs: list[Any] = []

        # Diagnostics live for the node's whole life so a failed configure is visible too.
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(self._settings.diagnostics_period, self._publish_diagnostics)

    # --- lifecycle --------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._settings = s = parameters.read(self)
        try:
            pipeline_settings = parameters.pipeline_settings(s)
            self._pipeline = build_pipeline(pipeline_settings)
        except Exception as exc:  # ModelLoadError, FileNotFoundError, BackendUnavailableError, ...
            self._last_error = f"configure failed: {type(exc).__name__}: {exc}"
            self.get_logger().error(self._last_error)
            return TransitionCallbackReturn.FAILURE
        self._last_error = ""
        self._backend_name = self._pipeline.backend.describe()
        self._model_path = str(pipeline_settings.model_path)
        self._class_names = tuple(self._pipeline.info.class_names)
        out = qos.output_qos(s.output_qos_depth)
        self._pubs = {
            "mask": self.create_lifecycle_publisher(Image, "~/mask", out),
            "confidence": self.create_lifecycle_publisher(Image, "~/confidence", out),
            "overlay": self.create_lifecycle_publisher(Image, "~/overlay", out),
            "instrument_rays": self.create_lifecycle_publisher(PoseArray, "~/instrument_rays", out),
            "markers": self.create_lifecycle_publisher(MarkerArray, "~/markers", out),
        }
        if RCLPY_TYPES.has(DETECTION_ARRAY):  # vision_msgs is optional
            from vision_msgs.msg import Classification, Detection2DArray, LabelInfo

            self._pubs["detections"] = self.create_lifecycle_publisher(Detection2DArray, "~/detections", out)
            self._pubs["frame_confidence"] = self.create_lifecycle_publisher(
                Classification, "~/frame_confidence", out
            )
            self._pubs["label_info"] = self.create_lifecycle_publisher(
                LabelInfo, "~/label_info", qos.latched_qos()
            )
        self._add_stereo_publishers()
        self.destroy_timer(self._diag_timer)
        self._diag_timer = self.create_timer(s.diagnostics_period, self._publish_diagnostics)
        self.get_logger().info(
            f"configured: model {self._model_path} on {self._backend_name}, classes {list(self._class_names)}"
        )
        return super().on_configure(state)

    def _add_stereo_publishers(self) -> None:
        """In stereo mode, the 3D outputs (at configure, or at activate after ``stereo`` was set)."""
        if not self._settings.stereo or "instrument_poses" in self._pubs:
            return
        out = qos.output_qos(self._settings.output_qos_depth)
        self._pubs["instrument_poses"] = self.create_lifecycle_publisher(PoseArray, "~/instrument_poses", out)
        if RCLPY_TYPES.has(DETECTION_3D_ARRAY):  # vision_msgs is optional
            from vision_msgs.msg import Detection3DArray

            self._pubs["detections_3d"] = self.create_lifecycle_publisher(
                Detection3DArray, "~/detections_3d", out
            )

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        s = self._settings
        self._add_stereo_publishers()
        ret = super().on_activate(state)  # enables the lifecycle publishers
        if "label_info" in self._pubs and self._label_frame_id is not None:
            self._publish_label_info()
        inputs = self._subscribe_stereo() if s.stereo else self._subscribe_mono()
        self._mailbox = LatestFrame()
        self._worker = threading.Thread(target=self._work, name="segmentation-worker", daemon=True)
        self._worker.start()
        self._active = True
        self.get_logger().info(f"active: {s.transport} {inputs} ({s.qos_reliability}, depth {s.qos_depth})")
        return ret

    def _image_subscription(self, topic: str, callback: Any) -> Any:
        s = self._settings
        in_qos = qos.input_qos(s.qos_reliability, s.qos_depth)
        if s.transport == "compressed":  # image_transport's name: the remapped base + /compressed
            compressed = self.resolve_topic_name(topic) + "/compressed"
            return self.create_subscription(CompressedImage, compressed, callback, in_qos)
        return self.create_subscription(Image, topic, callback, in_qos)

    def _info_subscription(self, topic: str, callback: Any) -> Any:
        info_qos = qos.camera_info_qos(self._settings.qos_reliability)
        return self.create_subscription(CameraInfo, topic, callback, info_qos)

    def _subscribe_mono(self) -> str:
        """Subscribe to ``image`` and ``camera_info``; returns what for the log line."""
        image_sub = self._image_subscription(IMAGE_TOPIC, self._on_image)
        info_sub = self._info_subscription(CAMERA_INFO_TOPIC, self._on_camera_info)
        self._subs += [image_sub, info_sub]
        return f"images on '{image_sub.topic_name}', camera info on '{info_sub.topic_name}'"

    def _subscribe_stereo(self) -> str:
        """A fresh pairer, then the four stereo subscriptions; returns what for the log line."""
        self._pairer = StereoPairer(parameters.sync_tolerance_ns(self._settings))
        subs = [
            self._image_subscription(LEFT_IMAGE_TOPIC, lambda msg: self._on_stereo_image(LEFT, msg)),
            self._image_subscription(RIGHT_IMAGE_TOPIC, lambda msg: self._on_stereo_image(RIGHT, msg)),
            self._info_subscription(LEFT_CAMERA_INFO_TOPIC, self._on_camera_info),
            self._info_subscription(RIGHT_CAMERA_INFO_TOPIC, self._on_right_camera_info),
        ]
        self._subs += subs
        left, right, left_info, right_info = (sub.topic_name for sub in subs)
        s = self._settings
        return (
            f"stereo images on '{left}' + '{right}' (sync tolerance {s.stereo_sync_tolerance} s, "
            f"{s.stereo_matching} matching), camera info on '{left_info}' + '{right_info}'"
        )

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release()
        ret = super().on_shutdown(state)
        self.finished.set_result(True)  # a finalized node has nothing left to do: main returns
        return ret

    def _stop_processing(self) -> None:
        self._active = False
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        self._mailbox.close()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
            self._worker = None
        # frames still waiting for their partner never pair: counted as unpaired
        self._pair_stats.retire_pairer(self._pairer.counters(), self._pairer.pending())
        self._pairer = StereoPairer()

    def _release(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        self._pipeline = None
        self._cameras.clear()
        self._right_cameras.clear()

    # --- parameters -------------------------------------------------------------------------

    def _on_parameters_set(self, params: list) -> None:
        """Run-time parameters take effect on the next frame: swap in a new snapshot."""
        self._settings = s = parameters.read(self)
        pipeline = self._pipeline
        if pipeline is not None and pipeline.pose_params.min_area_px != s.min_instrument_area:
            pipeline.pose_params = replace(pipeline.pose_params, min_area_px=s.min_instrument_area)
        if (
            self._active
            and any(p.name == "score_threshold" for p in params)
            and "label_info" in self._pubs
            and self._label_frame_id is not None
        ):
            self._publish_label_info()

    # --- callbacks (executor thread: must return at once) -----------------------------------

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self._stats.frame_received(dropped_one=self._mailbox.put((msg, time.perf_counter())))

    def _on_stereo_image(self, side: int, msg: Image | CompressedImage) -> None:
        """Pair by stamp; a completed pair goes to the mailbox (the pair it replaces is dropped)."""
        now = time.perf_counter()
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        add = self._pairer.add_left if side == LEFT else self._pairer.add_right
        pair = add(stamp_ns, (msg, now))
        if pair is not None:
            self._stats.frame_received(dropped_one=self._mailbox.put((pair, now)))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        """The mono (or left) camera; validated on arrival."""
        self._store_camera_info(msg, self._cameras, "camera info")

    def _on_right_camera_info(self, msg: CameraInfo) -> None:
        self._store_camera_info(msg, self._right_cameras, "right camera info")

    def _store_camera_info(self, msg: CameraInfo, cameras: CameraByStamp, what: str) -> None:
        """Validate on arrival: a refused CameraInfo is counted and the last valid one stays."""
        try:
            camera = CameraModel.from_camera_info(msg)
        except CameraInfoError as err:
            self._stats.camera_info(refused_kind=err.kind)
            self.get_logger().warning(f"{what} refused ({err.kind}): {err.reason}", throttle_duration_sec=5.0)
            return
        self._stats.camera_info(refused_kind=None)
        cameras.add(msg.header.stamp, camera)

    def _work(self) -> None:
        mailbox = self._mailbox  # this worker's own; a reactivation makes a new one
        while (item := mailbox.take()) is not None:
            payload, received_at = item
            try:
                if isinstance(payload, StereoPair):
                    self.process_pair(payload, received_at)
                else:
                    self.process_frame(payload, received_at)
            except Exception as exc:  # a bug or backend failure must not kill the worker
                if not self.context.ok():  # shutting down: publishers vanished mid-frame
                    return
                self._stats.error()
                self.get_logger().error(
                    f"frame failed: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0
                )

    # --- the per-frame path -----------------------------------------------------------------

    def process_frame(self, msg: Image | CompressedImage, received_at: float) -> None:
        """message -> RGB array -> pipeline -> messages, all stamped with the input header."""
        pipeline = self._pipeline
        if pipeline is None:
            return
        rgb = self._convert(msg)
        if rgb is None:
            return
        result = pipeline(rgb)
        self._publish_frame(result, rgb, msg.header, received_at)

    def process_pair(self, pair: StereoPair, received_at: float) -> None:
        """left + right message -> RGB arrays -> checked camera pair -> segmentation and 3D poses
        -> 3D messages, then the left view's usual ones, all stamped with the left header."""
        pipeline = self._pipeline
        if pipeline is None:
            return
        (left_msg, left_at), (right_msg, right_at) = pair.left, pair.right
        left_rgb, right_rgb = self._convert(left_msg), self._convert(right_msg)
        if left_rgb is None or right_rgb is None:
            return
        camera = self._stereo_camera(left_msg, right_msg, left_rgb, right_rgb)
        if camera is None:
            return
        result, poses, counts = self._stereo_poses(pipeline, left_rgb, right_rgb, camera)
        header = left_msg.header
        options = parameters.output_options(self._settings, self._class_names)
        self._publish(stereo_messages(RCLPY_TYPES, poses, header, options))
        self._pair_stats.pair_done((time.perf_counter() - min(left_at, right_at)) * 1000.0, counts)
        self._publish_frame(result, left_rgb, header, received_at, skip=("markers",))  # markers: 3D

    def _convert(self, msg: Image | CompressedImage) -> np.ndarray | None:
        """RGB array of a message, or None for bad input (counted, throttled log)."""
        try:
            return message_to_rgb(msg, self._settings.max_image_pixels)
        except ConversionError as err:
            self._stats.bad(err.kind)
            self.get_logger().warning(
                f"bad input frame ({err.kind}): {err.reason}", throttle_duration_sec=5.0
            )
            return None

    def _stereo_camera(
        self, left_msg: Any, right_msg: Any, left_rgb: np.ndarray, right_rgb: np.ndarray
    ) -> StereoCamera | None:
        """The pair's rectified cameras, or None for a refused pair (counted, throttled log)."""
        left_camera = self._cameras.for_stamp(left_msg.header.stamp)
        right_camera = self._right_cameras.for_stamp(right_msg.header.stamp)
        try:
            return stereo_camera_for(left_msg, right_msg, left_rgb, right_rgb, left_camera, right_camera)
        except StereoPairError as err:
            self._pair_stats.refuse(err.kind)
            self.get_logger().warning(
                f"stereo pair refused ({err.kind}): {err.reason}", throttle_duration_sec=5.0
            )
            return None

    def _stereo_poses(
        self,
        pipeline: SegmentationPipeline,
        left_rgb: np.ndarray,
        right_rgb: np.ndarray,
        camera: StereoCamera,
    ) -> tuple[FrameResult, list[Instrument3D], dict[str, int]]:
        """The left view's result and the 3D poses of its reported instruments, by
        ``stereo_matching`` (``deploy.stereo_step``, as cct-bag); plus this pair's counts."""
        s, counts = self._settings, StereoStats()
        left, poses = stereo_pair_poses(
            pipeline, left_rgb, right_rgb, camera, s.stereo_matching, s.score_threshold, counts
        )
        return left, poses, counts.as_dict()

    def _publish(self, messages: dict[str, Any]) -> None:
        for name, out_msg in messages.items():
            if name in self._pubs:
                self._pubs[name].publish(out_msg)

    def _publish_frame(
        self,
        result: FrameResult,
        rgb: np.ndarray,
        header: Any,
        received_at: float,
        skip: tuple[str, ...] = (),
    ) -> None:
        """A view's usual outputs (mask ... markers, overlay) with its header and CameraInfo."""
        s, pubs = self._settings, self._pubs
        if "label_info" in pubs and header.frame_id != self._label_frame_id:
            self._label_frame_id = header.frame_id
            self._publish_label_info()
        options = parameters.output_options(s, self._class_names)
        camera = self._cameras.for_stamp(header.stamp)
        messages = frame_messages(RCLPY_TYPES, result, header, camera, options)
        self._publish({name: msg for name, msg in messages.items() if name not in skip})
        self._stats.frame_done((time.perf_counter() - received_at) * 1000.0)
        if s.publish_overlay and pubs["overlay"].get_subscription_count() > 0:
            instruments = reported_instruments(result.instruments, s.score_threshold)
            drawn = draw_overlay(rgb, result.mask, instruments, class_names=self._class_names)
            bgr = np.ascontiguousarray(drawn[..., ::-1])
            pubs["overlay"].publish(array_to_image(RCLPY_TYPES, bgr, header, "bgr8"))

    # --- slow outputs -----------------------------------------------------------------------

    def _publish_label_info(self) -> None:
        header = Image().header
        header.stamp = self.get_clock().now().to_msg()
        header.frame_id = self._label_frame_id or ""
        self._pubs["label_info"].publish(
            label_info(RCLPY_TYPES, self._class_names, self._settings.score_threshold, header)
        )

    def _publish_diagnostics(self) -> None:
        values = self._stats.snapshot()
        state = "active" if self._active else ("inactive" if self._pipeline is not None else "unconfigured")
        values.update(
            {
                "state": state,
                "backend": self._backend_name or "-",
                "model": self._model_path or "-",
                "camera_info": "valid" if self._cameras.last is not None else "none",
            }
        )
        if self._settings.stereo:
            values.update(self._pair_stats.snapshot(self._pairer.counters()))
            values["right_camera_info"] = "valid" if self._right_cameras.last is not None else "none"
        refused = ("bad_input_total", "processing_errors", "bad_camera_info_total", "stereo_refused_total")
        if self._last_error:
            level, message = DiagnosticStatus.ERROR, self._last_error
        elif not self._active:
            level, message = DiagnosticStatus.WARN, f"not processing ({state})"
        elif any(values.get(key) for key in refused):
            level, message = DiagnosticStatus.WARN, "processing; some frames or camera infos were refused"
        else:
            level, message = DiagnosticStatus.OK, "processing"
        self._diag_pub.publish(
            diagnostics(
                self.get_clock().now().to_msg(),
                f"{self.get_fully_qualified_name()}: segmentation",
                self.get_fully_qualified_name(),
                level[0] if isinstance(level, bytes) else level,
                message,
                values,
            )
        )


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run cct_surgical_seg segmentation_node`` and ``python -m``.

    Returns 0 when SIGINT/SIGTERM (rclpy's handlers shut the context down) or the lifecycle
    ``shutdown`` transition ends the node, as ROS nodes do.
    """
    rclpy.init(args=args if args is not None else sys.argv)
    node = SegmentationNode()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if (
            node.get_parameter("autostart").value
            and node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        ):
            node.trigger_activate()
        executor.spin_until_future_complete(node.finished)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # Ctrl-C under ros2 launch sends SIGINT twice (the terminal's, then launch's own): the
        # second must not interrupt the cleanup (SIGTERM/SIGKILL still end a stuck process)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        node._stop_processing()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
