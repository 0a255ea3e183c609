"""Experiment configs: a YAML file (plus dotted command-line overrides) → validated, frozen dataclasses.

A config has the sections ``data``, ``model``, ``loss``, ``optimizer``, ``scheduler`` and ``trainer`` (and the
optional ``name``, ``description`` and ``discriminator_optimizer``); see ``docs/engine.md`` and ``configs/`` for
every key. Overrides are ``KEY.SUB=VALUE`` strings whose value is parsed with ``yaml.safe_load`` (so ``3``,
``1.0e-4``, ``[1, 2]``, ``null`` and ``true`` have their YAML types); they may create keys (e.g. model arguments).

Every problem is a :class:`ConfigError` — a :class:`~accelmri.data.errors.DataError` naming the config file and
the dotted key, so the CLI prints one line and exits with code 2. Paths inside the config (data files, output
folders) are used as given: relative paths are relative to the working directory, and they are only checked when
the data are built. :meth:`ExperimentConfig.to_dict` gives the resolved config as plain YAML/JSON types; it is
stored in every checkpoint and parses back to an equal config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import as_file, files
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from accelmri.data.datasets import Augmentation, check_task
from accelmri.data.digital_brain import REALISM_PRESETS, Realism, RealismError, canonical_contrast
from accelmri.data.errors import DataError
from accelmri.engine.catalog import shipped_configs
from accelmri.losses import LOSSES, PRESETS
from accelmri.physics.degrade import Acquisition
from accelmri.physics.masks import FASTMRI_MASK_TYPES, MASK_KINDS

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "MONITOR_MODES",
    "AcquisitionConfig",
    "ConfigError",
    "DataConfig",
    "DigitalBrainSource",
    "ExperimentConfig",
    "FileEntry",
    "FilesSource",
    "LossConfig",
    "ModelConfig",
    "OptimizerConfig",
    "SchedulerConfig",
    "SplitConfig",
    "TrainerConfig",
    "apply_overrides",
    "load_config",
    "parse_config",
]

#: Metrics ``trainer.monitor`` may name, with the direction that is better.
MONITOR_MODES = {"psnr": "max", "ssim": "max", "nmse": "min"}


class ConfigError(DataError):
    """A bad experiment config, as one line ``FILE: KEY: problem`` (the CLI exits with code 2).

    Attributes:
        key: the dotted config key at fault (``""`` for the whole file).
    """

    def __init__(self, source: str | Path, key: str, problem: str) -> None:
        self.key = key
        problem = " ".join(problem.split())  # one line, whatever the wrapped message looked like
        super().__init__(source, f"{key}: {problem}" if key else problem)


# ----------------------------------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class DigitalBrainSource:
    """The embedded digital brain, simulated once into ``dir`` (fastMRI HDF5 files, ``accelmri simulate``).

    Attributes:
        kind: ``"digital_brain"``.
        contrasts: target contrasts; every subject gives one volume per target contrast.
        reference: reference contrast (multi-contrast guidance), or ``None``. A list of contrasts randomises the
            reference contrast: every target volume is paired with the same subject's volume of each listed
            reference contrast (all from one reference session: the same misregistration), so training draws each
            reference contrast equally often and one model serves all of them (validation and test average over
            the pairs). Each reference contrast is simulated into its own folder (under ``dir`` when given:
            ``dir/<contrast>``).
        coils: receive coils (1 = single-coil).
        subjects: number of subjects (split subject-wise).
        size: even matrix size ``H = W``.
        slices: slices per volume.
        noise_std: complex k-space noise std in signal units.
        seed: data-set seed.
        realism: the simulation's departures from the idealised digital brain
            (:class:`~accelmri.data.digital_brain.Realism`): in YAML ``none`` (the default: the original
            simulation), ``realistic`` (:meth:`~accelmri.data.digital_brain.Realism.realistic`) or a mapping of its
            fields (``{deformation_mm: 3.0, texture: 0.08, ...}``, the others at their off values). Its
            ``reference_*`` fields act on ``reference``.
        dir: folder of the simulated files; ``None`` = a folder under the digital-brain cache keyed by these
            parameters (``$ACCELMRI_CACHE``, default ``~/.cache/accelmri``).
    """

    kind: Literal["digital_brain"] = "digital_brain"
    contrasts: tuple[str, ...] = ("T2",)
    reference: str | tuple[str, ...] | None = None
    coils: int = 1
    subjects: int = 10
    size: int = 256
    slices: int = 16
    noise_std: float = 0.005
    seed: int = 0
    realism: Realism = field(default_factory=Realism)
    dir: str | None = None

    @property
    def references(self) -> tuple[str, ...]:
        """The reference contrasts as given: ``()`` without a reference, one name, or the randomised list."""
        if self.reference is None:
            return ()
        return (self.reference,) if isinstance(self.reference, str) else tuple(self.reference)


@dataclass(frozen=True)
class FileEntry:
    """One volume given by path: a target file (or DICOM folder), optionally with a reference file.

    Attributes:
        target: the volume to restore.
        reference: the guide contrast of the same subject, or ``None``.
        subject: subject key for the split (default: the target file name up to its first dot).
    """

    target: str
    reference: str | None = None
    subject: str | None = None


@dataclass(frozen=True)
class FilesSource:
    """User files: exactly one of a fastMRI pairing CSV, an IXI folder, a data folder, or a list of paths.

    Attributes:
        kind: ``"files"``.
        csv: ``PD_file, PDFS_file[, score]`` CSV (the second column is the target), split subject-wise; or a
            mapping ``{train: CSV, val: CSV, test: CSV}`` of predefined splits (the MINet/SANet layout).
        ixi: folder of IXI NIfTI files ``IXI<ID>-<Site>-<Num>-<contrast>.nii.gz``.
        ixi_target: IXI target contrast.
        ixi_reference: IXI reference contrast.
        dir: a folder: the output of ``accelmri simulate`` (its ``pairs.csv``, else its ``multicoil/`` or
            ``singlecoil/`` ``.h5`` files) or a folder of fastMRI ``.h5`` files (``knee/multicoil_val``), split
            subject-wise (the pair's reference file, else each file is a subject); or a mapping ``{train: DIR,
            val: DIR, test: DIR}`` of predefined splits (fastMRI's ``multicoil_train`` / ``multicoil_val``).
        paths: volumes as paths (``"target.h5"``) or mappings ``{target, reference, subject}``.
        use_reference: load the reference contrast of CSV/IXI pairs (``False``: single-contrast data).
        acquisition: keep only the volumes whose fastMRI HDF5 ``acquisition`` attribute is listed (``AXT2``,
            ``AXFLAIR``, ``AXT1POST``, ``CORPD_FBK``, ...): one contrast of a mixed fastMRI brain folder, as fastMRI's
            ``evaluate.py --acquisition``; files without the attribute are left out. ``()`` keeps every volume.
    """

    kind: Literal["files"] = "files"
    csv: str | dict[str, str] | None = None
    ixi: str | None = None
    ixi_target: str = "T2"
    ixi_reference: str = "PD"
    dir: str | dict[str, str] | None = None
    paths: tuple[FileEntry, ...] = ()
    use_reference: bool = True
    acquisition: tuple[str, ...] = ()


@dataclass(frozen=True)
class AcquisitionConfig:
    """How the target is acquired (:class:`~accelmri.physics.degrade.Acquisition`, or fastMRI's masks).

    accelmri's ``random`` and ``equispaced`` share fastMRI's names but not its masks
    (:mod:`accelmri.physics.masks`). ``data.protocol`` decides which family ``mask_kind`` names:
    ``crop_then_degrade`` takes accelmri's masks only (exact-count masks inside the acquired LR grid), ``fastmri``
    takes fastMRI's only (:func:`~accelmri.physics.masks.fastmri_mask`, bit-identical to fastMRI's
    ``create_mask_for_mask_type``). ``mask_family`` states it in the config; a family, mask name or list that the
    protocol does not take is refused with the key to change.

    Attributes:
        mask_kind: accelmri's ``random``, ``equispaced``, ``gaussian1d``, ``poisson2d``, or fastMRI's
            ``mask_type`` (``random``, ``equispaced``, ``equispaced_fraction``, ``magic``, ``magic_fraction``).
        mask_family: ``accelmri`` or ``fastmri``, checked against ``data.protocol``; ``None``: the protocol's.
        acceleration: undersampling ``R`` inside the acquired LR k-space (1 = fully sampled); for fastMRI masks
            the nominal R (the line spacing for ``equispaced`` / ``magic``), used when ``accelerations`` is empty.
        center_fraction: fully sampled centre fraction (used by fastMRI masks when ``center_fractions`` is empty).
        accelerations: fastMRI's ``accelerations`` list (fastMRI family only; one pair is chosen per mask).
        center_fractions: fastMRI's ``center_fractions`` list, one per acceleration.
        scale: k-space truncation (SR) factor ``s``.
        noise_std: extra complex k-space noise std, in the units of the truncated k-space.
    """

    mask_kind: str = "equispaced"
    mask_family: Literal["accelmri", "fastmri"] | None = None
    acceleration: float = 1.0
    center_fraction: float = 0.08
    accelerations: tuple[float, ...] = ()
    center_fractions: tuple[float, ...] = ()
    scale: int = 1
    noise_std: float = 0.0

    @property
    def fastmri_lists(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """fastMRI's ``(center_fractions, accelerations)``: the lists, or the single values."""
        return self.center_fractions or (self.center_fraction,), self.accelerations or (self.acceleration,)

    def to_acquisition(self) -> Acquisition:
        """The :class:`Acquisition` of ``crop_then_degrade`` (the datasets override its seed per slice)."""
        return Acquisition(self.mask_kind, self.acceleration, self.center_fraction, self.scale, self.noise_std)


@dataclass(frozen=True)
class SplitConfig:
    """Train/val/test split (:mod:`accelmri.data.splits`).

    Attributes:
        ratios: relative sizes of train, val and test.
        seed: shuffling seed of the subject split.
        by: ``"subject"`` (subject-wise, the default) or ``"slab"`` (contiguous slabs of every volume, separated
            by ``gap`` slices: for data of a single subject).
        gap: slices dropped between slabs (``by: slab``).
    """

    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0
    by: Literal["subject", "slab"] = "subject"
    gap: int = 2


@dataclass(frozen=True)
class DataConfig:
    """Data: where the volumes come from, how they are degraded, split, normalised and batched.

    Attributes:
        source: :class:`DigitalBrainSource` or :class:`FilesSource` (chosen by its ``kind``).
        task: ``reconstruction``, ``super_resolution`` or ``joint``.
        protocol: ``crop_then_degrade`` (default; the SR papers' recipe, MINet/SANet/T2Net: optional centre crop of
            the complex image, then k-space truncation, accelmri mask and noise on that grid,
            :class:`~accelmri.data.datasets.SliceDataset`) or ``fastmri`` (the fastMRI leaderboard's: fastMRI's
            mask on the acquired phase-encode lines, zero-filled reconstruction, crop to the file's
            ``recon_size``, the file's ``reconstruction_rss`` / ``reconstruction_esc`` as target;
            :class:`~accelmri.data.fastmri_protocol.FastMRIProtocolDataset`, docs/fastmri.md).
        acquisition: the degradation.
        split: the split.
        crop: centre crop ``[H, W]`` of the HR image before degradation, or ``None``.
        patch_size: random HR training patches ``[P, Q]`` (task ``super_resolution`` only; divisible by the scale,
            at most the image or crop size), cut after degradation with whole-slice normalisation; validation and
            test score whole slices. ``None`` trains on whole slices.
        sens_maps: ``"espirit"`` to estimate coil maps (multi-coil data; with ``protocol: fastmri`` on the acquired
            k-space grid, calibrated on the mask's fully sampled centre columns), or ``None``.
        normalization: ``"scale"`` or ``"meanstd"`` (:class:`~accelmri.data.datasets.SliceDataset`).
        augment: random flips / 90° rotations of the training slices' HR images before the acquisition
            (:class:`~accelmri.data.datasets.Augmentation`: ``{hflip, vflip, rot90}``, all ``false`` by default;
            ``rot90`` makes half turns only on non-square slices); validation and test are never augmented.
        batch_size: training slices per batch and per process.
        val_batch_size: slices per batch in validation/evaluation (default ``batch_size``).
        num_workers: DataLoader worker processes.
    """

    source: DigitalBrainSource | FilesSource
    task: Literal["reconstruction", "super_resolution", "joint"]
    protocol: Literal["crop_then_degrade", "fastmri"] = "crop_then_degrade"
    acquisition: AcquisitionConfig = field(default_factory=AcquisitionConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    crop: tuple[int, int] | None = None
    patch_size: tuple[int, int] | None = None
    sens_maps: Literal["espirit"] | None = None
    normalization: Literal["scale", "meanstd"] = "scale"
    augment: Augmentation = field(default_factory=Augmentation)
    batch_size: int = 1
    val_batch_size: int | None = None
    num_workers: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """A registered model (:mod:`accelmri.models.registry`) and its constructor arguments.

    In YAML the arguments sit next to the name: ``{name: edsr, scale: 2, n_blocks: 4}``.

    Attributes:
        name: registered name.
        kwargs: constructor keyword arguments.
    """

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LossConfig:
    """The training loss (:func:`accelmri.losses.build_loss`).

    Attributes:
        preset: a paper preset of :data:`accelmri.losses.PRESETS`, or ``None`` to give ``weights``.
        weights: ``{term: weight}`` (exclusive with ``preset``).
        options: constructor arguments per term, e.g. ``{perceptual: {weights: vgg19.pth}}``.
        discriminator: the GAN discriminator used when the loss has an ``adversarial`` term.
        warmup_epochs: epochs trained with ``warmup_weights`` before the main loss (FASR-Net: 10 epochs of L1).
        warmup_weights: ``{term: weight}`` of the warm-up loss.
    """

    preset: str | None = None
    weights: dict[str, float] | None = None
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    discriminator: ModelConfig = field(default_factory=lambda: ModelConfig("vgg_discriminator"))
    warmup_epochs: int = 0
    warmup_weights: dict[str, float] | None = None

    @property
    def terms(self) -> dict[str, float]:
        """The main loss as ``{term: weight}``."""
        return dict(PRESETS[self.preset]) if self.preset is not None else dict(self.weights or {})

    @property
    def adversarial(self) -> bool:
        """Whether a discriminator is trained (an ``adversarial`` term in either loss)."""
        return "adversarial" in self.terms or "adversarial" in (self.warmup_weights or {})


@dataclass(frozen=True)
class OptimizerConfig:
    """An optimiser (``torch.optim``).

    Attributes:
        name: ``adam``, ``adamw`` (Adam with decoupled weight decay, ``torch.optim.AdamW``) or ``rmsprop``.
        lr: learning rate.
        betas: Adam's and AdamW's ``(β1, β2)``.
        eps: numerical-stability term.
        weight_decay: L2 penalty (``adam``, ``rmsprop``); AdamW's decoupled decay rate (``adamw``: 0 unless given,
            not torch's default 0.01).
        alpha: RMSprop's smoothing constant.
        momentum: RMSprop's momentum.
        param_lr: learning rates of parameter groups by module-name prefix, e.g. ``{backbone: 1.0e-4}``
            (FASR-Net's texture extractor); the other parameters use ``lr``.
    """

    name: Literal["adam", "adamw", "rmsprop"] = "adam"
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    alpha: float = 0.99
    momentum: float = 0.0
    param_lr: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SchedulerConfig:
    """A learning-rate schedule.

    ``cosine`` and ``linear`` (``LambdaLR``) warm up linearly over ``W`` scheduler steps and then decay to
    ``min_lr`` at the end of the run: after ``t`` scheduler steps (``t`` optimiser steps with ``interval: step``,
    ``t`` epochs with ``interval: epoch``) a parameter group with base rate ``lr`` uses ``lr·(t + 1)/W`` for
    ``t < W``, then ``min_lr + (lr − min_lr)·d(p)`` with ``p = min(1, (t − W)/(T − W))`` and ``d(p) = (1 +
    cos(π·p))/2`` (cosine) or ``1 − p`` (linear); ``T`` is the run's length in the same units (``trainer.max_steps``,
    or ``max_epochs`` × batches per epoch; in epochs rounded up). ``T`` and ``W`` are fixed when the run starts
    and stored with the scheduler in ``last.pt``: a resumed run that trains longer stays at ``min_lr``.

    Attributes:
        name: ``none``, ``step`` (``StepLR``), ``multistep`` (``MultiStepLR``), ``cosine`` or ``linear``.
        step_size: period of ``step`` in ``interval`` units.
        milestones: the ``multistep`` milestones in ``interval`` units.
        gamma: multiplicative decay (``step``, ``multistep``).
        interval: ``epoch`` or ``step`` (optimiser steps).
        warmup_steps: ``W`` in optimiser steps (``cosine``/``linear`` with ``interval: step``).
        warmup_epochs: ``W`` in epochs (``cosine``/``linear``; with ``interval: step`` × batches per epoch).
        min_lr: the final learning rate of ``cosine``/``linear`` (absolute, the same for every parameter group; below
            every group's ``lr``).
    """

    name: Literal["none", "step", "multistep", "cosine", "linear"] = "none"
    step_size: int | None = None
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    interval: Literal["epoch", "step"] = "epoch"
    warmup_steps: int | None = None
    warmup_epochs: int | None = None
    min_lr: float = 0.0


@dataclass(frozen=True)
class TrainerConfig:
    """The training loop.

    Attributes:
        max_epochs: epochs to train (exclusive with ``max_steps``).
        max_steps: optimiser steps to train (exclusive with ``max_epochs``).
        val_every_epochs: validate (and save ``last.pt``) every this many epochs (``0`` or ``null`` = never by
            epoch: validate by steps only, or only at the end).
        val_every_steps: also validate every this many steps (``null`` or ``0`` = never by step).
        log_every: log the training loss every this many steps.
        precision: Fabric precision ``32-true`` (``32`` is read as it), ``bf16-mixed`` or ``16-mixed`` (GPU).
        grad_clip: gradient-norm clipping threshold, or ``None``.
        accelerator: Fabric accelerator (``auto``, ``cpu``, ``cuda``, ...).
        devices: processes per node.
        num_nodes: nodes.
        strategy: ``auto`` (DDP when ``devices·num_nodes > 1``), ``ddp`` or ``ddp_spawn``.
        find_unused_parameters: DDP's flag, for models with parameters unused in some steps.
        seed: seed of weights, data order and training masks.
        out_dir: the run folder (``last.pt``, ``best.pt``, ``metrics.jsonl``, ``config.yaml``, TensorBoard logs).
        monitor: validation metric that selects ``best.pt``: ``psnr``, ``ssim`` or ``nmse``.
        progress_bar: show a progress bar with ETA on rank 0.
        ema: decay ``β`` of an exponential moving average of the model's weights and buffers (e.g. ``0.999``),
            updated after every optimiser step (``ema ← β·ema + (1 − β)·weights``, starting from the weights after
            the first step); validation scores it and checkpoints store it as ``model``. ``None``: no average.
        loggers: where the scalars (and validation images) go: ``tensorboard`` (``<out_dir>/tensorboard``), ``csv``
            (``<out_dir>/csv/metrics.csv``), ``wandb`` (``pip install 'accelmri[wandb]'``), ``mlflow`` (``pip
            install 'accelmri[mlflow]'``); at least one.
        logger_options: constructor arguments per logger (Lightning's ``WandbLogger`` / ``MLFlowLogger``), e.g.
            ``{wandb: {project: mri, offline: true}}``.
    """

    max_epochs: int | None = None
    max_steps: int | None = None
    val_every_epochs: int | None = 1
    val_every_steps: int | None = None
    log_every: int = 10
    precision: Literal["32-true", "bf16-mixed", "16-mixed"] = "32-true"
    grad_clip: float | None = None
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: Literal["auto", "ddp", "ddp_spawn"] = "auto"
    find_unused_parameters: bool = False
    seed: int = 0
    out_dir: str = "runs/experiment"
    monitor: Literal["psnr", "ssim", "nmse"] = "psnr"
    progress_bar: bool = True
    ema: float | None = None
    loggers: tuple[Literal["tensorboard", "csv", "wandb", "mlflow"], ...] = ("tensorboard",)
    logger_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def world_size(self) -> int:
        """Total number of processes."""
        return self.devices * self.num_nodes


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment; :meth:`to_dict` is the resolved config stored in checkpoints.

    Attributes:
        data, model, loss, optimizer, scheduler, trainer: the sections.
        discriminator_optimizer: the GAN discriminator's optimiser (default: ``optimizer``).
        name: experiment name (default: the config file's stem).
        description: free text.
        source: where the config came from (file, or ``checkpoint (stored config)``); not part of :meth:`to_dict`.
    """

    data: DataConfig
    model: ModelConfig
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    loss: LossConfig = field(default_factory=lambda: LossConfig(weights={"l1": 1.0}))
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    discriminator_optimizer: OptimizerConfig | None = None
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    name: str = "experiment"
    description: str = ""
    source: str = field(default="<config>", compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain dicts, lists, strings and numbers (``source`` left out)."""
        resolved = _to_plain(self)
        resolved.pop("source")
        return resolved


# ------------------------------------------------------------------------------------------------------ parsing


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read a YAML experiment config, apply ``KEY=VALUE`` overrides and validate it.

    ``name`` defaults to the file's stem and ``trainer.out_dir`` to ``runs/<name>``. A ``path`` that does not
    exist but is the name of a shipped config (``tiny_sr_edsr``, ``accelmri configs list``) loads that config.

    Raises:
        ConfigError: missing or unreadable file, invalid YAML, bad override, or any invalid key (named).
    """
    file = Path(path)
    if not file.exists() and (shipped := shipped_configs().get(str(path))) is not None:
        with as_file(shipped) as shipped_file:
            return load_config(shipped_file, overrides)
    if not file.is_file():
        raise ConfigError(file, "", "config file not found")
    raw = _read_mapping(file)
    raw.setdefault("name", file.stem)
    return parse_config(_compose(raw, file, file.parent, (os.path.realpath(file),)), source=str(file),
                        overrides=overrides)


def _read_mapping(file: Path | Traversable) -> dict[str, Any]:
    """A config file's YAML mapping.

    Raises:
        ConfigError: unreadable file, invalid YAML, or not a mapping.
    """
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(str(file), "", f"cannot read the config ({err})") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(str(file), "", f"invalid YAML{where}: {getattr(err, 'problem', None) or err}") from err
    if not isinstance(raw, dict):
        raise ConfigError(str(file), "", "the config must be a YAML mapping of sections (data, model, ...)")
    return raw


def _compose(raw: dict[str, Any], file: Path | Traversable, folder: Path | Traversable,
             chain: tuple[str, ...]) -> dict[str, Any]:
    """``raw`` merged over the base configs its ``defaults:`` lists, in order (``chain``: the real paths of the
    files that include it, to refuse a cycle).

    A base is ``NAME`` → ``NAME.yaml`` relative to the including file's ``folder``, else to the shipped configs
    (so a copied config still finds ``bases/...``); bases may list defaults of their own. Mappings merge key by key;
    any other value (lists included) of a later base, and of the including file last, replaces the earlier one.

    Raises:
        ConfigError: ``defaults`` not a list of names, a base not found, a base that includes itself.
    """
    names = raw.pop("defaults", [])
    if not isinstance(names, list) or not all(isinstance(name, str) and name for name in names):
        raise ConfigError(str(file), "defaults", f"expected a list of base config names, got {names!r}")
    merged: dict[str, Any] = {}
    for name in names:
        parts = f"{name}.yaml".split("/")
        for root in (folder, files("accelmri").joinpath("configs")):
            base = root.joinpath(*parts)
            if base.is_file():
                break
        else:
            raise ConfigError(str(file), "defaults", f"base config {name!r} not found ({name}.yaml beside this file "
                              "or among the shipped configs)")
        if (key := os.path.realpath(str(base))) in chain:
            raise ConfigError(str(file), "defaults", f"base config {name!r} includes itself")
        base_folder = root.joinpath(*parts[:-1]) if parts[:-1] else root
        merged = _merge(merged, _compose(_read_mapping(base), base, base_folder, (*chain, key)))
    return _merge(merged, raw)


def _merge(base: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """``child`` over ``base``: nested mappings merged recursively, every other value of ``child`` wins."""
    merged = dict(base)
    for key, value in child.items():
        both = isinstance(value, Mapping) and isinstance(merged.get(key), Mapping)
        merged[key] = _merge(merged[key], value) if both else value
    return merged


def parse_config(raw: Mapping[str, Any], source: str = "<config>", overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Validate a config mapping (e.g. :meth:`ExperimentConfig.to_dict` from a checkpoint) after ``overrides``.

    Raises:
        ConfigError: naming ``source`` and the first invalid key.
    """
    data = apply_overrides(raw, overrides, source)
    trainer = data.setdefault("trainer", {})
    if isinstance(trainer, dict):
        trainer.setdefault("out_dir", f"runs/{data.get('name', 'experiment')}")
        if trainer.get("precision") in ("32", 32):
            trainer["precision"] = "32-true"
    config = dataclasses.replace(_build(ExperimentConfig, data, "", source), source=source)
    _check(config)
    return config


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str], source: str = "<config>") -> dict[str, Any]:
    """A deep copy of ``raw`` with every ``KEY.SUB=VALUE`` override set (the value parsed by ``yaml.safe_load``).

    Raises:
        ConfigError: an override without ``=``, with an empty key, an unparsable value, or a key that goes
            through a value that is not a mapping.
    """
    data = _deep_copy(raw)
    for override in overrides:
        key, sep, text = override.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(source, key or override, f"override {override!r} is not KEY.SUB=VALUE")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(source, key, f"cannot parse the override value {text!r} ({err})") from err
        node = data
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(source, key, f"cannot set it: {where} is {child!r}, not a mapping")
            node = child
        node[parts[-1]] = value
    return data


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _deep_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_deep_copy(v) for v in value]
    return value


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _build(cls: type, value: Any, key: str, source: str) -> Any:
    """Instantiate the dataclass ``cls`` from a mapping, converting and checking every field by its type hint."""
    if cls is ModelConfig:
        return _model_config(value, key, source)
    if cls is FileEntry and isinstance(value, str):
        value = {"target": value}
    if cls is Realism and isinstance(value, str):  # a preset name
        try:
            return Realism.preset(value)
        except ValueError:
            raise ConfigError(source, key, f"must be one of {', '.join(REALISM_PRESETS)} or a mapping of "
                              f"{', '.join(f.name for f in dataclasses.fields(Realism))}; got {value!r}") from None
    if not isinstance(value, Mapping):
        raise ConfigError(source, key, f"expected a mapping, got {_describe(value)}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if not (cls is ExperimentConfig and f.name == "source")]
    unknown = sorted(set(value) - set(names))
    if unknown:
        raise ConfigError(source, _join(key, unknown[0]), f"unknown key; valid keys here: {', '.join(names)}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in names:
            continue
        if f.name in value:
            kwargs[f.name] = _convert(value[f.name], hints[f.name], _join(key, f.name), source)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(source, _join(key, f.name), "missing (required)")
    try:
        return cls(**kwargs)
    except RealismError as err:  # Realism validates its own values
        raise ConfigError(source, _join(key, err.field), err.problem) from err


def _model_config(value: Any, key: str, source: str) -> ModelConfig:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise ConfigError(source, key, f"expected a mapping {{name: ..., <arguments>}}, got {_describe(value)}")
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(source, _join(key, "name"), "missing: the registered model name")
    return ModelConfig(name, {str(k): _deep_copy(v) for k, v in value.items() if k != "name"})


def _convert(value: Any, hint: Any, key: str, source: str) -> Any:
    """Check ``value`` against the type ``hint`` and convert it (lists → tuples, ints → floats, "1e-4" → float)."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return _deep_copy(value)
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(source, key, "must not be null")
        options = [a for a in args if a is not type(None)]
        classes = [a for a in options if dataclasses.is_dataclass(a)]
        if len(classes) > 1:
            return _tagged(value, classes, key, source)
        problems = []
        for option in options:
            try:
                return _convert(value, option, key, source)
            except ConfigError as err:
                problems.append(err.problem.partition(": ")[2])
        raise ConfigError(source, key, " or ".join(problems))
    if origin is Literal:
        if value not in args:
            raise ConfigError(source, key, f"must be one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key, source)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, key, f"expected true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(source, key, f"expected an integer, got {_describe(value)}")
        return value
    if hint is float:
        return _float(value, key, source)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(source, key, f"expected a string, got {_describe(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(source, key, f"expected a list, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(source, key, f"expected a list of {len(args)} values, got {list(value)!r}")
        return tuple(_convert(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(source, key, f"expected a mapping, got {_describe(value)}")
        return {str(k): _convert(v, args[1], _join(key, str(k)), source) for k, v in value.items()}
    raise TypeError(f"config field {key} has an unsupported type {hint!r}")  # a bug in this module


def _float(value: Any, key: str, source: str) -> float:
    if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(source, key, f"expected a finite number, got {_describe(value)}")
    return float(value)


def _tagged(value: Any, classes: list[Any], key: str, source: str) -> Any:
    kinds = {get_args(get_type_hints(c)["kind"])[0]: c for c in classes}
    if not isinstance(value, Mapping) or value.get("kind") not in kinds:
        got = value.get("kind") if isinstance(value, Mapping) else value
        raise ConfigError(source, _join(key, "kind"), f"must be one of {', '.join(kinds)}; got {got!r}")
    return _build(kinds[value["kind"]], value, key, source)


def _to_plain(value: Any) -> Any:
    if isinstance(value, ModelConfig):
        return {"name": value.name, **_to_plain(value.kwargs)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------------------------------- cross-checks


def _check(config: ExperimentConfig) -> None:
    """Checks that involve several keys (each error names the key to change)."""
    source = config.source
    _check_data(config.data, source)
    _check_model(config, source)
    _check_loss(config.loss, source)
    optimizers = {"optimizer": config.optimizer, "discriminator_optimizer": config.discriminator_optimizer}
    for key, optimizer in optimizers.items():
        if optimizer is not None and not optimizer.lr > 0:
            raise ConfigError(source, f"{key}.lr", f"must be > 0, got {optimizer.lr}")
    _check_scheduler(config.scheduler, source)
    _check_min_lr(config, source)
    _check_trainer(config.trainer, source)


def _check_data(data: DataConfig, source: str) -> None:
    if data.protocol == "fastmri":
        _check_fastmri_protocol(data, source)
    else:
        _check_accelmri_family(data.acquisition, source)
        try:
            acquisition = data.acquisition.to_acquisition()
        except ValueError as err:
            raise ConfigError(source, "data.acquisition", str(err)) from err
        try:
            check_task(data.task, acquisition)
        except ValueError as err:
            raise ConfigError(source, "data.task", str(err)) from err
    scale = data.acquisition.scale
    if data.crop is not None and (min(data.crop) < 1 or data.crop[0] % scale or data.crop[1] % scale):
        raise ConfigError(source, "data.crop", f"{list(data.crop)} must be positive and divisible by the scale {scale}")
    if data.patch_size is not None:
        _check_patch_size(data, data.patch_size, scale, source)
    if not sum(data.split.ratios) > 0 or min(data.split.ratios) < 0:
        raise ConfigError(source, "data.split.ratios", f"must be >= 0 and not all 0, got {list(data.split.ratios)}")
    for name in ("batch_size", "val_batch_size"):
        value = getattr(data, name)
        if value is not None and value < 1:
            raise ConfigError(source, f"data.{name}", f"must be >= 1, got {value}")
    if data.num_workers < 0:
        raise ConfigError(source, "data.num_workers", f"must be >= 0, got {data.num_workers}")
    if isinstance(data.source, DigitalBrainSource):
        _check_digital_brain(data.source, data.crop, scale, source)
    else:
        _check_files(data.source, source)


def _check_accelmri_family(acq: AcquisitionConfig, source: str) -> None:
    """``crop_then_degrade`` takes accelmri's masks only; fastMRI's names, family and lists are refused."""
    key = "data.acquisition"
    fastmri_only = acq.mask_kind in FASTMRI_MASK_TYPES and acq.mask_kind not in MASK_KINDS
    if acq.mask_family == "fastmri" or fastmri_only:
        raise ConfigError(source, f"{key}.mask_family" if acq.mask_family else f"{key}.mask_kind",
                          f"fastMRI's {acq.mask_kind!r} mask is applied by data.protocol: fastmri (masks on the "
                          f"acquired lines); data.protocol: crop_then_degrade takes accelmri's masks "
                          f"({', '.join(MASK_KINDS)})")
    if acq.accelerations or acq.center_fractions:
        raise ConfigError(source, f"{key}.accelerations", "lists of accelerations / center_fractions are fastMRI's "
                          "(data.protocol: fastmri); accelmri's masks take acceleration and center_fraction")


def _check_fastmri_protocol(data: DataConfig, source: str) -> None:
    """``protocol: fastmri``: a reconstruction task on fastMRI files with one of fastMRI's masks."""
    acq, key = data.acquisition, "data.acquisition"
    if acq.mask_family == "accelmri":
        raise ConfigError(source, f"{key}.mask_family", "data.protocol: fastmri uses fastMRI's masks; set "
                          "mask_family: fastmri (or remove it)")
    if acq.mask_kind not in FASTMRI_MASK_TYPES:
        raise ConfigError(source, f"{key}.mask_kind", f"data.protocol: fastmri takes fastMRI's mask types "
                          f"({', '.join(FASTMRI_MASK_TYPES)}), got {acq.mask_kind!r}")
    fractions, accelerations = acq.fastmri_lists
    if len(fractions) != len(accelerations):
        raise ConfigError(source, f"{key}.center_fractions", f"{list(fractions)} must have one value per "
                          f"acceleration {list(accelerations)}")
    if min(accelerations) <= 1 or not all(0 < f < 1 for f in fractions):
        raise ConfigError(source, key, f"fastMRI masks need accelerations > 1 and center fractions in (0, 1), got "
                          f"{list(accelerations)} and {list(fractions)}")
    if acq.mask_kind in ("equispaced", "magic") and any(a != int(a) for a in accelerations):
        raise ConfigError(source, f"{key}.accelerations", f"fastMRI's {acq.mask_kind} takes R as the line spacing: "
                          f"integers, got {list(accelerations)}")
    if data.task != "reconstruction" or acq.scale != 1 or acq.noise_std != 0:
        raise ConfigError(source, "data.task", "data.protocol: fastmri is fastMRI's reconstruction benchmark: task "
                          "reconstruction, data.acquisition.scale 1, noise_std 0")
    for name in ("crop", "patch_size"):
        if getattr(data, name) is not None:
            raise ConfigError(source, f"data.{name}", "not used by data.protocol: fastmri (it crops to each file's "
                              "recon_size after reconstruction); remove it")
    if data.augment.enabled:
        raise ConfigError(source, "data.augment", "not used by data.protocol: fastmri (the leaderboard's data are "
                          "not augmented); remove it")
    if data.source.kind == "files" and data.source.use_reference and (data.source.csv or data.source.ixi):
        raise ConfigError(source, "data.source.use_reference", "data.protocol: fastmri is single-contrast; set "
                          "use_reference: false")


def _check_patch_size(data: DataConfig, patch: tuple[int, int], scale: int, source: str) -> None:
    key = "data.patch_size"
    if data.task != "super_resolution":
        raise ConfigError(source, key, f"random patches are for task super_resolution only, got task {data.task} "
                          "(its models need the k-space of the whole slice); remove data.patch_size")
    if min(patch) < 1 or patch[0] % scale or patch[1] % scale:
        raise ConfigError(source, key, f"{list(patch)} must be positive and divisible by the scale {scale}")
    if data.crop is not None:
        size, where = data.crop, "data.crop"
    elif isinstance(data.source, DigitalBrainSource):
        size, where = (data.source.size, data.source.size), "data.source.size"
    else:
        return  # files: checked against every slice when it is read
    if patch[0] > size[0] or patch[1] > size[1]:
        raise ConfigError(source, key, f"{list(patch)} is larger than the image size {list(size)} ({where})")


def _check_digital_brain(brain: DigitalBrainSource, crop: tuple[int, int] | None, scale: int, source: str) -> None:
    key = "data.source"
    contrasts = [*brain.contrasts, *brain.references]
    if brain.reference is not None and not brain.references:
        raise ConfigError(source, f"{key}.reference", "an empty list; give a contrast, a list of them, or null")
    try:
        names = [canonical_contrast(c) for c in contrasts]
    except ValueError as err:
        raise ConfigError(source, f"{key}.contrasts", str(err)) from err
    if not brain.contrasts or len(set(names)) != len(names):
        raise ConfigError(source, f"{key}.contrasts", f"need distinct target contrasts other than the reference, got "
                          f"contrasts {list(brain.contrasts)} with reference {brain.reference!r}")
    for name in ("coils", "subjects", "slices", "size"):
        if getattr(brain, name) < 1:
            raise ConfigError(source, f"{key}.{name}", f"must be >= 1, got {getattr(brain, name)}")
    if brain.size % 2:
        raise ConfigError(source, f"{key}.size", f"must be even, got {brain.size}")
    if crop is None and brain.size % scale:
        raise ConfigError(source, "data.acquisition.scale", f"scale {scale} does not divide the image size "
                          f"{brain.size} (data.source.size); change one of them or set data.crop")
    if crop is not None and max(crop) > brain.size:
        raise ConfigError(source, "data.crop", f"{list(crop)} is larger than the image size {brain.size}")
    if brain.noise_std < 0 or brain.seed < 0:
        raise ConfigError(source, key, "noise_std and seed must be >= 0")


def _check_files(files: FilesSource, source: str) -> None:
    given = [name for name in ("csv", "ixi", "dir", "paths") if getattr(files, name)]
    if len(given) != 1:
        raise ConfigError(source, "data.source", f"give exactly one of csv, ixi, dir or paths (got {given or 'none'})")
    for name in ("csv", "dir"):
        value = getattr(files, name)
        unknown = sorted(set(value) - {"train", "val", "test"}) if isinstance(value, dict) else []
        if unknown:
            kind = "CSVs" if name == "csv" else "folders"
            raise ConfigError(source, f"data.source.{name}.{unknown[0]}", f"split {kind} are keyed train, val and test")


def _check_model(config: ExperimentConfig, source: str) -> None:
    scale = config.model.kwargs.get("scale")
    wanted = config.data.acquisition.scale
    if scale is not None and scale != wanted:
        raise ConfigError(source, "model.scale", f"{scale!r} differs from data.acquisition.scale {wanted}")


def _check_terms(weights: Mapping[str, float], key: str, source: str) -> None:
    unknown = sorted(set(weights) - set(LOSSES))
    if unknown:
        raise ConfigError(source, f"{key}.{unknown[0]}", f"unknown loss term; terms: {', '.join(LOSSES)}")
    if not weights:
        raise ConfigError(source, key, "needs at least one term")


def _check_loss(loss: LossConfig, source: str) -> None:
    if (loss.preset is None) == (loss.weights is None):
        raise ConfigError(source, "loss", "give exactly one of preset or weights")
    if loss.preset is not None and loss.preset not in PRESETS:
        raise ConfigError(source, "loss.preset", f"unknown preset {loss.preset!r}; presets: {', '.join(PRESETS)}")
    if loss.weights is not None:
        _check_terms(loss.weights, "loss.weights", source)
    unknown = sorted(set(loss.options) - set(LOSSES))
    if unknown:
        raise ConfigError(source, f"loss.options.{unknown[0]}", f"unknown loss term; terms: {', '.join(LOSSES)}")
    if "adversarial" in loss.options:
        raise ConfigError(source, "loss.options.adversarial", "set the discriminator with loss.discriminator")
    if loss.warmup_epochs < 0:
        raise ConfigError(source, "loss.warmup_epochs", f"must be >= 0, got {loss.warmup_epochs}")
    if (loss.warmup_epochs > 0) != (loss.warmup_weights is not None):
        raise ConfigError(source, "loss.warmup_weights", "give it exactly when loss.warmup_epochs > 0")
    if loss.warmup_weights is not None:
        _check_terms(loss.warmup_weights, "loss.warmup_weights", source)


def _check_scheduler(scheduler: SchedulerConfig, source: str) -> None:
    if scheduler.name == "step" and (scheduler.step_size is None or scheduler.step_size < 1):
        raise ConfigError(source, "scheduler.step_size", "a step scheduler needs step_size >= 1")
    if scheduler.name == "multistep" and (not scheduler.milestones or min(scheduler.milestones) < 1):
        raise ConfigError(source, "scheduler.milestones", "a multistep scheduler needs milestones >= 1")
    if not scheduler.gamma > 0:
        raise ConfigError(source, "scheduler.gamma", f"must be > 0, got {scheduler.gamma}")
    warmups = {name: getattr(scheduler, name) for name in ("warmup_steps", "warmup_epochs")}
    if scheduler.name not in ("cosine", "linear"):
        for name, value in {**warmups, "min_lr": scheduler.min_lr or None}.items():
            if value is not None:
                raise ConfigError(source, f"scheduler.{name}", f"is for the cosine and linear schedules, not "
                                  f"{scheduler.name!r}; remove it or set scheduler.name")
        return
    if None not in warmups.values():
        raise ConfigError(source, "scheduler.warmup_steps", "give at most one of warmup_steps or warmup_epochs")
    for name, value in warmups.items():
        if value is not None and value < 0:
            raise ConfigError(source, f"scheduler.{name}", f"must be >= 0, got {value}")
    if scheduler.warmup_steps is not None and scheduler.interval == "epoch":
        raise ConfigError(source, "scheduler.warmup_steps", "a schedule stepped per epoch (scheduler.interval: "
                          "epoch) warms up in epochs: use warmup_epochs, or set scheduler.interval: step")
    if scheduler.min_lr < 0:
        raise ConfigError(source, "scheduler.min_lr", f"must be >= 0, got {scheduler.min_lr}")


def _check_min_lr(config: ExperimentConfig, source: str) -> None:
    """``scheduler.min_lr`` must lie below every learning rate it decays (both optimisers, ``param_lr`` groups)."""
    if not config.scheduler.min_lr:
        return
    rates = {"optimizer.lr": config.optimizer.lr,
             **{f"optimizer.param_lr.{k}": v for k, v in config.optimizer.param_lr.items()}}
    if config.loss.adversarial and config.discriminator_optimizer is not None:
        rates["discriminator_optimizer.lr"] = config.discriminator_optimizer.lr
    for key, rate in rates.items():
        if config.scheduler.min_lr >= rate:
            raise ConfigError(source, "scheduler.min_lr", f"{config.scheduler.min_lr} must be below {key} {rate}")


def _check_trainer(trainer: TrainerConfig, source: str) -> None:
    if (trainer.max_epochs is None) == (trainer.max_steps is None):
        raise ConfigError(source, "trainer", "give exactly one of max_epochs or max_steps")
    for name in ("max_epochs", "max_steps", "log_every", "devices", "num_nodes"):
        value = getattr(trainer, name)
        if value is not None and value < 1:
            raise ConfigError(source, f"trainer.{name}", f"must be >= 1, got {value}")
    for name in ("val_every_epochs", "val_every_steps"):
        value = getattr(trainer, name)
        if value is not None and value < 0:
            raise ConfigError(source, f"trainer.{name}", f"must be >= 0 (0 or null: never), got {value}")
    if trainer.grad_clip is not None and not trainer.grad_clip > 0:
        raise ConfigError(source, "trainer.grad_clip", f"must be > 0 or null, got {trainer.grad_clip}")
    if trainer.seed < 0:
        raise ConfigError(source, "trainer.seed", f"must be >= 0, got {trainer.seed}")
    if not trainer.out_dir:
        raise ConfigError(source, "trainer.out_dir", "must not be empty")
    if trainer.ema is not None and not 0 < trainer.ema < 1:
        raise ConfigError(source, "trainer.ema", f"the average's decay must be in (0, 1), e.g. 0.999; got "
                          f"{trainer.ema}")
    if not trainer.loggers or len(set(trainer.loggers)) != len(trainer.loggers):
        raise ConfigError(source, "trainer.loggers", f"give distinct loggers, at least one; got "
                          f"{list(trainer.loggers)}")
    for name in trainer.logger_options:
        if name not in trainer.loggers or name not in ("wandb", "mlflow"):
            raise ConfigError(source, f"trainer.logger_options.{name}", f"options are for the wandb and mlflow "
                              f"loggers listed in trainer.loggers {list(trainer.loggers)}")
