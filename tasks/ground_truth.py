"""Task `ground_truth`: does any single latent detect a known latent variable of the toy world?

For every ground-truth value the best single latent is scored as a detector (AUROC of its
activation, F1 of "latent active"), then averaged ("feature recovery"). Units:
  sentence  probing sentences, latents mean-pooled over tokens: each topic, positive sentiment,
            past tense, plural number;
  day/month at the day (month) word in calendar sentences, among day (month) tokens: each value;
  continent at the city word in fact prompts: each continent;
  ioi       at the final IOI prompt token (where the answer is predicted): the IO name (names
            that are the IO of at least MIN_POSITIVES prompts) and the order (ABBA vs BABA).
Every value is reported (gt_auroc_<group>_<value>, gt_f1_<group>_<value>, and the raw reference
raw_gt_auroc_<group>_<value>), with the per-group and overall means as the headline numbers.
The raw activations' best single dimension is reported as the reference. A second, model-free
half trains the cell's method at the cell's knob on a synthetic superposition stream whose true
dictionary is known (inputs are normalised to E‖x‖ = √d as in every run, so knobs transfer) and
reports the mean max cosine to the true directions and the fraction recovered above cos 0.9.
"""

from __future__ import annotations

import numpy as np
import torch

from saebench.hookspecs import hookimpl
from saebench.probing import auroc_matrix, example_activations, f1_matrix, mean_pool
from saebench.specs import MetricInfo, ModelHandle, TaskSpec

N_EXAMPLES = {"smoke": 240, "default": 800, "full": 3000}
SYNTHETIC_TOKENS = {"smoke": 100_000, "default": 200_000, "full": 1_000_000}
DATA_SEED = 777
MIN_POSITIVES = 5  # an IO name seen fewer times gives an AUROC too noisy to average


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


def detection_scores(features: np.ndarray, labels: dict) -> dict[str, tuple[float, float]]:
    """{value: (AUROC, F1)} of the best single column as a detector of each value."""
    values = list(labels)
    matrix = np.stack([labels[value] for value in values], axis=1)
    aurocs = auroc_matrix(features, matrix).max(1)
    f1s = f1_matrix(features > 0, matrix).max(1)
    return {value: (float(a), float(f)) for value, a, f in zip(values, aurocs, f1s)}


def raw_detection_scores(ctx) -> dict[str, dict[str, tuple[float, float]]]:
    """Per group: detection_scores of the raw activations, the reference. Computed once."""
    return ctx.once(("raw_detection_scores", ctx.preset), lambda: _raw_detection_scores(ctx))


def _raw_detection_scores(ctx):
    return {
        group: detection_scores(features_for(acts, positions), labels)
        for group, (acts, positions, labels) in unit_activations(ctx).items()
    }


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

    metrics, aurocs, f1s, raw_aurocs = {}, [], [], []
    raw_scores = raw_detection_scores(ctx)
    for group, (acts, positions, labels) in unit_activations(ctx).items():
        scores = detection_scores(features_for(acts, positions, encode), labels)
        raw = raw_scores[group]
        for value, (auroc, f1) in scores.items():
            # day=monday in group day -> day_monday; topic=food in group sentence -> sentence_topic_food
            key = (
                value_key(value) if value.startswith(group + "=") else f"{group}_{value_key(value)}"
            )
            metrics[f"gt_auroc_{key}"], metrics[f"gt_f1_{key}"] = auroc, f1
            metrics[f"raw_gt_auroc_{key}"] = raw[value][0]
        auroc = float(np.mean([a for a, _ in scores.values()]))
        f1 = float(np.mean([f for _, f in scores.values()]))
        raw_auroc = float(np.mean([a for a, _ in raw.values()]))
        metrics[f"gt_auroc_{group}"], metrics[f"gt_f1_{group}"] = auroc, f1
        metrics[f"raw_gt_auroc_{group}"] = raw_auroc
        aurocs.append(auroc), f1s.append(f1), raw_aurocs.append(raw_auroc)
    metrics["gt_auroc_mean"], metrics["gt_f1_mean"] = float(np.mean(aurocs)), float(np.mean(f1s))
    metrics["raw_gt_auroc_mean"] = float(np.mean(raw_aurocs))
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
            description="Best single latent as a detector of each known variable (AUROC, F1); synthetic dictionary recovery",
            run=run,
            supports=supports,
            metrics={
                "gt_*": MetricInfo(True, floor=0.03),
                "raw_gt_*": MetricInfo(None, description="reference: best raw dimension"),
                "synthetic_*": MetricInfo(True, floor=0.05),
            },
        )
    )
