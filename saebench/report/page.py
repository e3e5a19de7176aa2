"""The report page: every section of one run as a single self-contained HTML document.

Sections: config and provenance; what the run can tell apart and the matched-L0 verdicts
(saebench.calibration), validity and reliability; the frontier and every task's metrics against
L0 (inline SVG, hover for method, knob, seed and value) with their interval tables; failed and
uninformative cells; training; the tasks' own PNG plots; the latent dashboards and the
comparison of two SAEs. Tables and charts are static HTML/SVG (readable with JS off); only the
latent explorer needs the inline script.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from saebench.report import assets
from saebench.report.charts import Point, Series, bar_chart, color_of, fmt, line_chart, wants_log
from saebench.report.charts import scatter_chart as scatter
from saebench.report.compare import CAPTURED_F1, SHARED_COSINE, PairComparison
from saebench.report.data import RunData
from saebench.report.images import EmbeddedPlot
from saebench.report.latents import Dashboards
from saebench.report.markup import (
    details,
    h,
    json_script,
    key_values,
    link_list,
    markdown_lines,
    section,
    table,
)
from saebench.rundir import knob_label
from saebench.specs import L0

MAX_CHARTS_PER_TASK = 8
CURVE_POINTS = 60  # per training curve (the logs keep ~100)
STATIC_LATENTS = 20  # rows of the no-JS best-labelled-latents table per SAE


@dataclass
class PageInputs:
    """Everything the page shows besides the run's own files."""

    dashboards: list[Dashboards] = field(default_factory=list)
    comparisons: list[PairComparison] = field(default_factory=list)
    compare_notes: list[str] = field(default_factory=list)  # pairs left out, why
    plots: list[EmbeddedPlot] = field(default_factory=list)
    latent_status: str = ""  # how many dashboards, computed or cached
    latent_notes: list[str] = field(default_factory=list)  # what was skipped or differs, why
    knob_names: dict[str, str] = field(default_factory=dict)  # method -> its knob's name
    started: float = field(default_factory=time.time)


# --------------------------------------------------------------------------- config


def config_section(data: RunData) -> str:
    run, config = data.run, data.config
    methods = config.get("methods") or {}
    sweeps = (
        "; ".join(
            f"{m}: {', '.join(knob_label(float(k)) for k in ks)}" for m, ks in methods.items()
        )
        if isinstance(methods, dict)
        else ", ".join(map(str, methods))
    )
    counts = ", ".join(f"{k} {v}" for k, v in (run.get("cell_counts") or {}).items())
    rows = [
        ("command", run.get("command", "")),
        ("status", f"{run.get('status', '?')} ({counts or 'no cells'})"),
        ("model", f"{config.get('model', '?')} ({config.get('model_source') or 'default source'})"),
        ("hook", config.get("hook", "")),
        ("preset", config.get("preset", "")),
        ("methods and knobs", sweeps),
        ("seeds", ", ".join(map(str, config.get("seeds") or []))),
        ("tasks", ", ".join(config.get("tasks") or [])),
        ("d_in / d_sae", f"{config.get('d_in', '?')} / {config.get('d_sae', '?')}"),
        (
            "tokens (train / eval)",
            f"{config.get('n_train_tokens')} / {config.get('n_eval_tokens')}",
        ),
        ("device", f"{run.get('device', '?')} (SAEs {run.get('sae_device', '?')})"),
        ("executor", run.get("executor", "")),
        ("versions", ", ".join(f"{k} {v}" for k, v in (run.get("versions") or {}).items())),
        ("harvest", (run.get("harvest") or {}).get("key", "")),
        (
            "timings (s)",
            ", ".join(f"{k} {v}" for k, v in (run.get("timings_seconds") or {}).items()),
        ),
    ]
    invocations = pd.DataFrame(
        [
            {
                "started": i.get("started_at"),
                "status": i.get("status"),
                "command": i.get("command"),
                "seconds": (i.get("timings_seconds") or {}).get("total"),
            }
            for i in run.get("invocations") or []
        ]
    )
    body = key_values(rows)
    if not invocations.empty:
        body += details(f"Invocations ({len(invocations)})", table(invocations))
    model_info = json.dumps(run.get("model_info") or {}, indent=1, default=str)
    body += details("Full config (run.json)", f"<pre>{h(json.dumps(config, indent=1))}</pre>")
    body += details("Model provenance", f"<pre>{h(model_info)}</pre>")
    return section("config", "Config and provenance", body)


