"""``segmentation_node``: a managed (lifecycle) ROS 2 node around ``deploy.SegmentationPipeline``.

The node holds ROS wiring only - parameters, QoS, lifecycle, a mailbox and a timer; pixels are
handled by ``conversions`` (message -> array), ``deploy`` (array -> FrameResult) and ``messages``
(FrameResult -> messages). :meth:`SegmentationNode.process_frame` is the whole per-frame path.

Threading, and why: the subscription callback only drops the message into a one-slot mailbox
(newest frame wins, the one it replaces is counted as dropped) and returns, so the executor is
never blocked by inference and nothing queues without bound. One worker thread takes frames
from the mailbox; ONNX Runtime releases the GIL while it runs, so services (lifecycle,
parameters) and diagnostics stay responsive while a frame is processed.

Lifecycle:
  configure  - read parameters, load the model (a bad path or file -> FAILURE with the reason in
               the log and in /diagnostics; the node stays up, unconfigured), create publishers
  activate   - publish LabelInfo (latched), subscribe to images (+ camera info), start the worker
  deactivate - unsubscribe, stop the worker; publishers stay but are disabled
  cleanup    - drop publishers and the model
  shutdown   - all of the above from any state
With ``autostart`` true (the default) the node configures and activates itself at start.

Topics (all ``~/`` = ``<namespace>/segmentation_node/``; every output carries the input header):
  in   <image_topic> sensor_msgs/Image (transport raw) or <image_topic>/compressed
       sensor_msgs/CompressedImage (transport compressed); <camera_info_topic> CameraInfo
  out  ~/mask (mono8 class ids, input size), ~/confidence (mono8|32FC1), ~/overlay (bgr8, only
       drawn while subscribed), ~/instruments (PoseArray, see ``messages`` for the convention),
       ~/markers (MarkerArray), ~/detections (Detection2DArray), ~/label_info (LabelInfo,
       transient local), /diagnostics.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter, deque
from dataclasses import replace
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseArray
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleState, Node, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from cct_surgical_seg.ros import conversions, messages, parameters, qos
from cct_surgical_seg.ros.conversions import ConversionError

NODE_NAME = "segmentation_node"


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


class FrameStats:
    """Counters and a latency window for /diagnostics (written by the worker, read by a timer)."""

    def __init__(self, window: int = 300) -> None:
        self._lock = threading.Lock()
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.errors = 0
        self.bad_input: Counter[str] = Counter({k: 0 for k in conversions.BAD_INPUT_KINDS})
        self._latency_ms: deque[float] = deque(maxlen=window)
        self._done_times: deque[float] = deque(maxlen=window)

    def frame_received(self, dropped_one: bool) -> None:
        with self._lock:
            self.received += 1
            self.dropped += int(dropped_one)

    def frame_done(self, latency_ms: float) -> None:
        with self._lock:
            self.processed += 1
            self._latency_ms.append(latency_ms)
            self._done_times.append(time.monotonic())

    def bad(self, kind: str) -> None:
        with self._lock:
            self.bad_input[kind] += 1

    def error(self) -> None:
        with self._lock:
            self.errors += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            lat = np.array(self._latency_ms) if self._latency_ms else np.zeros(1)
            times = list(self._done_times)
            rate = (
                (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
            )
            if times and time.monotonic() - times[-1] > 2.0:
                rate = 0.0
            values: dict[str, Any] = {
                "frames_received": self.received,
                "frames_processed": self.processed,
                "frames_dropped": self.dropped,
                "processing_errors": self.errors,
                "bad_input_total": sum(self.bad_input.values()),
                **{f"bad_input_{k}": v for k, v in sorted(self.bad_input.items())},
                "rate_hz": float(rate),
                "latency_ms_median": float(np.median(lat)),
                "latency_ms_p95": float(np.percentile(lat, 95)),
                "latency_ms_max": float(lat.max()),
            }
        return values


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
        self._pipeline: Any = None
        self._backend_name = ""
        self._model_path = ""
        self._class_names: tuple[str, ...] = ()
        self._camera: messages.CameraModel | None = None
        self._last_error = ""
        self._pubs: dict[str, Any] = {}
        self._subs: list[Any] = []

        # Diagnostics live for the node's whole life so a failed configure is visible too.
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(self._settings.diagnostics_period, self._publish_diagnostics)

    # --- lifecycle --------------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._settings = s = parameters.read(self)
        try:
            self._pipeline, self._backend_name, self._model_path, self._class_names = _load_pipeline(s)
        except Exception as exc:  # ModelLoadError, FileNotFoundError, BackendUnavailableError, ...
            self._last_error = f"configure failed: {type(exc).__name__}: {exc}"
            self.get_logger().error(self._last_error)
            return TransitionCallbackReturn.FAILURE
        self._last_error = ""
        out = qos.output_qos(s.output_qos_depth)
        self._pubs = {
            "mask": self.create_lifecycle_publisher(Image, "~/mask", out),
            "confidence": self.create_lifecycle_publisher(Image, "~/confidence", out),
            "overlay": self.create_lifecycle_publisher(Image, "~/overlay", out),
            "instruments": self.create_lifecycle_publisher(PoseArray, "~/instruments", out),
            "markers": self.create_lifecycle_publisher(MarkerArray, "~/markers", out),
        }
        if messages.HAVE_VISION_MSGS:
            from vision_msgs.msg import Detection2DArray, LabelInfo

            self._pubs["detections"] = self.create_lifecycle_publisher(Detection2DArray, "~/detections", out)
            self._pubs["label_info"] = self.create_lifecycle_publisher(
                LabelInfo, "~/label_info", qos.latched_qos()
            )
        self.destroy_timer(self._diag_timer)
        self._diag_timer = self.create_timer(s.diagnostics_period, self._publish_diagnostics)
        self.get_logger().info(
            f"configured: model {self._model_path} on {self._backend_name}, classes {list(self._class_names)}"
        )
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        s = self._settings
        ret = super().on_activate(state)  # enables the lifecycle publishers
        if "label_info" in self._pubs:
            self._publish_label_info()
        in_qos = qos.input_qos(s.qos_reliability, s.qos_depth)
        if s.transport == "compressed":
            topic = s.image_topic.rstrip("/") + "/compressed"
            self._subs.append(self.create_subscription(CompressedImage, topic, self._on_image, in_qos))
        else:
            topic = s.image_topic
            self._subs.append(self.create_subscription(Image, topic, self._on_image, in_qos))
        if s.camera_info_topic:
            self._subs.append(
                self.create_subscription(CameraInfo, s.camera_info_topic, self._on_camera_info, in_qos)
            )
        self._mailbox = LatestFrame()
        self._worker = threading.Thread(target=self._work, name="segmentation-worker", daemon=True)
        self._worker.start()
        self._active = True
        self.get_logger().info(
            f"active: {s.transport} images on '{topic}' ({s.qos_reliability}, depth {s.qos_depth})"
        )
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release()
        return super().on_shutdown(state)

    def _stop_processing(self) -> None:
        self._active = False
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        self._mailbox.close()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
            self._worker = None

    def _release(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        self._pipeline = None
        self._camera = None

    # --- parameters -------------------------------------------------------------------------

    def _on_parameters_set(self, params: list) -> None:
        """Run-time parameters take effect on the next frame: swap in a new snapshot."""
        self._settings = s = parameters.read(self)
        pipeline = self._pipeline
        if pipeline is not None and pipeline.pose_params.min_area_px != s.min_instrument_area:
            pipeline.pose_params = replace(pipeline.pose_params, min_area_px=s.min_instrument_area)
        if self._active and any(p.name == "score_threshold" for p in params) and "label_info" in self._pubs:
            self._publish_label_info()

    # --- callbacks (executor thread: must return at once) -----------------------------------

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self._stats.frame_received(dropped_one=self._mailbox.put((msg, time.perf_counter())))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera = messages.CameraModel.from_camera_info(msg)

    def _work(self) -> None:
        mailbox = self._mailbox  # this worker's own; a reactivation makes a new one
        while (item := mailbox.take()) is not None:
            msg, received_at = item
            try:
                self.process_frame(msg, received_at)
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
        s, pubs, pipeline, camera = self._settings, self._pubs, self._pipeline, self._camera
        if pipeline is None:
            return
        try:
            rgb = conversions.message_to_rgb(msg, s.max_image_pixels)
        except ConversionError as err:
            self._stats.bad(err.kind)
            self.get_logger().warning(
                f"bad input frame ({err.kind}): {err.reason}", throttle_duration_sec=5.0
            )
            return

        result = pipeline(rgb)
        instruments = [inst for inst in result.instruments if inst.score >= s.score_threshold]
        header = msg.header
        pubs["mask"].publish(messages.mask_to_image(result.mask, header))
        pubs["confidence"].publish(
            messages.confidence_to_image(result.confidence, header, s.confidence_encoding)
        )
        pubs["instruments"].publish(messages.instruments_to_pose_array(instruments, header, camera))
        pubs["markers"].publish(
            messages.instruments_to_markers(
                instruments, header, camera, s.marker_pixel_size, s.marker_ray_length
            )
        )
        if "detections" in pubs:
            pubs["detections"].publish(
                messages.instruments_to_detections(instruments, header, self._class_names)
            )
        self._stats.frame_done((time.perf_counter() - received_at) * 1000.0)
        if s.publish_overlay and pubs["overlay"].get_subscription_count() > 0:
            overlay_bgr = _draw_overlay(rgb, result, instruments, self._class_names)
            pubs["overlay"].publish(conversions.array_to_image(overlay_bgr, header, "bgr8"))

    # --- slow outputs -----------------------------------------------------------------------

    def _publish_label_info(self) -> None:
        header = Image().header
        header.stamp = self.get_clock().now().to_msg()
        self._pubs["label_info"].publish(
            messages.label_info(self._class_names, self._settings.score_threshold, header)
        )

    def _publish_diagnostics(self) -> None:
        values = self._stats.snapshot()
        state = "active" if self._active else ("inactive" if self._pipeline is not None else "unconfigured")
        values.update(
            {
                "state": state,
                "backend": self._backend_name or "-",
                "model": self._model_path or "-",
                "pose_units": "ray" if self._camera is not None else "pixel",
            }
        )
        if self._last_error:
            level, message = DiagnosticStatus.ERROR, self._last_error
        elif not self._active:
            level, message = DiagnosticStatus.WARN, f"not processing ({state})"
        elif values["bad_input_total"] or values["processing_errors"]:
            level, message = DiagnosticStatus.WARN, "processing; some frames were refused"
        else:
            level, message = DiagnosticStatus.OK, "processing"
        self._diag_pub.publish(
            messages.diagnostics(
                self.get_clock().now().to_msg(),
                f"{self.get_fully_qualified_name()}: segmentation",
                self.get_fully_qualified_name(),
                level[0] if isinstance(level, bytes) else level,
                message,
                values,
            )
        )


def _load_pipeline(s: parameters.Settings) -> tuple[Any, str, str, tuple[str, ...]]:
    """Backend + pipeline for the configured model; raises with a reason the log can show."""
    from cct_surgical_seg.deploy.backends import create_backend
    from cct_surgical_seg.deploy.pipeline import SegmentationPipeline
    from cct_surgical_seg.deploy.poses import PoseParams

    path = parameters.resolve_model_path(s.model_path)
    options = {"num_threads": s.inference_threads} if s.inference_threads > 0 else {}
    backend = create_backend(s.backend, str(path), **options)
    pipeline = SegmentationPipeline(backend, PoseParams(min_area_px=s.min_instrument_area))
    return pipeline, backend.describe(), str(path), tuple(backend.info.class_names)


def _draw_overlay(
    rgb: np.ndarray, result: Any, instruments: list, class_names: tuple[str, ...]
) -> np.ndarray:
    """bgr8 overlay drawn by the deploy layer (only called while ~/overlay has a subscriber)."""
    from cct_surgical_seg.deploy.overlay import draw_overlay

    drawn = draw_overlay(rgb, result.mask, instruments, class_names=class_names)
    return np.ascontiguousarray(drawn[..., ::-1])  # RGB -> BGR


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run cct_surgical_seg segmentation_node`` and ``python -m``."""
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
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node._stop_processing()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
