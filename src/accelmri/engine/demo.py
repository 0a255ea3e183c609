"""The main demo: simulate the digital brain, train small models of every method, evaluate, report.

Two experiments on held-out digital-brain subjects (split by subject, 4 train / 1 val / 3 test of 8):

- **Reference-guided super-resolution**, 2×: T2 target, FLAIR reference, single coil, LR by k-space truncation,
  simulated at 256² over 240 mm (0.94 mm pixels, the resolution of the 1 mm ICBM152 template and close to clinical
  scans such as TCGA-FG-6692's 0.9 mm T2), so that the checkpoints apply to real scans (``accelmri restore``); a
  64² simulation has ~3.75 mm pixels and its models do not transfer. 4 slices per subject. Training uses random
  64² patches (``data.patch_size``, batch 4; FASR-Net 32², see below) with the learning rate dropped ×0.3 at 1/2
  and 3/4 of the steps; validation (once, at the end) and evaluation use whole 256² slices. Baselines
  ``bicubic`` and ``sinc``; learned ``edsr`` (no reference, 4× the steps: it is cheap and must learn the
  interpolation itself), ``minet``, ``sanet`` (2× the steps) and ``fasrnet`` (2× the steps on 32² patches at lr
  2e-4: its exact correspondence search is quadratic in the patch's pixels, ~1.8 s per step on 64² patches, and
  at lr 1e-3 it collapsed to the bicubic image plus a constant). FASR-Net's search also makes every whole 256²
  slice cost ~10 s in validation and evaluation: hence 4 slices per subject and a single validation.
- **Joint reconstruction + super-resolution**: T2, equispaced R = 3 inside the 2× truncated k-space (total R·s = 6,
  T2Net's setting), single coil, 64² whole slices, 8 per subject. Baseline ``zero_filled`` (+ bicubic); learned
  ``t2net``, ``pgd_sft``.

Each learned model is a small configuration trained for a fixed number of steps on 2 CPU cores; the whole demo is
sized to finish in about 15 minutes. Results go to ``OUT/results.md`` (per-experiment tables with paired t-tests)
and ``OUT/report/report.html`` (tables and figures); checkpoints to ``OUT/runs/<experiment>_<model>/last.pt``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path
from typing import Any

import torch
import yaml

from accelmri.data.sample import collate
from accelmri.engine.build import build_dataset
from accelmri.engine.config import parse_config
from accelmri.engine.evaluate import evaluate, load_method
from accelmri.engine.trainer import train
from accelmri.report import report
from accelmri.report.figures import save_examples

__all__ = ["EXPERIMENTS", "demo_configs", "run_demo"]

_BRAIN = {"kind": "digital_brain", "coils": 1, "subjects": 8, "size": 64, "slices": 8, "noise_std": 0.005, "seed": 0}

# The reference experiment at the pixel size of clinical scans: 256² over the 240 mm field of view (0.94 mm, the
# 1 mm ICBM152 template's resolution; TCGA-FG-6692's T2 has 0.9 mm), so that its checkpoints apply to real data.
# 4 slices per subject: every whole 256² slice costs FASR-Net ~10 s in validation and evaluation (exact search).
_BRAIN_1MM = {**_BRAIN, "size": 256, "slices": 4}

# Per experiment: "validations" during training (the last one at the end), "lr_drops": fractions of a model's steps
# at which the learning rate is multiplied by _LR_GAMMA, and "models": name → (model arguments, loss preset or
# weights[, steps as a fraction of --steps[, config overrides by section]]).
_LR = 1e-3
_LR_GAMMA = 0.3

EXPERIMENTS: dict[str, dict[str, Any]] = {
    "sr2x": {
        "title": "Reference-guided super-resolution 2× (T2 target, FLAIR reference, 256² ≈ 1 mm pixels)",
        "data": {
            "source": {**_BRAIN_1MM, "contrasts": ["T2"], "reference": "FLAIR"},
            "task": "super_resolution",
            "acquisition": {"scale": 2},
            "split": {"ratios": [4, 1, 3]},
            "patch_size": [64, 64],
            "batch_size": 4,
        },
        "validations": 1,
        "lr_drops": (0.5, 0.75),
        "baselines": {"bicubic": {}, "sinc": {}},
        "models": {
            "edsr": ({"channels": 32, "n_blocks": 4}, {"l1": 1.0}, 4),
            "minet": ({"channels": 16, "n_groups": 2, "n_blocks": 2, "reduction": 4}, "minet", 2),
            "sanet": ({"channels": 16, "n_groups": 2, "n_blocks": 2, "reduction": 4, "attention_channels": 8}, "sanet",
                      2),
            # FASR-Net's exact search is quadratic in the patch's pixels: a step on 64² patches costs ~1.8 s, on 32²
            # patches ~8× less. At lr 1e-3 it collapsed to LR↑ plus a constant (measured); 2e-4 keeps it learning.
            "fasrnet": ({"channels": 16, "n_blocks": [2, 2], "embed_channels": 16}, {"l1": 1.0}, 2,
                        {"data": {"patch_size": [32, 32]}, "optimizer": {"lr": 2e-4}}),
        },
    },
    "joint2x": {
        "title": "Joint reconstruction + super-resolution (T2, equispaced R = 3 inside 2× truncated k-space)",
        "data": {
            "source": {**_BRAIN, "contrasts": ["T2"], "reference": None},
            "task": "joint",
            "acquisition": {"mask_kind": "equispaced", "acceleration": 3.0, "center_fraction": 0.16, "scale": 2},
            "split": {"ratios": [4, 1, 3]},
            "batch_size": 4,
        },
        "validations": 3,
        "lr_drops": (),
        "baselines": {"zero_filled": {}},
        "models": {
            "t2net": ({"channels": 16, "n_blocks": 4}, "t2net"),
            "pgd_sft": ({"channels": 16, "growth": 8, "n_blocks": 2, "prox_channels": 8, "prox_growth": 8,
                         "max_iter": 5}, {"l1": 1.0, "rec_l1": 1.0}),
        },
    },
}


def _config(experiment: str, method: str, model: dict[str, Any], loss: dict[str, float] | str | None,
            steps: int, out: Path) -> dict[str, Any]:
    spec = EXPERIMENTS[experiment]
    scale = spec["data"]["acquisition"]["scale"]
    steps = max(steps, 1)
    config: dict[str, Any] = {
        "name": f"{experiment}_{method}",
        "data": deepcopy(spec["data"]),
        "model": {"name": method, "scale": scale, **model},
        "optimizer": {"name": "adam", "lr": _LR},
        "trainer": {"max_steps": steps, "val_every_epochs": 0,
                    "val_every_steps": max(steps // spec["validations"], 1),
                    "log_every": 25,
                    "grad_clip": 1.0, "seed": 0, "out_dir": str(out / "runs" / f"{experiment}_{method}"),
                    "progress_bar": True},
    }
    config["loss"] = {"preset": loss} if isinstance(loss, str) else {"weights": loss or {"l1": 1.0}}
    if method == "edsr":
        config["data"]["source"]["reference"] = None
    return config


def demo_configs(out: Path, steps: int) -> dict[str, dict[str, dict[str, Any]]]:
    """All demo configs ``{experiment: {method: config dict}}`` (baselines are evaluated without training)."""
    configs: dict[str, dict[str, dict[str, Any]]] = {}
    for experiment, spec in EXPERIMENTS.items():
        configs[experiment] = {name: _config(experiment, name, kwargs, None, 0, out)
                               for name, kwargs in spec["baselines"].items()}
        for name, (kwargs, loss, *options) in spec["models"].items():
            model_steps = round(steps * options[0]) if options else steps
            config = _config(experiment, name, kwargs, loss, model_steps, out)
            for section, values in (options[1] if len(options) > 1 else {}).items():
                config[section].update(deepcopy(values))
            milestones = sorted({max(round(model_steps * fraction), 1) for fraction in spec["lr_drops"]})
            if milestones:
                config["scheduler"] = {"name": "multistep", "milestones": milestones, "gamma": _LR_GAMMA,
                                       "interval": "step"}
            configs[experiment][name] = config
    return configs


def write_examples(sources: list[Path], names: list[str], path: Path, slices: int = 3) -> None:
    """Run every method on the central slices of the first test volume and save ``examples.npz`` for the report."""
    outputs: dict[str, torch.Tensor] = {}
    batch = None
    for source, name in zip(sources, names, strict=True):
        config, model = load_method(source, (), torch.device("cpu"))
        if batch is None:
            dataset = build_dataset(config.data, "test", config.source)
            start = max(0, len(dataset) // 2 - slices // 2)
            batch = collate([dataset[i] for i in range(start, min(len(dataset), start + slices))])
        with torch.no_grad():
            outputs[name] = batch.denormalize(model.eval()(batch).image)[:, 0]
    assert batch is not None
    save_examples(path, batch.denormalize(batch.lr_input)[:, 0], batch.denormalize(batch.target)[:, 0], outputs)


def run_demo(out: Path, steps: int = 300, log: Callable[[str], None] = print) -> Path:
    """Run the demo into ``out`` and return ``out/results.md`` (``out/report.html`` next to it).

    Raises:
        FileExistsError: if ``out`` exists and is not empty (nothing is overwritten).
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: exists and is not empty; choose a new --out folder")
    out.mkdir(parents=True, exist_ok=True)
    runs: list[Path] = []
    sections: list[str] = []
    for experiment, methods in demo_configs(out, steps).items():
        sources: list[Path] = []
        for method, raw in methods.items():
            config_path = out / "configs" / f"{experiment}_{method}.yaml"
            config_path.parent.mkdir(parents=True, exist_ok=True)
            config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
            if method in EXPERIMENTS[experiment]["baselines"]:
                sources.append(config_path)
                continue
            start = time.perf_counter()
            log(f"[{experiment}] training {method} for {raw['trainer']['max_steps']} steps")
            result = train(parse_config(raw, str(config_path)))
            log(f"[{experiment}] {method}: {time.perf_counter() - start:.0f} s")
            sources.append(result.last)
        evaluation = out / "evaluation" / experiment
        evaluate(sources, evaluation, split="test")
        write_examples(sources, list(methods), evaluation / "examples.npz")
        runs.append(evaluation)
        sections.append(f"## {EXPERIMENTS[experiment]['title']}\n\n{(evaluation / 'metrics.md').read_text()}")
    report(runs, out / "report", title="accelmri demo — digital brain, held-out subjects")
    results = out / "results.md"
    results.write_text("# accelmri demo — digital brain, held-out subjects\n\n" + "\n\n".join(sections) + "\n\n"
                       "Figures: report/report.html\n")
    return results
