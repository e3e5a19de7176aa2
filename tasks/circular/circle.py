"""The circle score of `circular`: the reconstruction from concept-specific latents.

The pick is made on the train half of the concept points (operand-token activations) and
scored on the held-out half: saebench.circles.plane_fidelity in the raw train points' value
plane (ranked), and saebench.circles.circularity in the reconstruction's own plane
(descriptive: it reads the latent codes); the raw activations' held-out points are the
ceiling. Engels et al.'s decoder-cluster score is not computed: with orthogonal or random
decoders the cosine graph is empty and the clusters arbitrary, and on v1 it ranked
identity, PCA and random above most SAEs (issue 15); a replacement needs a per-dictionary
permutation null, which is future work.
"""

from __future__ import annotations

import numpy as np
import torch

from saebench.circles import circle_reference, circularity, plane_fidelity, value_plane

from .data import DATA_SEED, concept_points, halves

NO_CIRCLE = {"excess": 0.0, "r2": 0.0, "variance_top2": 0.0, "order": 0.0, "frequency": 0.0}
MIN_FIRING = 0.05  # a concept latent must fire on this share of the concept's train points


def select_latents(f_concept: torch.Tensor, f_all: torch.Tensor, period: int) -> torch.Tensor:
    """Indices of the ≤ 2p latents most specific to the concept's tokens (mean activation on
    them over mean activation on all eval tokens), among latents firing on ≥ MIN_FIRING of
    them. Blind to values and angles."""
    fires = (f_concept > 0).float().mean(0)
    specificity = f_concept.mean(0) / (f_all.mean(0) + 1e-6)
    specificity[fires < MIN_FIRING] = -1
    chosen = torch.argsort(specificity, descending=True)[: 2 * period]
    return chosen[specificity[chosen] > 0]


def reconstruct(f: torch.Tensor, W_dec: torch.Tensor, latents: torch.Tensor) -> np.ndarray:
    return (f[:, latents] @ W_dec[latents]).numpy()


def held_out_points(ctx, kind: str):
    """(held-out raw points [n, d] as numpy, their values, period) of one kind."""
    rows, values, period = concept_points(ctx)[kind]
    _, test = halves(len(values))
    return rows.numpy()[test], values[test], period


def raw_circle(ctx, kind: str) -> dict:
    """circularity of the held-out raw points (the ceiling), once per kind."""
    return ctx.once(
        ("raw_circle", ctx.preset, kind),
        lambda: circularity(*held_out_points(ctx, kind), seed=DATA_SEED),
    )


def raw_circle_reference(ctx, kind: str) -> dict:
    """circles.circle_reference of the held-out raw points (the validity reference), once."""
    return ctx.once(
        ("raw_circle_reference", ctx.preset, kind),
        lambda: circle_reference(*held_out_points(ctx, kind), seed=DATA_SEED),
    )


def raw_plane(ctx, kind: str) -> np.ndarray:
    """The model's value plane [2, d]: top-2 PCs of the raw train points' value centroids."""

    def fit():
        rows, values, _ = concept_points(ctx)[kind]
        train, _ = halves(len(values))
        return value_plane(rows.numpy()[train], values[train])

    return ctx.once(("raw_plane", ctx.preset, kind), fit)


def scored(points: np.ndarray | None, values: np.ndarray, period: int, seed: int) -> dict:
    return NO_CIRCLE if points is None else circularity(points, values, period, seed=seed)


@torch.no_grad()
def circle_metrics(ctx, f_all: torch.Tensor) -> tuple[dict, dict]:
    """(metrics, plot artifacts) of every kind."""
    metrics, artifacts = {}, {}
    W_dec = ctx.sae.W_dec.detach().cpu()
    for kind, (rows, values, period) in concept_points(ctx).items():
        train, test = halves(len(values))
        f = ctx.sae.encode(rows.to(ctx.device)).cpu()
        latents = select_latents(f[train], f_all, period)
        points = reconstruct(f[test], W_dec, latents) if len(latents) >= 2 else None
        mine = scored(points, values[test], period, ctx.seed)
        fidelity = (
            0.0
            if points is None
            else plane_fidelity(rows.numpy()[test], points, values[test], raw_plane(ctx, kind))
        )
        raw = raw_circle(ctx, kind)
        metrics |= {
            f"{kind}_latents_selected": float(len(latents)),
            f"{kind}_circle_fidelity": fidelity,
            f"{kind}_circle_excess_r2": mine["excess"],
            f"{kind}_circle_r2": mine["r2"],
            f"{kind}_cyclic_order": mine["order"],
            f"{kind}_variance_top2": mine["variance_top2"],
            f"{kind}_frequency": mine["frequency"],
            f"raw_{kind}_circle_excess_r2": raw["excess"],
            f"raw_{kind}_cyclic_order": raw["order"],
            f"raw_{kind}_frequency": raw["frequency"],
        }
        artifacts[f"{kind}_values"] = values[test]
        artifacts[f"{kind}_raw_points"] = rows.numpy()[test]
        if points is not None:
            artifacts[f"{kind}_points"] = points
    return metrics, artifacts
