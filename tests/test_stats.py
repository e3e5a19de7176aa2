"""saebench.stats: interval math against scipy, the bootstrap against a brute-force loop,
interpolation at matched L0 against a hand computation, verdicts and the matched-L0 comparison on
constructed frames. Fast, no model."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from saebench import stats
from saebench.results import COLUMNS
from saebench.specs import L0
from saebench.stats import (
    BETTER,
    UNKNOWN,
    WITHIN_NOISE,
    WORSE,
    Interval,
    aggregate_over_seeds,
    bootstrap_interval,
    compare_at_matched_l0,
    compare_at_one_l0,
    difference_interval,
    matched_l0_grid,
    one_knob_l0,
    per_seed_values_at_l0,
    seed_interval,
    verdict,
)


def tidy(rows) -> pd.DataFrame:
    """A tidy frame from (method, knob, seed, task, metric, value) tuples, one model and hook."""
    return pd.DataFrame(
        [
            ("toy", "blocks.0", method, knob, seed, task, metric, value)
            for method, knob, seed, task, metric, value in rows
        ],
        columns=COLUMNS,
    )


def curve_rows(method, seed, points, metric="score"):
    """Rows for one seed's curve: points = [(knob, l0, value), ...]."""
    out = []
    for knob, l0, value in points:
        out.append((method, knob, seed, "frontier", L0, l0))
        out.append((method, knob, seed, "task", metric, value))
    return out


# ---- Interval ------------------------------------------------------------------------------
def test_interval_excludes_and_half_width():
    interval = Interval(mean=1.0, std=0.5, low=0.5, high=1.5, n=3)
    assert interval.excludes(0.0) and interval.excludes(2.0)
    assert not interval.excludes(1.0) and not interval.excludes(0.5)  # ends are inside
    assert interval.half_width == pytest.approx(0.5)
    missing = Interval(mean=1.0, std=math.nan, low=math.nan, high=math.nan, n=1)
    assert not missing.excludes(0.0) and math.isnan(missing.half_width)


# ---- seed_interval against scipy -------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 3, 5, 12])
@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_seed_interval_matches_scipy_t_interval(n, confidence):
    rng = np.random.default_rng(n)
    values = rng.normal(3.0, 0.7, size=n)
    interval = seed_interval(values, confidence=confidence)
    low, high = scipy_stats.t.interval(
        confidence, n - 1, loc=values.mean(), scale=scipy_stats.sem(values)
    )
    assert interval.n == n
    assert interval.mean == pytest.approx(values.mean())
    assert interval.std == pytest.approx(values.std(ddof=1))
    assert (interval.low, interval.high) == pytest.approx((low, high))


def test_seed_interval_default_is_95_percent():
    values = [1.0, 2.0, 4.0]
    assert stats.CONFIDENCE == 0.95
    assert seed_interval(values) == seed_interval(values, confidence=0.95)


def test_seed_interval_drops_nans_and_handles_one_and_zero_seeds():
    assert seed_interval([1.0, math.nan, 3.0]) == seed_interval([1.0, 3.0])
    one = seed_interval([0.25, math.nan])
    assert one.mean == 0.25 and one.n == 1
    assert math.isnan(one.std) and math.isnan(one.low) and math.isnan(one.high)
    none = seed_interval([])
    assert none.n == 0 and math.isnan(none.mean)


def test_seed_interval_of_identical_values_is_a_point_interval():
    interval = seed_interval([0.5, 0.5, 0.5])
    assert (interval.std, interval.low, interval.high) == (0.0, 0.5, 0.5)


def test_confidence_must_be_a_probability():
    with pytest.raises(ValueError, match="confidence"):
        seed_interval([1.0, 2.0], confidence=95)


# ---- difference_interval against scipy -------------------------------------------------------
def welch_reference(a, b, confidence):
    result = scipy_stats.ttest_ind(a, b, equal_var=False)
    if hasattr(result, "confidence_interval"):
        ci = result.confidence_interval(confidence_level=confidence)
        return result.df, (ci.low, ci.high)
    # Older scipy: the same interval from its degrees of freedom.
    se = math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
    diff = np.mean(a) - np.mean(b)
    return result.df, scipy_stats.t.interval(confidence, result.df, loc=diff, scale=se)


