"""The ``accelmri`` command line (typer). It parses arguments and calls the engine, nothing else."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from accelmri import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, help="accelmri: accelerated MRI toolkit.")
console = Console()
if not console.is_terminal:
    console.width = max(console.width, 120)  # tables stay readable in logs and CI


def write_json_atomic(path: Path, payload: object, overwrite: bool) -> None:
    """Write JSON to ``path`` through a temporary file and ``os.replace`` (never a partial file).

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is False.
    """
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    except (FileNotFoundError, ValueError, ImportError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(code=1) from err
    source = str(twix) if twix else f"Shepp-Logan phantom {size}x{size}, {coils} birdcage coils"
    table = Table(title=f"accelmri physics demo — {source}, {kspace.shape[0]} coils, {tuple(kspace.shape[-2:])}")
    for column in ("mask", "R", "s", "R·s", "method", "PSNR dB", "SSIM", "NMSE", "time s"):
        table.add_column(column, justify="left" if column in ("mask", "method") else "right")
    for row in rows:
        table.add_row(row.mask_kind, f"{row.acceleration:.2f}", str(row.scale), f"{row.total_acceleration:.2f}",
                      row.method, f"{row.psnr:.2f}", f"{row.ssim:.4f}", f"{row.nmse:.5f}", f"{row.seconds:.2f}")
    console.print(table)
    if out is not None:
        write_json_atomic(out, {"source": source, "rows": [asdict(r) for r in rows]}, overwrite)
        console.print(f"wrote {out}")


def main() -> None:
    """Console-script entry point."""
    app()
