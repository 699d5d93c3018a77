"""GPU training and matrix-product throughput (``device="cuda"``); skipped without a GPU.

asv skips a benchmark whose ``setup`` raises ``NotImplementedError``: that happens when
numba-cuda is missing or no CUDA device is usable (and under the simulator, whose numbers
would mean nothing).  The measurements are the ones of ``benchmarks/gpu.py``.
"""
import os

from .gpu import bench_graphnn_matmul, bench_graphnn_train

GPU_NETS = {"mnist_b128": ((784, 256, 128, 10), 128), "mnist_b1024": ((784, 256, 128, 10), 1024),
            "wide_b1024": ((4096, 4096, 4096, 10), 1024)}


def _require_gpu():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        raise NotImplementedError("CUDA simulator: no GPU figures")
    try:
        from numba import cuda
    except ImportError as exc:                      # numba-cuda not installed
        raise NotImplementedError(f"numba-cuda is missing: {exc}")
    if not cuda.is_available():
        raise NotImplementedError("no usable CUDA device")
    return cuda


class GpuTrain:
    params = list(GPU_NETS)
    param_names = ["net"]
    timeout = 900

    def setup(self, name):
        _require_gpu()

    def track_steps_per_second(self, name):
        """Training steps/s through the compiled epoch loop (data on the device)."""
        widths, batch = GPU_NETS[name]
        return bench_graphnn_train(widths, batch, steps=50, repeats=3)["loop_steps_per_s"]

    track_steps_per_second.unit = "steps/s"

    def track_launches_per_step(self, name):
        widths, batch = GPU_NETS[name]
        return bench_graphnn_train(widths, batch, steps=2, repeats=1)["launches_per_step"]

    track_launches_per_step.unit = "launches"


class GpuMatmul:
    params = ["x @ W (+bias, relu)", "x^T @ dz", "dz @ W^T"]
    param_names = ["product"]
    timeout = 900

    def setup(self, product):
        self.cuda = _require_gpu()

    def track_tflops_4096(self, product):
        """The tiled product kernel's TFLOP/s at 4096 x 4096 x 4096, float32."""
        return bench_graphnn_matmul(self.cuda, 4096, repeats=10)[product]

    track_tflops_4096.unit = "TFLOP/s"
