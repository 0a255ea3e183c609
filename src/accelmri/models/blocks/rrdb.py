"""Residual-in-residual dense blocks (ESRGAN) and spatial feature transform (SFT) modulation.

- :class:`DenseBlock`: ESRGAN's residual dense block (Wang et al., "ESRGAN: Enhanced super-resolution generative
  adversarial networks", ECCVW 2018, Fig. 4): five 3×3 convs, each seeing the concatenation of the block input and
  all previous outputs (growth ``g`` channels), LeakyReLU(0.2) after the first four, output ``x + β·conv5(…)`` with
  residual scaling ``β = 0.2``.

  ``extra_skips=True`` adds the two skip connections of paper 001 (Sec. 3.2.2: "we add two skip connections in each
  Dense Block of RRDB to enhance the mobility of the features"; its Fig. 2b is not available as text). We implement
  the two-skip dense block of ESRGAN+ (Rakotonirina & Rasoanaivo, "ESRGAN+: further improving enhanced
  super-resolution generative adversarial network", ICASSP 2020, Fig. 2), the established RRDB variant with exactly
  two added skips per dense block: ``x2 ← x2 + conv1×1(x)`` (a bias-free 1×1 conv maps the ``C``-channel block input
  to the ``g``-channel growth) and ``x4 ← x4 + x2``, both after the activation. ESRGAN+'s Gaussian noise injection
  is not part of paper 001 and is left out.
- :class:`RRDB`: three dense blocks and a residual ``x + β·DB3(DB2(DB1(x)))``, ``β = 0.2`` (ESRGAN Fig. 4;
  paper 001 Fig. 2a).
- :class:`SFTLayer`: spatial feature transform (Wang et al., "Recovering realistic texture in image
  super-resolution by deep spatial feature transform", CVPR 2018, Eq. 3): a per-pixel affine map ``γ ⊙ F + β`` of a
  feature ``F`` whose ``γ`` and ``β`` are each computed from a condition feature by two convolutions (paper 001,
  Sec. 3.2.2 and Fig. 2c). As in the SFTGAN reference code the convs are 1×1 with LeakyReLU(0.1) between them and
  ``γ = 1 + conv(…)``, so a zero modulation is the identity.
- :class:`RRDBSFT`: paper 001's RRDB-SFT block: an :class:`RRDB` whose three dense blocks each receive an
  SFT-modulated input, ``DBᵢ(SFTᵢ(·, cond))``, all SFT layers of the network sharing one condition (the
  "reconstruction feature", broadcast to every block). The paper says only that the SFT layer is configured "within
  the RRDB"; placing one SFT layer in front of each dense block follows SFTGAN's residual blocks, where SFT
  modulates the input of every conv stage.

Shapes: features ``(B, C, H, W)`` float → ``(B, C, H, W)``; the SFT condition is ``(B, C_cond, H, W)`` on the same
grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from accelmri.models.blocks.common import conv

__all__ = ["RRDB", "RRDBSFT", "DenseBlock", "SFTLayer"]

RESIDUAL_SCALE = 0.2
"""ESRGAN's residual scaling ``β`` of dense blocks and RRDBs (paper 001, Fig. 2a)."""

INIT_SCALE = 0.1
"""ESRGAN's initialisation of dense-block convs: Kaiming-normal weights scaled by 0.1, zero biases (ESRGAN Sec. 3.3,
"smaller initialization"), so that deep RRDB stacks start close to the identity."""


class DenseBlock(nn.Module):
    """ESRGAN residual dense block, optionally with ESRGAN+'s two extra skip connections (see the module doc).

    Args:
        channels: block input/output channels ``C`` (paper 64).
        growth: growth channels ``g`` of the first four convs (paper 32).
        extra_skips: add ``x2 += conv1×1(x)`` and ``x4 += x2`` (paper 001's SR blocks).
    """

    def __init__(self, channels: int = 64, growth: int = 32, extra_skips: bool = False) -> None:
        super().__init__()
        self.convs = nn.ModuleList(conv(channels + i * growth, growth) for i in range(4))
        self.fuse = conv(channels + 4 * growth, channels)
        self.skip: nn.Conv2d | None = nn.Conv2d(channels, growth, 1, bias=False) if extra_skips else None
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight)
                layer.weight.data.mul_(INIT_SCALE)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) → (B, C, H, W)``."""
        features = [x]
        for i, layer in enumerate(self.convs):
            out = F.leaky_relu(layer(torch.cat(features, dim=1)), 0.2)
            if self.skip is not None and i == 1:
                out = out + self.skip(x)
            elif self.skip is not None and i == 3:
                out = out + features[2]
            features.append(out)
        return x + RESIDUAL_SCALE * self.fuse(torch.cat(features, dim=1))


class RRDB(nn.Module):
    """Residual in residual dense block ``x + β·DB3(DB2(DB1(x)))`` (ESRGAN; paper 001 Fig. 2a).

    Args:
        channels: feature channels ``C``.
        growth: growth channels of the dense blocks.
        extra_skips: use paper 001's two-skip dense blocks (:class:`DenseBlock`).
    """

    def __init__(self, channels: int = 64, growth: int = 32, extra_skips: bool = False) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(DenseBlock(channels, growth, extra_skips) for _ in range(3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) → (B, C, H, W)``."""
        return x + RESIDUAL_SCALE * self.blocks(x)


class SFTLayer(nn.Module):
    """Spatial feature transform ``F ↦ γ ⊙ F + β`` with ``γ = 1 + g(cond)``, ``β = b(cond)`` (SFTGAN Eq. 3).

    ``g`` and ``b`` are each two 1×1 convolutions ``C_cond → C_cond → C`` with LeakyReLU(0.1) in between.

    Args:
        channels: channels ``C`` of the modulated feature.
        cond_channels: channels ``C_cond`` of the condition.
    """

    def __init__(self, channels: int = 64, cond_channels: int = 32) -> None:
        super().__init__()
        self.scale = nn.Sequential(
            nn.Conv2d(cond_channels, cond_channels, 1), nn.LeakyReLU(0.1), nn.Conv2d(cond_channels, channels, 1)
        )
        self.shift = nn.Sequential(
            nn.Conv2d(cond_channels, cond_channels, 1), nn.LeakyReLU(0.1), nn.Conv2d(cond_channels, channels, 1)
        )

    def forward(self, feature: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Modulate ``feature (B, C, H, W)`` by ``cond (B, C_cond, H, W)``; returns ``(B, C, H, W)``."""
        return feature * (1 + self.scale(cond)) + self.shift(cond)


class RRDBSFT(nn.Module):
    """Paper 001's RRDB-SFT: ``x + β·DB3(SFT3(DB2(SFT2(DB1(SFT1(x, c)), c)), c))`` with two-skip dense blocks.

    Args:
        channels: feature channels ``C`` (paper 64).
        growth: growth channels of the dense blocks (paper 32).
        cond_channels: channels of the shared condition (the reconstruction feature).
    """

    def __init__(self, channels: int = 64, growth: int = 32, cond_channels: int = 32) -> None:
        super().__init__()
        self.sft = nn.ModuleList(SFTLayer(channels, cond_channels) for _ in range(3))
        self.blocks = nn.ModuleList(DenseBlock(channels, growth, extra_skips=True) for _ in range(3))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """``x (B, C, H, W)``, ``cond (B, C_cond, H, W)`` → ``(B, C, H, W)``."""
        out = x
        for sft, block in zip(self.sft, self.blocks, strict=True):
            out = block(sft(out, cond))
        return x + RESIDUAL_SCALE * out
