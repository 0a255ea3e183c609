"""Restoration of a user's files with a trained checkpoint (``accelmri restore``).

The checkpoint alone rebuilds the model: its stored config names the model, its arguments and the acquisition it
was trained for (scale ``s``, acceleration ``R``, normalisation, coil maps). The YAML config of a parameter-free
model (``bicubic``, ``sinc``, ``zero_filled``, ...) works in place of a checkpoint, so baselines run on the same
input through the same path. Volumes are restored slice by slice and written, atomically, in the input's
intensity units.

Two modes:

* **acquired** (default): the input *is* the acquisition — a low-resolution and/or undersampled scan. Image files
  (NIfTI, DICOM) give their magnitude as the LR input (k-space = ``fft2c`` of it, mask fully sampled: an image
  carries no undersampling pattern); k-space files (fastMRI HDF5, ISMRMRD, twix) give their measured k-space, and
  the sampling mask is read from it: a k-space location is measured where any coil is non-zero (measured samples
  carry noise, so only unacquired locations are exactly zero; 1-D and 2-D masks alike). The output is on the HR
  grid, ``s×`` finer in-plane.
* **degraded** (``degrade=True``, evaluation on fully sampled data): the checkpoint's
  :class:`~accelmri.physics.degrade.Acquisition` degrades the input first, with the fixed per-slice masks of
  evaluation (:class:`~accelmri.data.datasets.SliceDataset`, ``train=False``), and the output is on the input's
  own grid, directly comparable with it. A slice size the scale ``s`` does not divide (real scans: 191 × 256) is
  zero-padded in the image domain (the coil images of k-space inputs) at the end of each in-plane axis by
  ``(−n) mod s`` pixels (:func:`~accelmri.data.datasets.pad_to_scale`: empty background that extends the field of
  view, every original voxel keeps its position, so the affine is the input's), degraded and restored on the padded
  grid, and the output is cropped back to the input's grid. A checkpoint of ``data.protocol: fastmri`` degrades
  fastMRI files through that protocol instead (:class:`~accelmri.data.fastmri_protocol.FastMRIProtocolDataset`:
  fastMRI's per-volume mask) and its output is the file's ``recon_size`` crop, comparable with the file's target.

Geometry of the HR grid (acquired mode, :func:`restored_affine`): the voxel size is divided by ``s`` in-plane and
the field of view keeps its size. The models relate the grids by centred k-space truncation
(:func:`~accelmri.physics.degrade.lowres`), which keeps the DFT centre voxel: LR voxel ``n // 2`` and HR voxel
``N // 2`` (``N = s·n``) lie at the same point, so HR voxel ``h'`` sits at LR voxel coordinate
``(h' − N // 2) / s + n // 2`` (``h' / s`` for even ``n``). The restored content is at these positions; the
"outer voxel edges coincide" convention would place it ``(s − 1) / 2`` HR voxels off. The slice axis is kept.

Outputs (one per input, named ``<input stem>_restored<suffix>`` (challenge files: the input's name) in an output
folder, or the ``out`` file itself for a single input):

* NIfTI input → NIfTI float32 (``.nii.gz`` or ``.nii`` like the input), the affine of :func:`restored_affine`
  (acquired) or the input's (degraded), in the input's layout: the slices are the acquisition's (the thick voxel
  axis of a 2-D multi-slice series, wherever the file stores it: :func:`~accelmri.data.readers.nifti.slice_axis`),
  the file's axis order and dimensionality (a 2-D image stays 2-D) are kept;
* DICOM series folder → a derived DICOM series, the folder ``<folder name>_restored`` with one file per slice
  (:func:`~accelmri.data.readers.dicom_writer.write_dicom_series`: new Series/SOP Instance UIDs, ImageType
  ``DERIVED\\SECONDARY``, patient/study/acquisition tags copied, SeriesDescription ``"<original> accelmri <model>
  <s>x"`` (`` degraded`` appended in degraded mode), Image Plane geometry from the same affine a NIfTI output
  carries, unsigned 16-bit pixels with RescaleSlope/RescaleIntercept); with ``dicom_as_nifti`` or a
  ``.nii``/``.nii.gz`` ``out`` file name, a NIfTI ``.nii.gz`` with the series' affine converted to RAS and
  updated as for NIfTI inputs;
* fastMRI / ISMRMRD HDF5 and twix ``.dat`` → fastMRI-layout HDF5 with a ``reconstruction`` dataset
  ``(S, H, W)`` float32 (the fastMRI submission layout) and root attributes ``max``, ``norm`` (of the
  reconstruction), the input's ``acquisition`` and ``patient_id`` where present, and ``accelmri_checkpoint``,
  ``accelmri_model``, ``accelmri_scale``, ``accelmri_mode``, ``accelmri_adapt_steps``. The image covers the whole
  k-space field of view (no readout-oversampling crop).
* fastMRI test/challenge file (a ``mask`` dataset: already undersampled, no target) → fastMRI's submission layout:
  a file of the **same name** in the output folder, ``reconstruction`` ``(S, h, w)`` float32 cropped to the
  file's ``recon_size`` (320 × 320) with fastMRI's centre crop, the attributes above. Acquired mode only, a
  reconstruction checkpoint (scale 1), no reference: each slice goes through fastMRI's data path with the file's
  own mask (:func:`~accelmri.data.fastmri_protocol.challenge_sample`: no second mask; the zero-filled input is
  cropped before the model, k-space models crop their output), whatever the checkpoint's ``data.protocol``; with
  the checkpoint's ``data.sens_maps: espirit``, multi-coil files get ESPIRiT maps on the acquired k-space grid,
  calibrated on the file's ``num_low_frequency`` centre columns.

A reference contrast (multi-contrast models) is put on the target grid with
:func:`~accelmri.data.pairing.align_reference` when both are image files: in acquired mode the target grid is the
HR grid, so the reference is resampled onto the input grid refined ``s×``; in degraded mode onto the input grid.
Otherwise (a k-space file on either side) slices pair by index and the reference's slices must already have the
target grid's shape. The reference is normalised by its own statistics, as in training.

Contrast check: a checkpoint records the contrasts it was trained on (``target_contrasts``, ``reference_contrast``;
:mod:`accelmri.engine.contrast`). The contrast of every input and reference is given (``contrast``,
``reference_contrast``) or read from its metadata and name (:func:`~accelmri.engine.contrast.volume_contrast`:
the reader's contrast, fastMRI ``acquisition``, DICOM ``SeriesDescription``, BIDS/IXI/file-name suffixes); when a
known contrast differs from a recorded one, one :class:`ContrastMismatchWarning` per input names the file, the
given and the trained contrast (restoring goes on). Unknown contrasts and checkpoints without the record (older
ones, YAML configs) give no warning.

Scan-specific adaptation (``adapt_steps > 0``, task ``super_resolution``): before a volume is restored, a copy of
the model is fine-tuned on that volume alone (:func:`accelmri.engine.adapt.adapt_to_scan`, after ZSSR, Shocher et
al., CVPR 2018): the acquired image (in degraded mode, the degraded input: exactly what the model receives) is the
target, and its degradation by the checkpoint's own acquisition the input. The next volume starts again from the
checkpoint's weights; the checkpoint file is only read.

Safety: inputs, references and the checkpoint are never overwritten (an output that resolves to one of them, or
lies inside an input DICOM folder, or an output folder that holds an input, is refused); existing outputs are
refused without ``overwrite``; all paths are checked before any volume is read; then every input and reference
is read and checked (sizes, a reference that leaves a slice mostly uncovered (:data:`MIN_SLICE_COVERAGE`), the
model's fields) before the first output is written, and each output appears atomically once its volume is
restored (a DICOM series folder whole, through :func:`~accelmri.io.atomic_folder`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal, get_args

import h5py
import numpy as np
import torch
from torch import nn

from accelmri.data.datasets import SliceDataset, SliceSource, open_source, refuse_challenge_file
from accelmri.data.errors import DataError
from accelmri.data.fastmri_protocol import FastMRIProtocolDataset, challenge_sample, fastmri_crop_size
from accelmri.data.pairing import align_reference
from accelmri.data.readers.dicom_writer import write_dicom_series
from accelmri.data.readers.fastmri import FastMRIFile
from accelmri.data.readers.nifti import write_nifti
from accelmri.data.registration import register_rigid
from accelmri.data.sample import Sample, collate
from accelmri.data.volume import ImageVolume
from accelmri.engine.adapt import adapt_to_scan, check_adaptation
from accelmri.engine.checkpoint import load_checkpoint
from accelmri.engine.config import DataConfig, ExperimentConfig
from accelmri.engine.contrast import normalize_contrast, volume_contrast
from accelmri.engine.evaluate import Precision, autocast, check_model_options_used, load_method
from accelmri.engine.export import is_export, read_export_metadata
from accelmri.engine.progress import progress_display
from accelmri.io import atomic_output
from accelmri.models import check_batch
from accelmri.models.base import set_channels_last
from accelmri.models.baselines.interpolation import Sinc
from accelmri.physics.coils import rss
from accelmri.physics.fft import fft2c, ifft2c
from accelmri.physics.masks import realised_acceleration
from accelmri.physics.sensitivity import calibrated_espirit_maps

__all__ = ["INPUT_KINDS", "UNCOVERED_SLICES", "ContrastMismatchWarning", "NegativeIntensityWarning",
           "UncoveredSlices", "restore", "restored_affine"]

#: What ``restore`` reads, for messages: every other path is refused with a :class:`DataError`.
INPUT_KINDS = "a NIfTI file (.nii/.nii.gz), a DICOM series folder, a fastMRI or ISMRMRD .h5 file or a twix .dat file"

#: Least fraction of a target slice a resampled reference must cover; a reference that leaves any slice below it
#: (e.g. a slab covering half the target's slices) is refused, naming both files, unless ``uncovered_slices``
#: says otherwise.
MIN_SLICE_COVERAGE = 0.5

#: What ``restore`` does with target slices a reference leaves mostly uncovered (< :data:`MIN_SLICE_COVERAGE`):
#: ``refuse`` (the default: an error naming them) or ``sinc`` (restore them by sinc interpolation of the measured
#: k-space band, the reference-free method; super-resolution checkpoints, one warning naming the slices).
UncoveredSlices = Literal["refuse", "sinc"]
UNCOVERED_SLICES: tuple[str, ...] = get_args(UncoveredSlices)

_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_CONFIG_SUFFIXES = (".yaml", ".yml")
_HDF5_SUFFIXES = (".h5", ".hdf5")
_KSPACE_SUFFIXES = (*_HDF5_SUFFIXES, ".dat")

logger = logging.getLogger(__name__)


def restored_affine(affine: np.ndarray, scale: int, shape: tuple[int, int]) -> np.ndarray:
    """The voxel → world affine of the HR grid of an LR image, ``scale×`` finer in-plane.

    HR voxel ``(h', w', k)`` is LR voxel ``((h' − N_h // 2) / s + n_h // 2, (w' − N_w // 2) / s + n_w // 2, k)``
    with ``N = s·n`` (centred k-space truncation keeps the DFT centre voxel; see the module docstring): the voxel
    size is divided by ``s`` in-plane, the field of view keeps its size, the slice axis is unchanged.

    Args:
        affine: ``(4, 4)`` LR voxel ``(h, w, slice)`` → world.
        scale: the SR scale ``s`` (positive int).
        shape: the LR in-plane size ``(n_h, n_w)``.

    Returns:
        ``(4, 4)`` float64 HR voxel → world.
    """
    refine = np.eye(4)
    for axis, n in enumerate(shape):
        refine[axis, axis] = 1.0 / scale
        refine[axis, 3] = n // 2 - ((scale * n) // 2) / scale
    return np.asarray(affine, dtype=np.float64) @ refine


# ------------------------------------------------------------------------------------------------------- paths


def _output_suffix(path: Path, dicom_as_nifti: bool = False) -> str:
    """The suffix of the output written for ``path`` (``""``: a DICOM series folder written as a DICOM series
    folder); refuses paths that are not a supported input."""
    if path.is_dir():
        return ".nii.gz" if dicom_as_nifti else ""
    if not path.is_file():
        raise DataError(path, "no such file or folder")
    name = path.name.lower()
    for suffix in _NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    if name.endswith(_KSPACE_SUFFIXES):
        return ".h5"
    raise DataError(path, f"unsupported input: expected {INPUT_KINDS}")


def _stem(path: Path) -> str:
    name = path.name
    lower = name.lower()
    for suffix in (*_NIFTI_SUFFIXES, *_KSPACE_SUFFIXES):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _output_paths(inputs: Sequence[Path], out: Path, dicom_as_nifti: bool = False) -> list[Path]:
    """One output path per input: ``out`` itself (a single input and a file name), else files (a DICOM series:
    folders) in folder ``out``. A ``.nii``/``.nii.gz`` file name restores a DICOM series to NIfTI."""
    suffixes = [_output_suffix(path, dicom_as_nifti) for path in inputs]
    lower = out.name.lower()
    if not out.is_dir() and lower.endswith((*_NIFTI_SUFFIXES, *_HDF5_SUFFIXES)):
        if len(inputs) != 1:
            raise ValueError(f"{out}: a file name as output takes one input, got {len(inputs)}; give a folder")
        wants_nifti = suffixes[0] in (*_NIFTI_SUFFIXES, "")
        if wants_nifti != lower.endswith(_NIFTI_SUFFIXES):
            kind = ("a DICOM series (give an output folder) or a NIfTI (.nii/.nii.gz) file" if suffixes[0] == "" else
                    "a NIfTI (.nii/.nii.gz) file" if wants_nifti else "an HDF5 (.h5) file")
            raise ValueError(f"{out}: {inputs[0]} is restored to {kind}")
        return [out]
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a folder: --out takes an output folder, or for one input a new "
                        ".nii/.nii.gz/.h5 file name")
    outputs = [out / (path.name if _is_challenge_file(path) else f"{_stem(path)}_restored{suffix}")
               for path, suffix in zip(inputs, suffixes, strict=True)]
    seen: dict[Path, Path] = {}
    for path, output in zip(inputs, outputs, strict=True):
        if output in seen:
            raise ValueError(f"{seen[output]} and {path} would both be restored to {output}; restore them separately")
        seen[output] = path
    return outputs


def _is_challenge_file(path: Path) -> bool:
    """Whether ``path`` is a fastMRI test/challenge file (HDF5 with ``kspace`` and ``mask``); unreadable files are
    not (they are refused when read)."""
    if not path.is_file() or not path.name.lower().endswith(_HDF5_SUFFIXES):
        return False
    try:
        with h5py.File(path, "r") as file:
            return "kspace" in file and "mask" in file
    except OSError:
        return False


def _check_outputs(outputs: Sequence[Path], protected: Sequence[Path], overwrite: bool) -> None:
    """Refuse outputs that are inputs (or inside an input folder, or an output folder holding an input) and,
    without ``overwrite``, existing outputs."""
    resolved = {path.resolve(): path for path in protected}
    for output in outputs:
        target = output.resolve()
        if target in resolved:
            raise DataError(output, f"is an input of this restore ({resolved[target]}), never overwritten; "
                            "choose another output")
        for source, path in resolved.items():
            if path.is_dir() and target.is_relative_to(source):
                raise DataError(output, f"lies inside the input folder {path}; choose another output")
            if source.is_relative_to(target):  # a DICOM output folder replaced with --overwrite would delete it
                raise DataError(output, f"holds {path}, an input of this restore; choose another output")
        if output.exists() and not overwrite:
            raise FileExistsError(f"{output}: already exists (pass overwrite / --overwrite to replace it)")


# ----------------------------------------------------------------------------------------------------- samples


def _magnitude(kspace: torch.Tensor) -> torch.Tensor:
    """Coil-combined magnitude ``(H, W)`` of k-space ``(C, H, W)``: the coil's magnitude, or root-sum-of-squares."""
    images = ifft2c(kspace)
    return rss(images) if images.shape[0] > 1 else images[0].abs()


def _acquired_sample(
    source: SliceSource, data: DataConfig, reference: SliceSource | None, hr_shape: tuple[int, int], index: int
) -> Sample:
    """The batch contract for one acquired slice (:meth:`Sample.from_tensors`): the data as measured, no ground
    truth (``target`` is zeros); an image's k-space counts as fully measured, a k-space file's non-zero samples."""
    kspace = source.kspace(index)
    if not torch.isfinite(torch.view_as_real(kspace)).all():
        raise DataError(source.path, f"slice {index} contains NaN or Inf")
    mask = torch.ones(kspace.shape[-2:]) if isinstance(source.volume, ImageVolume) else None
    if mask is None and not kspace.abs().sum(dim=0).gt(0).any():
        raise DataError(source.path, f"slice {index}: the k-space is zero everywhere (nothing was measured)")
    maps = None
    if data.sens_maps == "espirit" and kspace.shape[0] > 1:  # the calibration of SliceDataset
        acquisition = data.acquisition
        maps = calibrated_espirit_maps(kspace, acquisition.center_fraction, acquisition.mask_kind)
    guide = None
    if reference is not None:
        guide = _magnitude(reference.kspace(index))
        if tuple(guide.shape) != hr_shape:
            raise DataError(reference.path, f"reference slice {tuple(guide.shape)} is not on the restored grid "
                            f"{hr_shape} of {source.path.name}")
    sample = Sample.from_tensors(kspace, mask, scale=data.acquisition.scale, sens_maps=maps, reference=guide,
                                 normalization=data.normalization,
                                 meta={"file": str(source.path), "slice": index, "subject": source.subject,
                                       "contrast": source.contrast, "scale": data.acquisition.scale})
    sample.meta["acceleration"] = realised_acceleration(sample.mask[0])
    return sample


def _slice_shape(source: SliceSource) -> tuple[int, int]:
    """In-plane size of the source's slices (the image, or the k-space matrix)."""
    volume = source.volume
    if isinstance(volume, ImageVolume):
        return int(volume.data.shape[1]), int(volume.data.shape[2])
    if isinstance(volume, FastMRIFile):
        return volume.kspace_shape[1], volume.kspace_shape[2]
    return int(volume.kspace.shape[2]), int(volume.kspace.shape[3])


def _ranges(indices: np.ndarray) -> str:
    """``0-3, 7`` for the sorted indices ``[0, 1, 2, 3, 7]``."""
    runs: list[list[int]] = []
    for index in map(int, indices):
        if runs and index == runs[-1][-1] + 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    return ", ".join(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs)


def _open_reference(
    path: Path, grid: ImageVolume | None, num_slices: int, subject: str, series_uid: str | None = None,
    register_to: ImageVolume | None = None, registered: dict[tuple[str, str], ImageVolume] | None = None,
    uncovered: UncoveredSlices = "refuse",
) -> tuple[SliceSource, tuple[int, ...]]:
    """The reference (series ``series_uid`` of a DICOM folder) as a :class:`SliceSource` on the target grid
    (resampled when both sides have geometry; first rigidly registered to ``register_to`` when given, reusing
    the result kept in ``registered`` for the same reference and input), and the target slices it leaves mostly
    uncovered (only with ``uncovered="sinc"``; ``"refuse"`` raises for them)."""
    reference = open_source(path, subject, series_uid=series_uid)
    if register_to is not None:
        if grid is None or not isinstance(reference.volume, ImageVolume):
            raise DataError(path, "registering a reference needs geometry on both sides (image files: NIfTI or "
                            "DICOM), not k-space")
        key = (str(path), str(grid.path))
        moved = None if registered is None else registered.get(key)
        if moved is None:
            moved = register_rigid(register_to, reference.volume)
            found = moved.attrs["registration"]
            logger.info("%s: registered to %s: rotation %.2f°, translation %.2f mm", path, grid.path,
                        found["rotation_deg"], found["translation_mm"])
            if registered is not None:
                registered[key] = moved
        reference = SliceSource(moved, subject=subject, contrast=reference.contrast)
    if grid is not None and isinstance(reference.volume, ImageVolume):
        aligned = align_reference(grid, reference.volume)
        coverage = np.asarray(aligned.attrs.get("slice_coverage", np.ones(num_slices)))
        outside = np.flatnonzero(coverage < MIN_SLICE_COVERAGE)
        if outside.size == num_slices or (outside.size and uncovered == "refuse"):
            advice = "" if outside.size == num_slices else ", or restore those slices by sinc interpolation " \
                "(--uncovered-slices sinc)"
            raise DataError(path, f"covers only {num_slices - outside.size} of the {num_slices} slices of the input "
                            f"{grid.path} (slices {_ranges(outside)} lie mostly outside it and would be restored "
                            "with an empty reference); give a reference covering the input's slab, or crop the "
                            f"input to the reference's{advice}")
        return SliceSource(aligned, subject=subject, contrast=reference.contrast), tuple(map(int, outside))
    if reference.num_slices < num_slices:
        raise DataError(path, f"reference has {reference.num_slices} slices, the input {num_slices}: slices pair by "
                        "index without geometry, so it needs at least as many")
    return reference, ()


# --------------------------------------------------------------------------------------------------- contrasts


class ContrastMismatchWarning(UserWarning):
    """An input's (or its reference's) contrast differs from the one the checkpoint was trained with."""


class NegativeIntensityWarning(UserWarning):
    """An image input (or reference) holds many negative voxels: not a magnitude image as stored by the scanner
    (e.g. standardised or offset intensities), outside what the models were trained on."""


#: Fraction of negative voxels from which an image volume is taken for standardised or offset intensities. Below it,
#: negatives are interpolation ringing of a resampled magnitude image (a registered volume: ~0.1–0.2 %).
NEGATIVE_FRACTION = 0.01


def _check_intensities(*sources: SliceSource | None) -> None:
    """Warn (one :class:`NegativeIntensityWarning` per image volume) when at least :data:`NEGATIVE_FRACTION` of a
    magnitude input's voxels are negative."""
    for source in sources:
        if source is None or not isinstance(source.volume, ImageVolume):
            continue
        data = source.volume.data
        negative = int(np.count_nonzero(data < 0))
        if negative >= NEGATIVE_FRACTION * data.size:
            warnings.warn(f"{source.path}: {100 * negative / data.size:.1f} % of voxels are negative (minimum "
                          f"{float(data.min()):.4g}): a magnitude image is ≥ 0 and the models were trained on "
                          "magnitudes; standardised or offset intensities change the result (restore the scanner's "
                          "magnitude values)", NegativeIntensityWarning, stacklevel=4)


@dataclass(frozen=True)
class _Contrasts:
    """What the checkpoint was trained with and what the caller says the inputs are (``None``: unknown / read
    from each file)."""

    trained: tuple[str, ...] | None = None
    trained_reference: tuple[str, ...] | None = None
    given: str | None = None
    given_reference: str | None = None


def _trained_contrasts(path: Path) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """``(target_contrasts, reference_contrasts)`` recorded in a checkpoint; ``(None, None)`` for a YAML config or
    a checkpoint written before the record (one reference contrast, or several when it was randomised)."""
    if path.suffix.lower() in _CONFIG_SUFFIXES:
        return None, None
    if is_export(path):
        payload = read_export_metadata(path)
    else:
        try:
            payload = load_checkpoint(path, mmap=True)  # the metadata only: the weights are not read
        except DataError:  # a file torch cannot memory-map (legacy serialisation): read it whole
            payload = load_checkpoint(path)
    targets, reference = payload.get("target_contrasts"), payload.get("reference_contrasts")
    if reference is None and isinstance(payload.get("reference_contrast"), str):  # written before the list
        reference = [payload["reference_contrast"]]
    targets = tuple(str(c) for c in targets) if isinstance(targets, (list, tuple)) and targets else None
    return targets, tuple(str(c) for c in reference) if isinstance(reference, (list, tuple)) and reference else None


def _named(name: str | None) -> str | None:
    """A contrast the caller gave: canonical when recognised, else as given (stripped); ``None`` if empty."""
    if name is None or not name.strip():
        return None
    return normalize_contrast(name) or name.strip()


def _check_contrasts(expect: _Contrasts, source: SliceSource, guide: SliceSource | None) -> None:
    """Warn (one :class:`ContrastMismatchWarning`) when a known input or reference contrast differs from the trained."""
    problems = []
    if expect.trained is not None:
        given = expect.given or volume_contrast(source.path, source.contrast, source.volume.attrs)
        if given is not None and given not in expect.trained:
            problems.append(f"{source.path}: contrast {given} differs from the {'/'.join(expect.trained)} this "
                            "checkpoint was trained with; the output may take on the trained contrast")
    if expect.trained_reference is not None and guide is not None:
        given = expect.given_reference or volume_contrast(guide.path, guide.contrast, guide.volume.attrs)
        if given is not None and given not in expect.trained_reference:
            problems.append(f"{guide.path}: reference contrast {given} differs from the "
                            f"{'/'.join(expect.trained_reference)} this checkpoint was trained with; guidance may "
                            "transfer contrast")
    if problems:
        warnings.warn("; ".join(problems), ContrastMismatchWarning, stacklevel=4)


# ----------------------------------------------------------------------------------------------------- running


def _check_fields(model: nn.Module, name: str, batch: Sample, source: Path) -> None:
    """Refuse inputs that lack a batch field the model needs (a :class:`DataError` naming the input)."""
    try:
        check_batch(name, tuple(getattr(model, "required_fields", ())), batch)
    except ValueError as err:
        raise DataError(source, f"{err} (a reference contrast is given with --reference; sens_maps need "
                        "data.sens_maps: espirit in the checkpoint's config and multi-coil k-space)") from err


@torch.no_grad()
def _predict(
    model: nn.Module,
    name: str,
    make_sample: Callable[[int], Sample],
    count: int,
    batch_size: int,
    device: torch.device,
    precision: str,
    source: Path,
    advance: Callable[[int], None],
) -> np.ndarray:
    """Restore ``count`` slices in batches; returns ``(count, H, W)`` float32 in the input's units. ``advance(n)``
    is called after each batch of ``n`` slices."""
    outputs = []
    for start in range(0, count, batch_size):
        batch = collate([make_sample(index) for index in range(start, min(start + batch_size, count))])
        if start == 0:
            _check_fields(model, name, batch, source)
        batch = batch.to(device)
        with autocast(precision, device):
            image = model(batch).image
        outputs.append(batch.denormalize(image.float())[:, 0].cpu())
        advance(len(image))
    return torch.cat(outputs).numpy().astype(np.float32, copy=False)


def _write_hdf5(path: Path, image: np.ndarray, attrs: dict[str, object], overwrite: bool) -> None:
    """fastMRI-layout HDF5: ``reconstruction (S, H, W)`` float32 plus root attributes, written atomically."""
    with atomic_output(path, overwrite=overwrite, suffix=".h5") as tmp, h5py.File(tmp, "w") as file:
        file.create_dataset("reconstruction", data=image, chunks=(1, *image.shape[1:]))
        file.attrs.update({"max": float(image.max()), "norm": float(np.linalg.norm(image)), **attrs})


def _write_dicom(
    path: Path,
    image: np.ndarray,
    affine: np.ndarray,
    source: SliceSource,
    config: ExperimentConfig,
    checkpoint: str | Path,
    degrade: bool,
    adapt_steps: int,
    overwrite: bool,
) -> None:
    """The restored volume as a derived series of the input DICOM series, in folder ``path`` (atomically)."""
    scale, name = config.data.acquisition.scale, config.model.name
    mode = "degraded" if degrade else "acquired"
    derivation = (f"accelmri restore ({mode} mode): {name}, {config.data.task}, scale {scale}, checkpoint "
                  f"{Path(checkpoint).name}" + (f", adapted {adapt_steps} steps" if adapt_steps else ""))
    write_dicom_series(path, image, affine, source.path, str(source.volume.attrs["series_uid"]),
                       description=f"accelmri {name} {scale}x" + (" degraded" if degrade else ""),
                       derivation=derivation, overwrite=overwrite)


def _as_paths(reference: str | Path | Sequence[str | Path] | None, count: int) -> list[Path | None]:
    if reference is None:
        return [None] * count
    references: list[Path | None] = (
        [Path(reference)] if isinstance(reference, (str, Path)) else [Path(r) for r in reference])
    if len(references) != count:
        raise ValueError(f"give one reference per input: {count} inputs, {len(references)} references")
    return references


@dataclass(frozen=True)
class _Plan:
    """How one input is restored: its samples (built on demand), its reference, the output grid."""

    source: SliceSource
    guide: SliceSource | None
    make_sample: Callable[[int], Sample]
    expected: tuple[int, int]
    affine: np.ndarray | None
    extent: tuple[int, int] | None = None  # the input's grid, when padded to a multiple of the scale: crop to it
    uncovered: tuple[int, ...] = ()  # slices the reference leaves mostly uncovered: restored by sinc interpolation


@contextmanager
def _opened(path: Path, series_uid: str | None = None) -> Iterator[SliceSource]:
    """:func:`open_source`, with a lazily read fastMRI file closed again afterwards."""
    source = open_source(path, series_uid=series_uid)
    try:
        yield source
    finally:
        if isinstance(source.volume, FastMRIFile):
            source.volume.close()


def _acquired_band(volume: ImageVolume, scale: int) -> ImageVolume:
    """``volume`` as the acquisition leaves it for super-resolution by ``scale``: each slice's centred k-space
    outside the central ``(H // scale, W // scale)`` block set to zero (magnitude, same grid): what a reference may
    be registered to in degraded mode without looking at the ground truth."""
    kspace = fft2c(torch.from_numpy(np.asarray(volume.data, dtype=np.float32)).to(torch.complex64))
    height, width = kspace.shape[-2:]
    keep = torch.zeros(height, width, dtype=torch.bool)
    rows, columns = height // scale, width // scale
    keep[height // 2 - rows // 2: height // 2 - rows // 2 + rows, width // 2 - columns // 2:
         width // 2 - columns // 2 + columns] = True
    band = ifft2c(kspace * keep).abs().numpy().astype(np.float32)
    return ImageVolume(band, volume.affine, path=volume.path, contrast=volume.contrast)


def _plan(
    config: ExperimentConfig, source: SliceSource, reference: Path | None, degrade: bool,
    reference_series_uid: str | None = None, register_reference: bool = False,
    registered: dict[tuple[str, str], ImageVolume] | None = None, uncovered_slices: UncoveredSlices = "refuse",
) -> _Plan:
    """Check an input against the checkpoint (sizes; the reference: readable, covering, on the grid) and describe
    how it is restored; nothing heavy runs until a sample is made (except a reference's registration, kept in
    ``registered`` for the next plan of the same input)."""
    data = config.data
    if uncovered_slices != "refuse" and data.task != "super_resolution":
        raise DataError(source.path, f"--uncovered-slices {uncovered_slices} is for super-resolution checkpoints; "
                        f"this one's task is {data.task}")
    open_reference = partial(_open_reference, series_uid=reference_series_uid, registered=registered,
                             uncovered=uncovered_slices)
    scale = data.acquisition.scale
    if register_reference and reference is not None and not isinstance(source.volume, ImageVolume):
        raise DataError(source.path, "registering a reference needs geometry on both sides (image files: NIfTI or "
                        "DICOM), not k-space")
    height, width = _slice_shape(source)
    count = source.num_slices
    volume = source.volume
    make_sample: Callable[[int], Sample]
    extent: tuple[int, int] | None = None
    uncovered: tuple[int, ...] = ()
    if degrade and data.protocol == "fastmri":
        if reference is not None:
            raise DataError(reference, "data.protocol: fastmri is single-contrast: restore without --reference")
        fractions, accelerations = data.acquisition.fastmri_lists
        protocol = FastMRIProtocolDataset([source], data.acquisition.mask_kind, fractions, accelerations,
                                          normalization=data.normalization, sens_maps=data.sens_maps)
        guide, affine, make_sample = None, None, protocol.__getitem__
        expected = fastmri_crop_size(volume)
    elif degrade:
        refuse_challenge_file(source)
        grid = volume if isinstance(volume, ImageVolume) else None
        register_to = _acquired_band(grid, scale) if register_reference and grid is not None else None
        guide, uncovered = (None, ()) if reference is None else open_reference(reference, grid, count, source.subject,
                                                                               register_to=register_to)
        dataset = SliceDataset([source], data.task, data.acquisition.to_acquisition(),
                               references=None if guide is None else [guide], train=False,
                               sens_maps=data.sens_maps, normalization=data.normalization,
                               slices=[(0, index) for index in range(count)], pad=True)
        make_sample = dataset.__getitem__
        expected, affine = (height + -height % scale, width + -width % scale), None if grid is None else grid.affine
        extent = (height, width) if expected != (height, width) else None
    elif isinstance(volume, FastMRIFile) and volume.challenge:
        if scale != 1 or reference is not None:
            raise DataError(source.path, "a fastMRI test/challenge file is reconstructed at its own resolution "
                            f"without a reference; this checkpoint has scale {scale}"
                            + ("" if reference is None else " and a reference was given")
                            + ": use a reconstruction checkpoint (data.acquisition.scale 1) and no --reference")
        guide, affine = None, None
        expected = fastmri_crop_size(volume)
        make_sample = partial(challenge_sample, source, normalization=data.normalization, sens_maps=data.sens_maps)
    else:
        expected, affine, grid = (scale * height, scale * width), None, None
        if isinstance(volume, ImageVolume):
            affine = restored_affine(volume.affine, scale, (height, width))
            zeros = np.broadcast_to(np.float32(0.0), (count, *expected))  # the HR grid, for align_reference
            grid = ImageVolume(zeros, affine, path=volume.path, contrast=volume.contrast)
        register_to = volume if register_reference and isinstance(volume, ImageVolume) else None
        guide, uncovered = (None, ()) if reference is None else open_reference(reference, grid, count, source.subject,
                                                                               register_to=register_to)
        make_sample = partial(_acquired_sample, source, data, guide, expected)
    return _Plan(source, guide, make_sample, expected, affine, extent, uncovered)


def _restore_volume(
    model: nn.Module,
    config: ExperimentConfig,
    plan: _Plan,
    device: torch.device,
    precision: str,
    adapt_steps: int,
    adapt_lr: float | None,
    advance: Callable[[int], None] = lambda _: None,
) -> np.ndarray:
    """The restored volume ``(S, H, W)`` in the input's units; with ``adapt_steps``, by a copy of ``model``
    adapted to this volume. ``advance(n)`` is called as each batch of ``n`` slices is done."""
    data, source, guide, expected = config.data, plan.source, plan.guide, plan.expected
    scale, batch_size = data.acquisition.scale, data.val_batch_size or data.batch_size
    covered = [index for index in range(source.num_slices) if index not in plan.uncovered]

    def make_sample(position: int) -> Sample:  # the covered slices, in order
        return plan.make_sample(covered[position])

    if adapt_steps:
        samples = [make_sample(position) for position in range(len(covered))]
        _check_fields(model, config.model.name, collate(samples[:1]), source.path)
        model = adapt_to_scan(model, config, samples, guide, steps=adapt_steps, lr=adapt_lr, device=device,
                              path=source.path).model
        make_sample = samples.__getitem__
    image = _predict(model, config.model.name, make_sample, len(covered), batch_size, device, precision,
                     source.path, advance)
    if plan.uncovered and tuple(image.shape[1:]) == expected:  # the fallback: zero-padded measured k-space band
        several = len(plan.uncovered) > 1
        logger.warning("%s: %s %s %s mostly outside the reference %s: restored by sinc interpolation",
                       source.path, "slices" if several else "slice", _ranges(np.array(plan.uncovered)),
                       "lie" if several else "lies", None if guide is None else guide.path)
        fallback = _predict(Sinc(scale).to(device), "sinc", lambda i: plan.make_sample(plan.uncovered[i]),
                            len(plan.uncovered), batch_size, device, precision, source.path, advance)
        image = np.concatenate([image, fallback])[np.argsort([*covered, *plan.uncovered])]
    if tuple(image.shape[1:]) != expected:
        raise RuntimeError(f"{config.model.name} returned {tuple(image.shape[1:])} images for {source.path}, "
                           f"expected {expected} (scale {scale})")
    if not np.isfinite(image).all():
        raise RuntimeError(f"{config.model.name} returned NaN or Inf for {source.path}; nothing written")
    if plan.extent is not None:  # restored on the padded grid: back to the input's
        image = np.ascontiguousarray(image[:, : plan.extent[0], : plan.extent[1]])
    return image


def restore(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path,
    reference: str | Path | Sequence[str | Path] | None = None,
    degrade: bool = False,
    overwrite: bool = False,
    *,
    device: str = "auto",
    precision: Precision | None = None,
    channels_last: bool = False,
    contrast: str | None = None,
    reference_contrast: str | None = None,
    adapt_steps: int = 0,
    adapt_lr: float | None = None,
    progress: bool = False,
    dicom_as_nifti: bool = False,
    series_uid: str | None = None,
    reference_series_uid: str | None = None,
    register_reference: bool = False,
    model_options: Sequence[str] = (),
    uncovered_slices: UncoveredSlices = "refuse",
) -> list[Path]:
    """Restore files with a trained checkpoint (see the module docstring for modes, geometry and outputs).

    Args:
        checkpoint: an accelmri checkpoint (``best.pt``/``last.pt``), read with ``weights_only=True``, or the YAML
            config of a parameter-free model (``bicubic``, ``sinc``, ``zero_filled``: the baselines to compare
            with on the same input, e.g. ``OUT/configs/sr2x_bicubic.yaml`` of ``accelmri demo``).
        inputs: NIfTI files, DICOM series folders, fastMRI/ISMRMRD ``.h5`` files or twix ``.dat`` files.
        out: output folder (created), or with a single input the output file (``.nii``/``.nii.gz`` for image
            inputs, ``.h5`` for k-space inputs). A DICOM series is written as the series folder
            ``<out>/<folder name>_restored`` (or, given a ``.nii``/``.nii.gz`` name, as that NIfTI file).
        reference: the reference contrast: one path per input (same order), or one path for a single input.
        degrade: degrade the (fully sampled) inputs with the checkpoint's acquisition first; the output is then
            on the input's grid.
        overwrite: replace existing outputs (inputs are never replaced).
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda``, ``cuda:1``, ...
        precision: autocast of the forward pass (``32-true``, ``bf16-mixed``, ``16-mixed``); ``None`` = the
            checkpoint's ``trainer.precision``. Fast-path accuracy: ``docs/performance.md``.
        channels_last: run the convolutions in NHWC (:func:`accelmri.models.base.set_channels_last`).
        contrast: the inputs' contrast (``T2``, ``t2_flair``, ...; normalised by
            :func:`~accelmri.engine.contrast.normalize_contrast`); ``None`` = read from each input's metadata and
            name. Only compared with the checkpoint's training contrasts (a :class:`ContrastMismatchWarning`).
        reference_contrast: the same for the references.
        adapt_steps: scan-specific adaptation steps per volume (``0``: none; task ``super_resolution`` only; see
            :mod:`accelmri.engine.adapt`). Each volume is restored by its own adapted copy of the model; the
            seconds spent are logged (``logging.info`` on ``accelmri.engine.adapt``).
        adapt_lr: the adaptation's Adam learning rate; ``None`` = 0.1 × the checkpoint's ``optimizer.lr``.
        progress: show a progress bar (slices restored, elapsed, ETA) on stderr.
        dicom_as_nifti: write DICOM series inputs as NIfTI ``<folder name>_restored.nii.gz`` instead of a derived
            DICOM series.
        series_uid: the SeriesInstanceUID to restore from DICOM folder inputs that hold several series (an input
            that is a file, or a folder without that series, is refused).
        reference_series_uid: the same for DICOM folder references.
        register_reference: rigidly register each reference to its input before resampling it onto the target
            grid (:func:`accelmri.data.registration.register_rigid`: patient motion between the series; needs
            SimpleITK). The reference is registered to what the model sees: the input in acquired mode, the
            input's acquired k-space band (``scale``) in degraded mode, never the full-resolution original. Image
            inputs and references only. One ``logging.info`` line per reference gives the rotation and shift.
        model_options: ``KEY=VALUE`` inference options of the model
            (:data:`~accelmri.engine.evaluate.INFERENCE_OPTIONS`): ``search_coarse=4`` runs T2Net's and FASR-Net's
            coarse-to-fine correspondence search instead of the exact one (docs/performance.md).
        uncovered_slices: input slices the (registered, resampled) reference leaves mostly uncovered:
            ``"refuse"`` (an error) or ``"sinc"`` (super-resolution checkpoints: those slices are restored by sinc
            interpolation of their measured k-space band, one ``logging.warning`` names them; the others by the
            model). A reference covering no slice is refused either way.

    Returns:
        The written files (DICOM series: folders), one per input, in input order.

    Warns:
        ContrastMismatchWarning: once per input whose known contrast (or its reference's) differs from the one
            recorded in the checkpoint.
        NegativeIntensityWarning: once per image input or reference with ≥ :data:`NEGATIVE_FRACTION` (1 %) negative
            voxels (not a magnitude image; fewer are taken for interpolation ringing).

    Raises:
        DataError: a missing, unsupported or unreadable input or reference (naming it), an output that is an
            input, a reference that does not cover the target (or leaves one of its slices mostly uncovered) or is
            not on its grid, a model needing a field the inputs cannot give, or a bad checkpoint; a fastMRI
            test/challenge file with ``degrade``, a scale other than 1 or a reference, or a bad ``mask`` dataset;
            with ``adapt_steps > 0``, a task other than ``super_resolution`` or a model without trainable
            parameters (naming the checkpoint, before any input is read).
        ConfigError: a ``model_options`` key outside the inference options, or one the model does not take.
        FileExistsError: an output exists and ``overwrite`` is false (checked before any work).
        ValueError: no inputs, a reference count other than the input count, an output file name that does
            not fit the inputs, ``adapt_steps < 0``, ``adapt_lr <= 0``, or an adaptation whose loss diverged.
    """
    if not inputs:
        raise ValueError("restore needs at least one input")
    sources = [Path(p) for p in inputs]
    references = _as_paths(reference, len(sources))
    outputs = _output_paths(sources, Path(out), dicom_as_nifti)
    for path in references:
        if path is not None:
            _output_suffix(path)
    protected = [*sources, *(r for r in references if r is not None), Path(checkpoint)]
    _check_outputs(outputs, protected, overwrite)

    target_device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                 "cpu" if device == "auto" else device)
    config, model = load_method(Path(checkpoint), (), target_device, model_options)
    check_model_options_used(model_options, [config.model.name], str(checkpoint))
    check_adaptation(config, model, adapt_steps, checkpoint, adapt_lr)
    trained, trained_reference = _trained_contrasts(Path(checkpoint))
    expect = _Contrasts(trained, trained_reference, _named(contrast), _named(reference_contrast))
    set_channels_last(model, channels_last)
    precision = precision or config.trainer.precision

    # Every input and reference is read and checked (sizes, reference coverage, the model's fields: its first
    # sample is built) before any output is written, so a bad second input leaves no first output behind.
    slices = []
    registered: dict[tuple[str, str], ImageVolume] = {}  # each reference is registered once per input
    for path, ref_path in zip(sources, references, strict=True):
        with _opened(path, series_uid) as source:
            plan = _plan(config, source, ref_path, degrade, reference_series_uid, register_reference, registered,
                         uncovered_slices)
            _check_contrasts(expect, source, plan.guide)
            _check_intensities(source, plan.guide)
            _check_fields(model, config.model.name, collate([plan.make_sample(0)]), path)
            slices.append(source.num_slices)
    for output in outputs:
        output.parent.mkdir(parents=True, exist_ok=True)

    written = []
    with progress_display(progress) as display:
        task = display.add_task("restoring", total=sum(slices))
        for path, ref_path, output in zip(sources, references, outputs, strict=True):
            display.update(task, description=f"restoring {path.name}")
            with _opened(path, series_uid) as source:
                plan = _plan(config, source, ref_path, degrade, reference_series_uid, register_reference, registered,
                         uncovered_slices)
                image = _restore_volume(model, config, plan, target_device, precision, adapt_steps, adapt_lr,
                                        lambda n: display.advance(task, n))
            if plan.affine is not None and not output.name.lower().endswith(_NIFTI_SUFFIXES):  # a DICOM series
                _write_dicom(output, image, plan.affine, source, config, checkpoint, degrade, adapt_steps, overwrite)
            elif plan.affine is not None:
                layout = source.volume.attrs if isinstance(source.volume, ImageVolume) else {}
                write_nifti(output, image, plan.affine, overwrite=overwrite, axes=layout.get("nifti_axes"),
                            ndim=layout.get("nifti_ndim"))
            else:
                attrs: dict[str, object] = {key: source.volume.attrs[key] for key in ("acquisition", "patient_id")
                                            if isinstance(source.volume.attrs.get(key), (str, int, float))}
                attrs.update(accelmri_checkpoint=str(checkpoint), accelmri_model=config.model.name,
                             accelmri_scale=config.data.acquisition.scale,
                             accelmri_mode="degraded" if degrade else "acquired", accelmri_adapt_steps=adapt_steps)
                _write_hdf5(output, image, attrs, overwrite)
            written.append(output)
    return written
