"""The synthetic stream's properties: determinism, superposition, the hierarchy (children fire
only with their parent, siblings exclusively, magnitudes scaled by the parent), Zipfian rates,
correlated firing, and the true L0 it records."""

import math

import pytest
import torch

from saebench.errors import ConfigError
from saebench.synth.generator import (
    HierarchySpec,
    StreamConfig,
    build_hierarchy,
    build_stream,
    compensated_probabilities,
    measure_firing,
    orthogonalize,
    zipf_probabilities,
)
from saebench.synth.presets import SYNTH_PRESETS

CONFIG = StreamConfig(
    n_features=300,
    d=40,
    hierarchy=HierarchySpec(roots=6, branching=3, depth=2),
    max_prob=0.4,
    min_prob=0.005,
    correlation_rank=6,
    seed=3,
)


@pytest.fixture(scope="module")
def stream():
    return build_stream(CONFIG)


@pytest.fixture(scope="module")
def sample(stream):
    return stream.sample(40_000, 11)


def test_same_seed_same_stream_and_samples_other_seed_differs(stream):
    again = build_stream(CONFIG)
    assert torch.equal(again.directions, stream.directions)
    assert torch.equal(again.sample(500, 1).acts, stream.sample(500, 1).acts)
    assert not torch.equal(stream.sample(500, 1).acts, stream.sample(500, 2).acts)
    other = build_stream(
        StreamConfig(**{**CONFIG.to_json(), "hierarchy": CONFIG.hierarchy, "seed": 4})
    )
    assert not torch.equal(other.directions, stream.directions)


def test_superposition_unit_directions_and_acts_are_the_sum(stream, sample):
    assert stream.n_features > stream.d
    assert torch.allclose(stream.directions.norm(dim=1), torch.ones(stream.n_features), atol=1e-5)
    assert float(stream.bias.norm()) == pytest.approx(CONFIG.bias_norm)
    expected = sample.features @ stream.directions + stream.bias
    assert torch.allclose(sample.acts, expected, atol=1e-4)
    assert (sample.features >= 0).all()


def test_hierarchy_is_breadth_first_complete_trees():
    h = build_hierarchy(300, CONFIG.hierarchy)
    spec = CONFIG.hierarchy
    assert int((h.depth == 0).sum()) == spec.roots
    assert int((h.depth >= 0).sum()) == spec.roots * spec.tree_size
    parents, children = h.pairs
    assert len(children) == spec.roots * (spec.tree_size - 1)
    assert bool((parents < children).all())  # parents come first (and so fire more often)
    assert bool((h.depth[children] == h.depth[parents] + 1).all())
    for group, group_parent in zip(h.groups, h.group_parents):
        assert group.shape[1] == spec.branching
        assert bool((h.parent[group] == group_parent[:, None]).all())


def test_children_fire_only_with_their_parent_and_exclusively(stream, sample):
    fired = sample.features > 0
    parents, children = stream.hierarchy.pairs
    assert not bool((fired[:, children] & ~fired[:, parents]).any())
    for group in stream.hierarchy.groups:
        assert int(fired[:, group].sum(-1).max()) <= 1
    # and exclusion did bind: without it, siblings would co-fire
    loose = build_stream(
        StreamConfig(
            **{**CONFIG.to_json(), "hierarchy": HierarchySpec(6, 3, 2, mutually_exclusive=False)}
        )
    )
    loose_fired = loose.sample(40_000, 11).features > 0
    assert int(max(loose_fired[:, g].sum(-1).max() for g in loose.hierarchy.groups)) >= 2


def test_child_magnitudes_scale_with_their_parent(stream, sample):
    a = sample.features
    parents, children = stream.hierarchy.pairs
    both = (a[:, children] > 0) & (a[:, parents] > 0)
    child = a[:, children][both]
    parent = a[:, parents][both]
    assert torch.corrcoef(torch.stack([child, parent]))[0, 1] > 0.3
    flat = (
        build_stream(
            StreamConfig(
                **{
                    **CONFIG.to_json(),
                    "hierarchy": HierarchySpec(6, 3, 2, scale_children_by_parent=False),
                }
            )
        )
        .sample(40_000, 11)
        .features
    )
    both = (flat[:, children] > 0) & (flat[:, parents] > 0)
    r = torch.corrcoef(torch.stack([flat[:, children][both], flat[:, parents][both]]))[0, 1]
    assert abs(float(r)) < 0.1


