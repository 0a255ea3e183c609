"""File readers (and writers), all returning slices-first :mod:`accelmri.data.volume` objects.

Readers (every bad-input case raises :class:`~accelmri.data.errors.DataError` naming the file):

- :mod:`.fastmri`: fastMRI HDF5, single- and multi-coil — :class:`FastMRIFile` (lazy, picklable slice reader),
  :func:`read_fastmri` → :class:`KspaceVolume`; :func:`write_fastmri`, :func:`make_ismrmrd_header`.
- :mod:`.nifti`: NIfTI ``.nii``/``.nii.gz`` magnitude volumes (IXI names give contrast and subject ID) —
  :func:`read_nifti` → :class:`ImageVolume`; :func:`write_nifti`, :func:`ixi_subject_id`.
- :mod:`.dicom`: one DICOM series per folder — :func:`read_dicom_series` → :class:`ImageVolume`;
  :mod:`.dicom_writer`: :func:`write_dicom_series`, a derived series of a source series (``accelmri restore``).
- :mod:`.ismrmrd`: ISMRMRD raw ``.h5``, fully sampled Cartesian 2-D — :func:`read_ismrmrd_kspace` →
  :class:`KspaceVolume`; :func:`write_ismrmrd_kspace` (optional dependency ``ismrmrd``).
- :mod:`.twix`: Siemens raw ``.dat``, one fully sampled Cartesian 2-D frame — :func:`read_twix_kspace` →
  ``(C, H, W)`` tensor (optional dependency ``twixtools``).

:func:`read_volume` picks the reader from the path.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py

from ..errors import DataError
from ..volume import ImageVolume, KspaceVolume
from .dicom import read_dicom_series
from .dicom_writer import write_dicom_series
from .fastmri import FastMRIFile, make_ismrmrd_header, open_hdf5, read_fastmri, write_fastmri
from .ismrmrd import read_ismrmrd_kspace, write_ismrmrd_kspace
from .nifti import ixi_subject_id, read_nifti, write_nifti
from .twix import read_twix_kspace

__all__ = [
    "FastMRIFile",
    "ixi_subject_id",
    "make_ismrmrd_header",
    "read_dicom_series",
    "read_fastmri",
    "read_ismrmrd_kspace",
    "read_nifti",
    "read_twix_kspace",
    "read_volume",
    "write_dicom_series",
    "write_fastmri",
    "write_ismrmrd_kspace",
    "write_nifti",
]


def read_volume(path: str | os.PathLike[str], series_uid: str | None = None) -> ImageVolume | KspaceVolume:
    """Read an image or k-space volume, choosing the reader from the path.

    - a folder: DICOM series (:func:`read_dicom_series`; the folder must hold a single series, or give
      ``series_uid``);
    - ``.nii`` / ``.nii.gz``: :func:`read_nifti`;
    - ``.h5`` / ``.hdf5``: fastMRI (:func:`read_fastmri`) if the file has a ``kspace`` dataset, else ISMRMRD
      (:func:`read_ismrmrd_kspace`) if it has a ``dataset`` group;
    - ``.dat``: Siemens twix (:func:`read_twix_kspace`), as a :class:`KspaceVolume` with one slice.

    Args:
        path: file or folder.
        series_uid: the SeriesInstanceUID to read from a DICOM folder holding several series (``--series-uid``).

    Returns:
        :class:`ImageVolume` (NIfTI, DICOM) or :class:`KspaceVolume` (fastMRI, ISMRMRD, twix).

    Raises:
        DataError: if the path does not exist, its kind is not recognised, ``series_uid`` is given for a file (not a
            DICOM folder), or the chosen reader rejects it.
        ImportError: if the chosen reader's optional dependency (``ismrmrd``, ``twixtools``) is missing.
    """
    file = Path(path)
    if file.is_dir():
        return read_dicom_series(file, series_uid=series_uid)
    if not file.is_file():
        raise DataError(file, "no such file or folder")
    if series_uid is not None:
        raise DataError(file, f"a series UID ({series_uid}) selects a series of a DICOM folder; this is a file")
    name = file.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return read_nifti(file)
    if name.endswith((".h5", ".hdf5")):
        with open_hdf5(file) as handle:
            is_fastmri = isinstance(handle.get("kspace"), h5py.Dataset)
            is_ismrmrd = isinstance(handle.get("dataset"), h5py.Group)
        if is_fastmri:
            return read_fastmri(file)
        if is_ismrmrd:
            return read_ismrmrd_kspace(file)
        raise DataError(file, "HDF5 file with neither a fastMRI 'kspace' dataset nor an ISMRMRD 'dataset' group")
    if name.endswith(".dat"):
        return KspaceVolume(kspace=read_twix_kspace(file).numpy()[None], path=file)
    raise DataError(
        file, "unrecognised kind: expected a DICOM folder, .nii/.nii.gz, .h5 (fastMRI or ISMRMRD) or .dat (twix)"
    )
