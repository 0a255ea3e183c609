"""NIfTI layouts real scans come in: the slice axis of a 2-D multi-slice series stored first or second (a sagittal or
coronal series reoriented to RAS), and 2-D single-image files. Read slices along the acquisition's slices, restore
each in its own plane, write the result in the input's layout."""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from accelmri.cli import app
from accelmri.data.readers import read_nifti, write_nifti
from accelmri.data.readers.nifti import SLICE_AXIS_RATIO, slice_axis
from accelmri.engine.restore import NegativeIntensityWarning, restore
from tests.test_adapt import EDSR, make_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

# A 2-D multi-slice axial series: 0.9 × 0.8 mm pixels (rotated in-plane), 4 mm slices along the file's third axis.
AXIAL = np.array([[0.0, 0.9, 0.0, -10.0], [-0.8, 0.0, 0.0, 20.0], [0.0, 0.0, 4.0, 3.0], [0.0, 0.0, 0.0, 1.0]])


def stored(data: np.ndarray, through: int) -> tuple[np.ndarray, np.ndarray]:
    """The axial ``(H, W, S)`` volume stored with its slice axis as file axis ``through`` (in-plane axes keep their
    order): the voxels and the affine of that file (the same world positions)."""
    order = {0: (2, 0, 1), 1: (0, 2, 1), 2: (0, 1, 2)}[through]  # file axis j holds axial axis order[j]
    return np.transpose(data, order), AXIAL[:, [*order, 3]]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny EDSR 2× super-resolution checkpoint."""
    torch.manual_seed(0)
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "edsr.pt", EDSR)


def test_slice_axis_is_the_thick_axis_else_the_third() -> None:
    assert slice_axis(AXIAL) == 2
    assert slice_axis(np.diag([5.5, 0.9, 0.9, 1.0])) == 0  # sagittal 2-D series in RAS order
    assert slice_axis(np.diag([0.9, 5.5, 0.9, 1.0])) == 1  # coronal
    assert slice_axis(np.diag([1.2, 0.94, 0.94, 1.0])) == 2  # IXI's 3-D T1: below the ratio, the file's order
    assert slice_axis(np.diag([1.0, 1.0, 1.0, 1.0])) == 2
    assert slice_axis(np.diag([SLICE_AXIS_RATIO, 1.0, 0.5, 1.0])) == 0  # at the ratio: thick


@pytest.mark.parametrize("through", [0, 1, 2])
def test_read_slices_along_the_thick_axis_and_write_back_in_the_file_layout(through: int, tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((6, 5, 3)).astype(np.float32)  # axial (H, W, S)
    voxels, affine = stored(data, through)
    path = tmp_path / "series.nii.gz"
    nib.save(nib.Nifti1Image(voxels, affine), path)
    volume = read_nifti(path)
    np.testing.assert_array_equal(volume.data, data.transpose(2, 0, 1))  # (S, H, W) whatever the storage order
    np.testing.assert_allclose(volume.affine, AXIAL)
    assert volume.spacing == pytest.approx((0.8, 0.9, 4.0))
    copy = write_nifti(tmp_path / "copy.nii.gz", volume)  # the file's layout by default
    written = nib.load(copy)
    np.testing.assert_array_equal(np.asarray(written.dataobj), voxels)
    np.testing.assert_allclose(written.affine, affine, atol=1e-6)
    plain = nib.load(write_nifti(tmp_path / "plain.nii.gz", volume, axes=(0, 1, 2)))  # (h, w, s) order
    np.testing.assert_array_equal(np.asarray(plain.dataobj), data)
    np.testing.assert_allclose(plain.affine, AXIAL, atol=1e-6)


def test_a_2d_file_is_one_slice_and_is_written_2d(tmp_path: Path) -> None:
    image = np.random.default_rng(1).random((6, 5)).astype(np.float32)
    nib.save(nib.Nifti1Image(image, AXIAL), tmp_path / "image.nii")
    volume = read_nifti(tmp_path / "image.nii")
    assert volume.data.shape == (1, 6, 5) and volume.attrs["nifti_ndim"] == 2
    np.testing.assert_array_equal(volume.data[0], image)
    written = nib.load(write_nifti(tmp_path / "copy.nii", volume))
    assert written.shape == (6, 5)
    np.testing.assert_array_equal(np.asarray(written.dataobj), image)
    with pytest.raises(ValueError, match="ndim"):
        write_nifti(tmp_path / "two.nii", np.zeros((2, 6, 5), np.float32), AXIAL, ndim=2)
    with pytest.raises(ValueError, match="permutation"):
        write_nifti(tmp_path / "bad.nii", volume, axes=(0, 0, 2))


@pytest.mark.parametrize("degrade", [False, True])
@pytest.mark.parametrize("through", [0, 1])
def test_restore_works_in_the_slice_plane_whatever_the_storage_order(
    checkpoint: Path, through: int, degrade: bool, tmp_path: Path
) -> None:
    """The series stored slice-axis-first (or second) restores to the same voxels, in its own layout, as the same
    series stored axially; before, its slice axis was super-resolved as if it were in-plane."""
    data = (np.random.default_rng(2).random((16, 12, 3)) + 0.1).astype(np.float32)
    axial = tmp_path / "axial.nii.gz"
    nib.save(nib.Nifti1Image(data, AXIAL), axial)
    voxels, affine = stored(data, through)
    other = tmp_path / "other.nii.gz"
    nib.save(nib.Nifti1Image(voxels, affine), other)
    (out_axial,) = restore(checkpoint, [axial], tmp_path / "axial_out.nii.gz", degrade=degrade, device="cpu")
    (out_other,) = restore(checkpoint, [other], tmp_path / "other_out.nii.gz", degrade=degrade, device="cpu")
    expected, restored = nib.load(out_axial), nib.load(out_other)
    factor = 1 if degrade else 2
    assert expected.shape == (16 * factor, 12 * factor, 3)
    expected_voxels, expected_affine = np.asarray(expected.dataobj), expected.affine
    order = {0: (2, 0, 1), 1: (0, 2, 1)}[through]
    assert restored.shape == tuple(expected.shape[axis] for axis in order)  # the input's layout, slices kept
    np.testing.assert_allclose(np.asarray(restored.dataobj), np.transpose(expected_voxels, order), rtol=0, atol=0)
    np.testing.assert_allclose(restored.affine, expected_affine[:, [*order, 3]], atol=1e-6)


def test_restore_accepts_a_2d_image(checkpoint: Path, tmp_path: Path) -> None:
    image = (np.random.default_rng(3).random((16, 12)) + 0.1).astype(np.float32)
    path = tmp_path / "image.nii.gz"
    nib.save(nib.Nifti1Image(image, AXIAL), path)
    (out,) = restore(checkpoint, [path], tmp_path / "image_out.nii.gz", device="cpu")
    assert nib.load(out).shape == (32, 24)


def test_negative_voxels_warn_once_per_input_and_the_cli_says_so_in_one_line(checkpoint: Path, tmp_path: Path) -> None:
    """Standardised (z-scored) or offset intensities are not magnitudes: restoring goes on, with one warning naming
    the file; a magnitude input, or one with a few negative voxels of interpolation ringing, gives none."""
    magnitude = (np.random.default_rng(4).random((16, 12, 2)) + 0.1).astype(np.float32)
    plain = tmp_path / "magnitude.nii.gz"
    nib.save(nib.Nifti1Image(magnitude, AXIAL), plain)
    scored = tmp_path / "zscored.nii.gz"
    nib.save(nib.Nifti1Image((magnitude - magnitude.mean()) / magnitude.std(), AXIAL), scored)
    ringing = tmp_path / "ringing.nii.gz"  # a few slightly negative voxels: interpolation ringing, no warning
    rung = magnitude.copy()
    rung.flat[:: 200] = -0.05  # 0.5 % of the voxels
    nib.save(nib.Nifti1Image(rung, AXIAL), ringing)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NegativeIntensityWarning)
        restore(checkpoint, [plain], tmp_path / "plain_out.nii.gz", device="cpu")
        restore(checkpoint, [ringing], tmp_path / "ringing_out.nii.gz", device="cpu")
    with pytest.warns(NegativeIntensityWarning, match=r"zscored\.nii\.gz: \d+\.\d % of voxels are negative"):
        restore(checkpoint, [scored], tmp_path / "scored_out.nii.gz", device="cpu")
    result = CliRunner().invoke(app, ["restore", str(checkpoint), str(scored), "--out", str(tmp_path / "cli.nii.gz"),
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and "zscored.nii.gz" in lines[0] and "negative" in lines[0]
    assert (tmp_path / "cli.nii.gz").is_file()
