"""accelmri.physics.masks.fastmri_mask against fastMRI's own mask functions, bit for bit.

Reference: masks recorded from fastMRI v0.3.0 (tests/fastmri_fixtures.py, how they were made) on 20 seeds, the
widths 368/372/396, file-name seeds, mixed accelerations and given offsets; and, where the ``fastmri`` package is
installed (``pip install --no-deps fastmri``), fastMRI's ``create_mask_for_mask_type`` called live.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from accelmri.physics.masks import FASTMRI_MASK_TYPES, fastmri_mask, fastmri_volume_seed, make_mask
from tests.fastmri_fixtures import FIXTURE, MASK_TYPES, WIDTHS, mask_cases


def test_mask_types_are_fastmris() -> None:
    assert FASTMRI_MASK_TYPES == MASK_TYPES


def test_fastmri_mask_equals_recorded_fastmri_masks() -> None:
    recorded = np.load(FIXTURE)
    cases = list(mask_cases())
    assert len(cases) == len(recorded["columns"]) and len(cases) >= 5 * 3 * 20
    widths = set()
    for (mask_type, fractions, accelerations, shape, seed, offset), packed, low in zip(
        cases, recorded["columns"], recorded["num_low_frequencies"], strict=True
    ):
        mask, n_low = fastmri_mask(mask_type, fractions, accelerations, shape, seed=seed, offset=offset)
        expected = np.unpackbits(packed)[: shape[-2]].astype(np.float32)
        assert mask.dtype == torch.float32 and mask.shape == (*([1] * (len(shape) - 2)), shape[-2], 1)
        np.testing.assert_array_equal(mask.numpy().reshape(-1), expected, err_msg=str((mask_type, shape, seed)))
        assert n_low == low
        widths.add(shape[-2])
    assert widths == set(WIDTHS)


def test_fastmri_mask_equals_fastmri_live() -> None:
    subsample = pytest.importorskip("fastmri.data.subsample", reason="pip install --no-deps fastmri for the live check")
    for mask_type in MASK_TYPES:
        for width in (368, 372, 396, 369):
            for seed in [*range(20), fastmri_volume_seed("file1000123.h5")]:
                shape = (4, 640, width, 2)
                func = subsample.create_mask_for_mask_type(mask_type, [0.08, 0.04], [4, 8])
                expected, expected_low = func(shape, None, seed)
                mask, n_low = fastmri_mask(mask_type, [0.08, 0.04], [4, 8], shape, seed=seed)
                assert torch.equal(mask, expected) and n_low == expected_low, (mask_type, width, seed)


def test_fastmri_equispaced_is_not_accelmris() -> None:
    """fastMRI's equispaced realises 3.23x at nominal 4x on 368 lines; accelmri's equispaced realises 4x."""
    ours = make_mask("equispaced", (1, 368), 4, 0.08, seed=0)
    theirs, _ = fastmri_mask("equispaced", [0.08], [4], (1, 368, 2), seed=0)
    assert 368 / float(ours.sum()) == pytest.approx(4.0, abs=0.05)
    assert 368 / float(theirs.sum()) == pytest.approx(3.23, abs=0.02)


def test_fastmri_volume_seed_is_the_file_name_code_points() -> None:
    assert fastmri_volume_seed("ab.h5") == (97, 98, 46, 104, 53)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("gaussian1d", [0.08], [4], (1, 368, 2)), "unknown fastMRI mask type"),
        (("random", [0.08], [4, 8], (1, 368, 2)), "equal length"),
        (("random", [], [], (1, 368, 2)), "non-empty"),
        (("random", [0.08], [4], (368, 2)), "at least 3 dims"),
        (("equispaced", [0.08], [4.5], (1, 368, 2)), "must be an integer"),
        (("magic_fraction", [0.5], [4], (1, 368, 2)), "whole budget"),
    ],
)
def test_fastmri_mask_rejects_bad_arguments(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fastmri_mask(*args, seed=0)
