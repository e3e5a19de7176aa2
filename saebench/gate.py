"""The regression gate on SAE quality: `saebench baseline create` and `saebench check`.

A baseline stores, per (model, hook, method, knob, task, metric), the mean and sample std over
≥ 3 seeds plus the metric's better direction and absolute floor, both declared by the task
plugin (never guessed). `check` compares a new run against it:

    σ_pooled  = sqrt(((n_b − 1)·s_b² + (n_r − 1)·s_r²) / (n_b + n_r − 2))   (= s_b when n_r = 1)
    worse_by  = (base_mean − run_mean) if higher is better else (run_mean − base_mean)
    threshold = max(z · σ_pooled, floor)
    regressed  if worse_by >  threshold;  improved if −worse_by > threshold;  else within noise

A baseline entry that the run planned but has no value for (its cell failed or was skipped, or
the task stopped reporting the metric) counts as a regression: a method that now crashes is
worse than one that worked. Entries the run did not plan at all (other method, knob or task)
and config fields that differ make the comparison impossible (exit 2), naming the field.
Descriptive metrics (higher_is_better None, e.g. L0) are stored and shown, never gated.

Exit codes of `check`: 0 ok, 1 regression, 2 cannot compare (also for unusable input).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import click

from saebench.errors import ConfigError, SaebenchError
from saebench.fileio import write_json
from saebench.hookspecs import hookimpl

FORMAT = "saebench-baseline"
FORMAT_VERSION = 1
MIN_SEEDS = 3
DEFAULT_Z = 3.0
ENTRY_KEY = ("model", "hook", "method", "knob", "task", "metric")
# Config fields that may differ between baseline and run without changing what is measured:
# the seed list (a 1-seed CI run is compared with the baseline's spread), the checkout path of
# the model, and the method/task lists (checked per entry instead, so a run may cover more).
NOT_COMPARED_FIELDS = {"seeds", "model_source", "methods", "tasks"}
EXIT_OK, EXIT_REGRESSION, EXIT_CANNOT_COMPARE = 0, 1, 2


def knob_key(knob) -> str:
    """Knobs come back from CSV/JSON as floats or ints; compare them by value."""
    return f"{float(knob):.10g}"


# --------------------------------------------------------------------------- reading runs


def _read_run(run_dir) -> tuple:
    """(results frame, run.json dict) of a finished run, or a ConfigError naming the fix."""
    from saebench.results import load_results, load_run

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(
            f"run directory {run_dir} does not exist; pass the --out directory of "
            f"a finished `saebench run`"
        )
    try:
        meta = load_run(run_dir)
        frame = load_results(run_dir)
    except FileNotFoundError as error:
        raise ConfigError(
            f"{error}. If the run was interrupted, rerun the same `saebench run` "
            f"command to resume and finish it"
        ) from None
    except (json.JSONDecodeError, ValueError) as error:
        raise ConfigError(f"cannot read {run_dir}: {error}; rerun `saebench run`") from None
    if "config" not in meta:
        raise ConfigError(
            f"{run_dir}/run.json has no 'config' block; it was not written by "
            f"`saebench run` (rerun it)"
        )
    return frame, meta


def _aggregate(frame):
    """Per entry key: (mean, sample std (0 for one seed), n, {seed: value})."""
    stats = {}
    for key, group in frame.groupby(list(ENTRY_KEY), sort=True):
        values = {int(s): float(v) for s, v in zip(group["seed"], group["value"])}
        n = len(values)
        mean = sum(values.values()) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in values.values()) / (n - 1)) if n > 1 else 0.0
        model, hook, method, knob, task, metric = key
        stats[(model, hook, method, knob_key(knob), task, metric)] = (mean, std, n, values)
    return stats


def _declared_info(task: str, metric: str):
    """The task plugin's MetricInfo, or None when the task is not installed."""
    from saebench import plugins

    tasks = plugins.get_tasks()
    if task not in tasks:
        return None
    try:
        return tasks[task].metric_info(metric)
    except KeyError as error:
        raise ConfigError(str(error.args[0])) from None


# --------------------------------------------------------------------------- baseline


