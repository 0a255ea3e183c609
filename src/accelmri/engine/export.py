"""Shareable models: export a trained checkpoint as a folder without pickle, and load it back.

An export folder holds

===================  ==========================================================================================
``model.safetensors`` the model's weights (``safetensors``: tensors only, nothing executable)
``config.json``       ``format`` (:data:`EXPORT_FORMAT`), ``version`` (accelmri's), ``config`` (the experiment
                      config that rebuilds the model and its acquisition: data, model, loss, ...),
                      ``target_contrasts`` / ``reference_contrast`` / ``reference_contrasts`` (what it was trained
                      on), ``step`` (training steps), ``metrics`` (the checkpoint's latest validation, or ``null``),
                      ``parameters`` (trainable parameter count) and ``source`` (the checkpoint's file name)
``README.md``         a model card: method and paper, training data and acquisition, validation metrics, data
                      licence note, and how to load it
===================  ==========================================================================================

:func:`export_model` writes it from a checkpoint or a run folder (its ``best.pt`` when there is one, else
``last.pt``); :func:`load_export` / :func:`load` read it back. ``accelmri restore``, ``evaluate`` and ``realscan``
accept an export folder wherever they accept a checkpoint (:func:`accelmri.engine.evaluate.load_method`).
Loading an export never unpickles anything: the weights are safetensors and the rest is JSON.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from accelmri import __version__
from accelmri.data.errors import DataError
from accelmri.engine.build import build_model
from accelmri.engine.checkpoint import load_checkpoint, load_weights
from accelmri.engine.config import ExperimentConfig, parse_config
from accelmri.engine.contrast import trained_contrasts

__all__ = ["CONFIG_FILE", "EXPORT_FORMAT", "WEIGHTS_FILE", "export_model", "is_export", "load", "load_export",
           "read_export_metadata", "run_checkpoint"]

#: ``format`` of an export's ``config.json``.
EXPORT_FORMAT = "accelmri-export-1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is an export folder (a folder with ``config.json`` and ``model.safetensors``)."""
    path = Path(path)
    return path.is_dir() and (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def run_checkpoint(source: str | Path) -> Path:
    """The checkpoint a run folder or file names: a file is itself; a run folder gives ``best.pt`` if it exists,
    else ``last.pt``.

    Raises:
        DataError: a folder with neither, or a path that does not exist.
    """
    source = Path(source)
    if source.is_dir():
        for name in ("best.pt", "last.pt"):
            if (source / name).is_file():
                return source / name
        raise DataError(source, "a folder without best.pt or last.pt: not a run folder of accelmri train")
    if not source.exists():
        raise DataError(source, "does not exist")
    return source


def export_model(source: str | Path, out: str | Path) -> Path:
    """Export the checkpoint (or run folder, :func:`run_checkpoint`) ``source`` into the new folder ``out``.

    The folder is written under a temporary name beside ``out`` and renamed when complete: it appears whole or
    not at all. The weights are checked against the model the stored config builds before anything is written.

    Returns:
        ``out``.

    Raises:
        FileExistsError: ``out`` exists (nothing a user has is overwritten).
        DataError: ``source`` is no readable accelmri checkpoint, has no config, or its weights do not fit.
        ConfigError: its stored config does not parse.
    """
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out}: already exists; choose a new export folder")
    path = run_checkpoint(source)
    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint.get("config"), dict):
        raise DataError(path, "holds no training config ('config'): not a checkpoint written by accelmri train")
    config = parse_config(checkpoint["config"], source=f"{path} (stored config)")
    model = build_model(config.model, config.data.acquisition.scale, config.source)
    load_weights(model, checkpoint.get("model"), path, config.model.name)
    # clone: safetensors refuses tensors that share storage (tied or viewed weights)
    weights = {key: value.detach().cpu().contiguous().clone() for key, value in model.state_dict().items()}
    contrasts = trained_contrasts(checkpoint["config"])
    metadata: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "version": __version__,
        **contrasts,
        "step": checkpoint.get("step"),
        "metrics": _summary(checkpoint.get("metrics")),
        "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "source": path.name,
        "config": checkpoint["config"],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir()
    try:
        save_file(weights, str(tmp / WEIGHTS_FILE), metadata={"format": EXPORT_FORMAT})
        (tmp / CONFIG_FILE).write_text(json.dumps(metadata, indent=2, default=str))
        (tmp / CARD_FILE).write_text(model_card(config, model, metadata, out.name))
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _summary(metrics: Any) -> dict[str, Any] | None:
    """The validation summary ``{"step", metric: value}`` of a checkpoint's ``metrics`` entry (JSON types)."""
    if not isinstance(metrics, dict) or not isinstance(metrics.get("summary"), dict):
        return None
    summary = {str(k): float(v) if isinstance(v, (int, float)) else str(v) for k, v in metrics["summary"].items()}
    return {"step": metrics.get("step"), **summary}


