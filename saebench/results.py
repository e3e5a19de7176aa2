"""Run outputs: tidy results.csv (from the cell files), run.json, results.md; and loaders."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from saebench.fileio import atomic_path, write_text
from saebench.rundir import Cell, RunDir, knob_label
from saebench.specs import L0, TaskSpec, Validity
from saebench.training import PLATEAU_FROM, PLATEAU_TO, PLATEAU_TOLERANCE

if TYPE_CHECKING:
    from saebench.planner import RunPlan

COLUMNS = ["model", "hook", "method", "knob", "seed", "task", "metric", "value"]


def load_cells(run_dir: str | Path | RunDir) -> list[Cell]:
    """Every cell file of a run directory (typed records), sorted by id."""
    return as_run_dir(run_dir).read_cells()


def planned_cells(run_dir: RunDir, plan: RunPlan) -> list[Cell]:
    """The finished cells of this plan only: stray files in cells/ never reach the results."""
    cells = []
    for sae in plan.saes:
        for task in plan.tasks:
            cell = run_dir.read_cell(sae, task)
            if cell is not None:
                cells.append(cell)
    return sorted(cells, key=lambda c: c.id)


def cells_to_frame(cells: list[Cell], model: str, hook: str) -> pd.DataFrame:
    rows = [
        {
            "model": model,
            "hook": hook,
            "method": c.method,
            "knob": c.knob,
            "seed": c.seed,
            "task": c.task,
            "metric": metric,
            "value": value,
        }
        for c in cells
        if c.ok
        for metric, value in c.metrics.items()
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def write_results(
    run_dir: RunDir, cells: list[Cell], tasks: dict[str, TaskSpec], model: str, hook: str
) -> pd.DataFrame:
    """Write results.csv and results.md from `cells` (the run's planned cells)."""
    from saebench.calibration import calibrate
    from saebench.stats import aggregate_over_seeds

    frame = cells_to_frame(cells, model, hook)
    with atomic_path(run_dir.results_csv) as tmp:
        frame.to_csv(tmp, index=False)
    with atomic_path(run_dir.aggregated_csv) as tmp:
        aggregate_over_seeds(frame).to_csv(tmp, index=False)
    with atomic_path(run_dir.comparisons_csv) as tmp:
        calibrate(frame, tasks, calibration_baselines()).frame().to_csv(tmp, index=False)
    write_text(
        run_dir.results_md,
        summary_markdown(
            frame, cells, tasks, train_logs=run_dir.train_logs(), audit=run_dir.read_audit()
        ),
    )
    return frame


def rewrite_results(run_dir: RunDir) -> pd.DataFrame:
    """Write results.csv/.md again from a finished run's cells (after `saebench audit`)."""
    from saebench import plugins

    config = run_dir.read_run_json()["config"]
    tasks = {name: t for name, t in plugins.get_tasks().items() if name in config["tasks"]}
    cells = [c for c in run_dir.read_cells() if c.task in tasks and c.method in config["methods"]]
    return write_results(run_dir, cells, tasks, config["model"], config["hook"])


def calibration_baselines() -> list[str]:
    """The installed calibration baselines (MethodSpec.calibration), by name."""
    from saebench import plugins

    return sorted(n for n, m in plugins.get_methods().items() if m.calibration)


def as_run_dir(run_dir: str | Path | RunDir) -> RunDir:
    return run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)


def load_results(run_dir: str | Path | RunDir) -> pd.DataFrame:
    path = as_run_dir(run_dir).results_csv
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a saebench run directory?")
    return pd.read_csv(path)


def load_run(run_dir: str | Path | RunDir) -> dict:
    return as_run_dir(run_dir).read_run_json()


def headline_metrics(tasks: dict[str, TaskSpec]) -> list[str]:
    """Every metric a task marks as headline, in task-name then declaration order."""
    return [
        metric
        for _, task in sorted(tasks.items())
        for metric, info in task.metrics.items()
        if info.headline
    ]


