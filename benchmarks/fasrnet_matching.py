"""FASR-Net correspondence quality: how often the search lands on the co-registered reference position.

Held-out digital-brain subjects (default 3, 4, 7: the demo's test split; the extractor trains on its train split
0, 1, 2, 6), T2 target, FLAIR reference, 256² slices, 2×: ``LR↑`` (query) and ``Ref↓↑`` (key) are built by
FASR-Net's own ``"kspace"`` degradation (:meth:`FASRNet._upsampled_lr`, :meth:`FASRNet._degraded_reference`),
cut into co-registered 64² crops (a 64-pixel grid; crops with at least half of their pixels on the object), and
matched by the model's own path: :meth:`FASRNet._pyramids`, the M-A patch descriptors of the three levels on the
LR grid (:meth:`FASRNet._patch_descriptor`) and :func:`~accelmri.models.blocks.correspondence.relevance_search`.
A match is correct when it lies within ±1 LR pixel (Chebyshev) of the query's own position; fractions are over
object queries (LR↑ above a fifth of the slice mean) and over all queries. Also reported: the single LR-grid
level (the "w/o FA" plain cross-attention search), and both searches with the reference window moved by 4 LR
pixels (8 HR pixels) against the query window, so that features which merely encode the distance to the crop
border (zero padding) cannot score.

Extractors: a randomly initialised VGG19 (``vgg_weights=None``, seed 0) and the
:class:`~accelmri.models.blocks.texture_extractor.TextureExtractor` pretrained on the train subjects (its
pretraining time is printed; ``--save PATH`` keeps the weights).

Run: ``.venv/bin/python -m benchmarks.fasrnet_matching [--threads 1] [--save PATH]`` (a few minutes on 2 CPU
cores, most of it the pretraining).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch

from accelmri.data.digital_brain import digital_brain_subject
from accelmri.engine.extractor import digital_brain_pairs
from accelmri.models.blocks.correspondence import relevance_search
from accelmri.models.blocks.texture_extractor import (
    TextureExtractor,
    pretrain_extractor,
    save_extractor,
)
from accelmri.models.fasrnet import FASRNet
from accelmri.physics.degrade import lowres
from accelmri.physics.fft import ifft2c

__all__ = ["held_out_crops", "main", "match_fractions"]


def held_out_crops(
    subjects: Sequence[int], scale: int = 2, size: int = 256, slices: int = 4, crop: int = 64, key_shift: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Crops of the LR magnitude, the reference and the object mask of held-out subjects, on a ``crop``-pixel grid.

    Args:
        subjects: digital-brain subject indices (T2 target, FLAIR reference, single coil).
        scale: SR scale ``s``.
        size, slices: simulation matrix and slices.
        crop: HR crop side (multiple of ``2s``).
        key_shift: the reference window is moved by ``s·key_shift`` HR pixels along both axes (``0``:
            co-registered), so LR query ``(y, x)`` shows reference LR position ``(y − key_shift, x − key_shift)``;
            tiles whose moved window leaves the slice are dropped.

    Returns:
        ``lr (N, 1, crop/s, crop/s)``, ``reference (N, 1, crop, crop)`` (each slice divided by its mean, as
        ``SliceDataset(normalization="scale")``) and ``objects (N, crop/s, crop/s)`` bool (LR above 0.2), for the
        tiles with at least half of their LR pixels on the object.
    """
    lrs, references = [], []
    for subject in subjects:
        brain = digital_brain_subject(subject, ("T2", "FLAIR"), coils=1, size=size, slices=slices)
        lr = ifft2c(lowres(brain.kspace["T2"][:, 0], scale)).abs()
        reference = ifft2c(brain.kspace["FLAIR"][:, 0]).abs()
        lrs.append(lr / lr.mean(dim=(-2, -1), keepdim=True))
        references.append(reference / reference.mean(dim=(-2, -1), keepdim=True))
    lr, reference = torch.cat(lrs)[:, None], torch.cat(references)[:, None]
    lr_crop, offset = crop // scale, scale * key_shift
    lr_tiles, ref_tiles = [], []
    for y in range(0, size - crop + 1, crop):
        for x in range(0, size - crop + 1, crop):
            if 0 <= y + offset <= size - crop and 0 <= x + offset <= size - crop:
                lr_tiles.append(lr[..., y // scale : y // scale + lr_crop, x // scale : x // scale + lr_crop])
                ref_tiles.append(reference[..., y + offset : y + offset + crop, x + offset : x + offset + crop])
    lr_tile, ref_tile = torch.cat(lr_tiles), torch.cat(ref_tiles)
    objects = lr_tile[:, 0] > 0.2
    keep = objects.float().mean(dim=(1, 2)) >= 0.5
    return lr_tile[keep], ref_tile[keep], objects[keep]


@torch.no_grad()
def match_fractions(
    model: FASRNet, lr: torch.Tensor, reference: torch.Tensor, objects: torch.Tensor, key_shift: int = 0
) -> dict[str, float]:
    """Fractions of queries matched within ±1 LR pixel (Chebyshev) of their true position (module docstring).

    Args:
        model: a FASR-Net; its extractor, degradation and search options are used.
        lr: ``(N, 1, h, w)`` float32 LR magnitudes (``h``, ``w`` even).
        reference: ``(N, 1, s·h, s·w)`` float32 references.
        objects: ``(N, h, w)`` bool, the queries counted in the ``*_object`` fractions.
        key_shift: LR query ``(y, x)`` shows reference LR position ``(y − key_shift, x − key_shift)``
            (:func:`held_out_crops`); queries whose true position is outside the crop are not counted.

    Returns:
        ``{"ma_object", "ma_all", "lr_level_object", "lr_level_all"}`` in [0, 1]: the M-A search of all three
        levels, and the search of the LR-grid level alone.
    """
    grid = tuple(lr.shape[-2:])
    query, key = model._upsampled_lr(lr), model._degraded_reference(reference)
    pyramids = model._pyramids({"query": (query, 3), "key": (key, 3)})
    ys, xs = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    true_y, true_x = ys.flatten() - key_shift, xs.flatten() - key_shift
    inside = ((true_y >= 0) & (true_y < grid[0]) & (true_x >= 0) & (true_x < grid[1])).view(*grid)
    results: dict[str, float] = {}
    for name, levels in (("ma", range(3)), ("lr_level", [model.grid_level])):
        q = torch.cat([model._patch_descriptor(pyramids["query"][i], i, grid) for i in levels], dim=1)
        k = torch.cat([model._patch_descriptor(pyramids["key"][i], i, grid) for i in levels], dim=1)
        _, index = relevance_search(q, k, patch=1, **model.search)
        error = torch.maximum((index // grid[1] - true_y).abs(), (index % grid[1] - true_x).abs())
        correct = (error <= 1).view(-1, *grid)
        results[f"{name}_object"] = float(correct[objects & inside].float().mean())
        results[f"{name}_all"] = float(correct[:, inside].float().mean())
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-subjects", type=int, nargs="+", default=[0, 1, 2, 6])
    parser.add_argument("--test-subjects", type=int, nargs="+", default=[3, 4, 7])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--save", default=None, help="write the pretrained extractor here")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    scale, shift = 2, 4
    evaluations = {f"key shift {k} LR px": (k, held_out_crops(args.test_subjects, scale, args.size, args.slices,
                                                             key_shift=k)) for k in (0, shift)}
    for name, (_, (lr, _, objects)) in evaluations.items():
        print(f"held-out subjects {args.test_subjects}, {name}: {len(lr)} crops of 64², {int(objects.sum())} object "
              "queries")

    def report(label: str, model: FASRNet) -> None:
        for name, (key_shift, crops) in evaluations.items():
            print(f"{label:19s}{name:17s}", _format(match_fractions(model, *crops, key_shift=key_shift)))

    torch.manual_seed(0)
    report("random VGG19", FASRNet(scale=scale, channels=8, n_blocks=(1, 1), embed_channels=8))

    start = time.perf_counter()
    queries, keys = digital_brain_pairs(args.train_subjects, scale=scale, size=args.size, slices=args.slices)
    simulated = time.perf_counter() - start
    extractor = pretrain_extractor(queries, keys, steps=args.steps)
    trained = time.perf_counter() - start - simulated
    print(f"pretraining on subjects {args.train_subjects}: simulation {simulated:.1f} s, {args.steps} steps "
          f"{trained:.1f} s ({torch.get_num_threads()} threads)")
    if args.save:
        save_extractor(extractor, args.save, {"subjects": args.train_subjects, "steps": args.steps})
    report("untrained compact", _compact(extractor.out_channels, None))
    report("pretrained compact", _compact(extractor.out_channels, extractor))


def _compact(channels: Sequence[int], trained: TextureExtractor | None) -> FASRNet:
    """A 2× FASR-Net on ``trained``, or on a fresh extractor of the same widths from the same seed as pretraining."""
    torch.manual_seed(0)
    backbone = TextureExtractor(channels) if trained is None else trained
    return FASRNet(scale=2, channels=8, n_blocks=(1, 1), embed_channels=8, backbone=backbone)


def _format(results: dict[str, float]) -> str:
    return "  ".join(f"{key} {100 * value:5.1f} %" for key, value in results.items())


if __name__ == "__main__":
    main()
