"""MINet: multi-contrast MRI super-resolution with a multi-stage integration network (paper 003, Feng et al.,
MICCAI 2021), and the two-branch skeleton it shares with SANet (paper 004, :mod:`accelmri.models.sanet`).

An HR reference contrast (T1/PD) guides the SR of an LR target contrast (T2/FS-PD). Both branches run at HR
(pre-upsampling in feature space, Sec. 2.1 "Multi-Stage Feature Representation"):

- heads: ``F⁰_ref = conv(x_ref)``; ``F⁰_tar = conv(U↑(conv(y_tar)))`` with ``U↑`` the sub-pixel upsampler;
- stages (Eqs. 1–2): ``F^l_ref = R^l_ref(F^{l-1}_ref)``, ``F^l_tar = R^l_tar(fuse(F^{l-1}_ref, F^{l-1}_tar))``,
  ``R`` an RCAN residual group; MINet's ``fuse`` is :class:`ConcatFusion`, SANet's a separable attention;
- multi-stage integration ``H = M_Int(F)`` over ``F = [F¹_ref, F¹_tar, …, F^L_ref, F^L_tar]`` (Eqs. 3, 7, 8;
  :class:`MultiStageIntegration`);
- channel-spatial attention ``G = M_Att(F^L)`` on the last feature of each branch (Eq. 4;
  :class:`ChannelSpatialAttention`);
- outputs (Eq. 5): ``x̂_tar = conv(F⁰_tar ⊕ G_tar ⊕ H)`` and the auxiliary ``x̂_ref = conv(G_ref)``.

Paper vs. reference code (design/models.md), and where the text leaves a choice:

- stages: the paper counts the ``L = 6`` residual groups as stages (``F`` has ``2L`` maps). Each branch here is an
  RCAN trunk, the paper's cited source of the residual groups (Zhang et al., ECCV 2018): the ``L`` groups and the
  trunk's closing conv, which the reference code also treats as a stage. So there are ``L + 1 = 7`` stages and
  ``F`` has ``2(L + 1) = 14`` maps, as in the code.
- per-stage fusion: Eq. (2) feeds the concatenation ``[F^{l-1}_ref, F^{l-1}_tar]`` to ``R^l_tar``, which needs a
  ``2C → C`` map. As in the code we use ``F_tar + conv1×1([F_ref, F_tar])``, a residual form of the same thing.
- integration conv: the layer attention outputs ``2(L+1)·C`` channels. The published model's next conv expects
  ``(L+1)·C`` and crashes. Here the conv takes ``2(L+1)·C`` channels (``(L+1)·C`` without the reference branch).
- channel-spatial attention: the paper's Eq. (4) is ``G = σ(Att) ⊙ F + F`` with no scale (``csa_gamma=None``, the
  default). The code writes ``G = γ·σ(Att) ⊙ F + F`` with a learnable ``γ`` initialised to 0
  (``csa_gamma=0.0``). With ``γ = 0`` only ``γ`` gets a gradient at first; the 3-D conv gets one after ``γ`` moves.
- the reference branch also goes through ``M_Att`` before its reconstruction conv ("G_T1 is also calculated
  using Eq. (4)").
- loss: ``α·L1(x̂_tar) + (1−α)·L1(x̂_ref)`` with ``α = 0.3`` in the paper and the code (:attr:`MINet.loss_alpha`),
  computed by the losses module.

Paper size (``channels=64, n_groups=6, n_blocks=6``): 6.64 M parameters at ×2 (6.79 M at ×4), all of them used.
The reference code, once fixed, uses 6.75 M of the 11.44 M it registers. One 160² → 320² forward pass (batch 1,
fp32, 2 CPU threads) took 7.1 s and 1.27 GiB peak RSS; the code, measured the same way, takes 15.0 s and 2.5 GiB.
The memory saving comes from the stage maps written straight into ``reshape(F)``, the integration conv run
without materialising ``H``, and the 3-D conv run as 2-D taps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from accelmri.models.base import GridPadding, Prediction, check_batch, network_input
from accelmri.models.blocks.common import OutputConv, ResidualGroup, Upsampler, conv
from accelmri.models.registry import register

if TYPE_CHECKING:
    from accelmri.data.sample import Sample

__all__ = ["Affinity", "ChannelSpatialAttention", "ConcatFusion", "MINet", "MultiStageIntegration", "MultiStageNetwork"]

Affinity = Literal["scaled", "paper"]


class ConcatFusion(nn.Module):
    """MINet per-stage fusion (paper 003, Eq. 2): ``F_tar + conv1×1([F_ref, F_tar])``.

    Maps ``reference, target (B, C, H, W)`` to the fused target ``(B, C, H, W)``; the reference is not changed.
    """

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.fuse = conv(2 * channels, channels, kernel_size=1)

    def forward(self, reference: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return target + self.fuse(torch.cat([reference, target], dim=1))


class ChannelSpatialAttention(nn.Module):
    """Channel-spatial attention ``M_Att`` (paper 003, Sec. 2.1, Eq. 4 and Fig. 1b; paper 004, Eq. 7).

    A 3×3×3 convolution over the ``(C, H, W)`` volume of the feature (one input and one output channel) gives
    the joint channel-spatial map ``Att``. The output is ``G = σ(Att) ⊙ F + F`` (paper) or, with ``gamma`` set,
    ``G = γ·σ(Att) ⊙ F + F``, where ``γ`` is a learnable scalar starting at ``gamma`` (the reference code uses 0).

    The 3-D conv (an ``nn.Conv3d(1, 1, 3, padding=1)``, so its weights load as such) runs as three depthwise 2-D
    convs, one per channel-axis tap, accumulated in place with a shift along ``C``. The result is the same, but
    PyTorch's CPU ``conv3d`` builds a 27× column buffer (0.7 GB for a 64 × 320² feature), a one-channel 2-D conv
    over the ``B·C`` planes a 9× one; this needs two feature-sized buffers.

    Maps ``(B, C, H, W)`` float to ``(B, C, H, W)``.
    """

    def __init__(self, gamma: float | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 1, kernel_size=3, padding=1)
        self.gamma = None if gamma is None else nn.Parameter(torch.tensor(float(gamma)))

    def attention_logits(self, x: torch.Tensor) -> torch.Tensor:
        """``Att = conv3d(x)`` over ``(C, H, W)``: ``(B, C, H, W)`` → ``(B, C, H, W)``."""
        channels = x.shape[1]
        weight = self.conv.weight[0, 0, :, None]  # (3, 1, 3, 3): tap d reads channel c + d − 1

        def tap(d: int, first: int, last: int) -> torch.Tensor:
            """Tap ``d`` of channels ``[first, last)``, ``(B, last − first, H, W)``: one depthwise conv."""
            kernel = weight[d : d + 1].expand(last - first, 1, 3, 3)
            return F.conv2d(x[:, first:last], kernel, padding=1, groups=last - first)

        logits = tap(1, 0, channels)
        if self.conv.bias is not None:
            logits = logits + self.conv.bias
        logits[:, 1:] += tap(0, 0, channels - 1)  # out[c] += tap 0 of channel c − 1
        logits[:, :-1] += tap(2, 1, channels)  # out[c] += tap 2 of channel c + 1
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attended = self.attention_logits(x).sigmoid_() * x
        return (attended if self.gamma is None else self.gamma * attended).add_(x)


class MultiStageIntegration(nn.Module):
    """Multi-stage integration ``M_Int`` (paper 003, Sec. 2.2, Eqs. 7–8, Fig. 2; paper 004, Sec. III-C, Eqs. 13–14).

    ``N`` stage features ``F_i (B, C, H, W)``, given stacked as ``reshape(F) (B, N·C, H, W)``, are flattened to
    ``F̂ (B, N, C·H·W)``. The affinity ``S`` is a row-wise softmax over the ``N × N`` stage similarities and the
    enriched representation is ``H = reshape(S F̂ + F̂)`` (``N·C`` channels, Eq. 8), followed by a conv ``N·C → C``.

    Affinity (``affinity``):

    - ``"scaled"`` (default): ``S = softmax(τ · cos(F̂_i, F̂_j))`` with a learnable temperature ``τ`` (initial
      ``temperature``). The paper's Eq. 7 ``S = softmax(F̂ F̂ᵀ)`` takes raw dot products of ``C·H·W``-dimensional
      vectors: logits of order 10⁵ at 32² already, so every row of ``S`` is one-hot (measured mean row maximum
      0.9996 for MINet and 1.0000 for SANet on a 32² batch), no gradient reaches the affinity and the module
      reduces to a fixed stage selection. Normalised dot products (cosines, as in scaled dot-product attention
      with the scale set by the vectors' norms) keep the logits in ``[−τ, τ]`` whatever the image size, so
      the stage mixing is learned and the same at patch (training) and whole-slice (inference) size.
    - ``"paper"``: Eq. 7 as written, for the ablation and for comparison.

    The conv is linear, so ``conv(reshape((S + I) F̂)) = Σ_j conv_{W'_j}(F_j)`` with mixed weights
    ``W'_j = Σ_i (S + I)_ij W_i`` (``W_i`` is the slice of the conv weight that reads feature ``i``). This is
    exactly the same result, computed without materialising ``H``, which would be one more ``N·C``-channel HR
    tensor (0.37 GB at 320² with ``N = 14, C = 64``). It runs as ``N`` convs of one ``C``-channel stage
    slice each, accumulated: one conv over all ``N·C`` channels makes oneDNN copy the whole stack to its blocked
    layout first (measured +0.15 GiB peak at 160² → 320², ``N = 10``).

    The affinity runs in fp32 even under autocast: ``F̂ F̂ᵀ`` sums ``C·H·W`` products and overflows fp16.

    Gain (``gain``): ``None`` adds the integrated feature as Eq. (5) writes it; a float scales it by a learnable
    ``γ`` starting at that value, as the layer attention of HAN (Niu et al., ECCV 2020, Eq. 8: ``γ·LAM(F) + F``)
    that Eqs. 7–8 follow. With ``γ = 0`` the network starts as its "w/o integration" ablation and only ``γ`` gets
    a gradient at first; the fuse conv and ``τ`` get one once ``γ`` moves.

    Args:
        n_features: number of stage features ``N``.
        channels: channels ``C`` per feature.
        affinity: ``"scaled"`` or ``"paper"`` (see above).
        temperature: initial ``τ`` of the ``"scaled"`` affinity.
        gain: ``None`` (no gain) or the initial value of the learnable gain ``γ``.

    Raises:
        ValueError: unknown ``affinity``.
    """

    def __init__(
        self,
        n_features: int,
        channels: int = 64,
        affinity: Affinity = "scaled",
        temperature: float = 1.0,
        gain: float | None = None,
    ) -> None:
        super().__init__()
        if affinity not in get_args(Affinity):
            raise ValueError(f"affinity must be one of {get_args(Affinity)}, got {affinity!r}")
        self.n_features = n_features
        self.channels = channels
        self.affinity = affinity
        self.temperature = nn.Parameter(torch.tensor(float(temperature))) if affinity == "scaled" else None
        self.fuse = conv(n_features * channels, channels)
        self.gain = None if gain is None else nn.Parameter(torch.tensor(float(gain)))

    def affinity_matrix(self, flat: torch.Tensor) -> torch.Tensor:
        """``S (B, N, N)`` float32 of the flattened features ``F̂ (B, N, D)`` float32 (row-wise softmax)."""
        if self.temperature is None:  # Eq. (7) as written
            return torch.softmax(torch.bmm(flat, flat.transpose(1, 2)), dim=-1)
        unit = F.normalize(flat, dim=-1)
        return torch.softmax(self.temperature * torch.bmm(unit, unit.transpose(1, 2)), dim=-1)

    def forward(self, stacked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Enriched feature ``(B, C, H, W)`` (times ``γ`` with a gain) and affinity ``S (B, N, N)`` of
        ``reshape(F) (B, N·C, H, W)``.

        ``stacked`` holds feature ``i`` in channels ``[i·C, (i+1)·C)`` (``torch.cat`` of the ``N`` features).

        Raises:
            ValueError: ``stacked`` does not have ``N·C`` channels.
        """
        n = self.n_features
        if stacked.ndim != 4 or stacked.shape[1] != n * self.channels:
            raise ValueError(
                f"expected {n} features of {self.channels} channels stacked as (B, {n * self.channels}, H, W), "
                f"got {tuple(stacked.shape)}"
            )
        batch, _, height, width = stacked.shape
        with torch.autocast(device_type=stacked.device.type, enabled=False):
            affinity = self.affinity_matrix(stacked.float().reshape(batch, n, -1))  # S of F̂ (B, N, C·H·W)
        mixing = (affinity + torch.eye(n, device=affinity.device)).to(stacked.dtype)  # H = (S + I) F̂, Eq. (8)
        weight = self.fuse.weight.reshape(self.channels, n, self.channels, *self.fuse.kernel_size)
        mixed = torch.einsum("bij,oicyx->bjocyx", mixing, weight)  # W'_j = Σ_i (S + I)_ij W_i
        outputs = []
        for b in range(batch):  # Σ_j conv_{W'_j}(F_j), one C-channel slice of the stack at a time
            features = stacked[b : b + 1].unflatten(1, (n, self.channels))
            total = F.conv2d(features[:, 0], mixed[b, 0], self.fuse.bias, padding=self.fuse.padding)
            for j in range(1, n):
                total = total.add_(F.conv2d(features[:, j], mixed[b, j], padding=self.fuse.padding))
            outputs.append(total)
        out = torch.cat(outputs).reshape(batch, self.channels, height, width)
        return (out if self.gain is None else self.gain * out), affinity


def _store(stacked: torch.Tensor | None, slot: int, feature: torch.Tensor) -> int:
    """Write ``feature (B, C, H, W)`` into channels ``[slot·C, (slot+1)·C)`` of ``stacked``; the next slot.

    Does nothing without ``stacked`` (no integration module).
    """
    if stacked is None:
        return slot
    width = feature.shape[1]
    stacked[:, slot * width : (slot + 1) * width] = feature
    return slot + 1


class _Branch(nn.Module):
    """One contrast's path: a head, ``n_groups`` residual groups + the trunk's closing conv (the stages),
    channel-spatial attention (or identity) and a 3×3 reconstruction conv ``C → 1``."""

    def __init__(
        self, head: nn.Module, channels: int, n_groups: int, n_blocks: int, reduction: int, attention: nn.Module
    ) -> None:
        super().__init__()
        self.head = head
        groups: list[nn.Module] = [ResidualGroup(channels, n_blocks, reduction) for _ in range(n_groups)]
        self.stages = nn.ModuleList([*groups, conv(channels, channels)])
        self.attention = attention
        self.tail = OutputConv(channels, 1)


class MultiStageNetwork(nn.Module):
    """The two-branch multi-stage skeleton of MINet and SANet (papers 003 and 004; see the module docstring).

    Subclasses choose the per-stage fusion: ``make_fusion()`` builds one module
    ``fusion(reference, target) -> target`` (all ``(B, C, H, W)``), and the first ``n_fused`` stages get one
    each. ``n_run_groups`` residual groups are built per branch; the closing conv is the last stage.

    Args:
        scale: SR factor ``s`` (power of 2, or 3).
        in_channels: 1 (LR magnitude, the papers) or 2 (complex zero-filled LR image as real/imaginary).
        channels: feature channels ``C`` (papers: 64).
        n_blocks: RCABs per residual group (papers: 6).
        reduction: channel-attention reduction of the RCABs (papers: 16).
        use_reference: ``False`` = single contrast (ablation "w/o F_Aux"): no reference branch, no fusion,
            integration over the target stages only, no ``reference`` needed in the batch.
        use_integration: ``False`` = ablation "w/o F_Int"/"w/o M_Int": ``x̂_tar = conv(F⁰_tar ⊕ G_tar)``.
        affinity: the integration's stage affinity, ``"scaled"`` (cosine logits with a learnable temperature) or
            ``"paper"`` (Eq. 7 literally, one-hot rows at practical sizes); see :class:`MultiStageIntegration`.
        integration_gain: ``None`` = Eq. (5) as written; a float = a learnable gain ``γ`` on the integrated
            feature starting at that value (``0.0``: HAN's layer attention, the network starts as "w/o M_Int").
        use_csa: ``False`` = ablation "w/o F_Att"/"w/o M_Att": ``G = F^L`` in both branches.
        csa_gamma: ``None`` = paper's Eq. (4); a float = the code's learnable ``γ`` with that initial value.
        make_fusion: factory of one per-stage fusion module.
        n_fused: number of leading stages preceded by a fusion (at most ``n_run_groups + 1``).
        n_run_groups: residual groups per branch.
        checkpoint_stages: recompute each stage (residual group) in the backward pass instead of storing its
            internal activations (``torch.utils.checkpoint``, non-reentrant): the same gradients, much less
            training memory, about one more forward pass of compute. Only in training with autograd on.

    Raises:
        ValueError: ``n_run_groups < 1``, ``n_fused`` out of range, bad ``scale`` or ``in_channels``.
    """

    required_fields: tuple[str, ...] = ("lr_input", "reference")
    """Batch fields read by :meth:`forward`; ``("lr_input",)`` on an instance built with ``use_reference=False``."""
    loss_alpha: ClassVar[float]
    """Default weight ``α`` of the target term of the loss ``α·L1(target) + (1−α)·L1(reference)``."""

    def __init__(
        self,
        *,
        scale: int,
        in_channels: int,
        channels: int,
        n_blocks: int,
        reduction: int,
        use_reference: bool,
        use_integration: bool,
        affinity: Affinity,
        use_csa: bool,
        csa_gamma: float | None,
        make_fusion: Callable[[], nn.Module],
        n_fused: int,
        n_run_groups: int,
        checkpoint_stages: bool = False,
        integration_gain: float | None = None,
    ) -> None:
        super().__init__()
        if n_run_groups < 1:
            raise ValueError(f"need at least one residual group, got {n_run_groups}")
        if not 0 <= n_fused <= n_run_groups + 1:
            raise ValueError(f"n_fused must be in [0, {n_run_groups + 1}], got {n_fused}")
        if in_channels not in (1, 2):
            raise ValueError(f"in_channels must be 1 (magnitude) or 2 (complex), got {in_channels}")
        self.scale = scale
        self.in_channels = in_channels
        self.checkpoint_stages = checkpoint_stages
        if not use_reference:
            self.required_fields = ("lr_input",)

        def attention() -> nn.Module:
            return ChannelSpatialAttention(csa_gamma) if use_csa else nn.Identity()

        target_head = nn.Sequential(conv(in_channels, channels), Upsampler(scale, channels), conv(channels, channels))
        self.target = _Branch(target_head, channels, n_run_groups, n_blocks, reduction, attention())
        self.reference: _Branch | None = None
        self.fusions = nn.ModuleList()
        if use_reference:
            self.reference = _Branch(conv(1, channels), channels, n_run_groups, n_blocks, reduction, attention())
            self.fusions.extend(make_fusion() for _ in range(n_fused))
        n_stages = len(self.target.stages)
        self.integration = (
            MultiStageIntegration((2 if use_reference else 1) * n_stages, channels, affinity, gain=integration_gain)
            if use_integration
            else None
        )

    def _run_stage(self, stage: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``stage(x)``, recomputed in the backward pass when ``checkpoint_stages`` applies."""
        if self.checkpoint_stages and self.training and torch.is_grad_enabled():
            return checkpoint(stage, x, use_reentrant=False)
        return stage(x)

    def forward(self, batch: Sample) -> Prediction:
        """Restore the target at HR.

        Reads ``lr_input (B, 1, h, w)`` (or the complex zero-filled image from ``kspace`` when ``in_channels=2``)
        and ``reference (B, 1, s·h, s·w)`` float32. Returns ``Prediction(image (B, 1, s·h, s·w),
        reference_image (B, 1, s·h, s·w) or None, extras={"layer_affinity": S (B, N, N)} with integration)``.

        Raises:
            ValueError: missing batch fields, or a reference whose size is not ``s·(h, w)``.
        """
        check_batch(type(self).__name__, self.required_fields, batch)
        lr = network_input(batch, self.in_channels)
        branch, reference = self.reference, batch.reference
        hr_size = tuple(self.scale * n for n in lr.shape[-2:])
        if branch is not None and reference is not None and tuple(reference.shape[-2:]) != hr_size:
            raise ValueError(
                f"reference is {tuple(reference.shape[-2:])}, expected the HR size {hr_size} = scale × lr_input size"
            )
        grid = GridPadding.for_size(lr.shape[-2:], self.scale)  # any LR parity on the truncation grid
        target = self.target.head(grid.pad_lr(lr))
        shallow = target  # F⁰_tar
        if branch is not None and reference is not None:
            reference = branch.head(grid.pad_hr(reference))
        # F of Eq. (3), [F¹_ref, F¹_tar, F²_ref, F²_tar, …], written straight into reshape(F) (B, N·C, H, W):
        # no list of stage maps + concatenated copy at once (each is 0.37 GB at 320², N = 14, C = 64).
        stacked, slot = None, 0
        if self.integration is not None:
            stacked = target.new_empty(target.shape[0], self.integration.fuse.in_channels, *target.shape[-2:])
        for stage, target_stage in enumerate(self.target.stages):
            if branch is not None and reference is not None:
                if stage < len(self.fusions):
                    target = self.fusions[stage](reference, target)  # reads F^{l-1}_ref and F^{l-1}_tar
                reference = self._run_stage(branch.stages[stage], reference)
                slot = _store(stacked, slot, reference)
            target = self._run_stage(target_stage, target)
            slot = _store(stacked, slot, target)
        restored = shallow + self.target.attention(target)
        extras: dict[str, torch.Tensor] = {}
        if self.integration is not None and stacked is not None:
            integrated, extras["layer_affinity"] = self.integration(stacked)
            stacked = None  # free the stage stack before the reference tail (kept by autograd when training)
            restored = restored + integrated
        reference_image = None
        if branch is not None and reference is not None:
            reference_image = grid.crop_hr(branch.tail(branch.attention(reference)))
        image = grid.crop_hr(self.target.tail(restored))
        return Prediction(image=image, reference_image=reference_image, extras=extras)


@register("minet")
class MINet(MultiStageNetwork):
    """MINet (paper 003, Fig. 1a): two RCAN branches, per-stage concat fusion, integration, channel-spatial attention.

    Args:
        scale: SR factor ``s`` (2 and 4 in the paper; any power of 2, or 3).
        in_channels: 1 (LR magnitude, the paper) or 2 (complex zero-filled LR image as real/imaginary).
        channels: feature channels ``C`` (paper 64).
        n_groups: residual groups ``L`` per branch (paper 6); each branch has ``L + 1`` stages.
        n_blocks: RCABs per residual group (paper 6).
        reduction: channel-attention reduction (paper 16).
        use_reference: ``False`` = ablation "w/o F_Aux" (Table 2): single contrast, no ``reference`` needed.
        use_integration: ``False`` = ablation "w/o F_Int" (Table 2).
        affinity: ``"scaled"`` (default; learnable stage mixing) or ``"paper"`` (Eq. 7 as written, saturated); see
            :class:`MultiStageIntegration`.
        integration_gain: ``None`` = Eq. (5) as written; ``0.0`` = a learnable gain on the integrated feature
            starting at 0 (HAN's layer attention; the network starts as "w/o F_Int"). Not in the paper.
        use_csa: ``False`` = ablation "w/o F_Att" (Table 2).
        csa_gamma: ``None`` = Eq. (4) as written; ``0.0`` = the reference code's learnable ``γ`` initialised to 0.
        checkpoint_stages: recompute every stage in the backward pass (less training memory, same gradients; see
            :class:`MultiStageNetwork`). Not in the paper.

    Forward: see :meth:`MultiStageNetwork.forward`.
    """

    loss_alpha = 0.3

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
        checkpoint_stages: bool = False,
        integration_gain: float | None = None,
    ) -> None:
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
            make_fusion=lambda: ConcatFusion(channels),
            n_fused=n_groups + 1,
            n_run_groups=n_groups,
            checkpoint_stages=checkpoint_stages,
            integration_gain=integration_gain,
        )
