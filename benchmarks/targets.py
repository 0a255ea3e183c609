"""Derived numbers (GFLOP/s, fractions of the ceilings, ratios to the reference code) and the targets' checks."""

from __future__ import annotations

from typing import Any

__all__ = ["BOUNDS", "TARGETS", "annotate_forward", "check_targets"]

#: The targets: key → description.
TARGETS: dict[str, str] = {
    "exact-time": "exact fp32 forward ≤ 1.05× the reference-code time",
    "exact-memory": "exact fp32 peak RSS ≤ 0.3× reference (T2Net, FASR-Net), ≤ 0.6× (MINet, SANet)",
    "bf16-speed": "bf16 autocast ≥ 2× faster than the fp32 reference code",
    "bf16-accuracy": "bf16 autocast changes PSNR by ≤ 0.05 dB (mean over test volumes)",
    "window-speed": "windowed search ≥ 10× faster than the reference code",
    "window-accuracy": "windowed search changes PSNR by ≤ 0.05 dB (mean over test volumes)",
    "conv-efficiency": "conv-heavy models (MINet, SANet, PGD-SFT) reach ≥ 70 % of the same-run GEMM GFLOP/s",
}

#: Numeric bounds of the targets.
BOUNDS: dict[str, Any] = {
    "exact-time": 1.05,
    "exact-memory": {"t2net": 0.3, "fasrnet": 0.3, "minet": 0.6, "sanet": 0.6},
    "bf16-speed": 2.0,
    "window-speed": 10.0,
    "psnr": 0.05,
    "conv-efficiency": 0.70,
}

_WINDOW_VARIANTS = ("window4", "window8", "bf16+window8")


def annotate_forward(rows: list[dict[str, Any]], flops: list[dict[str, Any]], gemm: dict[str, Any] | None) -> None:
    """Add ``gflop``, ``gflops``, ``gemm_fp32_fraction``, ``gemm_bf16_fraction``, ``conv_fraction``,
    ``time_ratio`` (median / reference) and ``memory_ratio`` (peak / reference) to the forward rows in place."""
    counted = {(f["case"], f["window"]): f["gflop"] for f in flops if f.get("ok")}
    ceilings = {}
    if gemm and gemm.get("ok"):
        ceilings = {"gemm_fp32": gemm["fp32"]["gflops"], "gemm_bf16": gemm["bf16"]["gflops"],
                    "conv": gemm["conv"]["gflops"]}
    for row in rows:
        if not row.get("ok"):
            continue
        gflop = counted.get((row["case"], row["window"]))
        row["gflop"] = gflop
        row["gflops"] = gflop / row["median_s"] if gflop is not None else None
        for key in ("gemm_fp32", "gemm_bf16", "conv"):
            value = ceilings.get(key)
            row[f"{key}_fraction"] = row["gflops"] / value if row["gflops"] is not None and value else None
        row["time_ratio"] = row["median_s"] / row["ref_s"] if row.get("ref_s") else None
        row["memory_ratio"] = row["peak_gib"] / row["ref_gib"] if row.get("ref_gib") else None


def _check(key: str, subject: str, measured: str, bound: str, passed: bool) -> dict[str, Any]:
    return {"target": key, "subject": subject, "measured": measured, "bound": bound, "passed": passed}


def check_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target check the run's numbers allow (forward rows must be annotated first)."""
    from benchmarks.cases import CONV_HEAVY

    checks: list[dict[str, Any]] = []
    for row in results.get("forward", []):
        if not row.get("ok"):
            continue
        subject = f"{row['case']} [{row['variant']}]"
        ref_s, model, variant = row.get("ref_s"), row["model"], row["variant"]
        if variant == "fp32" and ref_s:
            ratio = row["time_ratio"]
            checks.append(_check("exact-time", subject, f"{ratio:.2f}× ({row['median_s']:.2f} s / {ref_s} s)",
                                 f"≤ {BOUNDS['exact-time']}×", ratio <= BOUNDS["exact-time"]))
        if variant == "fp32" and row.get("ref_gib") and model in BOUNDS["exact-memory"]:
            ratio, bound = row["memory_ratio"], BOUNDS["exact-memory"][model]
            checks.append(_check("exact-memory", subject,
                                 f"{ratio:.2f}× ({row['peak_gib']:.2f} GiB / {row['ref_gib']} GiB)",
                                 f"≤ {bound}×", ratio <= bound))
        if variant == "bf16" and ref_s:
            speedup = ref_s / row["median_s"]
            checks.append(_check("bf16-speed", subject, f"{speedup:.2f}× ({row['median_s']:.2f} s vs {ref_s} s)",
                                 f"≥ {BOUNDS['bf16-speed']}×", speedup >= BOUNDS["bf16-speed"]))
        if variant in _WINDOW_VARIANTS and ref_s:
            speedup = ref_s / row["median_s"]
            checks.append(_check("window-speed", subject, f"{speedup:.1f}× ({row['median_s']:.2f} s vs {ref_s} s)",
                                 f"≥ {BOUNDS['window-speed']}×", speedup >= BOUNDS["window-speed"]))
        if model in CONV_HEAVY and variant in ("fp32", "bf16") and row.get("gflops") is not None:
            fraction = row["gemm_fp32_fraction"] if variant == "fp32" else row["gemm_bf16_fraction"]
            if fraction is not None:
                conv = f"; {100 * row['conv_fraction']:.0f} % of the fp32 conv" if row.get("conv_fraction") else ""
                checks.append(_check("conv-efficiency", subject,
                                     f"{100 * fraction:.0f} % of {variant} GEMM ({row['gflops']:.0f} GFLOP/s{conv})",
                                     f"≥ {100 * BOUNDS['conv-efficiency']:.0f} %",
                                     fraction >= BOUNDS["conv-efficiency"]))
    fastpath = results.get("fastpath") or {}
    for entry in fastpath.get("rows", []):
        if not entry.get("ok"):
            continue
        for v in entry["variants"]:
            key = "bf16-accuracy" if v["variant"] == "bf16" else "window-accuracy" if v["variant"] in \
                _WINDOW_VARIANTS else None
            if key is None:
                continue
            delta = v["psnr_delta_mean"]
            checks.append(_check(key, f"{entry['run']} [{v['variant']}]",
                                 f"{delta:+.4f} dB (max |Δ| per volume {v['psnr_delta_max_abs']:.4f} dB)",
                                 f"|Δ| ≤ {BOUNDS['psnr']} dB", abs(delta) <= BOUNDS["psnr"]))
    return checks
