"""NIfTI-1/2 magnitude volumes (``.nii``, ``.nii.gz``) via nibabel, including IXI file-name conventions.

Geometry: nibabel's ``img.affine`` (the sform if its code is set, else the qform; NIfTI-1 standard,
https://nifti.nimh.nih.gov/nifti-1) maps voxel ``(i, j, k)`` to world RAS millimetres. Arrays are returned
slices-first, ``data[s, h, w]`` (see :mod:`accelmri.data.volume`), with the affine's columns in ``(h, w, s)``
order. The slice axis ``s`` is the file's thickest voxel axis when it is at least :data:`SLICE_AXIS_RATIO` times
thicker than both others (a 2-D multi-slice acquisition, e.g. 0.9 × 0.9 × 5.5 mm, whatever order the file stores
it in: a sagittal series reoriented to RAS has its slices along ``i``), else the file's third axis ``k``; ``h`` and
``w`` are the other two in file order. A 2-D file is one slice. :func:`write_nifti` writes a volume back in the
file's layout (``attrs["nifti_axes"]``, ``attrs["nifti_ndim"]``).

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

__all__ = ["SLICE_AXIS_RATIO", "ixi_subject_id", "read_nifti", "slice_axis", "write_nifti"]

_IXI_NAME = re.compile(r"^(?P<subject>IXI\d+)-[A-Za-z]+-\d+-(?P<contrast>[A-Za-z0-9]+)(?:-\d+)?\.nii(?:\.gz)?$")
# What nibabel raises on missing, unrecognised, truncated or corrupt (gzip) files.
_READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, ImageFileError)
#: A voxel axis this many times thicker than both others is the slice axis (:func:`slice_axis`). IXI's 3-D T1
#: (1.2 × 0.94 × 0.94 mm, ratio 1.28) stays sliced along its third axis; 2-D clinical series (5–6 mm slices,
#: < 1 mm pixels: ratio ≥ 5) are sliced along their slices.
SLICE_AXIS_RATIO = 1.5


def slice_axis(affine: npt.ArrayLike) -> int:
    """The slice axis of a volume from its ``(4, 4)`` voxel → world affine: the voxel axis whose spacing is at least
    :data:`SLICE_AXIS_RATIO` × both others', else ``2`` (the third axis: near-isotropic volumes keep the file's
    order).

    Returns:
        ``0``, ``1`` or ``2``.
    """
    spacing = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    thickest = int(np.argmax(spacing))
    others = np.delete(spacing, thickest)
    return thickest if spacing[thickest] >= SLICE_AXIS_RATIO * others.max() else 2


def ixi_subject_id(path: str | os.PathLike[str]) -> str | None:
    """The IXI subject ID of a file name (``IXI012-HH-1211-T1.nii.gz`` → ``"IXI012"``), or ``None``."""
    match = _IXI_NAME.match(Path(path).name)
    return None if match is None else match["subject"]


def _ixi_contrast(path: Path) -> str | None:
    match = _IXI_NAME.match(path.name)
    return None if match is None else match["contrast"].upper()


def read_nifti(path: str | os.PathLike[str], contrast: str | None = None) -> ImageVolume:
    """Read a magnitude NIfTI volume (3-D; a 2-D file is one slice, a 4-D one with a single volume is 3-D).

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        contrast: contrast name to record; default: inferred from an IXI file name (``…-T2.nii.gz`` → ``"T2"``),
            else ``None``.

    Returns:
        :class:`ImageVolume`: ``data`` ``(S, H, W)`` float32 = the file's voxels scaled by
        ``scl_slope``/``scl_inter`` (applied by nibabel's ``get_fdata``), slices along :func:`slice_axis` (the
        file's voxels ``(H, W, S)`` for axial 2-D series and near-isotropic volumes); ``affine`` ``(4, 4)``
        float64 voxel ``(h, w, s)`` → RAS mm (the file's affine, columns permuted alike); ``attrs["nifti_axes"]``
        the file axes of ``(h, w, s)``, ``attrs["nifti_ndim"]`` the file's dimensionality (2 or 3), and
        ``attrs["subject_id"]`` for IXI names.

    Raises:
        DataError: naming the file, if it is missing, unreadable, truncated or corrupt, complex or otherwise
            non-scalar, neither 2-D nor 3-D (after dropping a single 4th-dimension volume), or holds NaN/Inf
            voxels.
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
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise DataError(file, f"shape {image.shape}: expected a 3-D volume or a 2-D image")
    try:
        data = image.get_fdata(dtype=np.float32).reshape(shape if len(shape) == 3 else (*shape, 1))
    except _READ_ERRORS as err:
        raise DataError(file, f"truncated or corrupt voxel data ({type(err).__name__}: {err})") from err
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise DataError(file, f"{bad} voxels are NaN or Inf")
    affine = np.asarray(image.affine, dtype=np.float64)
    through = slice_axis(affine) if len(shape) == 3 else 2
    axes = (*(axis for axis in range(3) if axis != through), through)  # file axes of (h, w, s)
    attrs: dict[str, object] = {"nifti_axes": axes, "nifti_ndim": len(shape)}
    subject = ixi_subject_id(file)
    if subject is not None:
        attrs["subject_id"] = subject
    return ImageVolume(
        data=np.ascontiguousarray(data.transpose(axes[2], axes[0], axes[1])),
        affine=affine[:, [*axes, 3]],
        path=file,
        contrast=_ixi_contrast(file) if contrast is None else contrast,
        attrs=attrs,
    )


def write_nifti(
    path: str | os.PathLike[str],
    volume_or_data: ImageVolume | npt.ArrayLike,
    affine: npt.ArrayLike | None = None,
    overwrite: bool = False,
    axes: tuple[int, int, int] | None = None,
    ndim: int | None = None,
) -> Path:
    """Write a slices-first volume as float32 NIfTI-1, atomically (temporary file, then :func:`os.replace`).

    The file stores voxel ``(h, w, s)`` of ``data[s, h, w]`` along the file axes ``axes`` (default: ``(h, w, s)``
    in that order, ``data.transpose(1, 2, 0)``) with ``affine``'s columns permuted alike, as both sform and qform
    (code 1, scanner; the qform is the nearest rigid-plus-zooms fit when the affine has shears), units mm.
    ``axes`` and ``ndim`` from :func:`read_nifti`'s ``attrs["nifti_axes"]``/``["nifti_ndim"]`` write a result in
    its input's layout. A ``.nii.gz`` name is gzip-compressed (the temporary file keeps that suffix so nibabel
    compresses it).

    Args:
        path: destination ending in ``.nii`` or ``.nii.gz``.
        volume_or_data: an :class:`ImageVolume`, or ``(S, H, W)`` real data.
        affine: ``(4, 4)`` voxel ``(h, w, s)`` → RAS mm; default: the volume's (required with plain data).
        overwrite: replace an existing file.
        axes: the file axes of ``(h, w, s)``, a permutation of ``(0, 1, 2)``; default: an :class:`ImageVolume`'s
            ``attrs["nifti_axes"]`` (its source file's layout), else ``(0, 1, 2)``.
        ndim: ``3``, or ``2`` for a 2-D file (one slice, ``axes[2] == 2``); default: an :class:`ImageVolume`'s
            ``attrs["nifti_ndim"]``, else ``3``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: if the name does not end in ``.nii``/``.nii.gz``, the data are not 3-D real finite values,
            the affine is missing or not ``(4, 4)``, ``axes`` is not a permutation of ``(0, 1, 2)``, or ``ndim``
            is 2 for more than one slice or a slice axis other than the third.
        FileExistsError: if ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    suffix = next((end for end in (".nii.gz", ".nii") if path.name.lower().endswith(end)), None)
    if suffix is None:
        raise ValueError(f"{path}: a NIfTI file name must end in .nii or .nii.gz")
    if isinstance(volume_or_data, ImageVolume):
        data = volume_or_data.data
        affine = volume_or_data.affine if affine is None else affine
        axes = volume_or_data.attrs.get("nifti_axes", (0, 1, 2)) if axes is None else axes
        ndim = volume_or_data.attrs.get("nifti_ndim", 3) if ndim is None else ndim
    else:
        data = volume_or_data
    axes, ndim = (0, 1, 2) if axes is None else tuple(axes), 3 if ndim is None else ndim
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

    if sorted(axes) != [0, 1, 2]:
        raise ValueError(f"axes must be a permutation of (0, 1, 2), got {axes}")
    if ndim not in (2, 3) or (ndim == 2 and (data.shape[0] != 1 or axes[2] != 2)):
        raise ValueError(f"ndim must be 3, or 2 for one slice along the third axis; got ndim {ndim}, "
                         f"{data.shape[0]} slices, axes {axes}")
    order = [int(k) for k in np.argsort(axes)]  # order[j]: the in-memory (h, w, s) axis stored as file axis j
    voxels = np.asarray(data.transpose(1, 2, 0), dtype=np.float32).transpose(order)
    affine = np.concatenate([affine[:, order], affine[:, 3:]], axis=1)
    image = nib.Nifti1Image(voxels[..., 0] if ndim == 2 else voxels, affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    image.header.set_xyzt_units("mm")
    with atomic_output(path, overwrite=overwrite, suffix=suffix) as tmp:
        nib.save(image, tmp)
    return path
