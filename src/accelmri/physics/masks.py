"""Cartesian undersampling masks for (low-resolution) k-space.

Every mask is a float32 ``(H, W)`` tensor of zeros and ones that broadcasts against centered k-space
``(..., H, W)`` (DC at ``(H // 2, W // 2)``, see :mod:`accelmri.physics.fft`). ``(H, W)`` is the size of the
*acquired* k-space, i.e. the low-resolution grid after truncation (:func:`accelmri.physics.degrade.lowres`),
and the acceleration ``R`` is counted inside that grid: ``R = H·W / Σ mask`` (design/data.md, "Degradation,
precisely"; the total acceleration against the high-resolution grid is ``R·s``).

Kinds (:data:`MASK_KINDS`):

- ``random``, ``equispaced``, ``gaussian1d``: 1-D masks that undersample the phase-encode direction, the last
  dim ``W`` (columns, fastMRI convention), and are constant along ``H`` (readout). All keep a fully sampled
  centre block of ``round(W · center_fraction)`` columns, ``start = W // 2 - n_c // 2`` (the same centring as
  :func:`~accelmri.physics.degrade.lowres`; it equals fastMRI's ``(W - n_c + 1) // 2`` except when ``W`` is
  odd and ``n_c`` even), and sample exactly ``round(W / R)`` columns in total, so the realised acceleration
  hits the request up to the rounding of one column.
- ``poisson2d``: 2-D variable-density Poisson-disc sampling over ``(H, W)`` with a fully sampled calibration box.

Sources: fastMRI ``RandomMaskFunc`` / ``EquispacedMaskFractionBased`` (Zbontar et al., 2018,
``fastmri/data/subsample.py``); variable-density Poisson-disc sampling as in SigPy ``sigpy.mri.poisson`` /
BART ``poisson`` (Lustig et al., 2007, compressed-sensing MRI).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["MASK_KINDS", "check_mask_params", "make_mask", "realised_acceleration"]

MASK_KINDS: tuple[str, ...] = ("random", "equispaced", "gaussian1d", "poisson2d")

# Poisson-disc density tuning: relative tolerance on the number of samples and the number of sampler runs.
_POISSON_TOL = 0.02
_POISSON_MAX_RUNS = 8
# Time and memory of the Poisson-disc sampler grow like R·H·W (conflict pairs); beyond this R it is refused.
_POISSON_MAX_ACCELERATION = 32.0


def check_mask_params(kind: str, acceleration: float, center_fraction: float, seed: int | None = None) -> None:
    """Validate the shape-independent mask parameters.

    Args:
        kind: one of :data:`MASK_KINDS`.
        acceleration: requested acceleration ``R ≥ 1`` (finite).
        center_fraction: fraction of the fully sampled centre, in ``[0, 1)``.
        seed: ``None`` or a non-negative int.

    Raises:
        ValueError: naming the offending argument and its value.
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"kind: unknown mask kind {kind!r}; valid kinds are {', '.join(MASK_KINDS)}")
    if isinstance(acceleration, bool) or not isinstance(acceleration, (int, float)):
        raise ValueError(f"acceleration must be a real number >= 1, got {acceleration!r}")
    if not (math.isfinite(acceleration) and acceleration >= 1):
        raise ValueError(f"acceleration must be a finite number >= 1, got {acceleration!r}")
    if isinstance(center_fraction, bool) or not isinstance(center_fraction, (int, float)):
        raise ValueError(f"center_fraction must be a number in [0, 1), got {center_fraction!r}")
    if not 0 <= center_fraction < 1:
        raise ValueError(f"center_fraction must be in [0, 1), got {center_fraction!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")


