"""PGD-DEQ reconstruction + RRDB-SFT super-resolution (paper 001): shapes, DEQ solver, JFB memory, hard DC,
gradients, ablation modes, discriminator, overfitting."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from accelmri.data.sample import Sample
from accelmri.models.base import Prediction
from accelmri.models.baselines.interpolation import sinc_interpolate, to_batch_units
from accelmri.models.blocks.rrdb import RRDB, RRDBSFT, SFTLayer
from accelmri.models.pgd_sft import PGDSFT, VGGDiscriminator, solve_fixed_point
from accelmri.models.registry import build
from accelmri.physics.coils import sense_expand
from accelmri.physics.fft import fft2c
from accelmri.physics.operators import SenseOperator, conjugate_gradient
from tests.model_utils import bicubic, make_batch, overfit, parameters_without_gradient, psnr

TINY = {"channels": 16, "growth": 8, "n_blocks": 1, "cond_channels": 8, "prox_channels": 8, "prox_growth": 8}


pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(scale: int = 2, coils: int = 1, acceleration: float = 2.5, mask_kind: str = "gaussian1d") -> Sample:
    return make_batch(
        "joint",
        scale=scale,
        acceleration=acceleration,
        size=(32, 32),
        coils=coils,
        reference=False,
        sens_maps=coils > 1,
        mask_kind=mask_kind,
    )


def _loss(prediction: Prediction, batch: Sample) -> torch.Tensor:
    """The supervised part of paper 001's generator loss (Eqs. 7 and 9): L1 on the SR and the Rec outputs."""
    loss = F.l1_loss(prediction.image, batch.target)
    if prediction.lr_image is not None:
        loss = loss + F.l1_loss(prediction.lr_image, batch.lr_target)
    return loss


class _Half(nn.Module):
    """A contractive stand-in for Γ: ``s ↦ c·s``."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.factor * s


def _graph_nodes(*outputs: torch.Tensor) -> int:
    """Number of autograd nodes reachable from the outputs' ``grad_fn``."""
    seen: set[object] = set()
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(child for child, _ in node.next_functions if child is not None)
    return len(seen)


@pytest.mark.parametrize(
    ("scale", "coils", "acceleration", "mask_kind"),
    [(2, 1, 2.5, "gaussian1d"), (4, 1, 4.0, "equispaced"), (2, 4, 4.0, "equispaced"), (4, 4, 2.5, "gaussian1d")],
)
def test_shapes_single_and_multi_coil(scale: int, coils: int, acceleration: float, mask_kind: str) -> None:
    batch = _batch(scale, coils, acceleration, mask_kind)
    model = build("pgd_sft", scale=scale, max_iter=3, **TINY)
    with torch.no_grad():
        prediction = model(batch)
    assert prediction.image.shape == batch.target.shape
    assert prediction.lr_image is not None and prediction.lr_image.shape == batch.lr_target.shape
    assert torch.isfinite(prediction.image).all() and torch.isfinite(prediction.lr_image).all()
    assert int(prediction.extras["deq_iterations"]) == 3
    assert prediction.extras["deq_residual"].shape == (batch.target.shape[0],)


def test_multicoil_without_maps_and_bad_settings_are_refused() -> None:
    batch = make_batch("joint", scale=2, acceleration=2.5, coils=4, reference=False, sens_maps=False)
    with pytest.raises(ValueError, match="sens_maps"):
        PGDSFT(**TINY)(batch)
    with pytest.raises(ValueError, match="power of 2"):
        PGDSFT(scale=3)
    with pytest.raises(ValueError, match="mode"):
        PGDSFT(mode="sequential")  # type: ignore[arg-type]


