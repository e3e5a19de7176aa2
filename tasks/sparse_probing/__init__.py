"""Task `sparse_probing`, as SAEBench defines it (Gao et al. 2024; Gurnee et al. 2023).

Texts (toy world: its probing sentences; any model: a user's `text,label` CSV or JSONL given as
`--task-option sparse_probing.data=FILE`) are pooled over their tokens (`pooling=mean`: encode
each token, then average, as SAEBench; `pooling=last`: the last token). Each binary label is one
class against an equal-size sample of the other classes, stratified so every other class gives
the same number of negatives (SAEBench's balanced sets): every train and test set is exactly
half positive, so chance is 1/2 for every label. The top-k latents by |mean_pos − mean_neg| are
picked on the train set and a logistic regression (C = 1, standardised on train statistics) on
them is scored on the test set, for k ∈ {1, 2, 5} (`k=1,2,5,20` asks for others). The split
(70/30 of the texts, then balanced per label) is fixed by the seed; nothing is picked on test.

Which labels are scored: a probing label is informative only if the information is at the hook
and not already in one raw dimension. On VALIDITY_SEED's split (not a cell seed), the full-width
logistic probe on the raw activations must reach FULL_MIN (else "unreadable") and the best
single raw dimension (a threshold with its sign, picked on train) must stay below TRIVIAL_MAX
(else "trivial"), each read against its accuracy's 95% upper end; the
headline probe_acc_k<k>_mean averages the scored labels only, the same set for every seed and
method. Every label's accuracies and references are still reported. On the shipped toy model
(blocks.1.hook_resid_pre, mean pooling) the six topics and the adjective's polarity are scored;
tense, number and negation are trivial and sentiment (it needs the negation) unreadable
(docs/calibration.md has the numbers).

References in every cell: raw_probe_acc_k<k>_mean (the same probe on raw dimensions),
raw_probe_acc_dim_mean (one raw dimension), raw_probe_acc_full_mean (all of them), each over the
scored labels, and per label; chance (0.5) is declared on the metrics.

Validity: per label, the full raw probe's 95% bootstrap lower end (test examples resampled)
must exceed 1/2 + MARGIN, else that label's probe_acc_* are dropped; overall, the mean over the
scored labels, else the cells are `uninformative` (with no scored label, the reference is NaN
and fails, its description naming every label's status).

Departures from SAEBench: its datasets are replaced by the toy world's labels (or the user's);
its GPU probe keeps the epoch with the best test accuracy, this one is fit on train only; the
label choice by raw references is ours (SAEBench scores every class of its datasets).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from saebench.hookspecs import hookimpl
from saebench.probing import bootstrap_mean_samples, lower_end, probe_accuracy
from saebench.specs import MetricInfo, ModelHandle, TaskSpec, Validity

from .labels import file_labels
from .reference import (
    FULL_MIN,
    TRIVIAL_MAX,
    VALIDITY_SEED,
    k_values,
    pooled_inputs,
    pooling_of,
    raw_references,
    scored_labels,
)

if TYPE_CHECKING:
    import pandas as pd

    from saebench.rundir import RunDir

__all__ = ["METRICS", "plot", "register_tasks", "run", "supports", "validity"]

CHANCE = 0.5  # every balanced set is half positive
MARGIN = 0.05  # the raw probe's 95% lower end must beat chance by this much
BOOTSTRAP_SEED = 0
OPTIONS = {
    "data": "CSV or JSONL file with `text` and `label` columns (default: toy-world labels)",
    "pooling": "mean (default) or last: how a text's token activations become one vector",
    "k": "probe sizes, comma-separated (default 1,2,5)",
}
# Order matters: the first matching pattern wins (the means before the per-label values).
METRICS = {
    "probe_acc_k*_mean": MetricInfo(
        True, floor=0.03, chance=CHANCE, description="held-out accuracy on a balanced set"
    ),
    # One label's k-latent probe moves with which latents the SAE happens to offer: two equally
    # good gated SAEs (2 vs 1 torch threads) differ by 0.11 on one topic at k = 1.
    "probe_acc_k*": MetricInfo(
        True, floor=0.15, chance=CHANCE, description="one label, held-out balanced accuracy"
    ),
    "probe_labels_scored": MetricInfo(None, description="labels in the headline means"),
    "raw_probe_acc_*": MetricInfo(
        None, chance=CHANCE, description="reference: the same probe on raw activations"
    ),
}


def run(ctx) -> dict:
    import torch

    acts, _, _, pool = pooled_inputs(ctx)

    def encode(x):
        with torch.no_grad():
            return ctx.sae.encode(x.to(ctx.device)).cpu()

    pooled = pool(acts, encode).numpy()
    scored = [name for name, status in scored_labels(ctx).items() if status == "scored"]
    ks = k_values(ctx.options)
    metrics: dict[str, float] = {"probe_labels_scored": float(len(scored))}
    by_name: dict[str, dict[str, float]] = {}
    for split, reference in raw_references(ctx, ctx.seed):
        name, y = split.label.name, split.label.positive
        values = {
            f"probe_acc_k{k}": probe_accuracy(pooled, y, split.train, split.test, k) for k in ks
        }
        values |= {f"raw_probe_acc_k{k}": reference.top_k[k] for k in ks}
        values |= {"raw_probe_acc_full": reference.full, "raw_probe_acc_dim": reference.dimension}
        by_name[name] = values
        metrics |= {f"{metric}_{name}": value for metric, value in values.items()}
    for metric in next(iter(by_name.values())):
        metrics[f"{metric}_mean"] = (
            float(np.mean([by_name[name][metric] for name in scored])) if scored else float("nan")
        )
    return metrics


def validity(ctx) -> list[Validity]:
    """Per label and over the scored labels: the full-width raw probe's balanced test accuracy
    against 1/2 + MARGIN (bootstrap lower end). Never touches ctx.sae."""
    references = raw_references(ctx, VALIDITY_SEED)
    statuses = scored_labels(ctx)
    how = (
        f"logistic regression on all raw dimensions, balanced test set of seed {VALIDITY_SEED}'s "
        "split; 95% percentile bootstrap over test examples"
    )
    checks, samples = [], []
    for split, reference in references:
        name = split.label.name
        resampled = bootstrap_mean_samples(reference.full_correct, seed=BOOTSTRAP_SEED)
        if statuses[name] == "scored":
            samples.append(resampled)
        checks.append(
            Validity(
                name=f"raw_probe_acc_full_{name}",
                reference=reference.full,
                low=lower_end(resampled),
                chance=CHANCE,
                margin=MARGIN,
                description=f"{how}; {statuses[name]}",
                # Exact names, no wildcard: `*` would let label "x" govern label "y_x".
                governs=tuple(f"probe_acc_k{k}_{name}" for k in k_values(ctx.options)),
            )
        )
    summary = "; ".join(f"{name}: {status}" for name, status in statuses.items())
    scored_full = [r.full for s, r in references if statuses[s.label.name] == "scored"]
    # Labels have their own test sets: resample b of the mean is the mean of each label's b.
    checks.append(
        Validity(
            name="raw_probe_acc_full_mean",
            reference=float(np.mean(scored_full)) if scored_full else float("nan"),
            low=lower_end(np.mean(samples, axis=0)) if samples else float("nan"),
            chance=CHANCE,
            margin=MARGIN,
            description=f"{how}; mean over the scored labels (full probe >= {FULL_MIN}, one "
            f"raw dimension < {TRIVIAL_MAX}): {summary}",
        )
    )
    return checks


def supports(model: ModelHandle, options: dict[str, str]) -> str | None:
    pooling_of(options)
    k_values(options)
    if "data" in options:
        file_labels(options["data"])  # fail before any training, with the fix
        return None
    if model.world is None:
        return (
            "sparse_probing needs labelled texts: pass --task-option "
            "sparse_probing.data=FILE (a text,label CSV or JSONL)"
        )
    return None


def plot(results: pd.DataFrame, run_dir: RunDir) -> list[Path]:
    """Mean held-out accuracy of the smallest and largest probes against L0, one curve per
    method, with chance and the raw references (one dimension, top-k, full) as lines."""
    from saebench.plots import frontier_plot

    ks = sorted(
        {int(m[len("probe_acc_k") : -len("_mean")]) for m in results.metric.unique()
         if m.startswith("probe_acc_k") and m.endswith("_mean")}
    )  # fmt: skip
    paths = []
    for k in sorted({ks[0], ks[-1]}) if ks else []:
        metric = f"probe_acc_k{k}_mean"
        path = run_dir.plot_path(f"sparse_probing_k{k}.png")
        lines = {"chance": CHANCE}
        for label, name in (
            ("raw, 1 dimension", "raw_probe_acc_dim_mean"),
            (f"raw, top {k}", f"raw_probe_acc_k{k}_mean"),
            ("raw, full", "raw_probe_acc_full_mean"),
        ):
            values = results.loc[results.metric == name, "value"]
            if values.notna().any():
                lines[label] = float(values.mean())
        label = f"mean held-out accuracy, {k}-latent probe"
        if frontier_plot(results, path, metric, label, log_y=False, lines=lines).startswith(
            "wrote"
        ):
            paths.append(path)
    return paths


@hookimpl
def register_tasks(register):
    register(
        TaskSpec(
            name="sparse_probing",
            description="SAEBench sparse probing: top-k latents, balanced one-vs-rest labels, vs raw references",
            run=run,
            supports=supports,
            plot=plot,
            options=OPTIONS,
            validity=validity,
            metrics=METRICS,
        )
    )
