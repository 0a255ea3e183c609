"""``accelmri realscan`` (:mod:`accelmri.engine.realscan`) and the intensity-drift metric.

Synthetic cases are tiny band-limited NIfTI volumes (3 slices of 32², ``band_limited`` of the restore tests: every
frequency inside the 2× LR band, so sinc interpolation restores them up to round-off); the methods are the YAML
configs of the parameter-free ``bicubic`` and ``sinc`` and untrained checkpoints (``make_checkpoint``).

Real data (skipped, with the reason, without ``../shared/data``): ``tcga_fg_6692`` (TCGA-LGG case TCGA-FG-6692,
The Cancer Imaging Archive, CC BY 3.0) and ``pulseq_invivo_brain`` (Pulseq in-vivo 16-coil twix, MIT,
pulseq/MR-Physics-with-Pulseq).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from accelmri.cli import app
from accelmri.data.readers import read_nifti, write_nifti
from accelmri.engine.config import ConfigError, parse_config
from accelmri.engine.realscan import _calibration_band, load_spec, realscan
from accelmri.metrics import evaluate_volume, intensity_drift, intensity_drift_per_slice, lowpass, psnr
from accelmri.models.baselines.interpolation import zero_pad_kspace
from accelmri.physics.degrade import lowres
from accelmri.physics.fft import fft2c, ifft2c
from accelmri.physics.masks import make_mask
from tests.conftest import SHARED_DATA
from tests.test_restore_report import band_limited, make_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

runner = CliRunner()

TCGA = SHARED_DATA / "tcga_fg_6692"
PULSEQ = SHARED_DATA / "pulseq_invivo_brain" / "2024-02-06-164128_invivo_localcoil16.dat"


def baseline_config(path: Path, name: str, scale: int = 2) -> Path:
    """The YAML config of a parameter-free SR model, as ``accelmri demo`` writes ``configs/sr2x_<name>.yaml``."""
    raw = {"name": path.stem, "data": {"source": {"kind": "digital_brain", "size": 64}, "task": "super_resolution",
                                       "acquisition": {"scale": scale}},
           "model": {"name": name, "scale": scale}, "trainer": {"max_steps": 1}}
    path.write_text(yaml.safe_dump(parse_config(raw).to_dict()))
    return path


def sinc_restore(volume: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """``(LR input, sinc output)`` of a magnitude volume: centred k-space truncation, then zero-padding."""
    kspace = lowres(fft2c(torch.from_numpy(volume).to(torch.complex128)), scale)
    return ifft2c(kspace).abs().numpy(), ifft2c(zero_pad_kspace(kspace, scale)).abs().numpy()


def write_spec(folder: Path, spec: dict[str, Any], name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------------------- metric


def test_intensity_drift_is_zero_for_sinc_and_offset_over_mean_for_a_constant_shift() -> None:
    volume = band_limited(3, 32, 32).astype(np.float64)
    lr, sinc = sinc_restore(volume, 2)
    assert intensity_drift(sinc, lr, 2) < 1e-7  # round-off: the band is the input's exactly
    assert intensity_drift(volume, lr, 2) < 1e-7  # the ground truth itself
    offset = 0.25
    head = [s[s > 0.1 * s.max()].mean() for s in lr]  # every pixel of this phantom is in the head
    relative, shift = intensity_drift_per_slice(sinc + offset, lr, 2)
    np.testing.assert_allclose(relative, offset / np.array(head), rtol=1e-6)
    np.testing.assert_allclose(shift, offset, rtol=1e-6)
    assert intensity_drift(sinc + offset, lr, 2) == pytest.approx(float(np.mean(offset / np.array(head))), rel=1e-6)
    # a darker output drifts too (the relative drift is an absolute difference), with a negative offset
    relative, shift = intensity_drift_per_slice(0.9 * sinc, lr, 2)
    assert (relative > 0.09).all() and (shift < 0).all()
    # a single slice and an empty reference slice
    assert intensity_drift(sinc[0], lr[0], 2) < 1e-7
    relative, _ = intensity_drift_per_slice(sinc[:2], np.stack([lr[0], np.zeros_like(lr[0])]), 2)
    assert math.isnan(relative[1]) and relative[0] < 1e-7


def test_lowpass_is_lowres_and_checks_its_arguments() -> None:
    image = torch.randn(2, 24, 32, dtype=torch.complex128)
    expected = ifft2c(lowres(fft2c(image), 4)).numpy()
    np.testing.assert_allclose(lowpass(image, (6, 8)), expected, atol=1e-12)
    assert np.allclose(lowpass(np.full((10, 10), 3.0), (3, 5)), 3.0)  # a constant keeps its value
    with pytest.raises(ValueError, match="not inside"):
        lowpass(image, (30, 8))
    with pytest.raises(ValueError, match="larger than the LR grid"):
        intensity_drift(np.ones((8, 8)), np.ones((6, 6)), 2)
    with pytest.raises(ValueError, match="slices"):
        intensity_drift(np.ones((2, 8, 8)), np.ones((3, 4, 4)), 2)


def test_calibration_band_of_the_masks() -> None:
    assert _calibration_band(torch.ones(16, 12)) == (16, 12)
    assert _calibration_band(make_mask("equispaced", (128, 128), 4.0, 0.08, 0)) == (128, 10)
    assert _calibration_band(make_mask("random", (64, 48), 4.0, 0.125, 3)) == (64, 6)
    bh, bw = _calibration_band(make_mask("poisson2d", (64, 64), 4.0, 0.1, 0))
    assert 4 <= bh == bw < 64


# ------------------------------------------------------------------------------------------------ synthetic


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A two-case real-scan run on tiny NIfTI volumes: bicubic, sinc, two EDSR seeds and a guided model."""
    folder = tmp_path_factory.mktemp("realscan")
    target = band_limited(3, 32, 32)
    affine = np.diag([0.9, 0.9, 5.0, 1.0])
    (folder / "data").mkdir()
    write_nifti(folder / "data" / "t2.nii.gz", target, affine)
    write_nifti(folder / "data" / "flair.nii.gz", 12.0 - target, affine)
    write_nifti(folder / "data" / "t2_other.nii.gz", 1.5 * target[::-1].copy(), affine)
    methods = folder / "methods"
    methods.mkdir()
    spec = {
        "cases": [{"name": "guided", "target": "data/t2.nii.gz", "reference": "data/flair.nii.gz"},
                  {"name": "plain", "target": "data/t2_other.nii.gz"}],
        "methods": {
            "bicubic": str(baseline_config(methods / "sr2x_bicubic.yaml", "bicubic").relative_to(folder)),
            "sinc": str(baseline_config(methods / "sr2x_sinc.yaml", "sinc").relative_to(folder)),
            "edsr": [str(make_checkpoint(methods / f"edsr{seed}.pt", {"name": "edsr", "scale": 2, "channels": 8,
                                                                      "n_blocks": 1}).relative_to(folder))
                     for seed in range(2)],
            "fusion": str(make_checkpoint(methods / "fusion.pt", {"name": "early_fusion", "scale": 2, "channels": 8,
                                                                  "n_blocks": 1}).relative_to(folder)),
        },
        "claims": [["sinc", "bicubic"], ["edsr", "sinc"], ["fusion", "bicubic"]],
    }
    path = write_spec(folder, spec)
    messages: list[str] = []
    results = realscan(path, folder / "out", device="cpu", log=messages.append)
    return {"folder": folder, "out": folder / "out", "results": results, "messages": messages,
            "payload": json.loads((folder / "out" / "results.json").read_text())}


