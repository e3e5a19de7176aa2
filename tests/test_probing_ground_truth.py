"""ground_truth and the probing helpers: formulas vs brute force, planted latents score
perfectly, a random dictionary scores clearly worse than the planted one; selection on train
and scoring on held-out data (a planted latent is found, the best noise latent falls to the
null); the validity gates close on shuffled labels / random activations and open on a planted
signal."""

import numpy as np
import pytest
import torch
from doubles.context import task_context
from sklearn.metrics import matthews_corrcoef, roc_auc_score

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
    make = lambda sae: task_context(  # noqa: E731
        toy_handle, sae=sae, eval_acts=sample, cache=shared, artifacts_dir=None, method="", knob=0
    )
    shared = {}
    return make(IdentityBaseline(128).fit(sample)), make(RandomBaseline(128, 512, 4).fit(sample))


def test_ground_truth_scores_are_well_formed_and_random_is_worse(contexts):
    from saebench_tasks import ground_truth

    identity, random = contexts
    ident, rand = ground_truth.run(identity), ground_truth.run(random)
    for metrics in (ident, rand):
        assert all(-1 <= v <= 1 for k, v in metrics.items() if "mcc" in k)
        assert all(0 <= v <= 1 for k, v in metrics.items() if "mcc" not in k)
        assert not any(k.startswith("synthetic_") for k in metrics)  # its own benchmark now
    assert rand["gt_auroc_mean"] < ident["gt_auroc_mean"]
    mccs = [v for k, v in ident.items() if k.startswith("gt_mcc_day_")]
    assert len(mccs) == 7 and ident["gt_mcc_day"] == pytest.approx(np.mean(mccs))
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
        # The headline: the planted detectors beat a random dictionary and the null of random
        # directions at the planted dictionary's own L0 on held-out MCC.
        assert ideal[f"gt_mcc_{group}"] > rand[f"gt_mcc_{group}"] + 0.2, group
        assert ideal[f"gt_mcc_{group}"] > ideal[f"null_gt_mcc_{group}"] + 0.2, group


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


def test_detection_scores_pick_on_train_and_score_on_test():
    from saebench_tasks import ground_truth

    rng = np.random.default_rng(5)
    features = np.maximum(rng.normal(size=(90, 7)), 0)
    labels = {f"v={i}": y for i, y in enumerate(label_matrix(rng, 90, 3).T)}
    train, test = ground_truth.held_out_split(labels)
    scores = ground_truth.detection_scores(features, labels, train, test)
    for value, y in labels.items():
        by_auroc = max(range(7), key=lambda j: (roc_auc_score(y[train], features[train, j]), -j))
        by_f1 = int(np.argmax(probing.f1_per_column(features[train] > 0, y[train])))
        by_mcc = max(
            range(7), key=lambda j: (matthews_corrcoef(y[train], features[train, j] > 0), -j)
        )
        expected = (
            matthews_corrcoef(y[test], features[test, by_mcc] > 0),
            probing.f1_per_column(features[test] > 0, y[test])[by_f1],
            roc_auc_score(y[test], features[test, by_auroc]),
        )
        assert scores[value] == pytest.approx(expected, rel=1e-12)


def test_stratified_split_is_deterministic_disjoint_and_keeps_every_label_on_both_sides():
    rng = np.random.default_rng(6)
    labels = label_matrix(rng, 300, 6)
    labels[:, 5] = False
    labels[rng.choice(300, 6, replace=False), 5] = True  # a rare label: 6 positives
    strata = probing.label_strata(labels)
    train, test = probing.stratified_split(strata, seed=3, train_fraction=0.5)
    again = probing.stratified_split(strata, seed=3, train_fraction=0.5)
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(300))
    assert abs(len(train) - 150) <= 12
    for y in labels.T:  # every label keeps positives and negatives in both halves
        assert 0 < y[train].sum() < len(train) and 0 < y[test].sum() < len(test)
    assert abs(labels[train, 5].sum() - labels[test, 5].sum()) <= 2  # stratified, not by luck


def test_planted_latent_is_found_on_train_and_keeps_a_high_held_out_auroc():
    rng = np.random.default_rng(7)
    n, n_noise = 800, 128
    y = np.zeros(n, bool)
    y[rng.choice(n, 24, replace=False)] = True  # ~12 positives per half, as the IOI names
    features = rng.normal(size=(n, n_noise + 1))
    features[:, 57] = y + 0.1 * rng.normal(size=n)  # the planted latent: the label plus noise
    train, test = probing.stratified_split(probing.label_strata(y[:, None]), seed=0)
    picked, held_out = probing.held_out_best_auroc(features, y[:, None], train, test)
    assert picked[0] == 57
    assert held_out[0] > 0.99


