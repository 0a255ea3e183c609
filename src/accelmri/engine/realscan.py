"""The real-scan check (``accelmri realscan SPEC.yaml --out DIR``): every method on real fully sampled scans.

Given real fully sampled volumes (the *cases* of a YAML spec, see :func:`load_spec` and docs/realscan.md), each
method degrades them with its own acquisition (:func:`accelmri.engine.restore.restore` with ``degrade=True``:
the checkpoint's :class:`~accelmri.physics.degrade.Acquisition`, evaluation's fixed per-slice masks), restores them
(trained checkpoints and the YAML configs of parameter-free models alike) and is scored against the original:

* whole-volume PSNR / SSIM / NMSE with :func:`accelmri.metrics.evaluate_volume` (fastMRI convention: data range =
  the target volume's maximum), mean ± sample std over a method's checkpoints (seeds);
* per-slice PSNR / SSIM / NMSE (data range: the target *volume's* maximum; slices whose target is empty skipped)
  for the paired claims "a above b": two-sided paired t-tests over (seed, slice) pairs, run by
  :func:`accelmri.engine.demo.summarize` exactly as the demo tests its claims;
* the **intensity drift** (:func:`accelmri.metrics.intensity_drift_per_slice`): the output low-passed to the band
  the degraded input measured fully, against the input's image of that band, per slice inside the head, in % of
  the input's mean there, and the signed mean difference (offset) in grey levels. The band is the LR grid for a
  fully sampled LR acquisition (super-resolution: the input itself) and, for an undersampled one, the fully
  sampled calibration block of the mask (the zero-filled input's aliasing lies outside it).

Cases of ``kind: kspace`` (raw multi-coil k-space: a twix ``.dat`` or a fastMRI/ISMRMRD ``.h5``) are also
undersampled here, at the case's acceleration with a fixed seed, for two built-in baselines: ``zero_filled``
(root-sum-of-squares of the zero-filled coil images) and ``cg_sense`` (ESPIRiT maps from the measured calibration
region, calibrated by :func:`accelmri.physics.sensitivity.espirit_calibration` like the learned models' maps in
:class:`~accelmri.data.datasets.SliceDataset`, then CG-SENSE with a small Tikhonov weight, as
:mod:`accelmri.engine.physics_demo`). Their ground truth is the
root-sum-of-squares of the fully sampled coil images. Checkpoints listed for such a case run through ``restore``
with their own acquisition; a method that cannot run on a case (a single-coil model on multi-coil k-space, a
reference-guided model without a reference, ...) is recorded as "not applicable: <reason>".

Outputs (all in ``out``, written into a hidden sibling folder first and moved into place at the end, so ``out``
appears whole or not at all): ``results.json`` (every number), ``results.md`` (per case: method, acquisition, PSNR,
SSIM, NMSE, intensity drift, offset, seconds; then the claims), ``report.html`` (the same tables and, per case, the
middle slice of every method with its |error| map, :func:`accelmri.report.figures.example_figure`), the figures as
``<case>_slice<i>.png`` and the restored volumes under ``volumes/<case>/<label>[_seed<k>].<nii.gz|h5>`` (k-space
cases add ``ground_truth.h5``).
"""

from __future__ import annotations

import contextlib
import html
import json
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import yaml

from accelmri import __version__
from accelmri.data.datasets import SliceDataset, SliceSource, open_source
from accelmri.data.errors import DataError
from accelmri.data.readers.fastmri import FastMRIFile
from accelmri.data.readers.nifti import read_nifti, write_nifti
from accelmri.data.volume import ImageVolume
from accelmri.engine.adapt import ADAPT_LR_FACTOR, adaptation_problem
from accelmri.engine.config import AcquisitionConfig, ConfigError, ExperimentConfig
from accelmri.engine.config import _merge as _merge_config
from accelmri.engine.demo import summarize
from accelmri.engine.evaluate import METRICS, check_model_options_used, load_method, model_option_overrides
from accelmri.engine.restore import UNCOVERED_SLICES, restore
from accelmri.io import atomic_output, write_json_atomic
from accelmri.metrics import evaluate_volume, intensity_drift, intensity_drift_per_slice, lowpass, nmse, psnr, ssim
from accelmri.physics.coils import rss
from accelmri.physics.degrade import Acquisition
from accelmri.physics.fft import ifft2c
from accelmri.physics.masks import MASK_KINDS
from accelmri.physics.operators import cg_sense
from accelmri.physics.sensitivity import calibrated_espirit_maps
from accelmri.report.figures import Examples, example_figure
from accelmri.report.html import html_table, png_data_uri, render_page
from accelmri.report.tables import markdown_table

__all__ = ["BUILTINS", "KINDS", "OUTPUT_FILES", "CaseSpec", "MethodAdapt", "RealScanSpec", "load_spec", "realscan",
           "results_payload"]

#: Baselines computed here for ``kind: kspace`` cases (no entry in ``methods`` needed).
BUILTINS = ("zero_filled", "cg_sense")

#: Case kinds: ``image`` (any fully sampled input ``restore`` reads) and ``kspace`` (raw multi-coil k-space).
KINDS = ("image", "kspace")

#: Files written into the output folder besides the figures and ``volumes/``.
OUTPUT_FILES = ("results.json", "results.md", "report.html")

_TOP_KEYS = ("cases", "methods", "claims", "adapt")
_CASE_KEYS = {
    "image": ("name", "kind", "target", "slices", "reference", "register_reference", "uncovered_slices", "methods"),
    "kspace": ("name", "kind", "target", "methods", "acceleration", "center_fraction", "mask", "seed", "l2_weight",
               "cg_iterations"),
}
_METHOD_KEYS = ("checkpoints", "adapt", "adapt_lr", "model")
_METHOD_SUFFIXES = (".pt", ".ckpt", ".yaml", ".yml")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_RESERVED = ("input", "target", "ground_truth")
_NOT_APPLICABLE = (DataError, ValueError, RuntimeError, ImportError, NotImplementedError)


# ------------------------------------------------------------------------------------------------------ spec


@dataclass(frozen=True)
class CaseSpec:
    """One real volume of the spec.

    Attributes:
        name: unique label (letters, digits, ``._-``), used for file names.
        kind: ``image`` or ``kspace`` (:data:`KINDS`).
        target: the fully sampled volume (resolved path).
        reference: the reference contrast for guided models (``image`` cases), or ``None``.
        methods: method labels run on this case, in order.
        register_reference: rigidly register the reference to each method's input before use (``restore``'s
            ``register_reference``; ``image`` cases with a reference).
        uncovered_slices: ``restore``'s ``uncovered_slices`` for the guided methods (``"refuse"``, or ``"sinc"``:
            target slices the reference leaves mostly uncovered are restored by sinc interpolation).
        slices: ``(first, stop)``: only the target's slices ``first … stop − 1`` are restored and scored (``image``
            cases; written to the case's folder as ``target_slices<first>-<stop − 1>.nii.gz`` with the affine
            moved to the first slice), or ``None`` for all.
        acceleration: undersampling ``R`` of the built-in baselines (``kspace`` cases).
        center_fraction: their fully sampled centre fraction.
        mask: their mask kind (:data:`accelmri.physics.masks.MASK_KINDS`).
        seed: their mask seed (one fixed mask for every slice).
        l2_weight: CG-SENSE Tikhonov weight ``λ`` (``Σ|S|² = 1`` maps: ``AᴴA`` has eigenvalues in ``[0, 1]``).
        cg_iterations: CG-SENSE iteration budget.
    """

    name: str
    kind: str
    target: Path
    reference: Path | None
    methods: tuple[str, ...]
    acceleration: float = 4.0
    center_fraction: float = 0.08
    mask: str = "equispaced"
    seed: int = 0
    l2_weight: float = 1e-2
    cg_iterations: int = 100
    register_reference: bool = False
    slices: tuple[int, int] | None = None
    uncovered_slices: str = "refuse"


