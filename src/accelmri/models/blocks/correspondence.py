"""Patch correspondence search and texture transfer (hard + soft attention), computed in blocks.

The relevance of query patch ``i`` to key patch ``j`` is the cosine similarity of their 3×3 (``patch``)
neighbourhoods over all channels, ``r_ij = ⟨q_i/‖q_i‖, k_j/‖k_j‖⟩``; hard attention keeps
``t_i = argmax_j r_ij`` and soft attention ``s_i = max_j r_ij`` (TTSR, Yang et al., CVPR 2020, Eqs. 2–5; T2Net,
paper 000, Sec. 2.2 "task transformer"; FASR-Net, paper 002, Sec. II). The dense relevance matrix is
``N_k × N_q``: at 128² that is 1 GB per call in fp32. :func:`relevance_search` visits blocks of queries × keys,
building their descriptors from the feature maps on the fly, and keeps a running max/argmax: the working memory
is a few MB at any image size and the result is identical to the dense formula (ties resolved to the lowest key
index, as ``torch.max`` does on CPU). :func:`transfer` moves patches with one gather per patch offset instead of
unfolding the value map (``9·C·N`` floats) and folding it back.

Optional speed knobs (never the default): ``window`` restricts each query to keys within a square
neighbourhood of the same (scaled) position; ``coarse`` searches globally on ``coarse × coarse``-pooled
descriptors and refines exactly inside the best coarse key windows (:func:`relevance_search`);
``dtype=torch.bfloat16`` runs the correlation in bf16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["parse_search_dtype", "relevance_search", "transfer", "unfold_patches"]


def parse_search_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A model's ``search_dtype`` option as a ``torch.dtype``: ``torch.bfloat16`` or its name ``"bfloat16"``.

    Names let YAML configs set the option. ``None`` stays ``None`` (the input's dtype, exact).

    Raises:
        ValueError: ``dtype`` names no torch dtype.
    """
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"search_dtype: {dtype!r} is not a torch dtype")
    return value


