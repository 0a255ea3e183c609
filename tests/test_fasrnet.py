"""FASR-Net (paper 002) and its VGG19 texture extractor."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from accelmri.models import build
from accelmri.models.baselines.interpolation import bicubic_upsample, sinc_interpolate
from accelmri.models.blocks.correspondence import relevance_search
from accelmri.models.blocks.texture_extractor import TextureExtractor, save_extractor
from accelmri.models.blocks.vgg import VGG19_LAYERS, VGG19Features
from accelmri.models.fasrnet import FASRNet
from tests.model_utils import bicubic, make_batch, overfit, parameters_without_gradient, psnr

ABLATIONS = [{}, {"use_sa": False}, {"use_ma": False}, {"use_chpf": False}, {"use_fa": False}]


pytestmark = pytest.mark.usefixtures("one_thread")


class TinyBackbone(nn.Module):
    """A 3-level VGG-like extractor (4, 8, 8 channels at HR, HR/2, HR/4) following FASRNet's backbone protocol."""

    out_channels = (4, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.levels = nn.ModuleList([
            nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()),
        ])

    def forward(self, x: torch.Tensor, num_levels: int) -> list[torch.Tensor]:
        outputs = []
        for level in self.levels[:num_levels]:
            x = level(x)
            outputs.append(x)
        return outputs


def tiny(scale: int, **kwargs: object) -> FASRNet:
    config: dict[str, object] = {"channels": 8, "n_blocks": (1, 1, 1), "embed_channels": 8, "backbone": TinyBackbone()}
    return FASRNet(scale=scale, **{**config, **kwargs})  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------ VGG19


def test_vgg_layout_matches_torchvision_indices() -> None:
    convs = [i for i, name in enumerate(VGG19_LAYERS) if name.startswith("conv")]
    assert convs == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    assert [i for i, name in enumerate(VGG19_LAYERS) if name.startswith("pool")] == [4, 9, 18, 27, 36]
    assert all(VGG19_LAYERS[i + 1].startswith("relu") for i in convs)
    vgg = VGG19Features()  # relu1_2, relu2_2, relu3_2: nothing deeper is built
    assert len(vgg.features) == 14 and vgg.out_channels == (64, 128, 256)
    assert list(vgg.state_dict()) == [f"features.{i}.{p}" for i in (0, 2, 5, 7, 10, 12) for p in ("weight", "bias")]
    assert not any(p.requires_grad for p in vgg.parameters())
    assert all(p.requires_grad for p in VGG19Features(trainable=True).parameters())


def test_vgg_weights_round_trip(tmp_path: Path) -> None:
    source = VGG19Features(layers=("relu1_2", "relu3_2"))
    full = dict(source.state_dict())  # a torchvision vgg19 state dict also has deeper layers and a classifier
    full["features.34.weight"] = torch.zeros(512, 512, 3, 3)
    full["classifier.0.weight"] = torch.zeros(4, 8)
    torch.save(full, tmp_path / "vgg19.pth")
    bare = {key.removeprefix("features."): value for key, value in source.state_dict().items()}
    torch.save(bare, tmp_path / "features.pth")
    x = torch.rand(2, 1, 20, 24)
    expected = source(x)
    assert set(expected) == {"relu1_2", "relu3_2"} and expected["relu3_2"].shape == (2, 256, 5, 6)
    for name in ("vgg19.pth", "features.pth"):
        loaded = VGG19Features(layers=("relu1_2", "relu3_2"), weights=tmp_path / name, require_weights=True)
        for layer, value in loaded(x).items():
            assert torch.equal(value, expected[layer])
    assert torch.equal(loaded(x.expand(-1, 3, -1, -1))["relu1_2"], expected["relu1_2"])  # grey = repeated RGB
    assert list(loaded(x, num_layers=1)) == ["relu1_2"]