def test_synthetic_results_equal_the_metrics_of_the_written_volumes(synthetic: dict[str, Any]) -> None:
    out, payload = synthetic["out"], synthetic["payload"]
    assert synthetic["results"] == out / "results.md"
    case = payload["cases"]["guided"]
    target = read_nifti(synthetic["folder"] / "data" / "t2.nii.gz").data
    assert case["slices"] == 3 and case["shape"] == [32, 32]
    for label in ("bicubic", "sinc", "edsr", "fusion"):
        method = case["methods"][label]
        assert method["status"] == "ok"
        for run in method["runs"]:
            restored = read_nifti(out / run["volume"]).data
            expected = evaluate_volume(target, restored)
            for metric in ("psnr", "ssim", "nmse"):
                assert run[metric] == pytest.approx(expected[metric], rel=1e-12)
            per_slice = run["per_slice"]
            assert per_slice["slice"] == [0, 1, 2]
            assert per_slice["psnr"][1] == pytest.approx(psnr(target[1], restored[1], float(target.max())))
    edsr = case["methods"]["edsr"]
    assert [Path(run["volume"]).name for run in edsr["runs"]] == ["edsr_seed0.nii.gz", "edsr_seed1.nii.gz"]
    psnrs = [run["psnr"] for run in edsr["runs"]]
    assert edsr["mean"]["psnr"] == pytest.approx(np.mean(psnrs))
    assert edsr["std"]["psnr"] == pytest.approx(np.std(psnrs, ddof=1))
    assert case["methods"]["sinc"]["mean"]["psnr"] > case["methods"]["bicubic"]["mean"]["psnr"] + 10
    assert case["methods"]["sinc"]["acquisition"] == "super_resolution: 2× SR"


