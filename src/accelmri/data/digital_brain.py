"""The digital brain: the embedded default data set (design/data.md, "What we ship: an embedded default").

Real anatomy, simulated physics. Every subject is an axial multi-slice 2-D scan of one brain, in several
contrasts, as multi-coil (or single-coil) Cartesian k-space with noise, plus the noise-free RSS target, the tissue
fractions and the voxel → RAS affine.

Anatomy (built once, cached, see :func:`load_tissue_maps`)
    The ICBM152 2009 (nonlinear symmetric) templates that nilearn bundles (no network access):
    ``load_mni152_template``, ``load_mni152_gm_template`` and ``load_mni152_wm_template`` at 1 mm,
    197 × 233 × 189 voxels (BSD-3 nilearn; template © McConnell Brain Imaging Centre, free use with citation:
    Fonov et al., NeuroImage 54(1):313–327, 2011). The T1 template is skull-stripped, so:

    * ``GM``, ``WM``: the template probabilities as they are (their sum never exceeds 1).
    * ``CSF``: inside the brain mask (the hole-filled support of the skull-stripped T1 template, which includes
      ventricles and sulci, where the T1 template is dark) ``clip(mask − GM − WM, 0, 1)``; plus a 2.5 mm rim
      of extracerebral CSF outside the mask.
    * A synthetic head shell at fixed distances ``d`` (Euclidean distance transform) outside the brain mask:
      skull 2.5–8.5 mm (cortical bone: a signal void, not stored), subcutaneous ``fat`` 8.5–12.5 mm and
      ``muscle`` (skin/galea/muscle) 12.5–14.5 mm, with 1 mm linear ramps (partial volume) at every boundary.

    Limits: one anatomy for every subject (subjects differ by pose, tissue parameters, fields and coils, not by
    brain shape), a shell of constant thickness (no face, orbits, sinuses, neck or temporal muscle; the shell is
    cut at the bottom of the template grid, z = −72 mm), 1 mm templates averaged over many brains (smoother than
    a single brain), no vessels, lesions, flow or susceptibility effects. Use it for the demo, CI and relative
    comparisons, not for headline numbers.

Tissue parameters at 1.5 T (``TISSUE_PARAMETERS``): relaxation times from the BrainWeb-style table in
design/data.md, except GM / WM T2, which the table gives as 85 / 85 ms: with equal T2 the FLAIR shows WM brighter
than GM and T2w has almost no GM/WM contrast, so they are separated to 95 / 75 ms, within the range of published
1.5 T values. PD is the relative water content (GM ≈ 0.8, WM ≈ 0.7).

    ======  =====  =======  =======
    tissue  PD     T1 / ms  T2 / ms
    ======  =====  =======  =======
    CSF     1.00   3000     2500
    GM      0.80   1050     95
    WM      0.70   700      75
    fat     0.90   250      85
    muscle  0.75   1050     50
    ======  =====  =======  =======

    Per subject (seeded) every parameter is scaled by ``(1 + g)(1 + e)``: ``g ~ U(−6 %, 6 %)`` common to all
    tissues (per parameter) and ``e ~ U(−2 %, 2 %)`` per tissue and parameter, so tissue contrasts stay
    physiological. Within a subject, PD, T1 and T2 vary smoothly in space (anatomical coordinates) by ``±5 %``
    (:class:`SmoothField`, wavelengths 120–400 mm). Over subjects 0–19 (pure-tissue means of the target):
    T1w WM/GM 1.09–1.18, T2w GM/WM 1.42–1.58, T2w CSF/GM 2.3–2.5, FLAIR GM/WM 1.04–1.22, FLAIR CSF/WM
    0.07–0.27 (CSF is nulled only for the nominal CSF T1; the subject's T1 jitter leaves a residual, as in real
    FLAIR), PDFS/PD fat 0.055.

Sequences (``SEQUENCES``; TR, TE, TI in ms; spin-echo ``S = PD (1 − e^{−TR/T1}) e^{−TE/T2}``, inversion recovery
``S = PD |1 − 2 e^{−TI/T1} + e^{−TR/T1}| e^{−TE/T2}``)

    ========  ============================  =====  ====  ======  =====================================
    contrast  sequence                      TR     TE    TI      notes
    ========  ============================  =====  ====  ======  =====================================
    T1        spin echo                     500    15    —       WM > GM > CSF
    T2        spin echo                     4000   100   —       CSF > GM > WM
    PD        spin echo                     4000   15    —       CSF > GM > WM, fat bright
    FLAIR     inversion recovery            9000   100   1934    TI nulls nominal CSF:
                                                                 ``T1·ln(2 / (1 + e^{−TR/T1}))``
                                                                 (→ ``T1·ln 2`` as TR → ∞)
    PDFS      spin echo + fat saturation    4000   15    —       PD with fat signal × 0.05 (residual)
    ========  ============================  =====  ====  ======  =====================================

Acquisition geometry
    ``slices`` contiguous axial slices of ``slice_thickness_mm`` (rectangular slice profile: every slice is the
    mean of ``round(thickness / 1 mm)`` planes through it), centred at MNI ``z = slab_center_mm``, in a square
    field of view of ``fov_mm`` centred on the head (MNI ``x = 0, y = −17 mm``). The subject is placed in it by a
    seeded rigid transform (rotations ``U(−3°, 3°)`` about each axis, translations ``U(−3, 3)`` mm, about the
    point ``(0, −17, 15)`` mm). The object is sampled on a grid of at most 1 mm pixels (an integer multiple ``f`` of
    the matrix) and band-limited to the ``size × size`` matrix by cropping its k-space
    (:func:`accelmri.physics.degrade.lowres`): small matrices show the Gibbs ringing and partial volume of a real
    low-resolution scan instead of aliasing. A smooth receive bias ``1 ± 10 %`` and a smooth background phase
    (``±π``, plus a constant per contrast) are applied in scanner coordinates, then birdcage coil sensitivities
    (:func:`accelmri.physics.sensitivity.birdcage_maps`; the array is rotated by a seeded angle and its radius
    jittered, 1.35–1.65 half-FOVs), the centred orthonormal FFT (:func:`accelmri.physics.fft.fft2c`) and complex
    Gaussian noise. All contrasts of a subject share one pose, bias field and coil array (one session); noise is
    independent per contrast.

Determinism
    Everything random derives from ``numpy.random.default_rng([seed, subject, stream])`` (stream 0: subject
    parameters, stream ``1 + i``: noise of ``CONTRASTS[i]``), so a subject is bit-identical for the same
    arguments on the same platform, its pose, tissue parameters, fields and coil placement do not depend on which
    contrasts, matrix size or coil count are requested (nor a contrast's noise on the other contrasts requested),
    and different subjects differ. Split train/val/test by subject. Because every
    subject shares one anatomy, a stricter split also puts the splits on disjoint slabs (``slab_center_mm``) with
    a gap between them, so that no anatomy is seen in training and test.

Cost (2 shared CPU cores): building the cache ≈ 5.5 s once (nilearn import, hole filling, distance transform),
a 5.4 MB ``.npz`` (uint8 fractions, 5 × 175 × 211 × 170), read back in 0.07 s; one subject with 4 contrasts ×
16 slices × 256² × 8 coils 1.9–3.5 s (268 MB of k-space).
"""

