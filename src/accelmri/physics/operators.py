"""The SENSE forward model, data consistency and the conjugate-gradient SENSE solver.

Forward model (Pruessmann et al., "SENSE: sensitivity encoding for fast MRI", MRM 1999; in the
notation of paper 001, Sec. 2): ``b = A x + n`` with ``A = M F C``, where ``C`` multiplies the
image by the coil sensitivity maps, ``F`` is the centered orthonormal 2-D FFT (:func:`fft2c`)
and ``M`` the binary sampling mask. Single-coil data are the special case ``C = I``.

Shapes: image ``(..., H, W)`` complex; k-space ``(..., C, H, W)`` complex with sensitivity maps,
``(..., H, W)`` without; mask ``(H, W)`` or anything broadcastable to the k-space.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from accelmri.physics.coils import sense_combine, sense_expand
from accelmri.physics.fft import fft2c, ifft2c

__all__ = ["CGResult", "SenseOperator", "cg_sense", "conjugate_gradient", "data_consistency"]


class SenseOperator:
    """The multi-coil (or single-coil) MRI encoding operator ``A = M F C`` and its adjoint.

    Args:
        mask: sampling mask (0/1, real), shape ``(H, W)`` or broadcastable to the k-space
            ``(..., C, H, W)``; a non-binary mask is refused because ``A`` would not be a projection.
        sens_maps: complex coil sensitivities ``(..., C, H, W)``, or ``None`` for single-coil data.

    Raises:
        TypeError: if ``sens_maps`` is real.
        ValueError: if the mask is not binary or the mask and maps disagree in spatial size.
    """

    def __init__(self, mask: torch.Tensor, sens_maps: torch.Tensor | None = None) -> None:
        if mask.is_complex():
            raise TypeError("SenseOperator: mask must be real (0/1), got a complex tensor")
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("SenseOperator: mask must be binary (0/1)")
        if sens_maps is not None:
            if not sens_maps.is_complex():
                raise TypeError(f"SenseOperator: sens_maps must be complex, got {sens_maps.dtype}")
            try:
                torch.broadcast_shapes(mask.shape[-2:], sens_maps.shape[-2:])
            except RuntimeError as err:
                raise ValueError(
                    f"SenseOperator: mask {tuple(mask.shape)} and sens_maps {tuple(sens_maps.shape)} "
                    "disagree in spatial size"
                ) from err
        self.mask = mask
        self.sens_maps = sens_maps

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``A x``: image ``(..., H, W)`` complex → measured k-space ``(..., C, H, W)`` (or ``(..., H, W)``)."""
        coil_images = image if self.sens_maps is None else sense_expand(image, self.sens_maps)
        return self.mask * fft2c(coil_images)

    def adjoint(self, kspace: torch.Tensor) -> torch.Tensor:
        """``Aᴴ y``: k-space ``(..., C, H, W)`` (or ``(..., H, W)``) → image ``(..., H, W)`` complex."""
        coil_images = ifft2c(self.mask * kspace)
        return coil_images if self.sens_maps is None else sense_combine(coil_images, self.sens_maps)

    def normal(self, image: torch.Tensor) -> torch.Tensor:
        """``Aᴴ A x`` (uses ``Mᴴ M = M`` for a binary mask): image ``(..., H, W)`` → image ``(..., H, W)``."""
        return self.adjoint(self.forward(image))

    __call__ = forward


