"""What every cell of sparse_probing shares: the pooled activations, each label's balanced
train/test sets for a seed, and the raw-activation references that decide which labels are
scored. Computed once per (preset, options[, seed]) through ctx.once; none touches ctx.sae."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saebench.errors import ConfigError
from saebench.probing import (
    POOLING,
    balanced_rows,
    best_dimension_accuracy,
    example_activations,
    probe_accuracy,
    probe_correct,
    split_indices,
)

from .labels import LabelledTexts, ProbeLabel, file_labels, toy_labels

N_EXAMPLES = {"smoke": 1200, "default": 2000, "full": 6000}
DEFAULT_K = (1, 2, 5)
# The split the label choice and the validity gate are measured on: not a cell seed, so no
# cell is scored on the rows that chose its labels.
VALIDITY_SEED = 10_007
FULL_MIN = 0.9  # a scored label is read by the full-width raw probe at least this well
TRIVIAL_MAX = 0.9  # ... and by the best single raw dimension less well than this


@dataclass(frozen=True)
class LabelSplit:
    """One label's balanced train and test rows for one seed (half positive each)."""

    label: ProbeLabel
    train: np.ndarray
    test: np.ndarray


@dataclass(frozen=True)
class LabelReference:
    """The raw-activation references of one label on one seed's split."""

    full: float  # the full-width logistic probe's test accuracy
    full_correct: np.ndarray  # its per-test-example correctness (for the bootstrap)
    dimension: float  # the best single raw dimension (a stump picked on train), test accuracy
    top_k: dict[int, float]  # the top-k raw-dimension probes, test accuracy

    @property
    def status(self) -> str:
        """ "scored", or why not. Each threshold is read against the 95% upper end of the
        accuracy (normal approximation over the test examples), so a label near a threshold is
        kept when its full probe might reach FULL_MIN and dropped when one dimension might
        reach TRIVIAL_MAX: the choice does not flip with the split's noise."""
        n = len(self.full_correct)
        upper = lambda p: p + 1.96 * np.sqrt(p * (1 - p) / max(n, 1))  # noqa: E731
        if upper(self.full) < FULL_MIN:
            return f"unreadable (full raw probe {self.full:.3f}, 95% upper end < {FULL_MIN})"
        if upper(self.dimension) >= TRIVIAL_MAX:
            return (
                f"trivial (one raw dimension {self.dimension:.3f}, 95% upper end >= {TRIVIAL_MAX})"
            )
        return "scored"


def k_values(options: dict[str, str]) -> tuple[int, ...]:
    """The probe sizes: SAEBench's 1, 2, 5 unless `k=` lists others (e.g. k=1,2,5,20)."""
    text = options.get("k")
    if text is None:
        return DEFAULT_K
    try:
        ks = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        ks = ()
    if not ks or ks[0] < 1:
        raise ConfigError(
            f"sparse_probing.k={text!r}: give positive integers separated by commas, e.g. k=1,2,5,20"
        )
    return ks


def pooling_of(options: dict[str, str]) -> str:
    pooling = options.get("pooling", "mean")
    if pooling not in POOLING:
        raise ConfigError(f"sparse_probing.pooling={pooling!r}; choose one of {', '.join(POOLING)}")
    return pooling


def _options_key(ctx) -> tuple:
    return tuple(sorted((k, v) for k, v in ctx.options.items() if k != "k"))


def labelled_texts(ctx) -> LabelledTexts:
    if "data" in ctx.options:
        return file_labels(ctx.options["data"])
    return toy_labels(ctx.model.world, N_EXAMPLES.get(ctx.preset, N_EXAMPLES["default"]))


def pooled_inputs(ctx):
    """(per-example activations, labels, pooled raw activations [n, d], pooling function)."""
    return ctx.once(("pooled", ctx.preset, _options_key(ctx)), lambda: _pooled_inputs(ctx))


def _pooled_inputs(ctx):
    pool = POOLING[pooling_of(ctx.options)]
    data = labelled_texts(ctx)
    acts = example_activations(
        ctx.model.bridge, ctx.model.tokenizer, ctx.hook, data.texts, ctx.device
    )
    return acts, data.labels, pool(acts).numpy(), pool


def label_splits(labels: tuple[ProbeLabel, ...], n: int, seed: int) -> list[LabelSplit]:
    """Per label, the balanced sets inside the seed's 70/30 split of the texts: the split is
    shared by the labels, the balancing draws are the label's own (salted by its index)."""
    train, test = split_indices(n, seed)
    return [
        LabelSplit(
            label,
            balanced_rows(label.positive, train, label.classes, seed=seed * 1_000 + 2 * i),
            balanced_rows(label.positive, test, label.classes, seed=seed * 1_000 + 2 * i + 1),
        )
        for i, label in enumerate(labels)
    ]


def raw_references(ctx, seed: int) -> list[tuple[LabelSplit, LabelReference]]:
    """Per label, its balanced split for `seed` and the raw references on it."""
    key = ("reference", ctx.preset, seed, _options_key(ctx), k_values(ctx.options))
    return ctx.once(key, lambda: _raw_references(ctx, seed))


def _raw_references(ctx, seed: int):
    _, labels, raw, _ = pooled_inputs(ctx)
    out = []
    for split in label_splits(labels, len(raw), seed):
        y, train, test = split.label.positive, split.train, split.test
        correct = probe_correct(raw, y, train, test, None)
        _, dimension = best_dimension_accuracy(raw, y, train, test)
        top_k = {k: probe_accuracy(raw, y, train, test, k) for k in k_values(ctx.options)}
        out.append((split, LabelReference(float(correct.mean()), correct, dimension, top_k)))
    return out


def scored_labels(ctx) -> dict[str, str]:
    """{label: status} on VALIDITY_SEED's split: "scored", or why not (trivial, unreadable).
    Fixed by one seed, so every seed and method averages the same labels."""
    return {
        split.label.name: reference.status
        for split, reference in raw_references(ctx, VALIDITY_SEED)
    }
