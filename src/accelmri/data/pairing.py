"""Multi-contrast pairing: a target contrast and a reference contrast of the same subject and slice.

Two pairing rules, recorded in :attr:`ContrastPair.slice_pairing`:

* ``"index"`` (fastMRI knee PD ↔ FS-PD): no geometry in the files; slice ``i`` of the target pairs with slice ``i``
  of the reference for ``i < min(n_target, n_reference)`` (:func:`pair_slices`), no registration. This is the rule
  of the MINet / SANet / MTrans data loaders.
* ``"world"`` (NIfTI, e.g. IXI or TCGA): the reference is resampled through the two voxel → world affines onto the
  target grid (:func:`align_reference`; a no-op when both share a grid), after which slice ``s`` of the target
  pairs with slice ``s`` of the aligned reference.

Sources: fastMRI multi-contrast CSV layout and slice rule from ``chunmeifeng/MINet``
(``fastmri/data/mri_data.py``: rows ``PD, PDFS[, score]`` without header, names given with or without ``.h5``;
``experimental/MINet/module_MINet.py``: ``batch[0]`` = PD is the fully sampled guide, ``batch[1]`` = PDFS is the
restored contrast) and ``shared/design/models.md`` "Shared facts"; IXI file names from the IXI dataset
(``IXI<ID>-<Site>-<Num>-<contrast>.nii.gz``).
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage

from accelmri.data.errors import DataError
from accelmri.data.readers.nifti import ixi_subject_id
from accelmri.data.volume import ImageVolume

__all__ = [
    "AFFINE_ATOL",
    "IXI_CONTRASTS",
    "ContrastPair",
    "align_reference",
    "pair_slices",
    "pairs_from_csv",
    "pairs_from_ixi",
]

logger = logging.getLogger(__name__)

#: Absolute tolerance (mm, and mm per voxel for the linear part) under which two affines count as equal, and (in
#: voxels) under which a voxel → voxel map counts as an integer lattice map (crop, flip, permutation).
AFFINE_ATOL = 1e-3

#: Contrasts IXI provides as structural NIfTI volumes (MRA and DTI are ignored).
IXI_CONTRASTS = ("T1", "T2", "PD")

# The contrast suffix of an IXI name (the subject ID comes from ``ixi_subject_id``), e.g. ``…-T2.nii.gz``.
_IXI_CONTRAST = re.compile(r"-(T1|T2|PD)(?:-\d+)?\.nii(?:\.gz)?$")


@dataclass(frozen=True)
class ContrastPair:
    """One target / reference pair of files of the same subject.

    Attributes:
        target: file of the contrast to restore (fastMRI FS-PD, IXI ``target``).
        reference: file of the fully sampled guide contrast (fastMRI PD, IXI ``reference``).
        subject: subject key for subject-wise splits (:func:`accelmri.data.splits.split_subjects`): the IXI
            subject ID (``IXI012``, :func:`accelmri.data.readers.nifti.ixi_subject_id`), or for a CSV row the
            reference file's stem (one row per knee).
        target_contrast: contrast name of ``target`` (``"PDFS"``, ``"T2"``, …).
        reference_contrast: contrast name of ``reference`` (``"PD"``, ``"T1"``, …).
        slice_pairing: ``"index"``: pair slices by index with :func:`pair_slices` (no geometry, fastMRI);
            ``"world"``: resample the reference onto the target grid with :func:`align_reference`, then pair
            slice ``s`` with slice ``s``.
        score: the optional third CSV column (kept as given; unused by the pairing), ``None`` elsewhere.
    """

    target: Path
    reference: Path
    subject: str
    target_contrast: str
    reference_contrast: str
    slice_pairing: Literal["index", "world"]
    score: float | None = None


# --------------------------------------------------------------------------------------------------- fastMRI CSV


def pairs_from_csv(
    csv_path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    *,
    header: bool | None = None,
) -> list[ContrastPair]:
    """Read a fastMRI multi-contrast split CSV (rows ``PD_file, PDFS_file[, score]``).

    The **first** column is the reference contrast (PD, the fully sampled guide) and the **second** the target
    (FS-PD, the contrast to restore), as in MINet / SANet / MTrans, where PD guides FS-PD. Every pair gets
    ``slice_pairing="index"``: slices are paired by index over ``min(n_PD, n_PDFS)`` (:func:`pair_slices`).

    Paths: relative paths are resolved against ``root`` if given, else against the CSV's folder. A name that does
    not exist as written but exists with ``.h5`` appended is accepted (the MINet CSVs list ``file1000001``
    without extension). Blank rows are skipped.

    Header: with ``header=None`` the first row is taken as a header when neither of its first two cells names an
    existing file and neither contains a digit (``PD_file, PDFS_file``; fastMRI names always contain digits, so a
    header-less CSV whose first file is missing still raises). ``True`` / ``False`` force it.

    Args:
        csv_path: the CSV file.
        root: folder the relative paths are relative to (default: the CSV's folder).
        header: whether the first row is a header; ``None`` detects it (see above).

    Returns:
        One :class:`ContrastPair` per data row, in file order; ``subject`` is the PD file's stem.

    Raises:
        DataError: the CSV is missing or unreadable, holds no pairs, a row has fewer than two cells or a
            non-numeric score, or a listed file does not exist (the message names the CSV, its line and the file).
    """
    csv_file = Path(csv_path)
    base = Path(root) if root is not None else csv_file.parent
    try:
        with csv_file.open(newline="") as handle:
            rows = list(_csv_rows(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(csv_file, f"cannot read the pairing CSV ({exc})") from exc
    if rows and (header if header is not None else _looks_like_header(rows[0][1], base)):
        rows = rows[1:]

    pairs = []
    for line, cells in rows:
        if len(cells) < 2:
            raise DataError(csv_file, f"line {line}: expected 'PD_file, PDFS_file[, score]', got {cells!r}")
        reference = _resolve(cells[0], base, csv_file, line, "PD (reference)")
        target = _resolve(cells[1], base, csv_file, line, "PDFS (target)")
        score = None
        if len(cells) > 2 and cells[2]:
            try:
                score = float(cells[2])
            except ValueError as exc:
                raise DataError(csv_file, f"line {line}: score {cells[2]!r} is not a number") from exc
        pairs.append(
            ContrastPair(
                target=target,
                reference=reference,
                subject=reference.stem,
                target_contrast="PDFS",
                reference_contrast="PD",
                slice_pairing="index",
                score=score,
            )
        )
    if not pairs:
        raise DataError(csv_file, "no PD/PDFS pairs listed")
    return pairs


def _csv_rows(handle: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line number, stripped cells)`` for each non-blank CSV row."""
    reader = csv.reader(handle)
    for cells in reader:
        stripped = [cell.strip() for cell in cells]
        if any(stripped):
            yield reader.line_num, stripped


def _looks_like_header(cells: list[str], base: Path) -> bool:
    first_two = cells[:2]
    return all(_existing(cell, base) is None and not any(ch.isdigit() for ch in cell) for cell in first_two)


def _existing(name: str, base: Path) -> Path | None:
    """The file ``name`` (relative to ``base`` unless absolute, ``.h5`` appended if needed), or ``None``."""
    path = Path(name).expanduser()
    if not path.is_absolute():
        path = base / path
    if path.is_file():
        return path
    with_suffix = path.with_name(path.name + ".h5")
    return with_suffix if with_suffix.is_file() else None


def _resolve(name: str, base: Path, csv_file: Path, line: int, role: str) -> Path:
    path = _existing(name, base) if name else None
    if path is None:
        raise DataError(csv_file, f"line {line}: {role} file {name!r} not found (looked in {base})")
    return path


# --------------------------------------------------------------------------------------------------- IXI


def pairs_from_ixi(folder: str | os.PathLike[str], target: str = "T2", reference: str = "PD") -> list[ContrastPair]:
    """Pair IXI volumes of one subject by the names ``IXI<ID>-<Site>-<Num>-{T1,T2,PD}.nii[.gz]``.

    ``folder`` is searched recursively (the IXI archives unpack one folder per contrast). Only file names are
    used; nothing is read. In IXI, T2 and PD of a subject share a grid (dual echo) and T1 does not: every pair
    gets ``slice_pairing="world"`` and :func:`align_reference` resamples only where needed.

    Subjects that lack ``target`` or ``reference`` are skipped and reported in one ``logging`` warning
    (logger ``accelmri.data.pairing``) listing them.

    Args:
        folder: folder holding the IXI NIfTI files (any depth).
        target: contrast to restore, one of :data:`IXI_CONTRASTS` (case-insensitive).
        reference: guide contrast, one of :data:`IXI_CONTRASTS`, different from ``target``.

    Returns:
        One :class:`ContrastPair` per complete subject, sorted by subject ID (``IXI012``).

    Raises:
        ValueError: ``target`` / ``reference`` not an IXI contrast, or equal.
        DataError: ``folder`` is not a folder, a subject has two files of one contrast, or no subject has both.
    """
    target, reference = target.upper(), reference.upper()
    for name in (target, reference):
        if name not in IXI_CONTRASTS:
            raise ValueError(f"IXI contrast must be one of {IXI_CONTRASTS}, got {name!r}")
    if target == reference:
        raise ValueError(f"target and reference must differ, both are {target!r}")
    root = Path(folder)
    if not root.is_dir():
        raise DataError(root, "not a folder (expected IXI NIfTI files)")

    files: dict[str, dict[str, Path]] = {}
    for path in sorted(root.rglob("IXI*.nii*")):
        subject, match = ixi_subject_id(path), _IXI_CONTRAST.search(path.name)
        if subject is None or match is None or not path.is_file():
            continue
        contrast = match.group(1)
        by_contrast = files.setdefault(subject, {})
        if contrast in by_contrast:
            raise DataError(path, f"second {contrast} file for subject {subject} (first: {by_contrast[contrast]})")
        by_contrast[contrast] = path

    pairs, incomplete = [], []
    for subject in sorted(files):
        by_contrast = files[subject]
        if target in by_contrast and reference in by_contrast:
            pairs.append(
                ContrastPair(
                    target=by_contrast[target],
                    reference=by_contrast[reference],
                    subject=subject,
                    target_contrast=target,
                    reference_contrast=reference,
                    slice_pairing="world",
                )
            )
        else:
            incomplete.append(subject)
    if incomplete:
        logger.warning(
            "%s: skipped %d IXI subject(s) without both %s and %s: %s",
            root,
            len(incomplete),
            target,
            reference,
            ", ".join(incomplete),
        )
    if not pairs:
        raise DataError(root, f"no IXI subject has both a {target} and a {reference} file")
    return pairs


# --------------------------------------------------------------------------------------------------- slices


def pair_slices(n_target: int, n_reference: int) -> list[tuple[int, int]]:
    """Pair slices by index over ``min(n_target, n_reference)`` (the fastMRI multi-contrast rule).

    Args:
        n_target: number of target slices.
        n_reference: number of reference slices.

    Returns:
        ``[(0, 0), (1, 1), …]`` as ``(target index, reference index)``; empty if either count is 0.

    Raises:
        ValueError: a negative count.
    """
    if n_target < 0 or n_reference < 0:
        raise ValueError(f"slice counts must be non-negative, got {n_target} and {n_reference}")
    return [(i, i) for i in range(min(n_target, n_reference))]


# --------------------------------------------------------------------------------------------------- geometry


def align_reference(target: ImageVolume, reference: ImageVolume, *, min_overlap: float = 0.5) -> ImageVolume:
    """Put ``reference`` on the grid of ``target`` through their voxel → world affines.

    * Same grid (equal shapes and affines equal within :data:`AFFINE_ATOL`): ``reference`` itself is returned,
      unchanged (same object, same array).
    * Otherwise each target voxel centre ``(h, w, s)`` is mapped to reference voxel coordinates
      ``inv(reference.affine) @ target.affine @ (h, w, s, 1)`` and the reference is sampled there with linear
      interpolation (``scipy.ndimage.affine_transform``, order 1). A target voxel is *inside* the reference when
      its coordinates lie in the reference's voxel-extent box ``[-0.5, n - 0.5]`` on all three axes; voxels
      outside are 0. When the voxel → voxel map is within :data:`AFFINE_ATOL` of an integer matrix (one lattice,
      e.g. a crop or a flip), it is rounded, so the values are copied exactly, without interpolation blur.

    Args:
        target: the volume whose grid is kept, ``data`` ``(S, H, W)``.
        reference: the volume to resample, ``data`` ``(S', H', W')``.
        min_overlap: least fraction of target voxel centres that must lie inside the reference (see above).

    Returns:
        ``reference`` itself on the same grid; else a new :class:`ImageVolume` with ``data`` ``(S, H, W)``
        float32, ``affine`` = ``target.affine``, the reference's ``path`` and ``contrast``, and ``attrs`` =
        the reference's plus ``resampled_to`` (the target's path), ``overlap`` (fraction of target voxels inside
        the reference) and ``slice_coverage`` (``(S,)`` float64: that fraction per target slice).

    Raises:
        DataError: (naming both files) fewer than ``min_overlap`` of the target voxels lie inside the reference,
            or the resampled reference is zero everywhere on the target grid.
    """
    if target.data.shape == reference.data.shape and np.allclose(
        target.affine, reference.affine, rtol=0.0, atol=AFFINE_ATOL
    ):
        return reference

    # voxel (h, w, s) of the target -> voxel (h', w', s') of the reference; both in file (i, j, k) order.
    vox2vox = np.linalg.inv(np.asarray(reference.affine, dtype=np.float64)) @ np.asarray(
        target.affine, dtype=np.float64
    )
    if np.allclose(vox2vox, np.round(vox2vox), rtol=0.0, atol=AFFINE_ATOL):
        vox2vox = np.round(vox2vox)
    num_slices, height, width = target.data.shape
    out_shape = (height, width, num_slices)
    ref_hws = np.asarray(reference.data, dtype=np.float32).transpose(1, 2, 0)

    grid = np.ix_(np.arange(height), np.arange(width), np.arange(num_slices))
    inside = np.ones(out_shape, dtype=bool)
    for axis, size in enumerate(ref_hws.shape):
        coord = sum(vox2vox[axis, j] * grid[j] for j in range(3)) + vox2vox[axis, 3]
        inside &= (coord >= -0.5) & (coord <= size - 0.5)
    overlap = float(inside.mean())
    if overlap < min_overlap:
        raise DataError(
            reference.path,
            f"field of view does not overlap the target {target.path}: only {overlap:.1%} of the target voxels "
            f"lie inside this volume (at least {min_overlap:.0%} needed)",
        )

    resampled = ndimage.affine_transform(ref_hws, vox2vox, output_shape=out_shape, order=1, mode="nearest")
    resampled = np.where(inside, resampled, np.float32(0.0)).astype(np.float32, copy=False)
    if not np.any(resampled):
        raise DataError(reference.path, f"no signal on the grid of the target {target.path} after resampling")

    attrs = {
        **reference.attrs,
        "resampled_to": target.path,
        "overlap": overlap,
        "slice_coverage": inside.mean(axis=(0, 1)),
    }
    return ImageVolume(
        data=np.ascontiguousarray(resampled.transpose(2, 0, 1)),
        affine=np.array(target.affine, dtype=np.float64),
        path=reference.path,
        contrast=reference.contrast,
        attrs=attrs,
    )
