"""The baseline file: per (model, hook, method, knob, task, metric) the mean and sample std over
≥ MIN_SEEDS seeds, plus the metric's better direction and floor as the task plugin declares them.

On disk (JSON, written atomically with sorted keys):

    {"format": "saebench-baseline", "format_version": 1, "created_at": ..., "created_from": ...,
     "command": ..., "config": {run.json's config}, "versions": {...}, "device": "cpu",
     "entries": [{"model", "hook", "method", "knob", "task", "metric", "mean", "std",
                  "n_seeds", "values": {seed: value}, "higher_is_better", "floor"}, ...]}

`Baseline.from_json` checks all of it and names the file, the field and the fix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from saebench.errors import ConfigError
from saebench.fileio import write_json
from saebench.gate.runs import (
    EntryKey,
    FinishedRun,
    SeedStats,
    cells_by_entry,
    entry_keys,
    failure_summary,
    planned_entries,
    produced_nothing,
    read_run,
    seed_stats,
)
from saebench.rundir import knob_label

FORMAT = "saebench-baseline"
FORMAT_VERSION = 1
MIN_SEEDS = 3


class _Invalid(ValueError):
    """A field has the wrong type; the argument says what it must be."""


# --------------------------------------------------------------------------- field checks
# Each takes the JSON value and returns the typed one, or raises _Invalid("what it must be").


def _text(value: Any) -> str:
    if isinstance(value, str) and value:
        return value
    raise _Invalid("a non-empty string")


def _optional_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _Invalid("a string or null")


def _number(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise _Invalid("a finite number")


def _non_negative(value: Any) -> float:
    number = _number(value)
    if number < 0:
        raise _Invalid("a number ≥ 0")
    return number


def _count(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise _Invalid("a whole number ≥ 1")


def _knob(value: Any) -> float:
    # Written as text by knob_label ("16", "0.001"); numbers are accepted too.
    try:
        knob = float(value) if isinstance(value, str) else _number(value)
    except (ValueError, _Invalid):
        knob = math.nan
    if math.isfinite(knob):
        return knob
    raise _Invalid('a number or a number as text, e.g. "16" or "0.001"')


def _direction(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise _Invalid("true (higher is better), false (lower is better) or null (not gated)")


def _seed_values(value: Any) -> dict[int, float]:
    expected = 'an object {seed: value}, e.g. {"0": 0.31, "1": 0.30}'
    if not isinstance(value, dict):
        raise _Invalid(expected)
    try:
        return {int(seed): _number(v) for seed, v in value.items()}
    except (ValueError, _Invalid):
        raise _Invalid(expected) from None


def _optional_count(value: Any) -> int | None:
    return None if value is None else _count(value)


def _object(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise _Invalid("a JSON object")


ENTRY_FIELDS: dict[str, Callable[[Any], Any]] = {
    "model": _text,
    "hook": _text,
    "method": _text,
    "knob": _knob,
    "task": _text,
    "metric": _text,
    "mean": _number,
    "std": _non_negative,
    "n_seeds": _count,
    "higher_is_better": _direction,
    "floor": _non_negative,
}
OPTIONAL_ENTRY_FIELDS: dict[str, Callable[[Any], Any]] = {"values": _seed_values}
OPTIONAL_FIELDS: dict[str, Callable[[Any], Any]] = {
    "created_at": _optional_text,
    "created_from": _optional_text,
    "command": _optional_text,
    "versions": _object,
    "device": _optional_text,
    "cpu_numerics": _object,
    "torch_threads": _optional_count,
    "excluded": _object,
}


def _fix(path: str | Path) -> str:
    return f"recreate it with `saebench baseline create RUN_DIR --out {path}`"


def _checked(checks: dict[str, Callable[[Any], Any]], data: dict, where: str, fix: str) -> dict:
    """{field: typed value} for the fields of `checks` present in `data`."""
    typed = {}
    for name, check in checks.items():
        if name not in data:
            continue
        try:
            typed[name] = check(data[name])
        except _Invalid as error:
            raise ConfigError(
                f"{where} has {name}={data[name]!r}, which must be {error}; it is corrupt: {fix}"
            ) from None
    return typed


# --------------------------------------------------------------------------- the types


@dataclass
class BaselineEntry:
    """One (model, hook, method, knob, task, metric) of the baseline over its seeds."""

    model: str
    hook: str
    method: str
    knob: float
    task: str
    metric: str
    mean: float
    std: float
    n_seeds: int
    higher_is_better: bool | None  # None: descriptive (e.g. L0), shown but never gated
    floor: float  # the smallest change that matters, declared by the task
    values: dict[int, float] = field(default_factory=dict)  # seed -> value

    @property
    def knob_label(self) -> str:
        return knob_label(self.knob)

    @property
    def key(self) -> EntryKey:
        return (self.model, self.hook, self.method, self.knob_label, self.task, self.metric)

    @property
    def label(self) -> str:
        return f"{self.method} knob={self.knob_label} {self.task}/{self.metric}"

    @property
    def gated(self) -> bool:
        return self.higher_is_better is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "hook": self.hook,
            "method": self.method,
            "knob": self.knob_label,
            "task": self.task,
            "metric": self.metric,
            "mean": self.mean,
            "std": self.std,
            "n_seeds": self.n_seeds,
            "values": {str(seed): value for seed, value in sorted(self.values.items())},
            "higher_is_better": self.higher_is_better,
            "floor": self.floor,
        }

    @classmethod
    def from_json(cls, data: Any, where: str, fix: str) -> BaselineEntry:
        """Validate one entry; `where` names it in errors ("FILE: entry 3")."""
        if not isinstance(data, dict):
            raise ConfigError(
                f"{where} is {type(data).__name__}, not an object with the fields "
                f"{sorted(ENTRY_FIELDS)}; it is corrupt: {fix}"
            )
        missing = set(ENTRY_FIELDS) - set(data)
        if missing:
            raise ConfigError(f"{where} lacks {sorted(missing)}; it is corrupt: {fix}")
        typed = _checked(ENTRY_FIELDS | OPTIONAL_ENTRY_FIELDS, data, where, fix)
        return cls(**typed)


@dataclass(kw_only=True)
class Baseline:
    """A baseline file's content. `format_version` is what this saebench wrote or read."""

    format_version: int = FORMAT_VERSION
    created_at: str | None = None
    created_from: str | None = None
    command: str | None = None
    config: dict[str, Any]
    versions: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    # How the baseline's CPU run computed (run.json's); None/empty in baselines made before.
    cpu_numerics: dict[str, Any] = field(default_factory=dict)
    torch_threads: int | None = None
    entries: list[BaselineEntry]
    # "task/metric" -> why `baseline create` left it out (printed by every `saebench check`).
    excluded: dict[str, str] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return list(self.config.get("seeds") or [])

    @property
    def gated_entries(self) -> list[BaselineEntry]:
        return [entry for entry in self.entries if entry.gated]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": self.format_version,
            "created_at": self.created_at,
            "created_from": self.created_from,
            "command": self.command,
            "config": self.config,
            "versions": self.versions,
            "device": self.device,
            **({"cpu_numerics": self.cpu_numerics} if self.cpu_numerics else {}),
            **({"torch_threads": self.torch_threads} if self.torch_threads is not None else {}),
            "entries": [entry.to_json() for entry in self.entries],
            # Only when something was left out, so older baselines read and write back the same.
            **({"excluded": dict(sorted(self.excluded.items()))} if self.excluded else {}),
        }

    @classmethod
    def from_json(cls, data: Any, path: str | Path = "the baseline") -> Baseline:
        """Validate a parsed baseline file; every problem names `path`, the field and the fix."""
        fix = _fix(path)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfigError(
                f'{path} is not a saebench baseline (missing "format": "{FORMAT}"); {fix}'
            )
        if data.get("format_version") != FORMAT_VERSION:
            raise ConfigError(
                f"{path} has baseline format version {data.get('format_version')}, "
                f"this saebench reads version {FORMAT_VERSION}; {fix}"
            )
        entries = data.get("entries")
        if not isinstance(data.get("config"), dict) or not isinstance(entries, list) or not entries:
            raise ConfigError(f"{path} has no config block or no entries; it is corrupt: {fix}")
        typed = _checked(OPTIONAL_FIELDS, data, str(path), fix)
        return cls(
            format_version=FORMAT_VERSION,
            config=data["config"],
            entries=_entries(entries, path, fix),
            **typed,
        )