def test_scale_one_is_the_rec_module_as_a_reconstruction_model() -> None:
    """Task ``reconstruction`` (R > 1, s = 1): ``mode="recon_only"`` at scale 1 outputs ``|x*|`` on the input grid."""
    batch = make_batch("reconstruction", scale=1, acceleration=4.0, size=(32, 32), coils=4, reference=False,
                       sens_maps=True)
    model = build("pgd_sft", scale=1, mode="recon_only", max_iter=3, **TINY)
    assert model.sr is None and model.required_fields == ("kspace", "mask")
    with torch.no_grad():
        prediction = model(batch)
        x = model.reconstruct(batch)[0]
    assert prediction.image.shape == batch.target.shape == (2, 1, 32, 32)
    assert prediction.lr_image is not None and torch.equal(prediction.image, prediction.lr_image)
    assert torch.allclose(prediction.image, to_batch_units(x.abs()[:, None], batch), atol=1e-6)
    for mode in ("joint", "sr_only", "no_sft"):
        with pytest.raises(ValueError, match="recon_only"):
            PGDSFT(scale=1, mode=mode)  # type: ignore[arg-type]


@pytest.mark.parametrize("anderson", [False, True])
def test_deq_reaches_tolerance_at_the_fixed_point(anderson: bool) -> None:
    # Γ(s) = 0.9·s makes Φ(x) = 0.9·(x − η Aᴴ(A x − b)) a contraction whose fixed point solves
    # (0.1/0.9 · I + η AᴴA) x = η Aᴴ b, computed independently by conjugate gradients.
    batch = _batch(coils=4)
    eta, factor, tol = 0.7, 0.9, 1e-6
    model = PGDSFT(step_size=eta, tol=tol, max_iter=300, anderson=anderson, **TINY)
    model.prox = _Half(factor)
    x, iterations, residual = model.reconstruct(batch)
    assert float(residual.max()) < tol
    assert 1 < iterations < (40 if anderson else 300)
    op = SenseOperator(batch.mask, batch.sens_maps)
    expected = conjugate_gradient(
        lambda z: (1 - factor) / factor * z + eta * op.normal(z), eta * op.adjoint(batch.kspace), tol=1e-7
    ).x
    assert float((x.detach() - expected).norm() / expected.norm()) < 1e-5
    prediction = model(batch)
    assert int(prediction.extras["deq_iterations"]) == iterations
    assert float(prediction.extras["deq_residual"].max()) < tol


def test_anderson_needs_fewer_iterations_than_plain_iteration() -> None:
    z0 = torch.randn(2, 2, 6, 5, dtype=torch.float64)
    target = torch.randn(2, 2, 6, 5, dtype=torch.float64)
    rate = 0.97
    weights = torch.linspace(0.5, rate, 30, dtype=torch.float64).reshape(1, 2, 3, 5).repeat(1, 1, 2, 1)

    def f(z: torch.Tensor) -> torch.Tensor:  # a linear contraction with rates up to 0.97, fixed point `target`
        return target + weights * (z - target)

    def norms(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).norm(dim=1)

    plain = solve_fixed_point(f, z0, 1000, 1e-6)
    accelerated = solve_fixed_point(f, z0, 1000, 1e-6, anderson=True)
    assert accelerated.iterations < plain.iterations / 3
    for result in (plain, accelerated):
        assert float(result.residual.max()) < 1e-6
        # The solver returns z = f(x_K) and reports r_K = ‖f(x_K) − x_K‖ / ‖x_K‖ of the iterate x_K it evaluated.
        # For this map f(z) − z = W (f(x_K) − x_K): z's own residual is at most `rate` times the reported one
        # (a solver returning another iterate than the one it scored would break this) ...
        own = norms(f(result.z) - result.z) / norms(result.z)
        assert bool((own <= rate * result.residual * (1 + 2 * result.residual)).all())
        # ... and z is within ρ/(1 − ρ)·‖f(x_K) − x_K‖ of the fixed point. A relative residual of 1e-6 therefore
        # allows an error of ~32·1e-6·‖x‖ ≈ 2.5e-4 here, not a fixed 1e-4 (the old test's tolerance, exceeded by
        # 149 of 200 random draws).
        bound = rate / (1 - rate) * result.residual * norms(result.z) * (1 + 2 * result.residual)
        assert bool((norms(result.z - target) <= bound).all())
    assert solve_fixed_point(f, z0, 7, 0.0).iterations == 7


def _forward_counting_saved_tensors(model: nn.Module, batch: Sample) -> tuple[Prediction, list[int]]:
    """Run the model and record the size of every tensor autograd saves for the backward pass."""
    saved: list[int] = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        prediction = model(batch)
    return prediction, saved