@pytest.mark.parametrize(("na", "nb"), [(2, 2), (3, 3), (3, 7), (10, 4)])
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_difference_interval_matches_scipy_welch(na, nb, confidence):
    rng = np.random.default_rng(100 * na + nb)
    a = rng.normal(1.0, 0.3, size=na)
    b = rng.normal(0.8, 1.1, size=nb)  # unequal variances: where Welch and Student differ
    df, (low, high) = welch_reference(a, b, confidence)
    interval = difference_interval(a, b, confidence=confidence)
    assert interval.mean == pytest.approx(a.mean() - b.mean())
    assert (interval.low, interval.high) == pytest.approx((low, high))
    se = math.sqrt(a.var(ddof=1) / na + b.var(ddof=1) / nb)
    assert interval.std == pytest.approx(se)
    assert interval.half_width == pytest.approx(scipy_stats.t.ppf(0.5 + confidence / 2, df) * se)
    assert interval.n == na + nb


def test_difference_with_a_single_seed_side_has_no_interval():
    # One value has no measured noise: using the other side's alone would treat it as exact
    # and call a lucky single seed "better".
    rng = np.random.default_rng(7)
    sample = rng.normal(2.0, 0.5, size=5)
    left = difference_interval([1.0], sample)
    assert left.mean == pytest.approx(1.0 - sample.mean()) and math.isnan(left.low)
    right = difference_interval(sample, [1.0, math.nan])
    assert math.isnan(right.high) and verdict(right, higher_is_better=True) == UNKNOWN


def test_a_difference_below_the_metric_floor_is_within_noise():
    tight = difference_interval([0.8, 0.8, 0.8], [0.79, 0.79, 0.79])  # zero variance
    assert tight.excludes(0) and verdict(tight, True) == BETTER
    assert verdict(tight, True, floor=0.05) == WITHIN_NOISE


def test_difference_of_two_single_seeds_has_no_interval():
    interval = difference_interval([0.9], [0.7])
    assert interval.mean == pytest.approx(0.2)
    assert math.isnan(interval.low) and math.isnan(interval.high) and math.isnan(interval.std)
    assert verdict(interval, higher_is_better=True) == UNKNOWN


def test_difference_of_deterministic_scores_is_degenerate():
    interval = difference_interval([0.5, 0.5, 0.5], [0.25, 0.25])
    assert (interval.mean, interval.low, interval.high, interval.std) == (0.25, 0.25, 0.25, 0.0)
    assert verdict(interval, higher_is_better=True) == BETTER
    tie = difference_interval([0.5, 0.5], [0.5, 0.5, 0.5])
    assert verdict(tie, higher_is_better=True) == WITHIN_NOISE


def test_difference_with_an_empty_side_is_nan():
    interval = difference_interval([], [1.0, 2.0])
    assert math.isnan(interval.mean) and verdict(interval, True) == UNKNOWN


# ---- bootstrap_interval --------------------------------------------------------------------
def brute_force_bootstrap(values, confidence, n_resamples, seed):
    rng = np.random.default_rng(seed)
    n = len(values)
    means = []
    for _ in range(n_resamples):
        means.append(values[rng.integers(0, n, size=n)].mean())
    means = np.array(means)
    alpha = 1 - confidence
    return means.std(ddof=1), np.quantile(means, alpha / 2), np.quantile(means, 1 - alpha / 2)


@pytest.mark.parametrize("n", [2, 17, 301])
def test_bootstrap_matches_a_brute_force_loop(n):
    values = np.random.default_rng(n).exponential(1.0, size=n)
    interval = bootstrap_interval(values, confidence=0.9, n_resamples=500, seed=3)
    std, low, high = brute_force_bootstrap(values, 0.9, 500, 3)
    assert interval.mean == pytest.approx(values.mean())
    assert interval.n == n
    assert (interval.std, interval.low, interval.high) == pytest.approx((std, low, high))


def test_bootstrap_chunking_does_not_change_the_result(monkeypatch):
    values = np.random.default_rng(0).normal(size=101)
    whole = bootstrap_interval(values, n_resamples=300, seed=5)
    monkeypatch.setattr(stats, "_BOOTSTRAP_CHUNK", 250)  # two resamples per chunk
    assert bootstrap_interval(values, n_resamples=300, seed=5) == whole


