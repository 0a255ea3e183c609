"""k-space data consistency for super-resolution (``model.kspace_consistency``): physics, engine flag, training."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from accelmri.engine.build import build_model
from accelmri.engine.config import ConfigError, ModelConfig
from accelmri.models.baselines.interpolation import Sinc, band_consistent, zero_pad_kspace
from accelmri.physics.degrade import lowres
from accelmri.physics.fft import fft2c, ifft2c
from tests.model_utils import make_batch, overfit, psnr

pytestmark = pytest.mark.usefixtures("one_thread")


def _symmetric_band(lr_shape: tuple[int, int]) -> np.ndarray:
    """The LR k-space samples whose mirror is also in the block (even sides lose their Nyquist line, index 0)."""
    keep = np.ones(lr_shape, dtype=bool)
    if lr_shape[0] % 2 == 0:
        keep[0] = False
    if lr_shape[1] % 2 == 0:
        keep[:, 0] = False
    return keep


@pytest.mark.parametrize("shape", [(32, 32), (30, 34), (26, 22), (36, 28)])
@pytest.mark.parametrize("scale", [2, 3])
def test_output_band_is_the_measured_band(shape: tuple[int, int], scale: int) -> None:
    """numpy FFT parity: the output's central k-space block equals the LR image's spectrum; the rest is the input's."""
    height, width = (scale * (shape[0] // 2), scale * (shape[1] // 2))
    h, w = height // scale, width // scale
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.standard_normal((2, 1, height, width)).astype(np.float32))
    lr = torch.from_numpy(rng.random((2, 1, h, w)).astype(np.float32))
    out = band_consistent(image, lr, scale).double().numpy()
    assert out.dtype == np.float64 and np.isrealobj(out)

    def spectrum(x: np.ndarray) -> np.ndarray:  # centred orthonormal DFT with numpy, independent of accelmri
        return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))

    k_out, k_in, k_lr = spectrum(out), spectrum(image.double().numpy()), spectrum(lr.double().numpy())
    r0, c0 = height // 2 - h // 2, width // 2 - w // 2
    block = k_out[..., r0 : r0 + h, c0 : c0 + w] / scale  # lowres divides the block by s
    keep = _symmetric_band((h, w))
    np.testing.assert_allclose(block[..., keep], k_lr[..., keep], atol=2e-5)
    outside = np.ones((height, width), dtype=bool)
    outside[r0 : r0 + h, c0 : c0 + w] = False
    outside[r0, :] = outside[:, c0] = False  # the Nyquist lines' mirrors (even sides) may take half of them
    outside[(2 * (height // 2) - r0) % height, :] = outside[:, (2 * (width // 2) - c0) % width] = False
    np.testing.assert_allclose(k_out[..., outside], k_in[..., outside], atol=2e-5)


def test_zero_network_output_is_the_sinc_baseline() -> None:
    """With a zero HR image the consistent output is the sinc interpolation of the LR data (odd LR sides)."""
    torch.manual_seed(0)
    hr = torch.rand(1, 1, 30, 26)
    lr_kspace = lowres(fft2c(hr.to(torch.complex64)), 2)
    lr_image = ifft2c(lr_kspace).real  # odd 15 × 13 LR block: Hermitian, so the LR image is real
    sinc = ifft2c(zero_pad_kspace(lr_kspace, 2))
    out = band_consistent(torch.zeros_like(hr), lr_image, 2)
    assert sinc.imag.abs().max() < 1e-5
    assert torch.allclose(out, sinc.real, atol=1e-5)


@pytest.mark.parametrize("shape", [(32, 32), (30, 32), (32, 30), (30, 26)])
def test_real_data_are_imposed_exactly_nyquist_line_included(shape: tuple[int, int]) -> None:
    """A magnitude image degraded in k-space: the measured band, Nyquist line included, is the output's; the
    ground truth is a fixed point; an offset (meanstd units) is honoured."""
    torch.manual_seed(0)
    truth = torch.rand(2, 1, *shape)
    kspace = lowres(fft2c(truth.to(torch.complex64)), 2)
    lr_image = ifft2c(kspace).abs()
    out = band_consistent(torch.randn_like(truth), lr_image, 2, kspace)
    assert torch.allclose(lowres(fft2c(out), 2), kspace, atol=1e-5)  # every measured sample, the Nyquist line too
    assert torch.allclose(band_consistent(truth, lr_image, 2, kspace), truth, atol=1e-5)
    mean, std = 0.3, 2.0  # meanstd units: image (x − mean)/std, k-space k/std
    offset = torch.full((2,), mean / std)
    shifted = band_consistent((truth - mean) / std, (lr_image - mean) / std, 2, kspace / std, offset)
    assert torch.allclose(shifted, (truth - mean) / std, atol=1e-5)
    # without the measured k-space the even sides' Nyquist lines are the network's: not exact there
    magnitude_only = band_consistent(torch.randn_like(truth), lr_image, 2)
    if shape[0] % 4 == 0 or shape[1] % 4 == 0:
        assert not torch.allclose(lowres(fft2c(magnitude_only), 2), kspace, atol=1e-3)


def test_complex_data_use_the_magnitude_band() -> None:
    """Data with a phase (the simulation's k-space) cannot be imposed on a real output: the magnitude band is."""
    torch.manual_seed(0)
    truth = torch.rand(1, 1, 32, 32) * torch.exp(1j * torch.linspace(0, 3, 32)).view(1, 1, 1, 32)
    kspace = lowres(fft2c(truth.to(torch.complex64)), 2)
    lr_image = ifft2c(kspace).abs()
    image = torch.randn(1, 1, 32, 32)
    assert torch.equal(band_consistent(image, lr_image, 2, kspace), band_consistent(image, lr_image, 2))


def test_band_consistent_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="2× the LR image"):
        band_consistent(torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 15, 16), 2)


def test_engine_flag_builds_a_consistent_model_with_the_same_parameters() -> None:
    batch = make_batch(size=(30, 34), reference=False)
    plain = build_model(ModelConfig("edsr", {"scale": 2, "channels": 8, "n_blocks": 1}), 2)
    consistent = build_model(ModelConfig("edsr", {"scale": 2, "channels": 8, "n_blocks": 1,
                                                  "kspace_consistency": True}), 2)
    consistent.load_state_dict(plain.state_dict())  # same parameters and names: checkpoints interchange
    assert getattr(consistent, "kspace_consistency", False) and not hasattr(plain, "kspace_consistency")
    with torch.no_grad():
        raw, out = plain(batch).image, consistent(batch).image
    assert not torch.allclose(raw, out, atol=1e-3)
    lr_of = lambda x: lowres(fft2c(x), 2)  # noqa: E731
    assert torch.allclose(lr_of(out), fft2c(batch.lr_input), atol=1e-4)  # 15 × 17 LR: no unpaired line
    assert not torch.allclose(lr_of(raw), fft2c(batch.lr_input), atol=1e-2)


def test_engine_flag_is_checked() -> None:
    with pytest.raises(ConfigError, match="kspace_consistency"):
        build_model(ModelConfig("edsr", {"scale": 2, "kspace_consistency": "yes"}), 2)
    with pytest.raises(ConfigError, match="super-resolution"):
        build_model(ModelConfig("unet", {"scale": 1, "kspace_consistency": True}), 1)


def test_undersampled_batch_is_refused() -> None:
    batch = make_batch(task="joint", acceleration=4.0, size=(32, 32), reference=False)
    model = build_model(ModelConfig("edsr", {"scale": 2, "channels": 8, "n_blocks": 1, "kspace_consistency": True}), 2)
    with pytest.raises(ValueError, match="fully sampled"):
        model(batch)


def test_consistent_model_trains_and_beats_sinc_on_one_batch() -> None:
    """Overfit one batch: the network learns the unmeasured band; the consistent output starts at sinc, ends above."""
    torch.manual_seed(0)
    batch = make_batch(size=(32, 32), reference=False)
    model = build_model(ModelConfig("edsr", {"scale": 2, "channels": 16, "n_blocks": 2, "kspace_consistency": True}), 2)
    sinc_psnr = psnr(Sinc(scale=2)(batch).image, batch.target)
    history = overfit(model, batch, lambda m, b: F.l1_loss(m(b).image, b.target), steps=300)
    assert history[-1] < 0.7 * history[0]
    with torch.no_grad():
        trained = model(batch).image
    assert psnr(trained, batch.target) > sinc_psnr + 1.0
    # and the hook survives dataclasses.replace: the other prediction fields are kept
    assert dataclasses.is_dataclass(model(batch))


def test_zero_pad_is_the_right_inverse_used() -> None:
    k = torch.randn(1, 1, 15, 16, dtype=torch.complex64)
    assert torch.equal(lowres(zero_pad_kspace(k, 2), 2), k)
