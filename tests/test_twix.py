"""Tests for accelmri.data.readers.twix on the real Pulseq in-vivo brain data, plus error paths.

Data: ``../shared/data/pulseq_invivo_brain`` (pulseq/MR-Physics-with-Pulseq, MIT licence, see the README there).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from accelmri.data.errors import DataError
from accelmri.data.readers.twix import read_twix_kspace
from accelmri.physics.coils import rss, sense_combine, sense_expand
from accelmri.physics.fft import ifft2c
from accelmri.physics.sensitivity import espirit_maps

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pulseq_invivo_brain"
LOCAL16 = DATA_DIR / "2024-02-06-164128_invivo_localcoil16.dat"


@pytest.fixture(scope="module")
def kspace() -> torch.Tensor:
    if not LOCAL16.is_file():
        pytest.skip("../shared/data/pulseq_invivo_brain not found: real-data test needs the shared data folder")
    pytest.importorskip("twixtools", reason="twixtools not installed: pip install 'accelmri[twix]'")
    return read_twix_kspace(LOCAL16)


@pytest.fixture(scope="module")
def head(kspace: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Coil images and a head mask (RSS above 15 % of its maximum)."""
    coil_images = ifft2c(kspace)
    image = rss(coil_images)
    return coil_images, image > 0.15 * image.max()


def test_shape_dtype(kspace: torch.Tensor) -> None:
    assert kspace.shape == (16, 128, 128)
    assert kspace.dtype == torch.complex64
    assert torch.isfinite(torch.view_as_real(kspace)).all()


def test_kspace_peak_at_centre(kspace: torch.Tensor) -> None:
    energy = (kspace.abs() ** 2).sum(0)
    row, col = divmod(int(energy.argmax()), energy.shape[1])
    assert abs(row - 64) <= 1 and abs(col - 64) <= 1, (row, col)


def test_rss_image_is_brain_like(kspace: torch.Tensor, head: tuple[torch.Tensor, torch.Tensor]) -> None:
    image = rss(ifft2c(kspace))
    corners = torch.stack([image[:16, :16], image[:16, -16:], image[-16:, :16], image[-16:, -16:]])
    assert image[48:80, 48:80].mean() > 8 * corners.mean()
    # The head fills a sizeable, but not the whole, field of view.
    assert 0.15 < head[1].float().mean() < 0.6


def test_espirit_on_real_data(head: tuple[torch.Tensor, torch.Tensor], kspace: torch.Tensor) -> None:
    coil_images, mask = head
    maps = espirit_maps(kspace)
    assert maps.shape == (16, 128, 128) and maps.dtype == torch.complex64
    norm = (maps.abs() ** 2).sum(0)
    kept = norm > 0.5
    assert kept[mask].float().mean() > 0.95
    torch.testing.assert_close(norm[kept], torch.ones_like(norm[kept]))
    # Inside the head the one-set-of-maps model explains the coil images up to the noise level.
    inside = mask & kept
    projected = sense_expand(sense_combine(coil_images, maps), maps)
    residual = (projected - coil_images)[:, inside].norm() / coil_images[:, inside].norm()
    assert residual < 0.15


# ----------------------------------------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.dat"
    with pytest.raises(DataError, match=r"nope\.dat"):
        read_twix_kspace(missing)


def test_missing_twixtools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "scan.dat"
    path.write_bytes(b"\0" * 16)
    monkeypatch.setitem(sys.modules, "twixtools", None)
    with pytest.raises(ImportError, match=r'pip install "accelmri\[twix\]"'):
        read_twix_kspace(path)


def test_unparsable_file(tmp_path: Path) -> None:
    pytest.importorskip("twixtools")
    path = tmp_path / "garbage.dat"
    path.write_bytes(b"hello")
    with pytest.raises(ValueError, match=r"garbage\.dat"):
        read_twix_kspace(path)


def _fake_scan(line: int, coils: int = 2, samples: int = 4, image: bool = True) -> SimpleNamespace:
    data = np.full((coils, samples), line + 1 + 1j, dtype=np.complex64)
    return SimpleNamespace(cLin=line, data=data, is_image_scan=lambda: image)


@pytest.fixture
def fake_twix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Install a stand-in ``twixtools.read_twix`` returning given scans; yields (path, setter)."""
    twixtools = pytest.importorskip("twixtools")
    path = tmp_path / "fake.dat"
    path.write_bytes(b"\0")
    scans: list[SimpleNamespace] = []
    monkeypatch.setattr(twixtools, "read_twix", lambda *args, **kwargs: [{"mdb": scans}])
    return path, scans


def test_lines_placed_by_counter(fake_twix) -> None:
    path, scans = fake_twix
    scans.extend([_fake_scan(2), _fake_scan(0), _fake_scan(1, image=False), _fake_scan(1)])
    kspace = read_twix_kspace(str(path))
    assert kspace.shape == (2, 4, 3)  # (coils, readout, lines)
    torch.testing.assert_close(kspace[0, 0].real, torch.tensor([1.0, 2.0, 3.0]))


@pytest.mark.parametrize(
    ("scans", "match"),
    [
        ([_fake_scan(0, image=False)], "no imaging scans"),
        ([_fake_scan(0), _fake_scan(1, samples=6)], "different shapes"),
        ([_fake_scan(0), _fake_scan(1), _fake_scan(1)], "acquired 2 times"),
        ([_fake_scan(0), _fake_scan(2)], "missing"),
    ],
)
def test_invalid_contents(fake_twix, scans: list[SimpleNamespace], match: str) -> None:
    path, installed = fake_twix
    installed.extend(scans)
    with pytest.raises(ValueError, match=rf"fake\.dat.*{match}"):
        read_twix_kspace(path)
