"""The circle-plane intervention of `circular` (Engels et al. 2024, section 5).

At the operand token of "N days from X is" prompts, the activation's coordinates in a 2-D
plane are set to the mean coordinates of operand X + k; a hit is the model's answer becoming
(X + k + N) mod period (k in ROTATION_STEPS). The plane, the target coordinates and (for an SAE)
the latents that span the plane are fitted on the train half of the prompts; hits are counted on
the held-out half only, one hit rate per prompt, so the score can be bootstrapped over prompts.
Chance is 1/period (a uniformly random answer).
"""

from __future__ import annotations

import numpy as np
import torch

from saebench.circles import move_in_plane, value_coordinates, value_plane
from saebench.interventions import run_patched, separation_scores

from .data import OperandPrompts, arithmetic_prompts, halves

ROTATION_STEPS = (1, 2, 3)
MIN_FIRING = 0.05  # a latent must fire on this share of the train prompts to span the plane


def rotation_hits(ctx, prompts: OperandPrompts, rows, basis, centroids) -> np.ndarray:
    """[len(rows), steps]: 1.0 where the answer becomes (start + k + offset) when the operand's
    coordinates in `basis` [2, d] become centroids[start + k] [period, 2], 0.0 where it does not,
    NaN where that operand value has no centroid."""
    period = prompts.period
    starts, offsets = prompts.starts[rows], prompts.offsets[rows]
    acts = prompts.acts.numpy()[rows]
    tokens = [prompts.tokens[i] for i in rows]
    positions = [prompts.positions[i] for i in rows]
    moved = [(starts + k) % period for k in ROTATION_STEPS]
    # Every step's edited prompts in one batched run (a prompt's logits do not depend on its
    # batch), not one run per step.
    new = np.concatenate(
        [move_in_plane(acts, basis, np.nan_to_num(centroids[target])) for target in moved]
    )
    new_acts = torch.tensor(new, dtype=torch.float32)

    def edit(chosen, indices):
        return new_acts[indices.cpu()].to(chosen.device)

    steps = len(ROTATION_STEPS)
    _, logits = run_patched(
        ctx.model.bridge, ctx.hook, tokens * steps, positions * steps, edit, ctx.device
    )
    predicted = logits.argmax(-1).cpu().reshape(steps, len(rows))
    expected = [prompts.answer_ids[(target + offsets) % period] for target in moved]
    hits = np.stack(
        [(row == want).numpy().astype(float) for row, want in zip(predicted, expected)], 1
    )
    hits[np.isnan(np.stack([centroids[t] for t in moved], 1)).any(-1)] = np.nan
    return hits


def per_prompt(hits: np.ndarray) -> np.ndarray:
    """Each prompt's hit rate over its usable steps; NaN for a prompt with none."""
    usable = ~np.isnan(hits)
    counts = usable.sum(1)
    rates = np.where(usable, hits, 0.0).sum(1) / np.maximum(counts, 1)
    return np.where(counts > 0, rates, np.nan)


def held_out_rates(ctx, prompts: OperandPrompts, basis: np.ndarray) -> np.ndarray:
    """Per held-out prompt hit rate with `basis` (fitted on train) and, as target points, the
    train prompts' mean raw operand coordinates per operand value in it."""
    train, test = halves(len(prompts.starts))
    acts = prompts.acts.numpy()
    centroids = value_coordinates(acts[train] @ basis.T, prompts.starts[train], prompts.period)
    return per_prompt(rotation_hits(ctx, prompts, test, basis, centroids))


def raw_rotation(ctx, kind: str) -> np.ndarray:
    """Held-out per-prompt hit rates in the plane of the raw train operand centroids: the
    SAE-independent reference, computed once per kind."""

    def compute():
        prompts = arithmetic_prompts(ctx)[kind]
        train, _ = halves(len(prompts.starts))
        basis = value_plane(prompts.acts.numpy()[train], prompts.starts[train])
        return held_out_rates(ctx, prompts, basis)

    return ctx.once(("raw_rotation", ctx.preset, ctx.hook, kind), compute)


def sae_plane(sae, acts: torch.Tensor, values: np.ndarray, period: int, device):
    """Plane [2, d] of the operand centroids of the reconstruction from the ≤ 2p latents most
    operand-selective (η²) on these (train) prompts, among latents firing on ≥ MIN_FIRING of
    them; None with fewer than two such latents."""
    codes = sae.encode(acts.to(device)).cpu()
    selectivity = separation_scores(codes, list(values))
    selectivity[(codes > 0).float().mean(0) < MIN_FIRING] = -1
    chosen = torch.argsort(selectivity, descending=True)[: 2 * period]
    chosen = chosen[selectivity[chosen] > 0]
    if len(chosen) < 2:
        return None
    reconstruction = (codes[:, chosen] @ sae.W_dec[chosen].detach().cpu()).numpy()
    return value_plane(reconstruction, values)


@torch.no_grad()
def rotation_metrics(ctx) -> dict[str, float]:
    """{kind}_rotation_accuracy (the SAE's plane) and raw_{kind}_rotation_accuracy (raw plane),
    both means of held-out per-prompt hit rates. No usable SAE plane scores 0 (a no-op)."""
    metrics = {}
    for kind, prompts in arithmetic_prompts(ctx).items():
        metrics[f"raw_{kind}_rotation_accuracy"] = float(np.nanmean(raw_rotation(ctx, kind)))
        train, _ = halves(len(prompts.starts))
        basis = sae_plane(
            ctx.sae, prompts.acts[train], prompts.starts[train], prompts.period, ctx.device
        )
        metrics[f"{kind}_rotation_accuracy"] = (
            0.0 if basis is None else float(np.nanmean(held_out_rates(ctx, prompts, basis)))
        )
    return metrics
