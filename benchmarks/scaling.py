"""Section ``scaling``: forward time and memory against pixel count, HR 64² … 512² at 2× (LR = HR / 2).

Lines: T2Net exact and with ``search_window=8``, MINet, SANet, FASR-Net exact and windowed (paper-size models,
fp32, batch 1, one fresh subprocess per point as in the forward section). ``repeats`` timed passes up to 256²,
one above. Guard: before a point, its time per pass is extrapolated from the line's previous point as
``t · (pixel ratio)^e`` with ``e`` the line's last measured log-log slope clamped to [1, 2] (1.5 after a single
point); beyond ``--max-seconds`` the point is skipped and recorded with the reason. Per line, the log-log slopes
of time and of ``peak − baseline`` memory against pixels are fitted (least squares) over the points from 128²
(all points when fewer than two are that large, as in ``--tiny``): a memory slope near 1 is linear memory.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

__all__ = ["LINES", "fit_slope", "plot", "run"]

#: ``(label, model, variant)``: the scaling lines.
LINES: list[tuple[str, str, str]] = [
    ("t2net exact", "t2net", "fp32"),
    ("t2net window8", "t2net", "window8"),
    ("minet", "minet", "fp32"),
    ("sanet", "sanet", "fp32"),
    ("fasrnet exact", "fasrnet", "fp32"),
    ("fasrnet window8", "fasrnet", "window8"),
]
SIZES = [64, 128, 256, 384, 512]
TINY_SIZES = [32, 64]
#: Only the T2Net and MINet lines in ``--tiny`` (the test).
TINY_LINES = ["t2net exact", "minet"]


def fit_slope(points: list[tuple[float, float]], min_x: float | None = None) -> float | None:
    """Least-squares slope of ``log y`` against ``log x`` over points with ``x ≥ min_x`` (all points if fewer than
    two qualify) and ``y > 0``; None with fewer than two usable points."""
    usable = [(x, y) for x, y in points if y is not None and y > 0 and x > 0]
    if min_x is not None and sum(x >= min_x for x, _ in usable) >= 2:
        usable = [(x, y) for x, y in usable if x >= min_x]
    if len({x for x, _ in usable}) < 2:
        return None
    lx = [math.log(x) for x, _ in usable]
    ly = [math.log(y) for _, y in usable]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


def run(isolated: Any, *, tiny: bool, repeats: int, warmup: int, max_seconds: float,
        lines: list[str] | None = None) -> dict[str, Any]:
    """Measure every line at every size (with the guard); return ``{"rows": [...], "slopes": {...}}``."""
    from benchmarks.cases import DEMO_CONFIGS, VARIANTS, Case

    sizes = TINY_SIZES if tiny else SIZES
    chosen = lines or (TINY_LINES if tiny else [label for label, _, _ in LINES])
    rows: list[dict[str, Any]] = []
    slopes: dict[str, dict[str, float | None]] = {}
    for label, model, variant_name in LINES:
        if label not in chosen:
            continue
        variant = VARIANTS[variant_name]
        config = DEMO_CONFIGS[model] if tiny else {"scale": 2}
        measured: list[tuple[int, float]] = []  # (pixels, seconds per pass)
        for size in sizes:
            pixels = size * size
            estimate = _extrapolate(measured, pixels)
            row: dict[str, Any] = {"line": label, "model": model, "variant": variant_name, "hr": size,
                                   "pixels": pixels, "estimate_s": estimate}
            if estimate is not None and estimate > max_seconds:
                row.update(ok=False, skipped=f"extrapolated {estimate:.0f} s per pass > --max-seconds {max_seconds:g}")
                rows.append(row)
                print(f"  scaling {label} {size}²: skipped ({row['skipped']})", flush=True)
                continue
            case = Case(f"{label} {size // 2}->{size}", model, dict(config), (size, size),
                        size="tiny" if tiny else "paper")
            result = isolated.run("benchmarks.forward:forward_worker", case=case, variant=variant,
                                  repeats=repeats if size <= 256 else 1, warmup=warmup)
            row.update(result)
            rows.append(row)
            if result["ok"]:
                measured.append((pixels, result["median_s"]))
                print(f"  scaling {label} {size}²: {result['median_s']:.3f} s, Δ {result['delta_gib']:.3f} GiB "
                      f"({result['process_s']:.1f} s)", flush=True)
            else:
                print(f"  scaling {label} {size}²: {result['error']}", flush=True)
        ok = [r for r in rows if r["line"] == label and r.get("ok")]
        slopes[label] = {
            "time": fit_slope([(r["pixels"], r["median_s"]) for r in ok], 128 * 128),
            "memory": fit_slope([(r["pixels"], r["delta_gib"]) for r in ok], 128 * 128),
        }
        print(f"  scaling {label}: log-log slope time {_fmt(slopes[label]['time'])}, "
              f"memory {_fmt(slopes[label]['memory'])}", flush=True)
    return {"sizes": sizes, "max_seconds": max_seconds, "rows": rows, "slopes": slopes}


def _extrapolate(measured: list[tuple[int, float]], pixels: int) -> float | None:
    if not measured:
        return None
    exponent = 1.5
    if len(measured) >= 2:
        (p0, t0), (p1, t1) = measured[-2:]
        if t0 > 0 and t1 > 0 and p1 != p0:
            exponent = min(max(math.log(t1 / t0) / math.log(p1 / p0), 1.0), 2.0)
    last_pixels, last_seconds = measured[-1]
    return last_seconds * (pixels / last_pixels) ** exponent


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def plot(result: dict[str, Any], path: Path, docs_copy: Path | None = None) -> Path | None:
    """Two log-log panels (time and Δmemory against pixels), one line per model; also copied to ``docs_copy``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = sorted({r["line"] for r in result["rows"]})
    if not any(r.get("ok") for r in result["rows"]):
        return None
    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label in lines:
        ok = [r for r in result["rows"] if r["line"] == label and r.get("ok")]
        if not ok:
            continue
        pixels = [r["pixels"] for r in ok]
        slope = result["slopes"].get(label, {})
        time_axis.plot(pixels, [r["median_s"] for r in ok], "o-", label=f"{label} (slope {_fmt(slope.get('time'))})")
        memory_axis.plot(pixels, [max(r["delta_gib"], 1e-4) for r in ok], "o-",
                         label=f"{label} (slope {_fmt(slope.get('memory'))})")
    for axis, ylabel in ((time_axis, "forward time (s)"), (memory_axis, "peak − baseline RSS (GiB)")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("HR pixels (2×: LR = HR / 2)")
        axis.set_ylabel(ylabel)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    time_axis.set_title("time vs pixels")
    memory_axis.set_title("memory vs pixels")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    if docs_copy is not None:
        shutil.copyfile(path, docs_copy)
    return path