from __future__ import annotations

import functools
import math
import os
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from accelmri.io import atomic_output
from accelmri.physics.coils import rss, sense_expand
from accelmri.physics.degrade import lowres
from accelmri.physics.fft import fft2c, ifft2c
from accelmri.physics.sensitivity import birdcage_maps

__all__ = [
    "CACHE_ENV",
    "CONTRASTS",
    "SEQUENCES",
    "TISSUES",
    "TISSUE_PARAMETERS",
    "BrainSubject",
    "PulseSequence",
    "SmoothField",
    "SubjectParameters",
    "TissueMaps",
    "canonical_contrast",
    "default_cache_dir",
    "digital_brain_subject",
    "load_tissue_maps",
    "subject_parameters",
]

#: Environment variable naming the accelmri cache root (the digital brain lives in ``$ACCELMRI_CACHE/digital_brain``).
CACHE_ENV = "ACCELMRI_CACHE"
#: Bump when the tissue-map construction changes: the cache file name carries it, so old caches are ignored.
_CACHE_VERSION = 1
_CACHE_NAME = f"tissue_maps_v{_CACHE_VERSION}.npz"

TISSUES: tuple[str, ...] = ("CSF", "GM", "WM", "fat", "muscle")
#: Nominal ``(PD, T1 ms, T2 ms)`` per tissue at 1.5 T (module docstring).
TISSUE_PARAMETERS: dict[str, tuple[float, float, float]] = {
    "CSF": (1.00, 3000.0, 2500.0),
    "GM": (0.80, 1050.0, 95.0),
    "WM": (0.70, 700.0, 75.0),
    "fat": (0.90, 250.0, 85.0),
    "muscle": (0.75, 1050.0, 50.0),
}

