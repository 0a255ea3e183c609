"""EDSR: single-contrast super-resolution baseline (Lim et al., "Enhanced deep residual networks for single image
super-resolution", CVPRW 2017), the SR network of T2Net's branches (paper 000) and the "single-contrast SR" rows of
the multi-contrast papers (003, 004).

Architecture (EDSR paper, Fig. 3): head conv ``1→C``; ``n`` residual blocks conv3–ReLU–conv3 with residual scaling
and no batch norm (:class:`~accelmri.models.blocks.common.ResBlock`); a conv; a long skip from the head; the
sub-pixel upsampler (:class:`~accelmri.models.blocks.common.Upsampler`); tail conv ``C→1``. The RGB mean shift of
the original is omitted: the batch is already normalised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from accelmri.models.base import GridPadding, Prediction, check_batch
from accelmri.models.baselines.interpolation import check_scale
from accelmri.models.blocks.common import OutputConv, ResBlock, Upsampler, conv
from accelmri.models.registry import register

if TYPE_CHECKING:
    from accelmri.data.sample import Sample

__all__ = ["EDSR"]


@register("edsr")
class EDSR(nn.Module):
    """EDSR mapping ``lr_input (B, 1, h, w)`` to ``image (B, 1, s·h, s·w)``.

    Defaults are EDSR-baseline (16 blocks × 64 channels; residual scaling 0.1 as in EDSR's large model and T2Net):
    1.37 M parameters at ×2, 1.52 M at ×4.

    Args:
        scale: SR scale ``s``: a power of 2, or 3 (1 gives a denoiser on the LR grid).
        channels: feature channels ``C``.
        n_blocks: number of residual blocks.
        res_scale: residual scaling of each block.

    Raises:
        ValueError: a scale the sub-pixel upsampler cannot do.
    """

    required_fields: tuple[str, ...] = ("lr_input",)

    def __init__(self, scale: int = 2, channels: int = 64, n_blocks: int = 16, res_scale: float = 0.1) -> None:
        super().__init__()
        check_scale(scale)
        self.scale = scale
        self.head = conv(1, channels)
        self.body = nn.Sequential(*[ResBlock(channels, res_scale) for _ in range(n_blocks)], conv(channels, channels))
        self.upsampler = Upsampler(scale, channels)
        self.tail = OutputConv(channels, 1)

    def forward(self, batch: Sample) -> Prediction:
        check_batch("edsr", self.required_fields, batch)
        grid = GridPadding.for_size(batch.lr_input.shape[-2:], self.scale)  # any LR parity on the truncation grid
        features = self.head(grid.pad_lr(batch.lr_input))
        features = features + self.body(features)
        return Prediction(image=grid.crop_hr(self.tail(self.upsampler(features))))
