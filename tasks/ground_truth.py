"""Task `ground_truth`: does any single latent detect a known latent variable of the toy world?

For every ground-truth value the single latent that best detects it on a train half of the
examples is scored on the other, held-out half (AUROC of its activation; F1 of "latent active",
its latent picked by train F1), then averaged ("feature recovery"). Units:
  sentence  probing sentences, latents mean-pooled over tokens: each topic, positive sentiment,
            past tense, plural number;
  day/month at the day (month) word in calendar sentences, among day (month) tokens: each value;
  continent at the city word in fact prompts: each continent;
  ioi       at the final IOI prompt token (where the answer is predicted): the IO name (names
            that are the IO of at least MIN_POSITIVES prompts) and the order (ABBA vs BABA).
Every value is reported (gt_auroc_<group>_<value>, gt_f1_<group>_<value>, and the raw reference
raw_gt_auroc_<group>_<value>), with the per-group and overall means as the headline numbers.

Protocol (train / held-out). Each group's examples are split once, 50/50, stratified by the
combination of the group's labels, with a fixed seed (the same split for every SAE, seed and
method). Picking the best of d_sae latents and scoring it on the examples it was picked on is
biased upwards: the best of 128 pure-noise columns reaches AUROC 0.70 with ~12 positives, where
its held-out AUROC is 0.5. Held out, the pick is unbiased, but a wider dictionary still has more
candidates to pick from, and directions of the residual that learned nothing already detect
token-level values. So the same selection applied to d_sae random Gaussian directions of the raw
activations (dense projections, seeded, SAE-independent) is reported as the null, what that many
unlearned directions reach: null_gt_auroc_<group> and null_gt_auroc_mean. References, both on
the raw activations and both held out: raw_gt_auroc_* is the best single raw dimension (either
sign, picked on train), and raw_gt_lr_auroc_<group> a logistic regression per value (C = 1,
standardised, fit on train): the supervised direction a single latent is read against.

Validity: per group, the logistic-regression reference's mean held-out AUROC must have its 95%
bootstrap lower end (resampling held-out examples) above chance 0.5 + MARGIN, else the group's
SAE metrics (gt_auroc_<group>*, gt_f1_<group>*) are dropped; one overall gate on the mean over
groups governs gt_auroc_mean and gt_f1_mean. The means average every group, gated or not, so
they stay comparable across models (toyworld vs the toyworld-random control). The gates never
cover the references, the null or the model-free synthetic half.

A second, model-free half trains the cell's method at the cell's knob on a synthetic
superposition stream whose true dictionary is known (inputs are normalised to E‖x‖ = √d as in
every run, so knobs transfer) and reports the mean max cosine to the true directions and the
fraction recovered above cos 0.9 (it matches a dictionary to a known one: no labels, nothing to
hold out).

Departures: SAEBench has no task of this form; it follows the "feature recovery" scoring of
toy-model studies (the best latent per known feature), except that the best latent is picked on
one half and scored on the other instead of maximised on the scored data, and is read against
the random-direction null above.
"""

from __future__ import annotations

import numpy as np
import torch

from saebench.hookspecs import hookimpl
from saebench.probing import (
    auroc_matrix,
    bootstrap_aurocs,
    example_activations,
    held_out_best_auroc,
    held_out_best_f1,
    label_strata,
    lower_end,
    mean_pool,
    stratified_split,
    supervised_scores,
)
from saebench.specs import MetricInfo, ModelHandle, TaskSpec, Validity

N_EXAMPLES = {"smoke": 240, "default": 800, "full": 3000}
SYNTHETIC_TOKENS = {"smoke": 100_000, "default": 200_000, "full": 1_000_000}
DATA_SEED = 777
# An IO name seen fewer times leaves < 5 positives in a half: a held-out AUROC too noisy to use.
MIN_POSITIVES = 10
TRAIN_FRACTION = 0.5  # selection needs only a ranking; the held-out score needs the positives
SPLIT_SEED = DATA_SEED + 1  # salted: the split must not align with the data generator's draws
NULL_SEED = 31_337  # the null's random directions
BOOTSTRAP_SEED = 0
CHANCE_AUROC = 0.5
MARGIN = 0.05  # the reference must beat chance by this much (its 95% lower end)


