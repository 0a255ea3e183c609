"""Slice sizes the scale does not divide (issue 16, item 15): ``restore --degrade`` pads, restores and crops back."""

from __future__ import annotations

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from accelmri.cli import app
from accelmri.data.datasets import SliceDataset, SliceSource, pad_to_scale
from accelmri.data.errors import DataError
from accelmri.data.readers import read_nifti
from accelmri.data.volume import ImageVolume
from accelmri.engine.evaluate import evaluate
from accelmri.engine.restore import restore, restored_affine
from accelmri.metrics import evaluate_volume
from accelmri.physics.degrade import Acquisition
from accelmri.physics.fft import fft2c, ifft2c
from tests.test_adapt import EDSR, make_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()

AFFINE = np.array([[0.0, 0.9, 0.0, -10.0], [-0.8, 0.0, 0.0, 20.0], [0.0, 0.0, 4.0, 3.0], [0.0, 0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny EDSR 2× super-resolution checkpoint."""
    torch.manual_seed(0)
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "edsr.pt", EDSR)


def volume(shape: tuple[int, int, int]) -> np.ndarray:
    """A positive random ``(H, W, S)`` float32 volume (NIfTI axis order)."""
    return (np.random.default_rng(1).random(shape) + 0.1).astype(np.float32)


def save(path: Path, data: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    return path


def test_degraded_restore_of_an_odd_matrix_pads_restores_and_crops_back(checkpoint: Path, tmp_path: Path) -> None:
    data = volume((31, 32, 2))
    odd = save(tmp_path / "odd.nii.gz", data)
    padded = save(tmp_path / "padded.nii.gz", np.pad(data, ((0, 1), (0, 0), (0, 0))))  # zeros after the last row
    (out_odd,) = restore(checkpoint, [odd], tmp_path / "odd_restored.nii.gz", degrade=True, device="cpu")
    (out_padded,) = restore(checkpoint, [padded], tmp_path / "padded_restored.nii.gz", degrade=True, device="cpu")
    restored, reference = nib.load(out_odd), nib.load(out_padded)
    assert restored.shape == (31, 32, 2)  # the input's grid
    np.testing.assert_allclose(restored.affine, AFFINE, atol=1e-6)  # every voxel where it was
    np.testing.assert_allclose(restored.get_fdata(), reference.get_fdata()[:31], rtol=1e-5, atol=1e-5)


def test_degraded_restore_of_odd_kspace_pads_the_coil_images(checkpoint: Path, tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(2)
    images = torch.randn(2, 2, 32, 31, dtype=torch.complex64, generator=generator)  # (S, C, H, W), odd width
    odd, padded = tmp_path / "odd.h5", tmp_path / "padded.h5"
    for path, coil_images in ((odd, images), (padded, torch.nn.functional.pad(images, (0, 1)))):
        with h5py.File(path, "w") as file:
            file.create_dataset("kspace", data=fft2c(coil_images).numpy())
    (out_odd,) = restore(checkpoint, [odd], tmp_path / "o.h5", degrade=True, device="cpu")
    (out_padded,) = restore(checkpoint, [padded], tmp_path / "p.h5", degrade=True, device="cpu")
    with h5py.File(out_odd) as a, h5py.File(out_padded) as b:
        assert a["reconstruction"].shape == (2, 32, 31)
        np.testing.assert_allclose(a["reconstruction"][()], b["reconstruction"][:, :, :31], rtol=1e-4, atol=1e-5)


def test_cli_restores_an_odd_matrix_with_degrade_and_acquired(checkpoint: Path, tmp_path: Path) -> None:
    odd = save(tmp_path / "scan.nii.gz", volume((31, 33, 2)))
    result = runner.invoke(app, ["restore", str(checkpoint), str(odd), "--degrade", "--device", "cpu",
                                 "--out", str(tmp_path / "degraded.nii.gz")])
    assert result.exit_code == 0, result.output
    assert nib.load(tmp_path / "degraded.nii.gz").shape == (31, 33, 2)
    result = runner.invoke(app, ["restore", str(checkpoint), str(odd), "--device", "cpu",  # acquired: GridPadding
                                 "--out", str(tmp_path / "acquired.nii.gz")])
    assert result.exit_code == 0, result.output
    acquired = nib.load(tmp_path / "acquired.nii.gz")
    assert acquired.shape == (62, 66, 2)
    np.testing.assert_allclose(acquired.affine, restored_affine(AFFINE, 2, (31, 33)), atol=1e-6)


def test_pad_to_scale_zero_pads_the_coil_images_at_the_end() -> None:
    images = torch.randn(3, 5, 7, dtype=torch.complex64)
    padded = ifft2c(pad_to_scale(fft2c(images), 4))
    assert padded.shape == (3, 8, 8)
    torch.testing.assert_close(padded[:, :5, :7], images, atol=1e-5, rtol=1e-5)
    assert padded[:, 5:].abs().max() < 1e-5 and padded[:, :, 7:].abs().max() < 1e-5
    kspace = fft2c(images[:, :4, :4])
    assert pad_to_scale(kspace, 2) is kspace  # divisible: unchanged


def test_slice_dataset_without_pad_still_refuses_an_odd_matrix(tmp_path: Path) -> None:
    source = SliceSource(ImageVolume(np.ones((1, 31, 32), np.float32), AFFINE, tmp_path / "odd.nii.gz"), "s")
    with pytest.raises(DataError, match=r"odd\.nii\.gz.*not divisible by the scale 2"):
        SliceDataset([source], "super_resolution", Acquisition(scale=2))
    sample = SliceDataset([source], "super_resolution", Acquisition(scale=2), pad=True)[0]
    assert sample.target.shape[-2:] == (32, 32) and sample.lr_input.shape[-2:] == (16, 16)


def test_evaluate_pads_an_odd_matrix_and_scores_it_on_its_own_grid(tmp_path: Path) -> None:
    odd = save(tmp_path / "odd.nii.gz", volume((31, 32, 2)))
    torch.manual_seed(0)
    edsr = make_checkpoint(tmp_path / "edsr.pt", EDSR, source={"kind": "files", "paths": [str(odd)]})
    result = evaluate([edsr], tmp_path / "eval", data_overrides=["split.ratios=[0,0,1]"], device="cpu")
    ((row,),) = (method.scores for method in result.methods)
    (restored,) = restore(edsr, [odd], tmp_path / "restored.nii.gz", degrade=True, device="cpu")
    target, prediction = (torch.from_numpy(read_nifti(path).data) for path in (odd, restored))
    assert prediction.shape == target.shape == (2, 31, 32)
    expected = evaluate_volume(target, prediction)  # restore --degrade's output against the original, 31 x 32
    assert (row.psnr, row.ssim) == pytest.approx((expected["psnr"], expected["ssim"]), abs=1e-3)
