"""Centered, orthonormal 2-D Fourier transforms.

Convention used everywhere in accelmri: k-space is stored with the DC sample in the centre
(index ``H // 2, W // 2``), the image with its centre at the same index, and the transform is
unitary (``norm="ortho"``), so ``‖fft2c(x)‖₂ = ‖x‖₂`` and ``ifft2c`` is the exact adjoint and
inverse of ``fft2c``. This is the fastMRI convention (``fastmri.fft2c``).
"""

from __future__ import annotations

import torch

__all__ = ["fft2c", "ifft2c"]

_DIMS = (-2, -1)


def _as_complex(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"{name}: expected at least 2 dims (..., H, W), got shape {tuple(x.shape)}")
    if x.is_complex():
        return x
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    return torch.complex(x, torch.zeros_like(x))


def fft2c(image: torch.Tensor) -> torch.Tensor:
    """Centered orthonormal 2-D FFT over the last two dimensions (image → k-space).

    Args:
        image: tensor of shape ``(..., H, W)``, complex64/complex128 (a real tensor is taken as
            complex with zero imaginary part). Leading dims (batch, coils, slices) broadcast.

    Returns:
        k-space of shape ``(..., H, W)``, same complex dtype, DC at ``(H // 2, W // 2)``.

    Raises:
        TypeError: if ``image`` is not a tensor. ValueError: if it has fewer than 2 dims.
    """
    x = _as_complex(image, "fft2c")
    x = torch.fft.ifftshift(x, dim=_DIMS)
    x = torch.fft.fft2(x, dim=_DIMS, norm="ortho")
    return torch.fft.fftshift(x, dim=_DIMS)


def ifft2c(kspace: torch.Tensor) -> torch.Tensor:
    """Centered orthonormal 2-D inverse FFT over the last two dimensions (k-space → image).

    Exact inverse and adjoint of :func:`fft2c`.

    Args:
        kspace: tensor of shape ``(..., H, W)``, complex, DC at ``(H // 2, W // 2)``.

    Returns:
        Image of shape ``(..., H, W)``, same complex dtype.

    Raises:
        TypeError: if ``kspace`` is not a tensor. ValueError: if it has fewer than 2 dims.
    """
    x = _as_complex(kspace, "ifft2c")
    x = torch.fft.ifftshift(x, dim=_DIMS)
    x = torch.fft.ifft2(x, dim=_DIMS, norm="ortho")
    return torch.fft.fftshift(x, dim=_DIMS)
