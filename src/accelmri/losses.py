"""Training losses of the five papers, each a callable ``(prediction, batch) -> scalar``.

Terms (registered by name in :data:`LOSSES`, combined with weights by :func:`build_loss`):

===============  ==========================================================================================
``l1``           L1(image, target)
``rec_l1``       L1(lr_image, lr_target) — the reconstruction branch (T2Net Rec, paper 001's L1(Rec))
``reference_l1`` L1(reference_image, reference) — MINet/SANet's auxiliary reconstruction of the reference
``fourier``      mean |F(image) − F(target)| of the centered orthonormal spectra (FASR-Net, paper 002, Sec. II-D)
``ssim``         1 − SSIM(image, target), fastMRI's definition (7×7 uniform window, K1/K2, N/(N−1)); the metric's twin
``perceptual``   L1 (paper 001, Eq. 8) or squared (paper 002, Eq. 23) distance between VGG19 features of image
                 and target; weights from a local file
``adversarial``  generator side of a GAN with a discriminator (paper 001, 5e-3 weight); see :func:`discriminator_loss`
===============  ==========================================================================================

Paper presets (:data:`PRESETS`): T2Net 0.2·L1(SR) + 0.8·L1(Rec) (paper) and the reference code's 0.8/0.2;
MINet 0.3·L1(target) + 0.7·L1(reference) (paper and code); SANet α = 0.7 on the target (paper); FASR-Net
L1 + perceptual (squared feature distance, Eq. 23) + Fourier; paper 001: perceptual (L1 feature distance,
Eq. 8) + 1e-2·L1 + 1·L1(Rec) + 5e-3·adversarial. Both perceptual terms use VGG19 ``relu5_4`` (ESRGAN's layer,
which paper 001 builds on; paper 002 names no layer).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from accelmri.models.base import Prediction
from accelmri.models.blocks.vgg import VGG19Features
from accelmri.physics.fft import fft2c

if TYPE_CHECKING:
    from accelmri.data.sample import Sample

__all__ = [
    "LOSSES",
    "PRESETS",
    "PRESET_OPTIONS",
    "AdversarialLoss",
    "CompositeLoss",
    "FourierL1",
    "PerceptualLoss",
    "SSIMLoss",
    "build_loss",
    "discriminator_loss",
]

LossTerm = Callable[[Prediction, "Sample"], torch.Tensor]


def _require(value: torch.Tensor | None, what: str, term: str) -> torch.Tensor:
    if value is None:
        raise ValueError(f"loss term '{term}' needs {what}, which is None")
    return value


def l1(prediction: Prediction, batch: Sample) -> torch.Tensor:
    """L1(image, target)."""
    return F.l1_loss(prediction.image, batch.target)


def rec_l1(prediction: Prediction, batch: Sample) -> torch.Tensor:
    """L1(lr_image, lr_target): the reconstruction branch against the fully sampled LR image."""
    return F.l1_loss(_require(prediction.lr_image, "prediction.lr_image", "rec_l1"), batch.lr_target)


def reference_l1(prediction: Prediction, batch: Sample) -> torch.Tensor:
    """L1(reference_image, reference): the auxiliary reconstruction of the reference contrast."""
    predicted = _require(prediction.reference_image, "prediction.reference_image", "reference_l1")
    return F.l1_loss(predicted, _require(batch.reference, "batch.reference", "reference_l1"))


class FourierL1(nn.Module):
    """Mean modulus of the difference of the centered orthonormal 2-D spectra of image and target."""

    def forward(self, prediction: Prediction, batch: Sample) -> torch.Tensor:
        difference = fft2c(prediction.image.float()) - fft2c(batch.target.float())
        return difference.abs().mean()


_DISTANCES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"l1": F.l1_loss, "mse": F.mse_loss}


class SSIMLoss(nn.Module):
    """``1 − SSIM(image, target)`` with fastMRI's SSIM definition, differentiable (Wang et al. 2004; the SSIM of
    ``fastmri/evaluate.py`` = :func:`accelmri.metrics.ssim`, and fastMRI's own training ``SSIMLoss``).

    Per sample ``(1, H, W)``: uniform ``win_size × win_size`` window, ``C1 = (K1·L)²``, ``C2 = (K2·L)²``, sample
    covariance (× N/(N − 1), N = win_size²), the SSIM map over the valid window positions (= skimage's map after
    cropping ``(win_size − 1)/2`` pixels from every side) averaged; then averaged over the batch. The dynamic range
    ``L`` is each sample's target maximum (the metric uses the volume's maximum; on one slice they agree).

    Args:
        win_size: window side (fastMRI 7). k1, k2: SSIM constants (fastMRI 0.01, 0.03).

    Forward: ``prediction.image``, ``batch.target`` ``(B, 1, H, W)`` real float, ``H, W ≥ win_size`` → scalar.

    Raises:
        ValueError: ``win_size`` below 2 (at construction); slices smaller than the window (in forward).
    """

    def __init__(self, win_size: int = 7, k1: float = 0.01, k2: float = 0.03) -> None:
        super().__init__()
        if win_size < 2:
            raise ValueError(f"win_size must be >= 2, got {win_size}")
        self.win_size, self.k1, self.k2 = win_size, k1, k2

    def forward(self, prediction: Prediction, batch: Sample) -> torch.Tensor:
        x, y = batch.target.float(), prediction.image.float()
        if min(x.shape[-2:]) < self.win_size:
            raise ValueError(f"ssim loss needs slices of at least {self.win_size}², got {tuple(x.shape[-2:])}")
        value_range = x.detach().amax(dim=(-3, -2, -1), keepdim=True)
        c1, c2 = (self.k1 * value_range) ** 2, (self.k2 * value_range) ** 2
        n = self.win_size**2

        def mean(t: torch.Tensor) -> torch.Tensor:
            return F.avg_pool2d(t, self.win_size, stride=1)
        ux, uy = mean(x), mean(y)
        vx = n / (n - 1) * (mean(x * x) - ux * ux)
        vy = n / (n - 1) * (mean(y * y) - uy * uy)
        vxy = n / (n - 1) * (mean(x * y) - ux * uy)
        ssim_map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
        return 1 - ssim_map.mean()


class PerceptualLoss(nn.Module):
    """Distance between VGG19 feature maps (frozen) of the image and the target, summed over ``layers``.

    ImageNet weights cannot be downloaded here: pass ``weights`` = a local file in torchvision's key layout
    (``features.N.weight``). A random network is refused unless ``allow_random_weights=True`` (tests only).

    Args:
        weights: path to VGG19 weights.
        layers: VGG19 layer names (default ``relu5_4``, the ESRGAN/paper 001 choice).
        distance: ``"l1"`` — mean absolute difference (paper 001, Eq. 8) — or ``"mse"`` — mean squared
            difference (paper 002, FASR-Net, Eq. 23: "the least-square distance").
        allow_random_weights: permit a randomly initialised VGG (never in a real run).

    Raises:
        ValueError: if ``weights`` is None and random weights are not allowed, or an unknown ``distance``.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        layers: tuple[str, ...] = ("relu5_4",),
        distance: str = "l1",
        allow_random_weights: bool = False,
    ) -> None:
        super().__init__()
        if distance not in _DISTANCES:
            raise ValueError(f"unknown perceptual distance {distance!r}; choose from {', '.join(_DISTANCES)}")
        self.distance = _DISTANCES[distance]
        if weights is None and not allow_random_weights:
            raise ValueError(
                "PerceptualLoss needs VGG19 weights: ImageNet weights cannot be downloaded here; pass "
                "weights=PATH to a torchvision-layout VGG19 state dict"
            )
        self.vgg = VGG19Features(layers=layers, weights=weights, trainable=False)
        self.vgg.eval()

    def forward(self, prediction: Prediction, batch: Sample) -> torch.Tensor:
        predicted, target = self.vgg(prediction.image), self.vgg(batch.target)
        return torch.stack([self.distance(predicted[name], target[name].detach()) for name in predicted]).sum()


