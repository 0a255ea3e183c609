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

__all__ = ["Sample", "collate"]


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
