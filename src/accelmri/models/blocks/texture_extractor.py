"""A compact texture extractor pretrained for cross-contrast matching: FASR-Net's substitute for ImageNet VGG19.

Why: FASR-Net (paper 002, Sec. III-B) matches ``LR↑`` and ``Ref↓↑`` patches with VGG19 features initialised from
ImageNet. Those weights cannot be downloaded here, and a randomly initialised VGG19 gives features whose matches
land within ±1 px of the co-registered position for only about a fifth of the queries (``benchmarks/
fasrnet_matching.py``). Project rule: where pretrained weights are absent, use a documented, *trained*
substitute, never random features. This module is that substitute (real VGG19 weights still load with
``FASRNet(vgg_weights=PATH)``).

- :class:`TextureExtractor`: a VGG-like 3-level network (two 3×3 convs per level, 2×2 max pool between levels,
  ReLU between convs) with FASR-Net's backbone protocol: ``out_channels`` (three ints, finest level first) and
  ``forward(x, num_levels)`` → the first ``num_levels`` maps at ``HR``, ``HR/2``, ``HR/4``. A level's output is
  its last conv *before* the ReLU (VGG's relu1_2/relu2_2/relu3_2 are after it), so cosine relevances can be
  negative and are sharper. Default widths ``(24, 48, 64)`` (VGG19: 64, 128, 256): 0.10 M parameters against
  VGG19's 1.15 M up to relu3_2, and 3× shorter patch descriptors, so the correspondence search is cheaper too
  (widths chosen by held-out matching: ``(16, 32, 64)`` matched 78 % of object queries within ±1 px after 300
  steps, ``(24, 48, 64)`` 90 %; temperature 0.05 and larger crops/shifts (64², ±16 px) were worse).
- :func:`pretrain_extractor`: self-supervised contrastive training (InfoNCE, van den Oord et al., "Representation
  learning with contrastive predictive coding", 2018) between the features of co-registered positions of a
  target contrast's ``LR↑`` (query) and a reference contrast's ``Ref↓↑`` (key), FASR-Net's two matched inputs.
  The key crop is shifted against the query crop by a random multiple of 4 pixels (so the three levels stay on
  integer positions), so the features must localise rather than encode position. Per level, 3×3 patch
  descriptors (the unit-norm vectors FASR-Net's search compares) of sampled query positions are scored against
  every key position of the crop; the co-registered position is the positive, its 8 neighbours are left out of
  the softmax (the ±1 px a match may miss by), all other positions are negatives.
- Training pairs: :mod:`accelmri.engine.extractor` builds them from a training split (``training_pairs``) or
  from digital-brain subjects (``digital_brain_pairs``), degraded as FASR-Net's ``"kspace"`` mode does.
- :func:`mirrored_sinc_upsample` / :func:`mirrored_band_limit`: those two degradations (FASR-Net's ``"kspace"``
  mode uses them), computed on the image's mirror extension so that patches do not ring at their borders.
- :func:`save_extractor` / :func:`load_extractor`: a weights file ``{"channels", "state_dict", "meta"}``;
  ``FASRNet(extractor_weights=PATH)`` loads it.

Cost: at the demo's scale (4 subjects × 4 slices at 256², 2×) the default 300 steps took 86 s on one thread of a
2-core machine shared with another job, plus 1–7 s of simulation (``benchmarks/fasrnet_matching.py``, which also
reports the match fractions: held-out M-A matches within ±1 px rise from 36 % (random VGG19) to 95 %). In
FASR-Net the compact extractor also makes a training step on 32² patches ≈ 4× cheaper than VGG19.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from accelmri.io import atomic_output
from accelmri.models.baselines.interpolation import sinc_interpolate, zero_pad_kspace
from accelmri.physics.degrade import lowres
from accelmri.physics.fft import fft2c, ifft2c

__all__ = [
    "TextureExtractor",
    "info_nce_loss",
    "load_extractor",
    "mirrored_band_limit",
    "mirrored_sinc_upsample",
    "pretrain_extractor",
    "save_extractor",
]

_LEVELS = 3
_SHIFT_STEP = 4  # key/query offsets are multiples of the coarsest level's stride


def _mirror(x: torch.Tensor) -> torch.Tensor:
    """Even (half-sample symmetric) extension ``(..., h, w) → (..., 2h, 2w)``: ``[x, flip(x)]`` along both axes.

    Its periodic continuation has no jump at the image borders, so band-limiting it in k-space does not ring there
    (the discrete cosine transform's boundary condition). For an even side the extension keeps the k-space
    truncation grid: LR pixel ``i`` stays at HR pixel ``s·i`` of the extended frame.
    """
    x = torch.cat([x, x.flip(-1)], dim=-1)
    return torch.cat([x, x.flip(-2)], dim=-2)


def mirrored_sinc_upsample(image: torch.Tensor, scale: int) -> torch.Tensor:
    """FASR-Net's ``LR↑`` for k-space-truncated data: ``(..., h, w)`` real → ``(..., s·h, s·w)`` of the same dtype.

    The real part of :func:`~accelmri.models.baselines.interpolation.sinc_interpolate` (zero-padding of the
    k-space, the exact inverse of :func:`~accelmri.physics.degrade.lowres`) applied to the mirror extension of the
    image and cropped back: on a whole slice with a dark border it equals plain sinc interpolation (0.01 dB apart
    on the digital brain), on a patch it does not ring at the patch borders. ``h``, ``w`` even (truncation grid).

    Raises:
        ValueError: if ``scale`` is not a positive int.
    """
    height, width = image.shape[-2:]
    return sinc_interpolate(_mirror(image), scale).real[..., : scale * height, : scale * width].to(image.dtype)


def mirrored_band_limit(image: torch.Tensor, scale: int) -> torch.Tensor:
    """FASR-Net's ``Ref↓↑`` for k-space-truncated data: ``(..., H, W)`` real → same shape and dtype.

    k-space truncation by ``s`` (:func:`~accelmri.physics.degrade.lowres`) and zero-padding back (real part) of the
    mirror-extended image, cropped back: the image with its outer k-space band removed, degraded like
    :func:`mirrored_sinc_upsample`'s input (domain-consistent ``LR↑``/``Ref↓↑``).

    Raises:
        ValueError: if ``scale`` is not a positive int dividing ``2H`` and ``2W``.
    """
    height, width = image.shape[-2:]
    band = zero_pad_kspace(lowres(fft2c(_mirror(image)), scale), scale)
    return ifft2c(band).real[..., :height, :width].to(image.dtype)


class TextureExtractor(nn.Module):
    """VGG-like 3-level feature pyramid (FASR-Net backbone protocol); see the module docstring.

    Args:
        channels: widths of the three levels, finest first (positive ints).

    Input ``(B, 1, H, W)`` float32 normalised images (``H``, ``W`` multiples of 4 for exact level sizes). Output of
    ``forward(x, num_levels)``: a list of ``num_levels`` maps ``(B, channels[i], H / 2^i, W / 2^i)`` float32.

    Raises:
        ValueError: ``channels`` not three positive ints.
    """

    def __init__(self, channels: Sequence[int] = (24, 48, 64)) -> None:
        super().__init__()
        widths = tuple(int(c) for c in channels)
        if len(widths) != _LEVELS or min(widths) < 1:
            raise ValueError(f"TextureExtractor needs {_LEVELS} positive channel counts, got {tuple(channels)}")
        self.out_channels = widths
        levels: list[nn.Sequential] = []
        previous = 1
        for i, width in enumerate(widths):
            entry: list[nn.Module] = [] if i == 0 else [nn.ReLU(), nn.MaxPool2d(2)]
            levels.append(nn.Sequential(*entry, nn.Conv2d(previous, width, 3, padding=1), nn.ReLU(),
                                        nn.Conv2d(width, width, 3, padding=1)))
            previous = width
        self.levels = nn.ModuleList(levels)

    def forward(self, x: torch.Tensor, num_levels: int = _LEVELS) -> list[torch.Tensor]:
        """The first ``num_levels`` feature maps (deeper levels do not run).

        Raises:
            ValueError: ``x`` not ``(B, 1, H, W)``, or ``num_levels`` outside 1..3.
        """
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"TextureExtractor expects (B, 1, H, W), got {tuple(x.shape)}")
        if not 1 <= num_levels <= _LEVELS:
            raise ValueError(f"num_levels must be in 1..{_LEVELS}, got {num_levels}")
        outputs = []
        for level in self.levels[:num_levels]:
            x = level(x)
            outputs.append(x)
        return outputs


def _descriptors(feature: torch.Tensor) -> torch.Tensor:
    """``(B, C, h, w)`` → unit-norm 3×3 patch descriptors ``(B, h·w, 9C)`` (zero padding, as FASR-Net's search)."""
    return F.normalize(F.unfold(feature, 3, padding=1), dim=1).transpose(1, 2)


def info_nce_loss(
    query: torch.Tensor, key: torch.Tensor, shift: tuple[int, int], anchors: torch.Tensor, temperature: float
) -> torch.Tensor:
    """InfoNCE of one pyramid level: query positions against every key position of the crop.

    Args:
        query: ``(B, C, h, w)`` features of the query crops.
        key: ``(B, C, h, w)`` features of the key crops; query pixel ``(y, x)`` shows the anatomy of key pixel
            ``(y − dy, x − dx)``.
        shift: ``(dy, dx)`` in this level's pixels.
        anchors: ``(B, A, 2)`` int64 query positions ``(y, x)`` whose partner ``(y − dy, x − dx)`` is inside the crop.
        temperature: softmax temperature ``τ > 0``.

    Returns:
        Scalar mean of ``−log softmax`` at the partner over ``{partner} ∪ {keys farther than 1 px from it}``.
    """
    height, width = key.shape[-2:]
    dy, dx = shift
    q = _descriptors(query)
    k = _descriptors(key)
    query_index = anchors[..., 0] * width + anchors[..., 1]
    q = torch.gather(q, 1, query_index[..., None].expand(-1, -1, q.shape[-1]))  # (B, A, 9C)
    logits = q @ k.transpose(1, 2) / temperature  # (B, A, h·w)
    py, px = anchors[..., 0] - dy, anchors[..., 1] - dx
    ky = torch.arange(height, device=key.device).view(1, 1, -1, 1)
    kx = torch.arange(width, device=key.device).view(1, 1, 1, -1)
    chebyshev = torch.maximum((ky - py[..., None, None]).abs(), (kx - px[..., None, None]).abs()).flatten(2)
    logits = logits.masked_fill(chebyshev == 1, float("-inf"))
    return F.cross_entropy(logits.flatten(0, 1), (py * width + px).flatten())


def pretrain_extractor(
    queries: torch.Tensor,
    keys: torch.Tensor,
    channels: Sequence[int] = (24, 48, 64),
    steps: int = 300,
    batch_size: int = 8,
    crop: int = 48,
    max_shift: int = 4,
    anchors: int = 128,
    temperature: float = 0.1,
    lr: float = 2e-3,
    seed: int = 0,
) -> TextureExtractor:
    """Train a :class:`TextureExtractor` by cross-contrast InfoNCE (module docstring) and return it (eval mode).

    Each step draws ``batch_size`` slices, a ``crop``² query window and a key window moved by ``(dy, dx)``,
    multiples of 4 in ``[−max_shift, max_shift]``, and ``anchors`` query positions per crop, preferring the
    object (pixels above a fifth of the slice's mean intensity) over background noise; the loss is the sum of
    :func:`info_nce_loss` over the three levels. Adam, cosine-decayed learning rate. Deterministic for a seed
    (own generator; the global RNG state is saved and restored around the initialisation).

    Args:
        queries: ``(N, 1, H, W)`` float32 ``LR↑`` slices (e.g. from
            :func:`accelmri.engine.extractor.training_pairs`).
        keys: ``(N, 1, H, W)`` float32 ``Ref↓↑`` slices, co-registered with ``queries``.
        channels: the extractor's level widths.
        steps: optimisation steps (``≥ 1``).
        batch_size: crops per optimisation step.
        lr: the optimiser's learning rate.
        crop: crop side in pixels (multiple of 4, ≥ 16, at most ``min(H, W) − 2·max_shift``).
        max_shift: largest key offset in pixels (rounded down to a multiple of 4; ``< crop``).
        anchors: query positions per crop and level (fewer at coarse levels if the overlap is smaller).
        temperature: InfoNCE temperature.
        seed: seeds initialisation and sampling.

    Returns:
        The trained extractor on the inputs' device, in eval mode.

    Raises:
        ValueError: mismatched or non-``(N, 1, H, W)`` inputs, ``steps < 1``, or a ``crop``/``max_shift`` that
            does not fit.
    """
    if queries.shape != keys.shape or queries.ndim != 4 or queries.shape[1] != 1:
        raise ValueError(f"queries and keys must both be (N, 1, H, W), got {tuple(queries.shape)}, {tuple(keys.shape)}")
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    margin = max_shift // _SHIFT_STEP * _SHIFT_STEP
    if crop % _SHIFT_STEP or crop < 4 * _SHIFT_STEP or crop + 2 * margin > min(queries.shape[-2:]) or margin >= crop:
        raise ValueError(f"crop {crop} (multiple of 4, ≥ 16) with max_shift {max_shift} does not fit "
                         f"{tuple(queries.shape[-2:])} slices")
    device = queries.device
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TextureExtractor(channels).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    thresholds = 0.2 * queries.mean(dim=(1, 2, 3))
    height, width = queries.shape[-2:]
    model.train()
    for _ in range(steps):
        picks = torch.randint(len(queries), (batch_size,), generator=generator)
        steps_range = margin // _SHIFT_STEP
        dy, dx = (torch.randint(-steps_range, steps_range + 1, (2,), generator=generator) * _SHIFT_STEP).tolist()
        y0 = margin + int(torch.randint(0, height - crop - 2 * margin + 1, (), generator=generator))
        x0 = margin + int(torch.randint(0, width - crop - 2 * margin + 1, (), generator=generator))
        q_crop = queries[picks, :, y0 : y0 + crop, x0 : x0 + crop]  # query pixel (y, x) = key pixel (y - dy, x - dx)
        k_crop = keys[picks, :, y0 + dy : y0 + dy + crop, x0 + dx : x0 + dx + crop]
        q_levels, k_levels = model(q_crop, _LEVELS), model(k_crop, _LEVELS)
        loss = q_crop.new_zeros(())
        for level, (q, k) in enumerate(zip(q_levels, k_levels, strict=True)):
            stride = 1 << level
            positions = _sample_anchors(q_crop, thresholds[picks], (dy // stride, dx // stride), stride, anchors,
                                        generator)
            loss = loss + info_nce_loss(q, k, (dy // stride, dx // stride), positions.to(device), temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return model.eval()


def _sample_anchors(
    image: torch.Tensor, thresholds: torch.Tensor, shift: tuple[int, int], stride: int, count: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """``(B, A, 2)`` positions on a level of ``stride`` whose partner ``(y − dy, x − dx)`` lies in the crop.

    Object positions (level cell mean above the slice's threshold) are drawn first; background fills up when a
    crop has fewer than ``A = min(count, valid positions)``.
    """
    cells = F.avg_pool2d(image, stride) if stride > 1 else image  # (B, 1, h, w)
    height, width = cells.shape[-2:]
    dy, dx = shift
    ys, xs = torch.arange(height), torch.arange(width)
    valid_y = ys[(ys - dy >= 0) & (ys - dy < height)]
    valid_x = xs[(xs - dx >= 0) & (xs - dx < width)]
    grid = torch.cartesian_prod(valid_y, valid_x)  # (P, 2)
    count = min(count, len(grid))
    chosen = []
    for cell, threshold in zip(cells.detach().cpu(), thresholds.cpu(), strict=True):
        foreground = cell[0, grid[:, 0], grid[:, 1]] > threshold
        priority = torch.rand(len(grid), generator=generator) + foreground.float()  # object first, random order
        chosen.append(grid[priority.topk(count).indices])
    return torch.stack(chosen)


def save_extractor(model: TextureExtractor, path: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write ``{"channels", "state_dict", "meta"}`` to ``path`` atomically (parents created); returns the path.

    ``meta``: optional plain values (ints, floats, strings, lists) recording how the weights were trained.

    Raises:
        FileExistsError: ``path`` exists (nothing is overwritten).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    with atomic_output(path, overwrite=False) as tmp:
        torch.save({"channels": list(model.out_channels), "state_dict": state, "meta": dict(meta or {})}, tmp)
    return path


def load_extractor(path: str | Path) -> TextureExtractor:
    """Read a file of :func:`save_extractor` (``torch.load(weights_only=True)``, CPU) into a new extractor.

    Raises:
        FileNotFoundError: no file at ``path`` (the message says how to make one).
        KeyError: the file lacks ``channels`` or ``state_dict``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"texture extractor weights not found: {path} (train them with accelmri.models.blocks.texture_extractor."
            "pretrain_extractor and save_extractor)"
        )
    content = torch.load(path, map_location="cpu", weights_only=True)
    missing = [key for key in ("channels", "state_dict") if key not in content]
    if missing:
        raise KeyError(f"texture extractor file {path} lacks {missing}")
    model = TextureExtractor(content["channels"])
    model.load_state_dict(content["state_dict"])
    return model
