"""`circular`'s SAE-independent references, measured once per (model, hook) on raw activations.

- raw_{kind}_rotation_accuracy: the rotation in the plane of the raw answer centroids (fitted on
  the train prompts, hits on the held-out ones), 95% percentile bootstrap over held-out prompts
  (saebench.stats.bootstrap_interval). Chance 1/period (the answer becomes a uniformly random
  value); margin 2/period: the lower end must reach 3× chance, the bar issue 15 sets for the
  raw intervention. Governs {kind}_*rotation_accuracy.
- raw_{kind}_circle_r2: circle R² of the held-out raw concept points, 95% percentile bootstrap
  over points; its "chance" is the 95th percentile of the same R² with whole values relabelled
  (saebench.circles.circle_reference), so it asks whether the values sit in cyclic order, not
  merely apart. Margin 0.05 R². Governs {kind}_*circle*, *cyclic_order and *frequency.
"""

from __future__ import annotations

import numpy as np

from saebench.specs import Validity
from saebench.stats import bootstrap_interval

from .circle import raw_circle_reference
from .data import concept_points
from .rotation import raw_rotation

ROTATION_MARGIN_X_CHANCE = 2.0  # margin in units of chance: the lower end must reach 3× chance
CIRCLE_MARGIN = 0.05


def rotation_validity(kind: str, per_prompt: np.ndarray, period: int) -> Validity:
    """The raw rotation against chance 1/period, from held-out per-prompt hit rates."""
    interval = bootstrap_interval(per_prompt)
    chance = 1.0 / period
    return Validity(
        name=f"raw_{kind}_rotation_accuracy",
        reference=interval.mean,
        low=interval.low,
        chance=chance,
        margin=ROTATION_MARGIN_X_CHANCE * chance,
        description=(
            f"rotation in the raw answer-centroid plane fitted on train prompts, hits on "
            f"{interval.n} held-out prompts, 95% bootstrap over prompts; chance 1/{period}"
        ),
        governs=(f"{kind}_*rotation_accuracy",),
    )


def circle_validity(kind: str, reference: dict) -> Validity:
    """The raw circle R² against the value-relabelling null's 95th percentile."""
    return Validity(
        name=f"raw_{kind}_circle_r2",
        reference=reference["r2"],
        low=reference["low"],
        chance=reference["null95"],
        margin=CIRCLE_MARGIN,
        description=(
            "circle R² of the held-out raw concept points (95% bootstrap over points) vs the "
            f"95th percentile of the same R² with whole values relabelled (mean "
            f"{reference['null_mean']:.3g}): cyclic order beyond separated values"
        ),
        governs=(f"{kind}_*circle*", f"{kind}_*cyclic_order", f"{kind}_*frequency"),
    )


def validity(ctx) -> list[Validity]:
    """Per kind: the rotation reference and the circle reference (never touches ctx.sae)."""
    checks = []
    for kind, (_, _, period) in concept_points(ctx).items():
        checks.append(rotation_validity(kind, raw_rotation(ctx, kind), period))
        checks.append(circle_validity(kind, raw_circle_reference(ctx, kind)))
    return checks