# Head-shell layers outside the brain mask: (tissue, inner distance, outer distance) in mm; skull 2.5–8.5 mm.
_SHELL_LAYERS: tuple[tuple[str, float, float], ...] = (("CSF", 0.0, 2.5), ("fat", 8.5, 12.5), ("muscle", 12.5, 14.5))
_FOV_CENTRE_MM = (0.0, -17.0)  # MNI (x, y) of the head centre: the field-of-view centre
_ROTATION_CENTRE_MM = (0.0, -17.0, 15.0)  # MNI point the subject's rigid transform rotates about
_MAX_ROTATION_DEG = 3.0
_MAX_TRANSLATION_MM = 3.0
_GLOBAL_JITTER = 0.06  # per-subject parameter scale common to all tissues, U(−6 %, 6 %)
_TISSUE_JITTER = 0.02  # per-subject, per-tissue parameter scale, U(−2 %, 2 %)
_PROPERTY_FIELD_AMPLITUDE = 0.05  # smooth spatial variation of PD, T1 and T2
_BIAS_FIELD_AMPLITUDE = 0.10  # smooth receive/transmit intensity non-uniformity
_PHASE_FIELD_AMPLITUDE = math.pi  # smooth background phase, radians
_COIL_RADIUS_RANGE = (1.35, 1.65)  # birdcage radius in half-FOV units
_MAX_PLANE_SPACING_MM = 1.0  # object sampled at ≤ 1 mm (the template resolution) in-plane and through-slice


@dataclass(frozen=True)
class PulseSequence:
    """A 2-D spin-echo or inversion-recovery sequence and its signal equation.

    Attributes:
        name: contrast name (``T1``, ``T2``, ``PD``, ``FLAIR``, ``PDFS``).
        tr_ms: repetition time TR in ms.
        te_ms: echo time TE in ms.
        ti_ms: inversion time TI in ms (inversion recovery), ``None`` for spin echo.
        fat_residual: factor applied to the fat signal (1 = no fat suppression; 0.05 = 95 % fat saturation).
    """

    name: str
    tr_ms: float
    te_ms: float
    ti_ms: float | None = None
    fat_residual: float = 1.0

    def signal(self, pd: torch.Tensor, t1_ms: torch.Tensor, t2_ms: torch.Tensor) -> torch.Tensor:
        """Steady-state magnitude signal (units of PD; a fully relaxed PD = 1 voxel gives 1).

        Spin echo ``PD (1 − e^{−TR/T1}) e^{−TE/T2}``; inversion recovery ``PD |1 − 2e^{−TI/T1} + e^{−TR/T1}|
        e^{−TE/T2}`` (ideal pulses, TE ≪ TR). Fat suppression is applied by the caller (it is tissue-specific).

        Args:
            pd, t1_ms, t2_ms: broadcastable float tensors (relative PD, T1 and T2 in ms).

        Returns:
            The signal, broadcast shape, float.
        """
        decay = torch.exp(-self.te_ms / t2_ms)
        recovery = torch.exp(-self.tr_ms / t1_ms)
        if self.ti_ms is None:
            return pd * (1 - recovery) * decay
        return pd * torch.abs(1 - 2 * torch.exp(-self.ti_ms / t1_ms) + recovery) * decay


def _null_ti(t1_ms: float, tr_ms: float) -> float:
    """Inversion time nulling a tissue of ``t1_ms``: ``T1·ln(2 / (1 + e^{−TR/T1}))``, ms."""
    return t1_ms * math.log(2 / (1 + math.exp(-tr_ms / t1_ms)))


#: The contrasts the digital brain synthesises (module docstring table).
SEQUENCES: dict[str, PulseSequence] = {
    "T1": PulseSequence("T1", tr_ms=500.0, te_ms=15.0),
    "T2": PulseSequence("T2", tr_ms=4000.0, te_ms=100.0),
    "PD": PulseSequence("PD", tr_ms=4000.0, te_ms=15.0),
    "FLAIR": PulseSequence(
        "FLAIR", tr_ms=9000.0, te_ms=100.0, ti_ms=float(round(_null_ti(TISSUE_PARAMETERS["CSF"][1], 9000.0)))
    ),
    "PDFS": PulseSequence("PDFS", tr_ms=4000.0, te_ms=15.0, fat_residual=0.05),
}
CONTRASTS: tuple[str, ...] = tuple(SEQUENCES)


def canonical_contrast(name: str) -> str:
    """The canonical spelling of a contrast name, case-insensitively (``"flair"`` → ``"FLAIR"``).

    Raises:
        ValueError: if ``name`` is not one of :data:`CONTRASTS`.
    """
    by_upper = {c.upper(): c for c in CONTRASTS}
    if not isinstance(name, str) or name.strip().upper() not in by_upper:
        raise ValueError(f"unknown contrast {name!r}; choose from {', '.join(CONTRASTS)}")
    return by_upper[name.strip().upper()]


# --------------------------------------------------------------------------------------------------- tissue maps


@dataclass(frozen=True, eq=False)
class TissueMaps:
    """The cached anatomy: tissue fractions on the 1 mm ICBM152 grid, cropped to the head.

    Attributes:
        fractions: ``(5, X, Y, Z)`` uint8, fraction × 255 of each tissue in :data:`TISSUES` order (per voxel the
            fractions sum to at most 1; the remainder is skull or air, which give no signal).
        affine: ``(4, 4)`` float64 voxel ``(i, j, k)`` → MNI (RAS) mm.
        path: the cache file.
    """

    fractions: np.ndarray
    affine: np.ndarray
    path: Path


