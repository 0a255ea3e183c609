"""FASR-Net's searches level by level: where the time goes, and whether a coarser level's match predicts a finer one.

The performance issue asks FASR-Net's multi-scale search to reuse what a coarser scale found instead of searching
each scale from scratch. That is faithful only if the matches of the levels are co-located. For each trained
FASR-Net checkpoint, on whole slices of the test split of its own config (``--slices`` evenly spaced slices of
each test volume), every call of :func:`~accelmri.models.blocks.correspondence.relevance_search` made by the model
is recorded: M-A (one search over the concatenated descriptors of the three levels, on the LR grid) and S-A's
three (the LR-grid query against the keys of pyramid levels 0, 1, 2). Reported per search: its wall time with the
exact search and with the coarse-to-fine one (``--coarse``), and the fraction of queries whose match lies within
±1 / ±3 LR pixels of the query's own position (the reference is misregistered by the realistic simulation, so ±1
is strict). Per pair of S-A levels (finer, next coarser): the fraction of queries whose finer match lies within
±``tol`` pixels of the coarser match scaled by 2 — what a search restricted around the coarser match could still
find. The M-A search does not split by level (Eq. 15 sums the levels' relevances before the argmax).

Run: ``OMP_NUM_THREADS=1 python studies/fasrnet_levels.py out/demo/runs/sr2x_fasrnet_seed*/last.pt``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import accelmri.models.fasrnet as fasrnet_module
from accelmri.data.sample import collate
from accelmri.engine.build import build_dataset, prepare_data, volume_slices
from accelmri.engine.evaluate import load_method

_NAMES = ("M-A", "S-A level 0", "S-A level 1", "S-A level 2")
_SEARCH = fasrnet_module.relevance_search  # the model's search, restored after each recording


def _recorded(calls: list[tuple[tuple[int, int], tuple[int, int], torch.Tensor, float]]) -> Callable[..., Any]:
    """A stand-in for ``relevance_search`` that appends (query grid, key grid, index, seconds) to ``calls``."""
    def recording(query: torch.Tensor, key: torch.Tensor, **options: Any) -> tuple[torch.Tensor, torch.Tensor]:
        start = time.perf_counter()
        soft, index = _SEARCH(query, key, **options)
        calls.append((tuple(query.shape[-2:]), tuple(key.shape[-2:]), index[0], time.perf_counter() - start))
        return soft, index

    return recording


def _near(index: torch.Tensor, key_width: int, centre_y: torch.Tensor, centre_x: torch.Tensor, tol: float) -> float:
    """Fraction of matches ``index`` (row-major over a grid ``key_width`` wide) within ``±tol`` of the centres."""
    y, x = index // key_width, index % key_width
    return float((((y - centre_y).abs() <= tol) & ((x - centre_x).abs() <= tol)).float().mean())


def _slice_stats(model: torch.nn.Module, sample: Any, coarse: int) -> dict[str, float]:
    """Times, own-position and co-location fractions of one slice (see the module docstring)."""
    calls: list[tuple[tuple[int, int], tuple[int, int], torch.Tensor, float]] = []
    fasrnet_module.relevance_search = _recorded(calls)  # type: ignore[attr-defined]
    try:
        with torch.no_grad():
            model.search["coarse"] = None
            model(collate([sample]))
            exact = list(calls)
            calls.clear()
            model.search["coarse"] = coarse
            model(collate([sample]))
            coarsened = list(calls)
    finally:
        fasrnet_module.relevance_search = _SEARCH  # type: ignore[attr-defined]
        model.search["coarse"] = None
    if len(exact) != len(_NAMES):
        raise RuntimeError(f"expected {len(_NAMES)} searches (M-A and S-A's three), got {len(exact)}")
    stats: dict[str, float] = {}
    (hq, wq) = exact[0][0]
    qy = torch.arange(hq).repeat_interleave(wq)
    qx = torch.arange(wq).repeat(hq)
    for name, (_, key_grid, index, seconds), (_, _, coarse_index, coarse_seconds) in zip(
        _NAMES, exact, coarsened, strict=True
    ):
        ratio = key_grid[1] / wq  # key pixels per LR pixel
        stats[f"{name} exact s"] = seconds
        stats[f"{name} coarse s"] = coarse_seconds
        stats[f"{name} coarse = exact"] = float((coarse_index == index).float().mean())
        for tol in (1, 3):
            stats[f"{name} own ±{tol}"] = _near(index, key_grid[1], ratio * qy, ratio * qx, tol * max(ratio, 1.0))
    for fine, coarser in ((1, 2), (2, 3)):
        fine_width, coarser_width = exact[fine][1][1], exact[coarser][1][1]
        index = exact[coarser][2]
        cy, cx = 2 * (index // coarser_width), 2 * (index % coarser_width)
        for tol in (1, 4):  # +1: the coarser pixel covers two finer ones
            stats[f"{_NAMES[fine]} near {_NAMES[coarser]} ±{tol}"] = _near(exact[fine][2], fine_width, cy, cx, tol + 1)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--slices", type=int, default=2, help="slices per test volume (evenly spaced)")
    parser.add_argument("--coarse", type=int, default=4, help="the coarse search's cell side (search_coarse)")
    args = parser.parse_args()
    rows: list[dict[str, float]] = []
    for path in args.checkpoints:
        config, model = load_method(path, (), torch.device("cpu"))
        if not isinstance(model, fasrnet_module.FASRNet):
            parser.error(f"{path}: not a FASR-Net checkpoint")
        prepare_data(config.data)
        dataset = build_dataset(config.data, "test")
        for _, items in volume_slices(dataset):
            for position in np.linspace(0, len(items) - 1, args.slices + 2)[1:-1].round().astype(int):
                rows.append(_slice_stats(model, dataset[items[position]], args.coarse))
    print(f"{len(args.checkpoints)} checkpoint(s), {len(rows)} slices of {tuple(dataset[0].target.shape[-2:])}; "
          f"mean over slices (coarse = search_coarse {args.coarse}):\n")
    print("| search | exact s/slice | coarse s/slice | coarse = exact | own ±1 LR px | own ±3 LR px |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in _NAMES:
        values = [np.mean([row[f"{name} {field}"] for row in rows])
                  for field in ("exact s", "coarse s", "coarse = exact", "own ±1", "own ±3")]
        print(f"| {name} | {values[0]:.2f} | {values[1]:.2f} | {100 * values[2]:.1f} % | {100 * values[3]:.1f} % | "
              f"{100 * values[4]:.1f} % |")
    print("\n| finer level's match | within ±1 px of the coarser match ×2 | within ±4 px |")
    print("|---|---:|---:|")
    for fine, coarser in ((1, 2), (2, 3)):
        label = f"{_NAMES[fine]} near {_NAMES[coarser]}"
        print(f"| {_NAMES[fine]} vs {_NAMES[coarser]} | {100 * np.mean([r[f'{label} ±1'] for r in rows]):.1f} % | "
              f"{100 * np.mean([r[f'{label} ±4'] for r in rows]):.1f} % |")


if __name__ == "__main__":
    main()
