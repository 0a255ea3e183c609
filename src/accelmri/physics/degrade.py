"""The acquisition model: k-space truncation (low resolution), undersampling and noise.

``Acquisition.apply`` turns fully sampled high-resolution (HR) k-space into what a faster, lower-resolution
scan would measure: ``b = M · (T k + n)`` with ``T`` the central-block truncation of :func:`lowres` (SR scale
``s``), ``M`` an undersampling mask on the acquired low-resolution (LR) grid (:mod:`accelmri.physics.masks`) and
``n`` complex Gaussian noise. Every dataset and model sees degradations only through it (design/ARCHITECTURE.md).

Scaling: with orthonormal FFTs a k-space crop makes the LR image ``s×`` brighter than the HR image, so
:func:`lowres` divides by ``s`` and LR and HR images share one intensity scale (design/data.md, "Degradation,
precisely"; design/models.md, "Shared facts": the T2Net / MINet LR recipe crops the centred k-space, here 2× or
4×, and this compensates the brightness change their code leaves in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from accelmri.physics.coils import rss, sense_combine
from accelmri.physics.fft import ifft2c
from accelmri.physics.masks import check_mask_params, make_mask, realised_acceleration

__all__ = ["AcquiredData", "Acquisition", "lowres"]

# Stream index mixed into the seed of the noise generator, so noise and mask use unrelated random streams.
_NOISE_STREAM = 1


def lowres(kspace: torch.Tensor, scale: int) -> torch.Tensor:
    """Truncate centered k-space to its central ``(H/s) × (W/s)`` block, intensity-preserving.

    The block is centred on the DC sample: rows ``H//2 - h//2 ... H//2 - h//2 + h - 1`` with ``h = H/s`` (same
    for columns), so DC lands at ``(h//2, w//2)``, the DC index of the LR grid. The block is divided by ``s``
    so that, with orthonormal FFTs, ``ifft2c(lowres(k, s))`` has the intensity scale of ``ifft2c(k)`` (a
    constant image stays the same constant). This is the T2Net / MINet LR recipe (centre crop of k-space, their
    papers use ``s`` = 2 and 4) with that brightness compensation; any positive integer dividing ``H`` and ``W``
    is accepted.

    Args:
        kspace: centered k-space ``(..., H, W)``, normally complex64/complex128 (DC at ``(H//2, W//2)``).
        scale: positive int ``s`` that divides both ``H`` and ``W``; ``1`` returns ``kspace`` itself.

    Returns:
        ``(..., H/s, W/s)`` tensor of the same dtype and device (a new tensor unless ``s == 1``).

    Raises:
        ValueError: if ``scale`` is not a positive int, ``kspace`` has fewer than 2 dims, or ``scale`` does not
            divide the matrix size ``(H, W)``.
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive int, got {scale!r}")
    if kspace.ndim < 2:
        raise ValueError(f"kspace must have at least 2 dims (..., H, W), got shape {tuple(kspace.shape)}")
    height, width = kspace.shape[-2:]
    if height % scale or width % scale:
        raise ValueError(f"scale={scale} does not divide the k-space matrix size {height}x{width}")
    if scale == 1:
        return kspace
    h, w = height // scale, width // scale
    row0, col0 = height // 2 - h // 2, width // 2 - w // 2
    return kspace[..., row0 : row0 + h, col0 : col0 + w] / scale


@dataclass(frozen=True, eq=False)
class AcquiredData:
    """Result of :meth:`Acquisition.apply`. Immutable; all tensors on the input's device.

    Attributes:
        kspace: measured LR k-space ``(..., C, h, w)`` complex (input dtype), ``h = H/s``, ``w = W/s``; zero at
            unsampled locations, noisy (if ``noise_std > 0``) at sampled ones. Same units as the input k-space
            divided by ``s`` (see :func:`lowres`).
        mask: ``(h, w)`` float32 0/1 sampling mask, broadcasting against ``kspace``.
        zero_filled: ``(..., h, w)`` complex zero-filled LR image, coil-combined: SENSE combination
            ``Σ_c conj(S_c)·x_c`` with the given maps, else the coil image itself when ``C == 1``, else the
            root-sum-of-squares magnitude cast to complex (zero phase).
        lr_image: ``(..., h, w)`` complex, the same combination of the fully sampled, noiseless LR k-space (the
            target of a reconstruction branch; same intensity scale as the HR image).
        scale: the SR scale ``s`` (integer).
    """

    kspace: torch.Tensor
    mask: torch.Tensor
    zero_filled: torch.Tensor
    lr_image: torch.Tensor
    scale: int

    @property
    def acceleration(self) -> float:
        """Realised acceleration ``R = h·w / Σ mask`` inside the acquired LR grid."""
        return realised_acceleration(self.mask)

    @property
    def total_acceleration(self) -> float:
        """Total acceleration ``R·s`` against the HR grid, counted along the phase-encode direction as the papers
        do (design/models.md, T2Net). For 1-D masks this is the ratio of HR phase-encode lines ``W`` to acquired
        lines; for ``poisson2d`` (two phase-encode directions) the pixel-count ratio would be ``R·s²``."""
        return self.acceleration * self.scale


@dataclass(frozen=True)
class Acquisition:
    """Frozen description of how the data are acquired: truncation, undersampling and noise.

    Attributes:
        mask_kind: one of :data:`accelmri.physics.masks.MASK_KINDS`.
        acceleration: requested undersampling ``R ≥ 1`` inside the acquired LR grid (1 = fully sampled).
        center_fraction: fully sampled centre fraction in ``[0, 1)`` (see :func:`~accelmri.physics.masks.make_mask`).
        scale: SR scale ``s`` (positive int; the papers use 2 and 4), applied by :func:`lowres`.
        noise_std: standard deviation of the complex Gaussian noise per complex k-space sample (real and
            imaginary parts each get ``noise_std/√2``), in the units of the truncated k-space, ``≥ 0``.
        seed: default seed (non-negative int) of the mask and noise; ``None`` draws fresh randomness on every
            call (training). :meth:`apply` can override it per call (per-slice validation seeds, design/data.md).

    Raises:
        ValueError: from ``__post_init__`` for any invalid field, naming it and its value.
    """

    mask_kind: str = "equispaced"
    acceleration: float = 1.0
    center_fraction: float = 0.08
    scale: int = 1
    noise_std: float = 0.0
    seed: int | None = 0

    def __post_init__(self) -> None:
        check_mask_params(self.mask_kind, self.acceleration, self.center_fraction, self.seed)
        if isinstance(self.scale, bool) or not isinstance(self.scale, int) or self.scale < 1:
            raise ValueError(f"scale must be a positive int, got {self.scale!r}")
        if (
            isinstance(self.noise_std, bool)
            or not isinstance(self.noise_std, (int, float))
            or not (math.isfinite(self.noise_std) and self.noise_std >= 0)
        ):
            raise ValueError(f"noise_std must be a finite number >= 0, got {self.noise_std!r}")

    def apply(
        self, kspace: torch.Tensor, sens_maps: torch.Tensor | None = None, seed: int | None = None
    ) -> AcquiredData:
        """Simulate the acquisition of fully sampled HR k-space.

        Steps: truncate with :func:`lowres` (scale ``s``); build the mask on the LR grid with
        :func:`~accelmri.physics.masks.make_mask` (``seed``); add complex Gaussian noise of std ``noise_std``
        drawn on the CPU from a ``torch.Generator`` seeded from the same seed (separate stream, so results do
        not depend on the device); keep the sampled locations only; coil-combine the zero-filled and the fully
        sampled LR images.

        Args:
            kspace: fully sampled centered HR k-space ``(..., C, H, W)``, complex64/complex128, with an explicit
                coil axis (single-coil data use ``C = 1``). ``s`` must divide ``H`` and ``W``.
            sens_maps: optional coil sensitivities on the LR grid ``(..., C, H/s, W/s)``, complex; if given, the
                images are SENSE-combined.
            seed: overrides ``self.seed`` for this call (``None`` keeps ``self.seed``); the same seed gives the
                same mask and noise.

        Returns:
            :class:`AcquiredData` with LR shapes ``h = H/s``, ``w = W/s``.

        Raises:
            TypeError: if ``kspace`` is not a complex tensor.
            ValueError: if ``kspace`` has no coil axis, ``s`` does not divide ``(H, W)``, ``sens_maps`` is not on
                the LR grid or has another coil count, ``seed`` is negative, or the mask parameters do not fit
                the LR grid (see :func:`~accelmri.physics.masks.make_mask`).
        """
        if not isinstance(kspace, torch.Tensor) or not kspace.is_complex():
            kind = kspace.dtype if isinstance(kspace, torch.Tensor) else type(kspace).__name__
            raise TypeError(f"kspace must be a complex tensor (..., C, H, W), got {kind}")
        if kspace.ndim < 3:
            raise ValueError(
                f"kspace must have a coil axis, shape (..., C, H, W) (C = 1 for single-coil), "
                f"got shape {tuple(kspace.shape)}"
            )
        seed = self.seed if seed is None else seed
        full = lowres(kspace, self.scale)
        h, w = full.shape[-2:]
        if sens_maps is not None and (sens_maps.ndim < 3 or tuple(sens_maps.shape[-3:]) != (full.shape[-3], h, w)):
            raise ValueError(
                f"sens_maps must be (..., C, H/s, W/s) = (..., {full.shape[-3]}, {h}, {w}) on the LR grid "
                f"(scale {self.scale}), got shape {tuple(sens_maps.shape)}"
            )
        mask = make_mask(self.mask_kind, (h, w), self.acceleration, self.center_fraction, seed)
        mask = mask.to(full.device)
        measured = full
        if self.noise_std > 0:
            generator = torch.Generator()
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(_noise_seed(seed))
            noise = torch.randn(full.shape, dtype=full.dtype, generator=generator)
            measured = full + self.noise_std * noise.to(full.device)
        measured = measured * mask
        return AcquiredData(
            kspace=measured,
            mask=mask,
            zero_filled=_combine(ifft2c(measured), sens_maps),
            lr_image=_combine(ifft2c(full), sens_maps),
            scale=self.scale,
        )


def _noise_seed(seed: int) -> int:
    """63-bit seed for the noise generator, derived from ``(seed, _NOISE_STREAM)`` with ``np.random.SeedSequence``."""
    state = np.random.SeedSequence([int(seed), _NOISE_STREAM]).generate_state(1, dtype=np.uint64)[0]
    return int(state) >> 1


def _combine(coil_images: torch.Tensor, sens_maps: torch.Tensor | None) -> torch.Tensor:
    """Coil-combine ``(..., C, h, w)`` complex images to ``(..., h, w)`` complex (see :class:`AcquiredData`)."""
    if sens_maps is not None:
        return sense_combine(coil_images, sens_maps)
    if coil_images.shape[-3] == 1:
        return coil_images[..., 0, :, :]
    return rss(coil_images).to(coil_images.dtype)
