"""PNG plots of a run (seaborn on the Agg backend). A plot that cannot be drawn is skipped
with a reason; plotting never fails a run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


def frontier_plot(
    frame,
    path: Path,
    y: str,
    ylabel: str,
    log_y: bool = True,
    lines: Mapping[str, float] | None = None,
) -> str:
    """`y` against L0 per method: seed means with 95%-interval error bars on both axes, each
    point labelled with its knob. Learned methods are solid lines through their Pareto points;
    calibration baselines are dashed curves; a one-point baseline (identity) is a marker.
    `lines`: {label: value} references drawn across the plot (chance, a raw-activation probe)."""
    from saebench.results import calibration_baselines
    from saebench.stats import aggregate_over_seeds

    aggregated = aggregate_over_seeds(frame[frame.metric.isin([L0, y])])
    if aggregated.empty or not {L0, y} <= set(aggregated.metric):
        return f"skipped {path.name}: no l0/{y} results"
    wide = aggregated.pivot_table(
        index=["method", "knob"],
        columns="metric",
        values=["mean", "ci_low", "ci_high"],
        dropna=False,
    )
    plt, sns = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    methods = sorted(wide.index.get_level_values("method").unique())
    palette = dict(zip(methods, sns.color_palette(n_colors=len(methods))))
    baselines = set(calibration_baselines())
    for method in methods:
        points = wide.loc[method].dropna(subset=[("mean", L0), ("mean", y)])
        if points.empty:
            continue
        x, value = points[("mean", L0)], points[("mean", y)]
        x_err = _error_bars(points, L0)
        y_err = _error_bars(points, y)
        is_baseline = method in baselines
        ax.errorbar(
            x,
            value,
            xerr=x_err,
            yerr=y_err,
            fmt="s" if is_baseline else "o",
            ms=5,
            color=palette[method],
            capsize=2,
            lw=0.8,
            label=f"{method} (baseline)" if is_baseline else method,
        )
        order = np.argsort(x.to_numpy())
        if is_baseline:
            ax.plot(x.to_numpy()[order], value.to_numpy()[order], "--", color=palette[method])
        else:
            front = pareto_frontier(x, value, lower_is_better=True)
            front = sorted(front, key=lambda i: x.iloc[i])
            ax.plot(x.iloc[front], value.iloc[front], color=palette[method], lw=1.5)
        for knob, xv, yv in zip(points.index, x, value):
            ax.annotate(
                knob_label(knob),
                (xv, yv),
                fontsize=6,
                xytext=(3, 3),
                ha="left",
                textcoords="offset points",
                color=palette[method],
            )
    for index, (label, level) in enumerate((lines or {}).items()):
        ax.axhline(level, color="0.4", lw=0.8, ls=(0, (1, 1 + index)), label=label)
    ax.set_xscale("log", base=2)
    means = wide[("mean", y)].dropna()
    if log_y and (means > 0).any() and (means >= 0).all():
        # Exact zeros (the identity baseline's FVU) stay visible on a linear stretch near 0.
        smallest = float(means[means > 0].min())
        if (means > 0).all():
            ax.set_yscale("log")
        else:
            ax.set_yscale("symlog", linthresh=smallest)
            ax.set_ylim(bottom=0)
    # Plain numbers at powers of two read better than 3×10¹ labels over a 4–64 L0 range.
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("L0 (active latents per token, log scale)")
    ax.set_ylabel(ylabel + (" (log)" if ax.get_yscale() in ("log", "symlog") else ""))
    ax.set_title(f"{y} vs L0 (mean over seeds, bars: 95% interval; labels: knob)", fontsize=10)
    ax.legend(title="method", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return f"wrote {path}"


def _error_bars(points: pd.DataFrame, metric: str) -> np.ndarray | None:
    """[2, n] distances from the mean to the interval ends; None when no point has one."""
    low = (points[("mean", metric)] - points[("ci_low", metric)]).to_numpy(dtype=float)
    high = (points[("ci_high", metric)] - points[("mean", metric)]).to_numpy(dtype=float)
    if np.isnan(low).all():
        return None
    return np.nan_to_num(np.vstack([low, high]))


def density_plot(run_dir: RunDir, path: Path, task: str, artifact: str, seed: int = 0) -> str:
    """Histogram of log10 firing densities on the eval tokens, one colour per method (line style
    per knob), from each SAE's saved density array (`artifact` in `task`'s artifacts; the first
    seed only, so seeds do not overplot). The legend counts the latents that never fired."""
    files = [
        (sae, run_dir.artifact_path(sae, task, artifact))
        for sae, _ in run_dir.saved_saes()
        if sae.seed == seed
    ]
    files = sorted(
        ((sae, file) for sae, file in files if file.exists()),
        key=lambda p: (p[0].method, p[0].knob),
    )
    if not files:
        return f"skipped {path.name}: no feature densities saved"
    plt, sns = pyplot()
    methods = sorted({sae.method for sae, _ in files})
    palette = dict(zip(methods, sns.color_palette(n_colors=len(methods))))
    styles = ["-", "--", ":", "-."]
    fig, ax = plt.subplots(figsize=(8, 4.8))
    bins = np.linspace(-6, 0, 31)
    drawn = 0
    for sae, file in files:
        density = np.load(file)
        live = density[density > 0]
        knobs = sorted({s.knob for s, _ in files if s.method == sae.method})
        style = styles[knobs.index(sae.knob) % len(styles)]
        never = int((density == 0).sum())
        label = f"{sae.method} {knob_label(sae.knob)} (never fired: {never}/{len(density)})"
        if len(live):
            ax.hist(
                np.log10(live),
                bins=bins,
                histtype="step",
                color=palette[sae.method],
                linestyle=style,
                lw=1.3,
                label=label,
            )
            drawn += 1
        else:
            ax.plot([], [], color=palette[sae.method], linestyle=style, label=label)
    if not drawn:
        plt.close(fig)
        return f"skipped {path.name}: no latent fired on the eval tokens"
    ax.set_xlabel("log10 firing density on the eval tokens")
    ax.set_ylabel("latents")
    ax.set_title(
        f"Feature density (seed {seed}; never fired on the eval set ≠ dead in training)",
        fontsize=10,
    )
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
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
    """One panel per calibration baseline: metrics × (method, matched L0), annotated with
    Δ = method − baseline, coloured only where the 95% interval over seeds excludes 0."""
    from saebench.calibration import calibrate
    from saebench.results import calibration_baselines
    from saebench.stats import BETTER, WORSE

    calibration = calibrate(frame, tasks or {}, calibration_baselines())
    if not calibration.comparisons:
        return (
            f"skipped {path.name}: needs a calibration baseline with ≥ 2 sparsity levels and "
            "a learned method inside its L0 range (≥ 2 levels, or one whose seeds agree on L0): "
            "pass more --sweep values, and keep the baselines on"
        )
    data = calibration.frame()
    data["column"] = [f"{m}\nL0 {l0:.3g}" for m, l0 in zip(data.method, data.l0)]
    data["row"] = [f"{metric} ({task})" for metric, task in zip(data.metric, data.task)]
    data["colour"] = data.verdict.map({BETTER: 1.0, WORSE: -1.0}).fillna(0.0)
    data.loc[data.verdict == "unknown", "colour"] = float("nan")
    baselines = list(calibration.baselines)
    plt, sns = pyplot()
    n_rows = data.row.nunique()
    n_cols = data.groupby("baseline").column.nunique().max()
    fig, axes = plt.subplots(
        1,
        len(baselines),
        figsize=(len(baselines) * (1.1 * n_cols + 4.5), 0.42 * n_rows + 2),
        squeeze=False,
    )
    rows = sorted(data.row.unique())
    for ax, baseline in zip(axes[0], baselines):
        mine = data[data.baseline == baseline]
        columns = list(dict.fromkeys(mine.sort_values(["method", "l0"]).column))
        colour = mine.pivot_table(index="row", columns="column", values="colour", dropna=False)
        delta = mine.pivot_table(index="row", columns="column", values="difference")
        colour = colour.reindex(index=rows, columns=columns)
        delta = delta.reindex(index=rows, columns=columns)
        sns.heatmap(
            colour,
            annot=delta.map(lambda v: "" if v != v else f"{v:+.3g}"),
            fmt="",
            cmap="RdYlGn",
            vmin=-1.5,
            vmax=1.5,
            cbar=False,
            linewidths=0.5,
            linecolor="white",
            ax=ax,
        )
        ax.set_title(f"Δ vs {baseline}", fontsize=10)
        ax.set_xlabel("")
        ax.set_ylabel("")
        if ax is not axes[0][0]:
            ax.set_yticklabels([])
    fig.suptitle(
        "Learned methods minus each baseline at matched L0 (green better, red worse: 95% "
        "interval over seeds excludes 0; pale within noise; blank no interval)",
        fontsize=9,
    )
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
