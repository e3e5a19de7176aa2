"""The synthetic superposition stream and the recovery scores, against brute force."""

import pytest
import torch

from saebench.errors import ConfigError
from saebench.synthetic import SuperpositionStream, fraction_recovered, mean_max_cosine


def test_stream_shapes_and_known_directions():
    stream = SuperpositionStream(40, 10, firing_prob=0.1, seed=0)
    acts, features = stream.sample(2000)
    assert acts.shape == (2000, 10) and features.shape == (2000, 40)
    assert torch.allclose(stream.true_directions.norm(dim=1), torch.ones(40))
    assert torch.allclose(acts, features @ stream.true_directions, atol=1e-5)
    assert (features >= 0).all()
    assert (features > 0).float().mean().item() == pytest.approx(0.1, abs=0.01)
    active = features[features > 0]
    assert active.min() >= 0.5 and active.max() <= 1.5


def test_per_feature_firing_probabilities():
    probs = torch.linspace(0.0, 0.5, 20)
    _, features = SuperpositionStream(20, 5, firing_prob=probs, seed=1).sample(4000)
    assert torch.allclose((features > 0).float().mean(0), probs, atol=0.03)


def test_same_seed_same_directions_successive_samples_differ():
    a, b = SuperpositionStream(16, 4, seed=7), SuperpositionStream(16, 4, seed=7)
    assert torch.equal(a.true_directions, b.true_directions)
    assert not torch.equal(a.sample(10)[0], a.sample(10)[0])


def test_store_splits_train_and_eval():
    store = SuperpositionStream(16, 4, seed=0).store(300, 50)
    assert store.train_acts.shape == (300, 4) and store.eval_acts.shape == (50, 4)


def test_bad_arguments_name_the_fix():
    with pytest.raises(ConfigError, match="d < n_features"):
        SuperpositionStream(4, 8)
    with pytest.raises(ConfigError, match="firing_prob"):
        SuperpositionStream(8, 4, firing_prob=[0.1, 0.2])


def brute_force_max_cosine(learned, true):
    scores = []
    for t in true:
        scores.append(max(float(t @ row / (t.norm() * row.norm())) for row in learned))
    return scores


def test_recovery_scores_match_brute_force():
    torch.manual_seed(0)
    true = torch.randn(12, 5)
    learned = torch.randn(30, 5) * 3  # norms must not matter
    expected = brute_force_max_cosine(learned, true)
    assert mean_max_cosine(learned, true) == pytest.approx(sum(expected) / 12, abs=1e-5)
    assert fraction_recovered(learned, true, 0.6) == pytest.approx(
        sum(e >= 0.6 for e in expected) / 12
    )


def test_recovery_edge_cases():
    true = torch.eye(4)
    assert mean_max_cosine(torch.eye(4) * 2, true) == pytest.approx(1.0)
    assert fraction_recovered(torch.eye(4), true) == 1.0
    # Sign matters: features are non-negative, so −e_i does not recover e_i.
    assert fraction_recovered(-torch.eye(4), true) == 0.0
    assert fraction_recovered(torch.eye(4)[:2], true) == 0.5
    with pytest.raises(ConfigError, match="W_dec"):
        mean_max_cosine(torch.randn(3, 5), true)
