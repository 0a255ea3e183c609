"""Tests for accelmri.metrics: parity with scikit-image / fastMRI's evaluate.py, edge cases, statistics."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy import stats
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from accelmri.metrics import (
    SSIM_K1,
    SSIM_K2,
    SSIM_WIN_SIZE,
    PairedTTest,
    aggregate,
    evaluate_volume,
    nmse,
    paired_ttest,
    psnr,
    ssim,
)

PARITY_ATOL = 1e-6
SHAPES = [(3, 64, 48), (2, 33, 57), (1, 7, 9), (2, 40, 40)]


def _structured_volume(shape: tuple[int, int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Phantom-like magnitude volume (ellipses + smooth shading) and a blurred, noisy prediction."""
    slices, height, width = shape
    yy, xx = np.mgrid[:height, :width]
    yy = (yy - height / 2) / (height / 2)
    xx = (xx - width / 2) / (width / 2)
    gt = np.zeros(shape)
    for k in range(slices):
        gt[k] += 1.0 * ((xx / 0.8) ** 2 + (yy / 0.9) ** 2 < 1)
        gt[k] -= 0.6 * ((xx / 0.6) ** 2 + ((yy - 0.05 * k) / 0.7) ** 2 < 1)
        gt[k] += 0.3 * (((xx - 0.2) / 0.15) ** 2 + (yy / 0.25) ** 2 < 1)
        gt[k] *= 1 + 0.2 * k + 0.1 * np.cos(3 * xx)
    blurred = 0.5 * gt + 0.25 * (np.roll(gt, 1, axis=-1) + np.roll(gt, -1, axis=-1))
    pred = np.abs(blurred + rng.normal(0, 0.03, shape))
    return gt, pred