def test_backward_graph_does_not_grow_with_iterations() -> None:
    batch = _batch(coils=4)
    model = PGDSFT(tol=0.0, **TINY)
    counts = []
    for max_iter in (5, 30):
        model.max_iter = max_iter
        prediction, saved = _forward_counting_saved_tensors(model, batch)
        assert int(prediction.extras["deq_iterations"]) == max_iter
        assert prediction.lr_image is not None
        counts.append((_graph_nodes(prediction.image, prediction.lr_image), len(saved), sum(saved)))
    assert counts[0] == counts[1]


def test_hard_dc_returns_the_measured_samples() -> None:
    batch = _batch(coils=1)
    for hard_dc in (True, False):
        torch.manual_seed(1)
        model = PGDSFT(hard_dc=hard_dc, step_size=0.5, max_iter=4, **TINY)
        x = model.reconstruct(batch)[0].detach()
        measured = batch.mask * fft2c(x[:, None])
        error = float((measured - batch.kspace).norm() / batch.kspace.norm())
        assert (error < 1e-5) is hard_dc
    # Multi-coil: the coil-wise replacement is a unit gradient step on the data term (maps with Σ|S|² = 1),
    # so it lowers the data residual of the same network's output but cannot zero it (b is not in range(A)).
    batch = _batch(coils=4)
    errors = []
    for hard_dc in (False, True):
        torch.manual_seed(1)
        x = PGDSFT(hard_dc=hard_dc, max_iter=4, **TINY).reconstruct(batch)[0].detach()
        measured = batch.mask * fft2c(sense_expand(x, batch.sens_maps))
        errors.append(float((measured - batch.kspace).norm() / batch.kspace.norm()))
    assert errors[1] < 0.7 * errors[0]


@pytest.mark.parametrize("mode", ["joint", "sr_only", "recon_only", "no_sft"])
def test_every_parameter_gets_a_gradient(mode: str) -> None:
    batch = _batch(coils=4)
    model = PGDSFT(mode=mode, max_iter=3, hard_dc=mode == "no_sft", **TINY)  # type: ignore[arg-type]
    assert parameters_without_gradient(model, _loss(model(batch), batch)) == []


def test_discriminator_any_size_and_gradients() -> None:
    discriminator = build("vgg_discriminator")
    assert isinstance(discriminator, VGGDiscriminator)
    real, fake = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    logits_real, logits_fake = discriminator(real), discriminator(fake)
    assert logits_real.shape == (2, 1)
    loss = F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
    loss = loss + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))  # Eq. 11
    assert parameters_without_gradient(discriminator, loss) == []
    with torch.no_grad():
        assert discriminator.eval()(torch.rand(1, 1, 72, 40)).shape == (1, 1)
    with pytest.raises(ValueError, match="32x32"):
        discriminator(torch.rand(1, 1, 16, 64))


def test_ablation_modes_change_the_computation() -> None:
    batch = _batch(coils=4)
    other_input = replace(batch, lr_input=batch.lr_input.flip(-1))
    other_kspace = replace(batch, kspace=batch.kspace * 1.5)
    # Which inputs each mode reads: joint both, sr_only the image only, no_sft / recon_only the k-space only.
    reads = {"joint": (True, True), "sr_only": (True, False), "no_sft": (False, True), "recon_only": (False, True)}
    parameters = {}
    for mode, (reads_input, reads_kspace) in reads.items():
        torch.manual_seed(0)
        model = PGDSFT(mode=mode, max_iter=3, **TINY)  # type: ignore[arg-type]
        parameters[mode] = sum(p.numel() for p in model.parameters())
        with torch.no_grad():
            image = model(batch).image
            assert (not torch.allclose(model(other_input).image, image)) is reads_input, mode
            assert (not torch.allclose(model(other_kspace).image, image)) is reads_kspace, mode
    assert parameters["joint"] > parameters["no_sft"] > parameters["sr_only"] > parameters["recon_only"]
    # sr_only needs no k-space at all; the others refuse a batch without it.
    without_kspace = replace(batch, kspace=None)
    assert PGDSFT(mode="sr_only", **TINY).required_fields == ("lr_input",)
    PGDSFT(mode="sr_only", **TINY)(without_kspace)
    with pytest.raises(ValueError, match="kspace"):
        PGDSFT(mode="joint", **TINY)(without_kspace)
    # recon_only outputs the Rec module's image itself: |x*| and its k-space zero-padding (sinc) interpolation.
    model = PGDSFT(mode="recon_only", max_iter=3, **TINY)
    with torch.no_grad():
        prediction = model(batch)
        x = model.reconstruct(batch)[0]
    assert prediction.lr_image is not None
    assert torch.allclose(prediction.lr_image, to_batch_units(x.abs()[:, None], batch), atol=1e-6)
    assert torch.allclose(prediction.image, to_batch_units(sinc_interpolate(x, 2).abs()[:, None], batch), atol=1e-6)