def make_mask(
    kind: str,
    shape: tuple[int, int],
    acceleration: float,
    center_fraction: float,
    seed: int | None,
    *,
    sigma_fraction: float = 1 / 6,
) -> torch.Tensor:
    """Build an undersampling mask for centered k-space of size ``shape``.

    Kinds (see the module docstring for the conventions common to all):

    - ``random`` (fastMRI ``RandomMaskFunc``): centre block plus ``round(W/R) - n_c`` other columns chosen
      uniformly without replacement (fastMRI draws each column independently, so its realised R fluctuates;
      here the count is exact).
    - ``equispaced`` (fastMRI ``EquispacedMaskFractionBased``): centre block plus ``n_e = round(W/R) - n_c``
      columns on a regular lattice of fractional spacing ``(W - n_c) / n_e`` (fastMRI's "adjusted
      acceleration") with a seeded random offset in ``[0, spacing)``. The lattice runs over the columns outside
      the centre block (it skips the block instead of losing the lines that fall inside it), so the column
      count is exact and consecutive sampled columns on either side of the centre are ``floor(spacing)`` or
      ``ceil(spacing)`` apart.
    - ``gaussian1d``: 1-D variable density; centre block plus ``n_e`` columns drawn without replacement with
      probability ∝ ``exp(-(x - W//2)² / (2σ²))``, ``σ = sigma_fraction · W`` (default ``W/6``), via the
      Gumbel-top-k trick (exactly sequential weighted sampling without replacement).
    - ``poisson2d``: 2-D variable-density Poisson-disc sampling. A calibration box of
      ``round(H·cf) × round(W·cf)`` samples (``start = N // 2 - n // 2`` on each axis) is fully sampled. Let
      ``ρ`` be the per-axis distance to that box normalised by its largest value on the axis (``ρ = 0`` on the
      box, 1 at the middle of each edge of k-space, ``√2`` in the corners); the minimum distance between
      samples, in pixels, is ``r = a · ρ``, so it grows linearly with the distance from the centre (pixels with
      ``r < 1`` are effectively fully sampled). Two pixels conflict when their distance is below the mean of
      their radii; samples are a maximal conflict-free set chosen greedily in a seeded random order (discrete
      random sequential adsorption, computed in parallel rounds). The scale ``a`` is tuned so the number of
      samples is within 2 % of ``round(H·W/R)`` (a density model ``#{r<1} + c·Σ_{r≥1} r⁻²`` whose constant ``c``
      is refitted after each sampler run; at most 8 runs, the closest is kept).

    Args:
        kind: one of :data:`MASK_KINDS`.
        shape: ``(H, W)`` of the acquired (possibly low-resolution) k-space, positive ints.
        acceleration: requested acceleration ``R ≥ 1`` inside the acquired grid; ``R == 1`` gives all ones.
        center_fraction: fraction of the fully sampled centre in ``[0, 1)`` (columns for 1-D kinds, each axis of
            the calibration box for ``poisson2d``). Typical: 0.08 at R = 4, 0.04 at R = 8 (fastMRI).
        seed: seed for ``np.random.default_rng`` (non-negative int): equal seeds give identical masks;
            ``None`` draws fresh OS entropy (nondeterministic, e.g. for training).
        sigma_fraction: width of the ``gaussian1d`` density as a fraction of ``W`` (ignored by other kinds).

    Returns:
        float32 CPU tensor ``(H, W)`` of 0/1; 1-D kinds are constant along ``H``.

    Raises:
        ValueError: unknown ``kind`` (the valid kinds are listed), non-positive ``shape``, ``acceleration < 1``,
            ``center_fraction`` outside ``[0, 1)``, negative ``seed``, non-positive ``sigma_fraction``, a
            fully sampled centre larger than the sampling budget ``W/R`` (1-D) or ``H·W/R`` (``poisson2d``), or
            a budget that rounds to zero samples, or ``acceleration > 32`` for ``poisson2d`` (its time and
            memory grow like ``R·H·W``: about 0.05 s at R = 8 and 0.5 s at R = 32 for 256×256).
    """
    check_mask_params(kind, acceleration, center_fraction, seed)
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 2
        or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0 for n in shape)
    ):
        raise ValueError(f"shape must be two positive ints (H, W), got {shape!r}")
    if not (math.isfinite(sigma_fraction) and sigma_fraction > 0):
        raise ValueError(f"sigma_fraction must be a positive number, got {sigma_fraction!r}")
    height, width = int(shape[0]), int(shape[1])
    if acceleration == 1:
        return torch.ones(height, width, dtype=torch.float32)
    rng = np.random.default_rng(seed)
    if kind == "poisson2d":
        mask = _poisson2d(height, width, acceleration, center_fraction, rng)
    else:
        columns = _mask_1d(kind, width, acceleration, center_fraction, sigma_fraction, rng)
        mask = np.broadcast_to(columns, (height, width))
    return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))


def realised_acceleration(mask: torch.Tensor) -> float:
    """Realised acceleration ``numel / Σ mask`` (``H·W / Σ mask`` for an ``(H, W)`` mask).

    Args:
        mask: 0/1 mask tensor ``(H, W)`` (any real dtype); extra leading dims are averaged over.

    Returns:
        The acceleration as a Python float (1.0 for a fully sampled mask).

    Raises:
        ValueError: if the mask has fewer than 2 dims or samples nothing.
    """
    if mask.ndim < 2:
        raise ValueError(f"mask must have at least 2 dims (H, W), got shape {tuple(mask.shape)}")
    total = float(mask.sum())
    if total <= 0:
        raise ValueError("mask samples no k-space location; the acceleration is undefined")
    return mask.numel() / total


