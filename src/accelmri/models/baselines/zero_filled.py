"""The zero-filled baseline: the LR image of the measured k-space with unmeasured samples set to zero, upsampled.

The "Zero-filled" rows of the reconstruction tables (paper 001; MoDL, Aggarwal et al. 2019) and, with scale
``s > 1``, the zero-filled-then-interpolated input every joint model starts from (paper 000). No parameters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from accelmri.models.base import Prediction, check_batch
from accelmri.models.baselines.interpolation import (
    Upsample,
    bicubic_upsample,
    check_scale,
    check_upsample,
    sinc_upsample,
    to_batch_units,
)
from accelmri.models.registry import register

if TYPE_CHECKING:
    from accelmri.data.sample import Sample

__all__ = ["ZeroFilled"]


@register("zero_filled")
class ZeroFilled(nn.Module):
    """Zero-filled reconstruction ``lr_image = lr_input (B, 1, h, w)``, upsampled to ``image (B, 1, s·h, s·w)``.

    Args:
        scale: SR scale ``s`` (positive int; 1 for reconstruction-only tasks).
        upsample: ``"bicubic"`` interpolates ``lr_input``; ``"sinc"`` zero-pads the measured k-space to the HR
            grid (:func:`~accelmri.models.baselines.interpolation.sinc_upsample`, root-sum-of-squares), i.e.
            zero-filling of both the unmeasured samples and the outer k-space band.

    Raises:
        ValueError: bad ``scale`` or ``upsample``.
    """

    def __init__(self, scale: int = 2, upsample: Upsample = "bicubic") -> None:
        super().__init__()
        check_scale(scale)
        check_upsample(upsample)
        self.scale = scale
        self.upsample = upsample
        self.required_fields: tuple[str, ...] = ("lr_input", "kspace") if upsample == "sinc" else ("lr_input",)

    def forward(self, batch: Sample) -> Prediction:
        check_batch("zero_filled", self.required_fields, batch)
        if self.upsample == "sinc":
            image = to_batch_units(sinc_upsample(batch.kspace, self.scale), batch)
        else:
            image = bicubic_upsample(batch.lr_input, self.scale)
        return Prediction(image=image, lr_image=batch.lr_input)
