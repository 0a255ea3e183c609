"""FASR-Net: flexible-alignment reference-based super-resolution (paper 002, Liu et al., Sec. III; design/models.md).

A TTSR-style network (Yang et al., CVPR 2020). Three images enter (Sec. III-A): ``LR↑`` (the LR target
upsampled to the HR grid), ``Ref↓↑`` (the reference degraded by the SR scale and upsampled back, so it is
"domain-consistent" with ``LR↑``) and ``Ref``. A texture extractor (Sec. III-B, Eqs. 4–6) maps each to a
three-level pyramid, level ``i`` at ``HR / 2^i`` (VGG19 relu1_2, relu2_2, relu3_2 — the paper's "4×, 2×, 1×"
features): ``Q`` from ``LR↑``, ``K`` from ``Ref↓↑``, ``V`` from ``Ref``. The flexible alignment (Sec. III-C) finds
for every position of the **LR grid** the best-matching reference position and moves reference textures ``V``
(hard attention), weighted by their relevance (soft attention); the cross-hierarchical progressive fusion (CHPF,
Sec. III-D) merges them into the SR image.

Scale → pyramid (both 2× and 4×; the paper and its code are 4× only). The LR grid is level ``g = log2(scale)``
(4×: ``HR/4``, the relu3_2 level, as in TTSR; 2×: ``HR/2``). Level ``i`` has ``r = 2^(g-i)`` pixels per LR pixel:
4× → ``r = 4, 2, 1``; 2× → ``r = 2, 1, ½``. All searches run on the LR grid. Levels finer than it (``r ≥ 1``)
receive textures at their own resolution; a level coarser than it (the ``HR/4`` level at 2×) is matched and
transferred on the LR grid.

- **M-A** (Eqs. 14–16, 19): per level the cosine relevance of 3×3 feature patches ``q^i, k^i``. Eq. 15 brings the
  three relevance matrices to a common size and sums them; here the common size is the LR grid: a finer level's
  matrix is evaluated on the sub-grid of every ``r``-th query and key position (an exact strided sub-matrix of the
  paper's ``C^i``), a coarser level's is nearest-upsampled (the paper's ``U``). The sum of cosines is one inner
  product of the concatenated unit-norm patch descriptors, so a single blockwise
  :func:`~accelmri.models.blocks.correspondence.relevance_search` gives the argmax ``M_MA`` and ``S_MA = max Σ``
  without any (HW)×(HW) matrix. ``V^i`` is then transferred with patches ``3r``, stride ``r`` (TTSR's multi-scale
  transfer).
- **S-A** (Eqs. 7–13, 18): the LR-grid query ``Q^g`` and each key level ``K^i`` are "word-embedded" (unfold 3×3 +
  linear = a 3×3 conv) to ``embed_channels``; the LR-grid query is searched against the keys of every level, and
  ``V^i`` patches at the matched level-``i`` positions are folded onto the LR grid, then bilinearly enlarged to
  level ``i``'s resolution (a coarse query cell matched to a finer-scale reference structure receives that
  structure enlarged: the "different image scale" case of Fig. 1a).
- **Soft attention** (Eqs. 18–21): ``S^i = S_SA^i + S_MA``; each level's texture ``T^i = concat(F_MA^i, F_SA^i)``
  (Eq. 17) enters the fusion network as TTSR does: ``x ← x + conv(concat(x, T^i)) ⊙ S^i``.
- **CHPF** (Fig. 6): TTSR's main network with cross-scale feature integration. A head conv and ``n_blocks[0]``
  ResBlocks on the LR input, texture fusion at the LR grid; then per stage ``k = 1..g``: ×2 sub-pixel upsampling
  of the finest stream, texture fusion at the new level, exchange between all streams (each stream gets
  ``conv(concat(all streams resized to its size))`` added; bilinear up, area down) and ``n_blocks[k]`` ResBlocks
  per stream (paper size ``n_blocks = (16, 8, 4)``, 64 channels); the streams are resized to HR, concatenated
  and mapped to the image by conv–ReLU–conv. At 2× there are two stages (``n_blocks[:2]``).

Where this differs from the paper:
- Relevances are cosines (TTSR). The paper writes ``Softmax(⟨q, k⟩)`` (Eqs. 10, 14): softmax does not change an
  argmax, and ``max softmax`` over ≥10⁴ keys is ≈ 1/N_k, useless as a modulation; so ``S`` uses the max cosine
  (M-A: the max of the summed cosines, in [-3, 3]).
- M-A's common size is the LR grid, not the finest grid: at 320² the paper's finest-grid matrix has 10¹⁰ entries.
- S-A's query is the LR-grid feature (design/models.md: "the coarse LR query"); the paper's notation ``q^{4×}``
  would be relu1_2. Values are not embedded (``F_WE-v``, Eq. 9, is folded into the fusion conv): the raw
  reference features are transferred, as in M-A and TTSR.
- The output adds ``LR↑`` (global residual learning, as VDSR/EDSR); the paper does not say.
- Degradation (``reference_downsampling``). Default ``"kspace"``, the degradation our LR inputs have (k-space
  truncation, :func:`~accelmri.physics.degrade.lowres`): ``LR↑`` is the sinc interpolation of the LR magnitude
  (real part of :func:`~accelmri.models.baselines.interpolation.sinc_interpolate`, zero-padding of its k-space:
  the exact inverse of the truncation; bicubic is ≈ 2.5 dB worse on such data, and the residual base bounds
  what a small network can add) and ``Ref↓↑`` is the reference truncated and zero-padded back (its outer k-space
  band removed, real part), so query and key are degraded alike. Both are computed on the image's mirror
  extension (``[x, flip(x)]`` per axis, cropped back): training runs on patches (``SliceDataset(patch_size=…)``),
  whose FFT frame wraps one border onto the other; plain sinc interpolation of a 32² patch rings there and is
  8 dB below the whole slice's sinc image cut to the patch (26.2 vs 34.3 dB on digital-brain T2, 2×; mirrored:
  32.2 dB), a base the network would learn to correct only in training. On whole slices the mirror changes the
  base by 0.01 dB. ``"bicubic"`` is the paper's image-domain recipe: ``LR↑`` bicubic (on the truncation grid),
  ``Ref↓↑`` bicubic ↓ then ↑.
- The extractor sees the batch's normalised 1-channel images (repeated to RGB, ImageNet mean/std inside
  :class:`~accelmri.models.blocks.vgg.VGG19Features`); the reference code feeds 3-channel copies in [-1, 1].

Texture extractor: the paper initialises VGG19 from ImageNet and fine-tunes it (Sec. III-B, IV-B). ImageNet
weights cannot be downloaded here: pass ``vgg_weights=PATH`` (torchvision layout) for real runs; the random
initialisation used when it is ``None`` is the offline default for tests and smoke runs only (its M-A matches
land within ±1 px of the co-registered position far less often than a trained extractor's:
``benchmarks/fasrnet_matching.py``). Without VGG19 weights, use the trained substitute: ``extractor_weights=PATH``
loads a :class:`~accelmri.models.blocks.texture_extractor.TextureExtractor` pretrained for cross-contrast matching
(:func:`~accelmri.models.blocks.texture_extractor.pretrain_extractor` on digital-brain training subjects), which
is fine-tuned like VGG19. Any backbone can be plugged in (paper Table II tries ResNets): an ``nn.Module`` with an
``out_channels`` attribute (three ints, finest level first) whose ``forward(x, num_levels)`` takes ``(N, 1, H, W)``
images and returns a sequence or mapping of the first ``num_levels`` feature maps at ``HR``, ``HR/2``, ``HR/4``
(deeper levels that are not needed are not computed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from accelmri.models.base import GridPadding, Prediction, check_batch, network_input
from accelmri.models.baselines.interpolation import bicubic_upsample
from accelmri.models.blocks.common import OutputConv, ResBlock, Upsampler, conv
from accelmri.models.blocks.correspondence import parse_search_dtype, relevance_search, transfer
from accelmri.models.blocks.texture_extractor import load_extractor, mirrored_band_limit, mirrored_sinc_upsample
from accelmri.models.blocks.vgg import VGG19Features
from accelmri.models.registry import register

if TYPE_CHECKING:  # models read the batch contract by attribute; the import is for type checkers only
    from accelmri.data.sample import Sample

__all__ = ["FASRNet"]

_LEVELS = 3  # pyramid levels at HR, HR/2, HR/4


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(B, C, h, w)`` to ``size``: bilinear when enlarging, area average when shrinking."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if size[0] >= x.shape[-2]:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return F.interpolate(x, size=size, mode="area")


def _trunk(channels: int, n_blocks: int, res_scale: float) -> nn.Sequential:
    """``n_blocks`` EDSR ResBlocks and a conv (used with a long skip: ``x + trunk(x)``)."""
    return nn.Sequential(*[ResBlock(channels, res_scale) for _ in range(n_blocks)], conv(channels, channels))


@register("fasrnet")
class FASRNet(nn.Module):
    """FASR-Net (paper 002); see the module docstring for the architecture and the paper-vs-code choices.

    Args:
        scale: SR factor, 2 or 4.
        in_channels: LR input of the fusion network: 1 = magnitude, 2 = complex (:func:`network_input`); the
            texture extractor always sees magnitudes.
        channels: width of the fusion network (paper 64).
        n_blocks: ResBlocks per stream of the fusion stages, LR first (paper ``(16, 8, 4)``; 2× uses the first 2).
        res_scale: ResBlock residual scaling (TTSR: 1).
        embed_channels: S-A word-embedding width.
        use_sa: the Single-Multi half of the flexible alignment (ablation "w/o S-A", Table III).
        use_ma: the Multi-Multi half of the flexible alignment (ablation "w/o M-A", Table III).
        use_chpf: ``False`` = plain decoder: one stream, no cross-scale exchange (ablation "w/o CHPF").
        use_fa: ``False`` = plain cross-attention instead of FA: one search of 3×3 patches of the LR-grid level
            (TTSR; ablation "w/o FA"); ``use_sa``/``use_ma`` then do not apply.
        backbone: texture extractor (see module docstring); default VGG19 relu1_2/relu2_2/relu3_2, fine-tuned.
        vgg_weights: torchvision-layout VGG19 weights for the default backbone (``None`` = random, tests only).
        extractor_weights: a :func:`~accelmri.models.blocks.texture_extractor.save_extractor` file: the backbone
            is then the pretrained :class:`~accelmri.models.blocks.texture_extractor.TextureExtractor` (the trained
            substitute for ImageNet VGG19 when no VGG19 weights are available), fine-tuned like VGG19.
        reference_downsampling: the degradation behind ``LR↑`` (query and residual base) and ``Ref↓↑`` (key):
            ``"kspace"`` (default: sinc / k-space band removal, for k-space-truncated LR) or ``"bicubic"`` (paper).
        search_block_size: keys per block of the relevance search (memory ∝ block size only; the result is exact).
        search_window: optional local search (``±window`` key pixels; an approximation, never the default).
        search_dtype: optional correlation dtype, e.g. ``torch.bfloat16`` or ``"bfloat16"`` (never the default).
        search_coarse: optional coarse-to-fine search with ``search_coarse × search_coarse`` LR-grid cells (the
            ``coarse`` option of :func:`~accelmri.models.blocks.correspondence.relevance_search`; an
            approximation, never the default; a value below 1 raises ``ValueError`` in the search).
        search_candidates: key windows the coarse-to-fine search refines per query cell (its ``candidates``,
            default 8; more is slower and closer to the exact search).

    Raises:
        ValueError: bad scale, too few ``n_blocks``, FA with neither S-A nor M-A, a backbone without
            ``out_channels`` of three levels, a bad ``reference_downsampling`` or ``search_dtype``,
            ``extractor_weights`` together with ``backbone`` or ``vgg_weights``.
        FileNotFoundError: a ``vgg_weights`` or ``extractor_weights`` path without a file.
    """

    required_fields = ("lr_input", "reference")

    def __init__(
        self,
        scale: int = 4,
        in_channels: int = 1,
        channels: int = 64,
        n_blocks: Sequence[int] = (16, 8, 4),
        res_scale: float = 1.0,
        embed_channels: int = 64,
        use_sa: bool = True,
        use_ma: bool = True,
        use_chpf: bool = True,
        use_fa: bool = True,
        backbone: nn.Module | None = None,
        vgg_weights: str | Path | None = None,
        extractor_weights: str | Path | None = None,
        reference_downsampling: str = "kspace",
        search_block_size: int = 512,
        search_window: int | None = None,
        search_dtype: torch.dtype | str | None = None,
        search_coarse: int | None = None,
        search_candidates: int = 8,
    ) -> None:
        super().__init__()
        if scale not in (2, 4):
            raise ValueError(f"FASRNet supports scale 2 or 4, got {scale}")
        self.grid_level = scale.bit_length() - 1  # g: the LR grid is pyramid level g
        if len(n_blocks) < self.grid_level + 1:
            raise ValueError(f"n_blocks needs {self.grid_level + 1} entries at {scale}x, got {tuple(n_blocks)}")
        if use_fa and not (use_sa or use_ma):
            raise ValueError("use_fa=True needs use_sa or use_ma; use_fa=False selects plain cross-attention")
        if reference_downsampling not in ("kspace", "bicubic"):
            raise ValueError(f"reference_downsampling must be 'kspace' or 'bicubic', got {reference_downsampling!r}")
        self.scale, self.in_channels = scale, in_channels
        self.use_sa, self.use_ma = use_fa and use_sa, use_fa and use_ma
        self.use_chpf, self.use_fa = use_chpf, use_fa
        self.reference_downsampling = reference_downsampling
        self.search = {"block_size": search_block_size, "window": search_window,
                       "dtype": parse_search_dtype(search_dtype), "coarse": search_coarse,
                       "candidates": search_candidates}

        if extractor_weights is not None and (backbone is not None or vgg_weights is not None):
            raise ValueError("extractor_weights selects the pretrained TextureExtractor: no backbone or vgg_weights")
        if extractor_weights is not None:
            self.backbone: nn.Module = load_extractor(extractor_weights)
        elif backbone is not None:
            self.backbone = backbone
        else:
            self.backbone = VGG19Features(weights=vgg_weights, trainable=True)
        level_channels = tuple(getattr(self.backbone, "out_channels", ()))
        if len(level_channels) != _LEVELS:
            raise ValueError(f"the backbone needs an out_channels attribute of {_LEVELS} ints, got {level_channels}")
        self.level_channels = level_channels

        if self.use_sa:  # S-A word embeddings F_WE-q (Eq. 7) and F_WE-k per level (Eq. 8)
            self.sa_query = conv(level_channels[self.grid_level], embed_channels)
            self.sa_keys = nn.ModuleList([conv(c, embed_channels) for c in level_channels])
        textures_per_level = int(self.use_sa) + int(self.use_ma) if use_fa else 1
        self.fusion = nn.ModuleList([conv(channels + textures_per_level * c, channels) for c in level_channels])

        g = self.grid_level
        self.head = conv(in_channels, channels)
        self.sfe = _trunk(channels, n_blocks[0], res_scale)
        self.upsample = nn.ModuleList([Upsampler(2, channels) for _ in range(g)])
        streams = range(2, g + 2) if use_chpf else [1] * g  # streams alive in stages 1..g
        if use_chpf:  # cross-scale exchange: one conv per stream, input = all streams concatenated
            self.exchange = nn.ModuleList(
                [nn.ModuleList([conv(n * channels, channels) for _ in range(n)]) for n in streams]
            )
        self.trunks = nn.ModuleList(
            [nn.ModuleList([_trunk(channels, n_blocks[k], res_scale) for _ in range(n)])
             for k, n in enumerate(streams, start=1)]
        )
        tail_in = (g + 1 if use_chpf else 1) * channels
        self.tail = nn.Sequential(conv(tail_in, channels), nn.ReLU(inplace=True), OutputConv(channels, 1))

    # ----------------------------------------------------------------------------------------- inputs, features
    def _upsampled_lr(self, lr: torch.Tensor) -> torch.Tensor:
        """``LR↑`` ``(B, 1, s·h, s·w)`` float32 from the LR magnitude ``(B, 1, h, w)``: the residual base and the query.

        ``"kspace"``: :func:`~accelmri.models.blocks.texture_extractor.mirrored_sinc_upsample` (sinc interpolation
        of the mirror-extended image): on data made by k-space truncation it inverts the truncation (bicubic is
        ≈ 2.5 dB worse), and the mirror keeps a patch's borders from ringing (see the module docstring).
        ``"bicubic"``: the paper's bicubic, on the truncation grid (:func:`bicubic_upsample`).
        """
        if self.reference_downsampling == "kspace":
            return mirrored_sinc_upsample(lr, self.scale)
        return bicubic_upsample(lr, self.scale)

    def _degraded_reference(self, reference: torch.Tensor) -> torch.Tensor:
        """``Ref↓↑`` ``(B, 1, H, W)``, degraded like ``LR↑`` (see :meth:`_upsampled_lr`).

        ``"kspace"``: :func:`~accelmri.models.blocks.texture_extractor.mirrored_band_limit` (k-space truncation by
        the scale and zero-padding back, of the mirror-extended reference: its outer k-space band removed);
        ``"bicubic"``: bicubic ↓ (antialiased) then bicubic ↑ (paper, Sec. III-A).
        """
        if self.reference_downsampling == "kspace":
            return mirrored_band_limit(reference, self.scale)
        size = (reference.shape[-2] // self.scale, reference.shape[-1] // self.scale)
        low = F.interpolate(reference, size=size, mode="bicubic", align_corners=False, antialias=True)
        return F.interpolate(low, size=reference.shape[-2:], mode="bicubic", align_corners=False)

    def _pyramids(self, images: dict[str, tuple[torch.Tensor, int]]) -> dict[str, list[torch.Tensor]]:
        """Texture extractor (Eqs. 4–6): ``{name: (image (B, 1, H, W), depth)}`` → the first ``depth`` levels.

        Images that need the same depth go through the backbone as one batch. Level ``i`` is
        ``(B, level_channels[i], H / 2^i, W / 2^i)``.

        Raises:
            ValueError: if the backbone returns too few levels or levels of the wrong shape.
        """
        pyramids: dict[str, list[torch.Tensor]] = {}
        for depth in sorted({depth for _, depth in images.values()}):
            names = [name for name, (_, d) in images.items() if d == depth]
            stacked = torch.cat([images[name][0] for name in names])
            output = self.backbone(stacked, depth)
            levels = list(output.values() if isinstance(output, Mapping) else output)[:depth]
            height, width = stacked.shape[-2:]
            expected = [(len(stacked), c, height >> i, width >> i) for i, c in enumerate(self.level_channels[:depth])]
            if [tuple(level.shape) for level in levels] != expected:
                raise ValueError(
                    f"backbone returned levels {[tuple(level.shape) for level in levels]}, expected {expected}"
                )
            for j, name in enumerate(names):
                pyramids[name] = [level.chunk(len(names))[j] for level in levels]
        return pyramids

    # -------------------------------------------------------------------------------------- flexible alignment
    def _patch_descriptor(self, feature: torch.Tensor, level: int, grid: tuple[int, int]) -> torch.Tensor:
        """Unit-norm 3×3 patch vectors of pyramid ``level`` on the LR grid: ``(B, C·9, h, w)``.

        A finer level (``r = 2^(g-level) ≥ 1`` pixels per LR pixel) is sampled at every ``r``-th position (offset
        ``(r-1)//2``, the cell centre rounded down); a coarser one is nearest-upsampled (Eq. 15's ``U``).
        """
        batch = feature.shape[0]
        if level <= self.grid_level:
            ratio = 1 << (self.grid_level - level)
            offset = (ratio - 1) // 2
            padded = F.pad(feature, (1, 1, 1, 1))[..., offset:, offset:]
            return F.normalize(F.unfold(padded, 3, stride=ratio), dim=1).view(batch, -1, *grid)
        patches = F.normalize(F.unfold(feature, 3, padding=1), dim=1).view(batch, -1, *feature.shape[-2:])
        return F.interpolate(patches, size=grid, mode="nearest")

    def _transfer_level(
        self, value: torch.Tensor, index: torch.Tensor, level: int, grid: tuple[int, int]
    ) -> torch.Tensor:
        """Move ``V^level`` patches to the LR-grid matches ``index``: patches ``3r``, stride ``r`` (TTSR).

        Returns ``(B, C, H / 2^level, W / 2^level)`` for a level at least as fine as the LR grid, else ``(B, C, h, w)``
        (the coarse value is nearest-upsampled to the LR grid first).
        """
        if level <= self.grid_level:
            return transfer(value, index, grid, patch=3, scale=1 << (self.grid_level - level))
        return transfer(F.interpolate(value, size=grid, mode="nearest"), index, grid, patch=3)

    def _multi_multi(
        self, query: list[torch.Tensor], key: list[torch.Tensor], value: list[torch.Tensor], levels: Sequence[int],
        grid: tuple[int, int],
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """M-A (Eqs. 14–16, 19) over ``levels`` (all three; ``[g]`` alone = plain cross-attention, TTSR).

        Returns:
            The transferred textures ``F_MA^i`` for every pyramid level ``i`` (see :meth:`_transfer_level`) and
            ``S_MA (B, 1, h, w)`` = the maximum over keys of the summed cosine relevances.
        """
        q = torch.cat([self._patch_descriptor(query[i], i, grid) for i in levels], dim=1)
        k = torch.cat([self._patch_descriptor(key[i], i, grid) for i in levels], dim=1)
        # Each level's part has unit norm, so the search's cosine of the concatenation is the mean of the levels'.
        soft, index = relevance_search(q, k, patch=1, **self.search)
        textures = [self._transfer_level(value[i], index, i, grid) for i in range(_LEVELS)]
        return textures, (soft * len(levels)).view(-1, 1, *grid)

    def _single_multi(
        self, query: torch.Tensor, key: list[torch.Tensor], value: list[torch.Tensor], grid: tuple[int, int]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """S-A (Eqs. 7–13, 18): the embedded LR-grid query against the embedded keys of every level.

        Returns:
            Textures ``F_SA^i`` (level ``i`` resolution, or the LR grid for a coarser level) and soft maps
            ``S_SA^i (B, 1, h, w)``.
        """
        q = self.sa_query(query)
        textures, softs = [], []
        for i, embed in enumerate(self.sa_keys):
            soft, index = relevance_search(q, embed(key[i]), patch=1, **self.search)
            texture = transfer(value[i], index, grid, patch=3)  # (B, C_i, h, w): level-i patches on the LR grid
            textures.append(_resize(texture, value[i].shape[-2:]) if i < self.grid_level else texture)
            softs.append(soft.view(-1, 1, *grid))
        return textures, softs

    def _align(
        self, pyramids: dict[str, list[torch.Tensor]], grid: tuple[int, int]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Textures ``T^i`` (Eq. 17) and soft attention ``S^i (B, 1, h, w)`` (Eq. 20) for every level ``i``."""
        q, k, v = pyramids["query"], pyramids["key"], pyramids["value"]
        if not self.use_fa:
            textures, soft = self._multi_multi(q, k, v, [self.grid_level], grid)
            return textures, [soft] * _LEVELS
        parts: list[list[torch.Tensor]] = [[] for _ in range(_LEVELS)]
        soft_parts: list[list[torch.Tensor]] = [[] for _ in range(_LEVELS)]
        if self.use_ma:
            ma_textures, ma_soft = self._multi_multi(q, k, v, range(_LEVELS), grid)
            for i in range(_LEVELS):
                parts[i].append(ma_textures[i])
                soft_parts[i].append(ma_soft)
        if self.use_sa:
            sa_textures, sa_softs = self._single_multi(q[self.grid_level], k, v, grid)
            for i in range(_LEVELS):
                parts[i].append(sa_textures[i])
                soft_parts[i].append(sa_softs[i])
        softs = [torch.stack(s).sum(dim=0) for s in soft_parts]
        return [torch.cat(p, dim=1) for p in parts], softs

    # ------------------------------------------------------------------------------------------------ CHPF
    def _fuse(self, x: torch.Tensor, level: int, texture: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        """Soft-attention-modulated texture fusion (Eq. 21, TTSR): ``x + conv(concat(x, T)) ⊙ S``."""
        return x + self.fusion[level](torch.cat([x, texture], dim=1)) * _resize(soft, x.shape[-2:])

    def forward(self, batch: Sample) -> Prediction:
        """Super-resolve ``batch.lr_input (B, 1, h, w)`` guided by ``batch.reference (B, 1, H, W)``.

        Any LR size works: the network runs on the LR image padded to sides that are even and make ``H``, ``W``
        multiples of 4 (the pyramid's ``HR/4`` level), on the truncation grid (:class:`GridPadding`), and the
        outputs are cropped back.

        Returns:
            ``Prediction(image (B, 1, H, W), extras={"soft_attention_level{i}": S^i (B, 1, h, w)})``.

        Raises:
            ValueError: missing fields, or a reference that is not ``s×`` the LR size (``H = s·h``, ``W = s·w``).
        """
        check_batch("fasrnet", self.required_fields, batch)
        lr, reference = batch.lr_input, batch.reference
        assert reference is not None  # check_batch guarantees it
        if tuple(reference.shape[-2:]) != (self.scale * lr.shape[-2], self.scale * lr.shape[-1]):
            raise ValueError(
                f"fasrnet at {self.scale}x needs reference = {self.scale}× LR; got LR {tuple(lr.shape[-2:])}, "
                f"reference {tuple(reference.shape[-2:])}"
            )
        padding = GridPadding.for_size(lr.shape[-2:], self.scale, multiple=4 // math.gcd(4, self.scale))
        image, softs = self._restore(
            padding.pad_lr(lr), padding.pad_lr(network_input(batch, self.in_channels)), padding.pad_hr(reference)
        )
        extras = {f"soft_attention_level{i}": padding.crop_lr(soft) for i, soft in enumerate(softs)}
        return Prediction(image=padding.crop_hr(image), extras=extras)

    def _restore(
        self, lr: torch.Tensor, network_in: torch.Tensor, reference: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The network on an LR magnitude ``(B, 1, h, w)`` with even sides, its network input ``(B, 1 or 2, h, w)``
        and the reference ``(B, 1, s·h, s·w)`` (sides multiples of 4): ``(image (B, 1, s·h, s·w), [S^i (B, 1, h,
        w)])``."""
        height, width = reference.shape[-2:]
        grid = (lr.shape[-2], lr.shape[-1])
        lr_up = self._upsampled_lr(lr)
        g = self.grid_level
        query_depth = _LEVELS if self.use_ma else g + 1  # S-A and plain CA query only the LR-grid level
        key_depth = _LEVELS if self.use_fa else g + 1
        pyramids = self._pyramids({
            "query": (lr_up, query_depth),
            "key": (self._degraded_reference(reference), key_depth),
            "value": (reference, _LEVELS),
        })
        textures, softs = self._align(pyramids, grid)

        x = self.head(network_in)
        x = x + self.sfe(x)
        for level in range(_LEVELS - 1, g - 1, -1):  # levels at or below the LR grid's resolution: coarse first
            x = self._fuse(x, level, textures[level], softs[level])
        streams = [x]
        for stage in range(1, g + 1):
            level = g - stage
            new = self._fuse(self.upsample[stage - 1](streams[-1]), level, textures[level], softs[level])
            if self.use_chpf:  # cross-scale feature integration
                streams.append(new)
                streams = [
                    s + exchange(torch.cat([_resize(t, s.shape[-2:]) for t in streams], dim=1))
                    for s, exchange in zip(streams, self.exchange[stage - 1], strict=True)
                ]
            else:
                streams = [new]
            streams = [s + trunk(s) for s, trunk in zip(streams, self.trunks[stage - 1], strict=True)]
        image = self.tail(torch.cat([_resize(s, (height, width)) for s in streams], dim=1)) + lr_up
        return image, softs
