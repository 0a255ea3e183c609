"""Whole-volume restore throughput: seconds per slice and peak memory of ``accelmri restore --degrade`` per model.

Each row restores one synthetic ``size × size × slices`` NIfTI volume (default 256² × 20) with
:func:`accelmri.engine.restore.restore` in degraded mode (``accelmri restore --degrade``: the checkpoint's
acquisition degrades the input, the output is on the input's grid) on the CPU, in its own fresh subprocess with
``--threads`` torch threads. Measured, around the one ``restore()`` call (which reads the input and the reference,
loads the checkpoint, degrades, runs the model slice by slice in the checkpoint's batches and writes the output):

- ``wall_s``: wall seconds; ``s_per_slice = wall_s / slices`` (the docs' target: ≤ 2 s per 256² slice on 2 CPU
  cores);
- ``cpu_s``: process CPU seconds (all threads);
- ``peak_gib``: peak resident set of the subprocess during the call, GiB (``VmHWM`` after a reset to the current
  RSS, :mod:`benchmarks.common`: a spawned child's ``ru_maxrss`` starts at its parent's peak on Linux), and
  ``delta_gib`` = peak − RSS before the call.

Writing the input, the reference and the checkpoints happens in the parent, untimed.

Models (untrained weights, ``torch.manual_seed(0)``: the time does not depend on the trained values) at the demo's
sizes (:data:`accelmri.engine.demo.EXPERIMENTS`), checkpoints with the demo's data section (digital-brain source;
no data need exist: restore reads its task, acquisition, normalisation and batch size): the ``sr2x`` learned
models (EDSR without a reference; MINet, SANet and FASR-Net guided by a FLAIR reference volume on the same grid:
2× k-space truncation) and the ``joint2x`` ones (T2Net, PGD-SFT: random R = 4 undersampling inside the 2× truncated
k-space of the input's magnitude), plus FASR-Net and T2Net with the inference option ``search_coarse=4``
(coarse-to-fine search). The input is smooth synthetic content (:func:`synthetic_volume`); PGD-SFT's time
depends on it (its fixed-point iterations stop on a tolerance, at most the model's ``max_iter``).

Run: ``OMP_NUM_THREADS=2 .venv/bin/python -m benchmarks.restore_volume --threads 2 --slices 20 --json
out/restore_volume.json`` (minutes at 256²: FASR-Net's exact search dominates); ``--tiny`` (32² × 2
slices, tiny models, a few seconds per row) is the test's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import Isolated, environment, measure, print_result

__all__ = [
    "ROWS",
    "TARGET_S_PER_SLICE",
    "TINY_KWARGS",
    "Row",
    "main",
    "restore_worker",
    "synthetic_volume",
    "write_checkpoint",
]

#: The docs' throughput target: seconds per 256² slice on 2 CPU cores.
TARGET_S_PER_SLICE = 2.0

#: In-plane voxel size (mm) and slice thickness of the synthetic volumes (the demo's 256² over 240 mm).
_VOXEL_MM = (240 / 256, 240 / 256, 3.0)


@dataclass(frozen=True)
class Row:
    """One measured row: a demo model of an experiment, restored with optional inference options.

    Attributes:
        label: the row's name (``--models`` selects by it).
        model: the model's label in ``EXPERIMENTS[experiment]["models"]``.
        experiment: ``sr2x`` or ``joint2x``: the checkpoint's data section and model size.
        guided: restored with the FLAIR reference volume.
        options: ``KEY=VALUE`` inference options (``restore(model_options=...)``).
    """

    label: str
    model: str
    experiment: str
    guided: bool = False
    options: tuple[str, ...] = ()


ROWS: list[Row] = [
    Row("edsr", "edsr", "sr2x"),
    Row("minet", "minet", "sr2x", guided=True),
    Row("sanet", "sanet", "sr2x", guided=True),
    Row("fasrnet", "fasrnet", "sr2x", guided=True),
    Row("fasrnet (search_coarse=4)", "fasrnet", "sr2x", guided=True, options=("search_coarse=4",)),
    Row("t2net", "t2net", "joint2x"),
    Row("t2net (search_coarse=4)", "t2net", "joint2x", options=("search_coarse=4",)),
    Row("pgd_sft", "pgd_sft", "joint2x"),
]

#: ``--tiny`` model sizes (a few seconds per row at 32² × 2 slices); the data section stays the demo's.
TINY_KWARGS: dict[str, dict[str, Any]] = {
    "edsr": {"channels": 8, "n_blocks": 1},
    "minet": {"channels": 8, "n_groups": 1, "n_blocks": 1, "reduction": 4},
    "sanet": {"channels": 8, "n_groups": 1, "n_blocks": 1, "reduction": 4, "attention_channels": 4},
    "fasrnet": {"channels": 8, "n_blocks": [1, 1], "embed_channels": 8},
    "t2net": {"channels": 8, "n_blocks": 1},
    "pgd_sft": {"channels": 8, "growth": 4, "n_blocks": 1, "prox_channels": 4, "prox_growth": 4, "max_iter": 2},
}


def synthetic_volume(slices: int, size: int, variant: int = 0) -> np.ndarray:
    """A smooth positive ``(slices, size, size)`` float32 volume: low-frequency cosines inside a soft ellipse.

    ``variant`` changes the phases, frequencies and the ellipse (0: the target, 1: its reference contrast). The
    content is nearly band-limited (cosines of at most 3 cycles per field of view, an ellipse edge ~3 % of the
    field wide) and positive (a faint floor outside the ellipse), like a magnitude image.
    """
    y, x = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    radius = np.hypot(x / (0.75 - 0.1 * variant), y / (0.85 - 0.05 * variant))
    ellipse = 1 / (1 + np.exp((radius - 1) / 0.03))
    volume = []
    for index in range(slices):
        phase = index / 7 + 0.9 * variant
        content = (1.5 + 0.4 * np.cos(np.pi * (2 + variant) * y + 2 * np.pi * phase)
                   + 0.3 * np.sin(np.pi * 3 * x + phase) + 0.2 * np.cos(np.pi * (y + 2 * x) - 3 * phase))
        volume.append(0.02 + ellipse * content)
    return np.stack(volume).astype(np.float32)


def _model_kwargs(row: Row, tiny: bool) -> dict[str, Any]:
    """The row's model section: the demo's (or tiny) constructor arguments with the experiment's scale."""
    spec = _experiments()[row.experiment]
    kwargs = deepcopy(spec["models"][row.model]["kwargs"])
    if tiny:  # keep the output projection (kspace_consistency) of the demo model, shrink the network
        kwargs = {**{k: v for k, v in kwargs.items() if k == "kspace_consistency"}, **TINY_KWARGS[row.model]}
    name = spec["models"][row.model]["model"]
    return {"name": name, "scale": spec["data"]["acquisition"]["scale"], **kwargs}