class AdversarialLoss(nn.Module):
    """Generator side of a standard GAN (binary cross-entropy with logits): ``BCE(D(image), 1)``.

    The discriminator is trained separately with :func:`discriminator_loss` (two optimisers; paper 001
    Sec. 2.4). The discriminator is held by reference, not registered as a submodule of the loss.
    """

    def __init__(self, discriminator: nn.Module) -> None:
        super().__init__()
        self._discriminator = [discriminator]

    def forward(self, prediction: Prediction, batch: Sample) -> torch.Tensor:
        logits = self._discriminator[0](prediction.image)
        return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def discriminator_loss(discriminator: nn.Module, prediction: Prediction, batch: Sample) -> torch.Tensor:
    """Discriminator loss ``BCE(D(target), 1) + BCE(D(image.detach()), 0)``."""
    real = discriminator(batch.target)
    fake = discriminator(prediction.image.detach())
    return F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(
        fake, torch.zeros_like(fake)
    )


LOSSES: dict[str, Callable[..., LossTerm]] = {
    "l1": lambda: l1,
    "rec_l1": lambda: rec_l1,
    "reference_l1": lambda: reference_l1,
    "fourier": FourierL1,
    "ssim": SSIMLoss,
    "perceptual": PerceptualLoss,
    "adversarial": AdversarialLoss,
}

