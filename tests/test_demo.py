"""The demo's protocol: equal budgets, several training seeds, seed statistics, claims, results.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from accelmri.engine.demo import EXPERIMENTS, demo_configs, run_demo, summarize


def test_every_learned_model_of_an_experiment_gets_the_same_budget_and_patches(tmp_path: Path) -> None:
    configs = demo_configs(tmp_path, steps=40, seeds=3, ablations=True)
    for experiment, methods in configs.items():
        learned = {label: runs for label, runs in methods.items() if label not in EXPERIMENTS[experiment]["baselines"]}
        assert set(learned) == set(EXPERIMENTS[experiment]["models"])  # ablations included
        budget = round(40 * EXPERIMENTS[experiment]["step_fraction"])
        for label, runs in learned.items():
            assert [run["trainer"]["seed"] for run in runs] == [0, 1, 2]
            assert len({run["trainer"]["out_dir"] for run in runs}) == 3
            for run in runs:
                assert run["trainer"]["max_steps"] == budget, label
                assert run["data"].get("patch_size") == EXPERIMENTS[experiment]["data"].get("patch_size"), label
                lr = EXPERIMENTS[experiment]["models"][label].get("config", {}).get("optimizer", {}).get("lr", 1e-3)
                assert run["optimizer"] == {"name": "adam", "lr": lr}, label
                assert run["scheduler"]["milestones"] == [round(budget / 2), round(budget * 3 / 4)], label
        for label in EXPERIMENTS[experiment]["baselines"]:
            assert len(methods[label]) == 1
    quick = demo_configs(tmp_path, steps=40)
    assert not any(label.endswith(("_no_integration", "_no_rec", "_no_htt", "_no_sft")) for m in quick.values()
                   for label in m)
    assert quick["joint2x"]["perfect_rec_sinc"][0]["data"]["acquisition"]["acceleration"] == 1.0
    assert quick["joint2x"]["t2net"][0]["data"]["acquisition"]["acceleration"] == 4.0
    with pytest.raises(ValueError, match="seeds"):
        demo_configs(tmp_path, steps=40, seeds=0)


def test_summarize_gives_seed_statistics_and_paired_tests_over_seed_volume_pairs() -> None:
    volumes = ("a.h5", "b.h5", "c.h5")

    def scored(psnrs: list[float]) -> dict[str, dict[str, float]]:
        return {v: {"psnr": p, "ssim": 0.9, "nmse": 0.01} for v, p in zip(volumes, psnrs, strict=True)}

    model = [scored([30.0, 31.0, 32.0]), scored([31.0, 32.5, 33.0])]  # two seeds
    baseline = [scored([30.5, 30.5, 31.0])]  # deterministic: one entry for every seed
    summary = summarize({"model": model, "baseline": baseline}, [("model", "baseline"), ("model", "absent")],
                        {"model": [12.0, 14.0]})
    row = summary["methods"]["model"]
    assert row["seeds"] == 2 and row["train_s"] == [12.0, 14.0]
    assert row["per_seed"][0]["psnr"] == pytest.approx(31.0) and row["per_seed"][1]["psnr"] == pytest.approx(32.1666667)
    assert row["mean"]["psnr"] == pytest.approx(np.mean([31.0, 32.1666667]))
    assert row["std"]["psnr"] == pytest.approx(np.std([31.0, 32.1666667], ddof=1))
    assert math.isnan(summary["methods"]["baseline"]["std"]["psnr"])
    [claim] = summary["claims"]  # the claim naming an absent method is skipped
    a = [30.0, 31.0, 32.0, 31.0, 32.5, 33.0]
    b = [30.5, 30.5, 31.0] * 2
    expected = stats.ttest_rel(a, b)
    assert claim["pairs"] == 6 and claim["holds"]
    assert claim["mean_difference"] == pytest.approx(np.mean(np.subtract(a, b)))
    assert claim["pvalue"] == pytest.approx(expected.pvalue)


def test_run_demo_trains_every_seed_and_writes_seed_statistics(tmp_path: Path) -> None:
    source = {"kind": "digital_brain", "dir": str(tmp_path / "brain"), "coils": 1, "subjects": 3, "size": 32,
              "slices": 2, "noise_std": 0.005, "seed": 0, "contrasts": ["T2"], "reference": "FLAIR"}
    tiny: dict[str, dict[str, Any]] = {
        "sr": {
            "title": "tiny SR",
            "data": {"source": source, "task": "super_resolution", "acquisition": {"scale": 2},
                     "split": {"ratios": [1, 1, 1]}, "batch_size": 2},
            "validations": 1,
            "lr_drops": (0.5,),
            "baselines": {"bicubic": {"model": "bicubic"}, "sinc": {"model": "sinc"}},
            "models": {
                "edsr": {"model": "edsr", "kwargs": {"channels": 8, "n_blocks": 1}, "loss": {"l1": 1.0}},
                "minet": {"model": "minet", "kwargs": {"channels": 8, "n_groups": 1, "n_blocks": 1, "reduction": 2},
                          "loss": "minet"},
                "minet_no_integration": {"model": "minet", "kwargs": {"channels": 8, "n_groups": 1, "n_blocks": 1,
                                                                      "reduction": 2, "use_integration": False},
                                         "loss": "minet", "ablation": True},
            },
            "claims": [("minet", "edsr"), ("edsr", "sinc"), ("sinc", "bicubic"), ("minet", "minet_no_integration")],
        }
    }
    out = tmp_path / "demo"
    results = run_demo(out, steps=2, seeds=2, log=lambda _: None, experiments=tiny)
    payload = json.loads((out / "results.json").read_text())
    assert payload["steps"] == 2 and payload["seeds"] == 2 and not payload["ablations"]
    experiment = payload["experiments"]["sr"]
    assert set(experiment["methods"]) == {"bicubic", "sinc", "edsr", "minet"}  # no ablation without ablations=True
    for learned in ("edsr", "minet"):
        row = experiment["methods"][learned]
        assert row["seeds"] == 2 and len(row["per_seed"]) == 2 and len(row["train_s"]) == 2
        assert all(t > 0 for t in row["train_s"])
        assert row["per_seed"][0]["psnr"] != row["per_seed"][1]["psnr"]  # the seeds train different models
        assert (out / "runs" / f"sr_{learned}_seed1" / "last.pt").is_file()
    assert experiment["methods"]["sinc"]["seeds"] == 1
    assert [(c["a"], c["b"]) for c in experiment["claims"]] == [("minet", "edsr"), ("edsr", "sinc"),
                                                                 ("sinc", "bicubic")]
    assert experiment["claims"][0]["pairs"] == 2  # 2 seeds × 1 test volume
    text = results.read_text()
    assert "2 training seeds" in text and "| minet > edsr | 2 |" in text
    assert (out / "report" / "report.html").is_file()
    with pytest.raises(FileExistsError):
        run_demo(out, steps=2, log=lambda _: None, experiments=tiny)
    with pytest.raises(ValueError, match="unknown experiment joint"):
        run_demo(tmp_path / "other", steps=2, log=lambda _: None, experiments=tiny, only=["joint"])
    assert not (tmp_path / "other").exists()
