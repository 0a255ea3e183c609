"""Scan-specific adaptation: zero-shot self-supervised fine-tuning of a trained model on the scan it restores.

After "Zero-Shot" Super-Resolution using Deep Internal Learning (ZSSR; A. Shocher, N. Cohen, M. Irani, CVPR 2018):
the scan itself is degraded once more by the known acquisition, and a copy of the model is trained to undo that
degradation before it restores the scan. Only the input is used, never a ground truth.

Training pairs (task ``super_resolution``, scale ``s``), built from the samples the model is about to restore
(:func:`adapt_to_scan`):

* **target**: the acquired image — exactly what the model receives (``lr_input``), on the acquired LR grid
  ``h × w``, as the acquired k-space ``kspace · norm_std`` (all coils; super-resolution acquires every LR sample).
* **input**: the target degraded by the checkpoint's own :class:`~accelmri.physics.degrade.Acquisition`
  (``data.acquisition.to_acquisition()``: k-space truncation by the same ``s``, its noise), giving an
  ``h/s × w/s`` image; sizes not divisible by ``s`` are centre-cropped to the largest that are.
* **reference** (reference-guided models): the reference on the acquired grid ``s·h × s·w``, truncated by ``s``
  in k-space the same way (:func:`~accelmri.physics.degrade.lowres`), so it lies on the adaptation target grid
  ``h × w`` and the reference-to-target scale ratio of inference is kept.

The pairs are made by :class:`~accelmri.data.datasets.SliceDataset` (``train=True``) on these data: degradation,
normalisation (the statistics of the adaptation input, ``data.normalization``), ESPIRiT maps and random patches
are the dataset's, exactly as in training. Augmentation: the 8 flips/90° rotations (4 when whole non-square slices
are used) are applied to the target and the reference *before* the degradation, so every pair stays on its
k-space truncation grid (flipping an LR/HR pair after the truncation would shift it by ``(s − 1)/2`` HR pixels).
Patches: square, at most :data:`ADAPT_PATCH` target pixels, a multiple of ``s·lcm(2, size_multiple)`` (the
model's ``size_multiple`` attribute, if any; models pad to their grid with
:class:`~accelmri.models.base.GridPadding`); whole slices when the degraded image is smaller than one patch.

Optimisation: a deep copy of the model (the original stays untouched), ``train()`` mode, Adam (the checkpoint's
``betas``, ``eps``, ``weight_decay``, its ``param_lr`` groups scaled alike) at ``lr`` (default
:data:`ADAPT_LR_FACTOR` × the checkpoint's ``optimizer.lr``), batches of :data:`ADAPT_BATCH_SIZE` patches, the
checkpoint's loss without its ``adversarial`` term (L1 when the loss cannot be built or needs what the model does
not give, e.g. perceptual weights that are not on this machine), gradient-norm clipping at ``trainer.grad_clip``,
float32. Random state: ``torch.manual_seed(seed)`` inside a forked generator, so a volume's adaptation is
deterministic and the caller's random state is unchanged.

Reconstruction and joint tasks (undersampled inputs): after zero-shot self-supervision via data undersampling
(ZS-SSDU; B. Yaman, S. A. H. Hosseini, M. Akçakaya, "Zero-Shot Self-Supervised Learning for MRI Reconstruction",
ICLR 2022; loss of SSDU, Yaman et al., MRM 84:3172, 2020, Eq. 9). The acquired k-space ``Ω`` of every slice is
split, never re-simulated:

* the fully sampled centre (the contiguous acquired run through the k-space centre; every row of it for
  phase-encode-line masks) always stays in the input;
* a fixed validation set ``Γ`` (:data:`SSDU_VALIDATION_FRACTION` of the other acquired lines, or points for 2-D
  masks) is held out once per slice;
* every step draws, per slice, a loss set ``Λ`` (:data:`SSDU_LOSS_FRACTION` of the acquired lines outside the
  centre and ``Γ``) uniformly at random; the model gets ``Θ = Ω \\ (Γ ∪ Λ)`` (``kspace``, ``mask`` and the
  zero-filled ``lr_input`` made from ``Θ``; coil maps, reference and normalisation unchanged) and the loss compares
  its complex reconstruction ``x`` (:attr:`~accelmri.models.base.Prediction.complex_image`) with the data on
  ``Λ``: ``‖y_Λ − E_Λ x‖₂ / ‖y_Λ‖₂ + ‖y_Λ − E_Λ x‖₁ / ‖y_Λ‖₁`` with ``E_Λ = M_Λ F C`` (``C``: the batch's coil maps;
  single-coil ``C = 1``), averaged over the batch;
* early stopping (ZS-SSDU): before the first step and every ``max(1, steps // 10)`` steps the model gets ``Ω \\ Γ``
  and is scored by the same loss on ``Γ``, summed over all slices; the weights with the lowest validation loss are
  kept, so the adapted copy is never worse on ``Γ`` than the checkpoint.

Only models that give their complex reconstruction (``complex_output``: PGD-SFT's Rec module, MoDL) can adapt this
way; in joint models the loss reaches the reconstruction (PGD-SFT: Γ and the step size), not the SR part, which
has no measured data beyond the acquired grid. No patches (the k-space loss needs the whole field of view), no
flips. The restored volume then uses all of ``Ω``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from accelmri.data.datasets import SliceDataset, SliceSource, _crop_center
from accelmri.data.errors import DataError
from accelmri.data.sample import Sample, collate
from accelmri.data.volume import KspaceVolume
from accelmri.engine.config import ExperimentConfig
from accelmri.losses import CompositeLoss, build_loss
from accelmri.physics.coils import rss
from accelmri.physics.degrade import lowres
from accelmri.physics.fft import fft2c, ifft2c
from accelmri.physics.operators import SenseOperator

__all__ = [
    "ADAPT_BATCH_SIZE",
    "ADAPT_LR_FACTOR",
    "ADAPT_PATCH",
    "ADAPT_TASKS",
    "SSDU_LOSS_FRACTION",
    "SSDU_TASKS",
    "SSDU_VALIDATION_FRACTION",
    "Adaptation",
    "adapt_to_scan",
    "adaptation_problem",
    "check_adaptation",
    "ssdu_loss",
    "ssdu_split",
]

logger = logging.getLogger(__name__)

#: Tasks adapted by k-space splitting (ZS-SSDU); ``super_resolution`` is adapted by re-degradation (ZSSR).
SSDU_TASKS = ("reconstruction", "joint")
#: Tasks whose checkpoints can be adapted.
ADAPT_TASKS = ("super_resolution", *SSDU_TASKS)
#: ``|Λ|`` as a fraction of the acquired lines outside the centre and ``Γ`` (SSDU's ρ = 0.4, Yaman et al. 2020).
SSDU_LOSS_FRACTION = 0.4
#: ``|Γ|`` as a fraction of the acquired lines outside the centre (the held-out validation set of ZS-SSDU).
SSDU_VALIDATION_FRACTION = 0.2
#: Patches per adaptation step.
ADAPT_BATCH_SIZE = 4
#: Largest adaptation patch side, in pixels of the adaptation target grid (the acquired LR grid).
ADAPT_PATCH = 64
#: Default adaptation learning rate, as a fraction of the checkpoint's ``optimizer.lr``.
ADAPT_LR_FACTOR = 0.1


@dataclass(frozen=True, eq=False)
class Adaptation:
    """The outcome of :func:`adapt_to_scan`.

    Attributes:
        model: the adapted copy, in ``eval()`` mode on the device.
        steps: optimiser steps done.
        lr: the learning rate used.
        seconds: wall-clock time of the adaptation (pairs, steps), in seconds.
        losses: the training loss of every step (normalised units).
        loss_terms: the loss terms used (``("l1",)`` after a fallback; ``("ssdu",)`` for k-space splitting).
        patch_size: the adaptation patch ``(P, P)`` on the target grid, or ``None`` for whole slices.
        validation: ``((step, loss), …)`` of the held-out ``Γ`` (k-space splitting; step 0 = the checkpoint), else
            empty.
        best_step: the step whose weights were kept (k-space splitting; ``0`` = the checkpoint's), else ``steps``.
    """

    model: nn.Module
    steps: int
    lr: float
    seconds: float
    losses: tuple[float, ...]
    loss_terms: tuple[str, ...]
    patch_size: tuple[int, int] | None
    validation: tuple[tuple[int, float], ...] = ()
    best_step: int | None = None


def check_adaptation(
    config: ExperimentConfig, model: nn.Module, steps: int, source: str | Path, lr: float | None = None
) -> None:
    """Refuse an adaptation that cannot run, before any file is read.

    Args:
        config: the checkpoint's config.
        model: its model.
        steps: requested adaptation steps (``0`` = none: accepted whatever the model).
        source: the checkpoint (or config) file, named in errors.
        lr: the requested learning rate (``None`` = the default).

    Raises:
        ValueError: ``steps`` negative or not an int, ``lr`` not a finite number > 0.
        DataError: (naming ``source``) with ``steps > 0``, a model that cannot adapt (:func:`adaptation_problem`).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"adapt_steps must be an int >= 0, got {steps!r}")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr)
                           or lr <= 0):
        raise ValueError(f"adapt_lr must be a finite number > 0, got {lr!r}")
    if steps == 0:
        return
    problem = adaptation_problem(config, model)
    if problem is not None:
        raise DataError(source, problem)


