"""DICOM in → DICOM out: ``restore`` on a DICOM series writes a derived DICOM series (``write_dicom_series``).

The output is read back with pydicom (tags, UIDs, geometry, rescale) and with a second, independent reader
(SimpleITK: GDCM's series sorting and ITK's geometry), whose origin, spacing and direction are compared with the
input series' through the same reader.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk  # the second reader: GDCM sorts the series, ITK gives its geometry (LPS)
from typer.testing import CliRunner

from accelmri.cli import app
from accelmri.data.errors import DataError
from accelmri.data.readers import read_dicom_series, read_nifti
from accelmri.data.readers.dicom_writer import quantize_uint16
from accelmri.engine.restore import restore
from tests.dicom_utils import write_dicom_slice
from tests.test_adapt import EDSR, make_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()

ROWS, COLS, SLICES = 31, 32, 3  # odd rows: the 2× grid's first pixel centre moves by half an LR pixel
ROW_SPACING = 0.8  # tests/dicom_utils.py: PixelSpacing (0.8, 0.6)
COL_SPACING = 0.6
SLICE_STEP = 3.5
TILT, TURN = np.deg2rad(15.0), np.deg2rad(25.0)
ROW_COS = np.array([np.cos(TURN), np.sin(TURN) * np.cos(TILT), np.sin(TURN) * np.sin(TILT)])  # along a row
COL_COS = np.array([0.0, -np.sin(TILT), np.cos(TILT)])  # down a column
NORMAL = np.cross(ROW_COS, COL_COS)
FIRST = np.array([-41.25, 12.5, 30.0])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "edsr.pt", EDSR)


def write_series(folder: Path) -> Path:
    """An oblique MR series in a new ``folder``: 3 slices of 31 × 32, files in reverse slice order, patient/study
    tags, a private tag."""
    folder.mkdir()
    uid, study, frame = pydicom.uid.generate_uid(), pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    h, w = np.mgrid[:ROWS, :COLS]
    for index in range(SLICES):
        pixels = 400 + 300 * np.cos(2 * np.pi * (h / ROWS + index / 5)) * np.sin(2 * np.pi * 2 * w / COLS)
        path = folder / f"im{SLICES - index}.dcm"
        write_dicom_slice(path, np.round(pixels), FIRST + SLICE_STEP * index * NORMAL, uid, (*ROW_COS, *COL_COS),
                          slope=0.5, intercept=-20.0, signed=False)
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.StudyInstanceUID, ds.FrameOfReferenceUID = "Doe^Jane", study, frame
        ds.StudyDate, ds.SeriesNumber, ds.EchoTime, ds.RepetitionTime = "20260102", 7, 90.0, 4000.0
        ds.private_block(0x0029, "ACME 1.0", create=True).add_new(0x10, "OB", b"private")  # not copied
        ds.save_as(path)
    return folder


@pytest.fixture
def series(tmp_path: Path) -> Path:
    return write_series(tmp_path / "t2_series")


def _slices(folder: Path) -> list[pydicom.Dataset]:
    """The folder's images in slice order (ascending along the normal)."""
    datasets = [pydicom.dcmread(p) for p in folder.iterdir()]
    return sorted(datasets, key=lambda ds: float(np.dot([float(v) for v in ds.ImagePositionPatient], NORMAL)))


def _positions(datasets: list[pydicom.Dataset]) -> np.ndarray:
    return np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])


