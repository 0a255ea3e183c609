"""The training loop on Lightning Fabric: one process per device, DDP over NCCL (GPU) or gloo (CPU).

:func:`train` builds the data sets of a config (subject-wise split; fixed validation masks), the model from the
registry (refusing a dataset that lacks a field the model needs), the loss (:func:`accelmri.losses.build_loss`,
plus a discriminator with its own optimiser when the loss has an ``adversarial`` term: paper 001's GAN), the
optimisers and schedulers (:func:`build_optimizer`, :func:`build_scheduler`: Adam, AdamW, RMSprop; step,
multistep, cosine and linear warm-up schedules), and trains with Fabric's precision (autocast), gradient clipping,
an optional moving average of the weights (``trainer.ema``: ``torch.optim.swa_utils.AveragedModel``, validated and
saved as the checkpoint's ``model``), the loggers of ``trainer.loggers`` (TensorBoard, CSV, W&B, MLflow; scalars and
validation images) and a progress bar with ETA on rank 0.

Reproducibility: the weights are initialised from ``trainer.seed``; the order of the training slices of epoch
``e`` is a permutation seeded from ``(seed, e)`` (sharded over processes like ``DistributedSampler``), and every
training slice draws its random mask under a torch seed derived from ``(seed, e, slice)``, whatever the process,
worker count or resumption. ``last.pt`` holds the random-generator states of every process and the position in
the epoch, so ``resume=True`` continues with exactly the step the uninterrupted run would have taken.

Validation (every ``val_every_epochs`` epochs and/or ``val_every_steps`` steps, and at the end) scores whole
volumes in original units with :func:`accelmri.engine.evaluate.score_volumes`: volumes, not slices, are shared
out over processes, and the per-volume metrics are summed across processes (each volume is scored by exactly one),
so the numbers equal a single-process evaluation of the same weights. Every validation rewrites ``last.pt``, and
``best.pt`` when the monitored metric improved. A non-finite loss, gradient norm or weight stops training with
:class:`TrainingDivergedError` before anything is saved, so ``last.pt`` stays the last good state.

Run folder (``trainer.out_dir``): ``config.yaml`` (resolved config), ``last.pt``, ``best.pt``,
``metrics.jsonl`` (one JSON record per logged step and per validation) and the loggers' folders
(``tensorboard/``, ``csv/``, ``wandb/``, ``mlflow.db`` + ``mlflow-artifacts/``). A run that stops
before its first checkpoint (an error, divergence, Ctrl-C) removes what it wrote, so the same command can be run
again; a folder left by a run killed before its first checkpoint (only ``config.yaml``, ``metrics.jsonl`` and
the loggers' folders, no ``last.pt``) is started afresh too.

Resuming (``resume=True``, or ``"auto"``: resume when ``last.pt`` exists, start afresh otherwise) keeps the run's
settings: a config that differs from the stored one in anything but :data:`RESUME_CHANGEABLE` (how long to
train, how often to validate and log, devices, data location and loading) is refused, never silently ignored.

Preemption (SLURM ``--signal``, time limits, ``scancel``): on SIGTERM or SIGUSR1 the step in progress finishes,
``last.pt`` is saved at that step (without validating) and :func:`train` returns with ``stopped_by`` set to the
signal's name; ``resume`` continues exactly where the uninterrupted run would have been (the CLI exits with
:data:`EXIT_PREEMPTED`, so one batch script with ``--resume auto`` serves the first start and every requeue).
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import importlib.util
import json
import math
import shutil
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import torch
import yaml
from lightning.fabric import Fabric
from lightning.fabric.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.fabric.strategies import DDPStrategy
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, Sampler

from accelmri.data.datasets import SliceDataset
from accelmri.data.errors import DataError
from accelmri.data.sample import Sample, collate
from accelmri.engine.build import build_dataset, build_model, check_compatible, prepare_data, volume_slices
from accelmri.engine.checkpoint import (
    load_checkpoint,
    load_scheduler_state,
    load_weights,
    rng_state,
    save_checkpoint,
    scheduler_state,
    set_rng_state,
)
from accelmri.engine.config import (
    MONITOR_MODES,
    ConfigError,
    ExperimentConfig,
    OptimizerConfig,
    SchedulerConfig,
    TrainerConfig,
    parse_config,
)
from accelmri.engine.evaluate import NonFiniteOutputError, VolumeScore, autocast, score_volumes
from accelmri.io import atomic_output
from accelmri.losses import CompositeLoss, build_loss, discriminator_loss
from accelmri.metrics import aggregate
from accelmri.models import Prediction

__all__ = [
    "EXIT_PREEMPTED",
    "RESUME_CHANGEABLE",
    "STOP_SIGNALS",
    "TrainResult",
    "TrainingDivergedError",
    "build_optimizer",
    "build_scheduler",
    "build_training_loss",
    "train",
]

#: Config keys a resumed run may change (dotted; a prefix covers its sub-keys); any other difference is refused.
RESUME_CHANGEABLE = (
    "name", "description", "trainer.max_steps", "trainer.max_epochs", "trainer.val_every_epochs",
    "trainer.val_every_steps", "trainer.log_every", "trainer.progress_bar", "trainer.accelerator", "trainer.devices",
    "trainer.num_nodes", "trainer.strategy", "trainer.out_dir", "data.source.dir", "data.num_workers",
    "data.val_batch_size", "trainer.loggers", "trainer.logger_options",
)

#: Signals that make training save ``last.pt`` at the current step and stop (SLURM preemption and time limits).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

#: Exit code of ``accelmri train`` stopped by one of :data:`STOP_SIGNALS` after saving (``EX_TEMPFAIL``: retry).
EXIT_PREEMPTED = 75

#: What a run writes before its first checkpoint (removed again when it stops before one).
_RUN_FILES = ("config.yaml", "metrics.jsonl", "tensorboard", "csv", "wandb", "mlflow.db", "mlflow-artifacts")

#: The MLflow store of the run (:func:`_logger`): MLflow creates it when its logger is built, before the run folder
#: is checked, so a folder holding only these is a new run's, and a new run keeps them when it starts.
_LOGGER_STORES = frozenset({"mlflow.db", "mlflow-artifacts"})

#: Validation images logged per validation (the central slice of the first validation volumes).
VALIDATION_IMAGES = 3

#: Amplification of the ``|error|`` panel of the validation images (same window as the images, × this).
ERROR_GAIN = 5.0

T = TypeVar("T")
console = Console(stderr=True, soft_wrap=True)


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss, gradient or weight and was stopped (``last.pt`` is the last good state)."""


