"""Tests of the digital brain's realism components (:class:`accelmri.data.digital_brain.Realism`) and their wiring
through :func:`accelmri.data.simulate.simulate_dataset` and the experiment config (``data.source.realism``)."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from accelmri.data import digital_brain as db
from accelmri.data import simulate as sim
from accelmri.engine.build import DATASET_MARKER, _brain_parameters, digital_brain_dir, prepare_data
from accelmri.engine.config import ConfigError, DigitalBrainSource, load_config, parse_config
from accelmri.physics.coils import sense_expand
from accelmri.physics.fft import fft2c, ifft2c

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TISSUE_WEIGHTS = {"CSF": 1.0, "GM": 0.8, "WM": 0.55, "fat": 0.9, "muscle": 0.35}  # a PD-like map of the tissues


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private accelmri cache root; seeded with a copy of an existing tissue-map cache (else built, ≈ 6 s)."""
    root = tmp_path_factory.mktemp("accelmri_cache")
    existing = db.default_cache_dir() / db._CACHE_NAME
    if existing.is_file():
        (root / "digital_brain").mkdir()
        shutil.copyfile(existing, root / "digital_brain" / db._CACHE_NAME)
    yield root
    db._tissue_volume.cache_clear()


@pytest.fixture(autouse=True)
def _cache_env(cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(db.CACHE_ENV, str(cache_root))


def _brain(subject: int = 0, **kwargs: object) -> db.BrainSubject:
    options: dict[str, object] = {"contrasts": ("T1", "T2"), "coils": 1, "size": 64, "slices": 2}
    options.update(kwargs)
    return db.digital_brain_subject(subject, **options)


def _tissue_image(tissues: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(weight * tissues[t].double() for t, weight in TISSUE_WEIGHTS.items())


def _anatomical(brain: db.BrainSubject) -> torch.Tensor:
    """``(S, H, W, 3)`` float64 anatomical (template-frame) mm of the output pixel centres of ``brain``."""
    slices, size = brain.targets[brain.contrasts[0]].shape[:2]
    s, h, w = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in (slices, size, size)), indexing="ij")
    voxels = torch.stack([h, w, s, torch.ones_like(h)], dim=-1)
    scanner = (voxels @ torch.from_numpy(brain.affine).T)[..., :3]
    params = brain.parameters
    rotation = torch.from_numpy(db._rotation_matrix(params.rotation_deg))
    centre = torch.tensor(db._ROTATION_CENTRE_MM, dtype=torch.float64)
    return (scanner - centre - torch.tensor(params.translation_mm, dtype=torch.float64)) @ rotation + centre


def _synthetic_volume(x_step: float = 8.0, z_step: float = 0.25) -> tuple[torch.Tensor, np.ndarray]:
    """A synthetic object on a template grid covering the field of view: CSF linear in x, GM constant 0.5,
    WM linear in z, fat quadratic in z about z = 12 mm, muscle linear in y (in template mm)."""
    axes = [torch.arange(-140.0, 140.0 + 1e-9, x_step), torch.arange(-160.0, 136.0 + 1e-9, x_step),
            torch.arange(-40.0, 70.0 + 1e-9, z_step)]
    x, y, z = (a.double() for a in torch.meshgrid(*axes, indexing="ij"))
    channels = [(x + 140) / 280, torch.full_like(x, 0.5), (z + 40) / 110, ((z - 12) / 10) ** 2, (y + 160) / 300]
    volume = torch.stack(channels).permute(0, 3, 2, 1).float().contiguous()[None]  # (1, 5, Z, Y, X)
    affine = np.diag([x_step, x_step, z_step, 1.0])
    affine[:3, 3] = [float(a[0]) for a in axes]
    return volume, affine


def _synthetic_values(points: torch.Tensor) -> dict[str, torch.Tensor]:
    x, y, z = points.unbind(-1)
    return {"CSF": (x + 140) / 280, "GM": torch.full_like(x, 0.5), "WM": (z + 40) / 110, "fat": ((z - 12) / 10) ** 2,
            "muscle": (y + 160) / 300}


def _estimate_shift(fixed: torch.Tensor, moved: torch.Tensor) -> tuple[float, float]:
    """Sub-pixel ``(dh, dw)`` with ``moved(p) ≈ fixed(p − d)``: weighted least-squares fit of the phase of the
    cross-power spectrum, ``−2π f·d``, over the low frequencies (no unwrapping needed for ``|d| ≲ 4`` px)."""
    cross = torch.fft.fft2(moved.double()) * torch.fft.fft2(fixed.double()).conj()
    fh = torch.fft.fftfreq(fixed.shape[0], dtype=torch.float64)[:, None].expand(fixed.shape)
    fw = torch.fft.fftfreq(fixed.shape[1], dtype=torch.float64)[None, :].expand(fixed.shape)
    keep = (fh.abs() <= 1 / 16) & (fw.abs() <= 1 / 16) & ((fh != 0) | (fw != 0))
    design = -2 * math.pi * torch.stack([fh[keep], fw[keep]], dim=1)
    weight = cross.abs()[keep]
    normal = design.T @ (design * weight[:, None])
    solution = torch.linalg.solve(normal, design.T @ (weight * cross.angle()[keep]))
    return float(solution[0]), float(solution[1])