def _entries(data: list[Any], path: str | Path, fix: str) -> list[BaselineEntry]:
    entries: list[BaselineEntry] = []
    first_of: dict[EntryKey, int] = {}
    for i, item in enumerate(data):
        entry = BaselineEntry.from_json(item, f"{path}: entry {i}", fix)
        if entry.key in first_of:
            # Two values for one metric: the comparison would silently use one of them.
            raise ConfigError(
                f"{path}: entry {i} ({entry.label}) repeats entry {first_of[entry.key]}; "
                f"it is corrupt: {fix}"
            )
        first_of[entry.key] = i
        entries.append(entry)
    return entries


# --------------------------------------------------------------------------- create and load


def declared_info(task: str, metric: str):
    """The task plugin's MetricInfo, or None when the task is not installed."""
    from saebench import plugins

    tasks = plugins.get_tasks()
    if task not in tasks:
        return None
    try:
        return tasks[task].metric_info(metric)
    except KeyError as error:
        raise ConfigError(str(error.args[0])) from None


def build_baseline(run_dir: str | Path) -> Baseline:
    """The baseline of a finished run with ≥ MIN_SEEDS seeds per entry."""
    run = read_run(run_dir)
    seeds = run.config.get("seeds") or sorted(run.frame["seed"].unique().tolist())
    if len(seeds) < MIN_SEEDS:
        raise ConfigError(
            f"{run_dir} has {len(seeds)} seed(s) {seeds}; a baseline needs ≥ {MIN_SEEDS} to "
            f"measure seed noise. Rerun with `saebench run ... --seeds {MIN_SEEDS} --out NEW_DIR`"
        )
    _check_every_planned_entry_ran(run, run_dir)
    if run.frame.empty:
        raise ConfigError(
            f"{run_dir}/results.csv has no results (every cell failed?); see {run_dir}/results.md"
        )
    entries, excluded = _entries_of(run, run_dir)
    return Baseline(
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        created_from=str(run_dir),
        command=run.meta.get("command"),
        config=run.config,
        versions=run.meta.get("versions", {}),
        device=run.meta.get("device"),
        cpu_numerics=run.meta.get("cpu_numerics") or {},
        torch_threads=run.meta.get("torch_threads"),
        entries=entries,
        excluded=excluded,
    )


