"""Section ``forward``: inference time and memory of every case in every applicable variant.

Each (case, variant) runs in a fresh subprocess: build the model (``eval``) and the batch, record the RSS
(baseline), reset the peak, one warm-up pass, ``repeats`` timed passes under ``torch.no_grad()``; the row holds
the median and minimum, the peak RSS and ``peak − baseline``. Variants: ``fp32`` (the exact path), ``bf16``
(CPU autocast), ``channels-last``, ``compile`` (``torch.compile``; the first call's time minus the median is
the compile time, and the peak is taken after it; by default on each model's first case only, with its own
timeout), and for T2Net/FASR-Net ``window4``/``window8`` (local
relevance search), ``search-bf16`` (bf16 correlations) and ``bf16+window8``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["forward_worker", "run"]


def forward_worker(case: Any, variant: Any, repeats: int, warmup: int) -> dict[str, Any]:
    """Time the forward pass of ``case`` in ``variant`` (runs in the subprocess)."""
    import torch

    from accelmri.models.base import set_channels_last
    from benchmarks.cases import build_model, make_batch, to_channels_last
    from benchmarks.common import measure

    model = build_model(case, variant.overrides).eval()
    batch = make_batch(case)
    parameters = sum(p.numel() for p in model.parameters())
    if variant.channels_last:
        model = set_channels_last(model)
        batch = to_channels_last(batch)
    runner = torch.compile(model) if variant.compile else model
    extras: dict[str, Any] = {}

    def forward() -> None:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant.autocast):
            prediction = runner(batch)
        if "deq_iterations" in prediction.extras:
            extras["deq_iterations"] = int(prediction.extras["deq_iterations"])

    result = measure(forward, repeats=repeats, warmup=max(warmup, 1 if variant.compile else 0),
                     reset_after_warmup=variant.compile)
    if variant.compile:
        result["compile_s"] = result["warmup_s"][0] - result["median_s"]
    return {"parameters": parameters, **result, **extras}


def run(isolated: Any, cases: list[Any], variants: list[Any], *, repeats: int, warmup: int,
        compile_timeout: float | None = None, compile_all: bool = False) -> list[dict[str, Any]]:
    """One row per case and applicable variant (errors are recorded in the row, never raised).

    ``compile`` runs on the first case of each model only unless ``compile_all`` (its compilation takes minutes
    and gigabytes), and is killed after ``compile_timeout`` seconds (None: the general timeout).
    """
    rows = []
    compiled: set[str] = set()
    for case in cases:
        for variant in variants:
            if not variant.applies(case.model) or (variant.compile and case.model in compiled and not compile_all):
                continue
            if variant.compile:
                compiled.add(case.model)
            result = isolated.run("benchmarks.forward:forward_worker", case=case, variant=variant,
                                  repeats=repeats, warmup=warmup, timeout=compile_timeout if variant.compile else None)
            rows.append({"case": case.name, "model": case.model, "variant": variant.name, "window": variant.window,
                         "ref_s": case.ref_s, "ref_gib": case.ref_gib, **result})
            if result["ok"]:
                print(f"  forward {case.name} [{variant.name}]: {result['median_s']:.3f} s, peak "
                      f"{result['peak_gib']:.2f} GiB ({result['process_s']:.1f} s)", flush=True)
            else:
                print(f"  forward {case.name} [{variant.name}]: {result['error']}", flush=True)
    return rows