@dataclass(frozen=True)
class MethodAdapt:
    """The own settings of one method label given as a mapping (``{checkpoints, adapt, adapt_lr, model}``).

    Attributes:
        steps: ``adapt_steps`` for this label's checkpoints (``0``: unadapted); ``None`` = the spec-level ``adapt``.
        lr: ``adapt_lr`` passed to ``restore``; ``None`` = its default (0.1 × the checkpoint's ``optimizer.lr``).
        model_options: ``restore``'s ``model_options`` (``KEY=VALUE`` inference options, e.g. ``search_coarse=4``:
            the same checkpoints with the coarse-to-fine search, paired with the exact label).
    """

    steps: int | None = None
    lr: float | None = None
    model_options: tuple[str, ...] = ()


@dataclass(frozen=True)
class RealScanSpec:
    """A validated spec (:func:`load_spec`).

    Attributes:
        source: the spec file (or ``<spec>``), for messages.
        cases: the cases, in spec order.
        methods: ``{label: checkpoints or configs}`` (resolved paths; several = seeds), in spec order.
        claims: ``(a, b)`` pairs, "a above b".
        adapt: test-time adaptation steps passed to ``restore`` (0: none) for the trained checkpoints that can adapt
            (:func:`~accelmri.engine.adapt.adaptation_problem`), of the labels without their own ``adapt``.
        method_adapt: ``{label: MethodAdapt}`` of the labels given as a mapping (the others follow ``adapt``).
    """

    source: str
    cases: tuple[CaseSpec, ...]
    methods: dict[str, tuple[Path, ...]]
    claims: tuple[tuple[str, str], ...]
    adapt: int = 0
    method_adapt: dict[str, MethodAdapt] = field(default_factory=dict)


def _path(value: Any, base: Path, source: str, key: str, *, folder_ok: bool = True) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(source, key, f"expected a path, got {value!r}")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base / path
    if not (path.is_file() or (folder_ok and path.is_dir())):
        raise ConfigError(source, key, f"{path}: no such file")
    return path


def _number(raw: Mapping[str, Any], name: str, default: float, low: float, high: float, source: str, key: str,
            *, integer: bool = False, closed_high: bool = True) -> Any:
    value = raw.get(name, default)
    kind = (int,) if integer else (int, float)
    inside = isinstance(value, kind) and not isinstance(value, bool) and low <= value and (
        value <= high if closed_high else value < high)
    if not inside:
        bound = f"≤ {high:g}" if closed_high else f"< {high:g}"
        what = "an integer" if integer else "a number"
        raise ConfigError(source, f"{key}.{name}", f"expected {what} ≥ {low:g} and {bound}, got {value!r}")
    return value


def _unknown(raw: Mapping[str, Any], allowed: Sequence[str], source: str, prefix: str) -> None:
    for key in raw:
        if key not in allowed:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(source, where, f"unknown key; expected one of {', '.join(allowed)}")


def _label(value: Any, source: str, key: str) -> str:
    if not isinstance(value, str) or not _LABEL.match(value) or value in _RESERVED:
        raise ConfigError(source, key, f"method labels are letters, digits and ._- (not {', '.join(_RESERVED)}), "
                          f"got {value!r}")
    return value


