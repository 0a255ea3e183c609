"""Models from other packages: the ``accelmri.models`` entry-point group (tests/plugin_example is such a package,
installed by putting it on ``sys.path``: its ``.dist-info`` declares the entry points)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from accelmri.engine.build import build_model
from accelmri.engine.config import ConfigError, load_config
from accelmri.engine.trainer import train
from accelmri.models import available, build, registry

pytestmark = pytest.mark.usefixtures("one_thread")

PLUGIN = Path(__file__).resolve().parent / "plugin_example"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example package "installed" for one test; what it registers is forgotten afterwards."""
    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))


def test_without_the_package_the_model_is_unknown() -> None:
    assert "plugin_nearest_sr" not in available()
    with pytest.raises(KeyError, match="unknown model 'plugin_nearest_sr'"):
        build("plugin_nearest_sr")


def test_a_plugin_model_builds_and_trains_through_the_engine(installed: None, tmp_path: Path) -> None:
    assert {"plugin_nearest_sr", "plugin_not_a_factory", "plugin_missing"} <= set(available())
    model = build("plugin_nearest_sr", scale=2, channels=2)
    assert type(model).__module__ == "accelmri_plugin_example"
    config = load_config(CONFIGS / "tiny_sr_edsr.yaml", [
        "model={name: plugin_nearest_sr, scale: 2, channels: 4}", f"trainer.out_dir={tmp_path / 'run'}",
        f"data.source.dir={tmp_path / 'brain'}", "trainer.max_steps=2", "trainer.progress_bar=false"])
    result = train(config)
    state = torch.load(result.last, weights_only=True)["model"]
    assert set(state) == {"body.0.weight", "body.0.bias", "body.2.weight", "body.2.bias"}


@pytest.mark.parametrize(("name", "problem"), [("plugin_not_a_factory", "neither a factory"),
                                               ("plugin_missing", "failed to import")])
def test_broken_plugins_are_named_in_the_error(installed: None, name: str, problem: str) -> None:
    config = load_config(CONFIGS / "tiny_sr_edsr.yaml", [f"model={{name: {name}, scale: 2}}"])
    with pytest.raises(ConfigError, match=problem) as info:
        build_model(config.model, 2)
    assert info.value.key == "model"
