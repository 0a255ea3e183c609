from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from accelmri import __version__
from accelmri.cli import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_demo_end_to_end_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    arguments = ["physics-demo", "--size", "96", "--coils", "8", "--acceleration", "3", "--out", str(out)]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    rows = payload["rows"]
    assert {r["mask_kind"] for r in rows} == {"random", "equispaced", "gaussian1d", "poisson2d"}
    assert {r["method"] for r in rows} == {"zero_filled", "cg_sense"}
    by_key = {(r["mask_kind"], r["method"]): r for r in rows}
    for kind in ("equispaced", "poisson2d"):
        assert by_key[(kind, "cg_sense")]["nmse"] < 0.5 * by_key[(kind, "zero_filled")]["nmse"]
        assert abs(by_key[(kind, "cg_sense")]["acceleration"] - 3) / 3 <= 0.05
    assert not list(tmp_path.glob(".demo.json.*"))  # no temporary file left behind


def test_demo_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    out.write_text("user data")
    result = runner.invoke(app, ["physics-demo", "--size", "32", "--out", str(out)])
    assert result.exit_code != 0
    assert "exists" in result.output
    assert out.read_text() == "user data"


def test_demo_reports_missing_twix(tmp_path: Path) -> None:
    missing = tmp_path / "scan.dat"
    out = tmp_path / "demo.json"
    result = runner.invoke(app, ["physics-demo", "--twix", str(missing), "--out", str(out)])
    assert result.exit_code == 2  # bad input data
    assert "scan.dat" in result.output
    assert not out.exists()


def test_demo_rejects_bad_scale() -> None:
    result = runner.invoke(app, ["physics-demo", "--size", "30", "--scale", "4"])
    assert result.exit_code == 2  # a bad option value is a user error: one line on stderr
    assert "scale" in result.stderr
