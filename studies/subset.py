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
    # Does T2Net's task transformer help at the paper's width, against a sequential baseline of the same size?
    python studies/subset.py --experiment joint2x --models t2net,t2net_no_htt,unet_then_edsr \\
        --set-for t2net:channels=64 --set-for t2net:n_blocks=8 --set-for t2net_no_htt:channels=64 \\
        --set-for t2net_no_htt:n_blocks=8 --set-for "unet_then_edsr:sr={name: edsr, channels: 64, n_blocks: 10}" \\
        --set-for "unet_then_edsr:rec={name: unet, scale: 1, channels: 32, n_pools: 2}" \\
        --data "patch_size=[64,64]" --seeds 3 --out out/joint_paper_width
    # Does FASR-Net's cross-contrast matching transfer better when trained on randomised reference contrasts?
    python studies/subset.py --experiment sr2x --models fasrnet --data "source.reference=[T1,PD,FLAIR]" \\
        --seeds 3 --out out/fasrnet_random_reference

Writes the demo's ``results.md`` / ``results.json`` under ``OUT``.
"""

from __future__ import annotations

import argparse
from copy import deepcopy
from pathlib import Path

import yaml

from accelmri.engine.demo import EXPERIMENTS, _merge, run_demo


def _pairs(parser: argparse.ArgumentParser, flag: str, items: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` arguments of ``flag`` as ``{KEY: YAML value}`` (a parser error names a malformed one)."""
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"{flag}: expected KEY=VALUE, got {item!r}")
        pairs[key] = yaml.safe_load(value)
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--experiment", choices=sorted(EXPERIMENTS), required=True)
    parser.add_argument("--models", required=True, help="comma-separated model labels of the experiment")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="model keyword argument for every chosen model (YAML value); repeatable")
    parser.add_argument("--set-for", action="append", default=[], metavar="LABEL:KEY=VALUE",
                        help="model keyword argument for one chosen model (YAML value), after --set; repeatable")
    parser.add_argument("--data", action="append", default=[], metavar="KEY=VALUE",
                        help="data setting for every chosen model, dotted key under the experiment's data section "
                             "(YAML value, e.g. source.reference=[T1,PD,FLAIR]); repeatable")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=600, help="the demo's --steps (each experiment trains its "
                        "step fraction of them)")
    args = parser.parse_args()
    spec = deepcopy(EXPERIMENTS[args.experiment])
    chosen = args.models.split(",")
    unknown = [label for label in chosen if label not in spec["models"]]
    if unknown:
        parser.error(f"--models: {unknown} not in {args.experiment}: {sorted(spec['models'])}")
    overrides, data = _pairs(parser, "--set", args.set), {}
    own: dict[str, list[str]] = {label: [] for label in chosen}
    for item in args.set_for:
        label, sep, pair = item.partition(":")
        if not sep or label not in own:
            parser.error(f"--set-for: expected LABEL:KEY=VALUE with LABEL one of {chosen}, got {item!r}")
        own[label].append(pair)
    for key, value in _pairs(parser, "--data", args.data).items():
        *parents, leaf = key.split(".")
        node = data
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    spec["models"] = {label: {**spec["models"][label], "ablation": False,
                              "kwargs": {**spec["models"][label]["kwargs"], **overrides,
                                         **_pairs(parser, "--set-for", own[label])},
                              "data": _merge(spec["models"][label].get("data", {}), data)} for label in chosen}
    claims = [(a, b) for a, b in spec["claims"] if a in chosen and (b in chosen or b in spec["baselines"])]
    named = {b for _, b in claims} | {a for a, _ in claims}
    spec["baselines"] = {label: value for label, value in spec["baselines"].items() if label in named}
    spec["claims"] = claims
    detail = ", ".join([f"{key}={value}" for key, value in overrides.items()] + args.set_for
                       + [f"data.{item}" for item in args.data])
    spec["title"] = f"{spec.get('title', args.experiment)}: {', '.join(chosen)}" + (f" ({detail})" if detail else "")
    print(run_demo(args.out, steps=args.steps, seeds=args.seeds, experiments={args.experiment: spec}, log=print)
          .read_text())


if __name__ == "__main__":
    main()
