"""Section ``data``: samples/s of the training data pipeline, next to the training step it feeds.

Each setting writes fastMRI-layout HDF5 volumes of a Shepp–Logan phantom (target and, for reference-guided SR,
a reference contrast; multi-coil with birdcage coils) to a temporary folder, then reads them lazily through a
training :class:`~accelmri.data.datasets.SliceDataset` (random mask per sample) and a ``DataLoader`` with the
training batch size, 0 or more workers. After the untimed first batch (worker start, file open) and the
batches the workers prefetched meanwhile (2 per worker), ``batches`` batches are timed. ESPIRiT maps are cached
per slice, so the 12-coil setting measures the first epoch (cold cache).

The report divides the pipeline's time per batch by the fp32 (and bf16) training step of each model it feeds:
below 1 the loader keeps up. With workers the loader runs beside the training step, but on a 2-core machine
they share the cores, which this ratio does not model.

With a CUDA ``device`` (the device suite) each timed batch is also copied to the GPU (``Sample.to``) and the
clock waits for the copy (``torch.cuda.synchronize``): what a GPU training step waits for. The paper settings
then use the batch of the papers' configurations (size ``paper-batch``, as the training cases).
"""

from __future__ import annotations

import multiprocessing
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SETTINGS", "Setting", "pipeline_worker", "run", "settings_for"]


@dataclass(frozen=True)
class Setting:
    """One data-pipeline configuration and the training cases it feeds.

    Attributes:
        name: label.
        size: ``tiny`` or ``paper`` (matches the training cases' size).
        task: ``joint`` or ``super_resolution``.
        hr: HR slice size.
        coils: receive coils.
        acquisition: ``(mask kind, R, centre fraction, scale)``.
        reference: write and pair a reference contrast.
        sens_maps: ``"espirit"`` or None.
        batch: batch size (the training batch).
        feeds: models trained on it.
    """

    name: str
    size: str
    task: str
    hr: tuple[int, int]
    coils: int
    acquisition: tuple[str, float, float, int]
    reference: bool
    sens_maps: str | None
    batch: int
    feeds: tuple[str, ...]


SETTINGS: list[Setting] = [
    Setting("demo joint 1-coil 64², R=3 s=2", "tiny", "joint", (64, 64), 1, ("equispaced", 3.0, 0.16, 2), False,
            None, 4, ("t2net", "pgd_sft")),
    Setting("demo SR 1-coil 64², s=2 + reference", "tiny", "super_resolution", (64, 64), 1,
            ("equispaced", 1.0, 0.08, 2), True, None, 4, ("minet", "sanet", "fasrnet")),
    Setting("joint 1-coil 256², R=4 s=2", "paper", "joint", (256, 256), 1, ("equispaced", 4.0, 0.08, 2), False,
            None, 1, ("t2net",)),
    Setting("SR 1-coil 320², s=2 + reference", "paper", "super_resolution", (320, 320), 1,
            ("equispaced", 1.0, 0.08, 2), True, None, 1, ("minet", "sanet")),
    Setting("SR 1-coil 320², s=4 + reference", "paper", "super_resolution", (320, 320), 1,
            ("equispaced", 1.0, 0.08, 4), True, None, 1, ("fasrnet",)),
    Setting("joint 12-coil 256×232, R=2.5 s=2, ESPIRiT", "paper", "joint", (256, 232), 12,
            ("gaussian1d", 2.5, 0.08, 2), False, "espirit", 1, ("pgd_sft",)),
]


def settings_for(sizes: list[str], tiny: bool, models: list[str] | None = None) -> list[Setting]:
    """The settings of the training sizes run (``paper-batch``: the paper settings at :data:`PAPER_BATCH`) that feed
    one of ``models`` (None: all); ``--tiny``: the demo settings at 32², batch 2 (as the train section)."""
    import dataclasses

    from benchmarks.cases import PAPER_BATCH

    chosen = [s for s in SETTINGS if s.size in sizes and not (tiny and s.size == "paper")]
    if "paper-batch" in sizes and not tiny:
        chosen += [dataclasses.replace(s, size="paper-batch", batch=max(PAPER_BATCH[m] for m in s.feeds))
                   for s in SETTINGS if s.size == "paper"]
    if models is not None:
        chosen = [s for s in chosen if set(s.feeds) & set(models)]
    if tiny:
        chosen = [dataclasses.replace(s, name=s.name.replace("64²", "32²"), hr=(32, 32), batch=2) for s in chosen]
    return chosen


