"""`accelmri datasets fetch ixi` against a loopback HTTP server with Range support (no network)."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result
from typer.testing import CliRunner

from accelmri.cli import app
from accelmri.data import fetch
from accelmri.data.pairing import pairs_from_ixi
from accelmri.data.readers import read_nifti, write_nifti

runner = CliRunner()
SUBJECTS = ("IXI002-Guys-0828", "IXI012-HH-1211")


@dataclass
class _Files:
    """What the server serves (URL path → bytes), how many bytes to send before closing a response, the log."""

    bodies: dict[str, bytes]
    cut: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    """GET with ``Range: bytes=N-`` (206, or 416 past the end); a ``cut`` entry closes the connection early."""

    server: ThreadingHTTPServer

    def do_GET(self) -> None:
        files: _Files = self.server.files  # type: ignore[attr-defined]
        requested = self.headers.get("Range")
        files.requests.append((self.path, requested))
        body = files.bodies.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = int(re.fullmatch(r"bytes=(\d+)-", requested)[1]) if requested else 0
        if start >= len(body) > 0 and requested:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.end_headers()
            return
        self.send_response(206 if requested else 200)
        if requested:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut = files.cut.pop(self.path, None)
        self.wfile.write(body[start:] if cut is None else body[start : start + cut])

    def log_message(self, *args: object) -> None:
        """Quiet."""


def _archive(contrast: str, folder: Path) -> bytes:
    """A flat tar of tiny NIfTI volumes in IXI's names, as IXI-<contrast>.tar holds them."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for number, subject in enumerate(SUBJECTS):
            path = write_nifti(folder / f"{subject}-{contrast}.nii.gz",
                               np.full((2, 4, 4), number + 1, dtype=np.float32), np.eye(4))
            tar.add(path, arcname=path.name)
    return buffer.getvalue()


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Files]:
    """Serve IXI-T1/T2/PD.tar on 127.0.0.1; ACCELMRI_IXI_URL points the fetcher at it; the URL table knows the
    archives' sizes and SHA-256 (the real table's are unknown)."""
    source = tmp_path / "source"
    source.mkdir()
    bodies = {f"/ixi/IXI-{contrast}.tar": _archive(contrast, source) for contrast in ("T1", "T2", "PD")}
    monkeypatch.setattr(fetch, "IXI_ARCHIVES", tuple(
        replace(archive, size=len(body), sha256=hashlib.sha256(body).hexdigest())
        for archive, body in zip(fetch.IXI_ARCHIVES, bodies.values(), strict=True)
    ))
    files = _Files(bodies)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files = files  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv(fetch.IXI_URL_ENV, f"http://127.0.0.1:{httpd.server_address[1]}/ixi/")
    yield files
    httpd.shutdown()
    httpd.server_close()


def _fetch(out: Path) -> Result:
    return runner.invoke(app, ["datasets", "fetch", "ixi", "--out", str(out)])


def _files(out: Path) -> list[str]:
    return sorted(path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file())


