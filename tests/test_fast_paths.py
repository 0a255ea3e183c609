"""Inference fast paths of evaluate/restore: bf16 autocast and channels-last convolutions.

Both change arithmetic only (summation order, bf16 rounding of conv inputs), never what is computed; the
accuracy on trained models is measured by ``benchmarks/run.py --sections fastpath`` (docs/performance.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from accelmri.cli import app
from accelmri.data.readers import read_nifti, write_nifti
from accelmri.engine.restore import restore
from tests.test_restore_report import band_limited, make_checkpoint


def test_restore_bf16_and_channels_last_stay_close_to_fp32(tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "edsr.pt", {"name": "edsr", "scale": 2, "channels": 8, "n_blocks": 1})
    source = write_nifti(tmp_path / "scan.nii.gz", band_limited(2, 32, 32), np.eye(4))
    outputs = {}
    for name, options in {"fp32": {}, "channels_last": {"channels_last": True},
                          "bf16": {"precision": "bf16-mixed"}}.items():
        (written,) = restore(checkpoint, [source], tmp_path / f"{name}.nii.gz", degrade=True, **options)
        outputs[name] = read_nifti(written).data
    scale = np.abs(outputs["fp32"]).max()
    assert np.abs(outputs["channels_last"] - outputs["fp32"]).max() < 1e-5 * scale  # layout only
    bf16_error = np.abs(outputs["bf16"] - outputs["fp32"]).max()
    assert 0 < bf16_error < 2e-2 * scale  # bf16 rounds the conv inputs (8-bit mantissa): close, not equal


def test_cli_rejects_an_unknown_precision(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["restore", str(tmp_path / "x.pt"), str(tmp_path / "y.nii.gz"), "--out",
                                      str(tmp_path / "out"), "--precision", "fp8"])
    assert result.exit_code == 2
    assert "--precision" in result.output and not (tmp_path / "out").exists()
