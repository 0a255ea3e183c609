from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from accelmri.data.datasets import SliceDataset, SliceSource, check_task
from accelmri.data.errors import DataError
from accelmri.data.phantom import shepp_logan
from accelmri.data.sample import collate
from accelmri.data.volume import ImageVolume, KspaceVolume
from accelmri.physics.coils import rss, sense_expand
from accelmri.physics.degrade import Acquisition
from accelmri.physics.fft import fft2c, ifft2c
from accelmri.physics.sensitivity import birdcage_maps


def multicoil_source(slices: int = 3, coils: int = 4, size: int = 64, name: str = "vol.h5") -> SliceSource:
    images = torch.stack([shepp_logan((size, size), phase_cycles=0.3 * (s + 1)) * (1 + 0.1 * s) for s in range(slices)])
    kspace = fft2c(sense_expand(images, birdcage_maps((coils, size, size)))).numpy()
    return SliceSource(KspaceVolume(kspace=kspace, path=Path(name)), subject="sub-01", contrast="T2")


def image_source(slices: int = 3, size: int = 64, name: str = "ref.nii.gz", scale: float = 1.0) -> SliceSource:
    data = np.stack([scale * shepp_logan((size, size)).abs().numpy() for _ in range(slices)]).astype(np.float32)
    return SliceSource(ImageVolume(data=data, affine=np.eye(4), path=Path(name)), subject="sub-01", contrast="T1")


JOINT = Acquisition("equispaced", acceleration=4, center_fraction=0.25, scale=2)


def test_joint_multicoil_sample_contract() -> None:
    source = multicoil_source()
    dataset = SliceDataset([source], "joint", JOINT, sens_maps="espirit")
    assert len(dataset) == 3
    sample = dataset[1]
    assert sample.target.shape == (1, 64, 64) and sample.target.dtype == torch.float32
    assert sample.lr_input.shape == sample.lr_target.shape == (1, 32, 32)
    assert sample.kspace.shape == (4, 32, 32) and sample.kspace.dtype == torch.complex64
    assert sample.mask.shape == (1, 32, 32)
    assert sample.sens_maps is not None and sample.sens_maps.shape == (4, 32, 32)
    assert sample.reference is None
    assert sample.meta["slice"] == 1 and sample.meta["subject"] == "sub-01"
    assert abs(sample.meta["acceleration"] - 4) / 4 <= 0.05
    # Undoing the normalisation gives the fully sampled HR RSS image in original units.
    hr = rss(ifft2c(source.kspace(1)))
    assert torch.allclose(sample.denormalize(sample.target)[0], hr, rtol=1e-4, atol=1e-6 * float(hr.max()))
    # The measured k-space is consistent with the zero-filled input (same normalisation, RSS).
    zero_filled = rss(ifft2c(sample.kspace))
    assert torch.allclose(zero_filled, sample.lr_input[0], rtol=1e-4, atol=1e-5)
    # Zero outside the mask.
    assert (sample.kspace * (1 - sample.mask)).abs().max() == 0


def test_lr_target_shares_the_hr_intensity_scale() -> None:
    source = multicoil_source()
    dataset = SliceDataset([source], "super_resolution", Acquisition(scale=2))
    sample = dataset[0]
    assert torch.equal(sample.lr_input, sample.lr_target)  # no undersampling
    assert torch.all(sample.mask == 1)
    # k-space truncation keeps the complex mean of every coil image (DC compensated by 1/s) ...
    lr_mean = (ifft2c(sample.kspace) * sample.norm_std).mean(dim=(-2, -1))
    hr_mean = ifft2c(source.kspace(0)).mean(dim=(-2, -1))
    assert torch.allclose(lr_mean, hr_mean, rtol=1e-4, atol=1e-6 * float(hr_mean.abs().max()))
    # ... so LR and HR magnitudes share one scale (up to blurring of the magnitude).
    assert 0.8 < float(sample.lr_target.mean() / sample.target.mean()) < 1.25