def test_synthetic_claims_drift_and_not_applicable_methods(synthetic: dict[str, Any]) -> None:
    payload = synthetic["payload"]
    guided, plain = payload["cases"]["guided"], payload["cases"]["plain"]
    claims = {(c["a"], c["b"]): c for c in guided["claims"]}
    sinc_bicubic = claims[("sinc", "bicubic")]
    assert sinc_bicubic["holds"] is True and sinc_bicubic["pairs"] == 3 and sinc_bicubic["mean_difference"] > 10
    assert sinc_bicubic["pvalue"] is not None and sinc_bicubic["pvalue"] < 0.05
    assert claims[("edsr", "sinc")]["pairs"] == 6  # (seed, slice) pairs: 2 seeds × 3 slices
    # drift: sinc keeps the input's band (≈ 0), bicubic does not; the ground truth's floor is 0 for magnitude data
    sinc, bicubic = guided["methods"]["sinc"]["mean"], guided["methods"]["bicubic"]["mean"]
    assert sinc["drift_percent"] < 1e-3 and abs(sinc["offset"]) < 1e-4
    assert bicubic["drift_percent"] > 100 * sinc["drift_percent"]
    assert sinc["drift_floor_percent"] < 1e-4  # float32 round-off
    # the guided model runs with the reference, and is not applicable without one
    assert plain["methods"]["fusion"]["status"] == "not applicable"
    assert "reference" in plain["methods"]["fusion"]["reason"]
    assert plain["methods"]["fusion"]["runs"] == []
    assert any("fusion: not applicable" in m for m in synthetic["messages"])
    plain_claims = {(c["a"], c["b"]): c for c in plain["claims"]}
    assert plain_claims[("fusion", "bicubic")]["note"].startswith("not tested: fusion not applicable")
    pooled = {(c["a"], c["b"]): c for c in payload["claims"]}
    assert pooled[("sinc", "bicubic")]["pairs"] == 6 and pooled[("fusion", "bicubic")]["pairs"] == 3


def test_synthetic_tables_report_and_files(synthetic: dict[str, Any]) -> None:
    out = synthetic["out"]
    text = (out / "results.md").read_text()
    assert "| method | acquisition | PSNR (dB) | SSIM | NMSE | intensity drift (%) | offset (grey levels) | seconds |" \
        in text
    assert "| claim | pairs | mean difference (dB) | p | holds |" in text
    assert "| sinc > bicubic | 3 |" in text and "| sinc > bicubic | 6 |" in text  # per case, then all cases
    assert "edsr (2 seeds)" in text and "fusion: not applicable" in text
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "intensity drift" in page
    assert sorted(p.name for p in out.glob("*.png")) == ["guided_slice1.png", "plain_slice1.png"]
    assert sorted(p.name for p in (out / "volumes" / "plain").iterdir()) == [
        "bicubic.nii.gz", "edsr_seed0.nii.gz", "edsr_seed1.nii.gz", "sinc.nii.gz"]
    assert not list(out.parent.glob(".out.*"))  # no temporary folder left


def test_output_folder_is_refused_replaced_and_protected(synthetic: dict[str, Any], tmp_path: Path) -> None:
    folder = synthetic["folder"]
    spec = write_spec(folder, {"cases": [{"name": "c", "target": "data/t2.nii.gz"}],
                               "methods": {"sinc": "methods/sr2x_sinc.yaml"}}, "small.yaml")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        realscan(spec, out, device="cpu", log=lambda _: None)
    assert (out / "keep.txt").read_text() == "mine"
    realscan(spec, out, overwrite=True, device="cpu", log=lambda _: None)
    assert not (out / "keep.txt").exists() and (out / "results.json").is_file()
    from accelmri.data.errors import DataError

    with pytest.raises(DataError, match="holds the input"):
        realscan(spec, folder / "data", overwrite=True, device="cpu", log=lambda _: None)
    assert (folder / "data" / "t2.nii.gz").is_file()


