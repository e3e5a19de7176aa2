"""Task `ground_truth`: does any single latent detect a known latent variable of the toy world?

For every ground-truth value, the latent whose predicate "latent > 0" has the best Matthews
correlation (MCC) with the value on a train half of the examples is scored on the other,
held-out half (gt_mcc_*, the headline; an always-on or never-on latent scores 0, where F1 would
give an always-on latent 2p/(1+p)). F1 of "latent active" (picked by train F1) and the AUROC of
the activation (picked by train AUROC) are reported beside it, each held out the same way.
Units:
  sentence  probing sentences, latents mean-pooled over tokens: each topic, positive sentiment,
            past tense, plural number;
  day/month at the day (month) word in calendar sentences, among day (month) tokens: each value;
  <attribute> at the city's last word in fact prompts: each value of every fact attribute with
            at most MAX_ATTRIBUTE_VALUES values (v1: continent; v2: country, language, climate);
  ioi       at the final IOI prompt token (where the answer is predicted): the IO name (names
            that are the IO of at least MIN_POSITIVES prompts) and the order (ABBA vs BABA).
Every value is reported (gt_mcc_<group>_<value>, gt_f1_..., gt_auroc_..., and the raw reference
raw_gt_auroc_<group>_<value>), with the per-group and overall means as the headline numbers.

Protocol (train / held-out). Each group's examples are split once, 50/50, stratified by the
combination of the group's labels, with a fixed seed (the same split for every SAE, seed and
method). Picking the best of d_sae latents and scoring it on the examples it was picked on is
biased upwards: the best of 128 pure-noise columns reaches AUROC 0.70 with ~12 positives, where
its held-out AUROC is 0.5. Held out, the pick is unbiased, but a wider dictionary still has more
candidates to pick from. So the same selection over a dictionary that learned nothing is
reported as the null (null_gt_mcc_<group>, null_gt_auroc_<group>): d_sae random unit directions
with a tied encoder centred at the examples' mean and TopK at the SAE's own L0 per token (on the
run's eval activations), pooled the same way. Each group keeps one example per context (the
text up to the read word): repeated contexts have identical activations, and one on each side
of the split would score a memorised row as held out. References, both on the raw activations and both
held out: raw_gt_auroc_* is the best single raw dimension (either sign, picked on train), and
raw_gt_lr_auroc_<group> a logistic regression per value (C = 1, standardised, fit on train):
the supervised direction a single latent is read against.

Validity: per group, the logistic-regression reference's mean held-out AUROC must have its 95%
bootstrap lower end (resampling held-out examples) above chance 0.5 + MARGIN, else the group is
absent at the hook and its SAE metrics (gt_*_<group>*) are dropped; one overall gate on the mean
over groups governs the gt_*_mean. The means average every group, gated or not, so they stay
comparable across models (toyworld vs the toyworld-random control). The gates never cover the
references or the nulls.

Departures: SAEBench has no task of this form; it follows the "feature recovery" scoring of
toy-model studies (the best latent per known feature), except that the best latent is picked on
one half and scored on the other instead of maximised on the scored data, and is read against
the random-direction null above. Dictionary recovery on a synthetic stream with known directions
is the separate `saebench synthetic` benchmark, with its own sweep.
"""

from __future__ import annotations

import numpy as np
import torch

from saebench.hookspecs import hookimpl
from saebench.probing import held_out_best_auroc, held_out_best_f1, held_out_best_mcc
from saebench.specs import MetricInfo, ModelHandle, TaskSpec

from .references import (
    CHANCE_AUROC,
    null_scores,
    raw_detection_scores,
    supervised_reference,
    validity,
)
from .units import features_for, held_out_split, label_matrix, unit_activations, value_key

__all__ = ["METRICS", "register_tasks", "run", "supports", "validity"]

