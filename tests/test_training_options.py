"""Training options of issue 17: flips/rotations before the acquisition, AdamW, cosine/linear warm-up schedules, EMA
weights, CSV/W&B/MLflow loggers and validation images."""

from __future__ import annotations

import copy
import csv
import importlib.util
import json
import math
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from accelmri.data.datasets import Augmentation, SliceDataset, SliceSource
from accelmri.data.phantom import shepp_logan
from accelmri.data.volume import KspaceVolume
from accelmri.engine import trainer as trainer_module
from accelmri.engine.build import build_dataset
from accelmri.engine.checkpoint import load_checkpoint
from accelmri.engine.config import ConfigError, SchedulerConfig, load_config
from accelmri.engine.evaluate import evaluate
from accelmri.engine.trainer import build_optimizer, build_scheduler, train
from accelmri.physics.coils import sense_expand
from accelmri.physics.degrade import Acquisition
from accelmri.physics.fft import fft2c, ifft2c
from accelmri.physics.sensitivity import birdcage_maps
from tests.engine_utils import tiny

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny_sr_edsr.yaml"
ALL_FLIPS = Augmentation(hflip=True, vflip=True, rot90=True)


def kspace_source(images: torch.Tensor, name: str, coils: int) -> SliceSource:
    """``(S, H, W)`` complex images as a k-space volume of ``coils`` coils (birdcage maps)."""
    height, width = images.shape[-2:]
    images = images.to(torch.complex64)
    coil_images = sense_expand(images, birdcage_maps((coils, height, width))) if coils > 1 else images[:, None]
    return SliceSource(KspaceVolume(kspace=fft2c(coil_images).numpy(), path=Path(name)), subject="s", contrast="T2")


def transformed(source: SliceSource, flips: tuple[bool, bool, int]) -> SliceSource:
    """The volume whose coil images are those of ``source`` flipped along H, along W, then turned (torch.rot90)."""
    images = ifft2c(torch.from_numpy(source.volume.kspace))  # type: ignore[union-attr]
    vflip, hflip, turns = flips
    images = images.flip(-2) if vflip else images
    images = images.flip(-1) if hflip else images
    kspace = fft2c(torch.rot90(images, turns, dims=(-2, -1)).contiguous()).to(torch.complex64)
    return SliceSource(KspaceVolume(kspace=kspace.numpy(), path=source.path), subject="s", contrast="T2")


def phantom(size: tuple[int, int], slices: int = 2) -> torch.Tensor:
    """Asymmetric complex phantoms (a flip or turn changes them)."""
    base = shepp_logan(size, phase_cycles=0.3)
    ramp = torch.linspace(0.5, 1.5, size[1])[None, :] * torch.linspace(1.0, 0.7, size[0])[:, None]
    return torch.stack([base * ramp * (1 + 0.1 * s) for s in range(slices)])


# --------------------------------------------------------------------------------------------- augmentation


def test_augmented_sample_is_the_sample_of_the_transformed_volume() -> None:
    # Multi-coil joint task with noise, ESPIRiT maps and a reference: every field must follow the transform.
    acquisition = Acquisition("random", acceleration=2, center_fraction=0.25, scale=2, noise_std=0.01)
    target, reference = kspace_source(phantom((32, 32)), "t.h5", 4), kspace_source(phantom((32, 32)).abs(), "r.h5", 1)
    kwargs: dict[str, Any] = {"task": "joint", "acquisition": acquisition, "train": True, "sens_maps": "espirit"}
    seen = set()
    for seed in range(40):
        torch.manual_seed(seed)  # a fresh data set each time: the ESPIRiT maps of a slice are cached with its noise
        sample = SliceDataset([target], references=[reference], augment=ALL_FLIPS, **kwargs)[1]
        flips = sample.meta["augmentation"]
        torch.manual_seed(seed)
        ALL_FLIPS.draw((32, 32))  # the plain data set draws no augmentation: consume the same draws
        plain = SliceDataset([transformed(target, flips)], references=[transformed(reference, flips)], **kwargs)[1]
        for name in ("target", "lr_input", "lr_target", "kspace", "mask", "norm_mean", "norm_std", "reference",
                     "sens_maps"):
            assert torch.equal(getattr(sample, name), getattr(plain, name)), (flips, name)
        seen.add(sample.target.numpy().tobytes())
        if len(seen) == 8:
            break
    assert len(seen) == 8  # the 8 flips/rotations of the square all occurred (distinct images)


