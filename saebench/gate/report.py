"""How a regression-gate result is shown: a text table, a Markdown summary, JUnit XML for CI."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from saebench.fileio import write_text

if TYPE_CHECKING:
    from saebench.gate.compare import GateResult, Row

FORMULA = (
    "A metric regresses when it moves in its worse direction by more than "
    "max(q·σ_pooled·sqrt(1/n_b + 1/n_r), floor); σ_pooled = sqrt(((n_b−1)s_b² + "
    "(n_r−1)s_r²)/(n_b+n_r−2)); q = the Student-t quantile (n_b+n_r−2 dof) at Φ(z)"
)
ORDER = {"regressed": 0, "missing": 1, "improved": 2, "ok": 3, "info": 4}
HEADERS = [
    "verdict",
    "method",
    "knob",
    "task",
    "metric",
    "better",
    "baseline",
    "now",
    "delta",
    "threshold",
]


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _std(value: float | None) -> str:
    return "—" if value is None else f"{value:.2g}"


def _cells(row: Row) -> list[str]:
    better = {True: "higher", False: "lower", None: "(info)"}[row.higher_is_better]
    now = (
        "—" if row.run_mean is None else f"{_num(row.run_mean)}±{_std(row.run_std)} (n={row.run_n})"
    )
    verdict = row.verdict.upper() if row.failed else row.verdict
    return [
        verdict,
        row.method,
        row.knob,
        row.task,
        row.metric,
        better,
        f"{_num(row.base_mean)}±{_std(row.base_std)} (n={row.base_n})",
        now,
        "—" if row.delta is None else f"{row.delta:+.4g}",
        _num(row.threshold),
    ]


def _selected(result: GateResult, show_all: bool) -> list[Row]:
    rows = result.rows if show_all else [r for r in result.rows if r.verdict not in ("ok", "info")]
    return sorted(rows, key=lambda r: (ORDER[r.verdict], r.method, r.knob, r.task, r.metric))


UNFINISHED = "configured in the run, not in the baseline, and no ok cell (fails the check)"


def _counts(result: GateResult) -> str:
    gated = [r for r in result.rows if r.gated]
    n = len(result.unfinished)
    unfinished = f"; {n} configured entr{'y' if n == 1 else 'ies'} with no ok cell" if n else ""
    return (
        f"{len(gated)} gated metrics: {len(result.regressions)} regressed or missing, "
        f"{len(result.improvements)} improved, "
        f"{sum(r.verdict == 'ok' for r in gated)} within noise{unfinished}"
    )


def format_text(result: GateResult, show_all: bool = False) -> str:
    """A fixed-width table of what moved (everything with show_all), plus diffs and warnings."""
    lines = [
        (
            f"quality gate: {result.status} — run {result.run_dir} vs baseline "
            f"{result.baseline_path} (z={result.z:g})"
        )
    ]
    if result.config_diffs:
        lines.append("cannot compare: the configs differ in")
        lines += [
            f"  {name}: baseline {old!r} vs run {new!r}" for name, old, new in result.config_diffs
        ]
    if result.not_covered:
        lines.append(
            f"baseline entries the run did not plan ({len(result.not_covered)}): "
            + "; ".join(sorted(set(result.not_covered))[:8])
        )
    rows = _selected(result, show_all)
    if rows:
        table = [HEADERS] + [_cells(r) for r in rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
        for i, line in enumerate(table):
            lines.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
            if i == 0:
                lines.append("  ".join("-" * width for width in widths))
        lines += [f"  {r.label}: {r.reason}" for r in rows if r.reason]
    elif result.comparable:
        lines.append("no gated metric moved beyond its threshold")
    if result.unfinished:
        lines.append(f"{UNFINISHED}:")
        lines += [f"  {line}" for line in result.unfinished]
    if result.comparable:
        lines.append(_counts(result))
    if result.not_in_baseline:
        lines.append("not in the baseline (not gated): " + "; ".join(result.not_in_baseline))
    lines += [f"note: {w}" for w in result.warnings]
    return "\n".join(lines)


def markdown(result: GateResult) -> str:
    """A Markdown summary (verdict, moved metrics, all metrics, notes), e.g. for CI pages."""
    icon = {"PASS": "✅", "REGRESSION": "❌", "CANNOT COMPARE": "⚠️"}[result.status]
    lines = [
        f"# saebench quality gate: {icon} {result.status}",
        "",
        (
            f"Run `{result.run_dir}` vs baseline `{result.baseline_path}`, z = {result.z:g}. "
            f"{FORMULA}."
        ),
        "",
    ]
    if result.config_diffs:
        lines += [
            "## Cannot compare: configs differ",
            "",
            "| field | baseline | run |",
            "|---|---|---|",
        ]
        lines += [f"| {name} | `{old!r}` | `{new!r}` |" for name, old, new in result.config_diffs]
        lines.append("")
    if result.comparable:
        lines += [_counts(result) + ".", ""]
    for title, rows in (
        ("Moved", _selected(result, False)),
        ("All compared metrics", _selected(result, True)),
    ):
        if not rows:
            continue
        body = [_cells(r) for r in rows]
        lines += [f"## {title}", "", "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in body]
        lines.append("")
        if title == "Moved":
            lines += [f"- {r.label}: {r.reason}" for r in rows if r.reason]
            lines.append("")
    if result.unfinished:
        lines += [f"## {UNFINISHED[0].upper()}{UNFINISHED[1:]}", ""]
        lines += [f"- {line}" for line in result.unfinished] + [""]
    notes = list(result.warnings)
    if result.not_in_baseline:
        notes.append("not in the baseline (not gated): " + "; ".join(result.not_in_baseline))
    if notes:
        lines += ["## Notes", ""] + [f"- {w}" for w in notes] + [""]
    return "\n".join(lines)


def write_markdown(result: GateResult, path: str | Path) -> None:
    write_text(path, markdown(result))


def junit_xml(result: GateResult) -> str:
    """One testcase per gated metric (failure = regression or missing); one error testcase
    when the run and baseline cannot be compared."""
    suite = ET.Element("testsuite", name="saebench-quality-gate")
    failures = errors = tests = 0
    if not result.comparable:
        case = ET.SubElement(
            suite, "testcase", classname="saebench.gate", name="comparable", time="0"
        )
        details = [f"{n}: baseline {o!r} vs run {v!r}" for n, o, v in result.config_diffs]
        details += [f"not planned by the run: {label}" for label in result.not_covered]
        error = ET.SubElement(
            case,
            "error",
            type="cannot-compare",
            message="baseline and run cannot be compared: "
            + ", ".join(n for n, _, _ in result.config_diffs),
        )
        error.text = "\n".join(details)
        tests, errors = 1, 1
    else:
        for row in _selected(result, True):
            if not row.gated:
                continue
            tests += 1
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"saebench.{row.model}.{row.method}.knob{row.knob}.{row.task}",
                name=row.metric,
                time="0",
            )
            summary = ", ".join(f"{h}={c}" for h, c in zip(HEADERS, _cells(row)))
            if row.failed:
                failures += 1
                failure = ET.SubElement(
                    case,
                    "failure",
                    type=row.verdict,
                    message=f"{row.label} {row.verdict}"
                    + (f": {row.reason}" if row.reason else ""),
                )
                failure.text = summary
            else:
                ET.SubElement(case, "system-out").text = summary
        for line in result.unfinished:
            tests += 1
            failures += 1
            label, _, reason = line.partition(": ")
            case = ET.SubElement(
                suite, "testcase", classname="saebench.gate.unfinished", name=label, time="0"
            )
            failure = ET.SubElement(case, "failure", type="no-ok-cell", message=line)
            failure.text = f"{UNFINISHED}: {reason}"
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", "0")
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(result: GateResult, path: str | Path) -> None:
    write_text(path, junit_xml(result))


def noise_table(baseline, z: float = 3.0, run_n: int = 1) -> str:
    """Markdown: every gated metric of a baseline per (method, knob): mean ± seed σ, the noise
    band a rerun with `run_n` seeds must leave (σ · q · sqrt(1/n_b + 1/n_r)), the floor, and which
    of the two sets the threshold (docs/regression-gate.md is generated so)."""
    from saebench.gate.compare import noise_band

    entries = sorted(
        (e for e in baseline.entries if e.gated),
        key=lambda e: (e.task, e.metric, e.method, e.knob),
    )
    lines = [
        "| task | metric | better | method | knob | mean ± σ (n) | noise band | floor | decides |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        spread = noise_band(e.std, z, e.n_seeds, run_n)
        lines.append(
            f"| {e.task} | {e.metric} | {'higher' if e.higher_is_better else 'lower'} | "
            f"{e.method} | {e.knob_label} | {e.mean:.4g} ± {e.std:.2g} ({e.n_seeds}) | "
            f"{spread:.2g} | {e.floor:g} | {'noise' if spread > e.floor else 'floor'} |"
        )
    return "\n".join(lines)
