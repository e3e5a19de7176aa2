"""The SAE-independent side of ground_truth: the raw-activation references, the random-direction
nulls and the validity gates. Each is computed once per (preset[, d_sae, l0])."""

from __future__ import annotations

import numpy as np
import torch

from saebench.probing import (
    auroc_matrix,
    bootstrap_aurocs,
    held_out_best_auroc,
    held_out_best_mcc,
    lower_end,
    supervised_scores,
)
from saebench.specs import Validity

from .units import features_for, held_out_split, label_matrix, unit_activations

NULL_SEED = 31_337  # the null's random directions
BOOTSTRAP_SEED = 0
CHANCE_AUROC = 0.5
MARGIN = 0.05  # the reference must beat chance by this much (its 95% lower end)


def raw_detection_scores(ctx) -> dict[str, dict[str, float]]:
    """Per group, {value: held-out AUROC} of the best raw dimension, the reference. Once."""
    return ctx.once(("raw_detection_scores", ctx.preset), lambda: _raw_detection_scores(ctx))


def _raw_detection_scores(ctx):
    out = {}
    for group, (acts, positions, labels) in unit_activations(ctx).items():
        features = features_for(acts, positions)
        # A raw dimension is signed: a dimension that is low on the positives detects them too.
        signed = np.concatenate([features, -features], axis=1)
        _, aurocs = held_out_best_auroc(signed, label_matrix(labels), *held_out_split(labels))
        out[group] = {value: float(a) for value, a in zip(labels, aurocs)}
    return out


def supervised_reference(ctx) -> dict[str, tuple[dict[str, float], np.ndarray]]:
    """Per group: ({value: held-out AUROC of a logistic regression on the raw activations},
    bootstrap samples of the group mean over resampled held-out examples). Once."""
    return ctx.once(("supervised_reference", ctx.preset), lambda: _supervised_reference(ctx))


def _supervised_reference(ctx):
    out = {}
    for group, (acts, positions, labels) in unit_activations(ctx).items():
        features, matrix = features_for(acts, positions), label_matrix(labels)
        train, test = held_out_split(labels)
        scores = supervised_scores(features, matrix, train, test)
        aurocs = np.diagonal(auroc_matrix(scores, matrix[test]))
        # The same resampled rows for every value: the group mean's interval keeps the
        # values' correlation. NaN (a resample without a positive) drops that value only.
        samples = np.nanmean(bootstrap_aurocs(scores, matrix[test], seed=BOOTSTRAP_SEED), axis=1)
        out[group] = ({value: float(a) for value, a in zip(labels, aurocs)}, samples)
    return out


def random_topk_encoder(d_in: int, d_sae: int, l0: int, centre: torch.Tensor):
    """A dictionary that learned nothing, at the SAE's width and L0: d_sae random unit
    directions (seeded), a tied encoder centred at `centre`, and TopK(l0) per token, as the
    random calibration baseline encodes."""
    generator = torch.Generator().manual_seed(NULL_SEED)
    directions = torch.randn(d_sae, d_in, generator=generator)
    directions /= directions.norm(dim=1, keepdim=True)
    k = int(min(max(l0, 1), d_sae))

    def encode(x: torch.Tensor) -> torch.Tensor:
        pre = (x.float() - centre) @ directions.T
        top = pre.topk(k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, top.values.clamp_min(0))

    return encode


def null_scores(ctx, d_sae: int, l0: int) -> dict[str, dict[str, float]]:
    """Per group, {"mcc": ..., "auroc": ...}: the mean held-out score of the same
    train-selection over the latents of random_topk_encoder: as many candidates, firing as
    often per token, with no learning. Once per (preset, d_sae, l0)."""
    return ctx.once(("null_scores", ctx.preset, d_sae, l0), lambda: _null_scores(ctx, d_sae, l0))


def _null_scores(ctx, d_sae: int, l0: int):
    groups = unit_activations(ctx)
    tokens = torch.cat([torch.cat(acts) for acts, _, _ in groups.values()])
    encode = random_topk_encoder(tokens.shape[-1], d_sae, l0, tokens.mean(0))
    out = {}
    for group, (acts, positions, labels) in groups.items():
        features, matrix = features_for(acts, positions, encode), label_matrix(labels)
        split = held_out_split(labels)
        _, mccs = held_out_best_mcc(features > 0, matrix, *split)
        _, aurocs = held_out_best_auroc(features, matrix, *split)
        out[group] = {"mcc": float(mccs.mean()), "auroc": float(aurocs.mean())}
    return out


def validity(ctx) -> list[Validity]:
    """Per group and overall: the raw logistic-regression reference's held-out AUROC against
    chance 0.5 + MARGIN (its bootstrap lower end). Never touches ctx.sae."""
    reference = supervised_reference(ctx)
    how = (
        "logistic regression on the raw activations, fit on the train half, AUROC on the "
        "held-out half, mean over values; 95% percentile bootstrap over held-out examples"
    )
    checks = []
    for group, (aurocs, samples) in reference.items():
        checks.append(
            Validity(
                name=f"raw_gt_lr_auroc_{group}",
                reference=float(np.mean(list(aurocs.values()))),
                low=lower_end(samples),
                chance=CHANCE_AUROC,
                margin=MARGIN,
                description=how,
                governs=(f"gt_auroc_{group}*", f"gt_f1_{group}*", f"gt_mcc_{group}*"),
            )
        )
    # Groups are independent samples: resample b of the overall mean is the mean of each
    # group's resample b.
    overall = np.nanmean(np.stack([samples for _, samples in reference.values()]), axis=0)
    checks.append(
        Validity(
            name="raw_gt_lr_auroc_mean",
            reference=float(np.mean([np.mean(list(a.values())) for a, _ in reference.values()])),
            low=lower_end(overall),
            chance=CHANCE_AUROC,
            margin=MARGIN,
            description=how + "; mean over groups",
            governs=("gt_auroc_mean", "gt_f1_mean", "gt_mcc_mean"),
        )
    )
    return checks
