"""Comparing a run with a baseline, and rerunning a baseline's configuration.

σ_pooled  = sqrt(((n_b − 1)·s_b² + (n_r − 1)·s_r²) / (n_b + n_r − 2))   (= s_b when n_r = 1)
worse_by  = (base_mean − run_mean) if higher is better else (run_mean − base_mean)
threshold = max(q · σ_pooled · sqrt(1/n_b + 1/n_r), floor),  q = t⁻¹_{n_b+n_r−2}(Φ(z))
regressed  if worse_by >  threshold;  improved if −worse_by > threshold;  else within noise

Two-sample Student t: σ is estimated from a few seeds, so its uncertainty widens the band, and
the difference of two means has the standard error σ·sqrt(1/n_b + 1/n_r). z keeps the meaning of
a normal deviate: for independent seeds, the chance that seed noise alone crosses the threshold
one way is Φ(−z) whatever the seed counts (docs/regression-gate.md, "The rule").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saebench.errors import ConfigError
from saebench.gate.baseline import Baseline, BaselineEntry, declared_info, load_baseline
from saebench.gate.runs import (
    NO_NUMBER_ON_PURPOSE,
    FinishedRun,
    PlannedKey,
    SeedStats,
    cells_by_entry,
    failure_summary,
    planned_entries,
    produced_nothing,
    read_run,
    seed_stats,
)
from saebench.planner import config_differences
from saebench.rundir import Cell, knob_label

if TYPE_CHECKING:
    from saebench.runner import RunRequest

DEFAULT_Z = 3.0
# Config fields that may differ between baseline and run without changing what is measured:
# the seed list (a 1-seed CI run is compared with the baseline's spread), the checkout path of
# the model, and the method/task lists (checked per entry instead, so a run may cover more).
NOT_COMPARED_FIELDS = {"seeds", "model_source", "methods", "tasks"}
EXIT_OK, EXIT_REGRESSION, EXIT_CANNOT_COMPARE = 0, 1, 2


@dataclass
class Row:
    """One baseline entry compared with the run."""

    model: str
    hook: str
    method: str
    knob: str
    task: str
    metric: str
    higher_is_better: bool | None
    floor: float
    base_mean: float
    base_std: float
    base_n: int
    run_mean: float | None = None
    run_std: float | None = None
    run_n: int = 0
    sigma: float | None = None
    threshold: float | None = None
    delta: float | None = None  # run − baseline (raw, not direction-adjusted)
    verdict: str = "ok"  # ok | improved | regressed | missing | info
    reason: str = ""

    @property
    def gated(self) -> bool:
        return self.higher_is_better is not None

    @property
    def failed(self) -> bool:
        return self.verdict in ("regressed", "missing")

    @property
    def label(self) -> str:
        return f"{self.method} knob={self.knob} {self.task}/{self.metric}"


@dataclass
class GateResult:
    run_dir: str
    baseline_path: str
    z: float
    rows: list[Row] = field(default_factory=list)
    config_diffs: list[tuple[str, object, object]] = field(default_factory=list)  # field, base, run
    not_covered: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    not_in_baseline: list[str] = field(default_factory=list)
    # Planned by the run's config, not in the baseline, and without any ok cell: "label: why".
    # Nothing of it could be gated, and a method that crashed everywhere must not pass.
    unfinished: list[str] = field(default_factory=list)

    @property
    def comparable(self) -> bool:
        return not self.config_diffs and not self.not_covered

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.failed]

    @property
    def improvements(self) -> list[Row]:
        return [r for r in self.rows if r.verdict == "improved"]

    @property
    def exit_code(self) -> int:
        if not self.comparable:
            return EXIT_CANNOT_COMPARE
        return EXIT_REGRESSION if self.regressions or self.unfinished else EXIT_OK

    @property
    def status(self) -> str:
        return {
            EXIT_OK: "PASS",
            EXIT_REGRESSION: "REGRESSION",
            EXIT_CANNOT_COMPARE: "CANNOT COMPARE",
        }[self.exit_code]


# --------------------------------------------------------------------------- the rule


def pooled_sigma(base_std: float, base_n: int, run_std: float, run_n: int) -> float:
    """Pooled seed std; with a single-seed run it is the baseline std."""
    dof = base_n + run_n - 2
    if dof <= 0:
        return 0.0
    return math.sqrt(((base_n - 1) * base_std**2 + (run_n - 1) * run_std**2) / dof)


def noise_multiplier(z: float, base_n: int, run_n: int) -> float:
    """q · sqrt(1/n_b + 1/n_r): the threshold in units of σ_pooled (inf without a spread estimate)."""
    from scipy.stats import norm, t

    dof = base_n + run_n - 2
    if dof <= 0:
        return math.inf
    # From the upper tail: norm.cdf(z) rounds to 1.0 for z above about 8, and t.ppf(1.0) is inf.
    return float(t.isf(norm.sf(z), dof)) * math.sqrt(1 / base_n + 1 / run_n)


def noise_band(sigma: float, z: float, base_n: int, run_n: int) -> float:
    """σ_pooled · q · sqrt(1/n_b + 1/n_r): how far seed noise may move a metric (0 when σ is 0)."""
    return sigma * noise_multiplier(z, base_n, run_n) if sigma > 0 else 0.0


def judge(
    higher_is_better: bool | None,
    floor: float,
    base_mean: float,
    base_std: float,
    base_n: int,
    run_mean: float,
    run_std: float,
    run_n: int,
    z: float,
) -> tuple[str, float, float, float]:
    """(verdict, σ_pooled, threshold, delta) for one metric; verdict ok|improved|regressed|info."""
    sigma = pooled_sigma(base_std, base_n, run_std, run_n)
    threshold = max(noise_band(sigma, z, base_n, run_n), floor)
    delta = run_mean - base_mean
    if higher_is_better is None:
        return "info", sigma, threshold, delta
    worse_by = -delta if higher_is_better else delta
    if worse_by > threshold:
        return "regressed", sigma, threshold, delta
    if -worse_by > threshold:
        return "improved", sigma, threshold, delta
    return "ok", sigma, threshold, delta


def check_z(z: float) -> None:
    """A ConfigError unless z is a positive finite number of standard deviations."""
    if not (z > 0 and math.isfinite(z)):
        raise ConfigError(f"--z must be a positive number of standard deviations, got {z}")


# --------------------------------------------------------------------------- comparison


def compare(run_dir: str | Path, baseline_path: str | Path, z: float = DEFAULT_Z) -> GateResult:
    """Compare a finished run with a baseline file; never raises for regressions."""
    check_z(z)
    baseline = load_baseline(baseline_path)
    run = read_run(run_dir)
    result = GateResult(str(run_dir), str(baseline_path), z)
    result.config_diffs = config_differences(baseline.config, run.config, NOT_COMPARED_FIELDS)
    result.warnings += _provenance_notes(baseline, run)
    result.warnings += _wide_band_note(baseline, run, z)
    run_stats = seed_stats(run.frame)
    cells = cells_by_entry(run.cells)
    for entry in baseline.entries:
        row = _row(entry)
        _check_declared_direction(row, result)
        stats = run_stats.get(entry.key)
        entry_cells = cells.get((row.method, row.knob, row.task), [])
        if stats is not None:
            _judge_row(row, stats, z)
        elif not _planned(run.config, row.method, row.knob, row.task):
            result.not_covered.append(row.label)
            continue
        if stats is None or _non_finite(entry_cells, row.metric):
            # No value, or a NaN among the seeds: a method that now diverges is worse.
            row.verdict = "missing" if row.gated else "info"
            row.reason = _missing_reason(entry_cells, row.metric)
        result.rows.append(row)
    if result.not_covered:
        for name in ("methods", "tasks"):
            old, new = baseline.config.get(name), run.config.get(name)
            if old != new:
                result.config_diffs.append((name, old, new))
    # Per (method, knob, task): a task the baseline gates on its aggregates only (it leaves
    # per-concept breakdowns out) is in the baseline.
    seen_tasks = {(e.method, e.knob_label, e.task) for e in baseline.entries}
    result.not_in_baseline = sorted(
        {f"{k[2]} knob={k[3]} {k[4]}" for k in run_stats if (k[2], k[3], k[4]) not in seen_tasks}
    )
    covered = {(entry.method, entry.knob_label, entry.task) for entry in baseline.entries}
    result.unfinished = [
        f"{method} knob={knob} {task}: {failure_summary(cells.get((method, knob, task), []))}"
        for method, knob, task in planned_entries(run.config)
        if (method, knob, task) not in covered
        and produced_nothing(cells.get((method, knob, task), []))
    ]
    result.warnings += _ungated_in_baseline(baseline, covered, baseline_path, cells)
    if baseline.excluded:
        reasons: dict[str, list[str]] = {}
        for name, why in sorted(baseline.excluded.items()):
            reasons.setdefault(why, []).append(name)
        for why, names in reasons.items():
            shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            result.warnings.append(f"not gated on purpose ({why}): {shown}")
    return result


def _ungated_in_baseline(
    baseline: Baseline, covered: set[PlannedKey], path: str | Path, cells: dict
) -> list[str]:
    """The baseline's own config planned these, but it has no entry for them (a baseline made
    before `baseline create` refused runs with a method that failed on every seed). A task
    that is uninformative in this run (its validity gate closed) has no entry on purpose."""
    lost = [
        f"{method} knob={knob} {task}"
        for method, knob, task in planned_entries(baseline.config)
        if (method, knob, task) not in covered
        and not _uninformative(cells.get((method, knob, task), []))
    ]
    if not lost:
        return []
    return [
        f"the baseline's config plans {'; '.join(lost)}, but {path} has no entry for "
        f"{'it' if len(lost) == 1 else 'them'} (every cell failed when it was made?), so "
        f"{'it is' if len(lost) == 1 else 'they are'} not gated; recreate it from a run where "
        f"they finished: `saebench baseline create RUN_DIR --out {path}`"
    ]


def _uninformative(cells: list) -> bool:
    return bool(cells) and all(cell.status == NO_NUMBER_ON_PURPOSE for cell in cells)


def _row(entry: BaselineEntry) -> Row:
    return Row(
        *entry.key,
        higher_is_better=entry.higher_is_better,
        floor=entry.floor,
        base_mean=entry.mean,
        base_std=entry.std,
        base_n=entry.n_seeds,
    )


def _judge_row(row: Row, stats: SeedStats, z: float) -> None:
    row.run_mean, row.run_std, row.run_n = stats.mean, stats.std, stats.n
    row.verdict, row.sigma, row.threshold, row.delta = judge(
        row.higher_is_better,
        row.floor,
        row.base_mean,
        row.base_std,
        row.base_n,
        stats.mean,
        stats.std,
        stats.n,
        z,
    )


WIDE_BAND = 6.0  # σ units: a band wider than this is said to the user


def _wide_band_note(baseline: Baseline, run: FinishedRun, z: float) -> list[str]:
    """A baseline with few seeds gives a wide noise band (σ known poorly): say how wide."""
    gated = [e for e in baseline.entries if e.gated]
    if not gated:
        return []
    base_n = min(e.n_seeds for e in gated)
    run_n = max(1, len(run.config.get("seeds") or []))
    band = noise_multiplier(z, base_n, run_n)
    if band <= WIDE_BAND:
        return []
    return [
        f"wide noise band: with {base_n} baseline seed(s) and {run_n} run seed(s) a metric must "
        f"move {band:.1f}σ to count at z={z:g}; recreate the baseline with more seeds "
        "(8 give 4.8σ for a one-seed run) or rerun with more --seeds"
    ]


def _provenance_notes(baseline: Baseline, run: FinishedRun) -> list[str]:
    """What differs without changing what is measured: said, never gated."""
    notes = []
    old, new = baseline.config.get("model_source"), run.config.get("model_source")
    if old != new:
        notes.append(f"model_source differs (not gated): baseline {old!r}, run {new!r}")
    device = run.meta.get("device")
    if baseline.device and device and baseline.device != device:
        notes.append(
            f"device differs: baseline {baseline.device}, run "
            f"{device} (kernels differ slightly; gate on the same device)"
        )
    versions_old, versions_new = baseline.versions, run.meta.get("versions", {})
    unrecorded = sorted(set(versions_new) - set(versions_old))
    if unrecorded:
        notes.append(
            f"the baseline does not record the version of {', '.join(unrecorded)} (made by an "
            "older saebench): recreate it with `saebench baseline create` to have them compared"
        )
    for name in sorted(set(versions_old) - set(unrecorded)):
        if versions_old.get(name) != versions_new.get(name):
            notes.append(
                f"{name} version differs: baseline "
                f"{versions_old.get(name)}, run {versions_new.get(name, 'not recorded')}"
            )
    if baseline.device == "cpu" and device == "cpu":
        notes += _cpu_numerics_notes(baseline, run)
    return notes


def _cpu_numerics_notes(baseline: Baseline, run: FinishedRun) -> list[str]:
    """Other CPU kernels or another thread count add in another order: the SAEs then differ
    by more than the seed noise the baseline measured, so a difference is said."""
    if not baseline.cpu_numerics and baseline.torch_threads is None:
        return [
            "the baseline records no CPU numerics or thread count (made by an older saebench): "
            "recreate it with `saebench baseline create` to have them compared"
        ]
    numerics_new = run.meta.get("cpu_numerics") or {}
    threads_new = run.meta.get("torch_threads")
    if not numerics_new and threads_new is None:
        return ["the run records no CPU numerics or thread count (an older saebench made it)"]
    notes = []
    changed = [
        f"{name} {baseline.cpu_numerics.get(name)!r} → {numerics_new.get(name)!r}"
        for name in sorted(set(baseline.cpu_numerics) | set(numerics_new))
        if baseline.cpu_numerics.get(name) != numerics_new.get(name)
    ]
    if changed:
        notes.append(
            "CPU numerics differ from the baseline's (" + "; ".join(changed) + "): results move "
            'by more than seed noise; run both under `eval "$(saebench numerics)"` '
            "(docs/regression-gate.md)"
        )
    if baseline.torch_threads is not None and threads_new != baseline.torch_threads:
        notes.append(
            f"torch threads differ: baseline {baseline.torch_threads}, run {threads_new} "
            f"({run.meta.get('executor', 'local')} executor; reductions add in another order): "
            "rerun with the baseline's, by OMP_NUM_THREADS (local) or --cpus-per-task (ray)"
        )
    return notes


def _planned(config: dict, method: str, knob: str, task: str) -> bool:
    knobs = (config.get("methods") or {}).get(method)
    return (
        knobs is not None
        and knob in {knob_label(float(k)) for k in knobs}
        and task in (config.get("tasks") or [])
    )


def _non_finite(cells: list[Cell], metric: str) -> list[float]:
    """The metric's non-finite values in the ok cells (NaN, inf)."""
    values = [c.metrics.get(metric) for c in cells if c.ok]
    return [v for v in values if isinstance(v, float) and not math.isfinite(v)]


