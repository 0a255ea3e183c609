"""``accelmri export`` / ``accelmri.load``: safetensors + JSON exports that rebuild the model bit for bit."""

from __future__ import annotations

import json
import pickletools
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import accelmri
from accelmri.cli import app
from accelmri.data.errors import DataError
from accelmri.data.readers import read_nifti, write_nifti
from accelmri.engine.evaluate import load_method
from accelmri.engine.export import CONFIG_FILE, EXPORT_FORMAT, WEIGHTS_FILE, export_model, load_export
from accelmri.engine.restore import restore
from tests.test_adapt import AFFINE, MINET, make_checkpoint, phantom_volume

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()

BRAIN_FLAIR = {"kind": "digital_brain", "contrasts": ["T2"], "reference": "FLAIR", "size": 64}


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    path = make_checkpoint(tmp_path / "run" / "last.pt", MINET, source=BRAIN_FLAIR)
    torch.manual_seed(1)  # weights that are not the init's: perturb every tensor, save again
    payload = torch.load(path, weights_only=True)
    payload["model"] = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
                        for k, v in payload["model"].items()}
    payload["metrics"] = {"step": 0, "summary": {"psnr": 30.5, "ssim": 0.91}}
    torch.save(payload, path)
    return path


def test_export_round_trip_is_bit_identical(checkpoint: Path, tmp_path: Path) -> None:
    out = export_model(checkpoint, tmp_path / "export")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", CONFIG_FILE, WEIGHTS_FILE]
    metadata = json.loads((out / CONFIG_FILE).read_text())
    assert metadata["format"] == EXPORT_FORMAT and metadata["config"]["model"]["name"] == "minet"
    assert (metadata["target_contrasts"], metadata["reference_contrasts"]) == (["T2"], ["FLAIR"])
    assert metadata["metrics"] == {"step": 0, "psnr": 30.5, "ssim": 0.91}
    card = (out / "README.md").read_text()
    assert "MINet" in card and "multi-stage" in card and "MICCAI 2021" in card
    assert "R·s = 2" in card and "| psnr | 30.5 |" in card

    _, original = load_method(checkpoint, (), torch.device("cpu"))
    config, loaded = load_export(out)
    assert not loaded.training and config.model.name == "minet"
    state = load_file(str(out / WEIGHTS_FILE))
    assert all(torch.equal(state[k], v) for k, v in original.state_dict().items())
    assert accelmri.load(out).state_dict().keys() == original.state_dict().keys()
    # a run folder loads its checkpoint (best.pt when present, else last.pt)
    assert all(torch.equal(a, b) for a, b in zip(accelmri.load(checkpoint.parent).state_dict().values(),
                                                  original.state_dict().values(), strict=True))

    # restore with the export == restore with the checkpoint, bit for bit (the reference-guided path)
    volume = phantom_volume(2, 32)
    target = write_nifti(tmp_path / "t2.nii.gz", volume, AFFINE)
    flair = write_nifti(tmp_path / "flair.nii.gz", volume.max() - volume, AFFINE)
    a = restore(checkpoint, [target], tmp_path / "a.nii.gz", reference=flair, degrade=True)[0]
    b = restore(out, [target], tmp_path / "b.nii.gz", reference=flair, degrade=True)[0]
    assert np.array_equal(read_nifti(a).data, read_nifti(b).data)


def test_exports_hold_no_pickle(checkpoint: Path, tmp_path: Path) -> None:
    out = export_model(checkpoint, tmp_path / "export")
    for file in out.iterdir():
        data = file.read_bytes()
        with pytest.raises(ValueError):  # not a pickle stream: no opcode sequence parses to STOP
            list(pickletools.genops(data))
        assert b"PK\x03\x04" not in data[:4]  # not a torch zip archive either


def test_export_refuses_and_load_checks(checkpoint: Path, tmp_path: Path) -> None:
    out = export_model(checkpoint, tmp_path / "export")
    with pytest.raises(FileExistsError):
        export_model(checkpoint, out)
    result = runner.invoke(app, ["export", str(checkpoint), "--out", str(out)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "already exists" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["export", str(empty), "--out", str(tmp_path / "e2")])
    assert result.exit_code == 2 and "not a run folder" in result.stderr and not (tmp_path / "e2").exists()
    result = runner.invoke(app, ["export", str(checkpoint), "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cli" / WEIGHTS_FILE).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left

    metadata = json.loads((out / CONFIG_FILE).read_text())
    (out / CONFIG_FILE).write_text(json.dumps({**metadata, "format": "something-else"}))
    with pytest.raises(DataError, match="not an accelmri export"):
        load_export(out)
    (out / CONFIG_FILE).write_text(json.dumps(metadata))
    (out / WEIGHTS_FILE).write_bytes(b"garbage")
    with pytest.raises(DataError, match="unreadable safetensors"):
        load_export(out)


def test_the_readme_example_runs_as_written(checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Share a model; use it in your own loop", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    export_model(checkpoint, tmp_path / "minet_2x")
    volume = phantom_volume(1, 256)[0]
    np.save(tmp_path / "flair_256.npy", volume.max() - volume)
    np.save(tmp_path / "t2_128.npy", volume[::2, ::2].copy())
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # the README's own example
    restored = namespace["restored"]
    assert isinstance(restored, torch.Tensor) and restored.shape == (256, 256) and torch.isfinite(restored).all()
