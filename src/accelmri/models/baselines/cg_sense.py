"""Classical CG-SENSE reconstruction on the LR grid, then upsampling to HR: the "CG-SENSE × bicubic" baseline.

CG-SENSE (Pruessmann et al., "Advances in sensitivity encoding with arbitrary k-space trajectories", MRM 2001)
solves ``(AᴴA + λI) x = Aᴴ b`` with ``A = M F C`` by conjugate gradients
(:func:`accelmri.physics.operators.cg_sense`); paper 001 lists it (with MoDL and DL-ESPIRiT, each followed by an
SR method) in Tables 3–4. Single-coil data use ``C = I``. No trainable parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from accelmri.models.base import Prediction, check_batch
from accelmri.models.baselines.interpolation import (
    Upsample,
    check_scale,
    check_upsample,
    to_batch_units,
    upsample_complex,
)
from accelmri.models.registry import register
from accelmri.physics.operators import cg_sense

if TYPE_CHECKING:
    from accelmri.data.sample import Sample

__all__ = ["CGSense", "coil_maps", "crop_to_target"]


def coil_maps(batch: Sample, model_name: str) -> torch.Tensor:
    """The encoding's coil maps ``(B, C, h, w)`` complex: ``batch.sens_maps``, or ones for single-coil data.

    Raises:
        ValueError: multi-coil k-space without ``sens_maps`` (``SliceDataset(sens_maps="espirit")`` provides them).
    """
    if batch.sens_maps is not None:
        return batch.sens_maps
    if batch.kspace.shape[1] != 1:
        raise ValueError(
            f"{model_name} on {batch.kspace.shape[1]}-coil k-space needs sens_maps (SliceDataset(sens_maps='espirit'))"
        )
    return torch.ones_like(batch.kspace)


def crop_to_target(image: torch.Tensor, batch: Sample, scale: int) -> torch.Tensor:
    """``image`` ``(B, H, W)`` on the k-space grid, centre-cropped to the LR grid ``(h, w)`` of ``batch.target``
    ``(B, 1, s·h, s·w)``: rows from ``(H − h) // 2``, columns from ``(W − w) // 2`` (fastMRI's ``center_crop``).

    The identity when the grids agree. Under ``data.protocol: fastmri`` the k-space is the acquired grid (e.g.
    640 × 368) and the target the file's ``recon_size`` crop (320 × 320): the output is cropped as fastMRI's
    VarNet crops its own (:mod:`accelmri.data.fastmri_protocol`).
    """
    height, width = batch.target.shape[-2] // scale, batch.target.shape[-1] // scale
    rows, columns = image.shape[-2:]
    if (rows, columns) == (height, width) or height > rows or width > columns:
        return image
    top, left = (rows - height) // 2, (columns - width) // 2
    return image[..., top : top + height, left : left + width]


@register("cg_sense")
class CGSense(nn.Module):
    """CG-SENSE on the measured LR k-space, then upsampling to the HR grid.

    Reads ``kspace (B, C, h, w)`` complex, ``mask (B, 1, h, w)`` and ``sens_maps (B, C, h, w)`` (optional for
    single-coil data). Outputs ``lr_image (B, 1, h, w)``, the magnitude of the SENSE image, and
    ``image (B, 1, s·h, s·w)``, both in the batch's normalised units; a k-space grid larger than the target's
    (``data.protocol: fastmri``) is cropped to it (:func:`crop_to_target`).

    Args:
        scale: SR scale ``s`` (positive int; 1 for reconstruction-only tasks).
        l2_weight: Tikhonov weight ``λ ≥ 0`` (the batch's k-space units: ``Σ|S_c|² = 1`` makes ``AᴴA`` have
            eigenvalues in ``[0, 1]``); small values regularise noise amplification and the null space of ``A``.
        max_iter: CG iteration budget (an implicit regulariser too: early stopping).
        tol: relative residual tolerance of CG.
        upsample: ``"bicubic"`` on the magnitude, or ``"sinc"`` zero-padding of the complex image's k-space.

    Raises:
        ValueError: bad ``scale``, ``upsample``, ``l2_weight`` or CG settings.
    """

    required_fields: tuple[str, ...] = ("kspace", "mask")

    def __init__(
        self,
        scale: int = 1,
        l2_weight: float = 1e-3,
        max_iter: int = 30,
        tol: float = 1e-6,
        upsample: Upsample = "bicubic",
    ) -> None:
        super().__init__()
        check_scale(scale)
        check_upsample(upsample)
        if l2_weight < 0 or max_iter < 1 or tol <= 0:
            raise ValueError(
                f"cg_sense needs l2_weight >= 0, max_iter >= 1 and tol > 0, got {l2_weight}, {max_iter}, {tol}"
            )
        self.scale = scale
        self.l2_weight = l2_weight
        self.max_iter = max_iter
        self.tol = tol
        self.upsample = upsample

    def reconstruct(self, batch: Sample) -> torch.Tensor:
        """The complex CG-SENSE image ``(B, h, w)`` in the batch's k-space units (``norm_std`` divided)."""
        check_batch("cg_sense", self.required_fields, batch)
        maps = coil_maps(batch, "cg_sense")
        return cg_sense(batch.kspace, batch.mask, maps, self.l2_weight, self.max_iter, self.tol).x

    def forward(self, batch: Sample) -> Prediction:
        image = crop_to_target(self.reconstruct(batch), batch, self.scale)
        return Prediction(
            image=upsample_complex(image, self.scale, self.upsample, batch),
            lr_image=to_batch_units(image.abs()[:, None], batch),
        )
