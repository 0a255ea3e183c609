"""The documentation site builds with warnings as errors (what `make docs` runs), and its pieces are where they
belong: every docs page in the navigation, the API reference generated from the docstrings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
MKDOCS_YML = REPO / "mkdocs.yml"
API_MODULES = ("physics", "data", "models", "losses", "metrics", "engine")


def _nav_files(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [f for item in nav for f in _nav_files(item)]
    if isinstance(nav, dict):
        return [f for value in nav.values() for f in _nav_files(value)]
    return []


def _config() -> dict:
    # mkdocs.yml has no custom tags; plain YAML reads it.
    return yaml.safe_load(MKDOCS_YML.read_text())


def test_every_docs_page_is_in_the_navigation() -> None:
    nav = set(_nav_files(_config()["nav"]))
    pages = {p.relative_to(REPO / "docs").as_posix() for p in (REPO / "docs").rglob("*.md")}
    assert pages - nav == set(), "docs pages missing from mkdocs.yml's nav"
    assert nav - pages == set(), "nav entries without a page"


def test_api_pages_document_the_packages() -> None:
    for module in API_MODULES:
        page = (REPO / "docs" / "api" / f"{module}.md").read_text()
        assert f"::: accelmri.{module}" in page, module


def test_docs_build_strict(tmp_path: Path) -> None:
    """`mkdocs build --strict` (every warning, e.g. a docstring griffe cannot parse or a broken link, is an error);
    the rendered API pages hold the documented objects."""
    site = tmp_path / "site"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(MKDOCS_YML),
         "--site-dir", str(site)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert "WARNING" not in proc.stderr, proc.stderr
    physics = (site / "api" / "physics" / "index.html").read_text()
    for name in ("accelmri.physics.make_mask", "accelmri.physics.Acquisition", "accelmri.physics.cg_sense"):
        assert f'id="{name}"' in physics, name
    # Sphinx roles in docstrings become links (docs/griffe_sphinx_roles.py), never verbatim ":func:".
    assert ":func:" not in physics
    assert 'href="#accelmri.physics.lowres"' in physics
    for tutorial in ("physics", "train", "restore"):
        assert (site / "tutorials" / tutorial / "index.html").is_file(), tutorial
