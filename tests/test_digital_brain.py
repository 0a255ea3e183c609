"""Tests for the digital brain (accelmri.data.digital_brain), its data-set writer and ``accelmri simulate``."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from accelmri.cli import app
from accelmri.data import digital_brain as db
from accelmri.data import simulate as sim
from accelmri.data.errors import DataError
from accelmri.data.pairing import pairs_from_csv
from accelmri.data.readers.fastmri import FastMRIFile
from accelmri.data.readers.nifti import read_nifti
from accelmri.physics.coils import rss, sense_expand
from accelmri.physics.fft import ifft2c

runner = CliRunner()


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One accelmri cache root for the module: the tissue maps are built once (≈ 6 s)."""
    yield tmp_path_factory.mktemp("accelmri_cache")
    db._tissue_volume.cache_clear()  # free the memoised 125 MB volume for the rest of the session


@pytest.fixture(autouse=True)
def _cache_env(cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(db.CACHE_ENV, str(cache_root))


def _tiny(subject: int = 0, **kwargs: object) -> db.BrainSubject:
    options: dict[str, object] = {"contrasts": ("T1", "FLAIR"), "coils": 4, "size": 64, "slices": 2}
    options.update(kwargs)
    return db.digital_brain_subject(subject, **options)


def test_cache_is_built_once_then_reused(cache_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    maps = db.load_tissue_maps()
    cache_file = cache_root / "digital_brain" / "tissue_maps_v1.npz"
    assert maps.path == cache_file and cache_file.is_file()
    assert maps.fractions.dtype == np.uint8 and maps.fractions.shape[0] == len(db.TISSUES)
    assert 1e6 < cache_file.stat().st_size < 20e6
    assert [p.name for p in cache_file.parent.iterdir()] == [cache_file.name]  # no temporary file left
    mtime = cache_file.stat().st_mtime_ns

    def no_rebuild() -> None:
        raise AssertionError("the templates were loaded again")

    monkeypatch.setattr(db, "_build_tissue_maps", no_rebuild)
    db._tissue_volume.cache_clear()  # force reading the file, as a new process would
    brain = _tiny(contrasts=("T1",), coils=1, slices=1, size=32)
    assert brain.targets["T1"].max() > 0
    assert cache_file.stat().st_mtime_ns == mtime
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / cache_file.name).write_bytes(cache_file.read_bytes())
    assert db.load_tissue_maps(cache_dir=other).path == other / cache_file.name


def test_unreadable_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tissue_maps_v1.npz").write_bytes(b"not a zip file")
    fake = np.zeros((len(db.TISSUES), 3, 4, 5), dtype=np.uint8)
    monkeypatch.setattr(db, "_build_tissue_maps", lambda: (fake, np.eye(4)))
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        maps = db.load_tissue_maps(cache_dir=tmp_path)
    assert maps.fractions.shape == (len(db.TISSUES), 3, 4, 5)
    assert db.load_tissue_maps(cache_dir=tmp_path).fractions.shape == fake.shape  # now readable, no warning


def test_deterministic_and_subjects_differ() -> None:
    first = _tiny(3, noise_std=0.01)
    db._tissue_volume.cache_clear()
    second = _tiny(3, noise_std=0.01)
    for contrast in first.contrasts:
        assert torch.equal(first.kspace[contrast], second.kspace[contrast])
        assert torch.equal(first.targets[contrast], second.targets[contrast])
    assert torch.equal(first.sens_maps, second.sens_maps)
    # The same subject whatever else is requested: FLAIR alone is the FLAIR of the two-contrast request.
    alone = _tiny(3, contrasts=("flair",), noise_std=0.01)
    assert torch.equal(alone.kspace["FLAIR"], first.kspace["FLAIR"])
    for other in (_tiny(4, noise_std=0.01), _tiny(3, noise_std=0.01, seed=1)):
        assert other.parameters.rotation_deg != first.parameters.rotation_deg
        diff = (other.targets["T1"] - first.targets["T1"]).abs().mean()
        assert diff > 0.02 * first.targets["T1"].mean()
        assert not torch.equal(other.sens_maps, first.sens_maps)


def test_flair_inversion_time_nulls_csf() -> None:
    flair = db.SEQUENCES["FLAIR"]
    pd, t1, t2 = db.TISSUE_PARAMETERS["CSF"]
    t1_csf = torch.tensor(t1)
    assert flair.ti_ms == round(t1 * math.log(2 / (1 + math.exp(-flair.tr_ms / t1))))
    assert float(flair.signal(torch.tensor(pd), t1_csf, torch.tensor(t2))) < 1e-3
    wm = [torch.tensor(v) for v in db.TISSUE_PARAMETERS["WM"]]
    expected = 0.7 * (1 - 2 * math.exp(-flair.ti_ms / 700) + math.exp(-9000 / 700)) * math.exp(-100 / 75)
    assert float(flair.signal(*wm)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("subject", [0, 1])
def test_contrast_physics(subject: int) -> None:
    brain = db.digital_brain_subject(subject, db.CONTRASTS, coils=2, size=256, slices=2, noise_std=0.0)
    masks = {t: brain.tissues[t] > 0.9 for t in db.TISSUES}
    assert all(int(m.sum()) > 200 for m in masks.values())
    mean = {c: {t: float(brain.targets[c][m].mean()) for t, m in masks.items()} for c in db.CONTRASTS}
    t1w, t2w, pdw, flair, pdfs = (mean[c] for c in ("T1", "T2", "PD", "FLAIR", "PDFS"))
    assert t1w["WM"] > 1.05 * t1w["GM"] and t1w["GM"] > 1.2 * t1w["CSF"] and t1w["fat"] > t1w["WM"]
    assert t2w["CSF"] > 2 * t2w["GM"] and t2w["GM"] > 1.1 * t2w["WM"]
    assert pdw["CSF"] > pdw["GM"] > pdw["WM"]
    assert flair["CSF"] < 0.3 * min(flair["WM"], flair["GM"]) and flair["GM"] > flair["WM"]
    assert pdfs["fat"] < 0.1 * pdw["fat"]
    assert pdfs["WM"] == pytest.approx(pdw["WM"], rel=1e-4)  # fat saturation leaves water alone


def test_shapes_multi_and_single_coil() -> None:
    multi = _tiny(contrasts=("T2",), coils=4, slices=3, noise_std=0.0)
    assert multi.kspace["T2"].shape == (3, 4, 64, 64) and multi.kspace["T2"].dtype == torch.complex64
    assert multi.images["T2"].shape == (3, 64, 64) and multi.images["T2"].dtype == torch.complex64
    assert multi.targets["T2"].shape == (3, 64, 64) and multi.targets["T2"].dtype == torch.float32
    assert multi.sens_maps is not None and multi.sens_maps.shape == (4, 64, 64)
    torch.testing.assert_close(rss(multi.sens_maps, dim=0), torch.ones(64, 64), rtol=0, atol=1e-5)
    assert set(multi.tissues) == set(db.TISSUES)
    total = sum(multi.tissues.values())
    assert float(total.min()) >= 0 and float(total.max()) <= 1 + 1e-5
    np.testing.assert_allclose(np.linalg.norm(multi.affine[:3, :3], axis=0), [240 / 64, 240 / 64, 5.0])
    assert multi.images["T2"].angle().std() > 0.1  # smooth background phase, not a real image

    single = _tiny(contrasts=("T2",), coils=1, slices=3, noise_std=0.0)
    assert single.sens_maps is None and single.kspace["T2"].shape == (3, 1, 64, 64)
    torch.testing.assert_close(ifft2c(single.kspace["T2"][:, 0]), single.images["T2"], rtol=0, atol=1e-5)
    torch.testing.assert_close(single.targets["T2"], multi.targets["T2"], rtol=0, atol=1e-5)


def test_kspace_consistent_with_target() -> None:
    clean = _tiny(coils=4, noise_std=0.0)
    for contrast in clean.contrasts:
        target = clean.targets[contrast]
        recon = rss(ifft2c(clean.kspace[contrast]))
        torch.testing.assert_close(recon, target, rtol=0, atol=1e-5 * float(target.max()))
    noisy = _tiny(coils=4, noise_std=0.02)
    residual = ifft2c(noisy.kspace["T1"]) - sense_expand(noisy.images["T1"], noisy.sens_maps)
    assert float(residual.abs().pow(2).mean().sqrt()) == pytest.approx(0.02, rel=0.03)  # E|n|² = noise_std²
    assert float(residual.real.std()) == pytest.approx(0.02 / math.sqrt(2), rel=0.03)
    torch.testing.assert_close(noisy.targets["T1"], clean.targets["T1"])  # the target is noise-free


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 63}, "even"),
        ({"contrasts": ("T1", "T5")}, "unknown contrast"),
        ({"contrasts": ("T1", "t1")}, "repeats"),
        ({"coils": 0}, "coils"),
        ({"noise_std": -1.0}, "noise_std"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _tiny(**kwargs)


def _file_names(subjects: int, contrasts: list[str], nifti: bool) -> set[str]:
    """Every file of a multi-coil simulation, relative to its folder."""
    stems = [sim.subject_file_stem(k, c) for k in range(subjects) for c in contrasts]
    names = {f"multicoil/{s}.h5" for s in stems} | ({f"nifti/{s}.nii.gz" for s in stems} if nifti else set())
    return names | {"pairs.csv"}


def _files(folder: Path) -> dict[str, int]:
    """The files under ``folder`` (relative POSIX paths) with their modification times."""
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_cli_simulate_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "brain"
    args = ["simulate", "--out", str(out), "--subjects", "2", "--contrasts", "T1", "--contrasts", "T2"]
    args += ["--slices", "4", "--size", "64", "--coils", "4", "--nifti"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert set(_files(out)) == _file_names(2, ["T1", "T2"], nifti=True)
    assert {p.name for p in out.iterdir()} == {"multicoil", "nifti", "pairs.csv"}

    with h5py.File(out / "multicoil" / "brain_sub001_T2.h5", "r") as file:
        assert file["kspace"].shape == (4, 4, 64, 64) and file["kspace"].dtype == np.complex64
        target = file["reconstruction_rss"][()]
        assert target.shape == (4, 64, 64) and target.dtype == np.float32
        assert file.attrs["acquisition"] == "T2" and file.attrs["patient_id"] == "brain_sub001"
        assert file.attrs["max"] == pytest.approx(float(target.max()))
        kspace = torch.from_numpy(file["kspace"][()])
    assert float((rss(ifft2c(kspace)) - torch.from_numpy(target)).abs().mean()) < 0.01
    header = FastMRIFile(out / "multicoil" / "brain_sub001_T2.h5")
    assert header.encoding_size == (64, 64, 1) and header.recon_size == (64, 64, 1)
    nifti = read_nifti(out / "nifti" / "brain_sub001_T2.nii.gz")
    np.testing.assert_allclose(nifti.data, target)
    assert nifti.spacing == pytest.approx((240 / 64, 240 / 64, 5.0))

    with (out / "pairs.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [[f"multicoil/brain_sub{k:03d}_T1.h5", f"multicoil/brain_sub{k:03d}_T2.h5"] for k in range(2)]
    pairs = pairs_from_csv(out / "pairs.csv")
    assert [(p.reference, p.target) for p in pairs] == [(out / a, out / b) for a, b in rows]

    # A non-empty folder is refused without --overwrite and left untouched.
    mtimes = _files(out)
    result = runner.invoke(app, [*args[:3], "--subjects", "1", "--size", "32", "--slices", "1"])
    assert result.exit_code == 2 and "not empty" in result.stderr  # a user error: one line on stderr
    assert _files(out) == mtimes
    # --overwrite replaces only our files.
    (out / "notes.txt").write_text("mine")
    result = runner.invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert (out / "notes.txt").read_text() == "mine"
    assert {p.name for p in tmp_path.iterdir()} == {"brain"}  # no staging folder left behind


def test_cli_simulate_single_coil_comma_list(tmp_path: Path) -> None:
    out = tmp_path / "fs"
    args = ["simulate", "--out", str(out), "--contrasts", "pd,PDFS", "--coils", "1", "--subjects", "1"]
    result = runner.invoke(app, [*args, "--slices", "2", "--size", "32"])
    assert result.exit_code == 0, result.output
    with h5py.File(out / "singlecoil" / "brain_sub000_PDFS.h5", "r") as file:
        assert file["kspace"].shape == (2, 32, 32)
        assert file["reconstruction_esc"].shape == (2, 32, 32) and "reconstruction_rss" not in file
    assert (out / "pairs.csv").read_text().splitlines() == [
        "singlecoil/brain_sub000_PD.h5,singlecoil/brain_sub000_PDFS.h5"]


def test_cli_simulate_realistic_records_the_reference_misregistration(tmp_path: Path) -> None:
    out = tmp_path / "real"
    args = ["simulate", "--out", str(out), "--contrasts", "FLAIR,T2", "--coils", "1", "--subjects", "1"]
    result = runner.invoke(app, [*args, "--slices", "1", "--size", "32", "--realism", "realistic"])
    assert result.exit_code == 0, result.output
    files = out / "singlecoil"
    with h5py.File(files / "brain_sub000_FLAIR.h5", "r") as reference, h5py.File(files / "brain_sub000_T2.h5") as t2:
        assert "reference_shift_mm" in reference.attrs and "reference_shift_mm" not in t2.attrs
        assert json.loads(t2.attrs["realism"])["texture"] > 0
    result = runner.invoke(app, [*args, "--realism", "photoreal", "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2 and "realistic" in result.stderr


def test_cli_simulate_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "bad"
    result = runner.invoke(app, ["simulate", "--out", str(out), "--contrasts", "T1,DWI"])
    assert result.exit_code == 2 and "unknown contrast" in result.stderr
    assert not out.exists()

    def data_error(*args: object, **kwargs: object) -> list[Path]:
        raise DataError(out, "broken input")

    monkeypatch.setattr(sim, "simulate_dataset", data_error)
    result = runner.invoke(app, ["simulate", "--out", str(out)])
    assert result.exit_code == 2 and "broken input" in result.output


def test_simulate_writes_nothing_on_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(*args: object, **kwargs: object) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr(sim, "write_nifti", disk_full)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        sim.simulate_dataset(out, ["T1", "T2"], coils=2, subjects=1, size=32, slices=1, nifti=True)
    assert list(tmp_path.iterdir()) == []
    (out / "multicoil").mkdir(parents=True)
    (out / "multicoil" / "brain_sub000_T1.h5").write_text("old")
    with pytest.raises(OSError, match="disk full"):
        sim.simulate_dataset(out, ["T1"], coils=2, subjects=1, size=32, slices=1, nifti=True, overwrite=True)
    assert (out / "multicoil" / "brain_sub000_T1.h5").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_simulated_pairs_feed_a_multicontrast_joint_dataset(tmp_path: Path) -> None:
    """simulate → pairs.csv → open_pair → SliceDataset: the same readers serve the digital brain and real data."""
    from accelmri.data.datasets import SliceDataset, open_pair
    from accelmri.data.sample import collate
    from accelmri.data.splits import split_subjects
    from accelmri.physics.degrade import Acquisition

    out = tmp_path / "brain"
    sim.simulate_dataset(out, ["PD", "PDFS"], coils=4, subjects=3, size=64, slices=2, noise_std=0.005, seed=0)
    pairs = pairs_from_csv(out / "pairs.csv")
    splits = split_subjects([p.subject for p in pairs], seed=0)
    assert sorted(s for split in splits.values() for s in split) == sorted(p.subject for p in pairs)
    opened = [open_pair(p) for p in pairs]
    acquisition = Acquisition("equispaced", acceleration=2, center_fraction=0.25, scale=2)
    dataset = SliceDataset([t for t, _ in opened], "joint", acquisition, references=[r for _, r in opened],
                           sens_maps="espirit")
    assert len(dataset) == 6
    batch = collate([dataset[i] for i in range(len(dataset))])
    assert batch.target.shape == (6, 1, 64, 64) and batch.reference is not None
    assert batch.kspace.shape == (6, 4, 32, 32) and batch.sens_maps is not None
    assert set(batch.meta["contrast"]) == {"PDFS"}
    # The fat-suppressed target and its PD reference are different images of the same anatomy.
    target, reference = batch.target.flatten(1), batch.reference.flatten(1)
    correlation = torch.nn.functional.cosine_similarity(target - target.mean(1, keepdim=True),
                                                        reference - reference.mean(1, keepdim=True))
    assert bool((correlation > 0.5).all()) and bool((correlation < 0.999).all())


def test_a_simulate_folder_is_a_files_source(tmp_path: Path) -> None:
    """``data.source: {kind: files, dir: OUT}`` reads an ``accelmri simulate`` folder: its pairs (contrasts from
    the files), or without pairs.csv its h5 folder."""
    from accelmri.data.datasets import SliceDataset
    from accelmri.engine.build import build_dataset
    from accelmri.engine.config import ConfigError, load_config

    configs = Path(__file__).resolve().parents[1] / "configs"
    pairs, single = tmp_path / "pairs", tmp_path / "single"
    sim.simulate_dataset(pairs, ["PD", "T2"], coils=1, subjects=3, size=32, slices=2, nifti=True)
    sim.simulate_dataset(single, ["T2"], coils=2, subjects=3, size=32, slices=2)

    def dataset(folder: Path, split: str = "train") -> SliceDataset:
        config = load_config(configs / "tiny_sr_edsr.yaml", [f"data.source={{kind: files, dir: {folder}}}"])
        built = build_dataset(config.data, split)
        assert isinstance(built, SliceDataset)
        return built

    paired = dataset(pairs)
    assert len(paired) == 2 and paired.references is not None  # one training subject, 2 slices
    assert {paired.targets[0].contrast, paired.references[0].contrast} == {"T2", "PD"}
    assert paired.targets[0].path.parent == pairs / "singlecoil"
    alone = dataset(single, "test")
    assert len(alone) == 2 and alone.references is None and alone.targets[0].path.parent == single / "multicoil"
    assert alone[0].kspace.shape[0] == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"empty.*no pairs\.csv and no \.h5 files"):
        dataset(empty)
    with pytest.raises(DataError, match="no such folder"):
        dataset(tmp_path / "missing")
    with pytest.raises(ConfigError, match="exactly one of csv, ixi, dir or paths"):
        load_config(configs / "tiny_sr_edsr.yaml", [f"data.source={{kind: files, dir: {single}, csv: x.csv}}"])
