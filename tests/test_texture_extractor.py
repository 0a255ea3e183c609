"""The pretrained texture extractor (FASR-Net's trained substitute for ImageNet VGG19)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from accelmri.data.digital_brain import digital_brain_subject
from accelmri.engine.extractor import digital_brain_pairs
from accelmri.models.blocks.texture_extractor import (
    TextureExtractor,
    info_nce_loss,
    load_extractor,
    pretrain_extractor,
    save_extractor,
)
from accelmri.models.fasrnet import FASRNet
from accelmri.physics.degrade import lowres
from accelmri.physics.fft import ifft2c
from benchmarks.fasrnet_matching import match_fractions

pytestmark = pytest.mark.usefixtures("one_thread")


def test_protocol_shapes_and_errors() -> None:
    torch.manual_seed(0)
    model = TextureExtractor((4, 8, 16))
    assert model.out_channels == (4, 8, 16)
    levels = model(torch.rand(2, 1, 24, 32), 3)
    assert [tuple(level.shape) for level in levels] == [(2, 4, 24, 32), (2, 8, 12, 16), (2, 16, 6, 8)]
    assert (levels[0] < 0).any()  # pre-activation outputs
    assert len(model(torch.rand(1, 1, 8, 8), 1)) == 1
    with pytest.raises(ValueError, match="3 positive channel counts"):
        TextureExtractor((4, 8))
    with pytest.raises(ValueError, match="expects"):
        model(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="num_levels"):
        model(torch.rand(1, 1, 8, 8), 4)
    images = torch.rand(2, 1, 32, 32)
    with pytest.raises(ValueError, match="does not fit"):
        pretrain_extractor(images, images, crop=32, max_shift=4)
    with pytest.raises(ValueError, match="both be"):
        pretrain_extractor(images, images[:1])
    with pytest.raises(ValueError, match="steps"):
        pretrain_extractor(images, images, steps=0, crop=16)


def test_info_nce_uses_the_shift_convention() -> None:
    """Query pixel (y, x) shows key pixel (y − dy, x − dx): identical shifted features give the lowest loss there."""
    torch.manual_seed(0)
    key = torch.randn(2, 6, 12, 12)
    dy, dx = 2, -1
    query = torch.roll(key, shifts=(dy, dx), dims=(-2, -1))  # query[y, x] = key[y - dy, x - dx]
    anchors = torch.tensor([[[4, 4], [6, 5], [8, 3]]] * 2)
    right = info_nce_loss(query, key, (dy, dx), anchors, 0.1)
    wrong = info_nce_loss(query, key, (-dy, -dx), anchors, 0.1)
    assert right < 0.1 and wrong > 1.0, (right, wrong)


def test_save_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = TextureExtractor((4, 8, 8))
    path = save_extractor(model, tmp_path / "sub" / "extractor.pt", {"subjects": [0, 1]})
    loaded = load_extractor(path)
    x = torch.rand(1, 1, 16, 16)
    assert all(torch.equal(a, b) for a, b in zip(model(x), loaded(x), strict=True))
    assert torch.load(path, weights_only=True)["meta"] == {"subjects": [0, 1]}
    torch.save({"state_dict": model.state_dict()}, tmp_path / "bad.pt")
    with pytest.raises(KeyError, match="channels"):
        load_extractor(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError, match="pretrain_extractor"):
        load_extractor(tmp_path / "absent.pt")


def test_pairs_are_what_fasrnet_matches() -> None:
    """digital_brain_pairs builds LR↑ and Ref↓↑ exactly as FASR-Net's "kspace" mode does from a batch's images."""
    queries, keys = digital_brain_pairs([5], size=32, slices=1)
    brain = digital_brain_subject(5, ("T2", "FLAIR"), coils=1, size=32, slices=1)
    lr = ifft2c(lowres(brain.kspace["T2"][:, 0], 2)).abs()[:, None]
    reference = ifft2c(brain.kspace["FLAIR"][:, 0]).abs()[:, None]
    model = FASRNet(scale=2, channels=8, n_blocks=(1, 1), embed_channels=8, backbone=TextureExtractor())
    assert torch.allclose(queries, model._upsampled_lr(lr / lr.mean()), atol=1e-5)
    assert torch.allclose(keys, model._degraded_reference(reference / reference.mean()), atol=1e-5)


def test_pretraining_improves_cross_contrast_matching() -> None:
    """A short pretraining on two subjects beats the same extractor untrained on a held-out subject (M-A search)."""
    queries, keys = digital_brain_pairs([0, 1], size=64, slices=4)
    brain = digital_brain_subject(3, ("T2", "FLAIR"), coils=1, size=64, slices=4)
    lr = ifft2c(lowres(brain.kspace["T2"][:, 0], 2)).abs()[:, None]
    lr = lr / lr.mean(dim=(-2, -1), keepdim=True)
    reference = ifft2c(brain.kspace["FLAIR"][:, 0]).abs()[:, None]
    reference = reference / reference.mean(dim=(-2, -1), keepdim=True)
    objects = lr[:, 0] > 0.2

    def fraction(backbone: TextureExtractor) -> float:
        model = FASRNet(scale=2, channels=8, n_blocks=(1, 1), embed_channels=8, backbone=backbone)
        return match_fractions(model, lr, reference, objects)["ma_object"]

    torch.manual_seed(0)  # the initialisation pretrain_extractor(seed=0) starts from
    untrained = fraction(TextureExtractor())
    trained = fraction(pretrain_extractor(queries, keys, steps=60, batch_size=4, crop=32, max_shift=4, anchors=64))
    assert trained > untrained + 0.3, (untrained, trained)  # measured: 0.25 → 0.84


def test_pretrain_for_config_trains_on_the_training_split_only(tmp_path: Path) -> None:
    from accelmri.engine.config import ExperimentConfig, parse_config
    from accelmri.engine.extractor import pretrain_for_config, training_pairs

    source = {"kind": "digital_brain", "dir": str(tmp_path / "brain"), "coils": 1, "subjects": 3, "size": 32,
              "slices": 2, "noise_std": 0.005, "seed": 0, "contrasts": ["T2"], "reference": "FLAIR"}
    raw = {"name": "x", "data": {"source": source, "task": "super_resolution", "acquisition": {"scale": 2},
                                 "split": {"ratios": [1, 1, 1]}, "patch_size": [16, 16]},
           "model": {"name": "fasrnet", "scale": 2}, "trainer": {"max_steps": 1}}
    config: ExperimentConfig = parse_config(raw, "test")
    queries, keys = training_pairs(config)
    assert queries.shape == keys.shape == (2, 1, 32, 32)  # one training subject × 2 whole slices (no patches)
    path = pretrain_for_config(config, tmp_path / "extractor.pt", steps=3)
    model = FASRNet(scale=2, channels=8, n_blocks=(1, 1), embed_channels=8, extractor_weights=path)
    assert isinstance(model.backbone, TextureExtractor)
    with pytest.raises(FileExistsError):
        pretrain_for_config(config, path, steps=3)
    joint = parse_config({**raw, "data": {**raw["data"], "task": "joint", "patch_size": None,
                                          "acquisition": {"scale": 2, "acceleration": 2.0}}}, "test")
    with pytest.raises(ValueError, match="super_resolution"):
        training_pairs(joint)
