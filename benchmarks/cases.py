"""The benchmark cases (model, sizes, reference-code numbers), the fast-path variants and the batches they run on.

Reference numbers are the public reference code measured on the 2-core machine kind of ``design/models.md``
(forward pass, batch 1, fp32, 2 threads; memory = peak process RSS). Batches are real :class:`SliceDataset`
samples of a Shepp–Logan phantom (in memory, no files): the same normalisation, masks and fields as training
data, so data-dependent work (PGD-SFT's fixed-point iterations) behaves as on images, not on noise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CONV_HEAVY",
    "DEMO_CONFIGS",
    "JOINT_MODELS",
    "PAPER_BATCH",
    "PAPER_CASES",
    "SEARCH_MODELS",
    "TINY_CASES",
    "VARIANTS",
    "Case",
    "Variant",
    "build_model",
    "first_cases",
    "make_batch",
    "select_cases",
    "to_channels_last",
    "train_cases",
]

#: Models with a patch-relevance search (``search_window``, ``search_dtype`` options).
SEARCH_MODELS = frozenset({"t2net", "fasrnet"})
#: Models whose work is almost all convolutions: their GFLOP/s is held against the GEMM peak (target ≥ 70 %).
CONV_HEAVY = frozenset({"minet", "sanet", "pgd_sft"})
#: Joint reconstruction + SR models (undersampled input); the others are reference-guided SR (need ``reference``).
JOINT_MODELS = frozenset({"t2net", "pgd_sft"})


@dataclass(frozen=True)
class Case:
    """One model at one size.

    Attributes:
        name: unique label, e.g. ``t2net 2x 128->256``.
        model: registered model name.
        config: constructor arguments (``scale`` included).
        hr: HR image size ``(H, W)``; the LR size is ``hr / scale``.
        coils: receive coils of the k-space (PGD-SFT: 12).
        batch: slices per batch.
        ref_s: reference-code forward seconds, if measured.
        ref_gib: reference-code peak RSS in GiB, if measured.
        size: ``paper`` or ``tiny`` (the demo's model sizes).
    """

    name: str
    model: str
    config: dict[str, Any]
    hr: tuple[int, int]
    coils: int = 1
    batch: int = 1
    ref_s: float | None = None
    ref_gib: float | None = None
    size: str = "paper"

    @property
    def scale(self) -> int:
        return int(self.config["scale"])

    @property
    def lr(self) -> tuple[int, int]:
        return self.hr[0] // self.scale, self.hr[1] // self.scale


def _case(model: str, scale: int, hr: tuple[int, int], ref_s: float | None = None, ref_gib: float | None = None,
          coils: int = 1) -> Case:
    lr = (hr[0] // scale, hr[1] // scale)
    size = f"{lr[0]}->{hr[0]}" if lr[0] == lr[1] and hr[0] == hr[1] else f"{lr[0]}x{lr[1]}->{hr[0]}x{hr[1]}"
    coil_text = f" {coils} coils" if coils > 1 else ""
    return Case(f"{model} {scale}x{coil_text} {size}", model, {"scale": scale}, hr, coils, 1, ref_s, ref_gib)


#: The reference cases of design/models.md (paper-size models, default constructor arguments).
PAPER_CASES: list[Case] = [
    _case("t2net", 2, (256, 256), 38.2, 1.45),
    _case("t2net", 2, (320, 320), 95.0, 3.0),
    _case("t2net", 4, (256, 256), 2.1, 0.45),
    _case("minet", 2, (320, 320), 15.0, 2.5),
    _case("minet", 4, (320, 320), 14.2),
    _case("sanet", 2, (320, 320), 11.2, 1.95),
    _case("sanet", 4, (320, 320), 9.5),
    _case("fasrnet", 4, (320, 320), 52.0, 6.3),
    _case("fasrnet", 4, (256, 256), 24.9, 3.6),
    _case("pgd_sft", 2, (256, 232), coils=12),
]

#: The demo's model sizes (``accelmri.engine.demo.EXPERIMENTS``; tests/test_benchmarks.py checks they agree).
DEMO_CONFIGS: dict[str, dict[str, Any]] = {
    "t2net": {"scale": 2, "channels": 16, "n_blocks": 4},
    "minet": {"scale": 2, "channels": 16, "n_groups": 2, "n_blocks": 2, "reduction": 4, "integration_gain": 0.0},
    "sanet": {"scale": 2, "channels": 16, "n_groups": 2, "n_blocks": 2, "reduction": 4, "attention_channels": 8,
              "integration_gain": 0.0},
    "fasrnet": {"scale": 2, "channels": 16, "n_blocks": [2, 2], "embed_channels": 16},
    "pgd_sft": {"scale": 2, "channels": 16, "growth": 8, "n_blocks": 2, "prox_channels": 8, "prox_growth": 8,
                "max_iter": 5},
}

#: Tiny cases (``--tiny``, the test): the demo's models at 16² → 32², batch 1 (PGD-SFT with 4 coils).
TINY_CASES: list[Case] = [
    Case(f"{name} 2x{' 4 coils' if name == 'pgd_sft' else ''} 16->32 (demo model)", name, config, (32, 32),
         coils=4 if name == "pgd_sft" else 1, size="tiny")
    for name, config in DEMO_CONFIGS.items()
]


#: Models with ``checkpoint_stages`` (recompute each stage in the backward pass): the ``paper-checkpoint`` size.
CHECKPOINT_MODELS = ("minet", "sanet")

#: Training batch of each model's paper configuration (``data.batch_size`` of configs/t2net_ixi_2x,
#: minet_fastmri_2x, sanet_fastmri_2x, fasrnet_fastmri_4x, pgd_sft_brain_2x.yaml; tests/test_benchmarks.py checks
#: they agree): the FASR-Net and PGD-SFT papers state batch 4, the others give none and their configs use 4.
PAPER_BATCH: dict[str, int] = {"t2net": 4, "minet": 4, "sanet": 4, "fasrnet": 4, "pgd_sft": 4}


def first_cases(cases: list[Case]) -> list[Case]:
    """The first case of each model in ``cases`` (the paper size of the training step and of the device suite)."""
    return [c for i, c in enumerate(cases) if c.model not in {p.model for p in cases[:i]}]


def train_cases(sizes: list[str], tiny: bool) -> list[Case]:
    """Training-step cases: ``tiny`` = demo models at 64² batch 4 (``--tiny``: 32² batch 2); ``paper`` = the first
    reference case of every model (batch 1); ``paper-batch`` = the same at the batch of the model's paper
    configuration (:data:`PAPER_BATCH`; the device suite); ``paper-checkpoint`` = the ``paper`` cases of
    :data:`CHECKPOINT_MODELS` with ``checkpoint_stages=True`` (memory against time)."""
    cases = []
    if "tiny" in sizes:
        hr, batch = ((32, 32), 2) if tiny else ((64, 64), 4)
        for c in TINY_CASES:
            label = f"{c.model} 2x {hr[0] // 2}->{hr[0]} batch {batch} (demo size)"
            cases.append(dataclasses.replace(c, name=label, hr=hr, batch=batch))
    firsts = first_cases(PAPER_CASES)
    if "paper" in sizes and not tiny:
        cases += firsts
    if "paper-batch" in sizes and not tiny:
        cases += [dataclasses.replace(c, size="paper-batch", batch=PAPER_BATCH[c.model]) for c in firsts]
    if "paper-checkpoint" in sizes and not tiny:
        cases += [dataclasses.replace(c, name=f"{c.name} checkpoint_stages", size="paper-checkpoint",
                                      config={**c.config, "checkpoint_stages": True})
                  for c in firsts if c.model in CHECKPOINT_MODELS]
    return cases


def select_cases(cases: list[Case], wanted: list[str] | None) -> list[Case]:
    """Cases whose name or model is in ``wanted`` (all when None).

    Raises:
        ValueError: a wanted entry matches nothing (the message lists the cases).
    """
    if not wanted:
        return list(cases)
    unknown = [w for w in wanted if not any(w in (c.name, c.model) for c in cases)]
    if unknown:
        raise ValueError(f"unknown cases {unknown}; cases: {[c.name for c in cases]}")
    return [c for c in cases if c.name in wanted or c.model in wanted]


@dataclass(frozen=True)
class Variant:
    """How a case is run: dtype, memory format, compilation, model options.

    Attributes:
        name: label.
        autocast: autocast dtype of the forward pass (``bfloat16``, ``float16``; on the measuring device), None
            for none.
        channels_last: model and 4-D float inputs in ``torch.channels_last``.
        compile: ``torch.compile`` the model (compile time reported separately).
        overrides: constructor options on top of the case's (``search_window``, ``search_dtype``).
        exact: the exact fp32 arithmetic (the reference path; fast paths are compared with it).
    """

    name: str
    autocast: str | None = None
    channels_last: bool = False
    compile: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    exact: bool = False

    def applies(self, model: str) -> bool:
        """Whether the variant exists for ``model`` (search options only for T2Net and FASR-Net)."""
        return not self.overrides or model in SEARCH_MODELS

    @property
    def window(self) -> int | None:
        return self.overrides.get("search_window")

    @property
    def precision(self) -> str:
        """The evaluation engine's precision of this variant (``32-true``, ``bf16-mixed``, ``16-mixed``)."""
        return {None: "32-true", "bfloat16": "bf16-mixed", "float16": "16-mixed"}[self.autocast]


VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("fp32", exact=True),
    Variant("bf16", autocast="bfloat16"),
    Variant("fp16", autocast="float16"),
    Variant("channels-last", channels_last=True),
    Variant("bf16+channels-last", autocast="bfloat16", channels_last=True),
    Variant("compile", compile=True),
    Variant("window4", overrides={"search_window": 4}),
    Variant("window8", overrides={"search_window": 8}),
    Variant("search-bf16", overrides={"search_dtype": "bfloat16"}),
    Variant("bf16+window8", autocast="bfloat16", overrides={"search_window": 8}),
]}