def build_baseline(run_dir) -> dict:
    """The baseline dict for a finished run with ≥ MIN_SEEDS seeds per entry."""
    frame, meta = _read_run(run_dir)
    seeds = meta["config"].get("seeds") or sorted(frame["seed"].unique().tolist())
    if len(seeds) < MIN_SEEDS:
        raise ConfigError(
            f"{run_dir} has {len(seeds)} seed(s) {seeds}; a baseline needs ≥ {MIN_SEEDS} to "
            f"measure seed noise. Rerun with `saebench run ... --seeds {MIN_SEEDS} --out NEW_DIR`"
        )
    if frame.empty:
        raise ConfigError(
            f"{run_dir}/results.csv has no results (every cell failed?); see {run_dir}/results.md"
        )
    entries, short = [], []
    for key, (mean, std, n, values) in _aggregate(frame).items():
        if n < MIN_SEEDS:
            short.append(f"{key[2]} knob={key[3]} {key[4]}/{key[5]} ({n} seeds)")
            continue
        info = _declared_info(key[4], key[5])
        if info is None:
            raise ConfigError(
                f"task {key[4]!r} is not installed, so its metric directions are "
                f"unknown; install the plugin that provides it before creating "
                f"the baseline"
            )
        entries.append(
            {
                **dict(zip(ENTRY_KEY, key)),
                "mean": mean,
                "std": std,
                "n_seeds": n,
                "values": {str(s): v for s, v in sorted(values.items())},
                "higher_is_better": info.higher_is_better,
                "floor": info.floor,
            }
        )
    if short:
        raise ConfigError(
            f"{len(short)} entr{'y has' if len(short) == 1 else 'ies have'} fewer than "
            f"{MIN_SEEDS} finished seeds (failed cells?): {'; '.join(short[:5])}. Fix the "
            f"failures (see {run_dir}/results.md) and rerun with --retry-failed"
        )
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "created_from": str(run_dir),
        "command": meta.get("command"),
        "config": meta["config"],
        "versions": meta.get("versions", {}),
        "device": meta.get("device"),
        "entries": entries,
    }


def create_baseline(run_dir, out) -> dict:
    baseline = build_baseline(run_dir)
    write_json(out, baseline)
    return baseline


def load_baseline(path) -> dict:
    """Read and validate a baseline file; every problem names the fix."""
    path = Path(path)
    fix = "recreate it with `saebench baseline create RUN_DIR --out " + str(path) + "`"
    if not path.is_file():
        raise ConfigError(f"baseline file {path} does not exist; check the path, or {fix}")
    try:
        baseline = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"baseline file {path} is not valid JSON ({error}); it is corrupt: "
            f"restore it from git or {fix}"
        ) from None
    if not isinstance(baseline, dict) or baseline.get("format") != FORMAT:
        raise ConfigError(
            f'{path} is not a saebench baseline (missing "format": "{FORMAT}"); {fix}'
        )
    if baseline.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            f"{path} has baseline format version {baseline.get('format_version')}, "
            f"this saebench reads version {FORMAT_VERSION}; {fix}"
        )
    required = set(ENTRY_KEY) | {"mean", "std", "n_seeds", "higher_is_better", "floor"}
    entries = baseline.get("entries")
    if not isinstance(baseline.get("config"), dict) or not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path} has no config block or no entries; it is corrupt: {fix}")
    for i, entry in enumerate(entries):
        missing = required - set(entry) if isinstance(entry, dict) else required
        if missing:
            raise ConfigError(f"{path}: entry {i} lacks {sorted(missing)}; it is corrupt: {fix}")
    return baseline


# --------------------------------------------------------------------------- comparison


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
        return EXIT_REGRESSION if self.regressions else EXIT_OK

    @property
    def status(self) -> str:
        return {
            EXIT_OK: "PASS",
            EXIT_REGRESSION: "REGRESSION",
            EXIT_CANNOT_COMPARE: "CANNOT COMPARE",
        }[self.exit_code]


def pooled_sigma(base_std: float, base_n: int, run_std: float, run_n: int) -> float:
    """Pooled seed std; with a single-seed run it is the baseline std."""
    dof = base_n + run_n - 2
    if dof <= 0:
        return 0.0
    return math.sqrt(((base_n - 1) * base_std**2 + (run_n - 1) * run_std**2) / dof)


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
) -> tuple:
    """(verdict, σ_pooled, threshold, delta) for one metric; verdict ok|improved|regressed|info."""
    sigma = pooled_sigma(base_std, base_n, run_std, run_n)
    threshold = max(z * sigma, floor)
    delta = run_mean - base_mean
    if higher_is_better is None:
        return "info", sigma, threshold, delta
    worse_by = -delta if higher_is_better else delta
    if worse_by > threshold:
        return "regressed", sigma, threshold, delta
    if -worse_by > threshold:
        return "improved", sigma, threshold, delta
    return "ok", sigma, threshold, delta


def _config_diffs(base: dict, run: dict) -> list[tuple[str, object, object]]:
    return [
        (key, base.get(key, "(absent)"), run.get(key, "(absent)"))
        for key in sorted(set(base) | set(run))
        if key not in NOT_COMPARED_FIELDS and base.get(key) != run.get(key)
    ]


def _cells_by_entry(meta: dict) -> dict:
    cells: dict = {}
    for cell in meta.get("cells", []):
        cells.setdefault((cell["method"], knob_key(cell["knob"]), cell["task"]), []).append(cell)
    return cells


