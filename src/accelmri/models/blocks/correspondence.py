"""Patch correspondence search and texture transfer (hard + soft attention), computed in blocks.

The relevance of query patch ``i`` to key patch ``j`` is the cosine similarity of their 3×3 (``patch``)
neighbourhoods over all channels, ``r_ij = ⟨q_i/‖q_i‖, k_j/‖k_j‖⟩``; hard attention keeps
``t_i = argmax_j r_ij`` and soft attention ``s_i = max_j r_ij`` (TTSR, Yang et al., CVPR 2020, Eqs. 2–5; T2Net,
paper 000, Sec. 2.2 "task transformer"; FASR-Net, paper 002, Sec. II). The dense relevance matrix is
``N_k × N_q``: at 128² that is 1 GB per call in fp32. :func:`relevance_search` visits the keys in blocks of
``block_size`` and keeps a running max/argmax, so memory grows linearly with the pixel count and the result
is identical to the dense formula (ties resolved to the lowest key index, as ``torch.max`` does on CPU).

Optional speed knobs (never the default): ``window`` restricts each query to keys within a square
neighbourhood of the same (scaled) position; ``dtype=torch.bfloat16`` runs the correlation in bf16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["relevance_search", "transfer", "unfold_patches"]


def unfold_patches(x: torch.Tensor, patch: int = 3) -> torch.Tensor:
    """``(B, C, H, W)`` → L2-normalised patches ``(B, C·patch², H·W)`` (zero padding at the border)."""
    patches = F.unfold(x, kernel_size=patch, padding=patch // 2)
    return F.normalize(patches, dim=1)


def relevance_search(
    query: torch.Tensor,
    key: torch.Tensor,
    patch: int = 3,
    block_size: int = 4096,
    window: int | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Max and argmax of the patch relevance of every query position over all key positions.

    Args:
        query: ``(B, C, Hq, Wq)`` features.
        key: ``(B, C, Hk, Wk)`` features.
        patch: patch side (odd).
        block_size: keys per block (memory ``∝ block_size · Hq·Wq``).
        window: if given, only keys within ``±window`` key pixels of the query's position mapped to the key
            grid are searched (an approximation; ``None`` = exact global search).
        dtype: correlation dtype (e.g. ``torch.bfloat16``); ``None`` keeps the input dtype.

    Returns:
        ``(soft, index)``: ``soft (B, Hq·Wq)`` the maximum relevance, ``index (B, Hq·Wq)`` int64 the key position
        (row-major over ``Hk × Wk``) attaining it.

    Raises:
        ValueError: on channel mismatch, an even patch or a non-positive block size.
    """
    if query.shape[:2] != key.shape[:2]:
        raise ValueError(f"query {tuple(query.shape)} and key {tuple(key.shape)} differ in batch or channels")
    if patch % 2 == 0 or block_size < 1:
        raise ValueError(f"patch must be odd and block_size positive, got {patch}, {block_size}")
    q = unfold_patches(query, patch)  # (B, D, Nq)
    k = unfold_patches(key, patch).transpose(1, 2)  # (B, Nk, D)
    if dtype is not None:
        q, k = q.to(dtype), k.to(dtype)
    if window is not None and query.shape[-2:] == key.shape[-2:] and patch == 3:
        return _local_search(query, key, window)
    if window is not None:
        return _windowed_search(q, k.transpose(1, 2), query.shape[-2:], key.shape[-2:], window)
    batch, num_q, num_k = q.shape[0], q.shape[2], k.shape[1]
    best = torch.full((batch, num_q), -torch.inf, device=query.device, dtype=torch.float32)
    index = torch.zeros((batch, num_q), device=query.device, dtype=torch.long)
    for start in range(0, num_k, block_size):
        scores = torch.bmm(k[:, start : start + block_size], q).float()  # (B, block, Nq)
        value, arg = scores.max(dim=1)
        better = value > best  # strict: an earlier block keeps ties, as the dense argmax does
        best = torch.where(better, value, best)
        index = torch.where(better, arg + start, index)
    return best, index


def _box3(x: torch.Tensor) -> torch.Tensor:
    """3×3 box sum with zero padding: ``(B, H, W) → (B, H, W)``."""
    return F.avg_pool2d(x[:, None], 3, stride=1, padding=1, count_include_pad=True)[:, 0] * 9


