"""sparse_probing as SAEBench defines it: balanced sets and the one-dimension reference against
brute force, the label choice on the toy model (measured), a supervised dictionary beats a
random one, and the validity gate opens on a planted signal and closes without one."""

from dataclasses import replace
from itertools import product

import numpy as np
import pytest
import torch
from doubles.context import task_context

from saebench import probing
from saebench.errors import ConfigError
from saebench.sae import SAE
from saebench.specs import TaskContext


@pytest.mark.parametrize("seed", range(5))
def test_balanced_rows_are_half_positive_and_spread_negatives_evenly(seed):
    rng = np.random.default_rng(seed)
    n = 300
    classes = rng.integers(5, size=n)
    classes[rng.random(n) < 0.3] = 0  # class 0 is common: the sample must not follow it
    positive = classes == 2
    rows = np.sort(rng.choice(n, 200, replace=False))
    picked = probing.balanced_rows(positive, rows, classes, seed=seed)
    assert set(picked) <= set(rows) and len(set(picked)) == len(picked)
    n_pos = positive[picked].sum()
    assert n_pos == positive[rows].sum() and len(picked) == 2 * n_pos  # every positive, 1:1
    counts = np.bincount(classes[picked][~positive[picked]], minlength=5)
    available = np.bincount(classes[rows][~positive[rows]], minlength=5)
    # Brute force: the most even split of n_pos over the other classes, within availability.
    others = [c for c in range(5) if c != 2]
    best = min(
        (
            split
            for split in product(*(range(available[c] + 1) for c in others))
            if sum(split) == n_pos
        ),
        key=lambda split: max(split) - min(split),
    )
    assert max(counts[others]) - min(counts[others]) == max(best) - min(best)
    assert np.array_equal(picked, probing.balanced_rows(positive, rows, classes, seed=seed))


def test_balanced_rows_subsample_the_positives_when_negatives_are_fewer():
    positive = np.array([True] * 30 + [False] * 10)
    picked = probing.balanced_rows(positive, np.arange(40), positive.astype(int), seed=0)
    assert positive[picked].sum() == 10 and (~positive[picked]).sum() == 10


def brute_force_best_dimension(features, labels, train, test):
    best = (-1.0, 0, 0.0, True)
    for column in range(features.shape[1]):
        values = np.sort(np.unique(features[train, column]))
        cuts = np.r_[-np.inf, (values[1:] + values[:-1]) / 2, np.inf]
        for cut, up in product(cuts, (True, False)):
            predicted = (features[train, column] > cut) == up
            accuracy = (predicted == labels[train]).mean()
            if accuracy > best[0] + 1e-12:
                best = (accuracy, column, cut, up)
    _, column, cut, up = best
    return column, float((((features[test, column] > cut) == up) == labels[test]).mean())


@pytest.mark.parametrize("seed", range(6))
def test_best_dimension_matches_brute_force_stumps(seed):
    rng = np.random.default_rng(seed)
    n, d = 60, 4
    labels = rng.random(n) < 0.5
    features = np.round(rng.normal(size=(n, d)), 1)  # ties
    features[:, seed % d] -= 1.5 * labels  # one informative column, read with a negative sign
    train, test = probing.split_indices(n, seed)
    column, accuracy = probing.best_dimension_accuracy(features, labels, train, test)
    expected_column, expected = brute_force_best_dimension(features, labels, train, test)
    train_accuracy = lambda c: brute_force_best_dimension(  # noqa: E731
        features[:, [c]], labels, train, train
    )[1]
    # Ties between columns may pick either; both must reach the best train accuracy.
    assert train_accuracy(column) == pytest.approx(train_accuracy(expected_column))
    if column == expected_column:
        assert accuracy == pytest.approx(expected)


def test_k_option_parses_and_rejects_bad_values():
    from saebench_tasks.sparse_probing.reference import k_values

    assert k_values({}) == (1, 2, 5)
    assert k_values({"k": "20, 1,5"}) == (1, 5, 20)
    for bad in ("0", "a", ""):
        with pytest.raises(ConfigError, match="k=1,2,5,20"):
            k_values({"k": bad})


@pytest.fixture(scope="module")
def contexts(toy_handle):
    from saebench_plugins.identity import IdentityBaseline
    from saebench_plugins.random_dict import RandomBaseline

    torch.manual_seed(0)
    sample = torch.randn(2000, 128)
    shared: dict = {}
    make = lambda sae: task_context(  # noqa: E731
        toy_handle, sae=sae, eval_acts=sample, cache=shared, artifacts_dir=None, method="", knob=0
    )
    return make(IdentityBaseline(128).fit(sample)), make(RandomBaseline(128, 512, 4).fit(sample))


def test_label_choice_on_the_toy_model_is_measured_not_assumed(contexts):
    """On the shipped model at blocks.1.hook_resid_pre (mean pooling), the topics and the
    adjective's polarity are read by the full raw probe but by no single raw dimension; tense,
    number and negation sit in one dimension; sentiment needs the negation and is not read."""
    from saebench_tasks.sparse_probing.reference import scored_labels

    identity, _ = contexts
    status = scored_labels(identity)
    scored = {name for name, s in status.items() if s == "scored"}
    assert {f"topic_{t}" for t in ("food", "music", "travel", "weather")} <= scored
    assert "adjective" in scored
    assert status["tense"].startswith("trivial") and status["number"].startswith("trivial")
    assert status["sentiment"].startswith("unreadable")


