"""The benchmark suite (benchmarks/run.py): a tiny end-to-end run, FLOP counting, slopes, targets."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from accelmri.models.base import set_channels_last
from benchmarks.cases import DEMO_CONFIGS, VARIANTS, Case, make_batch
from benchmarks.flops import count_flops, module_shares
from benchmarks.scaling import fit_slope
from benchmarks.targets import annotate_forward, check_targets

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``run.py --tiny`` into a temporary folder (all sections; fastpath is skipped without checkpoints)."""
    out = tmp_path_factory.mktemp("bench")
    completed = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--tiny", "--out", str(out)],
                               capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    folders = list(out.glob("bench-*"))
    assert len(folders) == 1
    return folders[0]


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_tiny_run_writes_every_section(tiny_run: Path) -> None:
    results = json.loads((tiny_run / "bench.json").read_text())
    for section in ("gemm", "flops", "forward", "train", "data", "scaling", "fastpath"):
        assert section in results, section
    gemm = results["gemm"]
    assert gemm["ok"] and all(_positive(gemm[k]["gflops"]) for k in ("fp32", "bf16", "conv"))
    assert results["flops"] and all(r["ok"] and _positive(r["gflop"]) for r in results["flops"])
    forward = results["forward"]
    assert {r["model"] for r in forward} == set(DEMO_CONFIGS)
    assert {r["variant"] for r in forward} >= {"fp32", "bf16", "channels-last", "window4"}
    for row in forward:
        assert row["ok"], row
        assert all(_positive(row[k]) for k in ("median_s", "min_s", "peak_gib", "gflop", "gflops")), row
        assert row["delta_gib"] >= 0 and row["peak_gib"] >= row["baseline_gib"]
        assert _positive(row["gemm_fp32_fraction"]) and _positive(row["conv_fraction"])
    train = results["train"]
    assert {(r["model"], r["dtype"]) for r in train} == {(m, d) for m in DEMO_CONFIGS for d in ("fp32", "bf16")}
    assert all(r["ok"] and _positive(r["median_s"]) and _positive(r["peak_gib"]) for r in train)
    assert results["data"] and all(r["ok"] and _positive(r["samples_per_s"]) for r in results["data"])
    scaling = results["scaling"]
    assert scaling["rows"] and all(r["ok"] and _positive(r["median_s"]) for r in scaling["rows"])
    assert scaling["slopes"] and all(isinstance(s["time"], float) for s in scaling["slopes"].values())
    assert any(isinstance(s["memory"], float) for s in scaling["slopes"].values())
    assert (tiny_run / "scaling.png").stat().st_size > 0
    assert "skipped" in results["fastpath"]
    assert all(c["target"] == "conv-efficiency" for c in results["targets"])  # tiny cases have no reference numbers


def test_tiny_run_markdown_has_the_tables(tiny_run: Path) -> None:
    text = (tiny_run / "bench.md").read_text()
    for heading in ("# accelmri benchmarks", "## Targets", "## Forward pass", "## FLOPs", "## Training step",
                    "## Data pipeline", "## Scaling with pixel count", "## Fast-path accuracy"):
        assert heading in text, heading
    assert "| case | variant | params (M) | median (s)" in text
    assert "| line | time slope | Δ memory slope |" in text
    assert "GEMM 256² fp32" in text and "threads: 1;" in text


def test_conv_flops_match_the_analytic_count() -> None:
    c_in, c_out, k, h, w = 8, 16, 3, 12, 10
    conv = nn.Conv2d(c_in, c_out, k, padding=k // 2)
    total, per_module = count_flops(lambda: conv(torch.randn(2, c_in, h, w)))
    assert total == 2 * 2 * c_in * c_out * k * k * h * w  # batch 2
    assert per_module["Conv2d"] == total


def test_module_shares_sum_outermost_children() -> None:
    per_module = {"Net": 100, "Net.a.0": 50, "Net.a.0.conv": 50, "Net.a.1": 20, "Net.b": 20}
    shares = module_shares(100, per_module)
    assert [(s["module"], round(s["share"], 2)) for s in shares] == [("a", 0.7), ("b", 0.2), ("(root)", 0.1)]


def test_fit_slope_recovers_power_laws() -> None:
    points = [(p, 3.0 * p**1.0) for p in (64**2, 128**2, 256**2)]
    assert fit_slope(points, 128**2) == pytest.approx(1.0)
    assert fit_slope([(p, p**2.0) for p in (10, 20, 40)]) == pytest.approx(2.0)
    assert fit_slope([(10, 1.0)]) is None


def test_targets_from_forward_rows() -> None:
    base = {"ok": True, "window": None, "ref_s": 10.0, "ref_gib": 2.0, "peak_gib": 0.5, "parameters": 1}
    rows = [
        {**base, "case": "t2net x", "model": "t2net", "variant": "fp32", "median_s": 10.4},
        {**base, "case": "t2net x", "model": "t2net", "variant": "bf16", "median_s": 6.0},
        {**base, "case": "t2net x", "model": "t2net", "variant": "window8", "median_s": 0.9, "window": 8},
    ]
    gemm = {"ok": True, "fp32": {"gflops": 100.0}, "bf16": {"gflops": 300.0}, "conv": {"gflops": 80.0}}
    annotate_forward(rows, [{"ok": True, "case": "t2net x", "window": None, "gflop": 520.0}], gemm)
    assert rows[0]["gflops"] == pytest.approx(50.0) and rows[0]["gemm_fp32_fraction"] == pytest.approx(0.5)
    checks = {c["target"]: c["passed"] for c in check_targets({"forward": rows})}
    assert checks == {"exact-time": True, "exact-memory": True, "bf16-speed": False, "window-speed": True}


def test_demo_configs_are_the_demo_models() -> None:
    from accelmri.engine.demo import EXPERIMENTS

    # kspace_consistency is the engine's output projection (build_model), not a constructor argument
    demo = {name: {"scale": spec["data"]["acquisition"]["scale"],
                   **{k: v for k, v in spec["models"][name]["kwargs"].items() if k != "kspace_consistency"}}
            for spec in EXPERIMENTS.values() for name in spec["models"] if name in DEMO_CONFIGS}
    assert demo == DEMO_CONFIGS


def test_channels_last_keeps_5d_weights_and_outputs() -> None:
    case = Case("minet tiny", "minet", DEMO_CONFIGS["minet"], (32, 32), size="tiny")
    from benchmarks.cases import build_model, to_channels_last

    model = build_model(case).eval()
    batch = make_batch(case)
    with torch.no_grad():
        expected = model(batch).image
        set_channels_last(model)
        actual = model(to_channels_last(batch)).image
    assert any(p.ndim == 5 for p in model.parameters())
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    assert VARIANTS["channels-last"].applies("minet") and not VARIANTS["window4"].applies("minet")


def test_flop_count_includes_the_onednn_search_gemm() -> None:
    """The exact relevance search multiplies through oneDNN's inner product: counted as 2·Nq·Nk·D."""
    from accelmri.models.blocks.correspondence import relevance_search
    from benchmarks.flops import count_flops

    query, key = torch.randn(1, 8, 16, 16), torch.randn(1, 8, 16, 16)
    with torch.no_grad():
        total, _ = count_flops(lambda: relevance_search(query, key))
    assert total == 2 * 256 * 256 * 8 * 9
