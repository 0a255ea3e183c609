"""Analytical phantoms for tests and the physics demo.

The modified Shepp–Logan head phantom (Toft, "The Radon transform: theory and implementation",
PhD thesis, 1996, Table B.2 — the higher-contrast variant of Shepp & Logan, IEEE TNS 1974), drawn
on an arbitrary grid, optionally with a smooth background phase as real MR images have.
"""

from __future__ import annotations

import math

import torch

__all__ = ["shepp_logan"]

# (intensity, semi-axis a, semi-axis b, centre x0, centre y0, rotation in degrees)
_TOFT_ELLIPSES: tuple[tuple[float, float, float, float, float, float], ...] = (
    (1.0, 0.69, 0.92, 0.0, 0.0, 0.0),
    (-0.8, 0.6624, 0.8740, 0.0, -0.0184, 0.0),
    (-0.2, 0.1100, 0.3100, 0.22, 0.0, -18.0),
    (-0.2, 0.1600, 0.4100, -0.22, 0.0, 18.0),
    (0.1, 0.2100, 0.2500, 0.0, 0.35, 0.0),
    (0.1, 0.0460, 0.0460, 0.0, 0.1, 0.0),
    (0.1, 0.0460, 0.0460, 0.0, -0.1, 0.0),
    (0.1, 0.0460, 0.0230, -0.08, -0.605, 0.0),
    (0.1, 0.0230, 0.0230, 0.0, -0.606, 0.0),
    (0.1, 0.0230, 0.0460, 0.06, -0.605, 0.0),
)


def shepp_logan(
    shape: tuple[int, int], phase_cycles: float = 0.0, dtype: torch.dtype = torch.complex64
) -> torch.Tensor:
    """Modified Shepp–Logan phantom on an ``(H, W)`` grid spanning [−1, 1]².

    Args:
        shape: ``(H, W)`` in pixels, both ≥ 2.
        phase_cycles: amplitude of a smooth linear-plus-quadratic background phase, in cycles
            across the field of view (0 = real-valued phantom).
        dtype: complex output dtype.

    Returns:
        ``(H, W)`` complex tensor; magnitudes in [0, 1] (arbitrary units).

    Raises:
        ValueError: if a dimension is smaller than 2.
    """
    h, w = shape
    if h < 2 or w < 2:
        raise ValueError(f"shepp_logan: shape must be at least (2, 2), got {shape}")
    real = torch.float64
    y = torch.linspace(1.0, -1.0, h, dtype=real)[:, None].expand(h, w)
    x = torch.linspace(-1.0, 1.0, w, dtype=real)[None, :].expand(h, w)
    image = torch.zeros(h, w, dtype=real)
    for value, a, b, x0, y0, degrees in _TOFT_ELLIPSES:
        theta = math.radians(degrees)
        xr = (x - x0) * math.cos(theta) + (y - y0) * math.sin(theta)
        yr = -(x - x0) * math.sin(theta) + (y - y0) * math.cos(theta)
        image = image + value * ((xr / a) ** 2 + (yr / b) ** 2 <= 1.0)
    phase = 2 * math.pi * phase_cycles * (0.5 * x + 0.3 * y + 0.25 * (x**2 - y**2))
    return torch.polar(image.clamp_min(0.0), phase).to(dtype)
