"""Contrast metadata: the normaliser, what checkpoints record, and ``restore``'s warning when the inputs differ."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from accelmri.cli import app
from accelmri.data.readers import write_fastmri, write_nifti
from accelmri.engine.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from accelmri.engine.contrast import (
    CANONICAL_CONTRASTS,
    file_contrast,
    normalize_contrast,
    trained_contrasts,
    volume_contrast,
)
from accelmri.engine.restore import ContrastMismatchWarning, restore
from accelmri.physics.fft import fft2c
from tests.dicom_utils import write_dicom_slice
from tests.test_adapt import AFFINE, EDSR, make_checkpoint, phantom_volume

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()

FUSION = {"name": "early_fusion", "scale": 2, "channels": 8, "n_blocks": 1}
BRAIN_FLAIR_REFERENCE = {"kind": "digital_brain", "contrasts": ["T2"], "reference": "FLAIR", "size": 64}


# ------------------------------------------------------------------------------------------------ normaliser


@pytest.mark.parametrize(("name", "expected"), [
    ("t2", "T2"), ("T2w", "T2"), ("T2_TSE", "T2"), ("t2_tse", "T2"), ("AXT2", "T2"), ("t2_tse_fs", "T2"),
    ("FLAIR", "FLAIR"), ("t2_flair", "FLAIR"), ("tir2d_flair", "FLAIR"), ("AXFLAIR", "FLAIR"), ("T2FLAIR", "FLAIR"),
    ("T1_FLAIR", "T1"),
    ("T1", "T1"), ("T1w", "T1"), ("t1_se", "T1"), ("AXT1", "T1"), ("AXT1PRE", "T1"), ("MPRAGE", "T1"),
    ("T1c", "T1CE"), ("T1CE", "T1CE"), ("t1ce", "T1CE"), ("T1Gd", "T1CE"), ("post-gad", "T1CE"), ("AXT1POST", "T1CE"),
    ("T1+C", "T1CE"), ("T1_AX_POSTGAD_SE", "T1CE"), ("sub-01_ce-gadolinium_T1w", "T1CE"),
    ("PD", "PD"), ("PDw", "PD"), ("CORPD_FBK", "PD"),
    ("PDFS", "PDFS"), ("PD_FS", "PDFS"), ("pd-fs", "PDFS"), ("CORPDFS_FBK", "PDFS"), ("PDw_SPAIR", "PDFS"),
    ("TCGA-FG-6692_FLAIR_AX_tir2d_flair", "FLAIR"), ("TCGA-FG-6692_T1_AX_POSTGAD_SE_t1c", "T1CE"),
    ("TCGA-FG-6692_T2_AX_TSE_t2", "T2"), ("IXI012-HH-1211-T1", "T1"), ("sub-01_FLAIR", "FLAIR"), ("x_t1", "T1"),
    # unknown: no contrast named, two different ones, T2*-weighted, or not a string
    ("scan", None), ("file1000", None), ("IXI012-HH-1211-MRA", None), ("DWI", None), ("T1_T2", None),
    ("T2star", None), ("T2*", None), ("sub-01_T2starw", None), ("SWI", None), ("scan_c", None), ("", None),
    (None, None), (3, None),
])
def test_normalize_contrast(name: object, expected: str | None) -> None:
    assert normalize_contrast(name) == expected  # type: ignore[arg-type]
    assert expected is None or expected in CANONICAL_CONTRASTS


def test_volume_contrast_reads_metadata_before_the_name(tmp_path: Path) -> None:
    assert volume_contrast("scan_t1.nii.gz", "T2") == "T2"  # what the reader recorded wins
    assert volume_contrast("file1000.h5", None, {"acquisition": "CORPDFS_FBK"}) == "PDFS"
    assert volume_contrast("series", None, {"series_description": "t2_tse_tra"}) == "T2"
    assert volume_contrast("sub-01_T2w.nii.gz", "unknown", {"acquisition": "?"}) == "T2"
    assert volume_contrast(tmp_path / "scan.nii.gz") is None
    h5 = write_fastmri(tmp_path / "file1000.h5", np.ones((1, 1, 8, 8), np.complex64), attrs={"acquisition": "AXFLAIR"})
    assert file_contrast(h5) == "FLAIR"
    assert file_contrast(tmp_path / "missing_t1.nii.gz") == "T1"


def test_trained_contrasts_of_each_data_source(tmp_path: Path) -> None:
    def of(source: dict[str, object]) -> tuple[object, object, object]:
        found = trained_contrasts({"data": {"source": source}})
        return found["target_contrasts"], found["reference_contrast"], found["reference_contrasts"]

    assert of({"kind": "digital_brain", "contrasts": ["t2", "flair"], "reference": "t1"}) == (["T2", "FLAIR"], "T1",
                                                                                             ["T1"])
    assert of({"kind": "digital_brain", "contrasts": ["T2"], "reference": None}) == (["T2"], None, None)
    # a randomised reference: every listed contrast, no single one
    assert of({"kind": "digital_brain", "contrasts": ["T2"], "reference": ["t1", "PD", "flair"]}) == (
        ["T2"], None, ["T1", "PD", "FLAIR"])
    assert of({"kind": "files", "csv": "pairs.csv", "use_reference": True}) == (["PDFS"], "PD", ["PD"])
    assert of({"kind": "files", "ixi": "ixi/", "ixi_target": "T2", "ixi_reference": "PD",
               "use_reference": False}) == (["T2"], None, None)
    paths = [{"target": "a_T2w.nii.gz", "reference": "a_FLAIR.nii.gz"},
             {"target": "b_t2.nii.gz", "reference": "b_flair.nii.gz"}]
    assert of({"kind": "files", "paths": paths}) == (["T2"], "FLAIR", ["FLAIR"])
    unknown = [*paths, {"target": "c.nii.gz", "reference": "c_pd.nii.gz"}]  # an unknown target; two references
    assert of({"kind": "files", "paths": unknown}) == (None, None, ["FLAIR", "PD"])
    assert trained_contrasts(None) == {"target_contrasts": None, "reference_contrast": None,
                                       "reference_contrasts": None}


def test_checkpoints_record_contrasts_and_old_ones_still_load(tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "fusion.pt", FUSION, source=BRAIN_FLAIR_REFERENCE)
    payload = load_checkpoint(checkpoint)
    assert payload["target_contrasts"] == ["T2"] and payload["reference_contrast"] == "FLAIR"
    explicit = save_checkpoint(tmp_path / "explicit.pt", {**payload, "target_contrasts": ["PD"]})
    assert load_checkpoint(explicit)["target_contrasts"] == ["PD"]  # the payload's own value wins
    assert load_checkpoint(checkpoint, mmap=True)["reference_contrast"] == "FLAIR"


# ---------------------------------------------------------------------------------------------------- restore


def _old(checkpoint: Path) -> Path:
    """The checkpoint as written before the contrast fields existed."""
    payload = load_checkpoint(checkpoint)
    del payload["target_contrasts"], payload["reference_contrast"], payload["reference_contrasts"]
    old = checkpoint.with_name(f"old_{checkpoint.name}")
    torch.save(payload, old)
    assert payload["format"] == CHECKPOINT_FORMAT
    return old


def _restore_quietly(*args: object, **kwargs: object) -> Path:
    """``restore`` that fails on any warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (written,) = restore(*args, **kwargs)  # type: ignore[arg-type]
    return written


