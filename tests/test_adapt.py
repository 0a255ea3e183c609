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
from accelmri.data.volume import ImageVolume
from accelmri.engine import adapt as adapt_module
from accelmri.engine.adapt import ADAPT_PATCH, adapt_to_scan, check_adaptation
from accelmri.engine.build import build_model
from accelmri.engine.checkpoint import rng_state, save_checkpoint
from accelmri.engine.config import parse_config
from accelmri.engine.evaluate import load_method
from accelmri.engine.restore import restore
from accelmri.metrics import evaluate_volume
from accelmri.physics.degrade import lowres
from accelmri.physics.fft import fft2c, ifft2c

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
    with pytest.raises(DataError, match="supports task super_resolution only; this checkpoint's task is joint"):
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
    assert result.output.count("\n") == 1 and "task is joint" in result.output
    assert not (tmp_path / "x.nii.gz").exists()
