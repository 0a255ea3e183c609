"""fastMRI HDF5 files (single- and multi-coil): lazy slice reader, whole-file reader and atomic writer.

Layout (Zbontar et al., "fastMRI: An Open Dataset and Benchmarks for Accelerated MRI", arXiv:1811.08839, and the
``facebookresearch/fastMRI`` repository, ``fastmri/data/mri_data.py``), one file per volume:

- ``kspace``: complex64, ``(S, C, H, W)`` multi-coil or ``(S, H, W)`` single-coil, readout along ``H``, phase
  encodes along ``W``, DC near ``(H // 2, W // 2)``.
- ``reconstruction_rss`` (multi-coil) / ``reconstruction_esc`` (single-coil): float32 ``(S, h, w)`` targets
  (absent from test-set files).
- ``mask`` (test and challenge files only): float ``(W,)``, the phase-encode lines the k-space was *acquired* with;
  such files are already undersampled (root attributes ``acceleration``, ``num_low_frequency``) and have no target.
- ``ismrmrd_header``: scalar string dataset holding the ISMRMRD XML header; ``encoding/encodedSpace/matrixSize``
  and ``encoding/reconSpace/matrixSize`` give the encoded and reconstructed matrix sizes.
- root attributes: ``acquisition`` (``CORPD_FBK``, ``CORPDFS_FBK``, ``AXT2``, …), ``max`` and ``norm`` of the
  target volume, ``patient_id``.

:class:`FastMRIFile` opens its h5py handle lazily, once per process: reusing a handle created in the parent of
a DataLoader worker leaks memory in the upstream loader (facebookresearch/fastMRI issue #215).
"""

from __future__ import annotations

import operator
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt

from accelmri.io import atomic_output

from ..errors import DataError
from ..volume import KspaceVolume

__all__ = ["ISMRMRD_NAMESPACE", "FastMRIFile", "make_ismrmrd_header", "read_fastmri", "write_fastmri"]

ISMRMRD_NAMESPACE = "http://www.ismrm.org/ISMRMRD"
_MULTICOIL_TARGET = "reconstruction_rss"
_SINGLECOIL_TARGET = "reconstruction_esc"
# Proton Larmor frequency written into generated headers (≈ 3 T); the schema requires the element.
_LARMOR_HZ = 127_740_000

Size3 = tuple[int, int, int]


def open_hdf5(path: Path) -> h5py.File:
    """Open an existing HDF5 file read-only, turning every failure into a :class:`DataError`."""
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        return h5py.File(path, "r")
    except OSError as err:  # h5py raises OSError for non-HDF5, truncated and corrupt files
        raise DataError(path, f"not a readable HDF5 file ({err})") from err