def test_zipf_probabilities_shape():
    p = zipf_probabilities(100, 0.5, 0.4, 0.01)
    assert float(p[0]) == pytest.approx(0.4) and float(p[-1]) == pytest.approx(0.01)
    assert bool((p[1:] <= p[:-1]).all())
    raw = torch.arange(1, 101, dtype=torch.float64) ** -0.5
    expected = 0.01 + 0.39 * (raw - raw[-1]) / (raw[0] - raw[-1])
    assert torch.allclose(p.double(), expected, atol=1e-7)


def test_free_features_fire_at_their_zipf_rate(stream, sample):
    rates = (sample.features > 0).float().mean(0)
    free = (stream.hierarchy.depth < 0).nonzero().flatten()
    base = stream.base_probs[free]
    se = (base * (1 - base) / sample.features.shape[0]).sqrt()
    assert bool(((rates[free] - base).abs() <= 5 * se + 1e-3).all())
    roots = (stream.hierarchy.depth == 0).nonzero().flatten()
    assert torch.allclose(rates[roots], stream.base_probs[roots], atol=0.015)


def test_compensation_raises_children_by_the_papers_factor():
    h = build_hierarchy(10, HierarchySpec(roots=1, branching=3, depth=1))
    base = torch.tensor([0.5, 0.2, 0.1, 0.05, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3])
    corrected = compensated_probabilities(base, h)
    # child 1: 0.2 / 0.5 · (1 + (0.1 + 0.05) / 0.5)
    assert float(corrected[1]) == pytest.approx(0.2 / 0.5 * (1 + 0.15 / 0.5))
    assert float(corrected[0]) == pytest.approx(0.5)
    assert bool((corrected <= 1).all())


def test_correlated_firing_keeps_marginals_and_adds_correlation():
    free = dict(CONFIG.to_json(), hierarchy=None, min_prob=0.1, max_prob=0.3)
    independent = build_stream(StreamConfig(**{**free, "correlation_rank": 0}))
    correlated = build_stream(
        StreamConfig(**{**free, "correlation_rank": 2, "correlation_scale": 0.6})
    )
    for s, expect_correlated in ((independent, False), (correlated, True)):
        fired = (s.sample(20_000, 5).features[:, :40] > 0).float()
        assert torch.allclose(fired.mean(0), s.base_probs[:40], atol=0.02)
        c = torch.corrcoef(fired.T)
        off = c[~torch.eye(40, dtype=torch.bool)].abs()
        assert (float(off.max()) > 0.15) == expect_correlated


def test_orthogonalization_lowers_interference():
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(200, 20, generator=g)
    before = raw / raw.norm(dim=1, keepdim=True)
    after = orthogonalize(raw, steps=100, lr=3e-3)

    def interference(u):
        gram = u @ u.T
        return float((gram - torch.eye(len(u))).pow(2).sum())

    assert interference(after) < interference(before)
    assert torch.allclose(after.norm(dim=1), torch.ones(200), atol=1e-5)


def test_measured_true_l0_agrees_with_an_independent_sample(stream):
    summary = measure_firing(stream, 30_000, width=50, seed=21)
    fresh = stream.sample(30_000, 99).features > 0
    l0 = float(fresh.sum(1).float().mean())
    assert abs(l0 - summary.true_l0) < 5 * math.sqrt(2) * summary.true_l0_se + 1e-6
    assert 0 < summary.true_l0_top < summary.true_l0
    assert summary.true_l0 == pytest.approx(sum(summary.rates), rel=1e-6)


def test_published_preset_is_synthsaebench_16k():
    config = SYNTH_PRESETS["published"].stream
    assert (config.n_features, config.d) == (16_384, 768)
    assert (config.hierarchy.roots, config.hierarchy.branching, config.hierarchy.depth) == (
        128,
        4,
        3,
    )
    assert SYNTH_PRESETS["published"].d_sae == 4_096


@pytest.mark.parametrize(
    "overrides,match",
    [
        ({"d": 400}, "d < n_features"),
        ({"min_prob": 0.5}, "min_prob"),
        ({"hierarchy": HierarchySpec(roots=200, branching=3, depth=2)}, "fewer roots"),
        ({"hierarchy": HierarchySpec(roots=2, branching=1, depth=2)}, "branching >= 2"),
    ],
)
def test_bad_configs_name_the_fix(overrides, match):
    with pytest.raises(ConfigError, match=match):
        build_stream(
            StreamConfig(**{**CONFIG.to_json(), "hierarchy": CONFIG.hierarchy, **overrides})
        )
