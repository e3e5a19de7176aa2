"""sparse_probing and ground_truth: helper formulas vs brute force, planted latents score
perfectly, a random dictionary scores clearly worse than the planted one."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from saebench import probing
from saebench.sae import SAE
from saebench.specs import TaskContext


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=(200, 5)), 1)  # many ties
    scores[:, 3] = 0  # a dead column
    labels = rng.random(200) < 0.3
    expected = [roc_auc_score(labels, scores[:, j]) for j in range(5)]
    assert np.allclose(probing.auroc_per_column(scores, labels), expected)


def test_f1_matches_brute_force():
    rng = np.random.default_rng(1)
    active, labels = rng.random((100, 4)) < 0.4, rng.random(100) < 0.5
    for j in range(4):
        tp = (active[:, j] & labels).sum()
        p, r = tp / active[:, j].sum(), tp / labels.sum()
        assert probing.f1_per_column(active, labels)[j] == pytest.approx(2 * p * r / (p + r))


def test_top_k_picks_the_largest_mean_difference():
    features = np.zeros((6, 3))
    features[:3, 2] = 5.0  # column 2 separates the classes most
    features[:3, 0] = 1.0
    labels = np.array([1, 1, 1, 0, 0, 0], bool)
    assert list(probing.top_k_by_mean_difference(features, labels, 2)) == [2, 0]


def test_planted_latent_gives_probe_accuracy_one_at_k1():
    rng = np.random.default_rng(2)
    labels = rng.random(300) < 0.5
    features = rng.normal(size=(300, 50))
    features[:, 17] = labels * 3.0  # the planted latent equals the label
    train, test = probing.split_indices(300, seed=0)
    assert probing.probe_accuracy(features, labels, train, test, k=1) == 1.0
    assert probing.auroc_per_column(features, labels)[17] == 1.0


@pytest.fixture(scope="module")
def contexts(toy_handle):
    from saebench_plugins.identity import IdentityBaseline
    from saebench_plugins.random_dict import RandomBaseline

    torch.manual_seed(0)
    sample = torch.randn(2000, 128)
    make = lambda sae: TaskContext(  # noqa: E731
        model=toy_handle,
        hook=toy_handle.default_hook,
        sae=sae,
        eval_acts=sample,
        eval_tokens=None,
        eval_mask=None,
        device=torch.device("cpu"),
        preset="smoke",
        seed=0,
        cache=shared,
        artifacts_dir=None,
        method="",
        knob=0,
    )
    shared = {}
    return make(IdentityBaseline(128).fit(sample)), make(RandomBaseline(128, 512, 4).fit(sample))


def supervised_probing_sae(ctx):
    """An 'ideal' dictionary for the probing labels: one ±latent pair per label along the
    label's mean difference on the train split (a supervised dictionary, as in IOI)."""
    from saebench_tasks import sparse_probing

    acts, labels, train, _, _, _ = sparse_probing.shared_inputs(ctx)
    tokens = torch.cat(acts)
    pooled = probing.mean_pool(acts).numpy()
    directions = []
    for y in labels.values():
        y = y[train]
        direction = pooled[train][y].mean(0) - pooled[train][~y].mean(0)
        directions.append(torch.tensor(direction / np.linalg.norm(direction), dtype=torch.float32))
    directions = torch.stack(directions)
    sae = SAE(128, 2 * len(directions))
    with torch.no_grad():
        both = torch.cat([directions, -directions])
        sae.W_enc.copy_(both.T)
        sae.W_dec.copy_(both)
        sae.b_dec.copy_(tokens.mean(0))
    return sae


def test_sparse_probing_ideal_dictionary_beats_random_and_identity_matches_raw(contexts):
    from dataclasses import replace

    from saebench_tasks import sparse_probing

    identity, random = contexts
    ident, rand = sparse_probing.run(identity), sparse_probing.run(random)
    ideal = sparse_probing.run(replace(identity, sae=supervised_probing_sae(identity)))
    # ±e_i latents see what the raw top-k probe sees (up to the sign split).
    assert ident["probe_acc_k20_mean"] >= ident["raw_probe_acc_k20_mean"] - 0.03
    assert ideal["probe_acc_k1_mean"] > rand["probe_acc_k1_mean"] + 0.05
    assert all(0.3 <= v <= 1 for v in ident.values())


def test_ground_truth_scores_are_well_formed_and_random_is_worse(contexts):
    from saebench_tasks import ground_truth

    identity, random = contexts
    ident, rand = ground_truth.run(identity), ground_truth.run(random)
    for metrics in (ident, rand):
        assert all(0 <= v <= 1 for v in metrics.values())
        assert "synthetic_mean_max_cosine" not in metrics  # no method: model-free half skipped
    assert rand["gt_auroc_mean"] < ident["gt_auroc_mean"]
    # every value is reported, and the group score is the mean of its values
    days = [v for k, v in ident.items() if k.startswith("gt_auroc_day_")]
    assert len(days) == 7 and ident["gt_auroc_day"] == pytest.approx(np.mean(days))
    assert "gt_auroc_ioi_order_abba" in ident and "raw_gt_auroc_continent_europe" in ident


