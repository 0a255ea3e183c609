"""W&B and MLflow as training loggers, with the real packages (dev dependencies: wandb offline, mlflow-skinny with
its SQLite store): scalars, validation images and the resolved config reach each, inside the run folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from accelmri.engine.config import ConfigError
from accelmri.engine.trainer import train
from tests.engine_utils import tiny

pytest.importorskip("wandb", reason="wandb is a dev dependency (pip install -e '.[dev]')")
pytest.importorskip("mlflow", reason="mlflow-skinny is a dev dependency (pip install -e '.[dev]')")


@pytest.fixture
def offline_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B without network, account or files outside ``tmp_path``."""
    for name in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.mark.usefixtures("offline_wandb")
def test_wandb_and_mlflow_receive_scalars_images_and_config(brain_dir: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    run = tmp_path / "run"
    result = train(tiny(brain_dir, run, "trainer.loggers=[csv, wandb, mlflow]"))
    assert result.step == 4 and (run / "last.pt").is_file()

    # MLflow: its SQLite store and artifacts in the run folder (MLflow ≥ 3 refuses the old ./mlruns file store)
    client = MlflowClient(f"sqlite:///{run / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny_sr_edsr")
    assert experiment is not None
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.status == "FINISHED"
    history = client.get_metric_history(logged.info.run_id, "val/psnr")
    assert [m.step for m in history] == [2, 4] and all(10 < m.value < 60 for m in history)
    assert {"train/loss", "val/ssim", "val/nmse"} <= set(logged.data.metrics)
    assert logged.data.params["model.name"] == "edsr" and logged.data.params["data.acquisition.scale"] == "2"
    images = client.list_artifacts(logged.info.run_id, "val/images")
    assert len(images) == 1 and images[0].path.endswith("_slice2")
    pngs = list((run / "mlflow-artifacts").rglob("*.png"))
    assert sorted(p.name for p in pngs) == ["step_00000002.png", "step_00000004.png"]

    # W&B (offline): the run is finished (a next run in this process gets its own), its record holds the metrics
    # and the config; the images are files of the run
    import wandb

    assert wandb.run is None
    (offline,) = (run / "wandb").glob("offline-run-*")
    record = next(offline.glob("run-*.wandb")).read_bytes()
    for key in (b"val/psnr", b"train/loss", b"data.acquisition.scale"):
        assert key in record, key
    media = list((offline / "files" / "media" / "images").rglob("*.png"))
    assert len(media) == 2 and all("_slice2_" in p.name for p in media)


@pytest.mark.usefixtures("offline_wandb")
def test_a_run_folder_holding_only_an_mlflow_store_starts_fresh(brain_dir: Path, tmp_path: Path) -> None:
    """MLflow opens its store when its logger is built, before the run folder is checked: a folder holding only
    that store (a start killed before its first checkpoint) starts a new run; with a user's file beside it, it is
    still refused and nothing is touched."""
    import shutil

    run = tmp_path / "run"
    train(tiny(brain_dir, run, "trainer.loggers=[mlflow]", "trainer.max_steps=2"))
    for path in run.iterdir():
        if path.name not in ("mlflow.db", "mlflow-artifacts"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert train(tiny(brain_dir, run, "trainer.loggers=[mlflow]", "trainer.max_steps=2")).step == 2
    for path in run.iterdir():
        if path.name not in ("mlflow.db", "mlflow-artifacts"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    (run / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        train(tiny(brain_dir, run, "trainer.loggers=[mlflow]", "trainer.max_steps=2"))
    assert (run / "notes.txt").read_text() == "mine"