def test_clean_download_extracts_and_pairs(server: _Files, tmp_path: Path) -> None:
    out = tmp_path / "IXI"
    result = _fetch(out)
    assert result.exit_code == 0, result.output
    pairs = pairs_from_ixi(out)  # what data.source.ixi: OUT reads (T2 target, PD reference)
    assert [pair.subject for pair in pairs] == ["IXI002", "IXI012"]
    assert pairs[1].target == out / "IXI-T2" / "IXI012-HH-1211-T2.nii.gz"
    assert float(read_nifti(pairs[1].reference).data.mean()) == 2.0
    with (out / "ixi_subjects.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["subject", "T1", "T2", "PD"]
    assert rows[1] == ["IXI002", *(f"IXI-{c}/IXI002-Guys-0828-{c}.nii.gz" for c in ("T1", "T2", "PD"))]
    for name, body in server.bodies.items():
        assert (out / "archives" / name.rpartition("/")[2]).read_bytes() == body
    assert not [name for name in _files(out) if name.endswith(".part") or ".tmp" in name]
    assert [rng for _, rng in server.requests] == [None, None, None]


def test_existing_download_is_not_fetched_again(server: _Files, tmp_path: Path) -> None:
    out = tmp_path / "IXI"
    assert _fetch(out).exit_code == 0
    before = len(server.requests)
    for contrast in ("T1", "PD"):  # extracted data lost, archives kept: re-extracted, not downloaded
        for path in (out / f"IXI-{contrast}").iterdir():
            path.unlink()
        (out / f"IXI-{contrast}").rmdir()
    result = _fetch(out)
    assert result.exit_code == 0, result.output
    assert len(server.requests) == before
    assert "already downloaded" in result.output and "already extracted" in result.output
    assert len(pairs_from_ixi(out, target="T1", reference="PD")) == 2


def test_complete_part_file_is_finished_without_refetching(server: _Files, tmp_path: Path) -> None:
    out = tmp_path / "IXI"
    (out / "archives").mkdir(parents=True)
    (out / "archives" / "IXI-T1.tar.part").write_bytes(server.bodies["/ixi/IXI-T1.tar"])  # killed before renaming
    result = _fetch(out)
    assert result.exit_code == 0, result.output
    size = len(server.bodies["/ixi/IXI-T1.tar"])
    assert server.requests[0] == ("/ixi/IXI-T1.tar", f"bytes={size}-")  # answered 416: nothing more to send
    assert (out / "archives" / "IXI-T1.tar").read_bytes() == server.bodies["/ixi/IXI-T1.tar"]
    assert len(pairs_from_ixi(out)) == 2


def test_corrupt_download_is_refused(server: _Files, tmp_path: Path) -> None:
    name = "/ixi/IXI-T1.tar"
    body = bytearray(server.bodies[name])
    body[600] ^= 0xFF  # same size, one byte changed: the SHA-256 differs
    server.bodies[name] = bytes(body)
    out = tmp_path / "IXI"
    result = _fetch(out)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "IXI-T1.tar" in result.stderr and "SHA-256 mismatch" in result.stderr
    assert _files(out) == []  # no archive, no .part, nothing extracted


def test_truncated_download_resumes(server: _Files, tmp_path: Path) -> None:
    name = "/ixi/IXI-T2.tar"
    server.cut[name] = 1000  # the first response closes after 1000 of its bytes
    out = tmp_path / "IXI"
    result = _fetch(out)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "IXI-T2.tar" in result.stderr and "truncated" in result.stderr
    assert (out / "archives" / "IXI-T2.tar.part").stat().st_size == 1000
    assert not (out / "IXI-T2").exists() and not list(out.glob(".IXI-T2*"))

    result = _fetch(out)
    assert result.exit_code == 0, result.output
    assert server.requests[-2:] == [(name, "bytes=1000-"), ("/ixi/IXI-PD.tar", None)]
    assert (out / "archives" / "IXI-T2.tar").read_bytes() == server.bodies[name]
    assert len(pairs_from_ixi(out)) == 2


def test_truncated_archive_of_unknown_checksum_is_not_extracted(server: _Files, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "IXI_ARCHIVES", tuple(
        replace(archive, size=None, sha256=None) for archive in fetch.IXI_ARCHIVES
    ))  # the real table: nothing known but the server's length
    name = "/ixi/IXI-T1.tar"
    with tarfile.open(fileobj=io.BytesIO(server.bodies[name])) as tar:
        last = tar.getmembers()[-1]
    server.bodies[name] = server.bodies[name][: last.offset_data + last.size // 2]  # the last member cut short
    out = tmp_path / "IXI"
    result = _fetch(out)
    assert result.exit_code == 2
    assert "IXI-T1.tar: not a complete, readable tar archive" in result.stderr
    assert _files(out) == ["archives/IXI-T1.tar"]  # nothing half-extracted


def test_network_failure_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), _Handler) as closed:
        port = closed.server_address[1]  # bound, then closed: nothing listens there
    monkeypatch.setenv(fetch.IXI_URL_ENV, f"http://127.0.0.1:{port}")
    out = tmp_path / "IXI"
    result = _fetch(out)
    assert result.exit_code == 2
    assert f"http://127.0.0.1:{port}/IXI-T1.tar: download failed" in result.stderr
    assert _files(out) == []


def test_fastmri_info() -> None:
    result = runner.invoke(app, ["datasets", "info", "fastmri"])
    assert result.exit_code == 0
    assert "https://fastmri.med.nyu.edu/" in result.output and "pairs_train.csv" in result.output
