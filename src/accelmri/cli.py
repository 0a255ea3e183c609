"""The ``accelmri`` command line (typer). It parses arguments and calls the engine, nothing else.

Exit codes, one rule for every command: ``0`` success; ``2`` a user or input error (bad file, bad option value,
an output that exists, a missing optional dependency): exactly one line ``error: FILE: problem`` on stderr and
nothing written; ``1`` an internal error (with its traceback) or a diverged training run (one line);
:data:`~accelmri.engine.trainer.EXIT_PREEMPTED` (75) training stopped by SIGTERM/SIGUSR1 after saving
``last.pt``.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast, get_args

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from accelmri import __version__
from accelmri.data.errors import DataError
from accelmri.io import write_json_atomic

if TYPE_CHECKING:
    from accelmri.engine.evaluate import Precision

# Plain (click) help: it wraps every option text at the terminal width; rich panels cut long words with "…".
app = typer.Typer(add_completion=False, no_args_is_help=True, help="accelmri: accelerated MRI toolkit.",
                  rich_markup_mode=None)
console = Console()
if not console.is_terminal:
    console.width = max(console.width, 120)  # tables stay readable in logs and CI


#: What the engine raises for bad user input (files, option values, outputs that exist, missing extras): one line
#: on stderr and exit code 2. Anything else is an internal error: its traceback and exit code 1.
USER_ERRORS = (OSError, ValueError, ImportError)


def fail(err: Exception, code: int = 2) -> typer.Exit:
    """Print ``err`` as one ``error:`` line on stderr and return the exit to raise (code 2: a user error)."""
    typer.echo(f"error: {' '.join(str(err).split())}", err=True)
    return typer.Exit(code=code)


def _out_folder(out: Path, option: str = "--out") -> None:
    """Refuse an output folder that is an existing file (e.g. the checkpoint) before any work.

    Raises:
        DataError: ``out`` exists and is not a folder.
    """
    if out.exists() and not out.is_dir():
        raise DataError(out, f"exists and is not a folder; {option} takes a folder for the outputs")


#: The inference fast-path options shared by ``evaluate`` and ``restore``.
PrecisionOption = Annotated[
    str | None,
    typer.Option(help="Forward-pass autocast: 32-true, bf16-mixed or 16-mixed (default: the checkpoint's "
                 "trainer.precision); bf16 accuracy in docs/performance.md."),
]
ChannelsLastOption = Annotated[
    bool, typer.Option(help="Run convolutions channels-last (NHWC), a CPU fast path (docs/performance.md).")
]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bar (it is also off when stderr is not a terminal).")
]


def _show_progress(quiet: bool) -> bool:
    """Whether a long command shows its progress bar: not ``--quiet`` and stderr is a terminal."""
    return not quiet and sys.stderr.isatty()


def _precision(value: str | None) -> Precision | None:
    """A ``--precision`` value, checked.

    Raises:
        typer.BadParameter: not a Fabric precision name accepted for the forward pass (exit code 2).
    """
    from accelmri.engine.evaluate import Precision

    allowed = get_args(Precision)
    if value is not None and value not in allowed:
        raise typer.BadParameter(f"must be one of {', '.join(allowed)}, got {value!r}", param_hint="--precision")
    return cast("Precision | None", value)


@app.command()
def version() -> None:
    """Print the accelmri version."""
    console.print(__version__)


@app.command("physics-demo")
def physics_demo(
    acceleration: Annotated[float, typer.Option(help="Undersampling factor R inside the acquired k-space.")] = 4.0,
    center_fraction: Annotated[float, typer.Option(help="Fully sampled calibration fraction.")] = 0.08,
    scale: Annotated[int, typer.Option(help="k-space truncation (super-resolution) factor s: 1, 2 or 4.")] = 1,
    noise_std: Annotated[float, typer.Option(help="Complex k-space noise std, relative to the k-space max.")] = 0.0,
    size: Annotated[int, typer.Option(help="Phantom matrix size (ignored with --twix).")] = 256,
    coils: Annotated[int, typer.Option(help="Simulated birdcage coils (ignored with --twix).")] = 8,
    twix: Annotated[
        Path | None, typer.Option(help="Fully sampled Cartesian 2-D Siemens twix .dat to use instead of the phantom.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Mask and noise seed.")] = 0,
    l2_weight: Annotated[float, typer.Option(help="CG-SENSE Tikhonov weight.")] = 1e-3,
    cg_iterations: Annotated[int, typer.Option(help="CG-SENSE iteration budget.")] = 100,
    out: Annotated[Path | None, typer.Option(help="Write the result table as JSON to this file.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Allow replacing an existing --out file.")] = False,
) -> None:
    """Physics demo: every mask kind, zero-filled vs CG-SENSE with ESPIRiT maps, fastMRI-style metrics."""
    from accelmri.engine.physics_demo import demo_kspace, run_physics_demo

    if out is not None and out.exists() and not overwrite:
        raise fail(FileExistsError(f"{out}: already exists (pass --overwrite to replace it)"))
    try:
        kspace = demo_kspace(size, coils, twix)
        rows = run_physics_demo(
            kspace, acceleration, center_fraction, scale, noise_std, seed, l2_weight, cg_iterations
        )
    except USER_ERRORS as err:
        raise fail(err) from err
    source = str(twix) if twix else f"Shepp-Logan phantom {size}x{size}, {coils} birdcage coils"
    table = Table(title=f"accelmri physics demo — {source}, {kspace.shape[0]} coils, {tuple(kspace.shape[-2:])}")
    for column in ("mask", "R", "s", "R·s", "method", "PSNR dB", "SSIM", "NMSE", "time s"):
        table.add_column(column, justify="left" if column in ("mask", "method") else "right")
    for row in rows:
        table.add_row(row.mask_kind, f"{row.acceleration:.2f}", str(row.scale), f"{row.total_acceleration:.2f}",
                      row.method, f"{row.psnr:.2f}", f"{row.ssim:.4f}", f"{row.nmse:.5f}", f"{row.seconds:.2f}")
    console.print(table)
    if out is not None:
        write_json_atomic(out, {"source": source, "rows": [asdict(r) for r in rows]}, overwrite=overwrite)
        console.print(f"wrote {out}")


@app.command()
def simulate(
    out: Annotated[Path, typer.Option(help="Output folder (refused if it exists and is not empty, see --overwrite).")],
    contrasts: Annotated[
        list[str] | None,
        typer.Option(
            help="Contrast (T1, T2, PD, FLAIR, PDFS). Repeat the option (--contrasts T1 --contrasts T2) or give a "
            "comma-separated list (--contrasts T1,T2). The first is the reference in pairs.csv.",
            show_default="T1,T2",
        ),
    ] = None,
    coils: Annotated[int, typer.Option(help="Receive coils (1: single-coil files).")] = 8,
    subjects: Annotated[int, typer.Option(help="Number of subjects (numbered from 0).")] = 10,
    size: Annotated[int, typer.Option(help="Even matrix size H = W (240 mm field of view).")] = 256,
    slices: Annotated[int, typer.Option(help="Axial 5 mm slices per volume.")] = 16,
    noise_std: Annotated[
        float, typer.Option(help="Complex k-space noise std per sample, in signal units (fully relaxed PD = 1).")
    ] = 0.005,
    seed: Annotated[int, typer.Option(help="Data-set seed (same arguments, identical files).")] = 0,
    nifti: Annotated[bool, typer.Option(help="Also write .nii.gz magnitude volumes.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Write into a non-empty folder, replacing only our files.")] = False,
    realism: Annotated[
        str, typer.Option(help="Simulation realism preset: none or realistic (docs/data.md; with two or more "
                          "contrasts the first, the reference, is acquired imperfectly).")
    ] = "none",
    quiet: QuietOption = False,
) -> None:
    """Simulate the digital brain as a fastMRI-layout data set (OUT/multicoil or OUT/singlecoil: HDF5 per subject
    and contrast; OUT/pairs.csv; OUT/nifti)."""
    from accelmri.data.digital_brain import Realism
    from accelmri.data.simulate import simulate_dataset

    names = [name.strip() for value in (contrasts or ["T1,T2"]) for name in value.split(",") if name.strip()]
    try:
        preset = Realism.preset(realism)
        reference = names[0] if len(names) > 1 and not preset.off else None
        written = simulate_dataset(out, names, coils, subjects, size, slices, noise_std, seed, nifti, overwrite,
                                   realism=preset, reference=reference, progress=_show_progress(quiet))
    except USER_ERRORS as err:
        raise fail(err) from err
    console.print(f"wrote {len(written)} files to {escape(str(out))}")


@app.command()
def train(
    config: Annotated[Path, typer.Argument(
        help="Experiment YAML, or a shipped config's name (accelmri configs list; docs/engine.md).")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="Dotted overrides KEY.SUB=VALUE, values parsed as YAML (trainer.max_steps=100).",
                       show_default=False),
    ] = None,
    resume: Annotated[bool, typer.Option(
        help="Continue the run in trainer.out_dir from its last.pt; `--resume auto` resumes when last.pt exists and "
             "starts the run otherwise (one command for the first start and every requeue).")] = False,
    devices: Annotated[int | None, typer.Option(help="Processes per node (overrides trainer.devices).")] = None,
    num_nodes: Annotated[int | None, typer.Option(help="Nodes (overrides trainer.num_nodes).")] = None,
) -> None:
    """Train an experiment config on Lightning Fabric (CPU, GPU, DDP; torchrun and SLURM aware).

    SIGTERM or SIGUSR1 (SLURM preemption, time limit) saves last.pt at the current step and exits with code 75.
    """
    from typing import Literal

    from accelmri.engine.config import load_config
    from accelmri.engine.trainer import EXIT_PREEMPTED, TrainingDivergedError
    from accelmri.engine.trainer import train as run_training

    extra = list(overrides or [])
    mode: bool | Literal["auto"] = resume
    if "auto" in extra:  # `--resume auto`: the word lands among the overrides (which all contain "=")
        if not resume:
            raise fail(ValueError("'auto' is not a KEY=VALUE override: did you mean --resume auto?"))
        extra.remove("auto")
        mode = "auto"
    extra += [f"trainer.devices={devices}"] if devices is not None else []
    extra += [f"trainer.num_nodes={num_nodes}"] if num_nodes is not None else []
    try:
        result = run_training(load_config(config, extra), resume=mode)
    except TrainingDivergedError as err:
        raise fail(err, code=1) from err
    except USER_ERRORS as err:
        raise fail(err) from err
    if result.stopped_by is not None:
        raise typer.Exit(code=EXIT_PREEMPTED)
    if result.is_global_zero:
        best = f", best {escape(str(result.best))}" if result.best is not None else ""
        console.print(f"trained {result.step} steps ({result.epoch} epochs): {escape(str(result.last))}{best}")


@app.command()
def evaluate(
    sources: Annotated[
        list[Path], typer.Argument(help="Checkpoints (last.pt, best.pt), or YAML configs of parameter-free models.")
    ],
    data: Annotated[
        list[str] | None,
        typer.Option(help="Override of the data section, KEY=VALUE (source.dir=/data/brain); repeatable."),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(help="Inference option of the trained models that take it, KEY=VALUE (search_coarse=4: the "
                     "fast correspondence search of T2Net/FASR-Net); repeatable."),
    ] = None,
    split: Annotated[str, typer.Option(help="Split to evaluate: train, val or test.")] = "test",
    out: Annotated[Path, typer.Option(help="Output folder for metrics.csv, metrics.json and metrics.md.")] = Path(
        "evaluation"
    ),
    device: Annotated[str, typer.Option(help="auto (CUDA if available), cpu, cuda, cuda:1, ...")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace existing output files.")] = False,
    lpips_backbone: Annotated[
        Path | None,
        typer.Option(help="Torchvision AlexNet ImageNet state dict (.pth) for LPIPS; needs --lpips-linear "
                     "(docs/metrics.md)."),
    ] = None,
    lpips_linear: Annotated[
        Path | None,
        typer.Option(help="LPIPS v0.1 linear weights (lpips/weights/v0.1/alex.pth); needs --lpips-backbone."),
    ] = None,
    precision: PrecisionOption = None,
    channels_last: ChannelsLastOption = False,
    quiet: QuietOption = False,
) -> None:
    """Per-volume PSNR/SSIM/NMSE (and LPIPS, given its weights) of checkpoints, mean ± std, paired t-tests."""
    from accelmri.engine.evaluate import evaluate as run_evaluation
    from accelmri.lpips import LPIPS

    if (lpips_backbone is None) != (lpips_linear is None):
        options = ("--lpips-backbone", "--lpips-linear")
        given, missing = options if lpips_linear is None else options[::-1]
        raise fail(ValueError(f"{given} needs {missing} too: pass both LPIPS weight files or neither "
                              "(docs/metrics.md)"))
    try:
        _out_folder(out)
        metric: LPIPS | None = None
        if lpips_backbone is not None and lpips_linear is not None:
            metric = LPIPS.from_files(lpips_backbone, lpips_linear)
        result = run_evaluation(sources, out, data_overrides=data or [], model_options=model or [], split=split,
                                device=device,
                                overwrite=overwrite, lpips=metric, precision=_precision(precision),
                                channels_last=channels_last, progress=_show_progress(quiet))
    except USER_ERRORS as err:
        raise fail(err) from err
    columns = [("psnr", "PSNR dB", 2), ("ssim", "SSIM", 4), ("nmse", "NMSE", 5)]
    columns += [("lpips", "LPIPS", 4)] if metric is not None else []
    table = Table(title=f"accelmri evaluation — {split} split (mean ± std over volumes)")
    for column in ("method", "model", "volumes", *(label for _, label, _ in columns)):
        table.add_column(column, justify="left" if column in ("method", "model") else "right")
    for method in result.methods:
        cells = [f"{method.summary[k]['mean']:.{d}f} ± {method.summary[k]['std']:.{d}f}" for k, _, d in columns]
        table.add_row(method.name, method.model, str(len(method.scores)), *cells)
    console.print(table)
    if metric is None:
        console.print("LPIPS skipped: no weights given (--lpips-backbone PATH --lpips-linear PATH, see "
                      "docs/metrics.md)", soft_wrap=True)
    console.print(f"wrote {', '.join(escape(str(f)) for f in result.files)}")


@app.command()
def restore(
    checkpoint: Annotated[Path, typer.Argument(
        help="Trained checkpoint (last.pt / best.pt), or the YAML config of a parameter-free baseline (bicubic, sinc, "
             "zero_filled).")],
    inputs: Annotated[list[Path], typer.Argument(help="NIfTI, DICOM folder, fastMRI/ISMRMRD .h5 or twix .dat.")],
    out: Annotated[Path, typer.Option(help="Output folder (or the output file for a single input). A DICOM series "
                                      "is written as a derived DICOM series, the folder OUT/<name>_restored.")],
    reference: Annotated[
        list[Path] | None, typer.Option(help="Reference-contrast file, one per input (reference-guided models).")
    ] = None,
    degrade: Annotated[
        bool, typer.Option(help="The input is fully sampled: degrade it with the checkpoint's acquisition first.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs (never an input).")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, ...")] = "auto",
    precision: PrecisionOption = None,
    channels_last: ChannelsLastOption = False,
    contrast: Annotated[
        str | None, typer.Option(help="The inputs' contrast (T2, FLAIR, t1_se, ...; default: read from each file's "
                                 "metadata and name); a warning when it differs from the checkpoint's.")
    ] = None,
    reference_contrast: Annotated[
        str | None, typer.Option(help="The references' contrast (default: read from each reference file).")
    ] = None,
    register_reference: Annotated[
        bool, typer.Option("--register-reference", help="Rigidly register each reference to its input (patient "
                           "motion between the series; mutual information, SimpleITK: pip install "
                           "\"accelmri[registration]\") before resampling it onto the target grid.")
    ] = False,
    adapt: Annotated[
        int, typer.Option(min=0, metavar="STEPS", help="Fine-tune a copy of the model on each input for STEPS steps "
                          "before restoring it (zero-shot, self-supervised: SR checkpoints by re-degrading the input, "
                          "reconstruction/joint checkpoints of pgd_sft and modl by splitting its k-space; "
                          "docs/engine.md).")
    ] = 0,
    adapt_lr: Annotated[
        float | None, typer.Option(help="Learning rate of --adapt, > 0 (default: 0.1 × the checkpoint's "
                                   "optimizer.lr).")
    ] = None,
    quiet: QuietOption = False,
    nifti: Annotated[
        bool, typer.Option("--nifti", help="Write DICOM series inputs as NIfTI <name>_restored.nii.gz instead of a "
                           "derived DICOM series (an OUT ending in .nii/.nii.gz does the same).")
    ] = False,
    series_uid: Annotated[
        str | None, typer.Option(metavar="UID", help="The SeriesInstanceUID to restore from an input DICOM folder "
                                 "holding several series.")
    ] = None,
    reference_series_uid: Annotated[
        str | None, typer.Option(metavar="UID", help="The same for a reference DICOM folder.")
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(help="Inference option of the model, KEY=VALUE (search_coarse=4: T2Net's/FASR-Net's fast "
                     "correspondence search, docs/performance.md); repeatable."),
    ] = None,
    uncovered_slices: Annotated[
        str, typer.Option(metavar="refuse|sinc", help="Input slices the reference leaves mostly uncovered (e.g. "
                          "after --register-reference): refuse (default), or restore them by sinc interpolation "
                          "(super-resolution checkpoints).")
    ] = "refuse",
) -> None:
    """Apply a trained model to your files; outputs keep the geometry (voxel size divided by the scale)."""
    import logging
    import warnings

    from accelmri.engine.restore import UNCOVERED_SLICES, ContrastMismatchWarning, NegativeIntensityWarning
    from accelmri.engine.restore import restore as run_restore

    if adapt_lr is not None and not adapt_lr > 0:
        raise typer.BadParameter(f"must be > 0, got {adapt_lr}", param_hint="--adapt-lr")
    if uncovered_slices not in UNCOVERED_SLICES:
        raise typer.BadParameter(f"expected one of {', '.join(UNCOVERED_SLICES)}, got {uncovered_slices!r}",
                                 param_hint="--uncovered-slices")

    def one_line(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
        typer.echo(f"warning: {' '.join(str(message).split())}", err=True)

    # one line per input: the seconds spent adapting, a reference's registration
    logs = [logging.getLogger("accelmri.engine.adapt"), logging.getLogger("accelmri.engine.restore")]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    levels = [log.level for log in logs]
    for log in logs:
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", ContrastMismatchWarning)  # one per input, however many inputs
            warnings.simplefilter("always", NegativeIntensityWarning)
            warnings.showwarning = one_line
            written = run_restore(checkpoint, inputs, out, reference or None, degrade, overwrite, device=device,
                                  precision=_precision(precision), channels_last=channels_last, contrast=contrast,
                                  reference_contrast=reference_contrast, adapt_steps=adapt, adapt_lr=adapt_lr,
                                  register_reference=register_reference,
                                  progress=_show_progress(quiet), dicom_as_nifti=nifti, series_uid=series_uid,
                                  reference_series_uid=reference_series_uid, model_options=model or [],
                                  uncovered_slices=uncovered_slices)  # type: ignore[arg-type]
    except USER_ERRORS as err:
        raise fail(err) from err
    finally:
        for log, level in zip(logs, levels, strict=True):
            log.removeHandler(handler)
            log.setLevel(level)
    for path in written:
        console.print(f"wrote {escape(str(path))}")


@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="Evaluation folders (metrics.json, examples.npz).")],
    out: Annotated[Path, typer.Option(help="Output folder for results.md, report.html and figures.")],
    baseline: Annotated[str | None, typer.Option(help="Method the paired t-tests compare against.")] = None,
    max_slices: Annotated[int, typer.Option(help="Example slices per figure set.")] = 3,
    title: Annotated[str, typer.Option(help="Report title.")] = "accelmri report",
    overwrite: Annotated[bool, typer.Option(help="Replace existing report files.")] = False,
) -> None:
    """Tables (mean ± std, paired t-tests) and figures as results.md and one self-contained report.html."""
    from accelmri.report import report as run_report

    try:
        _out_folder(out)
        page = run_report(run_dirs, out, baseline=baseline, max_slices=max_slices, overwrite=overwrite, title=title)
    except USER_ERRORS as err:
        raise fail(err) from err
    console.print(f"wrote {escape(str(page))}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="New (or empty) output folder.")] = Path("demo"),
    steps: Annotated[int, typer.Option(help="Training steps of every learned model (the same for all).")] = 600,
    seeds: Annotated[int, typer.Option(help="Training seeds per learned model (mean ± std over seeds).")] = 1,
    ablations: Annotated[bool, typer.Option(help="Also train the papers' ablations.")] = False,
    experiment: Annotated[
        list[str] | None, typer.Option(help="Run only this experiment (sr2x, joint2x); repeatable.")
    ] = None,
) -> None:
    """The main job: simulate the digital brain, train every method small, evaluate on held-out subjects, report.

    The study: ``accelmri demo --seeds 3 --ablations`` (docs/results.md).
    """
    from accelmri.engine.demo import run_demo

    try:
        _out_folder(out)
        results = run_demo(out, steps=steps, seeds=seeds, ablations=ablations, only=experiment,
                           log=lambda message: console.print(escape(message)))
    except USER_ERRORS as err:
        raise fail(err) from err
    console.print((results).read_text())
    console.print(f"wrote {escape(str(results))}, results.json and "
                  f"{escape(str(results.parent / 'report' / 'report.html'))}")


@app.command()
def realscan(
    spec: Annotated[Path, typer.Argument(help="Real-scan spec YAML: cases, methods, claims (docs/realscan.md).")],
    out: Annotated[Path, typer.Option(help="New (or empty) output folder: results.md/.json, report.html, volumes/.")],
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out folder (once the run succeeds).")] = False,
    device: Annotated[str, typer.Option(help="Where checkpoints run: auto, cpu, cuda, cuda:1, ...")] = "auto",
) -> None:
    """The real-scan check: degrade real fully sampled scans with each method's acquisition, restore, score
    (PSNR/SSIM/NMSE, intensity drift, paired claims, error maps). A bad spec: one line on stderr, exit 2."""
    from accelmri.engine.realscan import realscan as run_realscan

    try:
        _out_folder(out)
        results = run_realscan(spec, out, overwrite=overwrite, device=device,
                               log=lambda message: console.print(escape(message), soft_wrap=True))
    except USER_ERRORS as err:
        raise fail(err) from err
    console.print(results.read_text(encoding="utf-8"), markup=False, soft_wrap=True)
    console.print(f"wrote {escape(str(results))}, results.json, report.html and volumes/")


@app.command()
def export(
    source: Annotated[Path, typer.Argument(help="A checkpoint, or a run folder (its best.pt, else last.pt).")],
    out: Annotated[Path, typer.Option(help="New export folder: model.safetensors, config.json, README.md.")],
) -> None:
    """Export a trained model to share: safetensors weights, the JSON config that rebuilds it and its
    acquisition, and a model card. No pickle. Load with accelmri.load(OUT); restore/evaluate accept OUT."""
    from accelmri.engine.export import export_model

    try:
        written = export_model(source, out)
    except USER_ERRORS as err:
        raise fail(err) from err
    console.print(f"wrote {escape(str(written))} (model.safetensors, config.json, README.md)")


datasets_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                           help="Public data sets: download IXI; how to obtain fastMRI (docs/data.md).")
app.add_typer(datasets_app, name="datasets")


@datasets_app.command("fetch")
def datasets_fetch(
    name: Annotated[str, typer.Argument(help="The data set to download: ixi (T1, T2, PD).")],
    out: Annotated[Path, typer.Option(help="Folder for the archives, the extracted files and ixi_subjects.csv.")],
    delete_archives: Annotated[
        bool, typer.Option("--delete-archives", help="Delete each archive once extracted (saves ~13 GB for IXI).")
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Download, verify, resume and extract a public data set, then write its pairing (docs/data.md). Set
    ACCELMRI_IXI_URL to download the IXI archives from a mirror."""
    from accelmri.data.fetch import fetch_ixi

    if name.lower() != "ixi":
        raise typer.BadParameter(f"only ixi can be downloaded, got {name!r} (fastMRI: accelmri datasets info "
                                 "fastmri)", param_hint="NAME")
    try:
        _out_folder(out)
        fetch_ixi(out, progress=_show_progress(quiet), delete_archives=delete_archives,
                  log=lambda message: console.print(escape(message), soft_wrap=True))
    except USER_ERRORS as err:
        raise fail(err) from err


