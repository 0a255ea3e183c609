"""MRI physics: Fourier transforms, sampling masks, k-space truncation, coils, SENSE operator.

Imports nothing else of accelmri. Every name is also importable from its own module
(``accelmri.physics.fft``, ``.masks``, ``.degrade``, ``.coils``, ``.sensitivity``, ``.operators``).
"""

from accelmri.physics.coils import rss, sense_combine, sense_expand
from accelmri.physics.degrade import AcquiredData, Acquisition, lowres
from accelmri.physics.fft import fft2c, ifft2c
from accelmri.physics.masks import MASK_KINDS, make_mask, realised_acceleration
from accelmri.physics.operators import CGResult, SenseOperator, cg_sense, conjugate_gradient, data_consistency
from accelmri.physics.sensitivity import (
    EspiritCalibration,
    birdcage_maps,
    calibrated_espirit_maps,
    espirit_calibration,
    espirit_maps,
)

__all__ = [
    "MASK_KINDS",
    "AcquiredData",
    "Acquisition",
    "CGResult",
    "EspiritCalibration",
    "SenseOperator",
    "birdcage_maps",
    "calibrated_espirit_maps",
    "cg_sense",
    "conjugate_gradient",
    "data_consistency",
    "espirit_calibration",
    "espirit_maps",
    "fft2c",
    "ifft2c",
    "lowres",
    "make_mask",
    "realised_acceleration",
    "rss",
    "sense_combine",
    "sense_expand",
]
