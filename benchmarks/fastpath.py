"""Section ``fastpath``: accuracy of every fast path against the exact fp32 path on the digital brain.

For every trained model of an ``accelmri demo`` output folder (``--checkpoints OUT``: ``OUT/runs/*/last.pt``) the
test split of its own stored config is scored with the evaluation machinery
(:func:`accelmri.engine.evaluate.load_method` and :func:`~accelmri.engine.evaluate.score_volumes`: whole volumes,
fastMRI PSNR/SSIM in original units) once in exact fp32 and once per fast path: ``bf16`` autocast
(``precision="bf16-mixed"``), and for models with a relevance search (constructor options ``search_window``,
``search_dtype``) the model rebuilt with those options and the same state dict. Reported: the mean over volumes
of ``fast − exact`` PSNR and SSIM, and the largest ``|fast − exact|`` of a single volume.

The demo's models are small and its images 64² (LR 32²), so a ±4/±8 window covers much of the LR image: the
window's accuracy at paper sizes is not established by this section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["checkpoints", "fastpath_worker", "run"]


def checkpoints(root: Path) -> list[Path]:
    """``root/runs/*/last.pt`` (a demo folder), else every ``last.pt`` below ``root``, else ``root`` if a file."""
    if root.is_file():
        return [root]
    found = sorted(root.glob("runs/*/last.pt"))
    return found or sorted(root.rglob("last.pt"))


def fastpath_worker(checkpoint: str, variants: list[Any], split: str) -> dict[str, Any]:
    """Score ``checkpoint`` exactly and with each applicable fast path (runs in the subprocess)."""
    import dataclasses
    import inspect
    import statistics
    import time

    import torch

    from accelmri.engine.build import build_dataset, build_model, check_compatible, prepare_data, volume_slices
    from accelmri.engine.evaluate import load_method, score_volumes

    device = torch.device("cpu")
    config, model = load_method(Path(checkpoint), (), device)
    prepare_data(config.data, config.source)
    dataset = build_dataset(config.data, split, config.source)
    check_compatible(model, config.model.name, dataset, config.source)
    volumes = volume_slices(dataset)
    batch_size = config.data.val_batch_size or config.data.batch_size

    def score(network: Any, precision: str) -> tuple[list[Any], float]:
        start = time.perf_counter()
        scores = score_volumes(network, dataset, volumes, batch_size=batch_size, device=device, precision=precision)
        return scores, time.perf_counter() - start

    exact, exact_s = score(model, "32-true")
    accepted = inspect.signature(type(model)).parameters
    rows = []
    for variant in variants:
        if variant.exact or variant.compile or variant.channels_last:
            continue  # fp32 reorderings: not a numerical fast path
        if any(key not in accepted for key in variant.overrides):
            continue
        network = model
        if variant.overrides:
            options = dict(variant.overrides)
            model_config = dataclasses.replace(config.model, kwargs={**config.model.kwargs, **options})
            network = build_model(model_config, config.data.acquisition.scale, config.source).to(device)
            network.load_state_dict(model.state_dict())
        fast, seconds = score(network, variant.precision)
        delta = {m: [getattr(f, m) - getattr(e, m) for f, e in zip(fast, exact, strict=True)] for m in ("psnr", "ssim")}
        rows.append({
            "variant": variant.name,
            "psnr_delta_mean": statistics.fmean(delta["psnr"]),
            "psnr_delta_max_abs": max(abs(d) for d in delta["psnr"]),
            "ssim_delta_mean": statistics.fmean(delta["ssim"]),
            "ssim_delta_max_abs": max(abs(d) for d in delta["ssim"]),
            "psnr": statistics.fmean(f.psnr for f in fast),
            "seconds": seconds,
        })
    return {
        "model": config.model.name,
        "split": split,
        "volumes": len(exact),
        "slices": sum(s.slices for s in exact),
        "exact": {"psnr": statistics.fmean(s.psnr for s in exact), "ssim": statistics.fmean(s.ssim for s in exact),
                  "seconds": exact_s},
        "variants": rows,
    }


def run(isolated: Any, root: Path | None, variants: list[Any], split: str = "test") -> dict[str, Any]:
    """Every checkpoint under ``root``; ``{"skipped": reason}`` without ``--checkpoints`` or checkpoints."""
    if root is None:
        reason = "no --checkpoints given (an `accelmri demo` output folder)"
        print(f"  fastpath: skipped: {reason}", flush=True)
        return {"skipped": reason}
    found = checkpoints(root)
    if not found:
        reason = f"no last.pt under {root}"
        print(f"  fastpath: skipped: {reason}", flush=True)
        return {"skipped": reason}
    rows = []
    for path in found:
        result = isolated.run("benchmarks.fastpath:fastpath_worker", checkpoint=str(path), variants=variants,
                              split=split)
        rows.append({"checkpoint": str(path), "run": path.parent.name, **result})
        if result["ok"]:
            summary = ", ".join(f"{v['variant']} ΔPSNR {v['psnr_delta_mean']:+.4f} dB" for v in result["variants"])
            print(f"  fastpath {path.parent.name}: {summary} ({result['process_s']:.1f} s)", flush=True)
        else:
            print(f"  fastpath {path.parent.name}: {result['error']}", flush=True)
    return {"root": str(root), "split": split, "rows": rows}
