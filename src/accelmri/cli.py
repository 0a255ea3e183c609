"""The ``accelmri`` command line (typer). It parses arguments and calls the engine, nothing else."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from accelmri import __version__
from accelmri.data.errors import DataError
from accelmri.io import write_json_atomic

app = typer.Typer(add_completion=False, no_args_is_help=True, help="accelmri: accelerated MRI toolkit.")
console = Console()
if not console.is_terminal:
    console.width = max(console.width, 120)  # tables stay readable in logs and CI


def fail(err: Exception) -> typer.Exit:
    """Print a one-line error and return the exit to raise: code 2 for bad input data, 1 otherwise."""
    console.print(f"[red]error:[/red] {escape(str(err))}")
    return typer.Exit(code=2 if isinstance(err, DataError) else 1)


@app.command()
def version() -> None:
    """Print the accelmri version."""
    console.print(__version__)


@app.command()
def demo(
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
    from accelmri.engine.demo import demo_kspace, run_physics_demo

    if out is not None and out.exists() and not overwrite:
        raise typer.BadParameter(f"{out} exists; pass --overwrite to replace it", param_hint="--out")
    try:
        kspace = demo_kspace(size, coils, twix)
        rows = run_physics_demo(
            kspace, acceleration, center_fraction, scale, noise_std, seed, l2_weight, cg_iterations
        )
    except (OSError, ValueError, ImportError) as err:
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
) -> None:
    """Simulate the digital brain as a fastMRI-layout data set (HDF5 per subject and contrast, pairs.csv)."""
    from accelmri.data.simulate import simulate_dataset

    names = [name.strip() for value in (contrasts or ["T1,T2"]) for name in value.split(",") if name.strip()]
    try:
        written = simulate_dataset(out, names, coils, subjects, size, slices, noise_std, seed, nifti, overwrite)
    except (OSError, ValueError) as err:
        raise fail(err) from err
    console.print(f"wrote {len(written)} files to {escape(str(out))}")


def main() -> None:
    """Console-script entry point."""
    app()
