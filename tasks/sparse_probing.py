"""Task `sparse_probing` (SAEBench / Gao et al. style).

For each binary label (toy world: each topic vs the rest, sentiment, tense, number; any model: the
labels of a `text,label` CSV or JSONL file given as `--task-option sparse_probing.data=FILE`, one
label per class vs the rest, or one label when there are two classes), SAE latents are pooled
over each text's tokens (`pooling=mean`: encode each token, then average; `pooling=last`: the
last token, where a causal model has read the whole text), the top-k latents
by |mean_pos − mean_neg| are picked on the train split, and a logistic regression (C = 1) on them
is scored on the test split, for k ∈ {1, 2, 5, 20}. The same probe on the raw activations (top-k
dimensions and full width) is reported as the reference. The split (70/30) is fixed by the seed;
the k latents, the standardisation and the probe are all fit on the train split: nothing is
selected on the test split.

Chance: a probe that learned nothing predicts the train split's majority class; its test accuracy
is reported per label (probe_chance_<label>) and as probe_chance_mean. Toy-world labels have a
chance level by construction (topics are drawn uniformly from 6, so one topic vs the rest: 5/6;
sentiment, tense and number are fair coins: 1/2), declared on their metrics; the means (and a
user's labels) mix rates, so only the measured probe_chance_* go with them.

Validity: the full-width probe on the raw activations, on the split of seed VALIDITY_SEED (fixed,
so the check does not depend on which cell ran first), must have the 95% bootstrap lower end
of its test accuracy (resampling test examples) above the majority rate + MARGIN: per label (else
that label's probe_acc_k*_<label> are dropped), and for the mean over labels (else the task's
cells are `uninformative`: the labels are not linearly readable at the hook). The means average
every label, gated or not, so they stay comparable across models (e.g. toyworld-random).

Departure from SAEBench: SAEBench probes each class against a balanced sample of the others
(chance 1/2 everywhere); here a topic is probed against all the rest (chance 5/6), so read topic
accuracies against their chance level.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from saebench.errors import ConfigError
from saebench.hookspecs import hookimpl
from saebench.probing import (
    POOLING,
    example_activations,
    majority_rate,
    probe_accuracy,
    probe_correct,
    split_indices,
)
from saebench.specs import MetricInfo, ModelHandle, TaskSpec, Validity
from saebench.stats import bootstrap_interval

if TYPE_CHECKING:
    import pandas as pd

    from saebench.rundir import RunDir

K_VALUES = (1, 2, 5, 20)
N_EXAMPLES = {"smoke": 300, "default": 1200, "full": 4000}
DATA_SEED = 4242
MIN_PER_CLASS = 10
VALIDITY_SEED = 0  # the split the validity reference is measured on (that of seed 0)
MARGIN = 0.05  # the raw probe must beat the majority rate by this much (its 95% lower end)
BOOTSTRAP_SEED = 0
# Chance by construction of the toy world's labels (see the module docstring).
TOY_CHANCE = {"topic_*": 5 / 6, "sentiment": 0.5, "tense": 0.5, "number": 0.5}
OPTIONS = {
    "data": "CSV or JSONL file with `text` and `label` columns (default: toy-world labels)",
    "pooling": "mean (default) or last: how a text's token activations become one vector",
}


def labelled_examples(world, n: int):
    from saebench.toyworld.world import probing_label_names

    examples = world.generate("probing", n, seed=DATA_SEED)
    labels = {name: np.array(flags) for name, flags in probing_label_names(examples).items()}
    return [e.text for e in examples], labels


def file_examples(path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Texts and binary labels from a user's `text,label` CSV or JSONL file."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"sparse_probing.data: {path} does not exist")
    try:
        frame = (
            pd.read_json(path, lines=True)
            if path.suffix in (".jsonl", ".json")
            else pd.read_csv(path)
        )
    except ValueError as error:
        raise ConfigError(
            f"sparse_probing.data: cannot read {path} ({error}); give a CSV with "
            "a header row or a JSONL file with one object per line"
        ) from None
    missing = {"text", "label"} - set(frame.columns)
    if missing:
        raise ConfigError(
            f"sparse_probing.data: {path} lacks column(s) {sorted(missing)}; "
            f"found {list(frame.columns)}. Name them `text` and `label`"
        )
    frame = frame.dropna(subset=["text", "label"])
    frame = frame[frame.text.astype(str).str.strip() != ""]
    classes = sorted(frame.label.astype(str).unique())
    counts = frame.label.astype(str).value_counts()
    if len(classes) < 2 or counts.min() < MIN_PER_CLASS:
        raise ConfigError(
            f"sparse_probing.data: {path} needs ≥ 2 label values with ≥ "
            f"{MIN_PER_CLASS} texts each; found {dict(counts)}"
        )
    values = frame.label.astype(str).to_numpy()
    chosen = classes[1:] if len(classes) == 2 else classes  # two classes: one binary label
    safe = lambda c: re.sub(r"[^0-9A-Za-z]+", "_", c).strip("_") or "blank"
    labels = {f"label_{safe(c)}": values == c for c in chosen}
    return frame.text.astype(str).tolist(), labels


def pooling_of(options: dict[str, str]) -> str:
    pooling = options.get("pooling", "mean")
    if pooling not in POOLING:
        raise ConfigError(f"sparse_probing.pooling={pooling!r}; choose one of {', '.join(POOLING)}")
    return pooling


def shared_inputs(ctx):
    """(per-example activations, labels, train rows, test rows, raw-activation reference
    metrics, pooling) for ctx.seed's split."""
    acts, labels, _, pool = pooled_inputs(ctx)
    train, test, reference, _ = raw_reference(ctx, ctx.seed)
    return acts, labels, train, test, reference, pool


