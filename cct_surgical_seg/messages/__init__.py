"""ROS messages without rclpy: camera images <-> arrays (``images``), pipeline results -> the
node's output messages (``results``), built through ``types.MessageTypes`` on rclpy's classes
(``ros/msg_types.py``) or the rosbags typestore (``bag_types``)."""
