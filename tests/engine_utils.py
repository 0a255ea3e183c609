"""The tiny CI config on a shared digital brain: what the engine tests build their runs from."""

from __future__ import annotations

from pathlib import Path

from accelmri.engine.config import ExperimentConfig, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def tiny(brain_dir: Path, out_dir: Path, *overrides: str, name: str = "tiny_sr_edsr.yaml") -> ExperimentConfig:
    """A tiny CI config (``configs/<name>``) on the digital brain in ``brain_dir`` (the ``brain_dir`` fixture of
    conftest.py), writing to ``out_dir``, CPU, no progress bar; ``overrides`` are ``KEY=VALUE``."""
    base = [f"data.source.dir={brain_dir}", f"trainer.out_dir={out_dir}", "trainer.progress_bar=false",
            "trainer.accelerator=cpu"]
    return load_config(CONFIGS / name, [*base, *overrides])
