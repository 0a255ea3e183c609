"""Baseline models: interpolation physics, CG-SENSE and MoDL data consistency, shapes, gradients, overfitting."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from functools import cache

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from accelmri.data.phantom import shepp_logan
from accelmri.data.sample import Sample
from accelmri.models.baselines.cg_sense import CGSense
from accelmri.models.baselines.early_fusion import EarlyFusion
from accelmri.models.baselines.edsr import EDSR
from accelmri.models.baselines.interpolation import Bicubic, Sinc, sinc_upsample, zero_pad_kspace
from accelmri.models.baselines.modl import MoDL
from accelmri.models.baselines.sequential import Sequential
from accelmri.models.baselines.unet import UNet
from accelmri.models.baselines.zero_filled import ZeroFilled
from accelmri.models.registry import available, build
from accelmri.physics.coils import rss
from accelmri.physics.degrade import lowres
from accelmri.physics.fft import fft2c, ifft2c
from accelmri.physics.operators import SenseOperator, cg_sense
from tests.conftest import random_complex
from tests.model_utils import bicubic, make_batch, overfit, parameters_without_gradient, psnr


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One intra-op thread: these small tensors run ~10× faster without thread contention on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@cache
def _batch(task: str, scale: int, acceleration: float = 1.0, **kwargs: object) -> Sample:
    return make_batch(task, scale=scale, acceleration=acceleration, **kwargs)  # type: ignore[arg-type]


def joint_batch(scale: int) -> Sample:
    return _batch("joint", scale, 2.0, size=(32, 32))


def multicoil_batch(size: tuple[int, int] = (48, 48)) -> Sample:
    """The multi-coil reconstruction batch of the brief: 8 coils, R = 3, ESPIRiT maps."""
    return _batch("reconstruction", 1, 3.0, coils=8, sens_maps=True, size=size)


def mse_image(model: nn.Module, batch: Sample) -> torch.Tensor:
    return F.mse_loss(model(batch).image, batch.target)


def mse_lr_image(model: nn.Module, batch: Sample) -> torch.Tensor:
    return F.mse_loss(model(batch).lr_image, batch.lr_target)


def test_baselines_are_registered() -> None:
    names = {"bicubic", "sinc", "zero_filled", "cg_sense", "edsr", "early_fusion", "unet", "modl", "sequential"}
    assert names <= set(available())


# --- interpolation physics -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "scale", "coils"), [((24, 20), 2, 1), ((24, 20), 4, 3), ((18, 30), 3, 2)])
def test_sinc_of_truncated_kspace_is_the_low_passed_hr_image(size: tuple[int, int], scale: int, coils: int) -> None:
    hr_kspace = random_complex(2, coils, *size)
    lr_kspace = lowres(hr_kspace, scale)
    assert torch.allclose(lowres(zero_pad_kspace(lr_kspace, scale), scale), lr_kspace, rtol=0, atol=1e-15)
    band = zero_pad_kspace(torch.ones_like(lr_kspace.real), scale) != 0  # the central block
    expected = rss(ifft2c(hr_kspace * band))[:, None]
    assert torch.allclose(sinc_upsample(lr_kspace, scale), expected, atol=1e-10)


@pytest.mark.parametrize("scale", [2, 4])
def test_sinc_model_reproduces_a_band_limited_hr_image(scale: int) -> None:
    batch = _batch("super_resolution", scale, size=(32, 32))
    hr_kspace = fft2c(shepp_logan((32, 32), phase_cycles=0.5))
    band = zero_pad_kspace(torch.ones(32 // scale, 32 // scale), scale) != 0
    hr_kspace = (hr_kspace * band).expand(2, 1, 32, 32)
    batch = dataclasses.replace(batch, kspace=lowres(hr_kspace, scale))
    model = Sinc(scale)
    assert list(model.parameters()) == []
    assert torch.allclose(model(batch).image, ifft2c(hr_kspace).abs(), atol=1e-5)


def test_sinc_at_scale_one_is_the_batch_lr_input_and_sense_matches_rss_when_fully_sampled() -> None:
    batch = _batch("super_resolution", 2, size=(32, 32), coils=4, sens_maps=True)
    assert torch.allclose(Sinc(1)(batch).image, batch.lr_input, atol=1e-5)
    rss_image, sense_image = Sinc(2)(batch).image, Sinc(2, coil_combination="sense")(batch).image
    assert psnr(sense_image, rss_image) > 30
    with pytest.raises(ValueError, match="sens_maps"):
        Sinc(2, coil_combination="sense")(dataclasses.replace(batch, sens_maps=None))


def test_meanstd_normalisation_offset_is_removed() -> None:
    batch = _batch("super_resolution", 2, size=(32, 32))
    mean = torch.tensor([0.3, 0.5])
    shifted = dataclasses.replace(batch, norm_mean=mean)  # k-space is not shifted, images are
    offset = (mean / batch.norm_std)[:, None, None, None]
    assert torch.allclose(Sinc(2)(shifted).image, Sinc(2)(batch).image - offset)
    assert torch.allclose(CGSense(2)(shifted).lr_image, CGSense(2)(batch).lr_image - offset, atol=1e-6)


def test_bicubic_sits_on_the_kspace_truncation_grid() -> None:
    from accelmri.models.baselines.interpolation import bicubic_upsample
    from accelmri.physics.degrade import lowres
    from accelmri.physics.fft import fft2c, ifft2c

    low = torch.rand(1, 1, 8, 10)
    up = bicubic_upsample(low, 2)
    assert torch.allclose(up[..., ::2, ::2], low, atol=1e-6)  # LR pixel i is HR pixel 2i (centres coincide)
    # On a smooth image degraded by k-space truncation it beats edge-aligned F.interpolate clearly.
    y, x = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    hr = torch.exp(-((x - 0.2) ** 2 + (y + 0.1) ** 2) / 0.1)[None, None]
    lr = ifft2c(lowres(fft2c(hr), 2)).real
    edge_aligned = torch.nn.functional.interpolate(lr, scale_factor=2, mode="bicubic", align_corners=False)
    assert psnr(bicubic_upsample(lr, 2), hr) > psnr(edge_aligned, hr) + 3


def test_bicubic_model_and_zero_filled_outputs_the_input() -> None:
    batch = joint_batch(4)
    model = Bicubic(4)
    assert list(model.parameters()) == []
    assert torch.equal(model(batch).image, bicubic(batch))
    prediction = ZeroFilled(4)(batch)
    assert torch.equal(prediction.image, bicubic(batch))
    assert prediction.lr_image is batch.lr_input
    assert torch.allclose(ZeroFilled(4, upsample="sinc")(batch).image, Sinc(4)(batch).image)
    with pytest.raises(ValueError, match="upsample"):
        ZeroFilled(2, upsample="nearest")  # type: ignore[arg-type]


# --- CG-SENSE and MoDL -----------------------------------------------------------------------------------------


def test_cg_sense_beats_zero_filled_on_multicoil_data() -> None:
    # 64²: at 48² the 8 birdcage maps of the phantom vary too fast for the 6 × 6 ESPIRiT kernel (CG-SENSE gains
    # 2.0 dB with the calibration rule's 48 × 12 block, 4.4 dB with a 12 × 12 one); at 64² 4.6 and 4.4 dB
    batch = multicoil_batch((64, 64))
    model = CGSense(1)
    assert list(model.parameters()) == []
    prediction = model(batch)
    assert prediction.image.shape == prediction.lr_image.shape == batch.target.shape
    gain = psnr(prediction.image, batch.target) - psnr(ZeroFilled(1)(batch).image, batch.target)
    assert gain > 3
    with pytest.raises(ValueError, match="sens_maps"):
        model(dataclasses.replace(batch, sens_maps=None))


def test_single_coil_cg_sense_is_the_zero_filled_image() -> None:
    # With one coil and C = I, AᴴA = Fᴴ M F is a projection and Aᴴb lies in its range: x = Aᴴb.
    batch = _batch("reconstruction", 1, 3.0, size=(32, 32))
    assert torch.allclose(CGSense(1, l2_weight=0.0)(batch).lr_image, batch.lr_input, atol=1e-5)


def _identity_denoiser(model: MoDL) -> MoDL:
    """Zero the last batch norm's affine parameters: N_w = 0, so D_w is the identity."""
    last_norm = model.denoiser.layers[-1]
    nn.init.zeros_(last_norm.weight)
    nn.init.zeros_(last_norm.bias)
    return model


