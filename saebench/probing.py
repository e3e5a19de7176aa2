"""Pure helpers for probing-style tasks: per-example activations, top-k probes, AUROC/F1.

Kept free of task plumbing so each formula is unit-testable against a brute-force reference.
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


def top_k_by_mean_difference(features: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k columns with the largest |mean_pos − mean_neg| (train split only)."""
    difference = np.abs(features[labels].mean(0) - features[~labels].mean(0))
    return np.argsort(-difference, kind="stable")[:k]


def probe_accuracy(features: np.ndarray, labels: np.ndarray, train, test, k: int | None) -> float:
    """Logistic-regression test accuracy on the top-k columns (k=None: all columns)."""
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
    return float(probe.score((x_test - mean) / std, labels[test]))


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
