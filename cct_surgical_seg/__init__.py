"""Surgical-instrument segmentation: Cross-Consistency Training, deployment and ROS 2 node."""

__version__ = "0.1.0"
