"""CG-SENSE on real 16-coil in-vivo brain k-space (Pulseq, Siemens twix) from ../shared/data."""

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
from accelmri.physics.sensitivity import espirit_maps
from tests.conftest import SHARED_DATA

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