def _missing_reason(cells: list[Cell], metric: str) -> str:
    if any(not c.ok for c in cells):
        return failure_summary(cells)
    non_finite = _non_finite(cells, metric)
    if non_finite:
        return (
            f"{len(non_finite)} of {len(cells)} seed(s) reported {non_finite[0]} "
            f"(not a finite number: did training diverge?)"
        )
    if cells:
        return "the task no longer reports this metric"
    return "no finished cell (the run is incomplete: rerun the same command to resume it)"


def _check_declared_direction(row: Row, result: GateResult) -> None:
    """Use the baseline's stored direction, but say so when the installed plugin disagrees."""
    try:
        info = declared_info(row.task, row.metric)
    except ConfigError as error:
        result.warnings.append(f"{row.label}: {error}")
        return
    if info is None:
        note = f"task {row.task!r} is not installed; using the directions stored in the baseline"
        if note not in result.warnings:
            result.warnings.append(note)
    elif (info.higher_is_better, float(info.floor)) != (row.higher_is_better, row.floor):
        result.warnings.append(
            f"{row.task}/{row.metric}: the installed plugin declares higher_is_better="
            f"{info.higher_is_better}, floor={info.floor} but the baseline stored "
            f"higher_is_better={row.higher_is_better}, floor={row.floor}; the baseline's values "
            f"are used. If the change is intended, recreate the baseline"
        )