def test_rot90_turns_non_square_slices_by_half_turns_only() -> None:
    source = kspace_source(phantom((16, 24)), "ns.h5", 1)
    dataset = SliceDataset([source], "super_resolution", Acquisition(scale=2), train=True,
                           augment=Augmentation(rot90=True))
    turns = set()
    for seed in range(12):
        torch.manual_seed(seed)
        sample = dataset[0]
        turns.add(sample.meta["augmentation"][2])
        assert sample.target.shape == (1, 16, 24)
    assert turns == {0, 2}


def test_augmentation_is_seeded_by_the_training_rng() -> None:
    source = kspace_source(phantom((16, 16)), "d.h5", 1)
    dataset = SliceDataset([source], "super_resolution", Acquisition(scale=2), train=True, augment=ALL_FLIPS)
    draws = []
    for seed in (3, 3, 4, 5, 6):
        torch.manual_seed(seed)
        draws.append((dataset[0].meta["augmentation"], dataset[0].target))
    assert draws[0][0] == draws[1][0] and torch.equal(draws[0][1], draws[1][1])
    assert len({flips for flips, _ in draws}) > 1
    with pytest.raises(ValueError, match="augment is for training"):
        SliceDataset([source], "super_resolution", Acquisition(scale=2), augment=ALL_FLIPS)


# ---------------------------------------------------------------------------------------------------- engine


def test_validation_and_test_splits_are_never_augmented(brain_dir: Path, tmp_path: Path) -> None:
    data = tiny(brain_dir, tmp_path, "data.augment={hflip: true, rot90: true}").data
    assert build_dataset(data, "train").augment == Augmentation(hflip=True, rot90=True)  # type: ignore[union-attr]
    for split in ("val", "test"):
        dataset = build_dataset(data, split)
        assert dataset.augment is None and "augmentation" not in dataset[0].meta  # type: ignore[union-attr]


#: Every option at once: flips/rotations, AdamW, cosine warm-up per step, EMA, CSV next to TensorBoard, a
#: validation (with images) after every step.
OPTIONS = ("data.augment={hflip: true, vflip: true, rot90: true}", "optimizer={name: adamw, lr: 1.0e-3, "
           "weight_decay: 0.05}", "scheduler={name: cosine, interval: step, warmup_steps: 2, min_lr: 1.0e-4}",
           "trainer.ema=0.8", "trainer.loggers=[tensorboard, csv]", "trainer.max_steps=5", "trainer.val_every_steps=1",
           "trainer.val_every_epochs=0")


def cosine(t: int, base: float = 1e-3, low: float = 1e-4, warmup: int = 2, length: int = 5) -> float:
    """The documented warm-up + cosine learning rate after ``t`` scheduler steps."""
    if t < warmup:
        return base * (t + 1) / warmup
    return low + (base - low) * (1 + math.cos(math.pi * min(1.0, (t - warmup) / (length - warmup)))) / 2