def test_bootstrap_is_deterministic_per_seed():
    values = np.random.default_rng(1).uniform(size=50)
    assert bootstrap_interval(values, seed=11) == bootstrap_interval(list(values), seed=11)
    assert bootstrap_interval(values, seed=11) != bootstrap_interval(values, seed=12)


def test_bootstrap_covers_the_true_mean_on_a_big_sample():
    true_mean, n = 0.3, 5000
    per_prompt = (np.random.default_rng(2).uniform(size=n) < true_mean).astype(float)  # 0/1
    interval = bootstrap_interval(per_prompt)
    assert interval.low < true_mean < interval.high
    # The percentile interval of a mean of n Bernoullis is ≈ ± 1.96 · sqrt(p(1 − p) / n).
    expected = 1.96 * math.sqrt(true_mean * (1 - true_mean) / n)
    assert interval.half_width == pytest.approx(expected, rel=0.15)
    assert interval.std == pytest.approx(expected / 1.96, rel=0.15)


def test_bootstrap_drops_nans_and_needs_two_items():
    values = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    with_nan = np.append(values, math.nan)
    assert bootstrap_interval(with_nan, seed=4) == bootstrap_interval(values, seed=4)
    one = bootstrap_interval([0.7])
    assert one.mean == 0.7 and one.n == 1 and math.isnan(one.low)


# ---- verdicts ------------------------------------------------------------------------------
def test_verdicts_on_constructed_data():
    rng = np.random.default_rng(0)
    baseline = 0.5 + 0.01 * rng.normal(size=4)
    win = 0.7 + 0.01 * rng.normal(size=4)
    loss = 0.3 + 0.01 * rng.normal(size=4)
    tie = baseline[::-1]  # the same seed values: a difference of exactly 0
    noisy = 0.51 + 0.2 * rng.normal(size=3)
    assert verdict(difference_interval(win, baseline), higher_is_better=True) == BETTER
    assert verdict(difference_interval(loss, baseline), higher_is_better=True) == WORSE
    assert verdict(difference_interval(tie, baseline), higher_is_better=True) == WITHIN_NOISE
    assert verdict(difference_interval(noisy, baseline), higher_is_better=True) == WITHIN_NOISE
    assert verdict(difference_interval([0.7], [0.5]), higher_is_better=True) == UNKNOWN
    # Lower is better (e.g. FVU): the same differences read the other way.
    assert verdict(difference_interval(win, baseline), higher_is_better=False) == WORSE
    assert verdict(difference_interval(loss, baseline), higher_is_better=False) == BETTER
    assert verdict(difference_interval(tie, baseline), higher_is_better=False) == WITHIN_NOISE


# ---- interpolation at matched L0 -------------------------------------------------------------
def test_per_seed_values_at_l0_match_a_hand_computation():
    frame = tidy(
        curve_rows("topk", 0, [(8.0, 10.0, 0.2), (32.0, 40.0, 0.6)])
        + curve_rows("topk", 1, [(8.0, 10.0, 0.3), (32.0, 40.0, 0.5)])
        + curve_rows("gated", 0, [(8.0, 10.0, 9.0), (32.0, 40.0, 9.0)])  # another method
    )
    got = per_seed_values_at_l0(frame, "topk", "score", 20.0)
    # v10 + (v40 − v10) · log(20 / 10) / log(40 / 10), per seed
    expected = [
        v10 + (v40 - v10) * math.log(2) / math.log(4) for v10, v40 in [(0.2, 0.6), (0.3, 0.5)]
    ]
    assert got == pytest.approx(expected)
    assert got == pytest.approx([0.4, 0.4])
    assert per_seed_values_at_l0(frame, "topk", "score", 10.0) == pytest.approx([0.2, 0.3])