_DIVERGENCE_ADVICE = ("Lower optimizer.lr, set trainer.grad_clip (e.g. 1.0) or use trainer.precision 32-true, then "
                      "start again (or --resume from the last good checkpoint)")


@dataclass(frozen=True)
class TrainResult:
    """The outcome of :func:`train` (on every process).

    Attributes:
        run_dir: the run folder.
        last: ``last.pt``.
        best: ``best.pt``, or ``None`` when no validation ran.
        step: optimiser steps done.
        epoch: the epoch in progress (completed epochs).
        metrics: the last validation's ``{metric: {"mean", "std"}}``, or ``None``.
        is_global_zero: whether this process is rank 0.
        stopped_by: the signal (``"SIGTERM"``, ``"SIGUSR1"``) that stopped the run early after saving ``last.pt``,
            or ``None`` when it ran to the end.
    """

    run_dir: Path
    last: Path
    best: Path | None
    step: int
    epoch: int
    metrics: dict[str, dict[str, float]] | None
    is_global_zero: bool
    stopped_by: str | None = None


def train(config: ExperimentConfig, resume: bool | Literal["auto"] = False) -> TrainResult:
    """Train the experiment ``config``; with ``resume``, continue from ``<out_dir>/last.pt``.

    ``resume="auto"`` continues when ``last.pt`` exists and starts a new run otherwise. SIGTERM and SIGUSR1 stop
    the run after the current step with ``last.pt`` saved (:attr:`TrainResult.stopped_by`; see the module
    docstring).

    With ``trainer.devices · trainer.num_nodes > 1`` Fabric starts the other processes (``ddp``: re-running the
    current command line; ``ddp_spawn``: spawning), or joins the ones started by ``torchrun``/SLURM.

    Raises:
        ConfigError: the run folder is not empty (without ``resume``) or has no ``last.pt`` (with
            ``resume=True``), a config that differs from the resumed run's outside :data:`RESUME_CHANGEABLE`, an
            empty train split, an unknown or incompatible model, bad loss options.
        DataError: unreadable data or checkpoint files.
        TrainingDivergedError: a non-finite loss, gradient norm or weight.
    """
    trainer = config.trainer
    strategy: str | DDPStrategy = "auto"
    if trainer.world_size > 1 or trainer.strategy != "auto":
        start = "spawn" if trainer.strategy == "ddp_spawn" else "popen"
        strategy = DDPStrategy(start_method=start, find_unused_parameters=trainer.find_unused_parameters)
    loggers = [_logger(name, trainer, config.name, config.source) for name in trainer.loggers]
    try:
        fabric = Fabric(
            accelerator=trainer.accelerator,
            devices=trainer.devices,
            num_nodes=trainer.num_nodes,
            strategy=strategy,
            precision=trainer.precision,
            loggers=loggers,
        )
    except (RuntimeError, ValueError) as err:  # e.g. accelerator "cuda" on a machine without GPU
        raise ConfigError(config.source, "trainer", str(err).strip().splitlines()[0]) from err
    return fabric.launch(_run, config, resume)


def _logger(name: str, trainer: TrainerConfig, experiment: str, source: str) -> Logger:
    """The Fabric logger ``name`` of ``trainer.loggers`` (W&B and MLflow imported only when chosen).

    Raises:
        ConfigError: W&B or MLflow chosen but not installed (naming the extra to install), or options their
            constructor refuses.
    """
    run_dir = Path(trainer.out_dir)
    if name == "tensorboard":
        return TensorBoardLogger(root_dir=run_dir, name="tensorboard", version="", default_hp_metric=False)
    if name == "csv":
        return CSVLogger(root_dir=run_dir, name="csv", version="")
    if importlib.util.find_spec(name) is None:
        raise ConfigError(source, "trainer.loggers", f"{name} is not installed: pip install 'accelmri[{name}]' (or "
                          "remove it from trainer.loggers)")
    loggers = importlib.import_module("lightning.pytorch.loggers")  # Lightning's W&B/MLflow loggers fit Fabric
    if name == "wandb":
        factory, defaults = loggers.WandbLogger, {"name": experiment, "project": "accelmri", "save_dir": str(run_dir)}
    else:
        # MLflow ≥ 3 refuses its file store ("maintenance mode"): a SQLite store and the artifacts inside the run
        root = run_dir.resolve()
        factory, defaults = loggers.MLFlowLogger, {"experiment_name": experiment,
                                                   "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
                                                   "artifact_location": (root / "mlflow-artifacts").as_uri()}
    try:
        return factory(**{**defaults, **trainer.logger_options.get(name, {})})
    except TypeError as err:
        raise ConfigError(source, f"trainer.logger_options.{name}", str(err)) from err


