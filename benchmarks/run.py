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
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import fastpath, flops, forward, gemm, pipeline, report, scaling, training  # noqa: E402
from benchmarks.cases import PAPER_CASES, TINY_CASES, VARIANTS, select_cases, train_cases  # noqa: E402
from benchmarks.common import Isolated, environment  # noqa: E402
from benchmarks.targets import annotate_forward, check_targets  # noqa: E402

SECTIONS = ["gemm", "flops", "forward", "train", "data", "scaling", "fastpath"]
#: Variants of ``--tiny`` unless ``--variants`` is given (no ``compile``: minutes of C++ compilation).
TINY_VARIANTS = ["fp32", "bf16", "channels-last", "window4"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=SECTIONS, help="sections to run")
    parser.add_argument("--cases", nargs="+",
                        help="cases by name or model (default: all); a model name also selects its training cases")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                        help=f"forward variants (default: all; --tiny: {' '.join(TINY_VARIANTS)})")
    parser.add_argument("--repeats", type=int, help="timed repeats per measurement (default 5; --tiny 1)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up calls (default 1)")
    parser.add_argument("--threads", type=int,
                        help="torch threads per measurement (default 2; --tiny 1: two OpenMP threads per process "
                        "stall on a shared 2-core machine, and the tiny run measures nothing)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes everywhere (smoke test, < 30 s)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results",
                        help="results folder; the run writes OUT/bench-<timestamp>/ (default benchmarks/results)")
    parser.add_argument("--checkpoints", type=Path, help="`accelmri demo` output folder for the fastpath section")
    parser.add_argument("--split", default="test", help="split scored by the fastpath section (default test)")
    parser.add_argument("--train-sizes", nargs="+", choices=["tiny", "paper", "paper-checkpoint"],
                        default=["tiny", "paper", "paper-checkpoint"],
                        help="paper-checkpoint: MINet/SANet paper cases with checkpoint_stages=True")
    parser.add_argument("--train-dtypes", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--train-loss", choices=["pixel", "full"], default="pixel",
                        help="pixel: preset without perceptual/adversarial (default); full: with random-weight VGG")
    parser.add_argument("--workers", nargs="+", type=int,
                        help="DataLoader workers of the data section (default 0 2; --tiny 0)")
    parser.add_argument("--batches", type=int, help="timed batches per data setting (default 24; --tiny 3)")
    parser.add_argument("--scaling-lines", nargs="+", choices=[label for label, _, _ in scaling.LINES],
                        help="scaling lines (default: all; --tiny: " + ", ".join(scaling.TINY_LINES) + ")")
    parser.add_argument("--max-seconds", type=float, default=300.0,
                        help="scaling: skip a point whose extrapolated time per pass exceeds this (default 300)")
    parser.add_argument("--case-timeout", type=float, default=7200.0,
                        help="kill a measurement after this many seconds (default 7200)")
    parser.add_argument("--compile-timeout", type=float, default=900.0,
                        help="kill a torch.compile measurement after this many seconds (default 900)")
    parser.add_argument("--compile-all", action="store_true",
                        help="compile variant on every case (default: each model's first case only)")
    parser.add_argument("--start-method", choices=["spawn", "forkserver"],
                        help="subprocess start (default spawn; --tiny: forkserver, same isolation, faster start)")
    parser.add_argument("--update-docs", action="store_true", help="also copy scaling.png to docs/")
    args = parser.parse_args(argv)
    args.repeats = args.repeats if args.repeats is not None else 1 if args.tiny else 5
    args.workers = args.workers if args.workers is not None else [0] if args.tiny else [0, 2]
    args.batches = args.batches if args.batches is not None else 3 if args.tiny else 24
    args.start_method = args.start_method or ("forkserver" if args.tiny else "spawn")
    args.threads = args.threads or (1 if args.tiny else 2)
    if args.variants is None:
        args.variants = TINY_VARIANTS if args.tiny else list(VARIANTS)
    return args


def _save(results: dict[str, Any], folder: Path) -> None:
    """Write bench.json and bench.md (after every section, so an interrupted run keeps what it measured)."""
    results["targets"] = check_targets(results)
    (folder / "bench.json").write_text(json.dumps(results, indent=2, default=str))
    (folder / "bench.md").write_text(report.markdown(results))


def main(argv: list[str] | None = None) -> Path:
    """Run the chosen sections and return the run folder."""
    args = parse_args(argv)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = args.out / f"bench-{stamp}"
    folder.mkdir(parents=True, exist_ok=False)
    isolated = Isolated(args.threads, args.start_method, args.case_timeout)
    cases = select_cases(TINY_CASES if args.tiny else PAPER_CASES, args.cases)
    variants = [VARIANTS[name] for name in args.variants]
    results: dict[str, Any] = {
        "environment": environment(args.threads, args.start_method),
        "settings": {"tiny": args.tiny, "repeats": args.repeats, "warmup": args.warmup, "sections": args.sections,
                     "cases": [c.name for c in cases], "variants": args.variants, "train_loss": args.train_loss,
                     "max_seconds": args.max_seconds},
    }
    start = time.perf_counter()
    for section in [s for s in SECTIONS if s in args.sections]:
        print(f"[{section}]", flush=True)
        began = time.perf_counter()
        if section == "gemm":
            results["gemm"] = gemm.run(isolated, tiny=args.tiny, repeats=args.repeats)
        elif section == "flops":
            results["flops"] = flops.run(isolated, cases, variants)
        elif section == "forward":
            results["forward"] = forward.run(isolated, cases, variants, repeats=args.repeats, warmup=args.warmup,
                                             compile_timeout=args.compile_timeout, compile_all=args.compile_all)
        elif section == "train":
            chosen = [c for c in train_cases(args.train_sizes, args.tiny)
                      if not args.cases or c.model in args.cases or c.name in args.cases]
            results["train"] = training.run(isolated, chosen, args.train_dtypes,
                                            loss_kind=args.train_loss, repeats=args.repeats, warmup=args.warmup)
        elif section == "data":
            settings = pipeline.settings_for(args.train_sizes, args.tiny)
            results["data"] = pipeline.run(isolated, settings, args.workers, args.batches)
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
