"""Models: registered by name, ``build(name, **cfg)`` returns an ``nn.Module`` with ``forward(batch) -> Prediction``.

Importing this package registers every model.
"""

from accelmri.models.base import Prediction, check_batch, network_input
from accelmri.models.registry import available, build, register

__all__ = ["Prediction", "available", "build", "check_batch", "network_input", "register"]