def _finalize(loggers: Sequence[Logger], status: Literal["success", "failed"]) -> None:
    """Close every logger; a W&B run is finished too (Lightning leaves it open until the process exits, so a
    second run in the same process — the demo, a study — would log into the first one)."""
    for logger in loggers:
        logger.finalize(status)
        if type(logger).__name__ == "WandbLogger" and (wandb := sys.modules.get("wandb")) is not None \
                and wandb.run is not None:
            wandb.finish(exit_code=0 if status == "success" else 1)


def _log_image(name: str, logger: Logger, tag: str, image: torch.Tensor, step: int) -> None:
    """Log a grey-scale ``(H, W)`` image in ``[0, 1]`` to a logger of kind ``name`` (CSV keeps no images)."""
    if name == "tensorboard":
        logger.experiment.add_image(tag, image[None], global_step=step)
    elif name == "wandb":
        logger.log_image(key=tag, images=[image.numpy()], step=step)  # type: ignore[attr-defined]
    elif name == "mlflow":
        pixels = (image * 255).round().to(torch.uint8).numpy()
        logger.experiment.log_image(logger.run_id, pixels, artifact_file=f"{tag}/step_{step:08d}.png")  # type: ignore[attr-defined]


def _resume_csv(logger: CSVLogger, step: int) -> None:
    """Keep the rows of ``csv/metrics.csv`` up to ``step`` (Fabric's CSV writer deletes an existing file when it
    starts; the kept rows are written again with the next ones)."""
    path = Path(logger.log_dir) / "metrics.csv"
    rows: list[dict[str, str]] = []
    if path.is_file():
        with path.open(newline="") as handle:
            rows = [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(handle)
                    if int(row["step"]) <= step]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Experiment logs directory")
        logger.experiment.metrics.extend(rows)


def _run(fabric: Fabric, config: ExperimentConfig, resume: bool | Literal["auto"]) -> TrainResult:
    training = _Training(fabric, config, resume)
    try:
        return training.fit()
    except BaseException:
        training.discard_unsaved()
        raise


# ---------------------------------------------------------------------------------------------- collectives


def _gather(fabric: Fabric, value: T) -> list[T]:
    """``value`` of every process, in rank order (any picklable object)."""
    if fabric.world_size == 1:
        return [value]
    values: list[Any] = [None] * fabric.world_size
    torch.distributed.all_gather_object(values, value)
    return values


def _on_some_ranks(fabric: Fabric, action: Callable[[], object], run_here: bool) -> None:
    """Run ``action`` where ``run_here``; if it fails on any process, every process raises (no one waits forever)."""
    error: Exception | None = None
    if run_here:
        try:
            action()
        except Exception as err:  # re-raised below, after telling the other processes
            error = err
    failures = [f for f in _gather(fabric, None if error is None else f"rank {fabric.global_rank}: {error}") if f]
    if error is not None:
        raise error
    if failures:
        raise RuntimeError(f"stopped because another process failed: {failures[0]}")


# ------------------------------------------------------------------------------------------------ data order


def _mix(*values: int) -> int:
    """A 32-bit seed derived from ``values`` (NumPy's SeedSequence: well mixed, platform independent)."""
    return int(np.random.SeedSequence(list(values)).generate_state(1)[0])