def test_best_noise_latent_on_train_falls_to_the_null_on_held_out():
    # 40 labels with 24 positives each, 128 pure-noise columns: the in-sample max is inflated
    # (0.66 here; the issue measured 0.70 with 12 positives), the train pick is chance held out.
    rng = np.random.default_rng(8)
    n, n_labels = 800, 40
    labels = np.zeros((n, n_labels), bool)
    for j in range(n_labels):
        labels[rng.choice(n, 24, replace=False), j] = True
    features = rng.normal(size=(n, 128))
    train, test = probing.split_indices(n, seed=0, train_fraction=0.5)
    in_sample = probing.auroc_matrix(features, labels).max(1)
    _, held_out = probing.held_out_best_auroc(features, labels, train, test)
    assert in_sample.mean() > 0.63  # measured 0.66
    assert abs(held_out.mean() - 0.5) < 0.03  # measured 0.49
    assert held_out.mean() < in_sample.mean() - 0.12


def test_weighted_auroc_equals_the_auroc_of_the_resampled_rows():
    rng = np.random.default_rng(9)
    scores = np.round(rng.normal(size=60), 1)  # ties
    y = rng.random(60) < 0.3
    counts = probing.bootstrap_counts(60, 20, seed=1)
    got = probing.weighted_auroc(scores, y, counts)
    for b in range(20):
        rows = np.repeat(np.arange(60), counts[b].astype(int))
        assert got[b] == pytest.approx(roc_auc_score(y[rows], scores[rows]), abs=1e-12)
    assert np.isnan(probing.weighted_auroc(scores, np.zeros(60, bool), counts)).all()


def test_lower_end_is_the_two_sided_95_percentile():
    samples = np.r_[np.arange(1000.0), np.nan]  # NaN: a resample without a positive, ignored
    assert probing.lower_end(samples) == pytest.approx(np.percentile(np.arange(1000.0), 2.5))


def test_probe_selects_its_k_latents_on_the_train_split_only():
    # Column 3 equals the label on the test rows only (noise on train): a probe that looked at
    # the test split to pick its latent would score 1.0; picking on train leaves it at chance.
    rng = np.random.default_rng(11)
    n = 400
    y = rng.random(n) < 0.5
    features = rng.normal(size=(n, 10))
    train, test = probing.split_indices(n, seed=0)
    features[test, 3] = 10.0 * y[test]
    assert probing.top_k_by_mean_difference(features[train], y[train], 1)[0] != 3
    assert probing.probe_accuracy(features, y, train, test, k=1) < 0.65


def hand_built_context(task: str) -> TaskContext:
    return task_context(artifacts_dir=None, task=task)


def planted_groups(rng, kind: str) -> dict:
    """ground_truth groups {name: (acts, None, labels)} of 300 one-token examples: the label
    planted along raw dimension i for value i ("planted"), the same activations with shuffled labels
    ("shuffled"), or activations unrelated to the labels ("random")."""
    n, d = 300, 16
    value = rng.integers(3, size=n)
    labels = {f"v={i}": value == i for i in range(3)}
    acts = rng.normal(size=(n, d))
    if kind != "random":
        acts[np.arange(n), value] += 3.0  # value i along raw dimension i
    if kind == "shuffled":
        labels = {name: rng.permutation(y) for name, y in labels.items()}
    per_example = [torch.tensor(row[None], dtype=torch.float32) for row in acts]
    return {"g": (per_example, None, labels)}


@pytest.mark.parametrize(
    ("kind", "opens"), [("planted", True), ("shuffled", False), ("random", False)]
)
def test_ground_truth_validity_gate_opens_on_a_planted_signal_and_closes_without_one(
    monkeypatch, kind, opens
):
    from saebench_tasks import ground_truth
    from saebench_tasks.ground_truth import references

    groups = planted_groups(np.random.default_rng(12), kind)
    monkeypatch.setattr(references, "unit_activations", lambda ctx: groups)
    checks = {c.name: c for c in ground_truth.validity(hand_built_context("ground_truth"))}
    group, overall = checks["raw_gt_lr_auroc_g"], checks["raw_gt_lr_auroc_mean"]
    assert group.informative is opens and overall.informative is opens
    assert group.chance == 0.5 and group.low <= group.reference
    if opens:
        assert group.reference > 0.9
    else:
        assert abs(group.reference - 0.5) < 0.1
    # the group's gate governs the group's SAE scores only, never references or nulls
    assert group.covers("gt_auroc_g_v_0") and group.covers("gt_f1_g") and group.covers("gt_mcc_g")
    for other in ("raw_gt_lr_auroc_g", "null_gt_auroc_g", "null_gt_mcc_g", "gt_mcc_mean"):
        assert not group.covers(other), other
    assert overall.covers("gt_mcc_mean") and not overall.covers("gt_mcc_g")


