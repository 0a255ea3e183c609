from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from accelmri.physics.masks import (
    MASK_KINDS,
    _greedy_poisson_disc,
    make_mask,
    realised_acceleration,
)

ONE_D = ("random", "equispaced", "gaussian1d")


def _centre(n: int, n_centre: int) -> slice:
    start = n // 2 - n_centre // 2
    return slice(start, start + n_centre)


def test_mask_kinds_constant() -> None:
    assert MASK_KINDS == ("random", "equispaced", "gaussian1d", "poisson2d")


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_realised_acceleration_within_5_percent_over_grid(kind: str) -> None:
    sizes = (64, 128, 256) if kind == "poisson2d" else (64, 96, 128, 200, 256, 320, 368)
    checked = 0
    for acceleration, cf, n in itertools.product((2, 3, 4, 6, 8), (0.04, 0.08, 0.16), sizes):
        shape = (n + 7, n) if kind in ONE_D else (n, n - 8)
        h, w = shape
        centre_too_big = (
            round(w * cf) > round(w / acceleration)
            if kind in ONE_D
            else round(h * cf) * round(w * cf) > round(h * w / acceleration)
        )
        if centre_too_big:
            with pytest.raises(ValueError, match="center_fraction"):
                make_mask(kind, shape, acceleration, cf, seed=0)
            continue
        mask = make_mask(kind, shape, acceleration, cf, seed=checked)
        realised = realised_acceleration(mask)
        assert abs(realised / acceleration - 1) <= 0.05, (kind, acceleration, cf, shape, realised)
        checked += 1
    assert checked > 40


@pytest.mark.parametrize("kind", ONE_D)
def test_1d_masks_sample_exactly_round_w_over_r_columns(kind: str) -> None:
    for width, acceleration in [(368, 4), (257, 3), (100, 2.5), (64, 8)]:
        mask = make_mask(kind, (10, width), acceleration, 0.04, seed=1)
        assert int(mask[0].sum()) == round(width / acceleration)


@pytest.mark.parametrize("kind", MASK_KINDS)
@pytest.mark.parametrize("shape", [(64, 64), (37, 50), (20, 33)])
def test_mask_format(kind: str, shape: tuple[int, int]) -> None:
    mask = make_mask(kind, shape, 3.0, 0.1, seed=3)
    assert mask.shape == shape
    assert mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    # broadcasts against multi-coil k-space
    assert (torch.ones(2, 4, *shape, dtype=torch.complex64) * mask).shape == (2, 4, *shape)


