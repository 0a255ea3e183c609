"""Section ``train``: one optimiser step — forward, loss, backward, Adam — at the demo size and the paper size.

The loss is the model's paper preset (:data:`accelmri.losses.PRESETS`). With ``--train-loss pixel`` (default)
the terms that need external weights are left out — ``perceptual`` (ImageNet VGG19) and ``adversarial`` (a
trained discriminator) — so FASR-Net trains on L1 + Fourier and PGD-SFT on 1e-2·L1 + L1(Rec). With
``--train-loss full`` they are included with a randomly initialised VGG19 and an untrained ESRGAN discriminator:
the same cost as trained weights (the discriminator's own update is not part of the step). Autocast covers the
forward pass and the loss; backward and the optimiser step run outside it, as in the trainer. On a CUDA
``device`` (the device suite) model, loss and batch live on the GPU, each step is timed up to
``torch.cuda.synchronize`` and the GPU memory is recorded (:func:`benchmarks.common.measure`).
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import print_result

__all__ = ["loss_weights", "run", "train_worker"]

_NEEDS_WEIGHTS = ("perceptual", "adversarial")


def loss_weights(model: str, kind: str) -> dict[str, float]:
    """The training loss ``{term: weight}`` of ``model``: its preset, without ``perceptual``/``adversarial``
    unless ``kind == "full"``."""
    from accelmri.losses import PRESETS

    preset = PRESETS[model]
    return dict(preset) if kind == "full" else {k: w for k, w in preset.items() if k not in _NEEDS_WEIGHTS}


def train_worker(case: Any, dtype: str, loss_kind: str, repeats: int, warmup: int,
                 device: str = "cpu") -> dict[str, Any]:
    """Time training steps of ``case`` in ``dtype`` (``fp32``, ``bf16`` autocast) on ``device`` (runs in the
    subprocess). Times in seconds per step (``case.batch`` samples), memory in GiB."""
    import torch

    from accelmri.losses import build_loss
    from accelmri.models.pgd_sft import VGGDiscriminator
    from benchmarks.cases import build_model, make_batch
    from benchmarks.common import autocast, measure

    torch.manual_seed(0)
    model = build_model(case).train().to(device)
    batch = make_batch(case).to(device)
    weights = loss_weights(case.model, loss_kind)
    options: dict[str, Any] = {}
    if "perceptual" in weights:
        options["perceptual"] = {"allow_random_weights": True}
    if "adversarial" in weights:
        options["adversarial"] = {"discriminator": VGGDiscriminator()}
    loss_fn = build_loss(weights, **options).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, "bfloat16" if dtype == "bf16" else None):
            loss, _ = loss_fn(model(batch), batch)
        loss.backward()
        optimizer.step()

    result = measure(step, repeats=repeats, warmup=warmup, device=device)
    return {"loss_terms": weights, "parameters": sum(p.numel() for p in model.parameters()), **result}


def run(isolated: Any, cases: list[Any], dtypes: list[str], *, loss_kind: str, repeats: int,
        warmup: int, device: str = "cpu") -> list[dict[str, Any]]:
    """One row per case and dtype (``fp32``, ``bf16``), measured on ``device``."""
    rows = []
    for case in cases:
        for dtype in dtypes:
            result = isolated.run("benchmarks.training:train_worker", case=case, dtype=dtype, loss_kind=loss_kind,
                                  repeats=repeats, warmup=warmup, device=device)
            rows.append({"case": case.name, "model": case.model, "size": case.size, "batch": case.batch,
                         "hr": list(case.hr), "dtype": dtype, "device": device, **result})
            print_result(f"train {case.name} [{dtype}]", result, unit="s/step")
    return rows
