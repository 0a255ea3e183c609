"""LPIPS (accelmri.lpips): Eq. 1 of Zhang et al. 2018 against a direct implementation, weight files, volumes, and the
optional LPIPS column of ``accelmri evaluate`` (API, CLI, report tables). Random weights in tmp files, no downloads."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import save_file
from typer.testing import CliRunner

from accelmri.cli import app
from accelmri.data.errors import DataError
from accelmri.engine.evaluate import LPIPSVolumeScore, evaluate
from accelmri.lpips import ALEXNET_CHANNELS, LPIPS, lpips_volume
from accelmri.report.tables import read_evaluation, results_table, to_csv, to_markdown

runner = CliRunner()

# (index, in, out, kernel) of the five AlexNet convolutions in torchvision's features trunk.
CONVS = ((0, 3, 64, 11), (3, 64, 192, 5), (6, 192, 384, 3), (8, 384, 256, 3), (10, 256, 256, 3))


def random_backbone(seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision-layout AlexNet state dict (He-scaled random convs) with a (small, fake) classifier."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for index, cin, cout, kernel in CONVS:
        fan_in = cin * kernel * kernel
        state[f"features.{index}.weight"] = torch.randn(cout, cin, kernel, kernel, generator=generator) * math.sqrt(
            2 / fan_in)
        state[f"features.{index}.bias"] = torch.randn(cout, generator=generator) * 0.01
    state["classifier.1.weight"] = torch.randn(8, 4, generator=generator)
    state["classifier.1.bias"] = torch.zeros(8)
    return state


def random_linear(seed: int = 1) -> dict[str, torch.Tensor]:
    """The lpips v0.1 alex.pth layout: non-negative (1, C, 1, 1) weights under lin{l}.model.1.weight."""
    generator = torch.Generator().manual_seed(seed)
    return {f"lin{layer}.model.1.weight": torch.rand(1, channels, 1, 1, generator=generator)
            for layer, channels in enumerate(ALEXNET_CHANNELS)}


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("lpips_weights")
    torch.save(random_backbone(), folder / "alexnet.pth")
    torch.save(random_linear(), folder / "alex.pth")
    return folder / "alexnet.pth", folder / "alex.pth"


@pytest.fixture(scope="module")
def metric(weights: tuple[Path, Path]) -> LPIPS:
    return LPIPS.from_files(*weights)


def reference_lpips(backbone: dict[str, torch.Tensor], linear: dict[str, torch.Tensor], x: torch.Tensor,
                    y: torch.Tensor) -> torch.Tensor:
    """Eq. 1 written out in float64 with functional ops: per layer normalise, square, weight, mean; sum layers."""
    shift = torch.tensor([-0.030, -0.088, -0.188], dtype=torch.float64).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450], dtype=torch.float64).view(1, 3, 1, 1)
    w = {key: value.double() for key, value in backbone.items()}

    def layers(image: torch.Tensor) -> list[torch.Tensor]:
        h = (image.double().expand(-1, 3, -1, -1) - shift) / scale
        relu1 = F.relu(F.conv2d(h, w["features.0.weight"], w["features.0.bias"], stride=4, padding=2))
        relu2 = F.relu(F.conv2d(F.max_pool2d(relu1, 3, 2), w["features.3.weight"], w["features.3.bias"], padding=2))
        relu3 = F.relu(F.conv2d(F.max_pool2d(relu2, 3, 2), w["features.6.weight"], w["features.6.bias"], padding=1))
        relu4 = F.relu(F.conv2d(relu3, w["features.8.weight"], w["features.8.bias"], padding=1))
        relu5 = F.relu(F.conv2d(relu4, w["features.10.weight"], w["features.10.bias"], padding=1))
        return [relu1, relu2, relu3, relu4, relu5]

    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for layer, (fx, fy) in enumerate(zip(layers(x), layers(y), strict=True)):
        nx = fx / (torch.linalg.vector_norm(fx, dim=1, keepdim=True) + 1e-10)
        ny = fy / (torch.linalg.vector_norm(fy, dim=1, keepdim=True) + 1e-10)
        weight = linear[f"lin{layer}.model.1.weight"].double().view(1, -1, 1, 1)
        total += ((nx - ny) ** 2 * weight).sum(dim=1).mean(dim=(1, 2))
    return total


def images(n: int = 3, channels: int = 1, size: tuple[int, int] = (48, 40), seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, *size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ------------------------------------------------------------------------------------------------------ metric


def test_distance_of_an_image_to_itself_is_exactly_zero(metric: LPIPS) -> None:
    x = images(channels=3)
    assert torch.equal(metric(x, x), torch.zeros(3))
    assert torch.equal(metric(x, x.clone()), torch.zeros(3))


def test_distance_is_symmetric_and_positive_for_different_images(metric: LPIPS) -> None:
    x, y = images(seed=0), images(seed=1)
    d = metric(x, y)
    assert d.shape == (3,) and d.dtype == torch.float32
    assert torch.equal(d, metric(y, x))
    assert (d > 0).all()


def test_matches_a_direct_implementation_of_eq1(metric: LPIPS) -> None:
    x, y = images(channels=3, seed=2), images(channels=3, seed=3)
    expected = reference_lpips(random_backbone(), random_linear(), x, y)
    assert (metric(x, y).double() - expected).abs().max() <= 1e-6
    model64 = LPIPS()
    model64.load_state_dict(metric.state_dict())
    model64.double()  # the module computes in its own dtype: float64 agrees to rounding
    assert (model64(x, y) - expected).abs().max() <= 1e-12


def test_grey_input_equals_its_three_channel_replica(metric: LPIPS) -> None:
    x, y = images(seed=4), images(seed=5)
    assert torch.equal(metric(x, y), metric(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)))


def test_forward_rejects_bad_input(metric: LPIPS) -> None:
    with pytest.raises(ValueError, match="at least 31"):
        metric(images(size=(30, 64)), images(size=(30, 64)))
    with pytest.raises(ValueError, match="different shapes"):
        metric(images(), images(n=2))
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        metric(images(channels=2), images(channels=2))


# ------------------------------------------------------------------------------------------------ weight files


def test_backbone_with_classifier_keys_bare_features_and_safetensors_load(weights: tuple[Path, Path],
                                                                          metric: LPIPS, tmp_path: Path) -> None:
    backbone = random_backbone()
    assert any(key.startswith("classifier.") for key in torch.load(weights[0], weights_only=True))
    bare = {key.removeprefix("features."): value for key, value in backbone.items() if key.startswith("features.")}
    torch.save(bare, tmp_path / "features.pth")
    save_file(backbone, str(tmp_path / "alexnet.safetensors"))
    save_file(random_linear(), str(tmp_path / "alex.safetensors"))
    x, y = images(seed=6), images(seed=7)
    expected = metric(x, y)
    for paths in ((tmp_path / "features.pth", weights[1]), (tmp_path / "alexnet.safetensors",
                                                              tmp_path / "alex.safetensors")):
        assert torch.equal(LPIPS.from_files(*paths)(x, y), expected)
    assert not any(p.requires_grad for p in metric.parameters())


@pytest.mark.parametrize(
    ("which", "edit", "words"),
    [
        ("backbone", lambda s: s.pop("features.3.weight"), "lack the key 'features.3.weight'"),
        ("backbone", lambda s: s.update({"features.8.bias": torch.zeros(255)}),
         "key 'features.8.bias' has shape (255,), expected (256,)"),
        ("linear", lambda s: s.pop("lin4.model.1.weight"), "lack the key 'lin4.model.1.weight'"),
        ("linear", lambda s: s.update({"lin1.model.1.weight": torch.ones(1, 64, 1, 1)}),
         "key 'lin1.model.1.weight' has shape (1, 64, 1, 1), expected (1, 192, 1, 1)"),
        ("linear", lambda s: s.update({"lin0.model.1.weight": -torch.ones(1, 64, 1, 1)}),
         "key 'lin0.model.1.weight' has negative values"),
    ],
    ids=["backbone-missing", "backbone-shape", "linear-missing", "linear-shape", "linear-negative"],
)
def test_bad_weight_files_name_the_file_and_the_key(weights: tuple[Path, Path], tmp_path: Path, which: str,
                                                    edit: object, words: str) -> None:
    state = random_backbone() if which == "backbone" else random_linear()
    edit(state)  # type: ignore[operator]
    bad = tmp_path / f"bad_{which}.pth"
    torch.save(state, bad)
    paths = (bad, weights[1]) if which == "backbone" else (weights[0], bad)
    with pytest.raises(DataError) as info:
        LPIPS.from_files(*paths)
    assert str(bad) in str(info.value) and words in str(info.value)


def test_missing_or_unreadable_files_are_data_errors(weights: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(DataError, match="AlexNet backbone weights file not found"):
        LPIPS.from_files(tmp_path / "nope.pth", weights[1])
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("not a checkpoint")
    with pytest.raises(DataError, match="cannot read the LPIPS linear weights"):
        LPIPS.from_files(weights[0], garbage)


# ------------------------------------------------------------------------------------------------------ volumes


def test_lpips_volume_maps_by_the_target_maximum_and_batches_slices(metric: LPIPS) -> None:
    generator = torch.Generator().manual_seed(8)
    target = torch.rand(3, 48, 40, generator=generator, dtype=torch.float64) * 300
    prediction = target + 20 * torch.randn(3, 48, 40, generator=generator, dtype=torch.float64)
    peak = target.max()
    expected = metric((target / peak * 2 - 1)[:, None].float(), (prediction / peak * 2 - 1)[:, None].float()).mean()
    value = lpips_volume(metric, target.numpy(), prediction.numpy(), batch_size=2)
    assert value == pytest.approx(float(expected), abs=1e-7)
    assert lpips_volume(metric, target, target.clone()) == 0.0
    clamped = lpips_volume(metric, target, prediction, clamp=True)
    assert clamped == pytest.approx(lpips_volume(metric, target, prediction.clamp(0, float(peak))), abs=1e-7)
    with pytest.raises(ValueError, match="positive data range"):
        lpips_volume(metric, torch.zeros(2, 32, 32), prediction[:2, :32, :32])
    with pytest.raises(TypeError, match="complex"):
        lpips_volume(metric, target.to(torch.complex64), prediction)
    with pytest.raises(ValueError, match="differ in shape"):
        lpips_volume(metric, target, prediction[:2])


# --------------------------------------------------------------------------------------------------- evaluation


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two parameter-free 2× SR methods (bicubic, sinc) on three 2-slice 32² NIfTI volumes (the test split)."""
    folder = tmp_path_factory.mktemp("lpips_eval")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[-1:1:32j, -1:1:32j]
    paths = []
    for subject in range(3):
        slices = [np.exp(-((xx - 0.2 * rng.standard_normal()) ** 2 + (yy - 0.2 * rng.standard_normal()) ** 2) / 0.3)
                  + 0.1 * rng.random((32, 32)) for _ in range(2)]
        path = folder / f"sub{subject}.nii.gz"
        nib.save(nib.Nifti1Image(np.stack(slices, -1).astype(np.float32), np.eye(4)), path)
        paths.append(str(path))
    result = []
    for name in ("bicubic", "sinc"):
        config = {"data": {"source": {"kind": "files", "paths": paths, "use_reference": False},
                           "task": "super_resolution", "acquisition": {"scale": 2}, "split": {"ratios": [0, 0, 1]},
                           "batch_size": 2},
                  "model": {"name": name, "scale": 2}, "trainer": {"max_steps": 1}}
        result.append(folder / f"{name}.yaml")
        result[-1].write_text(yaml.safe_dump(config))
    return result


