"""MINet (paper 003) and SANet (paper 004): shapes, gradient coverage, ablations, integration, overfitting, size."""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from accelmri.data.sample import Sample
from accelmri.models.base import Prediction, set_channels_last
from accelmri.models.minet import ChannelSpatialAttention, MINet, MultiStageIntegration, MultiStageNetwork
from accelmri.models.registry import build
from accelmri.models.sanet import SANet, SeparableAttention
from tests.model_utils import bicubic, make_batch, overfit, parameters_without_gradient, psnr

TINY: dict[str, Any] = {"channels": 8, "n_groups": 2, "n_blocks": 1, "reduction": 2}  # CA hidden width 4


pytestmark = pytest.mark.usefixtures("one_thread")


@cache
def batch_of(scale: int = 2, size: tuple[int, int] = (32, 32), reference: bool = True) -> Sample:
    return make_batch(scale=scale, size=size, reference=reference)


def tiny(cls: type[MultiStageNetwork], **overrides: Any) -> MultiStageNetwork:
    extra = {"attention_channels": 8} if cls is SANet else {}
    return cls(**{**TINY, **extra, **overrides})


def contrast_loss(prediction: Prediction, batch: Sample, alpha: float) -> torch.Tensor:
    """``α·L1(target) + (1−α)·L1(reference)`` (paper 003 Eq. 6, paper 004 Eq. 9); target only without reference."""
    loss = alpha * F.l1_loss(prediction.image, batch.target)
    if prediction.reference_image is not None:
        assert batch.reference is not None
        loss = loss + (1 - alpha) * F.l1_loss(prediction.reference_image, batch.reference)
    return loss


