"""Tools that work on recorded data without a ROS graph: segmenting bags (``cct-bag``), bag
reading and writing, and scoring against simulator ground truth."""
