"""Task `circular` (Engels et al. 2024): are days of the week and months on a circle in the
SAE's features?

Points: the activation at the day (month) word of calendar sentences. Latent selection is blind
to angles (reference/tasks.md's fair rule): the ≤ 2p latents most specific to that concept's
tokens (mean activation on them over mean activation on all eval tokens, among latents firing
on ≥ 5% of them). The points are reconstructed from those latents only, projected on their top-2
PCs, and scored by the best-frequency circle R² minus a permuted-label null (95th percentile),
the cyclic order of the value centroids, and the variance share of the top-2 PCs. The same
analysis on the raw activations is the ceiling (raw_*). Not implemented: the rotation
intervention test (moving the angle by k steps and checking the "N days from X" answer).
"""
from __future__ import annotations

import numpy as np
import torch

from saebench.circles import circularity
from saebench.hookspecs import hookimpl
from saebench.probing import example_activations
from saebench.specs import MetricInfo, TaskSpec

N_EXAMPLES = {"smoke": 210, "default": 700, "full": 2000}
DATA_SEED = 31


def concept_points(ctx):
    """{kind: (activations at the value word [n, d], values [n], period)}: once per run."""
    from saebench.toyworld.world import DAYS, MONTHS

    key = ("circular", ctx.hook, ctx.preset)
    if key not in ctx.cache:
        n = N_EXAMPLES.get(ctx.preset, 700)
        examples = ctx.model.world.generate("calendar", 4 * n, seed=DATA_SEED)
        points = {}
        for kind, names in (("day", DAYS), ("month", MONTHS)):
            chosen = [e for e in examples if e.labels["kind"] == kind][:n]
            acts = example_activations(ctx.model.bridge, ctx.model.tokenizer, ctx.hook,
                                       [e.text for e in chosen], ctx.device)
            rows = torch.stack([a[e.text.split().index(names[e.labels["start"]])]
                                for a, e in zip(acts, chosen)])
            points[kind] = (rows, np.array([e.labels["start"] for e in chosen]), len(names))
        ctx.cache[key] = points
    return ctx.cache[key]


def select_latents(f_concept: torch.Tensor, f_all: torch.Tensor, period: int) -> torch.Tensor:
    """Indices of the ≤ 2p latents most specific to the concept's tokens (angle-blind)."""
    fires = (f_concept > 0).float().mean(0)
    specificity = f_concept.mean(0) / (f_all.mean(0) + 1e-6)
    specificity[fires < 0.05] = -1
    chosen = torch.argsort(specificity, descending=True)[: 2 * period]
    return chosen[specificity[chosen] > 0]


def run(ctx) -> dict:
    metrics = {}
    with torch.no_grad():
        f_all = ctx.sae.encode(ctx.eval_acts[:20_000].to(ctx.device)).cpu()
        for kind, (rows, values, period) in concept_points(ctx).items():
            raw = circularity(rows.numpy(), values, period, seed=ctx.seed)
            f = ctx.sae.encode(rows.to(ctx.device)).cpu()
            latents = select_latents(f, f_all, period)
            metrics[f"{kind}_latents_selected"] = float(len(latents))
            if len(latents) >= 2:
                reconstruction = f[:, latents] @ ctx.sae.W_dec[latents].detach().cpu()
                scored = circularity(reconstruction.numpy(), values, period, seed=ctx.seed)
            else:  # no concept-specific latents: nothing circular to find
                scored = {"excess": 0.0, "r2": 0.0, "variance_top2": 0.0, "order": 0.0,
                          "frequency": 0.0}
            metrics[f"{kind}_circle_excess_r2"] = scored["excess"]
            metrics[f"{kind}_circle_r2"] = scored["r2"]
            metrics[f"{kind}_cyclic_order"] = scored["order"]
            metrics[f"{kind}_variance_top2"] = scored["variance_top2"]
            metrics[f"{kind}_frequency"] = scored["frequency"]
            metrics[f"raw_{kind}_circle_excess_r2"] = raw["excess"]
            metrics[f"raw_{kind}_cyclic_order"] = raw["order"]
            metrics[f"raw_{kind}_frequency"] = raw["frequency"]
    return metrics


def supports(model):
    if model.world is None:
        return "circular needs calendar prompts with known values (the toy world)"
    return None


@hookimpl
def register_tasks(register):
    register(TaskSpec(
        name="circular",
        description="Circle score of day/month features reconstructed from concept-specific latents vs raw",
        run=run, supports=supports,
        metrics={"*_circle_excess_r2": MetricInfo(True, floor=0.05),
                 "*_circle_r2": MetricInfo(None), "*_cyclic_order": MetricInfo(None),
                 "*_variance_top2": MetricInfo(None), "*_frequency": MetricInfo(None),
                 "*_latents_selected": MetricInfo(None)},
    ))
