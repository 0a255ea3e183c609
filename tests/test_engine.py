"""The training/evaluation engine: configs, checkpoints, training, resumption, divergence, evaluation, DDP, CLI."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from accelmri.cli import app
from accelmri.data.errors import DataError
from accelmri.engine.build import build_dataset, build_model
from accelmri.engine.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from accelmri.engine.config import ConfigError, ModelConfig, load_config, parse_config
from accelmri.engine.evaluate import evaluate
from accelmri.engine.trainer import TrainingDivergedError, train
from accelmri.models import Prediction, available, register
from accelmri.models.blocks.vgg import VGG19Features
from tests.engine_utils import tiny

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
runner = CliRunner()


class NaNAfter(nn.Module):
    """Test model: nearest-neighbour upsampling of a 3×3 conv; its output turns NaN after ``after`` training calls."""

    required_fields = ("lr_input",)

    def __init__(self, scale: int = 2, after: int = 2) -> None:
        super().__init__()
        self.scale, self.after = scale, after
        self.conv = nn.Conv2d(1, 1, 3, padding=1)
        self.calls = 0

    def forward(self, batch: object) -> Prediction:
        self.calls += int(self.training)
        image = F.interpolate(self.conv(batch.lr_input), scale_factor=self.scale)  # type: ignore[attr-defined]
        return Prediction(image=image * math.nan if self.calls > self.after else image)


class TinyDiscriminator(nn.Module):
    """Test GAN discriminator: two convolutions and a spatial mean, ``(B, 1, H, W) → logits (B, 1)``."""

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, channels, 3, stride=2), nn.LeakyReLU(0.2), nn.Conv2d(channels, 1, 3))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image).mean(dim=(2, 3))


for _name, _factory in (("test_nan_after", NaNAfter), ("test_discriminator", TinyDiscriminator)):
    if _name not in available():
        register(_name)(_factory)


@pytest.fixture(scope="module")
def trained(brain_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny EDSR run (4 steps, 2 validations) with two validation volumes; returns its run folder."""
    run_dir = tmp_path_factory.mktemp("runs") / "edsr"
    train(tiny(brain_dir, run_dir, "data.split.ratios=[1,2,0]"))
    return run_dir


# -------------------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_parses_and_round_trips(path: Path) -> None:
    config = load_config(path)
    assert config.name == path.stem
    assert parse_config(config.to_dict(), source="stored") == config
    json.dumps(config.to_dict())  # plain types only


# Parameter counts of the paper configs' models (docs/models.md; MINet and SANet as stated in their configs' headers),
# by model and scale; the `_refcode` variants by the same keys. A config building another size fails.
PAPER_CONFIG_PARAMETERS = {
    ("t2net", 2): 1_399_938, ("t2net", 4): 1_547_650,
    ("minet", 2): 6_637_467, ("minet", 4): 6_785_179,  # + the scaled affinity's temperature
    ("sanet", 2): 7_011_099, ("sanet", 4): 7_158_811,
    ("fasrnet", 2): 4_948_801, ("fasrnet", 4): 6_536_129,
    ("pgd_sft", 2): 17_418_756,
}
REFCODE_CONFIG_PARAMETERS = {
    ("t2net", 2): 1_399_938,  # V = F_Rec has no weights of its own
    ("minet", 2): 6_637_468,  # + the learnable γ scalars (csa_gamma: 0.0); affinity "paper" has no temperature
    ("sanet", 2): 4_745_084,  # attention_stages refcode (4 groups), batch norm, learnable γ
}
# Configs of studies that are not a paper experiment, by file stem: their own sizes.
STUDY_CONFIG_PARAMETERS = {
    "pulseq_pgd_sft_r4": 181_187,  # the Rec module alone (recon_only, scale 1), Γ at its default size
}


@pytest.mark.parametrize("path", sorted(p for p in CONFIGS.glob("*.yaml") if not p.name.startswith("tiny_")),
                         ids=lambda p: p.name)