def test_per_seed_values_pair_points_by_knob_and_seed_and_drop_uncovered_seeds():
    frame = tidy(
        # Rows in scrambled order: pairing is by (method, knob, seed), not position.
        curve_rows("topk", 1, [(32.0, 40.0, 0.5), (8.0, 12.0, 0.3)])
        + curve_rows("topk", 0, [(8.0, 10.0, 0.2), (32.0, 40.0, 0.6)])
        + curve_rows("topk", 2, [(8.0, 10.0, 0.1)])  # one point: covers only L0 10
    )
    got = per_seed_values_at_l0(frame, "topk", "score", 20.0)
    seed1 = 0.3 + (0.5 - 0.3) * math.log(20 / 12) / math.log(40 / 12)
    assert got == pytest.approx([0.4, seed1])  # seed 2 dropped (NaN), seed order kept
    assert per_seed_values_at_l0(frame, "topk", "score", 10.0) == pytest.approx([0.2, 0.1])
    assert per_seed_values_at_l0(frame, "topk", "missing", 20.0) == []
    assert per_seed_values_at_l0(frame, "absent", "score", 20.0) == []


def test_per_seed_values_refuse_to_mix_models():
    frame = tidy(curve_rows("topk", 0, [(8.0, 10.0, 0.2), (32.0, 40.0, 0.6)]))
    other = frame.assign(model="other")
    with pytest.raises(ValueError, match="model, hook"):
        per_seed_values_at_l0(pd.concat([frame, other]), "topk", "score", 20.0)


def test_matched_l0_grid_is_inside_every_method_range():
    frame = tidy(
        curve_rows("a", 0, [(1.0, 10.0, 0.0), (2.0, 40.0, 0.0), (3.0, 160.0, 0.0)])
        + curve_rows("b", 0, [(1.0, 5.0, 0.0), (2.0, 20.0, 0.0), (3.0, 80.0, 0.0)])
    )
    assert matched_l0_grid(frame, ["a", "b"], n=2) == pytest.approx([10.0, 80.0])
    assert matched_l0_grid(frame, ["a", "b"], n=3) == pytest.approx([10.0, math.sqrt(800), 80.0])
    assert matched_l0_grid(frame, ["a", "absent"]) == []  # a method without L0: no overlap
    far = tidy(curve_rows("c", 0, [(1.0, 500.0, 0.0), (2.0, 900.0, 0.0)]))
    assert matched_l0_grid(pd.concat([frame, far]), ["a", "c"]) == []


def test_matched_l0_grid_ends_are_covered_by_every_seed():
    # Seed scatter in L0: the grid ends are where every seed's own curve reaches, so no seed
    # is dropped from a comparison at the ends.
    frame = tidy(
        curve_rows("a", 0, [(1.0, 9.0, 0.0), (2.0, 41.0, 0.0)])
        + curve_rows("a", 1, [(1.0, 11.0, 0.0), (2.0, 39.0, 0.0)])
    )
    grid = matched_l0_grid(frame, ["a"], n=2)
    assert grid == pytest.approx([11.0, 39.0])
    for target in grid:
        assert len(per_seed_values_at_l0(frame, "a", "score", target)) == 2


# ---- aggregate_over_seeds --------------------------------------------------------------------
def test_aggregate_over_seeds_on_a_hand_frame():
    frame = tidy(
        [
            ("topk", 16.0, 0, "frontier", "fvu", 1.0),
            ("topk", 16.0, 1, "frontier", "fvu", 2.0),
            ("topk", 16.0, 2, "frontier", "fvu", 3.0),
            ("topk", 16.0, 3, "frontier", "fvu", math.nan),  # dropped
            ("topk", 32.0, 0, "frontier", "fvu", 0.5),  # one seed
            ("l1", 1.3, 0, "probe", "acc", 0.8),
            ("l1", 1.3, 1, "probe", "acc", 0.8),
        ]
    )
    table = aggregate_over_seeds(frame)
    assert list(table.columns) == [
        "model",
        "hook",
        "method",
        "knob",
        "task",
        "metric",
        "n_seeds",
        "mean",
        "std",
        "ci_low",
        "ci_high",
    ]
    assert len(table) == 3
    rows = {(r.method, r.knob): r for r in table.itertuples()}
    three = rows["topk", 16.0]
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, df 2) · std 1 / sqrt(3)
    assert (three.n_seeds, three.mean, three.std) == (3, 2.0, 1.0)
    assert (three.ci_low, three.ci_high) == pytest.approx((2.0 - half, 2.0 + half))
    expected = seed_interval([1.0, 2.0, 3.0])
    assert (three.ci_low, three.ci_high) == pytest.approx((expected.low, expected.high))
    one = rows["topk", 32.0]
    assert one.n_seeds == 1 and one.mean == 0.5
    assert math.isnan(one.std) and math.isnan(one.ci_low) and math.isnan(one.ci_high)
    same = rows["l1", 1.3]
    assert (same.n_seeds, same.std, same.ci_low, same.ci_high) == (2, 0.0, 0.8, 0.8)
    assert (same.model, same.hook, same.task, same.metric) == ("toy", "blocks.0", "probe", "acc")


