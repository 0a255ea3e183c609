"""T2Net: joint MRI reconstruction and super-resolution with task transformers (paper 000, Feng et al., MICCAI 2021).

Two EDSR branches read the same zero-filled LR image ``x̂_LR``: the Rec branch is supervised by the fully sampled
LR image, the SR branch by the HR image (paper Eq. 1). After every residual block a :class:`TaskTransformer`
moves artefact-free structure from the Rec features into the SR features (Sec. 2.1, Eqs. 2–4; Sec. 2.2, Eqs. 5–6).

Paper vs. reference code (design/models.md):

- value ``V``: the paper takes the Rec feature up- then down-sampled, ``F_Rec↑↓`` (Sec. 2.2, Fig. 2;
  ``value="paper"``, the default); the reference code uses the Rec feature itself (``value="refcode"``).
- fusion: the paper writes ``Z = Conv_z(Concat(C, Q))`` then ``Q ⊕ Conv_out(Z) ⊗ S`` (Eq. 6) without kernel sizes
  and no non-linearity between the two convolutions, so they compose to one linear map; we use one 1×1 conv
  ``2C → C``, which is what the reference code's parameter count (1.40 M at ×2) implies.
- inputs of ``H_tt``: Eq. 2 writes ``H_tt(F_SR^i + F_Rec^i)``, while Sec. 2.2 / Fig. 2 define ``Q = F_SR^i`` and
  ``K = F_Rec^i``; we follow Sec. 2.2 (the sum is the "w/o Htt" ablation, ``use_task_transformer=False``).
- the loss weights (paper 0.2·L1(SR) + 0.8·L1(Rec), code 0.8/0.2) live in :mod:`accelmri.losses`.

The relevance search is exact (global argmax/max as the dense formula) but blockwise in memory
(:func:`~accelmri.models.blocks.correspondence.relevance_search`); ``search_window``, ``search_coarse`` and
``search_dtype`` are opt-in approximations for speed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

from accelmri.models.base import GridPadding, Prediction, check_batch, network_input
from accelmri.models.blocks.common import OutputConv, ResBlock, Upsampler, conv
from accelmri.models.blocks.correspondence import parse_search_dtype, relevance_search, transfer
from accelmri.models.registry import register

if TYPE_CHECKING:
    from accelmri.data.sample import Sample

__all__ = ["T2Net", "TaskTransformer", "ValueSource"]

ValueSource = Literal["paper", "refcode"]


class TaskTransformer(nn.Module):
    """Task transformer ``H_tt`` (paper Sec. 2.2, Fig. 2): hard + soft attention from the Rec to the SR features.

    With ``Q`` the SR feature, ``K`` the Rec feature and ``V`` the value (``K↑↓`` or ``K``, see ``value``):

    - relevance embedding (Eq. 5): ``r_ij = ⟨q_i/‖q_i‖, k_j/‖k_j‖⟩`` over 3×3 patches (all channels) of every
      query position ``i`` and every key position ``j``;
    - transfer (hard) attention: ``t_i = argmax_j r_ij``; the 3×3 patch of ``V`` at ``t_i`` is moved to ``i``,
      overlapping patches are folded back and averaged, giving ``C``;
    - soft attention: ``s_i = max_j r_ij``; output (Eq. 6) ``F_TT = Q + Conv(Concat(C, Q)) ⊙ S``.

    Args:
        channels: feature channels ``C`` of ``Q``, ``K`` and ``V``.
        scale: SR factor, the resampling factor of the paper's ``V = K↑↓``.
        value: ``"paper"`` (``V = K↑↓``: bicubic ×``scale`` up, then anti-aliased bicubic down to the LR grid)
            or ``"refcode"`` (``V = K``).
        patch: patch side of the relevance embedding (odd).
        block_size: keys per block of the relevance search (memory only; the result is exact).
        window: restrict the search to keys within ``±window`` pixels of the query position (approximate).
        search_dtype: dtype of the relevance correlation, e.g. ``torch.bfloat16`` or ``"bfloat16"`` (approximate).
        search_coarse: coarse-to-fine search with ``search_coarse × search_coarse`` cells (approximate; ``None`` =
            exact): the ``coarse`` option of :func:`~accelmri.models.blocks.correspondence.relevance_search`.
        search_candidates: key windows the coarse-to-fine search refines per query cell (its ``candidates``; more
            is slower and closer to the exact search).
    """

    def __init__(
        self,
        channels: int = 64,
        scale: int = 2,
        value: ValueSource = "paper",
        patch: int = 3,
        block_size: int = 512,
        window: int | None = None,
        search_dtype: torch.dtype | str | None = None,
        search_coarse: int | None = None,
        search_candidates: int = 8,
    ) -> None:
        super().__init__()
        if value not in ("paper", "refcode"):
            raise ValueError(f"value must be 'paper' or 'refcode', got {value!r}")
        self.scale = scale
        self.value = value
        self.patch = patch
        self.block_size = block_size
        self.window = window
        self.search_dtype = parse_search_dtype(search_dtype)
        self.search_coarse = search_coarse
        self.search_candidates = search_candidates
        self.fuse = nn.Conv2d(2 * channels, channels, kernel_size=1)

    def correspond(self, query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Soft and hard attention: ``max_j r_ij`` ``(B, h·w)`` float32 and ``argmax_j r_ij`` ``(B, h·w)`` int64.

        ``query`` and ``key`` are ``(B, C, h, w)``; positions are row-major over ``h × w`` (Eq. 5).
        """
        return relevance_search(query, key, patch=self.patch, block_size=self.block_size, window=self.window,
                                dtype=self.search_dtype, coarse=self.search_coarse, candidates=self.search_candidates)

    def value_features(self, key: torch.Tensor) -> torch.Tensor:
        """The value ``V`` ``(B, C, h, w)`` from the Rec feature ``(B, C, h, w)``: ``K↑↓`` (paper) or ``K`` (code).

        The resampling runs in float32 (CPU has no bf16 anti-aliased bicubic) and returns the dtype of ``key``.
        """
        if self.value == "refcode":
            return key
        up = F.interpolate(key.float(), scale_factor=self.scale, mode="bicubic", align_corners=False)
        down = F.interpolate(up, size=key.shape[-2:], mode="bicubic", align_corners=False, antialias=True)
        return down.to(key.dtype)

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """``F_TT = Q + Conv(Concat(C, Q)) ⊙ S`` ``(B, C, h, w)`` from ``Q`` (SR), ``K`` (Rec), each ``(B, C, h, w)``.

        Eq. 6; ``S`` is computed in float32 and cast to the dtype of ``Q``.
        """
        batch, _, height, width = query.shape
        soft, index = self.correspond(query, key)
        transferred = transfer(self.value_features(key), index, (height, width), patch=self.patch)
        soft = soft.to(query.dtype).view(batch, 1, height, width)
        return query + self.fuse(torch.cat([transferred, query], dim=1)) * soft


