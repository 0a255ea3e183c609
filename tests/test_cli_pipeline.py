"""End to end through the CLI: train → resume → evaluate → restore → report on the tiny CI config."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from accelmri.cli import app

runner = CliRunner()
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny_sr_edsr.yaml"


def test_train_resume_evaluate_restore_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCELMRI_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    common = [f"trainer.out_dir={run}", "trainer.progress_bar=false", "data.source.size=32", "data.source.slices=2"]
    result = runner.invoke(app, ["train", str(CONFIG), *common, "trainer.max_steps=2"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", str(CONFIG), *common, "trainer.max_steps=4", "--resume"])
    assert result.exit_code == 0, result.output
    checkpoint = run / "last.pt"
    assert checkpoint.is_file()

    evaluation = tmp_path / "evaluation"
    result = runner.invoke(app, ["evaluate", str(checkpoint), "--out", str(evaluation)])
    assert result.exit_code == 0, result.output
    assert (evaluation / "metrics.csv").is_file() and (evaluation / "metrics.md").is_file()

    scan = tmp_path / "scan.nii.gz"
    data = np.random.default_rng(0).random((16, 12, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 5.0, 1.0])), scan)
    restored_dir = tmp_path / "restored"
    result = runner.invoke(app, ["restore", str(checkpoint), str(scan), "--out", str(restored_dir)])
    assert result.exit_code == 0, result.output
    restored = nib.load(next(restored_dir.glob("*.nii.gz")))
    assert restored.shape == (32, 24, 3)
    assert np.allclose(np.abs(np.diag(restored.affine))[:3], [1.0, 1.0, 5.0])
    result = runner.invoke(app, ["restore", str(checkpoint), str(scan), "--out", str(scan), "--overwrite"])
    assert result.exit_code == 2 and "input" in result.output  # never overwrites an input

    page_dir = tmp_path / "report"
    result = runner.invoke(app, ["report", str(evaluation), "--out", str(page_dir)])
    assert result.exit_code == 0, result.output
    assert "<table" in (page_dir / "report.html").read_text()


def test_restore_refuses_a_missing_input(tmp_path: Path) -> None:
    result = runner.invoke(app, ["restore", str(tmp_path / "nope.pt"), str(tmp_path / "x.nii"), "--out",
                                 str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "no such file" in result.output and result.output.count("\n") == 1  # one clear line