def _planned(config: dict, method: str, knob: str, task: str) -> bool:
    knobs = (config.get("methods") or {}).get(method)
    return (
        knobs is not None
        and knob in {knob_key(k) for k in knobs}
        and task in (config.get("tasks") or [])
    )


def _missing_reason(cells: list[dict]) -> str:
    bad = [c for c in cells if c.get("status") != "ok"]
    if bad:
        first = bad[0]
        return (
            f"{len(bad)} of {len(cells)} cell(s) {first.get('status')}: "
            f"{first.get('reason') or 'no reason recorded'}"
        )
    if cells:
        return "the task no longer reports this metric"
    return "no finished cell (the run is incomplete: rerun the same command to resume it)"


def compare(run_dir, baseline_path, z: float = DEFAULT_Z) -> GateResult:
    """Compare a finished run with a baseline file; never raises for regressions."""
    if not (z > 0 and math.isfinite(z)):
        raise ConfigError(f"--z must be a positive number of standard deviations, got {z}")
    baseline = load_baseline(baseline_path)
    frame, meta = _read_run(run_dir)
    result = GateResult(str(run_dir), str(baseline_path), z)
    result.config_diffs = _config_diffs(baseline["config"], meta["config"])
    for key in ("model_source",):
        old, new = baseline["config"].get(key), meta["config"].get(key)
        if old != new:
            result.warnings.append(f"{key} differs (not gated): baseline {old!r}, run {new!r}")
    if baseline.get("device") and meta.get("device") and baseline["device"] != meta["device"]:
        result.warnings.append(
            f"device differs: baseline {baseline['device']}, run "
            f"{meta['device']} (kernels differ slightly; gate on the same device)"
        )
    versions_old, versions_new = baseline.get("versions", {}), meta.get("versions", {})
    for name in sorted(set(versions_old) | set(versions_new)):
        if versions_old.get(name) != versions_new.get(name):
            result.warnings.append(
                f"{name} version differs: baseline "
                f"{versions_old.get(name)}, run {versions_new.get(name)}"
            )
    run_stats = _aggregate(frame)
    cells = _cells_by_entry(meta)
    seen = set()
    for entry in baseline["entries"]:
        key = (
            entry["model"],
            entry["hook"],
            entry["method"],
            knob_key(entry["knob"]),
            entry["task"],
            entry["metric"],
        )
        seen.add(key)
        row = Row(
            *key,
            higher_is_better=entry["higher_is_better"],
            floor=float(entry["floor"]),
            base_mean=float(entry["mean"]),
            base_std=float(entry["std"]),
            base_n=int(entry["n_seeds"]),
        )
        _check_declared_direction(row, result)
        if key in run_stats:
            mean, std, n, _ = run_stats[key]
            row.run_mean, row.run_std, row.run_n = mean, std, n
            row.verdict, row.sigma, row.threshold, row.delta = judge(
                row.higher_is_better,
                row.floor,
                row.base_mean,
                row.base_std,
                row.base_n,
                mean,
                std,
                n,
                z,
            )
        elif not _planned(meta["config"], row.method, row.knob, row.task):
            result.not_covered.append(row.label)
            continue
        else:
            row.verdict = "missing" if row.gated else "info"
            row.reason = _missing_reason(cells.get((row.method, row.knob, row.task), []))
        result.rows.append(row)
    if result.not_covered:
        for name in ("methods", "tasks"):
            old, new = baseline["config"].get(name), meta["config"].get(name)
            if old != new:
                result.config_diffs.append((name, old, new))
    result.not_in_baseline = sorted(
        {f"{k[2]} knob={k[3]} {k[4]}" for k in run_stats if k not in seen}
    )
    return result


def _check_declared_direction(row: Row, result: GateResult) -> None:
    """Use the baseline's stored direction, but say so when the installed plugin disagrees."""
    try:
        info = _declared_info(row.task, row.metric)
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


# --------------------------------------------------------------------------- pytest helper


def assert_no_regression(run_dir, baseline, z: float = DEFAULT_Z) -> GateResult:
    """Raise AssertionError with the table of moved metrics if `run_dir` regressed vs `baseline`."""
    from saebench.gate_report import format_text

    result = compare(run_dir, baseline, z)
    if result.exit_code != EXIT_OK:
        raise AssertionError(f"saebench quality gate: {result.status}\n" + format_text(result))
    return result


