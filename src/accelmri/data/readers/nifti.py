"""NIfTI-1/2 magnitude volumes (``.nii``, ``.nii.gz``) via nibabel, including IXI file-name conventions.

Geometry: nibabel's ``img.affine`` (the sform if its code is set, else the qform; NIfTI-1 standard,
https://nifti.nimh.nih.gov/nifti-1) maps voxel ``(i, j, k)`` to world RAS millimetres. Arrays are returned
slices-first, ``data[s, h, w] = file[h, w, s]`` (see :mod:`accelmri.data.volume`), with the affine unchanged.

IXI (https://brain-development.org/ixi-dataset/) names its files ``IXI<ID>-<Site>-<Num>-<Contrast>.nii.gz``,
e.g. ``IXI012-HH-1211-T1.nii.gz``; contrast and subject ID are taken from the name.
"""

from __future__ import annotations

import os
import re
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import numpy.typing as npt
from nibabel.filebasedimages import ImageFileError

from accelmri.io import atomic_output

from ..errors import DataError
from ..volume import ImageVolume

__all__ = ["ixi_subject_id", "read_nifti", "write_nifti"]

_IXI_NAME = re.compile(r"^(?P<subject>IXI\d+)-[A-Za-z]+-\d+-(?P<contrast>[A-Za-z0-9]+)(?:-\d+)?\.nii(?:\.gz)?$")
# What nibabel raises on missing, unrecognised, truncated or corrupt (gzip) files.
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, ImageFileError)


def ixi_subject_id(path: str | os.PathLike[str]) -> str | None:
    """The IXI subject ID of a file name (``IXI012-HH-1211-T1.nii.gz`` → ``"IXI012"``), or ``None``."""
    match = _IXI_NAME.match(Path(path).name)
    return None if match is None else match["subject"]


def _ixi_contrast(path: Path) -> str | None:
    match = _IXI_NAME.match(path.name)
    return None if match is None else match["contrast"].upper()


def read_nifti(path: str | os.PathLike[str], contrast: str | None = None) -> ImageVolume:
    """Read a 3-D magnitude NIfTI volume.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        contrast: contrast name to record; default: inferred from an IXI file name (``…-T2.nii.gz`` → ``"T2"``),
            else ``None``.

    Returns:
        :class:`ImageVolume`: ``data`` ``(S, H, W)`` float32 = file voxels ``(H, W, S)`` scaled by
        ``scl_slope``/``scl_inter`` (applied by nibabel's ``get_fdata``); ``affine`` ``(4, 4)`` float64
        voxel ``(h, w, s)`` → RAS mm; ``attrs["subject_id"]`` for IXI names. A 4-D volume whose 4th dimension
        is 1 is squeezed to 3-D.

    Raises:
        DataError: naming the file, if it is missing, unreadable, truncated or corrupt, complex or otherwise
            non-scalar, not 3-D, or holds NaN/Inf voxels.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(file, "file not found")
    try:
        image = nib.load(file)  # reads the header; voxels are read by get_fdata below
    except _READ_ERRORS as err:
        raise DataError(file, f"not a readable NIfTI file ({type(err).__name__}: {err})") from err
    dtype = image.get_data_dtype()
    if dtype.kind not in "biuf":
        raise DataError(file, f"voxel type {dtype} is not real scalar: expected a magnitude image")
    shape = image.shape[:3] if len(image.shape) == 4 and image.shape[3] == 1 else image.shape
    if len(shape) != 3:
        raise DataError(file, f"shape {image.shape}: expected a 3-D volume")
    try:
        data = image.get_fdata(dtype=np.float32).reshape(shape)
    except _READ_ERRORS as err:
        raise DataError(file, f"truncated or corrupt voxel data ({type(err).__name__}: {err})") from err
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise DataError(file, f"{bad} voxels are NaN or Inf")
    subject = ixi_subject_id(file)
    return ImageVolume(
        data=np.ascontiguousarray(data.transpose(2, 0, 1)),
        affine=np.asarray(image.affine, dtype=np.float64),
        path=file,
        contrast=_ixi_contrast(file) if contrast is None else contrast,
        attrs={} if subject is None else {"subject_id": subject},
    )


def write_nifti(
    path: str | os.PathLike[str],
    volume_or_data: ImageVolume | npt.ArrayLike,
    affine: npt.ArrayLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a slices-first volume as float32 NIfTI-1, atomically (temporary file, then :func:`os.replace`).

    The file stores ``data.transpose(1, 2, 0)`` (voxel ``(h, w, s)``) with ``affine`` as both sform and qform
    (code 1, scanner; the qform is the nearest rigid-plus-zooms fit when the affine has shears), units mm.
    A ``.nii.gz`` name is gzip-compressed (the temporary file keeps that suffix so nibabel compresses it).

    Args:
        path: destination ending in ``.nii`` or ``.nii.gz``.
        volume_or_data: an :class:`ImageVolume`, or ``(S, H, W)`` real data.
        affine: ``(4, 4)`` voxel ``(h, w, s)`` → RAS mm; default: the volume's (required with plain data).
        overwrite: replace an existing file.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: if the name does not end in ``.nii``/``.nii.gz``, the data are not 3-D real finite values,
            or the affine is missing or not ``(4, 4)``.
        FileExistsError: if ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    suffix = next((end for end in (".nii.gz", ".nii") if path.name.lower().endswith(end)), None)
    if suffix is None:
        raise ValueError(f"{path}: a NIfTI file name must end in .nii or .nii.gz")
    if isinstance(volume_or_data, ImageVolume):
        data = volume_or_data.data
        affine = volume_or_data.affine if affine is None else affine
    else:
        data = volume_or_data
    data = np.asarray(data)
    if data.ndim != 3 or data.dtype.kind not in "biuf":
        raise ValueError(f"data must be real (S, H, W), got shape {data.shape} and dtype {data.dtype}")
    if not np.isfinite(data).all():
        raise ValueError("data contain NaN or Inf")
    if affine is None:
        raise ValueError("affine is required when writing plain data")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be (4, 4), got shape {affine.shape}")

    image = nib.Nifti1Image(np.asarray(data.transpose(1, 2, 0), dtype=np.float32), affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    image.header.set_xyzt_units("mm")
    with atomic_output(path, overwrite=overwrite, suffix=suffix) as tmp:
        nib.save(image, tmp)
    return path