def default_cache_dir() -> Path:
    """``$ACCELMRI_CACHE/digital_brain`` if the variable is set, else ``${XDG_CACHE_HOME:-~/.cache}/accelmri/…``."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / "digital_brain"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "accelmri" / "digital_brain"


def _layer(distance: np.ndarray, inner: float, outer: float) -> np.ndarray:
    """Fraction of a shell ``inner < d ≤ outer`` (mm) with 1 mm linear ramps at both boundaries."""
    return np.clip(distance - inner + 0.5, 0, 1) - np.clip(distance - outer + 0.5, 0, 1)


def _build_tissue_maps() -> tuple[np.ndarray, np.ndarray]:
    """Tissue fractions from nilearn's bundled ICBM152 2009 templates (module docstring, "Anatomy").

    Returns:
        ``(fractions, affine)``: ``(5, X, Y, Z)`` uint8 (fraction × 255) cropped to the head with a 1-voxel
        margin, and its ``(4, 4)`` voxel → MNI mm affine.

    Raises:
        ValueError: if the three templates do not share one 1 mm grid.
    """
    from nilearn import datasets  # slow import (~2 s): only when the cache is built
    from scipy import ndimage

    images = [
        datasets.load_mni152_template(resolution=1),
        datasets.load_mni152_gm_template(resolution=1),
        datasets.load_mni152_wm_template(resolution=1),
    ]
    affine = np.asarray(images[0].affine, dtype=np.float64)
    if any(img.shape != images[0].shape or not np.allclose(img.affine, affine) for img in images) or not np.allclose(
        np.abs(np.diag(affine)[:3]), 1.0
    ):
        raise ValueError("nilearn ICBM152 templates: T1, GM and WM are not on one 1 mm grid")
    t1, gm, wm = (img.get_fdata(dtype=np.float32) for img in images)
    brain = ndimage.binary_fill_holes((t1 > 0) | (gm + wm > 0.5))
    outside = ~brain
    distance = ndimage.distance_transform_edt(outside).astype(np.float32)  # mm outside the brain, 0 inside
    shells = {t: np.where(outside, _layer(distance, a, b), 0).astype(np.float32) for t, a, b in _SHELL_LAYERS}
    # CSF fills the brain mask where the templates put no GM/WM; the rim shares voxels with GM/WM that leak out.
    csf = np.where(brain, 1, shells["CSF"])
    fractions = {
        "CSF": np.clip(csf - gm - wm, 0, 1),
        "GM": gm,
        "WM": wm,
        "fat": shells["fat"],
        "muscle": shells["muscle"],
    }
    stacked = np.stack([fractions[t] for t in TISSUES])
    occupied = np.argwhere(stacked.sum(axis=0) > 0)
    low = np.maximum(occupied.min(axis=0) - 1, 0)
    high = np.minimum(occupied.max(axis=0) + 2, stacked.shape[1:])
    cropped = stacked[:, low[0] : high[0], low[1] : high[1], low[2] : high[2]]
    shift = np.eye(4)
    shift[:3, 3] = low
    quantised = np.round(np.clip(cropped, 0, 1) * 255).astype(np.uint8)
    return quantised, affine @ shift


def _read_cache(path: Path) -> TissueMaps:
    """Read a cache file written by :func:`load_tissue_maps` (raises on any malformed content)."""
    with np.load(path, allow_pickle=False) as npz:
        fractions, affine = npz["fractions"], npz["affine"]
        version, tissues = int(npz["version"]), tuple(str(t) for t in npz["tissues"])
    if (
        version != _CACHE_VERSION
        or tissues != TISSUES
        or fractions.dtype != np.uint8
        or fractions.ndim != 4
        or fractions.shape[0] != len(TISSUES)
        or affine.shape != (4, 4)
    ):
        raise ValueError(f"{path}: not a digital-brain tissue cache of version {_CACHE_VERSION}")
    return TissueMaps(fractions, affine, path)


def load_tissue_maps(cache_dir: str | Path | None = None) -> TissueMaps:
    """The digital brain's anatomy, built from the nilearn templates on first use and cached.

    The cache is one ``.npz`` (``tissue_maps_v1.npz``, ≈ 5 MB) in ``cache_dir``, written atomically (temporary
    file + ``os.replace``), so concurrent first uses are safe. A cache that cannot be read is rebuilt (with a
    warning).

    Args:
        cache_dir: folder of the cache file; ``None`` means :func:`default_cache_dir` (honours ``ACCELMRI_CACHE``).

    Returns:
        :class:`TissueMaps`.

    Raises:
        OSError: if the cache folder cannot be created or written.
    """
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = folder / _CACHE_NAME
    if path.exists():
        try:
            return _read_cache(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
            warnings.warn(f"rebuilding the digital-brain cache: {err}", RuntimeWarning, stacklevel=2)
    fractions, affine = _build_tissue_maps()
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=True, suffix=".npz") as tmp:
        np.savez_compressed(
            tmp, fractions=fractions, affine=affine, version=np.int64(_CACHE_VERSION), tissues=np.array(TISSUES)
        )
    return TissueMaps(fractions, affine, path)


@functools.lru_cache(maxsize=1)
def _tissue_volume(path: str, mtime_ns: int, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """The cached fractions as a ``(1, 5, Z, Y, X)`` float32 tensor, memoised per cache file.

    ``mtime_ns`` and ``size`` (of the file) only key the memo, so a rebuilt cache file is read again.

    Stored with the template's ``i`` (MNI x) axis last: it runs along the rows of an axial slice, so
    :func:`torch.nn.functional.grid_sample` reads memory nearly sequentially (4× faster than ``(X, Y, Z)``).
    """
    maps = _read_cache(Path(path))
    volume = torch.from_numpy(maps.fractions).permute(0, 3, 2, 1).to(torch.float32).div_(255).contiguous()
    volume = volume.unsqueeze(0)
    return volume, maps.affine


def _volume_for(cache_dir: str | Path | None) -> tuple[torch.Tensor, np.ndarray]:
    path = load_tissue_maps(cache_dir).path
    stat = path.stat()
    return _tissue_volume(str(path), stat.st_mtime_ns, stat.st_size)


# ---------------------------------------------------------------------------------------------- subject parameters


@dataclass(frozen=True, eq=False)
class SmoothField:
    """A smooth random field in ``[−1, 1]``: ``Σ_n w_n cos(k_n · r + φ_n)`` with ``Σ_n w_n = 1``.

    Attributes:
        wavevectors: ``(N, 3)`` float64, radians per mm (wavelengths 120–400 mm: low-frequency variation).
        phases: ``(N,)`` float64 radians.
        weights: ``(N,)`` float64, positive, summing to 1.
    """

    wavevectors: np.ndarray
    phases: np.ndarray
    weights: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator, terms: int = 6) -> SmoothField:
        """Random field with ``terms`` plane waves in random directions (draws a fixed number of values)."""
        directions = rng.standard_normal((terms, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        wavelengths = rng.uniform(120.0, 400.0, terms)
        phases = rng.uniform(0, 2 * math.pi, terms)
        weights = rng.uniform(0.5, 1.0, terms)
        return cls(directions * (2 * math.pi / wavelengths)[:, None], phases, weights / weights.sum())

    def __call__(self, points_mm: torch.Tensor) -> torch.Tensor:
        """Evaluate at ``(..., 3)`` float points (mm); returns ``(...)`` of the points' dtype, in ``[−1, 1]``."""
        k = torch.as_tensor(self.wavevectors, dtype=points_mm.dtype)
        phases = torch.as_tensor(self.phases, dtype=points_mm.dtype)
        weights = torch.as_tensor(self.weights, dtype=points_mm.dtype)
        return torch.cos(points_mm @ k.T + phases) @ weights


