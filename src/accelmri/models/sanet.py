"""SANet: separable attention for multi-contrast MR image super-resolution (paper 004, Feng et al., IEEE TMI).

SANet is the MINet skeleton (:class:`~accelmri.models.minet.MultiStageNetwork`: pre-upsampled target branch,
RCAN stages, multi-stage integration, channel-spatial attention; Sec. III-A, Eqs. 1–8) with the per-stage concat
fusion replaced by a :class:`SeparableAttention` module ``S^l`` (Sec. III-B, Eqs. 10–12, Fig. 3), so that
``F^l_tar = R^l_tar(S^l(F^{l-1}_ref, F^{l-1}_tar))`` (Eq. 4).

Paper vs. reference code (design/models.md), and where the text leaves a choice:

- attention stages: the paper puts ``S^l`` in every stage (``attention_stages="all"``, the default: all
  ``L + 1`` stages of the skeleton). The reference code zips its stage list with 4 attention modules, so only
  groups 1–4 run, each after a separable attention, and groups 5–6 never run. ``attention_stages="refcode"``
  reproduces that network: ``min(L, 4)`` groups per branch, each preceded by ``S^l``, then the closing conv stage
  with no attention. design/models.md says "4 of the 7 stages", so we take it that the closing conv still runs.
  The groups that never run are not built (the code registers them, 11.41 M parameters, but uses only 4.64 M).
- ``A_H``: Eq. (10) writes ``A_H = σ(F_aux)``, but ``F_aux`` has ``C`` channels while ``F̂`` has 32. We insert the
  smallest map that fixes this, a 1×1 conv ``C → 32``, so ``A_H = σ(conv1×1(F_ref))`` is still a per-pixel
  function of ``F_ref``.
- ``Q``: the paper writes "3×3 conv and a ReLU" (``batch_norm=False``, the default). design/models.md writes
  "conv3-(BN)-ReLU", which we take to be the code's batch norm (``batch_norm=True``).
- prediction layer ``Q_R``: "the same operation as Q" (conv3×3–ReLU), "a single-channel residual map", added to
  the ``C``-channel ``F_tar`` (Eq. 12). Broadcasting one channel over ``C`` would make ``S^l`` add the same
  map to every channel, so ``Q_R`` outputs ``C`` channels.
- loss: ``α·L1(target) + (1−α)·L1(reference)`` with ``α = 0.7`` in the paper (Sec. IV-B, Fig. 8;
  :attr:`SANet.loss_alpha`). The code weights the target by 0.3, like MINet.

Parameters at paper size (``C=64, L=6, n_blocks=6``, ×2): "all" 7.01 M (separable attention 0.43 M over 7
stages); "refcode" 4.74 M. The paper's "11 M, separable attention 0.2 M" matches the code's registered count,
which includes modules that never run. The code uses 4.64 M. Time and memory against the code's (11.2 s /
1.95 GiB per 160² → 320² slice): ``docs/performance.md``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from accelmri.models.blocks.common import conv
from accelmri.models.minet import Affinity, MultiStageNetwork
from accelmri.models.registry import register

__all__ = ["REFCODE_ATTENTION_STAGES", "AttentionStages", "SANet", "SeparableAttention"]

AttentionStages = Literal["all", "refcode"]
REFCODE_ATTENTION_STAGES = 4
"""Stages with separable attention in the reference code, the length of its attention list."""


def _conv_relu(in_channels: int, out_channels: int, batch_norm: bool) -> nn.Sequential:
    """``Q`` of Eq. (12): conv3×3 (–BN) –ReLU."""
    layers: list[nn.Module] = [conv(in_channels, out_channels, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SeparableAttention(nn.Module):
    """Separable attention compensation ``S^l`` (paper 004, Sec. III-B, Eqs. 10–12, Fig. 3).

    With ``F_ref, F_tar (B, C, H, W)``:

    - high-intensity priority map ``A_H = σ(conv1×1(F_ref))`` and low-intensity separation map
      ``A_L = 1 − A_H`` (Eq. 10), ``(B, K, H, W)`` with ``K = attention_channels`` (paper 32);
    - fused feature ``F̂ = Conv_Re([F_ref, F_tar])``, a 1×1 conv ``2C → K`` (Eq. 11);
    - ``R = Q_R([Q(F̂ ⊙ A_H), Q(F̂ ⊙ A_L)]) + F_tar`` (Eq. 12): two ``Q`` paths (conv3×3 ``K → K`` (–BN) –ReLU,
      separate weights) and ``Q_R`` (conv3×3 ``2K → C`` (–BN) –ReLU).

    Maps ``reference, target (B, C, H, W)`` float to the compensated target ``(B, C, H, W)``.
    """

    def __init__(self, channels: int = 64, attention_channels: int = 32, batch_norm: bool = False) -> None:
        super().__init__()
        self.gate = conv(channels, attention_channels, kernel_size=1)
        self.reduce = conv(2 * channels, attention_channels, kernel_size=1)
        self.high = _conv_relu(attention_channels, attention_channels, batch_norm)
        self.low = _conv_relu(attention_channels, attention_channels, batch_norm)
        self.predict = _conv_relu(2 * attention_channels, channels, batch_norm)

    def forward(self, reference: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        high = torch.sigmoid(self.gate(reference))  # A_H; A_L = 1 − A_H
        fused = self.reduce(torch.cat([reference, target], dim=1))  # F̂
        paths = torch.cat([self.high(fused * high), self.low(fused * (1 - high))], dim=1)
        return target + self.predict(paths)


@register("sanet")
class SANet(MultiStageNetwork):
    """SANet (paper 004, Fig. 2): the MINet skeleton with separable attention before every stage's target group.

    Args:
        scale: SR factor ``s`` (2 and 4 in the paper; any power of 2, or 3).
        in_channels: 1 (LR magnitude, the paper) or 2 (complex zero-filled LR image as real/imaginary).
        channels: feature channels ``C`` (paper 64).
        n_groups: residual groups ``L`` per branch (paper 6); each branch has ``L + 1`` stages.
        n_blocks: RCABs per residual group (paper 6).
        reduction: channel-attention reduction (paper 16).
        use_reference: ``False`` = ablation Ab_1/Ab_2 (Table III): single contrast, no separable attention.
        use_integration: ``False`` = no ``M_Int`` (Table III, Ab_1–Ab_3).
        affinity: ``"scaled"`` (default; learnable stage mixing) or ``"paper"`` (Eq. 13 as written, saturated);
            see :class:`~accelmri.models.minet.MultiStageIntegration`.
        integration_gain: ``None`` = the paper (no gain); ``0.0`` = a learnable gain on the integrated feature
            starting at 0 (HAN's layer attention; the network starts without ``M_Int``). Not in the paper.
        use_csa: ``False`` = no ``M_Att`` (Table III, Ab_1).
        csa_gamma: ``None`` = Eq. (7) as written; ``0.0`` = the reference code's learnable ``γ`` initialised to 0.
        attention_stages: ``"all"`` (paper: ``S^l`` before every stage) or ``"refcode"`` (the reference code's
            network: ``min(L, 4)`` groups, each after ``S^l``; see the module docstring).
        attention_channels: channels ``K`` of ``F̂`` and of the attention paths (paper 32).
        batch_norm: batch norm in ``Q`` and ``Q_R`` (the reference code; the paper has conv–ReLU).
        checkpoint_stages: recompute every stage in the backward pass (less training memory, same gradients; see
            :class:`~accelmri.models.minet.MultiStageNetwork`). Not in the paper.

    Forward: see :meth:`~accelmri.models.minet.MultiStageNetwork.forward`.

    Raises:
        ValueError: unknown ``attention_stages`` (and see :class:`~accelmri.models.minet.MultiStageNetwork`).
    """

    loss_alpha = 0.7

    def __init__(
        self,
        scale: int = 2,
        in_channels: int = 1,
        channels: int = 64,
        n_groups: int = 6,
        n_blocks: int = 6,
        reduction: int = 16,
        use_reference: bool = True,
        use_integration: bool = True,
        affinity: Affinity = "scaled",
        use_csa: bool = True,
        csa_gamma: float | None = None,
        attention_stages: AttentionStages = "all",
        attention_channels: int = 32,
        batch_norm: bool = False,
        checkpoint_stages: bool = False,
        integration_gain: float | None = None,
    ) -> None:
        if attention_stages == "all":
            n_run_groups, n_fused = n_groups, n_groups + 1
        elif attention_stages == "refcode":
            n_run_groups = n_fused = min(n_groups, REFCODE_ATTENTION_STAGES)
        else:
            raise ValueError(f"attention_stages must be 'all' or 'refcode', got {attention_stages!r}")
        super().__init__(
            scale=scale,
            in_channels=in_channels,
            channels=channels,
            n_blocks=n_blocks,
            reduction=reduction,
            use_reference=use_reference,
            use_integration=use_integration,
            affinity=affinity,
            use_csa=use_csa,
            csa_gamma=csa_gamma,
            make_fusion=lambda: SeparableAttention(channels, attention_channels, batch_norm),
            n_fused=n_fused,
            n_run_groups=n_run_groups,
            checkpoint_stages=checkpoint_stages,
            integration_gain=integration_gain,
        )
        self.attention_stages = attention_stages
