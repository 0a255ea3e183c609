"""A third-party package that adds a model to accelmri through the ``accelmri.models`` entry-point group
(tests/test_plugins.py puts this folder on ``sys.path``; its ``.dist-info`` declares the entry points)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from accelmri.models.base import Prediction


class NearestSR(nn.Module):
    """Nearest-neighbour upsampling of ``lr_input`` plus one learnable 3×3 convolution (a residual)."""

    def __init__(self, scale: int = 2, channels: int = 4) -> None:
        super().__init__()
        self.scale = scale
        self.body = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, 1, 3, padding=1))

    def forward(self, batch: object) -> Prediction:
        up = F.interpolate(batch.lr_input, scale_factor=self.scale, mode="nearest")  # type: ignore[attr-defined]
        return Prediction(image=up + self.body(up))


BROKEN: torch.Tensor = torch.zeros(())  # not a factory: the ``not_a_factory`` entry point names it
