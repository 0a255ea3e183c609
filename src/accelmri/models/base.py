"""What every model shares: the named output (:class:`Prediction`) and the batch-field contract.

A model is an ``nn.Module`` whose ``forward(batch: Sample) -> Prediction`` reads batch fields by name
(ARCHITECTURE.md). It declares ``required_fields`` so the engine can refuse an incompatible dataset
before training (:func:`check_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from accelmri.physics.coils import sense_combine
from accelmri.physics.fft import ifft2c

if TYPE_CHECKING:  # models read the batch contract by attribute; the import is for type checkers only
    from accelmri.data.sample import Sample

__all__ = ["Prediction", "check_batch", "network_input", "set_channels_last"]


@dataclass(eq=False)
class Prediction:
    """Named model outputs (normalised units, like the batch).

    Attributes:
        image: the restored HR target ``(B, 1, H, W)`` float32.
        lr_image: the reconstructed LR image ``(B, 1, h, w)`` (joint models' Rec branch), if any.
        reference_image: the reconstructed reference ``(B, 1, H, W)`` (MINet/SANet auxiliary output), if any.
        extras: further named tensors (attention maps, DEQ statistics, …).
    """

    image: torch.Tensor
    lr_image: torch.Tensor | None = None
    reference_image: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


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
