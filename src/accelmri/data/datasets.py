"""Slice datasets that simulate an acquisition and yield the batch contract (:class:`~accelmri.data.sample.Sample`).

Every degradation goes through one :class:`~accelmri.physics.degrade.Acquisition`: the fully sampled HR
k-space of a slice is truncated (scale ``s``), undersampled (``R``) and made noisy, exactly as the
scanner would have acquired it. Magnitude-only inputs (NIfTI, DICOM) become k-space through ``fft2c`` of
the magnitude image: they carry no real phase (docs/data.md).

Tasks (the papers' settings):

=====================  ============================  ==========================================
task                   acquisition                   papers
=====================  ============================  ==========================================
``reconstruction``     ``R > 1``, ``s = 1``          MoDL / CG-SENSE baselines (paper 001)
``super_resolution``   ``R = 1``, ``s > 1``          MINet, SANet, FASR-Net (papers 002–004)
``joint``              ``R > 1``, ``s > 1``          T2Net (000), PGD-DEQ + RRDB-SFT (001)
=====================  ============================  ==========================================

Any task may add a reference contrast (multi-contrast guidance): the HR magnitude of the same subject and
slice, on the target grid.

Masks: training draws a fresh mask per call (seeded from torch's RNG, so ``torch.manual_seed`` and the
DataLoader worker seeding make runs reproducible); validation and test masks are fixed per slice, seeded
from the file name and slice index (design/data.md).
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from accelmri.data.errors import DataError
from accelmri.data.pairing import ContrastPair, align_reference
from accelmri.data.readers import read_volume
from accelmri.data.readers.fastmri import FastMRIFile
from accelmri.data.sample import Sample
from accelmri.data.volume import ImageVolume, KspaceVolume
from accelmri.physics.coils import rss
from accelmri.physics.degrade import Acquisition
from accelmri.physics.fft import fft2c, ifft2c
from accelmri.physics.sensitivity import espirit_maps

__all__ = ["TASKS", "SliceDataset", "SliceSource", "check_task", "open_pair", "open_source"]

TASKS = ("reconstruction", "super_resolution", "joint")
Task = Literal["reconstruction", "super_resolution", "joint"]
Normalization = Literal["scale", "meanstd"]


def check_task(task: str, acquisition: Acquisition) -> None:
    """Check that ``acquisition`` matches ``task`` (see the module table).

    Raises:
        ValueError: unknown task, or an acquisition that does not degrade the way the task needs.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    undersampled, truncated = acquisition.acceleration > 1, acquisition.scale > 1
    if task == "reconstruction" and (truncated or not undersampled):
        raise ValueError(f"task 'reconstruction' needs acceleration > 1 and scale 1, got {acquisition}")
    if task == "super_resolution" and (undersampled or not truncated):
        raise ValueError(f"task 'super_resolution' needs acceleration 1 and scale > 1, got {acquisition}")
    if task == "joint" and not (undersampled and truncated):
        raise ValueError(f"task 'joint' needs acceleration > 1 and scale > 1, got {acquisition}")


@dataclass(frozen=True, eq=False)
class SliceSource:
    """One volume seen slice by slice: a lazily read fastMRI file, an in-memory k-space volume, or a
    magnitude image volume (k-space = ``fft2c`` of the image, single coil).

    Attributes:
        volume: the underlying reader object.
        subject: subject identifier (splits are made by subject).
        contrast: contrast name, if known.
    """

    volume: FastMRIFile | KspaceVolume | ImageVolume
    subject: str
    contrast: str | None = None

    @property
    def path(self) -> Path:
        return Path(self.volume.path)

    @property
    def num_slices(self) -> int:
        return self.volume.num_slices

    def kspace(self, index: int) -> torch.Tensor:
        """Fully sampled HR k-space of one slice, ``(C, H, W)`` complex64 (``C = 1`` for image volumes)."""
        if isinstance(self.volume, FastMRIFile):
            return torch.from_numpy(np.ascontiguousarray(self.volume.read_slice(index)[0]))
        if isinstance(self.volume, KspaceVolume):
            return torch.from_numpy(np.ascontiguousarray(self.volume.kspace[index]))
        image = torch.from_numpy(np.ascontiguousarray(self.volume.data[index], dtype=np.float32))
        return fft2c(image.to(torch.complex64))[None]


