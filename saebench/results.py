"""Run outputs: tidy results.csv (from the cell files), run.json, results.md; and loaders."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from saebench.fileio import atomic_path, write_text
from saebench.rundir import Cell, RunDir, knob_label
from saebench.specs import L0, TaskSpec
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
    frame = cells_to_frame(cells, model, hook)
    with atomic_path(run_dir.results_csv) as tmp:
        frame.to_csv(tmp, index=False)
    write_text(
        run_dir.results_md,
        summary_markdown(frame, cells, tasks, train_logs=run_dir.train_logs()),
    )
    return frame


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


def summary_markdown(
    frame: pd.DataFrame,
    cells: list[Cell],
    tasks: dict[str, TaskSpec],
    calibration_methods: list[str] | None = None,
    train_logs: dict[str, dict] | None = None,
) -> str:
    """results.md. `calibration_methods`: the registered calibration baselines (default: every
    installed method with MethodSpec.calibration), named when the run has none of them.
    `train_logs` (RunDir.train_logs): a training section, and a warning when a curve had not
    flattened."""
    from saebench.plots import is_breakdown, matched_l0_table

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
    table = frontier_table(frame, tasks)
    if not table.empty:
        lines += ["## Frontier (mean over seeds)", "", _markdown(table), ""]
    matched = matched_l0_table(frame, tasks)
    if not matched.empty:
        lines += [
            f"## Methods at matched L0 ≈ {matched.attrs['l0']:.3g} (interpolated in log L0)",
            "",
            _markdown(matched.T.rename_axis("metric").reset_index()),
            "",
        ]  # metrics as rows
    # Tasks with headline metrics are summarised in the frontier table; the others get sections.
    summarised = {
        name for name, task in tasks.items() if any(i.headline for i in task.metrics.values())
    }
    others = frame[~frame.task.isin(summarised)]
    if calibration_methods is None:
        from saebench import plugins

        calibration_methods = sorted(n for n, m in plugins.get_methods().items() if m.calibration)
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
        group = group[[not is_breakdown(m, names) for m in group.metric]]
        wide = group.pivot_table(
            index=["method", "knob"], columns="metric", values="value", aggfunc="mean"
        ).reset_index()
        lines += [f"## {task}", "", _markdown(wide), ""]
    if not training.empty:
        lines += [
            "## Training (final interval of each SAE's curve; train_log.json has the curve)",
            "",
            _markdown(training),
            "",
        ]
    failed = [c for c in cells if not c.ok]
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
    invocations: list[dict] | None = None,
) -> dict:
    """run.json: config, provenance, timings and every planned cell's status."""
    import torch

    import saebench

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
        },
        "device": device,
        "sae_device": sae_device,
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
