"""DICOM magnitude series (one folder of single-frame images) via pydicom.

Geometry follows DICOM PS3.3 C.7.6.2.1.1 (Image Plane module): for the pixel in row ``r`` and column ``c``,

    P(r, c) = ImagePositionPatient + c · Δc · X + r · Δr · Y,

where ``X`` = the first three values of ImageOrientationPatient (row direction cosines: the direction of
increasing column index), ``Y`` = the last three (column direction cosines: increasing row index), and
PixelSpacing = ``(Δr, Δc)`` (spacing between rows, spacing between columns), in the patient coordinate system
LPS (x → patient left, y → posterior, z → head). Slices are ordered by the projection of their
ImagePositionPatient on the slice normal ``X × Y``. The returned affine maps voxel ``(h, w, s)`` = (row, column,
slice) to RAS millimetres like a NIfTI affine, so the first two world axes are negated.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from ..errors import DataError
from ..volume import ImageVolume

__all__ = ["read_dicom_series"]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Largest allowed disagreement between images of one series: direction cosines, and pixel spacing (mm).
_ATOL = 1e-4
# Consecutive slice steps may differ from their mean by this fraction of it plus 0.01 mm (rounded positions).
_STEP_RTOL = 0.01


def _vector(file: Path, ds: Dataset, keyword: str, length: int) -> np.ndarray:
    try:
        values = np.array([float(v) for v in ds[keyword].value], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(file, f"missing or invalid {keyword}") from err
    if values.shape != (length,) or not np.isfinite(values).all():
        raise DataError(file, f"{keyword} must hold {length} numbers, got {list(values)}")
    return values


def _read_folder(root: Path) -> dict[str, list[tuple[Path, Dataset]]]:
    """DICOM files with pixel data in ``root`` (not recursive), grouped by SeriesInstanceUID."""
    series: dict[str, list[tuple[Path, Dataset]]] = {}
    for file in sorted(p for p in root.iterdir() if p.is_file()):
        try:
            # Pixel data (and other large elements) are read from the file only when accessed.
            ds = pydicom.dcmread(file, defer_size="1 KB")
        except InvalidDicomError:
            continue  # not DICOM: README, thumbnails, ...
        except Exception as err:  # pydicom raises many types on damaged files
            raise DataError(file, f"unreadable DICOM file ({type(err).__name__}: {err})") from err
        if "PixelData" not in ds:
            continue  # DICOMDIR, structured reports, presentation states, ...
        uid = ds.get("SeriesInstanceUID")
        if not uid:
            raise DataError(file, "no SeriesInstanceUID")
        series.setdefault(str(uid), []).append((file, ds))
    return series


def read_dicom_series(
    folder: str | os.PathLike[str], contrast: str | None = None, series_uid: str | None = None
) -> ImageVolume:
    """Read one DICOM series of single-frame grayscale images from a folder.

    Files that are not DICOM, or hold no pixel data, are ignored; sub-folders are not searched.

    Args:
        folder: the folder holding the series' files.
        contrast: contrast name to record (not inferred).
        series_uid: the SeriesInstanceUID to read when the folder holds several series.

    Returns:
        :class:`ImageVolume`: ``data`` ``(S, rows, cols)`` float32 = stored values · RescaleSlope +
        RescaleIntercept (defaults 1 and 0), slices sorted along the slice normal; ``affine`` voxel
        ``(row, col, slice)`` → RAS mm, its slice column the mean step between consecutive
        ImagePositionPatient values (a single image uses SpacingBetweenSlices, else SliceThickness, else 1 mm,
        along the normal); ``attrs``: ``series_uid`` and, where present, ``series_description``, ``patient_id``
        and ``modality``.

    Raises:
        DataError: naming the folder or file, if the folder is missing or holds no DICOM images, several series
            and no (or an absent) ``series_uid``, a damaged file, multi-frame or colour images, images of
            different sizes, orientations or pixel spacings, missing geometry, two images at one position, or
            non-uniform slice spacing.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(root, "not a folder")
    series = _read_folder(root)
    if not series:
        raise DataError(root, "no DICOM image files")
    listing = ", ".join(f"{uid} ({len(files)} files)" for uid, files in sorted(series.items()))
    if series_uid is None:
        if len(series) > 1:
            raise DataError(root, f"{len(series)} series found: {listing}; the command line reads one series per "
                            "folder: pick one with --series-uid UID (restore; --reference-series-uid for a "
                            "reference) or move it into a folder of its own (in Python: "
                            "read_dicom_series(folder, series_uid=...))")
        series_uid = next(iter(series))
    elif series_uid not in series:
        raise DataError(root, f"series {series_uid} not found; found: {listing}")
    images = series[series_uid]

    for file, ds in images:
        if not ds.get("Rows") or not ds.get("Columns"):
            raise DataError(file, "missing Rows or Columns")
    sizes = {(int(ds.Rows), int(ds.Columns)) for _, ds in images}
    if len(sizes) > 1:
        raise DataError(root, f"series {series_uid} mixes image sizes {sorted(sizes)}")
    ((rows, cols),) = sizes
    orientation = _vector(*images[0], "ImageOrientationPatient", 6)
    spacing = _vector(*images[0], "PixelSpacing", 2)
    for file, ds in images[1:]:
        if np.abs(_vector(file, ds, "ImageOrientationPatient", 6) - orientation).max() > _ATOL:
            raise DataError(file, "ImageOrientationPatient differs from the rest of the series")
        if np.abs(_vector(file, ds, "PixelSpacing", 2) - spacing).max() > _ATOL:
            raise DataError(file, "PixelSpacing differs from the rest of the series")
    row_cos = orientation[:3] / np.linalg.norm(orientation[:3])
    col_cos = orientation[3:] / np.linalg.norm(orientation[3:])
    normal = np.cross(row_cos, col_cos)

    positions = np.stack([_vector(file, ds, "ImagePositionPatient", 3) for file, ds in images])
    order = np.argsort(positions @ normal, kind="stable")
    images = [images[i] for i in order]
    positions = positions[order]
    if len(images) == 1:
        ds = images[0][1]
        thickness = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness") or 1.0
        step = normal * float(thickness)
    else:
        steps = np.diff(positions, axis=0)
        distances = steps @ normal
        if distances.min() < _ATOL:
            index = int(np.argmin(distances))
            raise DataError(
                images[index + 1][0], f"same slice position as {images[index][0].name} (several echoes or times?)"
            )
        step = (positions[-1] - positions[0]) / (len(images) - 1)
        deviation = np.linalg.norm(steps - step, axis=1).max()
        if deviation > _STEP_RTOL * np.linalg.norm(step) + 0.01:
            raise DataError(
                root, f"non-uniform slice spacing (steps {distances.min():.3f} to {distances.max():.3f} mm)"
            )

    data = np.empty((len(images), rows, cols), dtype=np.float32)
    for index, (file, ds) in enumerate(images):
        if int(ds.get("SamplesPerPixel") or 1) != 1 or int(ds.get("NumberOfFrames") or 1) != 1:
            raise DataError(file, "only single-frame grayscale images are supported")
        try:
            pixels = ds.pixel_array
        except Exception as err:  # decoders raise many types (missing codec, short pixel data, ...)
            raise DataError(file, f"cannot decode pixel data ({type(err).__name__}: {err})") from err
        slope = float(ds.get("RescaleSlope") or 1.0)
        intercept = float(ds.get("RescaleIntercept") or 0.0)
        data[index] = pixels * slope + intercept

    lps = np.eye(4)
    lps[:3, 0] = col_cos * spacing[0]  # h: down a column (increasing row index), by the row spacing
    lps[:3, 1] = row_cos * spacing[1]  # w: along a row (increasing column index), by the column spacing
    lps[:3, 2] = step
    lps[:3, 3] = positions[0]
    first = images[0][1]
    attrs: dict[str, str] = {"series_uid": series_uid}
    for keyword, name in (
        ("SeriesDescription", "series_description"),
        ("PatientID", "patient_id"),
        ("Modality", "modality"),
    ):
        if first.get(keyword):
            attrs[name] = str(first.get(keyword))
    return ImageVolume(data=data, affine=_LPS_TO_RAS @ lps, path=root, contrast=contrast, attrs=attrs)
