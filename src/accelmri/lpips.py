"""LPIPS perceptual distance (AlexNet, v0.1), with weights from local files only.

Source: Zhang, Isola, Efros, Shechtman & Wang, "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric", CVPR 2018, Eq. 1, in the variant the authors' ``lpips`` package uses by default (``net="alex"``,
``version="0.1"``)::

    d(x, y) = Σ_l  1 / (H_l W_l)  Σ_{h,w}  Σ_c  w_l,c · (x̂_l[c, h, w] − ŷ_l[c, h, w])²

with ``x̂_l`` the activations of layer ``l`` unit-normalised over channels at every pixel
(``f / (‖f‖₂ + 1e-10)``), ``w_l ≥ 0`` one weight per channel (a 1×1 convolution without bias applied to the squared
difference) and the layers the five ReLU outputs of AlexNet's ``features`` trunk (channels 64, 192, 384, 256, 256).
The paper writes the weighting as ``‖w_l ⊙ (x̂_l − ŷ_l)‖²``; the released code (and so its weights) multiplies the
squared difference by ``w_l``, as here.
The inputs are RGB images in [-1, 1], shifted and scaled per channel by LPIPS's ``ScalingLayer``
(shift ``(-0.030, -0.088, -0.188)``, scale ``(0.458, 0.448, 0.450)``) before the trunk.

Pretrained weights cannot be downloaded here: :meth:`LPIPS.from_files` reads a torchvision AlexNet state dict
(ImageNet) and the ``lpips`` package's ``weights/v0.1/alex.pth`` (see ``docs/metrics.md`` for how to obtain both).

Grey MRI volumes (:func:`lpips_volume`) are replicated to three channels and mapped to [-1, 1] with the data range
of the target volume, as PSNR and SSIM use it (``accelmri.metrics``): ``x / max(target) * 2 - 1``; values are not
clamped by default, so LPIPS sees the same overshoot and negative values the other metrics do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from accelmri.data.errors import DataError

__all__ = ["ALEXNET_CHANNELS", "LPIPS", "LPIPS_MIN_SIZE", "lpips_volume"]

#: Channels of the five AlexNet ReLU outputs LPIPS compares (``features.1, 4, 7, 9, 11``).
ALEXNET_CHANNELS: tuple[int, ...] = (64, 192, 384, 256, 256)

#: Smallest image height and width the AlexNet trunk accepts (two 3×3 stride-2 max pools after a stride-4 conv).
LPIPS_MIN_SIZE = 31

# torchvision's alexnet().features up to the last ReLU: (index, in, out, kernel, stride, padding) of each conv;
# max pools (3, stride 2) at 2 and 5; ReLUs after each conv; LPIPS taps the ReLUs at 1, 4, 7, 9, 11.
_CONVS: tuple[tuple[int, int, int, int, int, int], ...] = (
    (0, 3, 64, 11, 4, 2),
    (3, 64, 192, 5, 1, 2),
    (6, 192, 384, 3, 1, 1),
    (8, 384, 256, 3, 1, 1),
    (10, 256, 256, 3, 1, 1),
)
_TAPS = (1, 4, 7, 9, 11)
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10  # lpips.normalize_tensor


def _alexnet_features() -> nn.Sequential:
    modules: list[nn.Module] = []
    for index, cin, cout, kernel, stride, padding in _CONVS:
        while len(modules) < index:
            modules.append(nn.MaxPool2d(kernel_size=3, stride=2))
        modules += [nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding), nn.ReLU()]
    return nn.Sequential(*modules)


def _read_state(path: Path, what: str) -> Mapping[str, object]:
    """The tensors of a ``torch.save`` (``weights_only``) or ``.safetensors`` file, as a mapping."""
    if not path.is_file():
        raise DataError(path, f"{what} weights file not found")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state: object = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch/pickle/safetensors raise assorted types for unreadable files
        raise DataError(path, f"cannot read the {what} weights ({type(err).__name__}: {err})") from err
    if not isinstance(state, Mapping):
        raise DataError(path, f"{what} weights: expected a state dict (name → tensor), got {type(state).__name__}")
    return state


def _take(state: Mapping[str, object], key: str, shape: tuple[int, ...], path: Path, what: str,
          expected: str) -> torch.Tensor:
    """``state[key]``, checked: present, a finite floating tensor of ``shape``."""
    if key not in state:
        raise DataError(path, f"{what} weights lack the key {key!r} (expected {expected})")
    value = state[key]
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise DataError(path, f"{what} weights: key {key!r} is not a floating-point tensor")
    if tuple(value.shape) != shape:
        raise DataError(path, f"{what} weights: key {key!r} has shape {tuple(value.shape)}, expected {shape}")
    if not torch.isfinite(value).all():
        raise DataError(path, f"{what} weights: key {key!r} has non-finite values")
    return value


class LPIPS(nn.Module):
    """LPIPS distance with the AlexNet trunk (v0.1), Zhang et al. CVPR 2018, Eq. 1.

    ``LPIPS()`` is only the architecture (PyTorch's default random initialisation, linear weights 1/C): not a
    metric. Use :meth:`from_files` for the published weights. Parameters never require gradients; the forward pass
    is differentiable with respect to the images. The module has no dropout or batch norm, so train/eval mode does
    not matter.

    Attributes:
        features: AlexNet's ``features`` trunk up to its last ReLU, in torchvision's layout (indices 0–11).
        lins: the five non-negative 1×1 channel weightings ``w_l`` (``Conv2d(C_l, 1, 1, bias=False)``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = _alexnet_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in ALEXNET_CHANNELS)
        for lin, channels in zip(self.lins, ALEXNET_CHANNELS, strict=True):
            nn.init.constant_(lin.weight, 1.0 / channels)
        self.requires_grad_(False)

    @classmethod
    def from_files(cls, backbone: str | Path, linear: str | Path) -> LPIPS:
        """LPIPS with weights read from local files (CPU, float32).

        Args:
            backbone: a torchvision AlexNet state dict (``alexnet(weights="IMAGENET1K_V1").state_dict()`` saved with
                ``torch.save``), keys ``features.N.weight`` / ``features.N.bias`` for N in 0, 3, 6, 8, 10; other keys
                (``classifier.*``) are ignored. The bare ``features`` state dict (keys ``N.weight``) is accepted too.
            linear: the ``lpips`` package's ``weights/v0.1/alex.pth``: keys ``lin0.model.1.weight`` …
                ``lin4.model.1.weight`` of shapes ``(1, C_l, 1, 1)``, non-negative; other keys are ignored.

            Both are read with ``torch.load(path, map_location="cpu", weights_only=True)``, or with
            ``safetensors.torch.load_file`` when the suffix is ``.safetensors``.

        Raises:
            DataError: a file is missing or unreadable, is not a state dict, or lacks a key / has a tensor of the
                wrong shape, a non-floating or non-finite tensor, or a negative linear weight; the message names the
                file and the key (the CLI exits with code 2).
        """
        backbone, linear = Path(backbone), Path(linear)
        model = cls()
        state = _read_state(backbone, "AlexNet backbone")
        if not any(key.startswith("features.") for key in state):
            state = {f"features.{key}": value for key, value in state.items()}
        expected = "a torchvision AlexNet state dict: features.N.weight / features.N.bias, N in 0, 3, 6, 8, 10"
        loaded: dict[str, torch.Tensor] = {}
        for index, cin, cout, kernel, _, _ in _CONVS:
            loaded[f"features.{index}.weight"] = _take(state, f"features.{index}.weight", (cout, cin, kernel, kernel),
                                                       backbone, "AlexNet backbone", expected)
            loaded[f"features.{index}.bias"] = _take(state, f"features.{index}.bias", (cout,), backbone,
                                                     "AlexNet backbone", expected)
        state = _read_state(linear, "LPIPS linear")
        expected = "the lpips package's weights/v0.1/alex.pth: lin0.model.1.weight … lin4.model.1.weight"
        for layer, channels in enumerate(ALEXNET_CHANNELS):
            key = f"lin{layer}.model.1.weight"
            weight = _take(state, key, (1, channels, 1, 1), linear, "LPIPS linear", expected)
            if (weight < 0).any():
                raise DataError(linear, f"LPIPS linear weights: key {key!r} has negative values (LPIPS weights are "
                                "non-negative)")
            loaded[f"lins.{layer}.weight"] = weight
        model.load_state_dict(loaded)
        return model

    def _activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        shift = torch.tensor(_SHIFT, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        scale = torch.tensor(_SCALE, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        h = (x.expand(-1, 3, -1, -1) - shift) / scale
        taps = []
        for index, module in enumerate(self.features):
            h = module(h)
            if index in _TAPS:
                taps.append(h)
        return taps

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distances between two image batches.

        Args:
            x: ``(N, 1, H, W)`` grey (replicated to RGB) or ``(N, 3, H, W)`` RGB floating-point images in [-1, 1]
                (values outside are used as given), ``H, W >= LPIPS_MIN_SIZE`` (31), on the module's device;
                computed in the module's dtype (float32 unless converted).
            y: the same shape.

        Returns:
            ``(N,)`` distances in the module's dtype, ``>= 0``; exactly 0 for identical images, symmetric in
            ``x`` and ``y``.

        Raises:
            ValueError: shapes differ, are not 4-D with 1 or 3 channels, or are smaller than 31×31; non-floating
                input.
        """
        if x.shape != y.shape:
            raise ValueError(f"LPIPS: images of different shapes {tuple(x.shape)} and {tuple(y.shape)}")
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"LPIPS expects (N, 1, H, W) or (N, 3, H, W) images, got {tuple(x.shape)}")
        if not (x.is_floating_point() and y.is_floating_point()):
            raise ValueError(f"LPIPS expects floating-point images, got {x.dtype} and {y.dtype}")
        if min(x.shape[-2:]) < LPIPS_MIN_SIZE:
            raise ValueError(f"LPIPS (AlexNet) needs images of at least {LPIPS_MIN_SIZE}×{LPIPS_MIN_SIZE}, got "
                             f"{tuple(x.shape[-2:])}")
        dtype = self.lins[0].weight.dtype
        total = x.new_zeros(x.shape[0], dtype=dtype)
        for lin, fx, fy in zip(self.lins, self._activations(x.to(dtype)), self._activations(y.to(dtype)), strict=True):
            nx = fx / (fx.pow(2).sum(dim=1, keepdim=True).sqrt() + _EPS)
            ny = fy / (fy.pow(2).sum(dim=1, keepdim=True).sqrt() + _EPS)
            total = total + lin((nx - ny) ** 2).mean(dim=(1, 2, 3))
        return total


def _as_volume(value: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(value)
    if tensor.is_complex():
        raise TypeError(f"lpips_volume: {name} is complex; pass magnitude images (.abs())")
    if tensor.ndim == 2:
        tensor = tensor[None]
    if tensor.ndim != 3:
        raise ValueError(f"lpips_volume: {name} must be (S, H, W) or (H, W), got {tuple(tensor.shape)}")
    tensor = tensor.to(torch.float64)
    if not torch.isfinite(tensor).all():
        raise ValueError(f"lpips_volume: {name} has NaN or infinite values")
    return tensor


@torch.no_grad()
def lpips_volume(
    model: LPIPS,
    target: torch.Tensor | np.ndarray,
    prediction: torch.Tensor | np.ndarray,
    *,
    batch_size: int = 16,
    clamp: bool = False,
) -> float:
    """Mean LPIPS over the slices of a grey volume against its target (Zhang et al. CVPR 2018, Eq. 1).

    Both volumes are mapped to [-1, 1] with the target's data range (``accelmri.metrics`` convention):
    ``x / max(target) * 2 - 1`` (computed in float64, then cast to the model's dtype), replicated to three channels
    and scored slice by slice with :class:`LPIPS`, ``batch_size`` slices per forward pass on the model's device
    (memory is bounded by the batch, not the volume).

    Args:
        model: the LPIPS metric (:meth:`LPIPS.from_files`).
        target: ``(S, H, W)`` (or ``(H, W)``) real magnitude volume, any real dtype, ``H, W >= 31``.
        prediction: the same shape.
        batch_size: slices per forward pass (``>= 1``).
        clamp: clamp both mapped volumes to [-1, 1] (i.e. values to ``[0, max(target)]``) first; off by default,
            so overshoot is penalised as PSNR and SSIM penalise it.

    Returns:
        The mean over slices of the per-slice distances (float, ``>= 0``; 0 for identical volumes).

    Raises:
        TypeError: complex input.
        ValueError: shape mismatch, not 2-D/3-D, NaN/inf values, ``max(target) <= 0``, images smaller than 31×31,
            or ``batch_size < 1``.
    """
    if batch_size < 1:
        raise ValueError(f"lpips_volume: batch_size must be >= 1, got {batch_size}")
    gt, pred = _as_volume(target, "target"), _as_volume(prediction, "prediction")
    if gt.shape != pred.shape:
        raise ValueError(f"lpips_volume: target {tuple(gt.shape)} and prediction {tuple(pred.shape)} differ in shape")
    data_range = float(gt.max())
    if data_range <= 0:
        raise ValueError(f"lpips_volume: the target's maximum is {data_range}; LPIPS needs a positive data range")
    parameter = next(model.parameters())
    scaled = [v / data_range * 2 - 1 for v in (gt, pred)]
    if clamp:
        scaled = [v.clamp(-1.0, 1.0) for v in scaled]
    distances = []
    for start in range(0, gt.shape[0], batch_size):
        a, b = (v[start : start + batch_size, None].to(device=parameter.device, dtype=parameter.dtype) for v in scaled)
        distances += model(a, b).double().cpu().tolist()
    return math.fsum(distances) / len(distances)
