#!/usr/bin/env bash
# Set up (idempotently) and run the demo: simulated endoscope -> segmentation node in a real
# ROS 2 graph, with latency, Dice and tip error against ground truth. Arguments go to cct-demo.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/setup_env.sh
# shellcheck disable=SC1091
. scripts/env.sh
exec cct-demo "$@"
