"""Coarse-to-fine relevance search against the exact search: speed, argmax agreement and soft-attention deficit.

:func:`~accelmri.models.blocks.correspondence.relevance_search` with ``coarse`` (global search over
``coarse × coarse``-summed descriptors, exact refinement inside the ``candidates`` best key cells) is compared with
the exact search on the same features: wall time of each (one fresh subprocess per row, one thread), the fraction
of queries whose argmax equals the exact argmax, and the soft-attention deficit ``max_j r_ij − returned r`` (≥ 0:
the returned value is an exact ``r_ij``), mean and max over queries.

Features (no trained model is involved):

- ``brain``: a fixed filter bank of a digital-brain slice (subject 3, 256² single coil, the centre slice of
  :func:`~accelmri.data.digital_brain.digital_brain_subject`): Gaussian derivatives up to second order at six
  scales and shifted copies of the lightly smoothed image (:func:`filter_bank`), each channel standardised. The
  query is the bank of the T2 magnitude and the key the bank of the co-registered FLAIR magnitude (FASR-Net's
  target/reference pair), both on a ``size²`` grid by k-space truncation (``256 / size``); with 256² keys the
  query is the central 128² crop of the 256² T2 image.
- ``noise``: independent white Gaussian query and key features (the worst case: no spatial structure for the
  coarse search to use).

Run: ``.venv/bin/python -m benchmarks.coarse_search [--coarse 4] [--candidates 8] [--no-large]`` (a few minutes on
one thread; the 128² × 256² rows add about a minute of exact search).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import Isolated, environment, measure, print_result

__all__ = ["brain_features", "coarse_worker", "filter_bank", "main"]

_SCALES = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
_ORDERS = ((0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2))  # (d/dy, d/dx) orders


def _gaussian_derivative(sigma: float, order: int) -> torch.Tensor:
    """1-D sampled Gaussian derivative of ``order`` 0–2, ``(2⌈3σ⌉ + 1,)`` float64 (the Gaussian sums to 1)."""
    x = torch.arange(-math.ceil(3 * sigma), math.ceil(3 * sigma) + 1, dtype=torch.float64)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g, -x / sigma**2 * g, (x**2 - sigma**2) / sigma**4 * g)[order]


def _separable(image: torch.Tensor, column: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    """``(1, 1, H, W)`` filtered by ``column ⊗ row`` with zero padding (same size)."""
    out = F.conv2d(image, column.view(1, 1, -1, 1).to(image.dtype), padding=(column.numel() // 2, 0))
    return F.conv2d(out, row.view(1, 1, 1, -1).to(image.dtype), padding=(0, row.numel() // 2))


def filter_bank(image: torch.Tensor) -> torch.Tensor:
    """64 deterministic feature channels of an image ``(H, W)`` → ``(1, 64, H, W)`` float32, each standardised.

    36 Gaussian derivatives (orders ``(0, 0)`` to ``(0, 2)`` at σ = 1, 1.5, 2, 3, 4, 6 pixels) and 28 copies of
    the σ = 1 smoothed image shifted by the offsets ``(dy, dx)`` with ``max(|dy|, |dx|) ≤ 2`` (24) and by 3 pixels
    along each axis (4), zero-filled at the border. Each channel has zero mean and unit standard deviation.
    """
    x = image.double()[None, None]
    channels = [_separable(x, _gaussian_derivative(s, oy), _gaussian_derivative(s, ox))
                for s in _SCALES for oy, ox in _ORDERS]
    smooth = _separable(x, _gaussian_derivative(1.0, 0), _gaussian_derivative(1.0, 0))
    offsets = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if (dy, dx) != (0, 0)]
    offsets += [(-3, 0), (3, 0), (0, -3), (0, 3)]
    padded = F.pad(smooth, (3, 3, 3, 3))
    height, width = image.shape
    channels += [padded[..., 3 + dy : 3 + dy + height, 3 + dx : 3 + dx + width] for dy, dx in offsets]
    bank = torch.cat(channels, dim=1)
    bank = (bank - bank.mean(dim=(-2, -1), keepdim=True)) / bank.std(dim=(-2, -1), keepdim=True)
    return bank.float()


def brain_features(size: int, key_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Query (T2) and key (FLAIR) filter banks ``(1, 64, size, size)`` / ``(1, 64, key_size, key_size)``.

    Equal sizes: both slices truncated in k-space to ``size²`` (from 256²). ``key_size = 256``: the key is the
    full FLAIR slice and the query the central ``size²`` crop of the full T2 slice.
    """
    from accelmri.data.digital_brain import digital_brain_subject
    from accelmri.physics.degrade import lowres
    from accelmri.physics.fft import ifft2c

    brain = digital_brain_subject(3, ("T2", "FLAIR"), coils=1, size=256, slices=1)
    kspace = {name: brain.kspace[name][0, 0] for name in ("T2", "FLAIR")}
    if key_size == size:
        images = {name: ifft2c(lowres(k, 256 // size)).abs() for name, k in kspace.items()}
        return filter_bank(images["T2"]), filter_bank(images["FLAIR"])
    if key_size != 256:
        raise ValueError(f"key_size must equal size or be 256, got {size} and {key_size}")
    start = (256 - size) // 2
    t2 = ifft2c(kspace["T2"]).abs()[start : start + size, start : start + size]
    return filter_bank(t2), filter_bank(ifft2c(kspace["FLAIR"]).abs())


def coarse_worker(features: str, size: int, key_size: int, patch: int, coarse: int, candidates: int) -> dict[str, Any]:
    """Time the exact and the coarse search on one case and compare their results (runs in the subprocess).

    Returns:
        ``median_s`` (coarse search, median of 3 after one warm-up), ``exact_s`` (one exact search), ``cpu_ratio``
        (exact / coarse process CPU time), ``match`` (fraction of queries with the exact argmax), ``deficit_mean``,
        ``deficit_max`` (exact − returned soft attention) and the memory fields of
        :func:`~benchmarks.common.measure` for the coarse search.
    """
    from accelmri.models.blocks.correspondence import relevance_search

    if features == "brain":
        query, key = brain_features(size, key_size)
    else:
        generator = torch.Generator().manual_seed(0)
        query = torch.randn(1, 64, size, size, generator=generator)
        key = torch.randn(1, 64, key_size, key_size, generator=generator)
    results: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def search(name: str, **options: Any) -> None:
        results[name] = relevance_search(query, key, patch=patch, **options)

    exact = measure(lambda: search("exact"), repeats=1, warmup=0)
    fast = measure(lambda: search("coarse", coarse=coarse, candidates=candidates), repeats=3, warmup=1)
    (soft, index), (coarse_soft, coarse_index) = results["exact"], results["coarse"]
    deficit = soft - coarse_soft
    return {**fast, "exact_s": exact["median_s"], "cpu_ratio": exact["cpu_median_s"] / fast["cpu_median_s"],
            "match": (index == coarse_index).double().mean().item(), "deficit_mean": deficit.mean().item(),
            "deficit_max": deficit.max().item()}


def main(argv: list[str] | None = None) -> None:
    """Measure every case in its own one-thread subprocess and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coarse", type=int, default=4, help="cell side of the coarse search")
    parser.add_argument("--candidates", type=int, default=8, help="key cells refined per query cell")
    parser.add_argument("--no-large", action="store_true", help="skip the 128² × 256² rows")
    args = parser.parse_args(argv)
    cases = [(features, size, size, patch) for features, size in (("brain", 64), ("brain", 128), ("noise", 128))
             for patch in (3, 1)]
    if not args.no_large:
        cases += [("brain", 128, 256, patch) for patch in (3, 1)]
    facts = environment(threads=1, start_method="spawn")
    print(f"# coarse search ({facts['date']}, torch {facts['torch']}, {facts['cpu']}, 1 thread)", flush=True)
    runner = Isolated(threads=1)
    rows = []
    for features, size, key_size, patch in cases:
        label = f"{features} {size}² × {key_size}² keys, patch {patch}"
        result = runner.run("benchmarks.coarse_search:coarse_worker", features=features, size=size,
                            key_size=key_size, patch=patch, coarse=args.coarse, candidates=args.candidates)
        print_result(label, result)
        rows.append((features, size, key_size, patch, result))
    print(f"\ncoarse = {args.coarse}, candidates = {args.candidates}, C = 64\n")
    print("| features | queries × keys | patch | exact (s) | coarse (s) | speed-up (wall / CPU) | argmax match "
          "| soft deficit mean / max |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for features, size, key_size, patch, result in rows:
        if not result["ok"]:
            print(f"| {features} | {size}² × {key_size}² | {patch} | {result.get('error') or result['skipped']} "
                  "| | | | |")
            continue
        print(f"| {features} | {size}² × {key_size}² | {patch} | {result['exact_s']:.3f} | {result['median_s']:.3f} "
              f"| {result['exact_s'] / result['median_s']:.1f}× / {result['cpu_ratio']:.1f}× "
              f"| {100 * result['match']:.1f} % | {result['deficit_mean']:.4f} / {result['deficit_max']:.4f} |")


if __name__ == "__main__":
    main()
