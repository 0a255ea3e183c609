"""fastMRI's reconstruction benchmark, exactly: ``data.protocol: fastmri`` (docs/fastmri.md).

The data path of fastMRI's ``SliceDataset`` + ``UnetDataTransform`` / ``VarNetDataTransform``
(``facebookresearch/fastMRI`` v0.3.0, ``fastmri/data/mri_data.py`` and ``transforms.py``), per slice of a fastMRI
HDF5 file with ``kspace`` ``(C, H, W)`` (readout ``H`` oversampled, e.g. 640 × 368):

1. mask: :func:`~accelmri.physics.masks.fastmri_mask` on the ``W`` acquired phase-encode lines, before any crop;
   validation and test seed it per volume from the file name (:func:`~accelmri.physics.masks.fastmri_volume_seed`,
   one mask for every slice of a file), training draws a new one per call (seeded from torch's RNG, so seeded runs
   repeat); columns outside the header's ``encodingLimits`` (``padding_left`` / ``padding_right``, brain files)
   are unmasked as in ``VarNetDataTransform`` (they hold zeros in the files, so the masked k-space is the same
   as ``UnetDataTransform``'s);
2. zero-filled reconstruction ``ifft2c`` of the masked k-space, complex centre crop to the crop size, magnitude,
   root-sum-of-squares over coils (multi-coil);
3. crop size: the file target's shape, else the header's ``recon_size`` (320 × 320); ``(W, W)`` when ``W`` is
   smaller than its width (fastMRI's "FLAIR 203" rule); crops start at ``(N − n) // 2``, fastMRI's
   ``center_crop``;
4. target: the file's own ``reconstruction_rss`` (multi-coil) / ``reconstruction_esc`` (single-coil), centre
   cropped to the crop size; a file without one gets the RSS (magnitude) of its fully sampled k-space, cropped.

Scores are then fastMRI's ``evaluate.py`` (:mod:`accelmri.metrics`, per volume, ``maxval = target.max()``).
fastMRI's U-Net transform also clamps its normalised images to ±6; this dataset does not (the clamp is a training
choice of that model, not part of the benchmark).

Test/challenge files (already undersampled: a ``mask`` dataset, no target) are refused by the dataset;
:func:`challenge_sample` puts their slices through steps 2–3 with the file's own mask instead of step 1
(``accelmri restore`` writes fastMRI's submission layout from them).

Coil maps (``sens_maps="espirit"``, ``data.sens_maps: espirit``; multi-coil files only) are not part of fastMRI's
data path: they are :func:`~accelmri.physics.sensitivity.calibrated_espirit_maps` of the masked k-space on the
acquired grid, calibrated on the mask's fully sampled centre columns (:func:`calibration_lines`), for the k-space
models that need them (``cg_sense``, ``modl``: they crop their output to the target).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from accelmri.data.datasets import Normalization, SliceSource, refuse_challenge_file
from accelmri.data.errors import DataError
from accelmri.data.readers.fastmri import FastMRIFile
from accelmri.data.sample import Sample, normalization_statistics
from accelmri.physics.coils import rss
from accelmri.physics.fft import ifft2c
from accelmri.physics.masks import fastmri_mask, fastmri_volume_seed, realised_acceleration
from accelmri.physics.sensitivity import calibrated_espirit_maps

__all__ = [
    "SENS_MAPS",
    "FastMRIProtocolDataset",
    "calibration_lines",
    "challenge_sample",
    "fastmri_center_crop",
    "fastmri_crop_size",
]

#: The values of ``sens_maps`` (:class:`FastMRIProtocolDataset`, :func:`challenge_sample`).
SENS_MAPS = (None, "espirit")


def fastmri_center_crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """fastMRI's centre crop of the last two dims: rows from ``(H − h) // 2``, columns from ``(W − w) // 2``.

    Raises:
        ValueError: if ``size`` is not within ``(0, H] × (0, W]``.
    """
    height, width = x.shape[-2:]
    if not (0 < size[0] <= height and 0 < size[1] <= width):
        raise ValueError(f"crop {size} does not fit the image {(height, width)}")
    top, left = (height - size[0]) // 2, (width - size[1]) // 2
    return x[..., top : top + size[0], left : left + size[1]]


def fastmri_crop_size(file: FastMRIFile) -> tuple[int, int]:
    """The crop of fastMRI's transforms for ``file``: its target's shape, else ``recon_size[:2]``, and ``(W, W)``
    when the k-space width ``W`` is smaller than the crop's width.

    Raises:
        DataError: the file has neither a target nor an ``ismrmrd_header`` with a recon size.
    """
    if file.target_shape is not None:
        size = file.target_shape
    elif file.recon_size is not None:
        size = file.recon_size[:2]
    else:
        raise DataError(file.path, "neither a reconstruction_rss/esc target nor an ismrmrd_header recon size: the "
                        "fastMRI protocol cannot tell the image size to score")
    width = file.kspace_shape[-1]
    return (width, width) if width < size[1] else (int(size[0]), int(size[1]))


def calibration_lines(columns: torch.Tensor, num_low_frequencies: int | None = None) -> int:
    """ESPIRiT's ``lines`` for a column mask: the widest calibration band inside its fully sampled centre.

    :func:`~accelmri.physics.sensitivity.espirit_maps` reads the ``L`` columns from ``W // 2 − L // 2``, while
    fastMRI's masks sample their ``n_low`` centre columns from ``(W − n_low + 1) // 2``; for an odd ``W`` and an even
    ``n_low`` these bands are one column apart. So ``L`` is the widest band of that placement inside the contiguous
    run of sampled columns through ``W // 2`` (sampled columns next to the centre band are fully sampled too), at
    most ``num_low_frequencies``.

    Args:
        columns: ``(W,)`` 0/1 column mask (any real dtype).
        num_low_frequencies: the mask's fully sampled centre columns (fastMRI's ``num_low_frequencies``, a challenge
            file's ``num_low_frequency``); ``None``: the run through ``W // 2`` alone decides.

    Returns:
        ``L ≥ 0`` columns; 0 when column ``W // 2`` is not sampled or ``num_low_frequencies`` is 0.
    """
    sampled = columns.reshape(-1).bool().tolist()
    centre = len(sampled) // 2
    if not sampled[centre]:
        return 0
    left = right = centre
    while left > 0 and sampled[left - 1]:
        left -= 1
    while right + 1 < len(sampled) and sampled[right + 1]:
        right += 1
    # The band [centre − L // 2, centre − L // 2 + L) lies in [left, right]: L // 2 ≤ centre − left and
    # (L − 1) // 2 ≤ right − centre.
    lines = min(2 * (centre - left) + 1, 2 * (right - centre) + 2)
    return lines if num_low_frequencies is None else max(min(lines, num_low_frequencies), 0)


class FastMRIProtocolDataset(Dataset[Sample]):
    """Slices of fastMRI files through fastMRI's own reconstruction data path (module docstring).

    Per-sample fields (the :class:`~accelmri.data.sample.Sample` contract with one difference: k-space and mask stay
    on the acquired grid ``(H, W)``, while the images are on the crop grid ``(h, w)``, e.g. 640 × 368 and 320 × 320;
    k-space models crop their output to ``target``'s size, as fastMRI's VarNet does):

    - ``target`` ``(1, h, w)``: the file's target (step 4), normalised;
    - ``lr_input`` ``(1, h, w)``: the zero-filled reconstruction (step 2), normalised;
    - ``lr_target`` ``(1, h, w)``: the same of the fully sampled k-space, normalised;
    - ``kspace`` ``(C, H, W)`` complex64: the masked k-space divided by ``norm_std``; ``mask`` ``(1, H, W)``;
    - ``sens_maps`` ``(C, H, W)`` complex64 on the acquired grid with ``sens_maps="espirit"`` and ``C > 1`` (else
      ``None``): ESPIRiT maps of the masked k-space calibrated on the mask's ``num_low_frequencies`` centre
      columns (:func:`calibration_lines`), ``Σ_c |S_c|² = 1`` inside the object and 0 outside; computed per
      call, not cached (a 15-coil 640 × 368 slice's maps take 28 MB);
    - ``meta``: ``file``, ``slice``, ``subject``, ``contrast``, ``acceleration`` (realised, over ``W``), ``scale``
      (1), ``num_low_frequencies``, ``crop_size``.

    Args:
        targets: fastMRI HDF5 volumes (:class:`~accelmri.data.readers.fastmri.FastMRIFile` sources).
        mask_type: fastMRI's ``mask_type`` (:data:`~accelmri.physics.masks.FASTMRI_MASK_TYPES`).
        center_fractions: fastMRI's ``center_fractions``.
        accelerations: fastMRI's ``accelerations`` (one pair is drawn per mask).
        train: a new mask per call (else one per volume, seeded from the file name).
        normalization: ``"scale"`` (divide by the mean of ``lr_input``) or ``"meanstd"`` (``(x − mean) / std`` of
            ``lr_input``, fastMRI's ``normalize_instance`` without its ``eps = 1e-11`` and clamp).
        slices: optional ``(volume index, slice index)`` list (default: every slice).
        sens_maps: ``"espirit"`` for coil maps of multi-coil files, or ``None`` (:data:`SENS_MAPS`).

    Raises:
        DataError: a target that is not a fastMRI HDF5 file, a test/challenge file (already undersampled), or a
            file without a target or recon size; on reading a slice, with ``sens_maps="espirit"``, a mask without
            a sampled centre column ``W // 2``.
        ValueError: from :func:`~accelmri.physics.masks.fastmri_mask` for invalid mask parameters (checked on a
            368-line mask at construction), an unknown ``normalization`` or ``sens_maps``.
    """

    def __init__(
        self,
        targets: Sequence[SliceSource],
        mask_type: str,
        center_fractions: Sequence[float],
        accelerations: Sequence[float],
        train: bool = False,
        normalization: Normalization = "scale",
        slices: Sequence[tuple[int, int]] | None = None,
        sens_maps: str | None = None,
    ) -> None:
        fastmri_mask(mask_type, center_fractions, accelerations, (1, 368, 2), seed=0)
        if normalization not in ("scale", "meanstd"):
            raise ValueError(f"normalization must be 'scale' or 'meanstd', got {normalization!r}")
        _check_sens_maps(sens_maps)
        for source in targets:
            if not isinstance(source.volume, FastMRIFile):
                raise DataError(source.path, "data.protocol: fastmri needs fastMRI HDF5 files (kspace, "
                                "ismrmrd_header, reconstruction_rss/esc)")
            refuse_challenge_file(source)
            fastmri_crop_size(source.volume)
        self.targets = list(targets)
        self.mask_type = mask_type
        self.center_fractions = tuple(center_fractions)
        self.accelerations = tuple(accelerations)
        self.train = train
        self.normalization = normalization
        self.sens_maps = sens_maps
        if slices is None:
            slices = [(v, s) for v, source in enumerate(self.targets) for s in range(source.num_slices)]
        self.slices = list(slices)

    def __len__(self) -> int:
        return len(self.slices)

    def mask(self, file: FastMRIFile, seed: int | tuple[int, ...]) -> tuple[torch.Tensor, int]:
        """The ``(W,)`` float32 column mask of ``file`` for ``seed`` (encoding-limit padding unmasked) and fastMRI's
        ``num_low_frequencies``."""
        width = file.kspace_shape[-1]
        mask, n_low = fastmri_mask(self.mask_type, self.center_fractions, self.accelerations,
                                   (file.kspace_shape[-2], width, 2), seed=seed)
        return _unmask_padding(file, mask.reshape(width)), n_low

    def __getitem__(self, item: int) -> Sample:
        volume, index = self.slices[item]
        source = self.targets[volume]
        file = source.volume
        kspace_np, target_np = file.read_slice(index)
        kspace = torch.from_numpy(np.ascontiguousarray(kspace_np))
        seed = int(torch.randint(0, 2**31 - 1, ())) if self.train else fastmri_volume_seed(source.path.name)
        columns, n_low = self.mask(file, seed)
        if not columns.any():
            raise DataError(source.path, "the mask samples no column inside the encoding limits")
        crop = fastmri_crop_size(file)
        lr_target = _magnitude(fastmri_center_crop(ifft2c(kspace), crop))
        target = lr_target if target_np is None else fastmri_center_crop(torch.from_numpy(target_np), crop)
        return _protocol_sample(source, index, kspace, columns, n_low, self.normalization, self.sens_maps, target,
                                lr_target)


def challenge_sample(
    source: SliceSource, index: int, normalization: Normalization = "scale", sens_maps: str | None = None
) -> Sample:
    """Slice ``index`` of a fastMRI test/challenge file through fastMRI's data path with the file's own mask.

    The k-space is masked with the file's ``mask`` dataset
    (:meth:`~accelmri.data.readers.fastmri.FastMRIFile.read_mask`; no second mask), with the columns outside the
    header's ``encodingLimits`` unmasked as in fastMRI's ``VarNetDataTransform``; the zero-filled image is cropped
    to :func:`fastmri_crop_size` (the file's ``recon_size``, 320 × 320) as in :class:`FastMRIProtocolDataset`.
    There is no ground truth: ``target`` is zeros and ``lr_target`` equals ``lr_input`` (as
    :meth:`~accelmri.data.sample.Sample.from_tensors` does).

    Args:
        source: a :class:`~accelmri.data.readers.fastmri.FastMRIFile` source with
            :attr:`~accelmri.data.readers.fastmri.FastMRIFile.challenge` set.
        index: the slice.
        normalization: ``"scale"`` or ``"meanstd"`` (the checkpoint's ``data.normalization``).
        sens_maps: ``"espirit"`` for coil maps of multi-coil files, or ``None`` (the checkpoint's
            ``data.sens_maps``; :data:`SENS_MAPS`).

    Returns:
        A :class:`~accelmri.data.sample.Sample` with the fields of :class:`FastMRIProtocolDataset`: images
        ``(1, h, w)`` float32 on the crop grid, ``kspace`` ``(C, H, W)`` complex64 and ``mask`` ``(1, H, W)`` on the
        acquired grid; ``meta["num_low_frequencies"]`` is the file's ``num_low_frequency`` attribute (``None``
        without it). With ``sens_maps="espirit"`` and ``C > 1``, ``sens_maps`` ``(C, H, W)`` complex64 on the
        acquired grid, calibrated on the ``num_low_frequency`` centre columns (without the attribute: the run of
        sampled columns through ``W // 2``; :func:`calibration_lines`); else ``None``.

    Raises:
        DataError: naming the file: not a fastMRI test/challenge file, a bad ``mask``, a mask without a column
            inside the encoding limits, no recon size, an unreadable slice, or with ``sens_maps="espirit"`` no
            sampled centre column ``W // 2`` (or ``num_low_frequency`` 0).
        ValueError: ``sens_maps`` other than ``None`` / ``"espirit"``.
    """
    _check_sens_maps(sens_maps)
    file = source.volume
    if not isinstance(file, FastMRIFile) or not file.challenge:
        raise DataError(source.path, "not a fastMRI test/challenge file (no 'mask' dataset)")
    kspace_np, _ = file.read_slice(index)
    kspace = torch.from_numpy(np.ascontiguousarray(kspace_np))
    columns = _unmask_padding(file, torch.from_numpy(file.read_mask()))
    if not columns.any():
        raise DataError(source.path, "its 'mask' samples no column inside the encoding limits")
    n_low = file.attrs.get("num_low_frequency")
    return _protocol_sample(source, index, kspace, columns, None if n_low is None else int(n_low), normalization,
                            sens_maps)


def _check_sens_maps(sens_maps: str | None) -> None:
    """Refuse a ``sens_maps`` that is not one of :data:`SENS_MAPS` (``ValueError``)."""
    if sens_maps not in SENS_MAPS:
        raise ValueError(f"sens_maps must be None or 'espirit', got {sens_maps!r}")


def _unmask_padding(file: FastMRIFile, columns: torch.Tensor) -> torch.Tensor:
    """``columns`` ``(W,)`` with the columns outside the file's ``encodingLimits`` set to 0 (a copy)."""
    columns = columns.clone()
    if file.acquired_columns is not None:
        left, right = file.acquired_columns
        columns[: max(left, 0)] = 0
        columns[max(right, 0) :] = 0
    return columns


def _protocol_sample(
    source: SliceSource,
    index: int,
    kspace: torch.Tensor,
    columns: torch.Tensor,
    n_low: int | None,
    normalization: Normalization,
    sens_maps: str | None,
    target: torch.Tensor | None = None,
    lr_target: torch.Tensor | None = None,
) -> Sample:
    """Steps 2–4 of the module docstring for one slice: ``kspace`` ``(C, H, W)`` masked by ``columns`` ``(W,)``,
    zero-filled, cropped; ``target`` / ``lr_target`` ``(h, w)`` in the file's units (``None``: no ground truth,
    ``target`` zeros and ``lr_target`` the zero-filled image); ``sens_maps="espirit"`` adds the ESPIRiT maps of
    the masked k-space (``C > 1``; a :class:`DataError` without a sampled centre column)."""
    file = source.volume
    masked = kspace * columns + 0.0
    maps = None
    if sens_maps == "espirit" and kspace.shape[0] > 1:
        lines = calibration_lines(columns, n_low)
        if lines < 1:
            raise DataError(source.path, f"slice {index}: data.sens_maps: espirit calibrates on the fully sampled "
                            f"centre, but the mask samples no centre band through column {columns.numel() // 2} "
                            f"(num_low_frequencies {n_low})")
        # fastMRI's masks are 1-D (whole columns): the readout-rectangle rule of espirit_calibration's 1-D kinds.
        maps = calibrated_espirit_maps(masked, mask_kind="equispaced", lines=lines)
    crop = fastmri_crop_size(file)
    lr_input = _magnitude(fastmri_center_crop(ifft2c(masked), crop))
    mean, std = normalization_statistics(lr_input, normalization)

    def normalize(image: torch.Tensor) -> torch.Tensor:
        return ((image - mean) / std).to(torch.float32)[None]

    return Sample(
        target=torch.zeros(1, *crop) if target is None else normalize(target),
        lr_input=normalize(lr_input),
        lr_target=normalize(lr_input if lr_target is None else lr_target),
        kspace=(masked / std).to(torch.complex64),
        mask=columns.expand(kspace.shape[-2], -1)[None].contiguous(),
        sens_maps=maps,
        norm_mean=torch.tensor(mean, dtype=torch.float32),
        norm_std=torch.tensor(std, dtype=torch.float32),
        meta={
            "file": str(source.path),
            "slice": index,
            "subject": source.subject,
            "contrast": source.contrast,
            "acceleration": realised_acceleration(columns[None]),
            "scale": 1,
            "num_low_frequencies": n_low,
            "crop_size": crop,
        },
    )


def _magnitude(coil_images: torch.Tensor) -> torch.Tensor:
    """``(C, h, w)`` complex coil images → ``(h, w)`` magnitude: RSS for ``C > 1``, else ``|x|``."""
    return rss(coil_images) if coil_images.shape[0] > 1 else coil_images[0].abs()
