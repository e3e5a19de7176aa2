"""The regression gate on SAE quality: `saebench baseline create` and `saebench check`.

A baseline stores, per (model, hook, method, knob, task, metric), the mean and sample std over
≥ 3 seeds plus the metric's better direction and absolute floor, both declared by the task
plugin (never guessed). `check` compares a new run against it:

    σ_pooled  = sqrt(((n_b − 1)·s_b² + (n_r − 1)·s_r²) / (n_b + n_r − 2))   (= s_b when n_r = 1)
    worse_by  = (base_mean − run_mean) if higher is better else (run_mean − base_mean)
    threshold = max(q · σ_pooled · sqrt(1/n_b + 1/n_r), floor),  q = t⁻¹_{n_b+n_r−2}(Φ(z))
    regressed  if worse_by >  threshold;  improved if −worse_by > threshold;  else within noise

A baseline entry that the run planned but has no value for (its cell failed or was skipped, or
the task stopped reporting the metric, or a seed's value is NaN) counts as a regression: a method that now crashes is
worse than one that worked. So does a (method, knob, task) the run's config plans that is not in
the baseline and has no ok cell. Entries the run did not plan at all (other method, knob or
task) and config fields that differ make the comparison impossible (exit 2), naming the field.
`baseline create` refuses a run where a configured (method, knob, task) has no ok cell, naming
it, its cells' reasons and the fix: such a method would otherwise never be gated.
Descriptive metrics (higher_is_better None, e.g. L0) are stored and shown, never gated.

Exit codes of `check`: 0 ok, 1 regression, 2 cannot compare (also for unusable input).

    baseline.py   Baseline / BaselineEntry (the file format), build, create, load
    compare.py    the rule, compare(), assert_no_regression(), rerunning a baseline's config
    report.py     text table, Markdown summary, JUnit XML
    cli.py        the click commands, registered by this package's register_commands hookimpl
    runs.py       reading a finished run and its statistics over seeds

The plugin manager registers this package as a built-in plugin (saebench.plugins), which is
why `register_commands` is importable from here.
"""

from saebench.gate.baseline import (
    FORMAT,
    FORMAT_VERSION,
    MIN_SEEDS,
    Baseline,
    BaselineEntry,
    build_baseline,
    create_baseline,
    load_baseline,
)
from saebench.gate.cli import register_commands
from saebench.gate.compare import (
    DEFAULT_Z,
    EXIT_CANNOT_COMPARE,
    EXIT_OK,
    EXIT_REGRESSION,
    GateResult,
    Row,
    assert_no_regression,
    compare,
    judge,
    noise_multiplier,
    pooled_sigma,
    rerun,
    rerun_request,
    run_and_check,
)
from saebench.gate.report import format_text, junit_xml, markdown, write_junit, write_markdown
from saebench.gate.runs import ENTRY_KEY, SeedStats, seed_stats

__all__ = [
    "DEFAULT_Z",
    "ENTRY_KEY",
    "EXIT_CANNOT_COMPARE",
    "EXIT_OK",
    "EXIT_REGRESSION",
    "FORMAT",
    "FORMAT_VERSION",
    "MIN_SEEDS",
    "Baseline",
    "BaselineEntry",
    "GateResult",
    "Row",
    "SeedStats",
    "assert_no_regression",
    "build_baseline",
    "compare",
    "create_baseline",
    "format_text",
    "judge",
    "noise_multiplier",
    "junit_xml",
    "load_baseline",
    "markdown",
    "pooled_sigma",
    "register_commands",
    "rerun",
    "rerun_request",
    "run_and_check",
    "seed_stats",
    "write_junit",
    "write_markdown",
]