def test_restore_warns_when_the_input_contrast_differs(tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "edsr.pt", EDSR)  # digital brain, T2 target
    volume = phantom_volume(1, 16)
    t1 = write_nifti(tmp_path / "x_t1.nii.gz", volume, AFFINE)
    with pytest.warns(ContrastMismatchWarning) as record:
        restore(checkpoint, [t1], tmp_path / "out1")
    assert len(record) == 1
    assert str(record[0].message) == (f"{t1}: contrast T1 differs from the T2 this checkpoint was trained with; the "
                                      "output may take on the trained contrast")
    # Same contrast, unknown contrast, or the caller says it is T2: no warning.
    _restore_quietly(checkpoint, [write_nifti(tmp_path / "sub-01_T2w.nii.gz", volume, AFFINE)], tmp_path / "out2")
    unknown = write_nifti(tmp_path / "scan.nii.gz", volume, AFFINE)
    _restore_quietly(checkpoint, [unknown], tmp_path / "out3")
    _restore_quietly(checkpoint, [t1], tmp_path / "out4", contrast="t2_tse")
    with pytest.warns(ContrastMismatchWarning, match="scan.nii.gz: contrast FLAIR differs from the T2"):
        restore(checkpoint, [unknown], tmp_path / "out5", contrast="tir2d_flair")
    # fastMRI `acquisition` and DICOM SeriesDescription are read.
    kspace = fft2c(torch.from_numpy(volume[:, None].astype(np.complex64))).numpy()
    h5 = write_fastmri(tmp_path / "file1000.h5", kspace, attrs={"acquisition": "AXFLAIR"})
    folder = tmp_path / "series"
    folder.mkdir()
    write_dicom_slice(folder / "im0.dcm", np.round(100 * volume[0]).astype(np.uint16), (0.0, 0.0, 0.0), "1.2.3",
                      slope=1.0, intercept=0.0, signed=False, description="T1_AX_POSTGAD_SE")
    with pytest.warns(ContrastMismatchWarning) as record:
        restore(checkpoint, [h5, folder], tmp_path / "out6")
    assert [str(w.message).split(" differs")[0] for w in record] == [f"{h5}: contrast FLAIR",
                                                                     f"{folder}: contrast T1CE"]
    # Checkpoints without the record, and YAML configs of parameter-free models: no warning.
    _restore_quietly(_old(checkpoint), [t1], tmp_path / "out7")
    sinc = tmp_path / "sinc.yaml"
    sinc.write_text(yaml.safe_dump(load_checkpoint(make_checkpoint(tmp_path / "sinc.pt",
                                                                   {"name": "sinc", "scale": 2}))["config"]))
    _restore_quietly(sinc, [t1], tmp_path / "out8")