def test_paper_config_builds_the_paper_size_model(path: Path, tmp_path: Path) -> None:
    config = load_config(path)
    assert config.trainer.out_dir == f"runs/{path.stem}"
    kwargs = dict(config.model.kwargs)
    if "vgg_weights" in kwargs:  # the ImageNet file is a placeholder here: a local file of the same layout
        assert str(kwargs["vgg_weights"]).startswith("/path/to/")
        kwargs["vgg_weights"] = tmp_path / "vgg19.pth"
        torch.save(VGG19Features().state_dict(), kwargs["vgg_weights"])
    model = build_model(ModelConfig(config.model.name, kwargs), config.data.acquisition.scale, config.source)
    count = sum(p.numel() for p in model.parameters())
    if path.stem in STUDY_CONFIG_PARAMETERS:
        assert count == STUDY_CONFIG_PARAMETERS[path.stem]
        return
    table = REFCODE_CONFIG_PARAMETERS if path.stem.endswith("_refcode") else PAPER_CONFIG_PARAMETERS
    assert count == table[config.model.name, config.data.acquisition.scale]


def test_overrides_set_typed_values_and_new_keys(tmp_path: Path) -> None:
    config = load_config(CONFIGS / "tiny_sr_edsr.yaml", [
        "optimizer.lr=1e-4",  # YAML 1.1 reads this as a string: accepted for float keys
        "data.split.ratios=[2, 1, 1]",
        "model.res_scale=0.5",
        "trainer.precision=32",
        "data.crop=[32, 32]",
        f"trainer.out_dir={tmp_path}",
    ])
    assert config.optimizer.lr == 1e-4
    assert config.data.split.ratios == (2.0, 1.0, 1.0)
    assert config.model.kwargs == {"scale": 2, "channels": 8, "n_blocks": 2, "res_scale": 0.5}
    assert config.trainer.precision == "32-true"
    assert config.data.crop == (32, 32)
    assert config.trainer.out_dir == str(tmp_path)