def test_every_balanced_test_set_is_half_positive(contexts):
    from saebench_tasks.sparse_probing.reference import raw_references

    identity, _ = contexts
    for split, _ in raw_references(identity, 1):
        assert split.label.positive[split.test].mean() == 0.5
        assert split.label.positive[split.train].mean() == 0.5
        assert not set(split.train) & set(split.test)


def supervised_probing_sae(ctx):
    """An 'ideal' dictionary for the probing labels: one ±latent pair per label along the
    label's mean difference on its balanced train set (a supervised dictionary, as in IOI)."""
    from saebench_tasks.sparse_probing.reference import pooled_inputs, raw_references

    acts, _, pooled, _ = pooled_inputs(ctx)
    directions = []
    for split, _ in raw_references(ctx, ctx.seed):
        y, train = split.label.positive[split.train], pooled[split.train]
        direction = train[y].mean(0) - train[~y].mean(0)
        directions.append(torch.tensor(direction / np.linalg.norm(direction), dtype=torch.float32))
    both = torch.cat([torch.stack(directions), -torch.stack(directions)])
    sae = SAE(128, len(both))
    with torch.no_grad():
        sae.W_enc.copy_(both.T)
        sae.W_dec.copy_(both)
        sae.b_dec.copy_(torch.cat(acts).mean(0))
    return sae


def test_supervised_dictionary_beats_random_and_identity_matches_raw(contexts):
    from saebench_tasks import sparse_probing

    identity, random = contexts
    ident, rand = sparse_probing.run(identity), sparse_probing.run(random)
    ideal = sparse_probing.run(replace(identity, sae=supervised_probing_sae(identity)))
    # ±e_i latents see what the raw top-k probe sees (up to the sign split).
    assert ident["probe_acc_k5_mean"] >= ident["raw_probe_acc_k5_mean"] - 0.03
    assert ideal["probe_acc_k1_mean"] > rand["probe_acc_k1_mean"] + 0.1
    assert ideal["probe_labels_scored"] == rand["probe_labels_scored"] >= 5
    accuracies = [v for k, v in ident.items() if "acc" in k]
    assert all(0.3 <= v <= 1 for v in accuracies)
    # The headline is the mean over the scored labels only.
    from saebench_tasks.sparse_probing.reference import scored_labels

    scored = [n for n, s in scored_labels(identity).items() if s == "scored"]
    assert ident["probe_acc_k1_mean"] == pytest.approx(
        np.mean([ident[f"probe_acc_k1_{n}"] for n in scored])
    )


def hand_built_context() -> TaskContext:
    return task_context(artifacts_dir=None, task="sparse_probing")


@pytest.mark.parametrize(
    ("kind", "opens"), [("planted", True), ("shuffled", False), ("random", False)]
)
def test_validity_gate_opens_on_a_planted_signal_and_closes_without_one(monkeypatch, kind, opens):
    from saebench_tasks import sparse_probing
    from saebench_tasks.sparse_probing import reference
    from saebench_tasks.sparse_probing.labels import ProbeLabel

    rng = np.random.default_rng(13)
    n = 600
    value = rng.integers(3, size=n)
    raw = rng.normal(size=(n, 12))
    if kind != "random":
        # Spread over four dimensions each: readable in full, by no single dimension.
        raw[:, :4] += 1.5 * (value == 0)[:, None]
        raw[:, 4:8] += 1.5 * (value == 1)[:, None]
    if kind == "shuffled":
        value = rng.permutation(value)
    labels = tuple(ProbeLabel(name, value == i, value) for i, name in enumerate(("a", "b")))
    monkeypatch.setattr(
        reference, "pooled_inputs", lambda ctx: (None, labels, raw, probing.mean_pool)
    )
    checks = {c.name: c for c in sparse_probing.validity(hand_built_context())}
    assert set(checks) == {
        "raw_probe_acc_full_a",
        "raw_probe_acc_full_b",
        "raw_probe_acc_full_mean",
    }
    assert all(check.informative is opens for check in checks.values())
    assert all(check.chance == 0.5 for check in checks.values())  # balanced sets
    assert checks["raw_probe_acc_full_mean"].governs == ()  # fails: the whole task uninformative
    a = checks["raw_probe_acc_full_a"]
    assert a.covers("probe_acc_k5_a") and not a.covers("probe_acc_k5_b")
    assert not a.covers("probe_acc_k5_mean") and not a.covers("raw_probe_acc_k5_mean")


def test_declared_chance_is_one_half_for_every_label():
    from saebench import plugins

    spec = plugins.get_tasks()["sparse_probing"]
    for metric in ("probe_acc_k1_topic_food", "probe_acc_k5_mean", "probe_acc_k2_label_x"):
        assert spec.metric_info(metric).chance == 0.5 and spec.metric_info(metric).higher_is_better
    assert spec.metric_info("raw_probe_acc_full_mean").higher_is_better is None


def test_best_dimension_rejects_non_finite_features():
    features = np.zeros((10, 2))
    features[:, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        probing.best_dimension_accuracy(features, np.arange(10) < 5, np.arange(6), np.arange(6, 10))
