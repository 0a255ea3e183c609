"""Section ``train``: one optimiser step — forward, loss, backward, Adam — at the demo size and the paper size.

The loss is the model's paper preset (:data:`accelmri.losses.PRESETS`). With ``--train-loss pixel`` (default)
the terms that need external weights are left out — ``perceptual`` (ImageNet VGG19) and ``adversarial`` (a
trained discriminator) — so FASR-Net trains on L1 + Fourier and PGD-SFT on 1e-2·L1 + L1(Rec). With
``--train-loss full`` they are included with a randomly initialised VGG19 and an untrained ESRGAN discriminator:
the same cost as trained weights (the discriminator's own update is not part of the step). Autocast covers the
forward pass and the loss; backward and the optimiser step run outside it, as in the trainer.
"""

from __future__ import annotations

from typing import Any

__all__ = ["loss_weights", "run", "train_worker"]

_NEEDS_WEIGHTS = ("perceptual", "adversarial")


def loss_weights(model: str, kind: str) -> dict[str, float]:
    """The training loss ``{term: weight}`` of ``model``: its preset, without ``perceptual``/``adversarial``
    unless ``kind == "full"``."""
    from accelmri.losses import PRESETS

    preset = PRESETS[model]
    return dict(preset) if kind == "full" else {k: w for k, w in preset.items() if k not in _NEEDS_WEIGHTS}


def train_worker(case: Any, autocast: bool, loss_kind: str, repeats: int, warmup: int) -> dict[str, Any]:
    """Time training steps of ``case`` (runs in the subprocess)."""
    import torch

    from accelmri.losses import build_loss
    from accelmri.models.pgd_sft import VGGDiscriminator
    from benchmarks.cases import build_model, make_batch
    from benchmarks.common import measure

    torch.manual_seed(0)
    model = build_model(case).train()
    batch = make_batch(case)
    weights = loss_weights(case.model, loss_kind)
    options: dict[str, Any] = {}
    if "perceptual" in weights:
        options["perceptual"] = {"allow_random_weights": True}
    if "adversarial" in weights:
        options["adversarial"] = {"discriminator": VGGDiscriminator()}
    loss_fn = build_loss(weights, **options)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss, _ = loss_fn(model(batch), batch)
        loss.backward()
        optimizer.step()

    result = measure(step, repeats=repeats, warmup=warmup)
    return {"loss_terms": weights, "parameters": sum(p.numel() for p in model.parameters()), **result}


def run(isolated: Any, cases: list[Any], dtypes: list[str], *, loss_kind: str, repeats: int,
        warmup: int) -> list[dict[str, Any]]:
    """One row per case and dtype (``fp32``, ``bf16``)."""
    rows = []
    for case in cases:
        for dtype in dtypes:
            result = isolated.run("benchmarks.training:train_worker", case=case, autocast=dtype == "bf16",
                                  loss_kind=loss_kind, repeats=repeats, warmup=warmup)
            rows.append({"case": case.name, "model": case.model, "size": case.size, "batch": case.batch,
                         "hr": list(case.hr), "dtype": dtype, **result})
            if result["ok"]:
                print(f"  train {case.name} [{dtype}]: {result['median_s']:.3f} s/step, peak "
                      f"{result['peak_gib']:.2f} GiB ({result['process_s']:.1f} s)", flush=True)
            else:
                print(f"  train {case.name} [{dtype}]: {result['error']}", flush=True)
    return rows