def _dc_residual(image: torch.Tensor, batch: Sample) -> float:
    """Relative data-consistency residual ‖M F C x − b‖ / ‖b‖ of a complex image (B, h, w)."""
    op = SenseOperator(batch.mask, batch.sens_maps)
    return float((op(image) - batch.kspace).norm() / batch.kspace.norm())


def test_modl_with_identity_denoiser_is_data_consistent() -> None:
    # With D_w = I the MoDL iterations are proximal-point steps on ‖Ax − b‖²: each lowers the data residual, and a
    # small λ with enough CG iterations reaches the measured samples; λ → ∞ keeps x_0 = Aᴴb (zero-filled SENSE).
    batch = multicoil_batch((32, 32))
    op = SenseOperator(batch.mask, batch.sens_maps)
    batch = dataclasses.replace(batch, kspace=op(cg_sense(batch.kspace, batch.mask, batch.sens_maps).x))  # b ∈ range A
    zero_filled = _dc_residual(op.adjoint(batch.kspace), batch)

    def residual(n_iterations: int, lam: float, cg_iterations: int) -> float:
        model = MoDL(n_iterations=n_iterations, channels=4, lambda_init=lam, cg_iterations=cg_iterations)
        with torch.no_grad():
            return _dc_residual(_identity_denoiser(model).eval().reconstruct(batch), batch)

    assert residual(2, 1e-4, 30) < 0.1 * zero_filled
    assert residual(5, 0.05, 10) < 0.6 * residual(1, 0.05, 10) < 0.5 * zero_filled
    assert residual(2, 1e6, 10) == pytest.approx(zero_filled, rel=1e-4)


