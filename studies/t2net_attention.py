"""What T2Net's task transformer contributes: its correspondences, and the PSNR without them (inference only).

For each T2Net checkpoint, on the test split of its own config (whole volumes, the demo's per-volume PSNR), three
variants of every ``TaskTransformer`` (``models.t2net``, paper Eq. 5–6) at inference, the weights unchanged:

* ``as trained``: the exact global search (hard attention ``t_i = argmax_j r_ij``, soft ``s_i = max_j r_ij``);
* ``own position``: ``t_i = i`` (each query takes the value patch at its own position; soft attention kept), i.e.
  position-wise fusion as in the "w/o Htt" ablation, through the trained fusion conv;
* ``no transfer``: the transferred features ``C`` set to zero (the block keeps only ``Q + Conv(Concat(0, Q)) ⊙ S``).

It also reports the fraction of queries whose match is their own position (and within ±1 LR pixel), and the mean
soft attention. If ``own position`` scores as ``as trained``, the global search adds nothing the position-wise
fusion does not give. With ``--coarse N`` it also scores the opt-in coarse-to-fine search (``search_coarse``,
:func:`accelmri.models.blocks.correspondence.relevance_search`) and the fraction of its matches equal to the exact
argmax (performance issue: the accuracy of the fast path on trained models), once per ``--candidates`` value
(key windows refined per query cell, ``search_candidates``; default 8).

    python studies/t2net_attention.py out/joint_width/runs/joint2x_t2net_seed*/last.pt [--coarse 4 --candidates 8,16]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from accelmri.data.datasets import SliceDataset
from accelmri.data.sample import collate
from accelmri.engine.build import build_dataset, prepare_data, volume_slices
from accelmri.engine.evaluate import load_method
from accelmri.metrics import evaluate_volume
from accelmri.models.t2net import TaskTransformer

Correspond = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _own_position(search: Correspond, stats: list[torch.Tensor]) -> Correspond:
    """``search`` with every query matched to its own position (soft attention of the search kept)."""

    def correspond(query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        soft, index = search(query, key)
        stats.append(index.cpu())
        own = torch.arange(index.shape[1], device=index.device).expand_as(index)
        return soft, own

    return correspond


def _record(search: Correspond, stats: list[torch.Tensor], soft_means: list[float]) -> Correspond:
    def correspond(query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        soft, index = search(query, key)
        stats.append(index.cpu())
        soft_means.append(float(soft.float().mean()))
        return soft, index

    return correspond


def _score(model: torch.nn.Module, dataset: SliceDataset) -> float:
    """Mean over the test volumes of the whole-volume PSNR (dB) of ``model``'s restorations."""
    values = []
    with torch.no_grad():
        for _, items in volume_slices(dataset):
            samples = [dataset[i] for i in items]
            truth = np.stack([s.denormalize(s.target)[0].numpy() for s in samples])
            out = np.stack([s.denormalize(model(collate([s])).image)[0, 0].numpy() for s in samples])
            values.append(evaluate_volume(truth, out)["psnr"])
    return float(np.mean(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--coarse", type=int, default=None, help="also score search_coarse=N")
    parser.add_argument("--candidates", default="8", help="comma list of search_candidates values (with --coarse)")
    args = parser.parse_args()
    counts = [int(value) for value in args.candidates.split(",")] if args.coarse else []
    extra = "".join(f" coarse, {k} candidates (dB) | match = exact ({k}) |" for k in counts)
    print("| checkpoint | as trained (dB) | own position (dB) | no transfer (dB) | match = own position | "
          f"within ±1 px | mean soft attention |{extra}")
    print("|---|---:|---:|---:|---:|---:|---:|" + "---:|---:|" * len(counts))
    for path in args.checkpoints:
        config, model = load_method(path, (), torch.device("cpu"))
        transformers = [m for m in model.modules() if isinstance(m, TaskTransformer)]
        if not transformers:
            print(f"| {path} | no task transformer | | | | | |")
            continue
        prepare_data(config.data)
        dataset = build_dataset(config.data, "test")
        searches = [t.correspond for t in transformers]
        indices: list[torch.Tensor] = []
        soft_means: list[float] = []

        for module, search in zip(transformers, searches, strict=True):
            module.correspond = _record(search, indices, soft_means)
        trained = _score(model, dataset)
        width = dataset[0].lr_input.shape[-1]
        own = torch.arange(indices[0].shape[1])
        same = float(np.mean([float((i == own).float().mean()) for i in indices]))
        near = float(np.mean([float((((i // width - own // width).abs() <= 1)
                                     & ((i % width - own % width).abs() <= 1)).float().mean()) for i in indices]))
        for module, search in zip(transformers, searches, strict=True):
            module.correspond = _own_position(search, [])
        own_position = _score(model, dataset)
        cells = ""
        for count in counts:
            coarse_indices: list[torch.Tensor] = []
            for module, search in zip(transformers, searches, strict=True):
                module.search_coarse, module.search_candidates = args.coarse, count
                module.correspond = _record(search, coarse_indices, [])
            coarse = _score(model, dataset)
            equal = np.mean([float((a == b).float().mean()) for a, b in zip(indices, coarse_indices, strict=True)])
            cells += f" {coarse:.3f} | {100 * equal:.1f} % |"
            for module in transformers:
                module.search_coarse = None
        for module, search in zip(transformers, searches, strict=True):
            module.correspond = search
            module.value_features = lambda key: torch.zeros_like(key)  # type: ignore[method-assign]
        no_transfer = _score(model, dataset)
        print(f"| {path} | {trained:.3f} | {own_position:.2f} | {no_transfer:.2f} | {100 * same:.1f} % | "
              f"{100 * near:.1f} % | {np.mean(soft_means):.3f} |{cells}", flush=True)


if __name__ == "__main__":
    main()
