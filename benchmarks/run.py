"""accelmri benchmarks: one command (``make bench``) for every section, JSON + Markdown out.

Sections (``--sections``, default all, run in this order):

* ``gemm``: fp32/bf16 GEMM and fp32 3×3 conv GFLOP/s of this run (the ceilings);
* ``flops``: FLOPs of one forward pass per case (``torch.utils.flop_counter``), top modules;
* ``forward``: time, peak and Δ memory per case × variant (fp32, bf16, channels-last, compile, search windows,
  bf16 search), GFLOP/s, fractions of the ceilings, ratios to the reference code;
* ``train``: training step at the demo size and the paper size, fp32 and bf16;
* ``data``: data-pipeline samples/s against the training step it feeds;
* ``scaling``: time and memory against pixel count, 64² … 512², log-log slopes, ``scaling.png``;
* ``fastpath``: PSNR/SSIM change of each fast path on the digital brain (needs ``--checkpoints DEMO_OUT``).

Every measurement runs in a fresh subprocess with ``--threads`` threads. Output:
``--out/bench-<timestamp>/{bench.json, bench.md, scaling.png}``; the Markdown is printed at the end.
``--tiny`` runs everything at tiny sizes (the test: under 30 s on 2 cores). Method: docs/performance.md.

``--device DEVICE`` (``make bench-gpu``: ``--device cuda``) runs the device suite instead: one case per model at
paper size (refs dropped: the reference-code numbers are CPU numbers), sections ``train`` (paper batch, fp32 and
bf16), ``data`` (workers 0 and 4, batches copied to the device) and ``forward`` (fp32, bf16, fp16, then
``compile``), in this order, within ``--budget`` seconds (default 460: one run ≤ 8 min on an H100; a measurement
that would start after it is recorded as skipped). ``--tiny --device cpu`` runs the same code at tiny sizes
(the test; ``compile`` with the ``eager`` backend).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import fastpath, flops, forward, gemm, pipeline, report, scaling, training  # noqa: E402
from benchmarks.cases import (  # noqa: E402
    PAPER_CASES,
    TINY_CASES,
    VARIANTS,
    first_cases,
    select_cases,
    train_cases,
)
from benchmarks.common import Isolated, environment  # noqa: E402
from benchmarks.targets import annotate_forward, check_targets  # noqa: E402

SECTIONS = ["gemm", "flops", "forward", "train", "data", "scaling", "fastpath"]
#: Variants of ``--tiny`` unless ``--variants`` is given (no ``compile``: minutes of C++ compilation).
TINY_VARIANTS = ["fp32", "bf16", "channels-last", "window4"]
#: Default variants of the CPU suite: all but ``fp16`` (float16 autocast is a GPU fast path).
CPU_VARIANTS = [name for name in VARIANTS if name != "fp16"]
#: The device suite (``--device``): its sections in run order (``forward`` last: its ``compile`` rows, the least
#: predictable, run at the end of the budget), the default sections and variants.
DEVICE_SECTIONS = ["flops", "train", "data", "forward"]
DEVICE_DEFAULT_SECTIONS = ["train", "data", "forward"]
DEVICE_VARIANTS = ["fp32", "bf16", "fp16", "compile"]
#: Device-suite defaults: seconds for the whole run's measurements (≤ 8 min with the start and the report),
#: per measurement, per ``compile`` measurement.
DEVICE_BUDGET, DEVICE_CASE_TIMEOUT, DEVICE_COMPILE_TIMEOUT = 460.0, 120.0, 120.0
#: Model order of the device suite, most likely to compile within its timeout first (the ``compile`` rows run in
#: this order at the end of the budget): MINet and SANet compiled in ~30 s on the CPU; PGD-SFT, FASR-Net and T2Net
#: run data-dependent Python loops (DEQ iterations, search blocks) that Dynamo traces, and T2Net did not compile
#: in 10 min on the CPU.
DEVICE_MODEL_ORDER = ["minet", "sanet", "pgd_sft", "fasrnet", "t2net"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS,
                        help="sections to run (default: all; --device: " + " ".join(DEVICE_DEFAULT_SECTIONS) + ")")
    parser.add_argument("--device",
                        help="run the device suite on this torch device (cuda, cuda:1; cpu with --tiny: its test)")
    parser.add_argument("--budget", type=float,
                        help=f"seconds for all measurements; later ones are skipped (--device: {DEVICE_BUDGET:.0f})")
    parser.add_argument("--compile-backend",
                        help="torch.compile backend (default inductor; --tiny --device: eager, no code generation)")
    parser.add_argument("--cases", nargs="+",
                        help="cases by name or model (default: all); a model name also selects its training cases")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                        help=f"forward variants (default: all but fp16; --tiny: {' '.join(TINY_VARIANTS)}; "
                        f"--device: {' '.join(DEVICE_VARIANTS)})")
    parser.add_argument("--repeats", type=int, help="timed repeats per measurement (default 5; --tiny 1)")
    parser.add_argument("--warmup", type=int, help="untimed warm-up calls (default 1; --device 2)")
    parser.add_argument("--threads", type=int,
                        help="torch threads per measurement (default 2; --device: min(8, CPUs); --tiny 1: two "
                        "OpenMP threads per process stall on a shared 2-core machine, and the tiny run measures "
                        "nothing)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes everywhere (smoke test, < 30 s)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results",
                        help="results folder; the run writes OUT/bench-<timestamp>/ (default benchmarks/results)")
    parser.add_argument("--checkpoints", type=Path, help="`accelmri demo` output folder for the fastpath section")
    parser.add_argument("--split", default="test", help="split scored by the fastpath section (default test)")
    parser.add_argument("--train-sizes", nargs="+", choices=["tiny", "paper", "paper-batch", "paper-checkpoint"],
                        help="default tiny paper paper-checkpoint (--device: paper-batch; --tiny --device: tiny); "
                        "paper-batch: the paper cases at the papers' batch; paper-checkpoint: MINet/SANet paper "
                        "cases with checkpoint_stages=True")
    parser.add_argument("--train-dtypes", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--train-loss", choices=["pixel", "full"], default="pixel",
                        help="pixel: preset without perceptual/adversarial (default); full: with random-weight VGG")
    parser.add_argument("--workers", nargs="+", type=int,
                        help="DataLoader workers of the data section (default 0 2; --tiny 0; --device 0 4; "
                        "--tiny --device 0 2)")
    parser.add_argument("--batches", type=int,
                        help="timed batches per data setting (default 24; --device 8; --tiny 3)")
    parser.add_argument("--scaling-lines", nargs="+", choices=[label for label, _, _ in scaling.LINES],
                        help="scaling lines (default: all; --tiny: " + ", ".join(scaling.TINY_LINES) + ")")
    parser.add_argument("--max-seconds", type=float, default=300.0,
                        help="scaling: skip a point whose extrapolated time per pass exceeds this (default 300)")
    parser.add_argument("--case-timeout", type=float,
                        help=f"kill a measurement after this many seconds (default 7200; --device "
                        f"{DEVICE_CASE_TIMEOUT:.0f})")
    parser.add_argument("--compile-timeout", type=float,
                        help=f"kill a torch.compile measurement after this many seconds (default 900; --device "
                        f"{DEVICE_COMPILE_TIMEOUT:.0f})")
    parser.add_argument("--compile-all", action="store_true",
                        help="compile variant on every case (default: each model's first case only)")
    parser.add_argument("--start-method", choices=["spawn", "forkserver"],
                        help="subprocess start (default spawn; --tiny on the CPU: forkserver, same isolation, "
                        "faster start)")
    parser.add_argument("--update-docs", action="store_true", help="also copy scaling.png to docs/")
    args = parser.parse_args(argv)
    device = args.device is not None
    if device and args.sections and set(args.sections) - set(DEVICE_SECTIONS):
        parser.error(f"--device runs the sections {' '.join(DEVICE_SECTIONS)} only")
    args.sections = args.sections or (DEVICE_DEFAULT_SECTIONS if device else SECTIONS)
    args.repeats = args.repeats if args.repeats is not None else 1 if args.tiny else 5
    args.warmup = args.warmup if args.warmup is not None else 2 if device and not args.tiny else 1
    if args.workers is None:
        args.workers = ([0, 2] if args.tiny else [0, 4]) if device else [0] if args.tiny else [0, 2]
    args.batches = args.batches if args.batches is not None else 3 if args.tiny else 8 if device else 24
    cpu = not device or args.device == "cpu"
    args.start_method = args.start_method or ("forkserver" if args.tiny and cpu else "spawn")
    args.threads = args.threads or (1 if args.tiny else min(8, os.cpu_count() or 1) if device else 2)
    if args.train_sizes is None:
        device_sizes = ["tiny"] if args.tiny else ["paper-batch"]
        args.train_sizes = device_sizes if device else ["tiny", "paper", "paper-checkpoint"]
    args.budget = args.budget if args.budget is not None or not device else DEVICE_BUDGET
    args.case_timeout = args.case_timeout or (DEVICE_CASE_TIMEOUT if device else 7200.0)
    args.compile_timeout = args.compile_timeout or (DEVICE_COMPILE_TIMEOUT if device else 900.0)
    args.compile_backend = args.compile_backend or ("eager" if device and args.tiny else "inductor")
    if args.variants is None:
        args.variants = DEVICE_VARIANTS if device else TINY_VARIANTS if args.tiny else CPU_VARIANTS
    return args


def _save(results: dict[str, Any], folder: Path) -> None:
    """Write bench.json and bench.md (after every section, so an interrupted run keeps what it measured)."""
    results["targets"] = check_targets(results)
    (folder / "bench.json").write_text(json.dumps(results, indent=2, default=str))
    (folder / "bench.md").write_text(report.markdown(results))


def _train_cases(args: argparse.Namespace) -> list[Any]:
    """The training cases of ``--train-sizes`` whose model or name is in ``--cases`` (all without it)."""
    return [c for c in train_cases(args.train_sizes, args.tiny)
            if not args.cases or c.model in args.cases or c.name in args.cases]


def _cases(args: argparse.Namespace) -> list[Any]:
    """The forward/flops cases: ``--cases``, or all (the device suite: each model's first case in
    :data:`DEVICE_MODEL_ORDER`, reference-code numbers dropped, since they are CPU numbers)."""
    pool = TINY_CASES if args.tiny else PAPER_CASES
    if args.device is None:
        return select_cases(pool, args.cases)
    chosen = select_cases(pool, args.cases) if args.cases else first_cases(pool)
    chosen = sorted(chosen, key=lambda c: DEVICE_MODEL_ORDER.index(c.model))
    return [dataclasses.replace(c, ref_s=None, ref_gib=None) for c in chosen]


def main(argv: list[str] | None = None) -> Path:
    """Run the chosen sections and return the run folder."""
    args = parse_args(argv)
    device = args.device or "cpu"
    isolated = Isolated(args.threads, args.start_method, args.case_timeout, args.budget)
    cases = _cases(args)
    variants = [VARIANTS[name] for name in args.variants]
    environment_facts = environment(args.threads, args.start_method)
    if args.device is not None:  # in a subprocess: this process never initialises CUDA
        facts = isolated.run("benchmarks.common:device_facts", device=args.device)
        if not facts["ok"]:
            raise SystemExit(f"--device {args.device}: {facts.get('error') or facts['skipped']}")
        environment_facts["device"] = facts
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = args.out / f"bench-{stamp}"
    folder.mkdir(parents=True, exist_ok=False)
    results: dict[str, Any] = {
        "environment": environment_facts,
        "settings": {"tiny": args.tiny, "device": args.device, "repeats": args.repeats, "warmup": args.warmup,
                     "sections": args.sections, "cases": [c.name for c in cases], "variants": args.variants,
                     "train_sizes": args.train_sizes, "train_dtypes": args.train_dtypes,
                     "train_loss": args.train_loss, "workers": args.workers, "batches": args.batches,
                     "max_seconds": args.max_seconds, "budget_s": args.budget, "case_timeout_s": args.case_timeout,
                     "compile_timeout_s": args.compile_timeout, "compile_backend": args.compile_backend},
    }
    start = time.perf_counter()
    order = DEVICE_SECTIONS if args.device is not None else SECTIONS
    for section in [s for s in order if s in args.sections]:
        print(f"[{section}]", flush=True)
        began = time.perf_counter()
        if section == "gemm":
            results["gemm"] = gemm.run(isolated, tiny=args.tiny, repeats=args.repeats)
        elif section == "flops":
            results["flops"] = flops.run(isolated, cases, variants)
        elif section == "forward":
            results["forward"] = forward.run(isolated, cases, variants, repeats=args.repeats, warmup=args.warmup,
                                             compile_timeout=args.compile_timeout, compile_all=args.compile_all,
                                             device=device, compile_backend=args.compile_backend)
        elif section == "train":
            results["train"] = training.run(isolated, _train_cases(args), args.train_dtypes,
                                            loss_kind=args.train_loss, repeats=args.repeats, warmup=args.warmup,
                                            device=device)
        elif section == "data":
            models = sorted({c.model for c in _train_cases(args)}) if args.cases else None
            settings = pipeline.settings_for(args.train_sizes, args.tiny, models)
            results["data"] = pipeline.run(isolated, settings, args.workers, args.batches, device=device)
        elif section == "scaling":
            result = scaling.run(isolated, tiny=args.tiny, repeats=args.repeats, warmup=args.warmup,
                                 max_seconds=args.max_seconds, lines=args.scaling_lines)
            docs_copy = ROOT / "docs" / "performance_scaling.png" if args.update_docs else None
            image = scaling.plot(result, folder / "scaling.png", docs_copy)
            result["image"] = image.name if image else None
            results["scaling"] = result
        elif section == "fastpath":
            results["fastpath"] = fastpath.run(isolated, args.checkpoints, variants, args.split)
        results.setdefault("section_seconds", {})[section] = time.perf_counter() - began
        annotate_forward(results.get("forward", []), results.get("flops", []), results.get("gemm"))
        _save(results, folder)
    results["total_seconds"] = time.perf_counter() - start
    _save(results, folder)
    print()
    print((folder / "bench.md").read_text())
    print(f"wrote {folder / 'bench.json'} and {folder / 'bench.md'} ({results['total_seconds']:.0f} s)")
    return folder


if __name__ == "__main__":
    main()
