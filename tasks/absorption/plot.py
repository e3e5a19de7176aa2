"""The absorption task's plots: its two headline metrics against L0."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from saebench.rundir import RunDir

PLOTS = {
    "absorption_fraction": "mean absorption fraction (lower is better)",
    "absorption_full_rate": "full-absorption rate (lower is better)",
}


def plot(results: pd.DataFrame, run_dir: RunDir) -> list[Path]:
    """Each headline metric against L0, one curve per method (seed means, 95% intervals)."""
    from saebench.plots import frontier_plot

    paths = []
    for metric, label in PLOTS.items():
        path = run_dir.plot_path(f"{metric}.png")
        if frontier_plot(results, path, metric, label, log_y=False).startswith("wrote"):
            paths.append(path)
    return paths
