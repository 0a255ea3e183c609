"""The paper configs composed from ``configs/bases/`` (``defaults:``): each parses to its paper's key facts, a copy
made by ``accelmri configs copy`` resolves the same outside the repository, every base is used, and no two
experiment configs of one model are near-copies any more (the shared settings live in the bases)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml

from accelmri.engine.catalog import copy_config, shipped_configs
from accelmri.engine.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
#: Every experiment config (configs/*.yaml; the bases and the real-scan specs excluded), raw YAML by name.
RAW = {path.stem: yaml.safe_load(path.read_text(encoding="utf-8")) for path in sorted(CONFIGS.glob("*.yaml"))}
COMPOSED = sorted(name for name, raw in RAW.items() if "defaults" in raw)

SR = "super_resolution"

#: Key facts of each composed config, as the flat files resolved before they were composed: model, scale (model and
#: acquisition), acceleration, task, source (csv / ixi / paths), split ratios, batch, optimiser, lr, loss preset,
#: max epochs (max steps for pgd_sft).
FACTS: dict[str, tuple[Any, ...]] = {
    "fasrnet_fastmri_2x": ("fasrnet", 2, 1.0, SR, "csv", (0.7, 0.1, 0.2), 4, "adam", 1.0e-5, "fasrnet", 60),
    "fasrnet_fastmri_4x": ("fasrnet", 4, 1.0, SR, "csv", (0.7, 0.1, 0.2), 4, "adam", 1.0e-5, "fasrnet", 60),
    "fasrnet_ixi_2x": ("fasrnet", 2, 1.0, SR, "ixi", (7, 1, 2), 4, "adam", 1.0e-5, "fasrnet", 60),
    "fasrnet_ixi_4x": ("fasrnet", 4, 1.0, SR, "ixi", (7, 1, 2), 4, "adam", 1.0e-5, "fasrnet", 60),
    "minet_fastmri_2x": ("minet", 2, 1.0, SR, "csv", (0.7, 0.1, 0.2), 4, "adam", 1.0e-5, "minet", 50),
    "minet_fastmri_2x_refcode": ("minet", 2, 1.0, SR, "csv", (0.7, 0.1, 0.2), 4, "rmsprop", 1.0e-5, "minet", 35),
    "minet_fastmri_4x": ("minet", 4, 1.0, SR, "csv", (0.7, 0.1, 0.2), 4, "adam", 1.0e-5, "minet", 50),
    "minet_sms_2x": ("minet", 2, 1.0, SR, "paths", (7, 1, 2), 4, "adam", 1.0e-5, "minet", 50),
    "minet_sms_4x": ("minet", 4, 1.0, SR, "paths", (7, 1, 2), 4, "adam", 1.0e-5, "minet", 50),
    "minet_umr_2x": ("minet", 2, 1.0, SR, "paths", (7, 1, 2), 4, "adam", 1.0e-5, "minet", 50),
    "minet_umr_4x": ("minet", 4, 1.0, SR, "paths", (7, 1, 2), 4, "adam", 1.0e-5, "minet", 50),
    "pgd_sft_brain_2x": ("pgd_sft", 2, 2.5, "joint", "paths", (0.84, 0.08, 0.08), 4, "adam", 1.0e-4, "pgd_sft", 400000),
    "pgd_sft_vwi_2x": ("pgd_sft", 2, 4.0, "joint", "paths", (2, 1, 1), 4, "adam", 1.0e-4, "pgd_sft", 400000),
    "sanet_fastmri_2x": ("sanet", 2, 1.0, SR, "csv", (0.7, 0.1, 0.2), 4, "adam", 1.0e-5, "sanet", 50),
    "sanet_fastmri_2x_refcode": ("sanet", 2, 1.0, SR, "csv", (0.7, 0.1, 0.2), 4, "adam", 1.0e-5, "minet", 50),
    "sanet_fastmri_4x": ("sanet", 4, 1.0, SR, "csv", (0.7, 0.1, 0.2), 4, "adam", 1.0e-5, "sanet", 50),
    "sanet_sms_2x": ("sanet", 2, 1.0, SR, "paths", (7, 1, 2), 4, "adam", 1.0e-5, "sanet", 50),
    "sanet_sms_4x": ("sanet", 4, 1.0, SR, "paths", (7, 1, 2), 4, "adam", 1.0e-5, "sanet", 50),
    "sanet_umr_2x": ("sanet", 2, 1.0, SR, "paths", (7, 1, 2), 4, "adam", 1.0e-5, "sanet", 50),
    "sanet_umr_4x": ("sanet", 4, 1.0, SR, "paths", (7, 1, 2), 4, "adam", 1.0e-5, "sanet", 50),
    "t2net_ixi_2x": ("t2net", 2, 3.0, "joint", "ixi", (7, 1, 2), 4, "adam", 5.0e-5, "t2net", 50),
    "t2net_ixi_2x_refcode": ("t2net", 2, 3.37, "joint", "ixi", (7, 1, 2), 4, "rmsprop", 5.0e-5, "t2net_refcode", 50),
    "t2net_ixi_4x": ("t2net", 4, 1.5, "joint", "ixi", (7, 1, 2), 4, "adam", 5.0e-5, "t2net", 50),
    "t2net_sms_2x": ("t2net", 2, 3.0, "joint", "paths", (7, 1, 2), 4, "adam", 5.0e-5, "t2net", 50),
    "t2net_sms_4x": ("t2net", 4, 1.5, "joint", "paths", (7, 1, 2), 4, "adam", 5.0e-5, "t2net", 50),
}

#: Two experiment configs of one model share fewer than this many non-trivial lines (measured: at most 3 since the
#: bases; the flat near-copies they replaced shared 14 to 25, e.g. pgd_sft_brain_2x / pgd_sft_vwi_2x 25).
NEAR_COPY_LINES = 6


def _facts(name: str) -> tuple[Any, ...]:
    config = load_config(CONFIGS / f"{name}.yaml").to_dict()
    data, source, trainer = config["data"], config["data"]["source"], config["trainer"]
    assert config["model"]["scale"] == data["acquisition"]["scale"], name
    kind = "csv" if source["csv"] else "ixi" if source["ixi"] else "paths"
    length = trainer["max_epochs"] if trainer["max_steps"] is None else trainer["max_steps"]
    return (config["model"]["name"], config["model"]["scale"], data["acquisition"]["acceleration"], data["task"], kind,
            tuple(data["split"]["ratios"]), data["batch_size"], config["optimizer"]["name"], config["optimizer"]["lr"],
            config["loss"]["preset"], length)


def test_the_facts_table_covers_every_composed_config() -> None:
    assert sorted(FACTS) == COMPOSED


@pytest.mark.parametrize("name", COMPOSED)
def test_a_composed_config_parses_to_its_facts(name: str) -> None:
    assert RAW[name]["name"] == name and RAW[name]["description"], name  # configs list reads both from the file
    assert _facts(name) == FACTS[name]


@pytest.mark.parametrize("name", COMPOSED)
def test_a_copied_composed_config_resolves_as_the_shipped_one(name: str, tmp_path: Path) -> None:
    """``configs copy`` writes the file alone; outside the repository its (nested) bases come from the package."""
    copy = copy_config(name, tmp_path)
    assert copy == tmp_path / f"{name}.yaml" and not (tmp_path / "bases").exists()
    assert load_config(copy).to_dict() == load_config(CONFIGS / f"{name}.yaml").to_dict()


def test_every_base_is_used_and_not_listed() -> None:
    bases = {f"bases/{path.stem}" for path in (CONFIGS / "bases").glob("*.yaml")}
    used = {name for raw in RAW.values() for name in raw.get("defaults", [])}
    for base in sorted(bases):  # a base's own defaults name bases beside it
        raw = yaml.safe_load((CONFIGS / f"{base}.yaml").read_text(encoding="utf-8"))
        used |= {f"bases/{name}" for name in raw.get("defaults", [])}
    assert used == bases
    assert not any(name.startswith("bases") for name in shipped_configs())


def _lines(name: str) -> set[str]:
    """The non-trivial lines of a config file: comments, blank lines, section headers and ``defaults:`` left out."""
    lines = set()
    for line in (CONFIGS / f"{name}.yaml").read_text(encoding="utf-8").splitlines():
        text = "" if line.lstrip().startswith("#") else line.split(" #")[0].strip()
        if text and not text.endswith(":") and not text.startswith("defaults:"):
            lines.add(text)
    return lines


def test_no_two_configs_of_one_model_are_near_copies() -> None:
    model = {name: load_config(CONFIGS / f"{name}.yaml").model.name for name in RAW}
    shared = {(a, b): len(_lines(a) & _lines(b)) for a, b in itertools.combinations(RAW, 2) if model[a] == model[b]}
    assert len(shared) > 40
    near_copies = {pair: count for pair, count in shared.items() if count >= NEAR_COPY_LINES}
    assert not near_copies, f"compose them from a base in configs/bases/: {near_copies}"
