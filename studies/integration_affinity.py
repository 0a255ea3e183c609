"""What MINet's/SANet's multi-stage integration learned: the affinity temperature and the rows of ``S``.

For each checkpoint, runs three test slices of its own config and prints, per integration module, the learned
temperature ``τ`` of the scaled affinity (``models.minet.MultiStageIntegration``, initial 1.0), the mean row maximum
of ``S`` (1/N for uniform rows, 1.0 for the one-hot rows of the paper's literal Eq. 7) and ``S`` averaged over
the slices, in percent; with ``integration_gain`` the learned gain ``γ`` (initial 0). Then the module's effect on
the restored image: the same slices restored with the integrated feature zeroed (the "w/o integration" path of the
same weights), the RMS change of the image relative to its RMS, and the PSNR (dB, against the target, the three
slices pooled) with and without it.

    python studies/integration_affinity.py out/demo/runs/sr2x_minet_seed*/last.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from accelmri.data.sample import collate
from accelmri.engine.build import build_dataset, prepare_data
from accelmri.engine.evaluate import load_method
from accelmri.models.minet import MultiStageIntegration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    args = parser.parse_args()
    for path in args.checkpoints:
        config, model = load_method(path, (), torch.device("cpu"))
        modules = [m for m in model.modules() if isinstance(m, MultiStageIntegration)]
        if not modules:
            print(f"{path}: no integration module")
            continue
        captured: list[torch.Tensor] = []

        def keep(_module: torch.nn.Module, _inputs: object, out: tuple[torch.Tensor, torch.Tensor],
                 found: list[torch.Tensor] = captured) -> None:
            found.append(out[1].detach())

        for module in modules:
            module.register_forward_hook(keep)
        prepare_data(config.data)  # the digital brain is simulated on first use
        dataset = build_dataset(config.data, "test")
        picks = [len(dataset) * k // 4 for k in (1, 2, 3)]
        batch = collate([dataset[i] for i in picks])
        with torch.no_grad():
            image = model(batch).image
        for module, affinity in zip(modules, captured, strict=True):
            rows = affinity.mean(0)
            tau = "paper (none)" if module.temperature is None else f"{float(module.temperature.detach()):.3f}"
            gain = "" if module.gain is None else f", gain {float(module.gain.detach()):+.4f}"
            print(f"{path}: tau {tau}{gain}, N {rows.shape[0]}, mean row max {float(affinity.amax(-1).mean()):.3f} "
                  f"(uniform {1 / rows.shape[0]:.3f})")
            print("  S (%):", (100 * rows).round().int().tolist())
        for module in modules:
            module.register_forward_hook(lambda _m, _i, out: (torch.zeros_like(out[0]), out[1]))
        with torch.no_grad():
            without = model(batch).image
        change = float((image - without).square().mean().sqrt() / image.square().mean().sqrt())
        print(f"  zeroing the integrated feature: image RMS change {100 * change:.3f} %, PSNR "
              f"{_psnr(image, batch.target):.2f} -> {_psnr(without, batch.target):.2f} dB")


def _psnr(image: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR (dB) of ``image`` against ``target`` (both normalised), peak = the target's maximum."""
    return float(10 * torch.log10(target.amax().square() / (image - target).square().mean()))


if __name__ == "__main__":
    main()
