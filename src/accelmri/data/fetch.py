"""Public data sets: download IXI (``accelmri datasets fetch ixi``) and how to obtain fastMRI.

IXI (https://brain-development.org/ixi-dataset/, CC BY-SA 3.0) publishes one tar archive per contrast;
:data:`IXI_ARCHIVES` lists the three the IXI configs use with their URLs and what is known of their size and
SHA-256. IXI publishes no checksums, so both are ``None`` ("unknown") there: :func:`download` then checks only
that the byte count matches the server's ``Content-Length`` / ``Content-Range``, and :func:`extract_tar` that the
archive is a complete tar file. Give a size or SHA-256 (an :class:`Archive` of your own) and it is checked too.

Downloads go to ``NAME.part`` and are renamed to ``NAME`` once complete and verified; an interrupted download
resumes from the ``.part`` file with an HTTP ``Range`` request. Archives are extracted into a temporary folder
renamed into place, so a failed extraction leaves nothing half-written.

The environment variable :data:`IXI_URL_ENV` (``ACCELMRI_IXI_URL``) replaces the folder of the IXI URLs (a mirror
holding the same archive names).
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import os
import re
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from accelmri.io import atomic_folder, atomic_output

from .pairing import pairs_from_ixi
from .readers.nifti import ixi_subject_id

__all__ = [
    "FASTMRI_INFO",
    "IXI_ARCHIVES",
    "IXI_URL_ENV",
    "Archive",
    "FetchError",
    "download",
    "extract_tar",
    "fetch_ixi",
    "sha256_file",
]

#: Environment variable: a base URL replacing the folder of every IXI archive URL (``BASE/IXI-T1.tar`` …).
IXI_URL_ENV = "ACCELMRI_IXI_URL"
#: Bytes read per request chunk.
CHUNK = 1 << 20


class FetchError(OSError):
    """A download or archive problem: one line naming the URL or file and the problem (the CLI exits with 2)."""

    def __init__(self, source: str | os.PathLike[str], problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


@dataclass(frozen=True)
class Archive:
    """One downloadable archive.

    Attributes:
        name: file name, as the publisher names it (``IXI-T1.tar``); extracted into a folder of its stem.
        contrast: the contrast it holds (``T1``).
        url: where to download it.
        size: expected size in bytes, or ``None`` (unknown: not checked).
        sha256: expected SHA-256 (lower-case hex), or ``None`` (unknown: not checked).
    """

    name: str
    contrast: str
    url: str
    size: int | None = None
    sha256: str | None = None

    @property
    def folder(self) -> str:
        """The extraction folder's name: ``name`` without ``.tar`` (``IXI-T1``)."""
        return self.name.removesuffix(".tar")


_IXI_SITE = "http://biomedic.doc.ic.ac.uk/brain-development/downloads/IXI"
#: The IXI archives, as linked from https://brain-development.org/ixi-dataset/. IXI publishes no checksums or
#: sizes, and none are recorded here: ``None`` = unknown (see the module docstring for what is still verified).
IXI_ARCHIVES: tuple[Archive, ...] = (
    Archive("IXI-T1.tar", "T1", f"{_IXI_SITE}/IXI-T1.tar", size=None, sha256=None),
    Archive("IXI-T2.tar", "T2", f"{_IXI_SITE}/IXI-T2.tar", size=None, sha256=None),
    Archive("IXI-PD.tar", "PD", f"{_IXI_SITE}/IXI-PD.tar", size=None, sha256=None),
)

FASTMRI_INFO = """\
fastMRI (NYU Langone Health, https://fastmri.med.nyu.edu/) cannot be downloaded by accelmri: its data sharing
agreement forbids redistribution, so every user obtains it from NYU.

How to obtain it:
  1. Register at https://fastmri.med.nyu.edu/ and accept the data sharing agreement; the download links
     arrive by e-mail.
  2. Download and unpack the subsets you need (knee or brain; single-coil or multi-coil; train, val, test).

The folder layout accelmri's configs expect (paths are yours: edit them in the config):
  FASTMRI/
    knee/multicoil_train/*.h5       fastMRI's files as they are (one volume per file)
    knee/multicoil_val/*.h5
    knee/singlecoil_train/*.h5 ...
    pairs_train.csv                 multi-contrast pairs, one row per volume pair: PD_file, PDFS_file[, score]
    pairs_val.csv                   (paths relative to the CSV's folder; column 1 = PD reference, 2 = FS-PD target)

  Reconstruction (fastMRI's leaderboard protocol):
    data.source: {kind: files, dir: {train: FASTMRI/knee/multicoil_train, val: FASTMRI/knee/multicoil_val}}
  Multi-contrast PD -> FS-PD (configs/minet_fastmri_*.yaml, sanet_fastmri_*.yaml, fasrnet_fastmri_*.yaml):
    data.source: {kind: files, csv: {train: FASTMRI/pairs_train.csv, val: FASTMRI/pairs_val.csv,
                                     test: FASTMRI/pairs_val.csv}}

Details: docs/fastmri.md (protocols, masks, evaluation) and docs/data.md (the pairing CSV)."""

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, lower-case hex (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, size: int | None, sha256: str | None, source: str) -> None:
    """Check a file against the known size (bytes) and SHA-256; ``None`` = unknown, not checked.

    Raises:
        FetchError: naming ``source``, on a size or SHA-256 mismatch.
    """
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise FetchError(source, f"size mismatch: {actual} bytes, expected {size}")
    if sha256 is not None:
        digest = sha256_file(path)
        if digest != sha256.lower():
            raise FetchError(source, f"SHA-256 mismatch: got {digest}, expected {sha256.lower()}")