def test_restore_warns_when_the_reference_contrast_differs(tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "fusion.pt", FUSION, source=BRAIN_FLAIR_REFERENCE)
    volume = phantom_volume(1, 16)
    target = write_nifti(tmp_path / "t2.nii.gz", volume, AFFINE)
    t1 = write_nifti(tmp_path / "x_t1.nii.gz", volume.max() - volume, AFFINE)
    with pytest.warns(ContrastMismatchWarning) as record:
        restore(checkpoint, [target], tmp_path / "out1.nii.gz", reference=t1, degrade=True)
    assert len(record) == 1
    assert str(record[0].message) == (f"{t1}: reference contrast T1 differs from the FLAIR this checkpoint was "
                                      "trained with; guidance may transfer contrast")
    _restore_quietly(checkpoint, [target], tmp_path / "out2.nii.gz", reference=t1, degrade=True,
                     reference_contrast="FLAIR")
    flair = write_nifti(tmp_path / "sub-01_FLAIR.nii.gz", volume.max() - volume, AFFINE)
    _restore_quietly(checkpoint, [target], tmp_path / "out3.nii.gz", reference=flair, degrade=True)
    # Both differ: one warning naming both files.
    with pytest.warns(ContrastMismatchWarning) as record:
        restore(checkpoint, [target], tmp_path / "out4.nii.gz", reference=t1, degrade=True, contrast="PD")
    assert len(record) == 1
    message = str(record[0].message)
    assert f"{target}: contrast PD differs from the T2" in message and f"{t1}: reference contrast T1" in message
    _restore_quietly(_old(checkpoint), [target], tmp_path / "out5.nii.gz", reference=t1, degrade=True)

    # Written before the list existed (reference_contrast only): the single contrast still counts.
    payload = load_checkpoint(checkpoint)
    del payload["reference_contrasts"]
    single = tmp_path / "single.pt"
    torch.save(payload, single)
    with pytest.warns(ContrastMismatchWarning, match="differs from the FLAIR this"):
        restore(single, [target], tmp_path / "out6.nii.gz", reference=t1, degrade=True)


def test_a_randomised_reference_checkpoint_accepts_each_of_its_contrasts(tmp_path: Path) -> None:
    source = {**BRAIN_FLAIR_REFERENCE, "reference": ["T1", "FLAIR"]}
    checkpoint = make_checkpoint(tmp_path / "fusion.pt", FUSION, source=source)
    payload = load_checkpoint(checkpoint)
    assert (payload["reference_contrast"], payload["reference_contrasts"]) == (None, ["T1", "FLAIR"])
    volume = phantom_volume(1, 16)
    target = write_nifti(tmp_path / "t2.nii.gz", volume, AFFINE)
    for name in ("x_t1", "sub-01_FLAIR"):
        guide = write_nifti(tmp_path / f"{name}.nii.gz", volume.max() - volume, AFFINE)
        _restore_quietly(checkpoint, [target], tmp_path / f"{name}_out.nii.gz", reference=guide, degrade=True)
    pd = write_nifti(tmp_path / "x_pd.nii.gz", volume.max() - volume, AFFINE)
    with pytest.warns(ContrastMismatchWarning, match="reference contrast PD differs from the T1/FLAIR this"):
        restore(checkpoint, [target], tmp_path / "pd_out.nii.gz", reference=pd, degrade=True)


def test_cli_prints_one_warning_line_and_exits_zero(tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "edsr.pt", EDSR)
    volumes = [write_nifti(tmp_path / f"{name}.nii.gz", phantom_volume(1, 16), AFFINE) for name in ("a_t1", "b_pd")]
    result = runner.invoke(app, ["restore", str(checkpoint), *map(str, volumes), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines == [f"warning: {volumes[0]}: contrast T1 differs from the T2 this checkpoint was trained with; the "
                     "output may take on the trained contrast",
                     f"warning: {volumes[1]}: contrast PD differs from the T2 this checkpoint was trained with; the "
                     "output may take on the trained contrast"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_t1_restored.nii.gz", "b_pd_restored.nii.gz"]
    result = runner.invoke(app, ["restore", str(checkpoint), str(volumes[0]), "--out", str(tmp_path / "x.nii.gz"),
                                 "--contrast", "T2w"])
    assert result.exit_code == 0 and result.stderr == ""
