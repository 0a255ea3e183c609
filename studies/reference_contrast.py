"""One model for references of any contrast? A randomised reference contrast against contrast-specific models
(issue: transfer to real scans, "References of any contrast").

Trains the demo's 2× SR MINet (``accelmri.engine.demo``, experiment ``sr2x``: the same realistic digital brain,
patches, budget and k-space data consistency) three ways — with a FLAIR reference, with a T1 reference, and with
the reference contrast randomised over T1, PD and FLAIR (``data.source.reference: [T1, PD, FLAIR]``: every target
paired with each) — plus EDSR (no reference) as the anchor, for ``--seeds`` training seeds each. Every checkpoint
then restores the real TCGA-FG-6692 T2 degraded 2× in k-space twice: guided by the real FLAIR, and guided by the
real T1 (``accelmri.engine.realscan``; paired t-tests over (seed, slice) pairs).

    python studies/reference_contrast.py --out out/reference_contrast [--seeds 3] [--steps 600] [--models minet]

Needs ``../shared/data/tcga_fg_6692`` (a test set: nothing here trains on it). Writes the real-scan check's
``OUT/realscan/results.md`` (tables and claims) and ``results.json``; the trained runs stay under ``OUT/demo``.
Data: TCGA-LGG, The Cancer Imaging Archive, CC BY 3.0.
"""

from __future__ import annotations

import argparse
import time
from copy import deepcopy
from pathlib import Path
from typing import Any

import yaml

from accelmri.engine.demo import EXPERIMENTS, run_demo
from accelmri.engine.realscan import realscan

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tcga_fg_6692"
TARGET = SHARED / "TCGA-FG-6692_T2_AX_TSE_t2.nii.gz"
REFERENCES = {"flair": SHARED / "TCGA-FG-6692_FLAIR_AX_tir2d_flair.nii.gz",
              "t1": SHARED / "TCGA-FG-6692_T1_AX_SE_t1.nii.gz"}

#: Training reference of each variant: label → ``data.source.reference``.
VARIANTS: dict[str, str | list[str]] = {"flair": "FLAIR", "t1": "T1", "random": ["T1", "PD", "FLAIR"]}


def experiments(models: list[str]) -> dict[str, dict[str, Any]]:
    """The demo experiments of the study: ``sr2x_<variant>`` with the guided ``models`` (EDSR and sinc: once)."""
    table: dict[str, dict[str, Any]] = {}
    for index, (label, reference) in enumerate(VARIANTS.items()):
        spec = deepcopy(EXPERIMENTS["sr2x"])
        spec["data"]["source"]["reference"] = reference
        named = reference if isinstance(reference, str) else "/".join(reference)
        spec["title"] = f"2× SR, T2 target, reference {named}"
        spec["baselines"] = {"sinc": {"model": "sinc"}} if index == 0 else {}
        spec["models"] = {m: spec["models"][m] for m in ([*models, "edsr"] if index == 0 else models)}
        spec["claims"] = []
        table[f"sr2x_{label}"] = spec
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", default="minet", help="comma-separated guided models of the sr2x experiment")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    if not TARGET.is_file():
        raise SystemExit(f"{TARGET}: not found (the study needs ../shared/data beside the repository)")
    models = args.models.split(",")
    table = experiments(models)
    start = time.time()
    run_demo(args.out / "demo", steps=args.steps, seeds=args.seeds, experiments=table, log=print)
    runs = args.out / "demo" / "runs"

    def seeds(run: str) -> list[str]:
        return [str(runs / f"{run}_seed{seed}" / "last.pt") for seed in range(args.seeds)]

    methods: dict[str, Any] = {"sinc": str(args.out / "demo" / "configs" / "sr2x_flair_sinc.yaml"),
                               "edsr": seeds("sr2x_flair_edsr")}
    claims = []
    for model in models:
        for label in VARIANTS:
            methods[f"{model}_{label}"] = seeds(f"sr2x_{label}_{model}")
        claims += [[f"{model}_random", f"{model}_flair"], [f"{model}_random", f"{model}_t1"],
                   [f"{model}_flair", "edsr"], [f"{model}_t1", "edsr"], [f"{model}_random", "edsr"]]
    spec = {"cases": [{"name": f"tcga_t2_{label}", "target": str(TARGET), "reference": str(path)}
                      for label, path in REFERENCES.items()],
            "methods": methods, "claims": [["edsr", "sinc"], *claims]}
    spec_path = args.out / "realscan.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    realscan(spec_path, args.out / "realscan")
    print((args.out / "realscan" / "results.md").read_text())
    print(f"wall time {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