def frontier_table(frame: pd.DataFrame, tasks: dict[str, TaskSpec]) -> pd.DataFrame:
    """Per (method, knob): mean over seeds of the headline metrics, sorted by method, L0."""
    columns = headline_metrics(tasks)
    main = frame[frame.metric.isin(columns)]
    if main.empty:
        return pd.DataFrame()
    table = main.pivot_table(
        index=["method", "knob"], columns="metric", values="value", aggfunc="mean"
    )
    table = table[[c for c in columns if c in table.columns]].reset_index()
    return table.sort_values(["method", L0] if L0 in table else ["method", "knob"])


def interval_table(
    aggregated: pd.DataFrame, metrics: list[str], tasks: dict[str, TaskSpec]
) -> pd.DataFrame:
    """Per (method, knob, n seeds): "mean ± half-width of the 95% interval over seeds" for each
    of `metrics` (the mean alone with one seed). Accuracy-like columns name their chance level."""
    subset = aggregated[aggregated.metric.isin(metrics)]
    if subset.empty:
        return pd.DataFrame()
    text = subset.assign(cell=[_mean_pm(r) for r in subset.itertuples()])
    table = text.pivot_table(
        index=["method", "knob"], columns="metric", values="cell", aggfunc="first"
    )
    seeds = subset.groupby(["method", "knob"])["n_seeds"].max()
    table = table[[m for m in metrics if m in table.columns]]
    table.insert(0, "seeds", seeds)
    means = subset.pivot_table(index=["method", "knob"], columns="metric", values="mean")
    if L0 in means:
        table = table.loc[means.sort_values(L0).index]
    table = table.sort_index(level=0, sort_remaining=False).reset_index()
    return table.rename(columns={m: metric_heading(m, subset, tasks) for m in metrics})


def metric_heading(metric: str, rows: pd.DataFrame, tasks: dict[str, TaskSpec]) -> str:
    """The metric's name, with its chance level when its task declares one."""
    for task_name in rows[rows.metric == metric].task.unique():
        task = tasks.get(task_name)
        if task is None:
            continue
        try:
            chance = task.metric_info(metric).chance
        except KeyError:
            continue
        if chance is not None:
            return f"{metric} (chance {chance:.3g})"
    return metric


def _mean_pm(row) -> str:
    if row.n_seeds >= 2 and row.ci_high == row.ci_high:
        return f"{row.mean:.4g} ± {(row.ci_high - row.ci_low) / 2:.2g}"
    return f"{row.mean:.4g}"


def validity_table(cells: list[Cell]) -> pd.DataFrame:
    """One row per (task, validity reference) recorded by the run's cells."""
    rows: dict[tuple[str, str], dict] = {}
    for cell in cells:
        for record in cell.validity:
            check = Validity.from_json(record)
            rows.setdefault(
                (cell.task, check.name),
                {
                    "task": cell.task,
                    "reference": check.name,
                    "value": check.reference,
                    "95% low": check.low,
                    "chance": check.chance,
                    "margin": check.margin,
                    "governs": ", ".join(check.governs) or "(every metric)",
                    "passes": "yes" if check.informative else "**no**",
                },
            )
    return pd.DataFrame(list(rows.values()))


def validity_lines(cells: list[Cell]) -> list[str]:
    table = validity_table(cells)
    if table.empty:
        return []
    lines = [
        "## Validity: is what each task measures present at this hook?",
        "",
        "Each reference does not depend on the SAE (raw activations, a supervised direction, the "
        "whole-activation patch). It passes when its 95% lower end is above chance + margin; a "
        "failing reference makes the metrics it governs uninformative: left out of every table, "
        "the heatmap and the regression gate.",
        "",
        _markdown(table),
        "",
    ]
    uninformative = sorted({c.task for c in cells if c.status == "uninformative"})
    if uninformative:
        lines += [
            "Uninformative on this model and hook: "
            + ", ".join(f"`{t}`" for t in uninformative)
            + ".",
            "",
        ]
    return lines


