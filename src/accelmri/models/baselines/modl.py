"""MoDL: model-based deep learning reconstruction (Aggarwal, Mani & Jacob, "MoDL: Model-based deep learning
architecture for inverse problems", IEEE TMI 2019), a reconstruction baseline of paper 001 (Tables 3–4).

MoDL alternates, for ``K`` unrolled iterations with weights shared across iterations (paper Sec. II-C, Fig. 1):

- denoising ``z_k = D_w(x_k)``, a residual CNN on the complex image as 2 real channels: five 3×3 conv layers
  (64 channels) each followed by batch norm, ReLU after all but the last, and ``D_w(x) = x + N_w(x)``
  (paper Sec. III-A; the residual learns the alias/noise pattern);
- data consistency ``x_{k+1} = argmin_x ‖A x − b‖² + λ‖x − z_k‖²``, i.e. ``(AᴴA + λI) x = Aᴴb + λ z_k`` with
  ``A = M F C``, solved by conjugate gradients (paper Eq. 11–12) with a trainable ``λ``.

``x_0 = Aᴴb`` (the SENSE-combined zero-filled image). Gradients are back-propagated through the unrolled CG
iterations (:func:`accelmri.physics.operators.conjugate_gradient` uses plain differentiable tensor operations; its
stopping test is a Python float and carries no gradient), as in the paper's Sec. II-D.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import torch
from torch import nn

from accelmri.models.base import Prediction, check_batch
from accelmri.models.baselines.cg_sense import coil_maps, crop_to_target
from accelmri.models.baselines.interpolation import (
    Upsample,
    check_scale,
    check_upsample,
    to_batch_units,
    upsample_complex,
)
from accelmri.models.registry import register
from accelmri.physics.operators import SenseOperator, conjugate_gradient

if TYPE_CHECKING:
    from accelmri.data.sample import Sample

__all__ = ["MoDL", "MoDLDenoiser"]


class MoDLDenoiser(nn.Module):
    """The MoDL denoiser ``D_w(x) = x + N_w(x)`` on complex images ``(B, h, w)`` → ``(B, h, w)``.

    ``N_w``: ``n_layers`` 3×3 convolutions without bias (2 → C → … → C → 2 channels, real and imaginary), each
    followed by batch norm, ReLU after all but the last.

    Raises:
        ValueError: ``n_layers < 2``.
    """

    def __init__(self, channels: int = 64, n_layers: int = 5) -> None:
        super().__init__()
        if n_layers < 2:
            raise ValueError(f"MoDL denoiser needs at least 2 layers, got {n_layers}")
        widths = [2] + [channels] * (n_layers - 1) + [2]
        layers: list[nn.Module] = []
        for index, (in_width, out_width) in enumerate(itertools.pairwise(widths)):
            layers += [nn.Conv2d(in_width, out_width, 3, padding=1, bias=False), nn.BatchNorm2d(out_width)]
            if index < n_layers - 1:
                layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        channels = torch.view_as_real(image).permute(0, 3, 1, 2)
        residual = self.layers(channels).permute(0, 2, 3, 1).contiguous()
        return image + torch.view_as_complex(residual)


@register("modl")
class MoDL(nn.Module):
    """MoDL on the measured LR k-space; outputs ``lr_image (B, 1, h, w)`` and ``image (B, 1, s·h, s·w)``.

    Reads ``kspace (B, C, h, w)`` complex, ``mask (B, 1, h, w)`` and ``sens_maps (B, C, h, w)`` (optional for
    single-coil data). Outputs are magnitudes in the batch's normalised units (and ``complex_image``, the complex
    ``x_K (B, h, w)`` on the k-space grid in k-space units), cropped to the target's grid where the
    k-space grid is larger (``data.protocol: fastmri``, :func:`~accelmri.models.baselines.cg_sense.crop_to_target`);
    with ``scale > 1`` the complex LR reconstruction is upsampled (a "MoDL × bicubic" baseline, paper 001).
    Defaults (10 iterations, 5 layers × 64 channels, 10 CG iterations, ``λ₀ = 0.05`` as in the paper's code):
    113,413 parameters.

    Args:
        scale: SR scale ``s`` of the upsampling after reconstruction (1 for reconstruction).
        n_iterations: unrolled iterations ``K``.
        channels: denoiser channels.
        n_layers: denoiser conv layers.
        lambda_init: initial ``λ`` (trainable; it enters as ``|λ|`` so the CG system stays positive definite).
        cg_iterations: CG iterations per data-consistency step.
        upsample: ``"bicubic"`` (magnitude) or ``"sinc"`` (complex k-space zero-padding).

    Raises:
        ValueError: bad ``scale``, ``upsample``, ``n_iterations`` or ``cg_iterations``.
    """

    required_fields: tuple[str, ...] = ("kspace", "mask")
    complex_output = True  # Prediction.complex_image = x_K on the k-space grid

    def __init__(
        self,
        scale: int = 1,
        n_iterations: int = 10,
        channels: int = 64,
        n_layers: int = 5,
        lambda_init: float = 0.05,
        cg_iterations: int = 10,
        upsample: Upsample = "bicubic",
    ) -> None:
        super().__init__()
        check_scale(scale)
        check_upsample(upsample)
        if n_iterations < 1 or cg_iterations < 1:
            raise ValueError(
                f"MoDL needs n_iterations >= 1 and cg_iterations >= 1, got {n_iterations}, {cg_iterations}"
            )
        self.scale = scale
        self.n_iterations = n_iterations
        self.cg_iterations = cg_iterations
        self.upsample = upsample
        self.denoiser = MoDLDenoiser(channels, n_layers)
        self.lam = nn.Parameter(torch.tensor(float(lambda_init)))

    def reconstruct(self, batch: Sample) -> torch.Tensor:
        """The complex MoDL image ``x_K`` ``(B, h, w)`` in the batch's k-space units (``norm_std`` divided)."""
        check_batch("modl", self.required_fields, batch)
        op = SenseOperator(batch.mask, coil_maps(batch, "modl"))
        lam = self.lam.abs()

        def normal(image: torch.Tensor) -> torch.Tensor:
            return op.normal(image) + lam * image

        adjoint = op.adjoint(batch.kspace)
        x = adjoint
        for _ in range(self.n_iterations):
            x = conjugate_gradient(normal, adjoint + lam * self.denoiser(x), max_iter=self.cg_iterations).x
        return x

    def forward(self, batch: Sample) -> Prediction:
        x = self.reconstruct(batch)
        image = crop_to_target(x, batch, self.scale)
        return Prediction(
            image=upsample_complex(image, self.scale, self.upsample, batch),
            lr_image=to_batch_units(image.abs()[:, None], batch),
            complex_image=x,
        )