def _experiments() -> dict[str, dict[str, Any]]:
    """The demo's experiments (imported here: the measuring subprocesses do not need the demo's imports)."""
    from accelmri.engine.demo import EXPERIMENTS

    return EXPERIMENTS


def write_checkpoint(path: Path, row: Row, tiny: bool) -> Path:
    """Write an untrained checkpoint of ``row``'s model (weights from ``torch.manual_seed(0)``) with the demo
    experiment's data section, in the layout ``restore`` reads (stored config and model weights)."""
    import torch

    from accelmri.engine.build import build_model
    from accelmri.engine.checkpoint import save_checkpoint
    from accelmri.engine.config import parse_config

    spec = _experiments()[row.experiment]
    model = _model_kwargs(row, tiny)
    torch.manual_seed(0)
    if spec["models"][row.model].get("pretrain_extractor"):  # FASR-Net as the demo builds it: the compact texture
        # extractor (its weights do not change the time), not the default VGG19 (3.3× the descriptor size)
        from accelmri.models.blocks.texture_extractor import TextureExtractor, save_extractor

        model["extractor_weights"] = str(save_extractor(TextureExtractor(), path.with_suffix(".extractor.pt")))
    raw = {"name": path.stem, "data": deepcopy(spec["data"]), "model": model,
           "trainer": {"max_steps": 1, "out_dir": str(path.parent)}}
    config = parse_config(raw, source=f"benchmark row {row.label!r}")
    net = build_model(config.model, config.data.acquisition.scale)
    return save_checkpoint(path, {"config": config.to_dict(), "model": net.state_dict(), "step": 0})


def restore_worker(checkpoint: str, volume: str, reference: str | None, out: str, options: list[str],
                   precision: str, slices: int) -> dict[str, Any]:
    """Restore ``volume`` once with ``checkpoint`` in degraded mode on the CPU and time it (runs in the subprocess).

    Returns:
        The fields of :func:`~benchmarks.common.measure` for the one call (``median_s`` = its wall seconds,
        ``cpu_median_s``, ``peak_gib``, ``delta_gib``, ...) and ``wall_s``, ``cpu_s``, ``s_per_slice`` (wall
        seconds ÷ ``slices``), ``slices``.
    """
    from accelmri.engine.restore import restore

    def call() -> None:
        restore(checkpoint, [volume], out, reference=reference, degrade=True, overwrite=True, device="cpu",
                precision=precision, contrast="T2", reference_contrast=None if reference is None else "FLAIR",
                model_options=options)

    result = measure(call, repeats=1, warmup=0)
    wall = result["median_s"]
    return {**result, "wall_s": wall, "cpu_s": result["cpu_median_s"], "s_per_slice": wall / slices,
            "slices": slices}


