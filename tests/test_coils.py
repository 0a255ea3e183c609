from __future__ import annotations

import numpy as np
import pytest
import torch

from accelmri.physics.coils import rss, sense_combine, sense_expand
from tests.conftest import random_complex


def normalised_maps(coils: int, h: int, w: int) -> torch.Tensor:
    maps = random_complex(coils, h, w)
    return maps / rss(maps)


def test_rss_matches_numpy() -> None:
    x = random_complex(2, 6, 9, 7)
    ref = np.sqrt((np.abs(x.numpy()) ** 2).sum(axis=1))
    np.testing.assert_allclose(rss(x).numpy(), ref, atol=1e-12)


def test_sense_combine_is_adjoint_of_expand() -> None:
    maps = random_complex(2, 5, 12, 10)
    x = random_complex(2, 12, 10)
    y = random_complex(2, 5, 12, 10)
    lhs = torch.vdot(sense_expand(x, maps).flatten(), y.flatten())
    rhs = torch.vdot(x.flatten(), sense_combine(y, maps).flatten())
    assert abs(lhs - rhs) / abs(lhs) < 1e-12


def test_combine_inverts_expand_for_normalised_maps() -> None:
    maps = normalised_maps(6, 11, 13)
    x = random_complex(11, 13)
    assert torch.allclose(sense_combine(sense_expand(x, maps), maps), x, atol=1e-12)
    # ...and RSS of the coil images is the magnitude of the image
    assert torch.allclose(rss(sense_expand(x, maps)), x.abs(), atol=1e-12)


def test_coil_errors() -> None:
    maps = normalised_maps(4, 8, 8)
    with pytest.raises(ValueError, match="3 coils, sens_maps has 4"):
        sense_combine(random_complex(3, 8, 8), maps)
    with pytest.raises(ValueError, match="spatial size"):
        sense_expand(random_complex(8, 9), maps)
    with pytest.raises(TypeError, match="complex"):
        sense_expand(random_complex(8, 8), maps.abs())
