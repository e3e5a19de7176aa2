"""Run outputs: tidy results.csv (from the cell files), run.json, results.md; and loaders."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pandas as pd

from saebench.fileio import atomic_path, write_text

COLUMNS = ["model", "hook", "method", "knob", "seed", "task", "metric", "value"]


def load_cells(run_dir) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((Path(run_dir) / "cells").glob("*.json"))]


def cells_to_frame(cells, model: str, hook: str) -> pd.DataFrame:
    rows = [
        {
            "model": model,
            "hook": hook,
            "method": c["method"],
            "knob": c["knob"],
            "seed": c["seed"],
            "task": c["task"],
            "metric": metric,
            "value": value,
        }
        for c in cells
        if c["status"] == "ok"
        for metric, value in c["metrics"].items()
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def write_results(run_dir, model: str, hook: str, tasks: dict | None = None) -> pd.DataFrame:
    """Regenerate results.csv and results.md from the cell files (tasks: for metric directions)."""
    run_dir = Path(run_dir)
    cells = load_cells(run_dir)
    frame = cells_to_frame(cells, model, hook)
    with atomic_path(run_dir / "results.csv") as tmp:
        frame.to_csv(tmp, index=False)
    write_text(run_dir / "results.md", summary_markdown(frame, cells, tasks))
    return frame


def load_results(run_dir) -> pd.DataFrame:
    path = Path(run_dir) / "results.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a saebench run directory?")
    return pd.read_csv(path)


def load_run(run_dir) -> dict:
    path = Path(run_dir) / "run.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a saebench run directory?")
    return json.loads(path.read_text())


CALIBRATION_BASELINES = ("random", "identity", "pca")
FRONTIER_COLUMNS = [
    "l0",
    "fvu",
    "explained_variance",
    "cosine_similarity",
    "relative_reconstruction_bias",
    "dead_latents",
    "dense_1e-2",
    "dense_1e-3",
    "delta_ce",
    "loss_recovered_zero",
    "kl_score_mean",
]


def frontier_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (method, knob): mean over seeds of the main frontier metrics, sorted by method, L0."""
    main = frame[frame.metric.isin(FRONTIER_COLUMNS)]
    if main.empty:
        return pd.DataFrame()
    table = main.pivot_table(
        index=["method", "knob"], columns="metric", values="value", aggfunc="mean"
    )
    table = table[[c for c in FRONTIER_COLUMNS if c in table.columns]].reset_index()
    return table.sort_values(["method", "l0"] if "l0" in table else ["method", "knob"])


def summary_markdown(frame: pd.DataFrame, cells: list[dict], tasks: dict | None = None) -> str:
    from saebench.plots import is_breakdown, matched_l0_table

    lines = ["# saebench results", ""]
    table = frontier_table(frame)
    if not table.empty:
        lines += ["## Frontier (mean over seeds)", "", _markdown(table), ""]
    matched = matched_l0_table(frame, tasks)
    if not matched.empty:
        lines += [
            f"## Methods at matched L0 ≈ {matched.attrs['l0']:.3g} (interpolated in log L0)",
            "",
            _markdown(matched.T.rename_axis("metric").reset_index()),
            "",
        ]  # metrics as rows
    others = frame[
        ~frame.metric.isin(FRONTIER_COLUMNS) & ~frame.task.isin(["frontier", "loss_recovered"])
    ]
    if not others.empty and not set(frame.method) & set(CALIBRATION_BASELINES):
        # A task score means little until it is seen next to a dictionary that knows nothing.
        lines += [
            "> No calibration baseline in this run: add `random` (and `identity`, `pca`) to "
            "`--methods` to see what each task gives a dictionary that learned nothing.",
            "",
        ]
    for task, group in others.groupby("task"):
        # Per-concept breakdowns stay in results.csv; the summary shows their aggregates.
        names = set(group.metric)
        group = group[[not is_breakdown(m, names) for m in group.metric]]
        wide = group.pivot_table(
            index=["method", "knob"], columns="metric", values="value", aggfunc="mean"
        ).reset_index()
        lines += [f"## {task}", "", _markdown(wide), ""]
    failed = [c for c in cells if c["status"] != "ok"]
    if failed:
        lines += ["## Failed cells", ""]
        lines += [f"- {c['id']}: {c['reason']}" for c in failed]
    return "\n".join(lines) + "\n"


def _markdown(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "---|" * len(table.columns)
    body = ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _installed_version(distribution: str) -> str:
    # transformer_lens 4.x has no __version__ attribute; the installed metadata always knows.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def run_metadata(runner, config: dict, store, status: str) -> dict:
    import torch

    import saebench

    cells = load_cells(runner.run_dir) if (runner.run_dir / "cells").exists() else []
    train_logs = {}
    for log in sorted(runner.run_dir.glob("saes/*/*/*/train_log.json")):
        train_logs[str(log.parent.relative_to(runner.run_dir))] = json.loads(log.read_text())
    return {
        "status": status,
        "config": config,
        "command": getattr(runner.request, "command", None),
        "versions": {
            "saebench": saebench.__version__,
            "torch": torch.__version__,
            "transformer_lens": _installed_version("transformer_lens"),
            "python": platform.python_version(),
        },
        "device": str(runner.device),
        "model_info": {k: v for k, v in runner.model.info.items() if k != "metrics"},
        "harvest": store.info,
        "skipped_tasks": runner.skipped_tasks,
        "timings_seconds": {k: round(v, 2) for k, v in runner.timings.items()},
        "cells": [
            {
                k: c[k]
                for k in ("id", "method", "knob", "seed", "task", "status", "reason", "seconds")
            }
            for c in cells
        ],
        "train_logs": train_logs,
    }