def pooled_inputs(ctx):
    """(per-example activations, labels, pooled raw activations, pooling): once per (preset,
    options); no seed is involved."""
    key = ("pooled", ctx.preset, tuple(sorted(ctx.options.items())))
    return ctx.once(key, lambda: _pooled_inputs(ctx))


def _pooled_inputs(ctx):
    options = ctx.options
    pool = POOLING[pooling_of(options)]
    if "data" in options:
        texts, labels = file_examples(options["data"])
    else:
        texts, labels = labelled_examples(ctx.model.world, N_EXAMPLES.get(ctx.preset, 1200))
    acts = example_activations(ctx.model.bridge, ctx.model.tokenizer, ctx.hook, texts, ctx.device)
    return acts, labels, pool(acts).numpy(), pool


def raw_reference(ctx, seed: int):
    """(train, test, reference metrics, {label: per-test-example correctness of the full-width
    raw probe}) for `seed`'s split: once per (preset, seed, options)."""
    key = ("reference", ctx.preset, seed, tuple(sorted(ctx.options.items())))
    return ctx.once(key, lambda: _raw_reference(ctx, seed))


def _raw_reference(ctx, seed: int):
    _, labels, raw, _ = pooled_inputs(ctx)
    train, test = split_indices(len(raw), seed)
    reference = {}
    for k in K_VALUES:
        scores = [probe_accuracy(raw, y, train, test, k) for y in labels.values()]
        reference[f"raw_probe_acc_k{k}_mean"] = float(np.mean(scores))
    correct = {name: probe_correct(raw, y, train, test, None) for name, y in labels.items()}
    reference["raw_probe_acc_full_mean"] = float(np.mean([c.mean() for c in correct.values()]))
    chance = {name: majority_rate(y, train, test) for name, y in labels.items()}
    reference |= {f"probe_chance_{name}": rate for name, rate in chance.items()}
    reference["probe_chance_mean"] = float(np.mean(list(chance.values())))
    return train, test, reference, correct


