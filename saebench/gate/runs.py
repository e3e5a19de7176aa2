"""Reading a finished run for the gate, and its per-entry statistics over seeds."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from saebench.errors import ConfigError
from saebench.results import load_results
from saebench.rundir import Cell, RunDir, knob_label

# What one baseline entry is about; the knob is spelled by `knob_label`, so 16, 16.0 and "16"
# (CSV, JSON and old baselines) are the same entry.
ENTRY_KEY = ("model", "hook", "method", "knob", "task", "metric")
EntryKey = tuple[str, str, str, str, str, str]
# What a run's config plans: (method, knob spelled by `knob_label`, task); its cells are the seeds.
PlannedKey = tuple[str, str, str]
# A cell with this status has no number on purpose (the task's validity check said it would mean
# nothing), so a planned entry whose cells all have it is not a failure.
NO_NUMBER_ON_PURPOSE = "uninformative"


@dataclass(frozen=True)
class SeedStats:
    """One entry of a run over its seeds: mean, sample std (ddof = 1; 0 for one seed), n."""

    mean: float
    std: float
    n: int
    values: dict[int, float] = field(default_factory=dict)  # seed -> value


@dataclass
class FinishedRun:
    """What the gate needs from a run directory: its run.json, results and cell records."""

    root: Path
    meta: dict[str, Any]
    frame: pd.DataFrame
    cells: list[Cell]

    @property
    def config(self) -> dict[str, Any]:
        return self.meta["config"]


def read_run(run_dir: str | Path) -> FinishedRun:
    """The finished run in `run_dir`, or a ConfigError naming the fix."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(
            f"run directory {run_dir} does not exist; pass the --out directory of "
            f"a finished `saebench run`"
        )
    layout = RunDir(run_dir)
    try:
        meta = layout.read_run_json()
        frame = load_results(run_dir)
        cells = layout.read_cells()
    except FileNotFoundError as error:
        raise ConfigError(
            f"{error}. If the run was interrupted, rerun the same `saebench run` "
            f"command to resume and finish it"
        ) from None
    except (json.JSONDecodeError, ValueError, TypeError) as error:
        raise ConfigError(f"cannot read {run_dir}: {error}; rerun `saebench run`") from None
    if not isinstance(meta, dict) or "config" not in meta:
        raise ConfigError(
            f"{run_dir}/run.json has no 'config' block; it was not written by "
            f"`saebench run` (rerun it)"
        )
    return FinishedRun(run_dir, meta, frame, cells or _summary_cells(run_dir, meta))


def _summary_cells(run_dir: Path, meta: dict[str, Any]) -> list[Cell]:
    """Cell records from run.json's summary, for a run whose cells/ folder is gone."""
    try:
        # The summary leaves out the knob's name and the metrics; the gate needs neither.
        return [Cell.from_json({"knob_name": "", **cell}) for cell in meta.get("cells", [])]
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"cannot read the cell summary in {run_dir}/run.json: {error}; rerun `saebench run`"
        ) from None


def seed_stats(frame: pd.DataFrame) -> dict[EntryKey, SeedStats]:
    """Per entry key (knob spelled by `knob_label`): mean, sample std, count and seed values.

    Non-finite values (a diverged run's NaN) are left out, as if the seed had not finished: the
    gate reports them itself (compare) and a baseline refuses entries short of seeds."""
    tidy = frame.assign(
        knob=frame["knob"].astype(float),
        seed=frame["seed"].astype(int),
        value=frame["value"].astype(float),
    )
    tidy = tidy[np.isfinite(tidy["value"])]
    if tidy.empty:
        return {}
    # A seed counts once per entry (the last row wins), whatever wrote the results.
    tidy = tidy.drop_duplicates([*ENTRY_KEY, "seed"], keep="last").sort_values([*ENTRY_KEY, "seed"])
    grouped = tidy.groupby(list(ENTRY_KEY), sort=True)
    stats = grouped["value"].agg(mean="mean", std="std", n="count")
    stats["std"] = stats["std"].fillna(0.0)  # pandas gives NaN for one seed; no spread is 0
    values = grouped[["seed", "value"]].apply(
        lambda g: {int(s): float(v) for s, v in zip(g["seed"], g["value"])}
    )
    by_key = {}
    for key, row in stats.iterrows():
        model, hook, method, knob, task, metric = key
        by_key[(model, hook, method, knob_label(knob), task, metric)] = SeedStats(
            float(row["mean"]), float(row["std"]), int(row["n"]), values.loc[key]
        )
    return by_key


def entry_keys(frame: pd.DataFrame) -> set[EntryKey]:
    """Every entry key with a row in `frame`, finite or not (knob spelled by `knob_label`)."""
    return {
        (model, hook, method, knob_label(float(knob)), task, metric)
        for model, hook, method, knob, task, metric in frame[list(ENTRY_KEY)].itertuples(
            index=False
        )
    }


def planned_entries(config: dict[str, Any]) -> list[PlannedKey]:
    """(method, knob label, task) for every method × knob of config "methods" and every task of
    config "tasks", in config order; empty when the config lacks either (an older run.json)."""
    methods, tasks = config.get("methods"), config.get("tasks")
    if not isinstance(methods, dict) or not isinstance(tasks, list):
        return []
    planned = []
    for method, knobs in methods.items():
        for knob in knobs if isinstance(knobs, list) else []:
            try:
                label = knob_label(float(knob))
            except (TypeError, ValueError):
                continue  # a corrupt knob: the gate's config checks name it
            planned += [(str(method), label, str(task)) for task in tasks]
    return planned


def cells_by_entry(cells: list[Cell]) -> dict[PlannedKey, list[Cell]]:
    """The cells of each (method, knob label, task): one per seed."""
    by_entry: dict[PlannedKey, list[Cell]] = {}
    for cell in cells:
        by_entry.setdefault((cell.method, knob_label(cell.knob), cell.task), []).append(cell)
    return by_entry


def produced_nothing(cells: list[Cell]) -> bool:
    """True when a planned entry has no ok cell, unless every cell has no number on purpose."""
    if any(cell.ok for cell in cells):
        return False
    return not cells or any(cell.status != NO_NUMBER_ON_PURPOSE for cell in cells)


def failure_summary(cells: list[Cell]) -> str:
    """Why `cells` (one planned entry's) are not ok: how many, their status and the distinct
    reasons, e.g. "3 of 3 cell(s) failed: training failed: RuntimeError: NaN"."""
    bad = [cell for cell in cells if not cell.ok]
    if not cells:
        return "no cell recorded (the run is incomplete: rerun the same command to resume it)"
    if not bad:
        return f"all {len(cells)} cell(s) ok"
    statuses = "/".join(dict.fromkeys(cell.status for cell in bad))
    reasons = list(dict.fromkeys(cell.reason or "no reason recorded" for cell in bad))
    more = f" (+{len(reasons) - 2} other reasons)" if len(reasons) > 2 else ""
    return f"{len(bad)} of {len(cells)} cell(s) {statuses}: {'; '.join(reasons[:2])}{more}"
