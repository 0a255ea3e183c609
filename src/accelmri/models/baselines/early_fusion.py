"""Early-fusion multi-contrast SR: the bicubic-upsampled LR target concatenated with the HR reference.

The "concatenate the reference image at the input" baselines that MINet (paper 003) and SANet (paper 004) compare
against (e.g. Zeng et al., "Simultaneous single- and multi-contrast super-resolution for brain MRI images based on
a convolutional neural network", Comput. Biol. Med. 2018; Lyu et al., "Multi-contrast super-resolution MRI through
a progressive network", IEEE TMI 2020): a plain residual CNN on the two-channel image at HR.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from accelmri.models.base import Prediction, check_batch
from accelmri.models.baselines.interpolation import bicubic_upsample, check_scale
from accelmri.models.blocks.common import OutputConv, ResBlock, conv
from accelmri.models.registry import register

if TYPE_CHECKING:
    from accelmri.data.sample import Sample

__all__ = ["EarlyFusion"]


@register("early_fusion")
class EarlyFusion(nn.Module):
    """``image = x↑ + conv(ResBlocks(conv([x↑, reference])))`` with ``x↑`` the bicubic-upsampled ``lr_input``.

    Reads ``lr_input (B, 1, h, w)`` and ``reference (B, 1, s·h, s·w)``; outputs ``image (B, 1, s·h, s·w)``.
    All convolutions run at HR. Defaults (8 blocks × 64 channels): 0.59 M parameters.

    Args:
        scale: SR scale ``s`` (positive int).
        channels: feature channels.
        n_blocks: number of EDSR residual blocks (:class:`~accelmri.models.blocks.common.ResBlock`).
        res_scale: residual scaling of each block.

    Raises:
        ValueError: bad ``scale``.
    """

    required_fields: tuple[str, ...] = ("lr_input", "reference")

    def __init__(self, scale: int = 2, channels: int = 64, n_blocks: int = 8, res_scale: float = 0.1) -> None:
        super().__init__()
        check_scale(scale)
        self.scale = scale
        self.head = conv(2, channels)
        self.body = nn.Sequential(*[ResBlock(channels, res_scale) for _ in range(n_blocks)])
        self.tail = OutputConv(channels, 1)

    def forward(self, batch: Sample) -> Prediction:
        check_batch("early_fusion", self.required_fields, batch)
        upsampled = bicubic_upsample(batch.lr_input, self.scale)
        features = self.head(torch.cat([upsampled, batch.reference], dim=1))
        return Prediction(image=upsampled + self.tail(self.body(features)))
