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

Reconstruction and joint tasks (undersampled inputs) would need a further undersampling of the acquired k-space
(SSDU-style splitting); they are refused.
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
from accelmri.physics.degrade import lowres
from accelmri.physics.fft import fft2c, ifft2c

__all__ = [
    "ADAPT_BATCH_SIZE",
    "ADAPT_LR_FACTOR",
    "ADAPT_PATCH",
    "ADAPT_TASKS",
    "Adaptation",
    "adapt_to_scan",
    "check_adaptation",
]

logger = logging.getLogger(__name__)

#: Tasks whose checkpoints can be adapted.
ADAPT_TASKS = ("super_resolution",)
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
        loss_terms: the loss terms used (``("l1",)`` after a fallback).
        patch_size: the adaptation patch ``(P, P)`` on the target grid, or ``None`` for whole slices.
    """

    model: nn.Module
    steps: int
    lr: float
    seconds: float
    losses: tuple[float, ...]
    loss_terms: tuple[str, ...]
    patch_size: tuple[int, int] | None


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
        DataError: (naming ``source``) with ``steps > 0``, a task other than ``super_resolution`` or a model
            without trainable parameters.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"adapt_steps must be an int >= 0, got {steps!r}")
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr)
                           or lr <= 0):
        raise ValueError(f"adapt_lr must be a finite number > 0, got {lr!r}")
    if steps == 0:
        return
    task = config.data.task
    if task not in ADAPT_TASKS:
        raise DataError(source, f"scan-specific adaptation (--adapt) supports task {', '.join(ADAPT_TASKS)} only; "
                        f"this checkpoint's task is {task} (undersampled inputs would need a further k-space "
                        "undersampling split, not implemented)")
    if not any(p.requires_grad for p in model.parameters()):
        raise DataError(source, f"{config.model.name} has no trainable parameters: nothing to adapt")


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
    if steps:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            dataset, patch = _pairs(config, adapted, samples, reference, source)
            loss_fn, terms = _adaptation_loss(config, device)
            optimizer = _optimizer(config, adapted, float(lr), str(source))
            adapted.train()
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
                if not torch.isfinite(total):
                    raise ValueError(f"{source}: adaptation diverged at step {step + 1} (loss {float(total)}); "
                                     "lower the adaptation learning rate (--adapt-lr)")
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                if config.trainer.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(adapted.parameters(), config.trainer.grad_clip)
                optimizer.step()
                losses.append(float(total.detach()))
    adapted.eval()
    seconds = time.perf_counter() - start
    if steps:
        logger.info("%s: adapted %s for %d steps (lr %.3g, %s patches, loss %s) in %.1f s: loss %.4g -> %.4g",
                    source, config.model.name, steps, lr, "whole-slice" if patch is None else f"{patch[0]}x{patch[1]}",
                    "+".join(terms), seconds, losses[0], losses[-1])
    return Adaptation(adapted, steps, float(lr), seconds, tuple(losses), terms, patch)
