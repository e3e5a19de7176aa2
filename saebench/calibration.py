"""Every score read against dictionaries that learned nothing, at the same L0, over seeds.

`calibrate` compares each learned method with each calibration baseline of the run (the methods
registered with `MethodSpec.calibration` that have an L0 curve: two or more knobs) on every
directional headline metric, at `n_l0` matched L0 values inside the overlap of the method's and
the baseline's covered L0 ranges (saebench.stats.compare_at_matched_l0). A learned method swept
at one knob (`--sweep topk=8`) is compared at its one L0 when its seeds agree on it
(saebench.stats.compare_at_one_l0): a baseline needs a curve to be read at another's L0, a
method does not. A verdict (better,
within noise, worse, unknown) is given only where the difference's 95% interval over seeds
excludes 0. results.md, comparisons.csv and the heatmap are drawn from the `Calibration` record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from saebench.specs import L0, TaskSpec
from saebench.stats import (
    BETTER,
    ONE_KNOB_L0_SPREAD,
    UNKNOWN,
    WITHIN_NOISE,
    WORSE,
    Comparison,
    compare_at_matched_l0,
    compare_at_one_l0,
    one_knob_l0,
)

MIXED = "mixed"  # better at one matched L0, not at another
N_MATCHED_L0 = 2  # matched L0 values per (method, baseline): the two ends of their overlap

COMPARISON_COLUMNS = [
    "task",
    "metric",
    "higher_is_better",
    "method",
    "baseline",
    "l0",
    "method_mean",
    "method_low",
    "method_high",
    "baseline_mean",
    "baseline_low",
    "baseline_high",
    "difference",
    "difference_low",
    "difference_high",
    "n_seeds_method",
    "n_seeds_baseline",
    "verdict",
]


@dataclass(frozen=True)
class Calibration:
    """The run's comparisons of learned methods with its calibration baselines."""

    comparisons: tuple[Comparison, ...]
    metrics: Mapping[str, tuple[str, bool, float]]  # metric -> (task, higher_is_better, floor)
    methods: tuple[str, ...]  # learned methods compared: an L0 curve, or one agreed L0 point
    baselines: tuple[str, ...]  # calibration methods with an L0 curve
    missing_baselines: tuple[str, ...]  # registered calibration methods this run lacks
    single_points: tuple[str, ...]  # one L0 point and not compared (see `curve_roles`)
    # No task of the run reported L0: every comparison lacks its x-axis (a fixable request).
    l0_missing: bool = False
    one_knob: tuple[str, ...] = ()  # the methods compared at their one L0

    def frame(self) -> pd.DataFrame:
        rows = []
        for c in self.comparisons:
            task, higher, _ = self.metrics[c.metric]
            rows.append(
                {
                    "task": task,
                    "metric": c.metric,
                    "higher_is_better": higher,
                    "method": c.method,
                    "baseline": c.baseline,
                    "l0": c.l0,
                    "method_mean": c.method_value.mean,
                    "method_low": c.method_value.low,
                    "method_high": c.method_value.high,
                    "baseline_mean": c.baseline_value.mean,
                    "baseline_low": c.baseline_value.low,
                    "baseline_high": c.baseline_value.high,
                    "difference": c.difference.mean,
                    "difference_low": c.difference.low,
                    "difference_high": c.difference.high,
                    "n_seeds_method": c.method_value.n,
                    "n_seeds_baseline": c.baseline_value.n,
                    "verdict": c.verdict,
                }
            )
        return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)

    def metric_verdicts(self, method: str, baseline: str) -> dict[str, str]:
        """metric -> one verdict over its matched L0s: better/worse when every L0 says so,
        `mixed` when they disagree, else within noise (or unknown without intervals)."""
        by_metric: dict[str, set[str]] = {}
        for c in self.comparisons:
            if c.method == method and c.baseline == baseline:
                by_metric.setdefault(c.metric, set()).add(c.verdict)
        out = {}
        for metric, verdicts in by_metric.items():
            if len(verdicts) == 1:
                out[metric] = next(iter(verdicts))
            elif verdicts & {BETTER, WORSE}:
                out[metric] = MIXED
            else:
                out[metric] = WITHIN_NOISE if WITHIN_NOISE in verdicts else UNKNOWN
        return out


