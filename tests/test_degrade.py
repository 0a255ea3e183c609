from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from accelmri.physics.coils import rss, sense_combine
from accelmri.physics.degrade import AcquiredData, Acquisition, lowres
from accelmri.physics.fft import fft2c, ifft2c
from accelmri.physics.masks import make_mask, realised_acceleration
from tests.conftest import random_complex

AXES = (-2, -1)


def _np_fft2c(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=AXES), axes=AXES, norm="ortho"), axes=AXES)


def _np_ifft2c(k: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=AXES), axes=AXES, norm="ortho"), axes=AXES)


def _np_lowres(k: np.ndarray, s: int) -> np.ndarray:
    big_h, big_w = k.shape[-2:]
    h, w = big_h // s, big_w // s
    r0, c0 = big_h // 2 - h // 2, big_w // 2 - w // 2
    return k[..., r0 : r0 + h, c0 : c0 + w] / s


def _normalised_maps(coils: int, h: int, w: int) -> torch.Tensor:
    maps = random_complex(coils, h, w)
    return maps / rss(maps).unsqueeze(-3)


@pytest.mark.parametrize(
    ("shape", "scale"),
    [
        ((16, 12), 2),
        ((2, 3, 16, 12), 4),
        ((4, 20, 28), 2),
        ((15, 9), 3),
        ((2, 21, 35), 7),
        ((1, 10, 15), 5),
        ((18, 30), 2),
    ],
)
def test_lowres_matches_numpy_reference(shape: tuple[int, ...], scale: int) -> None:
    image = random_complex(*shape).numpy()
    k = _np_fft2c(image)
    ours = lowres(torch.from_numpy(k), scale)
    ref = _np_lowres(k, scale)
    assert ours.shape == ref.shape == (*shape[:-2], shape[-2] // scale, shape[-1] // scale)
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ifft2c(ours).numpy(), _np_ifft2c(ref), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("shape", "scale"), [((32, 24), 2), ((32, 24), 4), ((15, 9), 3), ((3, 2, 20, 20), 4)])
def test_lowres_keeps_dc_at_centre_and_constant_image_constant(shape: tuple[int, ...], scale: int) -> None:
    value = 3.5 - 1.25j
    k = fft2c(torch.full(shape, value, dtype=torch.complex128))
    k_lr = lowres(k, scale)
    h, w = k_lr.shape[-2:]
    peak = int(k_lr.reshape(-1, h * w)[0].abs().argmax())
    assert divmod(peak, w) == (h // 2, w // 2)
    lr = ifft2c(k_lr)
    assert torch.allclose(lr, torch.full_like(lr, value), atol=1e-12)


def test_lowres_recovers_zero_padded_lr_image() -> None:
    # HR image = band-limited (sinc) interpolation of an LR image, scaled to the same intensity: exact recovery.
    h, w, s = 12, 10, 2
    lr = random_complex(2, h, w)
    k_hr = torch.zeros(2, h * s, w * s, dtype=lr.dtype)
    r0, c0 = (h * s) // 2 - h // 2, (w * s) // 2 - w // 2
    k_hr[:, r0 : r0 + h, c0 : c0 + w] = fft2c(lr) * s
    assert torch.allclose(ifft2c(lowres(k_hr, s)), lr, atol=1e-12)


def test_lowres_scale_one_is_identity() -> None:
    k = random_complex(2, 9, 7)
    assert lowres(k, 1) is k


@pytest.mark.parametrize(
    ("shape", "scale", "match"),
    [
        ((16, 16), 3, r"scale=3 does not divide the k-space matrix size 16x16"),
        ((16, 18), 4, r"scale=4 does not divide the k-space matrix size 16x18"),
        ((16, 16), 0, r"scale must be a positive int, got 0"),
        ((16, 16), 2.0, r"scale must be a positive int, got 2\.0"),
        ((16,), 2, r"at least 2 dims"),
    ],
)
def test_lowres_errors(shape: tuple[int, ...], scale: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lowres(random_complex(*shape), scale)  # type: ignore[arg-type]


def test_acquisition_defaults_and_frozen() -> None:
    acq = Acquisition()
    assert (acq.mask_kind, acq.acceleration, acq.center_fraction, acq.scale, acq.noise_std, acq.seed) == (
        "equispaced",
        1.0,
        0.08,
        1,
        0.0,
        0,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        acq.acceleration = 4.0  # type: ignore[misc]
    assert Acquisition(acceleration=4.0) == Acquisition(acceleration=4.0)  # value semantics, hashable
    assert len({Acquisition(), Acquisition()}) == 1
    out = acq.apply(random_complex(1, 8, 8))
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.mask = torch.ones(8, 8)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mask_kind": "spiral"}, r"unknown mask kind 'spiral'.*poisson2d"),
        ({"acceleration": 0.9}, r"acceleration .*got 0\.9"),
        ({"center_fraction": 1.5}, r"center_fraction must be in \[0, 1\), got 1\.5"),
        ({"scale": 0}, r"scale must be a positive int, got 0"),
        ({"scale": 1.5}, r"scale must be a positive int, got 1\.5"),
        ({"noise_std": -0.1}, r"noise_std must be a finite number >= 0, got -0\.1"),
        ({"noise_std": float("inf")}, r"noise_std .*got inf"),
        ({"seed": -3}, r"seed must be a non-negative int or None, got -3"),
    ],
)
def test_acquisition_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Acquisition(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("shape", "scale", "kind"),
    [((2, 1, 32, 24), 2, "equispaced"), ((1, 32, 24), 1, "random"), ((2, 4, 32, 24), 4, "poisson2d")],
)
def test_apply_shapes_and_noiseless_measurement(shape: tuple[int, ...], scale: int, kind: str) -> None:
    k = fft2c(random_complex(*shape, dtype=torch.complex64))
    acq = Acquisition(mask_kind=kind, acceleration=2.0, center_fraction=0.1, scale=scale)
    out = acq.apply(k)
    h, w = shape[-2] // scale, shape[-1] // scale
    assert isinstance(out, AcquiredData)
    assert out.kspace.shape == (*shape[:-2], h, w) and out.kspace.dtype == torch.complex64
    assert out.mask.shape == (h, w) and out.mask.dtype == torch.float32
    assert out.zero_filled.shape == out.lr_image.shape == (*shape[:-3], h, w)
    assert out.zero_filled.is_complex() and out.lr_image.is_complex()
    expected = lowres(k, scale) * out.mask
    assert torch.equal(out.kspace, expected)  # equals lowres(k)·mask inside, zero outside
    assert torch.all(out.kspace[..., out.mask == 0] == 0)
    assert torch.equal(out.mask, make_mask(kind, (h, w), 2.0, 0.1, seed=0))
    assert out.scale == scale
    assert out.acceleration == realised_acceleration(out.mask)
    assert abs(out.acceleration / 2.0 - 1) <= 0.05
    assert out.total_acceleration == pytest.approx(out.acceleration * scale)


def test_single_coil_images_are_plain_inverse_ffts() -> None:
    k = fft2c(random_complex(3, 1, 40, 36))
    out = Acquisition(mask_kind="random", acceleration=4.0, scale=2, noise_std=0.05).apply(k, seed=4)
    assert torch.allclose(out.zero_filled, ifft2c(out.kspace)[:, 0], atol=1e-12)
    assert torch.allclose(out.zero_filled, ifft2c(out.kspace * out.mask)[:, 0], atol=1e-12)
    assert torch.allclose(out.lr_image, ifft2c(lowres(k, 2))[:, 0], atol=1e-12)


def test_multi_coil_without_maps_uses_rss() -> None:
    k = fft2c(random_complex(2, 4, 32, 32))
    out = Acquisition(mask_kind="gaussian1d", acceleration=3.0, scale=2).apply(k)
    assert torch.allclose(out.zero_filled, rss(ifft2c(out.kspace)).to(k.dtype), atol=1e-12)
    assert torch.allclose(out.lr_image.real, rss(ifft2c(lowres(k, 2))), atol=1e-12)
    assert torch.all(out.lr_image.imag == 0)


@pytest.mark.parametrize("scale", [2, 4])
def test_sense_combined_lr_image_recovers_the_object(scale: int) -> None:
    # Object and normalised maps on the LR grid; HR coil k-space = zero-padded LR coil k-space (times s).
    h, w, coils = 16, 12, 4
    x = random_complex(h, w)
    maps = _normalised_maps(coils, h, w)
    k_lr = fft2c(maps * x)
    k_hr = torch.zeros(coils, h * scale, w * scale, dtype=k_lr.dtype)
    r0, c0 = (h * scale) // 2 - h // 2, (w * scale) // 2 - w // 2
    k_hr[:, r0 : r0 + h, c0 : c0 + w] = k_lr * scale
    out = Acquisition(mask_kind="equispaced", acceleration=2.0, center_fraction=0.25, scale=scale).apply(k_hr, maps)
    assert torch.allclose(out.lr_image, x, atol=1e-12)
    assert torch.allclose(out.kspace, k_lr * out.mask, atol=1e-12)
    assert torch.allclose(out.zero_filled, sense_combine(ifft2c(out.kspace), maps), atol=1e-12)
    assert out.total_acceleration == pytest.approx(2.0 * scale)


def test_noise_statistics_and_support() -> None:
    std = 0.5
    k = torch.zeros(2, 4, 64, 64, dtype=torch.complex128)
    full = Acquisition(acceleration=1.0, noise_std=std).apply(k).kspace
    n = full.numel()
    assert abs(full.abs().pow(2).mean().item() / std**2 - 1) < 0.05
    assert abs(full.real.var().item() / (std**2 / 2) - 1) < 0.06
    assert abs(full.imag.var().item() / (std**2 / 2) - 1) < 0.06
    assert abs(full.mean().item()) < 5 * std / n**0.5
    # noise only where sampled; it is added after truncation (LR units), with the same std
    out = Acquisition(mask_kind="random", acceleration=4.0, scale=2, noise_std=std).apply(
        torch.zeros(2, 4, 128, 128, dtype=torch.complex128)
    )
    sampled = out.kspace[..., out.mask == 1]
    assert torch.all(out.kspace[..., out.mask == 0] == 0)
    assert torch.all(sampled != 0)
    assert abs(sampled.abs().pow(2).mean().item() / std**2 - 1) < 0.08


def test_noise_is_added_to_the_signal() -> None:
    k = fft2c(random_complex(1, 32, 32))
    clean = Acquisition(mask_kind="random", acceleration=2.0).apply(k, seed=3)
    noisy = Acquisition(mask_kind="random", acceleration=2.0, noise_std=0.01).apply(k, seed=3)
    assert torch.equal(clean.mask, noisy.mask)
    diff = (noisy.kspace - clean.kspace)[..., noisy.mask == 1]
    assert 0.005 < diff.abs().pow(2).mean().sqrt().item() < 0.02
    assert torch.equal(clean.lr_image, noisy.lr_image)  # the target is noiseless


def test_seed_override_reproducibility() -> None:
    k = fft2c(random_complex(2, 64, 64))
    acq = Acquisition(mask_kind="random", acceleration=4.0, noise_std=0.1, seed=0)
    a, b, c = acq.apply(k, seed=5), acq.apply(k, seed=5), acq.apply(k, seed=6)
    assert torch.equal(a.kspace, b.kspace) and torch.equal(a.mask, b.mask)
    assert not torch.equal(a.mask, c.mask)
    assert torch.equal(acq.apply(k).kspace, acq.apply(k, seed=0).kspace)
    assert not torch.equal(acq.apply(k).kspace, a.kspace)
    # seed=None: fresh randomness on every call
    rand = Acquisition(mask_kind="random", acceleration=4.0, noise_std=0.1, seed=None)
    assert not torch.equal(rand.apply(k).kspace, rand.apply(k).kspace)


def test_complex128_preserved() -> None:
    k = fft2c(random_complex(1, 16, 16, dtype=torch.complex128))
    out = Acquisition(acceleration=2.0, scale=2, noise_std=0.1).apply(k)
    assert out.kspace.dtype == out.zero_filled.dtype == out.lr_image.dtype == torch.complex128


def test_apply_errors() -> None:
    acq = Acquisition(mask_kind="equispaced", acceleration=4.0, scale=2)
    with pytest.raises(TypeError, match="complex tensor"):
        acq.apply(torch.zeros(1, 16, 16))
    with pytest.raises(ValueError, match=r"coil axis.*got shape \(16, 16\)"):
        acq.apply(random_complex(16, 16))
    with pytest.raises(ValueError, match=r"scale=2 does not divide the k-space matrix size 16x15"):
        acq.apply(random_complex(1, 16, 15))
    with pytest.raises(ValueError, match=r"sens_maps must be .*\(\.\.\., 2, 8, 8\) on the LR grid"):
        acq.apply(random_complex(2, 16, 16), _normalised_maps(2, 16, 16))
    with pytest.raises(ValueError, match=r"sens_maps"):
        acq.apply(random_complex(2, 16, 16), _normalised_maps(3, 8, 8))
    with pytest.raises(ValueError, match=r"seed must be a non-negative int or None, got -1"):
        acq.apply(random_complex(1, 16, 16), seed=-1)
    with pytest.raises(ValueError, match=r"center_fraction=0\.5 .*budget"):
        Acquisition(acceleration=4.0, center_fraction=0.5).apply(random_complex(1, 16, 16))
