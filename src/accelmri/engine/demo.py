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

import json
import math
import time
from collections.abc import Callable, Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from accelmri.data.sample import collate
from accelmri.engine.build import build_dataset
from accelmri.engine.config import parse_config
from accelmri.engine.evaluate import METRICS, evaluate, load_method
from accelmri.engine.extractor import pretrain_for_config
from accelmri.engine.trainer import train
from accelmri.io import atomic_output
from accelmri.metrics import paired_ttest
from accelmri.report import report
from accelmri.report.figures import save_examples

__all__ = ["EXPERIMENTS", "demo_configs", "run_demo", "summarize"]

_BRAIN = {"kind": "digital_brain", "coils": 1, "subjects": 8, "size": 64, "slices": 8, "noise_std": 0.005, "seed": 0}

# The reference experiment at the pixel size of clinical scans: 256² over the 240 mm field of view (0.94 mm, the
# 1 mm ICBM152 template's resolution; TCGA-FG-6692's T2 has 0.9 mm), so that its checkpoints apply to real data.
# 4 slices per subject: every whole 256² slice costs FASR-Net seconds in validation and evaluation (exact search).
_BRAIN_1MM = {**_BRAIN, "size": 256, "slices": 4}

# The joint experiment at 128² (1.9 mm pixels), 8 slices per subject: the LR grid is 64² with R = 4 inside it, so a
# perfect reconstruction + sinc (the "ceiling" row) leaves headroom over zero-filling that the models can take.
_BRAIN_JOINT = {**_BRAIN, "size": 128, "slices": 8}

# The small MINet/SANet of the SR experiment, and k-space data consistency (models.baselines.interpolation).
# integration_gain 0: the integration enters through HAN's learnable gain from 0, so the network starts as its
# "w/o integration" ablation (without it, MINet trained 0.19 dB lower here: 37.45 vs 37.64 dB, 3 seeds; docs/results.md)
_MINET = {"channels": 16, "n_groups": 2, "n_blocks": 2, "reduction": 4, "integration_gain": 0.0}
_SANET = {**_MINET, "attention_channels": 8}
_DC = {"kspace_consistency": True}

# One optimiser setting for every learned model of an experiment (Adam, lr 1e-3, ×0.3 at 1/2 and 3/4 of the steps,
# gradient clipping 1): the papers' rates (1e-4 to 1e-5 over 50+ epochs) do not train in a few hundred steps.
_LR = 1e-3
_LR_GAMMA = 0.3

