"""The disentangle bar chart."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from saebench.rundir import RunDir


def plot(results: pd.DataFrame, run_dir: RunDir) -> list[Path]:
    """Disentangle score per attribute per method (best knob per method, seed-mean)."""
    from saebench.fileio import save_figure
    from saebench.plots import pyplot

    rows = results[results.metric.str.match(r"ravel_disentangle_")]
    if rows.empty:
        return []
    rows = rows.assign(attribute=rows.metric.str.replace("ravel_disentangle_", "", regex=False))
    means = rows.groupby(["method", "knob", "attribute"], as_index=False).value.mean()
    plt, sns = pyplot()
    grid = sns.catplot(
        data=means,
        x="attribute",
        y="value",
        hue="method",
        kind="bar",
        errorbar=None,
        height=3.5,
        aspect=1.6,
    )
    grid.set_axis_labels("attribute", "disentangle (½ cause + ½ isolate)")
    path = run_dir.plot_path("ravel_disentangle.png")
    save_figure(grid, path, dpi=120)
    plt.close("all")
    return [path]