def open_source(path: str | Path, subject: str | None = None, contrast: str | None = None) -> SliceSource:
    """Open a file (or DICOM folder) as a :class:`SliceSource`.

    fastMRI HDF5 files are read lazily slice by slice (:class:`FastMRIFile`); every other format is read whole
    with :func:`accelmri.data.readers.read_volume`. The subject defaults to the file's ``patient_id`` /
    ``subject_id`` attribute, else the file stem; the contrast to the reader's (IXI names, fastMRI
    ``acquisition``).

    Raises:
        DataError: from the readers (missing, corrupt or unsupported files).
    """
    file = Path(path)
    volume: FastMRIFile | KspaceVolume | ImageVolume
    if file.is_file() and file.suffix.lower() in (".h5", ".hdf5"):
        try:
            volume = FastMRIFile(file)
        except DataError:
            volume = read_volume(file)  # an ISMRMRD file, or a clear error from read_volume
    else:
        volume = read_volume(file)
    attrs = volume.attrs
    found_subject = attrs.get("patient_id") or attrs.get("subject_id") or file.name.split(".")[0]
    found_contrast = getattr(volume, "contrast", None) or attrs.get("acquisition")
    return SliceSource(volume, subject=subject or str(found_subject), contrast=contrast or found_contrast)


def open_pair(pair: ContrastPair) -> tuple[SliceSource, SliceSource]:
    """Open a target/reference pair; image volumes on different grids are resampled onto the target grid.

    Raises:
        DataError: unreadable files, or a reference that does not overlap the target
            (:func:`accelmri.data.pairing.align_reference`).
    """
    target = open_source(pair.target, pair.subject, pair.target_contrast)
    reference = open_source(pair.reference, pair.subject, pair.reference_contrast)
    if isinstance(target.volume, ImageVolume) and isinstance(reference.volume, ImageVolume):
        aligned = align_reference(target.volume, reference.volume)
        reference = SliceSource(aligned, subject=reference.subject, contrast=reference.contrast)
    return target, reference