def _rotate(image: torch.Tensor, angle_deg: float) -> torch.Tensor:
    """``image`` with its content rotated by ``angle_deg`` about pixel ``(N//2, N//2)`` counter-clockwise from +x
    to +y (x along −w, y along −h), bilinear: ``out(Δ) = image(Qᵀ Δ)`` in ``(w, h)`` offsets."""
    n = image.shape[-1]
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    offsets = torch.arange(n, dtype=torch.float64) - n // 2
    dh, dw = torch.meshgrid(offsets, offsets, indexing="ij")
    w, h = c * dw + s * dh + n // 2, -s * dw + c * dh + n // 2
    grid = torch.stack([w * 2 / (n - 1) - 1, h * 2 / (n - 1) - 1], dim=-1)[None].float()
    return F.grid_sample(image[None, None].float(), grid, mode="bilinear", align_corners=True)[0, 0].double()


# ------------------------------------------------------------------------------------- off = the original code

# Computed with the code before realism existed (sums in float64; kspace[0, 0, 5, 7].real,
# kspace[-1, -1, 40, 33].imag, target[1, 30, 31]).
_PINNED = {
    "A": {
        "T1": [1614.502867, -8.782865969, 59.10084642, 1088.135629, -0.00107202027, -0.006922306493, 0.2473243177],
        "T2": [1499.852532, 32.96664154, -99.17941835, 1103.825948, -0.001151459292, -0.05812104046, 0.3347931206],
        "PD": [2266.399978, -177.6856947, 35.84889154, 2431.487856, -0.01238104422, 0.07579411566, 0.7001999021],
        "FLAIR": [807.4725082, -12.83264687, 34.83283177, 593.47009, -0.01172276959, -0.002992868191, 0.1666855067],
        "PDFS": [1749.897758, -105.0577953, 147.6989931, 2201.469506, 0.01484844089, -0.06915762275, 0.6930972934],
        "tissues": [477.7317734, 1414.730014, 1169.866476, 339.1421135, 168.0257907],
    },
    "B": {
        "FLAIR": [353.5524858, 16.73181376, -7.139817389, 567.0685189, -0.01912009716, -0.073424384, 0.1586333513],
        "T2": [738.9971039, -1.719705453, 48.47957605, 1082.445304, -0.005339996889, -0.03446952254, 0.29224208],
        "tissues": [469.9365666, 1369.429482, 1202.622257, 339.2556463, 182.3373974],
    },
}
_PINNED_CONFIGS = {
    "A": {"subject": 3, "contrasts": db.CONTRASTS, "coils": 4, "size": 64, "slices": 2, "noise_std": 0.01, "seed": 0},
    "B": {"subject": 1, "contrasts": ("FLAIR", "T2"), "coils": 1, "size": 64, "slices": 2, "seed": 2},
}


def _statistics(brain: db.BrainSubject) -> dict[str, list[float]]:
    stats = {}
    for c in brain.contrasts:
        k = brain.kspace[c].to(torch.complex128)
        stats[c] = [float(k.abs().sum()), float(k.real.sum()), float(k.imag.sum()),
                    float(brain.targets[c].double().sum()), float(k[0, 0, 5, 7].real), float(k[-1, -1, 40, 33].imag),
                    float(brain.targets[c][1, 30, 31])]
    stats["tissues"] = [float(brain.tissues[t].double().sum()) for t in db.TISSUES]
    return stats


@pytest.mark.parametrize("name", ["A", "B"])
def test_realism_off_is_the_original_simulation(name: str) -> None:
    options = dict(_PINNED_CONFIGS[name])
    subject = options.pop("subject")
    brain = db.digital_brain_subject(subject, **options)
    found = _statistics(brain)
    for key, values in _PINNED[name].items():
        assert found[key] == pytest.approx(values, rel=1e-6, abs=1e-7), key
    # Every way of saying "off" is bit-identical, a named reference without imperfections included.
    explicit = db.Realism(**{f.name: f.default for f in dataclasses.fields(db.Realism)})
    for other in (
        db.digital_brain_subject(subject, **options, realism=db.Realism()),
        db.digital_brain_subject(subject, **options, realism=explicit, reference=options["contrasts"][0]),
    ):
        for contrast in brain.contrasts:
            assert torch.equal(other.kspace[contrast], brain.kspace[contrast])
            assert torch.equal(other.targets[contrast], brain.targets[contrast])
        assert all(torch.equal(other.tissues[t], brain.tissues[t]) for t in db.TISSUES)
    assert brain.noise_stds == {c: brain.noise_std for c in brain.contrasts}
    assert brain.sequences == {c: db.SEQUENCES[c] for c in brain.contrasts} and brain.misregistration == {}


# ---------------------------------------------------------------------------------------------- the dataclass


