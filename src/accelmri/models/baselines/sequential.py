"""Sequential reconstruction → super-resolution: any reconstruction model followed by any SR model.

The two-stage baselines of the joint papers: T2Net's "Com-A…D" rows (a reconstruction network followed by an SR
network, paper 000), paper 001's "Recon-SR" (trained separately) and "Recon+SR" (trained end to end) ablations
and its {CG-SENSE, MoDL} × {bicubic, SR network} baselines.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal, get_args

from torch import nn

from accelmri.models.base import Prediction
from accelmri.models.registry import build, register

if TYPE_CHECKING:
    from accelmri.data.sample import Sample

__all__ = ["Sequential"]

TrainMode = Literal["end_to_end", "separate"]


def _model(spec: nn.Module | dict[str, Any], role: str) -> nn.Module:
    """A model given as a module or as a registry config ``{"name": ..., **kwargs}``."""
    if isinstance(spec, nn.Module):
        return spec
    if "name" not in spec:
        raise ValueError(f"Sequential: the {role} config needs a 'name' key, got {sorted(spec)}")
    config = dict(spec)
    return build(config.pop("name"), **config)


@register("sequential")
class Sequential(nn.Module):
    """``rec`` on the batch, then ``sr`` on a copy of the batch whose ``lr_input`` is ``rec``'s LR reconstruction.

    ``rec`` must output an LR image: its ``lr_image``, else its ``image``, of the shape of ``lr_input``
    ``(B, 1, h, w)`` (e.g. ``zero_filled``/``cg_sense``/``modl``/``unet`` with scale 1, or their LR output at any
    scale). Outputs ``image = sr.image (B, 1, H, W)`` and ``lr_image`` = that LR reconstruction, so a joint loss
    supervises both stages; ``extras`` keep both stages' extras, prefixed ``rec.`` and ``sr.``.

    Args:
        rec: the reconstruction model, or its registry config ``{"name": ..., **kwargs}``.
        sr: the super-resolution model (reads ``lr_input``, and e.g. ``reference``), or its config.
        train_mode: ``"end_to_end"`` lets the SR loss reach ``rec`` ("Recon+SR"); ``"separate"`` detaches the
            reconstruction before ``sr``, so ``rec`` learns only from the LR loss and ``sr`` only from the HR loss
            ("Recon-SR": two separately trained stages, here trained in one run).

    Raises:
        ValueError: unknown ``train_mode`` or a config without ``name``. KeyError: an unregistered model name.
    """

    def __init__(
        self, rec: nn.Module | dict[str, Any], sr: nn.Module | dict[str, Any], train_mode: TrainMode = "end_to_end"
    ) -> None:
        super().__init__()
        if train_mode not in get_args(TrainMode):
            raise ValueError(f"train_mode must be one of {get_args(TrainMode)}, got {train_mode!r}")
        self.rec = _model(rec, "rec")
        self.sr = _model(sr, "sr")
        self.train_mode = train_mode
        fields = (*getattr(self.rec, "required_fields", ()), *getattr(self.sr, "required_fields", ()))
        self.required_fields: tuple[str, ...] = tuple(dict.fromkeys(fields))

    def forward(self, batch: Sample) -> Prediction:
        """Run both stages.

        Raises:
            ValueError: ``rec``'s LR output does not have the shape of ``lr_input``.
        """
        rec = self.rec(batch)
        lr_image = rec.lr_image if rec.lr_image is not None else rec.image
        if lr_image.shape != batch.lr_input.shape:
            raise ValueError(
                f"Sequential: the reconstruction model's LR output {tuple(lr_image.shape)} does not match lr_input "
                f"{tuple(batch.lr_input.shape)}; use a reconstruction model that outputs the LR image"
            )
        sr_input = lr_image.detach() if self.train_mode == "separate" else lr_image
        sr = self.sr(dataclasses.replace(batch, lr_input=sr_input))
        extras = {f"rec.{key}": value for key, value in rec.extras.items()}
        extras |= {f"sr.{key}": value for key, value in sr.extras.items()}
        return Prediction(image=sr.image, lr_image=lr_image, extras=extras)
