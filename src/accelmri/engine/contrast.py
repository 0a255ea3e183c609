"""Contrast names: a normaliser for the spellings scanners, data sets and file names use, and the contrasts a
checkpoint was trained on.

:func:`normalize_contrast` maps a free-text description (a contrast name, a DICOM ``SeriesDescription``, a fastMRI
``acquisition`` attribute, a file name) to one of :data:`CANONICAL_CONTRASTS`, or ``None`` when it cannot tell:

==========  ==========================================================================================
canonical   recognised spellings (case-insensitive; ``_``, ``-``, ``.`` and spaces separate words)
==========  ==========================================================================================
``T1``      ``T1``, ``T1w``, ``t1_se``, ``AXT1``, ``AXT1PRE``, ``MPRAGE``
``T1CE``    ``T1c``, ``T1CE``, ``T1Gd``, ``t1_post``, ``AXT1POST``, ``post-gad``, BIDS ``ce-…_T1w``
``T2``      ``T2``, ``T2w``, ``T2_TSE``, ``t2_tse``, ``AXT2`` (fat-saturated T2 stays ``T2``)
``FLAIR``   ``FLAIR``, ``t2_flair``, ``tir2d_flair``, ``AXFLAIR``, ``TIRM``, ``darkfluid``
``PD``      ``PD``, ``PDw``, ``CORPD_FBK``
``PDFS``    ``PDFS``, ``PD_FS``, ``PDw_SPAIR``, ``CORPDFS_FBK`` (PD with fat suppression)
==========  ==========================================================================================

Words that name no contrast (subject IDs, ``AX``, ``TSE``, ``SE``, ``FBK``, …) are ignored. A description naming
two different contrasts (``T1_T2``), a T2*-weighted one (``T2star``, ``T2*``, ``SWI``) or none is unknown
(``None``). A T1-weighted FLAIR (``T1_FLAIR``) is ``T1``; any other FLAIR is ``FLAIR``.

Checkpoints record what they were trained on (:func:`trained_contrasts`, written by
:func:`accelmri.engine.checkpoint.save_checkpoint`): ``target_contrasts`` (a list), ``reference_contrast`` and
``reference_contrasts`` (a list: several when the reference contrast was randomised).
``accelmri restore`` compares them with the contrasts of its inputs (:func:`volume_contrast`) and warns when they
differ.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py

__all__ = [
    "CANONICAL_CONTRASTS",
    "file_contrast",
    "hdf5_acquisition",
    "normalize_contrast",
    "trained_contrasts",
    "volume_contrast",
]

#: The canonical contrast names :func:`normalize_contrast` returns.
CANONICAL_CONTRASTS: tuple[str, ...] = ("T1", "T1CE", "T2", "FLAIR", "PD", "PDFS")

# One word: an optional plane prefix, a base contrast, an optional "weighted" W, modifiers, an optional W.
_WORD = re.compile(
    r"^(?:AX|COR|SAG|TRA)?(?P<base>T1FLAIR|T2FLAIR|T1|T2|PD|FLAIR|TIR2D|TIRM)W?"
    r"(?P<mods>(?:FS|FATSAT|SPAIR|SPIR|POST|PRE|CE|C|GD|GAD|STAR|\*|\+C)*)W?$"
)
_MODIFIER = re.compile(r"FATSAT|SPAIR|SPIR|FS|POST|PRE|CE|GD|GAD|STAR|\+C|C|\*")
# Bases spelled otherwise, and words that are a whole contrast by themselves.
_BASES: dict[str, tuple[str, ...]] = {
    "T1FLAIR": ("T1", "FLAIR"), "T2FLAIR": ("FLAIR",), "TIR2D": ("FLAIR",), "TIRM": ("FLAIR",),
    "DARKFLUID": ("FLAIR",), "MPRAGE": ("T1",), "MP2RAGE": ("T1",),
}
_FAT_SUPPRESSION = frozenset({"FS", "FATSAT", "SPAIR", "SPIR"})
_ENHANCED = frozenset({"POST", "CE", "C", "GD", "GAD", "+C", "POSTGAD", "GADOLINIUM", "POSTCONTRAST"})
_GADOLINIUM = frozenset({"GD", "GAD", "POSTGAD", "GADOLINIUM", "POSTCONTRAST"})  # enhanced without naming T1
_STAR = frozenset({"STAR", "*", "SWI"})


def normalize_contrast(name: str | None) -> str | None:
    """The canonical contrast (:data:`CANONICAL_CONTRASTS`) of a free-text description, or ``None`` if unknown.

    Args:
        name: a contrast name (``"t2_tse"``), DICOM ``SeriesDescription`` (``"T1_AX_POSTGAD_SE"``), fastMRI
            ``acquisition`` (``"CORPDFS_FBK"``), BIDS suffix or file name (``"sub-01_FLAIR.nii.gz"``), or ``None``.

    Returns:
        ``"T1"``, ``"T1CE"``, ``"T2"``, ``"FLAIR"``, ``"PD"`` or ``"PDFS"`` (see the module table); ``None`` for
        ``None``, empty, ambiguous or unrecognised descriptions. Never raises.
    """
    if not isinstance(name, str):
        return None
    bases: set[str] = set()
    modifiers: set[str] = set()
    for word in re.split(r"[^A-Z0-9+*]+", name.upper()):
        match = _WORD.match(word)
        if match is not None:
            bases.update(_BASES.get(match["base"], (match["base"],)))
            modifiers.update(_MODIFIER.findall(match["mods"]))
        elif word in _BASES:
            bases.update(_BASES[word])
        elif word in _FAT_SUPPRESSION | _ENHANCED | _STAR:
            modifiers.add(word)
    if modifiers & _STAR:
        return None
    if "FLAIR" in bases:
        others = bases - {"FLAIR", "T2"}  # a T2-FLAIR is FLAIR
        if others == {"T1"}:
            return "T1"  # a T1-weighted FLAIR
        return None if others else "FLAIR"
    if not bases:
        return "T1CE" if modifiers & _GADOLINIUM else None  # "post-gad": contrast-enhanced scans are T1-weighted
    if len(bases) > 1:
        return None
    (base,) = bases
    if base == "T1":
        return "T1CE" if modifiers & _ENHANCED else "T1"
    if base == "PD":
        return "PDFS" if modifiers & _FAT_SUPPRESSION else "PD"
    return base


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".h5", ".hdf5", ".dat", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def volume_contrast(
    path: str | Path, contrast: str | None = None, attrs: Mapping[str, Any] | None = None
) -> str | None:
    """The canonical contrast of a volume from its metadata, else its file (or DICOM folder) name.

    Tried in order, the first that :func:`normalize_contrast` recognises wins: ``contrast`` (what the reader
    recorded, e.g. :attr:`~accelmri.data.datasets.SliceSource.contrast`: IXI names, fastMRI ``acquisition``), the
    attributes ``acquisition`` (fastMRI), ``series_description`` (DICOM ``SeriesDescription``) and
    ``protocol_name``, then the file name without its suffix (BIDS ``_T2w``, ``_FLAIR``; ``…_t1.nii.gz``).

    Returns:
        A name of :data:`CANONICAL_CONTRASTS`, or ``None`` when nothing tells.
    """
    values = dict(attrs or {})
    for candidate in (contrast, values.get("acquisition"), values.get("series_description"),
                      values.get("protocol_name"), _stem(Path(path))):
        found = normalize_contrast(candidate if isinstance(candidate, str) else None)
        if found is not None:
            return found
    return None


@functools.lru_cache(maxsize=1024)
def hdf5_acquisition(path: str) -> str | None:
    """A fastMRI file's ``acquisition`` attribute (``AXT2``, ``CORPD_FBK``, ...); ``None`` when absent or the
    file is unreadable (cached per path)."""
    try:
        with h5py.File(path, "r") as file:
            value = file.attrs.get("acquisition")
    except (OSError, ValueError):
        return None
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return value if isinstance(value, str) else None


def file_contrast(path: str | Path) -> str | None:
    """The canonical contrast of a data file without reading its voxels: a fastMRI file's ``acquisition``
    attribute, else the file name (:func:`volume_contrast`); ``None`` when unknown or unreadable."""
    file = Path(path).expanduser()
    attrs: dict[str, Any] = {}
    if file.suffix.lower() in (".h5", ".hdf5") and file.is_file():
        attrs["acquisition"] = hdf5_acquisition(str(file))
    return volume_contrast(file, attrs=attrs)


def _common(contrasts: Iterable[str | None]) -> list[str] | None:
    """The distinct contrasts in first-seen order, or ``None`` if any is unknown (or there are none)."""
    found = list(contrasts)
    if not found or any(c is None for c in found):
        return None
    return list(dict.fromkeys(c for c in found if c is not None))


def trained_contrasts(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{"target_contrasts": [...] | None, "reference_contrast": str | None, "reference_contrasts": [...] |
    None}`` of a stored config's data source: ``reference_contrast`` when there is exactly one, and the list of all
    (a randomised reference has several).

    Digital brain: ``contrasts`` and ``reference`` (a name or a list). Files: the fastMRI pairing CSV's ``PDFS``
    target and ``PD`` reference; IXI's ``ixi_target`` / ``ixi_reference``; explicit ``paths`` by
    :func:`file_contrast` (a list of the distinct target contrasts when every file's is known, the distinct
    reference contrasts when every reference's is known). The references are ``None`` when the source has none
    or ``use_reference`` is false; anything unknown is ``None``.

    Args:
        config: :meth:`~accelmri.engine.config.ExperimentConfig.to_dict` output (or ``None``).
    """
    source = ((config or {}).get("data") or {}).get("source") or {}
    targets: list[str | None] = []
    references: list[str | None] = []
    if source.get("kind") == "digital_brain":
        targets = [normalize_contrast(c) or str(c) for c in source.get("contrasts") or ()]
        given = source.get("reference")
        listed = [given] if isinstance(given, str) else list(given or ())  # a list: randomised reference
        references = [normalize_contrast(c) or str(c) for c in listed]
    elif source.get("kind") == "files":
        if source.get("csv"):
            targets, references = ["PDFS"], ["PD"]
        elif source.get("ixi"):
            targets = [normalize_contrast(source.get("ixi_target"))]
            references = [normalize_contrast(source.get("ixi_reference"))]
        else:
            entries = [e if isinstance(e, Mapping) else {"target": e} for e in source.get("paths") or ()]
            targets = [file_contrast(e["target"]) for e in entries if e.get("target")]
            references = [file_contrast(e["reference"]) for e in entries if e.get("reference")]
        if not source.get("use_reference", True):
            references = []
    common = _common(references)
    return {"target_contrasts": _common(targets),
            "reference_contrast": common[0] if common is not None and len(common) == 1 else None,
            "reference_contrasts": common}
