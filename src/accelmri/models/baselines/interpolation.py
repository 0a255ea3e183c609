"""Interpolation baselines: bicubic image upsampling and sinc (k-space zero-padding) upsampling.

- ``bicubic``: bicubic interpolation (Keys 1981) of the zero-filled LR magnitude ``lr_input`` on the grid of
  k-space truncation (see :func:`bicubic_upsample`); the "Bicubic" rows of every paper.
- ``sinc``: zero-padding of the measured LR k-space to the HR grid, the exact inverse of the k-space truncation of
  :func:`accelmri.physics.degrade.lowres` (which crops the centred block and divides by ``s``): the block is put
  back at the same place and multiplied by ``s``, so a fully sampled LR k-space gives exactly the HR image with
  its outer k-space band zeroed ("zero-filling interpolation", Bernstein et al., "Effect of windowing and
  zero-filled reconstruction of MRI data on spatial resolution and acquisition strategy", JMRI 2001).

Units: images computed from ``batch.kspace`` are in the batch's k-space units (divided by ``norm_std``);
:func:`to_batch_units` subtracts ``norm_mean / norm_std`` so they match the normalised images of the batch
(``lr_input``, ``target``; see :mod:`accelmri.data.sample`). Both models have no parameters.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from accelmri.models.base import Prediction, check_batch
from accelmri.models.registry import register
from accelmri.physics.coils import rss, sense_combine
from accelmri.physics.degrade import lowres
from accelmri.physics.fft import fft2c, ifft2c

if TYPE_CHECKING:
    from accelmri.data.sample import Sample

__all__ = [
    "Bicubic",
    "CoilCombination",
    "Sinc",
    "Upsample",
    "band_consistent",
    "bicubic_upsample",
    "check_scale",
    "check_upsample",
    "enforce_band_consistency",
    "sinc_interpolate",
    "sinc_upsample",
    "to_batch_units",
    "upsample_complex",
    "zero_pad_kspace",
]

Upsample = Literal["bicubic", "sinc"]
CoilCombination = Literal["rss", "sense"]


def check_upsample(upsample: str) -> None:
    """Refuse an unknown upsampling method.

    Raises:
        ValueError: if ``upsample`` is not ``"bicubic"`` or ``"sinc"``.
    """
    if upsample not in get_args(Upsample):
        raise ValueError(f"upsample must be one of {get_args(Upsample)}, got {upsample!r}")


def check_scale(scale: int) -> None:
    """Refuse a scale that is not a positive int.

    Raises:
        ValueError: naming the bad value.
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive int, got {scale!r}")