@datasets_app.command("info")
def datasets_info(name: Annotated[str, typer.Argument(help="The data set: fastmri or ixi.")]) -> None:
    """How to obtain a public data set and the folder layout the configs expect."""
    from accelmri.data.fetch import FASTMRI_INFO, IXI_ARCHIVES

    if name.lower() == "fastmri":
        console.print(FASTMRI_INFO, markup=False, soft_wrap=True)
    elif name.lower() == "ixi":
        table = Table("archive", title="IXI (CC BY-SA 3.0): accelmri datasets fetch ixi --out DIR")
        for column in ("URL", "size (bytes)", "SHA-256"):
            table.add_column(column, overflow="fold")
        for archive in IXI_ARCHIVES:
            table.add_row(archive.name, archive.url, "unknown" if archive.size is None else str(archive.size),
                          archive.sha256 or "unknown (IXI publishes none)")
        console.print(table)
    else:
        raise typer.BadParameter(f"must be fastmri or ixi, got {name!r}", param_hint="NAME")


configs_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                          help="The experiment configs shipped with accelmri (one per paper table, tiny CI configs).")
app.add_typer(configs_app, name="configs")


@configs_app.command("list")
def configs_list() -> None:
    """Print every shipped config: its name (for train, configs copy) and one-line description."""
    from accelmri.engine.catalog import describe, shipped_configs

    configs = shipped_configs()
    width = max(map(len, configs), default=0)
    for name, config in configs.items():
        typer.echo(f"{name:<{width}}  {describe(config)}")


@configs_app.command("copy")
def configs_copy(
    name: Annotated[str, typer.Argument(help="A shipped config's name (accelmri configs list).")],
    out: Annotated[Path | None, typer.Option(help="Output file, or a folder for NAME.yaml (default: the working "
                                             "directory). An existing file is never replaced.")] = None,
) -> None:
    """Copy a shipped config to edit; train it with `accelmri train FILE`."""
    from accelmri.engine.catalog import copy_config

    try:
        written = copy_config(name, out)
    except USER_ERRORS as err:
        raise fail(err) from err
    console.print(f"wrote {escape(str(written))}")


def main() -> None:
    """Console-script entry point."""
    app()
