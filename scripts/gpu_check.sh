#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU (and TensorRT / onnxruntime-gpu where installed):
# versions; TensorRT FP32/FP16/INT8 and ONNX Runtime CUDA against ONNX Runtime CPU (probability
# difference, mask agreement); engine cache reuse on restart; out-of-profile shapes refused;
# network and end-to-end latency at 512x640; one JSON summary (gpu_check.json). What is not
# installed is skipped with the reason; the whole check stops after 10 minutes. docs/tensorrt.md.
# Usage: bash scripts/gpu_check.sh [--out FILE] [--budget-s 540] [--frames 8] [--repeats 200]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
exec timeout 600 python3 bench/gpu_check.py "$@"
