"""The synthetic benchmark's metrics against brute force: Hungarian MCC against scipy and an
exhaustive search, uniqueness, per-latent precision/recall/F1 against explicit loops, EV and
shrinkage against their formulas, and planted dictionaries at both ends of the scale."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from saebench.errors import ConfigError
from saebench.synth.generator import HierarchySpec, StreamConfig, build_stream
from saebench.synth.metrics import (
    DetectionCounts,
    MetricAccumulator,
    explained_variance,
    latent_scores,
    mcc,
    shrinkage,
    uniqueness,
)


def abs_cos(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    out = np.zeros((len(a), len(b)))
    for i, row in enumerate(a.double()):
        for j, col in enumerate(b.double()):
            out[i, j] = abs(float(row @ col) / float(row.norm() * col.norm()))
    return out


def exhaustive_mcc(a: torch.Tensor, b: torch.Tensor) -> float:
    """Best mean |cos| over every injective matching of the smaller set into the larger."""
    sim = abs_cos(a, b)
    if sim.shape[0] > sim.shape[1]:
        sim = sim.T
    m, n = sim.shape
    best = -1.0
    for cols in itertools.permutations(range(n), m):
        best = max(best, float(np.mean([sim[i, c] for i, c in enumerate(cols)])))
    return best


@pytest.mark.parametrize("m,n,d", [(4, 4, 3), (3, 6, 4), (6, 5, 3), (5, 6, 2)])
def test_mcc_matches_exhaustive_search_and_scipy(m, n, d):
    g = torch.Generator().manual_seed(m * 100 + n * 10 + d)
    learned, true = torch.randn(m, d, generator=g), torch.randn(n, d, generator=g)
    ours = mcc(learned, true)
    assert ours == pytest.approx(exhaustive_mcc(learned, true), abs=1e-9)
    sim = abs_cos(learned, true)
    rows, cols = linear_sum_assignment(-sim)
    assert ours == pytest.approx(sim[rows, cols].mean(), abs=1e-9)


def test_mcc_is_one_for_a_permuted_rescaled_sign_flipped_copy():
    true = torch.randn(7, 5, generator=torch.Generator().manual_seed(1))
    learned = true[torch.tensor([3, 0, 6, 1, 5, 2, 4])] * torch.tensor(
        [[2.0], [-1], [0.5], [3], [-4], [1], [1]]
    )
    assert mcc(learned, true) == pytest.approx(1.0, abs=1e-12)
    assert mcc(learned[:3], true) == pytest.approx(1.0, abs=1e-12)  # fewer latents than features


def test_uniqueness_counts_distinct_best_matches_by_brute_force():
    g = torch.Generator().manual_seed(2)
    true = torch.randn(6, 4, generator=g)
    learned = torch.cat([true[:3] + 0.01 * torch.randn(3, 4, generator=g), true[:2] * -1.0])
    sim = abs_cos(learned, true)
    expected = len({int(np.argmax(row)) for row in sim}) / len(learned)
    assert uniqueness(learned, true) == pytest.approx(expected)
    assert uniqueness(learned, true) == pytest.approx(3 / 5)


def brute_force_scores(latents, features, matches):
    """Per-latent precision, recall, F1 with explicit loops over latents and samples."""
    out = []
    for i in range(latents.shape[1]):
        tp = fp = fn = 0
        for t in range(latents.shape[0]):
            fires, truth = latents[t, i] > 0, features[t, matches[i]] > 0
            tp += int(fires and truth)
            fp += int(fires and not truth)
            fn += int(truth and not fires)
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        out.append((p, r, 2 * p * r / (p + r) if p + r else 0.0))
    return out


def test_per_latent_f1_matches_explicit_loops():
    g = torch.Generator().manual_seed(3)
    features = torch.relu(torch.randn(60, 5, generator=g) - 0.5)
    latents = torch.relu(torch.randn(60, 4, generator=g) - 0.3)
    latents[:, 3] = 0  # a dead latent: precision, recall and F1 are 0
    matches = torch.tensor([0, 2, 2, 4])
    counts = DetectionCounts.zeros(4)
    counts.add(latents[:25], features[:25], matches)  # accumulated in two batches
    counts.add(latents[25:], features[25:], matches)
    scores = latent_scores(counts)
    for i, (p, r, f1) in enumerate(brute_force_scores(latents, features, matches)):
        assert float(scores.precision[i]) == pytest.approx(p)
        assert float(scores.recall[i]) == pytest.approx(r)
        assert float(scores.f1[i]) == pytest.approx(f1)
    assert float(scores.f1[3]) == 0.0
    assert float(counts.tp.sum() + counts.fp.sum() + counts.fn.sum() + counts.tn.sum()) == 60 * 4


def test_explained_variance_and_shrinkage_formulas():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(50, 3, generator=g, dtype=torch.float64) + 2.0
    x_hat = 0.8 * x + 0.1 * torch.randn(50, 3, generator=g, dtype=torch.float64)
    mean = x.mean(0)
    expected_ev = 1 - sum(float((x[i] - x_hat[i]).pow(2).sum()) for i in range(50)) / sum(
        float((x[i] - mean).pow(2).sum()) for i in range(50)
    )
    assert explained_variance(x, x_hat) == pytest.approx(expected_ev, rel=1e-9)
    expected_shrink = np.mean([float(x_hat[i].norm() / x[i].norm()) for i in range(50)])
    assert shrinkage(x, x_hat) == pytest.approx(expected_shrink, rel=1e-9)
    x[0] = 0  # a zero input is skipped, not divided by
    assert math.isfinite(shrinkage(x, x_hat))


def small_stream():
    config = StreamConfig(
        n_features=96,
        d=48,
        hierarchy=HierarchySpec(roots=4, branching=3, depth=2),
        max_prob=0.3,
        min_prob=0.01,
        seed=5,
    )
    return build_stream(config)


def accumulate(stream, decoder, encode, n=6000, batches=3):
    acc = MetricAccumulator(decoder, stream.directions)
    for b in range(batches):
        sample = stream.sample(n // batches, 100 + b)
        latents = encode(sample)
        acc.add(sample.acts, latents @ decoder + stream.bias, latents, sample.features)
    return acc.result()


def test_planted_true_dictionary_scores_perfectly():
    stream = small_stream()
    result = accumulate(stream, stream.directions, lambda s: s.features)
    assert result.mcc == pytest.approx(1.0, abs=1e-9)
    assert result.uniqueness == 1.0
    assert result.f1 == pytest.approx(1.0)
    assert result.explained_variance == pytest.approx(1.0, abs=1e-6)
    assert result.shrinkage == pytest.approx(1.0, abs=1e-5)
    assert result.dead_fraction == pytest.approx(
        float((accumulate_rates(stream) == 0).float().mean())
    )


def accumulate_rates(stream, n=6000, batches=3):
    fired = torch.zeros(stream.n_features, dtype=torch.bool)
    for b in range(batches):
        fired |= (stream.sample(n // batches, 100 + b).features > 0).any(0)
    return fired.float()


def test_random_dictionary_scores_low():
    stream = small_stream()
    g = torch.Generator().manual_seed(9)
    decoder = torch.randn(32, stream.d, generator=g)
    encoder = torch.randn(stream.d, 32, generator=g)
    result = accumulate(stream, decoder, lambda s: torch.relu(s.acts @ encoder - 2.0))
    clean = accumulate(stream, stream.directions[:32], lambda s: s.features[:, :32])
    assert result.mcc < 0.5 < clean.mcc
    assert result.f1 < 0.3 < clean.f1


def test_accumulator_with_nothing_added_names_the_fix():
    stream = small_stream()
    with pytest.raises(ConfigError, match="n_samples"):
        MetricAccumulator(stream.directions, stream.directions).result()


def test_mismatched_dimensions_name_the_fix():
    with pytest.raises(ConfigError, match="W_dec"):
        mcc(torch.randn(3, 4), torch.randn(3, 5))
