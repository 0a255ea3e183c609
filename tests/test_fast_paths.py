"""Inference fast paths of evaluate/restore: bf16 autocast and channels-last convolutions.

Both change arithmetic only (summation order, bf16 rounding of conv inputs), never what is computed; the
accuracy on trained models is measured by ``benchmarks/run.py --sections fastpath`` (docs/performance.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from accelmri.cli import app
from accelmri.data.readers import read_nifti, write_nifti
from accelmri.engine.restore import restore
from accelmri.models import build
from tests.model_utils import make_batch
from tests.test_restore_report import band_limited, make_checkpoint

# Small configurations of every model whose last conv writes the image (blocks.common.OutputConv).
_SMALL: dict[str, tuple[dict[str, object], dict[str, object]]] = {
    "edsr": ({"channels": 8, "n_blocks": 1}, {"reference": False}),
    "early_fusion": ({"channels": 8, "n_blocks": 1}, {}),
    "minet": ({"channels": 8, "n_groups": 1, "n_blocks": 1, "reduction": 2}, {}),
    "sanet": ({"channels": 8, "n_groups": 1, "n_blocks": 1, "reduction": 2, "attention_channels": 4}, {}),
    "fasrnet": ({"channels": 8, "n_blocks": [1, 1], "embed_channels": 8}, {}),
    "t2net": ({"channels": 8, "n_blocks": 2}, {"task": "joint", "acceleration": 2.0, "reference": False}),
    "unet": ({"channels": 8, "n_pools": 2}, {"task": "joint", "acceleration": 2.0, "reference": False}),
    "pgd_sft": ({"channels": 8, "growth": 4, "n_blocks": 1, "prox_channels": 4, "prox_growth": 4, "max_iter": 2},
                {"task": "joint", "acceleration": 2.0, "reference": False}),
}


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


@pytest.mark.parametrize("name", sorted(_SMALL))
def test_models_write_float32_images_under_bf16_autocast(name: str) -> None:
    """bf16 autocast runs the network in bf16 but not the conv that writes the image: a bf16 image would be
    quantised to 8 significant bits (≈0.05 dB at 39 dB PSNR, measured on the demo's SANet)."""
    torch.manual_seed(0)
    kwargs, batch_options = _SMALL[name]
    model = build(name, scale=2, **kwargs).eval()
    batch = make_batch(size=(32, 32), slices=1, **batch_options)  # type: ignore[arg-type]
    with torch.no_grad():
        exact = model(batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = model(batch)
    for a, b in ((exact.image, fast.image), (exact.lr_image, fast.lr_image), (exact.reference_image,
                                                                             fast.reference_image)):
        if a is None:
            continue
        assert b is not None and b.dtype == torch.float32
        assert 0 < float((b - a).abs().max()) < 0.05 * float(a.abs().max())  # bf16 inside, close outside


# ------------------------------------------------------------------------------------- inference options


def test_restore_model_options_reach_the_correspondence_search(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``restore --model search_coarse=4`` runs FASR-Net's trained weights with the coarse-to-fine search."""
    from accelmri.models import fasrnet

    model = {"name": "fasrnet", "scale": 2, **_SMALL["fasrnet"][0]}
    checkpoint = make_checkpoint(tmp_path / "fasrnet.pt", model, data={"source": {"kind": "digital_brain",
                                                                                 "size": 64, "reference": "FLAIR"}})
    source = write_nifti(tmp_path / "scan.nii.gz", band_limited(1, 64, 64), np.eye(4))
    reference = write_nifti(tmp_path / "ref.nii.gz", band_limited(1, 64, 64)[:, ::-1].copy(), np.eye(4))
    calls: list[object] = []
    search = fasrnet.relevance_search
    monkeypatch.setattr(fasrnet, "relevance_search", lambda *a, **k: calls.append(k["coarse"]) or search(*a, **k))
    outputs = {}
    for name, options in {"exact": [], "coarse": ["search_coarse=4"]}.items():
        calls.clear()
        (written,) = restore(checkpoint, [source], tmp_path / f"{name}.nii.gz", reference=[reference], degrade=True,
                             model_options=options)
        assert calls and set(calls) == ({None} if name == "exact" else {4})
        outputs[name] = read_nifti(written).data
    assert outputs["coarse"].shape == outputs["exact"].shape and np.isfinite(outputs["coarse"]).all()


def test_model_options_apply_where_taken_and_refuse_the_rest(tmp_path: Path) -> None:
    from accelmri.engine.config import ConfigError
    from accelmri.engine.evaluate import load_method

    edsr = make_checkpoint(tmp_path / "edsr.pt", {"name": "edsr", "scale": 2, **_SMALL["edsr"][0]})
    t2net = make_checkpoint(tmp_path / "t2net.pt", {"name": "t2net", "scale": 2, **_SMALL["t2net"][0]},
                            task="joint", acceleration=2.0)
    config, _ = load_method(t2net, (), torch.device("cpu"), ["model.search_coarse=4"])
    assert config.model.kwargs["search_coarse"] == 4
    config, _ = load_method(edsr, (), torch.device("cpu"), ["search_coarse=4"])  # EDSR searches nothing
    assert "search_coarse" not in config.model.kwargs
    with pytest.raises(ConfigError, match=r"model\.channels: only inference options can change"):
        load_method(edsr, (), torch.device("cpu"), ["channels=4"])
    source = write_nifti(tmp_path / "scan.nii.gz", band_limited(1, 32, 32), np.eye(4))
    runner = CliRunner()
    for options, message in ((["--model", "search_coarse=4"], "model.search_coarse: no model here takes it"),
                             (["--model", "n_blocks=2"], "model.n_blocks: only inference options")):
        result = runner.invoke(app, ["restore", str(edsr), str(source), "--out", str(tmp_path / "out"),
                                     "--degrade", *options])
        assert result.exit_code == 2 and message in result.output, result.output
        assert not (tmp_path / "out").exists()


_COMPILE_T2NET = """
import torch
from accelmri.models import build
from tests.model_utils import make_batch
torch.manual_seed(0)
model = build("t2net", scale=2, channels=8, n_blocks=2).eval()
batch = make_batch("joint", 2, 2.0, (32, 32), slices=1, reference=False)
with torch.no_grad():
    eager = model(batch).image
    compiled = torch.compile(lambda b: model(b).image)(batch)
print(float((compiled - eager).abs().max()), float(eager.abs().max()))
"""


def test_t2net_compiles_with_inductor_in_seconds(tmp_path: Path) -> None:
    """``torch.compile`` of T2Net: the correspondence search (oneDNN calls Dynamo cannot trace) and the
    hard-attention transfer (nine in-place slice updates that kept Inductor's lowering busy for over ten minutes,
    even at 32²) run eagerly inside the compiled model (``torch.compiler.disable``); the rest compiles."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    done = subprocess.run([sys.executable, "-c", _COMPILE_T2NET], cwd=root, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    difference, scale = map(float, done.stdout.split())
    assert difference <= 1e-5 * scale
