"""The circle scores of `circular`: concept-specific latents and the best decoder cluster.

Both picks are made on the train half of the concept points and scored on the held-out half,
with saebench.circles.circularity; the raw activations' held-out points are the ceiling.
"""

from __future__ import annotations

import numpy as np
import torch

from saebench.circles import (
    between_value_variance,
    circle_reference,
    circularity,
    decoder_clusters,
)

from .data import DATA_SEED, concept_points, halves

NO_CIRCLE = {"excess": 0.0, "r2": 0.0, "variance_top2": 0.0, "order": 0.0, "frequency": 0.0}
MIN_FIRING = 0.05  # a concept latent must fire on this share of the concept's train points
CLUSTER_SIZE = 32  # latents per decoder cluster, on average


def select_latents(f_concept: torch.Tensor, f_all: torch.Tensor, period: int) -> torch.Tensor:
    """Indices of the ≤ 2p latents most specific to the concept's tokens (mean activation on
    them over mean activation on all eval tokens), among latents firing on ≥ MIN_FIRING of
    them. Blind to values and angles."""
    fires = (f_concept > 0).float().mean(0)
    specificity = f_concept.mean(0) / (f_all.mean(0) + 1e-6)
    specificity[fires < MIN_FIRING] = -1
    chosen = torch.argsort(specificity, descending=True)[: 2 * period]
    return chosen[specificity[chosen] > 0]


def cluster_labels(W_dec: np.ndarray, seed: int) -> np.ndarray:
    """Decoder cluster id of every latent (Engels et al.'s grouping, ~CLUSTER_SIZE latents each)."""
    return decoder_clusters(W_dec, max(2, len(W_dec) // CLUSTER_SIZE), seed=seed)


def best_cluster(
    W_dec: torch.Tensor, f: torch.Tensor, values: np.ndarray, labels: np.ndarray
) -> torch.Tensor:
    """Latents of the decoder cluster whose reconstruction of the points coded by f carries the
    most between-value variance (angle-blind), over latents firing on some of them; empty when
    no cluster has two such latents. Call it on the train half."""
    alive = torch.nonzero((f > 0).any(0)).flatten()
    best, best_score = alive[:0], 0.0
    for cluster in np.unique(labels[alive.numpy()]):
        members = alive[torch.from_numpy(labels[alive.numpy()] == cluster)]
        if len(members) < 2:
            continue
        score = between_value_variance((f[:, members] @ W_dec[members]).numpy(), values)
        if score > best_score:
            best, best_score = members, score
    return best


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


def scored(points: np.ndarray | None, values: np.ndarray, period: int, seed: int) -> dict:
    return NO_CIRCLE if points is None else circularity(points, values, period, seed=seed)


@torch.no_grad()
def circle_metrics(ctx, f_all: torch.Tensor, labels) -> tuple[dict, dict]:
    """(metrics, plot artifacts) of every kind. labels() -> the SAE's decoder cluster ids
    (computed when first needed, shared by the kinds)."""
    metrics, artifacts = {}, {}
    W_dec = ctx.sae.W_dec.detach().cpu()
    for kind, (rows, values, period) in concept_points(ctx).items():
        train, test = halves(len(values))
        f = ctx.sae.encode(rows.to(ctx.device)).cpu()
        latents = select_latents(f[train], f_all, period)
        points = reconstruct(f[test], W_dec, latents) if len(latents) >= 2 else None
        members = best_cluster(W_dec, f[train], values[train], labels())
        cluster_points = reconstruct(f[test], W_dec, members) if len(members) >= 2 else None
        mine = scored(points, values[test], period, ctx.seed)
        cluster = scored(cluster_points, values[test], period, ctx.seed)
        raw = raw_circle(ctx, kind)
        metrics |= {
            f"{kind}_latents_selected": float(len(latents)),
            f"{kind}_circle_excess_r2": mine["excess"],
            f"{kind}_circle_r2": mine["r2"],
            f"{kind}_cyclic_order": mine["order"],
            f"{kind}_variance_top2": mine["variance_top2"],
            f"{kind}_frequency": mine["frequency"],
            f"{kind}_cluster_size": float(len(members)),
            f"{kind}_cluster_circle_excess_r2": cluster["excess"],
            f"{kind}_cluster_cyclic_order": cluster["order"],
            f"raw_{kind}_circle_excess_r2": raw["excess"],
            f"raw_{kind}_cyclic_order": raw["order"],
            f"raw_{kind}_frequency": raw["frequency"],
        }
        artifacts[f"{kind}_values"] = values[test]
        artifacts[f"{kind}_raw_points"] = rows.numpy()[test]
        if points is not None:
            artifacts[f"{kind}_points"] = points
        if cluster_points is not None:
            artifacts[f"{kind}_cluster_points"] = cluster_points
    return metrics, artifacts
