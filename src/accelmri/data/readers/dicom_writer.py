"""A derived DICOM series (one single-frame file per slice) from a restored volume and its source series (pydicom).

What is written, per slice ``k`` of the volume (the source's slice ``k`` in the order of
:func:`~accelmri.data.readers.dicom.read_dicom_series`):

* **identity** (PS3.3 C.12.1 SOP Common, C.7.3.1 General Series, C.7.6.1 General Image): a new
  SeriesInstanceUID and new SOPInstanceUIDs (:func:`pydicom.uid.generate_uid`), the source's SOPClassUID
  (Secondary Capture if it has none), ImageType ``DERIVED\\SECONDARY``, InstanceNumber ``k + 1``, SeriesNumber =
  the source's + 1000 (empty without one),
  SeriesDescription ``"<source description> <description>"`` (cut to the 64 characters of VR LO),
  DerivationDescription, and a SourceImageSequence naming the source image of the slice;
* **copied** from the source image of the slice: the Patient, General Study and Patient Study modules
  (C.7.1.1, C.7.2.1, C.7.2.2, including de-identification flags), the Frame of Reference (C.7.4.1: the output
  lies in the same patient frame), the equipment, and the MR acquisition parameters (C.8.3.1: sequence, TR, TE,
  TI, flip angle, field strength, slice thickness, ...): the acquisition is unchanged. Private tags, window
  settings, icons and anything describing the source's pixels are not copied;
* **geometry** (C.7.6.2 Image Plane): Rows/Columns of the volume, and PixelSpacing, ImageOrientationPatient and
  ImagePositionPatient derived from ``affine`` (voxel ``(h, w, s)`` → RAS mm, the affine a NIfTI output of the
  same volume carries), so the DICOM and NIfTI outputs agree: with ``A = diag(−1, −1, 1, 1) · affine`` (LPS),
  column ``h`` of ``A`` is the column direction × row spacing, column ``w`` the row direction × column spacing,
  and ``A · (0, 0, k, 1)`` the position of slice ``k``'s first pixel centre (C.7.6.2.1.1);
* **pixels** (C.7.6.3 Image Pixel, C.11.1 Modality LUT): unsigned 16-bit MONOCHROME2, one quantisation for the
  whole series: intercept ``b = min(0, min x)``, slope ``m = (max x − b) / 65535`` (``1`` for a constant
  volume ≤ 0), both rounded to the 16 characters of VR DS, stored ``q = round((x − b) / m)``; the rescaled value
  ``q · m + b`` reproduces ``x`` to ``m / 2`` (1 / 131070 of the range). The intercept is 0 for non-negative
  volumes, so stored values stay proportional to intensity for viewers that ignore the rescale.

Files are Explicit VR Little Endian with a file meta header (PS3.10), named ``IM0001.dcm``, ``IM0002.dcm``, ...
The folder appears atomically (:func:`accelmri.io.atomic_folder`).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from pydicom.valuerep import format_number_as_ds

from accelmri.io import atomic_folder

from ..errors import DataError
from .dicom import _LPS_TO_RAS, _read_folder, _vector

__all__ = ["COPIED_KEYWORDS", "quantize_uint16", "write_dicom_series"]

#: Attributes copied from each source image to the derived image of the same slice.
COPIED_KEYWORDS = (
    # SOP Common, Patient, General Study, Patient Study (PS3.3 C.12.1, C.7.1.1, C.7.2.1, C.7.2.2)
    "SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "PatientSize", "PatientWeight", "PatientComments", "PatientIdentityRemoved",
    "DeidentificationMethod", "DeidentificationMethodCodeSequence", "StudyInstanceUID", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription",
    # General Series, Frame of Reference, General Equipment (C.7.3.1, C.7.4.1, C.7.5.1)
    "Modality", "PatientPosition", "BodyPartExamined", "ProtocolName", "Laterality", "FrameOfReferenceUID",
    "PositionReferenceIndicator", "Manufacturer", "ManufacturerModelName", "InstitutionName", "StationName",
    "DeviceSerialNumber",
    # General Acquisition, MR Image, Contrast/Bolus (C.7.10.1, C.8.3.1, C.7.6.4)
    "AcquisitionNumber", "AcquisitionDate", "AcquisitionTime", "ScanningSequence", "SequenceVariant", "ScanOptions",
    "MRAcquisitionType", "SequenceName", "RepetitionTime", "EchoTime", "InversionTime", "EchoTrainLength",
    "EchoNumbers", "NumberOfAverages", "ImagingFrequency", "ImagedNucleus", "MagneticFieldStrength", "FlipAngle",
    "PixelBandwidth", "ReceiveCoilName", "TransmitCoilName", "SliceThickness", "SpacingBetweenSlices",
    "ContrastBolusAgent", "ContrastBolusRoute",
    # Lossy compression of the source carries over to anything derived from it (C.7.6.1.1.5)
    "LossyImageCompression", "LossyImageCompressionRatio", "LossyImageCompressionMethod",
)

_UINT16_MAX = 65535
_LO_LENGTH = 64  # VR LO: at most 64 characters
_SERIES_NUMBER_OFFSET = 1000


def _ds(values: npt.ArrayLike) -> list[str]:
    """Numbers as DICOM decimal strings (VR DS, at most 16 characters each, as precise as fits)."""
    return [format_number_as_ds(float(v)) for v in np.ravel(values)]


def quantize_uint16(data: npt.ArrayLike) -> tuple[np.ndarray, float, float]:
    """Unsigned 16-bit quantisation of real values with one slope and intercept (see the module docstring).

    Args:
        data: real, finite values of any shape (the restored volume, in the source's units).

    Returns:
        ``(stored, slope, intercept)``: ``stored`` uint16 of ``data``'s shape, and the RescaleSlope ``m`` and
        RescaleIntercept ``b`` exactly as written (VR DS values), with ``|stored · m + b − data| ≤ m / 2`` up to the
        DS rounding of ``m`` and ``b`` (relative 1e-10).

    Raises:
        ValueError: non-finite values.
    """
    values = np.asarray(data, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("cannot quantise NaN or Inf")
    intercept = float(format_number_as_ds(min(0.0, float(values.min()))))
    span = float(values.max()) - intercept
    slope = float(format_number_as_ds(span / _UINT16_MAX)) if span > 0 else 1.0
    stored = np.clip(np.rint((values - intercept) / slope), 0, _UINT16_MAX).astype(np.uint16)
    return stored, slope, intercept


def _source_images(folder: Path, series_uid: str) -> list[Dataset]:
    """The series' headers in the slice order of :func:`~accelmri.data.readers.dicom.read_dicom_series`
    (ascending along the slice normal)."""
    series = _read_folder(folder)
    if series_uid not in series:
        raise DataError(folder, f"series {series_uid} not found")
    images = series[series_uid]
    orientation = _vector(*images[0], "ImageOrientationPatient", 6)
    normal = np.cross(orientation[:3], orientation[3:])
    heights = [float(_vector(file, ds, "ImagePositionPatient", 3) @ normal) for file, ds in images]
    return [images[i][1] for i in np.argsort(heights, kind="stable")]


def _description(source: Dataset, description: str) -> str:
    """``"<source SeriesDescription> <description>"``, the source part cut to fit VR LO's 64 characters."""
    original = str(source.get("SeriesDescription") or "").strip()
    room = _LO_LENGTH - len(description) - 1
    return f"{original[:room].rstrip()} {description}".strip() if original and room > 0 else description[:_LO_LENGTH]


def _series_number(source: Dataset) -> int | None:
    """The source's SeriesNumber + 1000; ``None`` (written empty, VR IS Type 2) when absent or not a number."""
    try:
        return int(source.get("SeriesNumber")) + _SERIES_NUMBER_OFFSET
    except (TypeError, ValueError):
        return None


def write_dicom_series(
    folder: str | os.PathLike[str],
    data: npt.ArrayLike,
    affine: npt.ArrayLike,
    source: str | os.PathLike[str],
    series_uid: str,
    *,
    description: str,
    derivation: str,
    overwrite: bool = False,
) -> Path:
    """Write ``data`` as a derived DICOM series of the source series (module docstring: tags, geometry, pixels).

    Args:
        folder: the output folder (created atomically; must not exist unless ``overwrite``).
        data: ``(S, H, W)`` real finite values in the source's units (e.g. the restored volume), slice ``k`` being
            the source's slice ``k`` in :func:`~accelmri.data.readers.read_dicom_series` order.
        affine: ``(4, 4)`` voxel ``(h, w, s)`` → RAS mm of ``data`` (``h``: row index, ``w``: column index).
        source: the source series' folder (its headers are read again; the pixels are not).
        series_uid: the source's SeriesInstanceUID (``ImageVolume.attrs["series_uid"]`` of the reader).
        description: appended to the source's SeriesDescription (e.g. ``"accelmri edsr 2x"``).
        derivation: the DerivationDescription (VR ST, what was done to the source images).
        overwrite: replace an existing ``folder``.

    Returns:
        ``folder`` as a :class:`~pathlib.Path`, holding ``IM0001.dcm`` … one file per slice.

    Raises:
        DataError: the source folder is unreadable, lacks the series, or has a slice count other than ``S``.
        ValueError: ``data`` is not 3-D real finite, or ``affine`` not ``(4, 4)`` with non-zero in-plane columns.
        FileExistsError: ``folder`` exists and ``overwrite`` is false.
    """
    values = np.asarray(data)
    matrix = np.asarray(affine, dtype=np.float64)
    if values.ndim != 3 or np.iscomplexobj(values):
        raise ValueError(f"expected (S, H, W) real data, got shape {values.shape} {values.dtype}")
    if matrix.shape != (4, 4):
        raise ValueError(f"expected a (4, 4) affine, got shape {matrix.shape}")
    lps = _LPS_TO_RAS @ matrix  # the flip is its own inverse: RAS → LPS
    spacing = np.linalg.norm(lps[:3, :2], axis=0)  # (between rows, between columns)
    if not (spacing > 0).all():
        raise ValueError(f"expected a (4, 4) affine with non-zero in-plane columns, got {matrix.tolist()}")
    root = Path(source)
    images = _source_images(root, series_uid)
    if len(images) != values.shape[0]:
        raise DataError(root, f"series {series_uid} has {len(images)} images, the volume {values.shape[0]} slices")
    stored, slope, intercept = quantize_uint16(values)
    orientation = _ds(np.concatenate([lps[:3, 1] / spacing[1], lps[:3, 0] / spacing[0]]))  # row, then column cosines
    now = datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    new_series = generate_uid()

    with atomic_folder(Path(folder), overwrite=overwrite) as tmp:
        for index, src in enumerate(images):
            ds = Dataset()
            for keyword in COPIED_KEYWORDS:
                if keyword in src:
                    ds[keyword] = src[keyword]
            ds.SOPClassUID = src.get("SOPClassUID") or SecondaryCaptureImageStorage
            ds.SOPInstanceUID = generate_uid()
            ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
            ds.SeriesInstanceUID = new_series
            ds.SeriesNumber = _series_number(src)
            ds.SeriesDate = ds.ContentDate = date
            ds.SeriesTime = ds.ContentTime = time
            ds.SeriesDescription = _description(src, description)
            ds.ImageType = ["DERIVED", "SECONDARY"]
            ds.InstanceNumber = index + 1
            ds.DerivationDescription = derivation[:1024]
            if src.get("SOPInstanceUID"):
                reference = Dataset()
                reference.ReferencedSOPClassUID = ds.SOPClassUID
                reference.ReferencedSOPInstanceUID = src.SOPInstanceUID
                ds.SourceImageSequence = Sequence([reference])

            ds.ImagePositionPatient = _ds(lps[:3, 3] + index * lps[:3, 2])
            ds.ImageOrientationPatient = orientation
            ds.PixelSpacing = _ds(spacing)
            ds.Rows, ds.Columns = values.shape[1:]
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 0
            ds.RescaleIntercept, ds.RescaleSlope = _ds([intercept, slope])
            ds.PixelData = stored[index].astype("<u2").tobytes()

            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = ds.SOPClassUID
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta = meta
            ds.save_as(tmp / f"IM{index + 1:04d}.dcm", enforce_file_format=True)
    return Path(folder)
