"""Exact absorption on the synthetic hierarchy: planted clean, absorbing and partially absorbing
dictionaries are told apart, and the accumulator agrees with a per-sample brute force."""

import pytest
import torch

from saebench.synth.absorption import ALIGN, CARRY, AbsorptionAccumulator, absorption
from saebench.synth.generator import HierarchySpec, StreamConfig, build_stream


@pytest.fixture(scope="module")
def stream():
    config = StreamConfig(
        n_features=120,
        d=64,
        hierarchy=HierarchySpec(roots=6, branching=3, depth=2),
        max_prob=0.4,
        min_prob=0.01,
        seed=1,
    )
    return build_stream(config)


@pytest.fixture(scope="module")
def sample(stream):
    return stream.sample(20_000, 3)


def ancestors(stream, i):
    out, j = [], int(stream.hierarchy.parent[i])
    while j >= 0:
        out.append(j)
        j = int(stream.hierarchy.parent[j])
    return out


def has_active_child(stream, features):
    active = features > 0
    out = torch.zeros_like(active)
    parents, children = stream.hierarchy.pairs
    for p, c in zip(parents.tolist(), children.tolist()):
        out[:, p] |= active[:, c]
    return out


def absorbing_dictionary(stream):
    """Each latent writes its feature plus all its ancestors (w_i = u_i + Σ u_ancestor) and
    fires only when its feature is the deepest active one of its chain."""
    decoder = stream.directions.clone()
    for i in range(stream.n_features):
        for j in ancestors(stream, i):
            decoder[i] += stream.directions[j]
    return decoder


def test_clean_dictionary_has_no_absorption(stream, sample):
    result = absorption(
        sample.features, sample.features, stream.directions, stream.directions, stream.hierarchy
    )
    assert result.n_edges > 0.8 * result.n_edges_total
    assert result.full == 0.0
    assert result.partial == 0.0
    assert result.absorbed_fraction < 0.15


def test_absorbing_dictionary_scores_high_full_absorption(stream, sample):
    latents = sample.features * ~has_active_child(stream, sample.features)
    result = absorption(
        latents, sample.features, absorbing_dictionary(stream), stream.directions, stream.hierarchy
    )
    assert result.n_edges > 0.8 * result.n_edges_total
    assert result.full > 0.85
    assert result.partial < 0.05
    assert result.absorbed_fraction > 0.85


def test_partially_absorbing_dictionary_scores_partial(stream, sample):
    """The parent latent still fires (at half strength) while the child's latent carries the
    rest of the parent: partial absorption, no full absorption."""
    decoder = absorbing_dictionary(stream)
    latents = sample.features.clone()
    latents[has_active_child(stream, sample.features)] *= 0.5
    result = absorption(latents, sample.features, decoder, stream.directions, stream.hierarchy)
    assert result.full == 0.0
    assert result.partial > 0.85
    assert 0.3 < result.absorbed_fraction < 0.9


def brute_force(latents, features, decoder, stream):
    """Per-edge full / partial rates with explicit loops (the module docstring's definition)."""
    true = stream.directions
    unit = decoder / decoder.norm(dim=1, keepdim=True)
    cos = unit @ true.T
    parents, children = stream.hierarchy.pairs
    kids = {p: [] for p in parents.tolist()}
    for p, c in zip(parents.tolist(), children.tolist()):
        kids[p].append(c)
    full_rates, partial_rates = [], []
    for p, c in zip(parents.tolist(), children.tolist()):
        child_latents = [lat for lat in range(len(decoder)) if cos[lat, c] >= ALIGN]
        parent_latents = [
            lat
            for lat in range(len(decoder))
            if cos[lat, p] >= ALIGN and all(cos[lat, k] < ALIGN for k in kids[p])
        ]
        if not child_latents:
            continue
        events = full = partial = 0
        for t in range(len(features)):
            if features[t, c] <= 0:
                continue
            events += 1
            s_child = sum(
                float(latents[t, lat] * (decoder[lat] @ true[p])) for lat in child_latents
            )
            carried = max(s_child, 0.0) / float(features[t, p])
            fires = any(latents[t, lat] > 0 for lat in parent_latents)
            full += int(carried >= CARRY and not fires)
            partial += int(carried >= CARRY and fires)
        if events >= 10:
            full_rates.append(full / events)
            partial_rates.append(partial / events)
    return (
        sum(full_rates) / len(full_rates),
        sum(partial_rates) / len(partial_rates),
        len(full_rates),
    )


def test_accumulator_matches_brute_force_on_a_mixed_dictionary(stream):
    sample = stream.sample(1_500, 8)
    g = torch.Generator().manual_seed(4)
    decoder = absorbing_dictionary(stream)
    keep_clean = torch.rand(stream.n_features, generator=g) < 0.5
    decoder[keep_clean] = stream.directions[keep_clean]  # half the latents absorb, half do not
    latents = sample.features * (torch.rand(sample.features.shape, generator=g) < 0.8)
    latents[has_active_child(stream, sample.features) & ~keep_clean] = 0
    accumulator = AbsorptionAccumulator(decoder, stream.directions, stream.hierarchy)
    accumulator.add(latents[:700], sample.features[:700])  # two batches
    accumulator.add(latents[700:], sample.features[700:])
    result = accumulator.result()
    full, partial, n = brute_force(latents, sample.features, decoder, stream)
    assert result.n_edges == n
    assert result.full == pytest.approx(full, abs=1e-9)
    assert result.partial == pytest.approx(partial, abs=1e-9)
    assert 0 < result.full < 1


def test_no_hierarchy_means_no_edges():
    flat = build_stream(StreamConfig(n_features=40, d=16, hierarchy=None, seed=2))
    s = flat.sample(500, 1)
    result = absorption(s.features, s.features, flat.directions, flat.directions, flat.hierarchy)
    assert result.n_edges == 0 and result.n_edges_total == 0
