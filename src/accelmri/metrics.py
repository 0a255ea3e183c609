"""Image-quality metrics computed per volume, exactly as the fastMRI evaluation computes them.

Source: Zbontar et al. 2018, *fastMRI: An Open Dataset and Benchmarks for Accelerated MRI*
(arXiv:1811.08839), and its reference code ``fastmri/evaluate.py``, which the multi-contrast
papers (MINet, SANet, MTrans) reuse unchanged. For one volume ``gt``/``pred`` of shape
``(slices, H, W)`` (real magnitude images):

* **NMSE** ``= ‖gt − pred‖² / ‖gt‖²`` over the whole volume (dimensionless).
* **PSNR** ``= 10·log10(data_range² / MSE)`` in dB, MSE over the whole volume, ``data_range =
  gt.max()`` of the volume — what ``skimage.metrics.peak_signal_noise_ratio(gt, pred,
  data_range=gt.max())`` returns.
* **SSIM**: per-slice SSIM of ``skimage.metrics.structural_similarity(gt[i], pred[i],
  data_range=gt.max())`` with skimage's defaults — uniform 7×7 window, K1 = 0.01, K2 = 0.03,
  sample covariance (the N/(N−1) correction, N = 49), mean of the SSIM map after cropping
  ``(7 − 1) // 2 = 3`` pixels from every side — averaged over slices; ``data_range`` is the
  *volume* max of ``gt``, not each slice's max.

The dataset-level numbers are then mean (and spread) over volumes: see :func:`aggregate`.

**Intensity drift** (:func:`intensity_drift`, not a fastMRI metric): whether a restored image keeps the intensity
of its input in the band the input measured. The output is low-passed to that band (centred k-space truncation,
:func:`lowpass`) and compared with the input's image of the same band, per slice, inside the head.

All metrics are computed in float64 on the CPU. The SSIM uses ``scipy.ndimage.uniform_filter``
with its default ``mode="reflect"``, as skimage does internally, so it matches skimage to
floating-point round-off; because the 3-pixel border is cropped, the border mode only changes the
result at the ~1e-16 level. Note that torchmetrics' default SSIM (Gaussian window σ = 1.5,
11×11, population covariance, no cropping) is a different quantity (e.g. 0.893 vs 0.898 on the
same fastMRI volume) and must not be mixed with these numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage, stats

from accelmri.physics.degrade import lowres
from accelmri.physics.fft import fft2c, ifft2c

__all__ = [
    "HEAD_THRESHOLD",
    "SSIM_K1",
    "SSIM_K2",
    "SSIM_WIN_SIZE",
    "PairedTTest",
    "aggregate",
    "evaluate_volume",
    "intensity_drift",
    "intensity_drift_per_slice",
    "lowpass",
    "nmse",
    "paired_ttest",
    "psnr",
    "ssim",
]

HEAD_THRESHOLD = 0.1
"""Head mask of :func:`intensity_drift`: pixels above this fraction of the slice maximum of the reference."""
SSIM_WIN_SIZE = 7
"""Side of the uniform SSIM window (skimage's default, used by fastMRI)."""
SSIM_K1 = 0.01
"""SSIM luminance constant: ``C1 = (K1 · data_range)²``."""
SSIM_K2 = 0.03
"""SSIM contrast/structure constant: ``C2 = (K2 · data_range)²``."""


def _as_float64(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """Convert one input to a float64 numpy array of shape ``(H, W)`` or ``(slices, H, W)``.

    Raises:
        TypeError: complex, boolean or non-numeric input.
        ValueError: input that is neither 2-D nor 3-D.
    """
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            raise TypeError(f"{name}: complex input ({x.dtype}); metrics are defined on magnitude images, pass x.abs()")
        if x.dtype == torch.bool:
            raise TypeError(f"{name}: expected a real floating-point or integer tensor, got {x.dtype}")
        arr = x.detach().cpu().to(torch.float64).numpy()
    else:
        arr = np.asarray(x)
        if arr.dtype.kind == "c":
            raise TypeError(
                f"{name}: complex input ({arr.dtype}); metrics are defined on magnitude images, pass np.abs(x)"
            )
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"{name}: expected a real floating-point or integer array, got {arr.dtype}")
        arr = arr.astype(np.float64, copy=False)
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name}: expected shape (slices, H, W) or (H, W), got {tuple(arr.shape)}")
    return arr