def data_consistency(
    kspace: torch.Tensor,
    measured: torch.Tensor,
    mask: torch.Tensor,
    noise_weight: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Enforce consistency of predicted k-space with the measured samples.

    Hard (``noise_weight=None``, noiseless data): sampled locations are replaced by the
    measurements, ``k_dc = (1 − M)·k + M·y``. Soft (``noise_weight = λ ≥ 0``, noisy data): the
    closed-form minimiser of ``‖k_dc − k‖² + (1/λ)‖M k_dc − y‖²``, ``k_dc = (1 − M)·k +
    M·(k + λ y)/(1 + λ)`` (Schlemper et al., "A deep cascade of CNNs for dynamic MR image
    reconstruction", IEEE TMI 2018, Eq. 5); ``λ → ∞`` recovers the hard projection, ``λ = 0`` leaves
    ``k`` unchanged. ``λ`` may be a (trainable) tensor broadcastable to the k-space.

    Args:
        kspace: predicted k-space ``(..., H, W)`` complex (any coil/batch dims).
        measured: measured k-space, same shape, zero at unsampled locations.
        mask: 0/1 mask broadcastable to ``kspace`` (e.g. ``(H, W)``).
        noise_weight: ``None`` for hard DC, else ``λ ≥ 0``.

    Returns:
        Data-consistent k-space, same shape and dtype as ``kspace``.

    Raises:
        ValueError: on shape mismatch or a negative ``noise_weight``.
    """
    if kspace.shape != measured.shape:
        raise ValueError(
            f"data_consistency: kspace {tuple(kspace.shape)} and measured {tuple(measured.shape)} differ in shape"
        )
    if noise_weight is None:
        return torch.where(mask.bool(), measured, kspace)
    if isinstance(noise_weight, (int, float)) and noise_weight < 0:
        raise ValueError(f"data_consistency: noise_weight must be >= 0, got {noise_weight}")
    blended = (kspace + noise_weight * measured) / (1 + noise_weight)
    return (1 - mask) * kspace + mask * blended


@dataclass(frozen=True)
class CGResult:
    """Solution and convergence record of :func:`conjugate_gradient`.

    Attributes:
        x: the solution, same shape as the right-hand side.
        iterations: number of CG iterations run.
        residual_norms: relative residual ``‖r_k‖ / ‖b‖`` (max over the batch) after each iteration.
    """

    x: torch.Tensor
    iterations: int
    residual_norms: tuple[float, ...]


def _batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Σ conj(a)·b`` over the last two dims, keeping batch dims: ``(..., H, W) → (..., 1, 1)``."""
    return (a.conj() * b).sum(dim=(-2, -1), keepdim=True)


def conjugate_gradient(
    normal_op: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    x0: torch.Tensor | None = None,
    max_iter: int = 50,
    tol: float = 1e-6,
) -> CGResult:
    """Batched conjugate gradient for a Hermitian positive (semi-)definite operator.

    Each image in the batch (all dims but the last two) is solved independently; iteration stops
    when every relative residual is below ``tol`` or after ``max_iter`` iterations (Hestenes &
    Stiefel 1952; Shewchuk, "An introduction to the conjugate gradient method without the agonizing
    pain", 1994, Alg. B2).

    Args:
        normal_op: ``x ↦ (AᴴA + λI) x`` on ``(..., H, W)`` complex tensors.
        rhs: ``Aᴴ b``, ``(..., H, W)`` complex.
        x0: initial guess (default zeros), same shape as ``rhs``.
        max_iter: iteration budget (≥ 1).
        tol: relative residual tolerance (> 0).

    Returns:
        :class:`CGResult`.

    Raises:
        ValueError: if ``max_iter < 1`` or ``tol <= 0``.
    """
    if max_iter < 1:
        raise ValueError(f"conjugate_gradient: max_iter must be >= 1, got {max_iter}")
    if tol <= 0:
        raise ValueError(f"conjugate_gradient: tol must be > 0, got {tol}")
    x = torch.zeros_like(rhs) if x0 is None else x0.clone()
    r = rhs - normal_op(x) if x0 is not None else rhs.clone()
    p = r.clone()
    rs_old = _batch_dot(r, r).real
    b_norm = _batch_dot(rhs, rhs).real.sqrt().clamp_min(torch.finfo(rs_old.dtype).tiny)
    history: list[float] = []
    for _ in range(max_iter):
        ap = normal_op(p)
        denom = _batch_dot(p, ap).real
        alpha = torch.where(denom > 0, rs_old / denom.clamp_min(torch.finfo(denom.dtype).tiny), 0)
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = _batch_dot(r, r).real
        rel = float((rs_new.sqrt() / b_norm).max().detach())
        history.append(rel)
        if rel < tol:
            break
        beta = torch.where(rs_old > 0, rs_new / rs_old.clamp_min(torch.finfo(rs_old.dtype).tiny), 0)
        p = r + beta * p
        rs_old = rs_new
    return CGResult(x=x, iterations=len(history), residual_norms=tuple(history))


def cg_sense(
    kspace: torch.Tensor,
    mask: torch.Tensor,
    sens_maps: torch.Tensor | None = None,
    l2_weight: float = 0.0,
    max_iter: int = 50,
    tol: float = 1e-6,
) -> CGResult:
    """CG-SENSE reconstruction: solve ``(AᴴA + λI) x = Aᴴ b`` with ``A = M F C``.

    Pruessmann et al., "Advances in sensitivity encoding with arbitrary k-space trajectories",
    MRM 2001 (CG-SENSE); the classical baseline of paper 001 (Tables 3–4). ``λ = l2_weight`` is a
    Tikhonov regulariser that keeps the solution finite where the maps vanish.

    Args:
        kspace: measured k-space ``(..., C, H, W)`` complex (``(..., H, W)`` if ``sens_maps`` is None),
            zero at unsampled locations.
        mask: 0/1 sampling mask broadcastable to ``kspace``, e.g. ``(H, W)``.
        sens_maps: ``(..., C, H, W)`` complex sensitivities, or ``None`` for single coil.
        l2_weight: ``λ ≥ 0``.
        max_iter: CG iteration budget.
        tol: relative residual tolerance.

    Returns:
        :class:`CGResult` whose ``x`` is the complex image ``(..., H, W)``.

    Raises:
        ValueError: on a negative ``l2_weight`` or bad CG settings; errors of :class:`SenseOperator`.
    """
    if l2_weight < 0:
        raise ValueError(f"cg_sense: l2_weight must be >= 0, got {l2_weight}")
    op = SenseOperator(mask, sens_maps)

    def normal(x: torch.Tensor) -> torch.Tensor:
        return op.normal(x) + l2_weight * x if l2_weight else op.normal(x)

    return conjugate_gradient(normal, op.adjoint(kspace), max_iter=max_iter, tol=tol)
