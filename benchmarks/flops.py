"""Section ``flops``: floating-point operations of one forward pass, counted with ``torch.utils.flop_counter``.

``FlopCounterMode`` counts matrix products and convolutions (``mm``, ``bmm``, ``addmm``, ``baddbmm``,
``convolution`` and their backward, scaled dot-product attention) as ``2 × multiply-adds`` — plus oneDNN's
``mkldnn_linear``, registered here, which the exact relevance search uses for its fp32 GEMMs; it does not count
FFTs, softmax, normalisation, interpolation or elementwise work, so the totals are the GEMM/conv work only,
which is what the GEMM and convolution ceilings measure too. One count per case and search setting (exact,
``search_window`` 4, 8): the dtype, memory format and compilation do not change the count.
"""

from __future__ import annotations

from typing import Any

__all__ = ["count_flops", "flops_worker", "module_shares"]

_registered: list[bool] = []


def _register_mkldnn_linear() -> None:
    """Teach ``FlopCounterMode`` oneDNN's inner product ``(n, D) × (m, D)ᵀ``: ``2·n·m·D`` (once per process)."""
    if _registered:
        return
    import torch
    from torch.utils.flop_counter import register_flop_formula

    @register_flop_formula(torch.ops.aten.mkldnn_linear)
    def _mkldnn_linear_flop(input_shape: Any, weight_shape: Any, *args: Any, **kwargs: Any) -> int:
        rows = 1
        for size in input_shape[:-1]:
            rows *= size
        return 2 * rows * weight_shape[0] * input_shape[-1]

    _registered.append(True)


def count_flops(call: Any) -> tuple[int, dict[str, int]]:
    """Run ``call()`` under ``FlopCounterMode``: total FLOPs and ``{module path: FLOPs}`` (root and all modules).

    Module paths are the counter's: ``"<RootClass>.<child>.<grandchild>"``; ``"Global"`` is dropped.
    """
    from torch.utils.flop_counter import FlopCounterMode

    _register_mkldnn_linear()
    with FlopCounterMode(display=False) as counter:
        call()
    per_module = {name: int(sum(ops.values())) for name, ops in counter.get_flop_counts().items() if name != "Global"}
    return int(counter.get_total_flops()), per_module


def module_shares(total: int, per_module: dict[str, int], top: int = 3) -> list[dict[str, Any]]:
    """The ``top`` direct children of the root module by FLOPs, with their share of ``total``.

    A child's FLOPs are summed over its outermost counted descendants (a ``ModuleList`` is never called, so
    ``transformers.0``, ``transformers.1``, … are summed into ``transformers``); work done in the root's own
    ``forward`` (outside any child) is listed as ``(root)`` when it is among the top. Names outside the root's
    tree (the counter also files some shared submodules under their class name, e.g. ``Sequential``, besides
    their path) are ignored: their work is already counted under the root.
    """
    if total <= 0 or not per_module:
        return []
    roots = [n for n in per_module if "." not in n]
    root = max(roots, key=per_module.__getitem__) if roots else ""
    groups: dict[str, int] = {}
    for name, flops in per_module.items():
        parts = name.split(".")
        if parts[0] != root or len(parts) < 2:
            continue
        if {".".join(parts[:i]) for i in range(2, len(parts))} & per_module.keys():
            continue  # counted within an ancestor
        groups[parts[1]] = groups.get(parts[1], 0) + flops
    rest = total - sum(groups.values())
    if rest > 0:
        groups["(root)"] = rest
    ranked = sorted(groups.items(), key=lambda item: -item[1])[:top]
    return [{"module": name, "gflop": flops / 1e9, "share": flops / total} for name, flops in ranked]


def flops_worker(case: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """Count one fp32 forward pass of ``case`` with model ``overrides`` (runs in the subprocess)."""
    import torch

    from benchmarks.cases import build_model, make_batch

    model = build_model(case, overrides).eval()
    batch = make_batch(case)
    with torch.no_grad():
        total, per_module = count_flops(lambda: model(batch))
    return {"gflop": total / 1e9, "top_modules": module_shares(total, per_module)}


def run(isolated: Any, cases: list[Any], variants: list[Any]) -> list[dict[str, Any]]:
    """One row per case and distinct search window among ``variants`` (``window`` None = exact)."""
    rows = []
    for case in cases:
        windows = sorted({v.window for v in variants if v.applies(case.model)}, key=lambda w: (w is not None, w))
        for window in windows or [None]:
            overrides = {} if window is None else {"search_window": window}
            result = isolated.run("benchmarks.flops:flops_worker", case=case, overrides=overrides)
            rows.append({"case": case.name, "model": case.model, "window": window, **result})
            print(f"  flops {case.name} window={window}: "
                  f"{_text(result, 'gflop', '.2f')} GFLOP ({result['process_s']:.1f} s)", flush=True)
    return rows


def _text(result: dict[str, Any], key: str, spec: str) -> str:
    return format(result[key], spec) if result.get("ok") else f"error: {result.get('error')}"
