"""The batch contract between datasets, models and the engine (ARCHITECTURE.md).

One :class:`Sample` per 2-D slice; :func:`collate` stacks samples into a batch of the same type
with a leading batch dimension ``B``. Models read fields by name, never by position.

Per-sample shapes (``H × W`` the HR grid, ``h × w = H/s × W/s`` the acquired LR grid, ``C`` coils):

==============  =====================  ==========  ==================================================
field           shape                  dtype       meaning
==============  =====================  ==========  ==================================================
``target``      ``(1, H, W)``          float32     fully sampled HR magnitude (normalised)
``lr_input``    ``(1, h, w)``          float32     zero-filled LR magnitude: the network input
``lr_target``   ``(1, h, w)``          float32     fully sampled LR magnitude (supervises Rec branches)
``reference``   ``(1, H, W)`` or None  float32     HR magnitude of the reference contrast, same slice
``kspace``      ``(C, h, w)``          complex64   measured LR k-space (normalised like the images)
``mask``        ``(1, h, w)``          float32     0/1 sampling mask, broadcasts against ``kspace``
``sens_maps``   ``(C, h, w)`` or None  complex64   coil sensitivities on the LR grid (multi-coil)
``norm_mean``   ``()``                 float32     image = normalised · ``norm_std`` + ``norm_mean``
``norm_std``    ``()``                 float32     (k-space is divided by ``norm_std`` only)
``meta``        dict                   —           ``file``, ``slice``, ``subject``, ``contrast``, …
==============  =====================  ==========  ==================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch

from accelmri.physics.coils import rss
from accelmri.physics.fft import ifft2c

__all__ = ["NORMALIZATIONS", "Sample", "collate", "normalization_statistics"]

#: ``data.normalization`` choices: ``scale`` divides by the mean of the zero-filled LR magnitude, ``meanstd``
#: subtracts it and divides by its standard deviation.
NORMALIZATIONS: tuple[str, ...] = ("scale", "meanstd")


def normalization_statistics(image: torch.Tensor, normalization: str) -> tuple[float, float]:
    """``(mean, std)`` with ``normalised = (image − mean) / std`` of the zero-filled LR magnitude ``image`` (any
    shape, real): ``scale`` → ``(0, image.mean())``, ``meanstd`` → ``(image.mean(), image.std())``; ``std`` is at
    least float32's smallest normal number (an all-zero input stays finite).

    Raises:
        ValueError: an unknown ``normalization``.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; choose from {', '.join(NORMALIZATIONS)}")
    eps = torch.finfo(torch.float32).tiny
    if normalization == "scale":
        return 0.0, max(float(image.mean()), eps)
    return float(image.mean()), max(float(image.std()), eps)


