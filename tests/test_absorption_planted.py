"""absorption task on planted dictionaries: synthetic activations, then the real toy model.

Synthetic world (no model): x = μ + a·p_v + b·c_w + noise with orthonormal parent directions
p_v and child directions c_w (a, b ≈ 1). A planted JumpReLU dictionary has one latent per
parent and one per child:
- clean: the parent latent reads p_v and fires on every child; child latents write c_w only;
- absorbing: an absorbed child's latent writes c_w + s·p_v and the parent latent is suppressed
  on it (fully: s = 1, silent; partially: s = 0.7, it fires at ≈ 0.3).
The task must score clean ≈ 0, all absorbed ≈ 1, the planted share of absorbed held-out tokens
when half the words are absorbed, and ≈ 0.7 fraction without full absorption for the partial
plant. On the shipped toy model the same contrast is built from the topic nouns' real
activations (a supervised dictionary of class means) and set against a random dictionary.
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from doubles.context import task_context

from saebench.architectures import JumpReLUSAE
from saebench.errors import SaebenchError
from saebench.sae import SAE
from saebench.testing import check_task_conformance
from saebench_tasks import absorption
from saebench_tasks.absorption.gate import choose
from saebench_tasks.absorption.hierarchy import Hierarchy, split_words
from saebench_tasks.absorption.probe import ConceptTokens, ground_truth, passes
from saebench_tasks.absorption.score import score_sae

N_VALUES, N_WORDS, PER_WORD, D = 4, 8, 30, 64


class World:
    """The synthetic hierarchy: directions, tokens and their ground truth."""

    def __init__(self, seed=0):
        generator = torch.Generator().manual_seed(seed)
        basis, _ = torch.linalg.qr(torch.randn(D, D, generator=generator, dtype=torch.float64))
        self.parents = basis[:, :N_VALUES].T
        self.children = basis[:, N_VALUES : N_VALUES + N_VALUES * N_WORDS].T
        self.mean = 0.5 * torch.randn(D, generator=generator, dtype=torch.float64)
        self.words = [f"w{v}_{i}" for v in range(N_VALUES) for i in range(N_WORDS)]
        self.parent_index = [v for v in range(N_VALUES) for _ in range(N_WORDS)]
        parent_of = {w: f"p{v}" for w, v in zip(self.words, self.parent_index)}
        rows, acts = [], []
        for w, word in enumerate(self.words):
            a = 1 + 0.05 * (2 * torch.rand(PER_WORD, 1, generator=generator) - 1)
            b = 1 + 0.05 * (2 * torch.rand(PER_WORD, 1, generator=generator) - 1)
            noise = 0.02 * torch.randn(PER_WORD, D, generator=generator)
            p, c = self.parents[self.parent_index[w]], self.children[w]
            acts.append(self.mean + a * p + b * c + noise)
            rows += [word] * PER_WORD
        words = np.array(rows)
        hierarchy = Hierarchy("synthetic", "planted", parent_of, tuple((w, w) for w in words))
        self.tokens = ConceptTokens(
            hierarchy=hierarchy,
            acts=torch.cat(acts).float(),
            words=words,
            parents=np.array([parent_of[w] for w in words]),
            held_out=np.isin(words, sorted(split_words(parent_of))),
        )
        self.truth = ground_truth(self.tokens)

    def dictionary(self, absorbed=(), share=1.0, suppression=2.0, theta=0.1, duplicate=False):
        """Latents 0..V-1: parents; V + w: child w. `absorbed` children write c_w + share·p_v
        and subtract suppression × their c_w reading from their parent latent's input.
        duplicate: every parent latent is split into two that both fire on all its children,
        each writing half of p_v (the last V latents)."""
        n = N_VALUES + len(self.words) + (N_VALUES if duplicate else 0)
        encoder = torch.zeros(D, n, dtype=torch.float64)
        decoder = torch.zeros(n, D, dtype=torch.float64)
        encoder[:, :N_VALUES] = self.parents.T
        decoder[:N_VALUES] = self.parents
        for w, word in enumerate(self.words):
            v = self.parent_index[w]
            encoder[:, N_VALUES + w] = self.children[w]
            decoder[N_VALUES + w] = self.children[w]
            if word in absorbed:
                decoder[N_VALUES + w] += share * self.parents[v]
                encoder[:, v] -= suppression * self.children[w]
        if duplicate:
            encoder[:, -N_VALUES:] = encoder[:, :N_VALUES]
            decoder[:N_VALUES] *= 0.5
            decoder[-N_VALUES:] = decoder[:N_VALUES]
        sae = JumpReLUSAE(D, n)
        with torch.no_grad():
            sae.W_enc.copy_(encoder.float())
            sae.W_dec.copy_(decoder.float())
            sae.b_dec.copy_(self.mean.float())
            sae.threshold.fill_(theta)
        return sae

    def absorbed_share(self, absorbed):
        """Share of each value's scored tokens (held out, probe positive) whose word is
        absorbed, averaged over values: what the full-absorption rate must recover."""
        shares = []
        for probe in self.truth.probes:
            rows = self.tokens.held_out & (self.tokens.parents == probe.value) & (probe.scores > 0)
            shares.append(np.isin(self.tokens.words[rows], sorted(absorbed)).mean())
        return float(np.mean(shares))


@pytest.fixture(scope="module")
def world():
    # One thread here, restored after: the suite's smoke run must see its 2 threads.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield World()
    torch.set_num_threads(previous)


def mean(result, field):
    return float(np.mean([getattr(v, field) for v in result.values]))


def test_the_synthetic_probe_is_present_and_every_value_is_scored(world):
    assert passes(world.truth) and world.truth.f1 == 1.0
    result = score_sae(world.dictionary(), world.truth, "cpu")
    assert len(result.values) == N_VALUES and not result.skipped


def test_clean_dictionary_scores_zero_with_one_main_latent(world):
    result = score_sae(world.dictionary(), world.truth, "cpu")
    assert mean(result, "fraction") == 0.0 and mean(result, "full_rate") == 0.0
    assert mean(result, "n_main") == 1.0 and mean(result, "main_f1") == 1.0
    assert [m.ids.tolist() for m in result.main] == [[v] for v in range(N_VALUES)]


def test_fully_absorbing_dictionary_scores_one(world):
    result = score_sae(world.dictionary(absorbed=set(world.words)), world.truth, "cpu")
    assert mean(result, "full_rate") == 1.0 and mean(result, "fraction") == 1.0
    # Only train words' latents can be main (each covers one word: a split of the parent).
    assert mean(result, "n_main") > 1 and mean(result, "main_f1") == 0.0


def test_half_absorbed_recovers_the_planted_share(world):
    absorbed = set(world.words[::2])
    expected = world.absorbed_share(absorbed)
    assert 0.2 < expected < 0.8
    result = score_sae(world.dictionary(absorbed=absorbed), world.truth, "cpu")
    assert mean(result, "full_rate") == pytest.approx(expected, abs=0.02)
    assert mean(result, "fraction") == pytest.approx(expected, abs=0.02)


def test_partial_absorption_counts_in_the_fraction_not_the_full_rate(world):
    sae = world.dictionary(absorbed=set(world.words), share=0.7, suppression=0.7)
    result = score_sae(sae, world.truth, "cpu")
    assert mean(result, "full_rate") == 0.0
    assert mean(result, "fraction") == pytest.approx(0.7, abs=0.05)


def test_a_duplicate_parent_latent_is_saebench_absorption_but_not_child_specific(world):
    """Two latents that both fire on every child, each writing half of p_v: the F1-jump rule
    keeps one (the other adds no F1), so SAEBench's fraction counts the other as absorbing
    half (min(½P, P − ½P) / P); the child-specific variant does not (it fires on the parent's
    train tokens), and neither calls it full absorption (the main latent fires)."""
    result = score_sae(world.dictionary(duplicate=True), world.truth, "cpu")
    assert mean(result, "n_main") == 1.0
    assert mean(result, "fraction") == pytest.approx(0.5, abs=0.03)
    assert mean(result, "specific_fraction") == 0.0
    assert mean(result, "full_rate") == 0.0 and mean(result, "specific_full_rate") == 0.0


def test_child_specific_variant_keeps_genuine_absorption(world):
    result = score_sae(world.dictionary(absorbed=set(world.words[::2])), world.truth, "cpu")
    assert mean(result, "specific_full_rate") == mean(result, "full_rate")
    assert mean(result, "specific_fraction") == mean(result, "fraction")


# ---- the shipped toy model ---------------------------------------------------------------------


def context(handle, sae=None, cache=None, hook=None, options=None, tmp=Path(".")):
    return task_context(
        handle,
        hook=hook,
        sae=sae,
        cache=cache,
        artifacts_dir=tmp,
        options=options or {},
        task="absorption",
    )


class SupervisedDictionary(SAE):
    """Class means of the real tokens: parent latent v writes mean(v) − μ, child latent w writes
    mean(w) − mean(v) (+ the parent's direction when w is absorbed, whose parent latent then
    stays silent). The encoder recognises the word by its nearest word mean."""

    def __init__(self, tokens, absorbed=frozenset()):
        x = tokens.acts.double()
        self.names = sorted(set(tokens.words))
        self.values = sorted(set(tokens.parents))
        parent = [self.values.index(tokens.hierarchy.parent_of[w]) for w in self.names]
        word_means = torch.stack(
            [x[torch.from_numpy(tokens.words == w)].mean(0) for w in self.names]
        )
        value_means = torch.stack(
            [x[torch.from_numpy(tokens.parents == v)].mean(0) for v in self.values]
        )
        super().__init__(x.shape[1], len(self.values) + len(self.names))
        parents = value_means - x.mean(0)
        children = word_means - value_means[parent]
        for i, word in enumerate(self.names):
            if word in absorbed:
                children[i] += parents[parent[i]]
        with torch.no_grad():
            self.W_dec.copy_(torch.cat([parents, children]).float())
            self.b_dec.copy_(x.mean(0).float())
        self.word_means, self.parent, self.absorbed = word_means.float(), parent, absorbed

    def encode(self, x):
        nearest = torch.cdist(x.float(), self.word_means).argmin(1)
        z = torch.zeros(len(x), self.d_sae)
        for row, i in enumerate(nearest.tolist()):
            z[row, len(self.values) + i] = 1.0
            if self.names[i] not in self.absorbed:
                z[row, self.parent[i]] = 1.0
        return z


@pytest.fixture(scope="module")
def toy(toy_handle):
    cache = {}
    truth = choose(context(toy_handle, cache=cache)).truth
    return toy_handle, cache, truth


def test_topic_is_chosen_and_present_at_the_default_hook(toy):
    _, _, truth = toy
    assert truth.tokens.hierarchy.name == "topic" and passes(truth)
    assert truth.f1_low > 0.9


def test_planted_absorption_on_the_toy_model_is_told_apart_from_clean_and_random(toy):
    from saebench_plugins.random_dict import RandomBaseline

    _, _, truth = toy
    tokens = truth.tokens
    clean = score_sae(SupervisedDictionary(tokens), truth, "cpu")
    absorbing = score_sae(SupervisedDictionary(tokens, frozenset(tokens.words)), truth, "cpu")
    torch.manual_seed(0)
    random = score_sae(RandomBaseline(tokens.acts.shape[1], 512, 16).fit(tokens.acts), truth, "cpu")
    assert mean(clean, "full_rate") < 0.05 and mean(clean, "fraction") < 0.05
    assert mean(absorbing, "full_rate") > 0.9 and mean(absorbing, "fraction") > 0.9
    # The random dictionary has nothing to absorb with: its main latents carry almost none of
    # the probe direction, where the clean dictionary's carry nearly all of it.
    assert mean(random, "fraction") < 0.1 and mean(random, "full_rate") < 0.1
    assert mean(random, "main_share") < 0.2 < 0.8 < mean(clean, "main_share")


def test_run_gives_declared_finite_metrics_and_leaves_the_sae_alone(toy, tmp_path):
    from saebench_plugins.random_dict import RandomBaseline

    handle, cache, truth = toy
    torch.manual_seed(0)
    sae = RandomBaseline(truth.tokens.acts.shape[1], 256, 8).fit(truth.tokens.acts)
    spec = []
    absorption.register_tasks(spec.append)
    metrics = check_task_conformance(spec[0], ctx=context(handle, sae, cache, tmp=tmp_path))
    assert {"absorption_fraction_food", "absorption_parent_latent_share"} <= set(metrics)
    # A random dictionary has no parent latent: fully absorbed in the headline, where SAEBench's
    # mean over every value would give it a perfect 0.
    assert metrics["absorption_parent_latent_share"] == 0
    assert metrics["absorption_fraction"] == 1.0 and metrics["absorption_full_rate"] == 1.0
    assert metrics["absorption_saebench_fraction"] < 0.1
    assert (tmp_path / "absorption.json").exists()


def test_a_value_without_a_parent_latent_counts_as_fully_absorbed():
    from saebench_tasks.absorption import config, metrics_of
    from saebench_tasks.absorption.metric import ValueAbsorption
    from saebench_tasks.absorption.score import SaeAbsorption

    def value(name, fraction, share):
        return ValueAbsorption(
            value=name,
            n_tokens=10,
            fraction=fraction,
            full_rate=fraction,
            specific_fraction=0.0,
            specific_full_rate=0.0,
            n_main=1,
            main_share=share,
            main_f1=0.9,
        )

    values = (value("a", 0.4, 0.9), value("b", 0.0, config.MIN_MAIN_SHARE / 2))
    metrics = metrics_of(SaeAbsorption(values, (), ()), raw_f1=1.0)
    assert metrics["absorption_fraction"] == 0.7  # b has no parent latent: counts as 1
    assert metrics["absorption_saebench_fraction"] == 0.2  # SAEBench: the raw mean
    assert metrics["absorption_fraction_b"] == 0.0  # the raw rate is still reported per value
    assert metrics["absorption_parent_latent_share"] == 0.5


def test_gate_closes_on_the_random_weight_model():
    from saebench.toyworld.plugin import load_toyworld_random

    handle = load_toyworld_random(device="cpu")
    (check,) = absorption.validity(context(handle))
    assert not check.informative
    with pytest.raises(SaebenchError, match="uninformative"):
        absorption.run(context(handle, sae=SAE(128, 8)))


def test_supports_and_the_hierarchy_option(toy):
    handle, _, _ = toy
    assert absorption.supports(handle, {}) is None
    assert "city_continent" in absorption.supports(handle, {"hierarchy": "nope"})
    no_world = type(handle)(**{**handle.__dict__, "world": None})
    assert "no toy world" in absorption.supports(no_world, {})
    forced = choose(context(handle, options={"hierarchy": "city_continent"}))
    assert forced.forced and forced.truth.tokens.hierarchy.name == "city_continent"