def _write(folder: Path, name: str, image: Any, coils: int, slices: int) -> Path:
    from accelmri.data.readers.fastmri import write_fastmri
    from accelmri.physics.coils import sense_expand
    from accelmri.physics.fft import fft2c
    from accelmri.physics.sensitivity import birdcage_maps

    if coils == 1:
        kspace = fft2c(image)[None].expand(slices, -1, -1)
    else:
        kspace = fft2c(sense_expand(image, birdcage_maps((coils, *image.shape))))[None].expand(slices, -1, -1, -1)
    return write_fastmri(folder / f"{name}.h5", kspace.numpy().copy())


def pipeline_worker(setting: Setting, workers: int, batches: int, device: str = "cpu") -> dict[str, Any]:
    """Samples/s and seconds per batch of ``setting`` with ``workers`` loader processes, each batch delivered to
    ``device`` (runs in the subprocess)."""
    import torch
    from torch.utils.data import DataLoader

    from accelmri.data.datasets import SliceDataset, SliceSource
    from accelmri.data.phantom import shepp_logan
    from accelmri.data.readers.fastmri import FastMRIFile
    from accelmri.data.sample import collate
    from accelmri.physics.degrade import Acquisition
    from benchmarks.common import synchronize

    untimed = 1 + 2 * workers  # the first batch, then the backlog the workers prefetched meanwhile (factor 2)
    slices = (batches + untimed) * setting.batch
    image = shepp_logan(setting.hr, phase_cycles=0.5)
    with tempfile.TemporaryDirectory() as tmp:
        target = SliceSource(FastMRIFile(_write(Path(tmp), "target", image, setting.coils, slices)), subject="bench")
        references = None
        if setting.reference:
            reference_file = _write(Path(tmp), "reference", torch.flip(image, dims=(-1,)), setting.coils, slices)
            references = [SliceSource(FastMRIFile(reference_file), subject="bench")]
        dataset = SliceDataset([target], setting.task, Acquisition(*setting.acquisition), references, train=True,
                               sens_maps=setting.sens_maps)  # type: ignore[arg-type]
        # workers forked as from a training script's main process on Linux (this subprocess's own default would be
        # its spawn/forkserver start: seconds of imports per worker, outside the timing but inside the run)
        fork = "fork" if workers and "fork" in multiprocessing.get_all_start_methods() else None
        loader = DataLoader(dataset, batch_size=setting.batch, num_workers=workers, collate_fn=collate,
                            shuffle=True, drop_last=True, multiprocessing_context=fork)
        iterator = iter(loader)  # forks the workers before this process touches CUDA (first .to(device))
        for _ in range(untimed):  # worker start, file open, and the prefetched backlog: then a steady state
            next(iterator).to(device)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator).to(device)
        synchronize(device)
        seconds = time.perf_counter() - start
        del iterator, loader
    return {"batches": batches, "seconds_per_batch": seconds / batches,
            "samples_per_s": batches * setting.batch / seconds}


def run(isolated: Any, settings: list[Setting], workers: list[int], batches: int,
        device: str = "cpu") -> list[dict[str, Any]]:
    """One row per setting and worker count (batches delivered to ``device``)."""
    rows = []
    for setting in settings:
        for count in workers:
            result = isolated.run("benchmarks.pipeline:pipeline_worker", setting=setting, workers=count,
                                  batches=batches, device=device)
            rows.append({"setting": setting.name, "size": setting.size, "batch": setting.batch,
                         "feeds": list(setting.feeds), "workers": count, "device": device, **result})
            if result["ok"]:
                print(f"  data {setting.name} [{count} workers]: {result['samples_per_s']:.1f} samples/s "
                      f"({result['process_s']:.1f} s)", flush=True)
            else:
                print(f"  data {setting.name} [{count} workers]: {result.get('error') or result['skipped']}",
                      flush=True)
    return rows