@pytest.mark.parametrize("kind", ONE_D)
@pytest.mark.parametrize(("width", "cf"), [(128, 0.08), (127, 0.08), (96, 0.16), (65, 0.04)])
def test_1d_centre_fully_sampled_and_constant_along_readout(kind: str, width: int, cf: float) -> None:
    mask = make_mask(kind, (40, width), 4.0, cf, seed=7)
    assert torch.equal(mask, mask[:1].expand_as(mask))  # constant along H
    n_centre = round(width * cf)
    assert n_centre > 0
    assert torch.all(mask[:, _centre(width, n_centre)] == 1)
    assert mask[0, width // 2] == 1  # DC column


@pytest.mark.parametrize("shape", [(128, 128), (96, 120), (65, 77)])
def test_poisson2d_calibration_box_fully_sampled_and_2d(shape: tuple[int, int]) -> None:
    h, w = shape
    cf = 0.1
    mask = make_mask("poisson2d", shape, 4.0, cf, seed=2)
    assert torch.all(mask[_centre(h, round(h * cf)), _centre(w, round(w * cf))] == 1)
    assert not torch.equal(mask, mask[:1].expand_as(mask))  # genuinely 2-D


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_reproducible_and_seed_dependent(kind: str) -> None:
    args = (kind, (96, 96), 4.0, 0.08)
    a, b = make_mask(*args, seed=11), make_mask(*args, seed=11)
    assert torch.equal(a, b)
    assert not torch.equal(a, make_mask(*args, seed=12))
    # Unseeded masks are random: equispaced draws only its offset (R = 4 → 4 choices, so two draws agree 1 time
    # in 4); 16 draws all equal has probability 4^-15.
    first = make_mask(*args, seed=None)
    assert any(not torch.equal(first, make_mask(*args, seed=None)) for _ in range(15))


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_acceleration_one_is_fully_sampled(kind: str) -> None:
    assert torch.equal(make_mask(kind, (30, 41), 1.0, 0.5, seed=0), torch.ones(30, 41))
    assert torch.equal(make_mask(kind, (30, 41), 1, 0.0, seed=None), torch.ones(30, 41))


@pytest.mark.parametrize(("width", "acceleration", "cf"), [(256, 4, 0.08), (368, 6, 0.04), (101, 3, 0.12)])
def test_equispaced_regular_outside_centre(width: int, acceleration: float, cf: float) -> None:
    n_centre = round(width * cf)
    n_extra = round(width / acceleration) - n_centre
    spacing = (width - n_centre) / n_extra
    centre = _centre(width, n_centre)
    offsets = set()
    for seed in range(5):
        cols = np.flatnonzero(make_mask("equispaced", (8, width), acceleration, cf, seed=seed)[0].numpy())
        left, right = cols[cols < centre.start], cols[cols >= centre.stop]
        for side in (left, right):
            gaps = np.diff(side)
            assert gaps.size > 2
            assert set(gaps.tolist()) <= {math.floor(spacing), math.ceil(spacing)}, (seed, gaps)
        # the lattice skips the centre block: gap across it = block + one lattice step
        across = right[0] - left[-1] - n_centre
        assert across in {math.floor(spacing), math.ceil(spacing)}
        offsets.add(int(cols[0]))
    assert len(offsets) > 1  # the offset is random


def test_gaussian1d_denser_near_centre() -> None:
    width, n_centre = 256, round(256 * 0.04)
    freq = np.mean([make_mask("gaussian1d", (4, width), 4.0, 0.04, seed=s)[0].numpy() for s in range(100)], axis=0)
    dist = np.abs(np.arange(width) - width // 2)
    near = freq[(dist > n_centre) & (dist < width / 8)].mean()
    mid = freq[(dist >= width / 8) & (dist < width / 4)].mean()
    far = freq[dist >= 3 * width / 8].mean()
    assert near > mid > far
    assert near > 3 * far
    # a wider Gaussian spreads the samples out
    wide = np.mean(
        [make_mask("gaussian1d", (4, width), 4.0, 0.04, seed=s, sigma_fraction=1.0)[0].numpy() for s in range(100)],
        axis=0,
    )
    assert wide[dist >= 3 * width / 8].mean() > 2 * far


def test_random_columns_roughly_uniform_outside_centre() -> None:
    width = 128
    freq = np.mean([make_mask("random", (2, width), 4.0, 0.08, seed=s)[0].numpy() for s in range(200)], axis=0)
    outside = np.ones(width, dtype=bool)
    outside[_centre(width, round(width * 0.08))] = False
    expected = (round(width / 4) - round(width * 0.08)) / outside.sum()
    assert abs(freq[outside].mean() - expected) < 1e-6
    assert np.all(np.abs(freq[outside] - expected) < 0.15)


def test_poisson2d_variable_density() -> None:
    n = 256
    mask = make_mask("poisson2d", (n, n), 6.0, 0.04, seed=0).numpy()
    yy, xx = np.mgrid[:n, :n]
    radius = np.hypot(yy - n // 2, xx - n // 2)
    inner = mask[(radius > 20) & (radius < 45)].mean()
    middle = mask[(radius > 60) & (radius < 80)].mean()
    outer = mask[(radius > 100) & (radius < 125)].mean()
    assert inner > middle > outer
    # minimum distance grows with the distance from the centre
    points = np.argwhere(mask)
    nn_dist, _ = cKDTree(points).query(points, k=2)
    r_pts = radius[mask.astype(bool)]
    assert nn_dist[(r_pts > 100) & (r_pts < 125), 1].min() > nn_dist[(r_pts > 50) & (r_pts < 60), 1].min() >= 1


def _sequential_rsa(radius: np.ndarray, priority: np.ndarray) -> np.ndarray:
    h, w = radius.shape
    ys, xs = np.divmod(np.arange(h * w), w)
    r = radius.ravel()
    kept = np.zeros(h * w, dtype=bool)
    for p in np.argsort(priority):
        d = np.hypot(ys[kept] - ys[p], xs[kept] - xs[p])
        if not np.any(2 * d < r[kept] + r[p]):
            kept[p] = True
    return kept.reshape(h, w)


@pytest.mark.parametrize("seed", [0, 1])
def test_parallel_poisson_disc_equals_sequential_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = 30, 37
    yy, xx = np.mgrid[:h, :w]
    radius = 0.25 * np.hypot(yy - h // 2, xx - w // 2)
    priority = rng.permutation(h * w)
    ours = _greedy_poisson_disc(radius, priority)
    np.testing.assert_array_equal(ours, _sequential_rsa(radius, priority))
    # conflict-free (min-distance property) and maximal
    pts = np.argwhere(ours)
    r_pts = radius[ours]
    d = np.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    assert np.all(2 * d >= r_pts[:, None] + r_pts[None, :])
    for y, x in np.argwhere(~ours):
        dd = np.hypot(pts[:, 0] - y, pts[:, 1] - x)
        assert np.any(2 * dd < r_pts + radius[y, x])


def test_realised_acceleration() -> None:
    mask = torch.zeros(8, 10)
    mask[:, ::2] = 1
    assert realised_acceleration(mask) == 2.0
    assert realised_acceleration(torch.ones(3, 3, dtype=torch.bool)) == 1.0
    with pytest.raises(ValueError, match="samples no"):
        realised_acceleration(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="at least 2 dims"):
        realised_acceleration(torch.ones(4))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "radial"}, r"unknown mask kind 'radial'.*random, equispaced, gaussian1d, poisson2d"),
        ({"acceleration": 0.5}, r"acceleration .*>= 1, got 0\.5"),
        ({"acceleration": float("nan")}, r"acceleration .*got nan"),
        ({"center_fraction": 1.0}, r"center_fraction must be in \[0, 1\), got 1\.0"),
        ({"center_fraction": -0.1}, r"center_fraction must be in \[0, 1\), got -0\.1"),
        ({"shape": (0, 64)}, r"shape must be two positive ints .*\(0, 64\)"),
        ({"shape": (64,)}, r"shape must be two positive ints"),
        ({"seed": -1}, r"seed must be a non-negative int or None, got -1"),
        ({"sigma_fraction": 0.0}, r"sigma_fraction must be a positive number, got 0\.0"),
        ({"center_fraction": 0.3}, r"center_fraction=0\.3 .*38 columns.*budget W/acceleration = 128/4"),
        ({"acceleration": 300, "center_fraction": 0.0}, r"acceleration=300 leaves no column"),
        ({"kind": "poisson2d", "center_fraction": 0.6}, r"center_fraction=0\.6 .*77x77 calibration box"),
        ({"kind": "poisson2d", "acceleration": 40}, r"acceleration=40 is above 32"),
    ],
)
def test_errors(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {
        "kind": "random",
        "shape": (128, 128),
        "acceleration": 4,
        "center_fraction": 0.08,
        "seed": 0,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        make_mask(**args)  # type: ignore[arg-type]
