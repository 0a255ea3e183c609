"""Reliability and first use (issue 16): clean failures, progress, preemption-safe training, bounded file handles."""

from __future__ import annotations

import io
import json
import math
import os
import signal
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from rich.console import Console
from rich.progress import Progress
from torch import nn
from typer.testing import CliRunner

from accelmri.cli import app
from accelmri.engine.build import build_dataset, build_model
from accelmri.engine.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from accelmri.engine.config import ConfigError, ModelConfig
from accelmri.engine.restore import restore
from accelmri.engine.trainer import EXIT_PREEMPTED, TrainingDivergedError, train
from accelmri.models import Prediction, available, register
from tests.engine_utils import tiny

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny_sr_edsr.yaml"
runner = CliRunner()


class _Upsampler(nn.Module):
    """Test model: nearest-neighbour upsampling of a 3×3 convolution of the LR input."""

    required_fields = ("lr_input",)

    def __init__(self, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def image(self, batch: object) -> torch.Tensor:
        return F.interpolate(self.conv(batch.lr_input), scale_factor=self.scale)  # type: ignore[attr-defined]


class NaNInEval(_Upsampler):
    """Finite weights and training outputs, NaN outputs in eval mode (an overflow seen only by validation)."""

    def forward(self, batch: object) -> Prediction:
        image = self.image(batch)
        return Prediction(image=image if self.training else image * math.nan)


class SignalAt(_Upsampler):
    """Sends ``SIGNAL`` to its own process during training forward call number ``AT`` (``None``: never)."""

    AT: int | None = None
    SIGNAL = signal.SIGTERM
    calls = 0

    def forward(self, batch: object) -> Prediction:
        if self.training:
            SignalAt.calls += 1
            if SignalAt.calls == SignalAt.AT:
                os.kill(os.getpid(), SignalAt.SIGNAL)
        return Prediction(image=self.image(batch))


for _name, _factory in (("test_reliability_nan_in_eval", NaNInEval), ("test_reliability_signal_at", SignalAt)):
    if _name not in available():
        register(_name)(_factory)


@pytest.fixture(scope="module")
def checkpoint(brain_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``last.pt`` of a 2-step tiny EDSR run."""
    run_dir = tmp_path_factory.mktemp("runs") / "edsr"
    return train(tiny(brain_dir, run_dir, "trainer.max_steps=2", "trainer.val_every_epochs=0")).last


def nifti(path: Path, shape: tuple[int, int, int] = (16, 12, 3), zooms: tuple[float, ...] = (2.0, 2.0, 5.0)) -> Path:
    """A random float32 NIfTI with a diagonal affine."""
    data = np.random.default_rng(0).random(shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([*zooms, 1.0])), path)
    return path


def one_error_line(result: object, *words: str) -> str:
    """The single stderr line of a failed command (exit 2, nothing on stdout), checked to contain ``words``."""
    assert result.exit_code == 2, (result.exit_code, result.output)  # type: ignore[attr-defined]
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output  # type: ignore[attr-defined]
    assert result.stdout.strip() == "", result.stdout  # type: ignore[attr-defined]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------ 1: failed starts leave nothing


def test_a_run_that_fails_before_its_first_checkpoint_can_be_rerun(brain_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    diverging = tiny(brain_dir, run_dir, "optimizer.lr=1.0e+30", "trainer.max_steps=3")
    with pytest.raises(TrainingDivergedError, match="no checkpoint was saved before"):
        train(diverging)
    assert not run_dir.exists()  # no config.yaml, metrics.jsonl or tensorboard/ left behind
    assert train(tiny(brain_dir, run_dir, "trainer.max_steps=1")).step == 1


def test_leftovers_of_a_killed_start_are_started_afresh_but_user_files_are_kept(brain_dir: Path,
                                                                                 tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    config = tiny(brain_dir, run_dir, "trainer.max_steps=1")
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))  # as train writes it
    (run_dir / "metrics.jsonl").write_text('{"step": 1}\n')
    (run_dir / "tensorboard").mkdir()
    assert train(config, resume="auto").step == 1
    assert load_checkpoint(run_dir / "last.pt")["step"] == 1
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("my notes\n")
    with pytest.raises(ConfigError, match="not empty"):
        train(tiny(brain_dir, mine, "trainer.max_steps=1"), resume="auto")
    assert (mine / "config.yaml").read_text() == "my notes\n"


# ------------------------------------------------------------------------------------- 2: overrides on resume


def test_resume_refuses_changed_settings_instead_of_ignoring_them(brain_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    train(tiny(brain_dir, run_dir, "trainer.max_steps=1", "trainer.val_every_epochs=0"))
    result = runner.invoke(app, ["train", str(CONFIG), f"data.source.dir={brain_dir}", f"trainer.out_dir={run_dir}",
                                 "trainer.progress_bar=false", "trainer.max_steps=2", "trainer.val_every_epochs=0",
                                 "optimizer.lr=1.0e-4", "--resume"])
    one_error_line(result, "optimizer.lr", "0.001", "0.0001", "another trainer.out_dir")
    assert load_checkpoint(run_dir / "last.pt")["step"] == 1
    resumed = train(tiny(brain_dir, run_dir, "trainer.max_steps=2", "trainer.val_every_epochs=0"), resume=True)
    assert resumed.step == 2  # how long to train may change


# ------------------------------------------------------------------------------------------- 3: bad checkpoints


def test_checkpoints_with_foreign_weights_or_no_config_fail_in_one_line(checkpoint: Path, tmp_path: Path) -> None:
    payload = load_checkpoint(checkpoint)
    foreign = tmp_path / "foreign.pt"
    other = build_model(ModelConfig("edsr", {"scale": 2, "channels": 4, "n_blocks": 1}), 2)
    save_checkpoint(foreign, {**payload, "model": other.state_dict()})
    no_config = tmp_path / "no_config.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model": payload["model"]}, no_config)
    scan = nifti(tmp_path / "scan.nii.gz")
    for path, words in ((foreign, "do not fit the edsr model"), (no_config, "holds no training config")):
        result = runner.invoke(app, ["restore", str(path), str(scan), "--out", str(tmp_path / "out")])
        one_error_line(result, str(path), words)
        result = runner.invoke(app, ["evaluate", str(path), "--out", str(tmp_path / "eval")])
        one_error_line(result, str(path), words)
    assert not (tmp_path / "out").exists() and not (tmp_path / "eval").exists()


# --------------------------------------------------------------------- 4, 7, 9: restore checks before it writes


def test_restore_validates_every_input_before_writing(checkpoint: Path, tmp_path: Path) -> None:
    good = nifti(tmp_path / "good.nii.gz")
    bad = tmp_path / "bad.nii.gz"
    bad.write_text("not a NIfTI file")
    out = tmp_path / "restored"
    result = runner.invoke(app, ["restore", str(checkpoint), str(good), str(bad), "--out", str(out)])
    one_error_line(result, "bad.nii.gz")
    assert not out.exists()  # not even the folder: the first input was not restored first


def test_restore_refuses_a_reference_covering_half_the_slices(checkpoint: Path, tmp_path: Path) -> None:
    target = nifti(tmp_path / "t2.nii.gz", (16, 12, 4))
    half = nifti(tmp_path / "flair.nii.gz", (32, 24, 2), (1.0, 1.0, 5.0))  # the HR grid, slices 0-1 only
    out = tmp_path / "t2_2x.nii.gz"
    result = runner.invoke(app, ["restore", str(checkpoint), str(target), "--reference", str(half), "--out",
                                 str(out)])
    one_error_line(result, str(half), str(target), "2 of the 4 slices", "slices 2-3")
    assert not out.exists()
    full = nifti(tmp_path / "flair_full.nii.gz", (32, 24, 4), (1.0, 1.0, 5.0))
    assert restore(checkpoint, [target], out, reference=full, device="cpu") == [out]


def test_uncovered_slices_sinc_restores_them_by_sinc_interpolation(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """``--uncovered-slices sinc``: the slices a reference leaves mostly uncovered (here 2-3 of 4) are the sinc
    interpolation of their input slices (exactly what the sinc baseline writes); the others are the guided model's.
    """
    from tests.test_realscan import baseline_config
    from tests.test_restore_report import make_checkpoint

    guided = make_checkpoint(tmp_path / "minet.pt", {"name": "minet", "scale": 2, "channels": 8, "n_groups": 1,
                                                     "n_blocks": 1, "reduction": 2},
                             data={"source": {"kind": "digital_brain", "size": 64, "reference": "FLAIR"}})
    target = nifti(tmp_path / "t2.nii.gz", (16, 12, 4))
    half = nifti(tmp_path / "flair.nii.gz", (32, 24, 2), (1.0, 1.0, 5.0))  # the HR grid, slices 0-1 only
    with caplog.at_level("WARNING", logger="accelmri.engine.restore"):
        (written,) = restore(guided, [target], tmp_path / "guided.nii.gz", reference=half, device="cpu",
                             uncovered_slices="sinc")
    assert "slices 2-3 lie mostly outside the reference" in caplog.text and "restored by sinc" in caplog.text
    (sinc,) = restore(baseline_config(tmp_path / "sinc.yaml", "sinc"), [target], tmp_path / "sinc.nii.gz",
                      device="cpu")
    output, expected = nib.load(written).get_fdata(), nib.load(sinc).get_fdata()
    assert output.shape == expected.shape == (32, 24, 4)
    np.testing.assert_allclose(output[..., 2:], expected[..., 2:], rtol=1e-6, atol=1e-6)
    assert np.abs(output[..., :2] - expected[..., :2]).max() > 1e-3  # the model ran on the covered slices
    result = runner.invoke(app, ["restore", str(guided), str(target), "--reference", str(half), "--out",
                                 str(tmp_path / "cli.nii.gz"), "--uncovered-slices", "sinc"])
    assert result.exit_code == 0, result.output
    assert "slices 2-3" in result.stderr and (tmp_path / "cli.nii.gz").is_file()
    result = runner.invoke(app, ["restore", str(guided), str(target), "--reference", str(half), "--out",
                                 str(tmp_path / "bad.nii.gz"), "--uncovered-slices", "nearest"])
    assert result.exit_code == 2 and "--uncovered-slices" in result.output and not (tmp_path / "bad.nii.gz").exists()


def test_out_pointing_at_a_file_is_one_clear_line(checkpoint: Path, tmp_path: Path) -> None:
    scan = nifti(tmp_path / "scan.nii.gz")
    before = checkpoint.read_bytes()
    result = runner.invoke(app, ["restore", str(checkpoint), str(scan), "--out", str(checkpoint)])
    one_error_line(result, str(checkpoint), "exists and is not a folder")
    assert checkpoint.read_bytes() == before
    result = runner.invoke(app, ["evaluate", str(checkpoint), "--out", str(scan)])
    one_error_line(result, str(scan), "exists and is not a folder")
    result = runner.invoke(app, ["report", str(tmp_path), "--out", str(scan)])
    one_error_line(result, str(scan), "exists and is not a folder")


# ------------------------------------------------------------------- 5: odd matrices and NaN outputs, with advice


def test_odd_matrix_is_padded_and_a_slice_size_refusal_names_the_file(brain_dir: Path, tmp_path: Path) -> None:
    files = [nifti(tmp_path / f"sub{i}.nii.gz", (64, 64, 2)) for i in range(2)]
    files.append(nifti(tmp_path / "odd.nii.gz", (255, 255, 2)))
    source = "data.source={kind: files, paths: " + json.dumps([str(f) for f in files]) + "}"
    data = tiny(brain_dir, tmp_path / "run", source, "data.split.ratios=[1,0,0]").data
    dataset = build_dataset(data, "train")  # item 15: padded to 256 x 256, scored on 255 x 255
    assert dataset.extent(2) == (255, 255)
    result = runner.invoke(app, ["train", str(CONFIG), source, "data.split.ratios=[1,0,0]", "data.crop=[128,128]",
                                 f"trainer.out_dir={tmp_path / 'run'}", "trainer.progress_bar=false"])
    one_error_line(result, "sub0.nii.gz", "64x64", "smaller than the crop 128x128")
    assert not (tmp_path / "run").exists()


def test_nan_validation_output_names_the_step_and_gives_advice(brain_dir: Path, tmp_path: Path) -> None:
    config = tiny(brain_dir, tmp_path / "run", "model={name: test_reliability_nan_in_eval, scale: 2}",
                  "trainer.max_steps=2", "trainer.val_every_epochs=0")
    with pytest.raises(TrainingDivergedError) as info:
        train(config)
    message = str(info.value)
    assert "after step 2" in message and "NaN or infinite" in message and "brain_sub" in message
    assert "Lower optimizer.lr" in message and "\n" not in message


# ----------------------------------------------------------------------- 6: one rule for errors: stderr, exit 2


def test_user_errors_are_one_stderr_line_with_exit_code_2(checkpoint: Path, tmp_path: Path) -> None:
    taken = tmp_path / "eval"
    taken.mkdir()
    (taken / "metrics.csv").write_text("mine\n")
    one_error_line(runner.invoke(app, ["evaluate", str(checkpoint), "--out", str(taken)]), "already exists")
    assert (taken / "metrics.csv").read_text() == "mine\n"
    one_error_line(runner.invoke(app, ["evaluate", str(checkpoint), "--split", "nope", "--out",
                                       str(tmp_path / "e")]), "split must be one of")
    one_error_line(runner.invoke(app, ["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]),
                   "missing")
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("mine")
    one_error_line(runner.invoke(app, ["simulate", "--out", str(full), "--subjects", "1", "--size", "32"]),
                   "not empty")
    one_error_line(runner.invoke(app, ["physics-demo", "--size", "30", "--scale", "4"]), "scale")


# ------------------------------------------------------------------------------------ 13: validation switches


def test_epoch_validation_can_be_switched_off_with_null(brain_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    train(tiny(brain_dir, run_dir, "trainer.max_steps=4", "trainer.val_every_epochs=null",
               "trainer.val_every_steps=3"))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "val"] == [3, 4]  # by steps and at the end, not per epoch


# --------------------------------------------------------------------------------- 17: preemption and --resume auto


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_stop_signal_saves_and_resume_auto_is_bit_identical(brain_dir: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch, signum: int) -> None:
    options = ["model={name: test_reliability_signal_at, scale: 2}", "trainer.max_steps=5",
               "data.patch_size=[32, 32]"]  # random patches: the random state must resume exactly too
    handler = signal.getsignal(signum)
    monkeypatch.setattr(SignalAt, "AT", None)
    straight = train(tiny(brain_dir, tmp_path / "straight", *options))
    assert straight.stopped_by is None
    monkeypatch.setattr(SignalAt, "calls", 0)
    monkeypatch.setattr(SignalAt, "AT", 3)  # during step 3, mid-epoch (2 batches per epoch)
    monkeypatch.setattr(SignalAt, "SIGNAL", signum)
    split_dir = tmp_path / "split"
    stopped = train(tiny(brain_dir, split_dir, *options), resume="auto")  # nothing yet: starts the run
    assert (stopped.stopped_by, stopped.step) == (signal.Signals(signum).name, 3)
    assert load_checkpoint(split_dir / "last.pt")["step"] == 3
    assert signal.getsignal(signum) == handler  # the previous handler is back
    monkeypatch.setattr(SignalAt, "AT", None)
    resumed = train(tiny(brain_dir, split_dir, *options), resume="auto")
    assert (resumed.stopped_by, resumed.step) == (None, 5)
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(split_dir / "last.pt")
    assert all(torch.equal(value, b["model"][key]) for key, value in a["model"].items())
    logs = [[line for line in (run / "metrics.jsonl").read_text().splitlines()]
            for run in (tmp_path / "straight", split_dir)]
    assert logs[0] == logs[1]


def test_cli_exits_with_the_preemption_code_and_resume_auto_continues(brain_dir: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SignalAt, "calls", 0)
    monkeypatch.setattr(SignalAt, "AT", 2)
    argv = ["train", str(CONFIG), f"data.source.dir={brain_dir}", f"trainer.out_dir={tmp_path / 'run'}",
            "trainer.progress_bar=false", "model={name: test_reliability_signal_at, scale: 2}", "trainer.max_steps=3",
            "--resume", "auto"]
    result = runner.invoke(app, argv)
    assert result.exit_code == EXIT_PREEMPTED == 75, result.output
    assert "SIGTERM: stopped at step 2" in result.stderr
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 3


# ----------------------------------------------------------------------------------------------- 10: progress


def test_restore_and_evaluate_report_progress_unless_quiet(checkpoint: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import accelmri.engine.evaluate as evaluate_module
    import accelmri.engine.restore as restore_module

    shown: list[Progress] = []

    def recording(enabled: bool) -> Progress:
        shown.append(Progress(console=Console(file=io.StringIO(), force_terminal=True), disable=not enabled))
        return shown[-1]

    monkeypatch.setattr(restore_module, "progress_display", recording)
    monkeypatch.setattr(evaluate_module, "progress_display", recording)
    scans = [nifti(tmp_path / "a.nii.gz"), nifti(tmp_path / "b.nii.gz", (16, 12, 2))]
    restore(checkpoint, scans, tmp_path / "out", device="cpu", progress=True)
    (task,) = shown[-1].tasks
    assert (task.total, task.completed, shown[-1].disable) == (5, 5, False)
    evaluate_module.evaluate([checkpoint], tmp_path / "eval", device="cpu", progress=True)
    (task,) = shown[-1].tasks
    assert task.completed == task.total == 4  # the test subject's 4 slices
    result = runner.invoke(app, ["restore", str(checkpoint), str(scans[0]), "--out", str(tmp_path / "q"),
                                 "--quiet"])
    assert result.exit_code == 0 and shown[-1].disable  # --quiet (and a non-terminal stderr) turn it off


def test_simulate_reports_progress_unless_quiet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import accelmri.data.simulate as simulate_module

    shown: list[Progress] = []

    def recording(enabled: bool) -> Progress:
        shown.append(Progress(console=Console(file=io.StringIO(), force_terminal=True), disable=not enabled))
        return shown[-1]

    monkeypatch.setattr(simulate_module, "progress_display", recording)
    small = {"coils": 1, "size": 32, "slices": 1}
    simulate_module.simulate_dataset(tmp_path / "sim", ["T2"], subjects=2, progress=True, **small)
    (task,) = shown[-1].tasks
    assert (task.total, task.completed, shown[-1].disable) == (2, 2, False)  # one step per subject
    for flags in (["--quiet"], []):  # --quiet, and CliRunner's stderr is not a terminal
        out = tmp_path / f"cli{len(flags)}"
        result = runner.invoke(app, ["simulate", "--out", str(out), "--contrasts", "T2", "--subjects", "1",
                                     *(f"--{key}={value}" for key, value in small.items()), *flags])
        assert result.exit_code == 0 and shown[-1].disable, result.output


# ------------------------------------------------------------------------------------ 18: bounded open HDF5 files


def test_open_hdf5_files_per_process_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import h5py

    import accelmri.data.datasets as datasets

    monkeypatch.setattr(datasets, "MAX_OPEN_FILES", 3)
    paths = []
    for k in range(5):  # more files than the limit
        paths.append(tmp_path / f"vol{k}.h5")
        with h5py.File(paths[-1], "w") as file:
            file.create_dataset("kspace", data=np.full((2, 8, 8), k + 1, dtype=np.complex64))
    sources = [datasets.open_source(path) for path in paths]
    for source in sources:  # what every SliceDataset item reads
        for index in range(source.num_slices):
            source.kspace(index)
            assert sum(s.volume.is_open for s in sources) <= 3
    assert [source.volume.is_open for source in sources] == [False, False, True, True, True]  # least recent closed
    assert float(sources[0].kspace(1)[0, 0, 0].real) == 1.0  # a closed file is re-opened on its next read
    assert sum(source.volume.is_open for source in sources) == 3


# ------------------------------------------------------------------------------------------ 8: mixed DICOM series


def test_mixed_dicom_series_error_says_what_a_cli_user_can_do(checkpoint: Path, tmp_path: Path) -> None:
    from tests.dicom_utils import write_dicom_slice

    folder = tmp_path / "mixed"
    folder.mkdir()
    for uid in ("1.2.3.4", "1.2.3.5"):
        for index in range(2):
            pixels = np.full((16, 12), 100 * index + 10, dtype=np.int16)
            write_dicom_slice(folder / f"{uid}_{index}.dcm", pixels, (0.0, 0.0, 3.0 * index), uid)
    result = runner.invoke(app, ["restore", str(checkpoint), str(folder), "--out", str(tmp_path / "out")])
    line = one_error_line(result, str(folder), "2 series found", "1.2.3.4", "folder of its own")
    assert "choose one with series_uid" not in line


def test_series_uid_options_pick_one_series_of_a_mixed_dicom_folder(tmp_path: Path) -> None:
    import shutil

    from tests.dicom_utils import write_dicom_slice
    from tests.test_adapt import EDSR, make_checkpoint

    edsr = make_checkpoint(tmp_path / "edsr.pt", EDSR)
    mixed, alone = tmp_path / "mixed", tmp_path / "alone"
    mixed.mkdir()
    alone.mkdir()
    for index in range(2):  # two series interleaved in one folder
        for uid, level in (("1.2.3.4", 10), ("1.2.3.5", 500)):
            pixels = (np.arange(16 * 12).reshape(16, 12) % 7 + level + 100 * index).astype(np.int16)
            write_dicom_slice(mixed / f"{index}_{uid}.dcm", pixels, (0.0, 0.0, 3.0 * index), uid)
            if uid == "1.2.3.5":
                shutil.copy(mixed / f"{index}_{uid}.dcm", alone)
    base = ["restore", str(edsr), str(mixed), "--degrade", "--device", "cpu"]
    one_error_line(runner.invoke(app, [*base, "--out", str(tmp_path / "x.nii.gz")]), "--series-uid UID")
    result = runner.invoke(app, [*base, "--series-uid", "1.2.3.5", "--out", str(tmp_path / "picked.nii.gz")])
    assert result.exit_code == 0, result.output
    (expected,) = restore(edsr, [alone], tmp_path / "alone.nii.gz", degrade=True, device="cpu")
    np.testing.assert_allclose(nib.load(tmp_path / "picked.nii.gz").get_fdata(), nib.load(expected).get_fdata(),
                               rtol=1e-6, atol=1e-6)  # series 1.2.3.5, not 1.2.3.4
    with_reference = [*base, "--series-uid", "1.2.3.5", "--reference", str(mixed)]
    one_error_line(runner.invoke(app, [*with_reference, "--out", str(tmp_path / "r.nii.gz")]), str(mixed),
                   "2 series found")
    result = runner.invoke(app, [*with_reference, "--reference-series-uid", "1.2.3.4",
                                 "--out", str(tmp_path / "r.nii.gz")])
    assert result.exit_code == 0, result.output
    scan = nifti(tmp_path / "scan.nii.gz", (16, 12, 2))
    one_error_line(runner.invoke(app, ["restore", str(edsr), str(scan), "--series-uid", "1.2.3.5", "--out",
                                       str(tmp_path / "s.nii.gz")]), str(scan), "selects a series of a DICOM folder")


# ------------------------------------------------------------------------------------------- 14: help at 80 columns


@pytest.mark.parametrize("command", ["train", "evaluate", "restore", "report", "simulate", "realscan", "demo",
                                     "physics-demo"])
def test_help_wraps_at_80_columns_without_cutting_words(command: str) -> None:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "80", "TERMINAL_WIDTH": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    assert max(map(len, result.output.splitlines())) <= 80
    if command == "restore":
        assert "Reference-contrast file, one per input (reference-guided models)" in " ".join(result.output.split())
