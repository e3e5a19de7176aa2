"""Intervals, differences and verdicts for scores over seeds and prompts. Pure functions, no I/O.

Every number saebench reports is an estimate: a score over a few training seeds, or a mean over
a few hundred prompts. This module turns those samples into an `Interval` (mean, std and a 95%
interval) and compares methods with baselines at matched L0 with a verdict. The choices:

- **Over seeds: a Student-t interval of the mean** (`seed_interval`). A preset trains 3-5 seeds,
  far too few for the normal approximation: with 3 seeds the 97.5% quantile of t with 2 degrees of
  freedom is 4.30, not 1.96, and a z-interval would cover the true mean far less often than it
  says. The t-interval is exact when seed-to-seed scatter is normal and holds up well otherwise.
  A bootstrap over 3 values is useless (it can only reshuffle those 3). One seed gives a point
  and no interval: `std`, `low` and `high` are NaN, never 0.
- **Differences: Welch's t-interval** (`difference_interval`). A method and a baseline are trained
  independently (seed k of one has nothing to do with seed k of the other, so there is no
  pairing), and their seed variances differ: a random dictionary's scatter is not a trained
  SAE's, and the two may have different seed counts. Student's pooled-variance interval assumes
  equal variances and is too narrow exactly when the smaller group is the noisier one; Welch's,
  with Welch-Satterthwaite degrees of freedom, costs almost nothing when the variances are equal.
  When one side has a single seed its value is treated as a fixed point (a one-sample t-interval
  around it from the other side's scatter): this ignores the single-seed side's own noise, so the
  interval is too narrow, by a factor that is unknowable from one seed; train more seeds.
  Deterministic scores (zero variance on both sides) give a degenerate interval at the
  difference, which excludes 0 whenever the difference is not 0.
- **Over prompts: a percentile bootstrap of the mean** (`bootstrap_interval`). Per-prompt scores
  are bounded and skewed (0/1 correctness, AUROC-like fractions near 1), there are hundreds of
  them, and no distribution is assumed; the percentile interval stays inside the bounds of the
  data, which a mean ± t·se does not near 0 or 1. It measures evaluation-sample noise for one
  SAE, not training-seed noise: the two answer different questions and are not combined.
  Resampling uses `numpy.random.default_rng(seed)`, so a report is reproducible.

Comparisons at matched L0 (`compare_at_matched_l0`): each seed's curve (its points over knobs) is
interpolated linearly in log L0 (`metrics.interpolate_at_l0`) at targets inside every method's
covered L0 range, and the per-seed values are compared with Welch's interval. The verdict is
`better`/`worse` only when the difference's interval excludes 0, `within noise` when it contains
0, `unknown` when there is no interval (fewer than two seeds on both sides). No correction for
multiple comparisons is made: over many metrics × L0 × baselines, about 5% of true ties will come
out `better` or `worse` at 95% confidence; read isolated verdicts accordingly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from saebench.metrics import interpolate_at_l0, matched_l0_targets
from saebench.specs import L0

CONFIDENCE = 0.95

BETTER, WITHIN_NOISE, WORSE, UNKNOWN = "better", "within noise", "worse", "unknown"

# The frame's grouping keys for one reported number (the seed is what is aggregated over).
_CELL_KEYS = ["model", "hook", "method", "knob", "task", "metric"]
_AGGREGATE_COLUMNS = [*_CELL_KEYS, "n_seeds", "mean", "std", "ci_low", "ci_high"]
# Bootstrap resamples are drawn in chunks of at most this many indices (bounded memory for long
# prompt lists; the chunks draw the same stream as one call, so results do not depend on it).
_BOOTSTRAP_CHUNK = 4_000_000


@dataclass(frozen=True)
class Interval:
    """A mean with its spread and a confidence interval.

    `std`: the sample std (ddof=1) for `seed_interval`, the bootstrap std of the mean for
    `bootstrap_interval`, the standard error of the difference for `difference_interval`.
    `low`/`high`: NaN when there is no interval (fewer than 2 values). `n`: the number of values
    used (for a difference, the seeds of both sides together)."""

    mean: float
    std: float
    low: float
    high: float
    n: int

    def excludes(self, value: float = 0.0) -> bool:
        """True when the interval lies entirely above or below `value` (False when NaN)."""
        return bool(self.low > value or self.high < value)

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def _has_interval(interval: Interval) -> bool:
    return not (math.isnan(interval.low) or math.isnan(interval.high))


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _t_quantile(confidence: float, df: float) -> float:
    """The two-sided critical value: P(|T_df| <= q) = confidence."""
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, df))


def _finite_sample(values: ArrayLike) -> np.ndarray:
    sample = np.asarray(values, dtype=float).ravel()
    return sample[~np.isnan(sample)]


def _point(mean: float, n: int) -> Interval:
    return Interval(mean=mean, std=math.nan, low=math.nan, high=math.nan, n=n)


def seed_interval(values: ArrayLike, confidence: float = CONFIDENCE) -> Interval:
    """Student-t interval of the mean over seeds; NaNs dropped. One value: a point, no interval."""
    _check_confidence(confidence)
    sample = _finite_sample(values)
    n = len(sample)
    if n == 0:
        return _point(math.nan, 0)
    mean = float(sample.mean())
    if n == 1:
        return _point(mean, 1)
    std = float(sample.std(ddof=1))
    half = _t_quantile(confidence, n - 1) * std / math.sqrt(n)
    return Interval(mean=mean, std=std, low=mean - half, high=mean + half, n=n)


def bootstrap_interval(
    per_item: ArrayLike, confidence: float = CONFIDENCE, n_resamples: int = 2000, seed: int = 0
) -> Interval:
    """Percentile bootstrap of the mean over items (prompts); NaNs dropped.

    `std` is the std (ddof=1) of the resampled means. Resample r draws its n indices with
    `rng.integers(0, n, size=n)`, r = 0..n_resamples-1, from `numpy.random.default_rng(seed)`;
    the interval is `numpy.quantile` (linear) of the means at (1 ± confidence) / 2."""
    _check_confidence(confidence)
    if n_resamples < 2:
        raise ValueError(f"n_resamples must be at least 2, got {n_resamples}")
    sample = _finite_sample(per_item)
    n = len(sample)
    if n == 0:
        return _point(math.nan, 0)
    mean = float(sample.mean())
    if n == 1:
        return _point(mean, 1)
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOTSTRAP_CHUNK // n)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, rows):
        stop = min(start + rows, n_resamples)
        means[start:stop] = sample[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    alpha = 1 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(mean=mean, std=float(means.std(ddof=1)), low=float(low), high=float(high), n=n)


def difference_interval(a: ArrayLike, b: ArrayLike, confidence: float = CONFIDENCE) -> Interval:
    """mean(a) − mean(b) with a Welch-Satterthwaite t-interval (NaNs dropped; a, b unpaired).

    A side with a single value has no measured noise: the difference comes without an interval
    (a verdict is then `unknown`), never with the other side's noise alone, which would treat the
    single value as exact. Both variances 0: a degenerate interval low = high = the difference
    (a metric that does not move with the seed); `verdict`'s floor keeps it from deciding alone."""
    _check_confidence(confidence)
    x, y = _finite_sample(a), _finite_sample(b)
    nx, ny = len(x), len(y)
    if nx == 0 or ny == 0:
        return _point(math.nan, nx + ny)
    diff = float(x.mean() - y.mean())
    if nx < 2 or ny < 2:
        return _point(diff, nx + ny)
    # Squared standard error contributed by each side, and its degrees of freedom.
    sides = [(float(s.var(ddof=1)) / len(s), len(s) - 1) for s in (x, y)]
    se2 = sum(v for v, _ in sides)
    if se2 == 0:
        return Interval(mean=diff, std=0.0, low=diff, high=diff, n=nx + ny)
    df = se2**2 / sum(v**2 / dof for v, dof in sides)  # one side: exactly its n − 1
    se = math.sqrt(se2)
    half = _t_quantile(confidence, df) * se
    return Interval(mean=diff, std=se, low=diff - half, high=diff + half, n=nx + ny)


