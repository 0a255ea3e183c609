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


# --- the device suite (`run.py --device`, `make bench-gpu`): its CPU run and the CUDA paths, without CUDA --------


@pytest.fixture(scope="module")
def tiny_device_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``run.py --tiny --device cpu`` for one model: the GPU suite's code (train, data with workers, forward in
    fp32/bf16/fp16 and ``compile``) on the CPU."""
    out = tmp_path_factory.mktemp("bench-device")
    completed = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--tiny", "--device", "cpu",
                                "--cases", "sanet", "--out", str(out)],
                               capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    folders = list(out.glob("bench-*"))
    assert len(folders) == 1
    return folders[0]


def test_tiny_device_run_writes_the_gpu_sections(tiny_device_run: Path) -> None:
    results = json.loads((tiny_device_run / "bench.json").read_text())
    settings = results["settings"]
    assert settings["device"] == "cpu" and settings["compile_backend"] == "eager"
    assert settings["variants"] == ["fp32", "bf16", "fp16", "compile"] and settings["budget_s"] > 0
    assert results["environment"]["device"]["ok"] and results["environment"]["device"]["device"] == "cpu"
    assert list(results["section_seconds"]) == ["train", "data", "forward"]  # compile, the least predictable, last
    forward = results["forward"]
    assert [(r["model"], r["variant"]) for r in forward] == [("sanet", v) for v in settings["variants"]]
    for row in forward:
        assert row["ok"] and row["device"] == "cpu" and row["finite"] is True, row
        assert all(_positive(row[k]) for k in ("median_s", "min_s", "peak_gib")), row
        assert "device_peak_gib" not in row  # CPU: RSS only
    assert isinstance(forward[-1]["compile_s"], float)
    train = results["train"]
    assert [(r["model"], r["dtype"]) for r in train] == [("sanet", "fp32"), ("sanet", "bf16")]
    assert all(r["ok"] and _positive(r["median_s"]) for r in train)
    data = results["data"]
    assert [r["workers"] for r in data] == [0, 2] and all("sanet" in r["feeds"] for r in data)
    assert all(r["ok"] and _positive(r["samples_per_s"]) for r in data)
    text = (tiny_device_run / "bench.md").read_text()
    assert "- device: `cpu` (the device suite on the CPU)" in text
    for variant in settings["variants"]:
        assert f"| sanet 2x 16->32 (demo model) | {variant} |" in text
    assert "compile" in text and "## Training step" in text and "## Data pipeline" in text


def test_failed_and_skipped_measurements_are_recorded() -> None:
    """A case that raises, and one after the run's budget, become rows with the reason; the run goes on."""
    from benchmarks import forward, report
    from benchmarks.common import Isolated

    broken = Case("broken 2x 16->32", "no_such_model", {"scale": 2}, (32, 32), size="tiny")
    rows = forward.run(Isolated(1, "fork", timeout=120), [broken], [VARIANTS["fp32"]], repeats=1, warmup=0)
    assert len(rows) == 1 and not rows[0]["ok"] and "no_such_model" in rows[0]["error"]
    skipped = forward.run(Isolated(1, "fork", budget=0), [broken], [VARIANTS["fp16"]], repeats=1, warmup=0)
    assert not skipped[0]["ok"] and "budget" in skipped[0]["skipped"]
    results = {"environment": {"date": "d", "torch": "t", "python": "p", "cpu": "c", "cpus": 2, "cpu_flags": [],
                               "threads": 1, "start_method": "fork"},
               "settings": {"repeats": 1, "warmup": 0}, "forward": rows + skipped}
    text = report.markdown(results)
    assert "| broken 2x 16->32 | fp32 | error: " in text and "no_such_model" in text
    assert "| broken 2x 16->32 | fp16 | not run: the run budget of 0 s was spent |" in text


class _FakeCuda:
    """Stands in for ``torch.cuda``'s synchronisation and allocator statistics (GiB-sized numbers)."""

    def __init__(self) -> None:
        self.allocated, self.peak, self.synchronized = 2 * 2**30, 3 * 2**30, 0

    def synchronize(self, device: object = None) -> None:
        self.synchronized += 1

    def reset_peak_memory_stats(self, device: object = None) -> None:
        self.peak = self.allocated

    def memory_allocated(self, device: object = None) -> int:
        return self.allocated

    def max_memory_allocated(self, device: object = None) -> int:
        return self.peak

    def max_memory_reserved(self, device: object = None) -> int:
        return 8 * 2**30


def test_measure_on_cuda_synchronizes_and_reads_the_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.common import measure

    fake = _FakeCuda()
    for name in ("synchronize", "reset_peak_memory_stats", "memory_allocated", "max_memory_allocated",
                 "max_memory_reserved"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))

    def call() -> None:  # a pass that needs 1.5 GiB more at its peak
        fake.peak = max(fake.peak, fake.allocated + 3 * 2**29)

    result = measure(call, repeats=3, warmup=2, device="cuda")
    assert fake.synchronized == 1 + 2 + 3  # before the first call, then after every call
    assert result["device_baseline_gib"] == 2.0 and result["device_setup_peak_gib"] == 3.0
    assert result["device_peak_gib"] == 3.5 and result["device_delta_gib"] == 1.5
    assert result["device_warmup_peak_gib"] == 3.5 and result["device_reserved_gib"] == 8.0
    assert len(result["times_s"]) == 3 and "peak_gib" in result  # the RSS is still recorded