@pytest.fixture(scope="module")
def runs(brain_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An uninterrupted run with every option (its checkpoint payload at every step recorded) and the same run
    stopped by SIGTERM after step 3 and resumed."""
    folder = tmp_path_factory.mktemp("options")
    payloads: list[dict[str, Any]] = []
    save = trainer_module.save_checkpoint
    stop_at: list[int] = []

    def recording(path: Path, payload: dict[str, Any]) -> Path:
        if path.name == "last.pt":
            payloads.append(copy.deepcopy(payload))  # state dicts share the live weights' storage
            if payload["step"] in stop_at:
                os.kill(os.getpid(), signal.SIGTERM)  # recorded by the trainer: stops after this step
        return save(path, payload)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer_module, "save_checkpoint", recording)
        train(tiny(brain_dir, folder / "straight", *OPTIONS))
        straight = list(payloads)
        stop_at.append(3)
        stopped = train(tiny(brain_dir, folder / "split", *OPTIONS))
        stop_at.clear()
        resumed = train(tiny(brain_dir, folder / "split", *OPTIONS), resume=True)
    return {"straight": folder / "straight", "split": folder / "split", "payloads": straight,
            "stopped": stopped, "resumed": resumed}


def test_resume_with_every_option_is_bit_identical(runs: dict[str, Any]) -> None:
    assert (runs["stopped"].stopped_by, runs["stopped"].step, runs["resumed"].step) == ("SIGTERM", 3, 5)
    a, b = (load_checkpoint(runs[name] / "last.pt") for name in ("straight", "split"))
    assert a["ema_updates"] == b["ema_updates"] == 5
    for part in ("model", "training_model"):
        assert all(torch.equal(value, b[part][key]) for key, value in a[part].items()), part
    assert a["schedulers"] == b["schedulers"]
    assert a["schedulers"]["model"]["lr_lambdas"][0] == {"shape": "cosine", "warmup": 2, "length": 5, "floor": 0.1}
    state_a, state_b = a["optimizers"]["model"]["state"], b["optimizers"]["model"]["state"]
    assert all(torch.equal(state_a[k]["exp_avg_sq"], state_b[k]["exp_avg_sq"]) for k in state_a)
    logs = [(run / "metrics.jsonl").read_text() for run in (runs["straight"], runs["split"])]
    assert logs[0] == logs[1]
    tables = [(run / "csv" / "metrics.csv").read_text() for run in (runs["straight"], runs["split"])]
    assert tables[0] == tables[1]  # the CSV rows before the stop are kept on resume


def test_learning_rate_follows_the_warmup_cosine_formula(runs: dict[str, Any]) -> None:
    records = [json.loads(line) for line in (runs["straight"] / "metrics.jsonl").read_text().splitlines()]
    rates = {r["step"]: r["lr"] for r in records if r["split"] == "train"}
    assert sorted(rates) == [1, 2, 3, 4, 5]
    for step, rate in rates.items():  # optimiser step n uses the rate after n - 1 scheduler steps
        assert rate == pytest.approx(cosine(step - 1), rel=1e-12), step
    assert load_checkpoint(runs["straight"] / "last.pt")["optimizers"]["model"]["param_groups"][0]["lr"] == (
        pytest.approx(1e-4, rel=1e-12))


def test_ema_is_validated_and_saved_as_the_model(runs: dict[str, Any], tmp_path: Path) -> None:
    payloads = runs["payloads"]
    assert [p["step"] for p in payloads] == [1, 2, 3, 4, 5]
    ema = {k: v.clone() for k, v in payloads[0]["training_model"].items()}  # starts at the weights after step 1
    for payload in payloads:
        if payload["step"] > 1:
            ema = {k: 0.8 * v + 0.2 * payload["training_model"][k] for k, v in ema.items()}
        for key, value in ema.items():
            torch.testing.assert_close(payload["model"][key], value, rtol=1e-5, atol=1e-7)
        assert not all(torch.equal(payload["model"][k], payload["training_model"][k]) for k in ema) or (
            payload["step"] == 1)
    # evaluate/restore load the checkpoint's "model" (the average): the same scores as the trainer's validation
    last = load_checkpoint(runs["straight"] / "last.pt")
    (method,) = evaluate([runs["straight"] / "last.pt"], tmp_path / "eval", split="val", device="cpu").methods
    assert method.summary["psnr"]["mean"] == last["metrics"]["summary"]["psnr"]["mean"]


def test_csv_and_tensorboard_receive_scalars_and_validation_images(runs: dict[str, Any]) -> None:
    run = runs["straight"]
    with (run / "csv" / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows if r["val/psnr"]] == [1, 2, 3, 4, 5]
    assert [float(r["train/lr"]) for r in rows if r["train/lr"]] == pytest.approx([cosine(t) for t in range(5)])
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert {"train/loss", "train/lr", "val/psnr"} <= set(events.Tags()["scalars"])
    (tag,) = events.Tags()["images"]  # one validation volume: its central slice
    assert tag.startswith("val/images/") and tag.endswith("_slice2")
    images = events.Images(tag)
    assert [i.step for i in images] == [1, 2, 3, 4, 5]
    assert (images[0].height, images[0].width) == (64, 4 * 64)  # input | output | target | |error|


# ---------------------------------------------------------------------------------------- optimiser, schedule


def test_adamw_decays_weights_decoupled() -> None:
    config = load_config(CONFIG, ["optimizer={name: adamw, lr: 0.1, weight_decay: 0.5}"]).optimizer
    layer = nn.Linear(2, 1)
    optimizer = build_optimizer(config, layer, "optimizer", "test")
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["weight_decay"] == 0.5
    before = layer.weight.detach().clone()
    layer.weight.grad, layer.bias.grad = torch.zeros_like(layer.weight), torch.zeros_like(layer.bias)
    optimizer.step()  # zero gradient: only the decoupled decay w ← w·(1 − lr·λ) acts
    torch.testing.assert_close(layer.weight.detach(), before * (1 - 0.1 * 0.5))


@pytest.mark.parametrize("interval", ["step", "epoch"])
def test_linear_schedule_warms_up_by_epochs(interval: str) -> None:
    config = SchedulerConfig(name="linear", interval=interval, warmup_epochs=1, min_lr=0.01)  # type: ignore[arg-type]
    optimizer = torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(1))]},
                                 {"params": [nn.Parameter(torch.zeros(1))], "lr": 0.5}], lr=0.1)
    scheduler = build_scheduler(config, optimizer, steps=12, batches=3, source="test")
    assert scheduler is not None
    warmup, length = (3, 12) if interval == "step" else (1, 4)
    for t in range(length + 2):
        for group, base in zip(optimizer.param_groups, (0.1, 0.5), strict=True):
            progress = min(1.0, (t - warmup) / (length - warmup))
            expected = base * (t + 1) / warmup if t < warmup else 0.01 + (base - 0.01) * (1 - progress)
            assert group["lr"] == pytest.approx(expected, rel=1e-12), (t, base)
        optimizer.step()
        scheduler.step()
    with pytest.raises(ConfigError, match=r"scheduler\.warmup_epochs: the warm-up"):
        build_scheduler(config, optimizer, steps=3, batches=3, source="test")


@pytest.mark.parametrize(("override", "key"), [
    ("scheduler={name: cosine, interval: epoch, warmup_steps: 2}", "scheduler.warmup_steps"),
    ("scheduler={name: cosine, interval: step, warmup_steps: 2, warmup_epochs: 1}", "scheduler.warmup_steps"),
    ("scheduler={name: step, step_size: 2, min_lr: 1.0e-5}", "scheduler.min_lr"),
    ("scheduler={name: linear, min_lr: 0.01}", "scheduler.min_lr"),
    ("trainer.ema=1.0", "trainer.ema"),
    ("trainer.loggers=[csv, csv]", "trainer.loggers"),
    ("trainer.loggers=[neptune]", "trainer.loggers[0]"),
    ("trainer.logger_options={csv: {a: 1}}", "trainer.logger_options.csv"),
    ("data.augment={hflip: yes please}", "data.augment.hflip"),
])
def test_bad_option_values_name_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(CONFIG, [override])
    assert info.value.key == key


# ------------------------------------------------------------------------------------------------- loggers


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_a_logger_extra_that_is_not_installed_is_one_clear_error(name: str, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec  # the dev install has both: hide the one under test
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda module, *args: None if module == name else find_spec(module, *args))
    message = rf"trainer\.loggers: {name} is not installed: pip install 'accelmri\[{name}\]'"
    with pytest.raises(ConfigError, match=message):
        train(load_config(CONFIG, [f"trainer.loggers=[tensorboard, {name}]", f"trainer.out_dir={tmp_path / 'r'}"]))
    assert not (tmp_path / "r").exists()


class _Recorder:
    """Stands for W&B's and MLflow's loggers: records the image calls."""

    run_id = "run"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.experiment = self

    def log_image(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((args, kwargs))


def test_wandb_and_mlflow_images_go_through_their_logger_calls() -> None:
    image = torch.rand(4, 16)
    wandb, mlflow, csv_logger = _Recorder(), _Recorder(), _Recorder()
    trainer_module._log_image("wandb", wandb, "val/images/a", image, 7)  # type: ignore[arg-type]
    trainer_module._log_image("mlflow", mlflow, "val/images/a", image, 7)  # type: ignore[arg-type]
    trainer_module._log_image("csv", csv_logger, "val/images/a", image, 7)  # type: ignore[arg-type]
    ((args, kwargs),) = wandb.calls
    assert kwargs["key"] == "val/images/a" and kwargs["step"] == 7 and kwargs["images"][0].shape == (4, 16)
    ((args, kwargs),) = mlflow.calls
    assert args[0] == "run" and args[1].dtype.name == "uint8" and kwargs["artifact_file"].endswith("00000007.png")
    assert csv_logger.calls == []