@pytest.mark.parametrize("cls", [MINet, SANet])
@pytest.mark.parametrize(("scale", "size"), [(2, (32, 32)), (2, (24, 40)), (4, (32, 32)), (4, (48, 32))])
def test_output_shapes(cls: type[MultiStageNetwork], scale: int, size: tuple[int, int]) -> None:
    batch = batch_of(scale, size)
    assert batch.lr_input.shape[-2:] == (size[0] // scale, size[1] // scale)
    with torch.no_grad():
        prediction = tiny(cls, scale=scale)(batch)
    assert prediction.image.shape == batch.target.shape
    assert prediction.reference_image is not None and prediction.reference_image.shape == batch.target.shape
    n_features = 2 * (TINY["n_groups"] + 1)  # groups + the closing conv, in both branches
    affinity = prediction.extras["layer_affinity"]
    assert affinity.shape == (batch.target.shape[0], n_features, n_features)
    assert torch.allclose(affinity.sum(-1), torch.ones(()))


@pytest.mark.parametrize("cls", [MINet, SANet])
def test_complex_input(cls: type[MultiStageNetwork]) -> None:
    batch = batch_of()
    with torch.no_grad():
        prediction = tiny(cls, in_channels=2)(batch)
    assert prediction.image.shape == batch.target.shape
    with pytest.raises(ValueError, match="in_channels"):
        tiny(cls, in_channels=3)


@pytest.mark.parametrize(
    ("cls", "flags"),
    [
        (MINet, {}),
        (MINet, {"use_reference": False}),
        (MINet, {"use_integration": False}),
        (MINet, {"use_csa": False}),
        (SANet, {}),
        (SANet, {"use_reference": False}),
        (SANet, {"use_integration": False}),
        (SANet, {"use_csa": False}),
        (SANet, {"attention_stages": "refcode", "n_groups": 5}),
        (SANet, {"batch_norm": True}),
    ],
)
def test_every_parameter_gets_a_gradient(cls: type[MultiStageNetwork], flags: dict[str, Any]) -> None:
    model = tiny(cls, **flags)
    batch = batch_of()
    assert parameters_without_gradient(model, contrast_loss(model(batch), batch, 0.5)) == []


def test_code_gamma_starts_at_zero_and_still_trains_the_3d_conv() -> None:
    """The code's ``G = γ·σ(Att)⊙F + F`` with ``γ = 0``: ``γ`` gets a gradient at once, the 3-D conv after a step."""
    model = tiny(MINet, csa_gamma=0.0)
    batch = batch_of()
    silent = parameters_without_gradient(model, contrast_loss(model(batch), batch, 0.5))
    assert sorted(silent) == [f"{b}.attention.conv.{p}" for b in ("reference", "target") for p in ("bias", "weight")]
    assert all(float(m.gamma.grad.abs()) > 0 for m in model.modules() if isinstance(m, ChannelSpatialAttention))
    torch.optim.Adam(model.parameters(), lr=1e-3).step()
    assert parameters_without_gradient(model, contrast_loss(model(batch), batch, 0.5)) == []


@pytest.mark.parametrize("cls", [MINet, SANet])
def test_integration_gain_starts_as_the_ablation_and_learns(cls: type[MultiStageNetwork]) -> None:
    """HAN's ``γ·M_Int(F)`` with ``γ = 0``: the "w/o integration" output at first, then every weight trains."""
    batch = batch_of()
    gained = tiny(cls, integration_gain=0.0)
    no_integration = tiny(cls, use_integration=False).eval()
    assert _load_shared(gained, no_integration) == ["integration.fuse.bias", "integration.fuse.weight",
                                                    "integration.gain", "integration.temperature"]
    with torch.no_grad():
        assert torch.equal(gained.eval()(batch).image, no_integration(batch).image)
    gained.train()
    silent = parameters_without_gradient(gained, contrast_loss(gained(batch), batch, 0.5))
    assert sorted(silent) == ["integration.fuse.bias", "integration.fuse.weight", "integration.temperature"]
    assert gained.integration is not None and gained.integration.gain is not None
    assert float(gained.integration.gain.grad.abs()) > 0
    torch.optim.Adam(gained.parameters(), lr=1e-3).step()
    assert float(gained.integration.gain.detach()) != 0.0
    assert parameters_without_gradient(gained, contrast_loss(gained(batch), batch, 0.5)) == []
    with torch.no_grad():
        assert not torch.allclose(gained.eval()(batch).image, no_integration(batch).image)


def _load_shared(source: nn.Module, target: nn.Module, own_only: tuple[str, ...] = ()) -> list[str]:
    """Copy ``source``'s weights into ``target`` where names and shapes match; returns the names left out.

    Every weight of ``target`` but those named in ``own_only`` must come from ``source``.
    """
    own = target.state_dict()
    shared = {k: v for k, v in source.state_dict().items() if k in own and own[k].shape == v.shape}
    target.load_state_dict(shared, strict=False)
    assert sorted(set(own) - set(shared)) == sorted(own_only)
    return sorted(set(source.state_dict()) - set(shared))


@pytest.mark.parametrize("cls", [MINet, SANet])
def test_ablations_change_the_computation(cls: type[MultiStageNetwork]) -> None:
    batch = batch_of()
    full = tiny(cls).eval()
    with torch.no_grad():
        reference_output = full(batch).image

        no_integration = tiny(cls, use_integration=False).eval()
        assert all(k.startswith("integration.") for k in _load_shared(full, no_integration))
        assert not torch.allclose(no_integration(batch).image, reference_output)

        no_csa = tiny(cls, use_csa=False).eval()
        assert all(".attention.conv." in k for k in _load_shared(full, no_csa))
        no_csa_output = no_csa(batch)
        assert not torch.allclose(no_csa_output.image, reference_output)
        # With γ = 0 the code's attention is the identity at first: same output as without attention.
        zero_gamma = tiny(cls, csa_gamma=0.0).eval()
        _load_shared(full, zero_gamma, own_only=("reference.attention.gamma", "target.attention.gamma"))
        assert torch.allclose(zero_gamma(batch).image, no_csa_output.image)

        single = tiny(cls, use_reference=False).eval()
        left_out = _load_shared(full, single, own_only=("integration.fuse.weight",))  # reads L + 1 maps, not 2(L + 1)
        assert all(k.split(".")[0] in {"reference", "fusions", "integration"} for k in left_out)
        assert single.required_fields == ("lr_input",) and full.required_fields == ("lr_input", "reference")
        without_reference = batch_of(reference=False)
        assert without_reference.reference is None
        prediction = single(without_reference)
        assert prediction.reference_image is None and prediction.image.shape == batch.target.shape
        assert prediction.extras["layer_affinity"].shape[-1] == TINY["n_groups"] + 1
        assert torch.allclose(single(batch).image, prediction.image)  # the reference is not read
        assert not torch.allclose(prediction.image, reference_output)
        with pytest.raises(ValueError, match="reference"):
            full(without_reference)


def test_reference_must_have_the_hr_size() -> None:
    batch = batch_of()
    assert batch.reference is not None
    cropped = dataclasses.replace(batch, reference=batch.reference[..., :-2, :-2])
    with pytest.raises(ValueError, match="HR size"):
        tiny(MINet)(cropped)


def test_refcode_runs_four_attention_stages() -> None:
    """``attention_stages="refcode"``: groups 1–4 each after a separable attention, then the closing conv."""
    paper, code = tiny(SANet, n_groups=6), tiny(SANet, n_groups=6, attention_stages="refcode")
    assert len(paper.target.stages) == 7 and len(paper.fusions) == 7
    assert len(code.target.stages) == 5 and len(code.fusions) == 4
    assert all(isinstance(f, SeparableAttention) for f in code.fusions)
    assert code.integration is not None and code.integration.fuse.in_channels == 10 * TINY["channels"]
    with torch.no_grad():
        assert code(batch_of()).image.shape == batch_of().target.shape
    with pytest.raises(ValueError, match="attention_stages"):
        tiny(SANet, attention_stages="some")


@pytest.mark.parametrize("use_reference", [True, False])
def test_integration_conv_reads_every_stage(use_reference: bool) -> None:
    model = tiny(MINet, use_reference=use_reference)
    assert model.integration is not None
    n_features = (2 if use_reference else 1) * len(model.target.stages)
    assert model.integration.n_features == n_features
    assert model.integration.fuse.in_channels == n_features * TINY["channels"]
    assert model.integration.fuse.out_channels == TINY["channels"]


@pytest.mark.parametrize("affinity", ["paper", "scaled"])
def test_integration_matches_the_explicit_formula(affinity: str) -> None:
    """Eqs. (7)–(8) written out: ``conv(reshape(S F̂ + F̂))`` with ``S = softmax(F̂F̂ᵀ)`` ("paper") or
    ``softmax(τ·cos)`` ("scaled"), against the weight-mixing form."""
    n, channels = 5, 3
    module = MultiStageIntegration(n, channels, affinity, temperature=2.5)  # type: ignore[arg-type]
    features = [0.05 * torch.randn(2, channels, 6, 7) for _ in range(n)]  # small: a soft, non-one-hot affinity
    flat = torch.cat(features, dim=1).reshape(2, n, -1)
    if affinity == "paper":
        affinity_matrix = torch.softmax(flat @ flat.transpose(1, 2), dim=-1)
    else:
        norms = flat.norm(dim=-1, keepdim=True)
        affinity_matrix = torch.softmax(2.5 * (flat @ flat.transpose(1, 2)) / (norms * norms.transpose(1, 2)), dim=-1)
    expected = module.fuse((affinity_matrix @ flat + flat).reshape(2, n * channels, 6, 7))
    out, got_affinity = module(torch.cat(features, dim=1))
    assert torch.allclose(got_affinity, affinity_matrix, atol=1e-6)
    assert affinity_matrix.max() < 0.9  # the test exercises the mixing, not a one-hot selection
    assert torch.allclose(out, expected, atol=1e-5)
    with pytest.raises(ValueError, match="features"):
        module(torch.cat(features[:-1], dim=1))
    with pytest.raises(ValueError, match="affinity must be one of"):
        MultiStageIntegration(n, channels, "dot")  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [MINet, SANet])
