"""Does k-space-splitting adaptation (ZS-SSDU, ``accelmri.engine.adapt``) help a trained reconstruction model?

On held-out digital-brain volumes of the checkpoint's own config (simulation: the ground truth is known), adapts a
copy of the model with ``adapt_to_scan`` for each loss fraction ρ (``SSDU_LOSS_FRACTION``) and reports the PSNR
(dB, whole volume) of its reconstructions from two kinds of input:

* ``Ω``: all acquired lines, the input ``restore`` gives it (the inference distribution);
* ``split``: a fixed random split of the acquired lines with 40 % of the non-centre lines removed (the kind of input
  the adaptation trains on).

    python studies/ssdu_adaptation.py runs/pulseq_pgd_sft_r4/last.pt --fractions 0.4,0.1 --steps 60 --lr 1e-4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from accelmri.data.sample import Sample, collate
from accelmri.engine import adapt
from accelmri.engine.build import build_dataset, prepare_data, volume_slices
from accelmri.engine.evaluate import load_method
from accelmri.metrics import evaluate_volume


def _psnr(model: torch.nn.Module, inputs: list[Sample], truth: np.ndarray) -> float:
    with torch.no_grad():
        out = np.stack([s.denormalize(model.eval()(collate([s])).image)[0, 0].numpy() for s in inputs])
    return float(evaluate_volume(truth, out)["psnr"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--fractions", default="0.4,0.1", help="comma-separated loss fractions ρ")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lr", type=float, default=None, help="default: restore's (0.1 × the checkpoint's lr)")
    parser.add_argument("--volumes", type=int, default=1, help="test volumes to use (from the first)")
    args = parser.parse_args()
    config, model = load_method(args.checkpoint, (), torch.device("cpu"))
    prepare_data(config.data)
    dataset = build_dataset(config.data, "test")
    print("| volume | ρ | Ω before (dB) | Ω after (dB) | split before (dB) | split after (dB) | kept step | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for volume, items in volume_slices(dataset)[: args.volumes]:
        samples = [dataset[i] for i in items]
        truth = np.stack([s.denormalize(s.target)[0].numpy() for s in samples])
        generator = torch.Generator().manual_seed(123)
        split = [adapt._with_mask(s, adapt.ssdu_split(s.mask[0], 0.4, generator)[0]) for s in samples]
        before = _psnr(model, samples, truth), _psnr(model, split, truth)
        for fraction in (float(value) for value in args.fractions.split(",")):
            adapt.SSDU_LOSS_FRACTION = fraction
            result = adapt.adapt_to_scan(model, config, samples, steps=args.steps, lr=args.lr)
            print(f"| {volume} | {fraction:g} | {before[0]:.2f} | {_psnr(result.model, samples, truth):.2f} | "
                  f"{before[1]:.2f} | {_psnr(result.model, split, truth):.2f} | {result.best_step} | "
                  f"{result.seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
