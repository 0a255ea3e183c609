"""Coarse-to-fine relevance search (``relevance_search(..., coarse=, candidates=)``) against the exact search."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from accelmri.models.blocks.correspondence import _window_positions, _window_sums, relevance_search
from accelmri.models.t2net import T2Net
from tests.model_utils import make_batch
from tests.test_fasrnet import tiny

pytestmark = pytest.mark.usefixtures("one_thread")


def dense_relevance(query: torch.Tensor, key: torch.Tensor, patch: int) -> torch.Tensor:
    """The dense relevance ``(B, Nq, Nk)`` from plain torch ops: cosine of zero-padded ``patch²`` descriptors."""
    q = F.unfold(query.double(), patch, padding=patch // 2)
    k = F.unfold(key.double(), patch, padding=patch // 2)
    q = q / q.norm(dim=1, keepdim=True).clamp_min(1e-12)
    k = k / k.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return q.transpose(1, 2) @ k


def smooth_field(height: int, width: int, sigma: float = 2.0, seed: int = 0) -> torch.Tensor:
    """A smooth random image ``(1, 1, H, W)``: white noise blurred by a Gaussian of ``sigma`` pixels."""
    generator = torch.Generator().manual_seed(seed)
    radius = int(3 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    noise = torch.randn(1, 1, height + 2 * radius, width + 2 * radius, generator=generator)
    return F.conv2d(F.conv2d(noise, g.view(1, 1, -1, 1)), g.view(1, 1, 1, -1))


def structured_features(image: torch.Tensor) -> torch.Tensor:
    """``(1, 1, H, W)`` → ``(1, 11, H − 4, W − 4)``: the image at the offsets ``{−2, 0, 2}²`` and its two
    central-difference gradients (valid region only)."""
    height, width = image.shape[-2:]
    crop = [image[..., 2 + dy : height - 2 + dy, 2 + dx : width - 2 + dx] for dy in (-2, 0, 2) for dx in (-2, 0, 2)]
    grad_y = (image[..., 3 : height - 1, 2 : width - 2] - image[..., 1 : height - 3, 2 : width - 2]) / 2
    grad_x = (image[..., 2 : height - 2, 3 : width - 1] - image[..., 2 : height - 2, 1 : width - 3]) / 2
    return torch.cat([*crop, grad_y, grad_x], dim=1)


@pytest.mark.parametrize("patch", [1, 3])
@pytest.mark.parametrize("coarse", [1, 2, 3, 4])
def test_exhaustive_candidates_give_the_exact_search(patch: int, coarse: int) -> None:
    """Candidates covering every key window: the exact argmax bit for bit and the exact max to float rounding
    (batch of 2, query and key grids of different sizes, not multiples of the cell)."""
    generator = torch.Generator().manual_seed(1)
    query = torch.randn(2, 6, 25, 23, generator=generator)
    key = torch.randn(2, 6, 21, 26, generator=generator)
    soft, index = relevance_search(query, key, patch)
    coarse_soft, coarse_index = relevance_search(query, key, patch, coarse=coarse, candidates=10**6)
    assert coarse_soft.shape == soft.shape and coarse_soft.dtype == torch.float32
    assert torch.equal(coarse_index, index)
    torch.testing.assert_close(coarse_soft, soft, rtol=0, atol=1e-6)


@pytest.mark.parametrize("patch", [1, 3])
@pytest.mark.parametrize("candidates", [1, 3, 8])
def test_soft_is_the_exact_relevance_at_the_returned_key(patch: int, candidates: int) -> None:
    generator = torch.Generator().manual_seed(2)
    query = torch.randn(1, 8, 24, 24, generator=generator)
    key = torch.randn(1, 8, 28, 20, generator=generator)
    soft, index = relevance_search(query, key, patch, coarse=4, candidates=candidates)
    relevance = dense_relevance(query, key, patch)[0]  # (Nq, Nk) float64
    at_index = relevance.gather(1, index[0, :, None])[:, 0]
    torch.testing.assert_close(soft[0].double(), at_index, rtol=0, atol=1e-5)
    assert bool((soft[0].double() <= relevance.max(dim=1).values + 1e-6).all())


@pytest.mark.parametrize("patch", [1, 3])
@pytest.mark.parametrize("coarse", [2, 4])
def test_coarse_search_recovers_a_known_shift(patch: int, coarse: int) -> None:
    """Key = query features moved by ``(dy, dx) = (5, −3)`` pixels: query ``(y, x)`` shows at key
    ``(y + 5, x − 3)``; ≥ 95 % of the interior queries (patch inside both grids) must find it."""
    size, margin, (dy, dx) = 32, 8, (5, -3)
    features = structured_features(smooth_field(size + 2 * margin + 4, size + 2 * margin + 4))
    query = features[..., margin : margin + size, margin : margin + size]
    key = features[..., margin - dy : margin - dy + size, margin - dx : margin - dx + size]
    _, index = relevance_search(query, key, patch, coarse=coarse)
    y, x = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    half = patch // 2
    interior = ((y >= half) & (y < size - half) & (x >= half) & (x < size - half)
                & (y + dy >= half) & (y + dy < size - half) & (x + dx >= half) & (x + dx < size - half)).flatten()
    found = index[0] == ((y + dy) * size + (x + dx)).flatten()
    fraction = found[interior].double().mean().item()
    print(f"patch {patch}, coarse {coarse}: shift found for {100 * fraction:.1f} % of {int(interior.sum())} queries")
    assert fraction >= 0.95


def test_t2net_with_coarse_search_runs_and_trains() -> None:
    batch = make_batch("joint", scale=2, acceleration=2, size=(32, 32))
    exact = T2Net(channels=8, n_blocks=2)
    assert exact.transformers is not None and exact.transformers[0].search_coarse is None  # default: exact
    fast = T2Net(channels=8, n_blocks=2, search_coarse=2)
    fast.load_state_dict(exact.state_dict())
    prediction = fast(batch)
    with torch.no_grad():
        reference = exact(batch)
    assert prediction.image.shape == reference.image.shape
    assert prediction.lr_image is not None and reference.lr_image is not None
    assert prediction.lr_image.shape == reference.lr_image.shape
    prediction.image.abs().mean().backward()  # the soft attention is re-evaluated with autograd at the argmax
    assert fast.rec is not None and fast.transformers is not None
    trained = [*fast.rec.head.parameters(), *fast.transformers.parameters()]  # the key side reaches SR via S
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in trained)


@pytest.mark.parametrize("use_fa", [True, False])
def test_fasrnet_with_coarse_search_runs(use_fa: bool) -> None:
    batch = make_batch(scale=2, size=(32, 32))
    torch.manual_seed(0)
    exact = tiny(2, use_fa=use_fa).eval()
    assert exact.search["coarse"] is None  # default: exact
    fast = tiny(2, use_fa=use_fa, search_coarse=4).eval()
    fast.load_state_dict(exact.state_dict())
    with torch.no_grad():
        reference, approximate = exact(batch).image, fast(batch).image
    assert approximate.shape == reference.shape and bool(torch.isfinite(approximate).all())


@pytest.mark.parametrize("options", [{"coarse": 0}, {"coarse": -2}, {"coarse": 4, "candidates": 0},
                                     {"coarse": 4, "window": 2}])
def test_bad_coarse_arguments_raise(options: dict[str, int]) -> None:
    features = torch.randn(1, 4, 8, 8)
    with pytest.raises(ValueError, match="coarse"):
        relevance_search(features, features, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("side", [1, 2, 3, 4, 5])
@pytest.mark.parametrize(("height", "width"), [(21, 26), (25, 23), (8, 8), (7, 9)])
def test_pooled_key_windows_are_the_sums_over_their_pixels(side: int, height: int, width: int) -> None:
    """The coarse stage's key-window descriptors (pooled, up to a positive factor per window) point the same way
    as the plain sums of the pixels :func:`_window_positions` lists (zeros off the grid)."""
    generator = torch.Generator().manual_seed(3)
    pixels = torch.randn(2, height, width, 5, generator=generator)
    positions = _window_positions(height, width, side, pixels.device)  # (M, side²)
    flat = F.pad(pixels.flatten(1, 2), (0, 0, 0, 1))  # row H·W: zeros, for the -1 positions
    plain = flat[:, positions.where(positions >= 0, height * width)].sum(2).transpose(1, 2)  # (B, D, M)
    pooled = _window_sums(pixels, side)
    assert pooled.shape == plain.shape
    torch.testing.assert_close(F.normalize(pooled, dim=1), F.normalize(plain, dim=1), rtol=0, atol=1e-6)


def test_search_candidates_reach_the_models_search() -> None:
    """``search_candidates`` covering every key window makes the coarse-to-fine T2Net and FASR-Net the exact ones
    (the exact argmax everywhere); with one candidate the output differs."""
    torch.manual_seed(0)
    t2net_batch, fasrnet_batch = make_batch("joint", scale=2, acceleration=2, size=(32, 32)), make_batch(scale=2,
                                                                                                       size=(32, 32))
    models = {"t2net": (T2Net(channels=8, n_blocks=2).eval(), t2net_batch),
              "fasrnet": (tiny(2).eval(), fasrnet_batch)}
    for name, (exact, batch) in models.items():
        build = (lambda **kw: T2Net(channels=8, n_blocks=2, **kw)) if name == "t2net" else (lambda **kw: tiny(2, **kw))
        outputs = {}
        for candidates in (1, 10**6):
            fast = build(search_coarse=4, search_candidates=candidates).eval()
            fast.load_state_dict(exact.state_dict())
            with torch.no_grad():
                outputs[candidates] = fast(batch).image
        with torch.no_grad():
            reference = exact(batch).image
        torch.testing.assert_close(outputs[10**6], reference, rtol=0, atol=1e-5, msg=name)
        assert not torch.allclose(outputs[1], reference, rtol=0, atol=1e-5), name
