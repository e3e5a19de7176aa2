"""absorption task: the pure formulas against brute-force transcriptions of SAEBench's code.

SAEBench's calculator (sae_bench/evals/absorption/feature_absorption_calculator.py) decides each
token in a Python loop over lists; `brute_force` below transcribes that loop (with this
benchmark's two declared departures: a latent's projection is z·(d·p̂), the token's P is given),
and the vectorised `token_absorption` must agree with it token by token on random codes that
reach every branch. The F1-jump rule is checked the same way against SAEBench's loop.
"""

import math

import numpy as np
import pytest
import torch

from saebench_tasks.absorption import config
from saebench_tasks.absorption.hierarchy import candidates, safe_name, split_words
from saebench_tasks.absorption.ksparse import f1_jump, main_latents
from saebench_tasks.absorption.metric import (
    Thresholds,
    probe_alignment,
    token_absorption,
    value_absorption,
)

THRESHOLDS = Thresholds()


def brute_force(codes, decoder, probe, total, main, t=THRESHOLDS, eligible=None):
    """SAEBench's per-token decisions, one token at a time, on plain Python numbers (absorbers
    and the top latent drawn from `eligible` latents when given). Returns (fraction, full,
    branch) per token; branch names the rule that decided the fraction, so the test can check
    every rule was reached."""
    eligible = [True] * len(decoder) if eligible is None else list(eligible)
    unit = probe / np.linalg.norm(probe)
    cos = [float(d @ unit / np.linalg.norm(d)) for d in decoder]
    dot = [float(d @ unit) for d in decoder]
    out = []
    for z, p in zip(codes, total):
        projection = [float(z[i]) * dot[i] for i in range(len(dot))]
        carried = sum(projection[i] for i in main)
        absorbers = sorted(
            (
                projection[i]
                for i in range(len(dot))
                if i not in main and eligible[i] and cos[i] >= t.fraction_cos and projection[i] > 0
            ),
            reverse=True,
        )[: t.max_absorbers]
        absorbed = sum(absorbers)
        if p <= 0 or carried >= p or absorbed / p < t.share:
            fraction, branch = 0.0, "none"
        elif carried <= 0:
            fraction, branch = 1.0, "all"
        else:
            counted = min(absorbed, p - carried)
            fraction, branch = min(max(counted / (counted + carried), 0.0), 1.0), "partial"
        top = max((i for i in range(len(dot)) if eligible[i]), key=lambda i: projection[i])
        full = (
            all(abs(float(z[i])) < t.eps for i in main)
            and p > 0
            and cos[top] >= t.full_cos
            and projection[top] / p >= t.share
        )
        out.append((fraction, full, branch))
    return out