def test_integration_mixes_stages_and_learns_its_affinity(cls: type[MultiStageNetwork]) -> None:
    """On real stage features (32² phantom batch) Eq. 7 as written is one-hot (logits ~1e5, no gradient reaches
    the affinity); the default scaled affinity has soft rows and its temperature gets a gradient."""
    batch = batch_of()
    paper = tiny(cls, channels=16, affinity="paper")
    assert paper.integration is not None and paper.integration.temperature is None
    with torch.no_grad():
        row_max = paper(batch).extras["layer_affinity"].max(dim=-1).values
    assert float(row_max.mean()) > 0.99  # saturated: every row (nearly) one-hot

    model = tiny(cls, channels=16)
    assert model.integration is not None and model.integration.temperature is not None
    prediction = model(batch)
    affinity = prediction.extras["layer_affinity"]
    n = affinity.shape[-1]
    assert float(affinity.detach().max(dim=-1).values.mean()) < 0.5  # every stage draws on several stages
    assert float(affinity.detach().min()) > 0.1 / n
    prediction.image.abs().mean().backward()
    assert model.integration.temperature.grad is not None and float(model.integration.temperature.grad.abs()) > 0


def test_channel_spatial_attention_is_a_3d_conv() -> None:
    """The 2-D-taps form of ``M_Att`` equals ``conv3d`` over ``(C, H, W)`` with the same weights (Eq. 4)."""
    module = ChannelSpatialAttention()
    x = torch.randn(2, 5, 6, 7)
    expected = F.conv3d(x.unsqueeze(1), module.conv.weight, module.conv.bias, padding=1).squeeze(1)
    assert torch.allclose(module.attention_logits(x), expected, atol=1e-6)
    assert torch.allclose(module(x), x + torch.sigmoid(expected) * x, atol=1e-6)


