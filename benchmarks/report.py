"""The Markdown report of a benchmark run (``bench.md``): a header, the targets, one table per section."""

from __future__ import annotations

from typing import Any

__all__ = ["markdown"]


def _n(value: float | None, spec: str = ".2f", scale: float = 1.0) -> str:
    return "–" if value is None else format(value * scale, spec)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def _error(row: dict[str, Any]) -> str:
    return row.get("skipped") or "error: " + str(row.get("error", "?")).replace("|", "/").replace("\n", " ")[:200]


def _memory(row: dict[str, Any]) -> tuple[float | None, float | None]:
    """Peak and Δ memory of a measured row in GiB: the GPU allocator's on a CUDA device, else the process RSS."""
    if "device_peak_gib" in row:
        return row["device_peak_gib"], row["device_delta_gib"]
    return row["peak_gib"], row["delta_gib"]


def _on_gpu(rows: list[dict[str, Any]]) -> bool:
    return any("device_peak_gib" in r for r in rows)


def _device(facts: dict[str, Any]) -> str:
    """The header line of the device suite's device (the GPU's name, versions and fp32 settings on CUDA)."""
    if not facts.get("ok"):
        return f"- device: {_error(facts)}"
    if "gpu" not in facts:
        return f"- device: `{facts['device']}` (the device suite on the CPU)"
    return (f"- device: `{facts['device']}`: **{facts['gpu']}** (compute capability {facts['capability']}, "
            f"{facts['memory_gib']:.1f} GiB, {facts['multiprocessors']} SMs; {facts['gpus']} GPU(s) visible), "
            f"driver {facts['driver'] or '?'}, CUDA {facts['cuda']}, cuDNN {facts['cudnn']}; fp32 rows run with "
            f"TF32 convolutions {'on' if facts['cudnn_tf32'] else 'off'}, float32 matmul precision "
            f"`{facts['float32_matmul_precision']}`, cuDNN benchmark {'on' if facts['cudnn_benchmark'] else 'off'}")


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _table(header: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    """A Markdown table (``|`` inside cells escaped); ``align`` defaults to text first column, numbers after."""
    spec = align or "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"
    return [_row(header), spec, *(_row(r) for r in rows), ""]


def _header(results: dict[str, Any]) -> list[str]:
    env = results["environment"]
    settings = results["settings"]
    lines = [
        "# accelmri benchmarks" + (" (--tiny: tiny sizes, not for reporting)" if settings.get("tiny") else ""),
        "",
        f"- date: {env['date']}",
        f"- torch {env['torch']}, Python {env['python']}",
        f"- CPU: {env['cpu']} ({env['cpus']} logical CPUs; flags: {', '.join(env['cpu_flags']) or '–'})",
        f"- threads: {env['threads']}; one fresh `{env['start_method']}` subprocess per measurement; "
        f"{settings['repeats']} timed repeats after {settings['warmup']} warm-up",
    ]
    if "device" in env:
        lines.append(_device(env["device"]))
        lines.append(f"- device suite: budget {_n(settings['budget_s'], '.0f')} s for all measurements, timeout "
                     f"{settings['case_timeout_s']:.0f} s per measurement and {settings['compile_timeout_s']:.0f} s "
                     f"per `torch.compile` measurement (backend `{settings['compile_backend']}`); times up to "
                     "`torch.cuda.synchronize` on CUDA")
    gemm = results.get("gemm")
    if gemm and gemm.get("ok"):
        conv = gemm["conv"]

        def backends(name: str) -> str:
            return ", ".join(f"{b} {g:.0f}" for b, g in gemm[name].get("backends", {}).items())

        lines.append(
            f"- ceilings (same run): GEMM {gemm['n']}² fp32 **{gemm['fp32']['gflops']:.0f} GFLOP/s** "
            f"({backends('fp32')}), bf16 **{gemm['bf16']['gflops']:.0f} GFLOP/s** ({backends('bf16')}; "
            f"{gemm['bf16']['gflops'] / gemm['fp32']['gflops']:.2f}× fp32); "
            f"conv 3×3 {conv['channels']}→{conv['channels']} at {conv['size']}² fp32 "
            f"**{conv['gflops']:.0f} GFLOP/s** ({100 * conv['gflops'] / gemm['fp32']['gflops']:.0f} % of fp32 GEMM)")
    elif gemm:
        lines.append(f"- ceilings: {_error(gemm)}")
    return [*lines, ""]


def _targets(checks: list[dict[str, Any]]) -> list[str]:
    from benchmarks.targets import TARGETS

    lines = ["## Targets", ""]
    if not checks:
        return [*lines, "No target could be checked (needs reference cases, the gemm/flops sections or "
                "--checkpoints).", ""]
    lines += [f"- **{key}**: {text}" for key, text in TARGETS.items()] + [""]
    rows = [[c["target"], c["subject"], c["measured"], c["bound"], "✓" if c["passed"] else "✗"] for c in checks]
    passed = sum(c["passed"] for c in checks)
    return [*lines, *_table(["target", "subject", "measured", "bound", "result"], rows,
                            "|---|---|---:|---|:---:|"), f"{passed} of {len(checks)} checks pass.", ""]


def _forward(rows: list[dict[str, Any]], checks: list[dict[str, Any]]) -> list[str]:
    header = ["case", "variant", "params (M)", "median (s)", "min (s)", "CPU (s)", "peak (GiB)", "Δ (GiB)", "GFLOP",
              "GFLOP/s", "% fp32 GEMM", "% bf16 GEMM", "% conv", "ref (s)", "ref (GiB)", "time ratio", "mem ratio",
              "targets", "notes"]
    by_subject: dict[str, list[str]] = {}
    for c in checks:
        by_subject.setdefault(c["subject"], []).append(f"{c['target']} {'✓' if c['passed'] else '✗'}")
    gpu = _on_gpu(rows)
    if gpu:
        header[6:8] = ["GPU peak (GiB)", "GPU Δ (GiB)"]
    table = []
    for r in rows:
        if not r.get("ok"):
            table.append([r["case"], r["variant"], _error(r), *[""] * (len(header) - 3)])
            continue
        notes = []
        if "compile_s" in r:
            compile_peak = r["device_warmup_peak_gib"] if gpu else r["warmup_peak_gib"]
            notes.append(f"compile {r['compile_s']:.1f} s, compile peak {compile_peak:.2f} GiB")
        if "deq_iterations" in r:
            notes.append(f"{r['deq_iterations']} DEQ iterations")
        if r.get("finite") is False:
            notes.append("**non-finite output** (inf/NaN)")
        table.append([
            r["case"], r["variant"], _n(r["parameters"], ".2f", 1e-6), _n(r["median_s"], ".3f"), _n(r["min_s"], ".3f"),
            _n(r.get("cpu_median_s"), ".2f"), *map(_n, _memory(r)), _n(r.get("gflop"), ".1f"),
            _n(r.get("gflops"), ".0f"),
            _pct(r.get("gemm_fp32_fraction")), _pct(r.get("gemm_bf16_fraction")), _pct(r.get("conv_fraction")),
            _n(r.get("ref_s"), ".1f"), _n(r.get("ref_gib")), _n(r.get("time_ratio")), _n(r.get("memory_ratio")),
            ", ".join(by_subject.get(f"{r['case']} [{r['variant']}]", [])) or "–", "; ".join(notes) or "–",
        ])
    memory = ("GPU peak = `torch.cuda.max_memory_allocated` over the forward passes; Δ = peak − memory allocated "
              "before the first pass (model and inputs); the process RSS is in bench.json." if gpu else
              "Peak = peak RSS of the measurement's process over its forward passes; Δ = peak − RSS before the first "
              "pass (torch, model and inputs loaded).")
    return ["## Forward pass (batch 1, `torch.no_grad`)", "",
            f"{memory} GFLOP/s = counted FLOPs (flops section) / median time.", "",
            *_table(header, table, "|---|---|" + "---:|" * 14 + "---|---|")]


def _flops(rows: list[dict[str, Any]]) -> list[str]:
    table = []
    for r in rows:
        search = "exact" if r["window"] is None else f"window {r['window']}"
        if not r.get("ok"):
            table.append([r["case"], search, _error(r), ""])
            continue
        top = ", ".join(f"{m['module']} {100 * m['share']:.0f} %" for m in r["top_modules"])
        table.append([r["case"], search, _n(r["gflop"], ".2f"), top or "–"])
    return ["## FLOPs (one forward pass, `torch.utils.flop_counter`)", "",
            "Counts matrix products and convolutions only (2 FLOPs per multiply-add); FFTs, softmax, norms, "
            "interpolation and elementwise work are not counted.", "",
            *_table(["case", "search", "GFLOP", "top modules (share)"], table, "|---|---|---:|---|")]


def _train(rows: list[dict[str, Any]], loss_kind: str) -> list[str]:
    table = []
    for r in rows:
        if not r.get("ok"):
            table.append([r["case"], r["dtype"], str(r["batch"]), _error(r), "", "", "", "", ""])
            continue
        loss = " + ".join(f"{w:g}·{k}" for k, w in r["loss_terms"].items())
        table.append([r["case"], r["dtype"], str(r["batch"]), loss, _n(r["median_s"], ".3f"), _n(r["min_s"], ".3f"),
                      _n(r["median_s"] / r["batch"], ".3f"), *map(_n, _memory(r))])
    memory = ["GPU peak (GiB)", "GPU Δ (GiB)"] if _on_gpu(rows) else ["peak (GiB)", "Δ (GiB)"]
    return ["## Training step (forward + loss + backward + Adam)", "",
            f"Loss: the model's paper preset ({'with' if loss_kind == 'full' else 'without'} the terms that need "
            "external weights: perceptual, adversarial).", "",
            *_table(["case", "dtype", "batch", "loss", "median (s/step)", "min (s)", "s/sample", *memory], table,
                    "|---|---|---:|---|---:|---:|---:|---:|---:|")]


def _data(rows: list[dict[str, Any]], train: list[dict[str, Any]]) -> list[str]:
    steps = {(r["model"], r["size"], r["dtype"]): r["median_s"] for r in train if r.get("ok")}
    table = []
    for r in rows:
        if not r.get("ok"):
            table.append([r["setting"], str(r["workers"]), _error(r), "", "", "", "", "", ""])
            continue
        per_batch = r["seconds_per_batch"]
        for model in r["feeds"]:
            fp32, bf16 = steps.get((model, r["size"], "fp32")), steps.get((model, r["size"], "bf16"))
            table.append([r["setting"], str(r["workers"]), _n(r["samples_per_s"], ".1f"), _n(per_batch, ".3f"), model,
                          _n(fp32, ".3f"), _n(per_batch / fp32 if fp32 else None), _n(bf16, ".3f"),
                          _n(per_batch / bf16 if bf16 else None)])
    return ["## Data pipeline (training `SliceDataset` + `DataLoader`)", "",
            "pipeline/step = loader time per batch ÷ training step time of the model it feeds (same run); below 1 "
            "the loader keeps up.", "",
            *_table(["setting", "workers", "samples/s", "s/batch", "feeds", "step fp32 (s)", "pipeline/step fp32",
                     "step bf16 (s)", "pipeline/step bf16"], table, "|---|---:|---:|---:|---|---:|---:|---:|---:|")]


def _scaling(result: dict[str, Any], image: str | None) -> list[str]:
    table = []
    for r in result["rows"]:
        if not r.get("ok"):
            table.append([r["line"], f"{r['hr']}²", str(r["pixels"]), _error(r), "", ""])
            continue
        table.append([r["line"], f"{r['hr']}²", str(r["pixels"]), _n(r["median_s"], ".3f"), _n(r["peak_gib"]),
                      _n(r["delta_gib"], ".3f")])
    slopes = [[line, _n(s["time"]), _n(s["memory"])] for line, s in result["slopes"].items()]
    lines = ["## Scaling with pixel count (2×, fp32, batch 1)", "",
             *_table(["line", "HR", "pixels", "median (s)", "peak (GiB)", "Δ (GiB)"], table),
             "Log-log slopes against pixels (from 128² up; ≈ 1 = linear):", "",
             *_table(["line", "time slope", "Δ memory slope"], slopes)]
    if image:
        lines += [f"![scaling]({image})", ""]
    return lines


def _fastpath(result: dict[str, Any]) -> list[str]:
    lines = ["## Fast-path accuracy (digital brain, test split, vs exact fp32)", ""]
    if "skipped" in result:
        return [*lines, f"Skipped: {result['skipped']}.", ""]
    table = []
    for entry in result["rows"]:
        if not entry.get("ok"):
            table.append([entry["run"], "", "", _error(entry), "", "", "", "", ""])
            continue
        exact = entry["exact"]
        for v in entry["variants"]:
            table.append([entry["run"], entry["model"], str(entry["volumes"]), f"{exact['psnr']:.2f}", v["variant"],
                          f"{v['psnr_delta_mean']:+.4f}", f"{v['psnr_delta_max_abs']:.4f}",
                          f"{v['ssim_delta_mean']:+.5f}", f"{v['ssim_delta_max_abs']:.5f}"])
    return [*lines, *_table(["run", "model", "volumes", "exact PSNR (dB)", "fast path", "ΔPSNR mean (dB)",
                             "max |ΔPSNR| (dB)", "ΔSSIM mean", "max |ΔSSIM|"], table,
                            "|---|---|---:|---:|---|---:|---:|---:|---:|")]


def markdown(results: dict[str, Any]) -> str:
    """The report of ``results`` (the ``bench.json`` content)."""
    lines = _header(results)
    lines += _targets(results.get("targets", []))
    if "forward" in results:
        lines += _forward(results["forward"], results.get("targets", []))
    if "flops" in results:
        lines += _flops(results["flops"])
    if "train" in results:
        lines += _train(results["train"], results["settings"].get("train_loss", "pixel"))
    if "data" in results:
        lines += _data(results["data"], results.get("train", []))
    if "scaling" in results:
        lines += _scaling(results["scaling"], results["scaling"].get("image"))
    if "fastpath" in results:
        lines += _fastpath(results["fastpath"])
    return "\n".join(lines).rstrip() + "\n"