def reliability_lines(audit: dict | None) -> list[str]:
    """results.md's section from audit.json: which metrics `saebench audit` marks unreliable."""
    if audit is None:
        return [
            "> Metric reliability not audited: run `saebench audit RUN_DIR` (reseed noise, "
            "trajectory, ground-truth agreement).",
            "",
        ]
    rows = audit.get("metrics", [])
    bad = [r for r in rows if r.get("unreliable")]
    lines = [
        f"## Reliability (`saebench audit`): {len(bad)} of {len(rows)} metrics unreliable",
        "",
    ]
    lines += [f"- **{r['metric']}** ({r['task']}): {'; '.join(r['failures'])}" for r in bad]
    lines += ["", "The gate leaves unreliable metrics out; audit.md has every lens.", ""]
    return lines


def summary_markdown(
    frame: pd.DataFrame,
    cells: list[Cell],
    tasks: dict[str, TaskSpec],
    calibration_methods: list[str] | None = None,
    train_logs: dict[str, dict] | None = None,
    audit: dict | None = None,
) -> str:
    """results.md. `calibration_methods`: the registered calibration baselines (default: every
    installed method with MethodSpec.calibration), named when the run has none of them.
    `train_logs` (RunDir.train_logs): a training section, and a warning when a curve had not
    flattened."""
    from saebench.calibration import calibrate, comparison_table, separation_summary
    from saebench.plots import is_breakdown
    from saebench.stats import aggregate_over_seeds

    if calibration_methods is None:
        calibration_methods = calibration_baselines()
    lines = ["# saebench results", ""]
    training = training_table(train_logs or {})
    still_improving = training[training.flat == "no"] if not training.empty else training
    if not still_improving.empty:
        which = ", ".join(
            f"{r.method} {knob_label(r.knob)} seed {r.seed}" for r in still_improving.itertuples()
        )
        lines += [
            f"> **Warning: {len(still_improving)} SAE(s) were still improving when training "
            f"stopped** ({which}): FVU or L0 moved more than {PLATEAU_TOLERANCE:.0%} between "
            f"{PLATEAU_FROM:.0%} and {PLATEAU_TO:.0%} of the budget, so comparisons at matched L0 "
            "partly measure convergence speed. Check with `saebench converge` or train longer.",
            "",
        ]
    calibration = calibrate(frame, tasks, calibration_methods)
    lines += separation_summary(calibration)
    if frame.empty or frame.seed.nunique() < 2:
        lines += [
            "> One seed per SAE: no interval can be computed, so every difference below is "
            "unverified. Run with `--seeds 3` or more.",
            "",
        ]
    lines += validity_lines(cells)
    lines += reliability_lines(audit)
    aggregated = aggregate_over_seeds(frame)
    columns = [m for m in headline_metrics(tasks) if m in set(frame.metric)]
    table = interval_table(aggregated, columns, tasks)
    if not table.empty:
        lines += [
            "## Frontier (mean ± 95% interval over seeds)",
            "",
            _markdown(table),
            "",
        ]
    comparisons = comparison_table(calibration)
    if not comparisons.empty:
        lines += [
            "## At matched L0: Δ vs each baseline [95% interval over seeds] and verdict",
            "",
            "Each seed's curve is interpolated in log L0; Δ is method − baseline (Welch).",
            "",
            _markdown(comparisons),
            "",
        ]
    # Tasks with headline metrics are summarised in the frontier table; the others get sections.
    summarised = {
        name for name, task in tasks.items() if any(i.headline for i in task.metrics.values())
    }
    others = aggregated[~aggregated.task.isin(summarised)]
    if not others.empty and not set(frame.method) & set(calibration_methods):
        # A task score means little until it is seen next to a dictionary that knows nothing.
        baselines = ", ".join(f"`{n}`" for n in calibration_methods) or "a calibration baseline"
        lines += [
            f"> No calibration baseline in this run: add {baselines} to `--methods` to see what "
            "each task gives a dictionary that learned nothing.",
            "",
        ]
    for task, group in others.groupby("task"):
        # Per-concept breakdowns stay in results.csv; the summary shows their aggregates.
        names = set(group.metric)
        kept = [m for m in dict.fromkeys(group.metric) if not is_breakdown(m, names)]
        wide = interval_table(group, kept, tasks)
        lines += [f"## {task} (mean ± 95% interval over seeds)", "", _markdown(wide), ""]
    if not training.empty:
        lines += [
            "## Training (final interval of each SAE's curve; train_log.json has the curve)",
            "",
            _markdown(training),
            "",
        ]
    failed = [c for c in cells if not c.ok and c.status != "uninformative"]
    if failed:
        lines += ["## Failed cells", ""]
        lines += [f"- {c.id}: {c.reason}" for c in failed]
    return "\n".join(lines) + "\n"


