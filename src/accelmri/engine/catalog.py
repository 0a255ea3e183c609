"""The experiment configs shipped inside the package: one per paper table plus the tiny CI configs.

They are the repository's ``configs/*.yaml``, installed as package data ``accelmri/configs/`` (in the source tree
``src/accelmri/configs`` links to ``configs/``), so a ``pip install``-ed accelmri lists them
(``accelmri configs list``), copies one to edit (``accelmri configs copy NAME``) and trains one by name
(``accelmri train tiny_sr_edsr``, see :func:`~accelmri.engine.config.load_config`). The bases they compose
(``configs/bases/``, ``defaults:``) ship too but are not listed: they are not experiments.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["copy_config", "describe", "shipped_config", "shipped_configs"]


def shipped_configs() -> dict[str, Traversable]:
    """Every shipped config by name (the file stem), sorted by name."""
    folder = files("accelmri").joinpath("configs")
    entries = folder.iterdir() if folder.is_dir() else ()
    return {entry.name.removesuffix(".yaml"): entry
            for entry in sorted(entries, key=lambda e: e.name) if entry.is_file() and entry.name.endswith(".yaml")}


def shipped_config(name: str) -> Traversable:
    """The shipped config called ``name``.

    Raises:
        ValueError: no shipped config has that name.
    """
    configs = shipped_configs()
    if name not in configs:
        raise ValueError(f"no shipped config named {name!r} (accelmri configs list shows the {len(configs)} names)")
    return configs[name]


def describe(config: Traversable) -> str:
    """The one-line ``description:`` of a config file (empty when it has none)."""
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    description = raw.get("description") if isinstance(raw, dict) else None
    return " ".join(str(description).split()) if description else ""


def copy_config(name: str, out: Path | None = None) -> Path:
    """Write the shipped config ``name`` to ``out`` (a file, or a folder for ``NAME.yaml``; default: the working
    directory), for the user to edit and train.

    Raises:
        ValueError: no shipped config has that name.
        FileExistsError: the output file exists (never overwritten).
        FileNotFoundError: the output's folder does not exist.
    """
    text = shipped_config(name).read_text(encoding="utf-8")
    target = Path.cwd() if out is None else out
    if target.is_dir():
        target = target / f"{name}.yaml"
    if not target.parent.is_dir():
        raise FileNotFoundError(f"{target.parent}: no such folder")
    try:
        with target.open("x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError as err:
        raise FileExistsError(f"{target}: already exists (pick another --out or remove it)") from err
    return target