def validity(ctx) -> list[Validity]:
    """The full-width raw probe's test accuracy vs the majority rate + MARGIN, per label and for
    the mean over labels (bootstrap over test examples). Never touches ctx.sae."""
    _, _, reference, correct = raw_reference(ctx, VALIDITY_SEED)
    how = (
        f"logistic regression on all raw dimensions, test accuracy on seed {VALIDITY_SEED}'s "
        "split vs the train majority class's test rate; 95% percentile bootstrap over test "
        "examples"
    )
    checks = []
    for name, flags in correct.items():
        checks.append(
            Validity(
                name=f"raw_probe_acc_full_{name}",
                reference=float(flags.mean()),
                low=bootstrap_interval(flags, seed=BOOTSTRAP_SEED).low,
                chance=reference[f"probe_chance_{name}"],
                margin=MARGIN,
                description=how,
                # Exact names, no wildcard: `*` would let label "x" govern label "y_x".
                governs=tuple(f"probe_acc_k{k}_{name}" for k in K_VALUES),
            )
        )
    # Per test example, the share of labels the probe gets right: the mean over labels is the
    # mean of these, resampled together (the labels share their examples).
    per_example = np.mean(np.stack(list(correct.values())), axis=0)
    checks.append(
        Validity(
            name="raw_probe_acc_full_mean",
            reference=reference["raw_probe_acc_full_mean"],
            low=bootstrap_interval(per_example, seed=BOOTSTRAP_SEED).low,
            chance=reference["probe_chance_mean"],
            margin=MARGIN,
            description=how + "; mean over labels",
        )
    )
    return checks


def chance_metrics() -> dict[str, MetricInfo]:
    """MetricInfo (with its chance level) for each toy-world label's probe_acc_k<k>_<label>.
    One pattern per k, so "probe_acc_k1_topic_*" cannot match a user label such as
    "label_topic_x" (a leading `*` would absorb "1_label")."""
    return {
        f"probe_acc_k{k}_{label}": MetricInfo(True, floor=0.03, chance=rate)
        for k in K_VALUES
        for label, rate in TOY_CHANCE.items()
    }


def run(ctx) -> dict:
    import torch

    acts, labels, train, test, reference, pool = shared_inputs(ctx)
    device = ctx.device

    def encode(x):
        with torch.no_grad():
            return ctx.sae.encode(x.to(device)).cpu()

    pooled = pool(acts, encode).numpy()
    metrics = dict(reference)
    for k in K_VALUES:
        scores = {}
        for name, y in labels.items():
            scores[name] = probe_accuracy(pooled, y, train, test, k)
            metrics[f"probe_acc_k{k}_{name}"] = scores[name]
        metrics[f"probe_acc_k{k}_mean"] = float(np.mean(list(scores.values())))
    return metrics


def supports(model: ModelHandle, options: dict[str, str]) -> str | None:
    if "pooling" in options:
        pooling_of(options)
    if "data" in options:
        file_examples(options["data"])  # fail before any training, with the fix
        return None
    if model.world is None:
        return (
            "sparse_probing needs labelled texts: pass --task-option "
            "sparse_probing.data=FILE (a text,label CSV or JSONL)"
        )
    return None


def plot(results: pd.DataFrame, run_dir: RunDir) -> list[Path]:
    """Mean test accuracy of the k = 1 and k = 20 probes against L0, one curve per method (seed
    mean, 95% interval bars, knob labels; baselines dashed): no averaging over knobs."""
    from saebench.plots import frontier_plot

    paths = []
    for k in (1, 20):
        metric = f"probe_acc_k{k}_mean"
        path = run_dir.plot_path(f"sparse_probing_k{k}.png")
        label = f"mean test accuracy, {k}-latent probe"
        if frontier_plot(results, path, metric, label, log_y=False).startswith("wrote"):
            paths.append(path)
    return paths


@hookimpl
def register_tasks(register):
    register(
        TaskSpec(
            name="sparse_probing",
            description="Top-k latent logistic probes for topic/sentiment/tense/number vs raw activations",
            run=run,
            supports=supports,
            plot=plot,
            options=OPTIONS,
            validity=validity,
            # Order matters: the first matching pattern wins (the toy labels' chance first).
            metrics={
                **chance_metrics(),
                "probe_acc_k*": MetricInfo(
                    True, floor=0.03, description="test accuracy; chance: probe_chance_*"
                ),
                "raw_probe_acc_*": MetricInfo(None, description="reference: raw activations"),
                "probe_chance_*": MetricInfo(
                    None, description="chance: test rate of the train split's majority class"
                ),
            },
        )
    )
