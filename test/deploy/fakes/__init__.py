"""Fakes of GPU-only runtimes (TensorRT, CUDA) so the TensorRT backend's code runs in CI."""
