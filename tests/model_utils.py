"""Shared helpers for the model tests: small realistic batches, gradient coverage, overfitting."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from accelmri.data.datasets import SliceDataset, SliceSource
from accelmri.data.phantom import shepp_logan
from accelmri.data.sample import Sample, collate
from accelmri.data.volume import ImageVolume, KspaceVolume
from accelmri.models.baselines.interpolation import bicubic_upsample
from accelmri.physics.coils import sense_expand
from accelmri.physics.degrade import Acquisition
from accelmri.physics.fft import fft2c
from accelmri.physics.sensitivity import birdcage_maps


def _phantom_slices(slices: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    """Complex phantom slices with per-slice shifts and smooth phase (a little anatomy variation)."""
    generator = torch.Generator().manual_seed(seed)
    images = []
    for s in range(slices):
        image = shepp_logan(size, phase_cycles=0.3 + 0.2 * s)
        shift = torch.randint(-3, 4, (2,), generator=generator).tolist()
        images.append(torch.roll(image, shifts=shift, dims=(-2, -1)) * (1 + 0.1 * s))
    return torch.stack(images)


def make_batch(
    task: str = "super_resolution",
    scale: int = 2,
    acceleration: float = 1.0,
    size: tuple[int, int] = (32, 32),
    slices: int = 2,
    coils: int = 1,
    reference: bool = True,
    sens_maps: bool = False,
    mask_kind: str = "equispaced",
    center_fraction: float = 0.25,
    seed: int = 0,
) -> Sample:
    """A batch of ``slices`` samples from the phantom through the real SliceDataset (the batch contract).

    The reference contrast is the phantom with inverted grey levels (same anatomy, different contrast).
    """
    images = _phantom_slices(slices, size, seed)
    kspace = fft2c(sense_expand(images, birdcage_maps((coils, *size)))) if coils > 1 else fft2c(images)[:, None]
    target = SliceSource(KspaceVolume(kspace=kspace.numpy(), path=Path(f"phantom{seed}.h5")), subject="p")
    references = None
    if reference:
        magnitude = images.abs().numpy()
        inverted = np.where(magnitude > 0.05, 1.2 - magnitude, 0.0).astype(np.float32)
        references = [SliceSource(ImageVolume(inverted, np.eye(4), Path(f"ref{seed}.nii")), subject="p")]
    acquisition = Acquisition(mask_kind, acceleration, center_fraction, scale)
    dataset = SliceDataset([target], task, acquisition, references=references,  # type: ignore[arg-type]
                           sens_maps="espirit" if sens_maps else None)
    return collate([dataset[i] for i in range(len(dataset))])


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB with the target's range (for quick model comparisons in tests)."""
    mse = float(F.mse_loss(prediction, target))
    peak = float(target.max() - target.min())
    return 10 * math.log10(peak**2 / mse)


def bicubic(batch: Sample) -> torch.Tensor:
    """Bicubic upsampling of the LR input to the target size (on the k-space truncation grid)."""
    return bicubic_upsample(batch.lr_input, batch.target.shape[-1] // batch.lr_input.shape[-1])


def parameters_without_gradient(model: nn.Module, loss: torch.Tensor) -> list[str]:
    """Names of registered parameters that get no (or an all-zero) gradient from ``loss``."""
    model.zero_grad(set_to_none=True)
    loss.backward()
    return [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not bool(p.grad.abs().sum() > 0))
    ]


def overfit(
    model: nn.Module, batch: Sample, loss_fn: Callable[[nn.Module, Sample], torch.Tensor], steps: int, lr: float = 1e-3
) -> list[float]:
    """Train ``model`` on one batch with Adam; returns the loss history."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    model.train()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, batch)
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    model.eval()
    return history
