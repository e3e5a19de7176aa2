"""The ground truth: a raw-activation probe per parent value, its held-out F1, and the gate.

Per parent value, a one-vs-rest logistic regression (C = 1, class-balanced as SAEBench's
pos-weighted BCE) is fitted on the train words' tokens of raw activations (centred and divided
by one global scale, so its direction in activation space is unchanged). A held-out token is a
probe positive for the value when the probe's decision value is > 0. The probe's F1 on the
held-out words' tokens says whether the parent concept is linearly present at the hook for
words the probe never saw; its interval resamples held-out words (stratified by value), since
the tokens of one word are not independent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from saebench_tasks.absorption import config
from saebench_tasks.absorption.hierarchy import Hierarchy, split_words


@dataclass(frozen=True)
class ConceptTokens:
    """The child-word tokens of one hierarchy at one hook."""

    hierarchy: Hierarchy
    acts: torch.Tensor  # float [n, d_in]: raw activations at the child word's last token
    words: np.ndarray  # str [n]
    parents: np.ndarray  # str [n]
    held_out: np.ndarray  # bool [n]: the token's word is a held-out word


@dataclass(frozen=True)
class ValueProbe:
    """The ground-truth probe of one parent value."""

    value: str
    direction: torch.Tensor  # float64 [d_in], in raw activation space (not normalised)
    scores: np.ndarray  # float [n]: decision value on every token (> 0: positive)
    held_out_f1: float


@dataclass(frozen=True)
class GroundTruth:
    """The probes of one hierarchy and the held-out F1 the gate reads."""

    tokens: ConceptTokens
    probes: tuple[ValueProbe, ...]
    f1: float  # mean held-out F1 over values
    f1_low: float  # lower end of its 95% interval (held-out words resampled)
    chance: float  # mean F1 of always predicting positive (2π / (1 + π), π the value's share)


def concept_tokens(ctx, hierarchy: Hierarchy) -> ConceptTokens:
    """Activations at ctx.hook at each prefix's last token (each prefix run on its own)."""
    from saebench.probing import example_activations

    texts = [text for text, _ in hierarchy.prefixes]
    per_text = example_activations(
        ctx.model.bridge, ctx.model.tokenizer, ctx.hook, texts, ctx.device
    )
    words = np.array([word for _, word in hierarchy.prefixes])
    held_out_words = split_words(hierarchy.parent_of)
    return ConceptTokens(
        hierarchy=hierarchy,
        acts=torch.stack([a[-1] for a in per_text]).float(),
        words=words,
        parents=np.array([hierarchy.parent_of[w] for w in words]),
        held_out=np.isin(words, sorted(held_out_words)),
    )


def fit_probes(tokens: ConceptTokens) -> list[ValueProbe]:
    """One probe per parent value, fitted on the train words' tokens (module docstring)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    x = tokens.acts.double().numpy()
    train = ~tokens.held_out
    mean = x[train].mean(0)
    scale = float(np.sqrt(((x[train] - mean) ** 2).sum(1).mean() / x.shape[1])) or 1.0
    z = (x - mean) / scale
    probes = []
    for value in tokens.hierarchy.values:
        labels = tokens.parents == value
        model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
        model.fit(z[train], labels[train])
        scores = model.decision_function(z)
        f1 = f1_score(labels[tokens.held_out], scores[tokens.held_out] > 0, zero_division=0.0)
        direction = torch.from_numpy(model.coef_[0] / scale)
        probes.append(ValueProbe(value, direction, scores, float(f1)))
    return probes


def word_bootstrap_f1(
    tokens: ConceptTokens,
    probes: list[ValueProbe],
    n_resamples: int = config.BOOTSTRAP_RESAMPLES,
    seed: int = config.BOOTSTRAP_SEED,
) -> np.ndarray:
    """Mean-over-values held-out F1 of `n_resamples` resamples of the held-out words, drawn
    with replacement within each parent value (so every value keeps its number of words)."""
    held = tokens.held_out
    words = sorted(set(tokens.words[held]))
    index = {w: i for i, w in enumerate(words)}
    column = np.array([index[w] for w in tokens.words[held]])
    n_words = np.bincount(column, minlength=len(words)).astype(float)
    parent = np.array([tokens.hierarchy.parent_of[w] for w in words])
    values = [p.value for p in probes]
    member = np.stack([parent == v for v in values]).astype(float)  # [V, W]
    predicted = np.stack(
        [np.bincount(column, weights=p.scores[held] > 0, minlength=len(words)) for p in probes]
    )  # [V, W]: tokens of each word the value's probe calls positive
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_resamples, len(words)))
    rows = np.arange(n_resamples)[:, None] * len(words)
    for value in values:
        pool = np.flatnonzero(parent == value)
        draws = pool[rng.integers(0, len(pool), size=(n_resamples, len(pool)))]
        counts += np.bincount((draws + rows).ravel(), minlength=counts.size).reshape(counts.shape)
    tp = counts @ (predicted * member).T
    fp = counts @ (predicted * (1 - member)).T
    fn = counts @ ((n_words[None, :] - predicted) * member).T
    f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1e-12), 0.0)
    return f1.mean(axis=1)


def ground_truth(tokens: ConceptTokens) -> GroundTruth:
    probes = fit_probes(tokens)
    resampled = word_bootstrap_f1(tokens, probes)
    alpha = 1 - 0.95
    held_parents = tokens.parents[tokens.held_out]
    shares = [float(np.mean(held_parents == p.value)) for p in probes]
    return GroundTruth(
        tokens=tokens,
        probes=tuple(probes),
        f1=float(np.mean([p.held_out_f1 for p in probes])),
        f1_low=float(np.quantile(resampled, alpha / 2)),
        chance=float(np.mean([2 * s / (1 + s) for s in shares])),
    )


def threshold(chance: float) -> float:
    """What the gate needs at the 95% lower end: SAEBench's MIN_PROBE_F1, or chance +
    VALIDITY_MARGIN where always answering positive already scores near it."""
    return max(config.MIN_PROBE_F1, chance + config.VALIDITY_MARGIN)


def passes(truth: GroundTruth) -> bool:
    return truth.f1_low > threshold(truth.chance)
