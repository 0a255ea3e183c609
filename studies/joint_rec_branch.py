"""Where a joint model's PSNR is lost: its Rec branch (LR reconstruction) against the fully sampled LR image.

For each joint checkpoint (T2Net, the sequential UNet → EDSR, any model whose ``Prediction`` has ``lr_image``), on
the test split of its own config: the PSNR (dB, per volume against the fully sampled LR magnitude ``lr_target``,
the demo's per-volume metric, mean over the test volumes) of the Rec output ``lr_image``, of the zero-filled LR
input, and of the final HR output against the HR target. A model whose HR output trails another's by about what
its Rec output does loses in the reconstruction, not in the super-resolution.

    python studies/joint_rec_branch.py out/joint_paper_width/runs/joint2x_*_seed*/last.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from accelmri.data.sample import collate
from accelmri.engine.build import build_dataset, prepare_data, volume_slices
from accelmri.engine.evaluate import load_method
from accelmri.metrics import evaluate_volume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    args = parser.parse_args()
    print("| checkpoint | Rec output vs LR target (dB) | zero-filled LR input (dB) | HR output (dB) |")
    print("|---|---:|---:|---:|")
    for path in args.checkpoints:
        config, model = load_method(path, (), torch.device("cpu"))
        prepare_data(config.data)
        dataset = build_dataset(config.data, "test")
        rec, zero, hr = [], [], []
        with torch.no_grad():
            for _, items in volume_slices(dataset):
                samples = [dataset[i] for i in items]
                outputs = [model(collate([s])) for s in samples]
                if outputs[0].lr_image is None:
                    parser.error(f"{path}: the model has no Rec output (lr_image)")
                lr_truth = np.stack([s.denormalize(s.lr_target)[0].numpy() for s in samples])
                rec.append(evaluate_volume(lr_truth, np.stack(
                    [s.denormalize(o.lr_image)[0, 0].numpy() for s, o in zip(samples, outputs, strict=True)]))["psnr"])
                zero.append(evaluate_volume(lr_truth, np.stack(
                    [s.denormalize(s.lr_input)[0].numpy() for s in samples]))["psnr"])
                truth = np.stack([s.denormalize(s.target)[0].numpy() for s in samples])
                hr.append(evaluate_volume(truth, np.stack(
                    [s.denormalize(o.image)[0, 0].numpy() for s, o in zip(samples, outputs, strict=True)]))["psnr"])
        print(f"| {path} | {np.mean(rec):.2f} | {np.mean(zero):.2f} | {np.mean(hr):.2f} |", flush=True)


if __name__ == "__main__":
    main()
