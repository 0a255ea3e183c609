"""ISMRMRD raw data (``.h5``) reader and writer for fully sampled Cartesian 2-D (multi-slice) acquisitions.

Format: the ISMRM Raw Data format (Inati et al., MRM 77:411-421, 2017; https://ismrmrd.readthedocs.io): an HDF5
group (``/dataset``) holding the XML header (``xml``) and one record per readout (``data``: acquisition header,
trajectory, ``(channels, samples)`` complex data). Uses the ``ismrmrd`` Python package (PyPI, optional
dependency: ``pip install "accelmri[ismrmrd]"``), imported only when a file is read or written.

Placement: readout samples along ``H``, ``idx.kspace_encode_step_1`` along ``W`` (phase encode, accelmri
convention), ``idx.slice`` along ``S``, channels along ``C``. Readouts are kept as acquired (readout
oversampling, if any, is not removed).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import numpy as np
import numpy.typing as npt

from accelmri.io import atomic_output

from ..errors import DataError
from ..volume import KspaceVolume
from .fastmri import make_ismrmrd_header

__all__ = ["read_ismrmrd_kspace", "write_ismrmrd_kspace"]

# Acquisition flags (ISMRMRD ``ACQ_*`` constants) marking readouts that are not imaging lines.
_NON_IMAGING_FLAGS = (
    "ACQ_IS_NOISE_MEASUREMENT",
    "ACQ_IS_PARALLEL_CALIBRATION",  # calibration-only; ..._CALIBRATION_AND_IMAGING lines are kept
    "ACQ_IS_NAVIGATION_DATA",
    "ACQ_IS_PHASECORR_DATA",
    "ACQ_IS_HPFEEDBACK_DATA",
    "ACQ_IS_DUMMYSCAN_DATA",
    "ACQ_IS_RTFEEDBACK_DATA",
    "ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA",
    "ACQ_IS_PHASE_STABILIZATION_REFERENCE",
    "ACQ_IS_PHASE_STABILIZATION",
)


def _import_ismrmrd() -> ModuleType:
    try:
        import ismrmrd
    except ImportError as err:
        raise ImportError('reading and writing ISMRMRD files needs ismrmrd: pip install "accelmri[ismrmrd]"') from err
    return ismrmrd


def read_ismrmrd_kspace(path: str | os.PathLike[str]) -> KspaceVolume:
    """Read the k-space of a fully sampled Cartesian 2-D ISMRMRD file.

    The header's first encoding must be Cartesian with ``encodedSpace/matrixSize/z = 1``. Readouts flagged as
    noise, calibration-only, navigator, phase-correction, feedback, dummy, surface-coil-correction or phase
    stabilisation scans are skipped; every other readout is one phase-encode line, placed by its
    ``idx.kspace_encode_step_1`` and ``idx.slice``. All lines ``0 … matrixSize.y - 1`` of every slice
    ``0 … max(idx.slice)`` must be present exactly once.

    Args:
        path: the ``.h5`` file (group ``/dataset``).

    Returns:
        :class:`KspaceVolume` with ``kspace`` ``(S, C, H, W)`` complex64 (raw scanner units; ``H`` = samples
        per readout, ``W`` = ``matrixSize.y``) and ``attrs`` ``encoding_size`` and ``recon_size`` (``(x, y, z)``
        of the header's encoded and recon spaces).

    Raises:
        ImportError: if ``ismrmrd`` is not installed.
        DataError: naming the file, if it is missing, not HDF5, has no ``/dataset`` group, header or imaging
            acquisitions, the header cannot be parsed, the trajectory is not Cartesian or the encoding is 3-D,
            readouts differ in length or channel count, or lines are missing, repeated (averages, echoes,
            repetitions, …) or outside the encoded matrix, or the data hold NaN/Inf.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(file, "file not found")
    ismrmrd = _import_ismrmrd()
    try:
        with ismrmrd.File(str(file), "r") as handle:
            if "dataset" not in handle:
                raise DataError(file, "no ISMRMRD '/dataset' group")
            dataset = handle["dataset"]
            if not dataset.has_header():
                raise DataError(file, "no ISMRMRD XML header ('/dataset/xml')")
            try:
                header = dataset.header
            except Exception as err:  # xsdata raises its own parser errors on invalid headers
                raise DataError(file, f"invalid ISMRMRD XML header ({type(err).__name__}: {err})") from err
            acquisitions = dataset.acquisitions[:] if dataset.has_acquisitions() else []
    except OSError as err:
        raise DataError(file, f"not a readable HDF5 file ({err})") from err

    encoding = header.encoding[0]
    if encoding.trajectory != ismrmrd.xsd.trajectoryType.CARTESIAN:
        raise DataError(file, f"trajectory '{encoding.trajectory.value}': only Cartesian data are supported")
    encoded, recon = encoding.encodedSpace.matrixSize, encoding.reconSpace.matrixSize
    if encoded.z > 1:
        raise DataError(file, f"3-D encoding (matrix z = {encoded.z}): only 2-D (multi-slice) data are supported")
    skip = [getattr(ismrmrd, flag) for flag in _NON_IMAGING_FLAGS]
    lines = [acq for acq in acquisitions if not any(acq.is_flag_set(flag) for flag in skip)]
    if not lines:
        raise DataError(file, "no imaging acquisitions")

    shapes = sorted({acq.data.shape for acq in lines})
    if len(shapes) > 1:
        raise DataError(file, f"readouts of different (channels, samples) shapes {shapes}")
    if any(acq.idx.kspace_encode_step_2 for acq in lines):
        raise DataError(file, "readouts with kspace_encode_step_2 > 0: only 2-D data are supported")
    line_index = np.array([acq.idx.kspace_encode_step_1 for acq in lines])
    slice_index = np.array([acq.idx.slice for acq in lines])
    n_lines, n_slices = int(encoded.y), int(slice_index.max()) + 1
    if line_index.max() >= n_lines:
        raise DataError(file, f"line {int(line_index.max())} outside the encoded matrix (y = {n_lines})")
    counts = np.zeros((n_slices, n_lines), dtype=np.int64)
    np.add.at(counts, (slice_index, line_index), 1)
    if counts.max() > 1:
        s, line = np.unravel_index(int(np.argmax(counts)), counts.shape)
        raise DataError(
            file,
            f"slice {s} line {line} acquired {int(counts.max())} times: only one fully sampled 2-D frame per slice "
            "is supported (no averages, echoes, phases, repetitions or sets)",
        )
    if counts.min() == 0:
        missing = int((counts == 0).sum())
        raise DataError(file, f"{missing} of {counts.size} (slice, line) pairs missing: not fully sampled")

    channels, samples = shapes[0]
    kspace = np.empty((n_slices, channels, samples, n_lines), dtype=np.complex64)
    kspace[slice_index, :, :, line_index] = np.stack([acq.data for acq in lines])
    if not np.isfinite(kspace).all():
        raise DataError(file, "k-space contains NaN or Inf")
    attrs = {
        "encoding_size": (int(encoded.x), int(encoded.y), int(encoded.z)),
        "recon_size": (int(recon.x), int(recon.y), int(recon.z)),
    }
    return KspaceVolume(kspace=kspace, path=file, attrs=attrs)


def write_ismrmrd_kspace(
    path: str | os.PathLike[str],
    kspace: npt.ArrayLike,
    fov_mm: tuple[float, float, float] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write fully sampled Cartesian 2-D multi-slice k-space as an ISMRMRD file, atomically.

    The header is :func:`~accelmri.data.readers.fastmri.make_ismrmrd_header` (encoded and recon matrix
    ``(H, W, 1)``, ``S`` slices) parsed by ``ismrmrd.xsd``; each ``kspace[s, :, :, w]`` becomes one readout
    ``(C, H)`` with ``idx.slice = s``, ``idx.kspace_encode_step_1 = w``, ``center_sample = H // 2`` and the
    first/last-in-slice and first/last-in-encode-step-1 flags, in slice-major order.

    Args:
        path: destination ``.h5`` file.
        kspace: ``(S, C, H, W)`` k-space (stored as complex64).
        fov_mm: field of view ``(x, y, z)`` in mm for the header (default 1 mm voxels).
        overwrite: replace an existing file.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ImportError: if ``ismrmrd`` is not installed.
        ValueError: if ``kspace`` is not 4-D or holds NaN/Inf.
        FileExistsError: if ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    ismrmrd = _import_ismrmrd()
    kspace = np.asarray(kspace)
    if kspace.ndim != 4:
        raise ValueError(f"kspace must be (S, C, H, W), got shape {kspace.shape}")
    if not np.isfinite(kspace).all():
        raise ValueError("kspace contains NaN or Inf")
    kspace = kspace.astype(np.complex64, copy=False)
    n_slices, _, height, width = kspace.shape
    header = ismrmrd.xsd.CreateFromDocument(
        make_ismrmrd_header((height, width, 1), (height, width, 1), fov_mm=fov_mm, num_slices=n_slices)
    )
    acquisitions = []
    for s in range(n_slices):
        for line in range(width):
            acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(kspace[s, :, :, line]))
            acq.scan_counter = s * width + line
            acq.center_sample = height // 2
            acq.idx.slice = s
            acq.idx.kspace_encode_step_1 = line
            if line == 0:
                acq.set_flag(ismrmrd.ACQ_FIRST_IN_SLICE)
                acq.set_flag(ismrmrd.ACQ_FIRST_IN_ENCODE_STEP1)
            if line == width - 1:
                acq.set_flag(ismrmrd.ACQ_LAST_IN_SLICE)
                acq.set_flag(ismrmrd.ACQ_LAST_IN_ENCODE_STEP1)
            acquisitions.append(acq)
    with atomic_output(path, overwrite=overwrite, suffix=".h5") as tmp, ismrmrd.File(str(tmp), "w") as handle:
        dataset = handle["dataset"]
        dataset.header = header
        dataset.acquisitions = acquisitions
    return path
