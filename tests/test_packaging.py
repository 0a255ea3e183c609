"""Packaging metadata: one source for the version, PEP 561 ``py.typed`` in the wheel, CITATION.cff, CHANGELOG."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

import accelmri

tomllib = pytest.importorskip("tomllib")  # Python ≥ 3.11 (the project's CI); 3.10 lacks it

REPO = Path(__file__).resolve().parents[1]


def test_version_has_one_source() -> None:
    """pyproject.toml takes the version from ``accelmri.__version__`` (no second literal to forget)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"], "a static version in pyproject.toml duplicates __version__"
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "accelmri.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]\d+|rc\d+)?(\.post\d+)?(\.dev\d+)?", accelmri.__version__)
    assert importlib.metadata.version("accelmri") == accelmri.__version__, "reinstall: make setup"


def test_wheel_has_the_version_and_py_typed(tmp_path: Path) -> None:
    """The built wheel (from a copy of the sources: the work tree gets no build/ folder) carries
    ``accelmri.__version__`` and ``accelmri/py.typed``."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), "."],
        cwd=source, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = tmp_path.glob("accelmri-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = (n for n in names if n.endswith(".dist-info/METADATA"))
        version = re.search(r"^Version: (\S+)$", archive.read(metadata).decode(), re.MULTILINE)
    assert "accelmri/py.typed" in names
    assert version is not None and version.group(1) == accelmri.__version__
    assert (REPO / "src" / "accelmri" / "py.typed").is_file()


def test_citation_cites_accelmri_and_the_five_papers() -> None:
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0"
    assert citation["version"] == accelmri.__version__
    assert citation["title"].startswith("accelmri")
    titles = [reference["title"] for reference in citation["references"]]
    for method in ("Task Transformer Network", "Joint Image Reconstruction and Super-Resolution",
                   "Flexible Alignment Super-Resolution Network", "Multi-stage Integration Network",
                   "Separable Attention"):
        assert sum(method in title for title in titles) == 1, method
    for reference in citation["references"]:
        assert reference["authors"] and reference["year"], reference["title"]


def test_changelog_has_the_current_version() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert "keepachangelog.com" in changelog
    assert re.search(rf"^## \[{re.escape(accelmri.__version__)}\]", changelog, re.MULTILINE), (
        "CHANGELOG.md has no section for the current version"
    )
    assert re.search(r"^## \[Unreleased\]", changelog, re.MULTILINE)