# Order matters: the first matching pattern wins (raw_gt_lr_* before raw_gt_*).
METRICS = {
    "null_gt_*": MetricInfo(
        None, description="null: the same train-picked best of d_sae random directions, held out"
    ),
    "gt_mcc_*": MetricInfo(
        True, floor=0.03, description="held-out MCC of 'latent > 0'", chance=0.0, ground_truth=True
    ),
    "gt_auroc_*": MetricInfo(
        True, floor=0.03, description="held-out AUROC", chance=CHANCE_AUROC, ground_truth=True
    ),
    "gt_f1_*": MetricInfo(True, floor=0.03, description="held-out F1"),
    "raw_gt_lr_auroc_*": MetricInfo(
        None,
        description="reference: logistic regression on raw activations, held out",
        chance=CHANCE_AUROC,
    ),
    "raw_gt_*": MetricInfo(
        None,
        description="reference: best raw dimension (either sign), held out",
        chance=CHANCE_AUROC,
    ),
}


def detection_scores(features: np.ndarray, labels: dict, train, test) -> dict:
    """{value: (MCC, F1, AUROC)} on the test rows of the column that detects the value best on
    the train rows (each score picks its own column, by itself on train)."""
    matrix = label_matrix(labels)
    active = features > 0
    _, mccs = held_out_best_mcc(active, matrix, train, test)
    _, f1s = held_out_best_f1(active, matrix, train, test)
    _, aurocs = held_out_best_auroc(features, matrix, train, test)
    return {
        value: (float(m), float(f), float(a)) for value, m, f, a in zip(labels, mccs, f1s, aurocs)
    }


def sae_l0(ctx, n: int = 4096) -> int:
    """The SAE's mean number of active latents per token on the run's eval activations."""
    with torch.no_grad():
        codes = ctx.sae.encode(ctx.eval_acts[:n].to(ctx.device))
    return max(1, round(float((codes > 0).sum(-1).float().mean())))


def run(ctx) -> dict:
    def encode(x):
        with torch.no_grad():
            return ctx.sae.encode(x.to(ctx.device)).cpu()

    groups = unit_activations(ctx)
    encoded = {
        group: features_for(acts, positions, encode)
        for group, (acts, positions, _) in groups.items()
    }
    d_sae = next(iter(encoded.values())).shape[1]
    raw_scores, supervised = raw_detection_scores(ctx), supervised_reference(ctx)
    null = null_scores(ctx, d_sae, sae_l0(ctx))
    metrics: dict[str, float] = {}
    names = ("gt_mcc", "gt_f1", "gt_auroc", "raw_gt_auroc", "raw_gt_lr_auroc")
    means: dict[str, list[float]] = {name: [] for name in (*names, "null_gt_mcc", "null_gt_auroc")}
    for group, (_, _, labels) in groups.items():
        scores = detection_scores(encoded[group], labels, *held_out_split(labels))
        raw = raw_scores[group]
        for value, (mcc, f1, auroc) in scores.items():
            # day=monday in group day -> day_monday; topic=food in group sentence -> sentence_topic_food
            key = (
                value_key(value) if value.startswith(group + "=") else f"{group}_{value_key(value)}"
            )
            metrics[f"gt_mcc_{key}"], metrics[f"gt_f1_{key}"] = mcc, f1
            metrics[f"gt_auroc_{key}"], metrics[f"raw_gt_auroc_{key}"] = auroc, raw[value]
        per_group = {
            "gt_mcc": float(np.mean([m for m, _, _ in scores.values()])),
            "gt_f1": float(np.mean([f for _, f, _ in scores.values()])),
            "gt_auroc": float(np.mean([a for _, _, a in scores.values()])),
            "raw_gt_auroc": float(np.mean(list(raw.values()))),
            "raw_gt_lr_auroc": float(np.mean(list(supervised[group][0].values()))),
            "null_gt_mcc": null[group]["mcc"],
            "null_gt_auroc": null[group]["auroc"],
        }
        for name, value in per_group.items():
            metrics[f"{name}_{group}"] = value
            means[name].append(value)
    metrics |= {f"{name}_mean": float(np.mean(values)) for name, values in means.items()}
    return metrics


def supports(model: ModelHandle, options: dict[str, str]) -> str | None:
    if model.world is None:
        return "ground_truth needs a model with known latent variables (the toy world)"
    return None


@hookimpl
def register_tasks(register):
    register(
        TaskSpec(
            name="ground_truth",
            description="Best single latent (picked on a train half, scored held out) as a detector of each known variable (MCC, F1, AUROC) vs a random-direction null",
            run=run,
            supports=supports,
            validity=validity,
            metrics=METRICS,
        )
    )