def _centre_slice(n: int, n_centre: int) -> slice:
    """Slice of ``n_centre`` indices centred on the DC index ``n // 2`` of an axis of length ``n``."""
    start = n // 2 - n_centre // 2
    return slice(start, start + n_centre)


def _mask_1d(
    kind: str,
    width: int,
    acceleration: float,
    center_fraction: float,
    sigma_fraction: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Boolean column mask ``(W,)`` for the 1-D kinds (``random``, ``equispaced``, ``gaussian1d``)."""
    n_total = round(width / acceleration)
    n_centre = round(width * center_fraction)
    if n_centre > n_total:
        raise ValueError(
            f"center_fraction={center_fraction} gives a fully sampled centre of {n_centre} columns, more than "
            f"the sampling budget W/acceleration = {width}/{acceleration} ≈ {width / acceleration:.2f} columns"
        )
    if n_total < 1:
        raise ValueError(
            f"acceleration={acceleration} leaves no column to sample for W={width} (budget round(W/R) = 0)"
        )
    columns = np.zeros(width, dtype=bool)
    columns[_centre_slice(width, n_centre)] = True
    outside = np.flatnonzero(~columns)
    n_extra = n_total - n_centre
    if kind == "random":
        chosen = rng.choice(outside, size=n_extra, replace=False)
    elif kind == "equispaced":
        spacing = outside.size / max(n_extra, 1)
        offset = rng.uniform(0.0, spacing)
        positions = np.floor(offset + spacing * np.arange(n_extra)).astype(np.int64)
        chosen = outside[np.minimum(positions, outside.size - 1)]
    else:  # gaussian1d
        sigma = sigma_fraction * width
        log_weight = -((outside - width // 2) ** 2) / (2.0 * sigma**2)
        keys = log_weight + rng.gumbel(size=outside.size)
        chosen = outside[np.argsort(-keys)[:n_extra]]
    columns[chosen] = True
    return columns


def _poisson2d(
    height: int, width: int, acceleration: float, center_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Boolean ``(H, W)`` variable-density Poisson-disc mask (see :func:`make_mask`)."""
    if acceleration > _POISSON_MAX_ACCELERATION:
        raise ValueError(
            f"acceleration={acceleration} is above {_POISSON_MAX_ACCELERATION:g}, the largest supported by poisson2d"
        )
    n_total = round(height * width / acceleration)
    calib_h, calib_w = round(height * center_fraction), round(width * center_fraction)
    if calib_h * calib_w > n_total:
        raise ValueError(
            f"center_fraction={center_fraction} gives a {calib_h}x{calib_w} calibration box of "
            f"{calib_h * calib_w} samples, more than the sampling budget H*W/acceleration = "
            f"{height}*{width}/{acceleration} ≈ {height * width / acceleration:.1f}"
        )
    if n_total < 1:
        raise ValueError(f"acceleration={acceleration} leaves no sample for shape {(height, width)}")
    calib = (_centre_slice(height, calib_h), _centre_slice(width, calib_w))
    if n_total <= max(calib_h, 1) * max(calib_w, 1):  # budget used up by the box (or the DC sample)
        mask = np.zeros((height, width), dtype=bool)
        mask[_centre_slice(height, max(calib_h, 1)), _centre_slice(width, max(calib_w, 1))] = True
        return mask
    rho = np.hypot(*np.meshgrid(_box_distance(height, calib_h), _box_distance(width, calib_w), indexing="ij"))
    priority = rng.permutation(height * width)

    # Density model: n(a) ≈ #{a·ρ < 1} + c · Σ_{a·ρ ≥ 1} (a·ρ)⁻², evaluated in O(log n) from sorted ρ.
    rho_sorted = np.sort(rho, axis=None)
    inv_sq = np.zeros_like(rho_sorted)
    inv_sq[rho_sorted > 0] = rho_sorted[rho_sorted > 0] ** -2.0
    tail = np.concatenate([np.cumsum(inv_sq[::-1])[::-1], [0.0]])

    def model_terms(scale: float) -> tuple[int, float]:
        """``(#{a·ρ < 1}, Σ_{a·ρ ≥ 1} (a·ρ)⁻²)`` for ``a = scale``."""
        k = int(np.searchsorted(rho_sorted, 1.0 / scale, side="left"))
        return k, tail[k] / scale**2

    def solve_scale(c: float) -> float:
        """Scale at which the model predicts ``n_total`` samples (the model decreases with the scale)."""

        def too_many(scale: float) -> bool:
            full, tail_sum = model_terms(scale)
            return full + c * tail_sum > n_total

        lo, hi = 1e-6, 1.0
        while too_many(hi):
            lo, hi = hi, 2.0 * hi
        for _ in range(60):
            mid = math.sqrt(lo * hi)
            lo, hi = (mid, hi) if too_many(mid) else (lo, mid)
        return hi

    c = 0.56  # fitted constant of this sampler (0.54–0.58 over R 2..8, cf 0.04–0.16, sizes 64..256)
    runs: list[tuple[float, np.ndarray]] = []
    for _ in range(_POISSON_MAX_RUNS):
        scale = solve_scale(c)
        mask = _greedy_poisson_disc(scale * rho, priority)
        count = int(mask.sum())
        runs.append((abs(count - n_total) / n_total, mask))
        if runs[-1][0] <= _POISSON_TOL:
            break
        full, tail_sum = model_terms(scale)
        if tail_sum > 0:
            c = min(max((count - full) / tail_sum, 0.05), 1.0)
    best = min(runs, key=lambda run: run[0])[1]
    best[calib] = True
    return best


def _box_distance(n: int, n_box: int) -> np.ndarray:
    """Distance of each index of an axis of length ``n`` to the centred box of ``n_box`` indices (at least the
    DC index), normalised to a maximum of 1 (``(n,)`` float64)."""
    box = _centre_slice(n, max(n_box, 1))
    idx = np.arange(n)
    dist = np.maximum(np.maximum(box.start - idx, idx - (box.stop - 1)), 0).astype(np.float64)
    return dist / max(dist.max(), 1.0)


def _greedy_poisson_disc(radius: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """Maximal Poisson-disc set on the pixel grid for a variable radius field.

    Pixels ``p, q`` conflict when ``|p - q| < (radius[p] + radius[q]) / 2``. The result equals visiting pixels
    in increasing ``priority`` and keeping each one that conflicts with no kept pixel (random sequential
    adsorption), computed as a parallel greedy maximal independent set: each round keeps every undecided pixel
    with no undecided higher-priority neighbour and drops the neighbours of the pixels it keeps.

    Args:
        radius: ``(H, W)`` non-negative minimum distances in pixels.
        priority: ``(H·W,)`` permutation of ``0..H·W-1`` (lower is visited first).

    Returns:
        Boolean ``(H, W)`` mask of the kept pixels.
    """
    height, width = radius.shape
    index = np.arange(height * width, dtype=np.int32).reshape(height, width)
    r_max = float(radius.max())
    reach_y, reach_x = min(math.ceil(r_max), height - 1), min(math.ceil(r_max), width - 1)
    first, second = [], []
    for dy in range(reach_y + 1):
        for dx in range(-reach_x, reach_x + 1):
            dist = math.hypot(dy, dx)
            if (dy == 0 and dx <= 0) or dist >= r_max:
                continue
            rows = slice(0, height - dy)
            cols, cols_shifted = (
                slice(max(0, -dx), min(width, width - dx)),
                slice(max(0, dx), min(width, width + dx)),
            )
            conflict = radius[rows, cols] + radius[dy:, cols_shifted] > 2.0 * dist
            first.append(index[rows, cols][conflict])
            second.append(index[dy:, cols_shifted][conflict])
    u = np.concatenate(first) if first else np.zeros(0, dtype=np.int32)
    v = np.concatenate(second) if second else np.zeros(0, dtype=np.int32)
    swap = priority[u] > priority[v]
    u, v = np.where(swap, v, u), np.where(swap, u, v)  # u now has the higher priority on every edge

    state = np.zeros(height * width, dtype=np.int8)  # 0 undecided, 1 kept, -1 dropped
    while (state == 0).any():
        dominated = np.zeros(height * width, dtype=bool)
        dominated[v] = True
        roots = (state == 0) & ~dominated
        state[roots] = 1
        state[v[roots[u]]] = -1
        keep = (state[u] == 0) & (state[v] == 0)
        u, v = u[keep], v[keep]
    return (state == 1).reshape(height, width)
