"""Tests for accelmri.data.readers: round trips on files generated here, every bad-input path, and the real
NIfTI volumes of ``../shared/data/tcga_fg_6692`` (TCGA-LGG via TCIA, CC BY 3.0; see the README there).
"""

from __future__ import annotations

import gzip
import multiprocessing
import os
import pickle
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import h5py
import nibabel as nib
import numpy as np
import pytest
from torch.utils.data import DataLoader, Dataset

from accelmri.data.errors import DataError
from accelmri.data.readers import (
    FastMRIFile,
    ixi_subject_id,
    make_ismrmrd_header,
    read_dicom_series,
    read_fastmri,
    read_ismrmrd_kspace,
    read_nifti,
    read_volume,
    write_fastmri,
    write_ismrmrd_kspace,
    write_nifti,
)
from accelmri.data.readers import fastmri as fastmri_module
from accelmri.data.volume import ImageVolume, KspaceVolume
from tests.dicom_utils import write_dicom_slice

TCGA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tcga_fg_6692"


def _complex(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def _raises_naming(path: Path, problem: str = "") -> pytest.RaisesExc[DataError]:
    """``pytest.raises(DataError)`` whose message names ``path`` and, optionally, contains ``problem``."""
    return pytest.raises(DataError, match=re.escape(path.name) + ".*" + problem)


# ----------------------------------------------------------------------------------------------- fastMRI


@pytest.fixture
def multicoil(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    kspace = _complex(rng, 3, 4, 16, 12)
    target = rng.random((3, 8, 8), dtype=np.float32)
    path = write_fastmri(
        tmp_path / "file_brain_AXT2.h5", kspace, target, attrs={"acquisition": "AXT2", "patient_id": "p01"}
    )
    return path, kspace, target


def test_fastmri_multicoil_round_trip(multicoil: tuple[Path, np.ndarray, np.ndarray]) -> None:
    path, kspace, target = multicoil
    assert sorted(os.listdir(path.parent)) == [path.name]  # no temporary file left behind
    file = FastMRIFile(path)
    assert (file.num_slices, len(file), file.kspace_shape, file.multicoil) == (3, 3, (4, 16, 12), True)
    assert (file.target_key, file.target_shape) == ("reconstruction_rss", (8, 8))
    assert (file.encoding_size, file.recon_size) == ((16, 12, 1), (8, 8, 1))
    assert file.attrs["acquisition"] == "AXT2" and file.attrs["patient_id"] == "p01"
    assert file.attrs["max"] == pytest.approx(target.max())
    assert file.attrs["norm"] == pytest.approx(np.linalg.norm(target))
    assert not file.is_open  # metadata only: no handle kept

    slice_kspace, slice_target = file.read_slice(1)
    assert file.is_open
    assert slice_kspace.dtype == np.complex64 and slice_target is not None and slice_target.dtype == np.float32
    np.testing.assert_array_equal(slice_kspace, kspace[1])
    np.testing.assert_array_equal(slice_target, target[1])
    np.testing.assert_array_equal(file.read_slice(-1)[0], kspace[2])
    with pytest.raises(IndexError):
        file.read_slice(3)
    file.close()
    assert not file.is_open

    volume = read_fastmri(path)
    assert isinstance(volume, KspaceVolume) and volume.num_slices == 3
    np.testing.assert_array_equal(volume.kspace, kspace)
    np.testing.assert_array_equal(volume.target, target)
    assert volume.attrs["encoding_size"] == (16, 12, 1) and volume.attrs["acquisition"] == "AXT2"


def test_fastmri_singlecoil(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    kspace = _complex(rng, 2, 10, 6)
    target = rng.random((2, 10, 6), dtype=np.float32)
    with FastMRIFile(write_fastmri(tmp_path / "knee_sc.h5", kspace, target)) as file:
        assert (file.kspace_shape, file.multicoil, file.target_key) == ((1, 10, 6), False, "reconstruction_esc")
        slice_kspace, slice_target = file.read_slice(0)
        np.testing.assert_array_equal(slice_kspace, kspace[:1])
        np.testing.assert_array_equal(slice_target, target[0])
    with h5py.File(tmp_path / "knee_sc.h5", "r") as raw:
        assert raw["kspace"].shape == (2, 10, 6) and raw["kspace"].dtype == np.complex64

    write_fastmri(tmp_path / "test_set.h5", kspace)
    volume = read_fastmri(tmp_path / "test_set.h5")
    assert volume.kspace.shape == (2, 1, 10, 6) and volume.target is None
    assert volume.attrs["recon_size"] == (10, 6, 1)
    assert FastMRIFile(tmp_path / "test_set.h5").read_slice(1)[1] is None


def test_fastmri_header(tmp_path: Path) -> None:
    header = make_ismrmrd_header((640, 372, 1), (320, 320, 1), fov_mm=(280.0, 140.0, 4.5), num_slices=2)
    path = write_fastmri(tmp_path / "h.h5", np.zeros((2, 2, 8, 8), np.complex64), header_xml=header)
    file = FastMRIFile(path)
    assert (file.encoding_size, file.recon_size) == ((640, 372, 1), (320, 320, 1))
    # A header without the namespace is read too.
    bare = re.sub(r' xmlns="[^"]*"', "", header)
    file = FastMRIFile(write_fastmri(tmp_path / "bare.h5", np.zeros((1, 8, 8), np.complex64), header_xml=bare))
    assert file.recon_size == (320, 320, 1)
    with pytest.raises(ValueError, match="encoding_size"):
        make_ismrmrd_header((0, 8, 1), (8, 8, 1))


def test_make_ismrmrd_header_is_schema_valid() -> None:
    ismrmrd = pytest.importorskip("ismrmrd")
    header = ismrmrd.xsd.CreateFromDocument(make_ismrmrd_header((32, 24, 1), (16, 16, 1), num_slices=5))
    encoding = header.encoding[0]
    assert encoding.encodedSpace.matrixSize.y == 24 and encoding.reconSpace.matrixSize.x == 16
    assert encoding.encodingLimits.slice.maximum == 4 and encoding.encodingLimits.kspace_encoding_step_1.center == 12
    assert encoding.trajectory == ismrmrd.xsd.trajectoryType.CARTESIAN


def test_fastmri_handle_is_per_process(
    multicoil: tuple[Path, np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, kspace, _ = multicoil
    file = FastMRIFile(path)
    file.read_slice(0)
    clone = pickle.loads(pickle.dumps(file))
    assert file.is_open and not clone.is_open  # the handle is not pickled
    np.testing.assert_array_equal(clone.read_slice(2)[0], kspace[2])
    assert clone.is_open
    # In a forked worker the inherited handle belongs to the parent: a new one is opened.
    real_pid = os.getpid()
    monkeypatch.setattr(fastmri_module.os, "getpid", lambda: real_pid + 1)
    assert not file.is_open
    np.testing.assert_array_equal(file.read_slice(1)[0], kspace[1])
    assert file.is_open


class _Slices(Dataset):
    def __init__(self, file: FastMRIFile) -> None:
        self.file = file

    def __len__(self) -> int:
        return len(self.file)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.file.read_slice(index)[0]


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method")
def test_fastmri_in_forked_dataloader_workers(multicoil: tuple[Path, np.ndarray, np.ndarray]) -> None:
    path, kspace, _ = multicoil
    file = FastMRIFile(path)
    file.read_slice(0)  # the parent holds a handle that the forked workers inherit
    loader = DataLoader(_Slices(file), batch_size=None, num_workers=2, multiprocessing_context="fork")
    np.testing.assert_array_equal(np.stack([slice_kspace.numpy() for slice_kspace in loader]), kspace)
    np.testing.assert_array_equal(file.read_slice(1)[0], kspace[1])  # the parent's handle still works


def test_fastmri_write_refuses_to_overwrite(multicoil: tuple[Path, np.ndarray, np.ndarray]) -> None:
    path, kspace, _ = multicoil
    with pytest.raises(FileExistsError, match=re.escape(path.name)):
        write_fastmri(path, kspace[:1])
    write_fastmri(path, kspace[:1], overwrite=True)
    assert FastMRIFile(path).num_slices == 1
    assert sorted(os.listdir(path.parent)) == [path.name]
    with pytest.raises(ValueError, match="shape"):
        write_fastmri(path.with_name("flat.h5"), kspace[0, 0], overwrite=True)
    assert not path.with_name("flat.h5").exists()


def _h5(path: Path, **datasets: np.ndarray | str) -> Path:
    with h5py.File(path, "w") as file:
        for name, data in datasets.items():
            file.create_dataset(name, data=data)
    return path


@pytest.mark.parametrize(
    ("datasets", "problem"),
    [
        ({"image": np.zeros((2, 4, 4), np.float32)}, "no 'kspace' dataset"),
        ({"kspace": np.zeros((4, 4), np.complex64)}, r"shape \(4, 4\)"),
        ({"kspace": np.zeros((1, 2, 2, 4, 4), np.complex64)}, "expected"),
        ({"kspace": np.zeros((2, 4, 4), np.float32)}, "expected complex"),
        ({"kspace": np.zeros((0, 4, 4), np.complex64)}, "no slices"),
        (
            {"kspace": np.zeros((2, 4, 4), np.complex64), "reconstruction_esc": np.zeros((3, 4, 4), np.float32)},
            "reconstruction_esc",
        ),
        ({"kspace": np.zeros((2, 4, 4), np.complex64), "ismrmrd_header": "<ismrmrdHeader><enc"}, "not valid XML"),
        ({"kspace": np.zeros((2, 4, 4), np.complex64), "ismrmrd_header": "<ismrmrdHeader/>"}, "matrixSize"),
    ],
)
def test_fastmri_bad_contents(tmp_path: Path, datasets: dict[str, np.ndarray | str], problem: str) -> None:
    path = _h5(tmp_path / "bad_contents.h5", **datasets)
    with _raises_naming(path, problem):
        FastMRIFile(path)


def test_fastmri_bad_files(tmp_path: Path, multicoil: tuple[Path, np.ndarray, np.ndarray]) -> None:
    with _raises_naming(tmp_path / "missing.h5", "not found"):
        read_fastmri(tmp_path / "missing.h5")
    text = tmp_path / "notes.h5"
    text.write_text("not an HDF5 file")
    with _raises_naming(text, "not a readable HDF5 file"):
        FastMRIFile(text)
    path = multicoil[0]
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with _raises_naming(truncated, "not a readable HDF5 file"):
        read_fastmri(truncated)


def test_fastmri_nan_slice(tmp_path: Path) -> None:
    kspace = np.ones((3, 2, 4, 4), np.complex64)
    kspace[1, 0, 2, 2] = np.nan
    path = _h5(tmp_path / "nan_slice.h5", kspace=kspace)
    file = FastMRIFile(path)
    file.read_slice(0)
    with _raises_naming(path, "slice 1 contains NaN"):
        file.read_slice(1)
    with _raises_naming(path, "NaN"):
        read_fastmri(path)


# ----------------------------------------------------------------------------------------------- NIfTI


def _oblique_affine() -> np.ndarray:
    angle = np.deg2rad(12.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.9, 0.8, 5.0])
    affine[:3, 3] = (-90.0, 110.0, -30.0)
    return affine


def test_nifti_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    data = rng.random((4, 6, 5), dtype=np.float32) * 100
    affine = _oblique_affine()
    path = write_nifti(tmp_path / "IXI012-HH-1211-T2.nii.gz", data, affine)
    assert sorted(os.listdir(tmp_path)) == [path.name]
    with gzip.open(path) as compressed:  # really gzip-compressed
        assert len(compressed.read()) > 0
    assert nib.load(path).shape == (6, 5, 4)  # file voxel (h, w, s)

    volume = read_nifti(path)
    assert isinstance(volume, ImageVolume) and volume.data.dtype == np.float32
    np.testing.assert_array_equal(volume.data, data)
    np.testing.assert_allclose(volume.affine, affine, atol=1e-6)
    assert volume.spacing == pytest.approx((0.9, 0.8, 5.0))
    assert (volume.contrast, volume.attrs["subject_id"]) == ("T2", "IXI012")
    assert read_nifti(path, contrast="PD").contrast == "PD"

    with pytest.raises(FileExistsError):
        write_nifti(path, volume)
    write_nifti(path, ImageVolume(data=2 * data, affine=affine, path=path), overwrite=True)
    np.testing.assert_allclose(read_nifti(path).data, 2 * data)
    plain = write_nifti(tmp_path / "plain.nii", volume)
    assert read_nifti(plain).contrast is None
    np.testing.assert_array_equal(read_nifti(plain).data, data)
    with pytest.raises(ValueError, match=r"\.nii"):
        write_nifti(tmp_path / "volume.img", volume)


def test_nifti_slope_intercept_and_4d(tmp_path: Path) -> None:
    raw = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)  # file order (h, w, s)
    image = nib.Nifti1Image(raw, np.eye(4))
    image.header.set_slope_inter(2.0, 10.0)
    nib.save(image, tmp_path / "scaled.nii")
    volume = read_nifti(tmp_path / "scaled.nii")
    np.testing.assert_array_equal(volume.data, (raw * 2.0 + 10.0).transpose(2, 0, 1))
    nib.save(nib.Nifti1Image(raw[..., None].astype(np.float32), np.eye(4)), tmp_path / "singleton.nii.gz")
    assert read_nifti(tmp_path / "singleton.nii.gz").data.shape == (4, 2, 3)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (np.zeros((3, 4, 2, 2), np.float32), "expected a 3-D volume"),
        (np.zeros((3, 4, 2), np.complex64), "not real scalar"),
        (np.where(np.arange(24).reshape(3, 4, 2) == 5, np.nan, 1.0).astype(np.float32), "1 voxels are NaN"),
    ],
)
def test_nifti_bad_contents(tmp_path: Path, data: np.ndarray, problem: str) -> None:
    path = tmp_path / "bad_volume.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    with _raises_naming(path, problem):
        read_nifti(path)


def test_nifti_bad_files(tmp_path: Path) -> None:
    with _raises_naming(tmp_path / "absent.nii.gz", "not found"):
        read_nifti(tmp_path / "absent.nii.gz")
    noise = np.random.default_rng(5).random((8, 16, 16), dtype=np.float32)  # incompressible: the cut hits voxels
    path = write_nifti(tmp_path / "whole.nii.gz", noise, np.eye(4))
    truncated = tmp_path / "cut.nii.gz"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with _raises_naming(truncated, "truncated or corrupt"):
        read_nifti(truncated)
    garbage = tmp_path / "garbage.nii"
    garbage.write_bytes(b"\x00" * 100)
    with _raises_naming(garbage, "not a readable NIfTI"):
        read_nifti(garbage)


def test_ixi_names() -> None:
    assert ixi_subject_id("/data/IXI012-HH-1211-T1.nii.gz") == "IXI012"
    assert ixi_subject_id(Path("IXI650-Guys-1164-PD.nii")) == "IXI650"
    assert ixi_subject_id("TCGA-FG-6692_T2_AX_TSE_t2.nii.gz") is None


@pytest.fixture(scope="module")
def tcga() -> dict[str, ImageVolume]:
    if not TCGA.is_dir():
        pytest.skip(f"{TCGA} not found: the real-data test needs the shared data folder")
    names = {"T1": "T1_AX_SE_t1", "T1c": "T1_AX_POSTGAD_SE_t1c", "T2": "T2_AX_TSE_t2", "FLAIR": "FLAIR_AX_tir2d_flair"}
    return {key: read_nifti(TCGA / f"TCGA-FG-6692_{name}.nii.gz", contrast=key) for key, name in names.items()}


def test_real_tcga_nifti(tcga: dict[str, ImageVolume]) -> None:
    assert tcga["T1"].data.shape == tcga["T1c"].data.shape == (26, 256, 224)
    assert tcga["T2"].data.shape == (26, 224, 256)
    # FLAIR is stored 208 rows high: the T2 grid cropped by 8 rows on each side (the shared README says 224).
    assert tcga["FLAIR"].data.shape == (26, 208, 256)
    np.testing.assert_array_equal(tcga["T1"].affine, tcga["T1c"].affine)
    shift = np.eye(4)
    shift[0, 3] = 8.0
    np.testing.assert_allclose(tcga["FLAIR"].affine, tcga["T2"].affine @ shift, atol=1e-3)
    for volume in tcga.values():
        assert volume.spacing == pytest.approx((0.898, 0.898, 5.5), abs=2e-3)
        assert volume.data.dtype == np.float32 and volume.data.max() > 100 and volume.data.min() >= 0


# ----------------------------------------------------------------------------------------------- DICOM

_ROW_COS = np.array([0.96, 0.28, 0.0])  # oblique: rotated 16.3° about z, then tilted about x below
_TILT = np.deg2rad(10.0)


def _orientation() -> tuple[np.ndarray, np.ndarray]:
    tilt = np.array([[1, 0, 0], [0, np.cos(_TILT), -np.sin(_TILT)], [0, np.sin(_TILT), np.cos(_TILT)]])
    row_cos = tilt @ _ROW_COS
    col_cos = tilt @ np.array([-0.28, 0.96, 0.0])
    return np.round(row_cos, 6), np.round(col_cos, 6)


def _write_dicom(
    path: Path,
    pixels: np.ndarray,
    position: np.ndarray,
    series_uid: str,
    slope: float = 2.0,
    intercept: float = -100.0,
) -> None:
    row_cos, col_cos = _orientation()
    write_dicom_slice(path, pixels, position, series_uid, (*row_cos, *col_cos), slope=slope, intercept=intercept)


def _series(folder: Path, n: int = 4, rows: int = 6, cols: int = 5, uid: str = "1.2.3.4") -> tuple[np.ndarray, ...]:
    """Write ``n`` slices 3 mm apart along the normal, file names in shuffled order; return raw pixels, positions."""
    folder.mkdir(exist_ok=True)
    row_cos, col_cos = _orientation()
    normal = np.cross(row_cos, col_cos)
    positions = np.array([-40.0, 25.0, 10.0]) + 3.0 * np.arange(n)[:, None] * normal
    raw = np.arange(n)[:, None, None] * 100 + np.arange(rows * cols).reshape(rows, cols)
    names = np.random.default_rng(3).permutation(n)
    for index in range(n):
        _write_dicom(folder / f"{uid}_{names[index]:03d}.dcm", raw[index], positions[index], uid)
    return raw, np.round(positions, 4)


def test_dicom_series(tmp_path: Path) -> None:
    raw, positions = _series(tmp_path / "series")
    (tmp_path / "series" / "README.txt").write_text("not DICOM")
    volume = read_dicom_series(tmp_path / "series", contrast="T2")
    assert volume.data.shape == (4, 6, 5) and volume.data.dtype == np.float32
    np.testing.assert_allclose(volume.data, raw * 2.0 - 100.0)  # sorted along the normal and rescaled
    assert volume.contrast == "T2" and volume.attrs["series_uid"] == "1.2.3.4"
    assert volume.attrs["patient_id"] == "anon01" and volume.attrs["series_description"] == "t2_tse_tra"

    flip = np.diag([-1.0, -1.0, 1.0])  # LPS → RAS
    row_cos, col_cos = _orientation()
    for s in range(4):  # voxel (0, 0, s) is the slice's ImagePositionPatient
        np.testing.assert_allclose(volume.affine[:3] @ [0, 0, s, 1], flip @ positions[s], atol=1e-3)
    # PS3.3 C.7.6.2.1.1: row index r moves along the column cosines by the row spacing, column index c along the
    # row cosines by the column spacing.
    for r, c in [(1, 0), (0, 1), (5, 4)]:
        expected = flip @ (positions[2] + r * 0.8 * col_cos + c * 0.6 * row_cos)
        np.testing.assert_allclose(volume.affine[:3] @ [r, c, 2, 1], expected, atol=1e-3)
    assert volume.spacing == pytest.approx((0.8, 0.6, 3.0), abs=1e-3)


def test_dicom_single_slice(tmp_path: Path) -> None:
    _series(tmp_path / "one", n=1)
    volume = read_dicom_series(tmp_path / "one")
    assert volume.data.shape == (1, 6, 5) and volume.spacing[2] == pytest.approx(3.0)


def test_dicom_mixed_series(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    _series(folder, n=2, uid="1.2.3.4")
    _series(folder, n=3, uid="1.2.3.5")
    with _raises_naming(folder, r"2 series found.*1\.2\.3\.4 \(2 files\).*1\.2\.3\.5 \(3 files\)"):
        read_dicom_series(folder)
    assert read_dicom_series(folder, series_uid="1.2.3.5").num_slices == 3
    with _raises_naming(folder, "series 9.9 not found"):
        read_dicom_series(folder, series_uid="9.9")


def test_dicom_bad_folders(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with _raises_naming(empty, "no DICOM image files"):
        read_dicom_series(empty)
    (empty / "notes.txt").write_text("hello")
    with _raises_naming(empty, "no DICOM image files"):
        read_dicom_series(empty)
    with _raises_naming(tmp_path / "absent", "not a folder"):
        read_dicom_series(tmp_path / "absent")

    sizes = tmp_path / "sizes"
    _series(sizes, n=2)
    _write_dicom(sizes / "odd.dcm", np.zeros((7, 5)), np.array([0.0, 0.0, 50.0]), "1.2.3.4")
    with _raises_naming(sizes, "mixes image sizes"):
        read_dicom_series(sizes)

    uneven = tmp_path / "uneven"
    raw, positions = _series(uneven, n=3)
    _write_dicom(uneven / "far.dcm", raw[0], 2 * positions[2] - positions[0] + 1.0, "1.2.3.4")
    with _raises_naming(uneven, "non-uniform slice spacing"):
        read_dicom_series(uneven)

    twice = tmp_path / "twice"
    raw, positions = _series(twice, n=2)
    _write_dicom(twice / "echo2.dcm", raw[0], positions[0], "1.2.3.4")
    with pytest.raises(DataError, match="same slice position"):
        read_dicom_series(twice)


# ----------------------------------------------------------------------------------------------- ISMRMRD


@pytest.fixture
def ismrmrd_file(tmp_path: Path) -> tuple[Path, np.ndarray]:
    pytest.importorskip("ismrmrd")
    kspace = _complex(np.random.default_rng(4), 2, 3, 8, 6)
    return write_ismrmrd_kspace(tmp_path / "raw.h5", kspace), kspace


def _edit_ismrmrd(path: Path, edit: Callable[[object], None]) -> None:
    import ismrmrd

    with ismrmrd.File(str(path), "a") as handle:
        edit(handle["dataset"])


def test_ismrmrd_round_trip(ismrmrd_file: tuple[Path, np.ndarray]) -> None:
    import ismrmrd

    path, kspace = ismrmrd_file
    assert sorted(os.listdir(path.parent)) == [path.name]

    def add_noise_scan(dataset: object) -> None:
        noise = ismrmrd.Acquisition.from_array(np.full((3, 16), 99, np.complex64))
        noise.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
        dataset.acquisitions = [noise, *reversed(dataset.acquisitions[:])]

    _edit_ismrmrd(path, add_noise_scan)  # skipped; line order does not matter
    volume = read_ismrmrd_kspace(path)
    assert volume.kspace.dtype == np.complex64
    np.testing.assert_array_equal(volume.kspace, kspace)
    assert volume.attrs == {"encoding_size": (8, 6, 1), "recon_size": (8, 6, 1)}
    with pytest.raises(FileExistsError):
        write_ismrmrd_kspace(path, kspace)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda ds: setattr(ds, "acquisitions", ds.acquisitions[1:]), "1 of 12 .* missing"),
        (lambda ds: setattr(ds, "acquisitions", [*ds.acquisitions[:], ds.acquisitions[0]]), "acquired 2 times"),
        (lambda ds: delattr(ds, "acquisitions"), "no imaging acquisitions"),
    ],
)
def test_ismrmrd_bad_acquisitions(
    ismrmrd_file: tuple[Path, np.ndarray], edit: Callable[[object], None], problem: str
) -> None:
    path = ismrmrd_file[0]
    _edit_ismrmrd(path, edit)
    with _raises_naming(path, problem):
        read_ismrmrd_kspace(path)