@dataclass(frozen=True, eq=False)
class SubjectParameters:
    """Everything random about one subject (drawn by :func:`subject_parameters`).

    Attributes:
        tissues: per tissue ``(PD, T1 ms, T2 ms)`` after the subject's jitter.
        rotation_deg: rotations about the x, y, z axes (degrees), applied as ``Rz·Ry·Rx``.
        translation_mm: translation of the head in MNI (RAS) mm.
        coil_rotation_deg: rotation of the birdcage array about the slice normal (degrees).
        coil_radius: birdcage radius in half-FOV units.
        fields: smooth fields ``pd``, ``t1``, ``t2`` (anatomical coordinates), ``bias`` and ``phase`` (scanner
            coordinates), see :class:`SmoothField`.
        contrast_phase: constant phase offset (radians) per contrast in :data:`CONTRASTS`.
    """

    tissues: dict[str, tuple[float, float, float]]
    rotation_deg: tuple[float, float, float]
    translation_mm: tuple[float, float, float]
    coil_rotation_deg: float
    coil_radius: float
    fields: dict[str, SmoothField]
    contrast_phase: dict[str, float]


def _check_index(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


def subject_parameters(subject: int, seed: int = 0) -> SubjectParameters:
    """Draw subject ``subject``'s parameters from ``default_rng([seed, subject, 0])`` (fixed draw order).

    They do not depend on the requested contrasts, matrix or coils, so a subject is the same person in every
    configuration.

    Raises:
        ValueError: if ``subject`` or ``seed`` is not a non-negative int.
    """
    _check_index("subject", subject)
    _check_index("seed", seed)
    rng = np.random.default_rng([int(seed), int(subject), 0])
    common = 1 + rng.uniform(-_GLOBAL_JITTER, _GLOBAL_JITTER, 3)
    tissues = {}
    for tissue in TISSUES:
        per_tissue = 1 + rng.uniform(-_TISSUE_JITTER, _TISSUE_JITTER, 3)
        nominal = np.asarray(TISSUE_PARAMETERS[tissue])
        tissues[tissue] = tuple(float(v) for v in nominal * common * per_tissue)
    rotation = tuple(float(v) for v in rng.uniform(-_MAX_ROTATION_DEG, _MAX_ROTATION_DEG, 3))
    translation = tuple(float(v) for v in rng.uniform(-_MAX_TRANSLATION_MM, _MAX_TRANSLATION_MM, 3))
    coil_rotation = float(rng.uniform(0.0, 360.0))
    coil_radius = float(rng.uniform(*_COIL_RADIUS_RANGE))
    fields = {name: SmoothField.draw(rng) for name in ("pd", "t1", "t2", "bias", "phase")}
    offsets = rng.uniform(-math.pi, math.pi, len(CONTRASTS))
    contrast_phase = {c: float(v) for c, v in zip(CONTRASTS, offsets, strict=True)}
    return SubjectParameters(tissues, rotation, translation, coil_rotation, coil_radius, fields, contrast_phase)


def _rotation_matrix(angles_deg: tuple[float, float, float]) -> np.ndarray:
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


# ------------------------------------------------------------------------------------------------------ subjects


@dataclass(frozen=True, eq=False)
class BrainSubject:
    """One simulated subject: every requested contrast of one axial slab.

    Shapes: ``S`` slices, ``C`` coils, ``H = W = size``. Intensities are in signal-equation units (a fully relaxed
    voxel of PD 1 at unit receive sensitivity has magnitude 1). k-space is centred (DC at ``(H//2, W//2)``),
    orthonormal (:mod:`accelmri.physics.fft`), phase encodes along ``W``.

    Attributes:
        subject: subject index.
        seed: data-set seed.
        contrasts: the contrasts, in request order (canonical names).
        images: per contrast ``(S, H, W)`` complex64 noise-free image (bias field and background phase included,
            before the coils).
        kspace: per contrast ``(S, C, H, W)`` complex64 noisy k-space (``C = 1``: the image itself, no coil map).
        targets: per contrast ``(S, H, W)`` float32 root-sum-of-squares of the noise-free coil images
            (``= |images|`` since the maps satisfy ``Σ_c |S_c|² = 1``).
        sens_maps: ``(C, H, W)`` complex64 coil sensitivities (``Σ_c |S_c|² = 1``), ``None`` for one coil.
        tissues: per tissue of :data:`TISSUES` ``(S, H, W)`` float32 fraction in ``[0, 1]`` (the object sampled at
            the pixel centres, before band-limiting).
        affine: ``(4, 4)`` float64 voxel ``(h, w, s)`` → RAS mm (scanner frame = MNI frame of an unmoved head);
            write a volume as NIfTI with ``data.transpose(1, 2, 0)`` (:mod:`accelmri.data.volume`).
        noise_std: complex noise std per k-space sample (``E|n|² = noise_std²``).
        parameters: the subject's :class:`SubjectParameters`.
    """

    subject: int
    seed: int
    contrasts: tuple[str, ...]
    images: dict[str, torch.Tensor]
    kspace: dict[str, torch.Tensor]
    targets: dict[str, torch.Tensor]
    sens_maps: torch.Tensor | None
    tissues: dict[str, torch.Tensor]
    affine: np.ndarray
    noise_std: float
    parameters: SubjectParameters


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_finite(name: str, value: float, minimum: float, inclusive: bool) -> None:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value < minimum if inclusive else value <= minimum):
        bound = f"≥ {minimum}" if inclusive else f"> {minimum}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")


