"""results.csv / results.md / loaders, from hand-written cells (no training)."""

import json

import pandas as pd
import pytest

from saebench.results import (
    COLUMNS,
    cells_to_frame,
    frontier_table,
    load_cells,
    load_results,
    load_run,
    summary_markdown,
    write_results,
)
from saebench.rundir import Cell, RunDir
from saebench.specs import MetricInfo, TaskSpec


def cell(method, knob, seed, task, metrics=None, status="ok", reason=None):
    return Cell(method, "knob", knob, seed, task, status, reason, metrics or {}, 0.1)


def task(name, metrics):
    return TaskSpec(name=name, description="", run=lambda ctx: {}, metrics=metrics)


# The summary's frontier columns are the tasks' headline metrics; probing marks none.
TASKS = {
    "frontier": task(
        "frontier",
        {"l0": MetricInfo(None, headline=True), "fvu": MetricInfo(False, headline=True)},
    ),
    "probing": task("probing", {"probe_acc_k*": MetricInfo(True)}),
}


CELLS = [
    cell("topk", 8, 0, "frontier", {"l0": 8.0, "fvu": 0.30}),
    cell("topk", 8, 1, "frontier", {"l0": 8.0, "fvu": 0.20}),
    cell("topk", 16, 0, "frontier", {"l0": 16.0, "fvu": 0.10}),
    cell("gated", 1.0, 0, "frontier", {"l0": 12.0, "fvu": 0.15}),
    cell("gated", 1.0, 0, "probing", {"probe_acc_k1": 0.75}),
    cell("gated", 2.0, 0, "frontier", status="failed", reason="training failed: TrainingDiverged"),
]


def write_cells(run_dir, cells):
    for c in cells:
        RunDir(run_dir).write_cell(c)


def test_frame_is_tidy_and_holds_only_ok_cells():
    frame = cells_to_frame(CELLS, model="toyworld", hook="blocks.1.hook_resid_pre")
    assert list(frame.columns) == COLUMNS
    # 2 + 2 + 2 + 2 + 1 metric values from ok cells; the failed cell contributes no row.
    assert len(frame) == 9
    assert not ((frame.method == "gated") & (frame.knob == 2.0)).any()
    assert set(frame.model) == {"toyworld"} and set(frame.hook) == {"blocks.1.hook_resid_pre"}


def test_frontier_table_averages_seeds_and_sorts_by_l0():
    table = frontier_table(cells_to_frame(CELLS, "m", "h"), TASKS)
    topk8 = table[(table.method == "topk") & (table.knob == 8)].iloc[0]
    assert topk8.fvu == pytest.approx(0.25)  # mean of seeds 0.30 and 0.20
    assert table[table.method == "topk"].l0.tolist() == [8.0, 16.0]
    assert list(table.columns[:4]) == ["method", "knob", "l0", "fvu"]


def test_summary_lists_other_tasks_and_failed_cells_with_reasons():
    text = summary_markdown(cells_to_frame(CELLS, "m", "h"), CELLS, TASKS)
    assert "## Frontier" in text and "| method | knob | seeds | l0 | fvu |" in text
    assert "| topk | 8 | 2 | 8 ± 0 | 0.25 ± 0.64 |" in text  # t(0.975, 1)·0.0707/√2 = 0.635
    assert "## probing" in text and "probe_acc_k1" in text and "0.75" in text
    assert "gated__2__seed0__frontier: training failed: TrainingDiverged" in text
    assert "matched L0" not in text  # gated has one ok sparsity level: nothing to match
    # the baselines named come from MethodSpec.calibration, not from a list in core
    assert "No calibration baseline in this run: add `identity`, `pca`, `random`" in text
    with_random = CELLS + [cell("random", 8, 0, "probing", {"probe_acc_k1": 0.6})]
    assert "No calibration baseline" not in summary_markdown(
        cells_to_frame(with_random, "m", "h"), with_random, TASKS
    )


def seeded_sweep(method, offsets, fvu_at, seeds=3, task_name="frontier"):
    """Cells of `method` at knobs 8, 16, 32 (L0 = knob), fvu_at(l0) + the seed's offset."""
    return [
        cell(method, k, seed, task_name, {"l0": float(k), "fvu": fvu_at(k) + offsets[seed]})
        for k in (8, 16, 32)
        for seed in range(seeds)
    ]


NOISE = [0.0, 0.01, -0.01]


def test_summary_compares_each_method_with_the_baselines_at_matched_l0():
    cells = (
        seeded_sweep("topk", NOISE, lambda k: 0.1)  # clearly better (lower FVU) than random
        + seeded_sweep("gated", NOISE[::-1], lambda k: 0.5)  # random's values: within noise
        + seeded_sweep("random", NOISE, lambda k: 0.5)
    )
    text = summary_markdown(cells_to_frame(cells, "m", "h"), cells, TASKS, ["random"])
    assert "## What this run can and cannot tell apart" in text
    head = "(1 metrics, each at the matched L0s of their overlap)"
    assert f"`topk` vs `random` {head}: **better on 1** (fvu), mixed on 0" in text
    assert f"`gated` vs `random` {head}: **better on 0**, mixed on 0, within noise on 1" in text
    assert "## At matched L0" in text and "| metric | L0 | method | value | Δ vs random |" in text
    # The matched L0s are the ends of the overlap (8, 32); Δ = −0.4 ± t(0.975, 4)·√(2·0.01²/3).
    assert "| fvu | 8 | topk | 0.1 [0.0752, 0.125] | -0.4 [-0.423, -0.377] better |" in text