def bicubic_upsample(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upsampling ``(B, C, h, w) → (B, C, s·h, s·w)`` on the grid of k-space truncation; ``scale=1`` is the
    identity.

    :func:`accelmri.physics.degrade.lowres` keeps the k-space block centred on DC, so LR pixel ``i`` sits at HR
    pixel ``(i − h//2)·s + H//2`` (the centre pixels coincide). ``F.interpolate(align_corners=False)`` assumes
    aligned pixel *edges* instead, which puts the image ``(s − 1)/2`` HR pixels off (measured: −3 dB at 2× on the
    TCGA T2). Here HR pixel ``j`` samples LR coordinate ``(j − H//2)/s + h//2`` with bicubic ``grid_sample``
    (border values repeated outside).

    Raises:
        ValueError: if ``scale`` is not a positive int.
    """
    check_scale(scale)
    if scale == 1:
        return image
    height, width = image.shape[-2:]

    def coordinates(n: int) -> torch.Tensor:
        hr = torch.arange(scale * n, device=image.device, dtype=torch.float32)
        lr = (hr - (scale * n) // 2) / scale + n // 2
        return 2 * lr / max(n - 1, 1) - 1  # align_corners=True normalisation

    gy, gx = torch.meshgrid(coordinates(height), coordinates(width), indexing="ij")
    grid = torch.stack([gx, gy], dim=-1).expand(image.shape[0], -1, -1, -1)
    return F.grid_sample(image.float(), grid, mode="bicubic", padding_mode="border", align_corners=True).to(image.dtype)


def zero_pad_kspace(kspace: torch.Tensor, scale: int) -> torch.Tensor:
    """Zero-pad centred LR k-space ``(..., h, w)`` to the HR grid ``(..., s·h, s·w)`` and multiply by ``s``.

    The exact right inverse of :func:`accelmri.physics.degrade.lowres`: the block lands at rows
    ``H//2 − h//2 …`` (same for columns), so DC stays at the DC index of each grid, and
    ``lowres(zero_pad_kspace(k, s), s) == k``. Differentiable (``F.pad``).

    Raises:
        ValueError: if ``scale`` is not a positive int.
    """
    check_scale(scale)
    if scale == 1:
        return kspace
    h, w = kspace.shape[-2:]
    height, width = scale * h, scale * w
    row0, col0 = height // 2 - h // 2, width // 2 - w // 2
    return F.pad(kspace * scale, (col0, width - col0 - w, row0, height - row0 - h))


def sinc_interpolate(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Sinc interpolation of a complex (or real) image ``(..., h, w)`` to ``(..., s·h, s·w)`` complex.

    ``ifft2c(zero_pad_kspace(fft2c(image), s))``: the image's intensity scale is kept.
    """
    return ifft2c(zero_pad_kspace(fft2c(image), scale))


def _nyquist_lines(kspace: torch.Tensor, lr_shape: tuple[int, int]) -> torch.Tensor:
    """The unpaired Nyquist lines of an even LR side (LR index 0) in a centred k-space ``(..., H, W)`` (the LR grid
    itself or the HR grid), zeros elsewhere."""
    h, w = lr_shape
    height, width = kspace.shape[-2:]
    lines = torch.zeros_like(kspace)
    if h % 2 == 0:
        row = height // 2 - h // 2
        lines[..., row, :] = kspace[..., row, :]
    if w % 2 == 0:
        col = width // 2 - w // 2
        lines[..., :, col] = kspace[..., :, col]
    return lines


def _hermitian_mirror(kspace: torch.Tensor) -> torch.Tensor:
    """``conj(k[−u, −v])`` of a centred k-space ``(..., H, W)`` (DC at ``(H//2, W//2)``): the spectrum a real image
    has at ``(u, v)`` given its values at ``(−u, −v)``."""
    height, width = kspace.shape[-2:]
    mirrored = torch.roll(torch.flip(kspace, (-2, -1)), (1 - height % 2, 1 - width % 2), (-2, -1))
    return mirrored.conj()


def band_consistent(image: torch.Tensor, lr_image: torch.Tensor, scale: int, kspace: torch.Tensor | None = None,
                    offset: torch.Tensor | None = None) -> torch.Tensor:
    """k-space data consistency for super-resolution: the HR image with its measured band replaced by the LR data.

    ``image + Re ifft2c(zero_pad_kspace(fft2c(lr_image) − lowres(fft2c(image), s), s))``: the central
    ``h × w`` block of the output's k-space (the band a ``s×`` k-space truncation measures,
    :func:`accelmri.physics.degrade.lowres`) becomes the LR image's k-space, the outer band is the network's. So
    the output's low-pass equals the sinc-interpolated input (no intensity drift, no darkened background), and the
    network only adds the unmeasured high frequencies. This is the data-consistency step of model-based
    reconstruction (e.g. MoDL, Aggarwal et al., IEEE TMI 2019, Eq. 9 with λ → ∞) applied to the truncation
    operator; with ``image`` = 0 it is the ``sinc`` baseline. Linear, so it holds in any affine intensity units
    shared by the inputs (the batch's normalisation). Differentiable.

    Two cases per sample:

    * **the measured data are those of a real image** (a magnitude image degraded in k-space, as ``restore
      --degrade`` does with NIfTI/DICOM scans; tested: the LR image of the Hermitian part of ``kspace`` has an
      imaginary energy ≤ 1e-6 of its total): the measured complex k-space is imposed exactly, the unpaired
      Nyquist line of an even LR side (LR index 0, whose mirror lies outside the block) included, with its
      Hermitian mirror so that the output stays real — ``lowres(fft2c(output)) = kspace`` exactly (measured on the
      TCGA T2 at 2×: +0.3 dB over leaving that line to the network);
    * **otherwise** (complex data with a phase, e.g. the simulation's k-space, or no ``kspace``): the band of the
      magnitude LR image ``lr_image`` is imposed on its Hermitian part; the Nyquist line is left to the network
      (the real part would split it between two HR lines).

    Args:
        image: HR image ``(B, C, s·h, s·w)`` float (real).
        lr_image: the fully sampled LR magnitude ``(B, C, h, w)`` float, same units.
        scale: SR scale ``s`` (positive int).
        kspace: optional measured LR k-space ``(B, 1, h, w)`` complex (single coil), in the units of ``image +
            offset`` (the batch's ``kspace``: ``k / norm_std``); multi-coil k-space is ignored.
        offset: ``(B,)`` float, ``norm_mean / norm_std`` (default 0: the ``scale`` normalisation).

    Returns:
        ``(B, C, s·h, s·w)`` float, ``image``'s dtype.

    Raises:
        ValueError: a bad ``scale`` or shapes that are not ``s×`` apart.
    """
    check_scale(scale)
    h, w = lr_image.shape[-2:]
    if tuple(image.shape[-2:]) != (scale * h, scale * w) or image.shape[:-2] != lr_image.shape[:-2]:
        raise ValueError(f"band consistency needs an HR image {scale}× the LR image, got {tuple(image.shape)} "
                         f"and {tuple(lr_image.shape)}")
    hr = image.float()
    hr_band = lowres(fft2c(hr), scale)
    residual = fft2c(lr_image.float()) - hr_band
    residual = residual - _nyquist_lines(residual, (h, w))  # LR grid: the lines at index 0
    output = hr + ifft2c(zero_pad_kspace(residual, scale)).real
    if kspace is None or kspace.shape[1] != 1 or kspace.shape[-2:] != lr_image.shape[-2:]:
        return output.to(image.dtype)
    measured = kspace.to(torch.complex64)
    paired = ifft2c(measured - _nyquist_lines(measured, (h, w)))
    energy = paired.abs().square().sum(dim=(-3, -2, -1))
    real = paired.imag.square().sum(dim=(-3, -2, -1)) <= 1e-6 * energy.clamp_min(torch.finfo(torch.float32).tiny)
    if not bool(real.any()):
        return output.to(image.dtype)
    shift = torch.zeros(hr.shape[0], device=hr.device) if offset is None else offset.to(hr.device, torch.float32)
    exact_residual = zero_pad_kspace(measured - (hr_band + lowres(fft2c(shift.view(-1, 1, 1, 1).expand_as(hr)),
                                                                   scale)), scale)
    exact = hr + ifft2c(exact_residual + _hermitian_mirror(_nyquist_lines(exact_residual, (h, w)))).real
    return torch.where(real.view(-1, *([1] * (hr.dim() - 1))), exact, output).to(image.dtype)


def enforce_band_consistency(model: nn.Module, scale: int) -> nn.Module:
    """Make a super-resolution model's ``image`` output k-space consistent with ``lr_input`` (:func:`band_consistent`).

    Registers a forward hook (parameters, state dict and attributes are unchanged, so checkpoints stay
    interchangeable) and sets ``model.kspace_consistency = True``. The hook needs a fully sampled LR acquisition
    (task ``super_resolution``: ``batch.mask`` all ones); an undersampled batch raises ``ValueError``.

    Args:
        model: a model whose ``forward(batch)`` returns a :class:`~accelmri.models.base.Prediction`.
        scale: the model's SR scale ``s``.

    Returns:
        ``model`` itself.
    """
    check_scale(scale)

    def hook(module: nn.Module, args: tuple[Sample, ...], output: Prediction) -> Prediction:
        batch = args[0]
        if batch.mask is not None and not bool((batch.mask != 0).all()):
            raise ValueError("kspace_consistency needs a fully sampled LR acquisition (task super_resolution); "
                             "this batch is undersampled")
        offset = batch.norm_mean / batch.norm_std
        image = band_consistent(output.image, batch.lr_input, scale, batch.kspace, offset)
        return dataclasses.replace(output, image=image)

    model.register_forward_hook(hook)
    model.kspace_consistency = True
    return model


def sinc_upsample(kspace: torch.Tensor, scale: int, sens_maps: torch.Tensor | None = None) -> torch.Tensor:
    """Magnitude HR image of measured LR k-space by zero-padding: ``(B, C, h, w)`` complex → ``(B, 1, H, W)`` real.

    Without ``sens_maps`` the HR coil images ``ifft2c(zero_pad_kspace(k, s))`` are combined by root-sum-of-squares
    (the coil combination of the batch's ``target`` and ``lr_input``); with ``sens_maps (B, C, h, w)`` (LR grid)
    the LR coil images are SENSE-combined first and the complex combined image is sinc-interpolated.
    Units: those of ``kspace`` (see :func:`to_batch_units`).
    """
    if sens_maps is not None:
        return sinc_interpolate(sense_combine(ifft2c(kspace), sens_maps), scale).abs()[:, None]
    return rss(ifft2c(zero_pad_kspace(kspace, scale)))[:, None]


def to_batch_units(magnitude: torch.Tensor, batch: Sample) -> torch.Tensor:
    """Map a magnitude ``(B, 1, H, W)`` computed from ``batch.kspace`` to the batch's normalised image units.

    The batch stores ``image = (x − mean)/std`` but ``kspace = k/std`` (:mod:`accelmri.data.sample`), so
    ``|ifft2c(kspace)| − mean/std`` is in image units (the identity for the default ``"scale"`` normalisation).
    """
    offset = (batch.norm_mean / batch.norm_std).reshape(-1, 1, 1, 1)
    return magnitude - offset.to(device=magnitude.device, dtype=magnitude.dtype)


def upsample_complex(image: torch.Tensor, scale: int, upsample: Upsample, batch: Sample) -> torch.Tensor:
    """Upsample a complex LR reconstruction ``(B, h, w)`` (k-space units) to an HR magnitude ``(B, 1, H, W)``.

    ``"bicubic"`` interpolates the magnitude, ``"sinc"`` zero-pads the complex image's k-space
    (:func:`sinc_interpolate`); the result is in the batch's image units (:func:`to_batch_units`).
    """
    check_upsample(upsample)
    if upsample == "sinc":
        return to_batch_units(sinc_interpolate(image, scale).abs()[:, None], batch)
    return bicubic_upsample(to_batch_units(image.abs()[:, None], batch), scale)


@register("bicubic")
class Bicubic(nn.Module):
    """Bicubic upsampling of ``lr_input (B, 1, h, w)`` to ``image (B, 1, s·h, s·w)``; no parameters.

    Args:
        scale: SR scale ``s`` (positive int; 1 returns ``lr_input``).
    """

    required_fields: tuple[str, ...] = ("lr_input",)

    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        check_scale(scale)
        self.scale = scale

    def forward(self, batch: Sample) -> Prediction:
        check_batch("bicubic", self.required_fields, batch)
        return Prediction(image=bicubic_upsample(batch.lr_input, self.scale))


@register("sinc")
class Sinc(nn.Module):
    """Zero-padding (sinc) upsampling of the measured LR k-space to ``image (B, 1, s·h, s·w)``; no parameters.

    Args:
        scale: SR scale ``s`` (positive int).
        coil_combination: ``"rss"`` (root-sum-of-squares of the HR coil images, like the batch's images) or
            ``"sense"`` (SENSE combination with the batch's LR ``sens_maps``, then complex sinc interpolation).

    Raises:
        ValueError: bad ``scale`` or ``coil_combination``.
    """

    def __init__(self, scale: int = 2, coil_combination: CoilCombination = "rss") -> None:
        super().__init__()
        check_scale(scale)
        if coil_combination not in get_args(CoilCombination):
            raise ValueError(f"coil_combination must be one of {get_args(CoilCombination)}, got {coil_combination!r}")
        self.scale = scale
        self.coil_combination = coil_combination
        self.required_fields: tuple[str, ...] = ("kspace", "sens_maps") if coil_combination == "sense" else ("kspace",)

    def forward(self, batch: Sample) -> Prediction:
        check_batch("sinc", self.required_fields, batch)
        maps = batch.sens_maps if self.coil_combination == "sense" else None
        return Prediction(image=to_batch_units(sinc_upsample(batch.kspace, self.scale, maps), batch))
