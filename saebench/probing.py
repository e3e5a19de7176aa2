"""Pure helpers for probing-style tasks: per-example activations, top-k probes, AUROC/F1,
train/held-out selection and the bootstrap intervals of the tasks' validity references.

Kept free of task plumbing so each formula is unit-testable against a brute-force reference.
Selection protocol: wherever a best column (or top-k columns) is picked, it is picked on the
train split and scored on the held-out split: a max over many candidates scored on the data it
was picked on is biased upwards (the best of 128 noise columns reaches AUROC 0.70 with ~12
positives), while its held-out score falls back to chance.
"""

from __future__ import annotations

import numpy as np
import torch

from saebench.interventions import length_batches


@torch.no_grad()
def example_activations(
    bridge, tokenizer, hook: str, texts: list[str], device, batch_size: int = 64
) -> list[torch.Tensor]:
    """Activations at `hook` for each text on its own (BOS/CLS + text), the prefix dropped:
    [len_i, d]. Texts are batched by token length, never padded, so the result is the same for
    causal models and bidirectional encoders (where padding would leak into every position)."""
    prefix_id = tokenizer.bos_token_id
    if prefix_id is None:
        prefix_id = getattr(tokenizer, "cls_token_id", None)
    prefix = [] if prefix_id is None else [prefix_id]
    sequences = [prefix + tokenizer.encode(t, add_special_tokens=False) for t in texts]
    out: list = [None] * len(texts)
    for chunk in length_batches(sequences, batch_size):
        tokens = torch.tensor([sequences[i] for i in chunk], device=device)
        _, cache = bridge.run_with_cache(tokens, names_filter=hook)
        acts = cache[hook].float().cpu()
        for row, index in enumerate(chunk):
            out[index] = acts[row, len(prefix) :]
    empty = [texts[i] for i, a in enumerate(out) if len(a) == 0]
    if empty:
        raise ValueError(f"{len(empty)} text(s) have no tokens (e.g. {empty[0]!r}); drop them")
    return out


def mean_pool(per_example: list[torch.Tensor], encode=None, batch: int = 4096) -> torch.Tensor:
    """Mean over each example's tokens of encode(acts) (SAE: encode each token, then average)."""
    lengths = [len(a) for a in per_example]
    flat = torch.cat(per_example)
    if encode is not None:
        flat = torch.cat([encode(flat[i : i + batch]) for i in range(0, len(flat), batch)])
    pooled = torch.stack([chunk.mean(0) for chunk in torch.split(flat, lengths)])
    return pooled.float().cpu()


def last_pool(per_example: list[torch.Tensor], encode=None, batch: int = 4096) -> torch.Tensor:
    """encode(acts) at each example's last token (where a causal model has read the whole text)."""
    last = torch.stack([a[-1] for a in per_example])
    if encode is not None:
        last = torch.cat([encode(last[i : i + batch]) for i in range(0, len(last), batch)])
    return last.float().cpu()


POOLING = {"mean": mean_pool, "last": last_pool}


def split_indices(n: int, seed: int, train_fraction: float = 0.7):
    order = np.random.default_rng(seed).permutation(n)
    cut = int(train_fraction * n)
    return order[:cut], order[cut:]


def label_strata(labels: np.ndarray) -> np.ndarray:
    """One stratum id per row of a [n, n_labels] boolean label matrix: rows with the same
    combination of labels share a stratum (so a stratified split keeps every label's
    positives, and their co-occurrences, on both sides)."""
    _, inverse = np.unique(np.asarray(labels, bool), axis=0, return_inverse=True)
    return np.asarray(inverse).reshape(-1)


def stratified_split(
    strata: np.ndarray, seed: int, train_fraction: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) sorted row indices; each stratum is split train_fraction / rest.

    A stratum of two or more rows puts at least one on each side; its fractional share is
    rounded at random (seeded), so the overall fraction is right in expectation. A singleton
    goes to train with probability train_fraction."""
    rng = np.random.default_rng(seed)
    strata = np.asarray(strata)
    train: list[int] = []
    for value in np.unique(strata):  # sorted: the same draws in the same order every time
        members = rng.permutation(np.flatnonzero(strata == value))
        share = train_fraction * len(members)
        n_train = int(share) + int(rng.random() < share - int(share))
        if len(members) >= 2:
            n_train = min(max(n_train, 1), len(members) - 1)
        train.extend(members[:n_train].tolist())
    train_rows = np.sort(np.array(train, dtype=np.int64))
    return train_rows, np.setdiff1d(np.arange(len(strata)), train_rows)


def top_k_by_mean_difference(features: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k columns with the largest |mean_pos − mean_neg| (train split only)."""
    difference = np.abs(features[labels].mean(0) - features[~labels].mean(0))
    return np.argsort(-difference, kind="stable")[:k]