class _Branch(nn.Module):
    """A branch trunk: 5×5 head conv ``in_channels → channels`` and ``n_blocks`` EDSR ResBlocks (res_scale 0.1)."""

    def __init__(self, in_channels: int, channels: int, n_blocks: int) -> None:
        super().__init__()
        self.head = conv(in_channels, channels, kernel_size=5)
        self.blocks = nn.ModuleList(ResBlock(channels, res_scale=0.1) for _ in range(n_blocks))


@register("t2net")
class T2Net(nn.Module):
    """T2Net (paper 000, Fig. 1): SR branch + Rec branch coupled by task transformers.

    Per block ``i`` (Eqs. 2–4): ``F_Rec^i = H_Rec^i(F_Rec^{i-1})``, ``F_SR^i = H_SR^i(F_TT^{i-1})`` and
    ``F_TT^i = H_tt^i(Q = F_SR^i, K = F_Rec^i)``. SR output ``x' = conv(U↑(F_SR^N + F_SR^0))`` (sub-pixel
    upsampler); Rec output ``x'_LR = conv(F_Rec^N)``.

    Args:
        scale: SR factor ``s`` (power of 2 or 3).
        in_channels: 1 (zero-filled LR magnitude, the paper) or 2 (complex zero-filled image as real/imaginary).
        channels: feature channels (paper 64).
        n_blocks: ResBlocks per branch = number of task transformers ``N`` (paper 8).
        value: the task transformer's ``V``: ``"paper"`` (``F_Rec↑↓``) or ``"refcode"`` (``F_Rec``).
        use_rec_branch: ``False`` = ablation "w/o Rec" (Table 1): SR branch only, no Rec output, no transformer.
        use_task_transformer: ``False`` = ablation "w/o Htt" (Table 1): ``F_SR^i + F_Rec^i`` replaces ``H_tt``.
        search_window: local relevance search within ``±search_window`` LR pixels (approximate; ``None`` = exact).
        search_dtype: relevance correlation dtype, e.g. ``torch.bfloat16`` or ``"bfloat16"`` (YAML; approximate;
            ``None`` = input dtype). A name that is no torch dtype raises ``ValueError``.
        search_coarse: coarse-to-fine relevance search with ``search_coarse × search_coarse`` LR-pixel cells
            (approximate, ≥ 10× faster at 128² with 4; ``None`` = exact; ``ValueError`` in the search if below 1).
        search_candidates: key windows the coarse-to-fine search refines per query cell (default 8; more is slower
            and closer to the exact search; docs/performance.md measures 8, 16 and 32).
        block_size: keys per block of the relevance search (working memory only; exact for any value).

    Forward: ``batch.lr_input (B, 1, h, w)`` float32 → ``Prediction(image (B, 1, s·h, s·w),
    lr_image (B, 1, h, w) or None)``.
    """

    required_fields = ("lr_input",)

    def __init__(
        self,
        scale: int = 2,
        in_channels: int = 1,
        channels: int = 64,
        n_blocks: int = 8,
        value: ValueSource = "paper",
        use_rec_branch: bool = True,
        use_task_transformer: bool = True,
        search_window: int | None = None,
        search_dtype: torch.dtype | str | None = None,
        block_size: int = 512,
        search_coarse: int | None = None,
        search_candidates: int = 8,
    ) -> None:
        super().__init__()
        self.scale = scale
        self.in_channels = in_channels
        self.sr = _Branch(in_channels, channels, n_blocks)
        self.sr_tail = nn.Sequential(Upsampler(scale, channels), OutputConv(channels, 1))
        self.rec: _Branch | None = None
        self.rec_tail: nn.Conv2d | None = None
        self.transformers: nn.ModuleList | None = None
        if use_rec_branch:
            self.rec = _Branch(in_channels, channels, n_blocks)
            self.rec_tail = OutputConv(channels, 1)
            if use_task_transformer:
                self.transformers = nn.ModuleList(
                    TaskTransformer(channels, scale, value, 3, block_size, search_window, search_dtype, search_coarse,
                                    search_candidates)
                    for _ in range(n_blocks)
                )

    def forward(self, batch: Sample) -> Prediction:
        """SR image ``(B, 1, s·h, s·w)`` and Rec image ``(B, 1, h, w)`` (``None`` without the Rec branch)."""
        check_batch("t2net", self.required_fields, batch)
        x = network_input(batch, self.in_channels)
        grid = GridPadding.for_size(x.shape[-2:], self.scale)  # any LR parity on the truncation grid
        x = grid.pad_lr(x)
        shallow = self.sr.head(x)
        sr = shallow
        if self.rec is None or self.rec_tail is None:
            for block in self.sr.blocks:
                sr = block(sr)
            return Prediction(image=grid.crop_hr(self.sr_tail(sr + shallow)))
        rec = self.rec.head(x)
        for i, (sr_block, rec_block) in enumerate(zip(self.sr.blocks, self.rec.blocks, strict=True)):
            sr, rec = sr_block(sr), rec_block(rec)
            sr = sr + rec if self.transformers is None else self.transformers[i](sr, rec)
        return Prediction(image=grid.crop_hr(self.sr_tail(sr + shallow)), lr_image=grid.crop_lr(self.rec_tail(rec)))
