from __future__ import annotations

import pytest
import torch

from accelmri.data.phantom import shepp_logan
from accelmri.physics.coils import rss
from accelmri.physics.fft import fft2c
from accelmri.physics.operators import SenseOperator, cg_sense, conjugate_gradient, data_consistency
from tests.conftest import random_complex


def smooth_maps(coils: int, h: int, w: int, dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    """Smooth, normalised coil maps: Gaussian blobs around a circle with a linear phase each."""
    y = torch.linspace(-1, 1, h, dtype=torch.float64)[:, None]
    x = torch.linspace(-1, 1, w, dtype=torch.float64)[None, :]
    maps = []
    for c in range(coils):
        angle = 2 * torch.pi * c / coils
        cy, cx = 1.2 * torch.sin(torch.tensor(angle)), 1.2 * torch.cos(torch.tensor(angle))
        magnitude = torch.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 1.5)
        maps.append(torch.polar(magnitude, angle + 0.5 * (x * cx + y * cy)))
    stacked = torch.stack(maps).to(dtype)
    return stacked / rss(stacked)


def column_mask(w: int, h: int, step: int, centre: int) -> torch.Tensor:
    mask = torch.zeros(h, w)
    mask[:, ::step] = 1
    mask[:, w // 2 - centre // 2 : w // 2 + centre - centre // 2] = 1
    return mask


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_sense_operator_adjointness_multicoil(dtype: torch.dtype) -> None:
    maps = random_complex(2, 8, 24, 20, dtype=dtype)  # batch 2, 8 coils
    op = SenseOperator(column_mask(20, 24, 3, 4), maps)
    x = random_complex(2, 24, 20, dtype=dtype)
    y = random_complex(2, 8, 24, 20, dtype=dtype)
    lhs = torch.vdot(op.forward(x).flatten(), y.flatten())
    rhs = torch.vdot(x.flatten(), op.adjoint(y).flatten())
    assert (abs(lhs - rhs) / abs(lhs)).item() < 1e-5
    assert torch.allclose(op.normal(x), op.adjoint(op.forward(x)))


def test_single_coil_operator_is_masked_fft() -> None:
    mask = column_mask(16, 16, 4, 2)
    op = SenseOperator(mask)
    x = random_complex(3, 16, 16)
    assert torch.allclose(op(x), mask * fft2c(x))
    y = random_complex(3, 16, 16)
    assert abs(torch.vdot(op(x).flatten(), y.flatten()) - torch.vdot(x.flatten(), op.adjoint(y).flatten())) < 1e-9


def test_operator_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="binary"):
        SenseOperator(torch.full((8, 8), 0.5))
    with pytest.raises(TypeError, match="complex"):
        SenseOperator(torch.ones(8, 8), torch.ones(4, 8, 8))
    with pytest.raises(ValueError, match="spatial size"):
        SenseOperator(torch.ones(8, 8), random_complex(4, 9, 7))


def test_hard_data_consistency_returns_measured_samples_exactly() -> None:
    mask = column_mask(12, 10, 3, 2)
    measured = mask * random_complex(4, 10, 12)
    predicted = random_complex(4, 10, 12)
    out = data_consistency(predicted, measured, mask)
    sampled = mask.bool().expand_as(out)
    assert torch.equal(out[sampled], measured[sampled])
    assert torch.equal(out[~sampled], predicted[~sampled])


def test_soft_data_consistency_limits_and_formula() -> None:
    mask = column_mask(12, 10, 3, 2)
    measured = mask * random_complex(10, 12)
    predicted = random_complex(10, 12)
    assert torch.allclose(data_consistency(predicted, measured, mask, 0.0), predicted)
    near_hard = data_consistency(predicted, measured, mask, 1e9)
    assert torch.allclose(near_hard, data_consistency(predicted, measured, mask), atol=1e-7)
    lam = torch.tensor(2.0, requires_grad=True)
    soft = data_consistency(predicted, measured, mask, lam)
    expected = torch.where(mask.bool(), (predicted + 2 * measured) / 3, predicted)
    assert torch.allclose(soft.detach(), expected)
    soft.abs().sum().backward()
    assert lam.grad is not None and lam.grad.abs() > 0
    with pytest.raises(ValueError, match=">= 0"):
        data_consistency(predicted, measured, mask, -1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        data_consistency(predicted, measured[:5], mask)


def test_cg_matches_dense_least_squares_solution() -> None:
    h, w, coils = 8, 6, 3
    maps = random_complex(coils, h, w)
    mask = column_mask(w, h, 2, 2)
    op = SenseOperator(mask, maps)
    # Build A explicitly (columns = A applied to unit images) and solve the normal equations densely.
    eye = torch.eye(h * w, dtype=torch.complex128).reshape(h * w, h, w)
    a = op.forward(eye).reshape(h * w, -1).T
    b = op.forward(random_complex(h, w)) + mask * random_complex(coils, h, w) * 0.1
    lam = 0.05
    dense = torch.linalg.solve(a.conj().T @ a + lam * torch.eye(h * w), a.conj().T @ b.flatten())
    result = cg_sense(b, mask, maps, l2_weight=lam, max_iter=200, tol=1e-12)
    assert torch.allclose(result.x.flatten(), dense, atol=1e-9)


def test_cg_sense_converges_on_noiseless_phantom() -> None:
    image = shepp_logan((64, 64), phase_cycles=0.5, dtype=torch.complex128)
    maps = smooth_maps(8, 64, 64)
    mask = column_mask(64, 64, 3, 8)  # R ~ 2.6 with an 8-column calibration centre
    kspace = mask * fft2c(image.unsqueeze(0) * maps)
    result = cg_sense(kspace, mask, maps, max_iter=200, tol=1e-8)
    assert result.iterations < 200
    assert result.residual_norms[-1] < 1e-8
    assert result.residual_norms[-1] < result.residual_norms[0]
    error = (result.x - image).norm() / image.norm()
    zero_filled = SenseOperator(mask, maps).adjoint(kspace)
    assert error < 1e-6
    assert (zero_filled - image).norm() / image.norm() > 0.1


def test_conjugate_gradient_is_batched_and_validates() -> None:
    diag = torch.rand(3, 5, 5, dtype=torch.float64) + 0.5
    rhs = random_complex(3, 5, 5)
    result = conjugate_gradient(lambda v: diag * v, rhs, max_iter=100, tol=1e-12)
    assert torch.allclose(result.x, rhs / diag, atol=1e-10)
    warm = conjugate_gradient(lambda v: diag * v, rhs, x0=rhs / diag, max_iter=5, tol=1e-10)
    assert warm.iterations == 1
    with pytest.raises(ValueError, match="max_iter"):
        conjugate_gradient(lambda v: v, rhs, max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        conjugate_gradient(lambda v: v, rhs, tol=0)
