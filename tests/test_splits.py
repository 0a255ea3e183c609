"""Tests for accelmri.data.splits: subject-wise splits and slab splits of one volume."""

from __future__ import annotations

import pytest

from accelmri.data.splits import SPLIT_NAMES, split_by_slab, split_subjects

SUBJECTS = [f"IXI{i:03d}-Guys-{1000 + i}" for i in range(50)]


def test_subject_split_is_a_partition_with_paper_ratios() -> None:
    splits = split_subjects(SUBJECTS)
    assert tuple(splits) == SPLIT_NAMES
    assert [len(splits[name]) for name in SPLIT_NAMES] == [35, 5, 10]
    assert sorted(s for split in splits.values() for s in split) == sorted(
        SUBJECTS
    )  # coverage, each subject exactly once
    assert all(splits[name] == sorted(splits[name]) for name in SPLIT_NAMES)


def test_subject_split_deterministic_and_order_independent() -> None:
    splits = split_subjects(SUBJECTS, seed=3)
    assert split_subjects(list(reversed(SUBJECTS)) + SUBJECTS[:5], seed=3) == splits  # duplicates are merged
    assert split_subjects(SUBJECTS, seed=4) != splits
    # Ratios are relative weights: 7:1:2 is 0.7/0.1/0.2.
    assert split_subjects(SUBJECTS, ratios=(7, 1, 2), seed=3) == splits


def test_subject_split_ratios_approximately_respected() -> None:
    for n in (10, 37, 101, 250):
        sizes = [len(v) for v in split_subjects([f"s{i}" for i in range(n)], ratios=(0.6, 0.15, 0.25)).values()]
        assert sum(sizes) == n
        for size, ratio in zip(sizes, (0.6, 0.15, 0.25), strict=True):
            assert abs(size - ratio * n) < 1, (n, sizes)


def test_subject_split_small_sets_keep_every_split_non_empty() -> None:
    assert sorted(len(v) for v in split_subjects(["a", "b", "c"]).values()) == [1, 1, 1]
    for n in range(3, 12):
        assert all(split_subjects([f"s{i}" for i in range(n)]).values()), n
    # Two subjects cannot fill three splits; a zero ratio gives an empty split.
    assert sum(len(v) for v in split_subjects(["a", "b"]).values()) == 2
    no_val = split_subjects(SUBJECTS, ratios=(0.8, 0.0, 0.2))
    assert no_val["val"] == [] and len(no_val["train"]) == 40


@pytest.mark.parametrize("ratios", [(0.7, 0.3), (0.7, -0.1, 0.4), (0, 0, 0), (float("nan"), 0.5, 0.5)])
def test_bad_ratios_rejected(ratios: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="ratios"):
        split_subjects(SUBJECTS, ratios=ratios)
    with pytest.raises(ValueError, match="ratios"):
        split_by_slab(100, ratios=ratios)


def test_no_subjects_rejected() -> None:
    with pytest.raises(ValueError, match="no subjects"):
        split_subjects([])


def test_slab_split_contiguous_with_gaps() -> None:
    splits = split_by_slab(100, ratios=(0.7, 0.1, 0.2), gap=3)
    train, val, test = (splits[name] for name in SPLIT_NAMES)
    for slab in (train, val, test):
        assert slab == list(range(slab[0], slab[-1] + 1))  # contiguous
    assert train[0] == 0 and val[0] == train[-1] + 4 and test[0] == val[-1] + 4 and test[-1] == 99
    assert [len(train), len(val), len(test)] == [66, 9, 19]  # 94 usable slices shared 7:1:2
    # No slice has a neighbour within ``gap`` slices in another split.
    owner = {s: name for name, slab in splits.items() for s in slab}
    for s, name in owner.items():
        assert all(owner.get(t, name) == name for t in range(s - 3, s + 4))


def test_slab_split_edge_cases() -> None:
    assert split_by_slab(5, gap=1) == {"train": [0], "val": [2], "test": [4]}
    assert split_by_slab(10, ratios=(1, 0, 1), gap=2) == {"train": [0, 1, 2, 3], "val": [], "test": [6, 7, 8, 9]}
    assert split_by_slab(6, gap=0) == {"train": [0, 1, 2, 3], "val": [4], "test": [5]}
    with pytest.raises(ValueError, match="too few"):
        split_by_slab(4, gap=1)
    with pytest.raises(ValueError, match="gap must be >= 0"):
        split_by_slab(100, gap=-1)