def test_gpu_facts_and_tables_in_the_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA branch of ``device_facts`` and the GPU columns of the report, with a stand-in GPU."""
    from types import SimpleNamespace

    from benchmarks import common, report

    properties = SimpleNamespace(name="Test GPU 80GB", major=9, minor=0, total_memory=80 * 2**30,
                                 multi_processor_count=132)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: properties)
    monkeypatch.setattr(common, "_driver_version", lambda index: "999.1")
    facts = {"ok": True, **common.device_facts("cuda")}
    assert facts["gpu"] == "Test GPU 80GB" and facts["capability"] == "9.0" and facts["memory_gib"] == 80.0
    gpu = {"ok": True, "device_peak_gib": 1.25, "device_delta_gib": 0.5, "device_warmup_peak_gib": 2.0,
           "peak_gib": 3.0, "delta_gib": 0.1, "median_s": 0.01, "min_s": 0.01, "parameters": 10**6}
    results = {"environment": {"date": "d", "torch": "t", "python": "p", "cpu": "c", "cpus": 16, "cpu_flags": [],
                               "threads": 8, "start_method": "spawn", "device": facts},
               "settings": {"repeats": 5, "warmup": 2, "budget_s": 460.0, "case_timeout_s": 120.0,
                            "compile_timeout_s": 120.0, "compile_backend": "inductor"},
               "forward": [{**gpu, "case": "minet x", "model": "minet", "variant": "compile", "window": None,
                            "compile_s": 30.0}],
               "train": [{**gpu, "case": "minet x", "model": "minet", "size": "paper-batch", "batch": 4,
                          "dtype": "bf16", "loss_terms": {"l1": 1.0}}]}
    text = report.markdown(results)
    assert "**Test GPU 80GB** (compute capability 9.0, 80.0 GiB, 132 SMs" in text and "driver 999.1" in text
    assert "| GPU peak (GiB) | GPU Δ (GiB) |" in text and "budget 460 s" in text
    assert "| minet x | compile | 1.00 | 0.010 | 0.010 | – | 1.25 | 0.50 |" in text  # GPU memory, not the RSS
    assert "compile 30.0 s, compile peak 2.00 GiB" in text
    assert "| minet x | bf16 | 4 | 1·l1 | 0.010 | 0.010 | 0.003 | 1.25 | 0.50 |" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_device_facts_refuse_cuda_without_cuda() -> None:
    from benchmarks.common import device_facts

    assert device_facts("cpu")["device"] == "cpu"
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        device_facts("cuda")


def test_paper_batch_is_the_configs_batch_and_feeds_the_data_section() -> None:
    from accelmri.engine.config import load_config
    from benchmarks.cases import PAPER_BATCH, train_cases
    from benchmarks.pipeline import settings_for

    configs = {"t2net": "t2net_ixi_2x", "minet": "minet_fastmri_2x", "sanet": "sanet_fastmri_2x",
               "fasrnet": "fasrnet_fastmri_4x", "pgd_sft": "pgd_sft_brain_2x"}
    for model, name in configs.items():
        config = load_config(ROOT / "configs" / f"{name}.yaml").to_dict()  # parsed: batch_size is in a base
        assert config["model"]["name"] == model and config["data"]["batch_size"] == PAPER_BATCH[model], name
    cases = train_cases(["paper-batch"], tiny=False)
    assert [(c.model, c.batch, c.size) for c in cases] == [(m, PAPER_BATCH[m], "paper-batch") for m in configs]
    settings = settings_for(["paper-batch"], tiny=False)
    assert {s.size for s in settings} == {"paper-batch"} and all(s.batch == 4 for s in settings)
    assert {m for s in settings for m in s.feeds} == set(configs)
    assert [s.feeds for s in settings_for(["paper-batch"], tiny=False, models=["minet"])] == [("minet", "sanet")]


def test_restore_volume_tiny_rows(tmp_path: Path) -> None:
    """``benchmarks.restore_volume --tiny`` on two rows: each restores the volume and reports s/slice and peak."""
    out = tmp_path / "restore_volume.json"
    rows = ["edsr", "fasrnet (search_coarse=4)"]
    completed = subprocess.run([sys.executable, "-m", "benchmarks.restore_volume", "--tiny", "--threads", "1",
                                "--models", ",".join(rows), "--json", str(out)],
                               capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["settings"]["size"] == 32 and results["settings"]["slices"] == 2
    assert [row["model"] for row in results["rows"]] == rows
    for row in results["rows"]:
        assert row["ok"], row
        assert _positive(row["s_per_slice"]) and _positive(row["peak_gib"]) and _positive(row["wall_s"]), row
        assert row["s_per_slice"] == pytest.approx(row["wall_s"] / 2)
    assert results["rows"][1]["options"] == ["search_coarse=4"] and results["rows"][1]["guided"]
    assert "| fasrnet (search_coarse=4) | search_coarse=4 | 2 |" in completed.stdout
