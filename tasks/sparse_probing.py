"""Task `sparse_probing` (SAEBench / Gao et al. style).

For each binary label (toy world: each topic vs the rest, sentiment, tense, number; any model: the
labels of a `text,label` CSV or JSONL file given as `--task-option sparse_probing.data=FILE`, one
label per class vs the rest, or one label when there are two classes), SAE latents are pooled
over each text's tokens (`pooling=mean`: encode each token, then average; `pooling=last`: the
last token, where a causal model has read the whole text), the top-k latents
by |mean_pos − mean_neg| are picked on the train split, and a logistic regression (C = 1) on them
is scored on the test split, for k ∈ {1, 2, 5, 20}. The same probe on the raw activations (top-k
dimensions and full width) is reported as the reference. The split is fixed by the seed; nothing
is selected on the test split.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from saebench.errors import ConfigError
from saebench.hookspecs import hookimpl
from saebench.probing import POOLING, example_activations, probe_accuracy, split_indices
from saebench.specs import MetricInfo, ModelHandle, TaskSpec

if TYPE_CHECKING:
    import pandas as pd

    from saebench.rundir import RunDir

K_VALUES = (1, 2, 5, 20)
N_EXAMPLES = {"smoke": 300, "default": 1200, "full": 4000}
DATA_SEED = 4242
MIN_PER_CLASS = 10
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
    """Per-example activations and raw-activation probe scores: once per (preset, seed,
    options)."""
    key = ("inputs", ctx.preset, ctx.seed, tuple(sorted(ctx.options.items())))
    return ctx.once(key, lambda: _shared_inputs(ctx))


def _shared_inputs(ctx):
    options = ctx.options
    pool = POOLING[pooling_of(options)]
    if "data" in options:
        texts, labels = file_examples(options["data"])
    else:
        texts, labels = labelled_examples(ctx.model.world, N_EXAMPLES.get(ctx.preset, 1200))
    acts = example_activations(ctx.model.bridge, ctx.model.tokenizer, ctx.hook, texts, ctx.device)
    raw = pool(acts).numpy()
    train, test = split_indices(len(texts), ctx.seed)
    reference = {}
    for k in K_VALUES:
        scores = [probe_accuracy(raw, y, train, test, k) for y in labels.values()]
        reference[f"raw_probe_acc_k{k}_mean"] = float(np.mean(scores))
    full = [probe_accuracy(raw, y, train, test, None) for y in labels.values()]
    reference["raw_probe_acc_full_mean"] = float(np.mean(full))
    return acts, labels, train, test, reference, pool


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
    """Mean probe accuracy vs k per method (seed- and knob-mean), with the raw reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from saebench.fileio import save_figure

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
    raw = [
        (k, results[results.metric == f"raw_probe_acc_k{k}_mean"].value.mean()) for k in K_VALUES
    ]
    ax.plot(*zip(*raw), "k--", label="raw activations")
    ax.set_xscale("log")
    ax.set_xlabel("k (latents in the probe)")
    ax.set_ylabel("mean test accuracy")
    ax.legend()
    fig.tight_layout()
    path = run_dir.plot_path("sparse_probing.png")
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return [path]


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
            metrics={
                "probe_acc_k*": MetricInfo(True, floor=0.03),
                "raw_probe_acc_*": MetricInfo(None, description="reference: raw activations"),
            },
        )
    )
