"""What the report reads from a run directory, as one typed record, and which SAEs get
dashboards. Tasks and their metrics' metadata come from the task registry, never by name."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from saebench.calibration import (
    COMPARISON_COLUMNS,
    Calibration,
    calibrate,
    curve_roles,
    directional_metrics,
    lacks_l0_task,
)
from saebench.errors import ConfigError
from saebench.rundir import Cell, RunDir, SaeKey
from saebench.specs import L0, TaskSpec

DEFAULT_MAX_SAES = 4  # dashboards by default: one per learned method, at most this many


@dataclass
class RunData:
    """A finished (or partial) run as the report sees it."""

    run_dir: RunDir
    run: dict[str, Any]  # run.json
    config: dict[str, Any]
    cells: list[Cell]
    frame: pd.DataFrame  # tidy results (results.csv's columns)
    aggregated: pd.DataFrame  # mean and 95% interval over seeds (results_aggregated.csv)
    tasks: dict[str, TaskSpec]
    baselines: list[str]  # installed calibration methods
    calibration: Calibration
    train_logs: dict[str, dict[str, Any]]
    audit: dict[str, Any] | None
    saved: list[SaeKey]  # SAEs saved in the run directory

    @property
    def title(self) -> str:
        return str(self.run_dir.root.resolve().name)


def load_run_data(run_dir: RunDir) -> RunData:
    """Read run.json, the planned cells and the train logs of `run_dir`."""
    from saebench import plugins
    from saebench.results import calibration_baselines, cells_to_frame
    from saebench.stats import aggregate_over_seeds

    run = run_dir.read_run_json()
    config = run.get("config") or {}
    planned_tasks = list(config.get("tasks") or [])
    registered = plugins.get_tasks()
    tasks = {name: registered[name] for name in planned_tasks if name in registered}
    methods = set(config.get("methods") or [])
    cells = [
        c
        for c in run_dir.read_cells()
        if (not planned_tasks or c.task in planned_tasks) and (not methods or c.method in methods)
    ]
    frame = cells_to_frame(cells, config.get("model", ""), config.get("hook", ""))
    baselines = calibration_baselines()
    calibration = stored_calibration(run_dir, frame, tasks, baselines)
    return RunData(
        run_dir=run_dir,
        run=run,
        config=config,
        cells=cells,
        frame=frame,
        aggregated=aggregate_over_seeds(frame),
        tasks=tasks,
        baselines=baselines,
        calibration=calibration or calibrate(frame, tasks, baselines),
        train_logs=run_dir.train_logs(),
        audit=run_dir.read_audit(),
        saved=[key for key, _ in run_dir.saved_saes()],
    )


def stored_calibration(
    run_dir: RunDir, frame: pd.DataFrame, tasks: dict[str, TaskSpec], baselines: list[str]
) -> Calibration | None:
    """The run's Calibration read back from comparisons.csv (what the run wrote from the same
    cells), or None when that file is missing, unreadable or older than the cells: then the
    caller recomputes it. Recomputing matched-L0 comparisons takes ~20 s on the default preset;
    reading them back takes milliseconds."""
    from saebench.stats import Comparison, Interval

    path = run_dir.comparisons_csv
    newest_cell = (
        max((p.stat().st_mtime for p in run_dir.cells_dir.glob("*.json")), default=0.0)
        if run_dir.cells_dir.is_dir()
        else 0.0
    )
    if not path.exists() or path.stat().st_mtime < newest_cell:
        return None
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError):
        return None
    if list(table.columns) != COMPARISON_COLUMNS:
        return None
    metrics = directional_metrics(frame, tasks)
    if not set(table.metric) <= set(metrics):
        return None  # written for other tasks or metrics than the run's now

    def interval(mean, low, high, n) -> Interval:
        return Interval(float(mean), math.nan, float(low), float(high), int(n))

    comparisons = tuple(
        Comparison(
            metric=str(r.metric),
            method=str(r.method),
            baseline=str(r.baseline),
            l0=float(r.l0),
            method_value=interval(r.method_mean, r.method_low, r.method_high, r.n_seeds_method),
            baseline_value=interval(
                r.baseline_mean, r.baseline_low, r.baseline_high, r.n_seeds_baseline
            ),
            difference=interval(
                r.difference,
                r.difference_low,
                r.difference_high,
                r.n_seeds_method + r.n_seeds_baseline,
            ),
            verdict=str(r.verdict),
        )
        for r in table.itertuples(index=False)
    )
    roles = curve_roles(frame, baselines)  # the rule saebench.calibration.calibrate applies
    if any(m not in set(table.method) for m in roles.one_knob) and roles.baselines:
        return None  # written before one-knob methods were compared: recompute
    return Calibration(
        comparisons=comparisons,
        metrics=metrics,
        methods=roles.methods,
        baselines=roles.baselines,
        missing_baselines=tuple(m for m in baselines if m not in set(frame.method)),
        single_points=roles.single_points,
        l0_missing=lacks_l0_task(frame, tasks),
        one_knob=roles.one_knob,
    )


def mean_l0(frame: pd.DataFrame) -> dict[tuple[str, float], float]:
    """(method, knob) -> mean L0 over seeds (the frontier task's sparsity axis)."""
    rows = frame[frame.metric == L0]
    if rows.empty:
        return {}
    means = rows.groupby(["method", "knob"])["value"].mean()
    return {(str(m), float(k)): float(v) for (m, k), v in means.items()}


def parse_sae(text: str, saved: list[SaeKey]) -> SaeKey:
    """An SAE named as METHOD__KNOB__seedK (its label) or METHOD:KNOB[:SEED] (seed 0)."""
    by_label = {key.label: key for key in saved}
    if text in by_label:
        return by_label[text]
    parts = text.split(":")
    if len(parts) in (2, 3):
        try:
            key = SaeKey(parts[0], float(parts[1]), int(parts[2]) if len(parts) == 3 else 0)
        except ValueError:
            key = None
        if key is not None and key in saved:
            return key
    available = ", ".join(k.label for k in saved) or "(none saved)"
    raise ConfigError(
        f"--latents names {text!r}, which is not an SAE of this run; pass labels such as "
        f"{saved[0].label if saved else 'topk__16__seed0'} or METHOD:KNOB:SEED, 'auto', 'all' "
        f"or 'none'. Saved SAEs: {available}"
    )


def choose_saes(
    data: RunData, spec: str = "auto", max_saes: int = DEFAULT_MAX_SAES
) -> list[SaeKey]:
    """The SAEs that get latent dashboards.

    auto: one SAE per learned method (the calibration baselines only when nothing else was
    trained), its lowest seed, at the knob whose L0 is nearest (in log L0) to the median L0 of
    those methods' SAEs: the methods are then compared at about the same sparsity; at most
    `max_saes`. all: every saved SAE. none: no dashboards. Otherwise a comma list of SAEs."""
    spec = (spec or "auto").strip()
    if spec == "none":
        return []
    if spec == "all":
        return list(data.saved)
    if spec != "auto":
        return [parse_sae(part.strip(), data.saved) for part in spec.split(",") if part.strip()]
    learned = [k for k in data.saved if k.method not in data.baselines]
    pool = learned or list(data.saved)
    if not pool:
        return []
    l0 = mean_l0(data.frame)
    values = [l0[(k.method, k.knob)] for k in pool if l0.get((k.method, k.knob), 0) > 0]
    target = math.log(sorted(values)[len(values) // 2]) if values else None
    chosen = []
    for method in dict.fromkeys(k.method for k in pool):
        mine = [k for k in pool if k.method == method]
        seed = min(k.seed for k in mine)
        mine = [k for k in mine if k.seed == seed]
        if target is not None and any(l0.get((k.method, k.knob), 0) > 0 for k in mine):
            best = min(
                (k for k in mine if l0.get((k.method, k.knob), 0) > 0),
                key=lambda k: abs(math.log(l0[(k.method, k.knob)]) - target),
            )
        else:
            best = mine[len(mine) // 2]
        chosen.append(best)
    return chosen[:max_saes]