def test_realism_presets_values_and_json_round_trip() -> None:
    realistic = db.Realism.realistic()
    assert realistic.to_dict() == {
        "deformation_mm": 3.0, "sequence_jitter": 0.15, "tissue_jitter": 0.05, "texture": 0.04,
        "bias_amplitude": 0.25, "bias_per_contrast": True, "noise_std_range": [0.003, 0.015],
        "reference_shift_mm": 1.0, "reference_rotation_deg": 2.0, "reference_slice_thickness_mm": 6.0,
        "reference_noise_scale": 1.5, "reference_resample": True,
    }
    assert db.Realism().off and not realistic.off and db.Realism(tissue_jitter=0.02).off
    assert db.Realism().tissue_jitter == 0.02 and db.Realism().bias_amplitude == 0.10  # the original values
    assert db.Realism.preset("none") == db.Realism() and db.Realism.preset(" Realistic") == realistic
    assert db.REALISM_PRESETS["realistic"] == realistic
    with pytest.raises(ValueError, match="unknown realism preset"):
        db.Realism.preset("extreme")
    for realism in (realistic, db.Realism(deformation_mm=2, noise_std_range=[0.01, 0.02])):
        plain = json.loads(json.dumps(realism.to_dict()))
        assert plain == realism.to_dict() and db.Realism.from_value(plain) == realism
    assert isinstance(db.Realism(deformation_mm=2).deformation_mm, float)  # 2 and 2.0 give one JSON (one hash)
    assert db.Realism(noise_std_range=[0.01, 0.02]).noise_std_range == (0.01, 0.02)
    assert db.Realism.from_value(None) == db.Realism() and db.Realism.from_value("realistic") == realistic
    with pytest.raises(db.RealismError, match="unknown field") as info:
        db.Realism.from_value({"texture": 0.1, "bogus": 1})
    assert info.value.field == "bogus"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("deformation_mm", -1.0),
        ("deformation_mm", 4.0),  # above MAX_DEFORMATION_MM: the map could fold
        ("sequence_jitter", 0.6),
        ("tissue_jitter", -0.01),
        ("texture", 0.3),
        ("bias_amplitude", 1.0),
        ("bias_per_contrast", 1),
        ("noise_std_range", (0.02, 0.01)),
        ("noise_std_range", (0.0, 0.01)),
        ("noise_std_range", (0.01,)),
        ("reference_shift_mm", float("nan")),
        ("reference_rotation_deg", "2"),
        ("reference_slice_thickness_mm", 0.0),
        ("reference_noise_scale", -1.0),
        ("reference_resample", "yes"),
    ],
)
def test_invalid_realism_names_the_field(field: str, value: object) -> None:
    with pytest.raises(db.RealismError) as info:
        db.Realism(**{field: value})
    assert info.value.field == field and isinstance(info.value, ValueError)


def test_invalid_subject_arguments() -> None:
    with pytest.raises(ValueError, match="reference PD is not one of the contrasts"):
        _brain(reference="pd")
    with pytest.raises(TypeError, match="Realism"):
        _brain(realism="realistic")


# ---------------------------------------------------------------------------------------------- deformation


def test_deformation_is_smooth_bounded_invertible_and_per_subject() -> None:
    amplitude = 3.0
    realism = db.Realism(deformation_mm=amplitude)
    axes = [torch.arange(-90.0, 91.0, 3.0), torch.arange(-120.0, 91.0, 3.0), torch.arange(-60.0, 91.0, 3.0)]
    points = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).double()
    first = db.realism_parameters(0, 0, realism).displacement(points)
    second = db.realism_parameters(1, 0, realism).displacement(points)
    assert first.shape == points.shape and first.dtype == torch.float64
    assert float(first.abs().max()) <= amplitude + 1e-9  # |u_j| ≤ D per axis
    assert all(float(first[..., j].abs().max()) > 0.4 * amplitude for j in range(3))  # not a trivial field
    # Smooth: every derivative within D·2π/λ_min (λ_min = 40 mm), so the Jacobian of r + u(r) stays invertible.
    jacobian = torch.stack([torch.diff(first, dim=axis)[:60, :70, :50] / 3.0 for axis in range(3)], dim=-1)
    assert float(jacobian.abs().max()) <= amplitude * 2 * math.pi / 40
    assert float(torch.linalg.det(torch.eye(3, dtype=torch.float64) + jacobian).min()) > 0.2
    assert float((first - second).norm(dim=-1).mean()) > 0.5  # subjects differ
    assert math.isclose(db.MAX_DEFORMATION_MM, 40 / (2 * math.pi * math.sqrt(3)))
    # Zero amplitude is the identity, exactly.
    assert not db.realism_parameters(0, 0, db.Realism()).displacement(points).any()
    # The separable grid evaluation used by the simulation equals the direct one.
    params = db.realism_parameters(0, 0, realism)
    origin = torch.tensor([[-60.0, 40.0, 10.0], [-60.0, 40.0, 15.0]], dtype=torch.float64)
    step_h = torch.tensor([0.05, -0.9, 0.02], dtype=torch.float64)
    step_w = torch.tensor([-0.9, -0.05, 0.01], dtype=torch.float64)
    index = torch.arange(128, dtype=torch.float64)
    grid = origin[:, None, None] + index[:, None, None] * step_h + index[None, :, None] * step_w
    torch.testing.assert_close(params.displacement_on_grid(origin, step_h, step_w, 128, 128).double(),
                               params.displacement(grid), rtol=0, atol=1e-5)