def random_case(seed, n=400, d_in=12, d_sae=20):
    """Sparse codes, decoder rows of mixed norms, some aligned with the probe; main latents
    silent on a third of the tokens and weak on another third (so every branch is reached)."""
    rng = np.random.default_rng(seed)
    probe = rng.normal(size=d_in)
    decoder = rng.normal(size=(d_sae, d_in)) * rng.uniform(0.2, 3.0, size=(d_sae, 1))
    decoder[:6] += 2.0 * probe  # aligned latents (absorber candidates and main latents)
    codes = rng.exponential(size=(n, d_sae)) * (rng.random((n, d_sae)) < 0.3)
    main = [0, 1]
    codes[: n // 3, main] = 0.0
    codes[n // 3 : 2 * n // 3, main] *= 0.05
    total = rng.normal(loc=2.0, scale=2.0, size=n)
    return codes, decoder, probe, total, main


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("restricted", [False, True])
def test_token_absorption_matches_the_brute_force_loop(seed, restricted):
    codes, decoder, probe, total, main = random_case(seed)
    eligible = np.arange(len(decoder)) % 3 != 2 if restricted else None
    dot, cos = probe_alignment(torch.tensor(decoder), torch.tensor(probe))
    fast = token_absorption(
        torch.tensor(codes),
        dot,
        cos,
        torch.tensor(total),
        torch.tensor(main),
        THRESHOLDS,
        eligible=None if eligible is None else torch.tensor(eligible),
    )
    slow = brute_force(codes, decoder, probe, total, main, eligible=eligible)
    np.testing.assert_allclose(fast.fraction.numpy(), [f for f, _, _ in slow], atol=1e-12)
    assert fast.full.tolist() == [full for _, full, _ in slow]
    branches = {b for _, _, b in slow}
    assert branches == {"none", "all", "partial"}, branches
    assert 0 < sum(full for _, full, _ in slow) < len(slow)


def test_hand_computed_token():
    """One token, unit decoders along e0 (the probe) and e1: main latent 0 carries 0.3 of
    P = 1, the absorber (cos 0.8) carries 0.6 → fraction 0.6 / 0.9; main fires → not full."""
    decoder = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    dot, cos = probe_alignment(decoder, torch.tensor([2.0, 0.0]))
    codes = torch.tensor([[0.3, 0.75, 5.0]])
    scores = token_absorption(codes, dot, cos, torch.tensor([1.0]), torch.tensor([0]))
    assert scores.fraction.item() == pytest.approx(0.6 / 0.9)
    assert not scores.full.item()
    assert scores.main_share.item() == pytest.approx(0.3)
    # The main latent silent: the absorber carries 0.6 ≥ 0.4 of P, so fully absorbed.
    silent = token_absorption(codes * torch.tensor([0.0, 1.0, 1.0]), dot, cos, torch.ones(1), [0])
    assert silent.full.item() and silent.fraction.item() == 1.0


def test_probe_alignment_normalises_the_probe_and_zero_rows_have_cosine_zero():
    decoder = torch.tensor([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]])
    dot, cos = probe_alignment(decoder, torch.tensor([0.0, 10.0]))
    assert dot.tolist() == [4.0, 0.0, -2.0]
    assert cos.tolist() == pytest.approx([0.8, 0.0, -1.0])


def saebench_f1_jump(f1s, threshold=config.F1_JUMP_THRESHOLD):
    """SAEBench's add_feature_splits_to_metrics_df for one letter: the number of split feats."""
    prev_best, chosen = -100, 0
    for k in range(1, len(f1s) + 1):
        if f1s[k - 1] > prev_best + threshold:
            prev_best, chosen = f1s[k - 1], k
        else:
            break
    return chosen


def test_f1_jump_matches_saebench_loop():
    rng = np.random.default_rng(0)
    for _ in range(500):
        f1s = np.cumsum(rng.uniform(-0.02, 0.12, size=10)).clip(0, 1).tolist()
        assert f1_jump(f1s) == saebench_f1_jump(f1s)
    assert f1_jump([0.5, 0.6, 0.61, 0.9]) == 2  # 0.61 is not above 0.63: stop, 0.9 never seen
    assert f1_jump([0.9, 0.9]) == 1
    assert f1_jump([math.nan, 0.5]) == 0


def test_main_latents_find_the_parent_latent_and_a_split():
    """Latent 3 fires on every positive: one main latent. Latents 5 and 7 each fire on half the
    positives (a split parent): both are main (F1 jumps from 2/3 to 1)."""
    rng = np.random.default_rng(1)
    n = 400
    labels = rng.random(n) < 0.3
    noise = rng.exponential(size=(n, 12)) * (rng.random((n, 12)) < 0.2)
    whole = noise.copy()
    whole[:, 3] = labels * rng.uniform(1, 2, n)
    chosen = main_latents(whole, labels)
    assert chosen.ids.tolist() == [3] and chosen.f1s[0] == 1.0
    split = noise.copy()
    half = rng.random(n) < 0.5
    split[:, 5] = labels * half * rng.uniform(1, 2, n)
    split[:, 7] = labels * ~half * rng.uniform(1, 2, n)
    chosen = main_latents(split, labels)
    assert sorted(chosen.ids.tolist()) == [5, 7]


def test_value_absorption_means_and_an_empty_value():
    scores = token_absorption(
        torch.tensor([[0.0, 1.0], [1.0, 0.0]]),
        torch.tensor([1.0, 1.0]),
        torch.tensor([1.0, 1.0]),
        torch.tensor([1.0, 1.0]),
        torch.tensor([0]),
    )
    summary = value_absorption("v", scores, scores, n_main=1, main_f1=0.5)
    assert (summary.n_tokens, summary.fraction, summary.full_rate) == (2, 0.5, 0.5)
    empty = token_absorption(torch.zeros(0, 2), *torch.ones(2, 2), torch.zeros(0), [0])
    assert math.isnan(value_absorption("v", empty, empty, 1, 0.0).fraction)


def test_split_words_is_stratified_fixed_and_keeps_two_train_words():
    parent_of = {f"w{i}": "abc"[i % 3] for i in range(3 * 8)} | {"x1": "d", "x2": "d", "x3": "d"}
    held_out = split_words(parent_of)
    assert held_out == split_words(parent_of)
    for value in "abcd":
        words = [w for w, v in parent_of.items() if v == value]
        n_test = sum(w in held_out for w in words)
        assert 1 <= n_test <= len(words) - 2
    assert sum(w in held_out for w in parent_of if parent_of[w] == "a") == 2  # 25% of 8


def test_toy_world_candidates():
    from saebench.toyworld import load_world
    from saebench.toyworld.world_v2 import WorldV2

    v1 = {h.name: h for h in candidates(load_world(), 300)}
    assert list(v1)[0] == "topic" and "first_letter" not in v1
    topic = v1["topic"]
    assert len(topic.values) == 6 and "ball" not in topic.parent_of  # also an object
    assert all(text.split()[-1] == word for text, word in topic.prefixes)
    assert "city_continent" in v1
    v2 = [h.name for h in candidates(WorldV2(), 300)]
    assert v2[0] == "first_letter"
    assert safe_name("north america") == "north_america"
