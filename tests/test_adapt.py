"""Scan-specific adaptation (``accelmri.engine.adapt``, ``restore(..., adapt_steps=...)``, ``--adapt``).

Checkpoints are made without training (tiny registered models saved in the trainer's payload layout), so the
adaptation starts from random weights: the tests check what the adaptation learns from the scan alone.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from accelmri.cli import app
from accelmri.data.datasets import SliceDataset, SliceSource
from accelmri.data.errors import DataError
from accelmri.data.phantom import shepp_logan
from accelmri.data.readers import read_nifti, write_nifti
from accelmri.data.sample import collate
from accelmri.data.volume import ImageVolume, KspaceVolume
from accelmri.engine import adapt as adapt_module
from accelmri.engine.adapt import ADAPT_PATCH, adapt_to_scan, check_adaptation, ssdu_loss, ssdu_split
from accelmri.engine.build import build_model
from accelmri.engine.checkpoint import rng_state, save_checkpoint
from accelmri.engine.config import parse_config
from accelmri.engine.evaluate import load_method
from accelmri.engine.restore import restore
from accelmri.metrics import evaluate_volume
from accelmri.physics.degrade import lowres
from accelmri.physics.fft import fft2c, ifft2c
from accelmri.physics.masks import make_mask
from accelmri.physics.sensitivity import birdcage_maps

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()

AFFINE = np.diag([0.9, 0.9, 4.0, 1.0])
EDSR = {"name": "edsr", "scale": 2, "channels": 8, "n_blocks": 1}
MINET = {"name": "minet", "scale": 2, "channels": 8, "n_groups": 1, "n_blocks": 1, "reduction": 4}
SANET = {"name": "sanet", "scale": 2, "channels": 8, "n_groups": 1, "n_blocks": 1, "reduction": 4,
         "attention_channels": 8}


def make_checkpoint(path: Path, model: dict[str, Any], *, task: str = "super_resolution", scale: int = 2,
                    acceleration: float = 1.0, source: dict[str, Any] | None = None,
                    loss: dict[str, Any] | None = None, lr: float = 1e-2, grad_clip: float | None = 1.0,
                    normalization: str = "scale") -> Path:
    """A checkpoint in the trainer's layout for ``model``, untrained (random or no weights)."""
    raw = {"name": path.stem,
           "data": {"source": source or {"kind": "digital_brain", "size": 64}, "task": task,
                    "acquisition": {"acceleration": acceleration, "scale": scale}, "normalization": normalization},
           "model": model, "loss": loss or {"weights": {"l1": 1.0}}, "optimizer": {"lr": lr},
           "trainer": {"max_steps": 1, "grad_clip": grad_clip, "out_dir": str(path.parent)}}
    config = parse_config(raw)
    net = build_model(config.model, scale)
    parameters = list(net.parameters())
    optimizer = torch.optim.Adam(parameters).state_dict() if parameters else {"state": {}, "param_groups": []}
    return save_checkpoint(path, {
        "config": config.to_dict(), "model": net.state_dict(), "discriminator": None,
        "optimizers": {"model": optimizer, "discriminator": None}, "schedulers": {"model": None, "discriminator": None},
        "rng": [rng_state()], "step": 0, "epoch": 0, "batch_in_epoch": 0,
        "best": {"metric": config.trainer.monitor, "value": None, "step": None}, "metrics": None,
    })


def phantom_volume(slices: int, size: int) -> np.ndarray:
    """Shepp–Logan magnitude slices, shifted and scaled a little per slice, on a small positive background."""
    images = []
    for index in range(slices):
        image = torch.roll(shepp_logan((size, size)).abs(), shifts=(index - 1, 2 * index - 2), dims=(0, 1))
        images.append((image * (1 + 0.1 * index) + 0.05).numpy())
    return np.stack(images).astype(np.float32)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def samples_of(volume: np.ndarray, config_path: Path) -> tuple[Any, torch.nn.Module, list[Any]]:
    """The config, model and degraded-mode samples (what ``restore(degrade=True)`` gives the model)."""
    config, model = load_method(config_path, (), torch.device("cpu"))
    source = SliceSource(ImageVolume(volume, AFFINE, Path("scan.nii.gz")), subject="s")
    dataset = SliceDataset([source], config.data.task, config.data.acquisition.to_acquisition(),
                           normalization=config.data.normalization)
    return config, model, [dataset[i] for i in range(len(dataset))]