def test_modl_gradient_through_cg_matches_finite_differences() -> None:
    batch = multicoil_batch((32, 32))
    batch = dataclasses.replace(
        batch, kspace=batch.kspace.to(torch.complex128), sens_maps=batch.sens_maps.to(torch.complex128)
    )
    model = MoDL(n_iterations=2, channels=4, n_layers=3, cg_iterations=4).double().eval()

    def loss() -> torch.Tensor:
        return model.reconstruct(batch).abs().square().mean()

    model.zero_grad()
    loss().backward()
    step = 1e-6
    with torch.no_grad():
        model.lam += step
        upper = float(loss())
        model.lam -= 2 * step
        lower = float(loss())
        model.lam += step
    assert float(model.lam.grad) == pytest.approx((upper - lower) / (2 * step), rel=1e-4)


# --- shapes, parameters, gradients -----------------------------------------------------------------------------

MODELS: dict[str, Callable[[int], nn.Module]] = {
    "bicubic": lambda s: build("bicubic", scale=s),
    "sinc": lambda s: build("sinc", scale=s),
    "zero_filled": lambda s: build("zero_filled", scale=s, upsample="sinc"),
    "cg_sense": lambda s: build("cg_sense", scale=s, upsample="sinc"),
    "edsr": lambda s: build("edsr", scale=s),
    "early_fusion": lambda s: build("early_fusion", scale=s),
    "unet": lambda s: build("unet", scale=s),
    "unet_complex": lambda s: build("unet", scale=s, in_channels=2, channels=8),
    "modl": lambda s: build("modl", scale=s, n_iterations=2, upsample="sinc"),
    "sequential": lambda s: build(
        "sequential", rec={"name": "cg_sense"}, sr={"name": "edsr", "scale": s, "channels": 16, "n_blocks": 2}
    ),
}


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("name", list(MODELS))
def test_output_shapes(name: str, scale: int) -> None:
    batch = joint_batch(scale)
    model = MODELS[name](scale).eval()
    with torch.no_grad():
        prediction = model(batch)
    assert prediction.image.shape == batch.target.shape
    assert prediction.image.dtype == torch.float32
    assert prediction.lr_image is None or prediction.lr_image.shape == batch.lr_input.shape
    assert set(model.required_fields) <= {f.name for f in dataclasses.fields(batch)}


