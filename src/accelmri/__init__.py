"""accelmri — a PyTorch toolkit for accelerated MRI.

Layers (imports point down only): ``physics`` ← ``data`` ← ``models`` ← ``engine`` ← ``cli``;
``metrics`` is standalone. :func:`load` is the one-line entry to a trained model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

__version__ = "0.1.0"
__all__ = ["__version__", "load"]


def load(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The ready model (``eval()`` mode, on ``device``) of an export folder (``accelmri export``), a checkpoint or
    a run folder; see :func:`accelmri.engine.export.load`.

    Raises:
        accelmri.data.errors.DataError: unreadable or not an accelmri model.
        accelmri.engine.config.ConfigError: its stored config does not parse.
    """
    from accelmri.engine.export import load as load_model  # lazy: ``import accelmri`` stays light

    return load_model(path, device)