def load_export(path: str | Path, overrides: Sequence[str] = ()) -> tuple[ExperimentConfig, nn.Module]:
    """The config and the model (CPU, ``eval()`` mode) of an export folder; ``overrides`` are ``KEY=VALUE``
    config overrides (e.g. ``data.source.dir=...``) applied to the stored config.

    Raises:
        DataError: naming the file, when ``path`` is not an export folder, its ``config.json`` is unreadable or of
            another format, or its weights are unreadable or do not fit the model its config builds.
        ConfigError: the stored config does not parse.
    """
    path = Path(path)
    if not is_export(path):
        raise DataError(path, f"not an export folder (needs {CONFIG_FILE} and {WEIGHTS_FILE}; accelmri export)")
    metadata = read_export_metadata(path)
    config = parse_config(metadata["config"], source=f"{path / CONFIG_FILE} (stored config)", overrides=overrides)
    model = build_model(config.model, config.data.acquisition.scale, config.source)
    try:
        weights = load_file(str(path / WEIGHTS_FILE))
    except (SafetensorError, OSError, ValueError) as err:
        raise DataError(path / WEIGHTS_FILE, f"unreadable safetensors file ({err})") from err
    load_weights(model, weights, path / WEIGHTS_FILE, config.model.name)
    return config, model.eval()


def read_export_metadata(path: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of an export folder.

    Raises:
        DataError: unreadable, not JSON, of another ``format``, or without a ``config`` mapping.
    """
    file = Path(path) / CONFIG_FILE
    try:
        metadata = json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise DataError(file, f"unreadable ({err})") from err
    if not isinstance(metadata, dict) or metadata.get("format") != EXPORT_FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else None
        raise DataError(file, f"format {found!r} is not {EXPORT_FORMAT!r}: not an accelmri export")
    if not isinstance(metadata.get("config"), dict):
        raise DataError(file, "holds no 'config' mapping")
    return metadata


def load(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The ready model (``eval()`` mode, on ``device``) of an export folder, a checkpoint or a run folder.

    Example::

        import accelmri
        model = accelmri.load("exports/minet_2x")          # or "runs/minet/last.pt"

    Raises:
        DataError, ConfigError: see :func:`load_export` and :func:`accelmri.engine.evaluate.load_method`.
    """
    from accelmri.engine.evaluate import load_method  # evaluate imports this module

    path = Path(path)
    source = path if is_export(path) else run_checkpoint(path)
    _, model = load_method(source, (), torch.device(device))
    return model


def model_card(config: ExperimentConfig, model: nn.Module, metadata: dict[str, Any], name: str) -> str:
    """The export's ``README.md``: method and paper (the model module's docstring summary), training data
    and acquisition, validation metrics, licence note, and how to load it."""
    module = sys.modules.get(type(model).__module__)
    method = " ".join((inspect.getdoc(module) or "").split("\n\n")[0].split()) if module else ""
    data = config.data
    acquisition = data.acquisition
    source = config.to_dict()["data"]["source"]
    kind = source.get("kind", "?")
    lines = [
        f"# {name}: accelmri `{config.model.name}` model",
        "",
        f"**Method.** {method or type(model).__name__}",
        "",
        f"**Task.** `{data.task}`: scale factor s = {acquisition.scale}, acceleration R = {acquisition.acceleration:g} "
        f"inside the acquired low-resolution k-space ({acquisition.mask_kind} mask, centre fraction "
        f"{acquisition.center_fraction:g}); total acceleration R·s = {acquisition.acceleration * acquisition.scale:g}.",
        "",
        f"**Training data.** source `{kind}`; target contrasts {metadata.get('target_contrasts') or 'unknown'}, "
        f"reference contrasts {metadata.get('reference_contrasts') or 'none'}; {metadata.get('step')} training "
        f"steps; {metadata['parameters']:,} trainable parameters. The full experiment config is in `config.json`.",
    ]
    if kind == "digital_brain":
        lines += ["", "The digital brain is accelmri's embedded simulation (ICBM152-based tissue maps; see "
                  "docs/data.md of accelmri for its licence and realism settings)."]
    else:
        lines += ["", "Trained on the data named in `config.json`: check that data set's licence before sharing "
                  "this model."]
    metrics = metadata.get("metrics")
    lines += ["", "**Validation (latest, held-out split of the training source).**", ""]
    if metrics:
        lines += ["| metric | value |", "|---|---:|"]
        lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()]
    else:
        lines += ["Not recorded in the checkpoint."]
    lines += ["", "**Use.**", "", "```python", "import accelmri", f'model = accelmri.load("{name}")', "```", "",
              f"or `accelmri restore {name} scan.nii.gz --out restored.nii.gz`. Exported with accelmri "
              f"{metadata['version']} from `{metadata['source']}`.", ""]
    return "\n".join(lines)