def test_ismrmrd_bad_files(ismrmrd_file: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    import ismrmrd

    path = ismrmrd_file[0]

    def make_radial(dataset: object) -> None:
        header = dataset.header
        header.encoding[0].trajectory = ismrmrd.xsd.trajectoryType.RADIAL
        dataset.header = header

    _edit_ismrmrd(path, make_radial)
    with _raises_naming(path, "trajectory 'radial'"):
        read_ismrmrd_kspace(path)
    with _raises_naming(tmp_path / "gone.h5", "not found"):
        read_ismrmrd_kspace(tmp_path / "gone.h5")
    other = _h5(tmp_path / "other.h5", image=np.zeros(3))
    with _raises_naming(other, "no ISMRMRD '/dataset' group"):
        read_ismrmrd_kspace(other)
    text = tmp_path / "text.h5"
    text.write_text("not HDF5")
    with _raises_naming(text, "not a readable HDF5 file"):
        read_ismrmrd_kspace(text)


def test_ismrmrd_missing_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _h5(tmp_path / "raw.h5", image=np.zeros(3))
    monkeypatch.setitem(sys.modules, "ismrmrd", None)
    with pytest.raises(ImportError, match=r'pip install "accelmri\[ismrmrd\]"'):
        read_ismrmrd_kspace(path)


# ----------------------------------------------------------------------------------------------- read_volume


def test_read_volume_dispatch(
    tmp_path: Path, multicoil: tuple[Path, np.ndarray, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    fastmri = read_volume(multicoil[0])
    assert isinstance(fastmri, KspaceVolume) and fastmri.kspace.shape == (3, 4, 16, 12)
    nifti = read_volume(write_nifti(tmp_path / "vol.nii.gz", np.ones((2, 3, 4), np.float32), np.eye(4)))
    assert isinstance(nifti, ImageVolume) and nifti.data.shape == (2, 3, 4)
    _series(tmp_path / "dicom", n=2)
    assert isinstance(read_volume(tmp_path / "dicom"), ImageVolume)
    pytest.importorskip("ismrmrd")
    path = write_ismrmrd_kspace(tmp_path / "raw.h5", np.ones((1, 2, 4, 4), np.complex64))
    assert read_volume(path).kspace.shape == (1, 2, 4, 4)

    twixtools = pytest.importorskip("twixtools")
    scans = [
        SimpleNamespace(cLin=line, data=np.full((2, 4), line, np.complex64), is_image_scan=lambda: True)
        for line in range(3)
    ]
    monkeypatch.setattr(twixtools, "read_twix", lambda *args, **kwargs: [{"mdb": scans}])
    (tmp_path / "meas.dat").write_bytes(b"\0")
    twix = read_volume(tmp_path / "meas.dat")
    assert isinstance(twix, KspaceVolume) and twix.kspace.shape == (1, 2, 4, 3)


def test_read_volume_rejects(tmp_path: Path) -> None:
    with _raises_naming(tmp_path / "nothing.nii", "no such file"):
        read_volume(tmp_path / "nothing.nii")
    unknown = tmp_path / "table.csv"
    unknown.write_text("a,b")
    with _raises_naming(unknown, "unrecognised"):
        read_volume(unknown)
    other = _h5(tmp_path / "weights.h5", weights=np.zeros(3))
    with _raises_naming(other, "neither"):
        read_volume(other)
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_text("not HDF5")
    with _raises_naming(corrupt, "not a readable HDF5 file"):
        read_volume(corrupt)
