"""The circle plots of `circular` and the points file they are drawn from."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from saebench.rundir import RunDir, SaeKey

if TYPE_CHECKING:
    import pandas as pd

NAME = "circular"
POINTS_FILE = "circle_points.npz"


def chosen_saes(results: pd.DataFrame):
    """One row (method, knob, seed) per method: its best day_circle_fidelity when recorded;
    when the validity gate dropped that score, its median knob (first seed), so the plot never
    picks by a number that means nothing. None when the task recorded nothing."""
    import pandas as pd

    scores = results[results.metric == "day_circle_fidelity"]
    if not scores.empty:
        return scores.sort_values("value").groupby("method").tail(1).sort_values("method")
    rows = results[results.metric == "day_latents_selected"]
    if rows.empty:
        return None
    rows = rows[rows.seed == rows.groupby("method").seed.transform("min")].sort_values("knob")
    return pd.concat([group.iloc[[(len(group) - 1) // 2]] for _, group in rows.groupby("method")])


def save_points(directory: Path, arrays: dict[str, np.ndarray]) -> None:
    """Points for the circle plots, written atomically."""
    from saebench.fileio import atomic_path

    with atomic_path(directory / POINTS_FILE) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)  # a file object: savez would append ".npz" to a name


def plot(results: pd.DataFrame, run_dir: RunDir) -> list[Path]:
    """Per kind (day, month), one row per method, at the SAE chosen_saes picks: the held-out
    reconstruction from the latents chosen by select_latents, in the plane of its value
    centroids, next to the held-out raw activations (the ceiling, drawn once). A panel without an
    excess R² in its title had its circle scores dropped by the validity gate (no circle in the
    raw points to find); the fidelity in an SAE panel's title says how much of the model's own
    plane that circle reproduces."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from saebench.circles import between_value_plane, value_centroids
    from saebench.fileio import save_figure
    from saebench.toyworld.world import DAYS, MONTHS

    chosen = chosen_saes(results)
    if chosen is None:
        return []

    def metric(row, name):
        hit = results[
            (results.method == row.method)
            & (results.knob == row.knob)
            & (results.seed == row.seed)
            & (results.metric == name)
        ].value
        return float(hit.iloc[0]) if len(hit) else None

    def title(text, excess, fidelity=None):
        scores = [] if excess is None else [f"excess R² {excess:.2f}"]
        scores += [] if fidelity is None else [f"fidelity {fidelity:.2f}"]
        return text + ("\n" + ", ".join(scores) if scores else "")

    def count(n):
        return "" if n is None else f" (n={n:.0f})"

    def draw(ax, text, points, values, names):
        ax.set_title(text, fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
        if points is None:
            ax.text(0.5, 0.5, "none found", ha="center", va="center", transform=ax.transAxes)
            return
        projected, _ = between_value_plane(points, values)
        present = np.unique(values)
        centroids = value_centroids(projected, values)
        # hsv wraps (0 and 1 are both red): span a full period so neighbours differ in colour.
        colours = {"cmap": "hsv", "vmin": 0, "vmax": len(names)}
        ax.scatter(*projected.T, c=values, s=4, alpha=0.3, **colours)
        loop = np.vstack([centroids, centroids[:1]])  # close the cycle: last value -> first
        ax.plot(*loop.T, color="0.4", lw=1, zorder=1)
        ax.scatter(*centroids.T, c=present, s=60, edgecolor="k", zorder=2, **colours)
        for v, (x, y) in zip(present, centroids):
            ax.annotate(
                names[v][:3] if v < len(names) else str(v),
                (x, y),
                fontsize=8,
                xytext=(3, 3),
                textcoords="offset points",
            )

    paths = []
    for kind, names in (("day", DAYS), ("month", MONTHS)):
        panels = []
        for row in chosen.itertuples():
            sae = SaeKey(row.method, float(row.knob), int(row.seed))
            path = run_dir.artifact_path(sae, NAME, POINTS_FILE)
            if path.exists():
                panels.append((row, np.load(path)))
        if not panels:
            continue
        fig, axes = plt.subplots(len(panels), 2, figsize=(6.5, 3.4 * len(panels)), squeeze=False)
        values = panels[0][1][f"{kind}_values"]
        raw_excess = metric(panels[0][0], f"raw_{kind}_circle_excess_r2")
        draw(
            axes[0, 0],
            title("raw activations", raw_excess),
            panels[0][1][f"{kind}_raw_points"],
            values,
            names,
        )
        for (row, data), (raw_ax, selected_ax) in zip(panels, axes):
            if raw_ax is not axes[0, 0]:
                raw_ax.remove()  # raw is the same for every SAE: drawn once
            label = f"{row.method} ({row.knob:g})"
            draw(
                selected_ax,
                title(
                    f"{label}: selected latents" + count(metric(row, f"{kind}_latents_selected")),
                    metric(row, f"{kind}_circle_excess_r2"),
                    metric(row, f"{kind}_circle_fidelity"),
                ),
                data.get(f"{kind}_points"),
                values,
                names,
            )
        fig.suptitle(f"{kind} operand tokens in the plane of their value centroids")
        fig.tight_layout()
        path = run_dir.plot_path(f"circular_{kind}.png")
        save_figure(fig, path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths
