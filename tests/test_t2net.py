from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from accelmri.data.sample import Sample
from accelmri.models.base import Prediction
from accelmri.models.registry import build
from accelmri.models.t2net import T2Net, TaskTransformer
from tests.model_utils import bicubic, make_batch, overfit, parameters_without_gradient, psnr

TINY = {"channels": 8, "n_blocks": 2}


def joint_loss(prediction: Prediction, batch: Sample, alpha: float = 0.2, beta: float = 0.8) -> torch.Tensor:
    """Paper Eq. 1: α·L1(SR, HR) + β·L1(Rec, fully sampled LR) (the Rec term only when there is a Rec output)."""
    loss = alpha * F.l1_loss(prediction.image, batch.target)
    if prediction.lr_image is not None:
        loss = loss + beta * F.l1_loss(prediction.lr_image, batch.lr_target)
    return loss


def dense_task_transformer(
    module: TaskTransformer, query: torch.Tensor, key: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference ``H_tt`` from the dense formula: ``(H·W)×(H·W)`` relevance, argmax/max over keys, patches of ``V``
    gathered at the argmax and folded back with overlap averaging (unfold/gather/fold), ``Q + conv([C, Q])·S``.

    Returns the output ``(B, C, H, W)`` and the argmax ``(B, H·W)``.
    """
    batch, _, height, width = query.shape
    q = F.normalize(F.unfold(query, 3, padding=1), dim=1)  # (B, 9C, N)
    k = F.normalize(F.unfold(key, 3, padding=1), dim=1)
    relevance = torch.einsum("bdk,bdq->bkq", k, q)  # (B, N keys, N queries)
    soft, index = relevance.max(dim=1)
    if module.value == "paper":
        up = F.interpolate(key, scale_factor=module.scale, mode="bicubic", align_corners=False)
        value = F.interpolate(up, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    else:
        value = key
    patches = F.unfold(value, 3, padding=1)  # (B, 9C, N)
    gathered = torch.stack([patches[b][:, index[b]] for b in range(batch)])
    summed = F.fold(gathered, (height, width), 3, padding=1)
    counts = F.fold(F.unfold(torch.ones(1, 1, height, width), 3, padding=1), (height, width), 3, padding=1)
    transferred = summed / counts
    fused = F.conv2d(torch.cat([transferred, query], 1), module.fuse.weight, module.fuse.bias)
    return query + fused * soft.view(batch, 1, height, width), index


@pytest.mark.parametrize("value", ["paper", "refcode"])
def test_task_transformer_equals_dense_reference(value: str) -> None:
    module = TaskTransformer(channels=6, scale=2, value=value, block_size=37)  # type: ignore[arg-type]
    query, key = torch.randn(2, 6, 9, 11), torch.randn(2, 6, 9, 11)
    expected, expected_index = dense_task_transformer(module, query, key)
    soft, index = module.correspond(query, key)
    assert torch.equal(index, expected_index)
    assert torch.allclose(module(query, key), expected, atol=1e-5)
    assert soft.shape == (2, 99) and bool((soft <= 1 + 1e-6).all())


def test_value_paper_is_a_smoothed_rec_feature() -> None:
    key = torch.randn(1, 4, 12, 12)
    paper = TaskTransformer(4, scale=2, value="paper").value_features(key)
    assert paper.shape == key.shape and not torch.allclose(paper, key)
    assert torch.equal(TaskTransformer(4, scale=2, value="refcode").value_features(key), key)
    with pytest.raises(ValueError, match="value"):
        TaskTransformer(4, value="other")  # type: ignore[arg-type]


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("lr_size", [(8, 8), (12, 10)])
def test_shapes(scale: int, lr_size: tuple[int, int]) -> None:
    model = build("t2net", scale=scale, **TINY)
    batch = make_batch("joint", scale=scale, acceleration=2, size=(lr_size[0] * scale, lr_size[1] * scale))
    with torch.no_grad():
        prediction = model(batch)
    assert prediction.image.shape == (2, 1, lr_size[0] * scale, lr_size[1] * scale)
    assert prediction.lr_image is not None and prediction.lr_image.shape == (2, 1, *lr_size)
    assert isinstance(model, T2Net) and model.required_fields == ("lr_input",)


@pytest.mark.parametrize(
    "flags", [{}, {"value": "refcode"}, {"use_rec_branch": False}, {"use_task_transformer": False}]
)
def test_every_parameter_gets_a_gradient(flags: dict[str, object]) -> None:
    model = T2Net(scale=2, **TINY, **flags)  # type: ignore[arg-type]
    batch = make_batch("joint", scale=2, acceleration=2, size=(16, 16))
    assert parameters_without_gradient(model, joint_loss(model(batch), batch)) == []


def test_ablation_flags_change_the_computation() -> None:
    batch = make_batch("joint", scale=2, acceleration=2, size=(16, 16))
    full = T2Net(**TINY).eval()
    no_htt, no_rec = T2Net(**TINY, use_task_transformer=False).eval(), T2Net(**TINY, use_rec_branch=False).eval()
    for ablation in (no_htt, no_rec):  # share every weight the ablation has
        ablation.load_state_dict({k: v for k, v in full.state_dict().items() if k in ablation.state_dict()})
    n_params = [sum(p.numel() for p in m.parameters()) for m in (full, no_htt, no_rec)]
    assert n_params[0] > n_params[1] > n_params[2]
    with torch.no_grad():
        out_full, out_no_htt, out_no_rec = full(batch), no_htt(batch), no_rec(batch)
    assert out_no_rec.lr_image is None
    assert out_full.lr_image is not None and out_no_htt.lr_image is not None
    assert torch.equal(out_full.lr_image, out_no_htt.lr_image)  # the Rec branch never reads the SR branch
    for a, b in ((out_full, out_no_htt), (out_full, out_no_rec), (out_no_htt, out_no_rec)):
        assert (a.image - b.image).abs().max() > 1e-4


@pytest.mark.parametrize(
    ("option", "mean_tolerance", "max_tolerance"),
    [({"search_window": 4}, 0.1, 0.15), ({"search_dtype": torch.bfloat16}, 0.01, 0.02)],
)
def test_approximate_search_changes_the_output_only_slightly(
    option: dict[str, object], mean_tolerance: float, max_tolerance: float
) -> None:
    """Differences relative to the exact output's std (mean |Δ|) and max |·| (max |Δ|), same random weights.

    Measured (8 ch, 2 blocks, LR 16²): window ±4: mean 0.044, max 0.066; bf16: mean 0.002, max 0.006.
    """
    batch = make_batch("joint", scale=2, acceleration=2, size=(32, 32))
    exact = T2Net(**TINY).eval()
    fast = T2Net(**TINY, **option).eval()  # type: ignore[arg-type]
    fast.load_state_dict(exact.state_dict())
    with torch.no_grad():
        reference, approximate = exact(batch).image, fast(batch).image
    difference = (approximate - reference).abs()
    relative_mean = float(difference.mean() / reference.std())
    relative_max = float(difference.max() / reference.abs().max())
    print(f"{option}: mean |Δ|/std {relative_mean:.3f}, max |Δ|/max {relative_max:.3f}")
    assert 0 < relative_mean < mean_tolerance and relative_max < max_tolerance


def test_search_dtype_by_name_for_yaml_configs() -> None:
    model = T2Net(**TINY, search_dtype="bfloat16")  # type: ignore[arg-type]
    assert model.transformers is not None
    assert {t.search_dtype for t in model.transformers} == {torch.bfloat16}
    with pytest.raises(ValueError, match="float13"):
        T2Net(**TINY, search_dtype="float13")  # type: ignore[arg-type]


def test_runs_under_cpu_bf16_autocast() -> None:
    batch = make_batch("joint", scale=2, acceleration=2, size=(16, 16))
    model = T2Net(**TINY).eval()
    with torch.no_grad():
        exact = model(batch).image
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = model(batch).image
    # The image-writing conv stays float32 (OutputConv); the rest ran in bf16, so the output differs a little.
    assert fast.dtype == torch.float32 and 0 < float((fast - exact).abs().mean() / exact.std()) < 0.05


def test_block_size_does_not_change_the_output() -> None:
    batch = make_batch("joint", scale=2, acceleration=2, size=(16, 16))
    exact = T2Net(**TINY).eval()
    blocked = T2Net(**TINY, block_size=5).eval()
    blocked.load_state_dict(exact.state_dict())
    with torch.no_grad():
        assert torch.allclose(exact(batch).image, blocked(batch).image, atol=1e-6)


def test_overfits_a_joint_batch_beyond_zero_filled_bicubic() -> None:
    """Paper weights 0.2/0.8 on the squared error: on this sparse phantom (zero background, a 1-pixel skull ring at
    5× the tissue level) the L1 median moves PSNR by < 1 dB in 300 steps, the MSE by ~5 dB."""
    batch = make_batch("joint", scale=2, acceleration=4, size=(32, 32))
    model = T2Net(scale=2, channels=16, n_blocks=2)

    def loss_fn(m: torch.nn.Module, b: Sample) -> torch.Tensor:
        prediction = m(b)
        return 0.2 * F.mse_loss(prediction.image, b.target) + 0.8 * F.mse_loss(prediction.lr_image, b.lr_target)

    history = overfit(model, batch, loss_fn, steps=250, lr=2e-3)
    with torch.no_grad():
        prediction = model(batch)
    assert prediction.lr_image is not None
    baseline, achieved = psnr(bicubic(batch), batch.target), psnr(prediction.image, batch.target)
    rec = psnr(prediction.lr_image, batch.lr_target)
    print(f"zero-filled bicubic {baseline:.2f} dB, T2Net SR {achieved:.2f} dB, Rec {rec:.2f} dB")
    assert history[-1] < history[0]
    assert achieved >= baseline + 3