def test_deformation_moves_the_anatomy_by_the_displacement(monkeypatch: pytest.MonkeyPatch) -> None:
    """On an object linear in template x, y and z the deformed fractions are the undeformed ones plus ``u/L``:
    the template is sampled at ``r + u(r)``, in the subject's anatomical coordinates ``r``."""
    volume, affine = _synthetic_volume(x_step=4.0, z_step=4.0)
    monkeypatch.setattr(db, "_volume_for", lambda cache_dir: (volume, affine))
    options: dict[str, object] = {"contrasts": ("T2",), "size": 64, "slices": 2, "slice_thickness_mm": 1.0}
    realism = db.Realism(deformation_mm=3.0)
    plain, moved = _brain(4, **options), _brain(4, **options, realism=realism)
    points = _anatomical(plain)
    for tissue, value in _synthetic_values(points).items():
        if tissue != "fat":
            torch.testing.assert_close(plain.tissues[tissue].double(), value, rtol=0, atol=2e-5)
    shift = db.realism_parameters(4, 0, realism).displacement(points)  # fat (quadratic) is not interpolated exactly
    for tissue, axis, length in (("CSF", 0, 280.0), ("muscle", 1, 300.0), ("WM", 2, 110.0)):
        change = (moved.tissues[tissue] - plain.tissues[tissue]).double()
        torch.testing.assert_close(change, shift[..., axis] / length, rtol=0, atol=3e-5)
    assert float(shift.abs().max()) > 1.0


def test_one_anatomy_for_every_contrast_and_request() -> None:
    realism = db.Realism(deformation_mm=3.0, texture=0.05)
    both = _brain(2, contrasts=("T2", "FLAIR"), realism=realism, size=32)
    alone = _brain(2, contrasts=("flair",), realism=realism, size=32, coils=3)
    other = _brain(3, contrasts=("FLAIR",), realism=realism, size=32)
    plain = _brain(2, contrasts=("FLAIR",), size=32)
    for tissue in db.TISSUES:
        assert torch.equal(both.tissues[tissue], alone.tissues[tissue])
    torch.testing.assert_close(both.targets["FLAIR"], alone.targets["FLAIR"], rtol=0, atol=1e-5)
    assert float((both.tissues["WM"] - plain.tissues["WM"]).abs().max()) > 0.05  # deformed
    assert float((both.tissues["WM"] - other.tissues["WM"]).abs().mean()) > 0.01  # subjects differ


# -------------------------------------------------------------------------------------------- slice profile


def test_reference_slice_profile_keeps_the_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    """A constant or z-linear object: every slice profile gives the value at the slice centre. A z-quadratic one
    tells the profiles apart: the profile mean exceeds the centre value by ``q''/2 · mean(dz²)``."""
    volume, affine = _synthetic_volume()
    monkeypatch.setattr(db, "_volume_for", lambda cache_dir: (volume, affine))
    realism = db.Realism(reference_slice_thickness_mm=6.0)
    brain = _brain(1, contrasts=("PD", "T2"), size=32, slices=3, realism=realism, reference="PD")
    assert brain.misregistration["slice_thickness_mm"] == 6.0 and brain.reference_tissues is not None
    centre = _synthetic_values(_anatomical(brain))
    for tissues in (brain.tissues, brain.reference_tissues):
        for tissue in ("CSF", "GM", "WM", "muscle"):
            torch.testing.assert_close(tissues[tissue].double(), centre[tissue], rtol=0, atol=2e-5)
    tilt = db._rotation_matrix(brain.parameters.rotation_deg)[2, 2] ** 2  # template z per scanner z, squared
    for tissues, planes, thickness in ((brain.tissues, 5, 5.0), (brain.reference_tissues, 6, 6.0)):
        dz = ((np.arange(planes) + 0.5) / planes - 0.5) * thickness
        excess = (tissues["fat"].double() - centre["fat"]).mean()
        assert float(excess) == pytest.approx(tilt * np.mean(dz**2) / 100, rel=0.02)
    # The slab of the reference is thicker but centred on the same slices: its images stay on the target grid.
    assert brain.targets["PD"].shape == brain.targets["T2"].shape


# --------------------------------------------------------------------------------------------------- noise


