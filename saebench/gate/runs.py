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