def detector_units(world, n: int):
    """{group: (texts, positions or None for sentence pooling, {value name: bool labels})}."""
    from saebench.toyworld.world import DAYS, MONTHS, probing_labels

    units = {}
    probing = world.generate("probing", n, seed=DATA_SEED)
    labels = {
        f"{variable}={value}": np.array(flags)
        for (variable, value), flags in probing_labels(probing).items()
    }
    units["sentence"] = ([e.text for e in probing], None, labels)
    calendar = world.generate("calendar", 3 * n, seed=DATA_SEED)
    for kind, values in (("day", DAYS), ("month", MONTHS)):
        chosen = [e for e in calendar if e.labels["kind"] == kind][:n]
        positions = [e.text.split().index(values[e.labels["start"]]) for e in chosen]
        labels = {
            f"{kind}={v}": np.array([e.labels["start"] == i for e in chosen])
            for i, v in enumerate(values)
        }
        units[kind] = ([e.text for e in chosen], positions, labels)
    facts = world.generate("facts", n, seed=DATA_SEED)
    continents = sorted({c["continent"] for c in world.cities})
    table = {c["city"]: c for c in world.cities}
    positions = [e.prompt.split().index(e.labels["entity"]) for e in facts]
    labels = {
        f"continent={c}": np.array([table[e.labels["entity"]]["continent"] == c for e in facts])
        for c in continents
    }
    units["continent"] = ([e.prompt for e in facts], positions, labels)
    ioi = world.generate("ioi", n, seed=DATA_SEED)
    positions = [len(e.prompt.split()) - 1 for e in ioi]
    labels = {"order=ABBA": np.array([e.labels["order"] == "ABBA" for e in ioi])}
    for name in sorted({e.labels["io"] for e in ioi}):
        flags = np.array([e.labels["io"] == name for e in ioi])
        if flags.sum() >= MIN_POSITIVES:
            labels[f"io={name}"] = flags
    units["ioi"] = ([e.prompt for e in ioi], positions, labels)
    return units


def value_key(value: str) -> str:
    """ "topic=sports" -> "topic_sports": a metric-name-safe label."""
    return "".join(c if c.isalnum() else "_" for c in value.lower())


def unit_activations(ctx):
    """Per group: (per-example activations, positions, labels). Computed once per preset."""
    return ctx.once(("unit_activations", ctx.preset), lambda: _unit_activations(ctx))


def _unit_activations(ctx):
    groups = {}
    units = detector_units(ctx.model.world, N_EXAMPLES.get(ctx.preset, 800))
    for group, (texts, positions, labels) in units.items():
        acts = example_activations(
            ctx.model.bridge, ctx.model.tokenizer, ctx.hook, texts, ctx.device
        )
        groups[group] = (acts, positions, labels)
    return groups


def features_for(acts, positions, encode=None):
    if positions is None:
        return mean_pool(acts, encode).numpy()
    picked = torch.stack([a[p] for a, p in zip(acts, positions)])
    return (encode(picked) if encode else picked).float().cpu().numpy()


def label_matrix(labels: dict) -> np.ndarray:
    """[n, n_values] boolean matrix, one column per value in the dict's order."""
    return np.stack([np.asarray(labels[value], bool) for value in labels], axis=1)