# ------------------------------------------------------------------------------------------------------ pairs


def test_pairs_are_on_the_truncation_grid_under_every_flip_and_rotation() -> None:
    """Each pair's input is the k-space truncation of its target, whatever the augmentation (flips applied after
    the truncation would misalign LR and HR by (s − 1)/2 HR pixels), and the reference is truncated alike."""
    volume = phantom_volume(2, 24)[:, :, :20]  # non-square: 4 transforms on whole slices
    config = parse_config({"data": {"source": {"kind": "digital_brain"}, "task": "super_resolution",
                                    "acquisition": {"scale": 2}}, "model": EDSR, "trainer": {"max_steps": 1}})
    model = build_model(config.model, 2)
    model.size_multiple = 64  # larger than the slices: whole slices, no patches
    source = SliceSource(ImageVolume(volume, AFFINE, Path("scan.nii.gz")), subject="s")
    samples = [SliceDataset([source], "super_resolution", config.data.acquisition.to_acquisition())[i]
               for i in range(2)]
    reference_hr = SliceSource(ImageVolume(volume[::-1].copy(), AFFINE, Path("ref.nii.gz")), subject="s")
    dataset, patch = adapt_module._pairs(config, model, samples, reference_hr, Path("scan.nii.gz"))
    assert patch is None and len(dataset) == 2 * 4
    views = set()
    for item in range(len(dataset)):
        pair = dataset[item]
        target = pair.denormalize(pair.target)[0]
        assert target.shape == (12, 10) and pair.lr_input.shape == (1, 6, 5) and pair.reference.shape == (1, 12, 10)
        acquired = samples[item // 4]
        image = adapt_module._dihedral(ifft2c(acquired.kspace[0] * acquired.norm_std), (0, 2, 4, 6)[item % 4])
        torch.testing.assert_close(target, image.abs(), rtol=1e-4, atol=1e-5)
        expected = ifft2c(lowres(fft2c(image), 2)).abs()  # the acquired (complex) image truncated once more
        torch.testing.assert_close(pair.denormalize(pair.lr_input)[0], expected, rtol=1e-4, atol=1e-5)
        views.add(target.numpy().round(4).tobytes())
    assert len(views) == len(dataset)  # every transform of every slice differs
    # The adaptation target is the acquired (degraded) LR image itself, the reference its truncation.
    original = dataset[0]
    np.testing.assert_allclose(original.denormalize(original.target)[0].numpy(),
                               samples[0].denormalize(samples[0].lr_input)[0].numpy(), rtol=1e-4, atol=1e-5)
    guide = ifft2c(lowres(fft2c(torch.from_numpy(volume[1]).to(torch.complex64)), 2)).abs()
    np.testing.assert_allclose(original.reference[0].numpy(), (guide / guide.mean()).numpy(), rtol=1e-4, atol=1e-5)


def test_patch_sizes_follow_the_model_grid() -> None:
    assert adapt_module._patch((32, 40), 2, 1) == (32, 32)
    assert adapt_module._patch((256, 200), 2, 1) == (ADAPT_PATCH, ADAPT_PATCH)
    assert adapt_module._patch((44, 44), 2, 4) == (40, 40)  # LR/s side a multiple of lcm(2, 4)
    assert adapt_module._patch((48, 48), 3, 1) == (48, 48)
    assert adapt_module._patch((2, 8), 2, 1) is None  # the degraded image is smaller than a patch: whole slices


# --------------------------------------------------------------------------------------------------- training


def test_adaptation_trains_a_copy_and_leaves_model_and_checkpoint_alone(tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "edsr.pt", EDSR)
    volume = phantom_volume(2, 32)
    config, model, samples = samples_of(volume, checkpoint)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    generator_state = torch.get_rng_state()
    result = adapt_to_scan(model, config, samples, steps=5, path="scan.nii.gz")
    assert torch.equal(torch.get_rng_state(), generator_state)  # the caller's random state is untouched
    assert result.model is not model and not result.model.training and result.steps == 5
    assert result.lr == pytest.approx(1e-3)  # 0.1 × the checkpoint's optimizer.lr
    assert result.loss_terms == ("l1",) and len(result.losses) == 5 and result.seconds > 0
    assert result.patch_size == (16, 16)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    changed = [k for k, v in result.model.state_dict().items() if not torch.equal(before[k], v)]
    assert changed and "head.weight" in changed

    source = write_nifti(tmp_path / "scan.nii.gz", volume, AFFINE)
    digest = sha256(checkpoint)
    restore(checkpoint, [source], tmp_path / "adapted.nii.gz", degrade=True, adapt_steps=3)
    assert sha256(checkpoint) == digest


def test_adaptation_is_deterministic_and_per_volume(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    checkpoint = make_checkpoint(tmp_path / "edsr.pt", EDSR)
    first = write_nifti(tmp_path / "a.nii.gz", phantom_volume(2, 32), AFFINE)
    second = write_nifti(tmp_path / "b.nii.gz", phantom_volume(3, 32)[1:], AFFINE)
    with caplog.at_level(logging.INFO, logger="accelmri.engine.adapt"):
        one = restore(checkpoint, [first, second], tmp_path / "one", degrade=True, adapt_steps=10)
    two = restore(checkpoint, [first, second], tmp_path / "two", degrade=True, adapt_steps=10)
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(read_nifti(a).data, read_nifti(b).data)
    # The second volume is adapted from the checkpoint's weights, not from the first volume's adaptation.
    (alone,) = restore(checkpoint, [second], tmp_path / "alone.nii.gz", degrade=True, adapt_steps=10)
    np.testing.assert_array_equal(read_nifti(alone).data, read_nifti(one[1]).data)
    lines = [r.getMessage() for r in caplog.records if "adapted edsr for 10 steps" in r.getMessage()]
    assert len(lines) == 2 and all(" s: loss " in line for line in lines)


def test_adaptation_learns_the_scan_and_needs_aligned_pairs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An untrained EDSR adapted for 50 steps on the degraded scan alone restores it about as well as bicubic
    interpolation; the same adaptation on pairs whose target is shifted by one pixel is > 1 dB worse.

    Measured (1 thread, seeds 0–4 of the initial weights): no adaptation 11.9–13.6 dB, adapted 19.21–19.28 dB,
    bicubic 19.33 dB, shifted target 17.38–17.58 dB; flipping pairs after the truncation instead of before
    (a half-LR-pixel misalignment) 18.79–18.94 dB.
    """
    checkpoint = make_checkpoint(tmp_path / "edsr.pt", {**EDSR, "channels": 16})
    bicubic = make_checkpoint(tmp_path / "bicubic.pt", {"name": "bicubic", "scale": 2})
    volume = phantom_volume(3, 64)
    source = write_nifti(tmp_path / "scan.nii.gz", volume, AFFINE)

    def psnr(ckpt: Path, name: str, steps: int = 0) -> float:
        (written,) = restore(ckpt, [source], tmp_path / f"{name}.nii.gz", degrade=True, adapt_steps=steps,
                             adapt_lr=1e-2 if steps else None)
        return evaluate_volume(volume, read_nifti(written).data)["psnr"]

    baseline, untrained = psnr(bicubic, "bicubic"), psnr(checkpoint, "untrained")
    adapted = psnr(checkpoint, "adapted", 50)

    class ShiftedTargets(SliceDataset):
        def __getitem__(self, item: int) -> Any:
            sample = super().__getitem__(item)
            return replace(sample, target=torch.roll(sample.target, 1, dims=-1))

    monkeypatch.setattr(adapt_module, "SliceDataset", ShiftedTargets)
    shifted = psnr(checkpoint, "shifted", 50)
    print(f"PSNR: untrained {untrained:.2f} dB, adapted {adapted:.2f} dB, bicubic {baseline:.2f} dB, "
          f"shifted pairs {shifted:.2f} dB")
    assert adapted > untrained + 4
    assert adapted > baseline - 0.3
    assert adapted > shifted + 1


@pytest.mark.parametrize("model", [MINET, SANET], ids=["minet", "sanet"])
def test_reference_guided_models_adapt_with_their_reference(tmp_path: Path, model: dict[str, Any]) -> None:
    brain = {"kind": "digital_brain", "contrasts": ["T2"], "reference": "FLAIR", "size": 64}
    checkpoint = make_checkpoint(tmp_path / "model.pt", model, source=brain, loss={"preset": "minet"},
                                 normalization="meanstd")
    volume = phantom_volume(2, 32)[:, :, 4:]  # 32 × 28
    source = write_nifti(tmp_path / "t2.nii.gz", volume, AFFINE)
    reference = write_nifti(tmp_path / "flair.nii.gz", volume.max() - volume, AFFINE)
    (written,) = restore(checkpoint, [source], tmp_path / "out.nii.gz", reference=reference, degrade=True,
                         adapt_steps=5)
    restored = read_nifti(written)
    assert restored.data.shape == volume.shape and np.isfinite(restored.data).all()
    config, net, samples = samples_of(volume, checkpoint)
    guide = SliceSource(ImageVolume(volume.max() - volume, AFFINE, Path("flair.nii.gz")), subject="s")
    result = adapt_to_scan(net, config, samples, guide, steps=2)
    assert result.loss_terms == ("l1", "reference_l1")  # the checkpoint's loss: MINet's auxiliary reference term


def test_acquired_mode_and_loss_fallback(tmp_path: Path) -> None:
    # Perceptual weights that are not on this machine, and a term EDSR cannot give: L1.
    for name, loss in (("fasr", {"preset": "fasrnet"}), ("minet", {"preset": "minet"})):
        checkpoint = make_checkpoint(tmp_path / f"{name}.pt", EDSR, loss=loss)
        config, model, samples = samples_of(phantom_volume(1, 32), checkpoint)
        assert adapt_to_scan(model, config, samples, steps=2).loss_terms == ("l1",)
    lr_scan = write_nifti(tmp_path / "lr.nii.gz", phantom_volume(2, 32)[:, :, 1:], AFFINE)  # odd width: cropped
    (written,) = restore(checkpoint, [lr_scan], tmp_path / "hr.nii.gz", adapt_steps=3)
    assert read_nifti(written).data.shape == (2, 64, 62)


def test_refusals(tmp_path: Path) -> None:
    source = write_nifti(tmp_path / "scan.nii.gz", phantom_volume(1, 32), AFFINE)
    edsr = make_checkpoint(tmp_path / "edsr.pt", EDSR)
    with pytest.raises(ValueError, match="adapt_steps must be an int >= 0"):
        restore(edsr, [source], tmp_path / "out", adapt_steps=-1)
    with pytest.raises(ValueError, match="adapt_lr must be a finite number > 0"):
        restore(edsr, [source], tmp_path / "out", adapt_steps=2, adapt_lr=0.0)
    joint = make_checkpoint(tmp_path / "joint.pt", EDSR, task="joint", acceleration=2.0)
    with pytest.raises(DataError, match=r"task joint splits the acquired k-space .*; edsr gives only magnitudes"):
        restore(joint, [source], tmp_path / "out", adapt_steps=2)
    sinc = make_checkpoint(tmp_path / "sinc.pt", {"name": "sinc", "scale": 2})
    with pytest.raises(DataError, match="sinc has no trainable parameters"):
        restore(sinc, [source], tmp_path / "out", adapt_steps=2)
    assert not (tmp_path / "out").exists()
    config, model, _ = samples_of(phantom_volume(1, 32), edsr)
    check_adaptation(config, model, 0, edsr)
    with pytest.raises(ValueError, match="no slices"):
        adapt_to_scan(model, config, [], steps=1)


# -------------------------------------------------------------------------------------------------------- CLI


def test_cli_adapt_end_to_end(tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "edsr.pt", EDSR)
    source = write_nifti(tmp_path / "scan.nii.gz", phantom_volume(2, 32), AFFINE)
    out = tmp_path / "restored.nii.gz"
    result = runner.invoke(app, ["restore", str(checkpoint), str(source), "--out", str(out), "--adapt", "5"])
    assert result.exit_code == 0, result.output
    assert read_nifti(out).data.shape == (2, 64, 64)
    assert f"{source}: adapted edsr for 5 steps" in result.stderr and " s: loss " in result.stderr
    assert f"wrote {out}" in result.stdout

    result = runner.invoke(app, ["restore", str(checkpoint), str(source), "--out", str(tmp_path / "x.nii.gz"),
                                 "--adapt", "-1"])
    assert result.exit_code == 2 and not (tmp_path / "x.nii.gz").exists()
    result = runner.invoke(app, ["restore", str(checkpoint), str(source), "--out", str(tmp_path / "x.nii.gz"),
                                 "--adapt", "2", "--adapt-lr", "0"])
    assert result.exit_code == 2 and "--adapt-lr" in result.output
    joint = make_checkpoint(tmp_path / "joint.pt", EDSR, task="joint", acceleration=2.0)
    result = runner.invoke(app, ["restore", str(joint), str(source), "--out", str(tmp_path / "x.nii.gz"),
                                 "--adapt", "3"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "edsr gives only magnitudes" in result.output
    assert not (tmp_path / "x.nii.gz").exists()


# ------------------------------------------------------------------------------- k-space splitting (ZS-SSDU)


def test_ssdu_split_of_line_masks_keeps_the_centre_and_partitions_the_lines() -> None:
    mask = make_mask("equispaced", (32, 64), 4.0, 0.125, 0)  # 8 centre lines + every 4th line
    acquired = mask > 0
    centre = torch.zeros(64, dtype=torch.bool)
    centre[28:36] = True
    outside = int((acquired[0] & ~centre).sum())
    keep, held = ssdu_split(mask, 0.4, torch.Generator().manual_seed(0))
    assert not (keep & held).any() and torch.equal(keep | held, acquired)
    assert bool(keep[:, centre].all())  # the calibration centre always stays in the input
    assert torch.equal(held, held[:1].expand_as(held))  # whole phase-encode lines
    assert int(held[0].sum()) == round(0.4 * outside)
    # a fixed validation set is excluded from both parts, and the split is the generator's
    validation = ssdu_split(mask, 0.2, torch.Generator().manual_seed(1))[1]
    keep2, held2 = ssdu_split(mask, 0.4, torch.Generator().manual_seed(2), validation)
    assert not ((keep2 | held2) & validation).any() and torch.equal(keep2 | held2 | validation, acquired)
    assert int(held2[0].sum()) == round(0.4 * (outside - int(validation[0].sum())))
    again = ssdu_split(mask, 0.4, torch.Generator().manual_seed(2), validation)
    assert torch.equal(again[0], keep2) and torch.equal(again[1], held2)
    assert not torch.equal(ssdu_split(mask, 0.4, torch.Generator().manual_seed(3), validation)[1], held2)


def test_ssdu_split_of_2d_masks_draws_points_outside_the_calibration_box() -> None:
    mask = make_mask("poisson2d", (48, 48), 4.0, 0.125, 0)
    keep, held = ssdu_split(mask, 0.5, torch.Generator().manual_seed(0))
    rows, columns = adapt_module._centre_box(mask > 0)
    assert rows.stop - rows.start >= 4 and columns.stop - columns.start >= 4
    assert bool((mask[rows, columns] > 0).all())
    assert bool(keep[rows, columns].all()) and not held[rows, columns].any()
    assert torch.equal(keep | held, mask > 0) and not torch.equal(held, held[:1].expand_as(held))
    with pytest.raises(ValueError, match="fraction"):
        ssdu_split(mask, 1.0, torch.Generator())


def test_ssdu_loss_is_the_normalised_l1_l2_of_the_held_out_kspace() -> None:
    """Yaman et al. 2020, Eq. 9, against a numpy evaluation: zero for the image that made the data, and
    ‖u − v‖₂/‖u‖₂ + ‖u − v‖₁/‖u‖₁ on the held-out samples only (a change of the data outside Λ is not seen)."""
    generator = torch.Generator().manual_seed(0)
    maps = birdcage_maps((3, 16, 16))
    image = torch.randn(2, 16, 16, dtype=torch.complex64, generator=generator)
    kspace = fft2c(image[:, None] * maps)
    held = (torch.rand(2, 1, 16, 16, generator=generator) < 0.3).float()
    assert float(ssdu_loss(image, kspace, held, maps.expand(2, -1, -1, -1))) == pytest.approx(0.0, abs=1e-5)
    other = image + 0.1 * torch.randn(2, 16, 16, dtype=torch.complex64, generator=generator)
    value = float(ssdu_loss(other, kspace + 5 * (1 - held), held, maps.expand(2, -1, -1, -1)))
    u = (held * kspace).numpy().reshape(2, -1)
    v = (held * fft2c(other[:, None] * maps)).numpy().reshape(2, -1)
    expected = np.mean(np.linalg.norm(u - v, axis=1) / np.linalg.norm(u, axis=1)
                       + np.abs(u - v).sum(1) / np.abs(u).sum(1))
    assert value == pytest.approx(expected, rel=1e-4)
    single = float(ssdu_loss(other, fft2c(image)[:, None], held, None))  # single coil: E = M F
    u1, v1 = (held[:, 0] * fft2c(image)).numpy().reshape(2, -1), (held[:, 0] * fft2c(other)).numpy().reshape(2, -1)
    assert single == pytest.approx(np.mean(np.linalg.norm(u1 - v1, axis=1) / np.linalg.norm(u1, axis=1)
                                           + np.abs(u1 - v1).sum(1) / np.abs(u1).sum(1)), rel=1e-4)


PGD_RECON = {"name": "pgd_sft", "scale": 1, "mode": "recon_only", "prox_channels": 8, "prox_growth": 4,
             "max_iter": 3, "tol": 0.0, "hard_dc": True}


def recon_samples(checkpoint: Path) -> tuple[Any, torch.nn.Module, list[Any], np.ndarray]:
    """Config, model, the R = 4 samples of a 4-coil phantom volume (ESPIRiT maps) and its ground truth."""
    config, model = load_method(checkpoint, (), torch.device("cpu"))
    volume = phantom_volume(3, 64)
    kspace = fft2c(torch.from_numpy(volume).to(torch.complex64)[:, None] * birdcage_maps((4, 64, 64))[None])
    source = SliceSource(KspaceVolume(kspace=kspace.numpy(), path=Path("scan.h5")), subject="s")
    dataset = SliceDataset([source], "reconstruction", config.data.acquisition.to_acquisition(), sens_maps="espirit",
                           normalization=config.data.normalization)
    samples = [dataset[i] for i in range(len(dataset))]
    truth = np.stack([s.denormalize(s.target)[0].numpy() for s in samples])
    return config, model, samples, truth


def restored_psnr(model: torch.nn.Module, samples: list[Any], truth: np.ndarray) -> float:
    with torch.no_grad():
        images = [s.denormalize(model.eval()(collate([s])).image)[0, 0].numpy() for s in samples]
    return evaluate_volume(truth, np.stack(images))["psnr"]


def test_reconstruction_adapts_from_its_own_kspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An untrained PGD-DEQ Rec module adapted for 40 steps by k-space splitting on the R = 4 scan alone gains
    > 2 dB (measured, 1 thread, 4-coil phantom, R = 4 equispaced: 16.01 → 18.80 dB); every step's input and loss
    sets are disjoint parts of the acquired lines outside the held-out validation lines, which are scored with all
    other acquired lines as input."""
    torch.manual_seed(0)  # the untrained weights, whatever ran before
    checkpoint = make_checkpoint(tmp_path / "pgd.pt", PGD_RECON, task="reconstruction", scale=1, acceleration=4.0,
                                 source={"kind": "digital_brain", "size": 64, "coils": 4}, lr=1e-3)
    config, model, samples, truth = recon_samples(checkpoint)
    inputs: list[torch.Tensor] = []
    held_sets: list[torch.Tensor] = []
    original_with_mask, original_loss = adapt_module._with_mask, adapt_module.ssdu_loss

    def with_mask(sample: Any, keep: torch.Tensor) -> Any:
        inputs.append(keep.clone())
        return original_with_mask(sample, keep)

    def loss(prediction: torch.Tensor, kspace: torch.Tensor, held: torch.Tensor, maps: Any) -> torch.Tensor:
        held_sets.extend(held[:, 0] > 0)
        return original_loss(prediction, kspace, held, maps)

    monkeypatch.setattr(adapt_module, "_with_mask", with_mask)
    monkeypatch.setattr(adapt_module, "ssdu_loss", loss)
    untrained = restored_psnr(model, samples, truth)
    result = adapt_to_scan(model, config, samples, steps=40, lr=1e-2)
    adapted = restored_psnr(result.model, samples, truth)
    print(f"PSNR: untrained {untrained:.2f} dB, adapted {adapted:.2f} dB")
    assert adapted > untrained + 2
    assert result.loss_terms == ("ssdu",) and len(result.losses) == 40 and result.patch_size is None
    assert [step for step, _ in result.validation] == [0, *range(4, 41, 4)]
    scores = dict(result.validation)
    assert scores[result.best_step] == min(scores.values()) < scores[0]  # the kept weights are the best on Γ
    # 11 validations × 3 slices + 40 steps × 4 patches; every input set pairs with its loss set
    assert len(inputs) == len(held_sets) == 11 * 3 + 40 * 4
    acquired = [s.mask[0] > 0 for s in samples]
    validation = held_sets[:3]  # the first validation: Γ of each slice
    for keep, held in zip(inputs, held_sets, strict=True):
        owner = [i for i in range(3) if bool((keep <= acquired[i]).all() & (held <= acquired[i]).all())]
        assert owner and not (keep & held).any() and held.any()
        gamma = validation[owner[0]]
        if not torch.equal(held, gamma):  # a training step: Γ is neither input nor loss
            assert not ((keep | held) & gamma).any()
        else:  # a validation: all other acquired lines are the input
            assert torch.equal(keep | held, acquired[owner[0]])


def test_adaptation_never_keeps_weights_worse_on_the_held_out_lines(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An optimiser that climbs the loss makes every adapted state worse on Γ: the kept weights are the
    checkpoint's (best step 0) and the restored volume equals the unadapted one."""
    checkpoint = make_checkpoint(tmp_path / "pgd.pt", PGD_RECON, task="reconstruction", scale=1, acceleration=4.0,
                                 source={"kind": "digital_brain", "size": 64, "coils": 4}, lr=1e-3)
    config, model, samples, truth = recon_samples(checkpoint)
    monkeypatch.setattr(adapt_module, "_optimizer",
                        lambda config, net, lr, source: torch.optim.Adam(net.parameters(), lr, maximize=True))
    result = adapt_to_scan(model, config, samples[:1], steps=4, lr=1e-2)
    scores = dict(result.validation)
    assert result.best_step == 0 and all(scores[step] > scores[0] for step in (1, 2, 3, 4))
    assert restored_psnr(result.model, samples, truth) == restored_psnr(model, samples, truth)
