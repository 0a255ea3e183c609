from __future__ import annotations

import numpy as np
import pytest
import torch

from accelmri.physics.fft import fft2c, ifft2c
from tests.conftest import random_complex


def _numpy_fft2c(x: np.ndarray) -> np.ndarray:
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=axes), axes=axes, norm="ortho"), axes=axes)


@pytest.mark.parametrize("shape", [(8, 8), (2, 3, 17, 12), (4, 31, 33)])
def test_fft2c_matches_numpy_reference(shape: tuple[int, ...]) -> None:
    x = random_complex(*shape)
    ours = fft2c(x).numpy()
    ref = _numpy_fft2c(x.numpy())
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
    back = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(ref, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    np.testing.assert_allclose(ifft2c(torch.from_numpy(ref)).numpy(), back, atol=1e-12)


@pytest.mark.parametrize("shape", [(16, 16), (3, 15, 20)])
def test_unitarity_and_round_trip(shape: tuple[int, ...]) -> None:
    x = random_complex(*shape)
    k = fft2c(x)
    assert torch.allclose(k.norm(), x.norm(), rtol=1e-12)
    assert torch.allclose(ifft2c(k), x, atol=1e-12)
    assert torch.allclose(fft2c(ifft2c(x)), x, atol=1e-12)
    # ifft2c is the adjoint: <F x, y> = <x, F^H y>
    y = random_complex(*shape)
    lhs = torch.vdot(k.flatten(), y.flatten())
    rhs = torch.vdot(x.flatten(), ifft2c(y).flatten())
    assert abs(lhs - rhs) / abs(lhs) < 1e-12


@pytest.mark.parametrize("shape", [(16, 16), (15, 20)])
def test_dc_sample_is_at_the_centre(shape: tuple[int, int]) -> None:
    image = torch.ones(shape, dtype=torch.complex128)
    k = fft2c(image)
    h, w = shape
    assert abs(k[h // 2, w // 2] - (h * w) ** 0.5) < 1e-9
    k[h // 2, w // 2] = 0
    assert k.abs().max() < 1e-9


def test_real_input_is_taken_as_complex() -> None:
    x = torch.randn(10, 12, dtype=torch.float64)
    assert torch.allclose(fft2c(x), fft2c(x.to(torch.complex128)))


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="at least 2 dims"):
        fft2c(torch.zeros(5, dtype=torch.complex64))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        ifft2c(np.zeros((4, 4)))  # type: ignore[arg-type]