# --------------------------------------------------------------------------- summary


def summary_section(data: RunData) -> str:
    from saebench.calibration import comparison_table, separation_summary
    from saebench.results import reliability_lines, training_table, validity_table
    from saebench.training import PLATEAU_FROM, PLATEAU_TO, PLATEAU_TOLERANCE

    lines: list[str] = []
    training = training_table(data.train_logs)
    if not training.empty and (training.flat == "no").any():
        still = training[training.flat == "no"]
        which = ", ".join(describe_row(r) for r in still.itertuples())
        lines.append(
            f"> **{len(still)} SAE(s) were still improving when training stopped** ({which}): "
            f"FVU or L0 moved more than {PLATEAU_TOLERANCE:.0%} between {PLATEAU_FROM:.0%} and "
            f"{PLATEAU_TO:.0%} of the budget."
        )
    if data.frame.empty or data.frame.seed.nunique() < 2:
        lines.append(
            "> One seed per SAE: no interval can be computed, so every difference is "
            "unverified. Run with `--seeds 3` or more."
        )
    lines += separation_summary(data.calibration)
    body = markdown_lines(lines)
    verdicts = comparison_table(data.calibration)
    body += "<h3>At matched L0: Δ vs each baseline [95% interval over seeds] and verdict</h3>"
    body += (
        table(verdicts, verdicts=True)
        if not verdicts.empty
        else '<p class="muted">No comparison at matched L0 (needs a calibration baseline '
        "with two or more knobs and a learned method inside its L0 range: two or more knobs, "
        "or one whose seeds agree on L0).</p>"
    )
    validity = validity_table(data.cells)
    if not validity.empty:
        body += details(
            f"Validity references ({int((validity.passes != 'yes').sum())} of {len(validity)} "
            "fail: the metrics they govern are left out)",
            table(validity.replace({"**no**": "no"})),
        )
    body += markdown_lines(reliability_lines(data.audit))
    return section("summary", "What this run can tell apart", body)


def describe_row(row) -> str:
    return f"{row.method} {knob_label(row.knob)} seed {row.seed}"


# --------------------------------------------------------------------------- tasks


def chart_metrics(data: RunData, task_name: str) -> list[str]:
    """The task's headline metrics present in the run (all its directional ones when it marks
    no headline), per-concept breakdowns left out, in declaration-then-name order."""
    from saebench.plots import is_breakdown

    task = data.tasks[task_name]
    present = sorted(set(data.frame[data.frame.task == task_name].metric) - {L0})
    infos = {}
    for metric in present:
        try:
            infos[metric] = task.metric_info(metric)
        except KeyError:
            continue
    headline = [m for m, i in infos.items() if i.headline]
    chosen = headline or [m for m, i in infos.items() if i.higher_is_better is not None]
    return [m for m in chosen if not is_breakdown(m, chosen)][:MAX_CHARTS_PER_TASK]


def l0_lookup(frame: pd.DataFrame) -> dict[tuple[str, float, int], float]:
    """(method, knob, seed) -> that SAE's L0: the x of every point."""
    rows = frame[frame.metric == L0]
    return {
        (str(m), float(k), int(s)): float(v)
        for m, k, s, v in zip(rows.method, rows.knob, rows.seed, rows.value)
    }