def test_ground_truth_validity_on_the_toy_model_passes_where_the_information_is_at_the_hook(
    contexts,
):
    """Measured, not assumed (smoke preset, blocks.1.hook_resid_pre): token-level values (day,
    month, continent) and the sentence labels pass. The smoke ioi group holds only
    the order (no IO name reaches MIN_POSITIVES in 240 prompts), which is not linearly readable
    at the final token, so that group is gated off (on the default preset the IO names make it
    pass: 0.601, lower end 0.569)."""
    from saebench_tasks import ground_truth

    identity, _ = contexts
    detect = {c.name: c for c in ground_truth.validity(identity)}
    for group in ("sentence", "day", "month", "continent"):
        assert detect[f"raw_gt_lr_auroc_{group}"].informative, group
    assert not detect["raw_gt_lr_auroc_ioi"].informative  # measured 0.529, low 0.423
    assert detect["raw_gt_lr_auroc_mean"].informative


def test_ground_truth_reports_the_null_of_the_same_selection_over_random_directions(contexts):
    from saebench_tasks import ground_truth

    identity, random = contexts
    ident, rand = ground_truth.run(identity), ground_truth.run(random)
    groups = ("sentence", "day", "month", "continent", "ioi")
    assert ident["null_gt_auroc_mean"] == pytest.approx(
        np.mean([ident[f"null_gt_auroc_{g}"] for g in groups])
    )
    from saebench_tasks.ground_truth import references

    # the null depends on the number of candidates (d_sae) and, for MCC, the SAE's firing
    # density, not on the SAE's weights
    assert ident["null_gt_auroc_mean"] != rand["null_gt_auroc_mean"]
    assert references._null_scores(identity, 512, 4) == references.null_scores(random, 512, 4)
    assert all(0.4 < ident[f"null_gt_auroc_{g}"] < 1 for g in groups)
    # The null is a random TopK dictionary at the SAE's width and L0, centred on the examples.
    assert all(-0.1 < rand[f"null_gt_mcc_{g}"] < 0.9 for g in groups)
    assert rand["null_gt_mcc_mean"] == pytest.approx(
        np.mean([rand[f"null_gt_mcc_{g}"] for g in groups])
    )


def test_ground_truth_raw_reference_is_computed_once_per_process(contexts, monkeypatch):
    from saebench_tasks import ground_truth

    identity, _ = contexts
    first = ground_truth.run(identity)
    from saebench_tasks.ground_truth import references

    for name in (
        "_raw_detection_scores",
        "_supervised_reference",
        "_null_scores",
    ):
        monkeypatch.setattr(references, name, None)  # would fail if called
    again = ground_truth.run(identity)
    assert again == first


def test_held_out_best_mcc_matches_sklearn_and_always_on_scores_zero():
    rng = np.random.default_rng(21)
    n = 120
    labels = label_matrix(rng, n, 3)
    active = rng.random((n, 6)) < 0.3
    active[:, 5] = True  # always on: F1 would reward it, MCC gives 0
    train, test = probing.split_indices(n, seed=1)
    picked, held_out = probing.held_out_best_mcc(active, labels, train, test)
    for i, y in enumerate(labels.T):
        train_mcc = [matthews_corrcoef(y[train], active[train, j]) for j in range(6)]
        assert picked[i] == int(np.argmax(train_mcc))
        assert held_out[i] == pytest.approx(matthews_corrcoef(y[test], active[test, picked[i]]))
    always = probing.held_out_best_mcc(active[:, [5]], labels, train, test)[1]
    assert np.all(always == 0)


def test_last_word_of_finds_the_last_occurrence_of_a_multi_word_name():
    from saebench_tasks.ground_truth.units import last_word_of

    text = "kor ado flew from bel ado . people in bel ado speak"
    words = text.split()
    assert last_word_of(words, ["bel", "ado"]) == 10
    assert last_word_of(words, ["kor", "ado"]) == 1
    assert last_word_of(words, ["speak"]) == len(words) - 1
    with pytest.raises(ValueError, match="does not occur"):
        last_word_of(words, ["ado", "bel"])


def test_v2_fact_units_read_each_city_at_its_last_token_and_score_its_attributes():
    from saebench.toyworld.world_v2 import CITY_PREFIXES, CITY_SUFFIXES, WorldV2
    from saebench_tasks.ground_truth.units import detector_units

    world = WorldV2(seed=0)
    units = detector_units(world, 60)
    assert {"country", "language", "climate"} <= set(units) and "continent" not in units
    texts, positions, labels = units["climate"]
    for text, position in zip(texts, positions):
        words = text.split()
        assert words[position] in CITY_SUFFIXES and words[position - 1] in CITY_PREFIXES
    # every prompt has exactly one value of each attribute
    for attribute in ("country", "language", "climate"):
        values_per_prompt = sum(np.asarray(flags, int) for flags in units[attribute][2].values())
        assert (values_per_prompt == 1).all()
    # the sentence group reads the probing prompt, not the consequence word
    assert not any({"happy", "sad"} & set(t.split()) for t in units["sentence"][0])
