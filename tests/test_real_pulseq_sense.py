"""CG-SENSE on real 16-coil in-vivo brain k-space (Pulseq, Siemens twix) from ../shared/data, and the ESPIRiT
calibration rule (:func:`accelmri.physics.sensitivity.espirit_calibration`) on it.

Data: pulseq/MR-Physics-with-Pulseq (MIT licence), ../shared/data/README.md."""

from __future__ import annotations

import pytest
import torch
from scipy import ndimage

from accelmri.data.readers.twix import read_twix_kspace
from accelmri.metrics import nmse
from accelmri.physics.coils import rss
from accelmri.physics.fft import ifft2c
from accelmri.physics.masks import make_mask, realised_acceleration
from accelmri.physics.operators import cg_sense
from accelmri.physics.sensitivity import EspiritCalibration, espirit_calibration, espirit_maps
from tests.conftest import SHARED_DATA
from tests.test_sensitivity import cg_sense_psnr

TWIX = SHARED_DATA / "pulseq_invivo_brain" / "2024-02-06-164128_invivo_localcoil16.dat"


@pytest.fixture(scope="module")
def kspace() -> torch.Tensor:
    if not TWIX.exists():
        pytest.skip(f"{TWIX} not found: the real-data test needs ../shared/data beside the repository")
    pytest.importorskip("twixtools", reason="twixtools is needed to read Siemens raw data (accelmri[twix])")
    return read_twix_kspace(TWIX)


def test_cg_sense_beats_zero_filled_on_real_multicoil_data(kspace: torch.Tensor) -> None:
    reference = rss(ifft2c(kspace)).numpy()  # fully sampled RSS image, (128, 128)
    mask = make_mask("equispaced", tuple(kspace.shape[-2:]), acceleration=3, center_fraction=0.125, seed=0)
    assert abs(realised_acceleration(mask) - 3) / 3 <= 0.05
    measured = mask * kspace
    maps = espirit_maps(measured, calib_width=16)  # from the 16 measured calibration lines only
    zero_filled = rss(ifft2c(measured)).numpy()
    result = cg_sense(measured, mask, maps, l2_weight=1e-2, max_iter=100, tol=1e-6)
    sense = result.x.abs().numpy()
    # The head: the fully sampled RSS image above 10 % of its maximum, holes filled.
    head = ndimage.binary_fill_holes(reference > 0.1 * reference.max())
    whole = nmse(reference, zero_filled), nmse(reference, sense)
    inside = nmse(reference * head, zero_filled * head), nmse(reference * head, sense * head)
    print(f"NMSE whole image: zero-filled {whole[0]:.4f}, CG-SENSE {whole[1]:.4f}; inside the head: "
          f"zero-filled {inside[0]:.4f}, CG-SENSE {inside[1]:.4f}; CG iterations {result.iterations}")
    assert result.iterations < 100
    assert inside[1] < 0.4 * inside[0]
    assert whole[1] < 0.75 * whole[0]


def test_espirit_calibration_rule_gives_cg_sense_above_zero_filling_at_r4(kspace: torch.Tensor) -> None:
    """R = 4 equispaced, 8 % centre (10 of 128 lines), λ = 0.01, as ``accelmri realscan`` runs its ``cg_sense``.

    The former rule of SliceDataset / restore / physics-demo, a square ``calib × calib`` block with kernel
    ``min(6, calib // 2)`` (10 × 10, kernel 5), cropped the maps inside the head here: CG-SENSE fell below
    zero-filling (measured 16.9 vs 21.15 dB). The rule's block uses the fully sampled readout of the centre lines
    (64 × 10, kernel 5): 27.09 dB."""
    calibration = espirit_calibration(tuple(kspace.shape[-2:]), 0.08, "equispaced")
    assert calibration == EspiritCalibration((64, 10), 5)
    zero_filled, sense = cg_sense_psnr(kspace, calibration)
    _, former = cg_sense_psnr(kspace, EspiritCalibration((10, 10), 5))
    print(f"Pulseq R = 4: zero-filled {zero_filled:.2f} dB, CG-SENSE with the rule {sense:.2f} dB, with the former "
          f"square 10 × 10 block and kernel 5 {former:.2f} dB")
    assert former < zero_filled  # the failure the rule removes
    assert sense > zero_filled + 5