def assert_no_regression(
    run_dir: str | Path, baseline: str | Path, z: float = DEFAULT_Z
) -> GateResult:
    """Raise AssertionError with the table of moved metrics if `run_dir` regressed vs `baseline`."""
    from saebench.gate.report import format_text

    result = compare(run_dir, baseline, z)
    if result.exit_code != EXIT_OK:
        raise AssertionError(f"saebench quality gate: {result.status}\n" + format_text(result))
    return result


# --------------------------------------------------------------------------- rerunning


def rerun_request(
    baseline: Baseline,
    out_dir: str | Path,
    seeds: int = 1,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    path: str | Path = "the baseline",
) -> RunRequest:
    """The RunRequest that repeats `baseline`'s run (model, hook, preset, methods with their
    knobs, tasks, dataset, task options) with `seeds` seeds. `device` None: the baseline's."""
    from saebench.runner import RunRequest

    config = baseline.config
    _check_rerun_config(config, path)
    methods = config["methods"]
    fields: dict[str, Any] = dict(
        methods=list(methods),
        tasks=list(config["tasks"]),
        model=config.get("model_argument") or config["model"],
        hook=config["hook"],
        preset=config["preset"],
        sweeps={method: [float(k) for k in knobs] for method, knobs in methods.items()},
        seeds=seeds,
        device=device or baseline.device or "auto",
        out=Path(out_dir),
        dataset=config.get("dataset"),
        cache_dir=None if cache_dir is None else Path(cache_dir),
        progress=False,
        task_options=dict(config.get("task_options") or {}),
        # The preset's budget unless the run trained longer (or shorter) with --train-tokens.
        train_tokens=config.get("train.total_tokens"),
        expansion=_recorded_expansion(config),
        # The recorded methods already list the baselines the run had: add none.
        baselines=False,
    )
    command = f"saebench check --rerun {path} --seeds {seeds} --out {out_dir}"
    return RunRequest(**fields, command=command)