def _random_volume(shape: tuple[int, int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    gt = rng.random(shape) * 3e-4  # fastMRI-like intensity scale
    pred = np.abs(gt + rng.normal(0, 5e-5, shape))
    return gt, pred


def _skimage_fastmri_ssim(gt: np.ndarray, pred: np.ndarray, data_range: float | None = None) -> float:
    """fastmri/evaluate.py::ssim: skimage default SSIM per slice, volume-max data range, slice mean."""
    value_range = gt.max() if data_range is None else data_range
    total = 0.0
    for i in range(gt.shape[0]):
        total += structural_similarity(gt[i], pred[i], data_range=value_range)
    return total / gt.shape[0]


def _valid_window_ssim(gt: np.ndarray, pred: np.ndarray, data_range: float) -> float:
    """Independent SSIM: explicit 7×7 windows over the valid region only (no padding, no filter)."""
    n = SSIM_WIN_SIZE**2
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    per_slice = []
    for x, y in zip(gt, pred, strict=True):
        wx = np.lib.stride_tricks.sliding_window_view(x, (SSIM_WIN_SIZE, SSIM_WIN_SIZE)).reshape(-1, n)
        wy = np.lib.stride_tricks.sliding_window_view(y, (SSIM_WIN_SIZE, SSIM_WIN_SIZE)).reshape(-1, n)
        ux, uy = wx.mean(axis=1), wy.mean(axis=1)
        vx, vy = wx.var(axis=1, ddof=1), wy.var(axis=1, ddof=1)
        vxy = ((wx - ux[:, None]) * (wy - uy[:, None])).sum(axis=1) / (n - 1)
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
        per_slice.append(s.mean())
    return float(np.mean(per_slice))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["random", "structured"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("container", ["numpy", "torch"])
def test_parity_with_skimage(shape: tuple[int, int, int], kind: str, dtype: type[np.floating], container: str) -> None:
    rng = np.random.default_rng(sum(shape) + len(kind))
    make = _random_volume if kind == "random" else _structured_volume
    gt64, pred64 = make(shape, rng)
    # skimage gets exactly the arrays fastMRI would hand it (native dtype, float32 included).
    gt_np, pred_np = gt64.astype(dtype), pred64.astype(dtype)
    if container == "torch":
        gt_in, pred_in = torch.from_numpy(gt_np), torch.from_numpy(pred_np)
    else:
        gt_in, pred_in = gt_np, pred_np

    got = evaluate_volume(gt_in, pred_in)
    assert set(got) == {"nmse", "psnr", "ssim"}
    assert all(type(v) is float for v in got.values())

    ref_ssim = _skimage_fastmri_ssim(gt_np, pred_np)
    ref_psnr = peak_signal_noise_ratio(gt_np, pred_np, data_range=gt_np.max())
    g, p = gt_np.astype(np.float64), pred_np.astype(np.float64)
    ref_nmse = np.sum((g - p) ** 2) / np.sum(g**2)

    assert got["ssim"] == pytest.approx(ref_ssim, rel=0, abs=PARITY_ATOL)
    assert got["psnr"] == pytest.approx(ref_psnr, rel=0, abs=PARITY_ATOL)
    assert got["nmse"] == pytest.approx(ref_nmse, rel=1e-12, abs=0)
    # Against skimage run in float64 on the same values the match is at round-off level.
    assert got["ssim"] == pytest.approx(_skimage_fastmri_ssim(g, p), rel=0, abs=1e-12)
    assert got["psnr"] == pytest.approx(peak_signal_noise_ratio(g, p, data_range=g.max()), rel=0, abs=1e-10)
    # The public functions agree with evaluate_volume.
    assert ssim(gt_in, pred_in) == got["ssim"]
    assert psnr(gt_in, pred_in) == got["psnr"]
    assert nmse(gt_in, pred_in) == got["nmse"]


@pytest.mark.parametrize("shape", [(2, 33, 57), (1, 7, 7)])
def test_ssim_matches_valid_window_reference(shape: tuple[int, int, int]) -> None:
    """The cropped mean depends only on fully-inside windows, so skimage's reflect border is irrelevant."""
    rng = np.random.default_rng(3)
    gt, pred = _structured_volume(shape, rng)
    assert ssim(gt, pred) == pytest.approx(_valid_window_ssim(gt, pred, gt.max()), rel=0, abs=1e-12)


def test_data_range_is_volume_max_not_slice_max() -> None:
    rng = np.random.default_rng(4)
    gt, pred = _structured_volume((3, 32, 40), rng)
    gt[0] *= 0.2  # slice maxima now differ strongly from the volume max
    pred[0] *= 0.2
    per_slice_max = np.mean([structural_similarity(gt[i], pred[i], data_range=gt[i].max()) for i in range(gt.shape[0])])
    assert ssim(gt, pred) == pytest.approx(_skimage_fastmri_ssim(gt, pred), abs=1e-12)
    assert abs(ssim(gt, pred) - per_slice_max) > 1e-3


def test_explicit_data_range() -> None:
    rng = np.random.default_rng(5)
    gt, pred = _random_volume((2, 24, 30), rng)
    assert ssim(gt, pred, data_range=1e-3) == pytest.approx(_skimage_fastmri_ssim(gt, pred, data_range=1e-3), abs=1e-12)
    assert psnr(gt, pred, data_range=1e-3) == pytest.approx(
        peak_signal_noise_ratio(gt, pred, data_range=1e-3), abs=1e-10
    )


def test_2d_input_is_one_slice() -> None:
    rng = np.random.default_rng(6)
    gt, pred = _structured_volume((1, 30, 26), rng)
    assert ssim(gt[0], pred[0]) == ssim(gt, pred)
    assert ssim(gt[0], pred[0]) == pytest.approx(structural_similarity(gt[0], pred[0], data_range=gt.max()), abs=1e-12)
    assert evaluate_volume(gt[0], pred[0]) == evaluate_volume(gt, pred)


def test_identical_inputs() -> None:
    gt, _ = _structured_volume((2, 20, 20), np.random.default_rng(7))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero warning for psnr = inf
        result = evaluate_volume(gt, gt.copy())
    assert result["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert result["nmse"] == 0.0
    assert result["psnr"] == math.inf


def test_torch_inputs_are_detached_and_may_be_mixed() -> None:
    rng = np.random.default_rng(8)
    gt, pred = _random_volume((2, 16, 18), rng)
    pred_t = torch.from_numpy(pred).float().requires_grad_(True)
    got = evaluate_volume(gt, pred_t)
    ref = evaluate_volume(gt, pred.astype(np.float32))
    assert got == ref


def test_integer_input_is_accepted() -> None:
    rng = np.random.default_rng(9)
    gt = rng.integers(0, 255, (2, 16, 16))
    pred = np.clip(gt + rng.integers(-5, 6, gt.shape), 0, None)
    assert ssim(gt, pred) == pytest.approx(
        _skimage_fastmri_ssim(gt.astype(np.float64), pred.astype(np.float64)), abs=1e-12
    )


@pytest.mark.parametrize("func", [nmse, psnr, ssim, evaluate_volume])
def test_complex_input_raises_type_error(func: Callable[..., object]) -> None:
    x = np.ones((2, 8, 8))
    with pytest.raises(TypeError, match=r"abs"):
        func(x.astype(np.complex64), x)
    with pytest.raises(TypeError, match=r"abs"):
        func(torch.ones(2, 8, 8), torch.ones(2, 8, 8, dtype=torch.complex64))


def test_bool_input_raises_type_error() -> None:
    with pytest.raises(TypeError):
        ssim(np.ones((8, 8), dtype=bool), np.ones((8, 8)))
    with pytest.raises(TypeError):
        psnr(torch.ones(8, 8), torch.ones(8, 8, dtype=torch.bool))


@pytest.mark.parametrize("func", [nmse, psnr, ssim, evaluate_volume])
def test_shape_mismatch_names_both_shapes(func: Callable[..., object]) -> None:
    with pytest.raises(ValueError, match=r"\(2, 8, 8\).*\(2, 8, 9\)"):
        func(np.ones((2, 8, 8)), np.ones((2, 8, 9)))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("func", [nmse, psnr, ssim, evaluate_volume])
def test_non_finite_values_raise(func: Callable[..., object], bad: float) -> None:
    gt = np.ones((2, 8, 8))
    pred = np.ones((2, 8, 8))
    pred[1, 3, 4] = bad
    with pytest.raises(ValueError, match="non-finite"):
        func(gt, pred)
    with pytest.raises(ValueError, match="non-finite"):
        func(torch.from_numpy(pred), torch.from_numpy(gt))


def test_wrong_ndim_raises() -> None:
    with pytest.raises(ValueError, match="slices, H, W"):
        nmse(np.ones((1, 2, 8, 8)), np.ones((1, 2, 8, 8)))
    with pytest.raises(ValueError, match="slices, H, W"):
        psnr(np.ones(8), np.ones(8))


def test_ssim_slices_smaller_than_window_raise() -> None:
    with pytest.raises(ValueError, match="7x7"):
        ssim(np.ones((2, 6, 20)), np.ones((2, 6, 20)))


def test_invalid_data_range_raises() -> None:
    zeros = np.zeros((1, 8, 8))
    with pytest.raises(ValueError, match=r"gt\.max\(\)"):
        psnr(zeros, zeros + 1)
    with pytest.raises(ValueError, match=r"gt\.max\(\)"):
        ssim(zeros, zeros + 1)
    with pytest.raises(ValueError, match="all-zero"):
        nmse(zeros, zeros + 1)
    with pytest.raises(ValueError, match="data_range"):
        ssim(zeros + 1, zeros + 1, data_range=-1.0)


def test_aggregate_mean_and_std() -> None:
    per_volume = [
        {"nmse": 0.01, "psnr": 30.0, "ssim": 0.90},
        {"nmse": 0.03, "psnr": 32.0, "ssim": 0.80},
        {"nmse": 0.02, "psnr": 37.0, "ssim": 0.85},
    ]
    got = aggregate(per_volume, ddof=0)
    assert list(got) == ["nmse", "psnr", "ssim"]
    assert got["psnr"]["mean"] == pytest.approx(33.0)
    assert got["psnr"]["std"] == pytest.approx(math.sqrt((9 + 1 + 16) / 3))  # population std, ddof=0
    assert got["ssim"]["mean"] == pytest.approx(0.85)
    assert got["nmse"]["std"] == pytest.approx(np.std([0.01, 0.03, 0.02]))
    sample = aggregate(per_volume)  # default ddof=1: what fastMRI's runstats-based Metrics reports
    assert sample["psnr"]["std"] == pytest.approx(math.sqrt((9 + 1 + 16) / 2))
    assert sample["psnr"]["mean"] == got["psnr"]["mean"]


def test_aggregate_errors() -> None:
    with pytest.raises(ValueError, match="at least one"):
        aggregate([])
    with pytest.raises(ValueError, match="volume 1"):
        aggregate([{"psnr": 1.0}, {"ssim": 1.0}])
    with pytest.raises(ValueError, match="ddof"):
        aggregate([{"psnr": 1.0}], ddof=-1)
    single = aggregate([{"psnr": 31.0}])
    assert single["psnr"]["mean"] == 31.0 and math.isnan(single["psnr"]["std"])


def test_paired_ttest_known_numbers() -> None:
    a = [0.91, 0.88, 0.93, 0.90, 0.87]
    b = [0.89, 0.87, 0.90, 0.90, 0.85]
    got = paired_ttest(a, b)
    ref = stats.ttest_rel(a, b)
    assert isinstance(got, PairedTTest)
    assert got.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert got.pvalue == pytest.approx(ref.pvalue, rel=1e-12)
    # By hand: d = [0.02, 0.01, 0.03, 0, 0.02], mean 0.016, sd sqrt(0.00013) , t = 0.016 / (sd / sqrt(5)).
    assert got.mean_difference == pytest.approx(0.016)
    assert got.statistic == pytest.approx(0.016 / (math.sqrt(0.00013) / math.sqrt(5)))
    assert got.pvalue == pytest.approx(2 * stats.t.sf(got.statistic, df=4))
    assert got.n == 5
    with pytest.raises(AttributeError):
        got.n = 6  # type: ignore[misc]


def test_paired_ttest_clear_difference() -> None:
    rng = np.random.default_rng(10)
    b = rng.normal(0.85, 0.03, 20)
    a = b + 0.01 + rng.normal(0, 0.003, 20)  # A consistently better on every volume
    got = paired_ttest(torch.from_numpy(a), b)
    assert got.pvalue < 0.01
    assert got.statistic > 0
    assert got.mean_difference == pytest.approx(np.mean(a - b))
    assert paired_ttest(b, a).statistic == pytest.approx(-got.statistic)


def test_paired_ttest_errors() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        paired_ttest([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2"):
        paired_ttest([1.0], [2.0])
    with pytest.raises(ValueError, match="1-D"):
        paired_ttest([[1.0, 2.0]], [[1.0, 2.0]])
    with pytest.raises(ValueError, match="non-finite"):
        paired_ttest([1.0, math.nan], [1.0, 2.0])