def _retry_command(run: FinishedRun) -> str:
    """The run's own command with --retry-failed, when run.json recorded it."""
    command = run.meta.get("command")
    if isinstance(command, str) and command.startswith("saebench run"):
        return f"`{command}{'' if '--retry-failed' in command.split() else ' --retry-failed'}`"
    return "the same `saebench run` command with --retry-failed"


def _check_every_planned_entry_ran(run: FinishedRun, run_dir: str | Path) -> None:
    """Every method × knob of config "methods" has an ok cell for every task of config "tasks".

    Otherwise the baseline would silently leave that method out, and `saebench check` would
    never gate it: a method that crashed on every seed would pass forever."""
    cells = cells_by_entry(run.cells)
    lost = [
        f"{method} knob={knob} on {task}: {failure_summary(cells.get((method, knob, task), []))}"
        for method, knob, task in planned_entries(run.config)
        if produced_nothing(cells.get((method, knob, task), []))
    ]
    if lost:
        some = "; ".join(lost[:5]) + (f"; and {len(lost) - 5} more" if len(lost) > 5 else "")
        raise ConfigError(
            f"{run_dir}: {len(lost)} configured (method, knob, task) of the run ha"
            f"{'s' if len(lost) == 1 else 've'} no ok cell, so the baseline would leave "
            f"{'it' if len(lost) == 1 else 'them'} out and never gate "
            f"{'it' if len(lost) == 1 else 'them'}: {some}. Fix the failure (reasons in "
            f"{run_dir}/results.md), rerun {_retry_command(run)}, then create the baseline again"
        )