def verdict(diff: Interval, higher_is_better: bool, floor: float = 0.0) -> str:
    """BETTER / WORSE when `diff` (method − baseline) excludes 0 on the good / bad side and
    |diff| exceeds `floor` (the metric's smallest meaningful change, MetricInfo.floor),
    WITHIN_NOISE otherwise, UNKNOWN when there is no interval."""
    if not _has_interval(diff):
        return UNKNOWN
    if abs(diff.mean) <= floor:
        return WITHIN_NOISE
    if diff.low > 0:
        return BETTER if higher_is_better else WORSE
    if diff.high < 0:
        return WORSE if higher_is_better else BETTER
    return WITHIN_NOISE


@dataclass(frozen=True)
class Comparison:
    """One method against one baseline on one metric at one matched L0."""

    metric: str
    method: str
    baseline: str
    l0: float  # the matched L0
    # Over seeds: each seed's curve interpolated at l0, or its value as measured for a method
    # swept at one knob (compare_at_one_l0).
    method_value: Interval
    baseline_value: Interval
    difference: Interval  # method − baseline (Welch over the per-seed values)
    verdict: str


def _per_seed_knob_means(frame: pd.DataFrame, method: str, metric: str) -> pd.DataFrame:
    """(knob, seed) -> mean value of `metric` for `method` (duplicates averaged), as a frame."""
    rows = frame[(frame["method"] == method) & (frame["metric"] == metric)]
    return (
        rows.assign(value=pd.to_numeric(rows["value"], errors="coerce"))
        .groupby(["seed", "knob"])["value"]
        .mean()
        .dropna()
        .reset_index()
    )