def held_out_split(labels: dict) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) rows of one group: fixed seed, stratified by the combination of labels.
    Fixed (not ctx.seed) so every SAE, seed and the validity check see the same halves."""
    return stratified_split(label_strata(label_matrix(labels)), SPLIT_SEED, TRAIN_FRACTION)


def detection_scores(features: np.ndarray, labels: dict, train, test) -> dict:
    """{value: (AUROC, F1)} on the test rows of the column that detects the value best on the
    train rows (AUROC and F1 each pick their own column)."""
    matrix = label_matrix(labels)
    _, aurocs = held_out_best_auroc(features, matrix, train, test)
    _, f1s = held_out_best_f1(features > 0, matrix, train, test)
    return {value: (float(a), float(f)) for value, a, f in zip(labels, aurocs, f1s)}


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


def null_scores(ctx, d_sae: int) -> dict[str, float]:
    """Per group, the mean held-out AUROC of the same train-selection over d_sae random
    Gaussian directions of the raw activations (seeded): what picking the best of d_sae
    candidates gives with no learning. Once per (preset, d_sae)."""
    return ctx.once(("null_scores", ctx.preset, d_sae), lambda: _null_scores(ctx, d_sae))


def _null_scores(ctx, d_sae: int):
    groups = unit_activations(ctx)
    d_in = next(iter(groups.values()))[0][0].shape[-1]
    directions = np.random.default_rng(NULL_SEED).standard_normal((d_in, d_sae))
    out = {}
    for group, (acts, positions, labels) in groups.items():
        projections = features_for(acts, positions) @ directions
        _, aurocs = held_out_best_auroc(projections, label_matrix(labels), *held_out_split(labels))
        out[group] = float(aurocs.mean())
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
                governs=(f"gt_auroc_{group}*", f"gt_f1_{group}*"),
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
            governs=("gt_auroc_mean", "gt_f1_mean"),
        )
    )
    return checks


def synthetic_recovery(ctx) -> dict:
    from saebench import plugins
    from saebench.synthetic import SuperpositionStream, fraction_recovered, mean_max_cosine
    from saebench.training import TrainConfig, train_sae

    # Salted seed: the stream's dictionary must not coincide with anything seeded by ctx.seed.
    stream = SuperpositionStream(256, 64, firing_prob=0.02, seed=100_003 + ctx.seed)
    store = stream.store(40_000, 2_000)
    spec = plugins.get_method(ctx.method)
    cfg = TrainConfig(
        d_sae=512,
        total_tokens=SYNTHETIC_TOKENS.get(ctx.preset, 150_000),
        batch_size=256,
        lr=3e-3,
        progress=False,
        seed=ctx.seed,
        dead_window_tokens=20_000,
    )
    with torch.enable_grad():
        sae, _ = train_sae(
            spec, min(ctx.knob, 512) if spec.knob_is_integer else ctx.knob, store, cfg, "cpu"
        )
    learned = sae.W_dec.detach()
    return {
        "synthetic_mean_max_cosine": mean_max_cosine(learned, stream.true_directions),
        "synthetic_fraction_recovered": fraction_recovered(learned, stream.true_directions),
    }


def run(ctx) -> dict:
    def encode(x):
        with torch.no_grad():
            return ctx.sae.encode(x.to(ctx.device)).cpu()

    groups = unit_activations(ctx)
    encoded = {
        group: features_for(acts, positions, encode)
        for group, (acts, positions, _) in groups.items()
    }
    raw_scores, supervised = raw_detection_scores(ctx), supervised_reference(ctx)
    null = null_scores(ctx, next(iter(encoded.values())).shape[1])
    metrics: dict[str, float] = {}
    means: dict[str, list[float]] = {
        "gt_auroc": [], "gt_f1": [], "raw_gt_auroc": [], "raw_gt_lr_auroc": [], "null_gt_auroc": []
    }  # fmt: skip
    for group, (_, _, labels) in groups.items():
        scores = detection_scores(encoded[group], labels, *held_out_split(labels))
        raw = raw_scores[group]
        for value, (auroc, f1) in scores.items():
            # day=monday in group day -> day_monday; topic=food in group sentence -> sentence_topic_food
            key = (
                value_key(value) if value.startswith(group + "=") else f"{group}_{value_key(value)}"
            )
            metrics[f"gt_auroc_{key}"], metrics[f"gt_f1_{key}"] = auroc, f1
            metrics[f"raw_gt_auroc_{key}"] = raw[value]
        per_group = {
            "gt_auroc": float(np.mean([a for a, _ in scores.values()])),
            "gt_f1": float(np.mean([f for _, f in scores.values()])),
            "raw_gt_auroc": float(np.mean(list(raw.values()))),
            "raw_gt_lr_auroc": float(np.mean(list(supervised[group][0].values()))),
            "null_gt_auroc": null[group],
        }
        for name, value in per_group.items():
            metrics[f"{name}_{group}"] = value
            means[name].append(value)
    metrics |= {f"{name}_mean": float(np.mean(values)) for name, values in means.items()}
    if ctx.method:
        metrics |= synthetic_recovery(ctx)
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
            description="Best single latent (picked on a train half, scored held out) as a detector of each known variable (AUROC, F1) vs a random-direction null; synthetic dictionary recovery",
            run=run,
            supports=supports,
            validity=validity,
            # Order matters: the first matching pattern wins (raw_gt_lr_* before raw_gt_*).
            metrics={
                "null_gt_auroc_*": MetricInfo(
                    None,
                    description="null: the same train-picked best of d_sae random directions, "
                    "held out",
                    chance=CHANCE_AUROC,
                ),
                "gt_auroc_*": MetricInfo(
                    True,
                    floor=0.03,
                    description="held-out AUROC",
                    chance=CHANCE_AUROC,
                    ground_truth=True,
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
                # A second SAE, trained inside the task on a synthetic stream: its L0 is not
                # the cell's, so it is not compared with the baselines at matched L0.
                "synthetic_*": MetricInfo(True, floor=0.05, comparable_at_l0=False),
            },
        )
    )