class _EpochSampler(Sampler[tuple[int, int]]):
    """This process's share of a seeded per-epoch permutation, as ``(item, item seed)`` pairs.

    Epoch ``e`` uses the permutation seeded from ``(seed, e)``, padded by wrapping to a multiple of the number of
    processes and dealt round-robin (as ``DistributedSampler``); iteration starts after ``skip_batches`` batches
    (resumption mid-epoch). The item seed ``(seed, e, item)`` makes the slice's random mask reproducible.
    """

    def __init__(self, size: int, seed: int, rank: int, world_size: int, batch_size: int) -> None:
        self.size, self.seed, self.rank, self.world_size, self.batch_size = size, seed, rank, world_size, batch_size
        self.epoch = 0
        self.skip_batches = 0

    @property
    def per_rank(self) -> int:
        """Items per process and epoch."""
        return math.ceil(self.size / self.world_size)

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.per_rank / self.batch_size)

    def _items(self) -> list[int]:
        generator = torch.Generator().manual_seed(_mix(self.seed, self.epoch))
        order = torch.randperm(self.size, generator=generator).tolist()
        total = self.per_rank * self.world_size
        padded = (order * math.ceil(total / self.size))[:total]
        return padded[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for item in self._items()[self.skip_batches * self.batch_size :]:
            yield item, _mix(self.seed, self.epoch, item)

    def __len__(self) -> int:
        return max(0, self.per_rank - self.skip_batches * self.batch_size)


class _SeededItems(Dataset[Sample]):
    """Reads ``dataset[item]`` under a forked torch RNG seeded with the item seed of :class:`_EpochSampler`."""

    def __init__(self, dataset: SliceDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Sample:
        item, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[item]


# --------------------------------------------------------------------------------------------------- modules


class _Batch:
    """Opaque holder of a batch: Fabric's input-precision conversion walks dataclasses and refuses frozen ones."""

    __slots__ = ("sample",)

    def __init__(self, sample: Sample) -> None:
        self.sample = sample


class _Forward(nn.Module):
    """What Fabric wraps (DDP, autocast): ``forward(_Batch) -> model(batch)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: _Batch) -> Prediction:
        return self.model(batch.sample)


def build_optimizer(config: OptimizerConfig, module: nn.Module, key: str, source: str) -> torch.optim.Optimizer:
    """The optimiser of ``config`` over ``module``'s trainable parameters (``param_lr`` groups first).

    Raises:
        ConfigError: a ``param_lr`` prefix that matches no trainable parameter, naming ``key`` in ``source``.
    """
    groups: dict[str, list[nn.Parameter]] = {prefix: [] for prefix in config.param_lr}
    rest: list[nn.Parameter] = []
    for name, parameter in module.named_parameters():
        if parameter.requires_grad:
            prefix = next((p for p in config.param_lr if name == p or name.startswith(f"{p}.")), None)
            (groups[prefix] if prefix is not None else rest).append(parameter)
    for prefix, parameters in groups.items():
        if not parameters:
            raise ConfigError(source, f"{key}.param_lr.{prefix}", "matches no trainable parameter")
    param_groups: list[dict[str, Any]] = [{"params": rest}] if rest else []
    param_groups += [{"params": parameters, "lr": config.param_lr[prefix]} for prefix, parameters in groups.items()]
    if config.name == "adam":
        return torch.optim.Adam(param_groups, lr=config.lr, betas=config.betas, eps=config.eps,
                                weight_decay=config.weight_decay)
    if config.name == "adamw":
        return torch.optim.AdamW(param_groups, lr=config.lr, betas=config.betas, eps=config.eps,
                                 weight_decay=config.weight_decay)
    return torch.optim.RMSprop(param_groups, lr=config.lr, alpha=config.alpha, eps=config.eps,
                               weight_decay=config.weight_decay, momentum=config.momentum)


class _WarmupDecay:
    """The ``cosine``/``linear`` factor of :class:`~accelmri.engine.config.SchedulerConfig` for one parameter group:
    ``(t + 1)/W`` for ``t < W``, then ``floor + (1 − floor)·d(p)`` with ``floor = min_lr / lr``.

    A callable object rather than a function: ``LambdaLR.state_dict`` keeps its attributes, so a resumed run keeps
    the length ``T`` and warm-up ``W`` it started with.
    """

    def __init__(self, shape: str, warmup: int, length: int, floor: float) -> None:
        self.shape, self.warmup, self.length, self.floor = shape, warmup, length, floor

    def __call__(self, t: int) -> float:
        if t < self.warmup:
            return (t + 1) / self.warmup
        progress = min(1.0, (t - self.warmup) / (self.length - self.warmup))
        decay = (1 + math.cos(math.pi * progress)) / 2 if self.shape == "cosine" else 1 - progress
        return self.floor + (1 - self.floor) * decay


def build_scheduler(
    config: SchedulerConfig, optimizer: torch.optim.Optimizer, steps: int, batches: int, source: str
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The schedule of ``config`` (:class:`~accelmri.engine.config.SchedulerConfig`, which gives the ``cosine`` and
    ``linear`` formulas) over ``optimizer``, for a run of ``steps`` optimiser steps with ``batches`` batches per epoch;
    ``None`` for ``none``. Step it every ``config.interval``.

    Raises:
        ConfigError: a ``cosine``/``linear`` warm-up at least as long as the run.
    """
    if config.name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size or 1, gamma=config.gamma)
    if config.name == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(config.milestones), gamma=config.gamma)
    if config.name in ("cosine", "linear"):
        per_epoch = config.interval == "epoch"
        length, unit = (math.ceil(steps / batches), "epochs") if per_epoch else (steps, "steps")
        if config.warmup_steps is not None:
            warmup, key = config.warmup_steps, "scheduler.warmup_steps"
        else:
            warmup, key = (config.warmup_epochs or 0) * (1 if per_epoch else batches), "scheduler.warmup_epochs"
        if warmup >= length:
            raise ConfigError(source, key, f"the warm-up ({warmup} {unit}) must be shorter than the run ({length} "
                              f"{unit})")
        factors = [_WarmupDecay(config.name, warmup, length, config.min_lr / group["lr"])
                   for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)
    return None


def build_training_loss(
    weights: Mapping[str, float], config: ExperimentConfig, discriminator: nn.Module | None, key: str
) -> CompositeLoss:
    """The loss ``Σ weight · term`` of ``weights`` with the config's per-term options (:func:`build_loss`).

    Raises:
        ConfigError: an unknown term or bad options, naming ``key`` in the config's source.
    """
    options: dict[str, Mapping[str, Any]] = {k: v for k, v in config.loss.options.items() if k in weights}
    if "adversarial" in weights:
        options["adversarial"] = {"discriminator": discriminator}
    try:
        return build_loss(weights, **options)
    except (KeyError, TypeError, ValueError) as err:
        raise ConfigError(config.source, key, str(err.args[0] if err.args else err)) from err