@pytest.mark.parametrize("cls", [MINet, SANet])
def test_overfits_one_batch_beyond_bicubic(cls: type[MultiStageNetwork]) -> None:
    """400 Adam steps on two 32² phantom slices (×2).

    Both models sit near 14 dB for the first ~200 steps: they copy the reference's anatomy, which the fast
    auxiliary reconstruction learns first. Then they start using the LR input. A tiny EDSR has not beaten bicubic
    on this batch after 300 steps, so 400 steps leave a clear margin (24–30 dB over seeds against bicubic's 15.6).
    """
    batch = batch_of()
    model = tiny(cls, channels=16, n_groups=1, n_blocks=1)
    history = overfit(model, batch, lambda m, b: contrast_loss(m(b), b, cls.loss_alpha), steps=400, lr=2e-3)
    assert history[-1] < 0.5 * history[0]
    with torch.no_grad():
        prediction = model(batch)
    assert prediction.reference_image is not None and batch.reference is not None
    assert psnr(prediction.image, batch.target) >= psnr(bicubic(batch), batch.target) + 3.0
    assert psnr(prediction.reference_image, batch.reference) > 30.0


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_at_paper_size() -> None:
    """Paper size (C = 64, L = 6 groups × 6 RCABs, ×2), against the reference code's counts (design/models.md).

    - MINet: the code, once fixed, uses 6.75 M. Our 6.64 M (−1.7 %) has the same trunk (2 × 7 stages, head,
      upsampler, 2(L+1)·64-channel integration conv). ±3 % allows for the code's few extra 64→64 convs.
    - SANet ``refcode``: the code uses 4.64 M (groups 1–4 with separable attention). Ours is 4.74 M (+2.3 %).
    - SANet ``all``: exactly MINet minus its 7 concat fusions plus 7 separable attention modules (Eqs. 10–12,
      K = 32): ``A_H`` 1×1 64→32, ``Conv_Re`` 1×1 128→32, two ``Q`` 3×3 32→32, ``Q_R`` 3×3 64→64. The paper's
      "11 M" is the code's registered count, most of which never runs.
    """
    minet, sanet, refcode = MINet(), SANet(), SANet(attention_stages="refcode")
    assert abs(_count(minet) / 6.75e6 - 1) < 0.03
    assert abs(_count(refcode) / 4.64e6 - 1) < 0.03
    concat_fusion = 128 * 64 + 64
    separable = (64 * 32 + 32) + (128 * 32 + 32) + 2 * (32 * 32 * 9 + 32) + (64 * 64 * 9 + 64)
    assert _count(sanet) == _count(minet) - 7 * concat_fusion + 7 * separable
    assert 6.9e6 < _count(sanet) < 7.1e6
    assert _count(MINet(use_reference=False)) < 0.6 * _count(minet)


def test_registered_with_paper_loss_weights() -> None:
    assert isinstance(build("minet", **TINY), MINet)
    assert isinstance(build("sanet", **TINY, attention_stages="refcode"), SANet)
    assert (MINet.loss_alpha, SANet.loss_alpha) == (0.3, 0.7)


def test_channels_last_matches_nchw() -> None:
    """The NHWC fast path changes the layout only: same outputs to float rounding, and it can be undone."""
    torch.manual_seed(0)
    model = tiny(SANet).eval()
    batch = batch_of()
    with torch.no_grad():
        expected = model(batch).image
        set_channels_last(model)
        conv_weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        assert all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights)
        assert torch.allclose(model(batch).image, expected, atol=1e-5)
        set_channels_last(model, enabled=False)
        assert all(m.weight.is_contiguous() for m in model.modules() if isinstance(m, torch.nn.Conv2d))


@pytest.mark.parametrize("cls", [MINet, SANet])
def test_checkpointed_stages_give_the_same_gradients(cls: type[MultiStageNetwork]) -> None:
    """``checkpoint_stages`` recomputes each stage in the backward pass: same loss and gradients, and the stages
    really run twice in training (once in eval / without autograd)."""
    torch.manual_seed(0)
    plain = tiny(cls).train()
    checkpointed = tiny(cls, checkpoint_stages=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    batch = batch_of()
    calls = {"n": 0}

    def count(*_: object) -> None:
        calls["n"] += 1

    checkpointed.target.stages[0].register_forward_pre_hook(count)  # recomputation stops early: no post hook
    losses = []
    for model in (plain, checkpointed):
        loss = contrast_loss(model(batch), batch, 0.5)
        loss.backward()
        losses.append(loss.detach())
    assert calls["n"] == 2  # forward + recomputation in backward
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters(), strict=True):
        assert a.grad is not None and b.grad is not None, name
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7, msg=name)
    with torch.no_grad():
        checkpointed.eval()(batch)
    assert calls["n"] == 3