def _recorded_expansion(config: dict[str, Any]) -> int | None:
    """The --expansion the run was made with, or None when it used its preset's width."""
    from saebench.presets import get_preset

    d_in, d_sae = config.get("d_in"), config.get("d_sae")
    if not (isinstance(d_in, int) and isinstance(d_sae, int)) or d_in < 1 or d_sae % d_in:
        return None
    expansion = d_sae // d_in
    return None if expansion == get_preset(config["preset"]).expansion else expansion


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# The config fields a rerun needs, and what each must be: (check, description for errors).
RERUN_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model": (lambda v: isinstance(v, str) and bool(v), "a model name"),
    "hook": (lambda v: isinstance(v, str) and bool(v), "a hook name"),
    "preset": (lambda v: isinstance(v, str) and bool(v), "a preset name"),
    "methods": (
        lambda v: (
            isinstance(v, dict)
            and bool(v)
            and all(isinstance(k, list) and k and all(map(_is_number, k)) for k in v.values())
        ),
        'an object {method: [knob, ...]}, e.g. {"topk": [16]}',
    ),
    "tasks": (
        lambda v: isinstance(v, list) and bool(v) and all(isinstance(t, str) for t in v),
        'a list of task names, e.g. ["frontier"]',
    ),
}


def _check_rerun_config(config: dict[str, Any], path: str | Path) -> None:
    """The baseline's config names everything a rerun needs, or a ConfigError names the field."""
    fix = f"recreate it with `saebench baseline create RUN_DIR --out {path}` from a current run"
    missing = [name for name in RERUN_CHECKS if name not in config]
    if missing:
        raise ConfigError(
            f"{path}: its config lacks {missing}, so its run cannot be repeated; {fix}"
        )
    for name, (check, expected) in RERUN_CHECKS.items():
        if not check(config[name]):
            raise ConfigError(
                f"{path}: config field {name!r} is {config[name]!r}, which must be {expected}, "
                f"so its run cannot be repeated; {fix}"
            )


def rerun(
    baseline_path: str | Path,
    out_dir: str | Path,
    seeds: int = 1,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    echo: Callable[..., None] = lambda *_: None,
) -> Path:
    """Run the baseline's configuration into `out_dir`; returns the run directory."""
    from saebench import runner

    request = rerun_request(
        load_baseline(baseline_path), out_dir, seeds, device, cache_dir, baseline_path
    )
    return Path(runner.run(request, echo=echo))


def run_and_check(
    baseline: str | Path,
    out_dir: str | Path,
    seeds: int = 1,
    z: float = DEFAULT_Z,
    device: str = "auto",
    cache_dir: str | Path | None = None,
) -> GateResult:
    """Rerun the baseline's configuration (model, hook, preset, methods, knobs, tasks) into
    `out_dir` with `seeds` seeds and assert that nothing regressed. `cache_dir`: where harvested
    activations are cached (default: saebench.harvest's)."""
    check_z(z)  # before the run, not after it
    run_dir = rerun(baseline, out_dir, seeds, device, cache_dir)
    return assert_no_regression(run_dir, baseline, z)
