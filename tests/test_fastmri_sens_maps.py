"""Coil maps under ``data.protocol: fastmri`` and for fastMRI test/challenge files (``sens_maps="espirit"``).

The fastMRI-layout files are small: a Shepp–Logan object with a smooth phase in the middle of a 96 × 64 grid (the
readout oversampled as in fastMRI's 640 × 368), 4 birdcage coils, a 48 × 48 RSS target (the crop size). The maps are
checked as a SENSE model of the fully sampled coil images, and the k-space models that need them (``cg_sense``,
``modl``) run on protocol batches, challenge files and through ``restore``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
import yaml

from accelmri.data.datasets import open_source
from accelmri.data.errors import DataError
from accelmri.data.fastmri_protocol import FastMRIProtocolDataset, calibration_lines, challenge_sample
from accelmri.data.phantom import shepp_logan
from accelmri.data.readers.fastmri import write_fastmri
from accelmri.data.sample import collate
from accelmri.engine.build import build_dataset, build_model
from accelmri.engine.config import parse_config
from accelmri.engine.restore import restore
from accelmri.metrics import evaluate_volume
from accelmri.physics.coils import rss, sense_combine, sense_expand
from accelmri.physics.fft import fft2c, ifft2c
from accelmri.physics.masks import fastmri_mask
from accelmri.physics.sensitivity import birdcage_maps, calibrated_espirit_maps

pytestmark = pytest.mark.usefixtures("one_thread")

HEIGHT, WIDTH, COILS, SLICES, CROP = 96, 64, 4, 2, 48
#: fastMRI's ``equispaced_fraction`` 4× with 8 of 64 centre columns (ESPIRiT block 64 × 8, kernel 4).
MASK = {"mask_kind": "equispaced_fraction", "accelerations": [4], "center_fractions": [0.125]}
CG_SENSE = {"name": "cg_sense", "scale": 1, "max_iter": 10}
MODL = {"name": "modl", "scale": 1, "n_iterations": 1, "channels": 4, "n_layers": 2, "cg_iterations": 2}
PGD = {"name": "pgd_sft", "scale": 1, "mode": "recon_only", "prox_channels": 4, "prox_growth": 4, "max_iter": 2}


def _coil_images(coils: int) -> torch.Tensor:
    """``(S, C, H, W)`` complex64 coil images: the object in the middle 64 readout rows, birdcage maps."""
    maps = birdcage_maps((coils, HEIGHT, WIDTH))
    images = []
    for s in range(SLICES):
        image = torch.zeros(HEIGHT, WIDTH, dtype=torch.complex64)
        pad = (HEIGHT - WIDTH) // 2
        image[pad : pad + WIDTH] = shepp_logan((WIDTH, WIDTH), phase_cycles=0.3 + 0.2 * s)
        images.append(sense_expand(image, maps) if coils > 1 else image[None])
    return torch.stack(images)


def _write(path: Path, coils: int) -> Path:
    """A fastMRI-layout file of :func:`_coil_images` with its RSS target cropped to ``CROP × CROP``."""
    images = _coil_images(coils)
    top, left = (HEIGHT - CROP) // 2, (WIDTH - CROP) // 2
    target = rss(images, dim=1)[:, top : top + CROP, left : left + CROP]
    kspace = fft2c(images).numpy()
    return write_fastmri(path, kspace if coils > 1 else kspace[:, 0], target.numpy(),
                         {"acquisition": "CORPD_FBK", "patient_id": path.stem})


def _challenge(path: Path, full: Path, n_low: bool = True) -> Path:
    """A test/challenge copy of ``full``: fastMRI ``random`` 4× mask, the ``mask`` dataset, no target;
    ``num_low_frequency`` only with ``n_low``."""
    with h5py.File(full, "r") as file:
        kspace, header = file["kspace"][()], file["ismrmrd_header"][()]
    mask, low = fastmri_mask("random", [0.125], [4], (1, WIDTH, 2), seed=tuple(map(ord, path.name)))
    columns = mask.reshape(-1).numpy()
    attrs = {"acceleration": 4, **({"num_low_frequency": low} if n_low else {})}
    return write_fastmri(path, kspace * columns, attrs=attrs, header_xml=header.decode(),
                         extra={"mask": columns.astype(bool)})


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fastmri_maps")
    multicoil = _write(root / "file1000001.h5", COILS)
    (root / "test").mkdir()
    return {
        "multicoil": multicoil,
        "singlecoil": _write(root / "file1000002.h5", 1),
        "challenge": _challenge(root / "test" / "file1000003_v2.h5", multicoil),
        "challenge_no_n_low": _challenge(root / "test" / "file1000004_v2.h5", multicoil, n_low=False),
    }


def _protocol(path: Path, sens_maps: str | None) -> FastMRIProtocolDataset:
    return FastMRIProtocolDataset([open_source(path)], MASK["mask_kind"], MASK["center_fractions"],
                                  MASK["accelerations"], sens_maps=sens_maps)


def _config(path: Path, model: dict[str, Any], sources: list[Path], sens_maps: str | None = "espirit") -> Path:
    """A YAML config of ``data.protocol: fastmri`` (the test split: every file) usable as a restore checkpoint."""
    data: dict[str, Any] = {"source": {"kind": "files", "paths": [str(p) for p in sources]},
                            "task": "reconstruction", "protocol": "fastmri", "acquisition": MASK,
                            "split": {"ratios": [0, 0, 1]}}
    if sens_maps is not None:
        data["sens_maps"] = sens_maps
    raw = {"data": data, "model": model, "loss": {"weights": {"l1": 1.0}}, "trainer": {"max_steps": 1}}
    path.write_text(yaml.safe_dump(raw))
    return path


def _relative_sense_error(coil_images: torch.Tensor, maps: torch.Tensor) -> float:
    """``‖S Sᴴ x − x‖ / ‖x‖`` over the object (RSS above 5 % of its maximum) for ``(C, H, W)`` coil images."""
    inside = rss(coil_images) > 0.05 * rss(coil_images).max()
    residual = sense_expand(sense_combine(coil_images, maps), maps) - coil_images
    return float(residual[:, inside].norm() / coil_images[:, inside].norm())


def test_protocol_maps_are_a_sense_model_of_the_coil_images(files: dict[str, Path]) -> None:
    with_maps, without = _protocol(files["multicoil"], "espirit"), _protocol(files["multicoil"], None)
    full = torch.from_numpy(h5py.File(files["multicoil"], "r")["kspace"][()])
    for index in range(SLICES):
        sample, plain = with_maps[index], without[index]
        maps = sample.sens_maps
        assert maps is not None and maps.shape == sample.kspace.shape == (COILS, HEIGHT, WIDTH)
        assert maps.dtype == torch.complex64 and plain.sens_maps is None
        for name in ("kspace", "mask", "target", "lr_input", "lr_target", "norm_std"):  # the data path is unchanged
            assert torch.equal(getattr(sample, name), getattr(plain, name)), name
        coil_images = ifft2c(full[index])
        error = _relative_sense_error(coil_images, maps)
        assert error < 0.03, error
        # Scale-invariant: the same maps from the normalised k-space the sample carries.
        n_low = sample.meta["num_low_frequencies"]
        assert n_low == 8 and calibration_lines(sample.mask[0, 0], n_low) == 8
        torch.testing.assert_close(calibrated_espirit_maps(sample.kspace, lines=n_low), maps, atol=1e-4, rtol=0)
        assert _relative_sense_error(coil_images, birdcage_maps((COILS, HEIGHT, WIDTH))) < 1e-5  # the check's scale


def test_single_coil_and_bad_values(files: dict[str, Path]) -> None:
    assert _protocol(files["singlecoil"], "espirit")[0].sens_maps is None
    assert challenge_sample(open_source(files["challenge"]), 0).sens_maps is None
    with pytest.raises(ValueError, match=r"sens_maps must be None or 'espirit', got 'walsh'"):
        _protocol(files["multicoil"], "walsh")
    with pytest.raises(ValueError, match=r"sens_maps must be None or 'espirit', got 'walsh'"):
        challenge_sample(open_source(files["challenge"]), 0, sens_maps="walsh")


@pytest.mark.parametrize("width", [64, 65, 367, 368, 372])
def test_calibration_band_lies_inside_the_fully_sampled_centre(width: int) -> None:
    """ESPIRiT's band (``L`` columns from ``W // 2 − L // 2``) is sampled for every fastMRI mask type, even where
    fastMRI's centre (from ``(W − n_low + 1) // 2``) sits one column off it (odd ``W``, even ``n_low``)."""
    for mask_type in ("random", "equispaced", "equispaced_fraction", "magic", "magic_fraction"):
        for fraction in (0.08, 0.04, 0.125):
            for seed in range(3):
                mask, n_low = fastmri_mask(mask_type, [fraction], [4], (1, width, 2), seed=seed)
                columns = mask.reshape(-1)
                for given in (n_low, None):
                    lines = calibration_lines(columns, given)
                    start = width // 2 - lines // 2
                    assert columns[start : start + lines].all() and lines >= n_low - 1, (mask_type, fraction, seed)
                    assert given is None or lines <= n_low
    odd = torch.tensor([0, 0, 0, 0, 1, 1, 0, 0, 0.0])  # W = 9, n_low = 2 from column 4: ESPIRiT's 2 would be 3, 4
    assert calibration_lines(odd, 2) == 1 and calibration_lines(odd, None) == 1
    assert calibration_lines(torch.tensor([1, 1, 0, 1, 1.0]), None) == 0  # W // 2 unsampled
    assert calibration_lines(torch.ones(8), None) == 8 and calibration_lines(torch.ones(8), 0) == 0


