"""The SAE-independent side of ground_truth: the raw-activation references, the random-direction
nulls and the validity gates. Each is computed once per (preset[, d_sae, density])."""

from __future__ import annotations

import numpy as np

from saebench.probing import (
    auroc_matrix,
    bootstrap_aurocs,
    held_out_best_auroc,
    held_out_best_mcc,
    lower_end,
    supervised_scores,
    top_l0_active,
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


def random_projections(ctx, d_sae: int) -> dict[str, np.ndarray]:
    """Per group, the raw features projected on d_sae random Gaussian directions (seeded)."""
    return ctx.once(("null_projections", ctx.preset, d_sae), lambda: _projections(ctx, d_sae))


def _projections(ctx, d_sae: int):
    groups = unit_activations(ctx)
    d_in = next(iter(groups.values()))[0][0].shape[-1]
    directions = np.random.default_rng(NULL_SEED).standard_normal((d_in, d_sae))
    return {
        group: features_for(acts, positions) @ directions
        for group, (acts, positions, _) in groups.items()
    }


def null_auroc(ctx, d_sae: int) -> dict[str, float]:
    """Per group, the mean held-out AUROC of the same train-selection over d_sae random
    directions: what picking the best of d_sae candidates gives with no learning."""
    return ctx.once(("null_auroc", ctx.preset, d_sae), lambda: _null_auroc(ctx, d_sae))


def _null_auroc(ctx, d_sae: int):
    out = {}
    for group, (_, _, labels) in unit_activations(ctx).items():
        projections = random_projections(ctx, d_sae)[group]
        _, aurocs = held_out_best_auroc(projections, label_matrix(labels), *held_out_split(labels))
        out[group] = float(aurocs.mean())
    return out


def null_mcc(ctx, group: str, d_sae: int, l0: int) -> float:
    """The mean held-out MCC of the same train-selection over d_sae random directions of which
    the `l0` largest fire on every example (the SAE's own L0 on the group's examples): as many
    candidates, firing as often, with no learning."""
    key = ("null_mcc", ctx.preset, group, d_sae, l0)
    return ctx.once(key, lambda: _null_mcc(ctx, group, d_sae, l0))


def _null_mcc(ctx, group: str, d_sae: int, l0: int) -> float:
    labels = unit_activations(ctx)[group][2]
    active = top_l0_active(random_projections(ctx, d_sae)[group], l0)
    _, mccs = held_out_best_mcc(active, label_matrix(labels), *held_out_split(labels))
    return float(mccs.mean())


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