def adaptation_problem(config: ExperimentConfig, model: nn.Module) -> str | None:
    """Why ``model`` (with its checkpoint's ``config``) cannot be adapted, or ``None`` when it can: a task not in
    :data:`ADAPT_TASKS`, no trainable parameters, or (reconstruction/joint) a model without a complex
    reconstruction for the k-space loss (``complex_output``)."""
    task, name = config.data.task, config.model.name
    if task not in ADAPT_TASKS:
        return (f"scan-specific adaptation (--adapt) supports task {', '.join(ADAPT_TASKS)} only; this checkpoint's "
                f"task is {task}")
    if not any(p.requires_grad for p in model.parameters()):
        return f"{name} has no trainable parameters: nothing to adapt"
    if task in SSDU_TASKS and not getattr(model, "complex_output", False):
        return (f"scan-specific adaptation of task {task} splits the acquired k-space and needs the model's complex "
                f"reconstruction; {name} gives only magnitudes (models that can: pgd_sft, modl)")
    return None


# ------------------------------------------------------------------------------------------------------ pairs


def _dihedral(image: torch.Tensor, transform: int) -> torch.Tensor:
    """One of the 8 flips/rotations of ``(..., H, W)``: ``transform % 4`` quarter turns, then a left-right flip
    for ``transform >= 4``."""
    image = torch.rot90(image, transform % 4, dims=(-2, -1))
    return (image.flip(-1) if transform >= 4 else image).contiguous()