def metric_chart(
    data: RunData,
    metric: str,
    knob_names: dict[str, str],
    l0: dict[tuple[str, float, int], float],
) -> str:
    """`metric` against L0: one point per SAE (hover: method, knob, seed, L0, value) and a
    line through each method's seed means (dashed: calibration baselines)."""
    rows = data.frame[data.frame.metric == metric]
    by_method: dict[str, list[tuple[float, int, float, float]]] = {}
    for method, knob, seed, value in zip(rows.method, rows.knob, rows.seed, rows.value):
        x = l0.get((str(method), float(knob), int(seed)))
        if x is not None:
            by_method.setdefault(str(method), []).append((float(knob), int(seed), x, float(value)))
    series = []
    for index, method in enumerate(sorted(by_method)):
        knob = knob_names.get(method, "knob")
        points = [
            Point(x, y, f"{method} {knob}={knob_label(k)} seed {s}\nL0 {fmt(x)}\n{metric} {fmt(y)}")
            for k, s, x, y in by_method[method]
        ]
        knobs = sorted({k for k, *_ in by_method[method]})
        means = sorted(
            (
                float(np.mean([x for kk, _, x, _ in by_method[method] if kk == k])),
                float(np.mean([y for kk, _, _, y in by_method[method] if kk == k])),
            )
            for k in knobs
        )
        baseline = method in data.baselines
        series.append(
            Series(
                name=f"{method} (baseline)" if baseline else method,
                color=color_of(index),
                points=points,
                line=means,
                dashed=baseline,
                tip=f"{method}: mean over seeds",
            )
        )
    if not series:
        return ""
    values = [p.y for s in series for p in s.points]
    log_y = 10.0 if wants_log(values) else None
    return scatter(
        series,
        title=f"{metric} vs L0" + (" (log y)" if log_y else ""),
        x_label="L0 (active latents per token, log)",
        y_label=metric,
        log_y=log_y,
    )


def tasks_section(data: RunData, knob_names: dict[str, str]) -> str:
    from saebench.plots import is_breakdown
    from saebench.results import headline_metrics, interval_table

    body = ""
    columns = [m for m in headline_metrics(data.tasks) if m in set(data.frame.metric)]
    frontier = interval_table(data.aggregated, columns, data.tasks)
    if not frontier.empty:
        body += "<h3>Frontier: headline metrics (mean ± half-width of the 95% interval)</h3>"
        body += table(frontier)
    summarised = {n for n, t in data.tasks.items() if any(i.headline for i in t.metrics.values())}
    l0 = l0_lookup(data.frame)
    for task_name in sorted(data.tasks):
        if task_name not in set(data.frame.task):
            continue
        charts = [
            chart
            for chart in (
                metric_chart(data, m, knob_names, l0) for m in chart_metrics(data, task_name)
            )
            if chart
        ]
        rows = data.aggregated[data.aggregated.task == task_name]
        body += f'<h3 id="task-{h(task_name)}">{h(task_name)}</h3>'
        description = data.tasks[task_name].description
        if description:
            body += f'<p class="muted">{h(description)}</p>'
        if charts:
            body += '<div class="charts">' + "".join(charts) + "</div>"
        if task_name not in summarised and not rows.empty:
            names = set(rows.metric)
            kept = [m for m in dict.fromkeys(rows.metric) if not is_breakdown(m, names)]
            body += details(
                f"{task_name}: every metric (mean ± 95% interval over seeds; per-value "
                "breakdowns are in results.csv)",
                table(interval_table(rows, kept, data.tasks)),
            )
    if not body:
        body = '<p class="muted">No finished cell has metrics yet.</p>'
    return section(
        "tasks",
        "Frontier and tasks",
        body,
        "Each point is one SAE (hover for method, knob, seed and value); lines join the seed "
        "means; dashed lines are calibration baselines.",
    )


# --------------------------------------------------------------------------- cells, training


