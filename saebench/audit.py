"""Metric reliability, measured by the suite itself: three lenses on every headline metric.

After Chanin (2026), "Are Sparse Autoencoder Benchmarks Reliable?", which found some SAEBench
metrics unusable and the rest noisier than assumed:

(a) **Reseed noise**: the spread over seeds of one configuration, as a coefficient of variation
    and as the smallest difference between two single-seed scores that exceeds noise at 95%
    (z·√2·σ, σ pooled over the learned methods' configurations). Fails when that difference is
    larger than the whole spread of those configurations' means: then no two SAEs of the run can
    be told apart from one seed each.
(b) **Trajectory**: one SAE scored at checkpoints of its own training (default 10%, 30%, 100% of
    its tokens). A metric that measures what training improves must move toward "better" by more
    than the reseed noise, and monotonically (no step back larger than the noise).
(c) **Ground truth**: where the run has metrics that score agreement with a known ground truth
    (`MetricInfo.ground_truth`: toy-world labels, a synthetic dictionary), each other metric's
    Spearman correlation with them over the run's configurations, after removing what both owe
    to sparsity (residuals of a linear fit on log L0), over the learned methods' configurations.
    Fails when the upper end of ρ's 95% interval (Fisher z) is below `MIN_AGREEMENT`: only
    evidence of disagreement fails a metric, not a small sample.

A metric that fails a lens it could be measured on is marked unreliable: results.md says so and
`saebench baseline create` leaves it out of the gate. A lens that cannot be measured (one seed,
no ground-truth metric) is reported as such, not passed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from saebench.specs import L0

Z_95 = 1.959963984540054
MIN_AGREEMENT = 0.3  # partial Spearman ρ with ground truth below this: the metric fails (c)
MIN_GT_CONFIGS = 5  # fewer configurations give a correlation too noisy to judge
DEFAULT_FRACTIONS = (0.1, 0.3, 1.0)


@dataclass(frozen=True)
class ReseedNoise:
    n_configs: int  # (method, knob) with ≥ 2 seeds
    median_cv: float  # median over configurations of std / |mean|
    pooled_std: float
    min_trusted_difference: float  # z·√2·σ: two single-seed scores closer than this are noise
    config_spread: float  # max − min of the configurations' seed means
    passes: bool


@dataclass(frozen=True)
class TrajectoryMove:
    fractions: tuple[float, ...]
    values: tuple[float, ...]
    noise: float  # the reseed lens's min_trusted_difference (NaN: not measured)
    moved: bool  # last − first beyond the noise
    toward_better: bool
    monotone: bool  # no step against the overall direction larger than the noise
    passes: bool


@dataclass(frozen=True)
class GroundTruthAgreement:
    reference: str  # the ground-truth metric
    n_configs: int
    spearman: float
    partial_spearman: float  # after removing the linear effect of log L0 from both
    partial_high: float  # upper end of its 95% interval (Fisher z, se 1.06/√(n−3))
    passes: bool


@dataclass
class MetricAudit:
    metric: str
    task: str
    higher_is_better: bool
    reseed: ReseedNoise | None = None
    trajectory: TrajectoryMove | None = None
    ground_truth: list[GroundTruthAgreement] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        out = []
        if self.reseed is not None and not self.reseed.passes:
            out.append("reseed noise exceeds the spread between configurations")
        move = self.trajectory
        if move is not None and not move.passes:
            why = [
                text
                for failed, text in (
                    (not move.moved, f"moves less than the reseed noise {move.noise:.3g}"),
                    (move.moved and not move.toward_better, "moves toward worse"),
                    (not move.monotone, "is not monotone"),
                )
                if failed
            ]
            out.append("along training it " + " and ".join(why))
        out += [
            f"disagrees with {g.reference}: partial ρ {g.partial_spearman:.2f}, 95% upper end "
            f"{g.partial_high:.2f} < {MIN_AGREEMENT}"
            for g in self.ground_truth
            if not g.passes
        ]
        return out

    @property
    def unreliable(self) -> bool:
        return bool(self.failures)

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "task": self.task,
            "higher_is_better": self.higher_is_better,
            "reseed": None if self.reseed is None else _finite(asdict(self.reseed)),
            "trajectory": None if self.trajectory is None else _finite(asdict(self.trajectory)),
            "ground_truth": [_finite(asdict(g)) for g in self.ground_truth],
            "unreliable": self.unreliable,
            "failures": self.failures,
        }


def _finite(record: dict[str, Any]) -> dict[str, Any]:
    """NaN as null, so the JSON is valid."""

    def clean(value):
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return {k: clean(v) for k, v in record.items()}


def _config_means(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = frame[frame.metric == metric]
    return rows.groupby(["method", "knob"])["value"].agg(["mean", "std", "count"]).reset_index()


def reseed_noise(frame: pd.DataFrame, metric: str) -> ReseedNoise | None:
    """Lens (a) from a run's tidy frame; None when no configuration has two seeds."""
    stats = _config_means(frame, metric)
    seeded = stats[stats["count"] >= 2]
    if seeded.empty:
        return None
    variances = seeded["std"].to_numpy(float) ** 2
    weights = seeded["count"].to_numpy(float) - 1
    pooled = float(math.sqrt((variances * weights).sum() / weights.sum()))
    cv = (seeded["std"] / seeded["mean"].abs().clip(lower=1e-12)).median()
    trusted = Z_95 * math.sqrt(2) * pooled
    spread = float(stats["mean"].max() - stats["mean"].min())
    return ReseedNoise(
        n_configs=len(seeded),
        median_cv=float(cv),
        pooled_std=pooled,
        min_trusted_difference=trusted,
        config_spread=spread,
        passes=trusted < spread,
    )


