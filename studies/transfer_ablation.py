"""Which simulation components make the demo's models transfer to a real scan? (issue: transfer to real scans)

Trains the demo's 2× SR models (``accelmri.engine.demo``, experiment ``sr2x``: same data sizes, patches, budget and
k-space data consistency) on the digital brain with the ``realistic`` preset, with every component group switched
off in turn, and with realism off; each checkpoint then restores the real TCGA-FG-6692 T2 degraded 2× in k-space
(FLAIR reference; ``accelmri.engine.realscan``). The table gives the real-scan PSNR of every variant and what
switching a group off costs against ``realistic``. One training seed per variant (the study is about large
effects; the seed spread of the demo's models is in docs/results.md).

    python studies/transfer_ablation.py --out out/transfer_ablation [--models edsr,minet] [--steps 600]

Needs ``../shared/data/tcga_fg_6692`` (a test set: nothing here trains on it). Writes ``OUT/ablation.md`` and
``OUT/ablation.json``; the demo runs and the real-scan results stay under ``OUT/``. Data: TCGA-LGG, The Cancer
Imaging Archive, CC BY 3.0.
"""

from __future__ import annotations

import argparse
import json
import time
from copy import deepcopy
from pathlib import Path
from typing import Any

import yaml

from accelmri.data.digital_brain import Realism
from accelmri.engine.demo import EXPERIMENTS, run_demo
from accelmri.engine.realscan import realscan

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tcga_fg_6692"
TARGET = SHARED / "TCGA-FG-6692_T2_AX_TSE_t2.nii.gz"
REFERENCE = SHARED / "TCGA-FG-6692_FLAIR_AX_tir2d_flair.nii.gz"

_OFF = Realism()
#: Component groups of :class:`Realism`, switched off together (to their ``Realism()`` values).
GROUPS: dict[str, tuple[str, ...]] = {
    "deformation": ("deformation_mm",),
    "protocol_and_tissue_jitter": ("sequence_jitter", "tissue_jitter"),
    "texture": ("texture",),
    "bias": ("bias_amplitude", "bias_per_contrast"),
    "noise_levels": ("noise_std_range",),
    "reference_imperfection": ("reference_shift_mm", "reference_rotation_deg", "reference_slice_thickness_mm",
                               "reference_noise_scale", "reference_resample"),
}


def variants() -> dict[str, dict[str, Any] | str]:
    """Label → the ``data.source.realism`` value of each variant."""
    realistic = Realism.realistic().to_dict()
    table: dict[str, dict[str, Any] | str] = {"realistic": "realistic", "none": "none"}
    for group, fields in GROUPS.items():
        table[f"no_{group}"] = {**realistic, **{f: _OFF.to_dict()[f] for f in fields}}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", default="edsr,minet")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--only", default="", help="comma-separated variant labels (default: all)")
    args = parser.parse_args()
    if not TARGET.is_file():
        raise SystemExit(f"{TARGET}: not found (the study needs ../shared/data beside the repository)")
    models = args.models.split(",")
    chosen = {k: v for k, v in variants().items() if not args.only or k in args.only.split(",")}
    table: dict[str, dict[str, Any]] = {}
    for label, realism in chosen.items():
        spec = deepcopy(EXPERIMENTS["sr2x"])
        spec["data"]["source"]["realism"] = realism
        spec["baselines"] = {"sinc": {"model": "sinc"}}
        spec["models"] = {m: spec["models"][m] for m in models}
        spec["claims"] = []
        table[f"sr2x_{label}"] = spec
    start = time.time()
    run_demo(args.out / "demo", steps=args.steps, seeds=1, experiments=table, log=lambda message: None)
    methods = {"sinc": str(args.out / "demo" / "configs" / f"{next(iter(table))}_sinc.yaml")}
    for name in table:
        for model in models:
            methods[f"{name.removeprefix('sr2x_')}.{model}"] = str(args.out / "demo" / "runs" / f"{name}_{model}_seed0"
                                                                   / "last.pt")
    spec_path = args.out / "realscan.yaml"
    spec_path.write_text(yaml.safe_dump({
        "cases": [{"name": "tcga_t2_flair", "target": str(TARGET), "reference": str(REFERENCE)}],
        "methods": methods}))
    realscan(spec_path, args.out / "realscan")
    results = json.loads((args.out / "realscan" / "results.json").read_text())
    rows = _rows(results, models, list(chosen))
    lines = [f"Real-scan PSNR (dB), TCGA-FG-6692 T2 ← FLAIR, 2×, whole volume; {args.steps} steps, 1 seed; "
             f"cost = PSNR(realistic) − PSNR(variant). Wall time {time.time() - start:.0f} s.", "",
             "| variant | " + " | ".join(f"{m} PSNR | {m} cost" for m in models) + " |",
             "|---|" + "---:|---:|" * len(models)]
    for label, values in rows.items():
        lines.append(f"| {label} | " + " | ".join(f"{values[m][0]:.2f} | {values[m][1]:+.2f}" for m in models) + " |")
    sinc = _psnr(results, "sinc")
    lines += ["", f"sinc: {sinc:.2f} dB."]
    (args.out / "ablation.md").write_text("\n".join(lines) + "\n")
    (args.out / "ablation.json").write_text(json.dumps({"rows": rows, "sinc": sinc}, indent=1))
    print("\n".join(lines))


def _psnr(results: dict[str, Any], label: str) -> float:
    return float(results["cases"]["tcga_t2_flair"]["methods"][label]["mean"]["psnr"])


def _rows(results: dict[str, Any], models: list[str], labels: list[str]) -> dict[str, dict[str, tuple[float, float]]]:
    rows: dict[str, dict[str, tuple[float, float]]] = {}
    for label in labels:
        rows[label] = {}
        for model in models:
            value = _psnr(results, f"{label}.{model}")
            base = _psnr(results, f"realistic.{model}") if "realistic" in labels else float("nan")
            rows[label][model] = (value, base - value)
    return rows


if __name__ == "__main__":
    main()
