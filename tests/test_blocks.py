from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from accelmri.models.blocks.common import RCAB, OutputConv, ResBlock, ResidualGroup, Upsampler
from accelmri.models.blocks.correspondence import relevance_search, transfer, unfold_patches


def dense_relevance(query: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The dense formula of TTSR / T2Net: R = K̂ᵀ Q̂ over all positions, then max/argmax over keys."""
    q = F.normalize(F.unfold(query, 3, padding=1), dim=1)
    k = F.normalize(F.unfold(key, 3, padding=1), dim=1)
    relevance = torch.bmm(k.transpose(1, 2), q)
    return relevance.max(dim=1)


@pytest.mark.parametrize("block_size", [1, 7, 64, 10_000])
@pytest.mark.parametrize(("query_size", "key_size"), [((12, 10), (12, 10)), ((6, 5), (12, 10))])
def test_blockwise_relevance_equals_dense(
    block_size: int, query_size: tuple[int, int], key_size: tuple[int, int]
) -> None:
    query, key = torch.randn(2, 8, *query_size), torch.randn(2, 8, *key_size)
    soft, index = relevance_search(query, key, block_size=block_size)
    dense_soft, dense_index = dense_relevance(query, key)
    assert torch.equal(index, dense_index)
    assert torch.allclose(soft, dense_soft, atol=1e-6)


def test_window_search_restricts_keys_and_bf16_is_close() -> None:
    query, key = torch.randn(1, 4, 16, 16), torch.randn(1, 4, 16, 16)
    _, index = relevance_search(query, key, window=2)
    qy, qx = torch.arange(16).repeat_interleave(16), torch.arange(16).repeat(16)
    ky, kx = index[0] // 16, index[0] % 16
    assert int((ky - qy).abs().max()) <= 2 and int((kx - qx).abs().max()) <= 2
    exact, _ = relevance_search(query, key)
    fast, _ = relevance_search(query, key, dtype=torch.bfloat16)
    assert (fast - exact).abs().max() < 0.05


def test_self_search_finds_itself_and_transfer_reconstructs() -> None:
    x = torch.randn(1, 6, 9, 11)
    soft, index = relevance_search(x, x)
    assert torch.equal(index[0], torch.arange(99))
    assert torch.allclose(soft, torch.ones_like(soft), atol=1e-5)
    assert torch.allclose(transfer(x, index, (9, 11)), x, atol=1e-6)
    # A value grid twice as fine moves 6×6 patches with stride 2: the identity again.
    fine = torch.randn(1, 3, 18, 22)
    assert torch.allclose(transfer(fine, index, (9, 11), scale=2), fine, atol=1e-6)


def test_transfer_moves_the_matched_patch() -> None:
    key = torch.zeros(1, 1, 8, 8)
    key[0, 0, 5, 6] = 1.0  # a single bright dot
    query = torch.zeros(1, 1, 8, 8)
    query[0, 0, 2, 1] = 1.0
    _, index = relevance_search(query, key)
    assert int(index[0, 2 * 8 + 1]) == 5 * 8 + 6
    assert unfold_patches(query).shape == (1, 9, 64)


def test_blocks_shapes_and_upsampler() -> None:
    x = torch.randn(2, 16, 10, 12)
    assert ResBlock(16)(x).shape == x.shape
    assert RCAB(16, reduction=4)(x).shape == x.shape
    assert ResidualGroup(16, n_blocks=2, reduction=4)(x).shape == x.shape
    assert Upsampler(4, 16)(x).shape == (2, 16, 40, 48)
    assert Upsampler(3, 16)(x).shape == (2, 16, 30, 36)
    with pytest.raises(ValueError, match="power of 2 or 3"):
        Upsampler(5, 16)


def test_window_covering_the_grid_equals_exact_search() -> None:
    query, key = torch.randn(2, 4, 6, 5), torch.randn(2, 4, 12, 10)
    exact_soft, exact_index = relevance_search(query, key)
    soft, index = relevance_search(query, key, window=12)
    assert torch.equal(index, exact_index)
    assert torch.allclose(soft, exact_soft, atol=1e-6)


def test_fast_local_search_equals_descriptor_search_in_the_window() -> None:
    query, key = torch.randn(2, 5, 9, 11), torch.randn(2, 5, 9, 11)
    key[:, :, 4, 5] = 0  # a zero patch centre must not break the normalisation
    soft, index = relevance_search(query, key, window=2)  # fast path (equal grids)
    q, k = unfold_patches(query), unfold_patches(key)
    dense = torch.bmm(k.transpose(1, 2), q)  # (B, Nk, Nq)
    ys, xs = torch.arange(9).repeat_interleave(11), torch.arange(11).repeat(9)
    near = ((ys[:, None] - ys[None]).abs() <= 2) & ((xs[:, None] - xs[None]).abs() <= 2)
    expected_soft, expected_index = dense.masked_fill(~near, -torch.inf).max(dim=1)
    assert torch.allclose(soft, expected_soft, atol=1e-5)
    assert (index == expected_index).float().mean() > 0.99  # ties aside


def fold_transfer(value: torch.Tensor, index: torch.Tensor, size: tuple[int, int], scale: int) -> torch.Tensor:
    """TTSR's transfer written with unfold/fold: move the (3s)² value patches at ``index``, average overlaps."""
    kernel, pad = 3 * scale, scale
    unfolded = F.unfold(value, kernel, padding=pad, stride=scale)
    gathered = torch.gather(unfolded, 2, index[:, None].expand(-1, unfolded.shape[1], -1))
    out_size = (scale * size[0], scale * size[1])
    counts = F.fold(F.unfold(torch.ones(1, 1, *out_size), kernel, padding=pad, stride=scale), out_size, kernel,
                    padding=pad, stride=scale)
    return F.fold(gathered, out_size, kernel, padding=pad, stride=scale) / counts


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_transfer_equals_unfold_fold_formula(scale: int) -> None:
    generator = torch.Generator().manual_seed(scale)
    key_size, query_size = (7, 9), (5, 6)
    value = torch.randn(2, 3, scale * key_size[0], scale * key_size[1], generator=generator)
    index = torch.randint(0, key_size[0] * key_size[1], (2, query_size[0] * query_size[1]), generator=generator)
    expected = fold_transfer(value, index, query_size, scale)
    assert torch.allclose(transfer(value, index, query_size, scale=scale), expected, atol=1e-6)


@pytest.mark.parametrize("window", [None, 2])
def test_soft_attention_gradient_equals_the_dense_formula(window: int | None) -> None:
    """The search runs without autograd; the re-evaluated max gives the dense formula's gradient."""
    generator = torch.Generator().manual_seed(3)
    query = torch.randn(2, 4, 7, 6, generator=generator, requires_grad=True)
    key = torch.randn(2, 4, 7, 6, generator=generator, requires_grad=True)
    weights = torch.randn(2, 42, generator=generator)
    soft, index = relevance_search(query, key, block_size=5, window=window)
    (soft * weights).sum().backward()
    grads = query.grad.clone(), key.grad.clone()
    query.grad, key.grad = None, None
    q = F.normalize(F.unfold(query, 3, padding=1), dim=1)
    k = F.normalize(F.unfold(key, 3, padding=1), dim=1)
    relevance = torch.bmm(k.transpose(1, 2), q)  # (B, Nk, Nq)
    if window is not None:
        ys, xs = torch.arange(7).repeat_interleave(6), torch.arange(6).repeat(7)
        near = ((ys[:, None] - ys[None]).abs() <= window) & ((xs[:, None] - xs[None]).abs() <= window)
        relevance = relevance.masked_fill(~near, -torch.inf)
    dense_soft, dense_index = relevance.max(dim=1)
    assert torch.equal(index, dense_index)
    (dense_soft * weights).sum().backward()
    assert torch.allclose(grads[0], query.grad, atol=1e-5)
    assert torch.allclose(grads[1], key.grad, atol=1e-5)


def test_output_conv_stays_float32_under_bf16_autocast() -> None:
    torch.manual_seed(0)
    layer = OutputConv(8, 1)
    plain = torch.nn.Conv2d(8, 1, 3, padding=1)
    plain.load_state_dict(layer.state_dict())  # same keys and shapes as nn.Conv2d
    x = torch.randn(2, 8, 16, 16).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, quantised = layer(x), plain(x)
    assert out.dtype == torch.float32 and quantised.dtype == torch.bfloat16
    exact = F.conv2d(x.float(), layer.weight, layer.bias, padding=1)
    torch.testing.assert_close(out, exact, rtol=0, atol=0)  # float32 arithmetic on the bf16 input, no rounding
    assert (quantised.float() - exact).abs().max() > 0  # what a bf16 tail would have written