def _local_search(query: torch.Tensor, key: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Local search on equal grids without forming patch descriptors (3×3 patches).

    For each displacement ``d`` the patch correlation is a 3×3 box sum of the channel dot product
    ``Σ_c q(x)·k(x + d)``, divided by the two patch norms — the same quantity as :func:`unfold_patches`
    descriptors give, at ``C`` instead of ``9·C`` multiply-adds per position and displacement.
    """
    batch, _, height, width = query.shape
    eps = 1e-12  # F.normalize's floor on the norm
    q_norm = _box3((query.float() ** 2).sum(1)).sqrt().clamp_min(eps)
    k_norm = F.pad(_box3((key.float() ** 2).sum(1)).sqrt().clamp_min(eps), (window,) * 4, value=1.0)
    padded = F.pad(key, (window,) * 4)
    rows = torch.arange(height, device=query.device)[:, None]
    cols = torch.arange(width, device=query.device)[None, :]
    best = torch.full((batch, height, width), -torch.inf, device=query.device)
    index = torch.zeros((batch, height, width), dtype=torch.long, device=query.device)
    for dy in range(-window, window + 1):
        for dx in range(-window, window + 1):
            ys, xs = slice(window + dy, window + dy + height), slice(window + dx, window + dx + width)
            dot = _box3((query * padded[:, :, ys, xs]).sum(1).float())
            scores = dot / (q_norm * k_norm[:, ys, xs])
            inside = (rows + dy >= 0) & (rows + dy < height) & (cols + dx >= 0) & (cols + dx < width)
            scores = scores.masked_fill(~inside, -torch.inf)
            better = scores > best
            best = torch.where(better, scores, best)
            index = torch.where(better, (rows + dy) * width + (cols + dx), index)
    return best.flatten(1), index.flatten(1)


def _windowed_search(
    q: torch.Tensor, k: torch.Tensor, query_size: torch.Size, key_size: torch.Size, window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Local search: each query only visits the ``(2·window + 1)²`` keys around its position on the key grid.

    ``q (B, D, Nq)`` and ``k (B, D, Nk)`` are normalised patch descriptors. Cost ``(2w+1)²·D·Nq`` and memory
    ``O(D·Nq)``, independent of ``Nk``.
    """
    (hq, wq), (hk, wk) = query_size, key_size
    device = q.device
    centre_y = (torch.arange(hq, device=device) * hk // hq).repeat_interleave(wq)
    centre_x = (torch.arange(wq, device=device) * wk // wq).repeat(hq)
    best = torch.full((q.shape[0], q.shape[2]), -torch.inf, device=device, dtype=torch.float32)
    index = torch.zeros((q.shape[0], q.shape[2]), device=device, dtype=torch.long)
    for dy in range(-window, window + 1):
        for dx in range(-window, window + 1):
            ky, kx = centre_y + dy, centre_x + dx
            inside = (ky >= 0) & (ky < hk) & (kx >= 0) & (kx < wk)
            flat = (ky.clamp(0, hk - 1) * wk + kx.clamp(0, wk - 1))
            scores = (q * k[:, :, flat]).sum(dim=1).float().masked_fill(~inside, -torch.inf)
            better = scores > best
            best = torch.where(better, scores, best)
            index = torch.where(better, flat, index)
    return best, index


def transfer(
    value: torch.Tensor, index: torch.Tensor, query_size: tuple[int, int], patch: int = 3, scale: int = 1
) -> torch.Tensor:
    """Hard-attention transfer: fold the value patches at ``index`` onto the query grid (overlaps averaged).

    ``value`` may live on a finer grid than the key by an integer factor ``s`` (TTSR's multi-scale transfer):
    then patches of side ``patch·s`` with stride ``s`` are moved and the output is ``s×`` the query size.

    Args:
        value: ``(B, C, s·Hk, s·Wk)`` features aligned with the key grid ``Hk × Wk``.
        index: ``(B, Hq·Wq)`` key positions from :func:`relevance_search`.
        query_size: ``(Hq, Wq)``.
        patch: patch side used in the search.
        scale: ``s``, the factor between the value grid and the key grid.

    Returns:
        ``(B, C, s·Hq, s·Wq)`` transferred features.

    Raises:
        ValueError: if ``index`` does not cover ``Hq·Wq`` positions.
    """
    hq, wq = query_size
    if index.shape[-1] != hq * wq:
        raise ValueError(f"index covers {index.shape[-1]} positions, the query grid {hq}×{wq} has {hq * wq}")
    kernel = patch * scale
    unfolded = F.unfold(value, kernel_size=kernel, padding=scale * (patch // 2), stride=scale)  # (B, C·k², Nk)
    gathered = torch.gather(unfolded, 2, index[:, None, :].expand(-1, unfolded.shape[1], -1))
    size = (scale * hq, scale * wq)
    folded = F.fold(gathered, size, kernel_size=kernel, padding=scale * (patch // 2), stride=scale)
    ones = torch.ones((1, 1, *size), device=value.device, dtype=value.dtype)
    counts = F.fold(
        F.unfold(ones, kernel_size=kernel, padding=scale * (patch // 2), stride=scale), size,
        kernel_size=kernel, padding=scale * (patch // 2), stride=scale,
    )
    return folded / counts