def unfold_patches(x: torch.Tensor, patch: int = 3) -> torch.Tensor:
    """``(B, C, H, W)`` → L2-normalised patches ``(B, C·patch², H·W)`` (zero padding at the border)."""
    patches = F.unfold(x, kernel_size=patch, padding=patch // 2)
    return F.normalize(patches, dim=1)


def _patch_norms(x: torch.Tensor, patch: int) -> torch.Tensor:
    """``(B, C, H, W)`` → ``(B, H·W)`` float32 norms of the zero-padded ``patch × patch`` descriptors.

    Floored at ``1e-12`` like :func:`torch.nn.functional.normalize`.
    """
    squares = (x.float() ** 2).sum(1, keepdim=True)
    if patch > 1:
        squares = F.avg_pool2d(squares, patch, stride=1, padding=patch // 2, count_include_pad=True) * patch**2
    return squares.sqrt().clamp_min(1e-12).flatten(1)


def _band_descriptors(
    padded: torch.Tensor, rows: tuple[int, int], width: int, patch: int, norms: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """Normalised descriptors ``(B, C·patch², n)`` of image rows ``[r0, r1)`` (``n = (r1 − r0)·width``).

    ``padded`` is the feature map zero-padded by ``patch // 2`` on every side; ``norms`` from :func:`_patch_norms`.
    """
    r0, r1 = rows
    band = padded[:, :, r0 : r1 + patch - 1]
    descriptors = F.unfold(band, patch) if patch > 1 else band.flatten(2)
    return (descriptors / norms[:, None, r0 * width : r1 * width].to(descriptors.dtype)).to(dtype)


@torch.compiler.disable  # oneDNN calls Dynamo cannot trace (graph breaks): compiled models run the search eagerly
def relevance_search(
    query: torch.Tensor,
    key: torch.Tensor,
    patch: int = 3,
    block_size: int = 512,
    window: int | None = None,
    dtype: torch.dtype | None = None,
    query_block: int = 4096,
    coarse: int | None = None,
    candidates: int = 8,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Max and argmax of the patch relevance of every query position over all key positions.

    The exact search visits ``query_block`` queries × ``block_size`` keys at a time (whole image rows of each),
    building their normalised descriptors from the feature maps on the fly: one GEMM per pair of blocks and a
    running max/argmax per query. Memory is ``O((block_size + query_block)·C·patch² + block_size·query_block)``,
    independent of the image size beyond the features themselves; the result equals the dense formula for any
    block sizes (ties to the lowest key index, as ``torch.max`` on the dense matrix).

    Args:
        query: ``(B, C, Hq, Wq)`` features.
        key: ``(B, C, Hk, Wk)`` features.
        patch: patch side (odd).
        block_size: keys per block (rounded down to whole key rows, at least one row).
        window: if given, only keys within ``±window`` key pixels of the query's position mapped to the key
            grid are searched (an approximation; ``None`` = exact global search).
        dtype: correlation dtype (e.g. ``torch.bfloat16``); ``None`` keeps the input dtype.
        query_block: queries per block (rounded down to whole query rows, at least one row).
        coarse: if given, a coarse-to-fine search (an approximation; ``None`` = exact global search). The
            normalised descriptors are summed over ``coarse × coarse`` query cells (tiling the query grid) and
            key windows (stride ``max(1, coarse // 2)``: half-overlapping) and renormalised; every query cell keeps its
            ``candidates`` most relevant key windows (a global search, same cosine); then each query gets the
            exact ``r_ij`` (the exact search's descriptors and dtype) of the fine keys inside its cell's
            candidate windows only, and their max/argmax. The returned ``soft`` is therefore an exact ``r_ij``
            (at most the global max) and the result equals the exact one when the best key lies in a candidate
            window. Cost ``≈ 4·N_q·N_k·D/coarse⁴ + N_q·candidates·coarse²·D`` multiply-adds instead of
            ``N_q·N_k·D``; memory ``O((N_q + N_k)·D)`` (the descriptor maps). ``coarse=4, candidates=8`` is
            ≥ 10× faster than the exact search at 128² (``benchmarks/coarse_search.py``, docs/performance.md).
        candidates: key windows refined per query cell (only with ``coarse``; at least the number of key windows,
            ``⌈Hk / s⌉·⌈Wk / s⌉`` with ``s = max(1, coarse // 2)``, makes the search exhaustive: the exact result).

    Returns:
        ``(soft, index)``: ``soft (B, Hq·Wq)`` float32 the maximum relevance, ``index (B, Hq·Wq)`` int64 the key
        position (row-major over ``Hk × Wk``) attaining it.

    Raises:
        ValueError: on channel mismatch, an even patch, a non-positive block size, ``coarse`` or ``candidates``
            below 1, or ``coarse`` together with ``window``.
    """
    if query.shape[:2] != key.shape[:2]:
        raise ValueError(f"query {tuple(query.shape)} and key {tuple(key.shape)} differ in batch or channels")
    if patch % 2 == 0 or block_size < 1 or query_block < 1:
        raise ValueError(f"patch must be odd and block sizes positive, got {patch}, {block_size}, {query_block}")
    if coarse is not None and (coarse < 1 or candidates < 1 or window is not None):
        raise ValueError(f"coarse and candidates must be ≥ 1 and coarse excludes window, got coarse={coarse}, "
                         f"candidates={candidates}, window={window}")
    with torch.no_grad():  # the argmax has no gradient; max_j r_ij is re-evaluated at j = t_i below
        if coarse is None:
            soft, index = _search(query, key, patch, block_size, window, dtype, query_block)
        else:
            soft, index = _coarse_search(query, key, patch, coarse, candidates, dtype, block_size * query_block)
    if torch.is_grad_enabled() and (query.requires_grad or key.requires_grad):
        soft = _relevance_at(query, key, index, patch)
    return soft, index


def _relevance_at(query: torch.Tensor, key: torch.Tensor, index: torch.Tensor, patch: int) -> torch.Tensor:
    """``r_{i, t_i}`` ``(B, Nq)`` float32, differentiable: the soft attention at the matched keys.

    The search itself runs without autograd: tracking its running max would keep every block's relevance
    scores (the dense ``N_k × N_q`` matrix) for the backward pass. The gradient of ``max_j r_ij`` is the
    gradient of ``r_ij`` at the argmax, so re-evaluating that one relevance per query gives the same gradient
    in ``O(C·patch²·N_q)`` memory.
    """
    q = unfold_patches(query, patch)  # (B, D, Nq)
    k = unfold_patches(key, patch)  # (B, D, Nk)
    matched = torch.gather(k, 2, index[:, None].expand(-1, k.shape[1], -1))
    return (q * matched).sum(1).float()


def _search(
    query: torch.Tensor,
    key: torch.Tensor,
    patch: int,
    block_size: int,
    window: int | None,
    dtype: torch.dtype | None,
    query_block: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`relevance_search` without autograd (same arguments and returns)."""
    if window is not None and query.shape[-2:] == key.shape[-2:] and patch == 3:
        return _local_search(query, key, window)
    dtype = dtype or query.dtype
    if window is not None:
        q = unfold_patches(query, patch).to(dtype)
        k = unfold_patches(key, patch).to(dtype)
        return _windowed_search(q, k, query.shape[-2:], key.shape[-2:], window)
    (hq, wq), (hk, wk) = query.shape[-2:], key.shape[-2:]
    pad = (patch // 2,) * 4
    query_padded, key_padded = F.pad(query, pad), F.pad(key, pad)
    query_norms, key_norms = _patch_norms(query, patch), _patch_norms(key, patch)
    key_rows, query_rows = max(1, block_size // wk), max(1, query_block // wq)
    soft, index = [], []
    for q0 in range(0, hq, query_rows):
        rows = (q0, min(hq, q0 + query_rows))
        q = _band_descriptors(query_padded, rows, wq, patch, query_norms, dtype).transpose(1, 2)  # (B, n, D)
        best = torch.full(q.shape[:2], -torch.inf, device=query.device, dtype=torch.float32)
        best_index = torch.zeros(q.shape[:2], device=query.device, dtype=torch.long)
        prepared = _prepare_queries(q)
        for k0 in range(0, hk, key_rows):
            k = _band_descriptors(key_padded, (k0, min(hk, k0 + key_rows)), wk, patch, key_norms, dtype)
            value, arg = _scores(prepared, k).max(dim=2)  # (B, n): max over this block's keys
            value = value.float()
            better = value > best  # strict: an earlier block keeps ties, as the dense argmax does
            best = torch.where(better, value, best)
            best_index = torch.where(better, arg + k0 * wk, best_index)
        soft.append(best)
        index.append(best_index)
    return torch.cat(soft, dim=1), torch.cat(index, dim=1)


def _pixel_major(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` → a fresh contiguous ``(B, H, W, C)`` copy.

    One 2-D transpose per batch item: ``copy_`` has a cache-blocked kernel for exactly that case, ~3× faster than
    ``permute(0, 2, 3, 1).contiguous()`` on the ~1,000-channel descriptor maps of FASR-Net's M-A.
    """
    batch, channels, height, width = x.shape
    out = x.new_empty(batch, height * width, channels)
    for b in range(batch):
        out[b].copy_(x[b].reshape(channels, height * width).t())
    return out.view(batch, height, width, channels)


def _descriptor_cells(x: torch.Tensor, patch: int, cell: int, dtype: torch.dtype) -> torch.Tensor:
    """Normalised descriptors of ``x (B, C, H, W)`` grouped by ``cell × cell`` cells: ``(B, N_cells, cell², D)``.

    Each descriptor is the exact search's (:func:`_band_descriptors`: the zero-padded patch divided by its norm,
    then cast to ``dtype``), ordered ``(patch row, patch column, channel)`` instead of ``F.unfold``'s channel-major
    order (a permutation of the dimensions: only the summation order of a dot product changes); the norms are
    summed pixel-major here (equal to :func:`_patch_norms`' to float rounding). Built from one pixel-major copy of
    ``x`` (:func:`_pixel_major`) and one copy of contiguous channel runs into the cell layout. Cells are row-major
    over the ``⌈H/cell⌉ × ⌈W/cell⌉`` cell grid, pixels row-major inside a cell; pixels past the image border (when
    ``cell`` does not divide ``H`` or ``W``) get zero descriptors.
    """
    batch, channels, height, width = x.shape
    rows, cols = -(-height // cell), -(-width // cell)
    pixels = _pixel_major(x)  # (B, H, W, C)
    if (rows * cell, cols * cell) != (height, width):  # zeros, as the exact search's padding
        pixels = F.pad(pixels, (0, 0, 0, cols * cell - width, 0, rows * cell - height))
    values = pixels.float()
    squares = torch.einsum("bhwc,bhwc->bhw", values, values)  # (B, H', W'); 7× faster than .square().sum(3)
    if patch > 1:
        squares = F.avg_pool2d(squares[:, None], patch, stride=1, padding=patch // 2, count_include_pad=True)[:, 0]
        squares = squares * patch**2
    norms = squares.sqrt_().clamp_min_(1e-12).view(batch, rows, cell, cols, cell).transpose(2, 3)
    if patch > 1:
        padded = F.pad(pixels, (0, 0) + (patch // 2,) * 4)  # (B, H' + p − 1, W' + p − 1, C)
        pixels = padded.unfold(1, patch, 1).unfold(2, patch, 1).permute(0, 1, 2, 4, 5, 3)  # (B, H', W', p, p, C)
    cells = pixels.unflatten(1, (rows, cell)).unflatten(3, (cols, cell)).transpose(2, 3)
    cells = cells.reshape(batch, rows * cols, cell * cell, channels * patch * patch)  # the one copy (a view if
    # cell = patch = 1: ``pixels`` is a fresh tensor either way, so dividing it in place is safe)
    return cells.div_(norms.reshape(batch, rows * cols, cell * cell, 1).to(x.dtype)).to(dtype)


def _window_positions(height: int, width: int, side: int, device: torch.device) -> torch.Tensor:
    """Key windows of the coarse search: ``side × side`` pixels at stride ``max(1, side // 2)`` (half-overlapping).

    Window ``(a, b)`` covers rows ``a·stride − pad … a·stride − pad + side − 1`` (columns alike) with
    ``pad = (side − stride) // 2``, for ``a < ⌈height / stride⌉``: together they cover every pixel.

    Returns:
        The row-major pixel index ``(N_windows, side²)`` int64 of every window pixel (``-1`` off the image;
        windows row-major over their grid, pixels row-major inside a window).
    """
    stride = max(1, side // 2)
    pad = (side - stride) // 2
    rows, cols = -(-height // stride), -(-width // stride)
    offsets = torch.arange(side, device=device)
    y = (torch.arange(rows, device=device) * stride - pad)[:, None, None, None] + offsets[None, None, :, None]
    x = (torch.arange(cols, device=device) * stride - pad)[None, :, None, None] + offsets[None, None, None, :]
    positions = (y * width + x).masked_fill((y < 0) | (y >= height) | (x < 0) | (x >= width), -1)
    return positions.reshape(rows * cols, side * side)


def _window_sums(pixels: torch.Tensor, side: int) -> torch.Tensor:
    """Sums of ``pixels (B, H, W, D)`` over the windows of :func:`_window_positions`: ``(B, D, N_windows)`` float,
    each up to a positive factor (the pooling's divisor; the coarse search normalises them).

    Average pooling of the channels-last view (no copy of the map), zero padding ``pad`` on every side inside the
    pooling; a last window reaching further past the grid gets the rest as real zeros.
    """
    height, width = pixels.shape[1:3]
    stride = max(1, side // 2)
    pad = (side - stride) // 2
    rows, cols = -(-height // stride), -(-width // stride)
    grid = pixels.permute(0, 3, 1, 2)  # (B, D, H, W), channels-last strides
    beyond = ((rows - 1) * stride + side - height - 2 * pad, (cols - 1) * stride + side - width - 2 * pad)
    if max(beyond) > 0:
        grid = F.pad(grid, (0, max(beyond[1], 0), 0, max(beyond[0], 0)))
    sums = F.avg_pool2d(grid, side, stride, padding=pad, ceil_mode=True, count_include_pad=True)
    return sums[..., :rows, :cols].flatten(2)


def _coarse_search(
    query: torch.Tensor, key: torch.Tensor, patch: int, cell: int, candidates: int, dtype: torch.dtype | None,
    block_elements: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coarse-to-fine search (``coarse`` of :func:`relevance_search`; returns as there), without autograd.

    Query cells tile the query grid (``cell × cell``); key windows of the same side overlap by half
    (:func:`_window_positions`), so that every key lies near the centre of some window, whose summed descriptor
    then resembles it more than a cell's whose border it is on. ``block_elements`` bounds the coarse relevance
    scores and the gathered fine key descriptors held at once.
    """
    dtype = dtype or query.dtype
    (hq, wq), (hk, wk) = query.shape[-2:], key.shape[-2:]
    q_cells = _descriptor_cells(query, patch, cell, dtype)  # (B, Mq, c², D)
    k_map = _descriptor_cells(key, patch, 1, dtype)[:, :, 0]  # (B, Nk, D) pixel-major
    batch, n_query_cells, per_cell, depth = q_cells.shape
    positions = _window_positions(hk, wk, cell, key.device)  # (Mk, c²)
    # Global search over windows: the top-k key windows of every query cell by the cosine of summed descriptors.
    k_coarse = F.normalize(_window_sums(k_map.float().view(batch, hk, wk, depth), cell), dim=1).to(dtype)
    q_coarse = F.normalize(q_cells.float().sum(2), dim=2).to(dtype)  # (B, Mq, D)
    n_windows = positions.shape[0]
    kept = min(candidates, n_windows)
    step = max(1, block_elements // n_windows)
    top = torch.cat([_scores(_prepare_queries(q_coarse[:, i : i + step]), k_coarse).topk(kept, dim=2).indices
                     for i in range(0, n_query_cells, step)], dim=1)  # (B, Mq, k)
    # Exact refinement: every query of a cell against the fine keys of the cell's candidate windows.
    first_key = torch.arange(batch, device=key.device)[:, None, None] * (hk * wk)  # of each item in k_map
    k_map = k_map.flatten(0, 1)  # (B·Nk, D)
    soft, index = [], []
    step = max(1, block_elements // (kept * per_cell * max(depth, per_cell)))  # gathered keys and scores
    # One buffer for the gathered keys: a fresh multi-MB tensor per block costs page faults comparable to the copy.
    buffer = k_map.new_empty(batch * min(step, n_query_cells) * kept * per_cell, depth)
    for i in range(0, n_query_cells, step):
        # Candidate keys in ascending index (-1 = off the key grid first): the first maximum is then the lowest
        # key index among ties (and keys of two overlapping windows), as in the exact search.
        key_index = positions[top[:, i : i + step]].flatten(2).sort(dim=2).values  # (B, n, k·c²)
        flat = (key_index.clamp_min(0) + first_key).flatten()
        keys = torch.index_select(k_map, 0, flat, out=buffer[: flat.numel()]).view(-1, kept * per_cell, depth)
        queries = q_cells[:, i : i + step].flatten(0, 1)  # (B·n, c², D)
        scores = torch.bmm(queries, keys.transpose(1, 2)).float()  # (B·n, c², k·c²)
        key_index = key_index.flatten(0, 1)[:, None]  # (B·n, 1, k·c²)
        best, arg = scores.masked_fill_(key_index < 0, -torch.inf).max(dim=2)  # (B·n, c²)
        index.append(torch.gather(key_index[:, 0], 1, arg).view(batch, -1, per_cell))
        soft.append(best.view(batch, -1, per_cell))
    return _from_cells(torch.cat(soft, dim=1), hq, wq, cell), _from_cells(torch.cat(index, dim=1), hq, wq, cell)


def _from_cells(x: torch.Tensor, height: int, width: int, cell: int) -> torch.Tensor:
    """One value per pixel from the cell layout of :func:`_descriptor_cells`: ``(B, N_cells, cell²)`` → row-major
    ``(B, H·W)``."""
    rows, cols = -(-height // cell), -(-width // cell)
    x = x.view(-1, rows, cols, cell, cell).permute(0, 1, 3, 2, 4).reshape(-1, rows * cell, cols * cell)
    return x[:, :height, :width].flatten(1)


def _onednn_gemm(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether :func:`_scores` runs on oneDNN: fp32 on a CPU with oneDNN (bf16 ``bmm`` is fast already)."""
    return device.type == "cpu" and dtype == torch.float32 and torch.backends.mkldnn.is_available()


def _prepare_queries(q: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
    """Query descriptors ``(B, n, D)`` in the layout :func:`_scores` multiplies: oneDNN tensors per batch item
    (fp32 on a CPU with oneDNN), else ``q`` itself."""
    if not _onednn_gemm(q.device, q.dtype):
        return q
    return [item.contiguous().to_mkldnn() for item in q]


def _scores(queries: torch.Tensor | list[torch.Tensor], k: torch.Tensor) -> torch.Tensor:
    """Relevance block ``q @ k``: ``(B, n, D) × (B, D, m) → (B, n, m)`` float, without autograd.

    ``queries`` from :func:`_prepare_queries`. On the CPU in fp32 this runs as oneDNN's inner product
    (``mkldnn_linear``), not ``bmm``: ``bmm`` goes to the BLAS library (MKL), which on AMD CPUs reaches about a
    third of oneDNN's fp32 throughput (``benchmarks/gemm.py`` records both). The dot products are the same fp32
    sums in a different order.
    """
    if isinstance(queries, torch.Tensor):
        return torch.bmm(queries, k)
    blocks = [
        torch._C._nn.mkldnn_linear(item, k[b].t().contiguous().to_mkldnn()).to_dense()
        for b, item in enumerate(queries)
    ]
    return blocks[0][None] if len(blocks) == 1 else torch.stack(blocks)


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


@torch.compiler.disable  # its nine in-place slice updates kept Inductor lowering for minutes (docs/performance.md)
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
    batch, _, height, width = value.shape
    hk, wk = height // scale, width // scale
    # Value patch of key j, offset d ∈ [−p, p]² (in key cells), lands on query cell i + d. So output cell c gets,
    # for every d whose query i = c − d is on the grid, the value cell t_{c−d} + d (zero outside the key grid:
    # zero padding), averaged over the queries that cover c. Each cell holds its s×s value pixels as channels.
    cells = (F.pixel_unshuffle(value, scale) if scale > 1 else value).flatten(2)  # (B, C·s², Hk·Wk)
    key_y, key_x = (index // wk).view(batch, hq, wq), (index % wk).view(batch, hq, wq)
    out = value.new_zeros(batch, cells.shape[1], hq, wq)
    counts = value.new_zeros(1, 1, hq, wq)
    half = patch // 2
    for dy in range(-half, half + 1):
        for dx in range(-half, half + 1):
            y, x = key_y + dy, key_x + dx
            inside = ((y >= 0) & (y < hk) & (x >= 0) & (x < wk)).to(value.dtype)
            flat = (y.clamp(0, hk - 1) * wk + x.clamp(0, wk - 1)).view(batch, 1, -1)
            moved = torch.gather(cells, 2, flat.expand(-1, cells.shape[1], -1)).view_as(out) * inside[:, None]
            out_rows, in_rows = slice(max(0, dy), hq + min(0, dy)), slice(max(0, -dy), hq - max(0, dy))
            out_cols, in_cols = slice(max(0, dx), wq + min(0, dx)), slice(max(0, -dx), wq - max(0, dx))
            out[:, :, out_rows, out_cols] += moved[:, :, in_rows, in_cols]
            counts[:, :, out_rows, out_cols] += 1
    out = out / counts
    return F.pixel_shuffle(out, scale) if scale > 1 else out