def _sitk_series(folder: Path) -> sitk.Image:
    """The folder's series as a SimpleITK image (index (column, row, slice))."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def test_dicom_series_is_restored_to_a_derived_series(checkpoint: Path, series: Path, tmp_path: Path) -> None:
    (written,) = restore(checkpoint, [series], tmp_path / "out")
    assert written == tmp_path / "out" / "t2_series_restored" and written.is_dir()
    assert sorted(p.name for p in written.iterdir()) == ["IM0001.dcm", "IM0002.dcm", "IM0003.dcm"]
    (nifti,) = restore(checkpoint, [series], tmp_path / "t2.nii.gz")  # the same restore, as NIfTI
    expected = read_nifti(nifti)

    source, output = _slices(series), _slices(written)
    old_uids = {ds.SOPInstanceUID for ds in source} | {source[0].SeriesInstanceUID}
    new_uids = {ds.SOPInstanceUID for ds in output}
    assert len(new_uids) == SLICES and not new_uids & old_uids
    assert {ds.SeriesInstanceUID for ds in output} == {output[0].SeriesInstanceUID}
    assert output[0].SeriesInstanceUID not in old_uids
    for index, ds in enumerate(output):
        assert list(ds.ImageType) == ["DERIVED", "SECONDARY"] and ds.InstanceNumber == index + 1
        assert ds.SOPClassUID == source[index].SOPClassUID == ds.file_meta.MediaStorageSOPClassUID
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == source[index].SOPInstanceUID
        assert (ds.Rows, ds.Columns) == (2 * ROWS, 2 * COLS)
        np.testing.assert_allclose([float(v) for v in ds.PixelSpacing], [ROW_SPACING / 2, COL_SPACING / 2])
        np.testing.assert_allclose([float(v) for v in ds.ImageOrientationPatient], [*ROW_COS, *COL_COS], atol=1e-9)
        for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "FrameOfReferenceUID",
                        "Modality", "EchoTime", "RepetitionTime", "SliceThickness"):
            assert ds[keyword].value == source[index][keyword].value, keyword
        assert ds.SeriesDescription == "t2_tse_tra accelmri edsr 2x" and ds.SeriesNumber == 1007
        assert "edsr" in ds.DerivationDescription and "acquired mode" in ds.DerivationDescription
        assert not any(element.tag.is_private for element in ds) and ds.PixelRepresentation == 0 and ds.BitsStored == 16

    # Positions: HR pixel (0, 0) is LR pixel (−1/2, 0) for 31 rows (restored_affine), on every slice.
    shift = -0.5 * ROW_SPACING * COL_COS
    positions = _positions(output)
    np.testing.assert_allclose(positions[0], FIRST + shift, atol=1e-6)
    np.testing.assert_allclose(positions[-1], FIRST + (SLICES - 1) * SLICE_STEP * NORMAL + shift, atol=1e-3)
    # Every slice: the input's position (to its 4-decimal rounding: the affine holds the mean slice step).
    np.testing.assert_allclose(positions, _positions(source) + shift, atol=1e-4)

    # Rescale values reproduce the restored float image (the NIfTI output) within the quantisation step.
    slope, intercept = float(output[0].RescaleSlope), float(output[0].RescaleIntercept)
    rescaled = np.stack([ds.pixel_array * slope + intercept for ds in output])
    assert rescaled.shape == expected.data.shape
    assert np.abs(rescaled - expected.data).max() <= 0.5 * slope * (1 + 1e-6)
    assert slope == pytest.approx((expected.data.max() - min(0.0, expected.data.min())) / 65535, rel=1e-6)
    back = read_dicom_series(written)  # the NIfTI and DICOM outputs agree
    np.testing.assert_allclose(back.affine, expected.affine, atol=1e-9)

    # A second reader: the geometry agrees with the input series' (ITK index (column, row, slice), LPS).
    before, after = _sitk_series(series), _sitk_series(written)
    assert after.GetSize() == (2 * COLS, 2 * ROWS, SLICES)
    np.testing.assert_allclose(after.GetDirection(), before.GetDirection(), atol=1e-9)
    np.testing.assert_allclose(after.GetSpacing(), np.array(before.GetSpacing()) / (2, 2, 1), atol=1e-9)
    np.testing.assert_allclose(np.subtract(after.GetOrigin(), before.GetOrigin()), shift, atol=1e-9)
    np.testing.assert_allclose(before.GetOrigin(), FIRST, atol=1e-9)
    nifti_image = sitk.ReadImage(str(nifti))  # and it reads the NIfTI output (index (row, column, slice)) alike
    np.testing.assert_allclose(nifti_image.GetOrigin(), after.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(np.array(nifti_image.GetSpacing())[[1, 0, 2]], after.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(np.reshape(nifti_image.GetDirection(), (3, 3))[:, [1, 0, 2]],
                               np.reshape(after.GetDirection(), (3, 3)), atol=1e-5)


def test_failed_or_refused_dicom_outputs_leave_nothing(checkpoint: Path, series: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    calls = []
    save_as = pydicom.Dataset.save_as

    def fail_on_second(self: pydicom.Dataset, *args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        save_as(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(pydicom.Dataset, "save_as", fail_on_second)
        with pytest.raises(OSError, match="disk full"):
            restore(checkpoint, [series], out)
    assert len(calls) == 2 and list(out.iterdir()) == []  # neither the folder nor its temporary twin

    (written,) = restore(checkpoint, [series], out)
    first = {p.name: pydicom.dcmread(p).SOPInstanceUID for p in written.iterdir()}
    with pytest.raises(FileExistsError, match="already exists"):
        restore(checkpoint, [series], out)
    restore(checkpoint, [series], out, overwrite=True)
    second = {p.name: pydicom.dcmread(p).SOPInstanceUID for p in written.iterdir()}
    assert first.keys() == second.keys() and not set(first.values()) & set(second.values())
    assert sorted(p.name for p in out.iterdir()) == ["t2_series_restored"]
    with pytest.raises(DataError, match="inside the input folder"):
        restore(checkpoint, [series], series)
    nested = tmp_path / "t2_series_restored" / "t2_series"  # the output folder would hold the input
    shutil.copytree(series, nested)
    with pytest.raises(DataError, match=r"holds .*an input of this restore"):  # --overwrite would delete it
        restore(checkpoint, [nested], tmp_path, overwrite=True)
    assert len(list(nested.iterdir())) == SLICES
    with pytest.raises(ValueError, match="a DICOM series"):
        restore(checkpoint, [series], tmp_path / "t2.h5")


def test_cli_bad_dicom_input_is_one_line_and_exit_2(checkpoint: Path, series: Path, tmp_path: Path) -> None:
    damaged = next(series.iterdir())
    ds = pydicom.dcmread(damaged)
    del ds.ImageOrientationPatient
    ds.save_as(damaged)
    out = tmp_path / "out"
    result = runner.invoke(app, ["restore", str(checkpoint), str(series), "--out", str(out), "--quiet"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "ImageOrientationPatient" in lines[0], lines
    assert damaged.name in lines[0] and not out.exists()


def test_cli_writes_dicom_by_default_and_nifti_on_request(checkpoint: Path, series: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["restore", str(checkpoint), str(series), "--out", str(tmp_path / "a"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "a" / "t2_series_restored").glob("IM*.dcm"))) == SLICES
    result = runner.invoke(app, ["restore", str(checkpoint), str(series), "--out", str(tmp_path / "b"), "--nifti",
                                 "--quiet"])
    assert result.exit_code == 0, result.output
    assert read_nifti(tmp_path / "b" / "t2_series_restored.nii.gz").data.shape == (SLICES, 2 * ROWS, 2 * COLS)


def test_quantisation_keeps_the_float_range() -> None:
    values = np.array([[-3.25, 0.0, 1e-3], [7.5, 1234.5678, 2.0]])
    stored, slope, intercept = quantize_uint16(values)
    assert stored.dtype == np.uint16 and stored.min() == 0 and stored.max() == 65535
    assert intercept == -3.25 and slope == pytest.approx((1234.5678 + 3.25) / 65535, rel=1e-10)
    assert np.abs(stored * slope + intercept - values).max() <= 0.5 * slope * (1 + 1e-6)
    stored, slope, intercept = quantize_uint16(np.array([0.0, 2.0, 4.0]))  # non-negative: intercept 0
    assert intercept == 0.0 and (stored[0], stored[-1]) == (0, 65535) and abs(stored[1] * slope - 2) <= slope / 2
    assert quantize_uint16(np.zeros(3))[1:] == (1.0, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        quantize_uint16(np.array([np.nan]))