@pytest.mark.parametrize(
    ("overrides", "key", "words"),
    [
        (["data.sourc=1"], "data.sourc", "unknown key"),
        (["data.task=denoise"], "data.task", "must be one of"),
        (["trainer.max_epochs=3"], "trainer", "exactly one of max_epochs or max_steps"),
        (["data.acquisition.scale=3", "model.scale=3"], "data.acquisition.scale", "does not divide"),
        (["model.scale=4"], "model.scale", "differs from data.acquisition.scale"),
        (["data.acquisition.acceleration=2"], "data.task", "super_resolution"),
        (["optimizer.lr=fast"], "optimizer.lr", "expected a finite number"),
        (["loss.weights={l2: 1}"], "loss.weights.l2", "unknown loss term"),
        (["scheduler.name=multistep"], "scheduler.milestones", "milestones"),
        (["trainer.precision=64"], "trainer.precision", "must be one of"),
        (["data.source.kind=zip"], "data.source.kind", "digital_brain, files"),
        (["no_equals_sign"], "no_equals_sign", "KEY.SUB=VALUE"),
        (["model.name.sub=1"], "model.name.sub", "not a mapping"),
        (["data.patch_size=[33, 32]"], "data.patch_size", "divisible by the scale 2"),
        (["data.patch_size=[0, 32]"], "data.patch_size", "must be positive"),
        (["data.patch_size=[128, 32]"], "data.patch_size", "larger than the image size [64, 64] (data.source.size)"),
        (["data.crop=[32, 32]", "data.patch_size=[48, 32]"], "data.patch_size", "larger than the image size [32, 32]"),
        (["data.task=joint", "data.acquisition.acceleration=2", "data.patch_size=[32, 32]"], "data.patch_size",
         "super_resolution only"),
    ],
)
def test_config_errors_name_file_and_key(overrides: list[str], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(CONFIGS / "tiny_sr_edsr.yaml", overrides)
    assert info.value.key == key
    message = str(info.value)
    assert message.startswith(str(CONFIGS / "tiny_sr_edsr.yaml")) and words in message
    assert "\n" not in message


def test_bad_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [1, 2\nmodel: x\n")
    with pytest.raises(ConfigError, match="invalid YAML at line"):
        load_config(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="YAML mapping"):
        load_config(listing)


def test_files_sources_split_by_subject_or_by_csv(brain_dir: Path, tmp_path: Path) -> None:
    files = sorted((brain_dir / "singlecoil").glob("*.h5"))  # simulate layout: one folder per coil kind
    listed = tiny(brain_dir, tmp_path / "run", "data.source={kind: files, paths: " + json.dumps(list(map(str, files)))
                  + "}").data
    volumes = {split: [t.path for t in build_dataset(listed, split).targets] for split in ("train", "val", "test")}
    assert sorted(p for paths in volumes.values() for p in paths) == files
    assert all(len(paths) == 1 for paths in volumes.values())
    pairs = {}
    for split, chosen in (("train", files[:2]), ("val", files[2:])):
        pairs[split] = tmp_path / f"{split}.csv"
        pairs[split].write_text("".join(f"{f},{f}\n" for f in chosen))  # reference, target
    csv_source = {"kind": "files", "csv": {k: str(v) for k, v in pairs.items()}}
    paired = tiny(brain_dir, tmp_path / "run", f"data.source={json.dumps(csv_source)}").data
    train_set, test_set = build_dataset(paired, "train"), build_dataset(paired, "test")
    assert [t.path for t in train_set.targets] == files[:2] and len(test_set) == 0
    assert train_set[0].reference is not None and len(train_set) == 8


# ---------------------------------------------------------------------------------------------- checkpoints


def test_training_writes_plain_checkpoints_and_logs(trained: Path) -> None:
    for name in ("last.pt", "best.pt", "config.yaml", "metrics.jsonl"):
        assert (trained / name).is_file(), name
    assert list((trained / "tensorboard").glob("events.out.tfevents.*"))
    raw = torch.load(trained / "last.pt", map_location="cpu", weights_only=True)  # no code is executed
    assert raw["format"] == CHECKPOINT_FORMAT and raw["step"] == 4 and raw["epoch"] == 2
    assert set(raw["model"]) == set(load_checkpoint(trained / "best.pt")["model"])
    config = parse_config(raw["config"])
    assert config.model.name == "edsr" and config.trainer.max_steps == 4
    assert len(raw["rng"]) == 1 and raw["rng"][0]["torch"].dtype == torch.uint8
    per_volume = raw["metrics"]["per_volume"]
    assert [v["slices"] for v in per_volume] == [4, 4] and raw["best"]["metric"] == "psnr"
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4]
    assert [r["step"] for r in records if r["split"] == "val"] == [2, 4]
    assert not list(trained.glob(".*.tmp"))


def test_run_folder_is_never_reused_without_resume(brain_dir: Path, trained: Path, tmp_path: Path) -> None:
    before = (trained / "last.pt").read_bytes()
    with pytest.raises(ConfigError, match="not empty: pass --resume"):
        train(tiny(brain_dir, trained))
    assert (trained / "last.pt").read_bytes() == before
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(tiny(brain_dir, tmp_path / "fresh"), resume=True)


def test_load_checkpoint_refuses_other_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")
    arbitrary = tmp_path / "code.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "thing": Path("x")}, arbitrary)  # a class outside the allow-list
    with pytest.raises(DataError, match="not a loadable checkpoint"):
        load_checkpoint(arbitrary)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(DataError, match="not an accelmri checkpoint"):
        load_checkpoint(other)
    text = tmp_path / "text.pt"
    text.write_text("not a torch file")
    with pytest.raises(DataError, match="not a loadable checkpoint"):
        load_checkpoint(text)


# -------------------------------------------------------------------------------------------------- training


def test_resume_continues_exactly(brain_dir: Path, tmp_path: Path) -> None:
    # Dropout, random training masks, a per-step schedule, a GAN (second optimiser) and a stop mid-epoch.
    options = ["trainer.val_every_epochs=0", "model.channels=4", "model.n_pools=1", "model.dropout=0.1",
               "data.acquisition.mask_kind=random", "scheduler.interval=step",
               "loss.weights={l1: 1.0, rec_l1: 1.0, adversarial: 0.01}",
               "loss.discriminator={name: test_discriminator}", "discriminator_optimizer={name: rmsprop, lr: 1.0e-3}"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(tiny(brain_dir, straight, *options, "trainer.max_steps=5", name="tiny_joint_unet.yaml"))
    first = train(tiny(brain_dir, split, *options, "trainer.max_steps=3", name="tiny_joint_unet.yaml"))
    assert (first.step, first.epoch) == (3, 1)
    train(tiny(brain_dir, split, *options, "trainer.max_steps=5", name="tiny_joint_unet.yaml"), resume=True)
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(split / "last.pt")
    assert a["step"] == b["step"] == 5
    for part in ("model", "discriminator"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), (part, key)
    assert b["optimizers"]["discriminator"]["param_groups"][0]["lr"] == pytest.approx(1e-3 * 0.5**5)
    losses = [
        {r["step"]: (r["loss"], r["loss/discriminator"], r["lr"])
         for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["split"] == "train"}
        for run in (straight, split)
    ]
    assert losses[0] == losses[1] and sorted(losses[0]) == [1, 2, 3, 4, 5]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(brain_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "nan"
    config = tiny(brain_dir, run_dir, "model={name: test_nan_after, scale: 2, after: 2}", "trainer.max_steps=6",
                  "trainer.val_every_steps=2", "trainer.val_every_epochs=0")
    with pytest.raises(TrainingDivergedError) as info:
        train(config)
    message = str(info.value)
    assert "step 3" in message and "loss is nan" in message and f"{run_dir / 'last.pt'} (step 2)" in message
    kept = load_checkpoint(run_dir / "last.pt")
    assert kept["step"] == 2
    assert all(torch.isfinite(value).all() for value in kept["model"].values())


# ------------------------------------------------------------------------------------------------ evaluation


def test_evaluate_writes_per_volume_tables_and_ttests(brain_dir: Path, trained: Path, tmp_path: Path) -> None:
    bicubic = tmp_path / "bicubic_x2.yaml"
    bicubic.write_text((CONFIGS / "tiny_sr_edsr.yaml").read_text().replace("name: edsr", "name: bicubic")
                       .replace("  channels: 8\n  n_blocks: 2\n", ""))
    out = tmp_path / "eval"
    result = runner.invoke(app, ["evaluate", str(trained / "last.pt"), str(bicubic), "--split", "val",
                                 "--data", f"source.dir={brain_dir}", "--data", "split.ratios=[1,2,0]",
                                 "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [(r["method"], Path(r["volume"]).name) for r in rows] == [
        ("edsr/last", "brain_sub000_T2.h5"), ("edsr/last", "brain_sub001_T2.h5"),
        ("bicubic_x2", "brain_sub000_T2.h5"), ("bicubic_x2", "brain_sub001_T2.h5"),
    ]
    payload = json.loads((out / "metrics.json").read_text())
    edsr = payload["methods"][0]
    assert edsr["per_volume"] == load_checkpoint(trained / "last.pt")["metrics"]["per_volume"]
    assert set(edsr["summary"]) == {"psnr", "ssim", "nmse"}
    assert [(t["a"], t["b"], t["metric"], t["n"]) for t in payload["ttests"]] == [
        ("edsr/last", "bicubic_x2", m, 2) for m in ("psnr", "ssim", "nmse")
    ]
    markdown = (out / "metrics.md").read_text()
    assert "| edsr/last | edsr | 2 |" in markdown and "paired t-tests" in markdown
    again = runner.invoke(app, ["evaluate", str(trained / "last.pt"), "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.stderr  # a user error: one line on stderr


def test_evaluate_refuses_a_trainable_model_given_by_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="has trainable parameters"):
        evaluate([CONFIGS / "tiny_sr_edsr.yaml"], tmp_path)


def test_ddp_two_processes_match_single_process_evaluation(brain_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    command = [sys.executable, "-m", "accelmri", "train", str(CONFIGS / "tiny_sr_edsr.yaml"),
               f"data.source.dir={brain_dir}", f"trainer.out_dir={run_dir}", "data.split.ratios=[1,2,0]",
               "trainer.progress_bar=false", "trainer.accelerator=cpu", "--devices", "2"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Starting with 2 processes" in done.stdout + done.stderr
    checkpoint = load_checkpoint(run_dir / "last.pt")
    assert len(checkpoint["rng"]) == 2 and checkpoint["step"] == 4
    result = evaluate([run_dir / "last.pt"], tmp_path / "eval", split="val", device="cpu")
    single = [vars(score) for score in result.methods[0].scores]
    assert len(single) == 2
    assert single == checkpoint["metrics"]["per_volume"]


# ------------------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (["missing.yaml"], "config file not found"),
        (["{config}", "model={name: no_such_model, scale: 2}"], "unknown model 'no_such_model'"),
        (["{config}", "model={name: early_fusion, scale: 2}"], "early_fusion needs batch fields ['reference']"),
        (["{config}", "data.acquisition.scale=3", "model.scale=3"], "scale 3 does not divide the image size 64"),
    ],
    ids=["missing-config", "unknown-model", "incompatible-dataset", "scale-not-dividing-size"],
)
def test_cli_train_errors_exit_2_with_one_line(brain_dir: Path, tmp_path: Path, arguments: list[str],
                                               words: str) -> None:
    config = str(CONFIGS / "tiny_sr_edsr.yaml")
    argv = [a.replace("{config}", config) for a in arguments]
    argv += [f"data.source.dir={brain_dir}", f"trainer.out_dir={tmp_path / 'run'}", "trainer.accelerator=cpu"]
    result = runner.invoke(app, ["train", *argv])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], result.output
    assert not (tmp_path / "run" / "last.pt").exists()