def test_summary_shows_validity_and_leaves_uninformative_cells_out_of_failures():
    from saebench.specs import Validity

    check = Validity("raw_probe", 0.52, 0.49, 0.5, 0.05, "probe on raw activations")
    closed = cell("topk", 8, 0, "probing", status="uninformative", reason="validity check failed")
    closed.validity = [check.to_json()]
    cells = [*CELLS[:3], closed]
    text = summary_markdown(cells_to_frame(cells, "m", "h"), cells, TASKS)
    assert "## Validity" in text and "| probing | raw_probe | 0.52 | 0.49 | 0.5 | 0.05 |" in text
    assert "**no**" in text and "Uninformative on this model and hook: `probing`." in text
    assert "## Failed cells" not in text


def test_write_results_then_load_round_trip(tmp_path):
    write_cells(tmp_path, CELLS)
    cells = load_cells(tmp_path)
    assert [c.id for c in cells] == sorted(c.id for c in CELLS)
    frame = write_results(RunDir(tmp_path), cells, TASKS, model="m", hook="h")
    loaded = load_results(tmp_path)
    assert len(loaded) == len(frame) == 9
    pd.testing.assert_frame_equal(loaded, frame.reset_index(drop=True), check_dtype=False)
    assert (tmp_path / "results.md").read_text().startswith("# saebench results")
    aggregated = pd.read_csv(tmp_path / "results_aggregated.csv")
    topk8 = aggregated[(aggregated.method == "topk") & (aggregated.knob == 8)]
    assert topk8.set_index("metric").loc["fvu", "n_seeds"] == 2
    assert (tmp_path / "comparisons.csv").exists()
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left beside the outputs


def test_failed_write_leaves_the_previous_results_intact(tmp_path, monkeypatch):
    write_cells(tmp_path, CELLS)
    write_results(RunDir(tmp_path), CELLS, TASKS, model="m", hook="h")
    before = (tmp_path / "results.csv").read_text()
    write_cells(tmp_path, [cell("topk", 32, 0, "frontier", {"l0": 32.0, "fvu": 0.05})])

    def explode(self, path, **kwargs):
        path.write_text("model,hook\npartial")  # half a file, then the process dies
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", explode)
    with pytest.raises(OSError, match="disk full"):
        write_results(RunDir(tmp_path), load_cells(tmp_path), TASKS, model="m", hook="h")
    assert (tmp_path / "results.csv").read_text() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_loaders_name_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.csv.*saebench run directory"):
        load_results(tmp_path)
    with pytest.raises(FileNotFoundError, match="run.json.*saebench run directory"):
        load_run(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"config": {"preset": "smoke"}}))
    assert load_run(tmp_path)["config"]["preset"] == "smoke"


def test_calibration_baselines_are_the_methods_marked_so():
    frame = cells_to_frame(CELLS, "m", "h")
    text = summary_markdown(frame, CELLS, TASKS, calibration_methods=["gated"])
    assert "No calibration baseline" not in text  # gated ran, and is (here) a baseline
    text = summary_markdown(frame, CELLS, TASKS, calibration_methods=["noise"])
    assert "add `noise` to `--methods`" in text


def test_a_run_without_l0_says_which_registered_task_to_add():
    # Probing cells at two knobs for a method and a baseline, but no task reported l0.
    cells = [
        cell(method, k, seed, "probing", {"probe_acc_k1": 0.7 + 0.01 * seed})
        for method in ("topk", "random")
        for k in (8, 16)
        for seed in range(2)
    ]
    probing_only = {"probing": TASKS["probing"]}
    text = summary_markdown(cells_to_frame(cells, "m", "h"), cells, probing_only, ["random"])
    # The fix names the registered task that declares l0 (the built-in frontier), found
    # through the registry rather than a name written into core.
    assert "No task of this run reports `l0`" in text and "add `frontier` to --tasks" in text
    assert "None of this run's baselines has an L0 curve" not in text
    # A run that planned an L0 task whose cells all failed is not told to add it.
    planned = summary_markdown(cells_to_frame(cells, "m", "h"), cells, TASKS, ["random"])
    assert "No task of this run reports" not in planned


def test_a_method_swept_at_one_knob_is_compared_at_its_l0():
    # `--sweep topk=8` against random's curve: compared at topk's L0 (8), not left out.
    cells = [
        cell(method, k, seed, "frontier", {"l0": float(k), "fvu": fvu + 0.01 * seed})
        for seed in range(3)
        for method, k, fvu in (("topk", 8, 0.1), ("random", 4, 0.8), ("random", 16, 0.6))
    ]
    text = summary_markdown(cells_to_frame(cells, "m", "h"), cells, TASKS, ["random"])
    assert "`topk` vs `random` (1 metrics, at its one L0, the baseline read there)" in text
    assert "**better on 1** (fvu)" in text and "One L0 point only" not in text
    # Seeds that disagree on the one knob's L0 (6 vs 10): no L0 to read the baseline at.
    spread = [c for c in cells if c.method == "random"] + [
        cell("gated", 1.0, seed, "frontier", {"l0": l0, "fvu": 0.1})
        for seed, l0 in enumerate((6.0, 10.0))
    ]
    text = summary_markdown(cells_to_frame(spread, "m", "h"), spread, TASKS, ["random"])
    assert "No learned method to compare" in text and "`--sweep METHOD=v1,v2`" in text
