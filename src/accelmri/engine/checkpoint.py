"""Checkpoints: plain, code-free files written atomically and read with ``torch.load(weights_only=True)``.

A checkpoint is a ``dict`` holding only tensors, dicts, lists, tuples, strings, numbers, booleans and ``None``:

======================  ============================================================================================
key                     value
======================  ============================================================================================
``format``              :data:`CHECKPOINT_FORMAT`
``version``             the accelmri version that wrote it
``config``              the resolved experiment config (:meth:`~accelmri.engine.config.ExperimentConfig.to_dict`)
``model``               the model's ``state_dict`` (with ``trainer.ema``: of the weights' moving average)
``training_model``      with ``trainer.ema`` only: the optimiser's own (non-averaged) weights, for resuming
``ema_updates``         with ``trainer.ema`` only: the number of averaging updates done (int)
``discriminator``       the GAN discriminator's ``state_dict`` (or ``None``)
``optimizers``          ``{"model": ..., "discriminator": ...}`` optimiser ``state_dict`` s
``schedulers``          the same for the learning-rate schedulers (``None`` without a schedule)
``rng``                 one :func:`rng_state` per process (rank order)
``step``                optimiser steps done
``epoch``               the epoch in progress, and ``batch_in_epoch`` the batches of it already done
``best``                ``{"metric", "value", "step"}`` of the best validation so far
``metrics``             the latest validation: ``{"step", "summary", "per_volume"}`` (or ``None``)
``target_contrasts``    the canonical target contrasts of the training data (list of str), or ``None`` if unknown
``reference_contrast``  the canonical reference contrast (str), or ``None`` (none, several, or unknown)
``reference_contrasts`` every reference contrast trained with (list of str: several for a randomised reference), or
                        ``None``
======================  ============================================================================================

The contrast fields are derived from ``config`` when the checkpoint is written
(:func:`accelmri.engine.contrast.trained_contrasts`); checkpoints written before them lack these keys and load
all the same (read them with ``.get``).

Loading never executes code from the file (``weights_only=True``), so a checkpoint from an untrusted source can
be inspected safely; anything else in a file is refused with a :class:`~accelmri.data.errors.DataError`.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from accelmri import __version__
from accelmri.data.errors import DataError
from accelmri.engine.contrast import trained_contrasts
from accelmri.io import atomic_output

__all__ = [
    "CHECKPOINT_FORMAT",
    "load_checkpoint",
    "load_scheduler_state",
    "load_weights",
    "plain",
    "rng_state",
    "save_checkpoint",
    "scheduler_state",
    "set_rng_state",
]

#: Value of the ``format`` key of every accelmri checkpoint.
CHECKPOINT_FORMAT = "accelmri-checkpoint/1"


def plain(value: Any) -> Any:
    """``value`` with plain containers: every mapping (``Counter``, ``OrderedDict``) becomes a ``dict``, lists and
    tuples are rebuilt, tensors are detached and moved to the CPU; other values are returned as they are."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    return value


def rng_state() -> dict[str, Any]:
    """The state of Python's, NumPy's and torch's (CPU and CUDA) global random generators, as plain values."""
    numpy_kind, numpy_keys, numpy_pos, numpy_has_gauss, numpy_gauss = np.random.get_state()
    python_version, python_internal, python_gauss = random.getstate()
    return {
        "python": {"version": python_version, "internal": list(python_internal), "gauss": python_gauss},
        "numpy": {
            "kind": str(numpy_kind),
            "keys": torch.from_numpy(np.asarray(numpy_keys, dtype=np.int64)),
            "pos": int(numpy_pos),
            "has_gauss": int(numpy_has_gauss),
            "gauss": float(numpy_gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators from :func:`rng_state` (CUDA states only where as many devices exist)."""
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss"]))
    numpy = state["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy["kind"], keys, numpy["pos"], numpy["has_gauss"], numpy["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and torch.cuda.device_count() == len(state["cuda"]):
        torch.cuda.set_rng_state_all(state["cuda"])


def scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    """A scheduler's ``state_dict`` as plain values (``MultiStepLR``'s ``Counter`` of milestones → ``dict``)."""
    return plain(scheduler.state_dict())


def load_scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler, state: dict[str, Any]) -> None:
    """Inverse of :func:`scheduler_state`."""
    state = dict(state)
    if isinstance(getattr(scheduler, "milestones", None), Counter):
        state["milestones"] = Counter(state["milestones"])
    scheduler.load_state_dict(state)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (made :func:`plain`, with ``format`` and ``version`` added) atomically to ``path``.

    The file is written next to ``path`` under a temporary name and renamed over it, so ``path`` always holds a
    complete checkpoint (an interrupted save leaves the previous one). Only the run's own files are replaced:
    the engine calls this for ``last.pt`` and ``best.pt`` in its run folder. ``target_contrasts``,
    ``reference_contrast`` and ``reference_contrasts`` are added from ``payload["config"]``
    (:func:`~accelmri.engine.contrast.trained_contrasts`)
    unless the payload gives them.

    Returns:
        ``path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    contrasts = trained_contrasts(payload.get("config"))
    content = plain({"format": CHECKPOINT_FORMAT, "version": __version__, **contrasts, **payload})
    with atomic_output(target, overwrite=True) as tmp:
        torch.save(content, tmp)
    return target


def load_checkpoint(path: str | Path, *, mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint on the CPU without executing code (``torch.load(weights_only=True)``).

    Args:
        path: the checkpoint file.
        mmap: memory-map the tensors instead of reading them (cheap when only the metadata is needed).

    Raises:
        DataError: the file is missing, unreadable, not a torch file, holds anything but plain data, or is not
            an accelmri checkpoint.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(file, "checkpoint not found")
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(file, f"not a loadable checkpoint ({first_line})") from err
    except OSError as err:
        raise DataError(file, f"cannot read the checkpoint ({err})") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise DataError(file, f"not an accelmri checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    return payload


def load_weights(model: nn.Module, state: Any, path: str | Path, name: str) -> None:
    """Load a checkpoint's ``model`` state dict into ``model`` (built from the checkpoint's own config).

    Args:
        model: the model the stored config describes.
        state: the checkpoint's ``model`` entry.
        path: the checkpoint (for messages).
        name: the model's registered name (for messages).

    Raises:
        DataError: naming ``path``, when ``state`` is not a state dict or does not fit ``model`` (missing,
            unexpected or differently shaped tensors: the file holds another model's weights).
    """
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(path, "holds no model weights ('model' is not a state dict)")
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    reshaped = [f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}" for key, value in expected.items()
                if key in state and state[key].shape != value.shape]
    problems = [f"{len(found)} {what} (e.g. {found[0]})" for found, what in
                ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape")) if found]
    if problems:
        raise DataError(path, f"its weights do not fit the {name} model of its own config: {', '.join(problems)}; "
                        "the file holds another model's weights")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(path, f"its weights do not load into the {name} model of its own config "
                        f"({first_line})") from err