def _select(names: str | None) -> list[Row]:
    """The rows named in the comma list ``names`` (all rows for None), in table order.

    Raises:
        ValueError: a name that is no row's label.
    """
    if names is None:
        return list(ROWS)
    wanted = {name.strip() for name in names.split(",") if name.strip()}
    unknown = sorted(wanted - {row.label for row in ROWS})
    if unknown:
        raise ValueError(f"unknown rows {unknown}; choose from: {', '.join(row.label for row in ROWS)}")
    return [row for row in ROWS if row.label in wanted]


def _markdown(rows: list[dict[str, Any]]) -> str:
    """The results table: one line per row, an error or skip reason in place of the numbers."""
    lines = ["| model | options | slices | wall (s) | s/slice | CPU (s) | peak (GiB) "
             f"| ≤ {TARGET_S_PER_SLICE:g} s/slice |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        options = ", ".join(row["options"]) or "–"
        if not row["ok"]:
            reason = (row.get("error") or row["skipped"]).replace("\n", " ").replace("|", "\\|")
            lines.append(f"| {row['model']} | {options} | {row['slices']} | {reason} | | | | |")
            continue
        meets = "yes" if row["s_per_slice"] <= TARGET_S_PER_SLICE else "no"
        lines.append(f"| {row['model']} | {options} | {row['slices']} | {row['wall_s']:.2f} "
                     f"| {row['s_per_slice']:.3f} | {row['cpu_s']:.2f} | {row['peak_gib']:.2f} | {meets} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Write the input volumes and checkpoints, restore with each row in its own subprocess, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, help="slices of the volume (default 20; --tiny 2)")
    parser.add_argument("--size", type=int, help="in-plane size N of the N × N slices, even (default 256; --tiny 32)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each subprocess (default 2)")
    parser.add_argument("--models", help="comma list of rows (default all): " + ", ".join(r.label for r in ROWS))
    parser.add_argument("--precision", default="32-true", help="restore's precision (default 32-true)")
    parser.add_argument("--json", type=Path, help="write the results (environment, settings, rows) to this file")
    parser.add_argument("--tiny", action="store_true", help="32² × 2 slices and tiny models (the test, seconds)")
    args = parser.parse_args(argv)
    slices = args.slices if args.slices is not None else 2 if args.tiny else 20
    size = args.size if args.size is not None else 32 if args.tiny else 256
    if size <= 0 or size % 2 or slices <= 0:
        parser.error(f"--size must be a positive even number and --slices positive, got {size} and {slices}")
    try:
        rows = _select(args.models)
    except ValueError as err:
        parser.error(str(err))
    start_method = "forkserver" if args.tiny else "spawn"
    facts = environment(threads=args.threads, start_method=start_method)
    print(f"# restore volume ({facts['date']}, torch {facts['torch']}, {facts['cpu']}, {args.threads} threads, "
          f"{size}² × {slices} slices{', tiny models' if args.tiny else ''})", flush=True)
    runner = Isolated(threads=args.threads, start_method=start_method)
    results = []
    with tempfile.TemporaryDirectory(prefix="restore-volume-") as folder:
        from accelmri.data.readers import write_nifti

        work = Path(folder)
        affine = np.diag([*_VOXEL_MM, 1.0])
        volume = write_nifti(work / "volume_T2.nii.gz", synthetic_volume(slices, size), affine)
        reference = write_nifti(work / "reference_FLAIR.nii.gz", synthetic_volume(slices, size, variant=1), affine)
        for index, row in enumerate(rows):
            checkpoint = write_checkpoint(work / f"row{index}.pt", row, args.tiny)
            result = runner.run("benchmarks.restore_volume:restore_worker", checkpoint=str(checkpoint),
                                volume=str(volume), reference=str(reference) if row.guided else None,
                                out=str(work / f"row{index}.nii.gz"), options=list(row.options),
                                precision=args.precision, slices=slices)
            print_result(row.label, result)
            results.append({"model": row.label, "options": list(row.options), "guided": row.guided,
                            "experiment": row.experiment, "size": size, "slices": slices, **result})
    print()
    print(_markdown(results))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        settings = {"slices": slices, "size": size, "threads": args.threads, "precision": args.precision,
                    "tiny": args.tiny, "target_s_per_slice": TARGET_S_PER_SLICE}
        args.json.write_text(json.dumps({"environment": facts, "settings": settings, "rows": results}, indent=2,
                                        default=str))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