def test_ground_truth_supervised_detectors_are_near_perfect_and_random_is_worse(contexts):
    # A planted dictionary: one latent per value along a logistic-regression direction for that
    # value (the supervised ideal). Each must detect its value almost perfectly; random less.
    from dataclasses import replace

    from sklearn.linear_model import LogisticRegression

    from saebench_tasks import ground_truth

    identity, random = contexts
    directions, thresholds = [], []
    for group in ("day", "month", "continent"):
        acts, positions, labels = ground_truth.unit_activations(identity)[group]
        features = ground_truth.features_for(acts, positions)
        # standardised fit (raw residual scale varies ~30x between models), mapped back to raw
        mean, std = features.mean(0), features.std(0) + 1e-8
        for y in labels.values():
            fit = LogisticRegression(C=10.0, max_iter=5000).fit((features - mean) / std, y)
            direction = fit.coef_[0] / std
            direction = (direction / np.linalg.norm(direction)).astype(np.float32)
            directions.append(torch.tensor(direction))
            # fire on every positive (so ReLU loses no positive; AUROC is the projection's)
            thresholds.append(float((features[y] @ direction).min()) - 1e-3)
    directions = torch.stack(directions).float()
    planted = SAE(128, len(directions))
    with torch.no_grad():
        planted.W_enc.copy_(directions.T)
        planted.W_dec.copy_(directions)
        planted.b_enc.copy_(-torch.tensor(thresholds))
    ideal = ground_truth.run(replace(identity, sae=planted))
    rand = ground_truth.run(random)
    for group in ("day", "month", "continent"):
        assert ideal[f"gt_auroc_{group}"] > 0.97, group
        assert ideal[f"gt_auroc_{group}"] > rand[f"gt_auroc_{group}"] + 0.1, (
            group
        )  # measured 0.17-0.37


def test_synthetic_half_separates_a_trained_method_from_random(toy_handle):
    from saebench_tasks.ground_truth import synthetic_recovery

    def ctx(method, knob):
        return TaskContext(
            model=toy_handle,
            hook="",
            sae=None,
            eval_acts=None,
            eval_tokens=None,
            eval_mask=None,
            device="cpu",
            preset="smoke",
            seed=0,
            cache={},
            artifacts_dir=None,
            method=method,
            knob=knob,
        )

    trained = synthetic_recovery(ctx("topk", 6))
    random = synthetic_recovery(ctx("random", 6))
    assert trained["synthetic_mean_max_cosine"] > random["synthetic_mean_max_cosine"] + 0.2
    assert trained["synthetic_fraction_recovered"] > random["synthetic_fraction_recovered"]


def label_matrix(rng, n, n_labels):
    labels = rng.random((n, n_labels)) < rng.uniform(0.05, 0.6, n_labels)
    labels[0], labels[1] = True, False  # every label has a positive and a negative
    return labels


def test_auroc_matrix_matches_sklearn_for_every_label_and_column():
    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=(150, 6)), 1)
    scores[:, 2] = 0  # dead
    scores[:, 4] = np.maximum(scores[:, 4], 0)  # mostly tied at zero, as a ReLU latent
    labels = label_matrix(rng, 150, 5)
    expected = [[roc_auc_score(y, scores[:, j]) for j in range(6)] for y in labels.T]
    assert np.allclose(probing.auroc_matrix(scores, labels), expected, rtol=0, atol=1e-12)
    for i, y in enumerate(labels.T):  # one label at a time: the same numbers
        assert np.array_equal(
            probing.auroc_per_column(scores, y), probing.auroc_matrix(scores, labels)[i]
        )


def test_auroc_matrix_rejects_a_label_without_negatives():
    labels = np.ones((10, 2), bool)
    labels[0, 0] = False
    with pytest.raises(ValueError, match="both positive and negative"):
        probing.auroc_matrix(np.zeros((10, 3)), labels)


def test_f1_matrix_matches_brute_force():
    rng = np.random.default_rng(4)
    active, labels = rng.random((120, 5)) < 0.3, label_matrix(rng, 120, 4)
    active[:, 1] = False  # never active: F1 0
    got = probing.f1_matrix(active, labels)
    for i, y in enumerate(labels.T):
        for j in range(5):
            tp = (active[:, j] & y).sum()
            expected = 0.0 if tp == 0 else 2 * tp / (active[:, j].sum() + y.sum())
            assert got[i, j] == pytest.approx(expected, rel=1e-12)


def test_detection_scores_are_the_best_column_per_value():
    from saebench_tasks import ground_truth

    rng = np.random.default_rng(5)
    features = np.maximum(rng.normal(size=(90, 7)), 0)
    labels = {f"v={i}": y for i, y in enumerate(label_matrix(rng, 90, 3).T)}
    scores = ground_truth.detection_scores(features, labels)
    for value, y in labels.items():
        best_auroc = max(roc_auc_score(y, features[:, j]) for j in range(7))
        best_f1 = probing.f1_per_column(features > 0, y).max()
        assert scores[value] == pytest.approx((best_auroc, best_f1), rel=1e-12)


def test_ground_truth_raw_reference_is_computed_once_per_process(contexts, monkeypatch):
    from saebench_tasks import ground_truth

    identity, _ = contexts
    first = ground_truth.run(identity)
    monkeypatch.setattr(ground_truth, "_raw_detection_scores", None)  # would fail if called
    again = ground_truth.run(identity)
    assert again == first
