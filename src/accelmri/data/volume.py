"""In-memory volumes produced by the readers.

Array convention: slices first. ``ImageVolume.data[s, h, w]`` is voxel ``(i, j, k) = (h, w, s)`` of
the file, so ``affine`` is exactly the file's NIfTI-style voxel → world (RAS, mm) matrix and writing back
is ``data.transpose(1, 2, 0)`` with the same affine. k-space volumes carry a coil axis:
``KspaceVolume.kspace[s, c, h, w]`` with the phase-encode direction along ``w`` (fastMRI convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ImageVolume", "KspaceVolume"]


@dataclass(frozen=True, eq=False)
class ImageVolume:
    """A magnitude image volume with its geometry.

    Attributes:
        data: ``(S, H, W)`` float32 magnitude (arbitrary units, as stored after rescaling).
        affine: ``(4, 4)`` float64 voxel ``(h, w, s)`` → world RAS millimetres.
        path: the file (or DICOM folder) it came from.
        contrast: contrast name if known (``T1``, ``T2``, ``PD``, ``FLAIR``, ``PDFS``, …).
        attrs: any further metadata (patient ID, acquisition, …).
    """

    data: np.ndarray
    affine: np.ndarray
    path: Path
    contrast: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def num_slices(self) -> int:
        return int(self.data.shape[0])

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along ``(h, w, s)``."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return float(norms[0]), float(norms[1]), float(norms[2])


@dataclass(frozen=True, eq=False)
class KspaceVolume:
    """A fully sampled multi-coil (or single-coil, ``C = 1``) Cartesian k-space volume.

    Attributes:
        kspace: ``(S, C, H, W)`` complex64, DC near ``(H // 2, W // 2)``, phase encodes along ``W``.
        path: the file it came from.
        target: optional ``(S, h, w)`` float32 reference reconstruction stored in the file
            (fastMRI ``reconstruction_rss`` / ``reconstruction_esc``).
        attrs: metadata (``acquisition``, ``max``, ``patient_id``, ``encoding_size``, ``recon_size``, …).
    """

    kspace: np.ndarray
    path: Path
    target: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def num_slices(self) -> int:
        return int(self.kspace.shape[0])
