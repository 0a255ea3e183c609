"""Forward time and peak memory of the models at the reference sizes of design/models.md.

Each (model, dtype) runs in a fresh subprocess (peak RSS is per process), batch 1, 2 threads, after one
warm-up pass; time is the median of ``--repeats`` passes. bf16 uses CPU autocast. Ratios are against the
reference-code numbers measured on this machine kind (design/models.md); the machine is noisy (±30 %).

Run: ``python benchmarks/bench_models.py [--models t2net minet ...] [--dtypes fp32 bf16] [--repeats 3]``.
Writes ``benchmarks/results/models.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import time
from pathlib import Path
from typing import Any

# name: (model config, LR size, HR size, coils, reference?, reference seconds, reference GiB)
CASES: dict[str, tuple[dict[str, Any], tuple[int, int], tuple[int, int], int, bool, float | None, float | None]] = {
    "t2net 2x 128->256": ({"name": "t2net", "scale": 2}, (128, 128), (256, 256), 1, False, 38.2, 1.45),
    "t2net 2x 160->320": ({"name": "t2net", "scale": 2}, (160, 160), (320, 320), 1, False, 95.0, 3.0),
    "t2net 4x 64->256": ({"name": "t2net", "scale": 4}, (64, 64), (256, 256), 1, False, 2.1, 0.45),
    "minet 2x 160->320": ({"name": "minet", "scale": 2}, (160, 160), (320, 320), 1, True, 15.0, 2.5),
    "minet 4x 80->320": ({"name": "minet", "scale": 4}, (80, 80), (320, 320), 1, True, 14.2, None),
    "sanet 2x 160->320": ({"name": "sanet", "scale": 2}, (160, 160), (320, 320), 1, True, 11.2, 1.95),
    "sanet 4x 80->320": ({"name": "sanet", "scale": 4}, (80, 80), (320, 320), 1, True, 9.5, None),
    "fasrnet 4x 80->320": ({"name": "fasrnet", "scale": 4}, (80, 80), (320, 320), 1, True, 52.0, 6.3),
    "fasrnet 4x 64->256": ({"name": "fasrnet", "scale": 4}, (64, 64), (256, 256), 1, True, 24.9, 3.6),
    "pgd_sft 2x 12 coils 128x116->256x232": ({"name": "pgd_sft", "scale": 2}, (128, 116), (256, 232), 12, False,
                                              None, None),
}


def _batch(lr: tuple[int, int], hr: tuple[int, int], coils: int, reference: bool) -> Any:
    import torch

    from accelmri.data.sample import Sample
    from accelmri.physics.masks import make_mask

    generator = torch.Generator().manual_seed(0)
    mask = make_mask("gaussian1d", lr, 2.5, 0.08, 0)[None, None]
    kspace = torch.randn(1, coils, *lr, dtype=torch.complex64, generator=generator) * mask
    maps = torch.randn(1, coils, *lr, dtype=torch.complex64, generator=generator) if coils > 1 else None
    if maps is not None:
        maps = maps / (maps.abs() ** 2).sum(1, keepdim=True).sqrt()
    return Sample(
        target=torch.rand(1, 1, *hr, generator=generator),
        lr_input=torch.rand(1, 1, *lr, generator=generator),
        lr_target=torch.rand(1, 1, *lr, generator=generator),
        kspace=kspace,
        mask=mask,
        norm_mean=torch.zeros(1),
        norm_std=torch.ones(1),
        reference=torch.rand(1, 1, *hr, generator=generator) if reference else None,
        sens_maps=maps,
    )


def _run(case: str, dtype: str, repeats: int, queue: Any) -> None:
    import torch

    from accelmri.models import build

    torch.set_num_threads(2)
    config, lr, hr, coils, reference, _, _ = CASES[case]
    model = build(**config).eval()
    batch = _batch(lr, hr, coils, reference)
    times = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        model(batch)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(batch)
            times.append(time.perf_counter() - start)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    params = sum(p.numel() for p in model.parameters())
    queue.put({"seconds": statistics.median(times), "peak_gib": peak_gib, "parameters": params})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/models.json"))
    args = parser.parse_args()
    context = mp.get_context("spawn")
    rows = []
    print("| case | dtype | params (M) | time (s) | ref (s) | time ratio | peak RSS (GiB) | ref (GiB) | mem ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        _, _, _, _, _, ref_s, ref_gib = CASES[case]
        for dtype in args.dtypes:
            queue = context.Queue()
            process = context.Process(target=_run, args=(case, dtype, args.repeats, queue))
            process.start()
            result = queue.get()
            process.join()
            row = {"case": case, "dtype": dtype, **result, "reference_seconds": ref_s, "reference_gib": ref_gib}
            rows.append(row)
            t_ratio = f"{result['seconds'] / ref_s:.2f}" if ref_s else "–"
            m_ratio = f"{result['peak_gib'] / ref_gib:.2f}" if ref_gib else "–"
            print(f"| {case} | {dtype} | {result['parameters'] / 1e6:.2f} | {result['seconds']:.2f} | {ref_s or '–'} | "
                  f"{t_ratio} | {result['peak_gib']:.2f} | {ref_gib or '–'} | {m_ratio} |", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
