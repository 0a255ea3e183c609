"""Coil combination and coil sensitivities.

Shapes: multi-coil data carry the coil axis at dim ``-3``: images and k-space ``(..., C, H, W)``,
sensitivity maps ``(..., C, H, W)`` (complex, normalised so that ``Σ_c |S_c|² = 1`` inside the
object), coil-combined images ``(..., H, W)``.
"""

from __future__ import annotations

import torch

__all__ = ["rss", "sense_combine", "sense_expand"]


def rss(coil_images: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """Root-sum-of-squares coil combination ``sqrt(Σ_c |x_c|²)``.

    Args:
        coil_images: ``(..., C, H, W)`` complex or real coil images.
        dim: the coil dimension (default ``-3``).

    Returns:
        Real magnitude image ``(..., H, W)`` (float dtype matching the input precision).
    """
    return torch.sqrt((coil_images.abs() ** 2).sum(dim=dim))


def _check_maps(x: torch.Tensor, sens_maps: torch.Tensor, name: str, coil_dim_in_x: bool) -> None:
    if not sens_maps.is_complex():
        raise TypeError(f"{name}: sens_maps must be complex, got {sens_maps.dtype}")
    if sens_maps.ndim < 3:
        raise ValueError(f"{name}: sens_maps must be (..., C, H, W), got shape {tuple(sens_maps.shape)}")
    spatial = x.shape[-2:]
    if spatial != sens_maps.shape[-2:]:
        raise ValueError(
            f"{name}: spatial size of data {tuple(spatial)} does not match sens_maps {tuple(sens_maps.shape[-2:])}"
        )
    if coil_dim_in_x and x.shape[-3] != sens_maps.shape[-3]:
        raise ValueError(f"{name}: data has {x.shape[-3]} coils, sens_maps has {sens_maps.shape[-3]}")


def sense_combine(coil_images: torch.Tensor, sens_maps: torch.Tensor) -> torch.Tensor:
    """Coil combination with sensitivity maps (the adjoint of :func:`sense_expand`): ``Σ_c conj(S_c)·x_c``.

    Roemer/SENSE optimal combination for maps normalised to ``Σ_c |S_c|² = 1``.

    Args:
        coil_images: ``(..., C, H, W)`` complex coil images.
        sens_maps: ``(..., C, H, W)`` complex sensitivities, broadcastable against ``coil_images``.

    Returns:
        ``(..., H, W)`` complex combined image.

    Raises:
        TypeError / ValueError: on real maps or mismatched coil/spatial sizes.
    """
    _check_maps(coil_images, sens_maps, "sense_combine", coil_dim_in_x=True)
    return (sens_maps.conj() * coil_images).sum(dim=-3)


def sense_expand(image: torch.Tensor, sens_maps: torch.Tensor) -> torch.Tensor:
    """Coil images from a combined image: ``x_c = S_c · x``.

    Args:
        image: ``(..., H, W)`` complex image.
        sens_maps: ``(..., C, H, W)`` complex sensitivities.

    Returns:
        ``(..., C, H, W)`` complex coil images.

    Raises:
        TypeError / ValueError: on real maps or mismatched spatial sizes.
    """
    _check_maps(image, sens_maps, "sense_expand", coil_dim_in_x=False)
    return image.unsqueeze(-3) * sens_maps
