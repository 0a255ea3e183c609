"""The physics demo: simulate accelerated acquisitions and reconstruct them classically.

For every sampling-mask kind, a fully sampled multi-coil k-space (the analytical phantom with
simulated birdcage coils, or a real Siemens twix file) is degraded through one
:class:`~accelmri.physics.degrade.Acquisition` (undersampling R, optional k-space truncation s,
complex Gaussian noise), coil maps are estimated with ESPIRiT from the measured calibration region,
and the zero-filled SENSE combination is compared with CG-SENSE against the fully sampled
low-resolution image, with fastMRI-style metrics (PSNR, SSIM, NMSE).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from accelmri.data.phantom import shepp_logan
from accelmri.data.readers.twix import read_twix_kspace
from accelmri.metrics import evaluate_volume
from accelmri.physics.coils import sense_expand
from accelmri.physics.degrade import Acquisition
from accelmri.physics.fft import fft2c
from accelmri.physics.masks import MASK_KINDS
from accelmri.physics.operators import SenseOperator, cg_sense
from accelmri.physics.sensitivity import birdcage_maps, calibrated_espirit_maps

__all__ = ["DemoRow", "demo_kspace", "run_physics_demo"]


@dataclass(frozen=True)
class DemoRow:
    """One line of the demo's result table (metrics against the fully sampled LR image)."""

    mask_kind: str
    acceleration: float
    scale: int
    total_acceleration: float
    method: str
    psnr: float
    ssim: float
    nmse: float
    seconds: float


def demo_kspace(size: int, coils: int, twix: Path | None = None) -> torch.Tensor:
    """Fully sampled multi-coil k-space ``(C, H, W)`` complex64 for the demo.

    Args:
        size: matrix size of the phantom (ignored for ``twix``).
        coils: number of simulated birdcage coils (ignored for ``twix``).
        twix: optional Siemens twix ``.dat`` file with fully sampled Cartesian 2-D data.

    Raises:
        DataError: from the twix reader for a missing or unsupported file.
    """
    if twix is not None:
        return read_twix_kspace(twix)
    image = shepp_logan((size, size), phase_cycles=0.5)
    return fft2c(sense_expand(image, birdcage_maps((coils, size, size))))


def run_physics_demo(
    kspace: torch.Tensor,
    acceleration: float = 4.0,
    center_fraction: float = 0.08,
    scale: int = 1,
    noise_std: float = 0.0,
    seed: int = 0,
    l2_weight: float = 1e-3,
    cg_iterations: int = 100,
) -> list[DemoRow]:
    """Degrade ``kspace`` with every mask kind and score zero-filled vs CG-SENSE reconstructions.

    Args:
        kspace: fully sampled HR k-space ``(C, H, W)`` complex.
        acceleration: undersampling factor R inside the acquired (LR) k-space.
        center_fraction: fully sampled calibration fraction (also the ESPIRiT calibration region).
        scale: k-space truncation factor s (1 = no super-resolution degradation).
        noise_std: complex Gaussian noise std per k-space sample, relative to the k-space maximum.
        seed: mask and noise seed.
        l2_weight: Tikhonov weight λ of CG-SENSE (the normal operator has unit scale, ``Σ|S|² = 1``).
        cg_iterations: CG-SENSE iteration budget (tolerance 1e-6).

    Returns:
        Two :class:`DemoRow` per mask kind (``zero_filled`` and ``cg_sense``).
    """
    noise = noise_std * float(kspace.abs().max())
    rows: list[DemoRow] = []
    for kind in MASK_KINDS:
        acquisition = Acquisition(kind, acceleration, center_fraction, scale, noise, seed)
        start = time.perf_counter()
        acquired = acquisition.apply(kspace)
        maps = calibrated_espirit_maps(acquired.kspace, center_fraction, kind)  # the rule of SliceDataset
        zero_filled = SenseOperator(acquired.mask, maps).adjoint(acquired.kspace)
        zf_seconds = time.perf_counter() - start
        start = time.perf_counter()
        sense = cg_sense(acquired.kspace, acquired.mask, maps, l2_weight, cg_iterations, tol=1e-6).x
        cg_seconds = time.perf_counter() - start + zf_seconds
        reference = acquired.lr_image.abs()
        support = maps.abs().sum(dim=0) > 0  # ESPIRiT maps are zero outside the object
        for method, image, seconds in (("zero_filled", zero_filled, zf_seconds), ("cg_sense", sense, cg_seconds)):
            scores = evaluate_volume(reference * support, image.abs() * support)
            rows.append(
                DemoRow(kind, acquired.acceleration, scale, acquired.total_acceleration, method,
                        scores["psnr"], scores["ssim"], scores["nmse"], seconds)
            )
    return rows
