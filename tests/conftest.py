"""Shared test fixtures and paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def random_complex(*shape: int, dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    """Standard complex Gaussian tensor (real and imaginary parts N(0, 1/2))."""
    return torch.randn(*shape, dtype=dtype)