def cells_section(data: RunData) -> str:
    bad = [c for c in data.cells if not c.ok]
    if not bad:
        return section("cells", "Failed and uninformative cells", "<p>Every cell finished ok.</p>")
    frame = pd.DataFrame(
        [
            {"cell": c.id, "status": c.status, "reason": c.reason or "", "seconds": c.seconds}
            for c in sorted(bad, key=lambda c: (c.status, c.id))
        ]
    )
    counts = frame.status.value_counts().to_dict()
    body = (
        "<p>"
        + h(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
        + ". Uninformative: the task's own validity reference says no SAE's number would mean "
        "anything at this hook. Failed cells' tracebacks are in "
        "saes/&lt;method&gt;/&lt;knob&gt;/seed&lt;k&gt;/artifacts/&lt;task&gt;.traceback.txt.</p>"
    )
    return section("cells", "Failed and uninformative cells", body + table(frame))


def training_section(data: RunData) -> str:
    from saebench.results import training_table

    training = training_table(data.train_logs)
    logs = [log for log in data.train_logs.values() if log.get("curve")]
    if training.empty and not logs:
        return section("training", "Training", '<p class="muted">No trained SAE in this run.</p>')
    methods = sorted({str(log.get("method")) for log in logs})
    colours = {m: color_of(i) for i, m in enumerate(methods)}
    charts = []
    for name, label, log_y in (
        ("fvu", "training FVU (log)", 10.0),
        ("l0", "L0", None),
        ("dead_fraction", "dead fraction", None),
    ):
        series = []
        for log in logs:
            curve = log["curve"]
            if name not in curve:
                continue
            step = max(1, math.ceil(len(curve["tokens"]) / CURVE_POINTS))
            points = [
                (float(x), float(y))
                for x, y in zip(curve["tokens"][::step], curve[name][::step])
                if y is not None
            ]
            who = f"{log.get('method')} {knob_label(float(log.get('knob', 0)))} seed {log.get('seed', 0)}"
            series.append(
                Series(who, colours[str(log.get("method"))], line=points, tip=f"{who}: {name}")
            )
        if series:
            charts.append(
                line_chart(
                    series,
                    title=label,
                    x_label="training tokens",
                    y_label=label,
                    log_y=log_y,
                    legend=False,
                )
            )
    legend = "".join(
        f'<span class="pill" style="border-color:{c}"><span style="color:{c}">■</span> {h(m)}</span>'
        for m, c in colours.items()
    )
    body = ""
    if charts:
        body += (
            '<div class="charts">' + "".join(charts) + "</div>"
            f"<p>{legend} — one line per SAE (hover names it); the last 20% of each curve is "
            "the learning-rate decay.</p>"
        )
    if not training.empty:
        body += table(training)
    return section("training", "Training", body)


def plots_section(plots: Sequence[EmbeddedPlot]) -> str:
    if not plots:
        return section("plots", "Task plots", '<p class="muted">No PNG plot in plots/.</p>')
    body = '<div class="plots">'
    for plot in plots:
        content = plot.html or f'<p class="muted">{h(plot.note)}</p>'
        body += details(
            f"{plot.name} ({plot.note})" if plot.html else plot.name,
            f"<figure>{content}<figcaption>{h(plot.name)}</figcaption></figure>",
        )
    return section(
        "plots",
        "Task plots",
        body + "</div>",
        "The tasks' own figures from plots/, scaled down for the page.",
    )


# --------------------------------------------------------------------------- latents


def sae_title(record: Dashboards, knob_names: dict[str, str]) -> str:
    knob = knob_names.get(record.method, "knob")
    return f"{record.method} {knob}={knob_label(record.knob)} seed {record.seed}"


def density_chart(record: Dashboards, knob_names: dict[str, str]) -> str:
    """Histogram of log10 firing densities across the SAE's latents."""
    density = np.asarray(record.density, dtype=float)
    live = density[density > 0]
    never = int((density == 0).sum())
    edges = np.linspace(-math.ceil(math.log10(max(record.n_tokens, 10))), 0, 25)
    counts = np.histogram(np.log10(live), bins=edges)[0] if len(live) else np.zeros(24)
    tips = [
        f"density 10^{edges[i]:.2f}–10^{edges[i + 1]:.2f}: {int(c)} latents"
        for i, c in enumerate(counts)
    ]
    return bar_chart(
        edges.tolist(),
        counts.tolist(),
        title=f"{sae_title(record, knob_names)}: log10 density (never active: {never}/{len(density)})",
        x_label="log10 fraction of eval tokens where the latent is active",
        y_label="latents",
        tips=tips,
    )


def context_text(record: Dashboards, context: list, tokens: dict[str, str]) -> str:
    seq, pos, _, start, digits = context
    row = record.sequences.get(str(seq), [])
    words = []
    for k in range(len(digits)):
        if start + k >= len(row) or digits[k] == "-":
            continue
        text = tokens.get(str(row[start + k]), "?")
        words.append(f"[[{text}]]" if start + k == pos else text)
    return " ".join(words)


def best_labelled(f1: Sequence[float], density: Sequence[float]) -> np.ndarray:
    """Latent indices by label F1, ties (many at 1) broken by density on the eval tokens (a
    latent that never fires there has no context to show)."""
    return np.lexsort((-np.asarray(density, dtype=float), -np.asarray(f1, dtype=float)))


def static_latents(record: Dashboards, knob_names: dict[str, str]) -> str:
    """The no-JS view: the best-labelled (else the densest) latents as a plain table."""
    truth = record.ground_truth
    order = (
        best_labelled(truth.f1, record.density)
        if truth is not None
        else np.argsort(-np.asarray(record.density), kind="stable")
    )
    rows = []
    for latent in order[:STATIC_LATENTS]:
        latent = int(latent)
        label = ""
        if truth is not None and truth.label[latent] >= 0:
            label = (
                f"{truth.names[truth.label[latent]]} (P {truth.precision[latent]:.2f}, "
                f"R {truth.recall[latent]:.2f})"
            )
        lens = (
            " ".join(record.tokens.get(str(i), "?") for i, _ in record.lens_top[latent][:4])
            if record.lens_top
            else ""
        )
        contexts = record.contexts[latent]
        rows.append(
            {
                "latent": latent,
                "density": record.density[latent],
                "ground-truth label": label,
                "top logits": lens,
                "top context": context_text(record, contexts[0], record.tokens) if contexts else "",
            }
        )
    return table(pd.DataFrame(rows), caption=sae_title(record, knob_names))


def latent_payload(record: Dashboards, comparisons: Sequence[PairComparison]) -> dict:
    """One SAE's data for the explorer (parsed by the script when the SAE is selected)."""
    match = {}
    for pair in comparisons:
        if pair.a.label == record.sae:
            match[pair.b.label] = {
                "partner": pair.matching.partner.tolist(),
                "cos": [round(float(c), 3) if c == c else None for c in pair.matching.cosine],
            }
        elif pair.b.label == record.sae:
            inverse = pair.inverse()
            match[pair.a.label] = {
                "partner": inverse.partner.tolist(),
                "cos": [round(float(c), 3) if c == c else None for c in inverse.cosine],
            }
    truth = record.ground_truth
    return {
        "label": record.sae,
        "n_tokens": record.n_tokens,
        "density": record.density,
        "max": record.max,
        "mean": record.mean,
        "hist": record.hist,
        "ctx": record.contexts,
        "lt": record.lens_top,
        "lb": record.lens_bottom,
        "lens_reason": record.lens_reason,
        "gt": None
        if truth is None
        else {
            "names": truth.names,
            "label": truth.label,
            "precision": truth.precision,
            "recall": truth.recall,
            "f1": truth.f1,
            "n_examples": truth.n_examples,
        },
        "gt_reason": record.gt_reason,
        "match": match,
    }


def latents_section(inputs: PageInputs) -> str:
    intro = (
        "Per latent: firing density and activation histogram on the run's eval tokens, the "
        "top-activating eval contexts (orange: activation, outlined: the peak), the decoder "
        "direction's logit lens (W_dec·W_U, no final layer norm) and, on the toy world, the "
        "ground-truth value it fires on with held-out precision and recall. Computed once per "
        "SAE and cached in saes/…/artifacts/report_latents/; choose the SAEs with "
        "`saebench report RUN --latents`."
    )
    notes = f'<p class="muted">{h(inputs.latent_status)}</p>' if inputs.latent_status else ""
    notes += "".join(f'<p class="note">{h(n)}</p>' for n in inputs.latent_notes)
    if not inputs.dashboards:
        return section("latents", "Latent dashboards", notes or "<p>None computed.</p>", intro)
    knob_names = inputs.knob_names
    summary_rows, charts, static = [], [], []
    tokens: dict[str, str] = {}
    sequences: dict[str, list[int]] = {}
    saes_meta = []
    scripts = []
    for index, record in enumerate(inputs.dashboards):
        tokens.update(record.tokens)
        sequences.update(record.sequences)
        truth = record.ground_truth
        density = np.asarray(record.density, dtype=float)
        summary_rows.append(
            {
                "SAE": sae_title(record, knob_names),
                "d_sae": record.d_sae,
                "never active (eval)": int((density == 0).sum()),
                "median density": float(np.median(density)) if len(density) else float("nan"),
                f"latents with label F1 ≥ {CAPTURED_F1}": (
                    int((np.asarray(truth.f1) >= CAPTURED_F1).sum()) if truth else "n/a"
                ),
                f"values captured (F1 ≥ {CAPTURED_F1})": (
                    f"{int((np.asarray(truth.label_f1) >= CAPTURED_F1).sum())}/{len(truth.names)}"
                    if truth
                    else "n/a"
                ),
                "compute (s)": record.seconds,
            }
        )
        charts.append(density_chart(record, knob_names))
        static.append(static_latents(record, knob_names))
        saes_meta.append(
            {"label": record.sae, "title": sae_title(record, knob_names), "data": f"sae-{index}"}
        )
        scripts.append(json_script(f"sae-{index}", latent_payload(record, inputs.comparisons)))
    reasons = sorted({r.gt_reason for r in inputs.dashboards if r.gt_reason})
    reasons += sorted({r.lens_reason for r in inputs.dashboards if r.lens_reason})
    body = notes + "".join(f'<p class="note">{h(r)}</p>' for r in reasons)
    body += table(pd.DataFrame(summary_rows))
    body += '<div class="charts">' + "".join(charts) + "</div>"
    body += (
        '<div id="latent-explorer" hidden>'
        '<div class="controls">'
        '<label>SAE <select id="sae-select"></select></label>'
        '<label>search <input id="latent-search" type="search" '
        'placeholder="latent id, label, token…"></label>'
        '<label>sort <select id="latent-sort">'
        '<option value="f1">label F1 (best first)</option>'
        '<option value="purity">label purity (precision)</option>'
        '<option value="dense">density (densest first)</option>'
        '<option value="rare">density (rarest live first)</option>'
        '<option value="index">latent index</option>'
        "</select></label>"
        '<button id="latent-prev" type="button">◀ prev</button>'
        '<button id="latent-next" type="button">next ▶</button>'
        '<span id="latent-page" class="muted"></span></div>'
        '<div class="explorer"><div id="latent-list"></div>'
        '<div id="latent-dashboard" class="dash" aria-live="polite"></div></div></div>'
    )
    body += (
        "<noscript><p>The latent explorer needs JavaScript; the best-labelled latents of each "
        "SAE:</p>" + "".join(static) + "</noscript>"
    )
    body += json_script(
        "report-meta", {"tokens": tokens, "seqs": sequences, "saes": saes_meta}
    ) + "".join(scripts)
    return section("latents", "Latent dashboards", body, intro)


# --------------------------------------------------------------------------- comparison


def pair_block(pair: PairComparison, records: dict[str, Dashboards], names: dict[str, str]) -> str:
    a, b = records[pair.a.label], records[pair.b.label]
    title_a, title_b = sae_title(a, names), sae_title(b, names)
    matched = pair.matching.cosine[pair.matching.partner >= 0]
    edges = (
        np.linspace(-0.2, 1.0, 25)
        if len(matched) and matched.min() >= -0.2
        else np.linspace(-1.0, 1.0, 41)
    )
    counts = np.histogram(np.clip(matched, edges[0], edges[-1]), bins=edges)[0]
    chart = bar_chart(
        edges.tolist(),
        counts.tolist(),
        title="Decoder cosine of the matched pairs (A → B)",
        x_label="cosine of the matched pair",
        y_label="latents",
        color="#9467bd",
    )
    stats = key_values(
        [
            ("latents (A / B)", f"{a.d_sae} / {b.d_sae}"),
            ("mean matched cosine", fmt(pair.matching.mean_cosine)),
            (f"pairs with cosine ≥ {SHARED_COSINE}", f"{pair.matching.fraction_above():.1%}"),
        ]
    )
    body = f"<h3>A: {h(title_a)} vs B: {h(title_b)}</h3>" + stats + chart
    captured = pair.captured
    if captured is None:
        body += f'<p class="muted">{h(pair.captured_reason)}</p>'
    else:

        def listing(rows, mine: str, other: str) -> str:
            if not rows:
                return '<p class="muted">none</p>'
            return (
                "<p>"
                + "".join(
                    f'<span class="pill">{h(n)}: {mine} {x:.2f} vs {other} {y:.2f}</span>'
                    if mine == "A"
                    else f'<span class="pill">{h(n)}: {other} {y:.2f} vs {mine} {x:.2f}</span>'
                    for n, x, y in rows
                )
                + "</p>"
            )

        body += (
            f"<p>Ground-truth values with a latent at held-out F1 ≥ {CAPTURED_F1}: "
            f"{len(captured.both)} in both, {captured.neither} in neither.</p>"
            f"<h4>Only {h(title_a)} (A) has a latent for</h4>"
            + listing(captured.only_a, "A", "B")
            + f"<h4>Only {h(title_b)} (B) has a latent for</h4>"
            + listing([(n, y, x) for n, x, y in captured.only_b], "B", "A")
        )
    truth_a, truth_b = a.ground_truth, b.ground_truth
    order = (
        best_labelled(truth_a.f1, a.density)
        if truth_a is not None
        else np.argsort(-np.nan_to_num(pair.matching.cosine, nan=-2), kind="stable")
    )
    rows = []
    for i in order[:15]:
        i = int(i)
        j = int(pair.matching.partner[i])
        if j < 0:
            continue

        def label(truth, k: int) -> str:
            if truth is None or truth.label[k] < 0:
                return ""
            return f"{truth.names[truth.label[k]]} (F1 {truth.f1[k]:.2f})"

        rows.append(
            {
                "A latent": i,
                "A label": label(truth_a, i),
                "B latent": j,
                "B label": label(truth_b, j),
                "cosine": float(pair.matching.cosine[i]),
            }
        )
    body += details(
        "Matched pairs of A's best-labelled latents", table(pd.DataFrame(rows)), open_=True
    )
    return body


def compare_section(inputs: PageInputs) -> str:
    intro = (
        "Two SAEs side by side: latents matched one-to-one by decoder cosine (Hungarian "
        "assignment maximising the total cosine), and the ground-truth values each has a latent "
        "for that the other lacks."
    )
    notes = "".join(f'<p class="note">{h(n)}</p>' for n in inputs.compare_notes)
    if not inputs.comparisons:
        why = "Needs latent dashboards for two or more SAEs (`saebench report RUN --latents A,B`)."
        return section("compare", "Comparison", notes + f'<p class="muted">{h(why)}</p>', intro)
    records = {r.sae: r for r in inputs.dashboards}
    names = inputs.knob_names
    options = "".join(
        f'<option value="{k}">{h(sae_title(records[p.a.label], names))} vs '
        f"{h(sae_title(records[p.b.label], names))}</option>"
        for k, p in enumerate(inputs.comparisons)
    )
    body = notes + f'<div class="controls"><select id="pair-select" hidden>{options}</select></div>'
    for k, pair in enumerate(inputs.comparisons):
        body += f'<div class="pair" data-pair="{k}">' + pair_block(pair, records, names) + "</div>"
    return section("compare", "Comparison", body, intro)


# --------------------------------------------------------------------------- page


SECTIONS = {
    "config": "Config",
    "summary": "What it can tell apart",
    "tasks": "Frontier and tasks",
    "cells": "Failed / uninformative",
    "training": "Training",
    "plots": "Task plots",
    "latents": "Latent dashboards",
    "compare": "Comparison",
}


def render_page(data: RunData, inputs: PageInputs) -> str:
    """The whole document."""
    import saebench

    names = inputs.knob_names
    body = "".join(
        [
            config_section(data),
            summary_section(data),
            tasks_section(data, names),
            cells_section(data),
            training_section(data),
            plots_section(inputs.plots),
            latents_section(inputs),
            compare_section(inputs),
        ]
    )
    built = time.time() - inputs.started
    title = f"saebench report — {data.title}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{h(assets.CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{h(title)}</title><style>{assets.CSS}</style></head><body>"
        f"<header><h1>{h(title)}</h1>"
        f'<p class="muted">{h(data.config.get("model", ""))} · {h(data.config.get("hook", ""))} · '
        f"preset {h(data.config.get('preset', ''))} · {h(data.run.get('status', ''))}</p>"
        + link_list(SECTIONS)
        + f"</header><main>{body}</main>"
        f"<footer>Written by saebench {h(saebench.__version__)} on "
        f"{h(time.strftime('%Y-%m-%d %H:%M:%S'))} in {built:.1f} s. One self-contained file: "
        "nothing is fetched when it is viewed.</footer>"
        f"<script>{assets.JS}</script></body></html>\n"
    )