def test_validation_masks_fixed_training_masks_random() -> None:
    source = multicoil_source()
    acquisition = Acquisition("random", acceleration=4, center_fraction=0.08)
    val = SliceDataset([source], "reconstruction", acquisition)
    assert torch.equal(val[0].mask, val[0].mask)
    assert not torch.equal(val[0].mask, val[1].mask)
    train = SliceDataset([source], "reconstruction", acquisition, train=True)
    torch.manual_seed(1)
    masks = [train[0].mask for _ in range(4)]
    assert any(not torch.equal(masks[0], m) for m in masks[1:])
    torch.manual_seed(1)
    assert torch.equal(train[0].mask, masks[0])  # reproducible from torch's seed


def test_magnitude_volume_becomes_single_coil_kspace() -> None:
    source = image_source()
    dataset = SliceDataset([source], "joint", JOINT)
    sample = dataset[0]
    assert sample.kspace.shape == (1, 32, 32)
    assert sample.sens_maps is None
    image = torch.from_numpy(source.volume.data[0])
    assert torch.allclose(sample.denormalize(sample.target)[0], image, atol=1e-5)


def test_reference_contrast_on_target_grid() -> None:
    dataset = SliceDataset([multicoil_source()], "super_resolution", Acquisition(scale=4),
                           references=[image_source(slices=2, scale=500.0)])
    assert len(dataset) == 2  # paired by index over min(n_target, n_reference)
    sample = dataset[0]
    assert sample.reference is not None and sample.reference.shape == (1, 64, 64)
    assert abs(float(sample.reference.mean()) - 1.0) < 1e-4  # normalised by its own statistics
    batch = collate([dataset[0], dataset[1]])
    assert batch.reference is not None and batch.reference.shape == (2, 1, 64, 64)
    bad = SliceDataset([multicoil_source()], "super_resolution", Acquisition(scale=4),
                       references=[image_source(size=32)])
    with pytest.raises(DataError, match="not on the target grid"):
        bad[0]


def test_dataloader_batches_and_denormalizes() -> None:
    dataset = SliceDataset([multicoil_source(), multicoil_source(name="b.h5")], "joint", JOINT)
    loader = DataLoader(dataset, batch_size=4, collate_fn=collate)
    batch = next(iter(loader))
    assert batch.target.shape == (4, 1, 64, 64) and batch.kspace.shape == (4, 4, 32, 32)
    assert batch.norm_std.shape == (4,)
    assert batch.meta["file"] == ["vol.h5", "vol.h5", "vol.h5", "b.h5"]
    restored = batch.denormalize(batch.target)
    assert torch.allclose(restored[3], dataset[3].denormalize(dataset[3].target))


def test_crop_and_bad_arguments() -> None:
    source = multicoil_source(size=64)
    cropped = SliceDataset([source], "joint", JOINT, crop=(48, 40))[0]
    assert cropped.target.shape == (1, 48, 40) and cropped.lr_input.shape == (1, 24, 20)
    with pytest.raises(ValueError, match="divisible"):
        SliceDataset([source], "joint", JOINT, crop=(47, 40))
    with pytest.raises(ValueError, match="scale 1"):
        check_task("reconstruction", JOINT)
    with pytest.raises(ValueError, match="acceleration 1"):
        check_task("super_resolution", JOINT)
    with pytest.raises(ValueError, match="valid tasks"):
        check_task("denoising", JOINT)


def test_non_finite_slice_is_reported() -> None:
    kspace = multicoil_source().volume.kspace.copy()
    kspace[2, 0, 3, 3] = np.nan
    source = SliceSource(KspaceVolume(kspace=kspace, path=Path("broken.h5")), subject="s")
    dataset = SliceDataset([source], "joint", JOINT)
    dataset[0]
    with pytest.raises(DataError, match=r"broken\.h5: slice 2 contains NaN"):
        dataset[2]
