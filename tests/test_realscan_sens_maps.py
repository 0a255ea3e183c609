"""Learned models that read coil maps (``sens_maps``) on multi-coil k-space files, through ``restore`` (acquired and
degraded) and ``accelmri realscan`` (a ``kind: kspace`` case).

The file is a tiny multi-coil phantom (2 slices × 4 birdcage coils × 48², fastMRI layout); the checkpoints are
untrained PGD-SFT Rec modules (``pgd_sft``, ``mode: recon_only``, scale 1) and MoDL, with ``data.sens_maps:
espirit`` in their config, so the maps are estimated from the data's calibration region
(:func:`accelmri.physics.sensitivity.espirit_calibration`). A checkpoint without ``data.sens_maps`` is "not
applicable" on multi-coil k-space, and says why.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch

from accelmri.data.phantom import shepp_logan
from accelmri.data.readers.fastmri import write_fastmri
from accelmri.engine.realscan import realscan
from accelmri.engine.restore import restore
from accelmri.physics.coils import sense_expand
from accelmri.physics.fft import fft2c
from accelmri.physics.masks import make_mask
from accelmri.physics.sensitivity import birdcage_maps
from tests.test_restore_report import make_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE, COILS, SLICES = 48, 4, 2
#: The case's and the checkpoints' acquisition: R = 4 equispaced, 6 of 48 centre lines (ESPIRiT block 48 × 6,
#: kernel 3).
ACQUISITION = {"mask_kind": "equispaced", "acceleration": 4.0, "center_fraction": 0.125}
PGD = {"name": "pgd_sft", "scale": 1, "mode": "recon_only", "prox_channels": 4, "prox_growth": 4, "max_iter": 2}
MODL = {"name": "modl", "scale": 1, "n_iterations": 1, "channels": 4, "n_layers": 2, "cg_iterations": 2}


def multicoil_kspace() -> np.ndarray:
    """``(S, C, H, W)`` complex64 fully sampled k-space of a phantom with a smooth phase, birdcage coils."""
    maps = birdcage_maps((COILS, SIZE, SIZE))
    slices = [fft2c(sense_expand(shepp_logan((SIZE, SIZE), phase_cycles=0.3 + 0.2 * s), maps))
              for s in range(SLICES)]
    return torch.stack(slices).numpy().astype(np.complex64)


def checkpoint(path: Path, model: dict[str, Any], sens_maps: str | None) -> Path:
    return make_checkpoint(path, model, task="reconstruction", scale=1, acceleration=4.0,
                           data={"acquisition": ACQUISITION, "sens_maps": sens_maps})


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sens_maps")
    kspace = multicoil_kspace()
    mask = make_mask("equispaced", (SIZE, SIZE), 4.0, 0.125, 0).numpy().astype(bool)
    return {
        "full": write_fastmri(folder / "full.h5", kspace),
        "undersampled": write_fastmri(folder / "undersampled.h5", kspace * mask),  # acquired: zeros where unmeasured
        "pgd": checkpoint(folder / "pgd.pt", PGD, "espirit"),
        "modl": checkpoint(folder / "modl.pt", MODL, "espirit"),
        "pgd_no_maps": checkpoint(folder / "pgd_no_maps.pt", PGD, None),
        "folder": folder,
    }


def read_reconstruction(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as file:
        return np.asarray(file["reconstruction"][()])


@pytest.mark.parametrize("label", ["pgd", "modl"])
def test_restore_runs_sens_maps_models_on_multicoil_kspace(files: dict[str, Path], label: str,
                                                           tmp_path: Path) -> None:
    for mode, source in (("acquired", files["undersampled"]), ("degraded", files["full"])):
        (written,) = restore(files[label], [source], tmp_path / f"{label}_{mode}.h5", degrade=mode == "degraded",
                             device="cpu")
        image = read_reconstruction(written)
        assert image.shape == (SLICES, SIZE, SIZE), mode
        assert np.isfinite(image).all() and image.max() > 0, mode
        with h5py.File(written, "r") as file:
            assert file.attrs["accelmri_mode"] == mode


def test_realscan_kspace_case_runs_sens_maps_models(files: dict[str, Path]) -> None:
    spec = {"cases": [{"name": "phantom", "kind": "kspace", "target": str(files["full"]), "acceleration": 4,
                       "center_fraction": 0.125, "mask": "equispaced"}],
            "methods": {label: str(files[label]) for label in ("pgd", "modl", "pgd_no_maps")}}
    messages: list[str] = []
    out = files["folder"] / "out"
    realscan(spec, out, device="cpu", log=messages.append)
    case = json.loads((out / "results.json").read_text())["cases"]["phantom"]
    truth = read_reconstruction(out / case["ground_truth"])
    assert truth.shape == (SLICES, SIZE, SIZE)
    for label in ("pgd", "modl", "zero_filled", "cg_sense"):
        method = case["methods"][label]
        assert method["status"] == "ok", (label, method.get("reason"))
        (run,) = method["runs"]
        assert read_reconstruction(out / run["volume"]).shape == truth.shape
        assert np.isfinite(run["psnr"])
    assert case["methods"]["pgd"]["acquisition"] == "reconstruction: R 4 equispaced"
    # the same model without data.sens_maps cannot combine 4 coils: not applicable, with the reason
    no_maps = case["methods"]["pgd_no_maps"]
    assert no_maps["status"] == "not applicable" and no_maps["runs"] == []
    assert "sens_maps" in no_maps["reason"]
    assert not any("pgd:" in m and "not applicable" in m for m in messages)


@pytest.mark.parametrize("label", ["pgd", "modl"])
def test_restore_adapts_reconstruction_models_by_kspace_splitting(files: dict[str, Path], label: str,
                                                                 tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """``--adapt`` on multi-coil k-space: the model is fine-tuned on the scan's own k-space (ZS-SSDU,
    ``accelmri.engine.adapt``) before restoring it, in degraded and acquired mode; the checkpoint is untouched.
    (Whether the output changes depends on early stopping: the kept weights may be the checkpoint's.)"""
    digest = files[label].read_bytes()
    for mode, source in (("degraded", files["full"]), ("acquired", files["undersampled"])):
        with caplog.at_level(logging.INFO, logger="accelmri.engine.adapt"):
            (adapted,) = restore(files[label], [source], tmp_path / f"adapted_{mode}.h5",
                                 degrade=mode == "degraded", device="cpu", adapt_steps=3, adapt_lr=1e-2)
        image = read_reconstruction(adapted)
        assert image.shape == (SLICES, SIZE, SIZE) and np.isfinite(image).all(), mode
        with h5py.File(adapted, "r") as file:
            assert file.attrs["accelmri_adapt_steps"] == 3
    name = "pgd_sft" if label == "pgd" else "modl"
    lines = [r.getMessage() for r in caplog.records if f"adapted {name} for 3 steps" in r.getMessage()]
    assert len(lines) == 2 and all("loss ssdu" in line and "kept step" in line for line in lines)
    assert files[label].read_bytes() == digest


def test_realscan_adapts_the_kspace_models_that_can(files: dict[str, Path], tmp_path: Path) -> None:
    spec = {"cases": [{"name": "phantom", "kind": "kspace", "target": str(files["full"]), "acceleration": 4,
                       "center_fraction": 0.125, "mask": "equispaced", "methods": ["pgd", "pgd_adapted"]}],
            "methods": {"pgd": str(files["pgd"]), "pgd_adapted": {"checkpoints": str(files["pgd"]), "adapt": 2}}}
    realscan(spec, tmp_path / "out", device="cpu", log=lambda _: None)
    methods = json.loads((tmp_path / "out" / "results.json").read_text())["cases"]["phantom"]["methods"]
    assert methods["pgd"]["adapt_steps"] == 0 and methods["pgd_adapted"]["adapt_steps"] == 2
    assert methods["pgd_adapted"]["status"] == "ok" and methods["pgd_adapted"]["runs"][0]["psnr"] > 0