def test_unet_handles_sizes_not_divisible_by_its_pooling() -> None:
    model = UNet(channels=4).eval()
    for size in ((30, 22), (7, 9), (16, 16)):
        assert model.unet(torch.randn(1, 1, *size)).shape == (1, 1, *size)


TRAINABLE: dict[str, Callable[[], nn.Module]] = {
    "edsr": lambda: EDSR(4, channels=8, n_blocks=2),
    "early_fusion": lambda: EarlyFusion(4, channels=8, n_blocks=2),
    "unet": lambda: UNet(4, channels=4, n_pools=2),
    "unet_complex": lambda: UNet(4, in_channels=2, channels=4, n_pools=2),
    "modl": lambda: MoDL(4, n_iterations=2, channels=8, cg_iterations=3),
    "sequential": lambda: Sequential(UNet(channels=4, n_pools=2), EDSR(4, channels=8, n_blocks=1)),
}


@pytest.mark.parametrize("name", list(TRAINABLE))
def test_every_parameter_gets_a_gradient(name: str) -> None:
    batch = joint_batch(4)
    model = TRAINABLE[name]().train()
    prediction = model(batch)
    loss = F.l1_loss(prediction.image, batch.target)
    if prediction.lr_image is not None:
        loss = loss + F.l1_loss(prediction.lr_image, batch.lr_target)
    assert parameters_without_gradient(model, loss) == []


def test_sequential_separate_mode_blocks_the_sr_loss_from_rec() -> None:
    batch = joint_batch(2)
    for mode, rec_gets_gradient in (("separate", False), ("end_to_end", True)):
        model = Sequential(
            {"name": "unet", "channels": 4, "n_pools": 2},
            {"name": "edsr", "scale": 2, "channels": 8, "n_blocks": 1},
            train_mode=mode,  # type: ignore[arg-type]
        )
        no_gradient = set(parameters_without_gradient(model, mse_image(model, batch)))
        rec_names = {f"rec.{name}" for name, _ in model.rec.named_parameters()}
        assert no_gradient == (set() if rec_gets_gradient else rec_names)
    assert model.required_fields == ("lr_input",)
    with pytest.raises(ValueError, match="LR output"):
        Sequential(EDSR(2, channels=4, n_blocks=1), EDSR(2, channels=4, n_blocks=1))(batch)
    with pytest.raises(ValueError, match="train_mode"):
        Sequential({"name": "zero_filled"}, {"name": "bicubic"}, train_mode="joint")  # type: ignore[arg-type]


# --- overfitting one batch -------------------------------------------------------------------------------------


def test_edsr_overfits_beyond_bicubic() -> None:
    batch = _batch("super_resolution", 2, size=(32, 32))
    model = EDSR(2, channels=16, n_blocks=2)
    overfit(model, batch, mse_image, steps=200, lr=2e-3)
    with torch.no_grad():
        assert psnr(model(batch).image, batch.target) > psnr(bicubic(batch), batch.target) + 3


def test_early_fusion_overfits_beyond_bicubic() -> None:
    batch = _batch("super_resolution", 4, size=(32, 32))
    model = EarlyFusion(4, channels=16, n_blocks=2)
    overfit(model, batch, mse_image, steps=200, lr=2e-3)
    with torch.no_grad():
        assert psnr(model(batch).image, batch.target) > psnr(bicubic(batch), batch.target) + 3


def test_unet_overfits_beyond_zero_filled() -> None:
    batch = _batch("reconstruction", 1, 4.0, size=(36, 36))
    model = UNet(channels=8, n_pools=3)
    overfit(model, batch, mse_lr_image, steps=150, lr=2e-3)
    with torch.no_grad():
        assert psnr(model(batch).lr_image, batch.lr_target) > psnr(batch.lr_input, batch.lr_target) + 3


def test_modl_overfits_beyond_zero_filled() -> None:
    batch = multicoil_batch((32, 32))
    model = MoDL(n_iterations=3, channels=16, cg_iterations=5)
    overfit(model, batch, mse_lr_image, steps=150, lr=2e-3)
    with torch.no_grad():
        assert psnr(model(batch).lr_image, batch.lr_target) > psnr(batch.lr_input, batch.lr_target) + 3