def test_cg_sense_and_modl_run_on_protocol_batches_with_maps(files: dict[str, Path], tmp_path: Path) -> None:
    config = parse_config(yaml.safe_load(_config(tmp_path / "cg.yaml", CG_SENSE, [files["multicoil"]]).read_text()))
    dataset = build_dataset(config.data, "test")
    assert isinstance(dataset, FastMRIProtocolDataset) and dataset.sens_maps == "espirit"
    batch = collate([dataset[0]])
    assert batch.sens_maps is not None and batch.sens_maps.shape == batch.kspace.shape == (1, COILS, HEIGHT, WIDTH)
    cg = build_model(config.model, 1)
    output = cg(batch)
    assert output.image.shape == (1, 1, CROP, CROP) and torch.isfinite(output.image).all()
    # The estimated maps serve SENSE as well as the true ones (R = 4 with 4 coils limits both: 18.2 and 17.8 dB,
    # zero-filled 15.9 dB).
    target = batch.target[0].numpy()
    psnr = evaluate_volume(target, output.image[0].detach().numpy())["psnr"]
    true_maps = dataclasses.replace(batch, sens_maps=birdcage_maps((COILS, HEIGHT, WIDTH))[None])
    assert psnr > evaluate_volume(target, cg(true_maps).image[0].detach().numpy())["psnr"] - 0.5
    assert psnr > evaluate_volume(target, batch.lr_input[0].numpy())["psnr"] + 1.5
    modl = build_model(parse_config({**config.to_dict(), "model": MODL}).model, 1)
    pgd = build_model(parse_config({**config.to_dict(), "model": PGD}).model, 1)
    for model in (modl, pgd):
        prediction = model(batch)
        assert prediction.image.shape == (1, 1, CROP, CROP) and torch.isfinite(prediction.image).all()
        assert prediction.complex_image is not None and prediction.complex_image.shape == (1, HEIGHT, WIDTH)
    without = collate([_protocol(files["multicoil"], None)[0]])
    for model in (cg, modl, pgd):
        with pytest.raises(ValueError, match="needs sens_maps"):
            model(without)


