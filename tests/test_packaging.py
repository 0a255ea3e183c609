"""Packaging: one source for the version, PEP 561 ``py.typed`` and the experiment configs in the wheel, the wheel
installed in a clean venv (``accelmri --help``, ``configs list``, a tiny training), CITATION.cff, CHANGELOG."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import venv
import zipfile
from pathlib import Path

import pytest
import yaml

import accelmri
from accelmri.cli import app
from accelmri.engine.catalog import shipped_configs
from accelmri.engine.config import ConfigError, load_config, parse_config

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


#: The paper and CI configs of the repository, the ones the wheel must ship with their bases (configs/realscan/
#: stays in the repository).
CONFIG_NAMES = sorted(path.stem for path in (REPO / "configs").glob("*.yaml"))
BASE_NAMES = sorted(f"bases/{path.stem}" for path in (REPO / "configs" / "bases").glob("*.yaml"))
#: The configs composed from bases, as they were as flat files.
FLAT_CONFIGS = yaml.safe_load((REPO / "tests" / "data" / "flat_paper_configs.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the sources (the work tree gets no build/ folder; the copy follows the
    ``src/accelmri/configs`` link to ``configs/``)."""
    tmp_path = tmp_path_factory.mktemp("wheel")
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
    (built,) = tmp_path.glob("accelmri-*.whl")
    return built


def test_wheel_has_the_version_py_typed_and_the_configs(wheel: Path) -> None:
    """The wheel carries ``accelmri.__version__``, ``accelmri/py.typed``, every ``configs/*.yaml`` and the bases they
    compose (not the real-scan specs, whose paths point into the repository)."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = (n for n in names if n.endswith(".dist-info/METADATA"))
        version = re.search(r"^Version: (\S+)$", archive.read(metadata).decode(), re.MULTILINE)
        shipped = sorted(n.removeprefix("accelmri/configs/").removesuffix(".yaml") for n in names
                         if n.startswith("accelmri/configs/"))
        tiny = archive.read("accelmri/configs/tiny_sr_edsr.yaml").decode()
    assert "accelmri/py.typed" in names
    assert version is not None and version.group(1) == accelmri.__version__
    assert (REPO / "src" / "accelmri" / "py.typed").is_file()
    assert "tiny_sr_edsr" in CONFIG_NAMES and len(CONFIG_NAMES) > 20
    assert len(BASE_NAMES) == len(list((REPO / "configs" / "bases").glob("*.yaml"))) >= 3
    assert shipped == sorted(CONFIG_NAMES + BASE_NAMES)
    assert tiny == (REPO / "configs" / "tiny_sr_edsr.yaml").read_text()


def test_installed_wheel_runs_in_a_clean_venv(wheel: Path, tmp_path: Path) -> None:
    """The wheel, installed into a new venv, runs ``accelmri --help``, lists its configs and trains
    ``tiny_sr_edsr`` by name for 2 steps, all from the installed package (not from src/).

    The venv reaches torch & co. through a ``.pth`` naming this interpreter's site-packages (``--system-site-packages``
    would name the base interpreter's, without them; nothing is downloaded). Its own site-packages comes first on
    ``sys.path``, and the development install's editable ``.pth`` there is not processed, so ``accelmri`` is the
    wheel's."""
    start = time.perf_counter()
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "dev_site_packages.pth").write_text(sysconfig.get_path("purelib") + "\n")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "ACCELMRI_CACHE": str(tmp_path / "cache")}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                           str(wheel)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    work = tmp_path / "work"  # no configs/ here: the names resolve to the installed package's configs
    work.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=120)

    where = run(str(python), "-c", "import accelmri; print(accelmri.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(purelib), where.stdout + where.stderr
    cli = str(env_dir / "bin" / "accelmri")
    assert run(cli, "--help").returncode == 0
    listing = run(cli, "configs", "list")
    assert listing.returncode == 0, listing.stderr
    assert [line.split()[0] for line in listing.stdout.splitlines()] == CONFIG_NAMES
    composed = run(str(python), "-c", "from accelmri.engine.config import load_config as load; "
                   "print(load('minet_umr_4x').to_dict()['data']['source']['paths'][2]['subject'])")
    assert composed.stdout.strip() == "patient050", composed.stdout + composed.stderr  # the wheel's bases
    trained = run(cli, "train", "tiny_sr_edsr", "trainer.max_steps=2", "trainer.out_dir=run",
                  "trainer.progress_bar=false", "data.source.size=32", "data.source.slices=2")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert (work / "run" / "last.pt").is_file()
    print(f"clean-venv install + configs list + 2 training steps: {time.perf_counter() - start:.1f} s")


def test_configs_list_prints_every_name_and_description(capsys: pytest.CaptureFixture[str]) -> None:
    """``accelmri configs list``: one line per shipped config, its name and its YAML ``description:``."""
    assert list(shipped_configs()) == CONFIG_NAMES
    with pytest.raises(SystemExit) as exit_:
        app(["configs", "list"], prog_name="accelmri")
    assert exit_.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(CONFIG_NAMES)
    for line, name in zip(lines, CONFIG_NAMES, strict=True):
        description = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())["description"]
        assert line.split(maxsplit=1) == [name, description]


