"""Every metric formula against a brute-force numpy reference or a hand-computed value."""

import math

import numpy as np
import pytest
import torch

from saebench import metrics


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(300, 8, generator=generator) + 2.0
    x_hat = 0.8 * x + 0.1 * torch.randn(300, 8, generator=generator)
    f = torch.relu(torch.randn(300, 20, generator=generator))
    f[:, 5] = 0  # one dead latent
    return x, f, x_hat


def brute_force(x, f, x_hat):
    x, f, x_hat = x.numpy().astype(np.float64), f.numpy(), x_hat.numpy().astype(np.float64)
    err = ((x - x_hat) ** 2).sum(1)
    total = ((x - x.mean(0)) ** 2).sum()
    cos = [np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b) for a, b in zip(x, x_hat)]
    density = (f != 0).mean(0)
    return {
        "l0": (f != 0).sum(1).mean(),
        "mse": err.mean(),
        "fvu": err.sum() / total,
        "cosine_similarity": np.mean(cos),
        "l2_ratio": np.mean(np.linalg.norm(x_hat, axis=1) / np.linalg.norm(x, axis=1)),
        "relative_reconstruction_bias": (x_hat**2).sum() / (x * x_hat).sum(),
        "never_fired_eval": (density == 0).sum(),
        "dense_1e-2": (density > 1e-2).sum(),
        "dense_1e-3": (density > 1e-3).sum(),
        "eval_tokens": len(x),
    }


def test_streaming_stats_match_brute_force_for_any_batching(batch):
    x, f, x_hat = batch
    expected = brute_force(x, f, x_hat)
    for batch_size in (300, 64, 7):
        stats = metrics.ReconstructionStats(f.shape[1])
        for start in range(0, len(x), batch_size):
            sl = slice(start, start + batch_size)
            stats.update(x[sl], f[sl], x_hat[sl])
        result, density = stats.results()
        for name, value in expected.items():
            assert result[name] == pytest.approx(value, rel=1e-9, abs=1e-9), (name, batch_size)
        assert result["explained_variance"] == pytest.approx(1 - expected["fvu"])
        assert density[5] == 0


def test_single_shot_functions_match_brute_force(batch):
    x, f, x_hat = batch
    expected = brute_force(x, f, x_hat)
    assert metrics.l0(f) == pytest.approx(expected["l0"])
    assert metrics.mse(x, x_hat) == pytest.approx(expected["mse"])
    assert metrics.fvu(x, x_hat) == pytest.approx(expected["fvu"])
    assert metrics.relative_reconstruction_bias(x, x_hat) == pytest.approx(
        expected["relative_reconstruction_bias"]
    )
    assert metrics.dead_count(metrics.feature_density(f)) == 1


def test_fvu_uses_the_mean_vector_not_the_mean_of_squares():
    # Constant offset: x̄ subtracts it entirely, so predicting the mean gives FVU exactly 1.
    x = torch.tensor([[10.0, 0.0], [12.0, 2.0], [14.0, 4.0]])
    assert metrics.fvu(x, x.mean(0).expand_as(x)) == pytest.approx(1.0)


def test_shrinkage_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert metrics.relative_reconstruction_bias(x, 0.5 * x) == pytest.approx(0.5)


def test_loss_recovered_and_kl_scores_by_hand():
    assert metrics.loss_recovered_score(ce_ablation=5.0, ce_sae=2.0, ce_clean=1.0) == 0.75
    assert metrics.loss_recovered_score(5.0, 1.0, 1.0) == 1.0
    assert metrics.loss_recovered_score(5.0, 5.0, 1.0) == 0.0
    assert metrics.kl_score(kl_ablation=2.0, kl_sae=0.5) == 0.75
    with pytest.raises(metrics.MetricIsNaN):
        metrics.loss_recovered_score(1.0, 1.0, 1.0)


def test_nan_reconstruction_fails_instead_of_a_sentinel():
    stats = metrics.ReconstructionStats(3)
    x = torch.ones(4, 2)
    stats.update(x, torch.ones(4, 3), torch.full((4, 2), float("nan")))
    with pytest.raises(metrics.MetricIsNaN, match="not finite"):
        stats.results()


def test_pareto_frontier_brute_force():
    rng = np.random.default_rng(0)
    l0s, values = rng.uniform(1, 100, 40), rng.uniform(0, 1, 40)
    frontier = set(metrics.pareto_frontier(l0s, values))
    for i in range(40):
        dominated = any(
            l0s[j] <= l0s[i]
            and values[j] <= values[i]
            and (l0s[j] < l0s[i] or values[j] < values[i])
            for j in range(40)
        )
        assert (i in frontier) == (not dominated)


def test_interpolation_is_linear_in_log_l0_and_never_extrapolates():
    l0s, values = [10, 100], [0.4, 0.2]
    assert metrics.interpolate_at_l0(l0s, values, math.sqrt(1000)) == pytest.approx(0.3)
    assert metrics.interpolate_at_l0(l0s, values, 10) == pytest.approx(0.4)
    assert math.isnan(metrics.interpolate_at_l0(l0s, values, 5))
    assert math.isnan(metrics.interpolate_at_l0(l0s, values, 200))


def test_matched_targets_lie_in_every_range():
    targets = metrics.matched_l0_targets({"a": [5, 50], "b": [10, 80], "c": [8, 40]}, n=3)
    assert targets[0] == pytest.approx(10) and targets[-1] == pytest.approx(40)
    assert metrics.matched_l0_targets({"a": [1, 2], "b": [5, 9]}) == []


def test_log_density_histogram_counts_dead_separately():
    counts, edges, dead = metrics.log10_density_histogram(np.array([0, 0, 1e-3, 1e-1, 1.0]))
    assert dead == 2 and counts.sum() == 3
