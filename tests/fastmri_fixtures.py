"""Masks recorded from fastMRI's ``fastmri/data/subsample.py`` (v0.3.0), the reference of test_fastmri_masks.py.

The cases (:func:`mask_cases`) cover every fastMRI ``mask_type``, the widths 368, 372 and 396, 20 integer seeds,
fastMRI's per-volume file-name seeds, single and mixed accelerations, and given offsets. The recorded file
``tests/data/fastmri_masks.npz`` holds, per case in order, the bit-packed columns and ``num_low_frequencies``.

Recorded once with (fastMRI's package installs without its dependencies, which would pull torchvision; its
``subsample`` module needs only numpy and torch)::

    .venv/bin/pip install --no-deps fastmri==0.3.0
    .venv/bin/python -m tests.fastmri_fixtures
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).parent / "data" / "fastmri_masks.npz"

MASK_TYPES = ("random", "equispaced", "equispaced_fraction", "magic", "magic_fraction")
WIDTHS = (368, 372, 396)
SETTINGS = (((0.08,), (4,)), ((0.04,), (8,)), ((0.08, 0.04), (4, 8)))
FILE_NAMES = ("file1000000.h5", "file1001057.h5", "file_brain_AXT2_200_2000019.h5", "brain_sub003_T2.h5")

Case = tuple[str, tuple[float, ...], tuple[int, ...], tuple[int, ...], int | tuple[int, ...], int | None]


def mask_cases() -> Iterator[Case]:
    """``(mask_type, center_fractions, accelerations, shape, seed, offset)`` of every recorded mask."""
    for mask_type in MASK_TYPES:
        for width in WIDTHS:
            shape = (15, 640, width, 2)
            for fractions, accelerations in SETTINGS:
                for seed in range(20):
                    yield mask_type, fractions, accelerations, shape, seed, None
                for name in FILE_NAMES:
                    yield mask_type, fractions, accelerations, shape, tuple(map(ord, name)), None
            if mask_type != "random":
                for offset in (0, 1, 3):
                    yield mask_type, (0.08,), (4,), (640, width, 2), 7, offset


def record() -> None:
    """Write :data:`FIXTURE` from fastMRI's ``create_mask_for_mask_type`` (needs the ``fastmri`` package)."""
    from fastmri.data.subsample import create_mask_for_mask_type

    columns, lows = [], []
    for mask_type, fractions, accelerations, shape, seed, offset in mask_cases():
        mask, n_low = create_mask_for_mask_type(mask_type, fractions, accelerations)(shape, offset, seed)
        columns.append(np.packbits(mask.numpy().reshape(-1).astype(bool)))
        lows.append(n_low)
    FIXTURE.parent.mkdir(exist_ok=True)
    np.savez_compressed(FIXTURE, columns=np.stack([np.pad(c, (0, 50 - c.size)) for c in columns]),
                        num_low_frequencies=np.array(lows))


if __name__ == "__main__":
    record()
