"""Pretraining FASR-Net's texture extractor on training data (the trained substitute for ImageNet VGG19).

:func:`accelmri.models.blocks.texture_extractor.pretrain_extractor` learns cross-contrast matching from
co-registered ``(LR↑, Ref↓↑)`` pairs. This module makes those pairs from data — a training split of any experiment
config (:func:`training_pairs`) or digital-brain subjects (:func:`digital_brain_pairs`) — and
:func:`pretrain_for_config` writes the weights file that ``model.extractor_weights`` loads. It lives in the engine
because it reads data (models never do, ARCHITECTURE.md). Use training subjects only: the extractor must not see
the evaluation subjects.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from accelmri.data.digital_brain import digital_brain_subject
from accelmri.engine.build import build_dataset, prepare_data
from accelmri.engine.config import ConfigError, ExperimentConfig
from accelmri.models.blocks.texture_extractor import (
    mirrored_band_limit,
    mirrored_sinc_upsample,
    pretrain_extractor,
    save_extractor,
)
from accelmri.physics.degrade import lowres
from accelmri.physics.fft import ifft2c

__all__ = ["digital_brain_pairs", "pretrain_for_config", "training_pairs"]


def digital_brain_pairs(
    subjects: Sequence[int],
    target_contrast: str = "T2",
    reference_contrast: str = "FLAIR",
    scale: int = 2,
    size: int = 256,
    slices: int = 4,
    noise_std: float = 0.005,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Co-registered ``(LR↑, Ref↓↑)`` slices of digital-brain subjects, as FASR-Net's ``"kspace"`` mode builds them.

    Single-coil noisy k-space (:func:`~accelmri.data.digital_brain.digital_brain_subject` with ``coils=1``); the
    target's LR magnitude is ``|ifft2c(lowres(k, s))|``, normalised by its mean and upsampled by
    :func:`~accelmri.models.blocks.texture_extractor.mirrored_sinc_upsample`; the reference magnitude is
    normalised by its mean and band-limited by :func:`~accelmri.models.blocks.texture_extractor.mirrored_band_limit`.
    Pass training subjects only (the evaluation subjects must stay unseen).

    Args:
        subjects: subject indices (≥ 0).
        target_contrast: the target's digital-brain contrast name.
        reference_contrast: the reference's digital-brain contrast name.
        scale: SR scale ``s`` (dividing ``size``).
        size: as :func:`~accelmri.data.digital_brain.digital_brain_subject`.
        slices: as :func:`~accelmri.data.digital_brain.digital_brain_subject`.
        noise_std: as :func:`~accelmri.data.digital_brain.digital_brain_subject`.
        seed: as :func:`~accelmri.data.digital_brain.digital_brain_subject`.
        cache_dir: as :func:`~accelmri.data.digital_brain.digital_brain_subject`.

    Returns:
        ``(queries, keys)``, each ``(len(subjects)·slices, 1, size, size)`` float32.

    Raises:
        ValueError: no subjects, or arguments the digital brain or :func:`lowres` refuse.
    """
    if not subjects:
        raise ValueError("digital_brain_pairs needs at least one subject")
    queries, keys = [], []
    for subject in subjects:
        brain = digital_brain_subject(subject, (target_contrast, reference_contrast), coils=1, size=size,
                                      slices=slices, noise_std=noise_std, seed=seed, cache_dir=cache_dir)
        target_k, reference_k = (brain.kspace[name][:, 0] for name in brain.contrasts)
        lr = ifft2c(lowres(target_k, scale)).abs()
        queries.append(mirrored_sinc_upsample(lr / lr.mean(dim=(-2, -1), keepdim=True).clamp_min(1e-12), scale))
        reference = ifft2c(reference_k).abs()
        keys.append(mirrored_band_limit(reference / reference.mean(dim=(-2, -1), keepdim=True).clamp_min(1e-12), scale))
    return torch.cat(queries)[:, None].float(), torch.cat(keys)[:, None].float()


def training_pairs(config: ExperimentConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Co-registered ``(LR↑, Ref↓↑)`` whole slices of the config's training split, as FASR-Net's ``"kspace"`` mode
    builds them from a batch: ``LR↑`` = mirrored sinc upsampling of ``lr_input``, ``Ref↓↑`` = the mirrored band
    limit of ``reference`` (both normalised as the dataset normalises them; ``data.patch_size`` is ignored).

    Returns:
        ``(queries, keys)``, each ``(N, 1, H, W)`` float32 over the ``N`` training slices.

    Raises:
        ConfigError: a task other than ``super_resolution``, no reference contrast, or an empty training split.
    """
    data = dataclasses.replace(config.data, patch_size=None)
    if data.task != "super_resolution":
        raise ConfigError(config.source, "data.task", f"extractor pretraining needs super_resolution, got {data.task}")
    prepare_data(data, config.source)
    dataset = build_dataset(data, "train", config.source)
    if len(dataset) == 0:
        raise ConfigError(config.source, "data.split", "the train split is empty")
    scale = data.acquisition.scale
    queries, keys = [], []
    for index in range(len(dataset)):
        sample = dataset[index]
        if sample.reference is None:
            raise ConfigError(config.source, "data.source.reference", "extractor pretraining needs a reference")
        queries.append(mirrored_sinc_upsample(sample.lr_input[None].float(), scale))
        keys.append(mirrored_band_limit(sample.reference[None].float(), scale))
    return torch.cat(queries), torch.cat(keys)


def pretrain_for_config(config: ExperimentConfig, path: str | Path, seed: int = 0, steps: int = 300) -> Path:
    """Pretrain the texture extractor on the config's training split and save it to ``path`` (atomically).

    Args:
        config: a super-resolution experiment with a reference contrast (e.g. a FASR-Net config).
        path: the weights file to write (``model.extractor_weights``); an existing file is refused.
        seed: seeds initialisation and sampling.
        steps: pretraining steps (default 300: ~90 s on one core at the demo's 256² size).

    Raises:
        ConfigError: see :func:`training_pairs`. FileExistsError: ``path`` exists.
    """
    queries, keys = training_pairs(config)
    crop = min(48, (min(queries.shape[-2:]) - 8) // 4 * 4)
    extractor = pretrain_extractor(queries, keys, steps=steps, crop=crop, seed=seed)
    return save_extractor(extractor, path, {"source": config.source, "split": "train", "seed": seed, "steps": steps,
                                            "slices": len(queries)})