@dataclass(frozen=True, eq=False)
class _AugmentedSource(SliceSource):
    """A k-space volume seen through flips/rotations: item ``i`` is slice ``i // T`` under transform ``i % T``,
    applied to the coil images before anything else reads them (so before the degradation)."""

    transforms: tuple[int, ...] = (0,)

    @property
    def num_slices(self) -> int:
        return self.volume.num_slices * len(self.transforms)

    def kspace(self, index: int) -> torch.Tensor:
        count = len(self.transforms)
        base = super().kspace(index // count)
        return fft2c(_dihedral(ifft2c(base), self.transforms[index % count])).to(torch.complex64)


def _patch(shape: tuple[int, int], scale: int, multiple: int) -> tuple[int, int] | None:
    """Square adaptation patch ``(P, P)`` on a target grid of ``shape`` (divisible by ``scale``), or ``None``."""
    step = math.lcm(2, multiple)
    side = min(min(shape) // scale, ADAPT_PATCH // scale) // step * step
    return None if side < step else (scale * side, scale * side)


def _pairs(
    config: ExperimentConfig, model: nn.Module, samples: Sequence[Sample], reference: SliceSource | None, path: Path
) -> tuple[SliceDataset, tuple[int, int] | None]:
    """The adaptation :class:`SliceDataset` (see the module docstring) and its patch size."""
    data = config.data
    scale = data.acquisition.scale
    kspace = torch.stack([(s.kspace * s.norm_std).to(torch.complex64) for s in samples])  # (S, C, h, w)
    height, width = kspace.shape[-2:]
    shape = (height - height % scale, width - width % scale)
    if min(shape) < scale:
        raise DataError(path, f"slices of {height}x{width} are too small to degrade once more by the scale {scale}")

    def crop(data: torch.Tensor) -> torch.Tensor:
        """Centre-crop k-space ``(S, C, h, w)`` in the image domain to sizes divisible by the scale."""
        if shape == (height, width):
            return data
        return fft2c(_crop_center(ifft2c(data), shape)).to(torch.complex64)

    patch = _patch(shape, scale, int(getattr(model, "size_multiple", 1)))
    transforms = tuple(range(8)) if patch is not None or shape[0] == shape[1] else (0, 2, 4, 6)
    target = _AugmentedSource(KspaceVolume(kspace=crop(kspace).numpy(), path=path), subject="adaptation",
                              transforms=transforms)
    references = None
    if reference is not None:
        guide = torch.stack([lowres(reference.kspace(int(s.meta["slice"])), scale) for s in samples])
        if tuple(guide.shape[-2:]) != (height, width):
            raise DataError(reference.path, f"reference slices {tuple(guide.shape[-2:])} after truncation by "
                            f"{scale} are not on the acquired grid {height}x{width} of {path.name}")
        references = [_AugmentedSource(KspaceVolume(kspace=crop(guide.to(torch.complex64)).numpy(),
                                                    path=reference.path), subject="adaptation", transforms=transforms)]
    dataset = SliceDataset([target], data.task, data.acquisition.to_acquisition(), references=references, train=True,
                           patch_size=patch, sens_maps=data.sens_maps, normalization=data.normalization)
    return dataset, patch


# ------------------------------------------------------------------------------------------ k-space splitting


def _centre_box(acquired: torch.Tensor) -> tuple[slice, slice]:
    """The fully sampled centre of a boolean ``(h, w)`` mask: the box grown from ``(h // 2, w // 2)`` one row or
    column at a time while the new row or column is acquired over the whole box (empty if the centre is not
    acquired). For phase-encode-line masks: every row of the contiguous run of lines through the centre."""
    height, width = acquired.shape
    top, left = height // 2, width // 2
    if not bool(acquired[top, left]):
        return slice(top, top), slice(left, left)
    bottom, right = top + 1, left + 1
    grown = True
    while grown:
        grown = False
        if top > 0 and bool(acquired[top - 1, left:right].all()):
            top, grown = top - 1, True
        if bottom < height and bool(acquired[bottom, left:right].all()):
            bottom, grown = bottom + 1, True
        if left > 0 and bool(acquired[top:bottom, left - 1].all()):
            left, grown = left - 1, True
        if right < width and bool(acquired[top:bottom, right].all()):
            right, grown = right + 1, True
    return slice(top, bottom), slice(left, right)


def _is_line_mask(mask: torch.Tensor) -> bool:
    """Whether a ``(h, w)`` mask samples whole phase-encode lines (every row the same)."""
    return bool((mask == mask[:1]).all())


def ssdu_split(
    mask: torch.Tensor, fraction: float, generator: torch.Generator, exclude: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the acquired samples of a ``(h, w)`` 0/1 mask into ``(keep, held)``, boolean ``(h, w)`` each.

    ``held`` is ``round(fraction · n)`` of the ``n`` acquired units outside the fully sampled centre and outside
    ``exclude``, drawn uniformly at random with ``generator``: whole phase-encode lines (columns) when every row of
    the mask is the same, single samples otherwise. The centre is the largest fully acquired box grown from the
    k-space centre ``(h // 2, w // 2)`` (for line masks: every row of the contiguous run of lines through it).
    ``keep`` is the acquired rest (centre included, ``exclude`` removed). SSDU (Yaman et al., MRM 2020; ZS-SSDU,
    ICLR 2022).

    Raises:
        ValueError: a mask that is not 2-D, or ``fraction`` outside ``[0, 1)``.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be (h, w), got shape {tuple(mask.shape)}")
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    acquired = mask > 0
    height, width = acquired.shape
    lines = _is_line_mask(acquired)
    centre = torch.zeros_like(acquired)
    centre[_centre_box(acquired)] = True
    free = acquired & ~centre
    if exclude is not None:
        free &= ~exclude
    candidates = (free[0] if lines else free.flatten()).nonzero()[:, 0]
    count = round(fraction * len(candidates))
    chosen = candidates[torch.randperm(len(candidates), generator=generator)[:count]]
    held = torch.zeros(width if lines else height * width, dtype=torch.bool)
    held[chosen] = True
    held = held.expand(height, width) if lines else held.view(height, width)
    keep = acquired & ~held
    if exclude is not None:
        keep &= ~exclude
    return keep, held.clone()


def _with_mask(sample: Sample, keep: torch.Tensor) -> Sample:
    """``sample`` as if only ``keep (h, w)`` had been acquired: its ``kspace``, ``mask`` and zero-filled
    ``lr_input`` (root-sum-of-squares, normalised with the sample's own statistics); the rest unchanged."""
    mask = keep[None].to(sample.mask.dtype)
    kspace = sample.kspace * mask
    images = ifft2c(kspace)
    magnitude = rss(images) if images.shape[0] > 1 else images[0].abs()
    lr_input = (magnitude - sample.norm_mean / sample.norm_std).to(torch.float32)[None]
    return replace(sample, kspace=kspace, mask=mask, lr_input=lr_input)


def ssdu_loss(prediction: torch.Tensor, kspace: torch.Tensor, held: torch.Tensor,
              sens_maps: torch.Tensor | None) -> torch.Tensor:
    """The SSDU loss of a batch (Yaman et al., MRM 84:3172, 2020, Eq. 9), averaged over it.

    Args:
        prediction: complex reconstructions ``x (B, h, w)`` in k-space units.
        kspace: acquired k-space ``y (B, C, h, w)`` complex (normalised units).
        held: the loss sets ``Λ`` as 0/1 masks ``(B, 1, h, w)`` (real).
        sens_maps: coil maps ``(B, C, h, w)`` complex, or ``None`` (single coil).

    Returns:
        ``mean_b ‖y_Λ − E_Λ x‖₂ / ‖y_Λ‖₂ + ‖y_Λ − E_Λ x‖₁ / ‖y_Λ‖₁`` (``E_Λ = M_Λ F C``; ``‖·‖₁`` the sum of
        complex moduli), a float32 scalar.
    """
    operator = SenseOperator(held, sens_maps)
    estimate = operator.forward(prediction if sens_maps is not None else prediction[:, None])
    measured = held * kspace
    difference = (estimate - measured).flatten(1)
    measured = measured.flatten(1)
    eps = torch.finfo(torch.float32).eps
    l2 = torch.linalg.vector_norm(difference, dim=1) / torch.linalg.vector_norm(measured, dim=1).clamp_min(eps)
    l1 = difference.abs().sum(1) / measured.abs().sum(1).clamp_min(eps)
    return (l2 + l1).mean().float()


def _complex_image(model: nn.Module, batch: Sample, name: str) -> torch.Tensor:
    """The model's ``Prediction.complex_image`` of ``batch`` (refused when it gives none)."""
    prediction = model(batch)
    if prediction.complex_image is None:
        raise ValueError(f"{name} gave no complex_image: it cannot adapt by k-space splitting")
    return prediction.complex_image


def _ssdu_validation(model: nn.Module, samples: Sequence[Sample], validation: Sequence[torch.Tensor],
                     device: torch.device, name: str) -> float:
    """The SSDU loss on the held-out ``Γ`` of every slice, the model given ``Ω \\ Γ``, summed over slices."""
    model.eval()
    total = 0.0
    with torch.no_grad():
        for sample, held in zip(samples, validation, strict=True):
            keep = (sample.mask[0] > 0) & ~held
            batch = collate([_with_mask(sample, keep)]).to(device)
            estimate = _complex_image(model, batch, name)
            total += float(ssdu_loss(estimate, collate([sample]).kspace.to(device),
                                     held[None, None].to(device, torch.float32), batch.sens_maps))
    model.train()
    return total


def _optimizer_step(total: torch.Tensor, optimizer: torch.optim.Optimizer, adapted: nn.Module,
                    config: ExperimentConfig, source: Path, step: int) -> float:
    """One adaptation step on the loss ``total`` (gradient clipping at ``trainer.grad_clip``); returns its value.

    Raises:
        ValueError: a loss that is not finite (naming ``source`` and the 1-based ``step``).
    """
    if not torch.isfinite(total):
        raise ValueError(f"{source}: adaptation diverged at step {step} (loss {float(total)}); lower the "
                         "adaptation learning rate (--adapt-lr)")
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if config.trainer.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(adapted.parameters(), config.trainer.grad_clip)
    optimizer.step()
    return float(total.detach())


def _adapt_zssr(adapted: nn.Module, config: ExperimentConfig, samples: Sequence[Sample],
                reference: SliceSource | None, steps: int, lr: float, device: torch.device, batch_size: int,
                source: Path) -> tuple[list[float], tuple[str, ...], tuple[int, int] | None]:
    """ZSSR training of ``adapted`` in place (see the module docstring): ``(losses, loss terms, patch)``."""
    dataset, patch = _pairs(config, adapted, samples, reference, source)
    loss_fn, terms = _adaptation_loss(config, device)
    optimizer = _optimizer(config, adapted, lr, str(source))
    adapted.train()
    losses: list[float] = []
    for step in range(steps):
        items = torch.randint(len(dataset), (batch_size,)).tolist()
        batch = collate([dataset[i] for i in items]).to(device)
        prediction = adapted(batch)
        try:
            total, _ = loss_fn(prediction, batch)
        except ValueError as err:  # a term needs an output this model does not give
            if step or terms == ("l1",):
                raise
            logger.info("adaptation: %s; using L1", err)
            loss_fn, terms = build_loss({"l1": 1.0}).to(device), ("l1",)
            total, _ = loss_fn(prediction, batch)
        losses.append(_optimizer_step(total, optimizer, adapted, config, source, step + 1))
    return losses, terms, patch


def _adapt_ssdu(adapted: nn.Module, config: ExperimentConfig, samples: Sequence[Sample], steps: int, lr: float,
                device: torch.device, batch_size: int, source: Path
                ) -> tuple[list[float], list[tuple[int, float]], int]:
    """ZS-SSDU training of ``adapted`` in place (see the module docstring): ``(losses, validation, best_step)``."""
    name = config.model.name
    generator = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, ())))
    validation = [ssdu_split(s.mask[0], SSDU_VALIDATION_FRACTION, generator)[1] for s in samples]
    optimizer = _optimizer(config, adapted, lr, str(source))
    every = max(1, steps // 10)
    adapted.train()
    scores = [(0, _ssdu_validation(adapted, samples, validation, device, name))]
    best_state = copy.deepcopy(adapted.state_dict())
    losses: list[float] = []
    for step in range(1, steps + 1):
        chosen = torch.randint(len(samples), (batch_size,), generator=generator).tolist()
        inputs, held = [], []
        for index in chosen:
            keep, loss_set = ssdu_split(samples[index].mask[0], SSDU_LOSS_FRACTION, generator, validation[index])
            inputs.append(_with_mask(samples[index], keep))
            held.append(loss_set[None].to(torch.float32))
        batch = collate(inputs).to(device)
        measured = collate([samples[i] for i in chosen]).kspace.to(device)
        total = ssdu_loss(_complex_image(adapted, batch, name), measured, torch.stack(held).to(device),
                          batch.sens_maps)
        losses.append(_optimizer_step(total, optimizer, adapted, config, source, step))
        if step % every == 0 or step == steps:
            scores.append((step, _ssdu_validation(adapted, samples, validation, device, name)))
            if scores[-1][1] < min(value for _, value in scores[:-1]):
                best_state = copy.deepcopy(adapted.state_dict())
    adapted.load_state_dict(best_state)
    best_step = min(scores, key=lambda item: item[1])[0]
    return losses, scores, best_step


# --------------------------------------------------------------------------------------------------- training


def _adaptation_loss(config: ExperimentConfig, device: torch.device) -> tuple[CompositeLoss, tuple[str, ...]]:
    """The checkpoint's loss without ``adversarial`` (the trainer's builder), or L1 when it cannot be built."""
    from accelmri.engine.trainer import build_training_loss  # Lightning is imported only when adapting

    weights = {name: weight for name, weight in config.loss.terms.items() if name != "adversarial"}
    try:
        loss = build_training_loss(weights, config, None, "loss") if weights else None
    except (ValueError, OSError) as err:  # e.g. perceptual weights that are not on this machine
        logger.info("adaptation: the checkpoint's loss cannot be built here (%s); using L1", err)
        loss = None
    if loss is None:
        return build_loss({"l1": 1.0}).to(device), ("l1",)
    return loss.to(device), tuple(weights)


def _optimizer(config: ExperimentConfig, model: nn.Module, lr: float, source: str) -> torch.optim.Optimizer:
    """Adam (AdamW for an ``adamw`` checkpoint) at ``lr`` with the checkpoint's settings (the trainer's builder);
    ``param_lr`` groups scaled alike."""
    from accelmri.engine.trainer import build_optimizer

    settings = config.optimizer
    ratio = lr / settings.lr
    scaled = replace(settings, name="adamw" if settings.name == "adamw" else "adam", lr=lr,
                     param_lr={prefix: value * ratio for prefix, value in settings.param_lr.items()})
    return build_optimizer(scaled, model, "optimizer", source)


def adapt_to_scan(
    model: nn.Module,
    config: ExperimentConfig,
    samples: Sequence[Sample],
    reference: SliceSource | None = None,
    *,
    steps: int,
    lr: float | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
    batch_size: int = ADAPT_BATCH_SIZE,
    path: str | Path = "<scan>",
) -> Adaptation:
    """Fine-tune a copy of ``model`` on one scan (ZSSR, Shocher et al., CVPR 2018; see the module docstring).

    Args:
        model: the trained model (not modified; its copy is trained).
        config: its config (task, acquisition, normalisation, loss, optimiser, ``trainer.grad_clip``).
        samples: the volume's slices exactly as the model restores them (batch contract, one :class:`Sample` per
            slice, same grid): ``kspace (C, h, w)`` complex64 and ``norm_std ()`` float32 give the acquired
            k-space in input units; ``meta["slice"]`` indexes ``reference``.
        reference: the reference volume on the restored grid ``(s·h, s·w)`` (a :class:`SliceSource`, slices paired
            by ``meta["slice"]``), or ``None`` for single-contrast models.
        steps: optimiser steps (``>= 0``; ``0`` returns a copy untouched).
        lr: Adam learning rate (``> 0``); ``None`` = :data:`ADAPT_LR_FACTOR` × ``config.optimizer.lr``.
        device: where the copy is trained.
        seed: torch seed of the patch positions, augmentations and acquisition noise.
        batch_size: patches per step.
        path: the scan, for messages and the log line.

    Returns:
        :class:`Adaptation` (the copy in ``eval()`` mode, the time spent, the losses). One ``logging.info`` line
        on ``accelmri.engine.adapt`` reports the steps, seconds and first/last loss.

    Raises:
        ValueError: ``steps < 0``, ``lr <= 0``, ``batch_size < 1``, no samples, or a loss that is not finite
            (lower the learning rate).
        DataError: a task other than ``super_resolution``, a model without trainable parameters, slices too small
            to degrade, or a reference not on the restored grid.
    """
    source = Path(path)
    check_adaptation(config, model, steps, source, lr)
    lr = ADAPT_LR_FACTOR * config.optimizer.lr if lr is None else lr
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not samples:
        raise ValueError(f"{source}: no slices to adapt to")
    device = torch.device(device)
    start = time.perf_counter()
    adapted = copy.deepcopy(model).to(device)
    losses: list[float] = []
    patch: tuple[int, int] | None = None
    terms: tuple[str, ...] = ()
    validation: list[tuple[int, float]] = []
    best_step: int | None = steps
    if steps:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            if config.data.task in SSDU_TASKS:
                terms = ("ssdu",)
                losses, validation, best_step = _adapt_ssdu(adapted, config, samples, steps, float(lr), device,
                                                            batch_size, source)
            else:
                losses, terms, patch = _adapt_zssr(adapted, config, samples, reference, steps, float(lr), device,
                                                   batch_size, source)
    adapted.eval()
    seconds = time.perf_counter() - start
    if steps:
        logger.info("%s: adapted %s for %d steps (lr %.3g, %s patches, loss %s) in %.1f s: loss %.4g -> %.4g%s",
                    source, config.model.name, steps, lr, "whole-slice" if patch is None else f"{patch[0]}x{patch[1]}",
                    "+".join(terms), seconds, losses[0], losses[-1],
                    f"; validation {validation[0][1]:.4g} -> {min(v for _, v in validation):.4g}, kept step "
                    f"{best_step}" if validation else "")
    return Adaptation(adapted, steps, float(lr), seconds, tuple(losses), terms, patch, tuple(validation), best_step)