def _never_saved(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds only what a run writes before its first checkpoint (a killed start).

    Its ``config.yaml`` must be a resolved config exactly as the trainer writes it, so a user's own files are
    never taken for leftovers.
    """
    names = {entry.name for entry in run_dir.iterdir()}
    if names and names <= _LOGGER_STORES:
        return True
    if not names or not names <= set(_RUN_FILES) or "config.yaml" not in names:
        return False
    try:
        text = (run_dir / "config.yaml").read_text()
        raw = yaml.safe_load(text)
        return isinstance(raw, dict) and text == yaml.safe_dump(parse_config(raw).to_dict(), sort_keys=False)
    except (OSError, ValueError, yaml.YAMLError):
        return False


def _run_dir_problem(run_dir: Path, resume: bool | Literal["auto"]) -> str | None:
    if resume == "auto" and (run_dir / "last.pt").is_file():
        return None
    if resume is True:
        if (run_dir / "last.pt").is_file():
            return None
        hint = " (use --resume auto to start the run when there is none)"
        return f"nothing to resume: {run_dir / 'last.pt'} not found{hint}"
    if run_dir.exists() and not run_dir.is_dir():
        return f"{run_dir} exists and is not a folder; choose another trainer.out_dir"
    if run_dir.is_dir() and any(run_dir.iterdir()) and not _never_saved(run_dir):
        return f"{run_dir} exists and is not empty: pass --resume to continue it, or choose another trainer.out_dir"
    return None


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a.b": value}`` for every leaf of nested mappings."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _resume_changes(stored: Mapping[str, Any], given: Mapping[str, Any]) -> list[str]:
    """The keys outside :data:`RESUME_CHANGEABLE` whose value differs, as ``key: stored → given``."""
    old, new = _flatten(stored), _flatten(given)
    changed = []
    for key in sorted(old.keys() | new.keys()):
        if any(key == k or key.startswith(f"{k}.") for k in RESUME_CHANGEABLE) or old.get(key) == new.get(key):
            continue
        changed.append(f"{key}: {old.get(key)!r} → {new.get(key)!r}")
    return changed


# -------------------------------------------------------------------------------------------------- training


class _Training:
    """Everything one process needs for one run; :meth:`fit` runs it."""

    def __init__(self, fabric: Fabric, config: ExperimentConfig, resume: bool | Literal["auto"]) -> None:
        self.fabric, self.config, self.source = fabric, config, config.source
        trainer, data = config.trainer, config.data
        self.run_dir = Path(trainer.out_dir)
        self.wrote_run_files = False  # whether this (new) run wrote config.yaml: undone if it never saves
        self.created_run_dir = False
        self.stop_signal: int | None = None
        problem = fabric.broadcast(_run_dir_problem(self.run_dir, resume) if fabric.is_global_zero else None)
        if problem:
            raise ConfigError(self.source, "trainer.out_dir", problem)
        if resume == "auto":
            resume = bool(fabric.broadcast((self.run_dir / "last.pt").is_file() if fabric.is_global_zero else None))

        fabric.seed_everything(trainer.seed, verbose=False)
        scale = data.acquisition.scale
        self.model = build_model(config.model, scale, self.source)
        if not any(p.requires_grad for p in self.model.parameters()):
            raise ConfigError(self.source, "model.name", f"{config.model.name} has no trainable parameters; score it "
                              "with `accelmri evaluate CONFIG`")
        self.discriminator: nn.Module | None = None
        if config.loss.adversarial:
            self.discriminator = build_model(config.loss.discriminator, scale, self.source, key="loss.discriminator")

        _on_some_ranks(fabric, lambda: prepare_data(data, self.source), run_here=fabric.local_rank == 0)
        self.train_set = build_dataset(data, "train", self.source)
        self.val_set = build_dataset(data, "val", self.source)
        if len(self.train_set) == 0:
            raise ConfigError(self.source, "data.split", "the train split is empty")
        check_compatible(self.model, config.model.name, self.val_set if len(self.val_set) else self.train_set,
                         self.source)
        self.val_volumes = volume_slices(self.val_set)

        self.losses = {"main": build_training_loss(config.loss.terms, config, self.discriminator, "loss")}
        if config.loss.warmup_weights is not None:
            self.losses["warmup"] = build_training_loss(config.loss.warmup_weights, config, self.discriminator,
                                                        "loss.warmup_weights")
        for loss in self.losses.values():
            loss.to(fabric.device)

        self.sampler = _EpochSampler(len(self.train_set), trainer.seed, fabric.global_rank, fabric.world_size,
                                     data.batch_size)
        self.loader = DataLoader(_SeededItems(self.train_set), batch_size=data.batch_size, sampler=self.sampler,
                                 collate_fn=collate, num_workers=data.num_workers,
                                 generator=torch.Generator().manual_seed(trainer.seed))
        batches = self.sampler.batches_per_epoch
        self.total_steps = trainer.max_steps or (trainer.max_epochs or 0) * batches

        optimizer = build_optimizer(config.optimizer, self.model, "optimizer", self.source)
        self.wrapped, self.optimizer = fabric.setup(_Forward(self.model), optimizer)
        self.scheduler = build_scheduler(config.scheduler, self.optimizer.optimizer, self.total_steps, batches,
                                    self.source)
        # The weights' moving average (trainer.ema): validated, and saved as the checkpoint's "model".
        self.ema: AveragedModel | None = None
        if trainer.ema is not None:
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(trainer.ema), use_buffers=True)
        self.d_optimizer: Any = None
        self.d_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        if self.discriminator is not None:
            self.discriminator.to(fabric.device)  # not DDP-wrapped: its gradients are averaged by hand
            d_config = config.discriminator_optimizer or config.optimizer
            key = "discriminator_optimizer" if config.discriminator_optimizer else "optimizer"
            self.d_optimizer = fabric.setup_optimizers(build_optimizer(d_config, self.discriminator, key, self.source))
            self.d_scheduler = build_scheduler(config.scheduler, self.d_optimizer.optimizer, self.total_steps, batches,
                                          self.source)

        self.step = self.epoch = self.batch_in_epoch = 0
        self.last_saved_step: int | None = None
        self.validated_step: int | None = None
        self.best: dict[str, Any] = {"metric": trainer.monitor, "value": None, "step": None}
        self.metrics: dict[str, Any] | None = None
        self.log_file = self.run_dir / "metrics.jsonl"
        if resume:
            self._restore()
        elif fabric.is_global_zero:
            names = {entry.name for entry in self.run_dir.iterdir()} if self.run_dir.is_dir() else set()
            self.created_run_dir = not self.run_dir.exists() or (bool(names) and names <= _LOGGER_STORES)
            if self.run_dir.exists():
                # the leftovers of a start killed before its first checkpoint (not this run's MLflow store)
                self._remove_run_files(keep=_LOGGER_STORES)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.wrote_run_files = True
            with atomic_output(self.run_dir / "config.yaml", overwrite=False) as tmp:
                tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
            for logger in fabric.loggers:  # the resolved config as the run's hyperparameters ("data.crop", ...)
                if not isinstance(logger, CSVLogger):  # Fabric's CSV logger keeps none (config.yaml is beside it)
                    logger.log_hyperparams(_flatten(config.to_dict()))

    @property
    def evaluated(self) -> nn.Module:
        """The weights validated and saved as the checkpoint's ``model``: the moving average with ``trainer.ema``."""
        return self.model if self.ema is None else self.ema.module

    def _remove_run_files(self, keep: frozenset[str] = frozenset()) -> None:
        for name in set(_RUN_FILES) - keep:
            path = self.run_dir / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    def discard_unsaved(self) -> None:
        """Remove what a new run wrote when it stops before its first checkpoint (so it can simply be rerun)."""
        if not (self.wrote_run_files and self.last_saved_step is None and self.fabric.is_global_zero):
            return
        _finalize(self.fabric.loggers, "failed")
        self._remove_run_files()
        if self.created_run_dir and not any(self.run_dir.iterdir()):
            self.run_dir.rmdir()

    # ----------------------------------------------------------------------------------------- state

    def _restore(self) -> None:
        path = self.run_dir / "last.pt"
        checkpoint = load_checkpoint(path)
        if not isinstance(checkpoint.get("config"), dict):
            raise DataError(path, "holds no training config ('config'): not a checkpoint written by accelmri train")
        stored = parse_config(checkpoint["config"], source=f"{path} (stored config)").to_dict()
        changes = _resume_changes(stored, self.config.to_dict())
        if changes:
            raise ConfigError(self.source, changes[0].split(":")[0], f"differs from the run being resumed ({path}): "
                              f"{'; '.join(changes)}. A resumed run keeps its settings (only "
                              f"{', '.join(RESUME_CHANGEABLE[2:])} may change); to change them start a new run with "
                              "another trainer.out_dir")
        name = self.config.model.name
        load_weights(self.model, checkpoint["training_model" if self.ema is not None else "model"], path, name)
        if self.ema is not None:
            load_weights(self.ema.module, checkpoint["model"], path, name)
            self.ema.n_averaged.fill_(checkpoint["ema_updates"])
        self.optimizer.optimizer.load_state_dict(checkpoint["optimizers"]["model"])
        if self.scheduler is not None:
            load_scheduler_state(self.scheduler, checkpoint["schedulers"]["model"])
        if self.discriminator is not None:
            self.discriminator.load_state_dict(checkpoint["discriminator"])
            self.d_optimizer.optimizer.load_state_dict(checkpoint["optimizers"]["discriminator"])
            if self.d_scheduler is not None:
                load_scheduler_state(self.d_scheduler, checkpoint["schedulers"]["discriminator"])
        self.step, self.epoch = checkpoint["step"], checkpoint["epoch"]
        self.batch_in_epoch = checkpoint["batch_in_epoch"]
        self.best, self.metrics = checkpoint["best"], checkpoint["metrics"]
        self.last_saved_step = self.validated_step = self.step
        states = checkpoint["rng"]
        if len(states) != self.fabric.world_size and self.fabric.is_global_zero:
            console.print(f"[yellow]warning:[/yellow] {path} was written by {len(states)} processes, this run has "
                          f"{self.fabric.world_size}: the data order differs from an uninterrupted run")
        set_rng_state(states[self.fabric.global_rank] if len(states) == self.fabric.world_size else states[0])
        for name, logger in zip(self.config.trainer.loggers, self.fabric.loggers, strict=True):
            if name == "csv" and self.fabric.is_global_zero:
                _resume_csv(logger, self.step)
        if self.fabric.is_global_zero and self.log_file.is_file():
            kept = [line for line in self.log_file.read_text().splitlines() if json.loads(line)["step"] <= self.step]
            with atomic_output(self.log_file, overwrite=True) as tmp:
                tmp.write_text("".join(f"{line}\n" for line in kept))

    def _payload(self) -> dict[str, Any]:
        """The checkpoint content (collective: gathers every process's RNG state)."""
        states = _gather(self.fabric, rng_state())
        d_optimizer = self.d_optimizer.optimizer.state_dict() if self.d_optimizer is not None else None
        ema = {} if self.ema is None else {"training_model": self.model.state_dict(),
                                           "ema_updates": int(self.ema.n_averaged)}
        return {
            "config": self.config.to_dict(),
            "model": self.evaluated.state_dict(),
            **ema,
            "discriminator": self.discriminator.state_dict() if self.discriminator is not None else None,
            "optimizers": {"model": self.optimizer.optimizer.state_dict(), "discriminator": d_optimizer},
            "schedulers": {
                "model": scheduler_state(self.scheduler) if self.scheduler is not None else None,
                "discriminator": scheduler_state(self.d_scheduler) if self.d_scheduler is not None else None,
            },
            "rng": states,
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best": self.best,
            "metrics": self.metrics,
        }

    def _diverged(self, what: str, after_step: bool = False) -> TrainingDivergedError:
        """The error for a non-finite value in step ``step + 1`` (or, ``after_step``, right after step ``step``)."""
        last = self.run_dir / "last.pt"
        kept = (f"last good checkpoint: {last} (step {self.last_saved_step})" if self.last_saved_step is not None
                else "no checkpoint was saved before")
        at = f"after step {self.step}" if after_step else f"at step {self.step + 1}"
        return TrainingDivergedError(f"training diverged {at} (epoch {self.epoch}): {what}; "
                                     f"stopped without saving, {kept}. {_DIVERGENCE_ADVICE}")

    def _log(self, record: dict[str, Any]) -> None:
        if self.fabric.is_global_zero:
            with self.log_file.open("a") as handle:
                handle.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------------------------------ steps

    def _train_step(self, batch: Sample) -> dict[str, float]:
        fabric, trainer = self.fabric, self.config.trainer
        loss_fn = self.losses["warmup" if self.epoch < self.config.loss.warmup_epochs else "main"]
        prediction = self.wrapped(_Batch(batch))
        with autocast(trainer.precision, fabric.device):
            total, parts = loss_fn(prediction, batch)
        mean = fabric.all_reduce(total.detach().float(), reduce_op="mean")
        if not torch.isfinite(mean):
            detail = ", ".join(f"{name}={float(value):.4g}" for name, value in parts.items())
            raise self._diverged(f"the loss is {float(mean)} ({detail})")
        self.optimizer.zero_grad(set_to_none=True)
        fabric.backward(total, model=self.wrapped)
        if trainer.grad_clip is not None:
            norm = fabric.clip_gradients(self.wrapped, self.optimizer, max_norm=trainer.grad_clip,
                                         error_if_nonfinite=False)
            if norm is not None and not torch.isfinite(norm):
                raise self._diverged(f"the gradient norm is {float(norm)}")
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        record = {"loss": float(mean), **{f"loss/{name}": float(value) for name, value in parts.items()},
                  "lr": self.optimizer.param_groups[0]["lr"]}
        if self.discriminator is not None:
            record["loss/discriminator"] = self._discriminator_step(self.discriminator, prediction, batch)
        return record

    def _discriminator_step(self, discriminator: nn.Module, prediction: Prediction, batch: Sample) -> float:
        fabric = self.fabric
        self.d_optimizer.zero_grad(set_to_none=True)
        with autocast(self.config.trainer.precision, fabric.device):
            loss = discriminator_loss(discriminator, prediction, batch)
        mean = fabric.all_reduce(loss.detach().float(), reduce_op="mean")
        if not torch.isfinite(mean):
            raise self._diverged(f"the discriminator loss is {float(mean)}")
        fabric.backward(loss)
        if fabric.world_size > 1:
            for parameter in discriminator.parameters():
                if parameter.grad is not None:
                    parameter.grad = fabric.all_reduce(parameter.grad, reduce_op="mean")
        self.d_optimizer.step()
        return float(mean)

    def _validate(self) -> None:
        """Score the validation volumes (shared out over processes) and log the result."""
        fabric, data = self.fabric, self.config.data
        mine = list(range(fabric.global_rank, len(self.val_volumes), fabric.world_size))
        scored: list[list[VolumeScore]] = []

        def score() -> None:
            scored.append(score_volumes(self.evaluated, self.val_set, [self.val_volumes[i] for i in mine],
                                        batch_size=data.val_batch_size or data.batch_size,
                                        num_workers=data.num_workers, device=fabric.device,
                                        precision=self.config.trainer.precision))

        try:
            _on_some_ranks(fabric, score, run_here=True)
        except NonFiniteOutputError as err:
            raise self._diverged(f"validation: {err}", after_step=True) from err
        scores = scored[0]
        table = torch.zeros(len(self.val_volumes), 3, dtype=torch.float64)
        for index, score in zip(mine, scores, strict=True):
            table[index] = torch.tensor([score.psnr, score.ssim, score.nmse], dtype=torch.float64)
        table = fabric.all_reduce(table, reduce_op="sum").cpu()
        per_volume = []
        for (volume, items), (psnr, ssim, nmse) in zip(self.val_volumes, table.tolist(), strict=True):
            target = self.val_set.targets[volume]
            per_volume.append(VolumeScore(str(target.path), target.subject, target.contrast, len(items),
                                          psnr, ssim, nmse))
        summary = aggregate([s.metrics() for s in per_volume])
        self.metrics = {"step": self.step, "summary": summary, "per_volume": [vars(s) for s in per_volume]}
        self.validated_step = self.step
        fabric.log_dict({f"val/{name}": values["mean"] for name, values in summary.items()}, step=self.step)
        if fabric.is_global_zero and set(self.config.trainer.loggers) - {"csv"}:
            for tag, image in self._validation_images().items():
                for name, logger in zip(self.config.trainer.loggers, fabric.loggers, strict=True):
                    _log_image(name, logger, tag, image, self.step)
        self._log({"step": self.step, "epoch": self.epoch, "split": "val",
                   **{name: values["mean"] for name, values in summary.items()}})
        if fabric.is_global_zero:
            console.print(f"step {self.step} (epoch {self.epoch}): validation over {len(per_volume)} volumes — "
                          f"PSNR {summary['psnr']['mean']:.2f} dB, SSIM {summary['ssim']['mean']:.4f}, "
                          f"NMSE {summary['nmse']['mean']:.5f}")

    @torch.no_grad()
    def _validation_images(self) -> dict[str, torch.Tensor]:
        """``val/images/<file>_slice<k>``: input | output | target | ``|error|`` of the central slice of the first
        :data:`VALIDATION_IMAGES` validation volumes, side by side, ``(H, 4·W)`` in ``[0, 1]`` on the CPU.

        Original units, windowed to ``[0, max(target)]``; the input is the zero-filled (LR) magnitude, enlarged by
        pixel replication to the target grid; ``|error| = |output − target|`` is shown × :data:`ERROR_GAIN`.
        """
        model, device = self.evaluated, self.fabric.device
        was_training = model.training
        model.eval()
        images: dict[str, torch.Tensor] = {}
        try:
            for volume, items in self.val_volumes[:VALIDATION_IMAGES]:
                item = items[len(items) // 2]
                batch = collate([self.val_set[item]]).to(device)
                with autocast(self.config.trainer.precision, device):
                    output = model(batch).image
                target = batch.denormalize(batch.target)
                size = tuple(target.shape[-2:])
                lr_input = torch.nn.functional.interpolate(batch.denormalize(batch.lr_input), size=size)
                output = batch.denormalize(output.float())
                error = (output - target).abs() * ERROR_GAIN
                window = target.max().clamp_min(torch.finfo(target.dtype).tiny)
                panel = torch.cat([lr_input, output, target, error], dim=-1)[0, 0] / window
                name = f"{self.val_set.targets[volume].path.stem}_slice{self.val_set.slices[item][1]}"
                images[f"val/images/{name}"] = panel.clamp(0, 1).float().cpu()
        finally:
            model.train(was_training)
        return images

    def _checkpoint(self, validate: bool = True) -> None:
        """Validate (if not done at this step, and ``validate``) and save ``last.pt`` (and ``best.pt`` on
        improvement)."""
        if self.last_saved_step == self.step:
            return
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise self._diverged("the weights are not finite", after_step=True)
        improved = False
        if validate and self.val_volumes and self.validated_step != self.step:
            self._validate()
        if self.metrics is not None and self.metrics["step"] == self.step:
            value, best = self.metrics["summary"][self.best["metric"]]["mean"], self.best["value"]
            maximize = MONITOR_MODES[self.best["metric"]] == "max"
            improved = best is None or (value > best if maximize else value < best)
            if improved:
                self.best = {"metric": self.best["metric"], "value": value, "step": self.step}
        payload = self._payload()

        def write() -> None:
            save_checkpoint(self.run_dir / "last.pt", payload)
            if improved:
                save_checkpoint(self.run_dir / "best.pt", payload)

        _on_some_ranks(self.fabric, write, run_here=self.fabric.is_global_zero)
        self.last_saved_step = self.step
        for logger in self.fabric.loggers:  # the logs on disk reach last.pt (the CSV logger buffers its rows)
            logger.save()

    # -------------------------------------------------------------------------------------------- loop

    def fit(self) -> TrainResult:
        """Train until ``max_steps`` / ``max_epochs``; returns where the run ended."""
        fabric, trainer = self.fabric, self.config.trainer
        batches = self.sampler.batches_per_epoch
        columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                   TextColumn("loss {task.fields[loss]}"))
        progress = Progress(*columns, console=console, disable=not (fabric.is_global_zero and trainer.progress_bar))
        with progress, self._stop_signals():
            task = progress.add_task(self.config.name, total=self.total_steps, completed=self.step, loss="–")
            while self.step < self.total_steps and not self._stop_requested():
                self.sampler.epoch, self.sampler.skip_batches = self.epoch, self.batch_in_epoch
                for batch in self.loader:
                    record = self._train_step(batch.to(fabric.device))
                    self.step += 1
                    self.batch_in_epoch += 1
                    if self.config.scheduler.interval == "step":
                        self._step_schedulers()
                    if self.step % trainer.log_every == 0 or self.step == self.total_steps:
                        fabric.log_dict({f"train/{k}": v for k, v in record.items()}, step=self.step)
                        self._log({"step": self.step, "epoch": self.epoch, "split": "train", **record})
                    progress.update(task, completed=self.step, loss=f"{record['loss']:.4g}")
                    if trainer.val_every_steps and self.step % trainer.val_every_steps == 0:
                        self._checkpoint()
                    if self.step >= self.total_steps or self._stop_requested():
                        break
                if self.batch_in_epoch >= batches:
                    self.epoch += 1
                    self.batch_in_epoch = 0
                    if self.config.scheduler.interval == "epoch":
                        self._step_schedulers()
                    if trainer.val_every_epochs and self.epoch % trainer.val_every_epochs == 0:
                        self._checkpoint()
            stopped_by = signal.Signals(self.stop_signal).name if self.stop_signal is not None else None
            self._checkpoint(validate=stopped_by is None)
        _finalize(fabric.loggers, "success")
        if stopped_by is not None and fabric.is_global_zero:
            console.print(f"{stopped_by}: stopped at step {self.step} (epoch {self.epoch}) and saved "
                          f"{self.run_dir / 'last.pt'}; continue with --resume (or --resume auto)")
        best = self.run_dir / "best.pt"
        summary = self.metrics["summary"] if self.metrics is not None else None
        return TrainResult(self.run_dir, self.run_dir / "last.pt", best if best.is_file() else None, self.step,
                           self.epoch, summary, fabric.is_global_zero, stopped_by)

    @contextlib.contextmanager
    def _stop_signals(self) -> Iterator[None]:
        """Record :data:`STOP_SIGNALS` in ``stop_signal`` while training (main thread only; handlers restored)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def record(signum: int, _frame: object) -> None:
            self.stop_signal = signum

        previous = {signum: signal.signal(signum, record) for signum in STOP_SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _stop_requested(self) -> bool:
        """Whether any process received a stop signal (collective: every process takes the same decision)."""
        if self.fabric.world_size > 1:
            flag = torch.tensor(0 if self.stop_signal is None else int(self.stop_signal), device=self.fabric.device)
            received = int(self.fabric.all_reduce(flag, reduce_op="max"))
            if received and self.stop_signal is None:
                self.stop_signal = received
        return self.stop_signal is not None

    def _step_schedulers(self) -> None:
        for scheduler in (self.scheduler, self.d_scheduler):
            if scheduler is not None:
                scheduler.step()