@dataclass(frozen=True, eq=False)
class Sample:
    """One slice (or, after :func:`collate`, a batch) of the batch contract; see the module table."""

    target: torch.Tensor
    lr_input: torch.Tensor
    lr_target: torch.Tensor
    kspace: torch.Tensor
    mask: torch.Tensor
    norm_mean: torch.Tensor
    norm_std: torch.Tensor
    reference: torch.Tensor | None = None
    sens_maps: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_tensors(
        cls,
        kspace: torch.Tensor,
        mask: torch.Tensor | None = None,
        *,
        scale: int = 1,
        sens_maps: torch.Tensor | None = None,
        reference: torch.Tensor | None = None,
        normalization: str = "scale",
        meta: dict[str, Any] | None = None,
    ) -> Sample:
        """One slice of the user's own measured data in the batch contract, for a model in the user's own loop
        (``model(collate([sample]))``; ``sample.denormalize`` maps outputs back to the input's units).

        Args:
            kspace: ``(C, h, w)`` (or ``(h, w)``: one coil) complex centred k-space of the *acquired* grid (the
                low-resolution grid for super-resolution), zeros where nothing was measured; orthonormal FFT
                convention of :mod:`accelmri.physics.fft`. For an image-domain SR model and a magnitude image
                ``x`` (h, w), pass ``fft2c(x.to(torch.complex64))``.
            mask: ``(h, w)`` or ``(1, w)``/``(w,)`` 0/1 sampling mask; ``None`` = the samples of ``kspace`` that
                are non-zero in any coil.
            scale: the model's SR factor ``s`` (``1``: reconstruction only): the output grid is ``(s·h, s·w)``.
            sens_maps: ``(C, h, w)`` complex coil sensitivities for SENSE-type models (e.g.
                :func:`accelmri.physics.sensitivity.calibrated_espirit_maps`), or ``None``.
            reference: ``(s·h, s·w)`` (or ``(1, s·h, s·w)``) real magnitude of the reference contrast on the
                output grid (reference-guided models), or ``None``; normalised by its own statistics.
            normalization: the model's ``data.normalization`` (``scale`` or ``meanstd``; its config says which).
            meta: optional ``meta`` entries (``file``, ``slice``, ...).

        Returns:
            A :class:`Sample` with ``lr_input = lr_target`` = the normalised zero-filled magnitude (root-sum-of-
            squares over coils), ``kspace / std``, and ``target`` all zeros (no ground truth).

        Raises:
            ValueError: wrong dimensions or shapes, a real ``kspace``, non-finite values, a mask that selects
                nothing, ``scale < 1``, or an unknown ``normalization``.
        """
        if not torch.is_complex(kspace):
            raise ValueError(f"kspace must be complex (centred k-space), got {kspace.dtype}")
        if kspace.ndim == 2:
            kspace = kspace[None]
        if kspace.ndim != 3:
            raise ValueError(f"kspace must be (C, h, w) or (h, w), got shape {tuple(kspace.shape)}")
        if not torch.isfinite(torch.view_as_real(kspace)).all():
            raise ValueError("kspace contains NaN or Inf")
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale must be an integer >= 1, got {scale!r}")
        shape = tuple(kspace.shape[-2:])
        if mask is None:
            mask = (kspace.abs().sum(dim=0) > 0).to(torch.float32)
        mask = torch.as_tensor(mask, dtype=torch.float32)
        try:
            mask = torch.broadcast_to(mask, shape).clone()
        except RuntimeError as err:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to the k-space {shape}") from err
        if not mask.any():
            raise ValueError("the mask selects no k-space sample (nothing was measured)")
        kspace = kspace.to(torch.complex64) * mask
        images = ifft2c(kspace)
        magnitude = rss(images) if images.shape[0] > 1 else images[0].abs()
        mean, std = normalization_statistics(magnitude, normalization)
        lr_input = ((magnitude - mean) / std).to(torch.float32)[None]
        hr_shape = (scale * shape[0], scale * shape[1])
        guide = None
        if reference is not None:
            reference = torch.as_tensor(reference)
            if torch.is_complex(reference):
                reference = reference.abs()
            reference = reference.to(torch.float32)
            if tuple(reference.shape[-2:]) != hr_shape or reference.ndim not in (2, 3) or reference.numel() != (
                    hr_shape[0] * hr_shape[1]):
                raise ValueError(f"reference of shape {tuple(reference.shape)} is not on the output grid {hr_shape} "
                                 f"(scale {scale} × the k-space {shape})")
            if not torch.isfinite(reference).all():
                raise ValueError("reference contains NaN or Inf")
            ref_mean, ref_std = normalization_statistics(reference, normalization)
            guide = ((reference - ref_mean) / ref_std).reshape(1, *hr_shape)
        if sens_maps is not None and tuple(sens_maps.shape) != tuple(kspace.shape):
            raise ValueError(f"sens_maps of shape {tuple(sens_maps.shape)} do not match the k-space "
                             f"{tuple(kspace.shape)}")
        return cls(
            target=torch.zeros((1, *hr_shape), dtype=torch.float32),
            lr_input=lr_input,
            lr_target=lr_input,
            kspace=(kspace / std).to(torch.complex64),
            mask=mask[None],
            norm_mean=torch.tensor(mean, dtype=torch.float32),
            norm_std=torch.tensor(std, dtype=torch.float32),
            reference=guide,
            sens_maps=None if sens_maps is None else sens_maps.to(torch.complex64),
            meta=dict(meta or {}),
        )

    def denormalize(self, image: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation of a (batched) image ``(B, 1, H, W)`` or ``(1, H, W)``: ``x·std + mean``."""
        if image.ndim == 4 and self.norm_std.ndim == 1:
            return image * self.norm_std[:, None, None, None] + self.norm_mean[:, None, None, None]
        return image * self.norm_std + self.norm_mean

    def to(self, device: torch.device | str) -> Sample:
        """A copy with every tensor moved to ``device``."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if isinstance(getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)


def collate(samples: list[Sample]) -> Sample:
    """Stack samples into a batch (``torch.utils.data.DataLoader(collate_fn=collate)``).

    Tensors gain a leading ``B`` dimension; optional fields must be present in all samples or in none;
    ``meta`` becomes a dict of lists.

    Raises:
        ValueError: on an empty list, optional fields present in only some samples, or shapes that differ.
    """
    if not samples:
        raise ValueError("collate: no samples")
    stacked: dict[str, Any] = {}
    for f in fields(Sample):
        if f.name == "meta":
            keys = samples[0].meta.keys()
            stacked["meta"] = {key: [s.meta.get(key) for s in samples] for key in keys}
            continue
        values = [getattr(s, f.name) for s in samples]
        present = [v is not None for v in values]
        if not any(present):
            stacked[f.name] = None
            continue
        if not all(present):
            raise ValueError(f"collate: field '{f.name}' is missing in some samples of the batch")
        try:
            stacked[f.name] = torch.stack(values)
        except RuntimeError as err:
            shapes = sorted({tuple(v.shape) for v in values})
            raise ValueError(f"collate: field '{f.name}' has different shapes in one batch: {shapes}") from err
    return Sample(**stacked)