def training_table(train_logs: dict[str, dict]) -> pd.DataFrame:
    """One row per trained SAE: budget, final training FVU / L0 / dead fraction, and whether
    its curve had flattened before the learning-rate decay (see saebench.training.plateau)."""
    rows = []
    for log in train_logs.values():
        if not log.get("trainable") or "curve" not in log:
            continue
        plateau = log.get("plateau") or {}
        flat = plateau.get("flat")
        rows.append(
            {
                "method": log.get("method"),
                "knob": log.get("knob"),
                "seed": log.get("seed", 0),
                "tokens": log.get("tokens_seen"),
                "train_fvu": log.get("fvu"),
                "train_l0": log.get("l0"),
                "dead_fraction": log.get("dead_fraction"),
                "fvu_change_50_80": plateau.get("fvu_change"),
                "l0_change_50_80": plateau.get("l0_change"),
                "flat": "n/a" if flat is None else ("yes" if flat else "no"),
            }
        )
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).sort_values(["method", "knob", "seed"]).reset_index(drop=True)


def _markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    body = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


NUMERIC_LIBRARIES = ("numpy", "scipy", "scikit-learn", "pandas")


def _installed_version(distribution: str) -> str:
    # transformer_lens 4.x has no __version__ attribute; the installed metadata always knows.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def run_metadata(
    plan: RunPlan,
    config: dict,
    *,
    harvest_info: dict,
    device: str,
    sae_device: str,
    model_info: dict,
    timings: dict[str, float],
    status: str,
    executor: str,
    torch_threads: int,
    invocations: list[dict] | None = None,
) -> dict:
    """run.json: config, provenance, timings and every planned cell's status."""
    import torch

    import saebench
    from saebench.numerics import numerics_in_effect

    run_dir = plan.run_dir
    cells = planned_cells(run_dir, plan)
    counts: dict[str, int] = {}
    for cell in cells:
        counts[cell.status] = counts.get(cell.status, 0) + 1
    return {
        "status": status,
        # "complete" means the plan ran to its end; these say how its cells ended.
        "cell_counts": dict(sorted(counts.items())),
        "config": config,
        "command": plan.request.command,
        "executor": executor,
        "versions": {
            "saebench": saebench.__version__,
            "torch": torch.__version__,
            "transformer_lens": _installed_version("transformer_lens"),
            "python": platform.python_version(),
            # The numeric libraries under the metrics: their kernels move CPU results too.
            **{name: _installed_version(name) for name in NUMERIC_LIBRARIES},
        },
        "device": device,
        "sae_device": sae_device,
        # CPU results are bit-reproducible across machines only under the same kernels.
        "cpu_numerics": numerics_in_effect(),
        # What the cells ran at (the executor's): more threads add a reduction in another order.
        "torch_threads": torch_threads,
        "model_info": {k: v for k, v in model_info.items() if k != "metrics"},
        "harvest": harvest_info,
        "skipped_tasks": plan.skipped_tasks,
        "timings_seconds": {k: round(v, 2) for k, v in timings.items()},
        # Every `saebench run` of this directory, oldest first: a resumed run's timings above
        # are only its last call's.
        "invocations": invocations or [],
        "cells": [
            {
                "id": c.id,
                "method": c.method,
                "knob": c.knob,
                "seed": c.seed,
                "task": c.task,
                "status": c.status,
                "reason": c.reason,
                "seconds": round(c.seconds, 3),
            }
            for c in cells
        ],
        # The curves stay in each SAE's train_log.json: run.json keeps the summaries.
        "train_logs": {
            path: {k: v for k, v in log.items() if k != "curve"}
            for path, log in run_dir.train_logs().items()
        },
    }