def test_aggregate_over_seeds_of_an_empty_frame():
    table = aggregate_over_seeds(pd.DataFrame(columns=COLUMNS))
    assert table.empty and list(table.columns)[-5:] == [
        "n_seeds",
        "mean",
        "std",
        "ci_low",
        "ci_high",
    ]


# ---- compare_at_matched_l0 end to end --------------------------------------------------------
def constructed_frame():
    """random, A (random + 0.2 at every L0, seed noise 0.01) and B (random's seed values, in
    another seed order): A clearly better than random everywhere, B within noise."""
    rng = np.random.default_rng(0)
    knobs = [(8.0, 8.0), (16.0, 16.0), (32.0, 32.0), (64.0, 64.0)]
    seeds = range(4)
    curve = lambda l0: 0.5 + 0.1 * math.log(l0)
    rows = []
    random_points = {}
    for seed in seeds:
        points = []
        for knob, l0 in knobs:
            seed_l0 = l0 * (1 + 0.02 * rng.normal())  # L0 scatters over seeds too
            points.append((knob, seed_l0, curve(seed_l0) + 0.01 * rng.normal()))
        random_points[seed] = points
        rows += curve_rows("random", seed, points)
        a_points = [(k, l0 * (1 + 0.02 * rng.normal()), 0.0) for k, l0 in knobs]
        a_points = [(k, l0, curve(l0) + 0.2 + 0.01 * rng.normal()) for k, l0, _ in a_points]
        rows += curve_rows("A", seed, a_points)
    for seed in seeds:
        rows += curve_rows("B", seed, random_points[(seed + 1) % 4])
    return tidy(rows)


def test_compare_at_matched_l0_end_to_end():
    frame = constructed_frame()
    comparisons = compare_at_matched_l0(
        frame, "score", methods=["A", "B", "random"], baselines=["random"], higher_is_better=True
    )
    grid = matched_l0_grid(frame, ["A", "B", "random"], n=2)
    assert len(grid) == 2 and 8.0 < grid[0] < 12.0 and 50.0 < grid[1] < 64.0
    # method × baseline × L0; the baseline listed among the methods is not compared to itself.
    assert [(c.method, c.baseline, c.l0) for c in comparisons] == [
        ("A", "random", grid[0]),
        ("A", "random", grid[1]),
        ("B", "random", grid[0]),
        ("B", "random", grid[1]),
    ]
    for c in comparisons:
        assert c.metric == "score"
        assert c.method_value.n == 4 and c.baseline_value.n == 4  # no seed dropped at the ends
        expected = difference_interval(
            per_seed_values_at_l0(frame, c.method, "score", c.l0),
            per_seed_values_at_l0(frame, c.baseline, "score", c.l0),
        )
        assert c.difference == expected
        assert c.difference.mean == pytest.approx(
            c.method_value.mean - c.baseline_value.mean, abs=1e-12
        )
    a_rows = [c for c in comparisons if c.method == "A"]
    b_rows = [c for c in comparisons if c.method == "B"]
    assert all(c.verdict == BETTER for c in a_rows)
    assert all(c.difference.mean == pytest.approx(0.2, abs=0.03) for c in a_rows)
    assert all(c.verdict == WITHIN_NOISE for c in b_rows)
    # The baseline's value at a matched L0 is the interval of its per-seed interpolations.
    first = comparisons[0]
    assert first.baseline_value == seed_interval(
        per_seed_values_at_l0(frame, "random", "score", first.l0)
    )


