"""Write the digital brain to disk as a fastMRI-layout data set (``accelmri simulate``).

Output folder ``OUT`` (layout :data:`LAYOUT_VERSION`), per subject ``K`` (``0 … subjects − 1``) and contrast ``C``:

* ``multicoil/brain_sub{K:03d}_{C}.h5`` (``singlecoil/`` for one coil, :func:`kspace_folder`; fastMRI's challenge
  names, in a folder that holds only these files, so fastMRI's ``SliceDataset(root=OUT/multicoil,
  challenge="multicoil")`` opens it as it opens ``knee/multicoil_val``): fastMRI HDF5
  (:func:`accelmri.data.readers.fastmri.write_fastmri`): ``kspace`` ``(S, coils, H, W)`` complex64 (``(S, H, W)``
  for one coil), ``reconstruction_rss`` (``reconstruction_esc`` for one coil) ``(S, H, W)`` float32, the RSS
  magnitude (``|x|`` for one coil) *of the stored noisy k-space*, so a perfect reconstruction of ``kspace`` scores
  perfectly under fastMRI's evaluation, and ``reconstruction_noise_free``, the same magnitude without the noise
  (what the digital brain is); ``ismrmrd_header`` with encoded and recon matrix
  ``(H, W, 1)``, field of view ``(fov, fov, slice thickness)`` mm and ``S`` slices; root attributes
  ``acquisition`` (the contrast name), ``patient_id`` (``brain_sub{K:03d}``), ``max`` and ``norm`` of the target,
  and the sequence timing ``tr_ms``, ``te_ms`` (and ``ti_ms`` for FLAIR) and ``noise_std`` this subject and
  contrast actually got (they differ from the nominal ones with a :class:`~accelmri.data.digital_brain.Realism`
  sequence jitter or noise range), ``seed``, and ``realism``: the :class:`~accelmri.data.digital_brain.Realism`
  fields as a JSON object. The reference contrast's file (``reference``) also records the misregistration applied
  to it (:attr:`~accelmri.data.digital_brain.BrainSubject.misregistration`): ``reference_shift_mm`` ``[x, y]``,
  ``reference_shift_px`` ``[h, w]``, ``reference_rotation_deg``, ``reference_slice_thickness_mm``,
  ``reference_noise_scale`` and ``reference_resample_offset_px`` ``[h, w]``.
* with ``nifti``: ``nifti/brain_sub{K:03d}_{C}.nii.gz``, the same (noisy) target magnitude with the voxel → RAS
  affine (:func:`accelmri.data.readers.nifti.write_nifti`), so the NIfTI readers and world-coordinate pairing apply.
* with two or more contrasts, ``pairs.csv``: the fastMRI multi-contrast split layout of MINet / SANet / MTrans
  (:func:`accelmri.data.pairing.pairs_from_csv`), **without a header row**, one row ``reference_file,target_file``
  per subject and target contrast (subject-major), paths relative to ``OUT`` (``multicoil/brain_sub000_PD.h5``,
  :func:`~accelmri.data.pairing.pairs_from_csv` resolves them against the CSV's folder). The **first** contrast
  given is the reference (the role of PD in ``PD_file, PDFS_file``), every other contrast is a target: with
  ``contrasts=("PD", "PDFS")`` the file is exactly the fastMRI PD → FS-PD layout. No header because the fastMRI
  CSVs have none and a header such as ``T1_file,T2_file`` could not be told from file names. All contrasts of a
  subject share one pose, so slices pair by index.

Safety: an existing non-empty folder is refused unless ``overwrite``; with ``overwrite`` only the files listed
above are replaced, anything else in the folder is left alone. Everything is first written into a hidden staging
folder next to ``out_dir`` and moved in only when every file has been written, so an error leaves ``out_dir``
untouched (and removes the staging folder).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from accelmri.data.digital_brain import Realism, canonical_contrast, digital_brain_subject
from accelmri.data.readers.fastmri import make_ismrmrd_header, write_fastmri
from accelmri.data.readers.nifti import write_nifti
from accelmri.engine.progress import progress_display
from accelmri.physics.coils import rss
from accelmri.physics.fft import ifft2c

__all__ = [
    "LAYOUT_VERSION",
    "NIFTI_FOLDER",
    "PAIRS_FILE",
    "kspace_folder",
    "simulate_dataset",
    "simulated_file",
    "subject_file_stem",
]

#: Name of the multi-contrast pairing CSV (at the top of the output folder).
PAIRS_FILE = "pairs.csv"

#: Folder of the NIfTI files inside the output folder.
NIFTI_FOLDER = "nifti"

#: Version of the output folder layout: 1 had every file at the top; 2 puts the ``.h5`` files in
#: :func:`kspace_folder` and the NIfTI files in :data:`NIFTI_FOLDER` (fastMRI's ``SliceDataset`` opens the former).
LAYOUT_VERSION = 2


def subject_file_stem(subject: int, contrast: str) -> str:
    """File name stem of one subject and contrast, e.g. ``brain_sub003_T2``."""
    return f"brain_sub{subject:03d}_{contrast}"


def kspace_folder(coils: int) -> str:
    """The folder of the ``.h5`` files inside the output folder: ``multicoil``, or ``singlecoil`` for one coil."""
    return "multicoil" if coils > 1 else "singlecoil"


def simulated_file(out_dir: str | os.PathLike[str], subject: int, contrast: str, coils: int) -> Path:
    """The ``.h5`` file of one subject and (canonical) contrast in an output folder of :func:`simulate_dataset`,
    e.g. ``OUT/multicoil/brain_sub003_T2.h5``."""
    return Path(out_dir) / kspace_folder(coils) / f"{subject_file_stem(subject, contrast)}.h5"


def simulate_dataset(
    out_dir: str | os.PathLike[str],
    contrasts: Sequence[str] = ("T1", "T2"),
    coils: int = 8,
    subjects: int = 10,
    size: int = 256,
    slices: int = 16,
    noise_std: float = 0.005,
    seed: int = 0,
    nifti: bool = False,
    overwrite: bool = False,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    realism: Realism | None = None,
    reference: str | None = None,
    progress: bool = False,
) -> list[Path]:
    """Simulate ``subjects`` digital-brain subjects and write them as a fastMRI-layout data set (module docstring).

    Args:
        out_dir: output folder (created with its parents if missing).
        contrasts: contrasts of :data:`accelmri.data.digital_brain.CONTRASTS` (case-insensitive, no repeats); the
            first is the reference in ``pairs.csv``.
        coils: receive coils (``1``: single-coil files).
        subjects: number of subjects, numbered ``0 … subjects − 1``.
        size: even matrix size ``H = W``.
        slices: slices per volume.
        noise_std: complex k-space noise std per sample (see
            :func:`accelmri.data.digital_brain.digital_brain_subject`).
        seed: data-set seed; the same arguments give bit-identical files.
        nifti: also write ``.nii.gz`` magnitude volumes.
        overwrite: allow writing into a non-empty folder, replacing only the files this call writes.
        cache_dir: digital-brain tissue-map cache folder (default: ``ACCELMRI_CACHE`` / ``~/.cache``).
        realism: the simulation's :class:`~accelmri.data.digital_brain.Realism` (``None``: off, the original
            simulation).
        reference: the reference contrast, which must be the first of ``contrasts`` (the reference column of
            ``pairs.csv``): the realism's ``reference_*`` imperfections are applied to it. ``None``: no contrast
            gets them.
        progress: show a progress bar (subjects written, elapsed, ETA) on stderr.

    Returns:
        The written files, in order: per subject and contrast the ``.h5`` (then the ``.nii.gz``), then
        ``pairs.csv`` (paths as in the module docstring).

    Raises:
        FileExistsError: ``out_dir`` is a non-empty folder and ``overwrite`` is false.
        NotADirectoryError: ``out_dir`` exists and is not a folder.
        ValueError: invalid arguments (unknown or repeated contrast, ``subjects < 1``, odd ``size``, a reference
            that is not the first contrast, …).
        TypeError: ``realism`` is not a :class:`~accelmri.data.digital_brain.Realism`.
        OSError: the output cannot be written (nothing is left in ``out_dir`` then).
    """
    out = Path(out_dir).expanduser()
    names = [canonical_contrast(c) for c in ([contrasts] if isinstance(contrasts, str) else contrasts)]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"contrasts must be a non-empty list without repeats, got {list(contrasts)!r}")
    realism = Realism() if realism is None else realism
    if not isinstance(realism, Realism):
        raise TypeError(f"realism must be a Realism, got {type(realism).__name__}")
    if reference is not None and canonical_contrast(reference) != names[0]:
        raise ValueError(f"the reference {reference!r} must be the first contrast (the reference column of "
                         f"{PAIRS_FILE}), got contrasts {names}")
    if isinstance(subjects, bool) or not isinstance(subjects, int) or subjects < 1:
        raise ValueError(f"subjects must be a positive int, got {subjects!r}")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out}: folder is not empty; pass overwrite (--overwrite) to replace its files")

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.simulate-"))
    try:
        with progress_display(progress) as display:
            task = display.add_task(f"simulating {out.name}", total=subjects)
            names_written = _write_all(staging, names, coils, subjects, size, slices, noise_std, seed, nifti,
                                       cache_dir, realism, names[0] if reference is not None else None,
                                       lambda: display.advance(task))
        for name in names_written:
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / name for name in names_written]


def _magnitude(kspace: torch.Tensor) -> torch.Tensor:
    """``(S, C, H, W)`` k-space → ``(S, H, W)`` float32 magnitude: RSS of the coil images, ``|x|`` for one coil."""
    images = ifft2c(kspace)
    return (rss(images) if images.shape[1] > 1 else images[:, 0].abs()).to(torch.float32)


def _write_all(
    folder: Path,
    contrasts: list[str],
    coils: int,
    subjects: int,
    size: int,
    slices: int,
    noise_std: float,
    seed: int,
    nifti: bool,
    cache_dir: str | os.PathLike[str] | None,
    realism: Realism,
    reference: str | None,
    advance: Callable[[], None] = lambda: None,
) -> list[str]:
    """Generate and write every file into ``folder`` (the module docstring's layout); returns the paths relative to
    ``folder`` (POSIX strings) in write order. ``advance()`` is called as each subject is written."""
    h5_folder = kspace_folder(coils)
    (folder / h5_folder).mkdir()
    if nifti:
        (folder / NIFTI_FOLDER).mkdir()
    written: list[str] = []
    pairs: list[tuple[str, str]] = []
    realism_json = json.dumps(realism.to_dict(), sort_keys=True)
    for subject in range(subjects):
        brain = digital_brain_subject(subject, contrasts, coils, size, slices, noise_std, seed, cache_dir=cache_dir,
                                      realism=realism, reference=reference)
        spacing = np.linalg.norm(brain.affine[:3, :3], axis=0)  # voxel size along (h, w, s), mm
        fov = (size * float(spacing[0]), size * float(spacing[1]), float(spacing[2]))
        header = make_ismrmrd_header((size, size, 1), (size, size, 1), fov_mm=fov, num_slices=slices)
        for contrast in contrasts:
            stem = subject_file_stem(subject, contrast)
            sequence = brain.sequences[contrast]
            attrs: dict[str, str | float | int | list[float]] = {
                "acquisition": contrast,
                "patient_id": f"brain_sub{subject:03d}",
                "tr_ms": sequence.tr_ms,
                "te_ms": sequence.te_ms,
                "noise_std": brain.noise_stds[contrast],
                "seed": int(seed),
                "realism": realism_json,
            }
            if sequence.ti_ms is not None:
                attrs["ti_ms"] = sequence.ti_ms
            if contrast == reference:
                applied = brain.misregistration
                for key in ("shift_mm", "shift_px", "rotation_deg", "slice_thickness_mm", "noise_scale",
                            "resample_offset_px"):
                    attrs[f"reference_{key}"] = applied[key]
            kspace = brain.kspace[contrast].numpy()
            target = _magnitude(brain.kspace[contrast]).numpy()
            h5_file = f"{h5_folder}/{stem}.h5"
            write_fastmri(folder / h5_file, kspace if coils > 1 else kspace[:, 0], target, attrs, header,
                          extra={"reconstruction_noise_free": brain.targets[contrast].numpy()})
            written.append(h5_file)
            if nifti:
                write_nifti(folder / NIFTI_FOLDER / f"{stem}.nii.gz", target, brain.affine)
                written.append(f"{NIFTI_FOLDER}/{stem}.nii.gz")
        reference_file = f"{h5_folder}/{subject_file_stem(subject, contrasts[0])}.h5"
        pairs.extend((reference_file, f"{h5_folder}/{subject_file_stem(subject, c)}.h5") for c in contrasts[1:])
        del brain, kspace, target  # free this subject (≈ 0.3 GB at 256², 8 coils) before the next
        advance()
    if pairs:
        with (folder / PAIRS_FILE).open("w", newline="") as handle:
            csv.writer(handle).writerows(pairs)
        written.append(PAIRS_FILE)
    return written