def test_configs_copy_writes_and_never_overwrites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """``accelmri configs copy NAME [--out PATH]`` writes the shipped file; an existing output, an unknown name or a
    missing folder is one stderr line and exit code 2, nothing written."""
    monkeypatch.chdir(tmp_path)
    original = (REPO / "configs" / "minet_fastmri_2x.yaml").read_text()

    def copy(*args: str) -> int | None:
        with pytest.raises(SystemExit) as exit_:
            app(["configs", "copy", *args], prog_name="accelmri")
        return exit_.value.code

    assert copy("minet_fastmri_2x") == 0
    assert (tmp_path / "minet_fastmri_2x.yaml").read_text() == original
    assert copy("minet_fastmri_2x", "--out", "mine.yaml") == 0
    assert (tmp_path / "mine.yaml").read_text() == original
    capsys.readouterr()
    (tmp_path / "mine.yaml").write_text("edited")
    for args in (["minet_fastmri_2x", "--out", "mine.yaml"], ["minet_fastmri_2x", "--out", "."],
                 ["no_such_config"], ["minet_fastmri_2x", "--out", "missing/x.yaml"]):
        assert copy(*args) == 2, args
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.strip().splitlines()) == 1, (args, captured)
        assert captured.err.startswith("error: ")
    assert (tmp_path / "mine.yaml").read_text() == "edited"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.yaml", "minet_fastmri_2x.yaml"]


def test_load_config_takes_a_shipped_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that is no file loads the shipped config; a local file of that name wins."""
    monkeypatch.chdir(tmp_path)
    assert load_config("tiny_sr_edsr") == load_config(REPO / "configs" / "tiny_sr_edsr.yaml")
    (tmp_path / "tiny_sr_edsr").write_text("- not a mapping\n")
    with pytest.raises(ValueError, match="YAML mapping"):
        load_config("tiny_sr_edsr")
    with pytest.raises(ValueError, match="not found"):
        load_config("no_such_config")


@pytest.mark.parametrize("name", sorted(FLAT_CONFIGS))
def test_composed_configs_equal_their_flat_files(name: str) -> None:
    """The paper configs composed from ``configs/bases/`` resolve to exactly the flat files they replace."""
    file = REPO / "configs" / f"{name}.yaml"
    assert yaml.safe_load(file.read_text(encoding="utf-8"))["defaults"]
    assert load_config(file).to_dict() == parse_config(FLAT_CONFIGS[name]).to_dict()


def test_defaults_merge_in_order_and_refuse_bad_bases(tmp_path: Path) -> None:
    """``defaults:`` merges mappings key by key, later bases and the including file winning (lists replaced);
    bases nest; a missing base, a cycle or a malformed list is a one-line ConfigError naming ``defaults``."""
    tiny = yaml.safe_load((REPO / "configs" / "tiny_sr_edsr.yaml").read_text(encoding="utf-8"))
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "tiny.yaml").write_text(yaml.safe_dump({**tiny, "name": "base_name"}))
    (tmp_path / "common" / "wide.yaml").write_text(yaml.safe_dump(
        {"defaults": ["tiny"], "model": {"channels": 16}, "data": {"split": {"ratios": [2, 1, 1]}}}))
    (tmp_path / "child.yaml").write_text(yaml.safe_dump(
        {"defaults": ["common/wide"], "model": {"n_blocks": 3}, "trainer": {"max_steps": 7}}))
    config = load_config(tmp_path / "child.yaml").to_dict()
    expected = parse_config({**tiny, "name": "child"}, overrides=[
        "model.channels=16", "model.n_blocks=3", "trainer.max_steps=7", "data.split.ratios=[2, 1, 1]"]).to_dict()
    assert config == expected
    for defaults, problem in ((["common/missing"], "not found"), ("common/tiny", "expected a list"),
                              (["child"], "includes itself")):
        (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"defaults": defaults}))
        if defaults == ["child"]:
            (tmp_path / "child.yaml").write_text(yaml.safe_dump({"defaults": ["bad"]}))
        with pytest.raises(ConfigError, match=f"defaults: .*{problem}") as error:
            load_config(tmp_path / "bad.yaml")
        assert "\n" not in str(error.value)


def test_a_copied_composed_config_finds_the_shipped_bases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``configs copy`` of a composed config: the copy has no bases beside it and uses the shipped ones."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        app(["configs", "copy", "sanet_sms_4x"], prog_name="accelmri")
    assert load_config(tmp_path / "sanet_sms_4x.yaml").to_dict() == load_config("sanet_sms_4x").to_dict()


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