def test_challenge_sample_maps(files: dict[str, Path]) -> None:
    for name in ("challenge", "challenge_no_n_low"):
        source = open_source(files[name])
        sample = challenge_sample(source, 1, sens_maps="espirit")
        assert sample.sens_maps is not None and sample.sens_maps.dtype == torch.complex64
        assert sample.sens_maps.shape == sample.kspace.shape == (COILS, HEIGHT, WIDTH)
        assert sample.meta["num_low_frequencies"] == (8 if name == "challenge" else None)
        full = torch.from_numpy(h5py.File(files["multicoil"], "r")["kspace"][1])
        assert _relative_sense_error(ifft2c(full), sample.sens_maps) < 0.03


def test_challenge_without_a_sampled_centre_is_refused(files: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "no_centre.h5"
    with h5py.File(files["multicoil"], "r") as file:
        kspace, header = file["kspace"][()], file["ismrmrd_header"][()]
    columns = np.zeros(WIDTH, bool)
    columns[::4] = True
    columns[WIDTH // 2] = False
    write_fastmri(path, kspace * columns, attrs={"acceleration": 4}, header_xml=header.decode(),
                  extra={"mask": columns})
    assert challenge_sample(open_source(path), 0).sens_maps is None
    with pytest.raises(DataError, match=r"no_centre\.h5.*no centre band through column 32"):
        challenge_sample(open_source(path), 0, sens_maps="espirit")


def test_restore_challenge_and_degraded_files_with_cg_sense(files: dict[str, Path], tmp_path: Path) -> None:
    config = _config(tmp_path / "cg_sense.yaml", CG_SENSE, [files["multicoil"]])
    (written,) = restore(config, [files["challenge"]], tmp_path / "submission", device="cpu")
    assert written.name == files["challenge"].name
    with h5py.File(written, "r") as file:
        image = file["reconstruction"][()]
    assert image.shape == (SLICES, CROP, CROP) and image.dtype == np.float32 and np.isfinite(image).all()
    assert image.max() > 0
    (degraded,) = restore(config, [files["multicoil"]], tmp_path / "degraded.h5", degrade=True, device="cpu")
    with h5py.File(degraded, "r") as file:
        image = file["reconstruction"][()]
    assert image.shape == (SLICES, CROP, CROP) and np.isfinite(image).all()
    no_maps = _config(tmp_path / "no_maps.yaml", CG_SENSE, [files["multicoil"]], sens_maps=None)
    with pytest.raises((ValueError, DataError), match="needs sens_maps"):
        restore(no_maps, [files["challenge"]], tmp_path / "refused")
