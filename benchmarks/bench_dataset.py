"""Dataset throughput: samples/s of the joint-task SliceDataset on this machine.

Two settings from the papers: single-coil 320² (T2Net/MINet-style magnitude data, R = 4, s = 2) and
12-coil 256×232 (paper 001's brain data: 1-D Gaussian R = 2.5, s = 2), both read lazily from fastMRI-layout
HDF5 files written to a temporary folder. Run: ``python benchmarks/bench_dataset.py [--workers 0 1 2]``.
Prints a Markdown table and writes JSON next to it (``--out``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from accelmri.data.datasets import SliceDataset, SliceSource
from accelmri.data.phantom import shepp_logan
from accelmri.data.readers.fastmri import FastMRIFile, write_fastmri
from accelmri.data.sample import collate
from accelmri.physics.coils import sense_expand
from accelmri.physics.degrade import Acquisition
from accelmri.physics.fft import fft2c
from accelmri.physics.sensitivity import birdcage_maps

SETTINGS = {
    "single-coil 320x320, joint R=4 s=2": dict(coils=1, shape=(320, 320), acq=Acquisition("equispaced", 4, 0.08, 2)),
    "12-coil 256x232, joint R=2.5 s=2": dict(coils=12, shape=(256, 232), acq=Acquisition("gaussian1d", 2.5, 0.08, 2)),
}


def write_volume(folder: Path, coils: int, shape: tuple[int, int], slices: int) -> Path:
    image = shepp_logan(shape, phase_cycles=0.5)
    if coils == 1:
        kspace = fft2c(image)[None].expand(slices, -1, -1)
    else:
        kspace = fft2c(sense_expand(image, birdcage_maps((coils, *shape))))[None].expand(slices, -1, -1, -1)
    path = folder / f"bench_{coils}coil.h5"
    write_fastmri(path, kspace.numpy().copy())
    return path


def measure(dataset: SliceDataset, workers: int, batches: int) -> float:
    loader = DataLoader(dataset, batch_size=1, num_workers=workers, collate_fn=collate, shuffle=True)
    iterator = iter(loader)
    next(iterator)  # warm-up (worker start, file open)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dataset.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, setting in SETTINGS.items():
            path = write_volume(Path(tmp), setting["coils"], setting["shape"], slices=args.samples + 1)
            source = SliceSource(FastMRIFile(path), subject="bench")
            for maps in (None, "espirit") if setting["coils"] > 1 else (None,):
                for workers in args.workers:
                    # A fresh dataset per run: ESPIRiT maps are cached per slice, so this is the first epoch.
                    dataset = SliceDataset([source], "joint", setting["acq"], train=True, sens_maps=maps)
                    rate = measure(dataset, workers, args.samples)
                    rows.append({"setting": name, "sens_maps": maps or "-", "workers": workers, "samples_per_s": rate})
                    print(f"| {name} | {maps or '-'} | {workers} | {rate:.1f} |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"torch_threads": 2, "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
