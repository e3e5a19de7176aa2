"""Tables of a `synthetic` run: every metric at the stream's true L0 and at matched L0.

Each seed's points (its knobs) form a curve in L0; a metric at a target L0 is that curve
linearly interpolated in log L0 (`saebench.metrics.interpolate_at_l0`, the runner's matched-L0
rule), never extrapolated: a seed whose points do not bracket the target gives no value. The
per-seed values are summarised as mean ± the half-width of the 95% Student-t interval over seeds
(`saebench.stats.seed_interval`; one seed: the value alone).

Targets: the true L0 (all features), the true L0 of the d_sae most frequent features (the
paper's reporting point: SynthSAEBench reports at L0 = 25, this number for SynthSAEBench-16k at
width 4,096), and a grid of matched L0s inside every method's covered range (when some method's
sweep misses the others' range, inside the range of the methods covering the true L0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from saebench.metrics import interpolate_at_l0, matched_l0_targets
from saebench.stats import Interval, seed_interval
from saebench.synth.bench import BenchRow, StreamCard

# (row field, column title, digits) of every table.
COLUMNS = (
    ("f1", "F1", 3),
    ("mcc", "MCC", 3),
    ("uniqueness", "uniqueness", 3),
    ("precision", "precision", 3),
    ("recall", "recall", 3),
    ("explained_variance", "EV", 3),
    ("shrinkage", "shrinkage", 3),
    ("dead_fraction", "dead", 3),
    ("absorption_full", "absorb. full", 3),
    ("absorption_partial", "absorb. partial", 3),
)
MATCHED_POINTS = 3


@dataclass(frozen=True)
class Target:
    label: str
    l0: float


def seed_curves(rows: Sequence[BenchRow], method: str) -> dict[int, list[BenchRow]]:
    curves: dict[int, list[BenchRow]] = {}
    for row in rows:
        if row.method == method and row.ok and math.isfinite(row.l0):
            curves.setdefault(row.seed, []).append(row)
    return curves


def value_at(rows: Sequence[BenchRow], method: str, metric: str, l0: float) -> Interval:
    """The metric at L0 = l0 per seed (interpolated), summarised over seeds."""
    values = []
    for points in seed_curves(rows, method).values():
        value = interpolate_at_l0(
            [p.l0 for p in points], [float(getattr(p, metric)) for p in points], l0
        )
        values.append(value)
    return seed_interval(values)


def covered_range(rows: Sequence[BenchRow], method: str) -> tuple[float, float] | None:
    """The L0 range every seed of the method covers (None if some seed has no points)."""
    curves = seed_curves(rows, method)
    if not curves:
        return None
    low = max(min(p.l0 for p in c) for c in curves.values())
    high = min(max(p.l0 for p in c) for c in curves.values())
    return (low, high) if low <= high else None


def report_targets(
    rows: Sequence[BenchRow], card: StreamCard, methods: Sequence[str]
) -> list[Target]:
    targets = [
        Target(f"the true L0 = {card.true_l0:.2f}", card.true_l0),
        Target(
            f"the true L0 of the top {card.firing['width']:,} features = {card.true_l0_top:.2f} "
            "(the paper's reporting point)",
            card.true_l0_top,
        ),
    ]
    ranges = {m: list(r) for m in methods if (r := covered_range(rows, m)) is not None}
    grid = matched_l0_targets(ranges, MATCHED_POINTS)
    if not grid:
        # Some method's sweep missed the others' range: match those covering the true L0.
        covering = {m: r for m, r in ranges.items() if r[0] <= card.true_l0 <= r[1]}
        grid = matched_l0_targets(covering, MATCHED_POINTS)
    for l0 in grid:
        targets.append(Target(f"matched L0 = {l0:.2f}", l0))
    return targets


def format_interval(interval: Interval, digits: int) -> str:
    if math.isnan(interval.mean):
        return "—"
    if math.isnan(interval.low):
        return f"{interval.mean:.{digits}f}"
    return f"{interval.mean:.{digits}f} ± {interval.half_width:.{digits}f}"


def table(rows: Sequence[BenchRow], methods: Sequence[str], l0: float) -> str:
    header = "| method | seeds | " + " | ".join(title for _, title, _ in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for method in methods:
        cells = [value_at(rows, method, field, l0) for field, _, _ in COLUMNS]
        n = max((c.n for c in cells if not math.isnan(c.mean)), default=0)
        formatted = [format_interval(c, digits) for c, (_, _, digits) in zip(cells, COLUMNS)]
        lines.append(f"| {method} | {n} | " + " | ".join(formatted) + " |")
    return "\n".join(lines)


def ranking(rows: Sequence[BenchRow], methods: Sequence[str], metric: str, l0: float) -> str:
    """Methods by the mean of `metric` at `l0`, best first ('>' when the 95% intervals do not
    overlap, '≈' when they do or either has none)."""
    scored = [(m, value_at(rows, m, metric, l0)) for m in methods]
    scored = [(m, v) for m, v in scored if not math.isnan(v.mean)]
    scored.sort(key=lambda item: -item[1].mean)
    if not scored:
        return "—"
    parts = [scored[0][0]]
    for (_, better), (name, worse) in zip(scored, scored[1:]):
        separated = (
            not math.isnan(better.low) and not math.isnan(worse.high) and better.low > worse.high
        )
        parts.append((" > " if separated else " ≈ ") + name)
    return "".join(parts)


def markdown_report(
    rows: Sequence[BenchRow], card: StreamCard, methods: Sequence[str], seconds: float | None = None
) -> str:
    config = card.config
    lines = [
        f"# synthetic benchmark ({card.preset})",
        "",
        f"Stream: {config['n_features']:,} features in {config['d']} dimensions (seed "
        f"{config['seed']}), true L0 {card.true_l0:.2f} ± {card.firing['true_l0_se']:.2f} (s.e., "
        f"{card.firing['n_samples']:,} samples); top {card.firing['width']:,} features "
        f"{card.true_l0_top:.2f}.",
        "",
        "Values are interpolated in log L0 along each seed's sweep (never extrapolated; — where "
        "a seed's points do not bracket the target) and shown as mean ± 95% t-interval "
        "half-width over seeds.",
        "",
    ]
    for target in report_targets(rows, card, methods):
        lines += [
            f"## At {target.label}",
            "",
            table(rows, methods, target.l0),
            "",
            f"F1: {ranking(rows, methods, 'f1', target.l0)}. "
            f"MCC: {ranking(rows, methods, 'mcc', target.l0)}.",
            "",
        ]
    lines += [
        "## Sweep points",
        "",
        "| method | seeds | knob | L0 | F1 | MCC | EV |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in methods:
        by_knob: dict[float, list[BenchRow]] = {}
        for row in rows:
            if row.method == method and row.ok:
                by_knob.setdefault(row.knob, []).append(row)
        for knob in sorted(by_knob):
            group = by_knob[knob]
            means = [
                seed_interval([getattr(r, f) for r in group])
                for f in ("l0", "f1", "mcc", "explained_variance")
            ]
            lines.append(
                f"| {method} | {len(group)} | {knob:g} | "
                + " | ".join(format_interval(m, 2 if i == 0 else 3) for i, m in enumerate(means))
                + " |"
            )
    if seconds is not None:
        lines += ["", f"Wall time of the last invocation: {seconds:.0f}s."]
    return "\n".join(lines) + "\n"