@contextmanager
def _progress_bar(label: str, total: int | None, done: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A rich download bar on stderr (nothing when disabled); yields ``advance(bytes)``."""
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not enabled) as progress:
        task = progress.add_task(label, total=total, completed=done)
        yield lambda n: progress.advance(task, n)


def _fetch_part(url: str, part: Path, size: int | None, progress: bool, timeout: float) -> None:
    """Download ``url`` into ``part``, resuming from its current length with an HTTP ``Range`` request.

    A server that answers a range request with the whole file (200) restarts the download from byte 0.

    Raises:
        FetchError: naming ``url``: the request failed, the server's size contradicts ``size``, the server resumed
            at another byte, or the connection closed before the announced length (the ``.part`` is kept so that
            the next call resumes).
    """
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        unsatisfiable = err.code == 416 and err.headers.get("Content-Range", "").strip() == f"bytes */{offset}"
        if offset and unsatisfiable:
            return  # the .part already holds every byte
        advice = f"; delete {part} to download it from the start" if err.code == 416 else ""
        raise FetchError(url, f"download failed: HTTP {err.code} {err.reason}{advice}") from err
    except (OSError, http.client.HTTPException) as err:
        raise FetchError(url, f"download failed: {getattr(err, 'reason', err)}") from err

    with response:
        content_range = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if response.status == 206:
            if content_range is None or int(content_range[1]) != offset:
                found = "no Content-Range" if content_range is None else f"byte {content_range[1]}"
                raise FetchError(url, f"the server resumed at {found}, not at byte {offset}")
            total = None if content_range[3] == "*" else int(content_range[3])
            mode = "ab"
        else:
            length = response.headers.get("Content-Length")
            offset, mode, total = 0, "wb", int(length) if length is not None else None
        if size is not None and total is not None and total != size:
            raise FetchError(url, f"the server announces {total} bytes, expected {size}")
        total = size if total is None else total
        received = offset
        with part.open(mode) as handle, _progress_bar(part.name.removesuffix(".part"), total, offset,
                                                      progress) as advance:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as err:
                    raise FetchError(url, f"truncated download ({err}) after {received} bytes; run the command "
                                          f"again to resume {part}") from err
                if not chunk:
                    break
                handle.write(chunk)
                received += len(chunk)
                advance(len(chunk))
    if total is not None and received > total:
        part.unlink()
        raise FetchError(url, f"the server sent {received} bytes, more than the {total} it announced (download "
                              "deleted)")
    if total is not None and received < total:
        raise FetchError(url, f"truncated download: the connection closed after {received} of {total} bytes; "
                              f"run the command again to resume {part}")


def download(url: str, dest: Path, *, size: int | None = None, sha256: str | None = None, progress: bool = False,
             timeout: float = 60.0) -> bool:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming a partial ``.part``; verify; rename.

    An existing ``dest`` is a complete earlier download (only verified downloads are renamed to it): it is
    checked against ``size`` / ``sha256`` and not fetched again.

    Args:
        url: the file's URL (``http``/``https``; ``Range`` requests resume partial downloads).
        dest: the final file.
        size: expected size in bytes, or ``None`` (unknown; the server's announced length is still enforced).
        sha256: expected SHA-256 (hex), or ``None`` (unknown, not checked).
        progress: show a rich progress bar on stderr.
        timeout: seconds to wait for the server on each connect or read.

    Returns:
        ``True`` if it was downloaded now, ``False`` if ``dest`` was already there.

    Raises:
        FetchError: network failure or truncated download (naming ``url``; the ``.part`` is kept to resume), a
            size or SHA-256 mismatch of the new download (it is deleted) or of an existing ``dest`` (naming it;
            it is left alone: delete it to download it again).
    """
    if dest.exists():
        _verify(dest, size, sha256, f"{dest} (an earlier download: delete it to download it again)")
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f"{dest.name}.part")
    _fetch_part(url, part, size, progress, timeout)
    try:
        _verify(part, size, sha256, f"{url} (download deleted)")
    except FetchError:
        part.unlink()
        raise
    os.replace(part, dest)
    return True


