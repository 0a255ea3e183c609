"""Convolutional building blocks shared by the models.

- :class:`ResBlock`: EDSR residual block conv3–ReLU–conv3 with residual scaling, no batch norm (Lim et al.,
  "Enhanced deep residual networks for single image super-resolution", CVPRW 2017) — T2Net's branches (paper 000).
- :class:`ChannelAttention`, :class:`RCAB`, :class:`ResidualGroup`: RCAN (Zhang et al., ECCV 2018, Sec. 3) —
  the branches of MINet and SANet (papers 003, 004).
- :class:`Upsampler`: sub-pixel convolution (Shi et al., CVPR 2016): conv 64→256 + PixelShuffle(2) per factor 2.
- :class:`OutputConv`: the last conv of a model, the one that writes the image, kept in float32 under autocast.

All blocks map ``(B, C, H, W)`` float tensors to ``(B, C, H, W)`` (``Upsampler``: ``(B, C, sH, sW)``).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["RCAB", "ChannelAttention", "OutputConv", "ResBlock", "ResidualGroup", "Upsampler", "conv"]


def conv(in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True) -> nn.Conv2d:
    """A 'same'-padded 2-D convolution."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class OutputConv(nn.Conv2d):
    """The 'same'-padded conv that writes a model's image (or its residual): float32 even under autocast.

    Under bf16 autocast a conv returns bf16, which would quantise the restored image itself to 8 significant bits
    (a relative step of 2⁻⁸, ~0.1 % of the image maximum as RMS error): at the ~39 dB of a good 2× SR model that
    alone moves PSNR by ~0.05 dB (measured on the demo's SANet: −0.063 dB with a bf16 tail). Here the input is cast
    to float32 and the conv runs with autocast disabled; every other layer keeps the fast dtype. The cost is one
    conv with few output channels. Same parameters and state-dict keys as :class:`torch.nn.Conv2d`.

    Maps ``(B, C_in, H, W)`` of any float dtype to ``(B, C_out, H, W)`` float32.
    """

    def __init__(self, in_channels: int, out_channels: int = 1, kernel_size: int = 3) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float())


class ResBlock(nn.Module):
    """EDSR residual block ``x + res_scale · conv(ReLU(conv(x)))``."""

    def __init__(self, channels: int = 64, res_scale: float = 0.1) -> None:
        super().__init__()
        self.body = nn.Sequential(conv(channels, channels), nn.ReLU(inplace=True), conv(channels, channels))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.add(x, self.body(x), alpha=self.res_scale)  # one pass, no scaled temporary


class ChannelAttention(nn.Module):
    """RCAN channel attention: global average pool → 1×1 conv (C→C/r) → ReLU → 1×1 conv → sigmoid gate."""

    def __init__(self, channels: int = 64, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class RCAB(nn.Module):
    """Residual channel attention block ``x + CA(conv(ReLU(conv(x))))`` (RCAN)."""

    def __init__(self, channels: int = 64, reduction: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv(channels, channels),
            nn.ReLU(inplace=True),
            conv(channels, channels),
            ChannelAttention(channels, reduction),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        body = self.body[:-1]  # conv(ReLU(conv(x))); the channel attention is fused into the residual sum
        y = body(x)
        return torch.addcmul(x, y, self.body[-1].gate(y))  # x + y ⊙ CA(y) in one pass


class ResidualGroup(nn.Module):
    """RCAN residual group: ``n_blocks`` RCABs and a conv, with a long skip connection."""

    def __init__(self, channels: int = 64, n_blocks: int = 6, reduction: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(*[RCAB(channels, reduction) for _ in range(n_blocks)], conv(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).add_(x)  # the closing conv's output is not needed by autograd: add in place


class Upsampler(nn.Sequential):
    """Sub-pixel upsampler: per factor 2, conv C→4C and PixelShuffle(2); for 3, conv C→9C and PixelShuffle(3).

    Raises:
        ValueError: for a scale that is not a power of 2 or 3.
    """

    def __init__(self, scale: int, channels: int = 64) -> None:
        layers: list[nn.Module] = []
        if scale >= 1 and scale & (scale - 1) == 0:
            for _ in range(scale.bit_length() - 1):
                layers += [conv(channels, 4 * channels), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [conv(channels, 9 * channels), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"Upsampler: scale must be a power of 2 or 3, got {scale}")
        super().__init__(*layers)
