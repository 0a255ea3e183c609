"""Every model writes its HR image on the k-space truncation grid, whatever the parity of the LR sides.

``lowres`` keeps the k-space block centred on DC, so LR pixel ``i`` sits at HR pixel ``s·i`` when the LR side is
even and at ``s·i + s/2`` when it is odd. A learned upsampler trained on even sides used to put its output one HR
pixel off on odd LR sides (a 190-row volume at 2×: −8 dB). Here each model is trained briefly on even sizes and must
restore smooth images of every parity of H/s and W/s without a shift.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from accelmri.data.datasets import SliceDataset, SliceSource
from accelmri.data.sample import Sample, collate
from accelmri.data.volume import ImageVolume, KspaceVolume
from accelmri.models.base import GridPadding
from accelmri.models.registry import available, build
from accelmri.physics.degrade import Acquisition
from accelmri.physics.fft import fft2c
from tests.test_fasrnet import TinyBackbone

SCALE = 2
TRAIN_SIZE = (32, 32)  # LR 16 × 16: the even convention every model learns
# LR sides 14 (even) and 15 (odd) in every combination
TEST_SIZES = [(28, 28), (30, 30), (28, 30), (30, 28)]

# Every registered restoration model at a tiny size (the discriminator restores nothing).
CONFIGS: dict[str, dict[str, Any]] = {
    "bicubic": {},
    "sinc": {},
    "zero_filled": {},
    "cg_sense": {},
    "edsr": {"channels": 16, "n_blocks": 2},
    "early_fusion": {"channels": 16, "n_blocks": 2},
    "unet": {"channels": 8, "n_pools": 2},
    "modl": {"channels": 8, "n_layers": 3, "n_iterations": 2, "cg_iterations": 3},
    "sequential": {"rec": {"name": "zero_filled", "scale": 1}, "sr": {"name": "edsr", "channels": 16, "n_blocks": 2}},
    "minet": {"channels": 8, "n_groups": 2, "n_blocks": 1, "reduction": 2},
    "sanet": {"channels": 8, "n_groups": 2, "n_blocks": 1, "reduction": 2, "attention_channels": 8},
    "t2net": {"channels": 8, "n_blocks": 2},
    "pgd_sft": {"channels": 16, "growth": 8, "n_blocks": 1, "cond_channels": 8, "prox_channels": 8,
                "prox_growth": 8, "max_iter": 5},
    "fasrnet": {"channels": 8, "n_blocks": (1, 1, 1), "embed_channels": 8},
}


def smooth_images(count: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    """``count`` sums of six Gaussian blobs (σ 1.5–4 HR pixels) on an ``size`` grid, float64."""
    generator = torch.Generator().manual_seed(seed)
    rows, cols = (torch.arange(n, dtype=torch.float64) for n in size)
    yy, xx = torch.meshgrid(rows, cols, indexing="ij")
    images = torch.zeros(count, *size, dtype=torch.float64)
    for image in images:
        for _ in range(6):
            centre = torch.rand(2, generator=generator, dtype=torch.float64) * torch.tensor(size)
            sigma = 1.5 + 2.5 * float(torch.rand((), generator=generator))
            amplitude = 0.3 + float(torch.rand((), generator=generator))
            image += amplitude * torch.exp(-((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / (2 * sigma**2))
    return images


def smooth_batch(size: tuple[int, int], seed: int, count: int = 4) -> Sample:
    """A fully sampled 2× SR batch of smooth images through the real SliceDataset; the reference is ``√image``."""
    images = smooth_images(count, size, seed)
    kspace = fft2c(images.to(torch.complex128))[:, None].to(torch.complex64)
    target = SliceSource(KspaceVolume(kspace=kspace.numpy(), path=Path(f"smooth{seed}.h5")), subject="s")
    reference = ImageVolume(images.sqrt().numpy().astype(np.float32), np.eye(4), Path(f"reference{seed}.nii"))
    dataset = SliceDataset([target], "super_resolution", Acquisition("equispaced", 1.0, 0.25, SCALE),
                           references=[SliceSource(reference, subject="s")])
    return collate([dataset[i] for i in range(len(dataset))])


def best_shift(prediction: torch.Tensor, target: torch.Tensor) -> tuple[int, int]:
    """The integer shift ``(dy, dx)`` in ``{-1, 0, 1}²`` of ``prediction`` that best matches ``target`` (MSE of the
    interior, 2 pixels from the border)."""
    inner = target[..., 2:-2, 2:-2]
    errors = {
        (dy, dx): float(F.mse_loss(torch.roll(prediction, (dy, dx), (-2, -1))[..., 2:-2, 2:-2], inner))
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    }
    return min(errors, key=errors.__getitem__)


def train_briefly(model: nn.Module, steps: int = 150) -> None:
    """Adam on L1 (image, plus the LR image where the model has one) over smooth batches of the even train size."""
    batches = [smooth_batch(TRAIN_SIZE, seed) for seed in range(6)]
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for step in range(steps):
        batch = batches[step % len(batches)]
        prediction = model(batch)
        loss = F.l1_loss(prediction.image, batch.target)
        if prediction.lr_image is not None:
            loss = loss + F.l1_loss(prediction.lr_image, batch.lr_target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()


def test_every_restoration_model_is_checked() -> None:
    package_models = {name for name in available() if not name.startswith("test_")}  # test_engine registers test_*
    assert set(CONFIGS) == package_models - {"vgg_discriminator"}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_restored_image_sits_on_the_input_grid_for_every_lr_parity(name: str) -> None:
    torch.manual_seed(0)
    config = {**CONFIGS[name], "scale": SCALE} if name != "sequential" else dict(CONFIGS[name])
    if name == "sequential":
        config["sr"] = {**config["sr"], "scale": SCALE}
    if name == "fasrnet":
        config["backbone"] = TinyBackbone()
    model = build(name, **config)
    if any(p.requires_grad for p in model.parameters()):
        train_briefly(model)
    with torch.no_grad():
        for size in TEST_SIZES:
            batch = smooth_batch(size, seed=1000)
            image = model(batch).image
            assert image.shape == batch.target.shape
            shift = best_shift(image, batch.target)
            peak = float(batch.target.max() - batch.target.min())
            psnr = 10 * math.log10(peak**2 / float(F.mse_loss(image, batch.target)))
            assert shift == (0, 0), f"{name} at {size}: output shifted by {shift} (PSNR {psnr:.1f} dB)"


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("multiple", [1, 2, 4])
def test_grid_padding_maps_lr_pixels_to_their_truncation_grid_position(scale: int, multiple: int) -> None:
    for n in range(1, 14):
        padding = GridPadding.for_size((n, n + 1), scale, multiple)
        for side, (before, after, hr_before, hr_after) in enumerate(
            [(padding.lr_pad[0], padding.lr_pad[1], padding.hr_pad[0], padding.hr_pad[1]),
             (padding.lr_pad[2], padding.lr_pad[3], padding.hr_pad[2], padding.hr_pad[3])]
        ):
            length = n + side
            padded = length + before + after
            assert padded % multiple == 0 and (scale == 1 or padded % 2 == 0) and min(before, after) >= 0
            assert hr_before + scale * length + hr_after == scale * padded and min(hr_before, hr_after) >= 0
            # LR pixel i sits at HR (H//2 − s·(h//2)) + s·i on the truncation grid (degrade.lowres); in the even
            # padded frame LR pixel i + before sits at HR s·(i + before): the crop must map one onto the other.
            offset = (scale * length) // 2 - scale * (length // 2)
            assert hr_before + offset == scale * before
            assert (padded * scale) // 2 - scale * (padded // 2) == 0 or scale == 1
    even = GridPadding.for_size((16, 8), 2)
    assert even.identity
    lr = torch.randn(1, 1, 15, 16)
    odd = GridPadding.for_size(lr.shape[-2:], 2)
    assert odd.lr_pad == (1, 0, 0, 0) and odd.hr_pad == (1, 1, 0, 0)
    torch.testing.assert_close(odd.crop_lr(odd.pad_lr(lr)), lr)
    hr = torch.randn(1, 1, 30, 32)
    torch.testing.assert_close(odd.crop_hr(odd.pad_hr(hr)), hr)
    with pytest.raises(ValueError, match="scale must be a positive int"):
        GridPadding.for_size((4, 4), 0)