# Per experiment: "data" (the config's data section), "step_fraction" (its models train round(fraction · steps)
# steps: the same for every learned model of the experiment), "validations" during training (the last one at the
# end), "lr_drops" (fractions of the steps), "baselines" (parameter-free methods: label → {"model", "kwargs"[,
# "data"]}, evaluated once), "models" (learned: label → {"model", "kwargs", "loss"[, "config"]}, every one trained
# for the same steps on the same patches, once per seed; "ablation": True = only with ablations=True;
# "pretrain_extractor": True = FASR-Net's texture extractor is pretrained on the training split first), and
# "claims": the papers' orderings ``(a, b)``, "a above b", tested on the test split.
EXPERIMENTS: dict[str, dict[str, Any]] = {
    "sr2x": {
        "title": "Reference-guided super-resolution 2× (T2 target, FLAIR reference, 256² ≈ 1 mm pixels)",
        "data": {
            # realistic: subject, protocol and tissue variability, texture, bias, noise levels and an imperfect
            # (misregistered, thicker, noisier, resampled) reference, so that the checkpoints transfer to real scans
            "source": {**_BRAIN_1MM, "contrasts": ["T2"], "reference": "FLAIR", "realism": "realistic"},
            "task": "super_resolution",
            "acquisition": {"scale": 2},
            "split": {"ratios": [4, 1, 3]},
            "patch_size": [48, 48],
            "batch_size": 4,
        },
        "step_fraction": 1.0,
        "validations": 1,
        "lr_drops": (0.5, 0.75),
        "baselines": {"bicubic": {"model": "bicubic"}, "sinc": {"model": "sinc"}},
        "models": {
            # Every learned model ends in k-space data consistency (model.kspace_consistency: the measured band of
            # the output is the LR data's; docs/models.md); "_no_dc" ablations drop it.
            # EDSR reads no reference; it trains and is scored on the same samples (paired with the others)
            "edsr": {"model": "edsr", "kwargs": {"channels": 32, "n_blocks": 4, **_DC}, "loss": {"l1": 1.0}},
            "minet": {"model": "minet", "kwargs": {**_MINET, **_DC}, "loss": "minet"},
            "sanet": {"model": "sanet", "kwargs": {**_SANET, **_DC}, "loss": "sanet"},
            # extractor: the compact texture extractor pretrained on this experiment's training split (the trained
            # substitute for ImageNet VGG19, which cannot be downloaded here), once per seed, before training; at
            # lr 1e-3 FASR-Net collapsed to its residual base plus a constant (measured), 2e-4 keeps it learning
            "fasrnet": {"model": "fasrnet", "kwargs": {"channels": 16, "n_blocks": [2, 2], "embed_channels": 16, **_DC},
                        "loss": {"l1": 1.0}, "pretrain_extractor": True, "config": {"optimizer": {"lr": 2e-4}}},
            "edsr_no_dc": {"model": "edsr", "kwargs": {"channels": 32, "n_blocks": 4}, "loss": {"l1": 1.0},
                           "ablation": True},
            "minet_no_dc": {"model": "minet", "kwargs": _MINET, "loss": "minet", "ablation": True},
            "minet_no_integration": {"model": "minet", "kwargs": {**_MINET, **_DC, "use_integration": False},
                                     "loss": "minet", "ablation": True},
            "sanet_no_integration": {"model": "sanet", "kwargs": {**_SANET, **_DC, "use_integration": False},
                                     "loss": "sanet", "ablation": True},
        },
        "claims": [("minet", "edsr"), ("sanet", "edsr"), ("fasrnet", "edsr"), ("edsr", "sinc"), ("sinc", "bicubic"),
                   ("edsr", "edsr_no_dc"), ("minet", "minet_no_dc"), ("minet", "minet_no_integration"),
                   ("sanet", "sanet_no_integration")],
    },
    "joint2x": {
        "title": "Joint reconstruction + super-resolution (T2, 128², random R = 4 inside 2× truncated k-space)",
        "data": {
            "source": {**_BRAIN_JOINT, "contrasts": ["T2"], "reference": None},
            "task": "joint",
            # random lines, as T2Net's Table 1 (000). Equispaced lines gave the same picture (1 seed, 300 steps:
            # T2Net 20.06 / 19.91 dB with equispaced / random, PGD-SFT 21.70 / 21.32, zero-filled 19.18 / 19.16)
            "acquisition": {"mask_kind": "random", "acceleration": 4.0, "center_fraction": 0.08, "scale": 2},
            "split": {"ratios": [4, 1, 3]},
            "batch_size": 2,
        },
        # T2Net's exact task-transformer search over the 64² LR grid (4096 × 4096 positions per block) dominates
        # the demo's cost: batch 2 and half the steps for every model of this experiment
        "step_fraction": 0.5,
        "validations": 1,
        "lr_drops": (0.5, 0.75),
        "baselines": {
            "zero_filled": {"model": "zero_filled"},
            "zero_filled_sinc": {"model": "zero_filled", "kwargs": {"upsample": "sinc"}},
            # the ceiling: the fully sampled LR k-space (a perfect reconstruction) zero-padded to HR
            # (2× SR of the fully sampled LR k-space: same subjects, slices and HR targets)
            "perfect_rec_sinc": {"model": "sinc", "data": {"task": "super_resolution",
                                                           "acquisition": {"acceleration": 1.0}}},
        },
        "models": {
            "t2net": {"model": "t2net", "kwargs": {"channels": 16, "n_blocks": 4}, "loss": "t2net"},
            # paper 001's loss is perceptual + adversarial after an L1 stage; without ImageNet VGG weights we train
            # its PSNR-oriented L1 stage (SR and Rec terms)
            "pgd_sft": {"model": "pgd_sft", "kwargs": {"channels": 16, "growth": 8, "n_blocks": 2, "prox_channels": 8,
                                                       "prox_growth": 8, "max_iter": 5},
                        "loss": {"l1": 1.0, "rec_l1": 1.0}},
            # a Rec network and an SR network trained separately (T2Net's and paper 001's sequential rows), sized
            # like the joint models (59.6 k parameters; T2Net 49.6 k, PGD-SFT 143.8 k): at 601.8 k (UNet 16
            # channels, 3 pools + EDSR 32 × 4) it scored 23.74 dB, 3.8 dB above this T2Net (1 seed)
            "unet_then_edsr": {"model": "sequential",
                               "kwargs": {"rec": {"name": "unet", "scale": 1, "channels": 8, "n_pools": 2},
                                          "sr": {"name": "edsr", "channels": 16, "n_blocks": 4},
                                          "train_mode": "separate"},
                               "loss": {"l1": 1.0, "rec_l1": 1.0}},
            "t2net_no_rec": {"model": "t2net", "kwargs": {"channels": 16, "n_blocks": 4, "use_rec_branch": False},
                             "loss": {"l1": 1.0}, "ablation": True},
            "t2net_no_htt": {"model": "t2net", "kwargs": {"channels": 16, "n_blocks": 4,
                                                          "use_task_transformer": False},
                             "loss": "t2net", "ablation": True},
            "pgd_sft_no_sft": {"model": "pgd_sft", "kwargs": {"channels": 16, "growth": 8, "n_blocks": 2,
                                                              "prox_channels": 8, "prox_growth": 8, "max_iter": 5,
                                                              "mode": "no_sft"},
                               "loss": {"l1": 1.0, "rec_l1": 1.0}, "ablation": True},
        },
        "claims": [("t2net", "unet_then_edsr"), ("pgd_sft", "unet_then_edsr"), ("t2net", "zero_filled_sinc"),
                   ("pgd_sft", "zero_filled_sinc"), ("t2net", "zero_filled"), ("pgd_sft", "zero_filled"),
                   ("t2net", "t2net_no_rec"), ("t2net", "t2net_no_htt"), ("pgd_sft", "pgd_sft_no_sft")],
    },
}


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in, recursively for nested dicts (copies; neither argument changes)."""
    merged = deepcopy(base)
    for key, value in update.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else deepcopy(value)
    return merged


def _config(spec: dict[str, Any], experiment: str, label: str, method: dict[str, Any], steps: int, seed: int,
            out: Path) -> dict[str, Any]:
    """The experiment config of one method (``steps = 0``: a parameter-free baseline) and training seed."""
    scale = spec["data"]["acquisition"]["scale"]
    run = f"{experiment}_{label}" if steps == 0 else f"{experiment}_{label}_seed{seed}"
    config: dict[str, Any] = {
        "name": run,
        "data": _merge(spec["data"], method.get("data", {})),
        "model": {"name": method["model"], "scale": scale, **deepcopy(method.get("kwargs", {}))},
        "optimizer": {"name": "adam", "lr": _LR},
        "trainer": {"max_steps": max(steps, 1), "val_every_epochs": 0,
                    "val_every_steps": max(steps // spec["validations"], 1), "log_every": 25, "grad_clip": 1.0,
                    "seed": seed, "out_dir": str(out / "runs" / run), "progress_bar": True},
    }
    if method["model"] == "sequential":  # the registry builds the sequential model's stages from their configs
        config["model"]["sr"] = {**config["model"]["sr"], "scale": scale}
        del config["model"]["scale"]
    loss = method.get("loss")
    config["loss"] = {"preset": loss} if isinstance(loss, str) else {"weights": loss or {"l1": 1.0}}
    milestones = sorted({max(round(steps * fraction), 1) for fraction in spec["lr_drops"]}) if steps else []
    if milestones:
        config["scheduler"] = {"name": "multistep", "milestones": milestones, "gamma": _LR_GAMMA, "interval": "step"}
    return _merge(config, method.get("config", {}))


def demo_configs(out: Path, steps: int, seeds: int = 1, ablations: bool = False,
                 experiments: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """All demo configs ``{experiment: {method label: [config per seed]}}``; a baseline has one config (no
    training: deterministic). Every learned model of an experiment gets the same steps (``steps`` times the
    experiment's ``step_fraction``), patches and optimiser.

    Raises:
        ValueError: ``steps`` or ``seeds`` below 1.
    """
    if steps < 1 or seeds < 1:
        raise ValueError(f"steps and seeds must be >= 1, got steps={steps}, seeds={seeds}")
    configs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for experiment, spec in (experiments or EXPERIMENTS).items():
        methods = {label: [_config(spec, experiment, label, method, 0, 0, out)]
                   for label, method in spec["baselines"].items()}
        budget = max(round(steps * spec.get("step_fraction", 1.0)), 1)
        for label, method in spec["models"].items():
            if method.get("ablation") and not ablations:
                continue
            methods[label] = [_config(spec, experiment, label, method, budget, seed, out) for seed in range(seeds)]
        configs[experiment] = methods
    return configs


def summarize(scores: dict[str, list[dict[str, dict[str, float]]]], claims: list[tuple[str, str]],
              wall_s: dict[str, list[float]]) -> dict[str, Any]:
    """Seed statistics of one experiment.

    Args:
        scores: ``{method: [per seed: {volume: {metric: value}}]}`` (a baseline has one entry, used for every seed).
        claims: ``(a, b)`` pairs, "a above b"; pairs naming a method not in ``scores`` are skipped.
        wall_s: ``{method: [training seconds per seed]}`` (learned methods only).

    Returns:
        ``{"methods": {method: {"seeds": n, "per_seed": [{metric: mean over volumes}], "mean": {metric},
        "std": {metric} (sample std over seeds, NaN for one seed), "train_s": [seconds]}}, "claims": [{"a", "b",
        "metric": "psnr", "pairs", "mean_difference", "pvalue", "holds"}]}``: the paired t-test of each claim
        runs over (seed, volume) pairs (a baseline's volume scores pair with every seed of the other method);
        ``holds`` = the mean PSNR difference is positive; ``pvalue`` is NaN with fewer than 2 pairs.
    """
    methods: dict[str, Any] = {}
    for method, per_seed in scores.items():
        seed_means = [{metric: float(np.mean([v[metric] for v in volumes.values()])) for metric in METRICS}
                      for volumes in per_seed]
        methods[method] = {
            "seeds": len(per_seed),
            "per_seed": seed_means,
            "mean": {m: float(np.mean([s[m] for s in seed_means])) for m in METRICS},
            "std": {m: float(np.std([s[m] for s in seed_means], ddof=1)) if len(seed_means) > 1 else float("nan")
                    for m in METRICS},
            "train_s": wall_s.get(method, []),
        }
    results = []
    for a, b in claims:
        if a not in scores or b not in scores:
            continue
        seeds = max(len(scores[a]), len(scores[b]))
        pairs = [(scores[a][min(s, len(scores[a]) - 1)][volume]["psnr"],
                  scores[b][min(s, len(scores[b]) - 1)][volume]["psnr"])
                 for s in range(seeds) for volume in scores[a][min(s, len(scores[a]) - 1)]]
        difference = float(np.mean([p[0] - p[1] for p in pairs]))
        pvalue = paired_ttest([p[0] for p in pairs], [p[1] for p in pairs]).pvalue if len(pairs) > 1 else float("nan")
        results.append({"a": a, "b": b, "metric": "psnr", "pairs": len(pairs), "mean_difference": difference,
                        "pvalue": pvalue, "holds": difference > 0})
    return {"methods": methods, "claims": results}


def _markdown(title: str, seeds: int, steps: int, summary: dict[str, Any]) -> str:
    lines = [f"## {title}", "",
             f"Learned models: {steps} steps each, {seeds} training seed{'s' if seeds > 1 else ''}; mean ± std over "
             "seeds of the per-seed mean over the test volumes (baselines are deterministic).", "",
             "| method | PSNR (dB) | SSIM | NMSE | training s/seed |", "|---|---:|---:|---:|---:|"]
    for method, row in summary["methods"].items():
        def cell(metric: str, digits: int, row: dict[str, Any] = row) -> str:
            mean, std = row["mean"][metric], row["std"][metric]
            return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"
        train = f"{np.mean(row['train_s']):.0f}" if row["train_s"] else "–"
        lines.append(f"| {method} | {cell('psnr', 2)} | {cell('ssim', 4)} | {cell('nmse', 5)} | {train} |")
    if summary["claims"]:
        lines += ["", "The papers' orderings, paired t-tests over (seed, volume) pairs of PSNR:", "",
                  "| claim | pairs | mean difference (dB) | p | holds |", "|---|---:|---:|---:|---|"]
        for claim in summary["claims"]:
            lines.append(f"| {claim['a']} > {claim['b']} | {claim['pairs']} | {claim['mean_difference']:+.2f} | "
                         f"{claim['pvalue']:.2g} | {'yes' if claim['holds'] else '**no**'} |")
    return "\n".join(lines)


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


def run_demo(out: Path, steps: int = 600, seeds: int = 1, ablations: bool = False,
             log: Callable[[str], None] = print, experiments: dict[str, dict[str, Any]] | None = None,
             only: Sequence[str] | None = None) -> Path:
    """Run the demo into ``out`` and return ``out/results.md`` (``results.json`` and ``report/report.html`` beside).

    Args:
        out: new (or empty) output folder.
        steps: training steps of every learned model (the same for all, per seed).
        seeds: training seeds per learned model (``trainer.seed`` 0 … seeds − 1).
        ablations: also train the ablations of each experiment (``"ablation": True`` entries).
        log: progress messages.
        experiments: the experiment table (default :data:`EXPERIMENTS`; tests pass smaller ones).
        only: run only these experiments of the table (``None``: all).

    Raises:
        FileExistsError: if ``out`` exists and is not empty (nothing is overwritten).
        ValueError: ``steps`` or ``seeds`` below 1, or an experiment name not in the table.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: exists and is not empty; choose a new --out folder")
    table = experiments or EXPERIMENTS
    if only:
        unknown = sorted(set(only) - set(table))
        if unknown:
            raise ValueError(f"unknown experiment {', '.join(unknown)}; choose from {', '.join(table)}")
        table = {name: spec for name, spec in table.items() if name in only}
    all_configs = demo_configs(out, steps, seeds, ablations, table)
    out.mkdir(parents=True, exist_ok=True)
    runs: list[Path] = []
    sections: list[str] = []
    payload: dict[str, Any] = {"steps": steps, "seeds": seeds, "ablations": ablations, "experiments": {}}
    for experiment, methods in all_configs.items():
        spec = table[experiment]
        sources: dict[str, tuple[str, int]] = {}  # resolved source path → (method, seed)
        wall: dict[str, list[float]] = {}
        for method, configs in methods.items():
            for seed, raw in enumerate(configs):
                config_path = out / "configs" / f"{raw['name']}.yaml"
                config_path.parent.mkdir(parents=True, exist_ok=True)
                start = time.perf_counter()
                if spec["models"].get(method, {}).get("pretrain_extractor"):  # part of the model's training time
                    weights = out / "runs" / f"{raw['name']}_extractor.pt"
                    log(f"[{experiment}] pretraining {method}'s texture extractor (seed {seed})")
                    pretrain_for_config(parse_config(raw, str(config_path)), weights, seed=seed)
                    raw["model"]["extractor_weights"] = str(weights)
                config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
                if method in spec["baselines"]:
                    sources[str(config_path.resolve())] = (method, 0)
                    continue
                log(f"[{experiment}] training {method} (seed {seed}) for {raw['trainer']['max_steps']} steps")
                result = train(parse_config(raw, str(config_path)))
                wall.setdefault(method, []).append(time.perf_counter() - start)
                log(f"[{experiment}] {method} seed {seed}: {wall[method][-1]:.0f} s")
                sources[str(Path(result.last).resolve())] = (method, seed)
        evaluation = out / "evaluation" / experiment
        evaluated = evaluate(list(sources), evaluation, split="test")
        scores: dict[str, list[dict[str, dict[str, float]]]] = {}
        for result in evaluated.methods:
            method, seed = sources[str(Path(result.source).resolve())]
            per_seed = scores.setdefault(method, [])
            per_seed.insert(seed, {score.volume: score.metrics() for score in result.scores})
        summary = summarize(scores, spec["claims"], wall)
        payload["experiments"][experiment] = {"title": spec["title"], **summary}
        first_seed = [path for path, (_, seed) in sources.items() if seed == 0]
        write_examples([Path(p) for p in first_seed], [sources[p][0] for p in first_seed],
                       evaluation / "examples.npz")
        runs.append(evaluation)
        budget = max(round(steps * spec.get("step_fraction", 1.0)), 1)
        payload["experiments"][experiment]["steps"] = budget
        sections.append(_markdown(spec["title"], seeds, budget, summary))
    report(runs, out / "report", title="accelmri demo — digital brain, held-out subjects")
    with atomic_output(out / "results.json", overwrite=False) as tmp:
        tmp.write_text(json.dumps(payload, indent=2))
    results = out / "results.md"
    with atomic_output(results, overwrite=False) as tmp:
        tmp.write_text("# accelmri demo — digital brain, held-out subjects\n\n" + "\n\n".join(sections) + "\n\n"
                       "Per-volume scores and all pairwise t-tests: evaluation/<experiment>/metrics.md; "
                       "figures: report/report.html\n")
    return results