def test_single_coil_background_is_rayleigh_with_the_drawn_std() -> None:
    low, high = 0.003, 0.015
    realism = db.Realism(noise_std_range=(low, high))
    brains = [_brain(s, size=128, noise_std=0.5, realism=realism) for s in (0, 1)]
    drawn = [b.noise_stds[c] for b in brains for c in b.contrasts]
    assert all(low <= v <= high for v in drawn) and len(set(drawn)) == len(drawn)  # per subject and contrast
    assert drawn == [db.realism_parameters(s, 0, realism).noise_std[c] for s in (0, 1) for c in ("T1", "T2")]
    for brain in brains:
        for contrast in brain.contrasts:
            sigma = brain.noise_stds[contrast]
            magnitude = ifft2c(brain.kspace[contrast][:, 0]).abs().double()
            air = brain.images[contrast].abs() < 0.1 * sigma  # noise-free signal (Gibbs tails) ≤ 1 % of E|n|²
            assert int(air.sum()) > 3000
            values = magnitude[air]
            assert float(values.pow(2).mean()) == pytest.approx(sigma**2, rel=0.05)  # E|n|² = σ²
            assert float(values.mean()) == pytest.approx(sigma * math.sqrt(math.pi) / 2, rel=0.03)  # Rayleigh mean
            below_median = float((values < sigma * math.sqrt(math.log(2))).double().mean())
            assert below_median == pytest.approx(0.5, abs=0.03)  # Rayleigh median σ·√ln2
    # The reference's noise is reference_noise_scale × the std it would otherwise get; the target's is unchanged.
    scaled = dataclasses.replace(realism, reference_noise_scale=1.5)
    reference = _brain(0, size=128, noise_std=0.5, realism=scaled, reference="T1")
    assert reference.noise_stds["T1"] == pytest.approx(1.5 * brains[0].noise_stds["T1"], rel=1e-12)
    assert torch.equal(reference.kspace["T2"], brains[0].kspace["T2"])
    residual = ifft2c(reference.kspace["T1"][:, 0]) - reference.images["T1"]
    assert float(residual.abs().pow(2).mean().sqrt()) == pytest.approx(reference.noise_stds["T1"], rel=0.03)


# ----------------------------------------------------------------------------------------------- reference


def test_reference_shift_is_recorded_and_applied() -> None:
    realism = db.Realism(reference_shift_mm=2.0)
    brain = _brain(5, contrasts=("PD", "T2"), size=240, slices=1, noise_std=0.0, realism=realism, reference="PD")
    record = brain.misregistration
    shift_x, shift_y = record["shift_mm"]
    assert abs(shift_x) <= 2.0 and abs(shift_y) <= 2.0 and max(abs(shift_x), abs(shift_y)) > 0.5
    assert record["shift_px"] == pytest.approx([-shift_y, -shift_x])  # 1 mm pixels; x runs along −w, y along −h
    assert record["rotation_deg"] == 0.0 and record["resample_offset_px"] == [0.0, 0.0]
    assert brain.reference_tissues is not None
    target, moved = _tissue_image(brain.tissues)[0], _tissue_image(brain.reference_tissues)[0]
    estimate = _estimate_shift(target, moved)
    assert estimate == pytest.approx(record["shift_px"], abs=0.1)
    assert _estimate_shift(target, _tissue_image(_brain(5, contrasts=("T2",), size=240, slices=1).tissues)[0]) == (
        pytest.approx((0.0, 0.0), abs=0.02))  # the estimator itself: no shift found where there is none
    # The image of the reference contrast moves with its anatomy (bias, phase and coils stay in the scanner frame).
    plain = _brain(5, contrasts=("PD",), size=240, slices=1, noise_std=0.0, realism=realism)
    assert _estimate_shift(plain.targets["PD"][0], brain.targets["PD"][0]) == pytest.approx(record["shift_px"],
                                                                                           abs=0.1)


def test_reference_rotation_is_recorded_and_applied() -> None:
    realism = db.Realism(reference_rotation_deg=4.0)
    brain = _brain(2, contrasts=("PD", "T2"), size=128, slices=1, noise_std=0.0, realism=realism, reference="PD")
    angle = brain.misregistration["rotation_deg"]
    assert 1.0 < abs(angle) <= 4.0 and brain.misregistration["shift_mm"] == [0.0, 0.0]
    assert brain.reference_tissues is not None
    target, moved = _tissue_image(brain.tissues)[0], _tissue_image(brain.reference_tissues)[0]
    candidates = np.arange(-6.0, 6.01, 0.25)
    errors = np.array([float((_rotate(target, a) - moved)[16:-16, 16:-16].pow(2).mean()) for a in candidates])
    best = int(np.argmin(errors))
    left, mid, right = errors[best - 1 : best + 2]
    estimate = candidates[best] + 0.25 * 0.5 * (left - right) / (left - 2 * mid + right)  # parabola vertex
    assert estimate == pytest.approx(angle, abs=0.15)
    assert errors[best] < 0.2 * errors[np.argmin(np.abs(candidates))]  # far better than no rotation


