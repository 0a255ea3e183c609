"""Joint reconstruction and super-resolution by a PGD deep-equilibrium Rec module and an RRDB-SFT SR module (paper 001).

Paper 001 (Bioengineering 2023, 10, 1107; no public code), Sec. 3.2, Fig. 1:

- **Rec module** (Sec. 3.2.1, Eqs. 3–6), in LR space: proximal gradient descent on ``½‖A x − b‖² + R(x)`` with
  ``A = M F C`` (:class:`~accelmri.physics.operators.SenseOperator`; ``C = I`` single-coil), the proximal operator
  replaced by a network Γ::

      s_k = x_k − η Aᴴ(A x_k − b),   x_{k+1} = Γ(s_k)            (Eq. 6, η trainable)

  run as a deep equilibrium model (Bai et al., "Deep equilibrium models", NeurIPS 2019): the fixed point
  ``x* = Φ(x*)`` of ``Φ(x) = Γ(x − η Aᴴ(A x − b))`` is found without gradient tracking (plain iteration or Anderson
  acceleration), then ONE differentiable application ``Φ(x*)`` gives the output: Jacobian-free back-propagation
  (Fung et al., "JFB: Jacobian-free backpropagation for implicit networks", AAAI 2022), so training memory does not
  depend on the number of iterations. ``x_0 = Aᴴ b`` (SENSE zero-filled; the ``init="cg_sense"`` variant, not in the
  paper, starts from a CG-SENSE solution instead — see :class:`PGDSFT`). Γ is a small RRDB network on the complex
  image as two real channels, ``Γ(s) = s + tail(RRDBs(head(s)))``.
- **Reconstruction feature**: ``|x*|`` → one conv → a feature broadcast to the SFT layer of every SR block.
- **SR module** (Sec. 3.2.2): ESRGAN's RRDBNet layout: conv → ``N`` RRDB-SFT blocks (paper 23) → trunk conv and
  long skip (ESRGAN) → per factor 2: nearest-neighbour ×2 upsampling, conv, LeakyReLU → two convs → image. Its input
  is the undersampled LR image ``lr_input`` (Sec. 3.2: "the SR Module extracts features from the undersampled and
  low-resolution MR image").
- **Discriminator** (Sec. 3.2.3): :class:`VGGDiscriminator`, ESRGAN's VGG-style discriminator.

Ablations (Tables 1–2) are the ``mode`` flag of :class:`PGDSFT`; "Recon-SR" (separately trained) is the sequential
composition of two models and lives in :mod:`accelmri.models.baselines.sequential`.

Units: the Rec module works in the batch's k-space units (``kspace = k / norm_std``); magnitudes are mapped to the
batch's normalised image units with :func:`~accelmri.models.baselines.interpolation.to_batch_units` (the identity
for the default ``"scale"`` normalisation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from accelmri.models.base import GridPadding, Prediction, check_batch
from accelmri.models.baselines.cg_sense import crop_to_target
from accelmri.models.baselines.interpolation import sinc_interpolate, to_batch_units
from accelmri.models.blocks.common import OutputConv, conv
from accelmri.models.blocks.rrdb import RRDB, RRDBSFT
from accelmri.models.registry import register
from accelmri.physics.coils import sense_combine, sense_expand
from accelmri.physics.fft import fft2c, ifft2c
from accelmri.physics.operators import SenseOperator, cg_sense, data_consistency

if TYPE_CHECKING:
    from accelmri.data.sample import Sample

__all__ = ["PGDSFT", "FixedPointResult", "Mode", "ProximalNet", "VGGDiscriminator", "solve_fixed_point"]

Mode = Literal["joint", "sr_only", "recon_only", "no_sft"]
Init = Literal["adjoint", "cg_sense"]

ANDERSON_MEMORY = 5
"""Number of past iterates Anderson acceleration combines (Bai et al. 2019 use 5)."""

ANDERSON_RIDGE = 1e-4
"""Tikhonov weight of Anderson's least-squares problem, relative to the largest diagonal of its Gram matrix."""


@dataclass(frozen=True, eq=False)
class FixedPointResult:
    """Outcome of :func:`solve_fixed_point`.

    Attributes:
        z: the newest evaluation ``f(x_K)``, same shape and dtype as the start point.
        iterations: number ``K`` of evaluations of the map.
        residual: ``(B,)`` relative residual ``‖f(x_K) − x_K‖ / ‖x_K‖`` of the last evaluation, per sample.
    """

    z: torch.Tensor
    iterations: int
    residual: torch.Tensor


