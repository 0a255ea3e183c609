"""What every model shares: the named output (:class:`Prediction`) and the batch-field contract.

A model is an ``nn.Module`` whose ``forward(batch: Sample) -> Prediction`` reads batch fields by name
(ARCHITECTURE.md). It declares ``required_fields`` so the engine can refuse an incompatible dataset
before training (:func:`check_batch`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from accelmri.physics.coils import sense_combine
from accelmri.physics.fft import ifft2c

if TYPE_CHECKING:  # models read the batch contract by attribute; the import is for type checkers only
    from accelmri.data.sample import Sample

__all__ = ["GridPadding", "Prediction", "check_batch", "network_input", "set_channels_last"]


@dataclass(eq=False)
class Prediction:
    """Named model outputs (normalised units, like the batch).

    Attributes:
        image: the restored HR target ``(B, 1, H, W)`` float32.
        lr_image: the reconstructed LR image ``(B, 1, h, w)`` (joint models' Rec branch), if any.
        reference_image: the reconstructed reference ``(B, 1, H, W)`` (MINet/SANet auxiliary output), if any.
        extras: further named tensors (attention maps, DEQ statistics, …).
        complex_image: the complex reconstruction ``x (B, h, w)`` complex64 on the measured k-space grid, in the
            batch's k-space units (``kspace`` ≈ ``M F C x``), of models with an explicit encoding operator (PGD-SFT's
            Rec module, MoDL); ``None`` otherwise. k-space losses read it (self-supervised scan-specific adaptation,
            :mod:`accelmri.engine.adapt`). Models that can give it set the attribute ``complex_output = True``.
    """

    image: torch.Tensor
    lr_image: torch.Tensor | None = None
    reference_image: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    complex_image: torch.Tensor | None = None


def check_batch(model_name: str, required: tuple[str, ...], batch: Sample) -> None:
    """Refuse a batch lacking a field the model needs.

    Raises:
        ValueError: naming the model and the missing fields.
    """
    missing = [name for name in required if getattr(batch, name, None) is None]
    if missing:
        raise ValueError(f"{model_name} needs batch fields {missing}, which this dataset does not provide")


def network_input(batch: Sample, in_channels: int) -> torch.Tensor:
    """The LR network input: magnitude ``(B, 1, h, w)`` or complex as real/imaginary ``(B, 2, h, w)``.

    The complex image is the zero-filled image of the measured k-space: SENSE-combined with ``sens_maps``
    when present, else the single coil's image (normalised like the batch).

    Raises:
        ValueError: ``in_channels`` not 1 or 2, or complex input from multi-coil data without ``sens_maps``.
    """
    if in_channels == 1:
        return batch.lr_input
    if in_channels != 2:
        raise ValueError(f"in_channels must be 1 (magnitude) or 2 (complex), got {in_channels}")
    coil_images = ifft2c(batch.kspace)
    if batch.sens_maps is not None:
        image = sense_combine(coil_images, batch.sens_maps)
    elif coil_images.shape[1] == 1:
        image = coil_images[:, 0]
    else:
        raise ValueError("complex input from multi-coil k-space needs sens_maps (SliceDataset(sens_maps='espirit'))")
    return torch.stack([image.real, image.imag], dim=1).float()


def _pad_1d(n: int, scale: int, multiple: int) -> tuple[int, int, int, int]:
    """``(lr_before, lr_after, hr_before, hr_after)`` for one LR side ``n`` (see :class:`GridPadding`)."""
    offset = (scale * n) // 2 - scale * (n // 2)  # HR index of LR pixel 0 on the truncation grid
    before = 1 if offset else 0
    total = -(-(n + before) // multiple) * multiple
    hr_before = scale * before - offset
    return before, total - n - before, hr_before, scale * total - hr_before - scale * n


@dataclass(frozen=True)
class GridPadding:
    """Padding that runs a learned LR → HR network on the k-space truncation grid of an even LR side.

    :func:`accelmri.physics.degrade.lowres` keeps the k-space block centred on DC, so LR pixel ``i`` of a side of
    ``n`` LR pixels sits at HR pixel ``s·i + o`` with ``o = (s·n)//2 − s·(n//2)``: ``o = 0`` when ``n`` is even,
    ``o = s/2`` (even ``s``) or ``(s − 1)/2`` (odd ``s``) when ``n`` is odd. A network built from convolutions and
    sub-pixel or nearest upsampling maps LR pixel ``i`` to HR pixels ``s·i + δ`` with one offset ``δ`` it learns in
    training, i.e. on one convention; on the other parity its output would sit ``o`` HR pixels off (a whole pixel
    at 2×). This pads the LR input (edge replication) by one pixel before when ``o > 0`` and after up to a side
    that is a multiple of ``lcm(2, multiple)`` (even, so ``o = 0`` in the padded frame), pads HR inputs (e.g. the
    reference contrast) by the matching HR amounts, and crops the HR output back to ``s·n`` pixels so that LR pixel
    ``i`` lands on HR pixel ``s·i + o``. For an even side that is already a multiple nothing is padded and the
    network's output is returned unchanged. Convolutions being shift-equivariant, the padded network computes the
    same function of the image in both parities, up to the one-pixel boundary.

    Build it with :meth:`for_size`; fields are ``(top, bottom, left, right)`` pixel counts.
    """

    scale: int
    lr_pad: tuple[int, int, int, int]
    hr_pad: tuple[int, int, int, int]

    @classmethod
    def for_size(cls, lr_size: tuple[int, int] | torch.Size, scale: int, multiple: int = 1) -> GridPadding:
        """Padding for an LR image of ``lr_size = (h, w)`` pixels at SR scale ``scale``.

        Args:
            lr_size: LR side lengths ``(h, w)`` (≥ 1).
            scale: SR scale ``s`` (positive int; ``1`` pads only up to ``multiple``).
            multiple: the padded LR sides must be multiples of it (e.g. for pooling depth), ≥ 1.

        Raises:
            ValueError: ``scale`` or ``multiple`` not a positive int.
        """
        for name, value in (("scale", scale), ("multiple", multiple)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GridPadding: {name} must be a positive int, got {value!r}")
        step = math.lcm(2, multiple) if scale > 1 else multiple
        rows, cols = (_pad_1d(int(n), scale, step) for n in lr_size)
        return cls(scale, (rows[0], rows[1], cols[0], cols[1]), (rows[2], rows[3], cols[2], cols[3]))

    @property
    def identity(self) -> bool:
        """True when nothing is padded."""
        return not any(self.lr_pad) and not any(self.hr_pad)

    @staticmethod
    def _pad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
        if not any(pad):
            return x
        top, bottom, left, right = pad
        return F.pad(x, (left, right, top, bottom), mode="replicate")

    @staticmethod
    def _crop(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
        top, bottom, left, right = pad
        return x[..., top : x.shape[-2] - bottom, left : x.shape[-1] - right]

    def pad_lr(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` float → ``(B, C, h', w')`` by edge replication."""
        return self._pad(x, self.lr_pad)

    def pad_hr(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, s·h, s·w)`` float → ``(B, C, s·h', s·w')`` by edge replication, aligned with :meth:`pad_lr`."""
        return self._pad(x, self.hr_pad)

    def crop_lr(self, x: torch.Tensor) -> torch.Tensor:
        """``(…, h', w')`` → ``(…, h, w)``: undo :meth:`pad_lr`."""
        return self._crop(x, self.lr_pad)

    def crop_hr(self, x: torch.Tensor) -> torch.Tensor:
        """``(…, s·h', s·w')`` → ``(…, s·h, s·w)`` on the truncation grid of the unpadded LR image."""
        return self._crop(x, self.hr_pad)


def set_channels_last(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Store every 2-D convolution weight channels-last (NHWC) in place, or back to NCHW; returns ``model``.

    oneDNN then runs the convolutions in its native NHWC layout without reordering activations at every call
    (a CPU fast path; measured in ``docs/performance.md``). Conv outputs follow the weight's layout, so the
    inputs may stay NCHW. Only 4-D ``nn.Conv2d`` weights change (``Conv3d`` and other parameters keep their
    layout); values are untouched, so results differ from NCHW only by floating-point summation order.
    ``state_dict`` tensors keep the layout: save from an NCHW model (``enabled=False``) to write contiguous
    tensors.
    """
    layout = torch.channels_last if enabled else torch.contiguous_format
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.weight.data = module.weight.data.contiguous(memory_format=layout)
    return model