def test_reference_resampling_is_a_linear_interpolation_round_trip() -> None:
    """The reference's object goes through a shift by the recorded sub-pixel offset with linear interpolation and
    back; bias field, phase, coils and (white) noise come after it, as for every contrast."""
    options: dict[str, object] = {"contrasts": ("PD", "T2"), "coils": 3, "size": 64, "noise_std": 0.01,
                                  "reference": "PD"}
    plain = _brain(1, **options)
    resampled = _brain(1, **options, realism=db.Realism(reference_resample=True))
    offset_h, offset_w = resampled.misregistration["resample_offset_px"]
    assert 0 < offset_h < 1 and 0 < offset_w < 1

    def round_trip(image: torch.Tensor) -> torch.Tensor:  # shift by the offset with linear interpolation, and back
        for dim, delta in ((-2, offset_h), (-1, offset_w)):
            shifted = (1 - delta) * image + delta * torch.roll(image, -1, dims=dim)
            image = (1 - delta) * shifted + delta * torch.roll(shifted, 1, dims=dim)
        return image

    # Bias field and background phase of the subject at the pixel centres (scanner frame, float32 as simulated).
    params = plain.parameters
    s, h, w = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in (2, 64, 64)), indexing="ij")
    scanner = (torch.stack([h, w, s, torch.ones_like(h)], dim=-1) @ torch.from_numpy(plain.affine).T)[..., :3]
    scanner = scanner.float()
    factor = (1 + 0.1 * params.fields["bias"](scanner)) * torch.polar(
        torch.ones(()), math.pi * params.fields["phase"](scanner) + params.contrast_phase["PD"])
    expected = round_trip(plain.images["PD"] / factor) * factor
    torch.testing.assert_close(resampled.images["PD"], expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(resampled.targets["PD"], resampled.images["PD"].abs(), rtol=0, atol=1e-5)
    assert plain.sens_maps is not None
    noise = [b.kspace["PD"] - fft2c(sense_expand(b.images["PD"], plain.sens_maps)) for b in (plain, resampled)]
    torch.testing.assert_close(noise[1], noise[0], rtol=0, atol=1e-5)  # the same white noise, std as recorded
    assert torch.equal(resampled.kspace["T2"], plain.kspace["T2"])  # the target contrast is untouched
    # A blur with no net shift: the object's mean (DC) is kept, edges are softened, the content does not move.
    means = [complex((b.images["PD"] / factor).mean()) for b in (plain, resampled)]
    assert abs(means[1] - means[0]) < 1e-6 * abs(means[0])
    edges = [float((t[:, 1:] - t[:, :-1]).abs().mean()) for t in (plain.targets["PD"], resampled.targets["PD"])]
    assert edges[1] < 0.97 * edges[0]
    objects = [(b.images["PD"][0] / factor[0]).real for b in (plain, resampled)]
    assert _estimate_shift(*objects) == pytest.approx((0, 0), abs=1e-3)


# ------------------------------------------------------------------------------- sequences, texture, bias


def test_sequence_jitter_changes_contrast_within_the_bounds() -> None:
    jitter = 0.15
    realism = db.Realism(sequence_jitter=jitter)
    echo_times = set()
    for subject in range(4):
        brain = _brain(subject, contrasts=("T2", "FLAIR"), size=256, slices=1, noise_std=0.0, realism=realism)
        plain = _brain(subject, contrasts=("T2", "FLAIR"), size=256, slices=1, noise_std=0.0)
        wm = brain.tissues["WM"][0] > 0.98
        assert int(wm.sum()) > 500
        pd, t1, t2 = (torch.tensor(v, dtype=torch.float64) for v in brain.parameters.tissues["WM"])
        for contrast in ("T2", "FLAIR"):
            applied, nominal = brain.sequences[contrast], db.SEQUENCES[contrast]
            for name in ("tr_ms", "te_ms", "ti_ms"):
                if getattr(nominal, name) is not None:
                    assert 1 - jitter <= getattr(applied, name) / getattr(nominal, name) <= 1 + jitter
            assert applied != nominal
            if nominal.ti_ms is not None:  # the protocol's TI nulls nominal CSF at its own TR, up to ±j/5
                null = db._null_ti(db.TISSUE_PARAMETERS["CSF"][1], applied.tr_ms)
                assert abs(applied.ti_ms / null - 1) <= jitter / 5 + 1e-9
            # The images follow the recorded sequence: WM signal ratio jittered / nominal = signal-equation ratio.
            ratio = (brain.targets[contrast][0] / plain.targets[contrast][0])[wm]
            predicted = float(applied.signal(pd, t1, t2) / nominal.signal(pd, t1, t2))
            assert float(ratio.median()) == pytest.approx(predicted, rel=0.01)
        echo_times.add(brain.sequences["T2"].te_ms)
    assert len(echo_times) == 4  # protocols differ between subjects


def test_texture_has_the_requested_std_and_is_shared_between_contrasts() -> None:
    field = db.TextureField.draw(np.random.default_rng(7), 0.08)
    assert field.std == pytest.approx(0.08)
    wavelengths = 2 * math.pi / np.linalg.norm(field.wavevectors, axis=1)
    assert wavelengths.min() >= 2.0 and wavelengths.max() <= 10.0
    points = torch.from_numpy(np.random.default_rng(8).uniform(-100, 100, (20000, 3)))
    assert float(field(points).std()) == pytest.approx(0.08, rel=0.05)
    origin = torch.tensor([[10.0, -30.0, 5.0]], dtype=torch.float64)
    step_h, step_w = torch.tensor([0.1, -0.9, 0.05]), torch.tensor([-0.9, -0.1, 0.02])
    index = torch.arange(96, dtype=torch.float64)
    grid = origin[:, None, None] + index[:, None, None] * step_h.double() + index[None, :, None] * step_w.double()
    torch.testing.assert_close(field.on_grid(origin, step_h, step_w, 96, 96).double(), field(grid), rtol=0, atol=1e-5)

    amount = 0.08
    options: dict[str, object] = {"contrasts": ("PD", "T2"), "size": 256, "slices": 1, "noise_std": 0.0}
    plain = _brain(0, **options)
    textured = _brain(0, **options, realism=db.Realism(texture=amount))
    other = _brain(1, **options, realism=db.Realism(texture=amount))
    other_plain = _brain(1, **options)
    wm = plain.tissues["WM"][0] > 0.9
    ratio = {c: (textured.targets[c][0] / plain.targets[c][0])[wm].double() - 1 for c in ("PD", "T2")}
    te_over_t2 = 15.0 / plain.parameters.tissues["WM"][2]  # the T2 texture also reaches the PD contrast a little
    assert float(ratio["PD"].std()) == pytest.approx(amount * math.sqrt(1 + te_over_t2**2), rel=0.15)
    shared = float(torch.corrcoef(torch.stack([ratio["PD"], ratio["T2"]]))[0, 1])
    unrelated = (other.targets["PD"][0] / other_plain.targets["PD"][0])[wm].double() - 1
    assert shared > 0.5 and abs(float(torch.corrcoef(torch.stack([ratio["PD"], unrelated]))[0, 1])) < 0.2
    # High-pass residuals of the textured images themselves correlate between the contrasts inside WM.
    residual = {c: textured.targets[c][0] - F.avg_pool2d(textured.targets[c], 5, 1, 2)[0] for c in ratio}
    inner = -F.max_pool2d(-wm[None].float(), 5, 1, 2)[0] > 0.5  # WM eroded by 2 pixels
    high_pass = float(torch.corrcoef(torch.stack([residual["PD"][inner], residual["T2"][inner]]).double())[0, 1])
    assert high_pass > 0.5
    csf = plain.tissues["CSF"][0] > 0.999  # fluid: no texture
    torch.testing.assert_close(textured.targets["T2"][0][csf], plain.targets["T2"][0][csf], rtol=1e-3, atol=0)


def test_bias_amplitude_and_per_contrast_fields() -> None:
    options: dict[str, object] = {"contrasts": ("T1", "T2"), "noise_std": 0.0}
    flat = _brain(0, **options, realism=db.Realism(bias_amplitude=0.0))
    mask = flat.targets["T1"] > 0.05 * flat.targets["T1"].max()

    def bias(realism: db.Realism) -> dict[str, torch.Tensor]:
        brain = _brain(0, **options, realism=realism)
        return {c: (brain.targets[c] / flat.targets[c])[mask] for c in brain.contrasts}

    default, shared, own = bias(db.Realism()), bias(db.Realism(bias_amplitude=0.25)), bias(
        db.Realism(bias_amplitude=0.25, bias_per_contrast=True))
    for fields, amplitude in ((default, 0.10), (shared, 0.25), (own, 0.25)):
        for values in fields.values():
            assert 1 - amplitude - 1e-5 <= float(values.min()) and float(values.max()) <= 1 + amplitude + 1e-5
    torch.testing.assert_close(shared["T1"], shared["T2"])  # one session field
    torch.testing.assert_close(shared["T1"] - 1, (default["T1"] - 1) * 2.5, rtol=1e-4, atol=1e-5)  # same shape
    assert float((own["T1"] - own["T2"]).abs().max()) > 0.05  # every contrast its own field
    assert float(own["T1"].max() - own["T1"].min()) > 0.1


# ----------------------------------------------------------------------------------- config and data set


def test_config_parses_realism_and_names_bad_keys() -> None:
    config = load_config(CONFIGS / "tiny_sr_edsr.yaml", ["data.source.realism=realistic"])
    source = config.data.source
    assert isinstance(source, DigitalBrainSource) and source.realism == db.Realism.realistic()
    assert parse_config(config.to_dict()) == config  # the stored (checkpoint) form parses back
    assert load_config(CONFIGS / "tiny_sr_edsr.yaml").data.source.realism == db.Realism()
    mapping = load_config(CONFIGS / "tiny_sr_edsr.yaml",
                          ["data.source.realism={texture: 0.05, noise_std_range: [0.002, 0.01]}"])
    assert mapping.data.source.realism == db.Realism(texture=0.05, noise_std_range=(0.002, 0.01))
    for override, key in (
        ("data.source.realism={texture: 0.05, bogus: 1}", "data.source.realism.bogus"),
        ("data.source.realism={texture: 0.5}", "data.source.realism.texture"),
        ("data.source.realism={noise_std_range: [0.01]}", "data.source.realism.noise_std_range"),
        ("data.source.realism={bias_per_contrast: 2}", "data.source.realism.bias_per_contrast"),
        ("data.source.realism=extreme", "data.source.realism"),
    ):
        with pytest.raises(ConfigError) as info:
            load_config(CONFIGS / "tiny_sr_edsr.yaml", [override])
        assert info.value.key == key, override


def test_brain_parameters_are_json_stable_and_name_the_layout(tmp_path: Path) -> None:
    default = DigitalBrainSource()
    assert "realism" not in _brain_parameters(default)  # off: the files of before realism existed
    assert _brain_parameters(default)["layout"] == sim.LAYOUT_VERSION == 2
    # layout 2 (the .h5 files in multicoil/ or singlecoil/) changed the hash from 6c1aad34d3d60704
    assert digital_brain_dir(default).name == "31493376a1a23034"
    old = tmp_path / "old"  # a folder simulated with layout 1 (every file at the top) is refused, with advice
    old.mkdir()
    config = load_config(CONFIGS / "tiny_sr_edsr.yaml", [f"data.source.dir={old}"])
    old_parameters = {k: v for k, v in _brain_parameters(config.data.source).items() if k != "layout"}
    (old / DATASET_MARKER).write_text(json.dumps(old_parameters))
    with pytest.raises(ConfigError, match=r"layout of an older accelmri.*delete the folder") as info:
        prepare_data(config.data)
    assert info.value.key == "data.source.dir"
    realistic = DigitalBrainSource(realism=db.Realism.realistic(), reference="PD")
    parameters = _brain_parameters(realistic)
    assert parameters["realism"] == db.Realism.realistic().to_dict()
    assert json.loads(json.dumps(parameters)) == parameters  # the marker compares after a JSON round trip
    assert digital_brain_dir(realistic) != digital_brain_dir(DigitalBrainSource(reference="PD"))
    same = DigitalBrainSource(realism=db.Realism.from_value(json.loads(json.dumps(db.Realism.realistic().to_dict()))),
                              reference="PD")
    assert digital_brain_dir(same) == digital_brain_dir(realistic)


def test_prepare_data_writes_realism_records_and_reuses_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "brain"
    overrides = [f"data.source.dir={folder}", "data.source.realism=realistic", "data.source.reference=PD",
                 "data.source.subjects=2", "data.source.size=32", "data.source.slices=2"]
    config = load_config(CONFIGS / "tiny_sr_edsr.yaml", overrides)
    prepare_data(config.data)
    marker = json.loads((folder / DATASET_MARKER).read_text())
    assert marker["realism"] == db.Realism.realistic().to_dict()
    prepare_data(config.data)  # the marker matches after its JSON round trip: reused, not refused
    assert (folder / "pairs.csv").read_text().splitlines()[0] == ("singlecoil/brain_sub000_PD.h5,"
                                                                   "singlecoil/brain_sub000_T2.h5")
    expected = db.digital_brain_subject(1, ("PD", "T2"), coils=1, size=32, slices=2,
                                        realism=db.Realism.realistic(), reference="PD")
    with h5py.File(folder / "singlecoil" / "brain_sub001_PD.h5", "r") as file:
        attrs = dict(file.attrs)
        np.testing.assert_array_equal(file["kspace"][()], expected.kspace["PD"][:, 0].numpy())
    assert json.loads(attrs["realism"]) == db.Realism.realistic().to_dict()
    record = expected.misregistration
    for key in ("shift_mm", "shift_px", "resample_offset_px"):
        np.testing.assert_allclose(attrs[f"reference_{key}"], record[key])
    for key in ("rotation_deg", "slice_thickness_mm", "noise_scale"):
        assert float(attrs[f"reference_{key}"]) == pytest.approx(record[key])
    assert attrs["noise_std"] == pytest.approx(expected.noise_stds["PD"])
    assert attrs["tr_ms"] == pytest.approx(expected.sequences["PD"].tr_ms)
    with h5py.File(folder / "singlecoil" / "brain_sub001_T2.h5", "r") as file:
        assert not any(key.startswith("reference_") for key in file.attrs)
        assert file.attrs["te_ms"] == pytest.approx(expected.sequences["T2"].te_ms)
    changed = load_config(CONFIGS / "tiny_sr_edsr.yaml", [*overrides, "data.source.realism={texture: 0.05}"])
    with pytest.raises(ConfigError, match="other parameters"):
        prepare_data(changed.data)


def test_simulate_dataset_reference_must_come_first(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="first contrast"):
        sim.simulate_dataset(tmp_path / "out", ["T1", "T2"], coils=1, subjects=1, size=32, slices=1, reference="T2")
    with pytest.raises(TypeError, match="Realism"):
        sim.simulate_dataset(tmp_path / "out", ["T1"], coils=1, subjects=1, size=32, slices=1,
                             realism="realistic")
    assert not (tmp_path / "out").exists()
