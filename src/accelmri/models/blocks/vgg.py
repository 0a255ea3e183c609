"""VGG19 feature extractor in torchvision's module layout, with weights from a local file only.

:class:`VGG19Features` reproduces ``torchvision.models.vgg19().features`` index for index (Simonyan & Zisserman,
"Very deep convolutional networks for large-scale image recognition", ICLR 2015, configuration E): 3×3 convs at
indices 0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34, each followed by a ReLU, and 2×2 max pools at
4, 9, 18, 27, 36. A torchvision state dict therefore loads directly (keys ``features.N.weight`` / ``.bias``), but
torchvision itself is not needed (design/dependencies.md). Only the layers up to the deepest requested one are
built, so no layer runs whose output is unused.

ImageNet weights cannot be downloaded here: pass ``weights=PATH`` (a full ``vgg19`` state dict or the bare
``features`` dict). Uses: FASR-Net's texture extractor (paper 002, Sec. III-B, Fig. 3: relu1_2, relu2_2, relu3_2),
perceptual losses (papers 001, 002).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

__all__ = ["VGG19_LAYERS", "VGG19Features", "load_vgg19_weights"]

# Configuration "E" of Simonyan & Zisserman: output channels of each conv, "M" = 2×2 max pool.
_PLAN: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names() -> tuple[str, ...]:
    """Names of the 37 modules of ``vgg19().features`` in order: conv1_1, relu1_1, …, pool1, conv2_1, …, pool5."""
    names: list[str] = []
    block, index = 1, 1
    for item in _PLAN:
        if item == "M":
            names.append(f"pool{block}")
            block, index = block + 1, 1
        else:
            names += [f"conv{block}_{index}", f"relu{block}_{index}"]
            index += 1
    return tuple(names)


VGG19_LAYERS: tuple[str, ...] = _layer_names()
"""Layer names in the order (and at the indices) of torchvision's ``vgg19().features``."""


class VGG19Features(nn.Module):
    """VGG19 feature maps at named layers.

    Args:
        layers: names from :data:`VGG19_LAYERS` (e.g. ``relu1_2``), returned in network order.
        weights: path to a torchvision-layout VGG19 state dict (see :func:`load_vgg19_weights`); ``None`` = random
            initialisation (torchvision's: Kaiming-normal fan-out, zero bias).
        require_weights: refuse ``weights=None`` (for uses where a random network would be silently wrong).
        trainable: keep ``requires_grad`` on the parameters (fine-tuning, as FASR-Net's extractor); ``False``
            freezes them (perceptual losses).

    Input ``(B, 1, H, W)`` (repeated to 3 channels) or ``(B, 3, H, W)`` float images in [0, 1]-ish; the ImageNet
    mean/std normalisation is applied inside. Output: ``{name: (B, C_name, H / 2^p, W / 2^p)}`` with ``p`` the
    number of pools before the layer (floor division, as ``nn.MaxPool2d``). ``out_channels`` gives ``C_name`` per
    returned layer, in order.

    Raises:
        ValueError: unknown or no layer names; ``require_weights`` without ``weights``.
    """

    def __init__(
        self,
        layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_2"),
        weights: str | Path | None = None,
        require_weights: bool = False,
        trainable: bool = False,
    ) -> None:
        super().__init__()
        unknown = [name for name in layers if name not in VGG19_LAYERS]
        if unknown or not layers:
            raise ValueError(f"VGG19Features: unknown layers {unknown or '(none given)'}; valid: {VGG19_LAYERS}")
        if weights is None and require_weights:
            raise ValueError(
                "VGG19Features: ImageNet weights cannot be downloaded here; pass weights=PATH to a torchvision-layout "
                "VGG19 state dict (keys features.N.weight / features.N.bias)"
            )
        self.layers = tuple(sorted(set(layers), key=VGG19_LAYERS.index))
        depth = VGG19_LAYERS.index(self.layers[-1]) + 1
        modules: list[nn.Module] = []
        channels_after: list[int] = []  # output channels of each module
        channels = 3
        for item in _PLAN:
            if len(modules) >= depth:
                break
            if item == "M":
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
                channels_after.append(channels)
            else:
                modules += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU()]
                channels = int(item)
                channels_after += [channels, channels]
        self.features = nn.Sequential(*modules[:depth])
        self.out_channels = tuple(channels_after[VGG19_LAYERS.index(name)] for name in self.layers)
        for module in self.features:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if weights is not None:
            load_vgg19_weights(self, weights)
        self.requires_grad_(trainable)

    def forward(self, x: torch.Tensor, num_layers: int | None = None) -> dict[str, torch.Tensor]:
        """Feature maps of the requested layers (only the first ``num_layers`` of them, if given).

        Args:
            x: ``(B, 1, H, W)`` or ``(B, 3, H, W)`` float images.
            num_layers: compute only up to the ``num_layers``-th requested layer (deeper layers do not run).

        Returns:
            ``{name: (B, C, H', W')}`` in network order.

        Raises:
            ValueError: if ``x`` is not 4-D with 1 or 3 channels, or ``num_layers`` is out of range.
        """
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"VGG19Features expects (B, 1, H, W) or (B, 3, H, W), got {tuple(x.shape)}")
        if num_layers is not None and not 1 <= num_layers <= len(self.layers):
            raise ValueError(f"num_layers must be in 1..{len(self.layers)}, got {num_layers}")
        wanted = self.layers[:num_layers]
        indices = {VGG19_LAYERS.index(name): name for name in wanted}
        h = (x.expand(-1, 3, -1, -1) - self.mean) / self.std
        outputs: dict[str, torch.Tensor] = {}
        for index, module in enumerate(self.features[: max(indices) + 1]):
            h = module(h)
            if index in indices:
                outputs[indices[index]] = h
        return outputs


def load_vgg19_weights(module: VGG19Features, path: str | Path) -> None:
    """Load torchvision-layout VGG19 weights into ``module`` (in place).

    Accepts a full ``torchvision.models.vgg19`` state dict (``features.N.*`` and ``classifier.*`` keys; the
    classifier and any layer deeper than ``module`` are ignored) or the bare ``features`` state dict (``N.*``).
    Read with ``torch.load(path, map_location="cpu", weights_only=True)``.

    Raises:
        FileNotFoundError: no file at ``path``.
        KeyError: keys the module needs are missing from the file (the message names the file and the keys).
        ValueError: a tensor has the wrong shape.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VGG19 weights file not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not any(key.startswith("features.") for key in state):
        state = {f"features.{key}": value for key, value in state.items()}
    own = module.state_dict()
    missing = [key for key in own if key not in state]
    if missing:
        raise KeyError(f"VGG19 weights file {path} lacks keys {missing} (expected torchvision layout features.N.*)")
    wrong = [f"{key}: {tuple(state[key].shape)} != {tuple(own[key].shape)}" for key in own
             if state[key].shape != own[key].shape]
    if wrong:
        raise ValueError(f"VGG19 weights file {path} has tensors of the wrong shape: {wrong}")
    module.load_state_dict({key: state[key] for key in own})
