"""The tutorials (docs/tutorials/*.md) run as written, at tiny size.

Each tutorial's ```python blocks are joined into one script and run in a fresh working directory (with the
repository's ``configs/`` linked in, as when run from the repository root) by the project's Python, one thread.
A tutorial shrinks itself for CI with HTML comments, invisible on the site:

    <!-- tutorial-test: replace "OLD" "NEW" -->

(JSON strings; ``OLD`` must occur in the code, so a substitution cannot silently go stale). ``NEW`` may name
``{scans}``: a folder holding ``T2.nii.gz`` and ``FLAIR.nii.gz`` — the real TCGA-FG-6692 scans from
``../shared/data/tcga_fg_6692`` where present, else small synthetic digital-brain volumes. The real data are only
linked from there, never copied into the repository.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
TUTORIALS = REPO / "docs" / "tutorials"
TUTORIAL_NAMES = ("physics", "train", "restore")
TCGA = SHARED_DATA / "tcga_fg_6692"
TCGA_FILES = {"T2": "TCGA-FG-6692_T2_AX_TSE_t2.nii.gz", "FLAIR": "TCGA-FG-6692_FLAIR_AX_tir2d_flair.nii.gz"}

_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_STRING = r'"(?:[^"\\]|\\.)*"'
_DIRECTIVE = re.compile(rf"<!--\s*tutorial-test:\s*replace\s+({_STRING})\s+({_STRING})\s*-->")


def tutorial_script(markdown: str, variables: dict[str, str]) -> str:
    """The tutorial's Python blocks, joined in order, with its tiny-size substitutions applied.

    Raises:
        AssertionError: no Python block, a malformed ``tutorial-test`` comment, or a substitution whose text the
            code does not contain.
    """
    blocks = _BLOCK.findall(markdown)
    assert blocks, "no ```python block"
    assert markdown.count("tutorial-test") == len(_DIRECTIVE.findall(markdown)), "malformed tutorial-test comment"
    code = "\n\n".join(blocks)
    for old_json, new_json in _DIRECTIVE.findall(markdown):
        old, new = json.loads(old_json), json.loads(new_json)
        for name, value in variables.items():
            new = new.replace("{" + name + "}", value)
        assert old in code, f"tutorial-test substitution not found in the code: {old!r}"
        code = code.replace(old, new)
    return code


def _synthetic_scans(folder: Path, cache: Path) -> None:
    import nibabel as nib

    from accelmri.data.digital_brain import digital_brain_subject

    subject = digital_brain_subject(9, ("T2", "FLAIR"), coils=1, size=64, slices=4, cache_dir=cache)
    for contrast in ("T2", "FLAIR"):
        data = subject.targets[contrast].numpy().transpose(1, 2, 0)   # (H, W, slices), as NIfTI files store it
        nib.save(nib.Nifti1Image(data, subject.affine), folder / f"{contrast}.nii.gz")


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scans")
    if all((TCGA / name).is_file() for name in TCGA_FILES.values()):
        for contrast, name in TCGA_FILES.items():
            (folder / f"{contrast}.nii.gz").symlink_to(TCGA / name)
    else:
        _synthetic_scans(folder, tmp_path_factory.mktemp("tissue_cache"))
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``ACCELMRI_CACHE`` for the module: tutorials 2 and 3 simulate the same digital brain once."""
    return tmp_path_factory.mktemp("accelmri_cache")


@pytest.mark.parametrize("name", TUTORIAL_NAMES)
def test_tutorial_runs(name: str, tmp_path: Path, scans: Path, cache: Path) -> None:
    markdown = (TUTORIALS / f"{name}.md").read_text()
    code = tutorial_script(markdown, {"scans": str(scans)})
    assert "/path/to/" not in code, "a placeholder path is left in the executed code"
    script = tmp_path / f"tutorial_{name}.py"
    script.write_text(code)
    (tmp_path / "configs").symlink_to(REPO / "configs")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "ACCELMRI_CACHE": str(cache), "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, script.name], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, (
        f"docs/tutorials/{name}.md failed (script {script}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    )


def test_every_tutorial_is_tested() -> None:
    assert {p.stem for p in TUTORIALS.glob("*.md")} - {"index"} == set(TUTORIAL_NAMES)


def test_substitutions_must_match() -> None:
    """A stale substitution (its text gone from the code) or a malformed comment fails, never passes silently."""
    markdown = '<!-- tutorial-test: replace "steps=600" "steps=4" -->\n```python\nx = "steps=600"\n```\n'
    assert tutorial_script(markdown, {}) == 'x = "steps=4"\n'
    with pytest.raises(AssertionError, match="not found"):
        tutorial_script(markdown.replace('x = "steps=600"', 'x = "steps=500"'), {})
    with pytest.raises(AssertionError, match="malformed"):
        tutorial_script("<!-- tutorial-test: replace steps -->\n```python\nx = 1\n```\n", {})
