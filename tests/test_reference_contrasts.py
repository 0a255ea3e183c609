"""A randomised reference contrast (``data.source.reference: [T1, PD, FLAIR]``): one digital-brain folder per
reference contrast, every target volume paired with each of them, the same misregistration for all."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
import torch

from accelmri.engine.build import DATASET_MARKER, brain_sources, build_dataset, digital_brain_dir, prepare_data
from accelmri.engine.config import ConfigError, DigitalBrainSource, load_config

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL = ["data.source.subjects=2", "data.source.size=32", "data.source.slices=2", "data.split.ratios=[1,0,1]",
         "data.source.realism=realistic"]


def test_a_list_of_references_is_one_single_reference_source_each(tmp_path: Path) -> None:
    brain = DigitalBrainSource(contrasts=("T2",), reference=("t1", "FLAIR"), dir=str(tmp_path))
    sources = brain_sources(brain)
    assert [s.reference for s in sources] == ["T1", "FLAIR"]
    assert [s.dir for s in sources] == [str(tmp_path / "T1"), str(tmp_path / "FLAIR")]
    # without dir: the cache folder of a source naming that reference alone (shared with such configs)
    cached = brain_sources(DigitalBrainSource(contrasts=("T2",), reference=("T1", "FLAIR")))
    assert digital_brain_dir(cached[1]) == digital_brain_dir(DigitalBrainSource(contrasts=("T2",), reference="FLAIR"))
    assert brain_sources(DigitalBrainSource(reference=("PD",)))[0].reference == "PD"  # a one-element list
    assert brain_sources(DigitalBrainSource())[0].reference is None
    with pytest.raises(ValueError, match="several reference contrasts"):
        digital_brain_dir(brain)


@pytest.mark.parametrize(("override", "problem"), [
    ("data.source.reference=[]", "empty list"),
    ("data.source.reference=[T2, FLAIR]", "distinct target contrasts other than the reference"),
    ("data.source.reference=[T1, t1]", "distinct"),
    ("data.source.reference=[T1, T3]", "T3"),
])
def test_bad_reference_lists_are_refused(override: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        load_config(CONFIGS / "tiny_sr_edsr.yaml", ["data.source.contrasts=[T2]", override])
    assert info.value.key.startswith("data.source")


def test_every_target_is_paired_with_each_reference_contrast(tmp_path: Path) -> None:
    folder = tmp_path / "brain"
    config = load_config(CONFIGS / "tiny_sr_edsr.yaml", [*SMALL, f"data.source.dir={folder}",
                                                         "data.source.contrasts=[T2]",
                                                         "data.source.reference=[T1, FLAIR]"])
    prepare_data(config.data)
    for name in ("T1", "FLAIR"):
        marker = json.loads((folder / name / DATASET_MARKER).read_text())
        assert marker["reference"] == name and marker["contrasts"] == ["T2"]
    single = load_config(CONFIGS / "tiny_sr_edsr.yaml", [*SMALL, f"data.source.dir={tmp_path / 'flair'}",
                                                         "data.source.contrasts=[T2]", "data.source.reference=FLAIR"])
    prepare_data(single.data)
    train = build_dataset(config.data, "train")
    alone = build_dataset(single.data, "train")
    assert len(train) == 2 * len(alone) == 2 * 2  # one training subject, 2 slices, 2 reference contrasts

    samples = [train[i] for i in range(len(train))]
    references = [s.reference for s in samples]
    assert all(r is not None for r in references)
    # the same targets, each with a T1 and a FLAIR reference (FLAIR darkens CSF: the two references differ)
    targets = sorted(samples, key=lambda s: float(s.target.sum()))
    assert torch.equal(targets[0].target, targets[1].target) and torch.equal(targets[2].target, targets[3].target)
    assert not torch.allclose(targets[0].reference, targets[1].reference, atol=0.05)
    # the FLAIR pairs are exactly those of the single-reference source (same files, same simulation)
    flair = [s for s in samples if any(torch.equal(s.reference, a.reference) for a in (alone[0], alone[1]))]
    assert len(flair) == 2

    # one reference session: every reference contrast of a subject carries the same misregistration
    t1_files, flair_files = folder / "T1" / "singlecoil", folder / "FLAIR" / "singlecoil"
    subject = next(p.name for p in t1_files.glob("*_T1.h5"))
    with h5py.File(t1_files / subject) as t1, h5py.File(flair_files / subject.replace("T1", "FLAIR")) as fl:
        for key in ("reference_shift_mm", "reference_rotation_deg", "reference_resample_offset_px"):
            assert json.dumps(t1.attrs[key].tolist()) == json.dumps(fl.attrs[key].tolist()), key