def test_adapt_goes_to_the_trained_checkpoints_that_can_adapt(tmp_path: Path) -> None:
    write_nifti(tmp_path / "t2.nii.gz", band_limited(3, 32, 32), np.eye(4))
    edsr = make_checkpoint(tmp_path / "edsr.pt", {"name": "edsr", "scale": 2, "channels": 8, "n_blocks": 1})
    spec = {"cases": [{"name": "c", "target": str(tmp_path / "t2.nii.gz")}],
            "methods": {"edsr": str(edsr), "sinc": str(baseline_config(tmp_path / "sinc.yaml", "sinc"))}, "adapt": 2}
    realscan(spec, tmp_path / "out", device="cpu", log=lambda _: None)
    payload = json.loads((tmp_path / "out" / "results.json").read_text())
    methods = payload["cases"]["c"]["methods"]
    assert payload["adapt"]["steps"] == 2 and methods["edsr"]["adapt_steps"] == 2
    assert methods["sinc"]["adapt_steps"] == 0 and all(m["status"] == "ok" for m in methods.values())


def test_per_label_adapt_compares_one_checkpoint_with_and_without_adaptation(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from accelmri.engine import restore as restore_module

    calls: list[Any] = []
    original = restore_module.adapt_to_scan

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(original(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(restore_module, "adapt_to_scan", spy)
    write_nifti(tmp_path / "t2.nii.gz", band_limited(3, 32, 32), np.eye(4))
    edsr = str(make_checkpoint(tmp_path / "edsr.pt", {"name": "edsr", "scale": 2, "channels": 8, "n_blocks": 1}))
    spec = write_spec(tmp_path, {
        "cases": [{"name": "c", "target": "t2.nii.gz"}],
        "methods": {"edsr": {"checkpoints": edsr, "adapt": 0},              # overrides the spec's adapt: 2
                    "edsr_global": edsr,                                     # follows it (restore's default lr)
                    "edsr_adapted": {"checkpoints": [edsr], "adapt": 3, "adapt_lr": "1e-3"},  # YAML 1.1 string
                    "sinc": str(baseline_config(tmp_path / "sinc.yaml", "sinc"))},
        "claims": [["edsr_adapted", "edsr"]],
        "adapt": 2,
    })
    spec.write_text(spec.read_text().replace("'1e-3'", "1e-3"))  # as a user writes it: PyYAML reads a string
    assert load_spec(spec).method_adapt["edsr_adapted"].lr == pytest.approx(1e-3)
    messages: list[str] = []
    realscan(spec, tmp_path / "out", device="cpu", log=messages.append)
    out = tmp_path / "out"
    payload = json.loads((out / "results.json").read_text())
    methods = payload["cases"]["c"]["methods"]
    assert all(m["status"] == "ok" for m in methods.values())
    # restore adapted exactly the two labels that ask for it, with their steps and learning rates
    assert sorted((a.steps, a.lr) for a in calls) == [(2, pytest.approx(methods["edsr_global"]["adapt_lr"])),
                                                      (3, pytest.approx(1e-3))]
    assert (methods["edsr"]["adapt_steps"], methods["edsr"]["adapt_lr"]) == (0, None)
    assert methods["edsr_global"]["adapt_steps"] == 2 and methods["edsr_global"]["adapt_lr_requested"] is None
    assert methods["edsr_adapted"]["adapt_steps"] == 3 and methods["edsr_adapted"]["adapt_lr"] == pytest.approx(1e-3)
    assert methods["edsr_adapted"]["runs"][0]["adapt_lr"] == pytest.approx(1e-3)
    assert (methods["sinc"]["adapt_steps"], methods["sinc"]["adapt_lr"]) == (0, None)  # parameter-free: unadapted
    assert payload["method_adapt"]["edsr_adapted"] == {"steps": 3, "lr": pytest.approx(1e-3), "own": True}
    assert payload["method_adapt"]["edsr_global"] == {"steps": 2, "lr": None, "own": False}
    # the adaptation is inside the method's seconds
    adapted_seconds = next(a.seconds for a in calls if a.steps == 3)
    assert methods["edsr_adapted"]["runs"][0]["seconds"] >= adapted_seconds > 0
    # the adapted volume is not the unadapted one, and the paired claim between them is computed
    plain = read_nifti(out / methods["edsr"]["runs"][0]["volume"]).data
    adapted = read_nifti(out / methods["edsr_adapted"]["runs"][0]["volume"]).data
    assert plain.shape == adapted.shape and np.abs(adapted - plain).max() > 1e-4
    (claim,) = payload["cases"]["c"]["claims"]
    assert (claim["a"], claim["b"], claim["pairs"]) == ("edsr_adapted", "edsr", 3)
    assert claim["mean_difference"] is not None and math.isfinite(claim["mean_difference"])
    differences = np.subtract(methods["edsr_adapted"]["runs"][0]["per_slice"]["psnr"],
                              methods["edsr"]["runs"][0]["per_slice"]["psnr"])
    assert claim["mean_difference"] == pytest.approx(float(differences.mean()), rel=1e-9)
    # the table shows the adaptation of each row
    text = (out / "results.md").read_text()
    assert "| method | acquisition | adapt | PSNR (dB) |" in text
    assert "| edsr_adapted | super_resolution: 2× SR | 3 steps, lr 0.001 |" in text
    assert "| edsr | super_resolution: 2× SR | – |" in text and "| sinc | super_resolution: 2× SR | – |" in text
    assert "| edsr_adapted > edsr | 3 |" in text
    assert "<th>adapt</th>" in (out / "report.html").read_text()
    assert any("edsr_adapted (adapted: 3 steps, lr 0.001)" in m for m in messages)


# ------------------------------------------------------------------------------------------------ bad specs


def _bad_specs(folder: Path) -> dict[str, tuple[dict[str, Any], str]]:
    sinc = str(baseline_config(folder / "sinc.yaml", "sinc"))
    target = str(folder / "t2.nii.gz")
    case = {"name": "c", "target": target}
    return {
        "missing target": ({"cases": [{"name": "c", "target": "nowhere.nii.gz"}], "methods": {"sinc": sinc}},
                           "cases[0].target"),
        "unknown key": ({"cases": [case], "methods": {"sinc": sinc}, "seeds": 3}, "seeds"),
        "unknown case key": ({"cases": [{**case, "scale": 2}], "methods": {"sinc": sinc}}, "cases[0].scale"),
        "unknown claim label": ({"cases": [case], "methods": {"sinc": sinc}, "claims": [["sinc", "minet"]]},
                                "claims[0][1]"),
        "missing method file": ({"cases": [case], "methods": {"edsr": ["missing.pt"]}}, "methods.edsr[0]"),
        "built-in on an image case": ({"cases": [{**case, "methods": ["cg_sense"]}], "methods": {"sinc": sinc}},
                                      "cases[0].methods[0]"),
        "trainable config": ({"cases": [case], "methods": {"edsr": str(folder / "edsr.yaml")}}, "methods.edsr"),
    }


def test_a_label_runs_its_checkpoints_with_its_own_inference_options(tmp_path: Path) -> None:
    """``{checkpoints, model: {search_coarse: 4}}``: the same FASR-Net weights with the coarse-to-fine search,
    paired with the exact label; an option that is not an inference option, or one the model does not take, is a
    spec error before anything is written."""
    write_nifti(tmp_path / "t2.nii.gz", band_limited(2, 32, 32), np.eye(4))
    write_nifti(tmp_path / "flair.nii.gz", band_limited(2, 32, 32)[:, ::-1].copy(), np.eye(4))
    fasrnet = str(make_checkpoint(tmp_path / "fasrnet.pt", {"name": "fasrnet", "scale": 2, "channels": 8,
                                                             "n_blocks": [1, 1], "embed_channels": 8},
                                  data={"source": {"kind": "digital_brain", "size": 64, "reference": "FLAIR"}}))
    edsr = str(make_checkpoint(tmp_path / "edsr.pt", {"name": "edsr", "scale": 2, "channels": 8, "n_blocks": 1}))
    raw = {"cases": [{"name": "c", "target": "t2.nii.gz", "reference": "flair.nii.gz"}],
           "methods": {"fasrnet": fasrnet, "fasrnet_coarse": {"checkpoints": fasrnet, "model": {"search_coarse": 4}}},
           "claims": [["fasrnet_coarse", "fasrnet"]]}
    spec = write_spec(tmp_path, raw)
    assert load_spec(spec).method_adapt["fasrnet_coarse"].model_options == ("search_coarse=4",)
    realscan(spec, tmp_path / "ok", device="cpu")
    methods = json.loads((tmp_path / "ok" / "results.json").read_text())["cases"]["c"]["methods"]
    assert methods["fasrnet_coarse"]["model_options"] == ["search_coarse=4"]
    assert methods["fasrnet"]["model_options"] == [] and all(m["status"] == "ok" for m in methods.values())
    raw["methods"]["fasrnet_coarse"]["model"] = {"channels": 4}
    _assert_refused(tmp_path, write_spec(tmp_path, raw, "bad.yaml"), "methods.fasrnet_coarse.checkpoints")
    raw["methods"] = {"edsr": {"checkpoints": edsr, "model": {"search_coarse": 4}}}
    raw["claims"] = []
    _assert_refused(tmp_path, write_spec(tmp_path, raw, "bad2.yaml"), "methods.edsr.checkpoints")


def _assert_refused(tmp_path: Path, path: Path, key: str) -> None:
    """The CLI refuses the spec: exit 2, one stderr line naming the spec and the key, no output folder."""
    out = tmp_path / "out"
    result = runner.invoke(app, ["realscan", str(path), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: {key}: "), result.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


@pytest.mark.parametrize("kind", ["missing target", "unknown key", "unknown case key", "unknown claim label",
                                  "missing method file", "built-in on an image case", "trainable config"])
def test_bad_spec_exits_2_with_one_stderr_line_and_writes_nothing(kind: str, tmp_path: Path) -> None:
    write_nifti(tmp_path / "t2.nii.gz", band_limited(2, 16, 16), np.eye(4))
    raw = {"name": "edsr", "data": {"source": {"kind": "digital_brain"}, "task": "super_resolution",
                                    "acquisition": {"scale": 2}}, "model": {"name": "edsr", "scale": 2}}
    (tmp_path / "edsr.yaml").write_text(yaml.safe_dump(raw))
    spec, key = _bad_specs(tmp_path)[kind]
    path = write_spec(tmp_path, spec)
    _assert_refused(tmp_path, path, key)


@pytest.mark.parametrize(("kind", "key"), [
    ("unknown key", "methods.edsr.adapt_steps"),
    ("missing checkpoints", "methods.edsr.checkpoints"),
    ("missing checkpoint file", "methods.edsr.checkpoints[1]"),
    ("negative adapt", "methods.edsr.adapt"),
    ("boolean adapt", "methods.edsr.adapt"),
    ("zero adapt_lr", "methods.edsr.adapt_lr"),
    ("text adapt_lr", "methods.edsr.adapt_lr"),
    ("adapt on a parameter-free method", "methods.sinc.adapt"),
    ("adapt_lr without adaptation", "methods.edsr.adapt_lr"),
])
def test_bad_method_mapping_exits_2_with_one_stderr_line_and_writes_nothing(kind: str, key: str,
                                                                           tmp_path: Path) -> None:
    write_nifti(tmp_path / "t2.nii.gz", band_limited(2, 16, 16), np.eye(4))
    edsr = str(make_checkpoint(tmp_path / "edsr.pt", {"name": "edsr", "scale": 2, "channels": 8, "n_blocks": 1}))
    sinc = str(baseline_config(tmp_path / "sinc.yaml", "sinc"))
    entry: dict[str, Any] = {
        "unknown key": {"checkpoints": edsr, "adapt_steps": 3},
        "missing checkpoints": {"adapt": 3},
        "missing checkpoint file": {"checkpoints": [edsr, "missing.pt"], "adapt": 3},
        "negative adapt": {"checkpoints": edsr, "adapt": -1},
        "boolean adapt": {"checkpoints": edsr, "adapt": True},
        "zero adapt_lr": {"checkpoints": edsr, "adapt": 3, "adapt_lr": 0},
        "text adapt_lr": {"checkpoints": edsr, "adapt": 3, "adapt_lr": "fast"},
        "adapt on a parameter-free method": edsr,
        "adapt_lr without adaptation": {"checkpoints": edsr, "adapt_lr": 1e-3},  # the spec's adapt is 0
    }[kind]
    methods = {"edsr": entry, "sinc": {"checkpoints": sinc, "adapt": 3}} if kind.startswith("adapt on") else {
        "edsr": entry}
    path = write_spec(tmp_path, {"cases": [{"name": "c", "target": str(tmp_path / "t2.nii.gz")}],
                                 "methods": methods})
    _assert_refused(tmp_path, path, key)


def test_load_spec_defaults_and_yaml_errors(tmp_path: Path) -> None:
    write_nifti(tmp_path / "t2.nii.gz", band_limited(2, 16, 16), np.eye(4))
    sinc = baseline_config(tmp_path / "sinc.yaml", "sinc")
    spec = load_spec({"cases": [{"name": "c", "target": str(tmp_path / "t2.nii.gz")},
                                {"name": "k", "kind": "kspace", "target": str(tmp_path / "t2.nii.gz")}],
                      "methods": {"sinc": str(sinc)}, "claims": [["cg_sense", "zero_filled"]]})
    image, kspace = spec.cases
    assert image.methods == ("sinc",) and image.kind == "image"
    assert kspace.methods == ("zero_filled", "cg_sense", "sinc")
    assert (kspace.acceleration, kspace.center_fraction, kspace.mask, kspace.seed) == (4.0, 0.08, "equispaced", 0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("cases: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_spec(bad)
    with pytest.raises(ConfigError, match=r"cases\[1\]\.name: duplicate"):
        load_spec({"cases": [{"name": "c", "target": str(sinc)}] * 2, "methods": {"sinc": str(sinc)}})
    with pytest.raises(ConfigError, match=r"cases\[0\]\.acceleration"):
        load_spec({"cases": [{"name": "k", "kind": "kspace", "target": str(sinc), "acceleration": 0.5}]})
    case = {"name": "c", "target": str(tmp_path / "t2.nii.gz"), "uncovered_slices": "sinc"}
    assert load_spec({"cases": [case], "methods": {"sinc": str(sinc)}}).cases[0].uncovered_slices == "sinc"
    with pytest.raises(ConfigError, match=r"cases\[0\]\.uncovered_slices: expected one of refuse, sinc"):
        load_spec({"cases": [{**case, "uncovered_slices": "zero"}], "methods": {"sinc": str(sinc)}})


def test_spec_defaults_compose_bases_whose_paths_resolve_against_their_own_folder(tmp_path: Path) -> None:
    (tmp_path / "scans").mkdir()
    (tmp_path / "specs" / "bases").mkdir(parents=True)
    write_nifti(tmp_path / "scans" / "t2.nii.gz", band_limited(2, 16, 16), np.eye(4))
    sinc = baseline_config(tmp_path / "sinc.yaml", "sinc")
    bicubic = baseline_config(tmp_path / "bicubic.yaml", "bicubic")
    base = tmp_path / "specs" / "bases" / "common.yaml"
    base.write_text(yaml.safe_dump({"cases": [{"name": "c", "target": "../../scans/t2.nii.gz"}],
                                    "methods": {"sinc": "../../sinc.yaml", "bicubic": "../../sinc.yaml"},
                                    "claims": [["sinc", "bicubic"]]}))
    spec_file = tmp_path / "specs" / "study.yaml"
    spec_file.write_text(yaml.safe_dump({"defaults": ["bases/common"], "methods": {"bicubic": "../bicubic.yaml"}}))
    spec = load_spec(spec_file)
    (case,) = spec.cases
    assert case.target.resolve() == (tmp_path / "scans" / "t2.nii.gz").resolve()  # the base's own folder
    assert {k: [p.resolve() for p in v] for k, v in spec.methods.items()} == {"sinc": [sinc.resolve()],
                                                                            "bicubic": [bicubic.resolve()]}
    assert sorted(case.methods) == ["bicubic", "sinc"] and spec.claims == (("sinc", "bicubic"),)
    # lists replace: the including spec's cases and claims win
    spec_file.write_text(yaml.safe_dump({"defaults": ["bases/common"], "claims": [],
                                         "cases": [{"name": "d", "target": "../scans/t2.nii.gz",
                                                    "methods": ["sinc"]}]}))
    spec = load_spec(spec_file)
    assert [c.name for c in spec.cases] == ["d"] and spec.claims == ()
    base.write_text(yaml.safe_dump({"defaults": ["../study"]}))
    with pytest.raises(ConfigError, match=r"defaults: base spec '\.\./study' includes itself"):
        load_spec(spec_file)
    spec_file.write_text(yaml.safe_dump({"defaults": ["bases/missing"], "cases": []}))
    with pytest.raises(ConfigError, match="defaults: base spec 'bases/missing' not found"):
        load_spec(spec_file)


def test_the_repository_specs_share_the_demo_methods() -> None:
    from accelmri.engine.realscan import _compose_spec, _read_spec

    folder = Path(__file__).resolve().parents[1] / "configs" / "realscan"
    composed = {name: _compose_spec(_read_spec(folder / f"{name}.yaml"), name, folder, ())
                for name in ("tcga", "tcga_no_dc", "tcga_registered")}
    for spec in composed.values():
        assert Path(spec["methods"]["edsr"][0]).resolve() == (folder / "../../out/demo/runs/sr2x_edsr_seed0/last.pt"
                                                              ).resolve()
    assert set(composed["tcga_no_dc"]["methods"]) == set(composed["tcga"]["methods"]) | {"edsr_no_dc", "minet_no_dc"}


# ------------------------------------------------------------------------------------------------ real data


def test_tcga_t2_bicubic_and_sinc(tmp_path: Path) -> None:
    if not TCGA.is_dir():
        pytest.skip(f"{TCGA} not found: the real-data test needs ../shared/data beside the repository")
    configs = tmp_path / "configs"
    configs.mkdir()
    spec = write_spec(tmp_path, {
        "cases": [{"name": "tcga_t2", "target": str(next(TCGA.glob("*_t2.nii.gz"))),
                   "reference": str(next(TCGA.glob("*_flair.nii.gz")))}],
        "methods": {"bicubic": "configs/sr2x_bicubic.yaml", "sinc": "configs/sr2x_sinc.yaml"},
        "claims": [["sinc", "bicubic"]],
    })
    baseline_config(configs / "sr2x_bicubic.yaml", "bicubic")
    baseline_config(configs / "sr2x_sinc.yaml", "sinc")
    realscan(spec, tmp_path / "out", device="cpu", log=lambda _: None)
    case = json.loads((tmp_path / "out" / "results.json").read_text())["cases"]["tcga_t2"]
    bicubic, sinc = case["methods"]["bicubic"]["mean"], case["methods"]["sinc"]["mean"]
    (claim,) = case["claims"]
    print(f"TCGA T2 2x (26 slices): bicubic {bicubic['psnr']:.2f} dB / SSIM {bicubic['ssim']:.4f} / drift "
          f"{bicubic['drift_percent']:.2f} %, sinc {sinc['psnr']:.2f} dB / {sinc['ssim']:.4f} / "
          f"{sinc['drift_percent']:.2f} %; sinc − bicubic {claim['mean_difference']:+.2f} dB, p {claim['pvalue']:.2g}")
    # README "Restoring a real scan": bicubic 35.74 dB, sinc 36.69 dB on this volume
    assert bicubic["psnr"] == pytest.approx(35.74, abs=0.02) and sinc["psnr"] == pytest.approx(36.69, abs=0.02)
    assert claim["holds"] and claim["pairs"] == 26 and claim["pvalue"] < 1e-6
    assert sinc["drift_percent"] < 1.0 < bicubic["drift_percent"]


def test_pulseq_cg_sense_beats_zero_filling_at_r4(tmp_path: Path) -> None:
    if not PULSEQ.is_file():
        pytest.skip(f"{PULSEQ} not found: the real-data test needs ../shared/data beside the repository")
    pytest.importorskip("twixtools", reason="Siemens raw data need twixtools (accelmri[twix])")
    spec = write_spec(tmp_path, {
        "cases": [{"name": "pulseq_r4", "kind": "kspace", "target": str(PULSEQ), "acceleration": 4,
                   "center_fraction": 0.08, "mask": "equispaced"}],
        "claims": [["cg_sense", "zero_filled"]],
    })
    realscan(spec, tmp_path / "out", device="cpu", log=lambda _: None)
    out = tmp_path / "out"
    case = json.loads((out / "results.json").read_text())["cases"]["pulseq_r4"]
    cg, zf = case["methods"]["cg_sense"], case["methods"]["zero_filled"]
    print(f"Pulseq 16-coil, R = 4 equispaced: cg_sense {cg['mean']['psnr']:.2f} dB / SSIM {cg['mean']['ssim']:.4f}, "
          f"zero_filled {zf['mean']['psnr']:.2f} dB / {zf['mean']['ssim']:.4f} (realised R "
          f"{cg['realised_acceleration']:.2f})")
    assert cg["mean"]["psnr"] > zf["mean"]["psnr"] + 3
    with h5py.File(out / case["ground_truth"]) as file:
        truth = file["reconstruction"][()]
    assert truth.shape == (1, 128, 128)
    with h5py.File(out / cg["runs"][0]["volume"]) as file:
        restored = file["reconstruction"][()]
    assert cg["runs"][0]["psnr"] == pytest.approx(evaluate_volume(truth, restored)["psnr"], rel=1e-12)
    assert (out / "pulseq_r4_slice0.png").is_file()
