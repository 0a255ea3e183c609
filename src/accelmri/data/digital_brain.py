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

    Limits: one anatomy for every subject (by default subjects differ by pose, tissue parameters, fields and
    coils, not by brain shape; :class:`Realism` adds a smooth deformation of at most a few mm per subject, which
    changes shape but not topology: no new sulci, no atrophy), a shell of constant thickness (no face, orbits,
    sinuses, neck or temporal muscle; the shell is cut at the bottom of the template grid, z = −72 mm), 1 mm
    templates averaged over many brains (smoother than a single brain; :class:`Realism` adds a random fine
    texture, which is noise-like, not anatomical structure), no vessels, lesions, flow or susceptibility effects.
    Use it for the demo, CI and relative comparisons, not for headline numbers.

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

Realism (:class:`Realism`; all off by default, which is the simulation above bit for bit)
    Components that give the data the variability of real acquisitions, each switchable (``data.source.realism``
    in a config: ``none``, ``realistic`` or a mapping of the fields):

    ============================  ======  ============  =====================================================
    field                         off     realistic     effect (per subject unless said otherwise)
    ============================  ======  ============  =====================================================
    deformation_mm                0       3.0           smooth displacement of the anatomy, ``|u_j| ≤ D``,
                                                        wavelengths 40–120 mm, shared by all contrasts
    sequence_jitter               0       0.15          TR, TE × ``U(1 ± j)`` per contrast; TI nulls CSF at
                                                        the jittered TR, × ``U(1 ± j/5)``
    tissue_jitter                 0.02    0.05          per-tissue PD, T1, T2 × ``U(1 ± e)``
    texture                       0       0.04          relative std of a PD and a T2 texture (2–10 mm, not
                                                        CSF), anatomical coordinates: shared by all contrasts
    bias_amplitude                0.10    0.25          bias field ``1 ± a``
    bias_per_contrast             false   true          one bias field per contrast instead of per session
    noise_std_range               null    [.003, .015]  noise std log-uniform per contrast
    reference_shift_mm            0       1.0           reference translated ``U(±a)`` mm along x and y
    reference_rotation_deg        0       2.0           reference rotated ``U(±θ)`` about the slice normal
    reference_slice_thickness_mm  null    6.0           reference's own slice profile (same slice centres)
    reference_noise_scale         1       1.5           reference noise std × this
    reference_resample            false   true          reference object: linear-interpolation round trip
                                                        by a random sub-pixel offset (blur, no net shift)
    ============================  ======  ============  =====================================================

    The ``reference_*`` fields act on the contrast named by ``reference`` alone; the misregistration applied is
    recorded (:attr:`BrainSubject.misregistration`, HDF5 root attributes of the reference file). The reference
    object is sampled exactly with the extra rigid transform (the subject moved between the acquisitions; bias,
    phase and coils stay in the scanner frame). Over subjects 0–19 with ``realistic`` (noise-free targets,
    pure-tissue means, 128² × 2 slices): T1w WM/GM 1.03–1.28, T2w GM/WM 1.33–1.68, T2w CSF/GM 2.0–3.2, FLAIR
    GM/WM 0.98–1.36, FLAIR CSF/WM 0.06–0.56, T2w WM coefficient of variation 0.06–0.12 (bias field included;
    off: 0.02–0.05). (A first preset with tissue jitter 0.08, texture 0.08 and TI jittered ±15 % gave T1w WM/GM
    down to 1.00, FLAIR CSF/WM up to 1.36 and a grainy WM, CV 0.13–0.17: TI now follows the protocol's TR.)
    The deformation is evaluated at every plane of the
    slice profile (the template is sampled at ``r + u(r)``, ``r`` the subject's anatomical coordinates); the
    texture, like the smooth PD/T1/T2 fields, at the slice centres (not averaged over the slice profile).

Determinism
    Everything random derives from ``numpy.random.default_rng([seed, subject, stream])`` (stream 0: subject
    parameters, stream ``1 + i``: noise of ``CONTRASTS[i]``; :class:`Realism`: 100 deformation, 101 texture,
    102 reference misregistration, ``110 + i`` sequence jitter and noise level of ``CONTRASTS[i]``, ``120 + i``
    its own bias field, all drawn whatever the realism values, which only scale them; the tissue jitter scales
    stream 0's draws), so a subject is bit-identical for the same
    arguments on the same platform, its pose, tissue parameters, fields and coil placement do not depend on which
    contrasts, matrix size or coil count are requested (nor a contrast's noise on the other contrasts requested),
    and different subjects differ. Split train/val/test by subject. Because every
    subject shares one anatomy, a stricter split also puts the splits on disjoint slabs (``slab_center_mm``) with
    a gap between them, so that no anatomy is seen in training and test.

Cost (2 shared CPU cores): building the cache ≈ 5.5 s once (nilearn import, hole filling, distance transform),
a 5.4 MB ``.npz`` (uint8 fractions, 5 × 175 × 211 × 170), read back in 0.07 s (once per process: the volume is
memoised); one subject with 4 contrasts × 16 slices × 256² × 8 coils 1.9–3.5 s (268 MB of k-space). One subject
with T2 + FLAIR × 4 slices × 256², single coil, 1 thread: 0.16–0.25 s off (0.22–0.35 s before the memo was read
directly), 0.21–0.34 s ``realistic``, 0.41–0.46 s ``realistic`` with a reference (its misregistered object is
sampled a second time); measured on a loaded machine, compare within a row.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    "MAX_DEFORMATION_MM",
    "REALISM_PRESETS",
    "SEQUENCES",
    "TISSUES",
    "TISSUE_PARAMETERS",
    "BrainSubject",
    "PulseSequence",
    "Realism",
    "RealismError",
    "RealismParameters",
    "SmoothField",
    "SubjectParameters",
    "TextureField",
    "TissueMaps",
    "canonical_contrast",
    "default_cache_dir",
    "digital_brain_subject",
    "load_tissue_maps",
    "realism_parameters",
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

# Realism (class Realism): random streams default_rng([seed, subject, stream]) of its components. Streams 0 and
# 1 + i (subject parameters, noise of CONTRASTS[i]) are the original ones, so realism off draws the same values.
_STREAM_DEFORMATION = 100
_STREAM_TEXTURE = 101
_STREAM_REFERENCE = 102
_STREAM_PROTOCOL = 110  # + CONTRASTS index: that contrast's sequence jitter and noise level
_STREAM_BIAS = 120  # + CONTRASTS index: that contrast's own bias field
_DEFORMATION_TERMS = 4  # plane waves per displacement component
_DEFORMATION_WAVELENGTHS_MM = (40.0, 120.0)
#: Largest ``Realism.deformation_mm`` for which ``r ↦ r + u(r)`` is guaranteed invertible (no folding): each
#: displacement component has a gradient of at most ``D·2π/λ_min``, so ``‖∇u‖ ≤ √3·D·2π/λ_min < 1``. ≈ 3.68 mm.
MAX_DEFORMATION_MM = _DEFORMATION_WAVELENGTHS_MM[0] / (2 * math.pi * math.sqrt(3))
_TEXTURE_TERMS = 256  # plane waves per texture field
_TEXTURE_WAVELENGTHS_MM = (2.0, 10.0)  # log-uniform
_MAX_TEXTURE = 0.25
_MIN_TEXTURE_FACTOR = 0.05  # 1 + texture is clamped here (reached only beyond ≈ 3.8 standard deviations)


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
            pd: relative proton density, a broadcastable float tensor.
            t1_ms: T1 in ms, a broadcastable float tensor.
            t2_ms: T2 in ms, a broadcastable float tensor.

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


# ------------------------------------------------------------------------------------------------------- realism


class RealismError(ValueError):
    """An invalid :class:`Realism` field.

    Attributes:
        field: the field's name (e.g. ``"texture"``).
        problem: what is wrong with its value.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"realism.{field}: {problem}")


def _real(name: str, value: object, low: float, high: float = math.inf) -> float:
    """``value`` as a float in ``[low, high]``; raises :class:`RealismError` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise RealismError(name, f"expected a number, got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and low <= number <= high):
        bound = f"in [{low:g}, {high:g}]" if math.isfinite(high) else f"≥ {low:g}"
        raise RealismError(name, f"must be a finite number {bound}, got {value!r}")
    return number


@dataclass(frozen=True)
class Realism:
    """How far a digital-brain subject departs from the idealised default towards the variability of real scans.

    The defaults reproduce the original simulation bit for bit (every component off); :meth:`realistic` switches
    everything on. Every component draws from its own random stream (module docstring, "Determinism"), so
    switching one on or off leaves the draws of the others unchanged. Fields are validated on construction.

    Attributes:
        deformation_mm: amplitude ``D`` (mm) of a smooth nonlinear deformation of the anatomy, ``0 ≤ D ≤``
            :data:`MAX_DEFORMATION_MM`: the template is sampled at ``r + u(r)`` with ``u_j = D · f_j(r)``, each
            ``f_j`` a :class:`SmoothField` of 4 plane waves with wavelengths 40–120 mm (so ``|u_j| ≤ D`` per axis,
            ``r`` the subject's anatomical coordinates). One anatomy per subject: all its contrasts share it.
        sequence_jitter: ``j``: per subject and contrast TR and TE are scaled by independent factors from
            ``U(1 − j, 1 + j)`` (protocols differ between sites); an inversion time is set to null nominal CSF at
            the jittered TR and then scaled by ``U(1 − j/5, 1 + j/5)`` (CSF is nulled imperfectly).
        tissue_jitter: half-width of the per-subject, per-tissue, per-parameter scale ``U(1 − e, 1 + e)`` of PD, T1
            and T2 (default 0.02 as before; the common ``±6 %`` scale is unchanged).
        texture: relative standard deviation of a fine multiplicative texture of PD and, independently, of T2 in
            every tissue except CSF: :class:`TextureField` (256 plane waves, wavelengths 2–10 mm) in anatomical
            coordinates, so every contrast (and the misregistered reference) shows the same texture. At most 0.25.
        bias_amplitude: amplitude of the smooth intensity non-uniformity ``1 ± a`` (default 0.10 as before),
            ``0 ≤ a ≤ 0.9``.
        bias_per_contrast: give every contrast its own bias field (transmit differs between sequences) instead of
            one shared by the session.
        noise_std_range: ``(low, high)``, ``0 < low ≤ high``: per subject and contrast the k-space noise std is
            drawn log-uniformly from it instead of the ``noise_std`` argument (``None``: that argument).
        reference_shift_mm: ``a``: the reference contrast's content is translated by ``U(−a, a)`` mm along x and
            along y (in-plane; patient motion between the two acquisitions).
        reference_rotation_deg: ``θ``: the reference's content is also rotated by ``U(−θ, θ)`` degrees about the
            slice normal through the field-of-view centre.
        reference_slice_thickness_mm: the reference's own slice thickness (rectangular profile over that many
            ≤ 1 mm planes, the same slice centres), ``None``: the target's.
        reference_noise_scale: the reference's noise std is this multiple of the std it would otherwise have.
        reference_resample: the reference is "acquired on its own grid and resampled onto the target grid": its
            object (band-limited to the matrix, before bias field, phase and coils) is shifted by a random
            sub-pixel offset ``U(0, 1)`` px per axis with linear interpolation and back: a symmetric 3-tap blur
            ``[δ(1 − δ), (1 − δ)² + δ², δ(1 − δ)]`` per axis, no net shift, mean kept. Its noise stays white, with
            the recorded std (a resampled magnitude image would have smoothed noise too; blurring the complex
            coil images instead would also lose magnitude wherever the background phase varies).

    The ``reference_*`` fields act only on the contrast named by ``reference`` in :func:`digital_brain_subject`.
    """

    deformation_mm: float = 0.0
    sequence_jitter: float = 0.0
    tissue_jitter: float = _TISSUE_JITTER
    texture: float = 0.0
    bias_amplitude: float = _BIAS_FIELD_AMPLITUDE
    bias_per_contrast: bool = False
    noise_std_range: tuple[float, float] | None = None
    reference_shift_mm: float = 0.0
    reference_rotation_deg: float = 0.0
    reference_slice_thickness_mm: float | None = None
    reference_noise_scale: float = 1.0
    reference_resample: bool = False

    def __post_init__(self) -> None:
        limits = {
            "deformation_mm": (0.0, MAX_DEFORMATION_MM),
            "sequence_jitter": (0.0, 0.5),
            "tissue_jitter": (0.0, 0.5),
            "texture": (0.0, _MAX_TEXTURE),
            "bias_amplitude": (0.0, 0.9),
            "reference_shift_mm": (0.0, math.inf),
            "reference_rotation_deg": (0.0, 180.0),
            "reference_noise_scale": (0.0, math.inf),
        }
        for name, (low, high) in limits.items():
            object.__setattr__(self, name, _real(name, getattr(self, name), low, high))
        for name in ("bias_per_contrast", "reference_resample"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise RealismError(name, f"expected true or false, got {getattr(self, name)!r}")
            object.__setattr__(self, name, bool(getattr(self, name)))
        if self.noise_std_range is not None:
            value = self.noise_std_range
            if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
                raise RealismError("noise_std_range", f"expected null or [low, high], got {value!r}")
            low = _real("noise_std_range", value[0], 0.0)
            high = _real("noise_std_range", value[1], 0.0)
            if not 0 < low <= high:
                raise RealismError("noise_std_range", f"needs 0 < low <= high, got {list(value)!r}")
            object.__setattr__(self, "noise_std_range", (low, high))
        if self.reference_slice_thickness_mm is not None:
            thickness = _real("reference_slice_thickness_mm", self.reference_slice_thickness_mm, 0.0)
            if thickness <= 0:
                raise RealismError("reference_slice_thickness_mm", f"must be > 0 or null, got {thickness!r}")
            object.__setattr__(self, "reference_slice_thickness_mm", thickness)

    @classmethod
    def realistic(cls) -> Realism:
        """Every component on, at values typical of clinical 1.5 T brain protocols (module docstring table)."""
        return cls(
            deformation_mm=3.0,
            sequence_jitter=0.15,
            tissue_jitter=0.05,
            texture=0.04,
            bias_amplitude=0.25,
            bias_per_contrast=True,
            noise_std_range=(0.003, 0.015),
            reference_shift_mm=1.0,
            reference_rotation_deg=2.0,
            reference_slice_thickness_mm=6.0,
            reference_noise_scale=1.5,
            reference_resample=True,
        )

    @classmethod
    def preset(cls, name: str) -> Realism:
        """The preset ``"none"`` (``Realism()``) or ``"realistic"`` (:meth:`realistic`), case-insensitively.

        Raises:
            ValueError: for any other name.
        """
        key = name.strip().lower() if isinstance(name, str) else name
        if key not in REALISM_PRESETS:
            raise ValueError(f"unknown realism preset {name!r}; choose from {', '.join(REALISM_PRESETS)}")
        return REALISM_PRESETS[key]

    @classmethod
    def from_value(cls, value: Realism | str | Mapping[str, Any] | None) -> Realism:
        """A :class:`Realism` from itself, a preset name, a mapping of fields or ``None`` (off).

        Raises:
            RealismError: an unknown field or an invalid value.
            ValueError: an unknown preset name.
        """
        if value is None:
            return cls()
        if isinstance(value, Realism):
            return value
        if isinstance(value, str):
            return cls.preset(value)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise RealismError(unknown[0], f"unknown field; fields: {', '.join(sorted(names))}")
        return cls(**dict(value))

    @property
    def off(self) -> bool:
        """Whether every component is off (the original simulation)."""
        return self == Realism()

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON types (``noise_std_range`` as a list): stable through a JSON round trip."""
        return {
            f.name: list(value) if isinstance(value := getattr(self, f.name), tuple) else value
            for f in dataclasses.fields(self)
        }


#: The named :class:`Realism` settings (``realism: none`` / ``realism: realistic`` in a config).
REALISM_PRESETS: dict[str, Realism] = {"none": Realism(), "realistic": Realism.realistic()}


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
    """The memoised tissue volume of the cache in ``cache_dir``; builds (or rebuilds) the cache when needed.

    An existing cache file is read through the memo directly, not decompressed again by
    :func:`load_tissue_maps` on every subject (≈ 0.1 s each).
    """
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = folder / _CACHE_NAME
    try:
        stat = path.stat()
        return _tissue_volume(str(path), stat.st_mtime_ns, stat.st_size)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        pass  # missing or unreadable: load_tissue_maps builds it (warning when it rebuilds)
    path = load_tissue_maps(cache_dir).path
    stat = path.stat()
    return _tissue_volume(str(path), stat.st_mtime_ns, stat.st_size)


# ---------------------------------------------------------------------------------------------- subject parameters


def _plane_waves_on_grid(
    wavevectors: np.ndarray,
    phases: np.ndarray,
    weights: np.ndarray | float,
    origin_mm: torch.Tensor,
    step_h_mm: torch.Tensor,
    step_w_mm: torch.Tensor,
    height: int,
    width: int,
) -> torch.Tensor:
    """``Σ_n w_n cos(k_n · r + φ_n)`` on the planar grids ``r = origin[s] + h·step_h + w·step_w``.

    Separable: ``e^{i k·r} = e^{i k·origin} e^{i h k·step_h} e^{i w k·step_w}``, so every grid is one complex
    ``(height × N) @ (N × width)`` product instead of ``height·width·N`` cosines. Phases are reduced modulo 2π in
    float64 and the products run in complex64 (relative error ≈ 1e-6 of ``Σ|w_n|``).

    Args:
        wavevectors: ``(N, 3)`` rad/mm; phases: ``(N,)`` rad; weights: ``(N,)`` or one scalar for all waves.
        origin_mm: ``(S, 3)`` the point of pixel ``(0, 0)`` of every grid, mm.
        step_h_mm, step_w_mm: ``(3,)`` the displacement of one pixel along ``h`` and along ``w``, mm.
        height, width: the grid size.

    Returns:
        ``(S, height, width)`` float32.
    """
    k = torch.as_tensor(wavevectors, dtype=torch.float64)
    base = torch.as_tensor(origin_mm, dtype=torch.float64) @ k.T + torch.as_tensor(phases, dtype=torch.float64)
    along_h = torch.arange(height, dtype=torch.float64)[:, None] * (k @ torch.as_tensor(step_h_mm).double())
    along_w = torch.arange(width, dtype=torch.float64)[:, None] * (k @ torch.as_tensor(step_w_mm).double())

    def unit(phase: torch.Tensor) -> torch.Tensor:
        angle = torch.remainder(phase, 2 * math.pi).to(torch.float32)
        return torch.polar(torch.ones_like(angle), angle)

    coefficients = unit(base) * torch.as_tensor(weights, dtype=torch.float32)  # (S, N)
    rows = unit(along_h)[None] * coefficients[:, None, :]  # (S, H, N)
    return (rows @ unit(along_w).T).real.contiguous()


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
    def draw(
        cls, rng: np.random.Generator, terms: int = 6, wavelengths_mm: tuple[float, float] = (120.0, 400.0)
    ) -> SmoothField:
        """Random field with ``terms`` plane waves in random directions, wavelengths uniform in ``wavelengths_mm``
        (draws ``5 · terms`` values whatever the wavelengths)."""
        directions = rng.standard_normal((terms, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        wavelengths = rng.uniform(*wavelengths_mm, terms)
        phases = rng.uniform(0, 2 * math.pi, terms)
        weights = rng.uniform(0.5, 1.0, terms)
        return cls(directions * (2 * math.pi / wavelengths)[:, None], phases, weights / weights.sum())

    def __call__(self, points_mm: torch.Tensor) -> torch.Tensor:
        """Evaluate at ``(..., 3)`` float points (mm); returns ``(...)`` of the points' dtype, in ``[−1, 1]``."""
        k = torch.as_tensor(self.wavevectors, dtype=points_mm.dtype)
        phases = torch.as_tensor(self.phases, dtype=points_mm.dtype)
        weights = torch.as_tensor(self.weights, dtype=points_mm.dtype)
        return torch.cos(points_mm @ k.T + phases) @ weights

    def on_grid(
        self, origin_mm: torch.Tensor, step_h_mm: torch.Tensor, step_w_mm: torch.Tensor, height: int, width: int
    ) -> torch.Tensor:
        """The field on planar grids ``origin[s] + h·step_h + w·step_w``: ``(S, height, width)`` float32
        (separable, see :func:`_plane_waves_on_grid`; ``origin`` ``(S, 3)``, steps ``(3,)``, mm)."""
        return _plane_waves_on_grid(
            self.wavevectors, self.phases, self.weights, origin_mm, step_h_mm, step_w_mm, height, width
        )


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


def subject_parameters(subject: int, seed: int = 0, tissue_jitter: float = _TISSUE_JITTER) -> SubjectParameters:
    """Draw subject ``subject``'s parameters from ``default_rng([seed, subject, 0])`` (fixed draw order).

    They do not depend on the requested contrasts, matrix or coils, so a subject is the same person in every
    configuration.

    Args:
        subject: the subject index, a non-negative int.
        seed: the data set's seed, a non-negative int.
        tissue_jitter: half-width ``e`` of the per-tissue scale ``U(1 − e, 1 + e)`` (:attr:`Realism.tissue_jitter`);
            it scales the same uniform draws, so the other parameters do not depend on it.

    Raises:
        ValueError: if ``subject`` or ``seed`` is not a non-negative int, or ``tissue_jitter`` not in ``[0, 0.5]``.
    """
    _check_index("subject", subject)
    _check_index("seed", seed)
    try:
        tissue_jitter = _real("tissue_jitter", tissue_jitter, 0.0, 0.5)
    except RealismError as err:
        raise ValueError(str(err)) from err
    rng = np.random.default_rng([int(seed), int(subject), 0])
    common = 1 + rng.uniform(-_GLOBAL_JITTER, _GLOBAL_JITTER, 3)
    tissues = {}
    for tissue in TISSUES:
        per_tissue = 1 + rng.uniform(-tissue_jitter, tissue_jitter, 3)
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


@dataclass(frozen=True, eq=False)
class TextureField:
    """A fine random texture: ``Σ_n a cos(k_n · r + φ_n)``, ``N`` plane waves of equal amplitude ``a``.

    With random phases its spatial standard deviation is ``a·√(N/2)`` (:attr:`std`); with many waves in random
    directions it is close to a Gaussian random field, band-limited to the waves' wavelengths.

    Attributes:
        wavevectors: ``(N, 3)`` float64, radians per mm (wavelengths 2–10 mm, log-uniform, random directions).
        phases: ``(N,)`` float64 radians.
        amplitude: ``a`` (dimensionless: the field multiplies PD or T2 as ``1 + field``).
    """

    wavevectors: np.ndarray
    phases: np.ndarray
    amplitude: float

    @classmethod
    def draw(
        cls,
        rng: np.random.Generator,
        std: float,
        terms: int = _TEXTURE_TERMS,
        wavelengths_mm: tuple[float, float] = _TEXTURE_WAVELENGTHS_MM,
    ) -> TextureField:
        """Random texture of standard deviation ``std`` (draws ``5 · terms`` values whatever ``std``)."""
        directions = rng.standard_normal((terms, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        wavelengths = np.exp(rng.uniform(math.log(wavelengths_mm[0]), math.log(wavelengths_mm[1]), terms))
        phases = rng.uniform(0, 2 * math.pi, terms)
        return cls(directions * (2 * math.pi / wavelengths)[:, None], phases, float(std) * math.sqrt(2 / terms))

    @property
    def std(self) -> float:
        """Spatial standard deviation ``a·√(N/2)``."""
        return self.amplitude * math.sqrt(len(self.phases) / 2)

    def __call__(self, points_mm: torch.Tensor) -> torch.Tensor:
        """Evaluate at ``(..., 3)`` float points (mm); returns ``(...)`` of the points' dtype."""
        k = torch.as_tensor(self.wavevectors, dtype=points_mm.dtype)
        phases = torch.as_tensor(self.phases, dtype=points_mm.dtype)
        return torch.cos(points_mm @ k.T + phases).sum(dim=-1) * self.amplitude

    def on_grid(
        self, origin_mm: torch.Tensor, step_h_mm: torch.Tensor, step_w_mm: torch.Tensor, height: int, width: int
    ) -> torch.Tensor:
        """The texture on planar grids ``origin[s] + h·step_h + w·step_w`` (``h < height``, ``w < width``).

        Separable (:func:`_plane_waves_on_grid`): one complex ``(height × N) @ (N × width)`` product per grid
        (≈ 2 ms for 256², 256 waves) instead of ``height·width·N`` cosines.

        Args:
            origin_mm: ``(S, 3)`` float, the point of pixel ``(0, 0)`` of every slice, mm.
            step_h_mm: ``(3,)`` float, the displacement of one pixel along ``h``, mm.
            step_w_mm: ``(3,)`` float, the displacement of one pixel along ``w``, mm.
            height: the grid's number of rows.
            width: the grid's number of columns.

        Returns:
            ``(S, height, width)`` float32.
        """
        return _plane_waves_on_grid(
            self.wavevectors, self.phases, self.amplitude, origin_mm, step_h_mm, step_w_mm, height, width
        )


@dataclass(frozen=True, eq=False)
class RealismParameters:
    """A subject's random draws for the :class:`Realism` components (:func:`realism_parameters`).

    All of them are drawn whatever the :class:`Realism` values (which only scale them), so a subject's draws of one
    component do not depend on the others, nor on the requested contrasts.

    Attributes:
        deformation: the displacement's shape per axis ``(x, y, z)``, :class:`SmoothField` in ``[−1, 1]``
            (wavelengths 40–120 mm).
        deformation_mm: its amplitude ``D`` (:attr:`Realism.deformation_mm`).
        texture: ``"pd"`` and ``"t2"`` :class:`TextureField` of standard deviation :attr:`Realism.texture`.
        sequences: per contrast of :data:`CONTRASTS` the subject's pulse sequence (TR, TE, TI jittered).
        noise_std: per contrast of :data:`CONTRASTS` the k-space noise std drawn log-uniformly in
            :attr:`Realism.noise_std_range`, or ``None`` (the ``noise_std`` argument applies).
        bias: per contrast of :data:`CONTRASTS` its own bias-field shape (:attr:`Realism.bias_per_contrast`).
        reference_shift_mm: ``(x, y)`` translation of the reference's content, RAS mm.
        reference_rotation_deg: rotation of the reference's content about the slice normal through the
            field-of-view centre, degrees, counter-clockwise from +x to +y.
        reference_resample_offset_px: ``(h, w)`` sub-pixel offset of the reference's own grid in ``[0, 1)``, or
            ``(0, 0)`` without :attr:`Realism.reference_resample`.
    """

    deformation: tuple[SmoothField, SmoothField, SmoothField]
    deformation_mm: float
    texture: dict[str, TextureField]
    sequences: dict[str, PulseSequence]
    noise_std: dict[str, float] | None
    bias: dict[str, SmoothField]
    reference_shift_mm: tuple[float, float]
    reference_rotation_deg: float
    reference_resample_offset_px: tuple[float, float]

    def displacement(self, points_mm: torch.Tensor) -> torch.Tensor:
        """The deformation ``u(r)`` at ``(..., 3)`` anatomical points (mm): ``(..., 3)`` mm, same dtype,
        ``|u_j| ≤ deformation_mm``; the template is sampled at ``r + u(r)``."""
        if self.deformation_mm == 0:
            return torch.zeros_like(points_mm)
        return self.deformation_mm * torch.stack([f(points_mm) for f in self.deformation], dim=-1)

    def displacement_on_grid(
        self, origin_mm: torch.Tensor, step_h_mm: torch.Tensor, step_w_mm: torch.Tensor, height: int, width: int
    ) -> torch.Tensor:
        """:meth:`displacement` on planar grids ``origin[s] + h·step_h + w·step_w`` (separable, see
        :meth:`SmoothField.on_grid`): ``(S, height, width, 3)`` float32 mm."""
        fields = [f.on_grid(origin_mm, step_h_mm, step_w_mm, height, width) for f in self.deformation]
        return self.deformation_mm * torch.stack(fields, dim=-1)


def realism_parameters(subject: int, seed: int = 0, realism: Realism | None = None) -> RealismParameters:
    """Draw subject ``subject``'s :class:`RealismParameters` (streams 100–124 of ``default_rng([seed, subject, ·])``).

    Streams: 100 deformation, 101 texture, 102 reference misregistration, ``110 + i`` sequence jitter and noise
    level of ``CONTRASTS[i]``, ``120 + i`` its bias field (module docstring, "Determinism").

    Raises:
        ValueError: if ``subject`` or ``seed`` is not a non-negative int.
        TypeError: if ``realism`` is not a :class:`Realism` (or ``None``: off).
    """
    _check_index("subject", subject)
    _check_index("seed", seed)
    realism = Realism() if realism is None else realism
    if not isinstance(realism, Realism):
        raise TypeError(f"realism must be a Realism, got {type(realism).__name__}")

    def stream(number: int) -> np.random.Generator:
        return np.random.default_rng([int(seed), int(subject), number])

    rng = stream(_STREAM_DEFORMATION)
    along_x, along_y, along_z = (SmoothField.draw(rng, _DEFORMATION_TERMS, _DEFORMATION_WAVELENGTHS_MM) for _ in "xyz")
    rng = stream(_STREAM_TEXTURE)
    texture = {name: TextureField.draw(rng, realism.texture) for name in ("pd", "t2")}
    rng = stream(_STREAM_REFERENCE)
    shift = rng.uniform(-1.0, 1.0, 2) * realism.reference_shift_mm
    rotation = float(rng.uniform(-1.0, 1.0)) * realism.reference_rotation_deg
    offset = rng.uniform(0.0, 1.0, 2) * (1.0 if realism.reference_resample else 0.0)

    sequences: dict[str, PulseSequence] = {}
    levels: dict[str, float] = {}
    bias: dict[str, SmoothField] = {}
    jitter = realism.sequence_jitter
    for index, name in enumerate(CONTRASTS):
        rng = stream(_STREAM_PROTOCOL + index)
        tr, te, ti = 1 + jitter * rng.uniform(-1.0, 1.0, 3)
        level = float(rng.uniform(0.0, 1.0))
        nominal = SEQUENCES[name]
        sequences[name] = nominal if jitter == 0 else dataclasses.replace(
            nominal,
            tr_ms=nominal.tr_ms * float(tr),
            te_ms=nominal.te_ms * float(te),
            # a protocol sets TI to null CSF at its own TR; the residual TI error is a fifth of the jitter
            ti_ms=None if nominal.ti_ms is None else _null_ti(TISSUE_PARAMETERS["CSF"][1], nominal.tr_ms * float(tr))
            * (1 + (float(ti) - 1) / 5),
        )
        if realism.noise_std_range is not None:
            low, high = realism.noise_std_range
            levels[name] = low * (high / low) ** level
        bias[name] = SmoothField.draw(stream(_STREAM_BIAS + index))
    return RealismParameters(
        deformation=(along_x, along_y, along_z),
        deformation_mm=realism.deformation_mm,
        texture=texture,
        sequences=sequences,
        noise_std=levels if realism.noise_std_range is not None else None,
        bias=bias,
        reference_shift_mm=(float(shift[0]) + 0.0, float(shift[1]) + 0.0),  # + 0.0: no −0.0 in the records
        reference_rotation_deg=rotation + 0.0,
        reference_resample_offset_px=(float(offset[0]), float(offset[1])),
    )


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
            the pixel centres, before band-limiting) of every contrast but a misregistered reference.
        affine: ``(4, 4)`` float64 voxel ``(h, w, s)`` → RAS mm (scanner frame = MNI frame of an unmoved head);
            write a volume as NIfTI with ``data.transpose(1, 2, 0)`` (:mod:`accelmri.data.volume`).
        noise_std: the ``noise_std`` argument (see ``noise_stds`` for the std each contrast got).
        parameters: the subject's :class:`SubjectParameters`.
        realism: the :class:`Realism` it was simulated with.
        sequences: per contrast the pulse sequence actually simulated (TR, TE, TI after the sequence jitter).
        noise_stds: per contrast the complex noise std per k-space sample (``E|n|² = std²``).
        reference: the reference contrast (``reference`` argument), or ``None``.
        reference_tissues: with a reference, its tissue fractions like ``tissues`` (misregistered, its own slice
            profile; the same tensors as ``tissues`` when it has neither), else ``None``.
        misregistration: with a reference, what was applied to it (``{}`` without): ``reference`` (name),
            ``shift_mm`` ``[x, y]`` RAS mm and ``shift_px`` ``[h, w]`` pixels of the matrix (its content at
            ``(h, w)`` is the target's content at ``(h − shift_px[0], w − shift_px[1])``), ``rotation_deg`` about
            the slice normal through the field-of-view centre (counter-clockwise from +x to +y; applied before the
            shift), ``slice_thickness_mm``, ``noise_scale``, ``resample_offset_px`` ``[h, w]`` (0 = no resampling).
        realism_parameters: the subject's :class:`RealismParameters`.
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
    realism: Realism = dataclasses.field(default_factory=Realism)
    sequences: dict[str, PulseSequence] = dataclasses.field(default_factory=dict)
    noise_stds: dict[str, float] = dataclasses.field(default_factory=dict)
    reference: str | None = None
    reference_tissues: dict[str, torch.Tensor] | None = None
    misregistration: dict[str, Any] = dataclasses.field(default_factory=dict)
    realism_parameters: RealismParameters | None = None


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


def _round_trip_transfer(n: int, offset_px: float) -> torch.Tensor:
    """``(n,)`` float32 k-space transfer (centred order) of a circular shift by ``offset_px`` (``δ``) pixels with
    linear interpolation, ``y[i] = (1 − δ)x[i] + δx[i + 1]``, followed by the shift back, ``z[i] = (1 − δ)y[i] +
    δy[i − 1]``: the symmetric kernel ``[δ(1 − δ), (1 − δ)² + δ², δ(1 − δ)]``, so
    ``H(f) = (1 − δ)² + δ² + 2δ(1 − δ)cos(2πf)`` (real, ``H(0) = 1``: no net shift, mean kept)."""
    delta = float(offset_px)
    frequency = (torch.arange(n, dtype=torch.float64) - n // 2) / n
    side = delta * (1 - delta)
    return ((1 - delta) ** 2 + delta**2 + 2 * side * torch.cos(2 * math.pi * frequency)).to(torch.float32)


def _rotation_z(angle_deg: float) -> torch.Tensor:
    """``(3, 3)`` float64 rotation about +z, counter-clockwise from +x to +y."""
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


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
    realism: Realism | None = None,
    reference: str | None = None,
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
            gives a WM SNR of ≈ 60 (T1), ≈ 43 (T2), ≈ 39 (FLAIR) in the RSS image. Replaced by a per-contrast
            draw when ``realism.noise_std_range`` is set.
        seed: data-set seed ``≥ 0``.
        slice_thickness_mm: slice thickness = slice spacing, mm.
        fov_mm: square field of view, mm.
        slab_center_mm: MNI ``z`` of the slab centre (default 12 mm: with 16 × 5 mm slices the slab spans
            −28…52 mm, ventricles to centrum semiovale). Slices outside the head are empty.
        cache_dir: tissue-map cache folder (``None``: :func:`default_cache_dir`).
        realism: the :class:`Realism` components (``None``: all off, the original simulation bit for bit).
        reference: one of ``contrasts``, the reference (guide) contrast: the ``realism.reference_*`` imperfections
            are applied to it alone (``None``: no reference).

    Returns:
        :class:`BrainSubject`.

    Raises:
        ValueError: on an unknown or repeated contrast, a reference that is not one of the contrasts, or an
            invalid number (odd ``size``, ``coils < 1``, negative ``noise_std``, …).
        TypeError: if ``realism`` is not a :class:`Realism`.
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
    realism = Realism() if realism is None else realism
    if not isinstance(realism, Realism):
        raise TypeError(f"realism must be a Realism, got {type(realism).__name__}")
    reference_name = None if reference is None else canonical_contrast(reference)
    if reference_name is not None and reference_name not in names:
        raise ValueError(f"reference {reference_name} is not one of the contrasts {list(names)}")

    params = subject_parameters(subject, seed, realism.tissue_jitter)
    extra = realism_parameters(subject, seed, realism)
    volume, template_affine = _volume_for(cache_dir)
    factor = max(1, math.ceil(fov_mm / size / _MAX_PLANE_SPACING_MM - 1e-9))
    fine = size * factor
    fine_pixel = fov_mm / fine

    # Scanner (MNI-frame) coordinates: pixel (h, w) of slice s at x = cx − (w − N//2)·p, y = cy − (h − N//2)·p.
    centre_x, centre_y = _FOV_CENTRE_MM
    offsets = (torch.arange(fine, dtype=torch.float64) - fine // 2) * fine_pixel
    xs, ys = centre_x - offsets, centre_y - offsets
    slice_z = slab_center_mm + (torch.arange(slices, dtype=torch.float64) - (slices - 1) / 2) * slice_thickness_mm

    # Anatomical coordinates r = Rᵀ(p − c − t) + c, then template voxel indices v = A⁻¹ r (or A⁻¹(r + u(r))).
    rot_t = torch.from_numpy(_rotation_matrix(params.rotation_deg).T)
    centre = torch.tensor(_ROTATION_CENTRE_MM, dtype=torch.float64)
    shift = centre - rot_t @ (centre + torch.tensor(params.translation_mm, dtype=torch.float64))
    inv_affine = torch.from_numpy(np.linalg.inv(template_affine))
    dims = torch.tensor(volume.shape[2:], dtype=torch.float64).flip(0)  # voxel counts along (i, j, k)
    reach = (1 + 4 / (dims - 1)).to(torch.float32)  # normalised coordinates 2 voxels beyond the template box

    def anatomical(z: torch.Tensor, matrix: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``matrix·p + bias`` for the points (x over w, y over h, z over a leading axis): ``(Z, N, N, 3)``."""
        return (
            matrix[:, 0] * xs.view(1, 1, -1, 1)
            + matrix[:, 1] * ys.view(1, -1, 1, 1)
            + matrix[:, 2] * z.view(-1, 1, 1, 1)
            + bias
        )

    def sample_object(
        matrix: torch.Tensor, bias: torch.Tensor, thickness_mm: float
    ) -> tuple[torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
        """Tissue fractions ``(5, S, fine, fine)`` (slice profile ``thickness_mm``) and per-tissue ``(PD, T1, T2)``
        maps of the object seen at anatomical points ``r = matrix·p + bias``."""
        planes = max(1, round(thickness_mm / _MAX_PLANE_SPACING_MM))
        plane_dz = ((torch.arange(planes, dtype=torch.float64) + 0.5) / planes - 0.5) * thickness_mm
        to_voxel, voxel_shift = inv_affine[:3, :3] @ matrix, inv_affine[:3, :3] @ bias + inv_affine[:3, 3]
        # Pixel (0, 0) of every grid and the steps along h and w, in anatomical mm (x = cx − (w − N//2)·p, …).
        corner = torch.tensor([centre_x, centre_y], dtype=torch.float64) + fine // 2 * fine_pixel
        step_h, step_w = -fine_pixel * matrix[:, 1], -fine_pixel * matrix[:, 0]

        def origins(z: torch.Tensor) -> torch.Tensor:
            return torch.stack([matrix[:, :2] @ corner + matrix[:, 2] * value + bias for value in z.tolist()])

        fractions = torch.zeros(len(TISSUES), slices, fine, fine)
        for s in range(slices):
            voxels = anatomical(slice_z[s] + plane_dz, to_voxel, voxel_shift)
            if extra.deformation_mm > 0:  # the subject's anatomy: the template at r + u(r)
                moved = extra.displacement_on_grid(origins(slice_z[s] + plane_dz), step_h, step_w, fine, fine)
                voxels += moved.double() @ inv_affine[:3, :3].T
                del moved
            grid = (voxels * (2 / (dims - 1)) - 1).to(torch.float32)  # (i, j, k) = grid_sample's (W, H, D) order
            # Only the rectangle of pixels that reach the template box (≈ 60 % of the field of view): outside it
            # all 8 interpolation corners are padding and the fraction is exactly 0. Point-wise, so bit-identical.
            inside = (grid.abs() < reach).all(dim=-1).any(dim=0)
            rows, cols = inside.any(dim=1).nonzero()[:, 0], inside.any(dim=0).nonzero()[:, 0]
            if rows.numel() == 0:
                continue
            box = (slice(None), slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
            sampled = F.grid_sample(volume, grid[box][None], mode="bilinear", padding_mode="zeros",
                                    align_corners=True)
            fractions[(slice(None), s, *box[1:])] = sampled[0].mean(dim=1)

        positions = anatomical(slice_z, matrix, bias).to(torch.float32)  # (S, fine, fine, 3) anatomical mm
        variation = {n: 1 + _PROPERTY_FIELD_AMPLITUDE * params.fields[n](positions) for n in ("pd", "t1", "t2")}
        del positions
        texture = {"pd": torch.ones(()), "t2": torch.ones(())}
        if realism.texture > 0:  # evaluated at the slice centres, separably (TextureField.on_grid)
            centres = origins(slice_z)
            texture = {
                n: (1 + f.on_grid(centres, step_h, step_w, fine, fine)).clamp_min(_MIN_TEXTURE_FACTOR)
                for n, f in extra.texture.items()
            }
        maps = {}
        for tissue, (pd, t1, t2) in params.tissues.items():
            textured = tissue != "CSF" and realism.texture > 0
            maps[tissue] = (
                pd * variation["pd"] * texture["pd"] if textured else pd * variation["pd"],
                t1 * variation["t1"],
                t2 * variation["t2"] * texture["t2"] if textured else t2 * variation["t2"],
            )
        return fractions, maps

    target_object = sample_object(rot_t, shift, slice_thickness_mm)
    reference_object = target_object
    misregistration: dict[str, Any] = {}
    pixel = fov_mm / size
    if reference_name is not None:
        shift_x, shift_y = extra.reference_shift_mm
        angle = extra.reference_rotation_deg
        thickness = realism.reference_slice_thickness_mm or slice_thickness_mm
        if (shift_x, shift_y, angle) != (0.0, 0.0, 0.0) or realism.reference_slice_thickness_mm is not None:
            # The subject moved by T(q) = Q(q − c) + c + d between the acquisitions: the reference shows at p the
            # anatomy that was at T⁻¹(p) = Qᵀ(p − c − d) + c, i.e. at r = Rᵀ(T⁻¹(p) − c₀ − t) + c₀.
            q_t = _rotation_z(angle).T
            fov_centre = torch.tensor([centre_x, centre_y, 0.0], dtype=torch.float64)
            moved = torch.tensor([shift_x, shift_y, 0.0], dtype=torch.float64)
            matrix = rot_t @ q_t
            bias = rot_t @ (fov_centre - q_t @ (fov_centre + moved) - centre - torch.tensor(params.translation_mm,
                                                                                         dtype=torch.float64)) + centre
            reference_object = sample_object(matrix, bias, thickness)
        misregistration = {
            "reference": reference_name,
            "shift_mm": [shift_x, shift_y],
            "shift_px": [-shift_y / pixel + 0.0, -shift_x / pixel + 0.0],  # x runs along −w, y along −h
            "rotation_deg": angle,
            "slice_thickness_mm": float(thickness),
            "noise_scale": realism.reference_noise_scale,
            "resample_offset_px": list(extra.reference_resample_offset_px),
        }

    scanner = torch.stack(
        torch.broadcast_tensors(xs[::factor].view(1, 1, -1), ys[::factor].view(1, -1, 1), slice_z.view(-1, 1, 1)),
        dim=-1,
    ).to(torch.float32)  # (S, size, size, 3), the output pixel centres
    shared_bias = None if realism.bias_per_contrast else 1 + realism.bias_amplitude * params.fields["bias"](scanner)
    phase = _PHASE_FIELD_AMPLITUDE * params.fields["phase"](scanner)
    sens_maps = _coil_maps(coils, size, params) if coils > 1 else None
    # RSS of noise-free coil images S_c·x is |x|·sqrt(Σ_c |S_c|²): computed from the maps, not from C images.
    coil_gain = torch.ones(()) if sens_maps is None else rss(sens_maps, dim=0)

    images: dict[str, torch.Tensor] = {}
    kspace: dict[str, torch.Tensor] = {}
    targets: dict[str, torch.Tensor] = {}
    noise_stds: dict[str, float] = {}
    for name in names:
        is_reference = name == reference_name
        sequence = extra.sequences[name]
        fractions, tissue_maps = reference_object if is_reference else target_object
        magnitude = torch.zeros(slices, fine, fine)
        for index, tissue in enumerate(TISSUES):
            signal = sequence.signal(*tissue_maps[tissue])
            if tissue == "fat":
                signal = signal * sequence.fat_residual
            magnitude += fractions[index] * signal
        # Band-limit the ≤ 1 mm object to the matrix (as the scanner's finite k-space coverage does).
        obj = ifft2c(lowres(fft2c(magnitude), factor)) if factor > 1 else magnitude.to(torch.complex64)
        if is_reference and realism.reference_resample:  # from its own grid: linear-interpolation round trip
            offset_h, offset_w = extra.reference_resample_offset_px
            transfer = _round_trip_transfer(size, offset_h)[:, None] * _round_trip_transfer(size, offset_w)
            obj = ifft2c(fft2c(obj) * transfer)
        bias = shared_bias if shared_bias is not None else 1 + realism.bias_amplitude * extra.bias[name](scanner)
        image = (obj * bias * torch.polar(torch.ones_like(phase), phase + params.contrast_phase[name])).to(
            torch.complex64
        )
        coil_images = image.unsqueeze(1) if sens_maps is None else sense_expand(image, sens_maps)
        measured = fft2c(coil_images)
        std = noise_std if extra.noise_std is None else extra.noise_std[name]
        if is_reference and realism.reference_noise_scale != 1:
            std = std * realism.reference_noise_scale
        if std > 0:
            rng = np.random.default_rng([int(seed), int(subject), 1 + CONTRASTS.index(name)])
            noise = rng.standard_normal((*measured.shape, 2), dtype=np.float32)
            noise *= np.float32(std / math.sqrt(2))
            measured += torch.view_as_complex(torch.from_numpy(noise))
        images[name] = image
        kspace[name] = measured
        targets[name] = (image.abs() * coil_gain).to(torch.float32)
        noise_stds[name] = float(std)

    affine = np.array(
        [
            [0.0, -pixel, 0.0, centre_x + (size // 2) * pixel],
            [-pixel, 0.0, 0.0, centre_y + (size // 2) * pixel],
            [0.0, 0.0, slice_thickness_mm, float(slice_z[0])],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )

    def on_matrix(fractions: torch.Tensor) -> dict[str, torch.Tensor]:
        return {t: fractions[i, :, ::factor, ::factor].contiguous() for i, t in enumerate(TISSUES)}

    tissues = on_matrix(target_object[0])
    reference_tissues = None
    if reference_name is not None:
        reference_tissues = tissues if reference_object is target_object else on_matrix(reference_object[0])
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
        realism=realism,
        sequences={name: extra.sequences[name] for name in names},
        noise_stds=noise_stds,
        reference=reference_name,
        reference_tissues=reference_tissues,
        misregistration=misregistration,
        realism_parameters=extra,
    )
