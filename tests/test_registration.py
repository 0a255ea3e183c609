"""Rigid registration of a reference to its target (``accelmri.data.registration``, ``restore --register-reference``,
the real-scan case key ``register_reference``).

The phantom: a 3-D ellipsoid head (24 slices × 64², 1 × 1 × 3 mm) with inner structures; the "reference" is the
same anatomy in an inverted contrast whose header is off by a known rigid motion (10° about the slice axis and a
few millimetres), as a patient who moved between two series.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from accelmri.cli import app
from accelmri.data.errors import DataError
from accelmri.data.pairing import align_reference
from accelmri.data.readers import write_nifti
from accelmri.data.registration import register_rigid
from accelmri.data.volume import ImageVolume
from accelmri.engine import restore as restore_module
from accelmri.engine.config import ConfigError
from accelmri.engine.realscan import load_spec
from accelmri.engine.restore import restore
from accelmri.physics.fft import fft2c, ifft2c
from tests.test_restore_report import make_checkpoint

pytest.importorskip("SimpleITK", reason="the registration extra (SimpleITK) is not installed")
pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()

AFFINE = np.diag([1.0, 1.0, 3.0, 1.0])
AFFINE[:3, 3] = [-32.0, -32.0, -36.0]
MINET = {"name": "minet", "scale": 2, "channels": 8, "n_groups": 1, "n_blocks": 1, "reduction": 4}


def head(slices: int = 24, size: int = 64) -> np.ndarray:
    """``(S, H, W)`` float32: an ellipsoid head with a skull rim and four inner blobs (asymmetric, so a rotation
    is identifiable)."""
    s, h, w = np.meshgrid(np.linspace(-1, 1, slices), np.linspace(-1, 1, size), np.linspace(-1, 1, size),
                          indexing="ij")
    radius = (h / 0.85) ** 2 + (w / 0.7) ** 2 + (s / 1.1) ** 2
    volume = 0.3 * (radius < 1.0) + 0.5 * ((radius > 0.8) & (radius < 1.0))
    for centre, size_, value in (((0.3, -0.2, 0.0), 0.2, 0.8), ((-0.4, 0.25, 0.2), 0.15, 0.6),
                                 ((0.1, 0.35, -0.3), 0.12, 1.0), ((-0.2, -0.35, -0.1), 0.18, 0.45)):
        volume += value * (((h - centre[0]) ** 2 + (w - centre[1]) ** 2 + ((s - centre[2]) / 2) ** 2) < size_ ** 2)
    return volume.astype(np.float32)


def rigid(angle_deg: float, shift: tuple[float, float, float]) -> np.ndarray:
    """4 × 4 world transform: rotation about the slice (z) axis through the origin, then a shift (mm)."""
    angle = np.radians(angle_deg)
    motion = np.eye(4)
    motion[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    motion[:3, 3] = shift
    return motion


def pair(angle: float = 10.0, shift: tuple[float, float, float] = (3.0, -2.0, 1.5)) -> tuple[ImageVolume,
                                                                                              ImageVolume]:
    """The target and a reference of the same anatomy (inverted contrast inside the head) whose header is off by
    the rigid motion ``rigid(angle, shift)``."""
    data = head()
    inverted = np.where(data > 0, 1.2 - data, 0.0).astype(np.float32)
    target = ImageVolume(data, AFFINE.copy(), Path("t2.nii.gz"), contrast="T2")
    reference = ImageVolume(inverted, rigid(angle, shift) @ AFFINE, Path("flair.nii.gz"), contrast="FLAIR")
    return target, reference


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_recovers_a_known_rigid_motion_across_contrasts() -> None:
    target, reference = pair()
    registered = register_rigid(target, reference)
    found = registered.attrs["registration"]
    assert found["rotation_deg"] == pytest.approx(10.0, abs=0.5)
    np.testing.assert_allclose(registered.affine, AFFINE, atol=0.5)  # the header's motion undone (mm)
    assert registered.data is reference.data and found["mutual_information"] < 0
    truth = ImageVolume(reference.data, AFFINE.copy(), reference.path)  # where the reference really lies
    expected = align_reference(target, truth).data
    before = correlation(align_reference(target, reference).data, expected)
    after = correlation(align_reference(target, registered).data, expected)
    assert before < 0.9 < 0.999 < after  # measured: 0.867 and 0.99999


def test_an_aligned_reference_stays_put_and_bad_input_is_refused() -> None:
    target, reference = pair(angle=0.0, shift=(0.0, 0.0, 0.0))
    found = register_rigid(target, reference)
    assert found.attrs["registration"]["rotation_deg"] < 0.5
    np.testing.assert_allclose(found.affine, AFFINE, atol=0.3)
    empty = ImageVolume(np.zeros_like(reference.data), AFFINE.copy(), Path("empty.nii.gz"))
    with pytest.raises(DataError, match=r"empty\.nii\.gz.*no signal"):
        register_rigid(target, empty)
    sheared = AFFINE.copy()
    sheared[0, 1] = 0.5
    with pytest.raises(DataError, match="sheared"):
        register_rigid(target, ImageVolume(reference.data, sheared, Path("sheared.nii.gz")))


def test_restore_registers_to_the_acquired_band_never_the_original(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """In degraded mode the reference is registered to the input's acquired k-space band (what the model sees),
    not to the full-resolution target; the restored reference then lies on the anatomy."""
    target, reference = pair()
    source = write_nifti(tmp_path / "t2.nii.gz", target.data, target.affine)
    guide = write_nifti(tmp_path / "flair.nii.gz", reference.data, reference.affine)
    checkpoint = make_checkpoint(tmp_path / "minet.pt", MINET)
    fixed_images: list[np.ndarray] = []
    guides: list[np.ndarray] = []
    original_register, original_open = restore_module.register_rigid, restore_module._open_reference

    def spy_register(fixed: ImageVolume, moving: ImageVolume) -> ImageVolume:
        fixed_images.append(np.asarray(fixed.data))
        return original_register(fixed, moving)

    def spy_open(*args: object, **kwargs: object) -> object:
        opened, uncovered = original_open(*args, **kwargs)  # type: ignore[arg-type]
        guides.append(np.asarray(opened.volume.data))
        return opened, uncovered

    monkeypatch.setattr(restore_module, "register_rigid", spy_register)
    monkeypatch.setattr(restore_module, "_open_reference", spy_open)
    with caplog.at_level(logging.INFO, logger="accelmri.engine.restore"):
        restore(checkpoint, [source], tmp_path / "out.nii.gz", reference=guide, degrade=True,
                register_reference=True)
    (fixed,) = fixed_images  # registered once, although restore plans each input twice (check, then restore)
    spectrum = fft2c(torch.from_numpy(target.data).to(torch.complex64))
    band = torch.zeros_like(spectrum)
    band[:, 16:48, 16:48] = spectrum[:, 16:48, 16:48]  # the 2× band of a 64² slice
    np.testing.assert_allclose(fixed, ifft2c(band).abs().numpy(), atol=1e-5)
    assert np.abs(fixed - target.data).max() > 0.1  # not the full-resolution original
    truth = align_reference(target, ImageVolume(reference.data, AFFINE.copy(), reference.path)).data
    assert correlation(guides[-1], truth) > 0.97
    (line,) = [r.getMessage() for r in caplog.records if "registered to" in r.getMessage()]
    found = re.search(r"rotation ([0-9.]+)°, translation ([0-9.]+) mm", line)
    assert found is not None and abs(float(found.group(1)) - 10.0) < 0.5
    restore(checkpoint, [source], tmp_path / "plain.nii.gz", reference=guide, degrade=True)
    assert correlation(guides[-1], truth) < 0.9  # without registration: the header's placement


def test_cli_flag_and_realscan_key(tmp_path: Path) -> None:
    target, reference = pair()
    source = write_nifti(tmp_path / "t2.nii.gz", target.data, target.affine)
    guide = write_nifti(tmp_path / "flair.nii.gz", reference.data, reference.affine)
    checkpoint = make_checkpoint(tmp_path / "minet.pt", MINET)
    result = runner.invoke(app, ["restore", str(checkpoint), str(source), "--out", str(tmp_path / "hr.nii.gz"),
                                 "--reference", str(guide), "--register-reference"])
    assert result.exit_code == 0, result.output
    assert f"{guide}: registered to {source}: rotation" in result.stderr
    case = {"name": "c", "target": str(source), "reference": str(guide), "register_reference": True}
    spec = load_spec({"cases": [case], "methods": {"minet": str(checkpoint)}})
    assert spec.cases[0].register_reference
    for bad in ({**case, "register_reference": "yes"}, {"name": "c", "target": str(source),
                                                       "register_reference": True}):
        with pytest.raises(ConfigError, match="register_reference"):
            load_spec({"cases": [bad], "methods": {"minet": str(checkpoint)}})


def test_realscan_case_restores_a_slab_with_a_registered_reference(tmp_path: Path) -> None:
    """``slices: [first, stop]`` restores and scores only that slab (its affine moved to the first slice kept), and
    ``register_reference`` registers the reference to each guided method's input."""
    import json

    from accelmri.data.readers import read_nifti
    from accelmri.engine.realscan import realscan

    target, reference = pair()
    source = write_nifti(tmp_path / "t2.nii.gz", target.data, target.affine)
    guide = write_nifti(tmp_path / "flair.nii.gz", reference.data, reference.affine)
    checkpoint = make_checkpoint(tmp_path / "minet.pt", MINET)
    case = {"name": "slab", "target": str(source), "reference": str(guide), "register_reference": True,
            "slices": [2, 20]}
    realscan({"cases": [case], "methods": {"minet": str(checkpoint)}}, tmp_path / "out", device="cpu",
             log=lambda _: None)
    entry = json.loads((tmp_path / "out" / "results.json").read_text())["cases"]["slab"]
    assert entry["slices"] == 18 and entry["slice_range"] == [2, 20] and entry["register_reference"]
    assert entry["methods"]["minet"]["status"] == "ok"
    slab = read_nifti(tmp_path / "out" / "volumes" / "slab" / "target_slices2-19.nii.gz")
    np.testing.assert_array_equal(slab.data, target.data[2:20])
    np.testing.assert_allclose(slab.affine[:3, 3], (AFFINE @ [0, 0, 2, 1])[:3])
    for bad in ([3, 3], [1], [-1, 4], "0:4"):
        with pytest.raises(ConfigError, match="slices"):
            load_spec({"cases": [{**case, "slices": bad}], "methods": {"minet": str(checkpoint)}})
