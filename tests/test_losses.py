from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from accelmri.losses import PRESETS, AdversarialLoss, FourierL1, build_loss, discriminator_loss
from accelmri.models.base import Prediction
from accelmri.physics.fft import fft2c
from tests.model_utils import make_batch


@pytest.fixture(scope="module")
def batch():  # type: ignore[no-untyped-def]
    return make_batch("joint", scale=2, acceleration=4, size=(32, 32))


def test_weighted_terms_match_their_formulas(batch) -> None:  # type: ignore[no-untyped-def]
    image = batch.target + 0.1 * torch.randn_like(batch.target)
    lr_image = batch.lr_target + 0.2 * torch.randn_like(batch.lr_target)
    reference_image = batch.reference + 0.3
    prediction = Prediction(image=image, lr_image=lr_image, reference_image=reference_image)
    total, parts = build_loss("t2net")(prediction, batch)
    expected = 0.2 * F.l1_loss(image, batch.target) + 0.8 * F.l1_loss(lr_image, batch.lr_target)
    assert torch.allclose(total, expected)
    assert set(parts) == {"l1", "rec_l1"}
    total, _ = build_loss("sanet")(prediction, batch)
    assert torch.allclose(total, 0.7 * F.l1_loss(image, batch.target) + 0.3 * torch.tensor(0.3), atol=1e-6)
    assert PRESETS["t2net_refcode"] == {"l1": 0.8, "rec_l1": 0.2}


def test_fourier_l1_is_zero_only_for_equal_images_and_matches_formula(batch) -> None:  # type: ignore[no-untyped-def]
    loss = FourierL1()
    assert float(loss(Prediction(image=batch.target.clone()), batch)) == 0.0
    shifted = batch.target + 0.05
    value = loss(Prediction(image=shifted), batch)
    expected = (fft2c(shifted) - fft2c(batch.target)).abs().mean()
    assert torch.allclose(value, expected) and value > 0


def test_missing_outputs_and_unknown_terms_raise(batch) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="lr_image"):
        build_loss({"rec_l1": 1.0})(Prediction(image=batch.target), batch)
    with pytest.raises(KeyError, match="unknown loss terms"):
        build_loss({"lpips": 1.0})
    with pytest.raises(KeyError, match="presets"):
        build_loss("nonexistent")


def test_adversarial_losses_train_both_players(batch) -> None:  # type: ignore[no-untyped-def]
    discriminator = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 1))
    generator_output = (batch.target + 0.1).requires_grad_(True)
    prediction = Prediction(image=generator_output)
    g_loss = build_loss({"adversarial": 1.0}, adversarial={"discriminator": discriminator})(prediction, batch)[0]
    g_loss.backward()
    assert generator_output.grad is not None and generator_output.grad.abs().sum() > 0
    discriminator.zero_grad()
    d_loss = discriminator_loss(discriminator, prediction, batch)
    d_loss.backward()
    assert all(p.grad is not None for p in discriminator.parameters())
    assert not isinstance(AdversarialLoss(discriminator).__dict__.get("_modules", {}).get("_discriminator"), nn.Module)


def test_perceptual_loss_refuses_missing_weights() -> None:
    with pytest.raises(ValueError, match="cannot be downloaded"):
        build_loss({"perceptual": 1.0})


def test_perceptual_loss_with_weights_from_a_file(batch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from accelmri.models.blocks.vgg import VGG19Features

    path = tmp_path / "vgg19.pth"
    torch.save(VGG19Features(layers=("relu2_2",)).state_dict(), path)
    loss = build_loss({"perceptual": 1.0}, perceptual={"weights": path, "layers": ("relu2_2",)})
    assert float(loss(Prediction(image=batch.target.clone()), batch)[0]) == 0.0
    image = (batch.target + 0.2 * torch.randn_like(batch.target)).requires_grad_(True)
    value = loss(Prediction(image=image), batch)[0]
    value.backward()
    assert value > 0 and image.grad is not None
    vgg = loss.modules_["perceptual"].vgg
    assert all(not p.requires_grad for p in vgg.parameters())  # frozen


def test_perceptual_distance_follows_each_paper(batch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from accelmri.models.blocks.vgg import VGG19Features

    path = tmp_path / "vgg19.pth"
    vgg = VGG19Features(layers=("relu2_2",))
    torch.save(vgg.state_dict(), path)
    image = batch.target + 0.3 * torch.randn_like(batch.target)
    features, target = vgg(image)["relu2_2"], vgg(batch.target)["relu2_2"]
    options = {"weights": path, "layers": ("relu2_2",)}
    # paper 002 (FASR-Net), Eq. 23: squared; the fasrnet preset implies it, a config may still override it
    fasrnet = build_loss("fasrnet", perceptual=options)
    _, parts = fasrnet(Prediction(image=image), batch)
    assert torch.allclose(parts["perceptual"], F.mse_loss(features, target), rtol=1e-5)
    override = build_loss("fasrnet", perceptual={**options, "distance": "l1"})
    assert torch.allclose(override(Prediction(image=image), batch)[1]["perceptual"], F.l1_loss(features, target),
                          rtol=1e-5)
    # paper 001, Eq. 8: L1 (the default and the pgd_sft preset's)
    plain = build_loss({"perceptual": 1.0}, perceptual=options)
    assert torch.allclose(plain(Prediction(image=image), batch)[0], F.l1_loss(features, target), rtol=1e-5)
    with pytest.raises(ValueError, match="unknown perceptual distance"):
        build_loss({"perceptual": 1.0}, perceptual={**options, "distance": "l2"})


def test_ssim_loss_is_one_minus_the_fastmri_metric_and_trains() -> None:
    from types import SimpleNamespace

    from skimage.metrics import structural_similarity

    from accelmri.losses import SSIMLoss
    from accelmri.metrics import ssim

    generator = torch.Generator().manual_seed(0)
    ranges = torch.tensor([1.0, 2.0, 0.5]).view(3, 1, 1, 1)
    target = torch.rand(3, 1, 40, 36, generator=generator) * ranges
    image = (target + 0.1 * torch.randn(target.shape, generator=generator)).abs()
    batch = SimpleNamespace(target=target)
    loss = SSIMLoss()
    value = float(loss(Prediction(image=image), batch))  # type: ignore[arg-type]
    # the metric per slice with that slice's own maximum as the range, then the batch mean
    metric = [ssim(t[0].double().numpy(), i[0].double().numpy(), data_range=float(t.max()))
              for t, i in zip(target, image, strict=True)]
    assert abs(value - (1 - sum(metric) / 3)) < 1e-5
    reference = structural_similarity(target[1, 0].double().numpy(), image[1, 0].double().numpy(),
                                      data_range=float(target[1].max()))
    assert abs(metric[1] - reference) < 1e-9
    assert float(loss(Prediction(image=target), batch)) == pytest.approx(0.0, abs=1e-6)  # type: ignore[arg-type]
    # it trains: gradient descent on the image raises the metric
    x = image.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=1e-2)
    for _ in range(30):
        optimizer.zero_grad()
        loss(Prediction(image=x), batch).backward()  # type: ignore[arg-type]
        optimizer.step()
    assert float(loss(Prediction(image=x.detach()), batch)) < 0.5 * value  # type: ignore[arg-type]
    assert "ssim" in build_loss({"ssim": 1.0, "l1": 1.0}).terms
    with pytest.raises(ValueError, match="at least"):
        loss(Prediction(image=image[..., :5, :5]), SimpleNamespace(target=target[..., :5, :5]))  # type: ignore[arg-type]