def trajectory_move(
    fractions: Sequence[float], values: Sequence[float], noise: float, higher_is_better: bool
) -> TrajectoryMove:
    """Lens (b) for one metric's values at increasing fractions of the training budget."""
    values = [float(v) for v in values]
    change = values[-1] - values[0]
    tolerance = 0.0 if math.isnan(noise) else noise
    moved = abs(change) > tolerance and not math.isnan(noise)
    direction = math.copysign(1.0, change) if change else 0.0
    steps = np.diff(values)
    monotone = bool(all(direction * step >= -tolerance for step in steps))
    toward_better = (change > 0) == higher_is_better and change != 0
    return TrajectoryMove(
        fractions=tuple(float(f) for f in fractions),
        values=tuple(values),
        noise=noise,
        moved=moved,
        toward_better=toward_better,
        monotone=monotone,
        passes=moved and toward_better and monotone,
    )


def _residual_ranks(values: np.ndarray, log_l0: np.ndarray) -> np.ndarray:
    """Ranks of what is left of `values` after a least-squares line on log L0."""
    from scipy.stats import rankdata

    design = np.column_stack([np.ones_like(log_l0), log_l0])
    coefficients, *_ = np.linalg.lstsq(design, values, rcond=None)
    return rankdata(values - design @ coefficients)


def ground_truth_agreement(
    frame: pd.DataFrame,
    metric: str,
    higher_is_better: bool,
    reference: str,
    reference_higher_is_better: bool,
) -> GroundTruthAgreement | None:
    """Lens (c) over the run's (method, knob) seed means; None with too few configurations."""
    from scipy.stats import spearmanr

    means = frame[frame.metric.isin([metric, reference, L0])].pivot_table(
        index=["method", "knob"], columns="metric", values="value", aggfunc="mean"
    )
    if not {metric, reference, L0} <= set(means.columns):
        return None
    means = means[[metric, reference, L0]].dropna()
    means = means[means[L0] > 0]
    if len(means) < MIN_GT_CONFIGS:
        return None
    sign = (1.0 if higher_is_better else -1.0) * (1.0 if reference_higher_is_better else -1.0)
    x, y = means[metric].to_numpy(float), means[reference].to_numpy(float)
    log_l0 = np.log(means[L0].to_numpy(float))
    if np.ptp(y) == 0:  # a constant reference cannot say whether anything agrees with it
        return None
    raw = float(spearmanr(x, y).statistic) * sign
    partial = float(spearmanr(_residual_ranks(x, log_l0), _residual_ranks(y, log_l0)).statistic)
    partial *= sign
    if math.isnan(partial):  # a constant metric agrees with nothing
        partial = 0.0
    n = len(means)
    clipped = min(max(partial, -0.999999), 0.999999)
    high = math.tanh(math.atanh(clipped) + Z_95 * 1.06 / math.sqrt(n - 3))
    return GroundTruthAgreement(reference, n, raw, partial, high, high >= MIN_AGREEMENT)


def audit_metrics(
    frame: pd.DataFrame,
    metrics: Mapping[str, tuple[str, bool]],
    ground_truth: Mapping[str, tuple[str, bool]],
    trajectory: Mapping[float, Mapping[str, float]] | None = None,
) -> list[MetricAudit]:
    """Every lens for every metric. `metrics`/`ground_truth`: metric -> (task, higher_is_better);
    `trajectory`: fraction of the budget -> {metric: value} of one SAE along its training."""
    audits = []
    for metric, (task, higher, *_) in metrics.items():
        audit = MetricAudit(metric, task, higher, reseed=reseed_noise(frame, metric))
        if trajectory:
            fractions = sorted(trajectory)
            values = [trajectory[f].get(metric, math.nan) for f in fractions]
            # Movement can only be judged against a noise estimate: without one, not measured.
            if audit.reseed is not None and not any(math.isnan(v) for v in values):
                noise = audit.reseed.min_trusted_difference
                audit.trajectory = trajectory_move(fractions, values, noise, higher)
        for reference, (_, reference_higher, *_) in ground_truth.items():
            if reference == metric:
                continue
            agreement = ground_truth_agreement(frame, metric, higher, reference, reference_higher)
            if agreement is not None:
                audit.ground_truth.append(agreement)
        audits.append(audit)
    return audits


def audit_markdown(audits: Sequence[MetricAudit]) -> str:
    lines = [
        "| metric | task | reseed CV | min trusted Δ (1 seed) | spread | trajectory "
        "(10% → 100%) | GT partial ρ | reliable |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for a in audits:
        reseed = a.reseed
        move = a.trajectory
        lines.append(
            f"| {a.metric} | {a.task} | "
            + (
                f"{reseed.median_cv:.3g} | {reseed.min_trusted_difference:.3g} | "
                f"{reseed.config_spread:.3g}"
                if reseed
                else "n/a (one seed) | n/a | n/a"
            )
            + " | "
            + (
                " → ".join(f"{v:.3g}" for v in move.values) + (" ✓" if move.passes else " ✗")
                if move
                else "not measured"
            )
            + " | "
            + (
                ", ".join(
                    f"{g.partial_spearman:+.2f} (≤ {g.partial_high:.2f}; {g.reference})"
                    for g in a.ground_truth
                )
                or "n/a"
            )
            + f" | {'**no**: ' + '; '.join(a.failures) if a.unreliable else 'yes'} |"
        )
    return "\n".join(lines) + "\n"


def unreliable_metrics(audit_json: Mapping[str, Any]) -> set[str]:
    """The metrics an audit.json marks unreliable."""
    return {row["metric"] for row in audit_json.get("metrics", []) if row.get("unreliable")}
