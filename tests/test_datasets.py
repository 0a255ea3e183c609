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
from accelmri.models.baselines.interpolation import bicubic_upsample
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


# ------------------------------------------------------------------------------------------- random patches


def image_volume(shape: tuple[int, int], slices: int = 2, name: str = "t2.nii.gz") -> SliceSource:
    """A magnitude volume of Shepp–Logan slices with fine random texture (so misaligned crops differ)."""
    generator = torch.Generator().manual_seed(7)
    data = [shepp_logan(shape).abs() * (1 + 0.2 * torch.rand(shape, generator=generator)) for _ in range(slices)]
    return SliceSource(ImageVolume(data=torch.stack(data).numpy(), affine=np.eye(4), path=Path(name)),
                       subject="sub-01", contrast="T2")


@pytest.mark.parametrize(
    ("shape", "patch", "scale"),
    [((64, 64), (32, 32), 2), ((64, 64), (32, 16), 4), ((66, 64), (32, 30), 2)],
    ids=["2x", "4x", "odd-lr-and-odd-patch"],
)
def test_patches_are_aligned_crops_of_the_whole_slice(shape: tuple[int, int], patch: tuple[int, int],
                                                      scale: int) -> None:
    target, reference = image_volume(shape), image_volume(shape, name="flair.nii.gz")
    acquisition = Acquisition(scale=scale, noise_std=0.01, seed=None)
    kwargs = {"task": "super_resolution", "acquisition": acquisition, "references": [reference]}
    whole = SliceDataset([target], **kwargs)[1]
    patched = SliceDataset([target], patch_size=patch, **kwargs)
    lr_h, lr_w = patch[0] // scale, patch[1] // scale
    for _ in range(4):
        sample = patched[1]
        assert sample.target.shape == sample.reference.shape == (1, *patch)
        assert sample.lr_input.shape == sample.lr_target.shape == sample.mask.shape == (1, lr_h, lr_w)
        assert sample.kspace.shape == (1, lr_h, lr_w) and sample.kspace.dtype == torch.complex64
        (y0, x0), (hr_y0, hr_x0) = sample.meta["lr_offset"], sample.meta["hr_offset"]
        # The LR patch is the same region of the whole slice's LR image (degraded first, then cut: the validation
        # seed of the slice gives the same noise), the HR fields the aligned region of the whole HR images.
        assert torch.equal(sample.lr_input, whole.lr_input[..., y0 : y0 + lr_h, x0 : x0 + lr_w])
        assert torch.equal(sample.lr_target, whole.lr_target[..., y0 : y0 + lr_h, x0 : x0 + lr_w])
        assert torch.equal(sample.target, whole.target[..., hr_y0 : hr_y0 + patch[0], hr_x0 : hr_x0 + patch[1]])
        assert torch.equal(sample.reference, whole.reference[..., hr_y0 : hr_y0 + patch[0], hr_x0 : hr_x0 + patch[1]])
        # Whole-slice statistics, and a k-space consistent with the input (fully sampled patch).
        assert sample.norm_std == whole.norm_std and sample.norm_mean == whole.norm_mean
        assert torch.all(sample.mask == 1)
        assert torch.allclose(ifft2c(sample.kspace)[0].abs(), sample.lr_input[0], atol=1e-5)
        # On the truncation grid (independently of the offset formula): bicubic upsampling of the LR patch
        # equals, away from the patch border, the same HR region of the bicubic upsampling of the whole LR image.
        upsampled = bicubic_upsample(whole.lr_input[None], scale)[0, :, hr_y0 : hr_y0 + patch[0],
                                                                 hr_x0 : hr_x0 + patch[1]]
        m = 3 * scale
        assert torch.allclose(bicubic_upsample(sample.lr_input[None], scale)[0, :, m:-m, m:-m],
                              upsampled[:, m:-m, m:-m], atol=1e-5)


def test_multicoil_patches_cut_coil_maps_and_kspace() -> None:
    source = multicoil_source(slices=1)
    acquisition = Acquisition(scale=2)
    whole = SliceDataset([source], "super_resolution", acquisition, sens_maps="espirit")[0]
    sample = SliceDataset([source], "super_resolution", acquisition, sens_maps="espirit", patch_size=(32, 32))[0]
    y0, x0 = sample.meta["lr_offset"]
    assert sample.kspace.shape == sample.sens_maps.shape == (4, 16, 16)
    assert torch.equal(sample.sens_maps, whole.sens_maps[..., y0 : y0 + 16, x0 : x0 + 16])
    coil_images = ifft2c(whole.kspace)[..., y0 : y0 + 16, x0 : x0 + 16]
    assert torch.allclose(ifft2c(sample.kspace), coil_images, atol=1e-5)
    assert torch.allclose(rss(ifft2c(sample.kspace)), sample.lr_input[0], atol=1e-5)