def directional_metrics(frame: pd.DataFrame, tasks: Mapping[str, TaskSpec]) -> dict[str, tuple]:
    """metric -> (task, higher_is_better, floor) for the metrics compared: each task's
    directional headline metrics, or all its directional metrics when it marks no headline;
    per-concept breakdowns of an aggregate that is also present are left to results.csv, and
    metrics not measured on the SAE at the run's L0 (`comparable_at_l0=False`) are left out."""
    from saebench.plots import is_breakdown

    chosen: dict[str, tuple[str, bool, float]] = {}
    for task_name, metric in sorted(frame[["task", "metric"]].drop_duplicates().itertuples(False)):
        task = tasks.get(task_name)
        if task is None or metric == L0:
            continue
        try:
            info = task.metric_info(metric)
        except KeyError:
            continue
        has_headline = any(i.headline for i in task.metrics.values())
        if not info.comparable_at_l0:
            continue
        if info.higher_is_better is not None and (info.headline or not has_headline):
            chosen[metric] = (task_name, info.higher_is_better, info.floor)
    return {m: v for m, v in chosen.items() if not is_breakdown(m, chosen)}


@dataclass(frozen=True)
class CurveRoles:
    """Which methods of a run are compared, and how (the rule `calibrate` and the report share)."""

    methods: tuple[str, ...]  # learned methods compared with the baselines
    one_knob: tuple[str, ...]  # those of `methods` compared at their one L0
    baselines: tuple[str, ...]  # calibration methods with an L0 curve
    single_points: tuple[str, ...]  # the rest with an L0: shown, not compared


def curve_roles(frame: pd.DataFrame, calibration_methods: Sequence[str]) -> CurveRoles:
    points = frame[frame.metric == L0].groupby("method")["knob"].nunique().to_dict()
    present = sorted(points)
    baselines = tuple(m for m in present if m in calibration_methods and points[m] >= 2)
    learned = [m for m in present if m not in calibration_methods]
    one_knob = tuple(m for m in learned if points[m] == 1 and one_knob_l0(frame, m) is not None)
    methods = tuple(m for m in learned if points[m] >= 2 or m in one_knob)
    single = tuple(m for m in present if m not in methods and m not in baselines)
    return CurveRoles(methods, one_knob, baselines, single)


def calibrate(
    frame: pd.DataFrame,
    tasks: Mapping[str, TaskSpec],
    calibration_methods: Sequence[str],
    n_l0: int = N_MATCHED_L0,
) -> Calibration:
    """Compare every learned method of `frame` with every calibration baseline in it."""
    metrics = directional_metrics(frame, tasks)
    roles = curve_roles(frame, calibration_methods)
    missing = tuple(m for m in calibration_methods if m not in set(frame.method))
    comparisons: list[Comparison] = []
    for metric, (_, higher, floor) in metrics.items():
        rows = frame[frame.metric.isin([L0, metric])]
        for method in roles.methods:
            if method in roles.one_knob:
                comparisons += compare_at_one_l0(
                    rows, metric, method, roles.baselines, higher, floor
                )
                continue
            for baseline in roles.baselines:
                # Each pair on its own overlap: a method or baseline whose L0 range is narrow
                # must not shrink (or empty) every other pair's comparison.
                comparisons += compare_at_matched_l0(
                    rows, metric, [method], [baseline], higher, n_l0, floor
                )
    return Calibration(
        tuple(comparisons),
        metrics,
        roles.methods,
        roles.baselines,
        missing,
        roles.single_points,
        lacks_l0_task(frame, tasks),
        roles.one_knob,
    )


def declares_l0(task: TaskSpec) -> bool:
    try:
        task.metric_info(L0)
    except KeyError:
        return False
    return True


def lacks_l0_task(frame: pd.DataFrame, tasks: Mapping[str, TaskSpec]) -> bool:
    """Scores but no L0 axis because no task of the run reports L0 (a frontier that ran and
    failed is a failed cell, reported as such, not this)."""
    return (
        not frame.empty
        and frame[frame.metric == L0].empty
        and not any(declares_l0(task) for task in tasks.values())
    )


def tasks_reporting_l0() -> list[str]:
    """Registered tasks that declare the L0 metric: the fix to name when a run has none."""
    from saebench.plugins import get_tasks

    return [name for name, task in sorted(get_tasks().items()) if declares_l0(task)]