def _plain(value: Any) -> Any:
    """An HDF5 attribute value as a plain Python object (bytes → str, numpy scalar → int/float/str)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _header_sizes(path: Path, xml: str | bytes) -> tuple[Size3, Size3, tuple[int, int] | None]:
    """Encoded and recon matrix sizes ``(x, y, z)`` and the acquired phase-encode columns from an ISMRMRD header.

    The columns are fastMRI's ``(padding_left, padding_right)`` (``fastmri/data/mri_data.py``):
    ``left = encoded y // 2 − kspace_encoding_step_1 center`` and ``right = left + maximum + 1``; ``None`` when the
    header has no ``encodingLimits/kspace_encoding_step_1`` with both values.

    The namespace is taken from the root element (``{http://www.ismrm.org/ISMRMRD}ismrmrdHeader`` in valid
    headers; un-namespaced headers are accepted too).

    Raises:
        DataError: if the XML is malformed or lacks a matrix size.
    """
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise DataError(path, f"ismrmrd_header is not valid XML ({err})") from err
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""

    def size(space: str) -> Size3:
        node = root.find(f"{ns}encoding/{ns}{space}/{ns}matrixSize")
        values = [None if node is None else node.findtext(f"{ns}{axis}") for axis in "xyz"]
        try:
            x, y, z = (int(value) for value in values)
        except (TypeError, ValueError) as err:
            raise DataError(path, f"ismrmrd_header lacks a valid encoding/{space}/matrixSize") from err
        return x, y, z

    encoded = size("encodedSpace")
    limits = root.find(f"{ns}encoding/{ns}encodingLimits/{ns}kspace_encoding_step_1")
    try:
        center, maximum = int(limits.findtext(f"{ns}center")), int(limits.findtext(f"{ns}maximum"))
    except (AttributeError, TypeError, ValueError):
        return encoded, size("reconSpace"), None
    left = encoded[1] // 2 - center
    return encoded, size("reconSpace"), (left, left + maximum + 1)


class FastMRIFile:
    """One fastMRI HDF5 file: metadata read on construction, slices read on demand.

    The constructor opens the file, validates and records its metadata, and closes it again. The h5py handle
    used by :meth:`read_slice` is opened lazily on the first read and re-opened whenever the process id
    changes (DataLoader workers), and it is dropped when pickling, so instances can be handed to worker
    processes (fork or spawn).

    Attributes:
        path: the file.
        num_slices: ``S``.
        kspace_shape: per-slice k-space shape ``(C, H, W)``; single-coil files give ``C = 1``.
        multicoil: whether ``kspace`` is stored as ``(S, C, H, W)`` (else ``(S, H, W)``).
        target_key: ``"reconstruction_rss"`` (multi-coil) or ``"reconstruction_esc"`` (single-coil) if that
            dataset exists, else ``None``.
        target_shape: per-slice target shape ``(h, w)``, or ``None`` without a target.
        attrs: the file's root attributes as plain Python values (``acquisition``, ``max``, ``norm``,
            ``patient_id`` where present).
        encoding_size: ``(x, y, z)`` of ``encoding/encodedSpace/matrixSize``, ``None`` without a header.
        recon_size: ``(x, y, z)`` of ``encoding/reconSpace/matrixSize``, ``None`` without a header.
        acquired_columns: fastMRI's ``(padding_left, padding_right)``: the phase-encode columns
            ``[left, right)`` that were acquired (``encodingLimits``), ``None`` without them.
        challenge: whether the file is a fastMRI test/challenge file, already undersampled: it has a ``mask``
            dataset (its ``acceleration`` and ``num_low_frequency`` attributes are in ``attrs``).

    Raises:
        DataError: naming the file, if it is missing, not HDF5 (or truncated/corrupt), has no ``kspace``
            dataset, ``kspace`` is not rank 3/4 or not complex or has no slices, the target's shape does not
            match, or the ``ismrmrd_header`` cannot be parsed.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._handle: h5py.File | None = None
        self._pid: int | None = None
        with open_hdf5(self.path) as file:
            kspace = file.get("kspace")
            if not isinstance(kspace, h5py.Dataset):
                raise DataError(self.path, f"no 'kspace' dataset (keys: {sorted(file.keys())})")
            if kspace.ndim not in (3, 4):
                raise DataError(
                    self.path,
                    f"'kspace' has shape {kspace.shape}: expected (slices, H, W) or (slices, coils, H, W)",
                )
            if kspace.dtype.kind != "c":
                raise DataError(self.path, f"'kspace' has dtype {kspace.dtype}, expected complex")
            if kspace.shape[0] == 0:
                raise DataError(self.path, "'kspace' has no slices")
            self.multicoil = kspace.ndim == 4
            self.num_slices = int(kspace.shape[0])
            shape = tuple(int(n) for n in kspace.shape[1:])
            self.kspace_shape: Size3 = shape if self.multicoil else (1, *shape)

            key = _MULTICOIL_TARGET if self.multicoil else _SINGLECOIL_TARGET
            self.target_key: str | None = key if key in file else None
            self.target_shape: tuple[int, int] | None = None
            if self.target_key is not None:
                target = file[self.target_key]
                if not isinstance(target, h5py.Dataset) or target.ndim != 3 or target.shape[0] != self.num_slices:
                    found = target.shape if isinstance(target, h5py.Dataset) else "a group"
                    raise DataError(self.path, f"'{key}' is {found}: expected ({self.num_slices}, h, w) like 'kspace'")
                self.target_shape = (int(target.shape[1]), int(target.shape[2]))

            self.attrs: dict[str, Any] = {name: _plain(value) for name, value in file.attrs.items()}
            self.challenge = "mask" in file
            self.encoding_size: Size3 | None = None
            self.recon_size: Size3 | None = None
            self.acquired_columns: tuple[int, int] | None = None
            if "ismrmrd_header" in file:
                xml = file["ismrmrd_header"][()]
                if not isinstance(xml, (str, bytes)):
                    raise DataError(self.path, "'ismrmrd_header' is not a scalar string dataset")
                self.encoding_size, self.recon_size, self.acquired_columns = _header_sizes(self.path, xml)

    def __len__(self) -> int:
        return self.num_slices

    @property
    def is_open(self) -> bool:
        """Whether this process currently holds an open handle."""
        return self._handle is not None and self._pid == os.getpid()

    def _file(self) -> h5py.File:
        if not self.is_open:
            # A handle inherited from another process (fork) is dropped, not closed: it belongs to the parent.
            self._handle = open_hdf5(self.path)
            self._pid = os.getpid()
        return self._handle

    def read_slice(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Read one slice.

        Args:
            index: slice index in ``[-S, S)``.

        Returns:
            ``(kspace, target)``: k-space ``(C, H, W)`` complex64 (``C = 1`` for single-coil files) and the
            target ``(h, w)`` float32, or ``None`` when the file has none.

        Raises:
            IndexError: if ``index`` is out of range.
            DataError: naming the file, if the slice cannot be read or holds NaN/Inf values.
        """
        index = operator.index(index)
        if not -self.num_slices <= index < self.num_slices:
            raise IndexError(f"{self.path}: slice {index} out of range for {self.num_slices} slices")
        index %= self.num_slices
        file = self._file()
        try:
            kspace = np.asarray(file["kspace"][index], dtype=np.complex64)
            target = None if self.target_key is None else np.asarray(file[self.target_key][index], np.float32)
        except OSError as err:
            raise DataError(self.path, f"cannot read slice {index} ({err})") from err
        if not np.isfinite(kspace).all():
            raise DataError(self.path, f"'kspace' slice {index} contains NaN or Inf")
        if target is not None and not np.isfinite(target).all():
            raise DataError(self.path, f"'{self.target_key}' slice {index} contains NaN or Inf")
        return (kspace if self.multicoil else kspace[None]), target

    def read_mask(self) -> np.ndarray:
        """The phase-encode lines a test/challenge file was acquired with (:attr:`challenge`).

        Returns:
            Its ``mask`` dataset as ``(W,)`` float32 of 0 and 1 (``W`` the k-space width).

        Raises:
            DataError: naming the file, if it has no ``mask`` dataset, or the mask is not ``W`` values of 0 and 1
                with at least one 1.
        """
        file = self._file()
        dataset = file.get("mask")
        if not isinstance(dataset, h5py.Dataset):
            raise DataError(self.path, "no 'mask' dataset: not a fastMRI test/challenge file")
        width = self.kspace_shape[-1]
        try:
            mask = np.asarray(dataset[()], dtype=np.float32).reshape(-1)
        except (OSError, TypeError, ValueError) as err:
            raise DataError(self.path, f"cannot read 'mask' ({err})") from err
        if mask.size != width or not np.isin(mask, (0.0, 1.0)).all() or not mask.any():
            raise DataError(self.path, f"'mask' of shape {dataset.shape} is not {width} values of 0 and 1 (one per "
                            "phase-encode column of 'kspace', at least one 1)")
        return mask

    def close(self) -> None:
        """Close this process's handle, if open (reads re-open it)."""
        if self.is_open:
            self._handle.close()
        self._handle = None
        self._pid = None

    def __enter__(self) -> FastMRIFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"] = None
        state["_pid"] = None
        return state


def read_fastmri(path: str | os.PathLike[str]) -> KspaceVolume:
    """Read a whole fastMRI file.

    Args:
        path: the ``.h5`` file.

    Returns:
        :class:`KspaceVolume` with ``kspace`` ``(S, C, H, W)`` complex64 (``C = 1`` for single-coil files),
        ``target`` ``(S, h, w)`` float32 or ``None``, and ``attrs`` = the file's root attributes plus
        ``encoding_size`` and ``recon_size`` (``(x, y, z)`` or ``None``) and ``target_key``.

    Raises:
        DataError: as :class:`FastMRIFile` and :meth:`FastMRIFile.read_slice`.
    """
    with FastMRIFile(path) as file:
        kspace = np.empty((file.num_slices, *file.kspace_shape), dtype=np.complex64)
        target = None if file.target_shape is None else np.empty((file.num_slices, *file.target_shape), np.float32)
        for index in range(file.num_slices):
            kspace[index], target_slice = file.read_slice(index)
            if target is not None:
                target[index] = target_slice
    attrs = {
        **file.attrs,
        "encoding_size": file.encoding_size,
        "recon_size": file.recon_size,
        "target_key": file.target_key,
    }
    return KspaceVolume(kspace=kspace, path=file.path, target=target, attrs=attrs)


def make_ismrmrd_header(
    encoding_size: Size3,
    recon_size: Size3,
    fov_mm: tuple[float, float, float] | None = None,
    num_slices: int = 1,
) -> str:
    """A minimal ISMRMRD XML header for a Cartesian 2-D acquisition.

    Elements, in schema order (ISMRMRD ``schema/ismrmrd.xsd``): ``experimentalConditions/H1resonanceFrequency_Hz``
    (a placeholder, ≈ 3 T), one ``encoding`` with ``encodedSpace`` and ``reconSpace`` (``matrixSize`` and
    ``fieldOfView_mm``), ``encodingLimits`` (``kspace_encoding_step_1`` 0…y-1 centred at y // 2 and ``slice``
    0…num_slices-1) and ``trajectory`` = ``cartesian``. The default namespace is
    ``http://www.ismrm.org/ISMRMRD``. In fastMRI terms ``x`` is the readout (``H``) and ``y`` the phase-encode
    (``W``) size.

    Args:
        encoding_size: encoded matrix ``(x, y, z)``.
        recon_size: reconstructed matrix ``(x, y, z)``.
        fov_mm: field of view ``(x, y, z)`` in mm, written for both spaces; default: 1 mm voxels of the encoded
            matrix.
        num_slices: number of slices (``encodingLimits/slice``).

    Returns:
        The XML document as a string.

    Raises:
        ValueError: if a size or ``num_slices`` is not a positive integer, or a field of view is not positive.
    """
    sizes = {"encoding_size": encoding_size, "recon_size": recon_size}
    for name, size in sizes.items():
        if len(size) != 3 or any(int(n) != n or n < 1 for n in size):
            raise ValueError(f"{name} must be three positive integers (x, y, z), got {size}")
    if int(num_slices) != num_slices or num_slices < 1:
        raise ValueError(f"num_slices must be a positive integer, got {num_slices}")
    fov = tuple(float(n) for n in encoding_size) if fov_mm is None else tuple(float(v) for v in fov_mm)
    if len(fov) != 3 or min(fov) <= 0:
        raise ValueError(f"fov_mm must be three positive lengths (x, y, z), got {fov_mm}")

    def add(parent: ET.Element, tag: str, text: object = None) -> ET.Element:
        child = ET.SubElement(parent, f"{{{ISMRMRD_NAMESPACE}}}{tag}")
        if text is not None:
            child.text = str(text)
        return child

    def add_space(parent: ET.Element, tag: str, size: Size3) -> None:
        space = add(parent, tag)
        matrix = add(space, "matrixSize")
        field = add(space, "fieldOfView_mm")
        for axis, n, length in zip("xyz", size, fov, strict=True):
            add(matrix, axis, int(n))
            add(field, axis, length)

    def add_limit(parent: ET.Element, tag: str, maximum: int, center: int) -> None:
        limit = add(parent, tag)
        add(limit, "minimum", 0)
        add(limit, "maximum", maximum)
        add(limit, "center", center)

    root = ET.Element(f"{{{ISMRMRD_NAMESPACE}}}ismrmrdHeader")
    add(add(root, "experimentalConditions"), "H1resonanceFrequency_Hz", _LARMOR_HZ)
    encoding = add(root, "encoding")
    add_space(encoding, "encodedSpace", encoding_size)
    add_space(encoding, "reconSpace", recon_size)
    limits = add(encoding, "encodingLimits")
    n_lines = int(encoding_size[1])
    add_limit(limits, "kspace_encoding_step_1", n_lines - 1, n_lines // 2)
    add_limit(limits, "slice", int(num_slices) - 1, 0)
    add(encoding, "trajectory", "cartesian")
    return ET.tostring(root, encoding="unicode", default_namespace=ISMRMRD_NAMESPACE)


def write_fastmri(
    path: str | os.PathLike[str],
    kspace: npt.ArrayLike,
    target: npt.ArrayLike | None = None,
    attrs: dict[str, Any] | None = None,
    header_xml: str | None = None,
    overwrite: bool = False,
    extra: dict[str, npt.ArrayLike] | None = None,
) -> Path:
    """Write a fastMRI-layout HDF5 file atomically (temporary file in the same folder, then :func:`os.replace`).

    Args:
        path: destination ``.h5`` file.
        kspace: ``(S, C, H, W)`` (multi-coil) or ``(S, H, W)`` (single-coil) k-space, stored as complex64
            (real input is taken as complex), chunked one slice per chunk.
        target: optional ``(S, h, w)`` reference images, stored as float32 under ``reconstruction_rss``
            (multi-coil) or ``reconstruction_esc`` (single-coil).
        attrs: root attributes (``acquisition``, ``patient_id``, …; scalars or strings). With a target, ``max``
            and ``norm`` (its maximum and L2 norm over the volume, as in fastMRI) are added unless given.
        header_xml: the ``ismrmrd_header`` string; default :func:`make_ismrmrd_header` with encoded size
            ``(H, W, 1)``, recon size ``(h, w, 1)`` (``(H, W, 1)`` without a target) and ``S`` slices.
        overwrite: replace an existing file.
        extra: further datasets ``{name: array}`` written as given (e.g. ``reconstruction_noise_free``); fastMRI's
            readers ignore them.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: if ``kspace`` is not rank 3/4 or is empty, the target is not ``(S, h, w)``, or either holds NaN/Inf.
        FileExistsError: if ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    kspace = np.asarray(kspace)
    if kspace.ndim not in (3, 4) or 0 in kspace.shape:
        raise ValueError(f"kspace must be a non-empty (S, H, W) or (S, C, H, W) array, got shape {kspace.shape}")
    if not np.isfinite(kspace).all():
        raise ValueError("kspace contains NaN or Inf")
    kspace = kspace.astype(np.complex64, copy=False)
    num_slices = kspace.shape[0]
    if target is not None:
        target = np.asarray(target, dtype=np.float32)
        if target.ndim != 3 or target.shape[0] != num_slices:
            raise ValueError(f"target must be ({num_slices}, h, w) to match kspace, got shape {target.shape}")
        if not np.isfinite(target).all():
            raise ValueError("target contains NaN or Inf")
    file_attrs = dict(attrs or {})
    if target is not None:
        file_attrs.setdefault("max", float(target.max()))
        file_attrs.setdefault("norm", float(np.linalg.norm(target)))
    if header_xml is None:
        height, width = kspace.shape[-2:]
        recon = (height, width) if target is None else target.shape[1:]
        header_xml = make_ismrmrd_header((height, width, 1), (*recon, 1), num_slices=num_slices)

    with atomic_output(path, overwrite=overwrite, suffix=".h5") as tmp, h5py.File(tmp, "w") as file:
        file.create_dataset("kspace", data=kspace, chunks=(1, *kspace.shape[1:]))
        if target is not None:
            file.create_dataset(_MULTICOIL_TARGET if kspace.ndim == 4 else _SINGLECOIL_TARGET, data=target)
        file.create_dataset("ismrmrd_header", data=header_xml)
        for name, data in (extra or {}).items():
            file.create_dataset(name, data=np.asarray(data))
        file.attrs.update(file_attrs)
    return path
