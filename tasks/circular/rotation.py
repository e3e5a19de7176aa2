"""The rotation intervention of `circular` (Engels et al. 2024, section 5, adapted).

On "N days from X is" prompts, at the last position, the activation's coordinates in a 2-D plane
are set to the mean coordinates of prompts whose answer is k steps further; a hit is the model's
answer moving by k (k in ROTATION_STEPS). The plane, the target coordinates and (for an SAE) the
latents that span the plane are fitted on the train half of the prompts; hits are counted on the
held-out half only, one hit rate per prompt, so the score can be bootstrapped over prompts.
"""

from __future__ import annotations

import numpy as np
import torch

from saebench.circles import move_in_plane, value_coordinates, value_plane
from saebench.interventions import run_patched, separation_scores

from .data import arithmetic_prompts, halves

ROTATION_STEPS = (1, 2, 3)
MIN_FIRING = 0.05  # a latent must fire on this share of the train prompts to span the plane


def rotation_hits(ctx, tokens, acts, answers, answer_ids, basis, centroids) -> np.ndarray:
    """[n prompts, steps]: 1.0 where the answer moves to answer + k when the activation's
    coordinates in `basis` [2, d] become centroids[answer + k] [period, 2], 0.0 where it does
    not, NaN where that target value has no centroid."""
    period = len(centroids)
    positions = [len(t) - 1 for t in tokens]
    targets = [(answers + k) % period for k in ROTATION_STEPS]
    # Every step's edited prompts in one batched run (a prompt's logits do not depend on its
    # batch), not one run per step.
    new = np.concatenate(
        [move_in_plane(acts, basis, np.nan_to_num(centroids[target])) for target in targets]
    )
    new_acts = torch.tensor(new, dtype=torch.float32)

    def edit(chosen, indices):
        return new_acts[indices.cpu()].to(chosen.device)

    steps = len(ROTATION_STEPS)
    _, logits = run_patched(
        ctx.model.bridge, ctx.hook, list(tokens) * steps, positions * steps, edit, ctx.device
    )
    predicted = logits.argmax(-1).cpu().reshape(steps, len(tokens))
    hits = np.stack(
        [(row == answer_ids[t]).numpy().astype(float) for row, t in zip(predicted, targets)], 1
    )
    hits[np.isnan(np.stack([centroids[t] for t in targets], 1)).any(-1)] = np.nan
    return hits


def rotation_accuracy(
    ctx, tokens, acts, answers, period, answer_ids, basis, centroids=None
) -> float:
    """Share of usable (prompt, k) hits; centroids default to the mean coordinates of `acts`
    per answer (in-sample: the task itself passes train-half centroids)."""
    if centroids is None:
        centroids = value_coordinates(acts @ basis.T, answers, period)
    hits = rotation_hits(ctx, tokens, acts, answers, answer_ids, basis, centroids)
    return float(np.nanmean(hits))


def per_prompt(hits: np.ndarray) -> np.ndarray:
    """Each prompt's hit rate over its usable steps; NaN for a prompt with none."""
    usable = ~np.isnan(hits)
    counts = usable.sum(1)
    rates = np.where(usable, hits, 0.0).sum(1) / np.maximum(counts, 1)
    return np.where(counts > 0, rates, np.nan)


def held_out_rates(ctx, prompts, basis: np.ndarray) -> np.ndarray:
    """Per held-out prompt hit rate with `basis` (fitted on train) and, as target points, the
    train prompts' mean raw coordinates per answer in it."""
    tokens, acts, answers, period, answer_ids = prompts
    train, test = halves(len(answers))
    acts = acts.numpy()
    centroids = value_coordinates(acts[train] @ basis.T, answers[train], period)
    test_tokens = [tokens[i] for i in test]
    hits = rotation_hits(ctx, test_tokens, acts[test], answers[test], answer_ids, basis, centroids)
    return per_prompt(hits)


def raw_rotation(ctx, kind: str) -> np.ndarray:
    """Held-out per-prompt hit rates in the plane of the raw train activations' answer centroids:
    the SAE-independent reference, computed once per kind."""

    def compute():
        prompts = arithmetic_prompts(ctx)[kind]
        _, acts, answers, _, _ = prompts
        train, _ = halves(len(answers))
        return held_out_rates(ctx, prompts, value_plane(acts.numpy()[train], answers[train]))

    return ctx.once(("raw_rotation", ctx.preset, kind), compute)


def sae_plane(sae, acts: torch.Tensor, answers: np.ndarray, period: int, device):
    """Plane [2, d] of the answer centroids of the reconstruction from the ≤ 2p latents most
    answer-selective (η²) on these (train) prompts, among latents firing on ≥ MIN_FIRING of
    them; None with fewer than two such latents."""
    codes = sae.encode(acts.to(device)).cpu()
    selectivity = separation_scores(codes, list(answers))
    selectivity[(codes > 0).float().mean(0) < MIN_FIRING] = -1
    chosen = torch.argsort(selectivity, descending=True)[: 2 * period]
    chosen = chosen[selectivity[chosen] > 0]
    if len(chosen) < 2:
        return None
    reconstruction = (codes[:, chosen] @ sae.W_dec[chosen].detach().cpu()).numpy()
    return value_plane(reconstruction, answers)


@torch.no_grad()
def rotation_metrics(ctx) -> dict[str, float]:
    """{kind}_rotation_accuracy (the SAE's plane) and raw_{kind}_rotation_accuracy (raw plane),
    both means of held-out per-prompt hit rates. No usable SAE plane scores 0 (a no-op)."""
    metrics = {}
    for kind, prompts in arithmetic_prompts(ctx).items():
        _, acts, answers, period, _ = prompts
        metrics[f"raw_{kind}_rotation_accuracy"] = float(np.nanmean(raw_rotation(ctx, kind)))
        train, _ = halves(len(answers))
        basis = sae_plane(ctx.sae, acts[train], answers[train], period, ctx.device)
        metrics[f"{kind}_rotation_accuracy"] = (
            0.0 if basis is None else float(np.nanmean(held_out_rates(ctx, prompts, basis)))
        )
    return metrics