def separation_summary(calibration: Calibration) -> list[str]:
    """results.md's opening lines: what this run can and cannot tell apart."""
    lines = ["## What this run can and cannot tell apart", ""]
    if calibration.missing_baselines:
        lines.append(
            "- **Missing baselines**: "
            + ", ".join(f"`{m}`" for m in calibration.missing_baselines)
            + " did not run (add them to `--methods`, or drop `--no-baselines`), so scores "
            "are not read against them."
        )
    if calibration.l0_missing:
        reporters = tasks_reporting_l0()
        fix = (
            f"add {' or '.join(f'`{t}`' for t in reporters)} to --tasks"
            if reporters
            else "add a task that reports it to --tasks"
        )
        lines += [
            f"- No task of this run reports `{L0}`, the x-axis of every comparison at matched "
            f"L0, so no score is read against the baselines: {fix} and rerun (saved SAEs are "
            "reused; only the new cells run).",
            "",
        ]
        return lines
    if not calibration.baselines:
        lines += [
            "- None of this run's baselines has an L0 curve (two or more knobs), so no score "
            "can be told apart from a dictionary that learned nothing at the same L0.",
            "",
        ]
        return lines
    if not calibration.methods:
        lines += [
            "- No learned method to compare: a learned method needs an L0 from a task of the "
            "run and, when swept at one knob, seeds that agree on it within "
            f"{ONE_KNOB_L0_SPREAD:.0%}; sweep it at two or more knobs "
            "(`--sweep METHOD=v1,v2`).",
            "",
        ]
        return lines
    for method in calibration.methods:
        for baseline in calibration.baselines:
            verdicts = calibration.metric_verdicts(method, baseline)
            if not verdicts:
                lines.append(
                    f"- `{method}` vs `{baseline}`: "
                    + (
                        f"`{baseline}`'s L0 range does not reach `{method}`'s L0 (sweep "
                        f"`{baseline}` past it with `--sweep {baseline}=...`)."
                        if method in calibration.one_knob
                        else "their L0 ranges do not overlap."
                    )
                )
                continue
            named = {
                v: sorted(m for m, w in verdicts.items() if w == v)
                for v in (BETTER, MIXED, WITHIN_NOISE, WORSE, UNKNOWN)
            }
            parts = [
                f"**better on {len(named[BETTER])}**"
                + (f" ({', '.join(named[BETTER])})" if named[BETTER] else ""),
                f"mixed on {len(named[MIXED])}"
                + (f" ({', '.join(named[MIXED])})" if named[MIXED] else ""),
                f"within noise on {len(named[WITHIN_NOISE])}",
                f"worse on {len(named[WORSE])}"
                + (f" ({', '.join(named[WORSE])})" if named[WORSE] else ""),
            ]
            if named[UNKNOWN]:
                parts.append(f"no interval on {len(named[UNKNOWN])}")
            where = (
                "at its one L0, the baseline read there"
                if method in calibration.one_knob
                else "each at the matched L0s of their overlap"
            )
            lines.append(
                f"- `{method}` vs `{baseline}` ({len(verdicts)} metrics, {where}): "
                + ", ".join(parts)
                + "."
            )
    if calibration.single_points:
        lines.append(
            "- One L0 point only, shown and not compared (a baseline needs two or more knobs to "
            "be read at another's L0; a learned method's seeds must agree on its L0 within "
            f"{ONE_KNOB_L0_SPREAD:.0%}; sweep either at two or more knobs): "
            + ", ".join(f"`{m}`" for m in calibration.single_points)
            + "."
        )
    lines += [
        "- A verdict is `better`/`worse` only when the 95% interval over seeds of the difference "
        "excludes 0 (Welch) and the difference exceeds the metric's floor, at every matched L0 "
        "(`mixed`: at some); one seed on either side gives no interval. No correction for the "
        "many comparisons is made.",
        "",
    ]
    return lines


def comparison_table(calibration: Calibration) -> pd.DataFrame:
    """results.md's table: one row per (metric, L0, method), a column per baseline with
    Δ [95% interval] and the verdict."""
    rows: dict[tuple, dict] = {}
    for c in calibration.comparisons:
        key = (c.metric, round(c.l0, 3), c.method)
        row = rows.setdefault(
            key,
            {
                "metric": c.metric,
                "L0": c.l0,
                "method": c.method,
                "value": _interval_text(
                    c.method_value.mean, c.method_value.low, c.method_value.high
                ),
            },
        )
        row[f"Δ vs {c.baseline}"] = (
            f"{_interval_text(c.difference.mean, c.difference.low, c.difference.high, signed=True)}"
            f" {c.verdict}"
        )
    return pd.DataFrame(list(rows.values()))


def _interval_text(mean: float, low: float, high: float, signed: bool = False) -> str:
    number = f"{mean:+.3g}" if signed else f"{mean:.3g}"
    if low != low or high != high:  # NaN: one seed
        return number
    return f"{number} [{low:.3g}, {high:.3g}]"