def _check_one_model_hook(frame: pd.DataFrame) -> None:
    keys = [c for c in ("model", "hook") if c in frame.columns]
    if keys and len(frame[keys].drop_duplicates()) > 1:
        raise ValueError(
            "the frame holds several (model, hook) pairs, whose L0 curves must not be mixed: "
            "select one first, e.g. frame[(frame.model == m) & (frame.hook == h)]"
        )


def per_seed_values_at_l0(
    frame: pd.DataFrame, method: str, metric: str, target_l0: float
) -> list[float]:
    """For each seed of `method` (in seed order): its (knob -> (l0, metric)) points interpolated
    in log L0 at `target_l0`; seeds that do not cover `target_l0` (NaN) are dropped.

    Points are paired by (method, knob, seed): the L0 comes from the rows whose metric is "l0".
    The frame must hold one (model, hook)."""
    _check_one_model_hook(frame)
    l0s = _per_seed_knob_means(frame, method, L0).rename(columns={"value": "l0"})
    values = _per_seed_knob_means(frame, method, metric)
    points = l0s.merge(values, on=["seed", "knob"])
    out = []
    for _, seed_points in points.groupby("seed", sort=True):
        value = interpolate_at_l0(seed_points["l0"], seed_points["value"], target_l0)
        if not math.isnan(value):
            out.append(value)
    return out


def _covered_l0_range(frame: pd.DataFrame, method: str) -> list[float]:
    """[low, high]: the L0 range every seed of `method` covers ([] when it has no L0).

    Per knob it takes the seed-extreme L0 on the conservative side (the largest seed L0 for the
    lower end, the smallest for the upper end) rather than the seed mean: a target at the end of
    a seed-mean range lies outside about half the seeds' own curves, which would then be dropped
    from the comparison. When seeds agree on L0 this is the seed-mean range."""
    l0s = _per_seed_knob_means(frame, method, L0)
    if l0s.empty:
        return []
    per_knob = l0s.groupby("knob")["value"]
    return [float(per_knob.max().min()), float(per_knob.min().max())]


def matched_l0_grid(frame: pd.DataFrame, methods: Sequence[str], n: int = 2) -> list[float]:
    """`n` L0 targets (geometric) inside every listed method's covered L0 range, via
    `metrics.matched_l0_targets`; [] when a method has no L0 or the ranges do not overlap."""
    _check_one_model_hook(frame)
    ranges = {method: _covered_l0_range(frame, method) for method in methods}
    if not ranges or any(not r or r[0] > r[1] for r in ranges.values()):
        return []
    return matched_l0_targets(ranges, n=n)


def compare_at_matched_l0(
    frame: pd.DataFrame,
    metric: str,
    methods: Sequence[str],
    baselines: Sequence[str],
    higher_is_better: bool,
    n_l0: int = 2,
    floor: float = 0.0,
) -> list[Comparison]:
    """Every method (not a baseline) × baseline × L0 of the matched grid of methods + baselines,
    ordered that way: intervals over seeds of each side and of the difference, and a verdict."""
    everyone = list(dict.fromkeys([*methods, *baselines]))
    grid = matched_l0_grid(frame, everyone, n_l0)
    out = []
    for method in methods:
        if method in baselines:
            continue
        for baseline in baselines:
            for target in grid:
                mine = per_seed_values_at_l0(frame, method, metric, target)
                theirs = per_seed_values_at_l0(frame, baseline, metric, target)
                out.append(
                    _comparison(
                        metric, method, baseline, target, mine, theirs, higher_is_better, floor
                    )
                )
    return out


