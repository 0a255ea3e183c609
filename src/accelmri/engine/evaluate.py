"""Evaluation: per-volume fastMRI metrics of trained checkpoints (or parameter-free models from a config).

Every volume is restored slice by slice, de-normalised to the original intensity units (``Sample.denormalize``),
stacked to ``(S, H, W)`` and scored whole with :func:`accelmri.metrics.evaluate_volume` (PSNR, SSIM, NMSE with
the volume's maximum as data range; a volume padded to a multiple of the scale on its own grid:
:meth:`~accelmri.data.datasets.SliceDataset.extent`), and optionally with LPIPS (:mod:`accelmri.lpips`, AlexNet
v0.1, lower is better) when the caller gives the weights. Batches never mix volumes, so a volume's numbers do not
depend on which process scores it or what else is evaluated: the trainer's validation uses :func:`score_volumes`
too.

:func:`evaluate` writes, atomically, into ``out_dir``:

* ``metrics.csv``: one row per method and volume (``method, volume, subject, contrast, slices, psnr, ssim, nmse``,
  then ``lpips`` when LPIPS is computed; without it the column is absent);
* ``metrics.json``: the same rows, mean ± std per method (:func:`accelmri.metrics.aggregate`, sample std) and
  two-sided paired t-tests between every two methods on their common volumes (:func:`accelmri.metrics.paired_ttest`)
  (``lpips`` per volume, in the summaries and in the t-tests only when computed);
* ``metrics.md``: both as Markdown tables.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from rich.progress import Progress
from torch import nn
from torch.utils.data import DataLoader

from accelmri.data.datasets import SliceDataset
from accelmri.data.errors import DataError
from accelmri.data.sample import collate
from accelmri.engine.build import build_dataset, build_model, check_compatible, prepare_data, volume_slices
from accelmri.engine.checkpoint import load_checkpoint, load_weights
from accelmri.engine.config import ConfigError, ExperimentConfig, load_config, parse_config
from accelmri.engine.export import is_export, load_export, read_export_metadata
from accelmri.engine.progress import progress_display
from accelmri.io import atomic_output
from accelmri.lpips import LPIPS, LPIPS_MIN_SIZE, lpips_volume
from accelmri.metrics import aggregate, evaluate_volume, paired_ttest
from accelmri.models.base import set_channels_last
from accelmri.models.registry import parameters as model_parameters

__all__ = [
    "LPIPS_METRIC",
    "METRICS",
    "OUTPUT_FILES",
    "EvaluationResult",
    "LPIPSVolumeScore",
    "MethodResult",
    "NonFiniteOutputError",
    "Precision",
    "VolumeScore",
    "autocast",
    "evaluate",
    "load_method",
    "score_volumes",
]

#: Fabric precision names accepted for the forward pass (``trainer.precision``).
Precision = Literal["32-true", "bf16-mixed", "16-mixed"]

#: The metrics, in table order.
METRICS = ("psnr", "ssim", "nmse")

#: The optional perceptual metric (lower is better), after :data:`METRICS` when computed.
LPIPS_METRIC = "lpips"

#: Files :func:`evaluate` writes into its output folder.
OUTPUT_FILES = ("metrics.csv", "metrics.json", "metrics.md")


class NonFiniteOutputError(ValueError):
    """A model's output is NaN or infinite on a volume (a diverged model, or an overflow in reduced precision)."""


@dataclass(frozen=True)
class VolumeScore:
    """Metrics of one volume (original intensity units).

    Attributes:
        volume: the target file.
        subject: its subject.
        contrast: its contrast, if known.
        slices: slices scored.
        psnr: dB. ssim: mean over slices. nmse: dimensionless.
    """

    volume: str
    subject: str
    contrast: str | None
    slices: int
    psnr: float
    ssim: float
    nmse: float

    def metrics(self) -> dict[str, float]:
        """``{"psnr": ..., "ssim": ..., "nmse": ...}``."""
        return {name: getattr(self, name) for name in METRICS}


