"""Train / validation / test splits that never let one subject (or neighbouring slices) straddle two splits.

* :func:`split_subjects`: subject-wise splits over many subjects (7:1:2 in the multi-contrast papers). All slices of
  a subject go to one split; slice-wise random splits leak anatomy between train and test and are not offered.
* :func:`split_by_slab`: for a single volume (the embedded digital brain), contiguous slabs of slices with ``gap``
  slices dropped between consecutive slabs, so no two neighbouring slices sit in different splits.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

__all__ = ["SPLIT_NAMES", "split_by_slab", "split_subjects"]

#: Split names, in the order of the ``ratios`` arguments.
SPLIT_NAMES = ("train", "val", "test")


def split_subjects(
    subjects: Sequence[str], ratios: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0
) -> dict[str, list[str]]:
    """Split subjects into train / val / test.

    Deterministic and independent of the input order: the unique subjects are ordered by the SHA-256 of
    ``f"{seed}:{subject}"`` (identical on every platform and NumPy version, and adding a subject does not reorder
    the others), then cut into consecutive groups whose sizes are the largest-remainder rounding of ``ratios``
    times the number of subjects. Every subject lands in exactly one split (duplicates in ``subjects`` are merged);
    each split with a positive ratio is non-empty as long as there are at least as many subjects as positive ratios.

    Args:
        subjects: subject IDs (e.g. :attr:`accelmri.data.pairing.ContrastPair.subject`), duplicates allowed.
        ratios: relative sizes of train, val and test; non-negative, normalised by their sum, so ``(7, 1, 2)``
            equals ``(0.7, 0.1, 0.2)``. A zero ratio gives an empty split.
        seed: shuffling seed.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each list sorted.

    Raises:
        ValueError: no subjects, or bad ``ratios`` (not three values, negative, not finite, all zero).
    """
    weights = _check_ratios(ratios)
    unique = sorted(set(subjects))
    if not unique:
        raise ValueError("no subjects to split")
    order = sorted(unique, key=lambda subject: hashlib.sha256(f"{seed}:{subject}".encode()).hexdigest())
    splits, start = {}, 0
    for name, count in zip(SPLIT_NAMES, _allocate(len(order), weights), strict=True):
        splits[name] = sorted(order[start : start + count])
        start += count
    return splits


def split_by_slab(num_slices: int, ratios: Sequence[float] = (0.7, 0.1, 0.2), gap: int = 2) -> dict[str, list[int]]:
    """Split the slices of one volume into contiguous slabs, train first, then val, then test.

    ``gap`` slices are dropped between consecutive non-empty slabs (they belong to no split), so that no slice has a
    neighbour within ``gap`` slices in another split. The ``num_slices - gap * (k - 1)`` remaining slices
    (``k`` = number of positive ratios) are shared with largest-remainder rounding of ``ratios``; every split with a
    positive ratio gets at least one slice.

    Args:
        num_slices: number of slices of the volume.
        ratios: relative slab sizes of train, val and test (as in :func:`split_subjects`).
        gap: slices dropped between consecutive slabs, ``>= 0``.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` slice indices, each list contiguous and increasing.

    Raises:
        ValueError: bad ``ratios``, negative ``gap``, or too few slices for one slice per positive-ratio slab plus
            the gaps.
    """
    weights = _check_ratios(ratios)
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    num_slabs = sum(w > 0 for w in weights)
    usable = num_slices - gap * (num_slabs - 1)
    if usable < num_slabs:
        raise ValueError(
            f"{num_slices} slices are too few for {num_slabs} non-empty slabs separated by gaps of {gap} slices"
        )
    splits, start = {}, 0
    for name, count in zip(SPLIT_NAMES, _allocate(usable, weights), strict=True):
        splits[name] = list(range(start, start + count))
        if count:
            start += count + gap
    return splits


def _check_ratios(ratios: Sequence[float]) -> list[float]:
    """Validate ``ratios`` and return them normalised to sum 1."""
    values = [float(r) for r in ratios]
    if len(values) != len(SPLIT_NAMES):
        raise ValueError(f"ratios must give {len(SPLIT_NAMES)} values (train, val, test), got {list(ratios)}")
    if not all(math.isfinite(v) and v >= 0 for v in values) or sum(values) <= 0:
        raise ValueError(f"ratios must be finite, non-negative and not all zero, got {list(ratios)}")
    total = sum(values)
    return [v / total for v in values]


def _allocate(n: int, weights: list[float]) -> list[int]:
    """Share ``n`` items by ``weights`` (summing to 1): largest-remainder rounding (ties to the earlier split), then
    one item moved from the largest share to each empty positive-weight share while ``n`` allows."""
    exact = [w * n for w in weights]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    if n >= sum(w > 0 for w in weights):
        for i, w in enumerate(weights):
            if w > 0 and counts[i] == 0:
                counts[max(range(len(counts)), key=counts.__getitem__)] -= 1
                counts[i] += 1
    return counts
