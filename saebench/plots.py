"""PNG plots of a run (seaborn on the Agg backend). A plot that cannot be drawn is skipped
with a reason; plotting never fails a run."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from saebench.metrics import interpolate_at_l0, matched_l0_targets, pareto_frontier

HEATMAP_METRICS = [("fvu", "frontier"), ("cosine_similarity", "frontier"),
                   ("relative_reconstruction_bias", "frontier"), ("delta_ce", "loss_recovered"),
                   ("loss_recovered_zero", "loss_recovered")]


def _pyplot():
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
    return subset.pivot_table(index=["method", "knob"], columns="metric", values="value",
                              aggfunc="mean").reset_index()


def frontier_plot(frame, path: Path, y: str, ylabel: str) -> str:
    table = per_sae(frame, ["l0", y])
    if table.empty or y not in table or "l0" not in table:
        return f"skipped {path.name}: no l0/{y} results"
    plt, sns = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    palette = dict(zip(sorted(table.method.unique()), sns.color_palette(n_colors=table.method.nunique())))
    for method, group in table.groupby("method"):
        ax.scatter(group.l0, group[y], color=palette[method], label=method, s=40)
        front = group.iloc[pareto_frontier(group.l0, group[y], lower_is_better=True)]
        front = front.sort_values("l0")
        ax.plot(front.l0, front[y], color=palette[method], lw=1.5)
    ax.set_xscale("log")
    ax.set_xlabel("L0 (active latents per token)")
    ax.set_ylabel(ylabel)
    ax.legend(title="method")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"wrote {path}"


def density_plot(run_dir: Path, path: Path) -> str:
    files = sorted(run_dir.glob("saes/*/*/seed0/artifacts/frontier/feature_density.npy"))
    if not files:
        return f"skipped {path.name}: no feature densities saved"
    plt, sns = _pyplot()
    rows = []
    for file in files:
        method, knob = file.parts[-6], file.parts[-5]
        density = np.load(file)
        live = density[density > 0]
        rows += [{"method": method, "knob": knob, "log10_density": v} for v in np.log10(live)]
    if not rows:
        return f"skipped {path.name}: every latent is dead"
    data = pd.DataFrame(rows)
    grid = sns.displot(data, x="log10_density", hue="knob", col="method", col_wrap=3,
                       element="step", fill=False, bins=30, height=3, common_norm=False)
    grid.set_axis_labels("log10 feature density", "latents")
    grid.savefig(path, dpi=110)
    plt.close(grid.figure)
    return f"wrote {path}"


def matched_l0_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Methods × metrics, each interpolated (log L0) at an L0 covered by every trained method."""
    table = per_sae(frame, ["l0"] + [m for m, _ in HEATMAP_METRICS])
    if table.empty or "l0" not in table:
        return pd.DataFrame()
    sweeps = {m: g.l0.tolist() for m, g in table.groupby("method") if len(g) >= 2}
    targets = matched_l0_targets(sweeps, n=3)
    if not targets:
        return pd.DataFrame()
    target = targets[len(targets) // 2]
    out = {}
    for method, group in table.groupby("method"):
        if method not in sweeps:
            continue
        out[method] = {metric: interpolate_at_l0(group.l0, group[metric], target)
                       for metric, _ in HEATMAP_METRICS if metric in group}
    result = pd.DataFrame(out).T
    result.attrs["l0"] = target
    return result


def heatmap_plot(frame, path: Path) -> str:
    table = matched_l0_table(frame)
    if table.empty:
        return (f"skipped {path.name}: needs methods with ≥ 2 sparsity levels each whose L0 "
                "ranges overlap (pass more --sweep values)")
    plt, sns = _pyplot()
    fig, ax = plt.subplots(figsize=(1.6 * len(table.columns) + 2, 0.6 * len(table) + 1.8))
    # Colour by rank within each metric column so metrics on different scales share one map.
    ranks = table.rank(axis=0, pct=True)
    sns.heatmap(ranks, annot=table.map(lambda v: "nan" if math.isnan(v) else f"{v:.3g}"),
                fmt="", cmap="vlag", cbar=False, ax=ax)
    ax.set_title(f"methods × metrics at matched L0 ≈ {table.attrs['l0']:.1f}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"wrote {path}"


def make_plots(run_dir, frame: pd.DataFrame, tasks: dict) -> list[str]:
    run_dir = Path(run_dir)
    plots_dir = run_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    jobs = [
        lambda: frontier_plot(frame, plots_dir / "frontier_l0_fvu.png", "fvu",
                              "FVU (fraction of variance unexplained)"),
        lambda: frontier_plot(frame, plots_dir / "frontier_l0_delta_ce.png", "delta_ce",
                              "ΔCE (nats, SAE spliced − clean)"),
        lambda: density_plot(run_dir, plots_dir / "feature_density.png"),
        lambda: heatmap_plot(frame, plots_dir / "matched_l0_heatmap.png"),
    ]
    for name, task in sorted(tasks.items()):
        if task.plot is not None:
            jobs.append(lambda task=task: "; ".join(
                f"wrote {p}" for p in task.plot(frame[frame.task == task.name], run_dir)))
    messages = []
    for job in jobs:
        try:
            messages.append(job())
        except Exception as error:  # noqa: BLE001 — a plot never fails the run
            messages.append(f"plot failed: {type(error).__name__}: {error}")
    return messages
