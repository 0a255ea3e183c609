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

Random patches (``patch_size``, super-resolution training, like BasicSR's ``gt_size``): the whole
slice is degraded first and the patch is cut afterwards, at a random offset drawn from torch's RNG. Cropping after
the degradation keeps the LR patch the true k-space-truncation LR image of the slice (truncating the k-space of
a cropped HR patch would treat the patch as periodic and add wrap-around ringing at its edges that no scan has),
and the normalisation statistics stay those of the whole slice, so training on patches and inference on whole
slices see the same intensity scale.

Augmentation (:class:`Augmentation`, training only): random flips and 90° rotations of the HR coil images, applied
*before* the acquisition, so the degraded sample of an augmented slice is exactly the sample of the transformed
slice (k-space truncation, mask and noise act on the transformed k-space; the reference and the ESPIRiT maps follow).
Flipping an LR/HR pair after the truncation instead would shift it off its truncation grid by ``(s − 1)/2`` HR
pixels.
"""

from __future__ import annotations

import os
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from accelmri.data.errors import DataError
from accelmri.data.pairing import ContrastPair, align_reference
from accelmri.data.readers import read_volume
from accelmri.data.readers.fastmri import FastMRIFile
from accelmri.data.sample import Sample, normalization_statistics
from accelmri.data.volume import ImageVolume, KspaceVolume
from accelmri.physics.coils import rss
from accelmri.physics.degrade import Acquisition
from accelmri.physics.fft import fft2c, ifft2c
from accelmri.physics.sensitivity import calibrated_espirit_maps

__all__ = [
    "TASKS",
    "Augmentation",
    "SliceDataset",
    "SliceSource",
    "check_task",
    "dihedral",
    "open_pair",
    "open_source",
    "pad_to_scale",
    "refuse_challenge_file",
]

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


#: Most fastMRI files one process (a DataLoader worker) keeps open for reading; the least recently read is closed
#: beyond it (and re-opened on its next read), so data sets of thousands of volumes stay below the open-file limit.
MAX_OPEN_FILES = 128


class _OpenFiles:
    """This process's open fastMRI files, least recently read first (an LRU bounded by :data:`MAX_OPEN_FILES`)."""

    def __init__(self) -> None:
        self.files: OrderedDict[int, FastMRIFile] = OrderedDict()
        self.pid = os.getpid()

    def opened(self, volume: FastMRIFile) -> None:
        """Record a read of ``volume``; close the least recently read files beyond the limit."""
        if self.pid != os.getpid():  # a forked worker: the parent's handles are not ours to close
            self.files.clear()
            self.pid = os.getpid()
        self.files[id(volume)] = volume
        self.files.move_to_end(id(volume))
        while len(self.files) > MAX_OPEN_FILES:
            self.files.popitem(last=False)[1].close()


_OPEN_FILES = _OpenFiles()


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

    @property
    def slice_shape(self) -> tuple[int, int]:
        """In-plane size ``(H, W)`` of the slices (of the image, or of the k-space matrix); read from metadata."""
        volume = self.volume
        if isinstance(volume, ImageVolume):
            return int(volume.data.shape[1]), int(volume.data.shape[2])
        if isinstance(volume, FastMRIFile):
            return volume.kspace_shape[1], volume.kspace_shape[2]
        return int(volume.kspace.shape[2]), int(volume.kspace.shape[3])

    def kspace(self, index: int) -> torch.Tensor:
        """Fully sampled HR k-space of one slice, ``(C, H, W)`` complex64 (``C = 1`` for image volumes)."""
        if isinstance(self.volume, FastMRIFile):
            kspace = self.volume.read_slice(index)[0]
            _OPEN_FILES.opened(self.volume)
            return torch.from_numpy(np.ascontiguousarray(kspace))
        if isinstance(self.volume, KspaceVolume):
            return torch.from_numpy(np.ascontiguousarray(self.volume.kspace[index]))
        image = torch.from_numpy(np.ascontiguousarray(self.volume.data[index], dtype=np.float32))
        return fft2c(image.to(torch.complex64))[None]


def refuse_challenge_file(source: SliceSource) -> None:
    """Refuse a fastMRI test/challenge file (a ``mask`` dataset: already undersampled, no fully sampled target).

    Training on it, scoring it or degrading it would treat its zero-filled lines as measured and mask it a second
    time; ``accelmri restore`` (acquired mode) reconstructs it from the lines it has.

    Raises:
        DataError: naming the file, its acceleration and what to do instead.
    """
    volume = source.volume
    if isinstance(volume, FastMRIFile) and volume.challenge:
        acceleration = volume.attrs.get("acceleration", "?")
        raise DataError(source.path, f"fastMRI test/challenge file: already undersampled (its 'mask' dataset, "
                        f"acceleration {acceleration}) with no fully sampled target, so it cannot be trained on, "
                        "scored or masked again; reconstruct it with `accelmri restore` (acquired mode)")


def open_source(
    path: str | Path, subject: str | None = None, contrast: str | None = None, series_uid: str | None = None
) -> SliceSource:
    """Open a file (or DICOM folder) as a :class:`SliceSource`.

    fastMRI HDF5 files are read lazily slice by slice (:class:`FastMRIFile`); every other format is read whole
    with :func:`accelmri.data.readers.read_volume`. The subject defaults to the file's ``patient_id`` /
    ``subject_id`` attribute, else the file stem; the contrast to the reader's (IXI names, fastMRI
    ``acquisition``). ``series_uid`` picks one series of a DICOM folder holding several.

    Raises:
        DataError: from the readers (missing, corrupt or unsupported files).
    """
    file = Path(path)
    volume: FastMRIFile | KspaceVolume | ImageVolume
    if file.is_file() and file.suffix.lower() in (".h5", ".hdf5") and series_uid is None:
        try:
            volume = FastMRIFile(file)
        except DataError:
            volume = read_volume(file)  # an ISMRMRD file, or a clear error from read_volume
    else:
        volume = read_volume(file, series_uid)
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


def _centre_shift(size: int, scale: int) -> int:
    """HR index of LR pixel 0 on the truncation grid of an LR axis of ``size`` pixels: ``(s·n)//2 − s·(n//2)``.

    :func:`~accelmri.physics.degrade.lowres` keeps the DC-centred block, so LR pixel ``i`` sits at HR pixel
    ``(i − n//2)·s + (s·n)//2 = s·i + shift``; the shift is 0 for even ``n`` and ``s//2`` for odd ``n``.
    """
    return (scale * size) // 2 - scale * (size // 2)


def _patch_offset(size: int, patch: int, scale: int) -> tuple[int, int]:
    """Random offsets ``(LR, HR)`` of a patch along one axis, drawn with torch's RNG.

    Args:
        size: LR size ``n`` of the axis (the HR size is ``s·n``).
        patch: LR patch size ``m ≤ n``.
        scale: SR scale ``s``.

    Returns:
        ``(y0, Y0)``: LR pixels ``y0 … y0+m−1`` and HR pixels ``Y0 … Y0+s·m−1``, with ``Y0 = s·y0 + shift(n) −
        shift(m)`` so that the patches are on each other's truncation grid (LR patch pixel ``i`` at HR patch pixel
        ``s·i + shift(m)``, as for a whole slice). ``y0`` is limited to offsets that keep the HR patch inside the
        slice (one position fewer when ``n`` and ``m`` differ in parity).
    """
    shift = _centre_shift(size, scale) - _centre_shift(patch, scale)
    low, high = int(shift < 0), size - patch - int(shift > 0)
    y0 = int(torch.randint(low, high + 1, ()))
    return y0, scale * y0 + shift


def _check_patch(patch_size: tuple[int, int], task: str, scale: int, crop: tuple[int, int] | None) -> None:
    """Refuse a ``patch_size`` :class:`SliceDataset` cannot cut (see its docstring).

    Raises:
        ValueError: naming the problem.
    """
    if task != "super_resolution":
        raise ValueError(f"patch_size is for task 'super_resolution' only (the joint and reconstruction models need "
                         f"the k-space of the whole slice), got task {task!r}")
    if min(patch_size) < 1 or patch_size[0] % scale or patch_size[1] % scale:
        raise ValueError(f"patch_size {patch_size} must be positive and divisible by the scale {scale}")
    if crop is not None and (patch_size[0] > crop[0] or patch_size[1] > crop[1]):
        raise ValueError(f"patch_size {patch_size} is larger than the crop {crop}")


def pad_to_scale(kspace: torch.Tensor, scale: int) -> torch.Tensor:
    """k-space ``(C, H, W)`` whose coil images are zero-padded at the end of each in-plane axis by ``(−n) mod s``
    pixels, so that the scale ``s`` divides the slice; unchanged when it already does.

    The padding is in the image domain: the field of view grows by empty background and every original pixel keeps
    its index (and, for an image volume, its world position), so the original slice is the ``[:H, :W]`` corner.
    """
    height, width = kspace.shape[-2:]
    pad_h, pad_w = -height % scale, -width % scale
    if not pad_h and not pad_w:
        return kspace
    return fft2c(torch.nn.functional.pad(ifft2c(kspace), (0, pad_w, 0, pad_h)))


def _check_slice_shape(source: SliceSource, scale: int, crop: tuple[int, int] | None) -> None:
    """Refuse a volume whose slices the scale does not divide (or that are smaller than ``crop``), naming it.

    Raises:
        DataError: naming the file, its slice size and the remedy.
    """
    height, width = source.slice_shape
    if crop is not None:
        if crop[0] > height or crop[1] > width:
            raise DataError(source.path, f"slice size {height}x{width} is smaller than the crop {crop[0]}x{crop[1]} "
                            "(data.crop)")
    elif height % scale or width % scale:
        raise DataError(source.path, f"slice size {height}x{width} is not divisible by the scale {scale} "
                        f"(data.acquisition.scale); crop the volume or pad it to a multiple of {scale} (pad=True)")


@dataclass(frozen=True)
class Augmentation:
    """Random flips / 90° rotations of the HR image before the acquisition (``data.augment``; training only).

    Every training sample draws, with torch's RNG and before its mask seed (so seeded runs stay reproducible): a
    vertical flip (``vflip``, along ``H``) and a horizontal flip (``hflip``, along ``W``) each with probability
    1/2, and ``rot90`` quarter turns ``k`` uniform in ``{0, 1, 2, 3}``; on non-square slices (after ``crop``) a
    quarter turn would change the matrix and the phase-encode direction, so ``k`` is uniform in ``{0, 2}`` there
    (a half turn). With all three options the 8 flips/rotations of the square are equally likely.

    Attributes:
        hflip: random left-right flips (``W`` axis).
        vflip: random up-down flips (``H`` axis).
        rot90: random quarter turns (half turns only on non-square slices).
    """

    hflip: bool = False
    vflip: bool = False
    rot90: bool = False

    @property
    def enabled(self) -> bool:
        """Whether any transform is drawn."""
        return self.hflip or self.vflip or self.rot90

    def draw(self, shape: tuple[int, int]) -> tuple[bool, bool, int]:
        """Draw ``(vflip, hflip, quarter turns)`` for an ``(H, W)`` slice with torch's global RNG (in this order;
        a disabled option draws nothing)."""
        vflip = bool(torch.randint(0, 2, ())) if self.vflip else False
        hflip = bool(torch.randint(0, 2, ())) if self.hflip else False
        turns = 0
        if self.rot90:
            turns = int(torch.randint(0, 4, ())) if shape[0] == shape[1] else 2 * int(torch.randint(0, 2, ()))
        return vflip, hflip, turns


def dihedral(image: torch.Tensor, vflip: bool, hflip: bool, turns: int) -> torch.Tensor:
    """Flip ``(..., H, W)`` along ``H`` (``vflip``), then along ``W`` (``hflip``), then rotate it by ``turns``
    quarter turns (``torch.rot90`` over ``(H, W)``: counter-clockwise as displayed with row 0 on top).

    Returns:
        A contiguous tensor of the same dtype, ``(..., W, H)`` for an odd ``turns``; values are moved, not resampled.
    """
    if vflip:
        image = image.flip(-2)
    if hflip:
        image = image.flip(-1)
    return torch.rot90(image, turns, dims=(-2, -1)).contiguous()


def _slice_seed(path: Path, index: int) -> int:
    """Deterministic per-slice seed from the file name and slice index (validation/test masks)."""
    return zlib.crc32(f"{path.name}:{index}".encode())


def _transformed(kspace: torch.Tensor, flips: tuple[bool, bool, int]) -> torch.Tensor:
    """HR k-space ``(C, H, W)`` of the coil images transformed by :func:`dihedral` (unchanged for the identity)."""
    if flips == (False, False, 0):
        return kspace
    return fft2c(dihedral(ifft2c(kspace), *flips)).to(torch.complex64)


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
        pad: zero-pad the HR coil images (of targets and references) at the end of each in-plane axis to a
            multiple of the scale before degradation (:func:`pad_to_scale`), so that slices the scale does not
            divide are accepted; the samples are on the padded grid and the original slice is their
            ``[:H, :W]`` corner (``accelmri restore --degrade`` crops its output back to it). Without ``crop``.
        patch_size: optional random HR patch ``(P, Q)`` per sample, task ``super_resolution`` only (for training: the
            engine gives it to the train split only, validation and test score whole slices). Both divisible by the
            scale ``s``, at most the (cropped) slice. The whole slice is degraded and normalised first; then an LR
            offset ``(y0, x0)`` is drawn with torch's RNG (after the training mask seed, so seeded runs stay
            reproducible) and the LR fields (``lr_input``, ``lr_target``, ``sens_maps``) are cut to ``(P/s, Q/s)`` at
            ``(y0, x0)``, the HR fields (``target``, ``reference``) to ``(P, Q)`` at the aligned offset ``(Y0, X0) =
            (s·y0, s·x0)`` — LR pixel ``i`` lies at HR pixel ``s·i`` on the truncation grid when the LR sizes of slice
            and patch are even; when their parities differ along an axis, the HR offset moves by ``±(s//2)`` to keep the
            patches on each other's truncation grid. ``kspace`` becomes the DFT ``fft2c`` of the cut LR coil images,
            with a full ``mask``: the fully sampled k-space of the patch (super-resolution acquires every LR sample),
            consistent with ``lr_input`` for models that read ``kspace`` (``sinc``, MINet with ``in_channels=2``).
            ``norm_mean`` and ``norm_std`` remain the whole slice's. ``meta`` gains ``lr_offset = (y0, x0)`` and
            ``hr_offset = (Y0, X0)``.
        sens_maps: ``"espirit"`` to estimate coil maps on the LR grid from the fully sampled calibration
            region (cached per slice; the calibration region is fully sampled in every mask, so the maps do
            not depend on the random mask), calibrated by
            :func:`~accelmri.physics.sensitivity.espirit_calibration`, or ``None``.
        normalization: ``"scale"`` divides images and k-space by the mean of the zero-filled input magnitude
            (``norm_mean = 0``: k-space stays consistent with the images); ``"meanstd"`` is the MINet/SANet
            recipe ``(x − mean)/std`` with the input's statistics (k-space divided by ``std`` only).
        calib_width: ESPIRiT calibration lines (phase encodes) on the LR grid (default: the mask's centre lines,
            ``round(center_fraction · W)``); the block and kernel follow
            :func:`~accelmri.physics.sensitivity.espirit_calibration`.
        slices: optional ``(volume index, slice index)`` list restricting the dataset (e.g. central slices).
        maps_cache_size: number of slices whose ESPIRiT maps are kept in memory.
        augment: random flips/rotations of the HR coil images (after ``crop``, before the acquisition) and of the
            reference (:class:`Augmentation`), or ``None``; ``train=True`` only. Drawn before the mask seed; the
            drawn ``(vflip, hflip, turns)`` is in ``meta["augmentation"]``. ESPIRiT maps are estimated on the
            transformed k-space.

    Raises:
        DataError: a fastMRI test/challenge file among the volumes (:func:`refuse_challenge_file`).
        ValueError: bad task/acquisition combination, unequal numbers of targets and references, or a
            ``patch_size`` that is not positive, not divisible by the scale, larger than ``crop`` or given for a
            task other than ``super_resolution``, or ``augment`` without ``train``, or ``pad`` with ``crop``.
        DataError: a target whose slice size the scale does not divide (without ``crop`` or ``pad``) or that is smaller
            than ``crop``, naming the file. Reading a sample raises :class:`DataError` for a reference
            whose slice grid differs from its target's, or a slice smaller than ``patch_size``.
    """

    def __init__(
        self,
        targets: Sequence[SliceSource],
        task: Task,
        acquisition: Acquisition,
        references: Sequence[SliceSource] | None = None,
        train: bool = False,
        crop: tuple[int, int] | None = None,
        patch_size: tuple[int, int] | None = None,
        sens_maps: Literal["espirit"] | None = None,
        normalization: Normalization = "scale",
        calib_width: int | None = None,
        slices: Sequence[tuple[int, int]] | None = None,
        maps_cache_size: int = 256,
        augment: Augmentation | None = None,
        pad: bool = False,
    ) -> None:
        check_task(task, acquisition)
        for source in [*targets, *(references or [])]:
            refuse_challenge_file(source)
        if references is not None and len(references) != len(targets):
            raise ValueError(f"{len(targets)} targets but {len(references)} references")
        if normalization not in ("scale", "meanstd"):
            raise ValueError(f"normalization must be 'scale' or 'meanstd', got {normalization!r}")
        if crop is not None and (crop[0] % acquisition.scale or crop[1] % acquisition.scale):
            raise ValueError(f"crop {crop} is not divisible by the scale {acquisition.scale}")
        if patch_size is not None:
            _check_patch(patch_size, task, acquisition.scale, crop)
        if pad and crop is not None:
            raise ValueError("pad and crop exclude each other: crop to a size the scale divides, or pad")
        for target in targets if not pad else ():
            _check_slice_shape(target, acquisition.scale, crop)
        if augment is not None and augment.enabled and not train:
            raise ValueError("augment is for training (train=True): validation and test see the slices as they are")
        self.targets = list(targets)
        self.references = list(references) if references is not None else None
        self.task = task
        self.acquisition = acquisition
        self.train = train
        self.crop = crop
        self.pad = pad
        self.patch_size = patch_size
        self.sens_maps = sens_maps
        self.normalization = normalization
        self.calib_width = calib_width
        self.maps_cache_size = maps_cache_size
        self.augment = augment if augment is not None and augment.enabled else None
        self._maps_cache: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()
        if slices is None:
            slices = [(v, s) for v in range(len(self.targets)) for s in range(self._paired_slices(v))]
        self.slices = list(slices)

    def _paired_slices(self, volume: int) -> int:
        n = self.targets[volume].num_slices
        return n if self.references is None else min(n, self.references[volume].num_slices)

    def __len__(self) -> int:
        return len(self.slices)

    def extent(self, volume: int) -> tuple[int, int] | None:
        """The in-plane size ``(H, W)`` of target ``volume``'s own slices when ``pad`` is on (its samples' target
        grid is padded to a multiple of the scale: score on the ``[:H, :W]`` corner), else ``None``."""
        return self.targets[volume].slice_shape if self.pad else None

    def _hr_kspace(self, source: SliceSource, index: int) -> torch.Tensor:
        kspace = source.kspace(index)
        if not torch.isfinite(torch.view_as_real(kspace)).all():
            raise DataError(source.path, f"slice {index} contains NaN or Inf")
        if self.pad:
            return pad_to_scale(kspace, self.acquisition.scale)
        return kspace if self.crop is None else fft2c(_crop_center(ifft2c(kspace), self.crop))

    def _maps(self, key: tuple[int, ...], lr_kspace: torch.Tensor) -> torch.Tensor:
        maps = self._maps_cache.get(key)
        if maps is None:
            acquisition = self.acquisition
            maps = calibrated_espirit_maps(lr_kspace, acquisition.center_fraction, acquisition.mask_kind,
                                           lines=self.calib_width)
            self._maps_cache[key] = maps
            if len(self._maps_cache) > self.maps_cache_size:
                self._maps_cache.popitem(last=False)
        return maps

    def _normalize(self, image: torch.Tensor, mean: float, std: float) -> torch.Tensor:
        return ((image - mean) / std).to(torch.float32)[None]

    def _statistics(self, lr_input: torch.Tensor) -> tuple[float, float]:
        return normalization_statistics(lr_input, self.normalization)

    def __getitem__(self, item: int) -> Sample:
        volume, index = self.slices[item]
        source = self.targets[volume]
        kspace_hr = self._hr_kspace(source, index)
        flips = (False, False, 0) if self.augment is None else self.augment.draw(tuple(kspace_hr.shape[-2:]))
        kspace_hr = _transformed(kspace_hr, flips)
        seed = int(torch.randint(0, 2**31 - 1, ())) if self.train else _slice_seed(source.path, index)
        acquired = self.acquisition.apply(kspace_hr, seed=seed)
        multicoil = kspace_hr.shape[0] > 1
        target = rss(ifft2c(kspace_hr)) if multicoil else ifft2c(kspace_hr)[0].abs()
        lr_input, lr_target = acquired.zero_filled.abs(), acquired.lr_image.abs()
        mean, std = self._statistics(lr_input)
        maps = None
        if self.sens_maps == "espirit" and multicoil:
            maps = self._maps((volume, index, *map(int, flips)), acquired.kspace)
        reference = None
        if self.references is not None:
            ref_source = self.references[volume]
            ref_k = _transformed(self._hr_kspace(ref_source, index), flips)
            ref_image = rss(ifft2c(ref_k)) if ref_k.shape[0] > 1 else ifft2c(ref_k)[0].abs()
            if ref_image.shape != target.shape:
                raise DataError(
                    ref_source.path, f"reference slice {tuple(ref_image.shape)} is not on the target grid "
                    f"{tuple(target.shape)} of {source.path.name}"
                )
            ref_mean, ref_std = self._statistics(ref_image)
            reference = self._normalize(ref_image, ref_mean, ref_std)
        sample = Sample(
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
                **({} if self.augment is None else {"augmentation": flips}),
            },
        )
        return sample if self.patch_size is None else self._cut_patch(sample, self.patch_size, source.path)

    def _cut_patch(self, sample: Sample, patch_size: tuple[int, int], path: Path) -> Sample:
        """A random ``patch_size`` patch of a whole-slice sample (see the class docstring); statistics unchanged."""
        scale = self.acquisition.scale
        (height, width), (patch_h, patch_w) = sample.lr_input.shape[-2:], patch_size
        if patch_h > scale * height or patch_w > scale * width:
            raise DataError(path, f"patch_size {patch_size} is larger than the slice "
                            f"{(scale * height, scale * width)}")
        lr_h, lr_w = patch_h // scale, patch_w // scale
        y0, hr_y0 = _patch_offset(height, lr_h, scale)
        x0, hr_x0 = _patch_offset(width, lr_w, scale)

        def lr(x: torch.Tensor) -> torch.Tensor:
            return x[..., y0 : y0 + lr_h, x0 : x0 + lr_w]

        def hr(x: torch.Tensor) -> torch.Tensor:
            return x[..., hr_y0 : hr_y0 + patch_h, hr_x0 : hr_x0 + patch_w]

        return replace(
            sample,
            target=hr(sample.target),
            lr_input=lr(sample.lr_input),
            lr_target=lr(sample.lr_target),
            kspace=fft2c(lr(ifft2c(sample.kspace))),
            mask=torch.ones_like(lr(sample.mask)),
            reference=None if sample.reference is None else hr(sample.reference),
            sens_maps=None if sample.sens_maps is None else lr(sample.sens_maps),
            meta={**sample.meta, "lr_offset": (y0, x0), "hr_offset": (hr_y0, hr_x0)},
        )
