"""Models: registered by name, ``build(name, **cfg)`` returns an ``nn.Module`` with ``forward(batch) -> Prediction``.

Importing this package registers every model.
"""

# Imported for their side effect: each module registers its models.
from accelmri.models import fasrnet, minet, pgd_sft, sanet, t2net  # noqa: F401
from accelmri.models.base import Prediction, check_batch, network_input
from accelmri.models.baselines import (  # noqa: F401
    cg_sense,
    early_fusion,
    edsr,
    interpolation,
    modl,
    sequential,
    unet,
    zero_filled,
)
from accelmri.models.registry import available, build, register

__all__ = ["Prediction", "available", "build", "check_batch", "network_input", "register"]
