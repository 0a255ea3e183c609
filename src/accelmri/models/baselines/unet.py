"""The fastMRI image-domain U-Net reconstruction baseline (Zbontar et al., "fastMRI: An open dataset and benchmarks
for accelerated MRI", arXiv:1811.08839, Sec. 6.2; Ronneberger et al., MICCAI 2015).

Architecture (fastMRI, Sec. 6.2): ``n_pools`` levels; every convolution block is two (3×3 conv without bias →
instance norm → LeakyReLU(0.2) → dropout); 2×2 average pooling down, 2×2 stride-2 transposed convolutions (with
instance norm and LeakyReLU) up; skip connections by concatenation; channels double at each level from
``channels`` (32 in the paper's baseline); a final 1×1 convolution. The network maps the zero-filled LR image to the
LR image (no global residual, as in fastMRI).

Sizes not divisible by ``2**n_pools`` are padded (edge replication) to the next multiple, at least
``2**(n_pools + 1)`` so the bottleneck keeps ≥ 2×2 pixels for instance norm, and the output is cropped back.
With ``scale > 1`` the LR reconstruction is bicubic-upsampled to the HR grid (a "U-Net × bicubic" baseline).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from accelmri.models.base import Prediction, check_batch, network_input
from accelmri.models.baselines.interpolation import bicubic_upsample, check_scale
from accelmri.models.blocks.common import OutputConv
from accelmri.models.registry import register

if TYPE_CHECKING:
    from accelmri.data.sample import Sample

__all__ = ["UNet"]


def _conv_block(in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
    """Two × (conv3, no bias → InstanceNorm → LeakyReLU(0.2) → Dropout2d): ``(B, in, h, w) → (B, out, h, w)``."""
    layers: list[nn.Module] = []
    for channels in (in_channels, out_channels):
        layers += [
            nn.Conv2d(channels, out_channels, 3, padding=1, bias=False),
            nn.InstanceNorm2d(out_channels),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Dropout2d(dropout),
        ]
    return nn.Sequential(*layers)


def _up_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """2×2 stride-2 transposed conv (no bias) → InstanceNorm → LeakyReLU(0.2): ``(B, in, h, w) → (B, out, 2h, 2w)``."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2, bias=False),
        nn.InstanceNorm2d(out_channels),
        nn.LeakyReLU(0.2, inplace=True),
    )


@register("unet")
class UNet(nn.Module):
    """fastMRI U-Net: ``lr_input (B, 1, h, w)`` (or the complex zero-filled image, 2 channels) → ``lr_image``.

    Outputs ``lr_image (B, 1, h, w)`` and ``image (B, 1, s·h, s·w)`` (its bicubic upsampling; ``image is lr_image``
    when ``scale == 1``). Defaults (4 pools, 32 channels) are the fastMRI baseline: 7.76 M parameters.

    Args:
        scale: SR scale ``s`` of the bicubic upsampling after the U-Net (1 for reconstruction).
        in_channels: 1 (magnitude ``lr_input``) or 2 (real/imaginary of the complex zero-filled image,
            :func:`~accelmri.models.base.network_input`; multi-coil data need ``sens_maps``).
        channels: channels of the first level (doubled at each level).
        n_pools: number of pooling levels.
        dropout: dropout probability (fastMRI: 0).

    Raises:
        ValueError: bad ``scale``, ``in_channels`` not 1 or 2, or ``n_pools < 1``.
    """

    def __init__(
        self, scale: int = 1, in_channels: int = 1, channels: int = 32, n_pools: int = 4, dropout: float = 0.0
    ) -> None:
        super().__init__()
        check_scale(scale)
        if in_channels not in (1, 2):
            raise ValueError(f"in_channels must be 1 (magnitude) or 2 (complex), got {in_channels}")
        if n_pools < 1:
            raise ValueError(f"n_pools must be >= 1, got {n_pools}")
        self.scale = scale
        self.in_channels = in_channels
        self.n_pools = n_pools
        self.required_fields: tuple[str, ...] = ("lr_input",) if in_channels == 1 else ("kspace",)
        widths = [channels * 2**level for level in range(n_pools + 1)]
        self.down = nn.ModuleList(
            [_conv_block(in_channels, widths[0], dropout)]
            + [_conv_block(widths[level], widths[level + 1], dropout) for level in range(n_pools - 1)]
        )
        self.bottleneck = _conv_block(widths[-2], widths[-1], dropout)
        levels = list(reversed(range(n_pools)))
        self.up_sample = nn.ModuleList([_up_block(widths[level + 1], widths[level]) for level in levels])
        self.up = nn.ModuleList([_conv_block(2 * widths[level], widths[level], dropout) for level in levels])
        self.out = OutputConv(widths[0], 1, 1)

    def _padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        """``F.pad`` widths ``(left, right, top, bottom)`` to the next valid size (see the module docstring)."""
        multiple = 2**self.n_pools
        pads: list[int] = []
        for size in (width, height):
            padded = max(-(-size // multiple) * multiple, 2 * multiple)
            pads += [(padded - size) // 2, padded - size - (padded - size) // 2]
        return pads[0], pads[1], pads[2], pads[3]

    def unet(self, x: torch.Tensor) -> torch.Tensor:
        """The U-Net itself, ``(B, in_channels, h, w) → (B, 1, h, w)`` float32, any ``h, w``."""
        height, width = x.shape[-2:]
        left, right, top, bottom = self._padding(height, width)
        x = F.pad(x, (left, right, top, bottom), mode="replicate")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.avg_pool2d(x, 2)
        x = self.bottleneck(x)
        for up_sample, block in zip(self.up_sample, self.up, strict=True):
            x = block(torch.cat([up_sample(x), skips.pop()], dim=1))
        return self.out(x)[..., top : top + height, left : left + width]

    def forward(self, batch: Sample) -> Prediction:
        check_batch("unet", self.required_fields, batch)
        lr_image = self.unet(network_input(batch, self.in_channels))
        return Prediction(image=bicubic_upsample(lr_image, self.scale), lr_image=lr_image)
