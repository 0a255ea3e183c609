"""Real data through the dataset: TCGA clinical NIfTI pairs and the Pulseq 16-coil raw k-space (../shared/data)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from accelmri.data.datasets import SliceDataset, open_pair, open_source
from accelmri.data.pairing import ContrastPair
from accelmri.data.sample import collate
from accelmri.physics.degrade import Acquisition
from tests.conftest import SHARED_DATA

TCGA = SHARED_DATA / "tcga_fg_6692"
PULSEQ = SHARED_DATA / "pulseq_invivo_brain" / "2024-02-06-164128_invivo_localcoil16.dat"


def tcga(name: str) -> Path:
    if not TCGA.is_dir():
        pytest.skip(f"{TCGA} not found: real-data tests need ../shared/data beside the repository")
    return next(TCGA.glob(f"*{name}.nii.gz"))


def pair(target: str, reference: str) -> ContrastPair:
    return ContrastPair(tcga(target), tcga(reference), "TCGA-FG-6692", target, reference, "world")


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize(("target", "reference"), [("t2", "flair"), ("t1", "t1c")])
def test_tcga_reference_guided_super_resolution(scale: int, target: str, reference: str) -> None:
    target_source, reference_source = open_pair(pair(target, reference))
    dataset = SliceDataset([target_source], "super_resolution", Acquisition(scale=scale),
                           references=[reference_source])
    assert len(dataset) == 26
    sample = dataset[13]
    h, w = target_source.volume.data.shape[1:]
    assert sample.target.shape == (1, h, w)
    assert sample.lr_input.shape == (1, h // scale, w // scale)
    assert sample.reference is not None and sample.reference.shape == (1, h, w)  # on the target grid
    # Original units come back exactly: the HR target is the stored magnitude slice.
    original = torch.from_numpy(target_source.volume.data[13])
    restored = sample.denormalize(sample.target)[0]
    assert torch.allclose(restored, original, atol=1e-3 * float(original.max()))
    # LR and HR share one intensity scale (k-space truncation compensated by 1/s).
    assert 0.9 < float(sample.lr_target.mean() / sample.target.mean()) < 1.1


def test_tcga_joint_task_batches() -> None:
    target_source, reference_source = open_pair(pair("t2", "flair"))
    acquisition = Acquisition("equispaced", acceleration=4, center_fraction=0.08, scale=2)
    dataset = SliceDataset([target_source], "joint", acquisition, references=[reference_source])
    batch = collate([dataset[10], dataset[11]])
    assert batch.kspace.shape == (2, 1, 112, 128) and batch.mask.shape == (2, 1, 112, 128)
    assert batch.reference is not None and batch.reference.shape == (2, 1, 224, 256)
    acceleration = batch.meta["acceleration"][0]
    assert abs(acceleration - 4) / 4 <= 0.05


def test_tcga_cross_grid_reference_is_resampled() -> None:
    target_source, reference_source = open_pair(pair("t2", "t1"))  # T1 lives on a different (256×224) grid
    assert reference_source.volume.data.shape == target_source.volume.data.shape
    assert reference_source.volume.attrs["overlap"] > 0.5
    dataset = SliceDataset([target_source], "super_resolution", Acquisition(scale=2), references=[reference_source])
    sample = dataset[13]
    assert sample.reference is not None and sample.reference.shape == sample.target.shape


def test_pulseq_multicoil_joint_sample() -> None:
    if not PULSEQ.exists():
        pytest.skip(f"{PULSEQ} not found: real-data tests need ../shared/data beside the repository")
    pytest.importorskip("twixtools", reason="twixtools reads Siemens raw data (accelmri[twix])")
    source = open_source(PULSEQ, subject="pulseq-invivo")
    acquisition = Acquisition("equispaced", acceleration=2, center_fraction=0.25, scale=2)
    sample = SliceDataset([source], "joint", acquisition, sens_maps="espirit")[0]
    assert sample.target.shape == (1, 128, 128)
    assert sample.kspace.shape == (16, 64, 64) and sample.kspace.dtype == torch.complex64
    assert sample.sens_maps is not None and sample.sens_maps.shape == (16, 64, 64)
    coverage = (sample.sens_maps.abs() ** 2).sum(dim=0)
    kept = coverage > 0
    assert torch.allclose(coverage[kept], torch.ones_like(coverage[kept]), atol=1e-4)
    assert kept.float().mean() > 0.3  # the head