def _crop_center(x: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    if size is None:
        return x
    h, w = x.shape[-2:]
    ch, cw = size
    if ch > h or cw > w:
        raise ValueError(f"crop {size} is larger than the image {(h, w)}")
    top, left = h // 2 - ch // 2, w // 2 - cw // 2
    return x[..., top : top + ch, left : left + cw]


def _slice_seed(path: Path, index: int) -> int:
    """Deterministic per-slice seed from the file name and slice index (validation/test masks)."""
    return zlib.crc32(f"{path.name}:{index}".encode())


class SliceDataset(Dataset[Sample]):
    """Slices of target volumes (optionally paired with a reference contrast) degraded by an :class:`Acquisition`.

    Args:
        targets: the target-contrast volumes.
        task: ``reconstruction``, ``super_resolution`` or ``joint``.
        acquisition: how the target is acquired (mask kind, R, centre fraction, scale s, noise, seed).
        references: optional reference-contrast volumes, one per target, already on the target grid
            (see :func:`accelmri.data.pairing.align_reference`); slices are paired by index over
            ``min(n_target, n_reference)`` (fastMRI multi-contrast rule).
        train: training draws a random mask per call; otherwise masks are fixed per slice.
        crop: optional centre crop ``(H, W)`` of the complex HR image before degradation (the MINet/fastMRI
            recipe crops to 320²). ``H`` and ``W`` must be divisible by the scale.
        sens_maps: ``"espirit"`` to estimate coil maps on the LR grid from the fully sampled calibration
            region (cached per slice; the calibration region is fully sampled in every mask, so the maps do
            not depend on the random mask), or ``None``.
        normalization: ``"scale"`` divides images and k-space by the mean of the zero-filled input magnitude
            (``norm_mean = 0``: k-space stays consistent with the images); ``"meanstd"`` is the MINet/SANet
            recipe ``(x − mean)/std`` with the input's statistics (k-space divided by ``std`` only).
        calib_width: ESPIRiT calibration width on the LR grid (default: the mask's centre lines).
        slices: optional ``(volume index, slice index)`` list restricting the dataset (e.g. central slices).
        maps_cache_size: number of slices whose ESPIRiT maps are kept in memory.

    Raises:
        ValueError: bad task/acquisition combination, unequal numbers of targets and references, or a
            reference volume whose slice grid differs from its target's.
    """

    def __init__(
        self,
        targets: Sequence[SliceSource],
        task: Task,
        acquisition: Acquisition,
        references: Sequence[SliceSource] | None = None,
        train: bool = False,
        crop: tuple[int, int] | None = None,
        sens_maps: Literal["espirit"] | None = None,
        normalization: Normalization = "scale",
        calib_width: int | None = None,
        slices: Sequence[tuple[int, int]] | None = None,
        maps_cache_size: int = 256,
    ) -> None:
        check_task(task, acquisition)
        if references is not None and len(references) != len(targets):
            raise ValueError(f"{len(targets)} targets but {len(references)} references")
        if normalization not in ("scale", "meanstd"):
            raise ValueError(f"normalization must be 'scale' or 'meanstd', got {normalization!r}")
        if crop is not None and (crop[0] % acquisition.scale or crop[1] % acquisition.scale):
            raise ValueError(f"crop {crop} is not divisible by the scale {acquisition.scale}")
        self.targets = list(targets)
        self.references = list(references) if references is not None else None
        self.task = task
        self.acquisition = acquisition
        self.train = train
        self.crop = crop
        self.sens_maps = sens_maps
        self.normalization = normalization
        self.calib_width = calib_width
        self.maps_cache_size = maps_cache_size
        self._maps_cache: OrderedDict[tuple[int, int], torch.Tensor] = OrderedDict()
        if slices is None:
            slices = [(v, s) for v in range(len(self.targets)) for s in range(self._paired_slices(v))]
        self.slices = list(slices)

    def _paired_slices(self, volume: int) -> int:
        n = self.targets[volume].num_slices
        return n if self.references is None else min(n, self.references[volume].num_slices)

    def __len__(self) -> int:
        return len(self.slices)

    def _hr_kspace(self, source: SliceSource, index: int) -> torch.Tensor:
        kspace = source.kspace(index)
        if not torch.isfinite(torch.view_as_real(kspace)).all():
            raise DataError(source.path, f"slice {index} contains NaN or Inf")
        return kspace if self.crop is None else fft2c(_crop_center(ifft2c(kspace), self.crop))

    def _maps(self, key: tuple[int, int], lr_kspace: torch.Tensor) -> torch.Tensor:
        maps = self._maps_cache.get(key)
        if maps is None:
            lines = round(self.acquisition.center_fraction * lr_kspace.shape[-1])
            calib = self.calib_width or lines
            maps = espirit_maps(lr_kspace, calib_width=calib, kernel_size=min(6, calib // 2))
            self._maps_cache[key] = maps
            if len(self._maps_cache) > self.maps_cache_size:
                self._maps_cache.popitem(last=False)
        return maps

    def _normalize(self, image: torch.Tensor, mean: float, std: float) -> torch.Tensor:
        return ((image - mean) / std).to(torch.float32)[None]

    def _statistics(self, lr_input: torch.Tensor) -> tuple[float, float]:
        eps = torch.finfo(torch.float32).tiny
        if self.normalization == "scale":
            return 0.0, max(float(lr_input.mean()), eps)
        return float(lr_input.mean()), max(float(lr_input.std()), eps)

    def __getitem__(self, item: int) -> Sample:
        volume, index = self.slices[item]
        source = self.targets[volume]
        kspace_hr = self._hr_kspace(source, index)
        seed = int(torch.randint(0, 2**31 - 1, ())) if self.train else _slice_seed(source.path, index)
        acquired = self.acquisition.apply(kspace_hr, seed=seed)
        multicoil = kspace_hr.shape[0] > 1
        target = rss(ifft2c(kspace_hr)) if multicoil else ifft2c(kspace_hr)[0].abs()
        lr_input, lr_target = acquired.zero_filled.abs(), acquired.lr_image.abs()
        mean, std = self._statistics(lr_input)
        maps = None
        if self.sens_maps == "espirit" and multicoil:
            maps = self._maps((volume, index), acquired.kspace)
        reference = None
        if self.references is not None:
            ref_source = self.references[volume]
            ref_k = self._hr_kspace(ref_source, index)
            ref_image = rss(ifft2c(ref_k)) if ref_k.shape[0] > 1 else ifft2c(ref_k)[0].abs()
            if ref_image.shape != target.shape:
                raise DataError(
                    ref_source.path, f"reference slice {tuple(ref_image.shape)} is not on the target grid "
                    f"{tuple(target.shape)} of {source.path.name}"
                )
            ref_mean, ref_std = self._statistics(ref_image)
            reference = self._normalize(ref_image, ref_mean, ref_std)
        return Sample(
            target=self._normalize(target, mean, std),
            lr_input=self._normalize(lr_input, mean, std),
            lr_target=self._normalize(lr_target, mean, std),
            kspace=(acquired.kspace / std).to(torch.complex64),
            mask=acquired.mask[None],
            norm_mean=torch.tensor(mean, dtype=torch.float32),
            norm_std=torch.tensor(std, dtype=torch.float32),
            reference=reference,
            sens_maps=maps,
            meta={
                "file": str(source.path),
                "slice": index,
                "subject": source.subject,
                "contrast": source.contrast,
                "acceleration": acquired.acceleration,
                "scale": acquired.scale,
            },
        )