@pytest.fixture(scope="module")
def evaluated(configs: list[Path], metric: LPIPS, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lpips_out")
    result = evaluate(configs, out, device="cpu", lpips=metric)
    assert all(isinstance(s, LPIPSVolumeScore) for m in result.methods for s in m.scores)
    return out


def test_evaluate_with_lpips_writes_the_column_everywhere(evaluated: Path) -> None:
    rows = list(csv.DictReader((evaluated / "metrics.csv").open()))
    assert list(rows[0]) == ["method", "volume", "subject", "contrast", "slices", "psnr", "ssim", "nmse", "lpips"]
    assert len(rows) == 6 and all(float(r["lpips"]) > 0 for r in rows)
    payload = json.loads((evaluated / "metrics.json").read_text())
    for method in payload["methods"]:
        assert list(method["summary"]) == ["psnr", "ssim", "nmse", "lpips"]
        values = [v["lpips"] for v in method["per_volume"]]
        assert method["summary"]["lpips"]["mean"] == pytest.approx(np.mean(values))
        assert method["summary"]["lpips"]["std"] == pytest.approx(np.std(values, ddof=1))
    assert [(t["metric"], t["n"]) for t in payload["ttests"]] == [(m, 3) for m in ("psnr", "ssim", "nmse", "lpips")]
    assert payload["ttests"][-1]["pvalue"] is not None
    markdown = (evaluated / "metrics.md").read_text()
    assert "| PSNR (dB) | SSIM | NMSE | LPIPS |" in markdown and "| bicubic | sinc | lpips | 3 |" in markdown


def test_report_tables_show_lpips_like_nmse(evaluated: Path, tmp_path: Path) -> None:
    table = results_table(read_evaluation([evaluated]))
    assert table.metrics == ("psnr", "ssim", "nmse", "lpips")
    assert table.comparisons["sinc"]["lpips"].n == 3
    markdown = to_markdown(table)
    assert "| SSIM | NMSE | LPIPS | p PSNR | p SSIM | p NMSE | p LPIPS |" in markdown
    assert "lpips_mean" in to_csv(table)
    # Without LPIPS in one of the evaluations the tables keep the three fastMRI metrics.
    plain = tmp_path / "plain"
    plain.mkdir()
    payload = json.loads((evaluated / "metrics.json").read_text())
    for method in payload["methods"]:
        method["name"] += " (plain)"
        for volume in method["per_volume"]:
            del volume["lpips"]
    (plain / "metrics.json").write_text(json.dumps(payload))
    mixed = results_table(read_evaluation([evaluated, plain]))
    assert mixed.metrics == ("psnr", "ssim", "nmse") and "LPIPS" not in to_markdown(mixed)


def test_cli_without_lpips_weights_skips_it_and_writes_no_column(configs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", *map(str, configs), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert result.output.count("LPIPS skipped: no weights given") == 1
    assert "lpips" not in (out / "metrics.csv").read_text().splitlines()[0]
    payload = json.loads((out / "metrics.json").read_text())
    assert all("lpips" not in v for m in payload["methods"] for v in [m["summary"], *m["per_volume"]])
    assert {t["metric"] for t in payload["ttests"]} == {"psnr", "ssim", "nmse"}
    assert "LPIPS" not in (out / "metrics.md").read_text()


@pytest.mark.parametrize("given", ["--lpips-backbone", "--lpips-linear"])
def test_cli_needs_both_lpips_options(weights: tuple[Path, Path], configs: list[Path], tmp_path: Path,
                                      given: str) -> None:
    path = weights[0] if given == "--lpips-backbone" else weights[1]
    result = runner.invoke(app, ["evaluate", str(configs[0]), "--out", str(tmp_path / "eval"), given, str(path)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "pass both LPIPS weight files or neither" in result.output
    assert not (tmp_path / "eval").exists()


def test_cli_with_both_lpips_files(weights: tuple[Path, Path], configs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "eval"
    arguments = ["evaluate", str(configs[1]), "--out", str(out), "--device", "cpu",
                 "--lpips-backbone", str(weights[0]), "--lpips-linear", str(weights[1])]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "LPIPS" in result.output and "skipped" not in result.output
    assert (out / "metrics.csv").read_text().splitlines()[0].endswith(",nmse,lpips")
    bad = runner.invoke(app, [*arguments[:-1], str(weights[0]), "--overwrite"])  # the backbone as linear file
    assert bad.exit_code == 2 and "lack the key 'lin0.model.1.weight'" in bad.output


def test_cli_refuses_images_too_small_for_lpips_before_scoring(weights: tuple[Path, Path], configs: list[Path],
                                                                tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", str(configs[0]), "--out", str(out), "--device", "cpu",
                                 "--data", "crop=[16,16]",
                                 "--lpips-backbone", str(weights[0]), "--lpips-linear", str(weights[1])])
    assert result.exit_code == 2, result.output
    assert "at least 31×31 pixels, the test split's are 16×16" in result.output
    assert str(configs[0]) in result.output and result.output.count("\n") == 1
    assert not out.exists()