def probe_accuracy(features: np.ndarray, labels: np.ndarray, train, test, k: int | None) -> float:
    """Logistic-regression test accuracy on the top-k columns (k=None: all columns)."""
    return float(probe_correct(features, labels, train, test, k).mean())


def probe_correct(
    features: np.ndarray, labels: np.ndarray, train, test, k: int | None
) -> np.ndarray:
    """Per test example, whether the logistic-regression probe on the top-k columns (picked on
    train; k=None: all columns) classifies it correctly: bool [len(test)]."""
    from sklearn.linear_model import LogisticRegression

    columns = (
        np.arange(features.shape[1])
        if k is None
        else top_k_by_mean_difference(features[train], labels[train], k)
    )
    x_train, x_test = features[train][:, columns], features[test][:, columns]
    # Standardise on train statistics only (latent scales differ by orders of magnitude).
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8
    probe = LogisticRegression(C=1.0, max_iter=1000)
    probe.fit((x_train - mean) / std, labels[train])
    return probe.predict((x_test - mean) / std) == labels[test]


def majority_rate(labels: np.ndarray, train, test) -> float:
    """Test accuracy of always predicting the train split's majority class: the chance level
    of a probe's accuracy (a probe that learned nothing predicts the prior)."""
    majority = labels[train].mean() >= 0.5
    return float((labels[test] == majority).mean())


def supervised_scores(features: np.ndarray, labels: np.ndarray, train, test) -> np.ndarray:
    """[len(test), n_labels] decision values of one logistic regression (C = 1, standardised on
    train statistics, as the probes) per label column of `labels` [n, n_labels], fit on train:
    the supervised direction every single-latent detector is read against."""
    from sklearn.linear_model import LogisticRegression

    x_train, x_test = features[train], features[test]
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    columns = []
    for y in np.asarray(labels, bool).T:
        probe = LogisticRegression(C=1.0, max_iter=1000).fit(x_train, y[train])
        columns.append(probe.decision_function(x_test))
    return np.stack(columns, axis=1)


