"""Task `circular` (Engels et al. 2024, "Not All Language Model Features Are Linear"): are days of
the week and months on a circle in the SAE's features, and does that circle steer the model?

Protocol. Every pick is made on a train half and scored on the held-out half (fixed halves,
shared by all cells). Everything is read at the operand token X of "N days from X is" prompts
(its last occurrence: toy world v2 prompts may name another day first), where Engels et al.
intervene and where the site check of `saebench world eval` asks patching to move the answer.
- Circle (circle.py): the concept points are the operand-token activations. The ≤ 2p latents
  most specific to them (mean activation on them over mean activation on all eval tokens,
  among latents firing on ≥ 5% of them; blind to values and angles) are picked on the train
  points; the held-out points are reconstructed from them, projected on the top-2 PCs of their
  value centroids, and scored by the best-frequency circle R² minus a permuted-label null (95th
  percentile), the cyclic order of the centroids and the variance share of the plane. These
  describe the latent codes and are not ranked: a decoder with permuted rows is another linear
  map of the same codes and keeps them circular (the shuffled-SAE control on toy world v4:
  trained 0.93, shuffled 0.90, random 0.70). The ranked circle score is {kind}_circle_fidelity:
  the share of the model's own value plane (top-2 PCs of the raw train points' value centroids)
  that the reconstruction reproduces, 1 − Σ‖C_v − Ĉ_v‖² / Σ‖C_v‖² over held-out value
  centroids, with nothing fitted to the reconstruction (saebench.circles.plane_fidelity).
  It reads only that plane (error outside it is not counted) and counts scale (a shrunken
  reconstruction α·x scores 1 − (1 − α)²); one latent per value with the value's centroid as
  its decoder row scores high too, so "circle" describes the model's plane, not whether the
  SAE has one irreducible 2-D feature.
- Intervention (rotation.py, Engels et al. section 5): the operand's coordinates in a plane are
  set to the train prompts' mean coordinates for operand X + k; a hit is the answer becoming
  X + k + N (k = 1, 2, 3), counted on held-out prompts. The SAE supplies only the plane: the
  operand centroids of the reconstruction from its most operand-selective latents (η² on train
  prompts). Chance is 1/period, printed with every rotation number.
- raw_* metrics: the same on raw activations, SAE-independent (descriptive, never gated).

Validity (validity.py), once per (model, hook): the raw intervention's lower 95% bound must
reach 3× chance, else every {kind}_*rotation_accuracy is dropped; the raw circle R²'s lower
bound must beat the 95th percentile of a null that relabels whole values (clusters kept, cyclic
order destroyed) by 0.05, else every {kind}_*circle* score is dropped.

Departures from the paper: Engels et al. find clusters by graph clustering and inspect them;
a fixed latent-selection rule replaces that, and the decoder-cluster score is not computed
(see circle.py). They judge the circle in the reconstruction's own top-2 PCs; here that is
descriptive and the ranked score asks for the circle in the model's plane (fidelity). On the
v1 toy model the operand token at the default hook is causally inert (the site check: 0% of
answers move), so both gates close there.
"""

from __future__ import annotations

import torch

from saebench.hookspecs import hookimpl
from saebench.specs import MetricInfo, ModelHandle, TaskSpec

from .circle import circle_metrics, select_latents
from .data import arithmetic_prompts, concept_points
from .plot import NAME, POINTS_FILE, plot, save_points
from .rotation import ROTATION_STEPS, rotation_hits, rotation_metrics
from .validity import validity

__all__ = [
    "NAME",
    "POINTS_FILE",
    "ROTATION_STEPS",
    "arithmetic_prompts",
    "concept_points",
    "plot",
    "rotation_hits",
    "run",
    "select_latents",
    "validity",
]

RAW = "SAE-independent reference on raw activations (held-out half)"
METRICS = {
    "raw_day_rotation_accuracy": MetricInfo(None, description=RAW, chance=1 / 7),
    "raw_month_rotation_accuracy": MetricInfo(None, description=RAW, chance=1 / 12),
    "raw_*": MetricInfo(None, description=RAW),
    "day_*rotation_accuracy": MetricInfo(
        True, floor=0.05, chance=1 / 7, description="held-out rotation hits in the SAE's plane"
    ),
    "month_*rotation_accuracy": MetricInfo(
        True, floor=0.05, chance=1 / 12, description="held-out rotation hits in the SAE's plane"
    ),
    "*_circle_fidelity": MetricInfo(
        True,
        floor=0.05,
        description="share of the raw value centroids' plane that the concept latents "
        "reproduce; ≤ 1, 0 for no spread, < 0 for a wrong arrangement; shrinkage costs",
    ),
    "*_circle_excess_r2": MetricInfo(
        None,
        description=(
            "Engels et al.'s circle in the reconstruction's own plane; descriptive: it reads the "
            "latent codes, and a decoder with permuted rows keeps it"
        ),
    ),
    "*_circle_r2": MetricInfo(None),
    "*_cyclic_order": MetricInfo(None),
    "*_variance_top2": MetricInfo(None),
    "*_frequency": MetricInfo(None),
    "*_latents_selected": MetricInfo(None),
}


def run(ctx) -> dict:
    with torch.no_grad():
        f_all = ctx.sae.encode(ctx.eval_acts[:20_000].to(ctx.device)).cpu()
    metrics, artifacts = circle_metrics(ctx, f_all)
    metrics |= rotation_metrics(ctx)
    if ctx.artifacts_dir is not None and artifacts:
        save_points(ctx.artifacts_dir, artifacts)
    return metrics


def supports(model: ModelHandle, options: dict[str, str]) -> str | None:
    if model.world is None:
        return "circular needs calendar prompts with known values (the toy world)"
    return None


@hookimpl
def register_tasks(register):
    register(
        TaskSpec(
            name=NAME,
            description="Circle score and circle-plane intervention of day/month operands from concept-specific latents vs raw (picked on train, scored held-out)",
            run=run,
            supports=supports,
            plot=plot,
            metrics=METRICS,
            validity=validity,
        )
    )