@dataclass(frozen=True)
class LPIPSVolumeScore(VolumeScore):
    """A :class:`VolumeScore` with LPIPS (:func:`accelmri.lpips.lpips_volume`: mean over slices, lower is better).

    Attributes:
        lpips: dimensionless, ``>= 0``.
    """

    lpips: float

    def metrics(self) -> dict[str, float]:
        """``{"psnr": ..., "ssim": ..., "nmse": ..., "lpips": ...}``."""
        return {name: getattr(self, name) for name in (*METRICS, LPIPS_METRIC)}


@dataclass(frozen=True)
class MethodResult:
    """One evaluated checkpoint or config.

    Attributes:
        name: unique method name (``<run folder>/<checkpoint stem>`` or the config's stem).
        source: the checkpoint or config file.
        model: the registered model name.
        scores: per-volume scores, in volume order (:class:`LPIPSVolumeScore` when LPIPS was computed).
        summary: ``{metric: {"mean", "std"}}`` over volumes (``lpips`` included when computed).
    """

    name: str
    source: str
    model: str
    scores: list[VolumeScore]
    summary: dict[str, dict[str, float]]


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate` computed and wrote.

    Attributes:
        split: the evaluated split.
        methods: one :class:`MethodResult` per input, in input order.
        ttests: one dict per method pair and metric (``lpips`` included when computed): ``a, b, metric, n,
            statistic, pvalue, mean_difference`` (``a − b``).
        files: the written files.
    """

    split: str
    methods: list[MethodResult]
    ttests: list[dict[str, Any]]
    files: list[Path]


def autocast(precision: str, device: torch.device) -> AbstractContextManager[Any]:
    """The autocast context of a Fabric precision name (a no-op for ``32-true``).

    ``16-mixed`` on the CPU autocasts to bfloat16, as Fabric does (CPU AMP has no float16).
    """
    if precision == "bf16-mixed" or (precision == "16-mixed" and device.type == "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "16-mixed":
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


@torch.no_grad()
def score_volumes(
    model: nn.Module,
    dataset: SliceDataset,
    volumes: Sequence[tuple[int, list[int]]],
    *,
    batch_size: int,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    precision: str = "32-true",
    lpips: LPIPS | None = None,
    advance: Callable[[int], None] | None = None,
) -> list[VolumeScore]:
    """Restore and score whole volumes; batches hold slices of one volume only.

    Args:
        model: the model (put in eval mode for the call, then restored).
        dataset: a validation/test dataset (fixed masks).
        volumes: ``(volume index, [dataset items in slice order])`` from
            :func:`~accelmri.engine.build.volume_slices` (a subset of them on each process).
        batch_size: slices per forward pass.
        num_workers: DataLoader workers.
        device: where the model runs.
        precision: Fabric precision name (autocast for the forward pass).
        lpips: also score LPIPS (:func:`~accelmri.lpips.lpips_volume`, ``batch_size`` slices per pass, on the LPIPS
            module's device, float32, no autocast); ``None`` (the trainer's validation) skips it.
        advance: called with the batch size after each batch (progress display).

    Returns:
        One :class:`VolumeScore` per volume, in the given order (:class:`LPIPSVolumeScore` with ``lpips``).

    Raises:
        NonFiniteOutputError: the model's output is NaN or infinite on a volume (naming it and the slices).
    """
    device = torch.device(device)
    chunks = [(v, items[i : i + batch_size]) for v, items in volumes for i in range(0, len(items), batch_size)]
    loader = DataLoader(dataset, batch_sampler=[items for _, items in chunks], collate_fn=collate,
                        num_workers=num_workers, generator=torch.Generator().manual_seed(0))
    was_training = model.training
    model.eval()
    outputs: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    try:
        for (volume, _), batch in zip(chunks, loader, strict=True):
            batch = batch.to(device)
            with autocast(precision, device):
                image = model(batch).image
            predictions, targets = outputs.setdefault(volume, ([], []))
            predictions.append(batch.denormalize(image.float())[:, 0].cpu())
            targets.append(batch.denormalize(batch.target)[:, 0].cpu())
            if advance is not None:
                advance(len(image))
    finally:
        model.train(was_training)
    scores = []
    for volume, items in volumes:
        prediction, target = torch.cat(outputs[volume][0]), torch.cat(outputs[volume][1])
        source = dataset.targets[volume]
        extent = dataset.extent(volume) if isinstance(dataset, SliceDataset) else None
        if extent is not None:  # padded to a multiple of the scale: scored on the volume's own grid
            prediction, target = prediction[:, : extent[0], : extent[1]], target[:, : extent[0], : extent[1]]
        bad = (~torch.isfinite(prediction)).flatten(1).any(dim=1).nonzero().flatten().tolist()
        if bad:
            slices = [dataset.slices[items[i]][1] for i in bad]
            raise NonFiniteOutputError(f"the model's output is NaN or infinite on {source.path} (slices "
                                       f"{', '.join(map(str, slices[:5]))}{', ...' if len(slices) > 5 else ''}) "
                                       f"with precision {precision}")
        metrics = evaluate_volume(target, prediction)
        fields = (str(source.path), source.subject, source.contrast, len(items))
        if lpips is None:
            scores.append(VolumeScore(*fields, **metrics))
        else:
            distance = lpips_volume(lpips, target, prediction, batch_size=batch_size)
            scores.append(LPIPSVolumeScore(*fields, **metrics, lpips=distance))
    return scores


def _method_name(path: Path, is_checkpoint: bool, taken: set[str]) -> str:
    base = f"{path.resolve().parent.name}/{path.stem}" if is_checkpoint else path.stem
    name, copy = base, 2
    while name in taken:
        name, copy = f"{base}#{copy}", copy + 1
    taken.add(name)
    return name


#: Model options a trained model can run with other values than it was trained with (same weights): how T2Net and
#: FASR-Net search correspondences (exact by default; the windowed and coarse-to-fine fast paths are
#: approximations, docs/performance.md). ``evaluate`` / ``restore`` ``--model KEY=VALUE`` set them.
INFERENCE_OPTIONS = ("search_block_size", "search_window", "search_dtype", "search_coarse", "search_candidates")


def model_option_overrides(options: Sequence[str], source: str, model: str) -> list[str]:
    """``KEY=VALUE`` inference options (``model.`` prefix optional) as ``model.KEY=VALUE`` config overrides, for
    the options the registered model ``model`` takes (the others do not apply to it and are left out).

    Raises:
        ConfigError: an item without ``=`` or a key outside :data:`INFERENCE_OPTIONS` (other model keys change the
            architecture or the method the weights were trained for).
    """
    overrides = []
    for item in options:
        key, sep, value = item.removeprefix("model.").partition("=")
        if not sep or key not in INFERENCE_OPTIONS:
            raise ConfigError(source, f"model.{key}", f"only inference options can change for trained weights: "
                              f"{', '.join(INFERENCE_OPTIONS)} (KEY=VALUE), got {item!r}")
        if key in model_parameters(model):
            overrides.append(f"model.{key}={value}")
    return overrides


def _stored_model(config: dict[str, Any]) -> str:
    """The model name of a stored config (``model: NAME`` or ``model: {name: NAME, ...}``)."""
    model = config.get("model")
    return str(model if isinstance(model, str) else (model or {}).get("name"))


def check_model_options_used(options: Sequence[str], models: Sequence[str], source: str) -> None:
    """Refuse inference options that none of the registered ``models`` takes (a typo of intent, not a no-op).

    Raises:
        ConfigError: naming the first such option.
    """
    for item in options:
        key = item.removeprefix("model.").partition("=")[0]
        if not any(key in model_parameters(name) for name in models):
            raise ConfigError(source, f"model.{key}", f"no model here takes it ({', '.join(sorted(set(models)))}); "
                              "the search options are T2Net's and FASR-Net's")


def load_method(path: Path, data_overrides: Sequence[str], device: torch.device,
                model_options: Sequence[str] = ()) -> tuple[ExperimentConfig, nn.Module]:
    """The config and the ready model (``eval()`` mode, on ``device``) of a checkpoint or a YAML config.

    Args:
        path: an accelmri checkpoint (``.pt``/``.ckpt``, read with ``weights_only=True``), an export folder
            (:mod:`accelmri.engine.export`: safetensors + JSON) or the YAML config of a model without trainable
            parameters (``bicubic``, ``sinc``, ``zero_filled``, ``cg_sense``, ...).
        data_overrides: ``KEY=VALUE`` overrides of the ``data`` section (``data.`` prefix optional).
        device: where the model goes.
        model_options: ``KEY=VALUE`` inference options (:data:`INFERENCE_OPTIONS`, e.g. ``search_coarse=4``),
            applied when the model takes them (T2Net, FASR-Net); the returned config records them.

    Raises:
        ConfigError: a bad config or override, a model option outside :data:`INFERENCE_OPTIONS`, or a config of a
            model with trainable parameters.
        DataError: an unreadable checkpoint, one without a config, or weights that do not fit its model.
    """
    overrides = [item if item.startswith("data.") else f"data.{item}" for item in data_overrides]
    if is_export(path):
        stored = read_export_metadata(path)["config"]
        overrides += model_option_overrides(model_options, str(path), _stored_model(stored))
        config, model = load_export(path, overrides)
    elif path.suffix.lower() in (".yaml", ".yml"):
        config = load_config(path, overrides)
        model = build_model(config.model, config.data.acquisition.scale, config.source)
        if any(p.requires_grad for p in model.parameters()):
            raise ConfigError(path, "model.name", f"{config.model.name} has trainable parameters: give a trained "
                              "checkpoint, not a config")
    else:
        checkpoint = load_checkpoint(path)
        if not isinstance(checkpoint.get("config"), dict):
            raise DataError(path, "holds no training config ('config'): not a checkpoint written by accelmri train")
        overrides += model_option_overrides(model_options, str(path), _stored_model(checkpoint["config"]))
        config = parse_config(checkpoint["config"], source=f"{path} (stored config)", overrides=overrides)
        model = build_model(config.model, config.data.acquisition.scale, config.source)
        load_weights(model, checkpoint.get("model"), path, config.model.name)
    return config, model.to(device).eval()


def _ttests(methods: Sequence[MethodResult], metrics: Sequence[str] = METRICS) -> list[dict[str, Any]]:
    tests = []
    for a, b in itertools.combinations(methods, 2):
        scores_b = {s.volume: s for s in b.scores}
        common = [(s, scores_b[s.volume]) for s in a.scores if s.volume in scores_b]
        if len(common) < 2:
            continue
        for metric in metrics:
            entry: dict[str, Any] = {"a": a.name, "b": b.name, "metric": metric, "n": len(common)}
            try:
                result = paired_ttest([getattr(x, metric) for x, _ in common], [getattr(y, metric) for _, y in common])
            except ValueError as err:  # e.g. an infinite PSNR (exact reconstruction)
                entry.update(statistic=None, pvalue=None, mean_difference=None, note=str(err))
            else:
                entry.update(statistic=result.statistic, pvalue=result.pvalue, mean_difference=result.mean_difference)
            tests.append(entry)
    return tests


def _csv_text(methods: Sequence[MethodResult], metrics: Sequence[str] = METRICS) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "volume", "subject", "contrast", "slices", *metrics])
    for method in methods:
        for s in method.scores:
            writer.writerow([method.name, s.volume, s.subject, s.contrast or "", s.slices,
                             *(repr(getattr(s, m)) for m in metrics)])
    return buffer.getvalue()


def _number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


_DIGITS = {"psnr": 2, "ssim": 4, "nmse": 5, LPIPS_METRIC: 4}
_LABELS = {"psnr": "PSNR (dB)", "ssim": "SSIM", "nmse": "NMSE", LPIPS_METRIC: "LPIPS"}


def _markdown(split: str, methods: Sequence[MethodResult], ttests: Sequence[dict[str, Any]],
              metrics: Sequence[str] = METRICS) -> str:
    digits = {name: _DIGITS[name] for name in metrics}
    labels = " | ".join(_LABELS[name] for name in metrics)
    align = "|".join("---:" for _ in metrics)
    note = "; LPIPS: AlexNet v0.1, lower is better" if LPIPS_METRIC in metrics else ""
    lines = [f"# Evaluation ({split} split)", "",
             f"Mean ± sample std over volumes (fastMRI metrics, original units{note}).", "",
             f"| method | model | volumes | {labels} |", f"|---|---|---:|{align}|"]
    for m in methods:
        cells = [f"{_number(m.summary[k]['mean'], d)} ± {_number(m.summary[k]['std'], d)}" for k, d in digits.items()]
        lines.append(f"| {m.name} | {m.model} | {len(m.scores)} | {' | '.join(cells)} |")
    if ttests:
        lines += ["", "Two-sided paired t-tests on common volumes (difference = a − b).", "",
                  "| a | b | metric | n | mean difference | t | p |", "|---|---|---|---:|---:|---:|---:|"]
        for t in ttests:
            pvalue = "–" if t["pvalue"] is None else f"{t['pvalue']:.3g}"
            lines.append(f"| {t['a']} | {t['b']} | {t['metric']} | {t['n']} | "
                         f"{_number(t['mean_difference'], digits[t['metric']])} | {_number(t['statistic'], 3)} | "
                         f"{pvalue} |")
    lines += ["", f"| method | volume | slices | {labels} |", f"|---|---|---:|{align}|"]
    for m in methods:
        for s in m.scores:
            cells = " | ".join(f"{getattr(s, k):.{d}f}" for k, d in digits.items())
            lines.append(f"| {m.name} | {Path(s.volume).name} | {s.slices} | {cells} |")
    return "\n".join(lines) + "\n"


def _evaluate_one(
    source: Path,
    split: str,
    data_overrides: Sequence[str],
    model_options: Sequence[str],
    target_device: torch.device,
    lpips: LPIPS | None,
    precision: Precision | None,
    channels_last: bool,
    taken: set[str],
    display: Progress,
) -> MethodResult:
    """Score one checkpoint or config on ``split`` (see :func:`evaluate`); ``taken``: method names in use."""
    config, model = load_method(source, data_overrides, target_device, model_options)
    set_channels_last(model, channels_last)
    prepare_data(config.data, config.source)
    dataset = build_dataset(config.data, split, config.source)
    if len(dataset) == 0:
        raise ConfigError(config.source, "data.split", f"the {split} split is empty")
    check_compatible(model, config.model.name, dataset, config.source)
    if lpips is not None and min(size := tuple(dataset[0].target.shape[-2:])) < LPIPS_MIN_SIZE:
        raise ConfigError(config.source, "data", f"LPIPS (AlexNet) needs images of at least {LPIPS_MIN_SIZE}×"
                          f"{LPIPS_MIN_SIZE} pixels, the {split} split's are {size[0]}×{size[1]}")
    task = display.add_task(f"evaluating {source.name}", total=len(dataset))
    try:
        scores = score_volumes(model, dataset, volume_slices(dataset),
                               batch_size=config.data.val_batch_size or config.data.batch_size,
                               num_workers=config.data.num_workers, device=target_device,
                               precision=precision or config.trainer.precision, lpips=lpips,
                               advance=lambda n: display.advance(task, n))
    except NonFiniteOutputError as err:
        raise DataError(source, f"{err}: the model diverged in training or overflows at this precision (try "
                        "--precision 32-true); nothing written") from err
    summary = aggregate([s.metrics() for s in scores])
    name = _method_name(source, source.suffix.lower() not in (".yaml", ".yml"), taken)
    return MethodResult(name, str(source), config.model.name, scores, summary)


def evaluate(
    sources: Sequence[str | Path],
    out_dir: str | Path,
    *,
    data_overrides: Sequence[str] = (),
    model_options: Sequence[str] = (),
    split: str = "test",
    device: str = "auto",
    overwrite: bool = False,
    lpips: LPIPS | None = None,
    precision: Precision | None = None,
    channels_last: bool = False,
    progress: bool = False,
) -> EvaluationResult:
    """Score checkpoints (and parameter-free models given by a YAML config) on one split and write the tables.

    Args:
        sources: checkpoint files (``last.pt``, ``best.pt``) or YAML configs of models without trainable
            parameters (``bicubic``, ``zero_filled``, ``cg_sense``, ...).
        out_dir: output folder (created); ``metrics.csv``, ``metrics.json`` and ``metrics.md`` go there.
        data_overrides: ``KEY=VALUE`` overrides of the ``data`` section of every source (``source.dir=...``,
            ``data.split.ratios=[0,0,1]``); the ``data.`` prefix is optional.
        model_options: ``KEY=VALUE`` inference options of every trained model that takes them
            (:data:`INFERENCE_OPTIONS`, e.g. ``search_coarse=4``: the fast correspondence search).
        split: ``train``, ``val`` or ``test``.
        device: ``auto`` (CUDA if available), ``cpu``, ``cuda``, ``cuda:1``, ...
        overwrite: replace existing output files.
        lpips: also score LPIPS per volume (:meth:`accelmri.lpips.LPIPS.from_files`; moved to the evaluation device
            in place): an ``lpips`` column in every output, in the summary and in the t-tests. ``None`` (default):
            no LPIPS, and the outputs have no ``lpips`` column or key at all.
        precision: autocast of the forward pass (``32-true``, ``bf16-mixed``, ``16-mixed``); ``None`` = each
            source's ``trainer.precision``. Fast-path accuracy: ``docs/performance.md``.
        channels_last: run the convolutions in NHWC (:func:`accelmri.models.base.set_channels_last`).
        progress: show a progress bar (slices scored per method, elapsed, ETA) on stderr.

    Raises:
        FileExistsError: an output file exists and ``overwrite`` is false (checked before any work).
        ConfigError: bad overrides, model options none of the sources takes, an empty split, a trainable model
            given by a config, an incompatible model, or (with ``lpips``) images smaller than 31×31
            (:data:`accelmri.lpips.LPIPS_MIN_SIZE`), before any scoring.
        DataError: unreadable checkpoint or data files, or a model whose output is NaN or infinite.
    """
    if not sources:
        raise ValueError("evaluate needs at least one checkpoint or config")
    out = Path(out_dir)
    files = [out / name for name in OUTPUT_FILES]
    existing = [str(f) for f in files if f.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)}: already exists (pass overwrite / --overwrite to replace)")
    target_device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                 "cpu" if device == "auto" else device)
    if lpips is not None:
        lpips.to(target_device)
    metrics = METRICS if lpips is None else (*METRICS, LPIPS_METRIC)
    methods: list[MethodResult] = []
    taken: set[str] = set()
    display = progress_display(progress)
    with display:
        for source in map(Path, sources):
            methods.append(_evaluate_one(source, split, data_overrides, model_options, target_device, lpips,
                                         precision, channels_last, taken, display))
    check_model_options_used(model_options, [m.model for m in methods], "--model")
    ttests = _ttests(methods, metrics)
    payload = {
        "split": split,
        "methods": [{"name": m.name, "source": m.source, "model": m.model, "summary": m.summary,
                     "per_volume": [asdict(s) for s in m.scores]} for m in methods],
        "ttests": ttests,
    }
    out.mkdir(parents=True, exist_ok=True)
    texts = (_csv_text(methods, metrics), json.dumps(payload, indent=2), _markdown(split, methods, ttests, metrics))
    for file, text in zip(files, texts, strict=True):
        with atomic_output(file, overwrite=overwrite) as tmp:
            tmp.write_text(text)
    return EvaluationResult(split, methods, ttests, files)