def extract_tar(archive: Path, dest: Path) -> int:
    """Extract a tar archive into the new folder ``dest``, atomically (a temporary folder renamed into place).

    Members are filtered with tarfile's ``data`` filter (no absolute paths, no ``..``, no links out of ``dest``,
    no device files). Temporary folders left by an earlier interrupted extraction into ``dest`` are removed first.

    Returns:
        The number of regular files extracted.

    Raises:
        FetchError: naming ``archive``: not a readable, complete tar file, an unsafe member, or no files.
        FileExistsError: ``dest`` exists.
    """
    if not hasattr(tarfile, "data_filter"):
        raise FetchError(archive, "this Python's tarfile has no safe extraction filter (needs 3.10.12+ or 3.11.4+)")
    for stale in dest.parent.glob(f".{dest.name}.*.tmp"):  # atomic_folder's temporary names
        shutil.rmtree(stale, ignore_errors=True)
    try:
        with atomic_folder(dest, overwrite=False) as tmp:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
            count = sum(1 for path in tmp.rglob("*") if path.is_file())
            if count == 0:
                raise FetchError(archive, "the archive holds no files")
    except (tarfile.TarError, EOFError) as err:
        raise FetchError(archive, f"not a complete, readable tar archive ({err}); delete it to download it "
                                  "again") from err
    return count


def _write_subjects(out: Path, archives: Sequence[Archive]) -> Path:
    """Write ``out/ixi_subjects.csv``: ``subject`` and one column per contrast (paths relative to ``out``)."""
    table: dict[str, dict[str, str]] = {}
    for archive in archives:
        for path in sorted((out / archive.folder).rglob("IXI*.nii*")):
            subject = ixi_subject_id(path)
            if subject is not None and path.is_file():
                table.setdefault(subject, {})[archive.contrast] = path.relative_to(out).as_posix()
    manifest = out / "ixi_subjects.csv"
    with atomic_output(manifest, overwrite=True) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject", *(archive.contrast for archive in archives)])
        for subject in sorted(table):
            writer.writerow([subject, *(table[subject].get(archive.contrast, "") for archive in archives)])
    return manifest


def fetch_ixi(out: str | os.PathLike[str], *, archives: Sequence[Archive] | None = None, progress: bool = False,
              delete_archives: bool = False, timeout: float = 60.0,
              log: Callable[[str], None] = lambda message: None) -> int:
    """Download, verify and extract IXI T1/T2/PD into ``out``, then check and write the subject pairing.

    Layout: ``out/archives/IXI-T1.tar`` (the download; ``.part`` while incomplete), ``out/IXI-T1/`` (its
    ``IXI<ID>-<Site>-<Num>-T1.nii.gz`` files), the same for T2 and PD, and ``out/ixi_subjects.csv`` (one row per
    subject: its file of each contrast, empty if missing). ``data.source.ixi: OUT`` reads the folder
    (:func:`~accelmri.data.pairing.pairs_from_ixi`). Steps already done are skipped: an extracted folder is not
    extracted again, a complete archive not downloaded again.

    Args:
        out: the data set's folder (created if needed).
        archives: the archives to fetch; default :data:`IXI_ARCHIVES`, with the folder of every URL replaced by
            the environment variable :data:`IXI_URL_ENV` when it is set.
        progress: rich progress bars on stderr.
        delete_archives: delete each archive once extracted (saves their size on disk).
        timeout: seconds to wait for the server on each connect or read.
        log: receives one line per step.

    Returns:
        The number of subjects with both T2 and PD (the IXI configs' target and reference).

    Raises:
        FetchError: see :func:`download` and :func:`extract_tar` (nothing half-extracted is left in ``out``).
        DataError: the extracted files do not pair (no subject with T2 and PD, or two files of one contrast).
        OSError: ``out`` cannot be written.
    """
    root = Path(out)
    if archives is None:
        base = os.environ.get(IXI_URL_ENV)
        archives = IXI_ARCHIVES if not base else tuple(
            replace(archive, url=f"{base.rstrip('/')}/{archive.name}") for archive in IXI_ARCHIVES
        )
    for archive in archives:
        folder = root / archive.folder
        if folder.is_dir():
            log(f"{folder}: already extracted")
            continue
        tar = root / "archives" / archive.name
        fetched = download(archive.url, tar, size=archive.size, sha256=archive.sha256, progress=progress,
                           timeout=timeout)
        log(f"{tar}: {'downloaded' if fetched else 'already downloaded'} from {archive.url}")
        count = extract_tar(tar, folder)
        log(f"{folder}: {count} files extracted")
        if delete_archives:
            tar.unlink()
    manifest = _write_subjects(root, archives)
    pairs = pairs_from_ixi(root, "T2", "PD")
    log(f"{manifest}: {len(pairs)} subjects with T2 and PD (data.source.ixi: {root})")
    return len(pairs)
