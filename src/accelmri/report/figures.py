"""Example figures: input, every method and the ground truth of a few slices, with zoomed crops and error maps.

Restored example slices are exchanged as ``examples.npz`` (:data:`EXAMPLES_FILE`, written by :func:`save_examples`
into an evaluation folder), a NumPy ``.npz`` archive of float arrays in the data's original intensity units:

==============  ====================  ===============================================================
array           shape                 meaning
==============  ====================  ===============================================================
``input``       ``(N, h, w)``         the network input (zero-filled LR magnitude; may be the LR grid)
``target``      ``(N, H, W)``         the fully sampled ground truth
any other name  ``(N, H, W)``         one method's restored slices; the array name is the method name
==============  ====================  ===============================================================

:func:`save_example_figures` draws one PNG per chosen slice with matplotlib's Agg canvas (no pyplot, no display):
columns input · methods · ground truth; rows the full slice (the crop outlined), the zoomed crop, and the error map
``|method − ground truth|`` on one colour scale for all methods (the input's too when it is on the target grid).
A coarser input is drawn on the target's pixel coordinates with the geometry of centred k-space truncation
(:func:`accelmri.engine.restore.restored_affine`). Titles give each method's PSNR on that slice (data range: the
slice's maximum; none for an empty slice). The crop is the window of a quarter of the image size with the most edge
energy in the ground truth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from scipy import ndimage

from accelmri.data.errors import DataError
from accelmri.io import atomic_output
from accelmri.metrics import psnr

__all__ = [
    "EXAMPLES_FILE",
    "Examples",
    "chosen_slices",
    "crop_window",
    "example_figure",
    "figure_paths",
    "load_examples",
    "save_example_figures",
    "save_examples",
]

#: File name of the restored example slices inside an evaluation folder.
EXAMPLES_FILE = "examples.npz"

_RESERVED = ("input", "target")


@dataclass(frozen=True, eq=False)
class Examples:
    """Restored example slices (see the module table).

    Attributes:
        input: ``(N, h, w)`` float32 network input.
        target: ``(N, H, W)`` float32 ground truth.
        outputs: ``{method: (N, H, W) float32}`` in file order.
    """

    input: np.ndarray
    target: np.ndarray
    outputs: dict[str, np.ndarray]


def _check(source: Path | str, input: np.ndarray, target: np.ndarray, outputs: Mapping[str, np.ndarray]) -> None:
    if target.ndim != 3 or target.shape[0] == 0:
        raise DataError(source, f"'target' must be (N, H, W) with N >= 1, got shape {target.shape}")
    if input.ndim != 3 or input.shape[0] != target.shape[0]:
        raise DataError(source, f"'input' must be ({target.shape[0]}, h, w) like 'target', got shape {input.shape}")
    for name, array in outputs.items():
        if array.shape != target.shape:
            raise DataError(source, f"method {name!r} has shape {array.shape}, 'target' {target.shape}")
    for name, array in {"input": input, "target": target, **outputs}.items():
        if not np.isfinite(array).all():
            raise DataError(source, f"{name!r} contains NaN or Inf")


def save_examples(
    path: str | Path,
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    outputs: Mapping[str, npt.ArrayLike],
    overwrite: bool = False,
) -> Path:
    """Write ``examples.npz`` atomically (compressed, float32; see the module table).

    Raises:
        DataError: shapes that do not match, NaN/Inf, or a method named ``input`` or ``target``.
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    arrays = {name: np.asarray(a, dtype=np.float32) for name, a in outputs.items()}
    clash = sorted(set(arrays) & set(_RESERVED))
    if clash:
        raise DataError(path, f"method names {clash} are reserved for the input and the ground truth")
    input_array, target_array = np.asarray(input, dtype=np.float32), np.asarray(target, dtype=np.float32)
    _check(path, input_array, target_array, arrays)
    with atomic_output(path, overwrite=overwrite) as tmp, tmp.open("wb") as handle:
        np.savez_compressed(handle, input=input_array, target=target_array, **arrays)
    return path


def load_examples(path: str | Path) -> Examples:
    """Read ``examples.npz`` (no pickled objects are loaded).

    Raises:
        DataError: unreadable file, a missing ``input``/``target``, no method, or arrays that do not match.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: np.asarray(archive[name], dtype=np.float32) for name in archive.files}
    except (OSError, ValueError, EOFError) as err:
        raise DataError(path, f"not a readable examples archive ({type(err).__name__}: {err})") from err
    missing = [name for name in _RESERVED if name not in arrays]
    if missing:
        raise DataError(path, f"missing arrays {missing} (found {sorted(arrays)})")
    input, target = arrays.pop("input"), arrays.pop("target")
    if not arrays:
        raise DataError(path, "holds no method output besides 'input' and 'target'")
    _check(path, input, target, arrays)
    return Examples(input, target, arrays)


def crop_window(target: np.ndarray, fraction: float = 0.25) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of the window (``fraction`` of each side, at least 8 pixels) of ``target``
    ``(H, W)`` whose mean gradient magnitude is largest: the most detailed region, deterministic."""
    height, width = target.shape
    ch, cw = min(height, max(8, round(height * fraction))), min(width, max(8, round(width * fraction)))
    gradient = np.hypot(*np.gradient(target.astype(np.float64)))
    energy = ndimage.uniform_filter(gradient, size=(ch, cw), mode="constant")
    top0, left0 = ch // 2, cw // 2  # window centres that keep the window inside the image
    valid = energy[top0 : top0 + height - ch + 1, left0 : left0 + width - cw + 1]
    top, left = np.unravel_index(int(np.argmax(valid)), valid.shape)
    return int(top), int(left), ch, cw


