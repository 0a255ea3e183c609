"""The training loop on Lightning Fabric: one process per device, DDP over NCCL (GPU) or gloo (CPU).

:func:`train` builds the data sets of a config (subject-wise split; fixed validation masks), the model from the
registry (refusing a dataset that lacks a field the model needs), the loss (:func:`accelmri.losses.build_loss`,
plus a discriminator with its own optimiser when the loss has an ``adversarial`` term: paper 001's GAN), the
optimisers and schedulers, and trains with Fabric's precision (autocast), gradient clipping, TensorBoard logs and
a progress bar with ETA on rank 0.

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
``metrics.jsonl`` (one JSON record per logged step and per validation) and ``tensorboard/``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import yaml
from lightning.fabric import Fabric
from lightning.fabric.loggers import TensorBoardLogger
from lightning.fabric.strategies import DDPStrategy
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from accelmri.data.datasets import SliceDataset
from accelmri.data.sample import Sample, collate
from accelmri.engine.build import build_dataset, build_model, check_compatible, prepare_data, volume_slices
from accelmri.engine.checkpoint import (
    load_checkpoint,
    load_scheduler_state,
    rng_state,
    save_checkpoint,
    scheduler_state,
    set_rng_state,
)
from accelmri.engine.config import MONITOR_MODES, ConfigError, ExperimentConfig, OptimizerConfig, SchedulerConfig
from accelmri.engine.evaluate import VolumeScore, autocast, score_volumes
from accelmri.io import atomic_output
from accelmri.losses import CompositeLoss, build_loss, discriminator_loss
from accelmri.metrics import aggregate
from accelmri.models import Prediction

__all__ = ["TrainResult", "TrainingDivergedError", "build_optimizer", "build_training_loss", "train"]

T = TypeVar("T")
console = Console(stderr=True, soft_wrap=True)


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss, gradient or weight and was stopped (``last.pt`` is the last good state)."""


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
    """

    run_dir: Path
    last: Path
    best: Path | None
    step: int
    epoch: int
    metrics: dict[str, dict[str, float]] | None
    is_global_zero: bool


def train(config: ExperimentConfig, resume: bool = False) -> TrainResult:
    """Train the experiment ``config``; with ``resume``, continue from ``<out_dir>/last.pt``.

    With ``trainer.devices · trainer.num_nodes > 1`` Fabric starts the other processes (``ddp``: re-running the
    current command line; ``ddp_spawn``: spawning), or joins the ones started by ``torchrun``/SLURM.

    Raises:
        ConfigError: the run folder is not empty (without ``resume``) or has no ``last.pt`` (with it), an empty
            train split, an unknown or incompatible model, bad loss options.
        DataError: unreadable data or checkpoint files.
        TrainingDivergedError: a non-finite loss, gradient norm or weight.
    """
    trainer = config.trainer
    strategy: str | DDPStrategy = "auto"
    if trainer.world_size > 1 or trainer.strategy != "auto":
        start = "spawn" if trainer.strategy == "ddp_spawn" else "popen"
        strategy = DDPStrategy(start_method=start, find_unused_parameters=trainer.find_unused_parameters)
    logger = TensorBoardLogger(root_dir=trainer.out_dir, name="tensorboard", version="", default_hp_metric=False)
    try:
        fabric = Fabric(
            accelerator=trainer.accelerator,
            devices=trainer.devices,
            num_nodes=trainer.num_nodes,
            strategy=strategy,
            precision=trainer.precision,
            loggers=logger,
        )
    except (RuntimeError, ValueError) as err:  # e.g. accelerator "cuda" on a machine without GPU
        raise ConfigError(config.source, "trainer", str(err).strip().splitlines()[0]) from err
    return fabric.launch(_run, config, resume)


def _run(fabric: Fabric, config: ExperimentConfig, resume: bool) -> TrainResult:
    return _Training(fabric, config, resume).fit()


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
    return torch.optim.RMSprop(param_groups, lr=config.lr, alpha=config.alpha, eps=config.eps,
                               weight_decay=config.weight_decay, momentum=config.momentum)


def _scheduler(
    config: SchedulerConfig, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if config.name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size or 1, gamma=config.gamma)
    if config.name == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(config.milestones), gamma=config.gamma)
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


def _run_dir_problem(run_dir: Path, resume: bool) -> str | None:
    if resume:
        return None if (run_dir / "last.pt").is_file() else f"nothing to resume: {run_dir / 'last.pt'} not found"
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        return f"{run_dir} exists and is not empty: pass --resume to continue it, or choose another trainer.out_dir"
    return None


# -------------------------------------------------------------------------------------------------- training


class _Training:
    """Everything one process needs for one run; :meth:`fit` runs it."""

    def __init__(self, fabric: Fabric, config: ExperimentConfig, resume: bool) -> None:
        self.fabric, self.config, self.source = fabric, config, config.source
        trainer, data = config.trainer, config.data
        self.run_dir = Path(trainer.out_dir)
        problem = fabric.broadcast(_run_dir_problem(self.run_dir, resume) if fabric.is_global_zero else None)
        if problem:
            raise ConfigError(self.source, "trainer.out_dir", problem)

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

        optimizer = build_optimizer(config.optimizer, self.model, "optimizer", self.source)
        self.wrapped, self.optimizer = fabric.setup(_Forward(self.model), optimizer)
        self.scheduler = _scheduler(config.scheduler, self.optimizer.optimizer)
        self.d_optimizer: Any = None
        self.d_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        if self.discriminator is not None:
            self.discriminator.to(fabric.device)  # not DDP-wrapped: its gradients are averaged by hand
            d_config = config.discriminator_optimizer or config.optimizer
            key = "discriminator_optimizer" if config.discriminator_optimizer else "optimizer"
            self.d_optimizer = fabric.setup_optimizers(build_optimizer(d_config, self.discriminator, key, self.source))
            self.d_scheduler = _scheduler(config.scheduler, self.d_optimizer.optimizer)

        self.sampler = _EpochSampler(len(self.train_set), trainer.seed, fabric.global_rank, fabric.world_size,
                                     data.batch_size)
        self.loader = DataLoader(_SeededItems(self.train_set), batch_size=data.batch_size, sampler=self.sampler,
                                 collate_fn=collate, num_workers=data.num_workers,
                                 generator=torch.Generator().manual_seed(trainer.seed))
        batches = self.sampler.batches_per_epoch
        self.total_steps = trainer.max_steps or (trainer.max_epochs or 0) * batches

        self.step = self.epoch = self.batch_in_epoch = 0
        self.last_saved_step: int | None = None
        self.validated_step: int | None = None
        self.best: dict[str, Any] = {"metric": trainer.monitor, "value": None, "step": None}
        self.metrics: dict[str, Any] | None = None
        self.log_file = self.run_dir / "metrics.jsonl"
        if resume:
            self._restore()
        elif fabric.is_global_zero:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with atomic_output(self.run_dir / "config.yaml", overwrite=False) as tmp:
                tmp.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))

    # ----------------------------------------------------------------------------------------- state

    def _restore(self) -> None:
        path = self.run_dir / "last.pt"
        checkpoint = load_checkpoint(path)
        stored, given = checkpoint["config"]["model"], self.config.to_dict()["model"]
        if stored != given:
            raise ConfigError(self.source, "model", f"{path} was trained with model {stored}, the config gives {given}")
        self.model.load_state_dict(checkpoint["model"])
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
        if self.fabric.is_global_zero and self.log_file.is_file():
            kept = [line for line in self.log_file.read_text().splitlines() if json.loads(line)["step"] <= self.step]
            with atomic_output(self.log_file, overwrite=True) as tmp:
                tmp.write_text("".join(f"{line}\n" for line in kept))

    def _payload(self) -> dict[str, Any]:
        """The checkpoint content (collective: gathers every process's RNG state)."""
        states = _gather(self.fabric, rng_state())
        d_optimizer = self.d_optimizer.optimizer.state_dict() if self.d_optimizer is not None else None
        return {
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
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

    def _diverged(self, what: str) -> TrainingDivergedError:
        last = self.run_dir / "last.pt"
        kept = (f"last good checkpoint: {last} (step {self.last_saved_step})" if self.last_saved_step is not None
                else "no checkpoint was saved before")
        return TrainingDivergedError(f"training diverged at step {self.step + 1} (epoch {self.epoch}): {what}; "
                                     f"stopped without saving, {kept}")

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
        scores = score_volumes(self.model, self.val_set, [self.val_volumes[i] for i in mine],
                               batch_size=data.val_batch_size or data.batch_size, num_workers=data.num_workers,
                               device=fabric.device, precision=self.config.trainer.precision)
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
        self._log({"step": self.step, "epoch": self.epoch, "split": "val",
                   **{name: values["mean"] for name, values in summary.items()}})
        if fabric.is_global_zero:
            console.print(f"step {self.step} (epoch {self.epoch}): validation over {len(per_volume)} volumes — "
                          f"PSNR {summary['psnr']['mean']:.2f} dB, SSIM {summary['ssim']['mean']:.4f}, "
                          f"NMSE {summary['nmse']['mean']:.5f}")

    def _checkpoint(self) -> None:
        """Validate (if not done at this step) and save ``last.pt`` (and ``best.pt`` on improvement)."""
        if self.last_saved_step == self.step:
            return
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise self._diverged("the weights are not finite")
        improved = False
        if self.val_volumes and self.validated_step != self.step:
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

    # -------------------------------------------------------------------------------------------- loop

    def fit(self) -> TrainResult:
        """Train until ``max_steps`` / ``max_epochs``; returns where the run ended."""
        fabric, trainer = self.fabric, self.config.trainer
        batches = self.sampler.batches_per_epoch
        columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                   TextColumn("loss {task.fields[loss]}"))
        progress = Progress(*columns, console=console, disable=not (fabric.is_global_zero and trainer.progress_bar))
        with progress:
            task = progress.add_task(self.config.name, total=self.total_steps, completed=self.step, loss="–")
            while self.step < self.total_steps:
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
                    if self.step >= self.total_steps:
                        break
                if self.batch_in_epoch >= batches:
                    self.epoch += 1
                    self.batch_in_epoch = 0
                    if self.config.scheduler.interval == "epoch":
                        self._step_schedulers()
                    if trainer.val_every_epochs and self.epoch % trainer.val_every_epochs == 0:
                        self._checkpoint()
            self._checkpoint()
        best = self.run_dir / "best.pt"
        summary = self.metrics["summary"] if self.metrics is not None else None
        return TrainResult(self.run_dir, self.run_dir / "last.pt", best if best.is_file() else None, self.step,
                           self.epoch, summary, fabric.is_global_zero)

    def _step_schedulers(self) -> None:
        for scheduler in (self.scheduler, self.d_scheduler):
            if scheduler is not None:
                scheduler.step()