def run_and_check(
    baseline, out_dir, seeds: int = 1, z: float = DEFAULT_Z, device: str = "auto", cache_dir=None
) -> GateResult:
    """Rerun the baseline's configuration (model, hook, preset, methods, knobs, tasks) into
    `out_dir` with `seeds` seeds and assert that nothing regressed. `cache_dir`: where harvested
    activations are cached (default: saebench.harvest's)."""
    from saebench.runner import Runner, RunRequest

    config = load_baseline(baseline)["config"]
    methods = config["methods"]
    request = RunRequest(
        methods=list(methods),
        tasks=list(config["tasks"]),
        model=config["model"],
        hook=config["hook"],
        preset=config["preset"],
        sweeps={m: list(k) for m, k in methods.items()},
        seeds=seeds,
        device=device,
        out=Path(out_dir),
        dataset=config.get("dataset"),
        cache_dir=cache_dir,
        progress=False,
    )
    run_dir = Runner(request, echo=lambda *_: None).run()
    return assert_no_regression(run_dir, baseline, z)


class _QualityGate:
    """What the `saebench_quality_gate` fixture returns: call it with a baseline file."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path

    def __call__(
        self,
        baseline,
        run_dir=None,
        seeds: int = 1,
        z: float = DEFAULT_Z,
        device: str = "auto",
        cache_dir=None,
    ) -> GateResult:
        if run_dir is not None:
            return assert_no_regression(run_dir, baseline, z)
        return run_and_check(
            baseline, Path(self.tmp_path) / "saebench-gate-run", seeds, z, device, cache_dir
        )


def __getattr__(name):
    # The fixture needs pytest, which is only a test dependency: build it on first import
    # (`from saebench.gate import saebench_quality_gate` in saebench.testing) so that the
    # `saebench` CLI, which loads this module as a plugin, never imports pytest.
    if name == "saebench_quality_gate":
        import pytest

        @pytest.fixture
        def saebench_quality_gate(tmp_path):
            """Fixture: saebench_quality_gate(BASELINE[, run_dir=...]) fails the test on a
            regression. Without run_dir it reruns the baseline's config (1 seed by default)."""
            return _QualityGate(tmp_path)

        globals()[name] = saebench_quality_gate
        return saebench_quality_gate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- CLI


@hookimpl
def register_commands(cli):
    @cli.group(name="baseline")
    def baseline_group():
        """Noise-aware quality baselines for the regression gate."""

    @baseline_group.command(name="create")
    @click.argument("run_dir", type=click.Path())
    @click.option(
        "--out",
        type=click.Path(),
        default=None,
        help="Baseline file (default: results/baselines/<run dir name>.json).",
    )
    def create_command(run_dir, out):
        """Store per-metric mean, seed std and direction from RUN_DIR (≥ 3 seeds)."""
        out = Path(out or Path("results") / "baselines" / f"{Path(run_dir).resolve().name}.json")
        baseline = create_baseline(run_dir, out)
        gated = sum(e["higher_is_better"] is not None for e in baseline["entries"])
        click.echo(
            f"wrote {out}: {len(baseline['entries'])} entries ({gated} gated) from "
            f"{len(baseline['config'].get('seeds', []))} seeds"
        )

    @cli.command(name="check")
    @click.argument("run_dir", type=click.Path())
    @click.option(
        "--baseline",
        "baseline_path",
        type=click.Path(),
        required=True,
        help="Baseline JSON written by `saebench baseline create`.",
    )
    @click.option(
        "--z",
        type=float,
        default=DEFAULT_Z,
        show_default=True,
        help="Regression threshold in pooled seed standard deviations.",
    )
    @click.option("--markdown", type=click.Path(), default=None, help="Write a Markdown summary.")
    @click.option("--junit", type=click.Path(), default=None, help="Write JUnit XML for CI.")
    @click.option("--show-all", is_flag=True, help="Print every compared metric, not only moves.")
    def check_command(run_dir, baseline_path, z, markdown, junit, show_all):
        """Exit 0 if RUN_DIR is within noise of the baseline, 1 on a regression, 2 if the two
        cannot be compared (different config, unreadable files)."""
        from saebench.gate_report import format_text, write_junit, write_markdown

        try:
            result = compare(run_dir, baseline_path, z)
        except SaebenchError as error:
            # Reports still get written so CI shows why nothing was compared.
            result = GateResult(str(run_dir), str(baseline_path), z)
            result.config_diffs = [("input", "usable baseline and run", str(error))]
            for path, writer in ((markdown, write_markdown), (junit, write_junit)):
                if path:
                    writer(result, path)
            raise
        click.echo(format_text(result, show_all=show_all))
        for path, writer in ((markdown, write_markdown), (junit, write_junit)):
            if path:
                writer(result, path)
                click.echo(f"wrote {path}")
        sys.exit(result.exit_code)


__all__ = [
    "GateResult",
    "Row",
    "assert_no_regression",
    "build_baseline",
    "compare",
    "create_baseline",
    "judge",
    "load_baseline",
    "pooled_sigma",
    "run_and_check",
]