def test_compare_at_matched_l0_lower_is_better_and_edge_cases():
    frame = constructed_frame()
    lower = compare_at_matched_l0(frame, "score", ["A"], ["random"], higher_is_better=False, n_l0=3)
    assert len(lower) == 3 and all(c.verdict == WORSE for c in lower)
    # A missing baseline leaves no matched range, so nothing is compared.
    assert compare_at_matched_l0(frame, "score", ["A"], ["pca"], higher_is_better=True) == []
    # A single seed per side: a difference without an interval.
    one_seed = frame[frame.seed == 0]
    single = compare_at_matched_l0(one_seed, "score", ["A"], ["random"], higher_is_better=True)
    assert single and all(c.verdict == UNKNOWN for c in single)


# ---- a method swept at one knob ---------------------------------------------------------------
def test_one_knob_l0_needs_one_knob_and_seeds_that_agree_on_l0():
    agree = tidy(curve_rows("a", 0, [(8.0, 7.9, 0.0)]) + curve_rows("a", 1, [(8.0, 8.1, 0.0)]))
    assert one_knob_l0(agree, "a") == pytest.approx(8.0)
    spread = tidy(curve_rows("a", 0, [(1.0, 7.0, 0.0)]) + curve_rows("a", 1, [(1.0, 9.0, 0.0)]))
    assert one_knob_l0(spread, "a") is None  # 12.5% from the mean: no single L0 to read at
    curve = tidy(curve_rows("a", 0, [(8.0, 8.0, 0.0), (16.0, 16.0, 0.0)]))
    assert one_knob_l0(curve, "a") is None  # a curve goes through compare_at_matched_l0
    assert one_knob_l0(agree, "absent") is None


def test_compare_at_one_l0_reads_baselines_at_the_methods_l0():
    rows = []
    method_values = [0.70, 0.72, 0.74]
    for seed, value in enumerate(method_values):
        rows += curve_rows("a", seed, [(8.0, 10.0, value)])
        # random: 0.1 + 0.05·log2(L0) per seed, plus a seed offset; covers L0 5-20
        rows += curve_rows(
            "random", seed, [(k, k, 0.1 + 0.05 * math.log2(k) + 0.01 * seed) for k in (5.0, 20.0)]
        )
        rows += curve_rows("far", seed, [(k, k, 0.0) for k in (40.0, 80.0)])  # misses L0 10
    frame = tidy(rows)
    [c] = compare_at_one_l0(frame, "score", "a", ["random", "far"], higher_is_better=True)
    # Brute force: random's seed curves are linear in log L0, so at L0 10 each reads
    # 0.1 + 0.05·log2(10) + 0.01·seed; the method's values are taken as measured.
    theirs = [0.1 + 0.05 * math.log2(10.0) + 0.01 * seed for seed in range(3)]
    assert (c.method, c.baseline, c.l0) == ("a", "random", pytest.approx(10.0))
    assert c.method_value == seed_interval(method_values)
    assert c.baseline_value.mean == pytest.approx(np.mean(theirs))
    assert c.difference == difference_interval(
        method_values, per_seed_values_at_l0(frame, "random", "score", 10.0)
    )
    assert c.difference.mean == pytest.approx(np.mean(method_values) - np.mean(theirs))
    assert c.verdict == BETTER
    # TopK's L0 just under a baseline's lowest knob (3.996 for k=4) reads that knob's value.
    under = tidy(
        [r for r in rows if r[0] == "random"]
        + [r for seed in range(3) for r in curve_rows("c", seed, [(5.0, 4.996, 0.9)])]
    )
    [edge] = compare_at_one_l0(under, "score", "c", ["random"], higher_is_better=True)
    assert edge.baseline_value == seed_interval(
        per_seed_values_at_l0(under, "random", "score", 5.0)
    )
    # A knob whose L0 cell failed (a score, no L0) does not join the one knob's sample.
    unpaired = tidy(rows + [("a", 16.0, seed, "task", "score", 0.0) for seed in range(3)])
    [again] = compare_at_one_l0(unpaired, "score", "a", ["random"], higher_is_better=True)
    assert again.method_value == seed_interval(method_values)
    # A method whose seeds disagree on L0 gets no comparison rather than one at a blurred L0.
    blurred = tidy(
        curve_rows("b", 0, [(1.0, 6.0, 0.9)])
        + curve_rows("b", 1, [(1.0, 14.0, 0.9)])
        + [r for r in rows if r[0] == "random"]
    )
    assert compare_at_one_l0(blurred, "score", "b", ["random"], higher_is_better=True) == []