def _as_pair(gt: np.ndarray | torch.Tensor, pred: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert ``gt``/``pred`` to float64 ``(slices, H, W)`` numpy arrays.

    Raises:
        TypeError: complex or non-numeric input.
        ValueError: wrong number of dims, mismatched shapes, or non-finite values.
    """
    gt_arr = _as_float64(gt, "gt")
    pred_arr = _as_float64(pred, "pred")
    if gt_arr.shape != pred_arr.shape:
        raise ValueError(f"shape mismatch: gt has shape {gt_arr.shape}, pred has shape {pred_arr.shape}")
    for name, arr in (("gt", gt_arr), ("pred", pred_arr)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    if gt_arr.ndim == 2:
        return gt_arr[None], pred_arr[None]
    return gt_arr, pred_arr


def _resolve_data_range(gt: np.ndarray, data_range: float | None) -> float:
    """Return ``data_range`` (default: the volume max of ``gt``), checked to be finite and > 0."""
    value = float(gt.max()) if data_range is None else float(data_range)
    if not (math.isfinite(value) and value > 0):
        source = "gt.max()" if data_range is None else "data_range"
        raise ValueError(f"{source} must be finite and > 0, got {value}")
    return value


def _nmse(gt: np.ndarray, pred: np.ndarray) -> float:
    gt_energy = np.linalg.norm(gt) ** 2
    if gt_energy == 0:
        raise ValueError("nmse is undefined for an all-zero gt (‖gt‖ = 0)")
    return float(np.linalg.norm(gt - pred) ** 2 / gt_energy)


def _psnr(gt: np.ndarray, pred: np.ndarray, data_range: float | None) -> float:
    value_range = _resolve_data_range(gt, data_range)
    mse = float(np.mean((gt - pred) ** 2))
    if mse == 0:
        return math.inf
    return float(10 * np.log10(value_range**2 / mse))


def _ssim(gt: np.ndarray, pred: np.ndarray, data_range: float | None) -> float:
    height, width = gt.shape[-2:]
    if min(height, width) < SSIM_WIN_SIZE:
        raise ValueError(f"ssim needs slices of at least {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE} pixels, got {height}x{width}")
    value_range = _resolve_data_range(gt, data_range)
    # Window of size 1 along the slice axis: scipy skips that axis, so this equals filtering each
    # slice on its own with size 7 (bit for bit), as skimage does slice by slice.
    size = (1, SSIM_WIN_SIZE, SSIM_WIN_SIZE)
    n_window = SSIM_WIN_SIZE**2
    cov_norm = n_window / (n_window - 1)  # sample covariance
    ux = ndimage.uniform_filter(gt, size=size)
    uy = ndimage.uniform_filter(pred, size=size)
    uxx = ndimage.uniform_filter(gt * gt, size=size)
    uyy = ndimage.uniform_filter(pred * pred, size=size)
    uxy = ndimage.uniform_filter(gt * pred, size=size)
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    c1 = (SSIM_K1 * value_range) ** 2
    c2 = (SSIM_K2 * value_range) ** 2
    ssim_map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    pad = (SSIM_WIN_SIZE - 1) // 2
    per_slice = ssim_map[:, pad : height - pad, pad : width - pad].mean(axis=(1, 2))
    return float(per_slice.mean())


def nmse(gt: np.ndarray | torch.Tensor, pred: np.ndarray | torch.Tensor) -> float:
    """Normalised mean squared error ``‖gt − pred‖² / ‖gt‖²`` over the whole volume.

    Source: ``fastmri/evaluate.py::nmse`` (Zbontar et al. 2018).

    Args:
        gt: ground-truth magnitude volume ``(slices, H, W)`` or one slice ``(H, W)``; numpy array
            or torch tensor (detached, moved to CPU), any real float or integer dtype.
        pred: prediction of the same shape.

    Returns:
        NMSE as a Python float (dimensionless, ≥ 0; 0 for identical inputs), computed in float64.

    Raises:
        TypeError: complex input (take ``.abs()`` first) or non-numeric input.
        ValueError: not 2-D/3-D, shape mismatch, non-finite values, or all-zero ``gt``.
    """
    gt_arr, pred_arr = _as_pair(gt, pred)
    return _nmse(gt_arr, pred_arr)


def psnr(gt: np.ndarray | torch.Tensor, pred: np.ndarray | torch.Tensor, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio ``10·log10(data_range² / MSE)`` in dB over the whole volume.

    Equals ``skimage.metrics.peak_signal_noise_ratio(gt, pred, data_range=gt.max())``, which is
    ``fastmri/evaluate.py::psnr`` (Zbontar et al. 2018).

    Args:
        gt: ground-truth magnitude volume ``(slices, H, W)`` or one slice ``(H, W)``; numpy array
            or torch tensor, any real float or integer dtype.
        pred: prediction of the same shape.
        data_range: peak value; default ``gt.max()`` over the whole volume.

    Returns:
        PSNR in dB as a Python float, computed in float64; ``math.inf`` when ``pred == gt``
        exactly (MSE = 0), where skimage would also give ``inf`` (with a divide-by-zero warning).

    Raises:
        TypeError: complex input (take ``.abs()`` first) or non-numeric input.
        ValueError: not 2-D/3-D, shape mismatch, non-finite values, or a data range that is not
            finite and positive (e.g. an all-zero ``gt`` with the default).
    """
    gt_arr, pred_arr = _as_pair(gt, pred)
    return _psnr(gt_arr, pred_arr, data_range)


def ssim(gt: np.ndarray | torch.Tensor, pred: np.ndarray | torch.Tensor, data_range: float | None = None) -> float:
    """Structural similarity, mean over slices of skimage's per-slice SSIM (fastMRI protocol).

    Per slice: uniform 7×7 window, K1 = 0.01, K2 = 0.03, sample covariance (×49/48), SSIM map
    averaged after cropping 3 pixels from each side — skimage's ``structural_similarity``
    defaults. The slice values are averaged with equal weight, as ``fastmri/evaluate.py::ssim``
    does (Zbontar et al. 2018; Wang et al. 2004 for SSIM itself).

    Args:
        gt: ground-truth magnitude volume ``(slices, H, W)`` or one slice ``(H, W)``, with
            ``H, W ≥ 7``; numpy array or torch tensor, any real float or integer dtype.
        pred: prediction of the same shape.
        data_range: dynamic range used in ``C1``/``C2``; default ``gt.max()`` over the whole
            volume (the same value for every slice).

    Returns:
        SSIM as a Python float (1.0 for identical inputs), computed in float64.

    Raises:
        TypeError: complex input (take ``.abs()`` first) or non-numeric input.
        ValueError: not 2-D/3-D, shape mismatch, non-finite values, slices smaller than 7×7, or
            a data range that is not finite and positive.
    """
    gt_arr, pred_arr = _as_pair(gt, pred)
    return _ssim(gt_arr, pred_arr, data_range)


def evaluate_volume(gt: np.ndarray | torch.Tensor, pred: np.ndarray | torch.Tensor) -> dict[str, float]:
    """All three fastMRI metrics of one volume with their default data range (``gt.max()``).

    Args:
        gt: ground-truth magnitude volume ``(slices, H, W)`` or one slice ``(H, W)``.
        pred: prediction of the same shape.

    Returns:
        ``{"nmse": ..., "psnr": ... (dB), "ssim": ...}`` as Python floats.

    Raises:
        TypeError, ValueError: as for :func:`nmse`, :func:`psnr` and :func:`ssim`.
    """
    gt_arr, pred_arr = _as_pair(gt, pred)
    return {
        "nmse": _nmse(gt_arr, pred_arr),
        "psnr": _psnr(gt_arr, pred_arr, None),
        "ssim": _ssim(gt_arr, pred_arr, None),
    }


def aggregate(per_volume: Sequence[dict[str, float]], ddof: int = 1) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each metric over volumes (each volume weighs the same).

    The default ``ddof=1`` is the sample standard deviation, as ``fastmri/evaluate.py``'s
    ``Metrics.stddevs()`` reports it (``runstats.Statistics.stddev()``; fastMRI prints
    ``mean +/- 2·std``); pass ``ddof=0`` for the population standard deviation (``np.std``).
    With no more than ``ddof`` volumes the spread is undefined and reported as NaN.

    Args:
        per_volume: one dict per volume, e.g. from :func:`evaluate_volume`; all with the same keys.
        ddof: delta degrees of freedom of the standard deviation (``0`` or ``1`` in practice).

    Returns:
        ``{metric: {"mean": float, "std": float}}`` with the metrics in the order of the first
        dict. A volume with ``psnr = inf`` (exact reconstruction) makes that mean ``inf`` and
        the std ``nan``.

    Raises:
        ValueError: empty input, dicts with different keys, or a negative ``ddof``.
    """
    if not per_volume:
        raise ValueError("aggregate needs at least one volume")
    if ddof < 0:
        raise ValueError(f"ddof must be >= 0, got {ddof}")
    names = list(per_volume[0])
    for index, scores in enumerate(per_volume):
        if set(scores) != set(names):
            raise ValueError(f"volume {index} has metrics {sorted(scores)}, volume 0 has {sorted(names)}")
    result: dict[str, dict[str, float]] = {}
    for name in names:
        values = np.array([scores[name] for scores in per_volume], dtype=np.float64)
        std = float(values.std(ddof=ddof)) if len(values) > ddof else math.nan
        result[name] = {"mean": float(values.mean()), "std": std}
    return result


@dataclass(frozen=True)
class PairedTTest:
    """Result of a two-sided paired t-test between two methods' per-volume scores.

    Attributes:
        statistic: t statistic of the differences ``a − b`` (``n − 1`` degrees of freedom).
        pvalue: two-sided p-value.
        mean_difference: mean of ``a − b`` (in the metric's units, e.g. dB for PSNR).
        n: number of pairs (volumes).
    """

    statistic: float
    pvalue: float
    mean_difference: float
    n: int


def paired_ttest(
    scores_a: Sequence[float] | np.ndarray | torch.Tensor, scores_b: Sequence[float] | np.ndarray | torch.Tensor
) -> PairedTTest:
    """Two-sided paired t-test of method A vs method B on the same volumes (``scipy.stats.ttest_rel``).

    This is the significance test reported in the SANet paper's Tables I–II. Pair ``i`` must be
    the same volume scored by both methods.

    Args:
        scores_a: 1-D per-volume scores of method A (floats; sequence, numpy array or tensor).
        scores_b: 1-D per-volume scores of method B, same length and order.

    Returns:
        :class:`PairedTTest`. If all differences are equal, scipy returns ``statistic = ±inf``,
        ``pvalue = 0`` (constant non-zero difference) or ``nan``/``nan`` (all differences zero).

    Raises:
        ValueError: inputs not 1-D, of unequal lengths, with fewer than 2 pairs, or non-finite.
    """
    a, b = (
        np.asarray(s.detach().cpu() if isinstance(s, torch.Tensor) else s, dtype=np.float64)
        for s in (scores_a, scores_b)
    )
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shapes {a.shape} and {b.shape}")
    if a.shape != b.shape:
        raise ValueError(f"scores must have equal lengths, got {a.size} and {b.size}")
    if a.size < 2:
        raise ValueError(f"paired t-test needs at least 2 pairs, got {a.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("scores contain non-finite values (NaN or inf)")
    result = stats.ttest_rel(a, b)
    return PairedTTest(
        statistic=float(result.statistic),
        pvalue=float(result.pvalue),
        mean_difference=float(np.mean(a - b)),
        n=int(a.size),
    )


def lowpass(image: np.ndarray | torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """Centred k-space truncation of an image to the central ``shape`` block, intensity-preserving.

    ``ifft2c(T fft2c(image))`` where ``T`` keeps the k-space block of ``shape`` centred on the DC sample (rows
    ``H//2 − h//2 …``, as :func:`accelmri.physics.degrade.lowres`) and multiplies it by ``sqrt(h·w / (H·W))``, so
    a constant image keeps its value. For ``shape = (H/s, W/s)`` this is exactly ``lowres(·, s)``.

    Args:
        image: ``(..., H, W)`` real or complex image (numpy array or tensor), e.g. one coil image or a magnitude.
        shape: ``(h, w)`` with ``1 ≤ h ≤ H`` and ``1 ≤ w ≤ W``.

    Returns:
        ``(..., h, w)`` complex128 numpy array (the low-passed image on the coarser grid).

    Raises:
        ValueError: an image with fewer than 2 dims, or a ``shape`` that is not inside ``(H, W)``.
    """
    tensor = torch.as_tensor(image).detach().cpu()
    if tensor.ndim < 2:
        raise ValueError(f"lowpass: expected an image (..., H, W), got shape {tuple(tensor.shape)}")
    height, width = tensor.shape[-2:]
    h, w = int(shape[0]), int(shape[1])
    if not (1 <= h <= height and 1 <= w <= width):
        raise ValueError(f"lowpass: band {shape} is not inside the image {height}x{width}")
    kspace = fft2c(tensor.to(torch.complex128))
    row0, col0 = height // 2 - h // 2, width // 2 - w // 2
    block = kspace[..., row0 : row0 + h, col0 : col0 + w] * math.sqrt(h * w / (height * width))
    return ifft2c(block).numpy()


def intensity_drift_per_slice(
    output: np.ndarray | torch.Tensor, lr_reference: np.ndarray | torch.Tensor, scale: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice intensity drift of a restored volume against its input, in the input's band.

    The output ``(S, H, W)`` is low-passed to the LR grid ``(H/s, W/s)`` by centred k-space truncation
    (:func:`accelmri.physics.degrade.lowres`) and, when ``lr_reference`` is smaller still (the fully sampled
    calibration band of an undersampled input), further to its shape (:func:`lowpass`); its magnitude ``L`` is
    compared with ``lr_reference`` ``R`` inside the head ``R > 0.1·max(R)`` (per slice, :data:`HEAD_THRESHOLD`).

    Args:
        output: restored magnitude volume ``(S, H, W)`` (or one slice ``(H, W)``), real, any units.
        lr_reference: the input's magnitude in the band it measured, ``(S, h, w)`` (or ``(h, w)``), same units,
            with ``h ≤ H/s`` and ``w ≤ W/s``: the degraded input itself for a fully sampled LR acquisition
            (super-resolution).
        scale: the SR scale ``s`` of the acquisition (positive int dividing ``H`` and ``W``; 1 for none).

    Returns:
        ``(relative, offset)``, two float64 arrays ``(S,)``: ``relative = mean_head |L − R| / mean_head R``
        (dimensionless; multiply by 100 for %) and ``offset = mean_head (L − R)`` in the input's grey levels;
        both NaN for a slice whose reference is empty (``max R ≤ 0``).

    Raises:
        TypeError: complex or non-numeric input.
        ValueError: not 2-D/3-D, different slice counts, non-finite values, a scale that does not divide
            ``(H, W)``, or a reference larger than the LR grid.
    """
    out = _as_float64(output, "output")
    ref = _as_float64(lr_reference, "lr_reference")
    out, ref = (out[None] if out.ndim == 2 else out), (ref[None] if ref.ndim == 2 else ref)
    if out.shape[0] != ref.shape[0]:
        raise ValueError(f"output has {out.shape[0]} slices, lr_reference {ref.shape[0]}")
    for name, arr in (("output", out), ("lr_reference", ref)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains non-finite values (NaN or inf)")
    low = ifft2c(lowres(fft2c(torch.from_numpy(out).to(torch.complex128)), scale)).numpy()
    if ref.shape[-2] > low.shape[-2] or ref.shape[-1] > low.shape[-1]:
        raise ValueError(f"lr_reference {ref.shape[-2:]} is larger than the LR grid {low.shape[-2:]} of scale {scale}")
    if ref.shape[-2:] != low.shape[-2:]:
        low = lowpass(low, (ref.shape[-2], ref.shape[-1]))
    magnitude = np.abs(low)
    relative = np.full(ref.shape[0], math.nan)
    offset = np.full(ref.shape[0], math.nan)
    for index, (lp, reference) in enumerate(zip(magnitude, ref, strict=True)):
        peak = float(reference.max())
        if peak <= 0:
            continue
        head = reference > HEAD_THRESHOLD * peak
        difference = lp[head] - reference[head]
        relative[index] = float(np.abs(difference).mean() / reference[head].mean())
        offset[index] = float(difference.mean())
    return relative, offset


def intensity_drift(
    output: np.ndarray | torch.Tensor, lr_reference: np.ndarray | torch.Tensor, scale: int
) -> float:
    """Intensity drift of a restored volume against its input: mean over slices of the relative drift.

    The relative drift of a slice is ``mean_head |lowpass(output) − lr_reference| / mean_head lr_reference``
    (:func:`intensity_drift_per_slice`: the output low-passed to the input's band by centred k-space truncation,
    the head ``lr_reference > 0.1·max``). It is ~0 for an output whose low frequencies are the input's (sinc
    interpolation, a data-consistent reconstruction) and ``c / mean_head(lr_reference)`` for an output shifted by
    a constant ``c``: a restoration that brightens, darkens or reshades the image shows here even when its
    details look right.

    Args:
        output: restored magnitude volume ``(S, H, W)`` or slice ``(H, W)``.
        lr_reference: the input's magnitude in its measured band, ``(S, h, w)`` or ``(h, w)`` (the degraded
            input of a super-resolution acquisition, ``h = H/s``).
        scale: the acquisition's SR scale ``s`` (1 for none).

    Returns:
        The mean relative drift over the slices with a non-empty reference (dimensionless, ``≥ 0``; ×100 for
        %), NaN when every reference slice is empty.

    Raises:
        TypeError, ValueError: as for :func:`intensity_drift_per_slice`.
    """
    relative, _ = intensity_drift_per_slice(output, lr_reference, scale)
    finite = relative[np.isfinite(relative)]
    return float(finite.mean()) if finite.size else math.nan
