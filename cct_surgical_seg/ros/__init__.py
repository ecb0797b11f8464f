"""The ROS 2 node (``segmentation_node``) and what only it needs: parameters, QoS, diagnostics,
rclpy message classes and launch-argument checks."""
