"""Section ``gemm``: this run's compute ceilings, measured in a fresh subprocess with the run's thread count.

* square matrix product ``n × n`` in float32 and bfloat16: GFLOP/s = ``2n³ / t``, the better of two backends:
  ``torch.mm`` (MKL for float32 in the CPU build, oneDNN for bfloat16) and oneDNN's ``mkldnn_linear`` on
  oneDNN-layout tensors (both are recorded: on AMD CPUs MKL's float32 GEMM can reach half of oneDNN's, and a
  ceiling that the convolutions, which run on oneDNN, beat by 2× would say little);
* a float32 3×3 convolution 64 → 64 channels at 160² (batch 1): GFLOP/s = ``2·64·64·9·160² / t``, the ceiling of
  a convolutional network's layers at the sizes the models run (the achievable fraction of the GEMM peak).

Each is the median of ``repeats`` calls after one warm-up call.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

__all__ = ["gemm_worker", "run"]


def _median_seconds(call: Any, repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gemm_worker(n: int, conv_size: int, conv_channels: int, repeats: int) -> dict[str, Any]:
    """Measure the three ceilings (runs in the subprocess)."""
    import torch
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(0)
    result: dict[str, Any] = {"n": n, "conv": {"channels": conv_channels, "size": conv_size, "kernel": 3}}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(n, n, generator=generator).to(dtype)
        b = torch.randn(n, n, generator=generator).to(dtype)
        backends = {"torch.mm": _median_seconds(lambda a=a, b=b: torch.mm(a, b), repeats)}
        try:
            a_dnn, b_dnn = a.to_mkldnn(), b.to_mkldnn()
            with torch.no_grad():
                backends["onednn"] = _median_seconds(
                    lambda a=a_dnn, b=b_dnn: torch._C._nn.mkldnn_linear(a, b), repeats)
        except (RuntimeError, AttributeError) as err:  # a build without oneDNN
            result.setdefault("notes", []).append(f"{name} oneDNN GEMM unavailable: {err}")
        gflops = {backend: 2 * n**3 / seconds / 1e9 for backend, seconds in backends.items()}
        best = max(gflops, key=gflops.__getitem__)
        result[name] = {"seconds": backends[best], "gflops": gflops[best], "backend": best, "backends": gflops}
    x = torch.randn(1, conv_channels, conv_size, conv_size, generator=generator)
    w = torch.randn(conv_channels, conv_channels, 3, 3, generator=generator)
    with torch.no_grad():
        seconds = _median_seconds(lambda: F.conv2d(x, w, padding=1), repeats)
    flops = 2 * conv_channels * conv_channels * 9 * conv_size**2
    result["conv"].update(seconds=seconds, gflops=flops / seconds / 1e9)
    return result


def run(isolated: Any, *, tiny: bool, repeats: int) -> dict[str, Any]:
    """The section's result: ``{"fp32": {...}, "bf16": {...}, "conv": {...}, "n": ...}`` or an error."""
    n, conv_size = (256, 32) if tiny else (2048, 160)
    return isolated.run("benchmarks.gemm:gemm_worker", n=n, conv_size=conv_size, conv_channels=64,
                        repeats=max(repeats, 3 if tiny else 10))
