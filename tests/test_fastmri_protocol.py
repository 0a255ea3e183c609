"""data.protocol: fastmri against fastMRI's own data path and evaluate.py; challenge files; mask families.

The fastMRI-layout files are synthesised here: multi-coil 640 × 368 with brain-style encoding-limit padding and
single-coil 640 × 372, both with a 320 × 320 ``reconstruction_rss`` / ``reconstruction_esc`` and an ISMRMRD header.
The comparison needs the ``fastmri`` package (``pip install --no-deps fastmri``; its ``evaluate`` module imports
``runstats`` only for a class not used here) and is skipped without it.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from accelmri.cli import app
from accelmri.data.datasets import SliceDataset, open_source
from accelmri.data.errors import DataError
from accelmri.data.fastmri_protocol import FastMRIProtocolDataset, fastmri_center_crop, fastmri_crop_size
from accelmri.data.readers.fastmri import FastMRIFile, make_ismrmrd_header, write_fastmri
from accelmri.data.sample import collate
from accelmri.engine.build import build_dataset
from accelmri.engine.config import ConfigError, parse_config
from accelmri.engine.evaluate import evaluate
from accelmri.engine.restore import restore
from accelmri.metrics import evaluate_volume
from accelmri.models import build
from accelmri.models.baselines.interpolation import to_batch_units
from accelmri.physics.coils import rss
from accelmri.physics.degrade import Acquisition
from accelmri.physics.fft import ifft2c
from accelmri.physics.masks import fastmri_mask

PADDING = (6, 362)  # brain-style encodingLimits: center 178, maximum 355 on 368 lines


def _header(height: int, width: int, slices: int, padding: tuple[int, int] | None) -> str:
    xml = make_ismrmrd_header((height, width, 1), (320, 320, 1), num_slices=slices)
    if padding is None:
        return xml
    left, right = padding
    old = f"<maximum>{width - 1}</maximum><center>{width // 2}</center>"
    assert old in xml
    return xml.replace(old, f"<maximum>{right - left - 1}</maximum><center>{width // 2 - left}</center>")


def _fastmri_file(path: Path, coils: int, width: int, padding: tuple[int, int] | None, seed: int) -> Path:
    """A fastMRI-layout file: smooth random object, ``coils`` coils, 640 × ``width``, 320² RSS target."""
    rng = np.random.default_rng(seed)
    slices, height = 2, 640
    y, x = np.mgrid[-1 : 1 : height * 1j, -1 : 1 : width * 1j]
    kspace = np.empty((slices, coils, height, width), np.complex64)
    for s in range(slices):
        blob = np.exp(-((x / 0.5) ** 2 + (y / 0.3) ** 2)) * (1 + 0.3 * rng.standard_normal((height, width)))
        for c in range(coils):
            phase = np.exp(1j * (c + 1) * (x + 0.5 * y))
            image = torch.from_numpy((blob * phase * (1 + 0.2 * c * x)).astype(np.complex64))
            kspace[s, c] = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(image), norm="ortho")).numpy()
    if padding is not None:
        kspace[..., : padding[0]] = 0
        kspace[..., padding[1] :] = 0
    images = ifft2c(torch.from_numpy(kspace))
    top, left = (height - 320) // 2, (width - 320) // 2
    target = (rss(images) if coils > 1 else images[:, 0].abs())[:, top : top + 320, left : left + 320]
    data = kspace if coils > 1 else kspace[:, 0]
    return write_fastmri(path, data, target.numpy(), {"acquisition": "CORPD_FBK", "patient_id": path.stem},
                         _header(height, width, slices, padding))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fastmri")
    (root / "multicoil").mkdir()
    (root / "singlecoil").mkdir()
    return {
        "multicoil": _fastmri_file(root / "multicoil" / "file1000001.h5", 3, 368, PADDING, 0),
        "singlecoil": _fastmri_file(root / "singlecoil" / "file1000002.h5", 1, 372, None, 1),
    }


def _protocol_volume(path: Path, mask_type: str) -> tuple[list[Any], np.ndarray, np.ndarray]:
    dataset = FastMRIProtocolDataset([open_source(path)], mask_type, [0.08, 0.04], [4, 8])
    samples = [dataset[i] for i in range(len(dataset))]
    target = np.stack([s.denormalize(s.target)[0].numpy() for s in samples])
    zero_filled = np.stack([s.denormalize(s.lr_input)[0].numpy() for s in samples])
    return samples, target, zero_filled


@pytest.mark.parametrize("challenge", ["multicoil", "singlecoil"])
@pytest.mark.parametrize("mask_type", ["equispaced_fraction", "random"])
def test_protocol_equals_fastmri_data_path_and_evaluate(files: dict[str, Path], challenge: str, mask_type: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fastmri.data.mri_data", reason="pip install --no-deps fastmri for the comparison")
    if "runstats" not in sys.modules:
        monkeypatch.setitem(sys.modules, "runstats", types.SimpleNamespace(Statistics=object))
    fm = importlib.import_module("fastmri")
    evaluate = importlib.import_module("fastmri.evaluate")
    from fastmri.data import transforms
    from fastmri.data.mri_data import SliceDataset as FastMRISliceDataset
    from fastmri.data.subsample import create_mask_for_mask_type

    mask_func = create_mask_for_mask_type(mask_type, [0.08, 0.04], [4, 8])
    theirs = FastMRISliceDataset(files[challenge].parent, challenge, transforms.VarNetDataTransform(mask_func))
    zero_filled, targets, masks = [], [], []
    for sample in theirs:
        image = fm.complex_abs(transforms.complex_center_crop(fm.ifft2c(sample.masked_kspace), sample.crop_size))
        zero_filled.append((fm.rss(image) if challenge == "multicoil" else image).numpy())
        targets.append(transforms.center_crop(sample.target, sample.crop_size).numpy())
        masks.append(sample.mask.reshape(-1).numpy())
    zero_filled, targets = np.stack(zero_filled), np.stack(targets)

    ours, target, ours_zero_filled = _protocol_volume(files[challenge], mask_type)
    for sample, mask in zip(ours, masks, strict=True):
        np.testing.assert_array_equal(sample.mask[0, 0].numpy(), mask.astype(np.float32))
    np.testing.assert_allclose(target, targets, rtol=1e-6, atol=0)
    np.testing.assert_allclose(ours_zero_filled, zero_filled, rtol=1e-5, atol=1e-6 * zero_filled.max())
    got = evaluate_volume(target, ours_zero_filled)
    for name, func in (("nmse", evaluate.nmse), ("psnr", evaluate.psnr), ("ssim", evaluate.ssim)):
        expected = float(np.squeeze(func(targets, zero_filled)))
        assert got[name] == pytest.approx(expected, rel=1e-6, abs=1e-6), name
    print(f"{challenge} {mask_type}: ours {got}, fastMRI psnr {float(evaluate.psnr(targets, zero_filled)):.6f}")


def test_protocol_masks_are_per_volume_with_padding_unmasked(files: dict[str, Path]) -> None:
    samples, target, _ = _protocol_volume(files["multicoil"], "equispaced")
    assert torch.equal(samples[0].mask, samples[1].mask)
    columns = samples[0].mask[0, 0]
    assert not columns[: PADDING[0]].any() and not columns[PADDING[1] :].any()
    assert samples[0].kspace.shape == (3, 640, 368) and target.shape == (2, 320, 320)
    assert samples[0].meta["crop_size"] == (320, 320) and samples[0].meta["num_low_frequencies"] in (29, 15)
    file = FastMRIFile(files["multicoil"])
    assert file.acquired_columns == PADDING and not file.challenge


def _challenge_file(path: Path) -> Path:
    kspace = np.ones((1, 2, 16, 12), np.complex64)
    kspace[..., 1::2] = 0
    write_fastmri(path, kspace)
    with h5py.File(path, "a") as handle:
        handle.create_dataset("mask", data=np.tile([1.0, 0.0], 6))
        handle.attrs["acceleration"] = 2
        handle.attrs["num_low_frequency"] = 0
    return path


def test_challenge_files_are_refused_for_training_and_double_masking(tmp_path: Path) -> None:
    path = _challenge_file(tmp_path / "file_challenge.h5")
    assert FastMRIFile(path).challenge
    source = open_source(path)
    with pytest.raises(DataError, match=r"file_challenge\.h5.*challenge file: already undersampled.*restore"):
        SliceDataset([source], "reconstruction", Acquisition("equispaced", 2.0, 0.08), train=True)
    with pytest.raises(DataError, match="challenge file"):
        FastMRIProtocolDataset([source], "random", [0.08], [4])
    raw = {"data": {"source": {"kind": "files", "paths": [str(path)]}, "task": "reconstruction",
                    "acquisition": {"acceleration": 2.0}, "split": {"ratios": [1, 0, 0]}},
           "model": "zero_filled", "loss": {"weights": {"l1": 1.0}}, "trainer": {"max_steps": 1}}
    with pytest.raises(DataError, match="challenge file"):
        build_dataset(parse_config(raw).data, "train")


def _config(acquisition: dict[str, Any], protocol: str | None = None, **data: Any) -> dict[str, Any]:
    section = {"source": {"kind": "files", "paths": ["x.h5"]}, "task": "reconstruction",
               "acquisition": acquisition, **data}
    if protocol is not None:
        section["protocol"] = protocol
    return {"data": section, "model": "zero_filled", "loss": {"weights": {"l1": 1.0}}, "trainer": {"max_steps": 1}}


@pytest.mark.parametrize(
    ("raw", "key", "match"),
    [
        (_config({"mask_kind": "equispaced", "mask_family": "fastmri", "acceleration": 4}),
         "data.acquisition.mask_family", "applied by data.protocol: fastmri"),
        (_config({"mask_kind": "equispaced_fraction", "acceleration": 4}),
         "data.acquisition.mask_kind", "applied by data.protocol: fastmri"),
        (_config({"mask_kind": "random", "acceleration": 4, "accelerations": [4, 8]}),
         "data.acquisition.accelerations", "fastMRI's"),
        (_config({"mask_kind": "equispaced", "mask_family": "accelmri", "acceleration": 4}, "fastmri"),
         "data.acquisition.mask_family", "uses fastMRI's masks"),
        (_config({"mask_kind": "gaussian1d", "acceleration": 4}, "fastmri"),
         "data.acquisition.mask_kind", "takes fastMRI's mask types"),
        (_config({"mask_kind": "random", "accelerations": [4, 8], "center_fractions": [0.08]}, "fastmri"),
         "data.acquisition.center_fractions", "one value per"),
        (_config({"mask_kind": "equispaced", "accelerations": [4.5], "center_fractions": [0.08]}, "fastmri"),
         "data.acquisition.accelerations", "integers"),
        (_config({"mask_kind": "random", "acceleration": 4}, "fastmri", crop=[320, 320]),
         "data.crop", "recon_size"),
    ],
)
def test_mask_family_and_protocol_errors_name_the_key(raw: dict[str, Any], key: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        parse_config(raw, source="exp.yaml")
    assert info.value.key == key and str(info.value).startswith("exp.yaml: ")


def test_fastmri_protocol_config_builds_the_protocol_dataset(files: dict[str, Path]) -> None:
    raw = _config({"mask_kind": "equispaced_fraction", "accelerations": [4, 8], "center_fractions": [0.08, 0.04]},
                  "fastmri", split={"ratios": [0, 0, 1]})
    raw["data"]["source"]["paths"] = [str(files["multicoil"])]
    config = parse_config(raw)
    assert config.data.acquisition.fastmri_lists == ((0.08, 0.04), (4.0, 8.0))
    assert parse_config(config.to_dict()) == config
    dataset = build_dataset(config.data, "test")
    assert isinstance(dataset, FastMRIProtocolDataset) and len(dataset) == 2 and not dataset.train
    raw["data"]["source"] = {"kind": "files", "dir": str(files["multicoil"].parent.parent)}  # the fastMRI root
    by_folder = build_dataset(parse_config(raw).data, "test")
    assert [t.path for t in by_folder.targets] == [files["multicoil"], files["singlecoil"]]
    raw["data"]["source"]["dir"] = {"val": str(files["multicoil"].parent)}  # fastMRI's multicoil_val as val split
    config = parse_config(raw)
    assert len(build_dataset(config.data, "val")) == 2 and len(build_dataset(config.data, "test")) == 0
    raw["data"]["source"]["dir"] = {"validation": "x"}
    with pytest.raises(ConfigError, match="split folders are keyed train, val and test"):
        parse_config(raw)


def test_acquisition_keeps_one_contrast_of_a_mixed_brain_folder(files: dict[str, Path], tmp_path: Path) -> None:
    """fastMRI brain folders mix AXT1/AXT2/AXFLAIR/... files; ``data.source.acquisition`` keeps the listed ones
    (fastMRI's ``evaluate.py --acquisition``), before the subject split."""
    import shutil

    folder = tmp_path / "multicoil_val"
    folder.mkdir()
    for index, acquisition in enumerate(["AXT2", "AXFLAIR", "AXT2", "AXT1POST"]):
        path = shutil.copy(files["multicoil"], folder / f"file_brain_{index}.h5")
        with h5py.File(path, "r+") as handle:
            handle.attrs["acquisition"] = acquisition
    raw = _config({"mask_kind": "equispaced_fraction", "accelerations": [4], "center_fractions": [0.08]}, "fastmri",
                  split={"ratios": [0, 0, 1]})
    raw["data"]["source"] = {"kind": "files", "dir": str(folder)}
    assert len(build_dataset(parse_config(raw).data, "test").targets) == 4
    for kept, names in ((["AXT2"], ["file_brain_0.h5", "file_brain_2.h5"]),
                        (["AXFLAIR", "AXT1POST"], ["file_brain_1.h5", "file_brain_3.h5"])):
        raw["data"]["source"]["acquisition"] = kept
        config = parse_config(raw)
        assert parse_config(config.to_dict()) == config
        assert [t.path.name for t in build_dataset(config.data, "test").targets] == names
    raw["data"]["source"]["acquisition"] = ["CORPD_FBK"]
    with pytest.raises(ConfigError, match=r"data\.source\.acquisition: no volume has acquisition CORPD_FBK "
                                          r"\(found: AXFLAIR ×1, AXT1POST ×1, AXT2 ×2\)"):
        build_dataset(parse_config(raw).data, "test")


def test_simulated_target_is_the_rss_of_the_stored_noisy_kspace(tmp_path: Path) -> None:
    """A perfect reconstruction of simulate's k-space scores perfectly; fastMRI's SliceDataset opens its h5 folder
    (pairs.csv and the NIfTI files live elsewhere)."""
    from accelmri.data.simulate import simulate_dataset

    out = tmp_path / "brain"
    written = simulate_dataset(out, ["PD", "T2"], coils=2, subjects=1, size=32, slices=2, noise_std=0.05, nifti=True)
    path = out / "multicoil" / "brain_sub000_T2.h5"
    assert path in written and out / "nifti" / "brain_sub000_T2.nii.gz" in written and out / "pairs.csv" in written
    assert sorted(p.name for p in (out / "multicoil").iterdir()) == ["brain_sub000_PD.h5", "brain_sub000_T2.h5"]
    with h5py.File(path, "r") as file:
        kspace, target = torch.from_numpy(file["kspace"][()]), file["reconstruction_rss"][()]
        noise_free = file["reconstruction_noise_free"][()]
        assert file.attrs["max"] == pytest.approx(float(target.max()))
    np.testing.assert_allclose(target, rss(ifft2c(kspace)).numpy(), rtol=1e-6, atol=1e-7)
    assert evaluate_volume(target, rss(ifft2c(kspace)).numpy())["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert evaluate_volume(noise_free, target)["ssim"] < 0.99  # the noise is in the target, not only in k-space
    mri_data = pytest.importorskip("fastmri.data.mri_data", reason="pip install --no-deps fastmri")
    theirs = mri_data.SliceDataset(out / "multicoil", "multicoil")
    assert len(theirs) == 4
    _, _, their_target, attrs, name, _ = theirs[3]
    np.testing.assert_array_equal(their_target, target[1])
    assert name == path.name and attrs["recon_size"] == (32, 32, 1) and attrs["padding_left"] == 0


def _submission_inputs(files: dict[str, Path], folder: Path) -> dict[str, Path]:
    """fastMRI test/challenge copies of the fixture files: k-space under a fastMRI ``random`` 4× mask (zeros on the
    other lines), the ``mask`` dataset, ``acceleration`` / ``num_low_frequency`` attributes, no target."""
    folder.mkdir(parents=True, exist_ok=True)
    challenges = {}
    for challenge, path in files.items():
        with h5py.File(path, "r") as file:
            kspace, header = file["kspace"][()], file["ismrmrd_header"][()]
        mask, n_low = fastmri_mask("random", [0.08], [4], (1, kspace.shape[-1], 2), seed=tuple(map(ord, path.name)))
        columns = mask.reshape(-1).numpy()
        out = folder / challenge / f"{path.stem}_v2.h5"
        out.parent.mkdir(exist_ok=True)
        write_fastmri(out, kspace * columns, attrs={"acceleration": 4, "num_low_frequency": n_low},
                      header_xml=header.decode() if isinstance(header, bytes) else header,
                      extra={"mask": columns.astype(bool)})
        challenges[challenge] = out
    return challenges


def _zero_filled_config(path: Path, **data: Any) -> Path:
    raw = _config({"mask_kind": "random", "accelerations": [4], "center_fractions": [0.08]}, "fastmri", **data)
    raw["model"] = {"name": "zero_filled", "scale": 1}
    path.write_text(yaml.safe_dump(raw))
    return path


def _our_zero_filled(path: Path) -> np.ndarray:
    """Our own crop of the zero-filled image of a challenge file's masked k-space (fastMRI's crop convention)."""
    file = FastMRIFile(path)
    with h5py.File(path, "r") as handle:
        kspace = torch.from_numpy(handle["kspace"][()] * handle["mask"][()])
    images = ifft2c(kspace if file.multicoil else kspace[:, None])
    cropped = fastmri_center_crop(images, fastmri_crop_size(file))
    return (rss(cropped, dim=1) if file.multicoil else cropped[:, 0].abs()).numpy()


def test_restore_writes_the_submission_layout_of_challenge_files(files: dict[str, Path], tmp_path: Path) -> None:
    inputs = _submission_inputs(files, tmp_path / "test_set")
    config = _zero_filled_config(tmp_path / "zero_filled.yaml", normalization="meanstd")
    out = tmp_path / "submission"
    sources = [inputs["multicoil"], inputs["singlecoil"]]
    written = restore(config, sources, out)
    assert written == [out / path.name for path in sources]
    for source, output in zip(sources, written, strict=True):
        with h5py.File(output, "r") as file:
            assert list(file) == ["reconstruction"]
            image = file["reconstruction"][()]
            assert file.attrs["accelmri_mode"] == "acquired"
        assert image.shape == (2, 320, 320) and image.dtype == np.float32
        np.testing.assert_allclose(image, _our_zero_filled(source), rtol=1e-5, atol=1e-6 * image.max())
        assert FastMRIFile(source).challenge  # the input is untouched


def test_challenge_restore_refusals(files: dict[str, Path], tmp_path: Path) -> None:
    inputs = _submission_inputs({"singlecoil": files["singlecoil"]}, tmp_path / "test_set")
    source = inputs["singlecoil"]
    config = _zero_filled_config(tmp_path / "zero_filled.yaml")
    before = source.read_bytes()
    result = CliRunner().invoke(app, ["restore", str(config), str(source), "--out", str(source.parent)])
    assert result.exit_code == 2 and "is an input of this restore" in result.output
    with pytest.raises(DataError, match=r"_v2\.h5.*challenge file"):
        restore(config, [source], tmp_path / "out", degrade=True)
    raw = yaml.safe_load(config.read_text())
    raw["data"].pop("protocol")
    raw["data"]["task"] = "super_resolution"
    raw["data"]["acquisition"] = {"scale": 2}
    raw["model"]["scale"] = 2
    sr = tmp_path / "sr.yaml"
    sr.write_text(yaml.safe_dump(raw))
    with pytest.raises(DataError, match=r"_v2\.h5.*own resolution.*scale 2"):
        restore(sr, [source], tmp_path / "out")
    assert source.read_bytes() == before and not (tmp_path / "out").exists()
    bad = _challenge_file(tmp_path / "bad_mask.h5")
    with h5py.File(bad, "a") as file:
        del file["mask"]
        file.create_dataset("mask", data=np.ones(5))
    with pytest.raises(DataError, match=r"bad_mask\.h5.*'mask' of shape \(5,\) is not 12 values"):
        restore(config, [bad], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_challenge_restore_equals_fastmri_zero_filled(files: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("fastmri.data.mri_data", reason="pip install --no-deps fastmri for the comparison")
    fm = importlib.import_module("fastmri")
    from fastmri.data import transforms
    from fastmri.data.mri_data import SliceDataset as FastMRISliceDataset

    inputs = _submission_inputs(files, tmp_path / "test_set")
    config = _zero_filled_config(tmp_path / "zero_filled.yaml")
    for challenge, source in inputs.items():
        (output,) = restore(config, [source], tmp_path / "submission")
        theirs = FastMRISliceDataset(source.parent, challenge, transforms.VarNetDataTransform())
        expected = []
        for sample in theirs:
            image = fm.complex_abs(transforms.complex_center_crop(fm.ifft2c(sample.masked_kspace), sample.crop_size))
            expected.append((fm.rss(image) if challenge == "multicoil" else image).numpy())
        with h5py.File(output, "r") as file:
            ours = file["reconstruction"][()]
        np.testing.assert_allclose(ours, np.stack(expected), rtol=1e-5, atol=1e-6 * ours.max())


def test_restore_degrade_with_a_protocol_checkpoint_follows_the_protocol(files: dict[str, Path],
                                                                          tmp_path: Path) -> None:
    config = _zero_filled_config(tmp_path / "zero_filled.yaml")
    (output,) = restore(config, [files["multicoil"]], tmp_path / "out", degrade=True)
    with h5py.File(output, "r") as file:
        image = file["reconstruction"][()]
    dataset = FastMRIProtocolDataset([open_source(files["multicoil"])], "random", [0.08], [4])
    expected = np.stack([dataset[i].denormalize(dataset[i].lr_input)[0].numpy() for i in range(len(dataset))])
    assert image.shape == (2, 320, 320)
    np.testing.assert_allclose(image, expected, rtol=1e-5, atol=1e-6 * image.max())


def test_kspace_models_are_cropped_and_scored_under_the_protocol(files: dict[str, Path], tmp_path: Path) -> None:
    """cg_sense / modl reconstruct on the acquired 640 × 372 grid and crop to the 320 × 320 target, as VarNet."""
    dataset = FastMRIProtocolDataset([open_source(files["singlecoil"])], "equispaced_fraction", [0.08], [4])
    batch = collate([dataset[0]])
    cg = build("cg_sense", scale=1, max_iter=5)
    output = cg(batch)
    assert output.image.shape == output.lr_image.shape == (1, 1, 320, 320)
    full = cg.reconstruct(batch)
    assert full.shape == (1, 640, 372)
    torch.testing.assert_close(output.image, to_batch_units(fastmri_center_crop(full, (320, 320)).abs()[:, None],
                                                            batch))
    modl = build("modl", scale=1, n_iterations=1, channels=4, n_layers=2, cg_iterations=2)
    assert modl(batch).image.shape == (1, 1, 320, 320)

    config = _zero_filled_config(tmp_path / "cg_sense.yaml", split={"ratios": [0, 0, 1]})
    raw = yaml.safe_load(config.read_text())
    raw["data"]["source"]["paths"] = [str(files["singlecoil"])]
    raw["model"] = {"name": "cg_sense", "scale": 1, "max_iter": 5}
    config.write_text(yaml.safe_dump(raw))
    raw["model"] = {"name": "zero_filled", "scale": 1}
    zero_filled = tmp_path / "zero_filled.yaml"
    zero_filled.write_text(yaml.safe_dump(raw))
    result = evaluate([config, zero_filled], tmp_path / "scores")
    psnr = {method.name: method.scores[0].psnr for method in result.methods}
    assert psnr["cg_sense"] == pytest.approx(psnr["zero_filled"], abs=0.01)  # one coil: the minimum-norm solution