def _coil_maps(coils: int, size: int, params: SubjectParameters) -> torch.Tensor:
    """Birdcage maps ``(C, size, size)`` complex64, array rotated by ``params.coil_rotation_deg``.

    :func:`birdcage_maps` places coil 0 at angle 0; the array is rotated by resampling maps computed on a grid
    ``≥ √2`` larger (same physical geometry), so the rotated square stays inside it. The maps are smooth, so
    bilinear interpolation is accurate; they are renormalised to ``Σ_c |S_c|² = 1`` afterwards.
    """
    big = 2 * math.ceil(size * math.sqrt(2) / 2) + 2
    maps = birdcage_maps((coils, big, big), radius=params.coil_radius * size / big)
    angle = math.radians(params.coil_rotation_deg)
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    y, x = torch.meshgrid(offsets, offsets, indexing="ij")
    # Output pixel at offset q samples the unrotated maps at R(−angle)·q (counter-clockwise array rotation).
    xs = math.cos(angle) * x + math.sin(angle) * y
    ys = -math.sin(angle) * x + math.cos(angle) * y
    grid = torch.stack([(xs + big // 2) * 2 / (big - 1) - 1, (ys + big // 2) * 2 / (big - 1) - 1], dim=-1)
    planes = torch.view_as_real(maps).permute(0, 3, 1, 2).reshape(1, 2 * coils, big, big).float()
    rotated = F.grid_sample(planes, grid[None].float(), mode="bilinear", align_corners=True)
    rotated = torch.view_as_complex(rotated.reshape(coils, 2, size, size).permute(0, 2, 3, 1).contiguous())
    return (rotated / rss(rotated, dim=0).clamp_min(1e-12)).to(torch.complex64)


def digital_brain_subject(
    subject: int,
    contrasts: Sequence[str] = ("T1", "T2", "PD", "FLAIR"),
    coils: int = 8,
    size: int = 256,
    slices: int = 16,
    noise_std: float = 0.005,
    seed: int = 0,
    *,
    slice_thickness_mm: float = 5.0,
    fov_mm: float = 240.0,
    slab_center_mm: float = 12.0,
    cache_dir: str | Path | None = None,
) -> BrainSubject:
    """Simulate one subject of the digital brain (module docstring: anatomy, physics, geometry, determinism).

    Args:
        subject: subject index ``≥ 0`` (selects pose, tissue parameters, fields, coil placement and noise).
        contrasts: contrast names from :data:`CONTRASTS` (case-insensitive, no duplicates).
        coils: receive coils ``C ≥ 1``; ``1`` gives single-coil data (no coil map).
        size: even matrix size ``H = W`` (pixel ``fov_mm / size`` mm).
        slices: number of contiguous axial slices ``S``.
        noise_std: complex Gaussian noise std per k-space sample (real and imaginary parts ``noise_std/√2``
            each), in signal units; with orthonormal FFTs it is also the per-coil image noise. The default 0.005
            gives a WM SNR of ≈ 60 (T1), ≈ 43 (T2), ≈ 39 (FLAIR) in the RSS image.
        seed: data-set seed ``≥ 0``.
        slice_thickness_mm: slice thickness = slice spacing, mm.
        fov_mm: square field of view, mm.
        slab_center_mm: MNI ``z`` of the slab centre (default 12 mm: with 16 × 5 mm slices the slab spans
            −28…52 mm, ventricles to centrum semiovale). Slices outside the head are empty.
        cache_dir: tissue-map cache folder (``None``: :func:`default_cache_dir`).

    Returns:
        :class:`BrainSubject`.

    Raises:
        ValueError: on an unknown or repeated contrast, or an invalid number (odd ``size``, ``coils < 1``,
            negative ``noise_std``, …).
        OSError: if the cache cannot be written on first use.
    """
    _check_index("subject", subject)
    _check_index("seed", seed)
    if isinstance(contrasts, str):
        contrasts = (contrasts,)
    names = tuple(canonical_contrast(c) for c in contrasts)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"contrasts must be a non-empty list without repeats, got {list(contrasts)!r}")
    for name, value in (("coils", coils), ("size", size), ("slices", slices)):
        _check_positive_int(name, value)
    if size % 2:
        raise ValueError(f"size must be even (centred FFT convention), got {size}")
    _check_finite("noise_std", noise_std, 0.0, inclusive=True)
    _check_finite("slice_thickness_mm", slice_thickness_mm, 0.0, inclusive=False)
    _check_finite("fov_mm", fov_mm, 0.0, inclusive=False)
    _check_finite("slab_center_mm", slab_center_mm, -math.inf, inclusive=False)

    params = subject_parameters(subject, seed)
    volume, template_affine = _volume_for(cache_dir)
    factor = max(1, math.ceil(fov_mm / size / _MAX_PLANE_SPACING_MM - 1e-9))
    fine = size * factor
    fine_pixel = fov_mm / fine
    planes = max(1, round(slice_thickness_mm / _MAX_PLANE_SPACING_MM))

    # Scanner (MNI-frame) coordinates: pixel (h, w) of slice s at x = cx − (w − N//2)·p, y = cy − (h − N//2)·p.
    centre_x, centre_y = _FOV_CENTRE_MM
    offsets = (torch.arange(fine, dtype=torch.float64) - fine // 2) * fine_pixel
    xs, ys = centre_x - offsets, centre_y - offsets
    slice_z = slab_center_mm + (torch.arange(slices, dtype=torch.float64) - (slices - 1) / 2) * slice_thickness_mm
    plane_dz = ((torch.arange(planes, dtype=torch.float64) + 0.5) / planes - 0.5) * slice_thickness_mm

    # Anatomical coordinates r = Rᵀ(p − c − t) + c, then template voxel indices v = A⁻¹ r.
    rot_t = torch.from_numpy(_rotation_matrix(params.rotation_deg).T)
    centre = torch.tensor(_ROTATION_CENTRE_MM, dtype=torch.float64)
    shift = centre - rot_t @ (centre + torch.tensor(params.translation_mm, dtype=torch.float64))
    inv_affine = torch.from_numpy(np.linalg.inv(template_affine))
    to_voxel, voxel_shift = inv_affine[:3, :3] @ rot_t, inv_affine[:3, :3] @ shift + inv_affine[:3, 3]
    dims = torch.tensor(volume.shape[2:], dtype=torch.float64).flip(0)  # voxel counts along (i, j, k)

    def anatomical(z: torch.Tensor, matrix: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``matrix·p + bias`` for the points (x over w, y over h, z over a leading axis): ``(Z, N, N, 3)``."""
        return (
            matrix[:, 0] * xs.view(1, 1, -1, 1)
            + matrix[:, 1] * ys.view(1, -1, 1, 1)
            + matrix[:, 2] * z.view(-1, 1, 1, 1)
            + bias
        )

    fractions = torch.empty(len(TISSUES), slices, fine, fine)
    for s in range(slices):
        voxels = anatomical(slice_z[s] + plane_dz, to_voxel, voxel_shift)
        grid = (voxels * (2 / (dims - 1)) - 1).to(torch.float32)  # (i, j, k) = grid_sample's (W, H, D) order
        sampled = F.grid_sample(volume, grid[None], mode="bilinear", padding_mode="zeros", align_corners=True)
        fractions[:, s] = sampled[0].mean(dim=1)

    positions = anatomical(slice_z, rot_t, shift).to(torch.float32)  # (S, fine, fine, 3) anatomical mm
    variation = {name: 1 + _PROPERTY_FIELD_AMPLITUDE * params.fields[name](positions) for name in ("pd", "t1", "t2")}
    del positions
    tissue_maps = {
        tissue: (pd * variation["pd"], t1 * variation["t1"], t2 * variation["t2"])
        for tissue, (pd, t1, t2) in params.tissues.items()
    }
    scanner = torch.stack(
        torch.broadcast_tensors(xs[::factor].view(1, 1, -1), ys[::factor].view(1, -1, 1), slice_z.view(-1, 1, 1)),
        dim=-1,
    ).to(torch.float32)  # (S, size, size, 3), the output pixel centres
    bias = 1 + _BIAS_FIELD_AMPLITUDE * params.fields["bias"](scanner)
    phase = _PHASE_FIELD_AMPLITUDE * params.fields["phase"](scanner)
    sens_maps = _coil_maps(coils, size, params) if coils > 1 else None
    # RSS of noise-free coil images S_c·x is |x|·sqrt(Σ_c |S_c|²): computed from the maps, not from C images.
    coil_gain = torch.ones(()) if sens_maps is None else rss(sens_maps, dim=0)

    images: dict[str, torch.Tensor] = {}
    kspace: dict[str, torch.Tensor] = {}
    targets: dict[str, torch.Tensor] = {}
    for name in names:
        sequence = SEQUENCES[name]
        magnitude = torch.zeros(slices, fine, fine)
        for index, tissue in enumerate(TISSUES):
            signal = sequence.signal(*tissue_maps[tissue])
            if tissue == "fat":
                signal = signal * sequence.fat_residual
            magnitude += fractions[index] * signal
        # Band-limit the ≤ 1 mm object to the matrix (as the scanner's finite k-space coverage does).
        obj = ifft2c(lowres(fft2c(magnitude), factor)) if factor > 1 else magnitude.to(torch.complex64)
        image = (obj * bias * torch.polar(torch.ones_like(phase), phase + params.contrast_phase[name])).to(
            torch.complex64
        )
        coil_images = image.unsqueeze(1) if sens_maps is None else sense_expand(image, sens_maps)
        measured = fft2c(coil_images)
        if noise_std > 0:
            rng = np.random.default_rng([int(seed), int(subject), 1 + CONTRASTS.index(name)])
            noise = rng.standard_normal((*measured.shape, 2), dtype=np.float32)
            noise *= np.float32(noise_std / math.sqrt(2))
            measured += torch.view_as_complex(torch.from_numpy(noise))
        images[name] = image
        kspace[name] = measured
        targets[name] = (image.abs() * coil_gain).to(torch.float32)

    pixel = fov_mm / size
    affine = np.array(
        [
            [0.0, -pixel, 0.0, centre_x + (size // 2) * pixel],
            [-pixel, 0.0, 0.0, centre_y + (size // 2) * pixel],
            [0.0, 0.0, slice_thickness_mm, float(slice_z[0])],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    tissues = {t: fractions[i, :, ::factor, ::factor].contiguous() for i, t in enumerate(TISSUES)}
    return BrainSubject(
        subject=int(subject),
        seed=int(seed),
        contrasts=names,
        images=images,
        kspace=kspace,
        targets=targets,
        sens_maps=sens_maps,
        tissues=tissues,
        affine=affine,
        noise_std=float(noise_std),
        parameters=params,
    )
