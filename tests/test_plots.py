"""Plots from a synthetic results frame: what gets drawn, what is skipped, nothing crashes.

Metric directions and headline marks come from the registered frontier and loss_recovered
tasks (core names no task's metrics), so the heatmap tests use the real TaskSpecs."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from saebench import plugins
from saebench.plots import make_plots, matched_l0_table
from saebench.rundir import RunDir, SaeKey
from saebench.specs import MetricInfo, TaskSpec

TASKS = {name: plugins.get_tasks()[name] for name in ("frontier", "loss_recovered")}


def frame_from(points):
    """points: {(method, knob): {metric: value}} -> tidy frame with one seed."""
    task_of = {"delta_ce": "loss_recovered", "loss_recovered_zero": "loss_recovered"}
    rows = [
        {
            "model": "m",
            "hook": "h",
            "method": method,
            "knob": knob,
            "seed": 0,
            "task": task_of.get(metric, "frontier"),
            "metric": metric,
            "value": value,
        }
        for (method, knob), metrics in points.items()
        for metric, value in metrics.items()
    ]
    return pd.DataFrame(rows)


# FVU linear in log2(L0) so the interpolation has a hand-computable answer.
POINTS = {
    ("topk", 4): {"l0": 4.0, "fvu": 0.40, "delta_ce": 0.8},
    ("topk", 16): {"l0": 16.0, "fvu": 0.20, "delta_ce": 0.4},
    ("topk", 64): {"l0": 64.0, "fvu": 0.00, "delta_ce": 0.1},
    ("gated", 1.0): {"l0": 8.0, "fvu": 0.50, "delta_ce": 0.9},
    ("gated", 2.0): {"l0": 32.0, "fvu": 0.30, "delta_ce": 0.5},
}


# A calibration baseline with an L0 curve: what the verdict heatmap compares against.
WITH_RANDOM = {
    **POINTS,
    ("random", 4): {"l0": 4.0, "fvu": 0.60, "delta_ce": 1.5},
    ("random", 16): {"l0": 16.0, "fvu": 0.50, "delta_ce": 1.2},
    ("random", 64): {"l0": 64.0, "fvu": 0.40, "delta_ce": 1.0},
}


def test_matched_l0_interpolates_in_log_l0():
    table = matched_l0_table(frame_from(POINTS), TASKS)
    target = table.attrs["l0"]
    assert target == pytest.approx(16.0)  # middle of geomspace(8, 32, 3)
    assert table.loc["topk", "fvu"] == pytest.approx(0.20)
    # gated: L0 8 -> 0.5, 32 -> 0.3; 16 is halfway in log L0.
    assert table.loc["gated", "fvu"] == pytest.approx(0.40)
    assert table.loc["gated", "delta_ce"] == pytest.approx(0.70)


def test_matched_l0_is_empty_without_overlap():
    disjoint = {
        ("topk", 4): {"l0": 4.0, "fvu": 0.4},
        ("topk", 8): {"l0": 8.0, "fvu": 0.3},
        ("gated", 1.0): {"l0": 20.0, "fvu": 0.2},
        ("gated", 2.0): {"l0": 40.0, "fvu": 0.1},
    }
    assert matched_l0_table(frame_from(disjoint), TASKS).empty


def test_make_plots_draws_frontiers_density_and_heatmap(tmp_path):
    run_dir = RunDir(tmp_path)
    for sae in (SaeKey("topk", 16, 0), SaeKey("gated", 1.0, 0)):
        directory = run_dir.artifacts_dir(sae, "frontier")
        directory.mkdir(parents=True)
        (run_dir.sae_dir(sae) / "cfg.json").write_text("{}")
        np.save(directory / "feature_density.npy", np.array([0.0, 1e-4, 1e-3, 1e-2, 0.2]))
        curve = {
            "tokens": [100, 200, 300, 400],
            "fvu": [0.5, 0.3, 0.2, 0.19],
            "l0": [40.0, 30.0, 20.0, 19.0],
            "dead_fraction": [0.0, 0.0, 0.01, 0.02],
        }
        log = {"method": sae.method, "trainable": True, "curve": curve}
        (run_dir.sae_dir(sae) / "train_log.json").write_text(json.dumps(log))
    messages = make_plots(run_dir, frame_from(WITH_RANDOM), TASKS)
    assert all(m.startswith("wrote") for m in messages), messages
    for name in (
        "training_curves.png",
        "frontier_l0_fvu.png",
        "frontier_l0_delta_ce.png",
        "feature_density.png",
        "matched_l0_heatmap.png",
    ):
        assert (tmp_path / "plots" / name).stat().st_size > 1000


def test_missing_inputs_and_broken_task_plots_are_skipped_with_reasons(tmp_path):
    def broken_plot(results, run_dir):
        raise RuntimeError("task plot bug")

    def task_plot(results, run_dir):
        # a task sees its own rows plus every SAE's l0 (the x-axis of frontier plots)
        assert set(results.task) <= {"frontier"} and "l0" in set(results.metric)
        path = run_dir.plot_path("own.txt")
        path.write_text("drawn")
        return [path]

    tasks = {
        "broken": TaskSpec(
            name="broken", description="", run=lambda ctx: {}, metrics={}, plot=broken_plot
        ),
        "frontier": TaskSpec(
            name="frontier",
            description="",
            run=lambda ctx: {},
            metrics={"l0": MetricInfo(None)},
            plot=task_plot,
        ),
    }
    # One sparsity level per method: no L0 range to interpolate over, so no heatmap.
    only_fvu = {("topk", 16): {"l0": 16.0, "fvu": 0.2}, ("gated", 1.0): {"l0": 8.0, "fvu": 0.5}}
    messages = make_plots(RunDir(tmp_path), frame_from(only_fvu), tasks)
    text = "\n".join(messages)
    assert "skipped matched_l0_heatmap.png: needs a calibration baseline with ≥ 2" in text
    assert "plot failed: RuntimeError: task plot bug" in text
    assert (tmp_path / "plots" / "own.txt").read_text() == "drawn"


def test_frontier_task_plots_draw_what_they_have_and_skip_the_rest(tmp_path):
    run_dir = RunDir(tmp_path)
    run_dir.plots_dir.mkdir()
    only_fvu = frame_from(
        {("topk", 16): {"l0": 16.0, "fvu": 0.2}, ("gated", 1.0): {"l0": 8.0, "fvu": 0.5}}
    )
    # FVU frontier drawn; no densities saved, so no density histogram
    assert TASKS["frontier"].plot(only_fvu, run_dir) == [run_dir.plot_path("frontier_l0_fvu.png")]
    assert TASKS["loss_recovered"].plot(only_fvu, run_dir) == []  # no delta_ce: nothing to draw


def test_heatmap_annotation_survives_nan(tmp_path):
    # gated only covers L0 8..32 for fvu but has no delta_ce at all: its cells are NaN, not a crash.
    points = {k: dict(v) for k, v in WITH_RANDOM.items()}
    for key in (("gated", 1.0), ("gated", 2.0)):
        del points[key]["delta_ce"]
    table = matched_l0_table(frame_from(points), TASKS)
    assert math.isnan(table.loc["gated", "delta_ce"])
    messages = make_plots(RunDir(tmp_path), frame_from(points), TASKS)
    assert any("wrote" in m and "heatmap" in m for m in messages), messages


def test_heatmap_takes_directional_metrics_from_every_task():
    frame = frame_from(POINTS)
    extra = pd.DataFrame(
        [
            {
                "model": "m",
                "hook": "h",
                "method": method,
                "knob": knob,
                "seed": 0,
                "task": "probing",
                "metric": metric,
                "value": value,
            }
            for (method, knob), acc in {
                ("topk", 4): 0.6,
                ("topk", 16): 0.7,
                ("topk", 64): 0.8,
                ("gated", 1.0): 0.9,
                ("gated", 2.0): 0.7,
            }.items()
            for metric, value in (("probe_acc", acc), ("n_probes", 5.0))
        ]
    )
    tasks = {
        "probing": TaskSpec(
            name="probing",
            description="",
            run=lambda ctx: {},
            metrics={"probe_acc": MetricInfo(True), "n_probes": MetricInfo(None)},
        )
    }
    table = matched_l0_table(pd.concat([frame, extra]), {**TASKS, **tasks})
    assert "probe_acc" in table.columns and "n_probes" not in table.columns  # descriptive: out
    assert table.loc["gated", "probe_acc"] == pytest.approx(0.8)  # halfway 0.9 -> 0.7
    assert table.attrs["higher_is_better"] == {"fvu": False, "delta_ce": False, "probe_acc": True}


def test_heatmap_keeps_aggregates_and_drops_their_per_concept_breakdowns():
    from saebench.plots import is_breakdown

    names = [
        "gt_auroc_mean",
        "gt_auroc_day",
        "ravel_cause",
        "ravel_cause_country",
        "probe_acc_k2_mean",
        "probe_acc_k20_mean",
        "probe_acc_k2_tense",
        "ioi_sae_necessity",
    ]
    kept = [m for m in names if not is_breakdown(m, names)]
    assert kept == [
        "gt_auroc_mean",
        "ravel_cause",
        "probe_acc_k2_mean",
        "probe_acc_k20_mean",
        "ioi_sae_necessity",
    ]


def test_sparse_probing_plot_writes_accuracy_vs_l0_per_k(tmp_path):
    from saebench_tasks import sparse_probing

    rows = [
        {
            "model": "m",
            "hook": "h",
            "method": method,
            "knob": 16,
            "seed": 0,
            "task": "sparse_probing",
            "metric": f"{prefix}probe_acc_k{k}_mean",
            "value": 0.5 + 0.02 * k,
        }
        for method in ("topk", "relu")
        for k in (1, 2, 5)
        for prefix in ("", "raw_")
    ]
    # The x-axis is each SAE's L0 (make_plots passes every SAE's l0 rows to a task's plot).
    rows += [
        {**rows[0], "method": method, "knob": knob, "task": "frontier", "metric": "l0", "value": l0}
        for method in ("topk", "relu")
        for knob, l0 in ((16, 16.0),)
    ]
    frame = pd.DataFrame(rows)
    paths = sparse_probing.plot(frame, RunDir(tmp_path))
    # The smallest and the largest probe, with chance and the raw references as lines.
    assert [p.name for p in paths] == ["sparse_probing_k1.png", "sparse_probing_k5.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)
    assert sparse_probing.plot(frame.iloc[:0], RunDir(tmp_path)) == []  # nothing to draw
