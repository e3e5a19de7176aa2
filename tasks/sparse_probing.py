"""Task `sparse_probing` (SAEBench / Gao et al. style).

For each binary label (toy world: each topic vs the rest, sentiment, tense, number), SAE latents
are mean-pooled over each sentence's tokens (encode each token, then average), the top-k latents
by |mean_pos − mean_neg| are picked on the train split, and a logistic regression (C = 1) on them
is scored on the test split, for k ∈ {1, 2, 5, 20}. The same probe on the raw activations (top-k
dimensions and full width) is reported as the reference. The split is fixed by the seed; nothing
is selected on the test split.
"""
from __future__ import annotations

import numpy as np

from saebench.hookspecs import hookimpl
from saebench.probing import example_activations, mean_pool, probe_accuracy, split_indices
from saebench.specs import MetricInfo, TaskSpec

K_VALUES = (1, 2, 5, 20)
N_EXAMPLES = {"smoke": 300, "default": 1200, "full": 4000}
DATA_SEED = 4242


def labelled_examples(world, n: int):
    examples = world.generate("probing", n, seed=DATA_SEED)
    labels = {f"topic_{t}": np.array([e.labels["topic"] == t for e in examples])
              for t in world.variables()["probing"]["topic"]}
    labels["sentiment"] = np.array([e.labels["sentiment"] == "positive" for e in examples])
    labels["tense"] = np.array([e.labels["tense"] == "past" for e in examples])
    labels["number"] = np.array([e.labels["number"] == "plural" for e in examples])
    return [e.text for e in examples], labels


def shared_inputs(ctx):
    """Per-example activations and raw-activation probe scores: once per (hook, preset, seed)."""
    key = ("sparse_probing", ctx.hook, ctx.preset, ctx.seed)
    if key not in ctx.cache:
        texts, labels = labelled_examples(ctx.model.world, N_EXAMPLES.get(ctx.preset, 1200))
        acts = example_activations(ctx.model.bridge, ctx.model.tokenizer, ctx.hook, texts, ctx.device)
        raw = mean_pool(acts).numpy()
        train, test = split_indices(len(texts), ctx.seed)
        reference = {}
        for k in K_VALUES:
            scores = [probe_accuracy(raw, y, train, test, k) for y in labels.values()]
            reference[f"raw_probe_acc_k{k}_mean"] = float(np.mean(scores))
        full = [probe_accuracy(raw, y, train, test, None) for y in labels.values()]
        reference["raw_probe_acc_full_mean"] = float(np.mean(full))
        ctx.cache[key] = (acts, labels, train, test, reference)
    return ctx.cache[key]


def run(ctx) -> dict:
    import torch

    acts, labels, train, test, reference = shared_inputs(ctx)
    device = ctx.device

    def encode(x):
        with torch.no_grad():
            return ctx.sae.encode(x.to(device)).cpu()

    pooled = mean_pool(acts, encode).numpy()
    metrics = dict(reference)
    for k in K_VALUES:
        scores = {}
        for name, y in labels.items():
            scores[name] = probe_accuracy(pooled, y, train, test, k)
            metrics[f"probe_acc_k{k}_{name}"] = scores[name]
        metrics[f"probe_acc_k{k}_mean"] = float(np.mean(list(scores.values())))
    return metrics


def supports(model):
    if model.world is None:
        return "sparse_probing needs labelled data; it runs on the toy world (model.world)"
    return None


def plot(results, run_dir):
    """Mean probe accuracy vs k per method (seed- and knob-mean), with the raw reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for k in K_VALUES:
        for method, group in results[results.metric == f"probe_acc_k{k}_mean"].groupby("method"):
            rows.append((method, k, group.value.mean()))
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in sorted({r[0] for r in rows}):
        points = [(k, v) for m, k, v in rows if m == method]
        ax.plot(*zip(*points), marker="o", label=method)
    raw = [(k, results[results.metric == f"raw_probe_acc_k{k}_mean"].value.mean()) for k in K_VALUES]
    ax.plot(*zip(*raw), "k--", label="raw activations")
    ax.set_xscale("log")
    ax.set_xlabel("k (latents in the probe)")
    ax.set_ylabel("mean test accuracy")
    ax.legend()
    fig.tight_layout()
    path = run_dir / "plots" / "sparse_probing.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


@hookimpl
def register_tasks(register):
    register(TaskSpec(
        name="sparse_probing",
        description="Top-k latent logistic probes for topic/sentiment/tense/number vs raw activations",
        run=run, supports=supports, plot=plot,
        metrics={"probe_acc_k*": MetricInfo(True, floor=0.03),
                 "raw_probe_acc_*": MetricInfo(None, description="reference: raw activations")},
    ))
