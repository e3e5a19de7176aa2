"""PNG plots of a run (seaborn on the Agg backend). A plot that cannot be drawn is skipped
with a reason; plotting never fails a run."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from saebench.fileio import save_figure
from saebench.metrics import interpolate_at_l0, matched_l0_targets, pareto_frontier
from saebench.rundir import RunDir, knob_label
from saebench.specs import L0, TaskSpec


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns


def per_sae(frame: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """One row per (method, knob): seed-mean of `metrics`."""
    subset = frame[frame.metric.isin(metrics)]
    if subset.empty:
        return pd.DataFrame()
    return subset.pivot_table(
        index=["method", "knob"], columns="metric", values="value", aggfunc="mean"
    ).reset_index()


def frontier_plot(frame, path: Path, y: str, ylabel: str) -> str:
    table = per_sae(frame, [L0, y])
    if table.empty or y not in table or L0 not in table:
        return f"skipped {path.name}: no l0/{y} results"
    plt, sns = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    palette = dict(
        zip(sorted(table.method.unique()), sns.color_palette(n_colors=table.method.nunique()))
    )
    for method, group in table.groupby("method"):
        ax.scatter(group[L0], group[y], color=palette[method], label=method, s=40)
        front = group.iloc[pareto_frontier(group[L0], group[y], lower_is_better=True)]
        front = front.sort_values(L0)
        ax.plot(front[L0], front[y], color=palette[method], lw=1.5)
    ax.set_xscale("log", base=2)
    # Plain numbers at powers of two read better than 3×10¹ labels over a 4–64 L0 range.
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("L0 (active latents per token, log scale)")
    ax.set_ylabel(ylabel)
    ax.legend(title="method")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return f"wrote {path}"


def density_plot(run_dir: RunDir, path: Path, task: str, artifact: str, seed: int = 0) -> str:
    """Histogram of log10 firing densities per method and knob, from each SAE's saved density
    array (`artifact` in `task`'s artifacts; the first seed only, so seeds do not overplot)."""
    files = [
        (sae, run_dir.artifact_path(sae, task, artifact))
        for sae, _ in run_dir.saved_saes()
        if sae.seed == seed
    ]
    files = [(sae, file) for sae, file in files if file.exists()]
    if not files:
        return f"skipped {path.name}: no feature densities saved"
    plt, sns = pyplot()
    rows = []
    for sae, file in files:
        density = np.load(file)
        live = density[density > 0]
        rows += [
            {"method": sae.method, "knob": knob_label(sae.knob), "log10_density": v}
            for v in np.log10(live)
        ]
    if not rows:
        return f"skipped {path.name}: every latent is dead"
    data = pd.DataFrame(rows)
    grid = sns.displot(
        data,
        x="log10_density",
        hue="knob",
        col="method",
        col_wrap=3,
        element="step",
        fill=False,
        bins=30,
        height=3,
        common_norm=False,
    )
    grid.set_axis_labels("log10 feature density", "latents")
    save_figure(grid, path, dpi=110)
    plt.close(grid.figure)
    return f"wrote {path}"


def heatmap_metrics(frame: pd.DataFrame, tasks: dict[str, TaskSpec]) -> dict[str, bool]:
    """metric -> higher_is_better for the heatmap columns present in `frame`: a task's
    directional headline metrics, or all its directional metrics when it marks no headline."""
    chosen: dict[str, bool] = {}
    pairs = frame[["task", "metric"]].drop_duplicates()
    for task_name, metric in sorted(pairs.itertuples(index=False)):
        task = tasks.get(task_name)
        if task is None:
            continue
        try:
            info = task.metric_info(metric)
        except KeyError:
            continue
        has_headline = any(i.headline for i in task.metrics.values())
        if info.higher_is_better is not None and (info.headline or not has_headline):
            chosen[metric] = info.higher_is_better
    return {m: better for m, better in chosen.items() if not is_breakdown(m, chosen)}


def is_breakdown(metric: str, names) -> bool:
    """A per-concept breakdown of an aggregate that is also present: ravel_cause_country when
    ravel_cause exists, gt_auroc_day when gt_auroc_mean exists. The summary keeps aggregates."""
    for other in names:
        if other == metric:
            continue
        family = other.removesuffix("_mean")
        if metric.startswith(family + "_"):
            return True
    return False


def matched_l0_table(frame: pd.DataFrame, tasks: dict[str, TaskSpec] | None = None) -> pd.DataFrame:
    """Methods × metrics, each interpolated (log L0) at an L0 covered by every trained method.

    attrs: "l0" (the matched L0), "higher_is_better" (metric -> bool, for colouring)."""
    directions = heatmap_metrics(frame, tasks or {})
    table = per_sae(frame, [L0, *directions])
    if table.empty or L0 not in table or not directions:
        return pd.DataFrame()
    sweeps = {m: g[L0].tolist() for m, g in table.groupby("method") if len(g) >= 2}
    if len(sweeps) < 2:  # a comparison needs two methods with an L0 range each
        return pd.DataFrame()
    targets = matched_l0_targets(sweeps, n=3)
    if not targets:
        return pd.DataFrame()
    target = targets[len(targets) // 2]
    out = {}
    for method, group in table.groupby("method"):
        if method not in sweeps:
            continue
        out[method] = {
            metric: interpolate_at_l0(group[L0], group[metric], target)
            for metric in directions
            if metric in group
        }
    result = pd.DataFrame(out).T
    result.attrs.update(l0=target, higher_is_better={m: directions[m] for m in result.columns})
    return result


def heatmap_plot(frame, path: Path, tasks: dict[str, TaskSpec] | None = None) -> str:
    table = matched_l0_table(frame, tasks)
    if table.empty:
        return (
            f"skipped {path.name}: needs ≥ 2 methods with ≥ 2 sparsity levels each "
            "whose L0 ranges overlap (pass more --sweep values)"
        )
    plt, sns = pyplot()
    # Metrics as rows: tasks can contribute dozens of metrics, methods are few.
    fig, ax = plt.subplots(figsize=(1.4 * len(table) + 4, 0.35 * len(table.columns) + 1.5))
    # Colour = how good each method is within a metric (green best), so metrics on different
    # scales and with opposite directions share one colour map; the numbers are the raw values.
    signed = table.copy()
    for metric, higher in table.attrs["higher_is_better"].items():
        if not higher:
            signed[metric] = -signed[metric]
    # 0 = worst, 1 = best in the column (a lone method, or a tie for all, sits in the middle).
    goodness = (
        (signed.rank(axis=0) - 1) / (len(signed) - 1) if len(signed) > 1 else signed * 0 + 0.5
    )
    # Differences under 0.5% of the metric's size are noise, not a ranking: colour them neutral.
    spread = (table.max() - table.min()).abs() <= 0.005 * table.abs().mean()
    goodness.loc[:, spread] = 0.5
    sns.heatmap(
        goodness.T,
        annot=table.T.map(lambda v: "nan" if math.isnan(v) else f"{v:.3g}"),
        fmt="",
        cmap="RdYlGn",
        vmin=0,
        vmax=1,
        cbar=False,
        ax=ax,
    )
    ax.set_title(
        f"at matched L0 ≈ {table.attrs['l0']:.1f}\n(green = best method per metric)", fontsize=10
    )
    ax.set_xlabel("")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return f"wrote {path}"


def _task_plot_job(
    plot: Callable[..., list], task_name: str, frame: pd.DataFrame, run_dir: RunDir
) -> Callable[[], str]:
    """A deferred call of one task's `plot` on its rows plus every SAE's `l0`."""

    def job() -> str:
        paths = plot(frame[(frame.task == task_name) | (frame.metric == L0)], run_dir)
        return "; ".join(f"wrote {p}" for p in paths) or f"{task_name}: nothing to draw"

    return job


def training_curves_plot(run_dir: RunDir, path: Path) -> str:
    """FVU, L0 and dead fraction against training tokens for every trained SAE (one line per
    SAE, one colour per method): shows whether each curve had flattened."""
    logs = [log for log in run_dir.train_logs().values() if log.get("curve")]
    if not logs:
        return f"skipped {path.name}: no training curves"
    plt, sns = pyplot()
    methods = sorted({log["method"] for log in logs})
    palette = dict(zip(methods, sns.color_palette(n_colors=len(methods))))
    panels = [
        ("fvu", "training FVU (log)", True),
        ("l0", "L0", True),
        ("dead_fraction", "dead fraction", False),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 4.2))
    for ax, (name, label, log_y) in zip(axes, panels):
        for log in logs:
            curve = log["curve"]
            ax.plot(curve["tokens"], curve[name], color=palette[log["method"]], lw=1.0, alpha=0.8)
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel("training tokens")
        ax.set_ylabel(label)
    handles = [plt.Line2D([], [], color=palette[m], label=m) for m in methods]
    axes[-1].legend(handles=handles, title="method", fontsize=8)
    fig.suptitle("Training curves (one line per SAE; the last 20% is the learning-rate decay)")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return f"wrote {path}"


def make_plots(run_dir: RunDir, frame: pd.DataFrame, tasks: dict[str, TaskSpec]) -> list[str]:
    """The run's matched-L0 heatmap and every task's own plots. A task's `plot` gets its own
    rows plus every SAE's `l0` (the x-axis of frontier plots: `frontier_plot`, `density_plot`)."""
    run_dir.plots_dir.mkdir(parents=True, exist_ok=True)
    jobs: list[Callable[[], str]] = [
        lambda: heatmap_plot(frame, run_dir.plot_path("matched_l0_heatmap.png"), tasks),
        lambda: training_curves_plot(run_dir, run_dir.plot_path("training_curves.png")),
    ]
    for _, task in sorted(tasks.items()):
        if task.plot is not None:
            jobs.append(_task_plot_job(task.plot, task.name, frame, run_dir))
    messages = []
    for job in jobs:
        try:
            messages.append(job())
        except Exception as error:  # noqa: BLE001 — a plot never fails the run
            messages.append(f"plot failed: {type(error).__name__}: {error}")
    return messages
