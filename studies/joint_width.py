"""Does T2Net's task transformer help once the network is wider? (fidelity issue, joint experiment)

The demo's joint2x experiment (``accelmri.engine.demo``: 128² digital brain, random R = 4 inside 2× truncated
k-space, whole slices, the same steps and optimiser for every model) with T2Net at ``--channels`` (demo: 16) against
its "w/o Htt" ablation at the same width, ``--seeds`` training seeds each; paired t-test over (seed, volume).

    python studies/joint_width.py --out out/joint_width [--channels 32] [--seeds 2] [--steps 600]

Writes the demo's ``results.md`` / ``results.json`` under ``OUT``.
"""

from __future__ import annotations

import argparse
from copy import deepcopy
from pathlib import Path

from accelmri.engine.demo import EXPERIMENTS, run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=600, help="the demo's --steps (joint2x trains half of them)")
    parser.add_argument("--models", default="t2net,t2net_no_htt", help="comma-separated joint2x model labels")
    args = parser.parse_args()
    spec = deepcopy(EXPERIMENTS["joint2x"])
    chosen = args.models.split(",")
    spec["models"] = {label: {**spec["models"][label], "ablation": False} for label in chosen}
    for method in spec["models"].values():
        method["kwargs"] = {**method["kwargs"], "channels": args.channels}
    spec["baselines"] = {"zero_filled": spec["baselines"]["zero_filled"]}
    spec["claims"] = [(a, b) for a, b in [("t2net", "t2net_no_htt"), ("t2net", "zero_filled")]
                      if a in spec["models"] and (b in spec["models"] or b in spec["baselines"])]
    spec["title"] = f"Joint 2×, T2Net at {args.channels} channels"
    print(run_demo(args.out, steps=args.steps, seeds=args.seeds, experiments={"joint2x": spec}, log=print)
          .read_text())


if __name__ == "__main__":
    main()
