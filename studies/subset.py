"""Some models of one demo experiment, at another budget or size: the questions the demo's defaults leave open.

The demo's protocol (``accelmri.engine.demo``: same data, steps, optimiser and held-out volumes for every model of
the experiment; paired t-tests over (seed, volume)) for the chosen ``--models`` only, with ``--set KEY=VALUE``
overriding model keyword arguments of every chosen model (e.g. ``channels=32``), ``--seeds`` training seeds each.
Claims: the experiment's claims between chosen models and the baselines they name. Examples (fidelity issue):

    # Does T2Net's task transformer help once the network is wider? (joint2x, 32 channels)
    python studies/subset.py --experiment joint2x --models t2net,t2net_no_htt --set channels=32 --seeds 4 \\
        --out out/joint_width
    # Does MINet's integration module help with four times the budget? (sr2x, 2400 steps)
    python studies/subset.py --experiment sr2x --models minet,minet_no_integration --steps 2400 --seeds 3 \\
        --out out/integration_budget

Writes the demo's ``results.md`` / ``results.json`` under ``OUT``.
"""

from __future__ import annotations

import argparse
from copy import deepcopy
from pathlib import Path

import yaml

from accelmri.engine.demo import EXPERIMENTS, run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--experiment", choices=sorted(EXPERIMENTS), required=True)
    parser.add_argument("--models", required=True, help="comma-separated model labels of the experiment")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="model keyword argument for every chosen model (YAML value); repeatable")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=600, help="the demo's --steps (each experiment trains its "
                        "step fraction of them)")
    args = parser.parse_args()
    spec = deepcopy(EXPERIMENTS[args.experiment])
    chosen = args.models.split(",")
    unknown = [label for label in chosen if label not in spec["models"]]
    if unknown:
        parser.error(f"--models: {unknown} not in {args.experiment}: {sorted(spec['models'])}")
    overrides = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set: expected KEY=VALUE, got {item!r}")
        overrides[key] = yaml.safe_load(value)
    spec["models"] = {label: {**spec["models"][label], "ablation": False,
                              "kwargs": {**spec["models"][label]["kwargs"], **overrides}} for label in chosen}
    claims = [(a, b) for a, b in spec["claims"] if a in chosen and (b in chosen or b in spec["baselines"])]
    named = {b for _, b in claims} | {a for a, _ in claims}
    spec["baselines"] = {label: value for label, value in spec["baselines"].items() if label in named}
    spec["claims"] = claims
    detail = ", ".join(f"{key}={value}" for key, value in overrides.items())
    spec["title"] = f"{spec.get('title', args.experiment)}: {', '.join(chosen)}" + (f" ({detail})" if detail else "")
    print(run_demo(args.out, steps=args.steps, seeds=args.seeds, experiments={args.experiment: spec}, log=print)
          .read_text())


if __name__ == "__main__":
    main()