def breakdown_depth(metric: str, names) -> int:
    """0 for an aggregate, 1 for a breakdown of one (gt_auroc_day of gt_auroc_mean), 2 for a
    breakdown of a breakdown (gt_auroc_day_monday), ... (saebench.plots.is_breakdown)."""
    from saebench.plots import is_breakdown

    parents = [
        other
        for other in names
        if other != metric and metric.startswith(other.removesuffix("_mean") + "_")
    ]
    if not parents or not is_breakdown(metric, names):
        return 0
    return 1 + max(breakdown_depth(parent, names) for parent in parents)


def _entries_of(
    run: FinishedRun, run_dir: str | Path
) -> tuple[list[BaselineEntry], dict[str, str]]:
    entries, short = [], []
    excluded: dict[str, str] = {}
    frame = run.frame
    # A metric `saebench audit` found unreliable (noise above signal, no movement with
    # training, no agreement with ground truth) would gate on noise: leave it out, on record.
    from saebench.audit import unreliable_metrics
    from saebench.rundir import RunDir

    audit = RunDir(run_dir).read_audit()
    if audit is not None:
        unreliable = unreliable_metrics(audit)
        for task, metric in frame[frame["metric"].isin(unreliable)][["task", "metric"]].values:
            excluded[f"{task}/{metric}"] = "unreliable in saebench audit (audit.json)"
        frame = frame[~frame["metric"].isin(unreliable)]
    # A breakdown of a breakdown (one day's AUROC on a handful of held-out positives) flips
    # with any change of the SAE; its group's and task's aggregates are gated instead.
    names = {task: set(group) for task, group in frame.groupby("task")["metric"]}
    deep = [breakdown_depth(m, names[t]) >= 2 for t, m in zip(frame["task"], frame["metric"])]
    for task, metric in frame[deep][["task", "metric"]].drop_duplicates().values:
        excluded[f"{task}/{metric}"] = "a breakdown of a breakdown: its aggregates are gated"
    frame = frame[[not d for d in deep]]
    stats_by_key = seed_stats(frame)
    # A metric whose every seed is NaN has no stats at all: short of seeds too, not left out.
    for key in sorted(entry_keys(frame) - set(stats_by_key)):
        short.append(f"{key[2]} knob={key[3]} {key[4]}/{key[5]} (0 finite seeds)")
    for key, stats in stats_by_key.items():
        if stats.n < MIN_SEEDS:
            short.append(f"{key[2]} knob={key[3]} {key[4]}/{key[5]} ({stats.n} seeds)")
            continue
        entries.append(_entry(key, stats))
    if short:
        raise ConfigError(
            f"{len(short)} entr{'y has' if len(short) == 1 else 'ies have'} fewer than "
            f"{MIN_SEEDS} finished seeds (failed cells, or NaN values?): {'; '.join(short[:5])}. "
            f"Fix the failures (see {run_dir}/results.md) and rerun {_retry_command(run)} (a "
            f"NaN value comes from an ok cell: fix its cause and rerun into a new --out)"
        )
    return entries, excluded


def _entry(key: EntryKey, stats: SeedStats) -> BaselineEntry:
    model, hook, method, knob, task, metric = key
    info = declared_info(task, metric)
    if info is None:
        raise ConfigError(
            f"task {task!r} is not installed, so its metric directions are "
            f"unknown; install the plugin that provides it before creating "
            f"the baseline"
        )
    return BaselineEntry(
        model=model,
        hook=hook,
        method=method,
        knob=float(knob),
        task=task,
        metric=metric,
        mean=stats.mean,
        std=stats.std,
        n_seeds=stats.n,
        values=dict(sorted(stats.values.items())),
        higher_is_better=info.higher_is_better,
        floor=float(info.floor),
    )


def create_baseline(run_dir: str | Path, out: str | Path) -> Baseline:
    """Build the baseline of `run_dir` and write it (atomically) to `out`."""
    baseline = build_baseline(run_dir)
    write_json(out, baseline.to_json())
    return baseline


def load_baseline(path: str | Path) -> Baseline:
    """Read and validate a baseline file; every problem names the fix."""
    path = Path(path)
    fix = _fix(path)
    if not path.is_file():
        raise ConfigError(f"baseline file {path} does not exist; check the path, or {fix}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"baseline file {path} is not valid JSON ({error}); it is corrupt: "
            f"restore it from git or {fix}"
        ) from None
    return Baseline.from_json(data, path)
