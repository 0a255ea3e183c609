"""Shared test fixtures and paths."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same random state, whatever ran before it (order-independent suite)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def brain_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny CI configs' digital brain (3 subjects × 4 slices × 64², T2), simulated once per test module (use
    with :func:`tests.engine_utils.tiny`)."""
    from accelmri.engine.build import prepare_data
    from accelmri.engine.config import load_config
    from tests.engine_utils import CONFIGS

    folder = tmp_path_factory.mktemp("brain") / "data"
    prepare_data(load_config(CONFIGS / "tiny_sr_edsr.yaml", [f"data.source.dir={folder}"]).data)
    return folder


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread for the test: on a shared 2-core machine two threads make small convolutions 5–20×
    slower (OpenMP spinning). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_complex(*shape: int, dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    """Standard complex Gaussian tensor (real and imaginary parts N(0, 1/2))."""
    return torch.randn(*shape, dtype=dtype)
