"""Section ``forward``: inference time and memory of every case in every applicable variant.

Each (case, variant) runs in a fresh subprocess: build the model (``eval``) and the batch, record the RSS
(baseline), reset the peak, one warm-up pass, ``repeats`` timed passes under ``torch.no_grad()``; the row holds
the median and minimum, the peak RSS and ``peak − baseline``. Variants: ``fp32`` (the exact path), ``bf16``
(CPU autocast), ``channels-last``, ``compile`` (``torch.compile``; the first call's time minus the median is
the compile time, and the peak is taken after it; by default on each model's first case only, with its own
timeout), and for T2Net/FASR-Net ``window4``/``window8`` (local
relevance search), ``search-bf16`` (bf16 correlations) and ``bf16+window8``; ``fp16`` (float16 autocast) for
the device suite. On a CUDA ``device`` the model and batch live on the GPU, every pass is timed up to
``torch.cuda.synchronize`` and the GPU memory (allocator peak) is recorded beside the RSS
(:func:`benchmarks.common.measure`). The ``compile`` rows run after all the others (their compilation may run
into its timeout or the run's budget), the table keeps the case order.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import print_result

__all__ = ["forward_worker", "run"]


def forward_worker(case: Any, variant: Any, repeats: int, warmup: int, device: str = "cpu",
                   compile_backend: str = "inductor") -> dict[str, Any]:
    """Time the forward pass of ``case`` in ``variant`` on ``device`` (runs in the subprocess).

    ``compile_backend`` is the ``torch.compile`` backend of the ``compile`` variant (``inductor``; the tiny device
    run uses ``eager``: Dynamo's tracing without minutes of code generation). Times in seconds, memory in GiB;
    ``finite``: the last pass's output image has no inf/NaN (a float16 overflow shows here).
    """
    import torch

    from accelmri.models.base import set_channels_last
    from benchmarks.cases import build_model, make_batch, to_channels_last
    from benchmarks.common import autocast, measure

    model = build_model(case, variant.overrides).eval().to(device)
    batch = make_batch(case).to(device)
    parameters = sum(p.numel() for p in model.parameters())
    if variant.channels_last:
        model = set_channels_last(model)
        batch = to_channels_last(batch)
    runner = torch.compile(model, backend=compile_backend) if variant.compile else model
    extras: dict[str, Any] = {}
    image: list[Any] = []  # the last pass's output image (one HR image: negligible memory)

    def forward() -> None:
        with torch.no_grad(), autocast(device, variant.autocast):
            prediction = runner(batch)
        image[:] = [prediction.image]
        if "deq_iterations" in prediction.extras:
            extras["deq_iterations"] = int(prediction.extras["deq_iterations"])

    result = measure(forward, repeats=repeats, warmup=max(warmup, 1 if variant.compile else 0),
                     reset_after_warmup=variant.compile, device=device)
    if variant.compile:
        result["compile_s"] = result["warmup_s"][0] - result["median_s"]
    # finite: whether the output has no inf/NaN (a float16 overflow would show here)
    return {"parameters": parameters, "finite": bool(torch.isfinite(image[0]).all()), **result, **extras}


def run(isolated: Any, cases: list[Any], variants: list[Any], *, repeats: int, warmup: int,
        compile_timeout: float | None = None, compile_all: bool = False, device: str = "cpu",
        compile_backend: str = "inductor") -> list[dict[str, Any]]:
    """One row per case and applicable variant, in case order (errors are recorded in the row, never raised).

    ``compile`` runs on the first case of each model only unless ``compile_all`` (its compilation takes minutes
    and gigabytes), after every other row, and is killed after ``compile_timeout`` seconds (None: the general
    timeout).
    """
    jobs = []
    compiled: set[str] = set()
    for case in cases:
        for variant in variants:
            if not variant.applies(case.model) or (variant.compile and case.model in compiled and not compile_all):
                continue
            if variant.compile:
                compiled.add(case.model)
            jobs.append((len(jobs), case, variant))
    rows: list[tuple[int, dict[str, Any]]] = []
    for index, case, variant in sorted(jobs, key=lambda job: job[2].compile):
        result = isolated.run("benchmarks.forward:forward_worker", case=case, variant=variant, repeats=repeats,
                              warmup=warmup, device=device, compile_backend=compile_backend,
                              timeout=compile_timeout if variant.compile else None)
        rows.append((index, {"case": case.name, "model": case.model, "variant": variant.name, "window": variant.window,
                             "ref_s": case.ref_s, "ref_gib": case.ref_gib, "device": device, **result}))
        print_result(f"forward {case.name} [{variant.name}]", result)
    return [row for _, row in sorted(rows, key=lambda item: item[0])]