def _anderson_step(xs: torch.Tensor, fs: torch.Tensor) -> torch.Tensor:
    """Anderson mixing ``Σᵢ αᵢ f(x_i)`` of iterates ``xs`` and evaluations ``fs`` ``(B, n, d)`` → ``(B, d)``."""
    g = fs - xs
    gram = g @ g.transpose(1, 2)
    ridge = ANDERSON_RIDGE * gram.diagonal(dim1=1, dim2=2).amax(dim=1).clamp_min(torch.finfo(gram.dtype).tiny)
    gram = gram + ridge[:, None, None] * torch.eye(gram.shape[1], dtype=gram.dtype, device=gram.device)
    weights = torch.linalg.solve(gram, gram.new_ones(gram.shape[0], gram.shape[1], 1))
    alpha = weights / weights.sum(dim=1, keepdim=True)
    return (alpha.transpose(1, 2) @ fs)[:, 0]


def solve_fixed_point(
    f: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, max_iter: int, tol: float, anderson: bool = False
) -> FixedPointResult:
    """Find ``z = f(z)`` by plain (Picard) iteration or Anderson acceleration; call it under ``torch.no_grad()``.

    Each step evaluates ``f(x_k)`` and its per-sample relative residual ``r_k = ‖f(x_k) − x_k‖ / ‖x_k‖``; iteration
    stops once ``max_b r_k < tol`` or after ``max_iter`` evaluations and returns the newest evaluation ``f(x_k)``.
    Plain iteration sets ``x_{k+1} = f(x_k)``. Anderson acceleration (type II, Walker & Ni, SIAM J. Numer. Anal.
    2011; the DEQ solver of Bai et al. 2019, with mixing β = 1) sets ``x_{k+1} = Σᵢ αᵢ f(x_i)`` over the last
    ``m = 5`` iterates, with ``α`` minimising ``‖Σᵢ αᵢ (f(x_i) − x_i)‖²`` (plus a small relative ridge) subject to
    ``Σᵢ αᵢ = 1``, solved per sample.

    Args:
        f: the map, ``(B, …) → (B, …)`` real tensors.
        z0: start point ``(B, …)``.
        max_iter: evaluation budget (≥ 1).
        tol: relative residual tolerance (≥ 0; 0 always runs ``max_iter`` evaluations).
        anderson: use Anderson acceleration instead of plain iteration.

    Raises:
        ValueError: if ``max_iter < 1`` or ``tol < 0``.
    """
    if max_iter < 1:
        raise ValueError(f"solve_fixed_point: max_iter must be >= 1, got {max_iter}")
    if tol < 0:
        raise ValueError(f"solve_fixed_point: tol must be >= 0, got {tol}")
    batch = z0.shape[0]
    x = z0.reshape(batch, -1)
    history_x: list[torch.Tensor] = []
    history_f: list[torch.Tensor] = []
    for k in range(1, max_iter + 1):
        fx = f(x.reshape(z0.shape)).reshape(batch, -1)
        residual = (fx - x).norm(dim=1) / x.norm(dim=1).clamp_min(torch.finfo(x.dtype).tiny)
        if float(residual.max()) < tol or k == max_iter:
            break
        if anderson:
            history_x, history_f = [*history_x[1 - ANDERSON_MEMORY :], x], [*history_f[1 - ANDERSON_MEMORY :], fx]
            x = _anderson_step(torch.stack(history_x, dim=1), torch.stack(history_f, dim=1))
        else:
            x = fx
    return FixedPointResult(fx.reshape(z0.shape), k, residual)