def test_vgg_missing_weights_errors(tmp_path: Path) -> None:
    partial = {k: v for k, v in VGG19Features().state_dict().items() if not k.startswith("features.12")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(KeyError, match=r"partial\.pth.*features\.12\.weight"):
        VGG19Features(weights=tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="cannot be downloaded here; pass weights=PATH"):
        VGG19Features(require_weights=True)
    with pytest.raises(FileNotFoundError):
        VGG19Features(weights=tmp_path / "absent.pth")
    with pytest.raises(ValueError, match="unknown layers"):
        VGG19Features(layers=("relu6_1",))


# --------------------------------------------------------------------------------------------------- FASR-Net


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("size", [(32, 32), (48, 40)])
def test_output_shapes(scale: int, size: tuple[int, int]) -> None:
    batch = make_batch(scale=scale, size=size)
    prediction = tiny(scale)(batch)
    assert prediction.image.shape == (2, 1, *size)
    grid = (size[0] // scale, size[1] // scale)
    assert {k: tuple(v.shape) for k, v in prediction.extras.items()} == {
        f"soft_attention_level{i}": (2, 1, *grid) for i in range(3)
    }
    assert torch.isfinite(prediction.image).all()


@pytest.mark.parametrize("scale", [2, 4])
def test_default_vgg_backbone_all_parameters_get_gradients(scale: int) -> None:
    batch = make_batch(scale=scale, size=(32, 32))
    model = build("fasrnet", scale=scale, channels=8, n_blocks=(1, 1, 1), embed_channels=8)
    assert isinstance(model.backbone, VGG19Features)
    prediction = model(batch)
    assert prediction.image.shape == batch.target.shape
    assert parameters_without_gradient(model, F.l1_loss(prediction.image, batch.target)) == []


@pytest.mark.parametrize("scale", [2, 4])
def test_every_parameter_gets_a_gradient_in_every_ablation(scale: int) -> None:
    batch = make_batch(scale=scale, size=(32, 32))
    outputs = []
    for flags in ABLATIONS:
        torch.manual_seed(0)
        model = tiny(scale, **flags)
        prediction = model(batch)
        outputs.append(prediction.image.detach())
        assert parameters_without_gradient(model, F.l1_loss(prediction.image, batch.target)) == [], flags
        assert hasattr(model, "sa_query") == (flags.get("use_sa", True) and flags.get("use_fa", True))
        assert hasattr(model, "exchange") == flags.get("use_chpf", True)
    for i in range(len(outputs)):  # every ablation changes the output
        for j in range(i):
            assert not torch.allclose(outputs[i], outputs[j]), (ABLATIONS[i], ABLATIONS[j])


@pytest.mark.parametrize("scale", [2, 4])
def test_multi_multi_relevance_is_the_summed_pyramid_of_eq15(scale: int) -> None:
    """One search over concatenated descriptors = argmax/max of Σ_levels cosine relevance on the LR grid."""
    model = tiny(scale)
    hr, grid = (16, 24), (16 // scale, 24 // scale)
    query = [torch.randn(1, c, hr[0] >> i, hr[1] >> i) for i, c in enumerate((4, 8, 8))]
    key = [torch.randn(1, c, hr[0] >> i, hr[1] >> i) for i, c in enumerate((4, 8, 8))]
    q = torch.cat([model._patch_descriptor(query[i], i, grid) for i in range(3)], dim=1)
    k = torch.cat([model._patch_descriptor(key[i], i, grid) for i in range(3)], dim=1)
    soft, index = relevance_search(q, k, patch=1, block_size=7)

    g = model.grid_level
    total = torch.zeros(grid[0] * grid[1], grid[0] * grid[1])
    for i in range(3):  # the paper's per-level relevance C^i (3×3 patches, cosine), on the LR grid
        pq = F.normalize(F.unfold(query[i], 3, padding=1), dim=1)[0]
        pk = F.normalize(F.unfold(key[i], 3, padding=1), dim=1)[0]
        width = hr[1] >> i
        ys, xs = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
        if i <= g:  # finer level: every r-th position (offset (r-1)//2)
            r = 1 << (g - i)
            rows = (r * ys + (r - 1) // 2) * width + (r * xs + (r - 1) // 2)
        else:  # coarser level: nearest upsampling U
            rows = (ys // 2) * width + xs // 2
        rows = rows.flatten()
        total += pk[:, rows].T @ pq[:, rows]
    dense_soft, dense_index = total.max(dim=0)
    assert torch.equal(index[0], dense_index)
    assert torch.allclose(3 * soft[0], dense_soft, atol=1e-5)


def test_blockwise_search_is_memory_safe_and_exact() -> None:
    """A 96² reference at 4× (S-A searches 24² queries against 96² keys) gives the same result in tiny key blocks."""
    batch = make_batch(scale=4, size=(96, 96), slices=1)
    torch.manual_seed(1)
    small = tiny(4, search_block_size=37)
    large = tiny(4, search_block_size=1 << 20)
    large.load_state_dict(small.state_dict())
    with torch.no_grad():
        assert torch.allclose(small(batch).image, large(batch).image, atol=1e-6)


def test_options_and_errors() -> None:
    batch = make_batch(scale=2, size=(32, 32))
    for options in ({"search_window": 2, "search_dtype": "bfloat16"}, {"reference_downsampling": "bicubic"},
                    {"in_channels": 2}):
        assert tiny(2, **options)(batch).image.shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="scale 2 or 4"):
        tiny(3)
    with pytest.raises(ValueError, match="use_sa or use_ma"):
        tiny(2, use_sa=False, use_ma=False)
    with pytest.raises(ValueError, match="not a torch dtype"):
        tiny(2, search_dtype="float13")
    with pytest.raises(ValueError, match=r"needs batch fields \['reference'\]"):
        tiny(2)(replace(batch, reference=None))
    with pytest.raises(ValueError, match="reference = 4× LR"):
        tiny(4)(batch)


def test_overfits_one_batch_beyond_bicubic() -> None:
    batch = make_batch(scale=4, size=(32, 32))
    model = tiny(4, channels=16, n_blocks=(2, 1, 1))
    history = overfit(model, batch, lambda m, b: F.l1_loss(m(b).image, b.target), steps=200, lr=2e-3)
    assert history[-1] < 0.3 * history[0]
    with torch.no_grad():
        gain = psnr(model(batch).image, batch.target) - psnr(bicubic(batch), batch.target)
    assert gain >= 3.0, gain


def _cosines(size: tuple[int, int], frequencies: tuple[float, float], offset: float = 0.5) -> torch.Tensor:
    """``(1, 1, H, W)`` ``cos(π·f_y·(y + offset)/H)·cos(π·f_x·(x + offset)/W)``: a 2-D cosine-transform basis image."""
    ys, xs = (torch.arange(n, dtype=torch.float64) + offset for n in size)
    rows = torch.cos(torch.pi * frequencies[0] * ys / size[0])
    cols = torch.cos(torch.pi * frequencies[1] * xs / size[1])
    return (rows[:, None] * cols[None, :])[None, None]


@pytest.mark.parametrize("scale", [2, 4])
def test_residual_base_and_query_follow_the_degradation(scale: int) -> None:
    """With the tail zeroed the output is the residual base LR↑: sinc ("kspace") or bicubic ("bicubic").

    An LR image of a band-limited cosine (sampled at LR pixel centres, which sit at HR pixels s·i on the truncation
    grid) is interpolated exactly by the mirrored sinc interpolation; bicubic is off by percents; plain periodic
    sinc rings at the borders (the image is not periodic).
    """
    lr_size, frequencies = (8, 10), (3.0, 5.0)
    lr = (1.5 + _cosines(lr_size, frequencies)).float()
    hr = (1.5 + _cosines((scale * lr_size[0], scale * lr_size[1]), frequencies, offset=scale / 2)).float()
    batch = make_batch(scale=scale, size=(scale * lr_size[0], scale * lr_size[1]), slices=1)
    batch = replace(batch, lr_input=lr, reference=hr)
    for mode, expected in (("kspace", hr), ("bicubic", bicubic_upsample(lr, scale))):
        torch.manual_seed(0)
        model = tiny(scale, reference_downsampling=mode)
        for parameter in model.tail.parameters():
            nn.init.zeros_(parameter)
        with torch.no_grad():
            image = model(batch).image
        assert torch.allclose(image, expected, atol=1e-5), mode
    assert (bicubic_upsample(lr, scale) - hr).abs().max() > 1e-2
    assert (sinc_interpolate(lr, scale).real - hr).abs().max() > 1e-2


def test_mirrored_sinc_is_as_good_as_sinc_on_slices_and_does_not_ring_on_patches() -> None:
    """Whole slice: the base is as close to the target as ``sinc_interpolate`` (and closer than bicubic). Patch of a
    non-periodic image (a ramp): the base is close to the whole image's base cut to the patch, unlike periodic sinc."""
    batch = make_batch(scale=2, size=(64, 64), slices=1)
    model = tiny(2)
    errors = {name: F.mse_loss(image, batch.target) for name, image in (
        ("mirrored", model._upsampled_lr(batch.lr_input)), ("sinc", sinc_interpolate(batch.lr_input, 2).real),
        ("bicubic", bicubic_upsample(batch.lr_input, 2)))}
    assert errors["mirrored"] <= 1.001 * errors["sinc"] and errors["sinc"] < errors["bicubic"], errors
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    lr = (1 + ys / 32 + 2 * xs / 32 + 0.2 * torch.sin(xs / 3))[None, None]
    cut = model._upsampled_lr(lr)[..., 16:48, 24:56]
    patch = model._upsampled_lr(lr[..., 8:24, 12:28])
    periodic = sinc_interpolate(lr[..., 8:24, 12:28], 2).real
    assert (patch - cut).abs().mean() < 0.1 * (periodic - cut).abs().mean()  # measured: 0.009×


def test_kspace_reference_degradation_removes_the_outer_band() -> None:
    """Ref↓↑ ("kspace") keeps cosines below the truncation band and removes those above it (mirror extension:
    cosine-transform frequencies ``f`` of an ``H``-pixel side are kept for ``f < H/s``)."""
    size = (32, 24)
    model = tiny(2)
    low = (2.0 + _cosines(size, (5.0, 7.0))).float()
    high = _cosines(size, (20.0, 3.0)).float()
    assert torch.allclose(model._degraded_reference(low), low, atol=1e-5)
    assert model._degraded_reference(high).abs().max() < 1e-5
    assert model._degraded_reference(low + high).dtype == torch.float32


def test_extractor_weights_load_the_pretrained_substitute(tmp_path: Path) -> None:
    torch.manual_seed(0)
    extractor = TextureExtractor((4, 8, 8))
    path = save_extractor(extractor, tmp_path / "extractor.pt", {"steps": 0})
    model = FASRNet(scale=2, channels=8, n_blocks=(1, 1), embed_channels=8, extractor_weights=path)
    assert isinstance(model.backbone, TextureExtractor) and model.level_channels == (4, 8, 8)
    for key, value in extractor.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value)
    batch = make_batch(scale=2, size=(32, 32))
    prediction = model(batch)
    assert parameters_without_gradient(model, F.l1_loss(prediction.image, batch.target)) == []
    with pytest.raises(ValueError, match="no backbone or vgg_weights"):
        FASRNet(scale=2, extractor_weights=path, vgg_weights=tmp_path / "vgg19.pth")
    with pytest.raises(FileNotFoundError, match="pretrain_extractor"):
        FASRNet(scale=2, extractor_weights=tmp_path / "absent.pt")