def _method_adapt(raw: Mapping[str, Any], source: str, key: str) -> MethodAdapt:
    """The ``adapt`` / ``adapt_lr`` of a method given as a mapping (``key``: ``methods.<label>``)."""
    steps = raw.get("adapt")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 0):
        raise ConfigError(source, f"{key}.adapt", f"expected an integer ≥ 0 (test-time adaptation steps), got "
                          f"{steps!r}")
    lr = raw.get("adapt_lr")
    if lr is not None:
        if isinstance(lr, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            with contextlib.suppress(ValueError):
                lr = float(lr)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise ConfigError(source, f"{key}.adapt_lr", f"expected a finite number > 0 (the adaptation's learning "
                              f"rate), got {raw.get('adapt_lr')!r}")
        lr = float(lr)
    options = raw.get("model") or {}
    if not isinstance(options, Mapping):
        raise ConfigError(source, f"{key}.model", f"expected a mapping of inference options ({{search_coarse: 4}}), "
                          f"got {options!r}")
    return MethodAdapt(steps, lr, tuple(f"{name}={json.dumps(value)}" for name, value in options.items()))


def _methods(raw: Any, base: Path, source: str) -> tuple[dict[str, tuple[Path, ...]], dict[str, MethodAdapt]]:
    if raw is None:
        return {}, {}
    if not isinstance(raw, Mapping):
        raise ConfigError(source, "methods", "expected a mapping label → checkpoint/config path (or list of them, "
                          "or {checkpoints, adapt, adapt_lr})")
    methods: dict[str, tuple[Path, ...]] = {}
    adapts: dict[str, MethodAdapt] = {}
    for label, entry in raw.items():
        key = f"methods.{label}"
        _label(label, source, key)
        value = entry
        if isinstance(entry, Mapping):
            _unknown(entry, _METHOD_KEYS, source, key)
            if "checkpoints" not in entry:
                raise ConfigError(source, f"{key}.checkpoints", "missing: the checkpoint/config path (or list of "
                                  "them, seeds)")
            adapts[label] = _method_adapt(entry, source, key)
            key, value = f"{key}.checkpoints", entry["checkpoints"]
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ConfigError(source, key, "empty list: give at least one checkpoint")
        paths = []
        for index, item in enumerate(values):
            where = f"{key}[{index}]" if isinstance(value, list) else key
            path = _path(item, base, source, where, folder_ok=False)
            if not path.name.lower().endswith(_METHOD_SUFFIXES):
                raise ConfigError(source, where, f"{path}: expected a checkpoint (.pt, .ckpt) or a YAML config")
            paths.append(path)
        methods[label] = tuple(paths)
    return methods, adapts


def _case(raw: Any, index: int, methods: Mapping[str, tuple[Path, ...]], base: Path, source: str) -> CaseSpec:
    key = f"cases[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(source, key, "expected a mapping with name and target")
    kind = raw.get("kind", "image")
    if kind not in KINDS:
        raise ConfigError(source, f"{key}.kind", f"expected one of {', '.join(KINDS)}, got {kind!r}")
    _unknown(raw, _CASE_KEYS[kind], source, key)
    name = raw.get("name")
    if not isinstance(name, str) or not _LABEL.match(name):
        raise ConfigError(source, f"{key}.name", f"expected a name of letters, digits and ._-, got {name!r}")
    if "target" not in raw:
        raise ConfigError(source, f"{key}.target", "missing: the fully sampled volume")
    target = _path(raw["target"], base, source, f"{key}.target")
    reference = None if raw.get("reference") is None else _path(raw["reference"], base, source, f"{key}.reference")
    default = [*BUILTINS, *methods] if kind == "kspace" else list(methods)
    labels = raw.get("methods", list(dict.fromkeys(default)))
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise ConfigError(source, f"{key}.methods", f"expected a list of method labels, got {labels!r}")
    for position, label in enumerate(labels):
        if label not in methods and not (kind == "kspace" and label in BUILTINS):
            builtin = f" (built-ins {', '.join(BUILTINS)} run on kind: kspace cases only)" if label in BUILTINS else ""
            raise ConfigError(source, f"{key}.methods[{position}]",
                              f"unknown method label {label!r}{builtin}; labels: {', '.join(methods) or 'none'}")
    if not labels:
        where = f"{key}.methods" if "methods" in raw else "methods"
        raise ConfigError(source, where, f"case {name!r} has no method to run")
    if len(set(labels)) != len(labels):
        raise ConfigError(source, f"{key}.methods", "a label is listed twice")
    if kind == "image":
        register = raw.get("register_reference", False)
        if not isinstance(register, bool) or (register and reference is None):
            raise ConfigError(source, f"{key}.register_reference", "expected true or false (true needs a reference), "
                              f"got {register!r}")
        slices = raw.get("slices")
        if slices is not None and not (isinstance(slices, list) and len(slices) == 2
                                       and all(isinstance(v, int) and not isinstance(v, bool) for v in slices)
                                       and 0 <= slices[0] < slices[1]):
            raise ConfigError(source, f"{key}.slices", f"expected [first, stop] with 0 <= first < stop (slices first "
                              f"… stop − 1), got {slices!r}")
        uncovered = raw.get("uncovered_slices", "refuse")
        if uncovered not in UNCOVERED_SLICES:
            raise ConfigError(source, f"{key}.uncovered_slices", f"expected one of {', '.join(UNCOVERED_SLICES)}, "
                              f"got {uncovered!r}")
        return CaseSpec(name, kind, target, reference, tuple(labels), register_reference=register,
                        slices=None if slices is None else (slices[0], slices[1]), uncovered_slices=uncovered)
    mask = raw.get("mask", "equispaced")
    if mask not in MASK_KINDS:
        raise ConfigError(source, f"{key}.mask", f"expected one of {', '.join(MASK_KINDS)}, got {mask!r}")
    return CaseSpec(
        name, kind, target, None, tuple(labels),
        acceleration=float(_number(raw, "acceleration", 4.0, 1.0, math.inf, source, key)),
        center_fraction=float(_number(raw, "center_fraction", 0.08, 0.0, 1.0, source, key, closed_high=False)),
        mask=mask,
        seed=int(_number(raw, "seed", 0, 0, 2**31 - 1, source, key, integer=True)),
        l2_weight=float(_number(raw, "l2_weight", 1e-2, 0.0, math.inf, source, key)),
        cg_iterations=int(_number(raw, "cg_iterations", 100, 1, 100_000, source, key, integer=True)),
    )


def _read_spec(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(path, "", f"cannot read the spec ({getattr(err, 'strerror', None) or err})") from err
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(path, "", f"not valid YAML ({err})") from err
    if not isinstance(raw, dict):
        raise ConfigError(path, "", "expected a mapping with cases and methods")
    return raw


def _absolute(value: Any, folder: Path) -> Any:
    """Relative path strings (one, or a list) made absolute against ``folder``; anything else unchanged (it is
    validated later, against the spec that uses it)."""
    if isinstance(value, list):
        return [_absolute(item, folder) for item in value]
    if isinstance(value, str) and value.strip() and not Path(value).expanduser().is_absolute():
        return str(folder / value)
    return value


def _paths_from(raw: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """A base spec's paths (method files, case targets and references) resolved against its own folder."""
    out = dict(raw)
    if isinstance(out.get("methods"), Mapping):
        out["methods"] = {
            label: {**entry, "checkpoints": _absolute(entry["checkpoints"], folder)}
            if isinstance(entry, Mapping) and "checkpoints" in entry else _absolute(entry, folder)
            for label, entry in out["methods"].items()}
    if isinstance(out.get("cases"), list):
        out["cases"] = [{**case, **{key: _absolute(case[key], folder) for key in ("target", "reference")
                                    if key in case}} if isinstance(case, Mapping) else case
                        for case in out["cases"]]
    return out


def _compose_spec(raw: Mapping[str, Any], source: str, folder: Path, chain: tuple[str, ...]) -> dict[str, Any]:
    """``raw`` merged over the base specs its ``defaults:`` lists, in order (``NAME`` → ``NAME.yaml`` beside it;
    bases may list defaults of their own). ``methods`` merge label by label; ``cases``, ``claims`` and ``adapt`` of
    a later file replace the earlier ones. A base's relative paths resolve against the base's own folder.

    Raises:
        ConfigError: ``defaults`` not a list of names, a base not found or unreadable, a base including itself.
    """
    raw = dict(raw)
    names = raw.pop("defaults", [])
    if not isinstance(names, list) or not all(isinstance(name, str) and name for name in names):
        raise ConfigError(source, "defaults", f"expected a list of base spec names, got {names!r}")
    merged: dict[str, Any] = {}
    for name in names:
        base = folder / f"{name}.yaml"
        if not base.is_file():
            raise ConfigError(source, "defaults", f"base spec {name!r} not found ({base})")
        if (key := os.path.realpath(base)) in chain:
            raise ConfigError(source, "defaults", f"base spec {name!r} includes itself")
        composed = _compose_spec(_read_spec(base), str(base), base.parent, (*chain, key))
        merged = _merge_config(merged, _paths_from(composed, Path(os.path.abspath(base.parent))))
    return _merge_config(merged, raw)


def load_spec(spec: str | Path | Mapping[str, Any]) -> RealScanSpec:
    """Read and validate a real-scan spec (docs/realscan.md); relative paths resolve against the spec's folder.

    Args:
        spec: the YAML file, or its content as a mapping (relative paths then resolve against the working folder).

    Returns:
        The :class:`RealScanSpec`; every file it names exists (checkpoints are not read here: :func:`realscan`
        loads them before writing anything).

    Raises:
        ConfigError: (a :class:`DataError`: exit code 2 in the CLI) one line ``SPEC: KEY: problem`` for an
            unreadable file or invalid YAML (no key), an unknown key, a missing or wrong-typed value, a path that
            does not exist, a bad method label, a case method or claim naming an unknown label.
    """
    if isinstance(spec, Mapping):
        source, base = "<spec>", Path.cwd()
        raw: Any = _compose_spec(spec, source, base, ())
    else:
        path = Path(spec)
        source, base = str(path), path.parent
        raw = _compose_spec(_read_spec(path), source, base, (os.path.realpath(path),))
    _unknown(raw, _TOP_KEYS, source, "")
    methods, method_adapt = _methods(raw.get("methods"), base, source)
    cases_raw = raw.get("cases")
    if not isinstance(cases_raw, list) or not cases_raw:
        raise ConfigError(source, "cases", "expected a non-empty list of cases")
    cases = tuple(_case(case, i, methods, base, source) for i, case in enumerate(cases_raw))
    names = [case.name for case in cases]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise ConfigError(source, f"cases[{index}].name", f"duplicate case name {name!r}")
    known = set(methods) | (set(BUILTINS) if any(case.kind == "kspace" for case in cases) else set())
    claims_raw = raw.get("claims") or []
    if not isinstance(claims_raw, list):
        raise ConfigError(source, "claims", "expected a list of [a, b] pairs")
    claims = []
    for index, pair in enumerate(claims_raw):
        if not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(x, str) for x in pair):
            raise ConfigError(source, f"claims[{index}]", f"expected a pair [a, b] of method labels, got {pair!r}")
        for side, label in enumerate(pair):
            if label not in known:
                raise ConfigError(source, f"claims[{index}][{side}]",
                                  f"unknown method label {label!r}; labels: {', '.join(sorted(known)) or 'none'}")
        if pair[0] == pair[1]:
            raise ConfigError(source, f"claims[{index}]", f"compares {pair[0]!r} with itself")
        claims.append((pair[0], pair[1]))
    adapt = raw.get("adapt", 0)
    if isinstance(adapt, bool) or not isinstance(adapt, int) or adapt < 0:
        raise ConfigError(source, "adapt", f"expected an integer ≥ 0 (test-time adaptation steps), got {adapt!r}")
    return RealScanSpec(source, cases, methods, tuple(claims), adapt, method_adapt)


@dataclass(frozen=True)
class _Method:
    """A loaded method file: its config, whether its model reads a reference (``required_fields``) and why it
    cannot be adapted at test time (:func:`~accelmri.engine.adapt.adaptation_problem`; ``None``: it can)."""

    config: ExperimentConfig
    reads_reference: bool
    adapt_problem: str | None


def _load_configs(spec: RealScanSpec) -> dict[Path, _Method]:
    """Every method file, loaded (the model is built here once, to refuse a bad file before any work)."""
    configs: dict[Path, _Method] = {}
    for label, paths in spec.methods.items():
        for index, path in enumerate(paths):
            key = f"methods.{label}" + (".checkpoints" if label in spec.method_adapt else "") + (
                f"[{index}]" if len(paths) > 1 else "")
            try:
                config, model = load_method(path, (), torch.device("cpu"))
                if options := spec.method_adapt.get(label, MethodAdapt()).model_options:
                    model_option_overrides(options, spec.source, config.model.name)  # only inference options
                    check_model_options_used(options, [config.model.name], f"{spec.source}: methods.{label}")
                configs[path] = _Method(config, "reference" in tuple(getattr(model, "required_fields", ())),
                                        adaptation_problem(config, model))
            except (DataError, ValueError, RuntimeError, KeyError, OSError) as err:
                problem = err.problem if isinstance(err, DataError) else f"{type(err).__name__}: {err}"
                raise ConfigError(spec.source, key, f"{path}: {problem}") from err
    return configs


# ---------------------------------------------------------------------------------------------------- output


def _check_out(out: Path, spec: RealScanSpec, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out}: exists and is not empty (pass overwrite / --overwrite to replace it)")
    inputs = [*(c.target for c in spec.cases), *(c.reference for c in spec.cases if c.reference),
              *(p for paths in spec.methods.values() for p in paths)]
    if spec.source != "<spec>":
        inputs.append(Path(spec.source))
    resolved = out.resolve()
    for path in inputs:
        if path.resolve().is_relative_to(resolved):
            raise DataError(out, f"holds the input {path}; choose another output folder")


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished folder ``tmp`` onto ``out`` (replacing an empty or, when allowed, a full folder)."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex}"
    os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _finite(value: Any) -> Any:
    """JSON-safe copy: NaN and ±inf become ``None`` (strict JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _write_h5(path: Path, image: np.ndarray, attrs: Mapping[str, Any]) -> None:
    """fastMRI-layout ``reconstruction (S, H, W)`` float32 (as ``restore`` writes k-space inputs), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=False, suffix=".h5") as tmp, h5py.File(tmp, "w") as file:
        file.create_dataset("reconstruction", data=image.astype(np.float32))
        file.attrs.update({"max": float(image.max()), "norm": float(np.linalg.norm(image)), **attrs})


def _read_restored(path: Path) -> np.ndarray:
    """The ``(S, H, W)`` float32 volume of a NIfTI or fastMRI-layout HDF5 file written by ``restore``."""
    if path.name.lower().endswith((".nii", ".nii.gz")):
        return read_nifti(path).data
    with h5py.File(path, "r") as file:
        return np.asarray(file["reconstruction"][()], dtype=np.float32)


def _output_suffix(target: Path) -> str:
    name = target.name.lower()
    if name.endswith(".nii"):
        return ".nii"
    return ".nii.gz" if target.is_dir() or name.endswith(".nii.gz") else ".h5"


# ------------------------------------------------------------------------------------------------- numbers


def _ground_truth(source: SliceSource) -> np.ndarray:
    """The fully sampled magnitude ``(S, H, W)`` float32: an image volume's data, else the coils' RSS."""
    if isinstance(source.volume, ImageVolume):
        return np.asarray(source.volume.data, dtype=np.float32)
    slices = []
    for index in range(source.num_slices):
        images = ifft2c(source.kspace(index))
        slices.append((rss(images) if images.shape[0] > 1 else images[0].abs()).numpy())
    return np.stack(slices).astype(np.float32)


def _calibration_band(mask: torch.Tensor) -> tuple[int, int]:
    """The largest centred block ``(h, w)`` of a 0/1 mask ``(H, W)`` that is fully sampled (the whole grid for a
    full mask; ``(H, centre lines)`` for 1-D masks; a block of the grid's aspect ratio for 2-D masks).

    Raises:
        ValueError: a mask whose DC sample is not measured.
    """
    sampled = mask.detach().cpu().numpy() > 0
    height, width = sampled.shape
    if (sampled == sampled[:1]).all():  # 1-D: constant along the readout
        for band in range(width, 0, -1):
            start = width // 2 - band // 2
            if sampled[0, start : start + band].all():
                return height, band
    else:
        side = max(height, width)
        for k in range(side, 0, -1):
            bh, bw = max(1, round(k * height / side)), max(1, round(k * width / side))
            r0, c0 = height // 2 - bh // 2, width // 2 - bw // 2
            if sampled[r0 : r0 + bh, c0 : c0 + bw].all():
                return bh, bw
    raise ValueError("the mask does not sample the k-space centre: no calibration band")


def _band_image(measured: torch.Tensor, band: tuple[int, int]) -> np.ndarray:
    """Magnitude ``(h, w)`` of measured k-space ``(C, H, W)`` restricted to the centred ``band``: each coil image
    low-passed (:func:`accelmri.metrics.lowpass`), then the coil's magnitude or the root-sum-of-squares."""
    coils = lowpass(ifft2c(measured.to(torch.complex128)), band)
    return np.sqrt((np.abs(coils) ** 2).sum(axis=0))


def _input_bands(config: ExperimentConfig, source: SliceSource) -> tuple[np.ndarray, np.ndarray]:
    """What ``restore --degrade`` gives the model, slice by slice (the same :class:`SliceDataset`, fixed masks):
    ``(input, band reference)``: the degraded input magnitude ``(S, h, w)`` and its image in the fully sampled band
    ``(S, bh, bw)`` (:func:`_calibration_band` of the masks), both in the volume's units."""
    data = config.data
    count = source.num_slices
    dataset = SliceDataset([source], data.task, data.acquisition.to_acquisition(), train=False,
                           normalization=data.normalization, slices=[(0, index) for index in range(count)])
    inputs, measured, bands = [], [], []
    for index in range(count):
        sample = dataset[index]
        std, mean = float(sample.norm_std), float(sample.norm_mean)
        inputs.append((sample.lr_input[0] * std + mean).numpy())
        measured.append(sample.kspace * std)
        bands.append(_calibration_band(sample.mask[0]))
    band = (min(b[0] for b in bands), min(b[1] for b in bands))
    return np.stack(inputs), np.stack([_band_image(k, band) for k in measured])


def _score(truth: np.ndarray, output: np.ndarray, reference: np.ndarray, scale: int) -> dict[str, Any]:
    """Whole-volume metrics, drift and the per-slice numbers of one restored volume (see the module docstring)."""
    scores: dict[str, Any] = dict(evaluate_volume(truth, output))
    relative, offset = intensity_drift_per_slice(output, reference, scale)
    finite = np.isfinite(relative)
    scores["drift_percent"] = float(100 * relative[finite].mean()) if finite.any() else math.nan
    scores["offset"] = float(offset[finite].mean()) if finite.any() else math.nan
    # What the ground truth itself scores against the same band image: 0 up to round-off for magnitude (single-coil)
    # data; for multi-coil data root-sum-of-squares does not commute with the low-pass, and this is the floor.
    scores["drift_floor_percent"] = 100 * intensity_drift(truth, reference, scale)
    data_range = float(truth.max())
    per_slice: dict[str, list[Any]] = {"slice": [], "psnr": [], "ssim": [], "nmse": []}
    for index, (gt, pred) in enumerate(zip(truth, output, strict=True)):
        if float(gt.max()) <= 0:  # an empty slice: no PSNR or NMSE
            continue
        per_slice["slice"].append(index)
        per_slice["psnr"].append(psnr(gt, pred, data_range))
        per_slice["ssim"].append(ssim(gt, pred, data_range))
        per_slice["nmse"].append(nmse(gt, pred))
    per_slice["drift_percent"] = [float(100 * relative[i]) for i in per_slice["slice"]]
    per_slice["offset"] = [float(offset[i]) for i in per_slice["slice"]]
    scores["per_slice"] = per_slice
    return scores


def _kspace_baselines(case: CaseSpec, source: SliceSource) -> dict[str, dict[str, Any]]:
    """``zero_filled`` and ``cg_sense`` of a ``kspace`` case: ``{label: {"volume", "reference", "input",
    "seconds"}}`` with volumes ``(S, H, W)`` and the band references ``(S, bh, bw)``."""
    acquisition = Acquisition(case.mask, case.acceleration, case.center_fraction, 1, 0.0, case.seed)
    results: dict[str, dict[str, Any]] = {label: {"volume": [], "seconds": 0.0} for label in BUILTINS}
    references, realised = [], []
    for index in range(source.num_slices):
        acquired = acquisition.apply(source.kspace(index).to(torch.complex64))
        realised.append(acquired.acceleration)
        band = _calibration_band(acquired.mask)
        references.append(_band_image(acquired.kspace, band))
        start = time.perf_counter()
        coil_images = ifft2c(acquired.kspace)
        zero_filled = rss(coil_images) if coil_images.shape[0] > 1 else coil_images[0].abs()
        results["zero_filled"]["seconds"] += time.perf_counter() - start
        results["zero_filled"]["volume"].append(zero_filled.numpy())
        start = time.perf_counter()
        maps = None
        if acquired.kspace.shape[0] > 1:  # the calibration of SliceDataset, the learned models' maps
            maps = calibrated_espirit_maps(acquired.kspace, case.center_fraction, case.mask)
        image = cg_sense(acquired.kspace, acquired.mask, maps, case.l2_weight, case.cg_iterations, tol=1e-6).x
        results["cg_sense"]["seconds"] += time.perf_counter() - start
        results["cg_sense"]["volume"].append(image.abs().numpy())
    reference = np.stack(references)
    for result in results.values():
        result["volume"] = np.stack(result["volume"]).astype(np.float32)
        result["reference"] = reference
        result["input"] = results["zero_filled"]["volume"]
        result["acceleration"] = float(np.mean(realised))
    return results


def _acquisition_text(task: str, acquisition: AcquisitionConfig | CaseSpec) -> str:
    if isinstance(acquisition, CaseSpec):
        return f"R {acquisition.acceleration:g} {acquisition.mask} (centre {acquisition.center_fraction:g})"
    parts = []
    if acquisition.acceleration > 1:
        parts.append(f"R {acquisition.acceleration:g} {acquisition.mask_kind}")
    if acquisition.scale > 1:
        parts.append(f"{acquisition.scale}× SR")
    if acquisition.noise_std > 0:
        parts.append(f"noise {acquisition.noise_std:g}")
    return f"{task}: {', '.join(parts) or 'fully sampled'}"


# ------------------------------------------------------------------------------------------------- running


def _adapt_plan(adapt: int) -> tuple[int, str | None]:
    """``(steps, note)``: the ``adapt_steps`` given to ``restore`` for the checkpoints that can adapt (``0``:
    none) and a note on what happened to ``adapt``."""
    if not adapt:
        return 0, None
    return adapt, (f"test-time adaptation: adapt_steps={adapt} passed to restore for the trained checkpoints that "
                   "can adapt (parameter-free methods and models without the adaptation's outputs run unadapted)")


def _method_plans(spec: RealScanSpec, configs: Mapping[Path, _Method],
                  steps: int) -> dict[str, tuple[int, float | None]]:
    """``{label: (adapt_steps, adapt_lr)}`` given to ``restore`` for each label of ``spec.methods``: the label's own
    ``adapt`` / ``adapt_lr`` (:class:`MethodAdapt`), else the spec-level ``steps`` for the checkpoints that can
    adapt (:func:`~accelmri.engine.adapt.adaptation_problem`); ``adapt_lr`` ``None`` = restore's default.

    Raises:
        ConfigError: a label's own ``adapt > 0`` on a checkpoint that cannot adapt (parameter-free, a task or model
            without an adaptation), or its ``adapt_lr`` on a label that runs unadapted.
    """
    plans: dict[str, tuple[int, float | None]] = {}
    for label, paths in spec.methods.items():
        own = spec.method_adapt.get(label, MethodAdapt())
        key = f"methods.{label}"
        first = configs[paths[0]]
        if own.steps is None:  # the spec-level rule: the checkpoints that can adapt, the others unadapted
            label_steps = steps if first.adapt_problem is None else 0
            why = "the spec's adapt is 0" if not steps else str(first.adapt_problem)
        else:
            label_steps, why = own.steps, "its adapt is 0"
            for path in paths if label_steps else ():
                problem = configs[path].adapt_problem
                if problem is not None:
                    raise ConfigError(spec.source, f"{key}.adapt", f"{path}: {problem}")
        if own.lr is not None and not label_steps:
            raise ConfigError(spec.source, f"{key}.adapt_lr", f"no adaptation to use it: {label} runs unadapted "
                              f"({why})")
        plans[label] = (label_steps, own.lr if label_steps else None)
    return plans


def _adapt_text(method: Mapping[str, Any]) -> str:
    """The table's adapt cell: ``"N steps, lr x"``, or ``"–"`` for an unadapted method."""
    steps, lr = method.get("adapt_steps", 0), method.get("adapt_lr")
    if not steps:
        return "–"
    return f"{steps} steps" + ("" if lr is None else f", lr {lr:.3g}")


def _default_adapt_lr(config: ExperimentConfig) -> float:
    """The learning rate ``restore`` adapts with when ``adapt_lr`` is not given (``accelmri.engine.adapt``)."""
    return float(ADAPT_LR_FACTOR * config.optimizer.lr)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _summary(runs: Sequence[dict[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and sample std over seeds of each whole-volume number (std NaN for one seed)."""
    keys = (*METRICS, "drift_percent", "drift_floor_percent", "offset", "seconds")
    mean = {k: float(np.mean([r[k] for r in runs])) for k in keys}
    std = {k: float(np.std([r[k] for r in runs], ddof=1)) if len(runs) > 1 else math.nan for k in keys}
    return mean, std


def _case_target(case: CaseSpec, folder: Path) -> Path:
    """The case's target file, or its slices ``case.slices`` written into ``folder`` (NIfTI, affine moved to the
    first slice kept).

    Raises:
        DataError: a target without geometry or fewer slices than ``case.slices`` asks for.
    """
    if case.slices is None:
        return case.target
    first, stop = case.slices
    volume = open_source(case.target).volume
    if not isinstance(volume, ImageVolume) or stop > volume.num_slices:
        raise DataError(case.target, f"slices [{first}, {stop}) need an image volume of at least {stop} slices")
    affine = np.array(volume.affine, dtype=np.float64)
    affine[:3, 3] = affine[:3] @ np.array([0.0, 0.0, first, 1.0])
    return write_nifti(folder / f"target_slices{first}-{stop - 1}.nii.gz", volume.data[first:stop], affine,
                       overwrite=True)


def _run_case(case: CaseSpec, spec: RealScanSpec, configs: Mapping[Path, _Method], out: Path, device: str,
              plans: Mapping[str, tuple[int, float | None]],
              log: Callable[[str], None]) -> tuple[dict[str, Any], Path | None]:
    """Run every method of one case (``plans``: :func:`_method_plans`); returns its ``results.json`` entry and its
    figure (``None`` without one)."""
    folder = out / "volumes" / case.name
    folder.mkdir(parents=True, exist_ok=True)
    target = _case_target(case, folder)
    source = open_source(target)
    try:
        truth = _ground_truth(source)
        builtins = {}
        if case.kind == "kspace" and any(label in BUILTINS and label not in spec.methods for label in case.methods):
            builtins = _kspace_baselines(case, source)
    finally:
        if isinstance(source.volume, FastMRIFile):
            source.volume.close()
    entry: dict[str, Any] = {"kind": case.kind, "target": str(case.target),
                             "reference": None if case.reference is None else str(case.reference),
                             "register_reference": case.register_reference,
                             "uncovered_slices": case.uncovered_slices,
                             "slice_range": None if case.slices is None else list(case.slices),
                             "slices": int(truth.shape[0]), "shape": list(truth.shape[1:]), "methods": {}}
    if case.kind == "kspace":
        entry["acquisition"] = {"mask": case.mask, "acceleration": case.acceleration,
                                "center_fraction": case.center_fraction, "seed": case.seed,
                                "l2_weight": case.l2_weight, "cg_iterations": case.cg_iterations}
        _write_h5(folder / "ground_truth.h5", truth, {"accelmri_model": "rss", "accelmri_source": str(case.target)})
        entry["ground_truth"] = str((folder / "ground_truth.h5").relative_to(out))
    examples_input: np.ndarray | None = None
    middle = truth.shape[0] // 2
    outputs: dict[str, np.ndarray] = {}
    for label in case.methods:
        method: dict[str, Any] = {"status": "ok", "runs": []}
        entry["methods"][label] = method
        if label in builtins and label not in spec.methods:
            result = builtins[label]
            volume_path = folder / f"{label}.h5"
            _write_h5(volume_path, result["volume"], {"accelmri_model": label, "accelmri_mode": "degraded"})
            method.update(model=label, task="reconstruction", source="built-in", scale=1,
                          acquisition=_acquisition_text("reconstruction", case),
                          realised_acceleration=result["acceleration"], adapt_steps=0, adapt_lr=None)
            output = _read_restored(volume_path)
            scores = _score(truth, output, result["reference"], 1)
            method["runs"].append({"source": "built-in", "volume": str(volume_path.relative_to(out)),
                                   "seconds": result["seconds"], **scores})
            outputs.setdefault(label, output[middle])
            if examples_input is None:
                examples_input = result["input"][middle]
        else:
            paths = spec.methods[label]
            loaded = configs[paths[0]]
            config = loaded.config
            steps, lr = plans[label]
            extra: dict[str, Any] = {"adapt_steps": steps} if steps else {}
            if steps and lr is not None:
                extra["adapt_lr"] = lr
            if options := spec.method_adapt.get(label, MethodAdapt()).model_options:
                extra["model_options"] = list(options)
            used_lr = [None if not steps else lr if lr is not None else _default_adapt_lr(configs[p].config)
                       for p in paths]  # what restore uses: adapt_lr, else its default from the checkpoint
            method.update(model=config.model.name, task=config.data.task, scale=config.data.acquisition.scale,
                          acquisition=_acquisition_text(config.data.task, config.data.acquisition),
                          adapt_steps=steps, adapt_lr=used_lr[0], adapt_lr_requested=lr,
                          model_options=list(spec.method_adapt.get(label, MethodAdapt()).model_options))
            for seed, path in enumerate(paths):
                name = f"{label}_seed{seed}" if len(paths) > 1 else label
                volume_path = folder / f"{name}{_output_suffix(target)}"
                start = time.perf_counter()
                try:
                    reference_file = case.reference if loaded.reads_reference else None
                    if reference_file is not None:
                        extra.update(register_reference=case.register_reference,
                                     uncovered_slices=case.uncovered_slices)
                    written = restore(path, [target], volume_path, reference=reference_file, degrade=True,
                                      device=device, **extra)[0]
                    seconds = time.perf_counter() - start
                    output = _read_restored(written)
                    if output.shape != truth.shape:
                        raise ValueError(f"restored {output.shape}, the ground truth is {truth.shape}")
                    source = open_source(target)
                    try:
                        lr_input, reference = _input_bands(configs[path].config, source)
                    finally:
                        if isinstance(source.volume, FastMRIFile):
                            source.volume.close()
                except _NOT_APPLICABLE as err:
                    method.update(status="not applicable", reason=_one_line(err), runs=[])
                    log(f"[{case.name}] {label}: not applicable: {_one_line(err)}")
                    break
                scores = _score(truth, output, reference, configs[path].config.data.acquisition.scale)
                method["runs"].append({"source": str(path), "volume": str(written.relative_to(out)),
                                       "seconds": seconds, "adapt_lr": used_lr[seed], **scores})
                outputs.setdefault(label, output[middle])
                if examples_input is None:
                    examples_input = lr_input[middle]
        if method["runs"]:
            method["mean"], method["std"] = _summary(method["runs"])
            mean = method["mean"]
            adapted = f" (adapted: {_adapt_text(method)})" if method.get("adapt_steps") else ""
            log(f"[{case.name}] {label}{adapted}: {mean['psnr']:.2f} dB, SSIM {mean['ssim']:.4f}, drift "
                f"{mean['drift_percent']:.2f} %, {mean['seconds']:.1f} s")
    figure = None
    if outputs and examples_input is not None:
        examples = Examples(examples_input[None], truth[middle][None], {k: v[None] for k, v in outputs.items()})
        drawn = example_figure(examples, 0, f"{case.name} — middle slice {middle}")
        figure = out / f"{case.name}_slice{middle}.png"
        with atomic_output(figure, overwrite=False) as tmp:
            drawn.savefig(tmp, format="png", dpi=100)
    return entry, figure


def _slice_scores(method: Mapping[str, Any], prefix: str) -> list[dict[str, dict[str, float]]]:
    """Per seed ``{"<prefix><slice>": {psnr, ssim, nmse}}`` of one method's runs (the input of ``summarize``)."""
    seeds = []
    for run in method["runs"]:
        per_slice = run["per_slice"]
        seeds.append({f"{prefix}{s}": {m: per_slice[m][i] for m in METRICS} for i, s in enumerate(per_slice["slice"])})
    return seeds


def _claims(entries: Mapping[str, Mapping[str, Any]], claims: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """The paired claims over the given cases (``{case: results entry}``), pairs (case, seed, slice)."""
    results = []
    for a, b in claims:
        scores: dict[str, list[dict[str, dict[str, float]]]] = {}
        missing = []
        for label in (a, b):
            per_case = []
            for case, entry in entries.items():
                method = entry["methods"].get(label)
                if method is not None and method["runs"]:
                    per_case.append((case, _slice_scores(method, f"{case}/")))
                elif method is not None:
                    missing.append(f"{label} not applicable on {case}")
            if per_case:
                seeds = max(len(s) for _, s in per_case)
                scores[label] = [{k: v for _, s in per_case for k, v in s[min(i, len(s) - 1)].items()}
                                 for i in range(seeds)]
        entry: dict[str, Any] = {"a": a, "b": b, "metric": "psnr"}
        if a not in scores or b not in scores:
            not_run = [label for label in (a, b) if label not in scores]
            reason = "; ".join(missing) or f"{' and '.join(not_run)} not run on these cases"
            results.append({**entry, "pairs": 0, "mean_difference": None, "pvalue": None, "holds": None,
                            "note": f"not tested: {reason}"})
            continue
        common = set(scores[a][0]) & set(scores[b][0])
        if not common:
            results.append({**entry, "pairs": 0, "mean_difference": None, "pvalue": None, "holds": None,
                            "note": "not tested: no slice scored by both"})
            continue
        restricted = {label: [{k: v for k, v in seed.items() if k in common} for seed in scores[label]]
                      for label in (a, b)}
        try:
            (claim,) = summarize(restricted, [(a, b)], {})["claims"]
        except ValueError as err:  # non-finite per-slice PSNR (an exact slice) or no pairs
            results.append({**entry, "pairs": len(common), "mean_difference": None, "pvalue": None, "holds": None,
                            "note": f"not tested: {_one_line(err)}"})
            continue
        results.append({**claim, "note": None})
    return results


# ------------------------------------------------------------------------------------------------- tables


def _cell(method: Mapping[str, Any], key: str, digits: int, form: str = "f") -> str:
    mean, std = method["mean"][key], method["std"][key]
    if mean is None or not math.isfinite(mean):
        return "–"
    text = f"{mean:.{digits}{form}}"
    return text if std is None or not math.isfinite(std) else f"{text} ± {std:.{digits}{form}}"


def _drift_cell(method: Mapping[str, Any]) -> str:
    """The drift, with the ground truth's own drift (the floor) where it is not ~0 (multi-coil data)."""
    text = _cell(method, "drift_percent", 2)
    floor = method["mean"].get("drift_floor_percent")
    return text if floor is None or not math.isfinite(floor) or floor < 0.01 else f"{text} (GT {floor:.2f})"


_HEADER = ["method", "acquisition", "PSNR (dB)", "SSIM", "NMSE", "intensity drift (%)", "offset (grey levels)",
           "seconds"]
_CLAIMS_HEADER = ["claim", "pairs", "mean difference (dB)", "p", "holds"]


def _adapts(payload: Mapping[str, Any]) -> bool:
    """Whether a method of the run adapted (the tables then get an ``adapt`` column after ``acquisition``)."""
    return any(method.get("adapt_steps") for entry in payload["cases"].values() for method in entry["methods"].values())


def _header(adapt_column: bool) -> tuple[list[str], int]:
    """The case table's header and its number of text columns."""
    return ([*_HEADER[:2], "adapt", *_HEADER[2:]], 3) if adapt_column else (_HEADER, 2)


def _case_rows(entry: Mapping[str, Any], adapt_column: bool = False) -> tuple[list[list[str]], list[str]]:
    rows, notes = [], []
    for label, method in entry["methods"].items():
        adapt = [_adapt_text(method)] if adapt_column else []
        if not method["runs"]:
            rows.append([label, "not applicable", *adapt, *(["–"] * 6)])
            notes.append(f"{label}: not applicable: {method.get('reason', '')}")
            continue
        seeds = len(method["runs"])
        name = f"{label} ({seeds} seeds)" if seeds > 1 else label
        rows.append([name, method["acquisition"], *adapt, _cell(method, "psnr", 2), _cell(method, "ssim", 4),
                     _cell(method, "nmse", 5), _drift_cell(method), _cell(method, "offset", 3, "g"),
                     _cell(method, "seconds", 1)])
    return rows, notes


def _claim_rows(claims: Sequence[Mapping[str, Any]], bold: bool) -> list[list[str]]:
    rows = []
    for claim in claims:
        if claim["mean_difference"] is None:
            rows.append([f"{claim['a']} > {claim['b']}", str(claim["pairs"]), "–", "–", claim["note"]])
            continue
        pvalue = claim["pvalue"]
        holds = "yes" if claim["holds"] else ("**no**" if bold else "no")
        rows.append([f"{claim['a']} > {claim['b']}", str(claim["pairs"]), f"{claim['mean_difference']:+.2f}",
                     "–" if pvalue is None or not math.isfinite(pvalue) else f"{pvalue:.2g}", holds])
    return rows


_INTRO = (
    "Each method degrades the fully sampled target with its own acquisition (`restore --degrade`; built-in "
    "k-space baselines with the case's), restores it and is scored against the original: whole-volume PSNR / "
    "SSIM / NMSE (fastMRI convention, data range = the target's maximum), mean ± std over seeds. Intensity drift: "
    "mean over slices of mean |low-pass(output) − input| / mean(input) inside the head (input > 0.1·max), in the "
    "band the input measured fully; offset: the signed mean difference there, in grey levels (docs/realscan.md); "
    "(GT x): the ground truth's own drift against that band where it is not ~0 (multi-coil root-sum-of-squares "
    "does not commute with the low-pass: compare the drift with this floor). "
    "Seconds: wall time of one restore (load, degrade, scan-specific adaptation if any, restore, write) or of the "
    "built-in reconstruction."
)
_ADAPT_NOTE = ("Adapt: test-time adaptation of the checkpoint to each scan before it is restored (steps, Adam "
               "learning rate; accelmri.engine.adapt), included in the seconds; – = unadapted.")
_CLAIMS_NOTE = "Claims \"a above b\": two-sided paired t-tests of per-slice PSNR over (seed, slice) pairs:"


def _markdown(payload: Mapping[str, Any], figures: Mapping[str, Path | None]) -> str:
    lines = ["# accelmri real-scan check", "", f"Spec `{payload['spec']}`; accelmri {payload['accelmri']}.", "",
             _INTRO]
    if payload["adapt"]["note"]:
        lines += ["", payload["adapt"]["note"] + "."]
    adapt_column = _adapts(payload)
    header, text_columns = _header(adapt_column)
    if adapt_column:
        lines += ["", _ADAPT_NOTE]
    for name, entry in payload["cases"].items():
        shape = "×".join(str(n) for n in entry["shape"])
        lines += ["", f"## {name}", "", f"`{Path(entry['target']).name}` ({entry['kind']}, {entry['slices']} "
                  f"slice{'s' if entry['slices'] != 1 else ''} of {shape})"
                  + (f", reference `{Path(entry['reference']).name}`" if entry["reference"] else "")
                  + (" (rigidly registered to each input)" if entry.get("register_reference") else "")
                  + (f"; target slices {entry['slice_range'][0]}–{entry['slice_range'][1] - 1}"
                     if entry.get("slice_range") else "")
                  + ".", ""]
        rows, notes = _case_rows(entry, adapt_column)
        lines += markdown_table(header, rows, text_columns)
        lines += (["", *(f"- {note}" for note in notes)] if notes else [])
        if entry["claims"]:
            lines += ["", _CLAIMS_NOTE, "", *markdown_table(_CLAIMS_HEADER, _claim_rows(entry["claims"], True), 1)]
        if figures.get(name) is not None:
            lines += ["", f"![{name}]({figures[name].name})"]  # type: ignore[union-attr]
    if payload["claims"]:
        lines += ["", "## All cases", "", _CLAIMS_NOTE.replace("(seed, slice)", "(case, seed, slice)"), "",
                  *markdown_table(_CLAIMS_HEADER, _claim_rows(payload["claims"], True), 1)]
    lines += ["", "Every number: results.json; restored volumes: volumes/; error maps: report.html."]
    return "\n".join(lines) + "\n"


def _html(payload: Mapping[str, Any], figures: Mapping[str, Path | None]) -> str:
    parts = ["<h1>accelmri real-scan check</h1>",
             f"<p class=note>accelmri {html.escape(payload['accelmri'])}; spec <code>"
             f"{html.escape(payload['spec'])}</code></p>", f"<p>{html.escape(_INTRO)}</p>"]
    if payload["adapt"]["note"]:
        parts.append(f"<p class=note>{html.escape(payload['adapt']['note'])}</p>")
    adapt_column = _adapts(payload)
    header, text_columns = _header(adapt_column)
    if adapt_column:
        parts.append(f"<p class=note>{html.escape(_ADAPT_NOTE)}</p>")
    for name, entry in payload["cases"].items():
        rows, notes = _case_rows(entry, adapt_column)
        parts += [f"<h2>{html.escape(name)}</h2>",
                  f"<p class=note><code>{html.escape(entry['target'])}</code> ({html.escape(entry['kind'])}, "
                  f"{entry['slices']} slices)</p>", html_table(header, rows, text_columns)]
        parts += [f"<p class=note>{html.escape(note)}</p>" for note in notes]
        if entry["claims"]:
            parts += [f"<p>{html.escape(_CLAIMS_NOTE)}</p>", html_table(_CLAIMS_HEADER,
                                                                       _claim_rows(entry["claims"], False), 1)]
        figure = figures.get(name)
        if figure is not None:
            parts.append(f"<figure><img alt=\"{html.escape(figure.name)}\" src=\"{png_data_uri(figure.read_bytes())}\">"
                         "<figcaption>Middle slice. Columns: the degraded input, each method (PSNR on the slice), the "
                         "ground truth; rows: the slice, the zoomed crop, |method − ground truth| on one colour "
                         "scale.</figcaption></figure>")
    if payload["claims"]:
        parts += ["<h2>All cases</h2>", f"<p>{html.escape(_CLAIMS_NOTE)}</p>",
                  html_table(_CLAIMS_HEADER, _claim_rows(payload["claims"], False), 1)]
    return render_page("accelmri real-scan check", parts)


# ------------------------------------------------------------------------------------------------------ API


def realscan(
    spec: str | Path | Mapping[str, Any] | RealScanSpec,
    out: str | Path,
    *,
    overwrite: bool = False,
    device: str = "auto",
    log: Callable[[str], None] = print,
) -> Path:
    """Run the real-scan check of ``spec`` into the folder ``out`` (see the module docstring and docs/realscan.md).

    Args:
        spec: the spec YAML file, its content as a mapping, or a :class:`RealScanSpec`.
        out: the output folder: new, empty, or (``overwrite``) replaced whole once the run succeeds.
        overwrite: replace a non-empty ``out``.
        device: where the checkpoints run (``auto``, ``cpu``, ``cuda``, ...); the built-ins run on the CPU.
        log: progress messages.

    Returns:
        ``out / "results.md"`` (``results.json``, ``report.html``, the figures and ``volumes/`` beside it).

    Raises:
        ConfigError: a bad spec or a method file that cannot be loaded (one line naming the spec and the key),
            checked before anything is written.
        FileExistsError: ``out`` exists and is not empty and ``overwrite`` is false, or is a file.
        DataError: ``out`` holds one of the spec's inputs, or a target that cannot be read.
    """
    parsed = spec if isinstance(spec, RealScanSpec) else load_spec(spec)
    configs = _load_configs(parsed)
    out = Path(out)
    _check_out(out, parsed, overwrite)
    steps, adapt_note = _adapt_plan(parsed.adapt)
    plans = _method_plans(parsed, configs, steps)
    if adapt_note:
        log(adapt_note)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.realscan-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        entries: dict[str, dict[str, Any]] = {}
        figures: dict[str, Path | None] = {}
        for case in parsed.cases:
            log(f"[{case.name}] {case.target} ({', '.join(case.methods)})")
            entries[case.name], figures[case.name] = _run_case(case, parsed, configs, tmp, device, plans, log)
            listed = [(a, b) for a, b in parsed.claims if a in case.methods and b in case.methods]
            entries[case.name]["claims"] = _claims({case.name: entries[case.name]}, listed)
        pooled = _claims(entries, parsed.claims) if len(entries) > 1 else []
        payload = {"spec": parsed.source, "accelmri": __version__, "device": device,
                   "adapt": {"requested": parsed.adapt, "steps": steps, "note": adapt_note},
                   "methods": {label: [str(p) for p in paths] for label, paths in parsed.methods.items()},
                   "method_adapt": {label: {"steps": plan[0], "lr": plan[1],
                                            "own": label in parsed.method_adapt} for label, plan in plans.items()},
                   "claims": pooled, "cases": entries}
        write_json_atomic(tmp / "results.json", _finite(payload))
        for name, text in (("results.md", _markdown(payload, figures)), ("report.html", _html(payload, figures))):
            with atomic_output(tmp / name, overwrite=False) as target:
                target.write_text(text, encoding="utf-8")
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "results.md"


def results_payload(path: str | Path) -> dict[str, Any]:
    """The ``results.json`` of a real-scan folder (or the file itself), for scripts and tests.

    Raises:
        DataError: a file that cannot be read as JSON.
    """
    file = Path(path)
    file = file / "results.json" if file.is_dir() else file
    try:
        return dict(json.loads(file.read_text(encoding="utf-8")))
    except (OSError, ValueError) as err:
        raise DataError(file, f"not a readable results.json ({err})") from err