def auroc_per_column(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AUROC of every column as a detector of `labels` (average ranks handle ties exactly)."""
    return auroc_matrix(scores, np.asarray(labels)[:, None])[0]


def auroc_matrix(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[n_labels, n_columns] AUROC of every column of `scores` [n, d] as a detector of every
    column of `labels` [n, n_labels]: the Mann-Whitney U from the positives' rank sums. One
    ranking serves every label, and the rank sums are exact (sums of half-integers), so each
    value is the same as ranking once per label."""
    from scipy.stats import rankdata

    labels = labels.astype(bool)
    n_pos = labels.sum(0)
    n_neg = len(labels) - n_pos
    if (n_pos == 0).any() or (n_neg == 0).any():
        raise ValueError("AUROC needs both positive and negative examples")
    rank_sums = labels.T.astype(np.float64) @ rankdata(scores, axis=0)
    return (rank_sums - (n_pos * (n_pos + 1) / 2)[:, None]) / (n_pos * n_neg)[:, None]


def f1_per_column(active: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """F1 of "column active" as a predicate for the label, per column."""
    return f1_matrix(active, np.asarray(labels)[:, None])[0]


def f1_matrix(active: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[n_labels, n_columns] F1 of "column active" (`active` [n, d]) as a predicate for every
    column of `labels` [n, n_labels]. The counts come from one matrix product (exact: sums of
    0/1 far below 2**53)."""
    labels = labels.astype(bool)
    true_positive = labels.T.astype(np.float64) @ active.astype(np.float64)
    precision = true_positive / np.maximum(active.sum(0), 1)
    recall = true_positive / np.maximum(labels.sum(0), 1)[:, None]
    return np.where(
        true_positive > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0
    )


def held_out_best_auroc(
    features: np.ndarray, labels: np.ndarray, train, test
) -> tuple[np.ndarray, np.ndarray]:
    """(picked column, its held-out AUROC) per label column of `labels` [n, n_labels]: the
    column of `features` [n, d] with the best AUROC on train, scored on test only."""
    labels = np.asarray(labels, bool)
    picked = auroc_matrix(features[train], labels[train]).argmax(1)
    held_out = auroc_matrix(features[test][:, picked], labels[test])
    return picked, np.diagonal(held_out).copy()


def held_out_best_f1(
    active: np.ndarray, labels: np.ndarray, train, test
) -> tuple[np.ndarray, np.ndarray]:
    """(picked column, its held-out F1) per label: "column active" with the best F1 on train."""
    labels = np.asarray(labels, bool)
    picked = f1_matrix(active[train], labels[train]).argmax(1)
    held_out = f1_matrix(active[test][:, picked], labels[test])
    return picked, np.diagonal(held_out).copy()


# --- bootstrap intervals over held-out examples (percentile method) -------------------------
# For the probing tasks' AUROC references: an AUROC is not a mean over examples, so
# saebench.stats.bootstrap_interval (a bootstrap of a mean) cannot resample it; accuracies are
# means of per-example 0/1 and use that.

N_RESAMPLES = 2000


def bootstrap_counts(n: int, n_resamples: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """[n_resamples, n] how often each of n examples is drawn in each resample."""
    rows = np.random.default_rng(seed).integers(n, size=(n_resamples, n))
    return np.stack([np.bincount(r, minlength=n) for r in rows]).astype(np.float64)


def weighted_auroc(scores: np.ndarray, labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """[n_resamples] AUROC of `scores` [n] for `labels` [n] with example i counted counts[b, i]
    times (a bootstrap resample): the Mann-Whitney U over the weighted pairs, ties counting ½.
    Exactly the AUROC of the resampled rows, in O(n_resamples · n) after one sort. NaN where a
    resample has no positive or no negative."""
    order = np.argsort(scores, kind="stable")
    sorted_scores, positive = scores[order], np.asarray(labels, bool)[order]
    weights = counts[:, order]
    negatives = weights * ~positive
    before = np.cumsum(negatives, axis=1) - negatives  # negatives strictly earlier in the order
    # Tie groups: every member sees the negatives before the group's start and ½ of the group.
    new_group = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
    start = np.maximum.accumulate(np.where(new_group, np.arange(len(order)), 0))
    group_id = np.cumsum(new_group) - 1
    group_negatives = np.zeros((len(counts), group_id[-1] + 1))
    np.add.at(group_negatives.T, group_id, negatives.T)
    below = before[:, start] + 0.5 * group_negatives[:, group_id]
    n_pos = (weights * positive).sum(1)
    n_neg = negatives.sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        auroc = ((weights * positive) * below).sum(1) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auroc, np.nan)


def bootstrap_aurocs(
    scores: np.ndarray, labels: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> np.ndarray:
    """[n_resamples, n_labels] AUROC of scores[:, j] for labels[:, j] on resampled examples (the
    same rows for every label, so means over labels keep their correlation). NaN where a
    resample lacks a positive or a negative of that label."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    counts = bootstrap_counts(len(scores), n_resamples, seed)
    return np.stack(
        [weighted_auroc(scores[:, j], labels[:, j], counts) for j in range(labels.shape[1])],
        axis=1,
    )


def lower_end(samples: np.ndarray, confidence: float = 0.95) -> float:
    """Lower end of the two-sided percentile interval of bootstrap `samples` (NaNs ignored)."""
    return float(np.nanpercentile(samples, 100 * (1 - confidence) / 2))


# --- SAEBench's balanced probing sets and the single-dimension reference ---------------------


def balanced_rows(
    positive: np.ndarray, rows: np.ndarray, classes: np.ndarray, seed: int
) -> np.ndarray:
    """Sorted rows of a balanced probing set drawn from `rows`: the label's positives against
    an equal number of negatives, spread as evenly as possible over the negatives' classes
    (SAEBench: one class against an equal-size sample of the others). When the negatives are
    fewer than the positives, the positives are subsampled instead, so the set is always
    exactly half positive and a probe that learned nothing scores 1/2.

    positive: bool [n]; classes: [n] the class of every example (the variable the label is one
    value of; for a binary label its two values), used to stratify the negatives."""
    rng = np.random.default_rng(seed)
    rows = np.asarray(rows)
    positives = rows[positive[rows]]
    negatives = rows[~positive[rows]]
    size = min(len(positives), len(negatives))
    if len(positives) > size:
        positives = rng.choice(positives, size, replace=False)
    return np.sort(np.concatenate([positives, stratified_sample(negatives, classes, size, rng)]))


def stratified_sample(rows: np.ndarray, classes: np.ndarray, size: int, rng) -> np.ndarray:
    """`size` of `rows`, as evenly as their classes allow: each round takes one more row from
    every class that still has one (classes in sorted order, rows at random), so no class
    differs from another by more than one row unless it runs out."""
    by_class = [rng.permutation(rows[classes[rows] == c]) for c in np.unique(classes[rows])]
    picked: list[int] = []
    depth = 0
    while len(picked) < size:
        available = [members[depth] for members in by_class if depth < len(members)]
        if not available:
            break
        if len(picked) + len(available) > size:  # the last round: which classes get one more
            available = list(rng.choice(available, size - len(picked), replace=False))
        picked += [int(r) for r in available]
        depth += 1
    return np.array(sorted(picked), dtype=np.int64)


def best_dimension_accuracy(
    features: np.ndarray, labels: np.ndarray, train, test
) -> tuple[int, float]:
    """(column, held-out accuracy) of the best single-column classifier: for every column the
    threshold and sign with the best train accuracy (a decision stump, what any 1-D probe can
    do), the column with the best train accuracy, scored on test. The "one raw dimension"
    reference: a label it reads near-perfectly is trivial at the hook."""
    if not np.isfinite(features).all():
        raise ValueError("best_dimension_accuracy needs finite features (drop or fill NaN/inf)")
    x_train, y_train = features[train], np.asarray(labels, bool)[train]
    order = np.argsort(x_train, axis=0, kind="stable")
    sorted_x = np.take_along_axis(x_train, order, axis=0)
    y_sorted = y_train[order]
    n, n_pos = len(y_train), int(y_train.sum())
    # Predict positive above the cut after i rows (i = 0..n): correct = negatives at or below
    # + positives above; the reversed sign gets the complement.
    pos_below = np.vstack([np.zeros((1, x_train.shape[1])), np.cumsum(y_sorted, axis=0)])
    neg_below = np.arange(n + 1)[:, None] - pos_below
    correct_up = neg_below + (n_pos - pos_below)
    # A cut between equal values is not realisable: keep cuts at value changes and the ends.
    valid = np.vstack(
        [
            np.ones((1, x_train.shape[1]), bool),
            sorted_x[1:] != sorted_x[:-1],
            np.ones((1, x_train.shape[1]), bool),
        ]
    )
    best_up = np.where(valid, correct_up, -1).max(0)
    best_down = np.where(valid, n - correct_up, -1).max(0)
    column = int(np.argmax(np.maximum(best_up, best_down)))
    up = best_up[column] >= best_down[column]
    scores = correct_up[:, column] if up else n - correct_up[:, column]
    cut = int(np.argmax(np.where(valid[:, column], scores, -1)))
    values = sorted_x[:, column]
    threshold = -np.inf if cut == 0 else np.inf if cut == n else (values[cut - 1] + values[cut]) / 2
    predicted = features[test][:, column] > threshold
    if not up:
        predicted = ~predicted
    return column, float((predicted == np.asarray(labels, bool)[test]).mean())


def bootstrap_mean_samples(
    values: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> np.ndarray:
    """[n_resamples] means of `values` [n] over resampled examples (percentile bootstrap)."""
    values = np.asarray(values, np.float64)
    return bootstrap_counts(len(values), n_resamples, seed) @ values / len(values)


def held_out_best_mcc(
    active: np.ndarray, labels: np.ndarray, train, test
) -> tuple[np.ndarray, np.ndarray]:
    """(picked column, its held-out MCC) per label: the predicate "column active" with the best
    Matthews correlation on train, scored on test. MCC, unlike F1, gives an always-on column 0."""
    from saebench.interventions import latent_mcc

    predicates = torch.as_tensor(np.asarray(active, bool))
    label_tensor = torch.as_tensor(np.asarray(labels, bool))
    picked = latent_mcc(predicates[train], label_tensor[train]).argmax(1).numpy()
    held_out = latent_mcc(predicates[test][:, picked], label_tensor[test]).numpy()
    return picked, np.diagonal(held_out).copy()