def _comparison(
    metric: str,
    method: str,
    baseline: str,
    l0: float,
    mine: list[float],
    theirs: list[float],
    higher_is_better: bool,
    floor: float,
) -> Comparison:
    """Both sides' per-seed values at one L0 as a Comparison: intervals, Welch difference,
    verdict."""
    difference = difference_interval(mine, theirs)
    return Comparison(
        metric=metric,
        method=method,
        baseline=baseline,
        l0=l0,
        method_value=seed_interval(mine),
        baseline_value=seed_interval(theirs),
        difference=difference,
        verdict=verdict(difference, higher_is_better, floor),
    )


# A method swept at one knob is compared at its mean L0 only when every seed's L0 is this close
# to it (relative): its per-seed values are then read at one L0, with no curve to interpolate.
ONE_KNOB_L0_SPREAD = 0.05
RANGE_END_TOLERANCE = 0.01  # relative: how far outside a baseline's L0 range it is still read


def one_knob_l0(frame: pd.DataFrame, method: str) -> float | None:
    """The mean L0 of a method swept at exactly one knob whose seeds agree on L0 (each within
    ONE_KNOB_L0_SPREAD of the mean); None otherwise (no L0, several knobs, seeds too far apart)."""
    l0s = _per_seed_knob_means(frame, method, L0)
    if l0s.empty or l0s["knob"].nunique() != 1:
        return None
    mean = float(l0s["value"].mean())
    if mean <= 0 or float((l0s["value"] - mean).abs().max()) > ONE_KNOB_L0_SPREAD * mean:
        return None
    return mean


def compare_at_one_l0(
    frame: pd.DataFrame,
    metric: str,
    method: str,
    baselines: Sequence[str],
    higher_is_better: bool,
    floor: float = 0.0,
) -> list[Comparison]:
    """A one-knob method (see `one_knob_l0`) against each baseline whose every seed covers its
    mean L0 (or comes within RANGE_END_TOLERANCE of it): the method's per-seed values as
    measured, the baseline's interpolated there, as `compare_at_matched_l0` does at each
    matched L0. [] for a method `one_knob_l0` rejects."""
    _check_one_model_hook(frame)
    target = one_knob_l0(frame, method)
    if target is None:
        return []
    # Paired with the L0 rows by (seed, knob), as per_seed_values_at_l0 does: a seed (or a knob
    # whose L0 cell failed) without an L0 must not join the sample unchecked.
    l0_keys = _per_seed_knob_means(frame, method, L0)[["seed", "knob"]]
    mine = _per_seed_knob_means(frame, method, metric).merge(l0_keys)["value"].tolist()
    out = []
    for baseline in baselines:
        covered = _covered_l0_range(frame, baseline)
        if not covered:
            continue
        # TopK's L0 sits just under k (a token with fewer than k positive pre-activations), so
        # `--sweep topk=4 --sweep random=4,8` would miss random's range by 0.1%: read a range
        # end that close to the target there.
        read_at = min(max(target, covered[0]), covered[1])
        if abs(read_at - target) > RANGE_END_TOLERANCE * target:
            continue
        theirs = per_seed_values_at_l0(frame, baseline, metric, read_at)
        out.append(
            _comparison(metric, method, baseline, target, mine, theirs, higher_is_better, floor)
        )
    return out


def aggregate_over_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, hook, method, knob, task, metric): n_seeds, mean, std, ci_low, ci_high,
    as `seed_interval` over the seeds' values (NaNs dropped; n_seeds counts the values kept)."""
    if frame.empty:
        return pd.DataFrame(columns=_AGGREGATE_COLUMNS)
    values = frame.assign(value=pd.to_numeric(frame["value"], errors="coerce"))
    grouped = values.groupby(_CELL_KEYS, dropna=False, sort=True)["value"]
    table = grouped.agg(n_seeds="count", mean="mean", std="std").reset_index()
    table["n_seeds"] = table["n_seeds"].astype(int)
    n = table["n_seeds"].to_numpy()
    std = np.array(table["std"], dtype=float)  # a copy: pandas hands out read-only views
    std[n < 2] = math.nan  # pandas gives NaN already; make it explicit for n == 0 too
    half = np.full(len(table), math.nan)
    many = n >= 2
    if many.any():
        from scipy.stats import t

        quantile = t.ppf(0.5 + CONFIDENCE / 2, n[many] - 1)
        half[many] = quantile * std[many] / np.sqrt(n[many])
    table["std"] = std
    table["ci_low"] = table["mean"] - half
    table["ci_high"] = table["mean"] + half
    return table[_AGGREGATE_COLUMNS]