def test_patch_offsets_follow_torch_seed() -> None:
    dataset = SliceDataset([image_volume((64, 64))], "super_resolution", Acquisition(scale=2, seed=None),
                           train=True, patch_size=(16, 16))
    offsets = {}
    for seed in range(6):
        torch.manual_seed(seed)
        first = dataset[0]
        torch.manual_seed(seed)
        again = dataset[0]
        assert first.meta["lr_offset"] == again.meta["lr_offset"]
        assert torch.equal(first.target, again.target) and torch.equal(first.lr_input, again.lr_input)
        offsets[seed] = first.meta["lr_offset"]
    assert len(set(offsets.values())) > 1  # 625 possible offsets: six seeds do not all draw the same one


def test_patch_size_errors() -> None:
    source = image_volume((64, 64))
    sr = Acquisition(scale=2)
    with pytest.raises(ValueError, match="divisible by the scale 2"):
        SliceDataset([source], "super_resolution", sr, patch_size=(33, 32))
    with pytest.raises(ValueError, match="positive"):
        SliceDataset([source], "super_resolution", sr, patch_size=(0, 32))
    with pytest.raises(ValueError, match="super_resolution' only"):
        SliceDataset([source], "joint", JOINT, patch_size=(32, 32))
    with pytest.raises(ValueError, match="larger than the crop"):
        SliceDataset([source], "super_resolution", sr, crop=(32, 32), patch_size=(48, 32))
    too_large = SliceDataset([source], "super_resolution", sr, patch_size=(80, 32))
    with pytest.raises(DataError, match=r"t2\.nii\.gz: patch_size \(80, 32\) is larger than the slice \(64, 64\)"):
        too_large[0]


@pytest.mark.parametrize("normalization", ["scale", "meanstd"])
def test_sample_from_tensors_matches_the_dataset(normalization: str) -> None:
    from accelmri.data.sample import Sample

    dataset = SliceDataset([multicoil_source()], "joint", JOINT, references=[image_source(scale=500.0)],
                           sens_maps="espirit", normalization=normalization)
    sample = dataset[1]
    assert sample.reference is not None and sample.sens_maps is not None
    reference = torch.from_numpy(image_source(scale=500.0).volume.data[1])  # its own magnitude, HR grid
    measured = sample.kspace * sample.norm_std  # the acquired LR k-space in original units
    own = Sample.from_tensors(measured, sample.mask[0], scale=2, sens_maps=sample.sens_maps, reference=reference,
                              normalization=normalization)
    for name in ("lr_input", "kspace", "mask", "reference", "norm_mean", "norm_std", "sens_maps"):
        assert torch.allclose(getattr(own, name), getattr(sample, name), rtol=1e-4, atol=1e-5), name
    assert own.target.shape == sample.target.shape and not own.target.any()  # no ground truth
    # the mask defaults to the measured samples; one coil may come as (h, w)
    assert torch.equal(Sample.from_tensors(measured).mask, sample.mask)
    single = Sample.from_tensors(measured[0], scale=2)
    assert single.kspace.shape == (1, 32, 32) and single.lr_input.shape == (1, 32, 32)
    batch = collate([own, own])
    assert torch.allclose(batch.denormalize(batch.lr_input)[0, 0], rss(ifft2c(measured)), rtol=1e-4, atol=1e-3)


def test_sample_from_tensors_refuses_bad_input() -> None:
    from accelmri.data.sample import Sample

    kspace = fft2c(shepp_logan((16, 16))[None])
    for call, problem in (
        (lambda: Sample.from_tensors(kspace.real), "complex"),
        (lambda: Sample.from_tensors(kspace[None]), r"\(C, h, w\)"),
        (lambda: Sample.from_tensors(kspace, torch.zeros(16)), "no k-space sample"),
        (lambda: Sample.from_tensors(kspace, torch.ones(8)), "does not broadcast"),
        (lambda: Sample.from_tensors(kspace, scale=0), "scale"),
        (lambda: Sample.from_tensors(kspace, scale=2, reference=torch.ones(16, 16)), "output grid"),
        (lambda: Sample.from_tensors(kspace * float("nan")), "NaN"),
        (lambda: Sample.from_tensors(kspace, normalization="zscore"), "unknown normalization"),
    ):
        with pytest.raises(ValueError, match=problem):
            call()
