"""Tests for accelmri.data.pairing: fastMRI CSV and IXI pairing, slice pairing, affine alignment.

Real data: ``../shared/data/tcga_fg_6692`` (TCGA-LGG case TCGA-FG-6692, The Cancer Imaging Archive, CC BY 3.0;
see the README there).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from accelmri.data.errors import DataError
from accelmri.data.pairing import ContrastPair, align_reference, pair_slices, pairs_from_csv, pairs_from_ixi
from accelmri.data.readers.fastmri import FastMRIFile, write_fastmri
from accelmri.data.readers.nifti import read_nifti
from accelmri.data.volume import ImageVolume

TCGA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tcga_fg_6692"


# ------------------------------------------------------------------------------------------------ fastMRI CSV


def _touch(folder: Path, *names: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in names]
    for path in paths:
        path.touch()
    return paths


def test_csv_without_header_first_column_is_reference(tmp_path: Path) -> None:
    pd1, fs1, pd2, fs2 = _touch(
        tmp_path / "data", "file1000001.h5", "file1000002.h5", "file1000003.h5", "file1000004.h5"
    )
    csv_path = tmp_path / "data" / "singlecoil_train_split_less.csv"
    csv_path.write_text("file1000001.h5,file1000002.h5,0.9\n\nfile1000003.h5, file1000004.h5\n")
    pairs = pairs_from_csv(csv_path)
    assert pairs == [
        ContrastPair(fs1, pd1, "file1000001", "PDFS", "PD", "index", 0.9),
        ContrastPair(fs2, pd2, "file1000003", "PDFS", "PD", "index", None),
    ]


def test_csv_with_header_root_and_names_without_extension(tmp_path: Path) -> None:
    pd, fs = _touch(tmp_path / "h5", "file1000001.h5", "file1000002.h5")
    csv_path = tmp_path / "splits" / "val.csv"
    csv_path.parent.mkdir()
    # MINet lists names without ".h5"; paths are relative to ``root`` here, not to the CSV's folder.
    csv_path.write_text("PD_file,PDFS_file,score\nfile1000001,file1000002,0.5\n")
    (pair,) = pairs_from_csv(csv_path, root=tmp_path / "h5")
    assert (pair.reference, pair.target, pair.score) == (pd, fs, 0.5)


def test_csv_relative_to_its_folder_and_absolute_paths(tmp_path: Path) -> None:
    pd, fs = _touch(tmp_path / "a" / "b", "pd_001.h5", "pdfs_001.h5")
    csv_path = tmp_path / "a" / "pairs.csv"
    csv_path.write_text(f"b/pd_001.h5,{fs}\n")
    (pair,) = pairs_from_csv(csv_path)
    assert (pair.reference, pair.target, pair.subject) == (pd, fs, "pd_001")


def test_csv_missing_file_names_csv_line_and_file(tmp_path: Path) -> None:
    _touch(tmp_path, "file1000001.h5", "file1000002.h5", "file1000003.h5")
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("PD_file,PDFS_file\nfile1000001.h5,file1000002.h5\nfile1000003.h5,file1000009.h5\n")
    with pytest.raises(DataError, match=r"line 3: PDFS \(target\) file 'file1000009.h5' not found") as info:
        pairs_from_csv(csv_path)
    assert info.value.path == csv_path
    # A header-less CSV whose very first file is missing is an error, not a header.
    csv_path.write_text("file1000009.h5,file1000002.h5\n")
    with pytest.raises(DataError, match=r"line 1: PD \(reference\) file 'file1000009.h5' not found"):
        pairs_from_csv(csv_path)


def test_csv_bad_inputs(tmp_path: Path) -> None:
    _touch(tmp_path, "file1000001.h5", "file1000002.h5")
    csv_path = tmp_path / "pairs.csv"
    with pytest.raises(DataError, match="cannot read"):
        pairs_from_csv(csv_path)
    csv_path.write_text("PD_file,PDFS_file\n")
    with pytest.raises(DataError, match="no PD/PDFS pairs"):
        pairs_from_csv(csv_path)
    with pytest.raises(DataError, match="line 1: PD"):
        pairs_from_csv(csv_path, header=False)
    csv_path.write_text("file1000001.h5\n")
    with pytest.raises(DataError, match="line 1: expected"):
        pairs_from_csv(csv_path)
    csv_path.write_text("file1000001.h5,file1000002.h5,good\n")
    with pytest.raises(DataError, match="score 'good' is not a number"):
        pairs_from_csv(csv_path)


# ------------------------------------------------------------------------------------------------ IXI


def test_ixi_pairs_by_subject_and_reports_incomplete(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (t1_a,) = _touch(tmp_path / "IXI-T1", "IXI002-Guys-0828-T1.nii.gz")
    t2_a, pd_a, t2_b, pd_b = _touch(
        tmp_path / "IXI-T2PD",
        "IXI002-Guys-0828-T2.nii.gz",
        "IXI002-Guys-0828-PD.nii.gz",
        "IXI012-HH-1211-T2.nii.gz",
        "IXI012-HH-1211-PD.nii",
    )
    _touch(tmp_path, "IXI013-HH-1212-T2.nii.gz", "IXI013-HH-1212-MRA.nii.gz", "notes.txt", "IXI014-IOP-1.nii.gz")

    with caplog.at_level(logging.WARNING, logger="accelmri.data.pairing"):
        pairs = pairs_from_ixi(tmp_path)
    assert pairs == [
        ContrastPair(t2_a, pd_a, "IXI002", "T2", "PD", "world"),
        ContrastPair(t2_b, pd_b, "IXI012", "T2", "PD", "world"),
    ]
    assert "skipped 1 IXI subject(s)" in caplog.text and "IXI013" in caplog.text

    (pair,) = pairs_from_ixi(tmp_path, target="t2", reference="t1")
    assert (pair.target, pair.reference, pair.reference_contrast) == (t2_a, t1_a, "T1")


def test_ixi_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a folder"):
        pairs_from_ixi(tmp_path / "missing")
    with pytest.raises(ValueError, match="IXI contrast"):
        pairs_from_ixi(tmp_path, target="FLAIR")
    with pytest.raises(ValueError, match="must differ"):
        pairs_from_ixi(tmp_path, target="PD", reference="pd")
    _touch(tmp_path, "IXI013-HH-1212-T2.nii.gz")
    with pytest.raises(DataError, match="no IXI subject has both a T2 and a PD file"):
        pairs_from_ixi(tmp_path)
    _touch(tmp_path / "copy", "IXI013-HH-1212-T2.nii.gz")
    with pytest.raises(DataError, match="second T2 file for subject IXI013"):
        pairs_from_ixi(tmp_path)


# ------------------------------------------------------------------------------------------------ slices


def test_csv_pairs_with_fastmri_files_pair_slices_by_index(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name, num_slices, acquisition in (("file1000001", 5, "CORPD_FBK"), ("file1000002", 4, "CORPDFS_FBK")):
        kspace = rng.standard_normal((num_slices, 8, 6)) + 1j * rng.standard_normal((num_slices, 8, 6))
        write_fastmri(tmp_path / f"{name}.h5", kspace, attrs={"acquisition": acquisition})
    (tmp_path / "pairs.csv").write_text("file1000001,file1000002\n")
    (pair,) = pairs_from_csv(tmp_path / "pairs.csv")
    target, reference = FastMRIFile(pair.target), FastMRIFile(pair.reference)
    assert (target.attrs["acquisition"], reference.attrs["acquisition"]) == ("CORPDFS_FBK", "CORPD_FBK")
    assert pair_slices(target.num_slices, reference.num_slices) == [(0, 0), (1, 1), (2, 2), (3, 3)]


def test_pair_slices() -> None:
    assert pair_slices(5, 3) == [(0, 0), (1, 1), (2, 2)]
    assert pair_slices(2, 4) == [(0, 0), (1, 1)]
    assert pair_slices(0, 4) == []
    with pytest.raises(ValueError, match="non-negative"):
        pair_slices(-1, 4)


# ------------------------------------------------------------------------------------------------ geometry


def _rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = [a for a in range(3) if a != axis]
    rot = np.eye(3)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    return rot


def _affine(linear: np.ndarray, spacing: tuple[float, float, float], shape_hws: tuple[int, int, int]) -> np.ndarray:
    """Voxel (h, w, s) → world affine whose grid is centred on the world origin."""
    affine = np.eye(4)
    affine[:3, :3] = linear @ np.diag(spacing)
    affine[:3, 3] = -affine[:3, :3] @ ((np.array(shape_hws) - 1) / 2)
    return affine


def _world_field(affine: np.ndarray, shape_shw: tuple[int, int, int]) -> np.ndarray:
    """A smooth, asymmetric function of world position sampled on a grid: ``(S, H, W)`` float32."""
    s, h, w = np.meshgrid(*(np.arange(n) for n in shape_shw), indexing="ij")
    x, y, z = (affine[a, 0] * h + affine[a, 1] * w + affine[a, 2] * s + affine[a, 3] for a in range(3))
    blob = np.exp(-((x - 6) ** 2 / 300 + (y + 4) ** 2 / 500 + (z - 3) ** 2 / 800))
    return (blob + 0.01 * x + 0.005 * y + 0.5).astype(np.float32)


def _volume(data: np.ndarray, affine: np.ndarray, name: str) -> ImageVolume:
    return ImageVolume(data=data, affine=affine, path=Path(f"/data/{name}.nii.gz"), contrast=name)


@pytest.fixture(scope="module")
def target() -> ImageVolume:
    shape_shw = (10, 36, 44)
    affine = _affine(_rotation(0, 8.0), (1.2, 1.0, 3.0), (36, 44, 10))
    return _volume(_world_field(affine, shape_shw), affine, "target")


def test_same_grid_returns_reference_unchanged(target: ImageVolume) -> None:
    affine = target.affine + 1e-5  # float32 storage noise in a NIfTI header
    reference = _volume(np.random.default_rng(0).random(target.data.shape, dtype=np.float32), affine, "ref")
    aligned = align_reference(target, reference)
    assert aligned is reference and aligned.data is reference.data


def test_cross_grid_resampling_matches_known_transform(target: ImageVolume) -> None:
    # Reference: rotated, shifted, other spacing and shape, content = the same world field sampled on its grid.
    shape_shw = (16, 50, 40)
    affine = _affine(_rotation(2, 15.0) @ _rotation(1, -6.0), (0.9, 1.1, 2.0), (50, 40, 16))
    affine[:3, 3] += (3.3, -2.1, 1.7)
    reference = _volume(_world_field(affine, shape_shw), affine, "ref")
    aligned = align_reference(target, reference)

    assert aligned.data.shape == target.data.shape and aligned.data.dtype == np.float32
    np.testing.assert_array_equal(aligned.affine, target.affine)
    assert (aligned.path, aligned.contrast, aligned.attrs["resampled_to"]) == (reference.path, "ref", target.path)

    # Target voxel centres in reference voxel coordinates, (S, H, W) layout like the data.
    s, h, w = np.meshgrid(*(np.arange(n) for n in target.data.shape), indexing="ij")
    vox2vox = np.linalg.inv(affine) @ target.affine
    coords = [vox2vox[a, 0] * h + vox2vox[a, 1] * w + vox2vox[a, 2] * s + vox2vox[a, 3] for a in range(3)]
    sizes = (50, 40, 16)  # reference (H, W, S)
    lattice = np.all([(c >= 0) & (c <= n - 1) for c, n in zip(coords, sizes, strict=True)], axis=0)
    outside = ~np.all([(c >= -0.5) & (c <= n - 0.5) for c, n in zip(coords, sizes, strict=True)], axis=0)
    assert lattice.mean() > 0.5 and outside.any()  # partly overlapping fields of view
    error = np.abs(aligned.data - target.data)[lattice]
    assert error.max() < 0.01 * target.data.max(), error.max()
    assert np.all(aligned.data[outside] == 0)
    assert aligned.attrs["overlap"] == pytest.approx(1 - outside.mean())
    np.testing.assert_allclose(aligned.attrs["slice_coverage"], 1 - outside.mean(axis=(1, 2)))


def test_lattice_aligned_grid_is_copied_exactly(target: ImageVolume) -> None:
    # Reference = the target cropped by 3 rows at each end along h and stored with w flipped: same voxel lattice.
    data = target.data[:, 3:-3, ::-1].copy()
    flip = np.eye(4)
    flip[1, 1], flip[1, 3] = -1, target.data.shape[2] - 1
    shift = np.eye(4)
    shift[0, 3] = 3
    reference = _volume(data, target.affine @ shift @ flip, "ref")
    aligned = align_reference(target, reference)
    np.testing.assert_array_equal(aligned.data[:, 3:-3], target.data[:, 3:-3])
    assert np.all(aligned.data[:, :3] == 0) and np.all(aligned.data[:, -3:] == 0)


def test_non_overlapping_fields_of_view_refused(target: ImageVolume) -> None:
    far = target.affine.copy()
    far[:3, 3] += (0.0, 0.0, 1000.0)
    with pytest.raises(DataError, match=r"does not overlap the target /data/target\.nii\.gz: only 0\.0%") as info:
        align_reference(target, _volume(target.data, far, "ref"))
    assert info.value.path == Path("/data/ref.nii.gz")

    # Shift by 70 % of the in-plane h extent: about 30 % overlap, refused by default, accepted when asked for.
    half = target.affine.copy()
    half[:3, 3] += target.affine[:3, 0] * 0.7 * target.data.shape[1]
    with pytest.raises(DataError, match="does not overlap"):
        align_reference(target, _volume(target.data, half, "ref"))
    aligned = align_reference(target, _volume(target.data, half, "ref"), min_overlap=0.25)
    assert aligned.attrs["overlap"] == pytest.approx(0.3, abs=0.02)


def test_reference_without_signal_refused(target: ImageVolume) -> None:
    shifted = target.affine.copy()
    shifted[:3, 3] += 0.4
    with pytest.raises(DataError, match=r"no signal on the grid of the target /data/target\.nii\.gz"):
        align_reference(target, _volume(np.zeros_like(target.data), shifted, "ref"))


# ------------------------------------------------------------------------------------------------ real data


def _read(contrast: str) -> ImageVolume:
    if not TCGA_DIR.is_dir():
        pytest.skip("../shared/data/tcga_fg_6692 not found: real-data test needs the shared data folder")
    return read_nifti(next(TCGA_DIR.glob(f"TCGA-FG-6692_*_{contrast}.nii.gz")), contrast=contrast.upper())


def _head_mask(volume: np.ndarray) -> np.ndarray:
    """Per-slice head silhouette: intensity above 10 % of the 99th percentile, holes filled."""
    above = volume > 0.1 * np.percentile(volume, 99)
    return np.stack([ndimage.binary_fill_holes(image) for image in above])


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))


def test_real_same_grid_t1c_returned_unchanged() -> None:
    t1, t1c = _read("t1"), _read("t1c")
    assert align_reference(t1, t1c) is t1c


def test_real_flair_is_t2_lattice_cropped() -> None:
    # FLAIR is stored 208 × 256 × 26, the T2 224 × 256 × 26: the same voxel lattice less 8 rows at each end of i,
    # so it is placed on the T2 grid exactly, without interpolation.
    t2, flair = _read("t2"), _read("flair")
    aligned = align_reference(t2, flair)
    assert aligned.data.shape == t2.data.shape == (26, 224, 256)
    np.testing.assert_array_equal(aligned.data[:, 8:216], flair.data)
    assert not aligned.data[:, :8].any() and not aligned.data[:, 216:].any()


def test_real_t1_resampled_onto_t2_grid_is_aligned() -> None:
    t2, t1 = _read("t2"), _read("t1")
    aligned = align_reference(t2, t1)
    assert aligned.data.shape == t2.data.shape and t1.data.shape == (26, 256, 224)
    assert aligned.attrs["overlap"] > 0.7

    central = slice(8, 18)
    t2_mask = _head_mask(t2.data)[central]
    dice = _dice(t2_mask, _head_mask(aligned.data)[central])
    assert dice > 0.9, dice  # measured 0.953
    # The affines, not luck, align them: moving T1 by 10 mm in-plane lowers the overlap.
    for offset in ((10, 0, 0), (-10, 0, 0), (0, 10, 0), (0, -10, 0)):
        moved = t1.affine.copy()
        moved[:3, 3] += offset
        shifted = align_reference(t2, ImageVolume(data=t1.data, affine=moved, path=t1.path))
        assert _dice(t2_mask, _head_mask(shifted.data)[central]) < dice, offset