def test_rrdb_sft_places_an_identity_sft_in_front_of_each_dense_block() -> None:
    block = RRDBSFT(channels=8, growth=4, cond_channels=3)
    plain = RRDB(channels=8, growth=4, extra_skips=True)
    plain.blocks.load_state_dict(
        {k.removeprefix("blocks."): v for k, v in block.state_dict().items() if "sft" not in k}
    )
    x, cond = torch.randn(2, 8, 6, 5), torch.randn(2, 3, 6, 5)
    assert not torch.allclose(block(x, cond), plain(x))
    for sft in block.sft:
        assert isinstance(sft, SFTLayer)
        nn.init.zeros_(sft.scale[-1].weight), nn.init.zeros_(sft.scale[-1].bias)
        nn.init.zeros_(sft.shift[-1].weight), nn.init.zeros_(sft.shift[-1].bias)
    assert torch.allclose(block(x, cond), plain(x), atol=1e-6)
    assert sum(p.numel() for p in plain.parameters()) == 3 * (8 * 4) + sum(
        p.numel() for p in RRDB(channels=8, growth=4).parameters()
    )


def test_overfits_one_batch() -> None:
    batch = _batch(coils=1)
    model = PGDSFT(max_iter=3, **TINY)

    def loss_fn(model: nn.Module, batch: Sample) -> torch.Tensor:
        return _loss(model(batch), batch)

    overfit(model, batch, loss_fn, steps=300, lr=5e-3)
    with torch.no_grad():
        prediction = model(batch)
    assert prediction.lr_image is not None
    assert psnr(prediction.image, batch.target) > psnr(bicubic(batch), batch.target) + 3
    assert psnr(prediction.lr_image, batch.lr_target) > psnr(batch.lr_input, batch.lr_target) + 3


@pytest.mark.parametrize("coils", [1, 4])
def test_cg_sense_start_is_the_classical_solution(coils: int) -> None:
    """``init="cg_sense"``: with Φ the identity (Γ = identity, η = 0) the output is the start itself, which is the
    CG-SENSE solution; the paper's ``init="adjoint"`` gives ``Aᴴ b``."""
    from accelmri.physics.operators import cg_sense

    batch = make_batch("reconstruction", scale=1, acceleration=4.0, size=(32, 32), coils=coils, reference=False,
                       sens_maps=coils > 1)
    maps = batch.sens_maps
    kspace, mask = (batch.kspace, batch.mask) if maps is not None else (batch.kspace[:, 0], batch.mask[:, 0])
    expected = {"cg_sense": cg_sense(kspace, mask, maps, 0.01, 30).x,
                "adjoint": SenseOperator(batch.mask, maps).adjoint(batch.kspace)}
    if maps is None:
        expected["adjoint"] = expected["adjoint"][:, 0]
    for init, start in expected.items():
        model = build("pgd_sft", scale=1, mode="recon_only", max_iter=2, tol=0.0, init=init, **TINY)
        model.prox = nn.Identity()
        with torch.no_grad():
            model.step_size.fill_(0.0)
            x = model.reconstruct(batch)[0]
        assert torch.allclose(x, start, atol=1e-5), init
    assert not torch.allclose(expected["cg_sense"], expected["adjoint"], atol=1e-2)  # the two starts differ
    with pytest.raises(ValueError, match="init must be one of"):
        PGDSFT(scale=1, mode="recon_only", init="zeros")  # type: ignore[arg-type]