PRESETS: dict[str, dict[str, float]] = {
    "t2net": {"l1": 0.2, "rec_l1": 0.8},
    "t2net_refcode": {"l1": 0.8, "rec_l1": 0.2},
    "minet": {"l1": 0.3, "reference_l1": 0.7},
    "sanet": {"l1": 0.7, "reference_l1": 0.3},
    "fasrnet": {"l1": 1.0, "perceptual": 1.0, "fourier": 1.0},
    "pgd_sft": {"perceptual": 1.0, "l1": 1e-2, "rec_l1": 1.0, "adversarial": 5e-3},
}

#: Term options a preset implies (a config's own ``loss.options`` override them): FASR-Net's perceptual term is
#: squared (paper 002, Eq. 23), paper 001's L1 (Eq. 8, the default).
PRESET_OPTIONS: dict[str, dict[str, dict[str, Any]]] = {"fasrnet": {"perceptual": {"distance": "mse"}}}


class CompositeLoss(nn.Module):
    """Weighted sum of named terms; ``forward`` returns ``(total, {name: value})``."""

    def __init__(self, terms: Mapping[str, tuple[float, LossTerm]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("CompositeLoss needs at least one term")
        self.weights = {name: float(weight) for name, (weight, _) in terms.items()}
        self.terms = {name: term for name, (_, term) in terms.items()}
        self.modules_ = nn.ModuleDict({name: t for name, t in self.terms.items() if isinstance(t, nn.Module)})

    def forward(self, prediction: Prediction, batch: Sample) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts = {name: term(prediction, batch) for name, term in self.terms.items()}
        total = torch.stack([self.weights[name] * value for name, value in parts.items()]).sum()
        return total, {name: value.detach() for name, value in parts.items()}


def build_loss(weights: Mapping[str, float] | str, **options: Mapping[str, Any]) -> CompositeLoss:
    """Build a :class:`CompositeLoss` from ``{term: weight}`` or a preset name.

    ``options[term]`` gives a term's constructor arguments, e.g.
    ``build_loss("pgd_sft", perceptual={"weights": "vgg19.pth"}, adversarial={"discriminator": d})``; a preset adds
    the options it implies (:data:`PRESET_OPTIONS`) under the given ones.

    Raises:
        KeyError: unknown preset or term (the message lists the valid ones).
    """
    if isinstance(weights, str):
        if weights not in PRESETS:
            raise KeyError(f"unknown loss preset {weights!r}; presets: {', '.join(sorted(PRESETS))}")
        implied = PRESET_OPTIONS.get(weights, {})
        options = {name: {**implied.get(name, {}), **options.get(name, {})} for name in {*implied, *options}}
        weights = PRESETS[weights]
    unknown = [name for name in weights if name not in LOSSES]
    if unknown:
        raise KeyError(f"unknown loss terms {unknown}; terms: {', '.join(LOSSES)}")
    return CompositeLoss(
        {name: (weight, LOSSES[name](**dict(options.get(name, {})))) for name, weight in weights.items()}
    )