def _extent(shape: tuple[int, ...], target_shape: tuple[int, ...]) -> tuple[float, float, float, float]:
    """``imshow`` extent of an image in target pixel coordinates: a coarser grid shares the DFT centre pixel
    (``n // 2`` ↔ ``N // 2``, the geometry of centred k-space truncation and of ``accelmri restore``)."""
    edges = []
    for n, big in zip(shape, target_shape, strict=True):
        step = big / n
        edges.append(((-0.5 - n // 2) * step + big // 2, (n - 0.5 - n // 2) * step + big // 2))
    (top, bottom), (left, right) = edges
    return left, right, bottom, top


def example_figure(examples: Examples, index: int, title: str = "") -> Figure:
    """The figure of slice ``index`` (see the module docstring), on an Agg canvas."""
    target = examples.target[index]
    lr = examples.input[index]
    columns: list[tuple[str, np.ndarray, bool]] = [("input", lr, lr.shape == target.shape)]
    columns += [(name, output[index], True) for name, output in examples.outputs.items()]
    columns.append(("ground truth", target, False))
    errors = {name: np.abs(image - target) for name, image, scored in columns if scored}
    vmax_image = float(np.percentile(target, 99.5)) or float(target.max()) or 1.0
    vmax_error = float(np.percentile(np.stack(list(errors.values())), 99.5)) or vmax_image / 10
    top, left, ch, cw = crop_window(target)

    figure = Figure(figsize=(2.2 * len(columns) + 0.8, 7.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(3, len(columns), squeeze=False)
    error_image = None
    for column, (name, image, scored) in enumerate(columns):
        label = f"{name}\n{psnr(target, image):.2f} dB" if scored and target.max() > 0 else name
        for row in (0, 1):
            ax = axes[row, column]
            ax.imshow(image, cmap="gray", vmin=0.0, vmax=vmax_image, extent=_extent(image.shape, target.shape),
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, column].set_title(label, fontsize=9)
        axes[0, column].add_patch(Rectangle((left - 0.5, top - 0.5), cw, ch, fill=False, edgecolor="yellow", lw=1))
        axes[1, column].set_xlim(left - 0.5, left + cw - 0.5)
        axes[1, column].set_ylim(top + ch - 0.5, top - 0.5)
        error_ax = axes[2, column]
        error_ax.set_xticks([])
        error_ax.set_yticks([])
        if name in errors:
            error_image = error_ax.imshow(errors[name], cmap="inferno", vmin=0.0, vmax=vmax_error,
                                          extent=_extent(target.shape, target.shape), interpolation="nearest")
        else:
            error_ax.set_axis_off()
    axes[1, 0].set_ylabel("zoom", fontsize=9)
    axes[2, 0 if lr.shape == target.shape else 1].set_ylabel("|error|", fontsize=9)
    if error_image is not None:
        figure.colorbar(error_image, ax=list(axes[2]), shrink=0.8, label="|method − ground truth|")
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def chosen_slices(count: int, max_slices: int) -> list[int]:
    """Up to ``max_slices`` evenly spaced indices of ``count`` slices (first and last included).

    Raises:
        ValueError: ``max_slices < 1``.
    """
    if max_slices < 1:
        raise ValueError(f"max_slices must be >= 1, got {max_slices}")
    return sorted({int(i) for i in np.linspace(0, count - 1, min(count, max_slices)).round()})


def figure_paths(examples: Examples, out_dir: str | Path, prefix: str, max_slices: int = 3) -> list[Path]:
    """The files :func:`save_example_figures` writes: ``<out_dir>/<prefix>_slice<i>.png`` per chosen slice."""
    return [Path(out_dir) / f"{prefix}_slice{i}.png" for i in chosen_slices(examples.target.shape[0], max_slices)]


def save_example_figures(
    examples: Examples,
    out_dir: str | Path,
    prefix: str,
    max_slices: int = 3,
    overwrite: bool = False,
    title: str = "",
) -> list[Path]:
    """Draw up to ``max_slices`` evenly spaced example slices and write them as PNGs, atomically.

    Args:
        examples: the slices (:func:`load_examples`).
        out_dir: the folder (must exist).
        prefix: file name prefix (:func:`figure_paths`).
        max_slices: most slices drawn.
        overwrite: replace existing PNGs.
        title: figure title (``"<title> — example <i>"``).

    Returns:
        The written PNG files.

    Raises:
        ValueError: ``max_slices < 1``.
        FileExistsError: a PNG exists and ``overwrite`` is false (checked before drawing).
    """
    paths = figure_paths(examples, out_dir, prefix, max_slices)
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)}: already exists (pass overwrite / --overwrite to replace)")
    for index, path in zip(chosen_slices(examples.target.shape[0], max_slices), paths, strict=True):
        figure = example_figure(examples, index, f"{title} — example {index}" if title else f"example {index}")
        with atomic_output(path, overwrite=overwrite) as tmp:
            figure.savefig(tmp, format="png", dpi=100)
    return paths