def build_model(case: Case, overrides: dict[str, Any] | None = None) -> Any:
    """The case's model (``accelmri.models.build``) with ``overrides`` (``search_dtype`` as a dtype name)."""
    from accelmri.models import build

    return build(case.model, **{**case.config, **(overrides or {})})


def make_batch(case: Case, batch: int | None = None) -> Any:
    """A collated :class:`~accelmri.data.sample.Sample` batch for ``case`` (``batch`` slices, default the case's).

    Joint models get an undersampled acquisition (T2Net: equispaced R = 4; PGD-SFT: 1-D Gaussian R = 2.5;
    tiny cases R = 3 with 16 % centre, as the demo); SR models a fully sampled truncation plus a reference
    contrast (the phantom mirrored). Multi-coil data use birdcage coils, and their LR-grid maps as ``sens_maps``.
    """
    import numpy as np
    import torch

    from accelmri.data.datasets import SliceDataset, SliceSource
    from accelmri.data.phantom import shepp_logan
    from accelmri.data.sample import collate
    from accelmri.data.volume import KspaceVolume
    from accelmri.physics.coils import sense_expand
    from accelmri.physics.degrade import Acquisition
    from accelmri.physics.fft import fft2c
    from accelmri.physics.sensitivity import birdcage_maps

    slices = batch or case.batch
    image = shepp_logan(case.hr, phase_cycles=0.5)

    def volume(picture: torch.Tensor, label: str) -> SliceSource:
        if case.coils > 1:
            kspace = fft2c(sense_expand(picture, birdcage_maps((case.coils, *case.hr))))
        else:
            kspace = fft2c(picture)[None]
        data = np.ascontiguousarray(kspace[None].expand(slices, -1, -1, -1).numpy())
        return SliceSource(KspaceVolume(kspace=data, path=Path(f"bench-{label}")), subject="bench")

    references = None
    if case.model in JOINT_MODELS:
        task = "joint"
        if case.size == "tiny":
            acquisition = Acquisition("equispaced", 3.0, 0.16, case.scale)
        elif case.coils > 1:
            acquisition = Acquisition("gaussian1d", 2.5, 0.08, case.scale)
        else:
            acquisition = Acquisition("equispaced", 4.0, 0.08, case.scale)
    else:
        task = "super_resolution"
        acquisition = Acquisition("equispaced", 1.0, 0.08, case.scale)
        references = [volume(torch.flip(image, dims=(-1,)), "reference")]
    dataset = SliceDataset([volume(image, "target")], task, acquisition, references)
    samples = [dataset[i] for i in range(slices)]
    if case.coils > 1:
        maps = birdcage_maps((case.coils, *case.lr))
        maps = maps / (maps.abs() ** 2).sum(0, keepdim=True).sqrt().clamp_min(1e-8)
        samples = [dataclasses.replace(s, sens_maps=maps) for s in samples]
    return collate(samples)


def to_channels_last(batch: Any) -> Any:
    """``batch`` with every 4-D real tensor in ``torch.channels_last`` (complex k-space and maps unchanged)."""
    import torch

    changes = {}
    for f in dataclasses.fields(batch):
        value = getattr(batch, f.name)
        if isinstance(value, torch.Tensor) and value.ndim == 4 and not value.is_complex():
            changes[f.name] = value.contiguous(memory_format=torch.channels_last)
    return dataclasses.replace(batch, **changes)
