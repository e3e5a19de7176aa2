"""The SAE's main latents for a parent value: k-sparse probing with SAEBench's F1-jump rule.

The latents are ranked by the weights of an L1-regularised logistic regression on all latents
(largest positive weight first: latents that predict the value, not its absence); for k = 1 …
MAX_K a class-balanced logistic regression on the top-k latents is fitted and its F1 measured.
The main latents are the top k*, where k* is the last k of the leading run in which each k
raises F1 by more than F1_JUMP_THRESHOLD over the previous one (`f1_jump`): more than one main
latent means the SAE split the feature. Everything here is fitted and measured on the train
words' tokens (SAEBench measures the F1 of the jump rule on its test words).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from saebench_tasks.absorption import config


def f1_jump(f1s: Sequence[float], threshold: float = config.F1_JUMP_THRESHOLD) -> int:
    """k*: starting from k = 1, keep adding latents while F1 rises by more than `threshold`
    (SAEBench's add_feature_splits_to_metrics_df). 0 only when the first F1 is NaN."""
    best, chosen = -math.inf, 0
    for k, f1 in enumerate(f1s, start=1):
        if not f1 > best + threshold:  # NaN never counts as a rise
            break
        best, chosen = f1, k
    return chosen


def code_scale(codes: np.ndarray) -> float:
    """One scale for all latents: the mean nonzero |activation| (1 when none fires). Dividing
    by it makes the L1 strength mean the same for SAEs whose codes differ in units, while
    keeping the latents' relative magnitudes (what SAEBench's unscaled probe sees)."""
    active = np.abs(codes[codes != 0])
    return float(active.mean()) if active.size else 1.0


def rank_latents(
    codes: np.ndarray, labels: np.ndarray, l1_decay: float = config.K_SPARSE_L1_DECAY
) -> np.ndarray:
    """Latent ids, largest L1-probe weight first. SAEBench's loss, mean BCE + l1_decay·‖w‖₁,
    is sklearn's ‖w‖₁ + C Σ BCE with C = 1 / (l1_decay · n)."""
    from sklearn.linear_model import LogisticRegression

    probe = LogisticRegression(
        penalty="l1",
        solver="liblinear",
        C=1.0 / (l1_decay * len(labels)),
        class_weight="balanced",
        max_iter=1000,
        random_state=0,  # liblinear shuffles its coordinates: unseeded, reruns differ
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # liblinear's convergence notes on separable data
        probe.fit(codes, labels)
    return np.argsort(-probe.coef_[0], kind="stable")


def k_sparse_f1s(
    codes: np.ndarray, labels: np.ndarray, ranked: np.ndarray, max_k: int = config.MAX_K
) -> list[float]:
    """F1 (on the fitting tokens) of a class-balanced logistic regression on the top-k ranked
    latents, for k = 1 … max_k (at most the number of latents)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    f1s = []
    for k in range(1, min(max_k, codes.shape[1]) + 1):
        x = codes[:, ranked[:k]]
        if not np.any(x):  # no top-k latent fires: the probe predicts one class
            f1s.append(0.0)
            continue
        probe = LogisticRegression(max_iter=500, class_weight="balanced").fit(x, labels)
        f1s.append(float(f1_score(labels, probe.predict(x), zero_division=0.0)))
    return f1s


@dataclass(frozen=True)
class MainLatents:
    """The main latents of one parent value and the F1 curve that chose them."""

    ids: np.ndarray  # int [k*]
    f1s: tuple[float, ...]  # k-sparse F1 for k = 1 … MAX_K (train tokens)
    scale: float  # code_scale of the train codes (the probes saw codes / scale)
    probe: Any  # the class-balanced logistic regression on the k* main latents


def main_latents(codes: np.ndarray, labels: np.ndarray) -> MainLatents:
    """SAEBench's main latents of the value `labels` (bool [n]) from codes [n, d_sae]."""
    from sklearn.linear_model import LogisticRegression

    scale = code_scale(codes)
    scaled = codes / scale
    ranked = rank_latents(scaled, labels)
    f1s = k_sparse_f1s(scaled, labels, ranked)
    ids = ranked[: f1_jump(f1s)].copy()
    x = scaled[:, ids]
    probe = (
        LogisticRegression(max_iter=500, class_weight="balanced").fit(x, labels)
        if np.any(x)
        else None
    )
    return MainLatents(ids=ids, f1s=tuple(f1s), scale=scale, probe=probe)


def held_out_f1(main: MainLatents, codes: np.ndarray, labels: np.ndarray) -> float:
    """F1 on other tokens (the held-out words') of the k*-latent probe that chose `main`: does
    the SAE's parent latent generalise to child words it was not picked on?"""
    from sklearn.metrics import f1_score

    if main.probe is None:
        return 0.0
    predicted = main.probe.predict(codes[:, main.ids] / main.scale)
    return float(f1_score(labels, predicted, zero_division=0.0))