class ProximalNet(nn.Module):
    """The learned proximal operator Γ of the Rec module (paper 001, Eq. 6, Fig. 1: "RRDB").

    ``Γ(s) = s + tail(RRDB_n(…RRDB_1(head(s))))``: a 3×3 conv ``2 → C``, ``n`` ESRGAN RRDBs (the paper's
    reference [31], without the SR module's extra skips) and a 3×3 conv ``C → 2``, plus an identity skip so that Γ
    starts near the identity (a residual denoiser, as in MoDL's ``D_w``).

    Args:
        channels: feature channels ``C``.
        growth: dense-block growth channels.
        n_blocks: number of RRDBs.

    Forward: ``(B, 2, h, w)`` real/imaginary float → same.
    """

    def __init__(self, channels: int = 32, growth: int = 16, n_blocks: int = 1) -> None:
        super().__init__()
        self.head = conv(2, channels)
        self.body = nn.Sequential(*(RRDB(channels, growth) for _ in range(n_blocks)))
        self.tail = conv(channels, 2)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return s + self.tail(self.body(self.head(s)))


class _SRModule(nn.Module):
    """ESRGAN RRDBNet with two-skip RRDB(-SFT) blocks: ``(B, 1, h, w) → (B, 1, s·h, s·w)``.

    ``f0 = conv(x)``; ``f = f0 + conv(blocks(f0, cond))`` (ESRGAN's trunk conv and long skip); per factor 2:
    nearest ×2, conv, LeakyReLU(0.2); then the paper's two convs: conv, LeakyReLU(0.2), conv → 1 channel. With
    ``cond_channels = None`` the blocks are plain two-skip RRDBs and ``cond`` must be None.
    """

    def __init__(self, scale: int, channels: int, growth: int, n_blocks: int, cond_channels: int | None) -> None:
        super().__init__()
        self.head = conv(1, channels)
        self.blocks = nn.ModuleList(
            RRDBSFT(channels, growth, cond_channels)
            if cond_channels is not None
            else RRDB(channels, growth, extra_skips=True)
            for _ in range(n_blocks)
        )
        self.trunk = conv(channels, channels)
        self.upsample = nn.ModuleList(conv(channels, channels) for _ in range(scale.bit_length() - 1))
        self.hr_conv = conv(channels, channels)
        self.last = OutputConv(channels, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        feature = self.head(x)
        out = feature
        for block in self.blocks:
            out = block(out) if cond is None else block(out, cond)
        out = feature + self.trunk(out)
        for layer in self.upsample:
            out = F.leaky_relu(layer(F.interpolate(out, scale_factor=2, mode="nearest")), 0.2)
        return self.last(F.leaky_relu(self.hr_conv(out), 0.2))


def _to_channels(x: torch.Tensor) -> torch.Tensor:
    """Complex ``(B, h, w)`` → real ``(B, 2, h, w)`` (real, imaginary)."""
    return torch.stack([x.real, x.imag], dim=1)


def _to_complex(z: torch.Tensor) -> torch.Tensor:
    """Real ``(B, 2, h, w)`` → complex ``(B, h, w)``."""
    return torch.complex(z[:, 0], z[:, 1])


class _Encoding:
    """``A = M F C`` on combined images ``(B, h, w)`` for the batch: SENSE with maps, else single-coil ``C = 1``."""

    def __init__(self, kspace: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor | None) -> None:
        if sens_maps is None and kspace.shape[1] != 1:
            raise ValueError(
                f"pgd_sft: multi-coil k-space ({kspace.shape[1]} coils) needs sens_maps "
                "(SliceDataset(sens_maps='espirit'))"
            )
        self.operator = SenseOperator(mask, sens_maps)
        self.kspace = kspace
        self.mask = mask
        self.sens_maps = sens_maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``A x``: ``(B, h, w)`` complex → ``(B, C, h, w)``."""
        return self.operator.forward(x if self.sens_maps is not None else x[:, None])

    def adjoint(self, k: torch.Tensor) -> torch.Tensor:
        """``Aᴴ k``: ``(B, C, h, w)`` → ``(B, h, w)`` complex."""
        x = self.operator.adjoint(k)
        return x if self.sens_maps is not None else x[:, 0]

    def hard_dc(self, x: torch.Tensor) -> torch.Tensor:
        """Replace the sampled coil k-space of ``x (B, h, w)`` by the measurements, then coil-combine.

        ``Cᴴ Fᴴ [(1 − M) F C x + M b]`` (:func:`~accelmri.physics.operators.data_consistency`, hard). Single-coil
        this is the exact projection onto ``{x : A x = b}``; with maps normalised to ``Σ|S_c|² = 1`` it equals the
        gradient step ``x + Aᴴ(b − A x)`` on the maps' support, which lowers ``‖A x − b‖`` but cannot make it zero
        when ``b`` lies outside the range of ``A`` (estimated maps, noise).
        """
        coil_images = x[:, None] if self.sens_maps is None else sense_expand(x, self.sens_maps)
        coil_images = ifft2c(data_consistency(fft2c(coil_images), self.kspace, self.mask))
        return coil_images[:, 0] if self.sens_maps is None else sense_combine(coil_images, self.sens_maps)


@register("pgd_sft")
class PGDSFT(nn.Module):
    """Joint Rec + SR of paper 001: PGD deep-equilibrium reconstruction feeding an RRDB-SFT SR network via SFT.

    Args:
        scale: SR factor ``s`` (a power of 2: one nearest-neighbour ×2 stage per factor 2); ``1`` only with
            ``mode="recon_only"``: the Rec module as a reconstruction model (task ``reconstruction``, ``R > 1``).
        mode: ``"joint"`` (the proposed model), or an ablation of Tables 1–2: ``"sr_only"`` ("SR": the SR module
            on ``lr_input`` with plain two-skip RRDBs; no Rec module, no k-space), ``"recon_only"`` ("Recon": the
            Rec module alone; ``image`` is the k-space zero-padding (sinc) interpolation of ``x*``, i.e. the
            adjoint of the truncation ``H`` in ``P = M H`` (Eq. 1), since the Rec module has no SR capacity of its
            own; at ``scale = 1`` it is ``|x*|`` itself), ``"no_sft"`` ("Recon+SR": Rec and SR trained end to end
            in series: ``|x*|`` is the SR module's input, its blocks are plain two-skip RRDBs without SFT).
        channels: SR feature channels (paper 64).
        growth: SR dense-block growth channels (paper 32).
        n_blocks: number of RRDB(-SFT) blocks (paper 23).
        cond_channels: channels of the reconstruction feature (the SFT condition); not given by the paper, 32
            as SFTGAN's condition.
        prox_channels: feature channels of Γ (:class:`ProximalNet`); not given by the paper.
        prox_growth: dense-block growth channels of Γ; not given by the paper.
        prox_blocks: number of RRDBs of Γ; not given by the paper.
        max_iter: fixed-point evaluation budget of the DEQ forward solve.
        tol: relative residual tolerance of the DEQ forward solve (0 runs ``max_iter`` evaluations).
        anderson: Anderson acceleration of the forward solve (else plain iteration).
        hard_dc: apply hard data consistency after Γ in every iteration (:meth:`_Encoding.hard_dc`).
        step_size: initial η (trainable; with ``‖A‖ ≤ 1`` any ``0 < η < 2`` makes the gradient step
            non-expansive; single-coil ``η = 1`` is exactly hard data consistency).
        init: the fixed-point iteration's start: ``"adjoint"`` — ``x_0 = Aᴴ b`` (the paper) — or ``"cg_sense"`` —
            ``x_0`` = CG-SENSE, ``(AᴴA + λI) x = Aᴴ b`` by ``init_iterations`` conjugate-gradient steps (Pruessmann et
            al. 2001), no gradient (not in the paper: with the few iterations JFB training affords, Φ acts as an
            unrolled network and its start matters; the classical solution unfolds the coil aliasing first).
        init_iterations: CG steps of that start.
        init_l2_weight: Tikhonov ``λ`` (normalised k-space units) of that start.

    Forward: batch fields ``lr_input (B, 1, h, w)``, ``kspace (B, C, h, w)`` complex64, ``mask (B, 1, h, w)``,
    ``sens_maps (B, C, h, w)`` complex64 or None (single-coil) → ``Prediction(image (B, 1, s·h, s·w),
    lr_image = |x*| (B, 1, h, w) or None in "sr_only", extras {"deq_iterations": () int64 no-grad evaluations of
    Φ, "deq_residual": (B,) float32 relative residual of the last one}, complex_image = x* (B, h, w) complex64 in
    the batch's k-space units; None in "sr_only")``; all images in normalised batch units. A k-space grid larger
    than the target's (``data.protocol: fastmri``) is cropped to it for the images
    (:func:`~accelmri.models.baselines.cg_sense.crop_to_target`), not for ``complex_image``.

    Raises:
        ValueError: bad ``scale`` (scale 1 outside ``"recon_only"``), ``mode`` or solver settings; at forward,
            missing batch fields or multi-coil k-space without ``sens_maps``.
    """

    def __init__(
        self,
        scale: int = 2,
        mode: Mode = "joint",
        channels: int = 64,
        growth: int = 32,
        n_blocks: int = 23,
        cond_channels: int = 32,
        prox_channels: int = 32,
        prox_growth: int = 16,
        prox_blocks: int = 1,
        max_iter: int = 30,
        tol: float = 1e-3,
        anderson: bool = False,
        hard_dc: bool = False,
        step_size: float = 1.0,
        init: Init = "adjoint",
        init_iterations: int = 30,
        init_l2_weight: float = 0.01,
    ) -> None:
        super().__init__()
        if init not in get_args(Init):
            raise ValueError(f"pgd_sft: init must be one of {get_args(Init)}, got {init!r}")
        if init_iterations < 1 or init_l2_weight < 0:
            raise ValueError(f"pgd_sft: need init_iterations >= 1 and init_l2_weight >= 0, got {init_iterations}, "
                             f"{init_l2_weight}")
        self.init, self.init_iterations, self.init_l2_weight = init, init_iterations, init_l2_weight
        if mode not in get_args(Mode):
            raise ValueError(f"pgd_sft: mode must be one of {get_args(Mode)}, got {mode!r}")
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1 or scale & (scale - 1):
            raise ValueError(f"pgd_sft: scale must be a power of 2 (>= 2), got {scale!r}")
        if scale == 1 and mode != "recon_only":
            raise ValueError(f"pgd_sft: scale 1 (task reconstruction) is the Rec module alone: mode 'recon_only', "
                             f"got mode {mode!r}")
        if max_iter < 1 or tol < 0:
            raise ValueError(f"pgd_sft: need max_iter >= 1 and tol >= 0, got max_iter={max_iter}, tol={tol}")
        self.scale = scale
        self.mode = mode
        self.max_iter = max_iter
        self.tol = tol
        self.anderson = anderson
        self.hard_dc = hard_dc
        self.step_size: nn.Parameter | None = None
        self.prox: nn.Module | None = None
        self.condition: nn.Conv2d | None = None
        self.sr: _SRModule | None = None
        if mode != "sr_only":
            self.step_size = nn.Parameter(torch.tensor(float(step_size)))
            self.prox = ProximalNet(prox_channels, prox_growth, prox_blocks)
        if mode == "joint":
            self.condition = conv(1, cond_channels)
        if mode != "recon_only":
            self.sr = _SRModule(scale, channels, growth, n_blocks, cond_channels if mode == "joint" else None)
        self.complex_output = mode != "sr_only"  # Prediction.complex_image = x* (the Rec module's fixed point)
        fields = {"joint": ("lr_input", "kspace", "mask"), "sr_only": ("lr_input",)}
        self.required_fields: tuple[str, ...] = fields.get(mode, ("kspace", "mask"))

    def reconstruct(self, batch: Sample) -> tuple[torch.Tensor, int, torch.Tensor]:
        """The Rec module: DEQ fixed point of ``Φ(x) = Γ(x − η Aᴴ(A x − b))`` (with hard DC if enabled).

        Returns:
            ``(x*, iterations, residual)``: ``x* = Φ(x_K)`` complex64 ``(B, h, w)`` in k-space units, differentiable
            through this last application only (JFB); the number ``K`` of no-grad evaluations of Φ; the ``(B,)``
            relative residual of the last one.

        Raises:
            ValueError: in ``"sr_only"`` mode, or multi-coil k-space without ``sens_maps``.
        """
        if self.prox is None or self.step_size is None:
            raise ValueError("pgd_sft: mode 'sr_only' has no Rec module")
        check_batch("pgd_sft", ("kspace", "mask"), batch)
        encoding = _Encoding(batch.kspace, batch.mask, batch.sens_maps)
        prox, step_size = self.prox, self.step_size

        def phi(z: torch.Tensor) -> torch.Tensor:
            x = _to_complex(z)
            s = z - step_size * _to_channels(encoding.adjoint(encoding.forward(x) - batch.kspace))
            out = prox(s)
            return _to_channels(encoding.hard_dc(_to_complex(out))) if self.hard_dc else out

        if self.init == "cg_sense":
            with torch.no_grad():
                multicoil = batch.sens_maps is not None
                start = cg_sense(batch.kspace if multicoil else batch.kspace[:, 0],
                                 batch.mask if multicoil else batch.mask[:, 0], batch.sens_maps,
                                 self.init_l2_weight, self.init_iterations).x
            z0 = _to_channels(start)
        else:
            z0 = _to_channels(encoding.adjoint(batch.kspace))
        with torch.no_grad():
            result = solve_fixed_point(phi, z0, self.max_iter, self.tol, self.anderson)
        return _to_complex(phi(result.z.detach())), result.iterations, result.residual

    def forward(self, batch: Sample) -> Prediction:
        """SR image ``(B, 1, s·h, s·w)``, Rec image ``|x*| (B, 1, h, w)`` and DEQ statistics (see the class doc)."""
        check_batch("pgd_sft", self.required_fields, batch)
        grid = GridPadding.for_size(batch.lr_input.shape[-2:], self.scale)  # the SR module on the truncation grid
        if self.prox is None and self.sr is not None:  # "sr_only": no Rec module
            return Prediction(image=grid.crop_hr(self.sr(grid.pad_lr(batch.lr_input), None)))
        x, iterations, residual = self.reconstruct(batch)
        shown = crop_to_target(x, batch, self.scale)  # a k-space grid larger than the target's: fastMRI's crop
        lr_image = to_batch_units(shown.abs()[:, None], batch)
        extras = {"deq_iterations": torch.tensor(iterations, device=x.device), "deq_residual": residual.float()}
        if self.sr is None:  # "recon_only": sinc interpolation of x* (scale 1: |x*| itself)
            image = lr_image if self.scale == 1 else to_batch_units(
                sinc_interpolate(shown, self.scale).abs()[:, None], batch)
        elif self.condition is None:
            image = grid.crop_hr(self.sr(grid.pad_lr(lr_image), None))
        else:
            image = grid.crop_hr(self.sr(grid.pad_lr(batch.lr_input), self.condition(grid.pad_lr(lr_image))))
        return Prediction(image=image, lr_image=lr_image, extras=extras, complex_image=x)


@register("vgg_discriminator")
class VGGDiscriminator(nn.Module):
    """ESRGAN's VGG-style discriminator (paper 001, Sec. 3.2.3, Eqs. 10–11): ``(B, 1, H, W) → logits (B, 1)``.

    Five stages with 64, 128, 256, 512, 512 channels, each a 3×3 conv (stride 1) and a 4×4 conv (stride 2), every
    conv followed by BatchNorm (except the first) and LeakyReLU(0.2); adaptive average pooling to 4×4 (ESRGAN's
    128-pixel layout), then linear ``512·16 → 100``, LeakyReLU(0.2), linear ``100 → 1``. Any input of at least
    32×32 works (at 32×32 the last stage is 1×1, so training-mode BatchNorm needs a batch of ≥ 2). The logit is
    ``log D / (1 − D)``: use ``BCEWithLogits`` for Eqs. 10–11.

    Args:
        in_channels: image channels (1: magnitude).
        channels: channels of the first stage (doubling up to 8×, paper/ESRGAN 64).
    """

    def __init__(self, in_channels: int = 1, channels: int = 64) -> None:
        super().__init__()
        widths = [channels, 2 * channels, 4 * channels, 8 * channels, 8 * channels]
        layers: list[nn.Module] = []
        previous = in_channels
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(previous, width, 3, padding=1, bias=i == 0)]
            layers += [nn.LeakyReLU(0.2)] if i == 0 else [nn.BatchNorm2d(width), nn.LeakyReLU(0.2)]
            layers += [nn.Conv2d(width, width, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(width)]
            layers += [nn.LeakyReLU(0.2)]
            previous = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4))
        self.classifier = nn.Sequential(nn.Linear(previous * 16, 100), nn.LeakyReLU(0.2), nn.Linear(100, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``image (B, 1, H, W)`` float, ``H, W ≥ 32`` → logits ``(B, 1)``.

        Raises:
            ValueError: if the image is smaller than 32×32.
        """
        if min(image.shape[-2:]) < 32:
            raise ValueError(f"vgg_discriminator: images must be at least 32x32, got {tuple(image.shape[-2:])}")
        return self.classifier(self.features(image).flatten(1))
