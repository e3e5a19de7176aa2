"""The regression gate's logic on synthetic run directories (fast; no training)."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from saebench import runner
from saebench.cli import cli
from saebench.errors import ConfigError
from saebench.gate import (
    EXIT_CANNOT_COMPARE,
    EXIT_OK,
    EXIT_REGRESSION,
    Baseline,
    assert_no_regression,
    build_baseline,
    compare,
    create_baseline,
    format_text,
    judge,
    junit_xml,
    load_baseline,
    markdown,
    noise_multiplier,
    pooled_sigma,
    rerun_request,
    run_and_check,
)
from saebench.rundir import CELL_STATUSES, Cell, RunDir
from saebench.testing import QualityGate

MODEL, HOOK = "toyworld", "blocks.1.hook_resid_pre"
# Seed values per (method, knob, task, metric): fvu is lower-better (floor 0.01),
# explained_variance higher-better (floor 0.01), l0 descriptive (never gated).
BASE = {
    ("topk", 16, "frontier", "fvu"): [0.30, 0.31, 0.32],
    ("topk", 16, "frontier", "explained_variance"): [0.70, 0.69, 0.68],
    ("topk", 16, "frontier", "l0"): [16.0, 16.0, 16.0],
    ("gated", 1.0, "frontier", "fvu"): [0.100, 0.101, 0.099],
}
CONFIG = {
    "model": MODEL,
    "model_source": "/somewhere/checkpoint",
    "hook": HOOK,
    "preset": "smoke",
    "dataset": None,
    "n_train_tokens": 24000,
    "n_eval_tokens": 3000,
    "d_in": 128,
    "d_sae": 512,
    "tasks": ["frontier"],
    "train.lr": 0.001,
    "methods": {"topk": [16], "gated": [1.0]},
}


def write_run(
    path, values=BASE, config=None, seeds=(0, 1, 2), failed=(), cell_files=True, meta=None
):
    """A run directory as saebench.runner writes it: cells/ (through RunDir), results.csv
    (ok cells) and run.json with its cell summary.

    `failed`: (method, knob, task) cells recorded as failed for every seed (no results rows).
    `cell_files=False` leaves out cells/, so only run.json's summary says what failed."""
    path.mkdir(parents=True)
    rows = ["model,hook,method,knob,seed,task,metric,value"]
    cells = {}
    for (method, knob, task, metric), per_seed in values.items():
        for seed, value in zip(seeds, per_seed):
            if (method, knob, task) in failed:
                continue
            rows.append(f"{MODEL},{HOOK},{method},{float(knob)},{seed},{task},{metric},{value!r}")
            cell = cells.setdefault(
                (method, knob, seed, task), Cell(method, "k", float(knob), seed, task, "ok")
            )
            cell.metrics[metric] = value
    for method, knob, task in failed:
        for seed in seeds:
            reason = "training failed: RuntimeError: NaN"
            cells[(method, knob, seed, task)] = Cell(
                method, "k", float(knob), seed, task, "failed", reason=reason
            )
    (path / "results.csv").write_text("\n".join(rows) + "\n")
    layout = RunDir(path)
    if cell_files:
        for cell in cells.values():
            layout.write_cell(cell)
    config = dict(CONFIG if config is None else config, seeds=list(seeds))
    summary_fields = ("id", "method", "knob", "seed", "task", "status", "reason", "seconds")
    run = {
        "status": "complete",
        "config": config,
        "versions": {"saebench": "0.1.0"},
        "cells": [{k: cell.to_json()[k] for k in summary_fields} for cell in cells.values()],
        **(meta or {}),
    }
    layout.write_run_json(run)
    return path


def shifted(metric_method, delta, values=BASE):
    """BASE with every seed of one (method, metric) moved by delta."""
    return {
        key: [v + delta for v in vals] if (key[0], key[3]) == metric_method else vals
        for key, vals in values.items()
    }


@pytest.fixture
def baseline(tmp_path):
    path = tmp_path / "baselines" / "b.json"
    create_baseline(write_run(tmp_path / "base"), path)
    return path


# --------------------------------------------------------------------------- formulas


def test_pooled_sigma_matches_hand_computation():
    # ((3−1)·2² + (3−1)·1²) / (3+3−2) = 10/4
    assert pooled_sigma(2.0, 3, 1.0, 3) == pytest.approx(math.sqrt(2.5))
    # a one-seed run contributes no spread estimate: the baseline σ is used as is
    assert pooled_sigma(0.7, 3, 0.0, 1) == pytest.approx(0.7)
    assert pooled_sigma(0.5, 5, 0.5, 4) == pytest.approx(0.5)


def test_noise_multiplier_is_the_two_sample_t_quantile():
    # df = 3 + 1 − 2 = 2: t⁻¹₂(p) = (2p − 1)·sqrt(2 / (1 − (2p − 1)²)), closed form
    p = 0.975
    a = 2 * p - 1
    t2 = a * math.sqrt(2 / (1 - a**2))
    assert noise_multiplier(1.959963984540054, 3, 1) == pytest.approx(t2 * math.sqrt(1 / 3 + 1))
    # many seeds on both sides: the normal quantile times the standard error of the difference
    assert noise_multiplier(3.0, 10_000, 10_000) == pytest.approx(3 * math.sqrt(2e-4), rel=1e-3)
    assert noise_multiplier(3.0, 1, 1) == math.inf
    # a strict z stays finite (Φ(z) itself rounds to 1.0 above z ≈ 8)
    assert 300 < noise_multiplier(8.0, 3, 1) < noise_multiplier(12.0, 3, 1) < math.inf


def test_a_wide_noise_band_is_said(tmp_path, baseline):
    three = compare(write_run(tmp_path / "three"), baseline)
    assert not any("wide noise band" in w for w in three.warnings)  # 3 vs 3 seeds: 5.4σ
    one_seed = {k: v[:1] for k, v in BASE.items()}
    one = compare(write_run(tmp_path / "one", values=one_seed, seeds=(0,)), baseline)
    (note,) = [w for w in one.warnings if "wide noise band" in w]
    assert "3 baseline seed(s) and 1 run seed(s)" in note and "22.2σ" in note


@pytest.mark.parametrize("base_n, run_n", [(3, 1), (3, 3), (8, 1)])
def test_seed_noise_alone_crosses_the_threshold_at_the_rate_z_says(base_n, run_n):
    """Brute force: draw baseline and rerun seeds from one normal law, apply the rule."""
    z, trials = 2.0, 200_000
    rng = np.random.default_rng(0)
    base = rng.normal(size=(trials, base_n))
    run = rng.normal(size=(trials, run_n))
    sigma = np.sqrt(
        (
            (base_n - 1) * base.var(axis=1, ddof=1)
            + (run_n - 1) * run.var(axis=1, ddof=int(run_n > 1))
        )
        / (base_n + run_n - 2)
    )
    worse_by = run.mean(axis=1) - base.mean(axis=1)
    rate = np.mean(worse_by > sigma * noise_multiplier(z, base_n, run_n))
    assert rate == pytest.approx(0.02275, abs=0.0015)  # Φ(−2)
    # the bare z·σ rule it replaced is not calibrated with a 3-seed σ: 6% beyond 3σ, not 0.13%
    if (base_n, run_n) == (3, 1):
        assert np.mean(worse_by > 3.0 * sigma) == pytest.approx(0.0608, abs=0.003)


@pytest.mark.parametrize(
    "higher, shift, expected",
    [
        (False, +1.5, "regressed"),  # lower is better, up by 1.5 thresholds
        (False, +0.5, "ok"),
        (False, -1.5, "improved"),
        (True, -1.5, "regressed"),  # higher is better, down by 1.5 thresholds
        (True, +1.5, "improved"),
        (None, +50.0, "info"),  # descriptive metrics are never gated
    ],
)
def test_judge_direction_and_threshold(higher, shift, expected):
    band = 0.05 * noise_multiplier(3.0, 3, 1)
    run_mean = 1.0 + shift * band
    verdict, sigma, threshold, delta = judge(higher, 0.0, 1.0, 0.05, 3, run_mean, 0.0, 1, 3.0)
    assert verdict == expected
    assert sigma == pytest.approx(0.05) and threshold == pytest.approx(band)
    assert delta == pytest.approx(run_mean - 1.0)


def test_floor_dominates_a_tiny_sigma():
    # σ = 0 (deterministic metric): any nonzero change would fail without the floor
    assert judge(False, 0.02, 1.0, 0.0, 3, 1.019, 0.0, 1, 3.0)[0] == "ok"
    assert judge(False, 0.02, 1.0, 0.0, 3, 1.021, 0.0, 1, 3.0)[:2] == ("regressed", 0.0)


# --------------------------------------------------------------------------- baseline


def test_baseline_stores_mean_std_and_plugin_directions(baseline):
    data = load_baseline(baseline)
    assert isinstance(data, Baseline) and data.format_version == 1
    entries = {(e.method, e.metric): e for e in data.entries}
    fvu = entries[("topk", "fvu")]
    assert fvu.mean == pytest.approx(0.31)
    assert fvu.std == pytest.approx(0.01)  # sample std (ddof=1) of 0.30, 0.31, 0.32
    assert fvu.n_seeds == 3 and fvu.values == {0: 0.30, 1: 0.31, 2: 0.32}
    assert (fvu.higher_is_better, fvu.floor) == (False, 0.01)  # declared by `frontier`
    assert entries[("topk", "explained_variance")].higher_is_better is True
    assert entries[("topk", "l0")].higher_is_better is None
    assert data.config["preset"] == "smoke" and data.versions["saebench"] == "0.1.0"
    # On disk the knob is spelled by knob_label, as in run directories and reports.
    on_disk = json.loads(baseline.read_text())
    assert {e["knob"] for e in on_disk["entries"]} == {"16", "1"}
    assert on_disk["format"] == "saebench-baseline" and on_disk["format_version"] == 1


def test_baseline_needs_three_seeds(tmp_path):
    run = write_run(tmp_path / "two", seeds=(0, 1))
    with pytest.raises(ConfigError, match=r"--seeds 3"):
        build_baseline(run)
    result = CliRunner().invoke(
        cli, ["baseline", "create", str(run), "--out", str(tmp_path / "b.json")]
    )
    assert result.exit_code == 2 and "needs ≥ 3" in result.output
    assert not (tmp_path / "b.json").exists()


def test_baseline_refuses_entries_with_failed_seeds(tmp_path):
    values = dict(BASE)
    values[("topk", 16, "frontier", "fvu")] = [0.3, 0.31]  # seed 2 missing
    with pytest.raises(ConfigError, match="fewer than 3 finished seeds"):
        build_baseline(write_run(tmp_path / "run", values=values))


def test_baseline_cli_default_out(tmp_path, monkeypatch):
    run = write_run(tmp_path / "myrun")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["baseline", "create", str(run)])
    assert result.exit_code == 0, result.output
    assert load_baseline(tmp_path / "results" / "baselines" / "myrun.json").entries
    assert "4 entries (3 gated) from 3 seeds" in result.output


# --------------------------------------------------------------------------- check


def test_unchanged_rerun_passes(tmp_path, baseline):
    result = compare(write_run(tmp_path / "rerun"), baseline)
    assert result.exit_code == EXIT_OK and not result.regressions
    assert {r.verdict for r in result.rows} == {"ok", "info"}


def test_degraded_method_fails_naming_the_metric(tmp_path, baseline):
    run = write_run(tmp_path / "worse", values=shifted(("topk", "fvu"), +0.1))
    result = CliRunner().invoke(cli, ["check", str(run), "--baseline", str(baseline)])
    assert result.exit_code == EXIT_REGRESSION, result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("REGRESSED"))
    assert "topk" in line and "fvu" in line and "+0.1" in line
    assert "gated" not in line


def test_change_within_noise_passes(tmp_path, baseline):
    # σ = 0.01, z = 3: a 0.02 worsening of FVU is seed noise
    run = write_run(tmp_path / "noisy", values=shifted(("topk", "fvu"), +0.02))
    assert compare(run, baseline).exit_code == EXIT_OK
    # ... but not with a strict z, where the floor (0.01) then decides
    assert compare(run, baseline, z=1.0).exit_code == EXIT_REGRESSION


def test_improvement_is_reported_not_failed(tmp_path, baseline):
    run = write_run(tmp_path / "better", values=shifted(("topk", "fvu"), -0.1))
    result = compare(run, baseline)
    assert result.exit_code == EXIT_OK
    assert [(r.method, r.metric) for r in result.improvements] == [("topk", "fvu")]
    assert "improved" in format_text(result)


def test_descriptive_metric_never_fails(tmp_path, baseline):
    run = write_run(tmp_path / "l0", values=shifted(("topk", "l0"), +50))
    assert compare(run, baseline).exit_code == EXIT_OK


def test_single_seed_run_uses_baseline_sigma(tmp_path, baseline):
    band = 0.01 * noise_multiplier(3.0, 3, 1)  # σ of the baseline's 3 seeds, no run spread
    for shift, verdict in ((band + 0.01 + 0.005, "regressed"), (band + 0.01 - 0.005, "ok")):
        one_seed = {k: v[:1] for k, v in shifted(("topk", "fvu"), shift).items()}
        run = write_run(tmp_path / f"one{shift}", values=one_seed, seeds=(0,))
        fvu = next(
            r for r in compare(run, baseline).rows if (r.method, r.metric) == ("topk", "fvu")
        )
        # seed 0 sits 0.01 below the baseline mean 0.31
        assert fvu.run_n == 1 and fvu.sigma == pytest.approx(0.01)
        assert fvu.threshold == pytest.approx(band) and fvu.delta == pytest.approx(shift - 0.01)
        assert fvu.verdict == verdict


def test_mismatched_config_exits_2_naming_the_field(tmp_path, baseline):
    config = dict(CONFIG, d_sae=1024)
    run = write_run(tmp_path / "wide", config=config)
    result = CliRunner().invoke(cli, ["check", str(run), "--baseline", str(baseline)])
    assert result.exit_code == EXIT_CANNOT_COMPARE
    assert "d_sae: baseline 512 vs run 1024" in result.output
    assert "preset" not in result.output.split("configs differ in")[1]


def test_model_path_and_seed_count_do_not_block(tmp_path, baseline):
    config = dict(CONFIG, model_source="/other/checkout/checkpoint")
    result = compare(write_run(tmp_path / "moved", config=config), baseline)
    assert result.exit_code == EXIT_OK
    assert any("model_source differs" in w for w in result.warnings)


PINNED = {"MKL_CBWR": "COMPATIBLE,STRICT", "torch_cpu_capability": "AVX2"}


def test_cpu_numerics_and_threads_are_kept_and_a_difference_is_said(tmp_path):
    cpu = {"device": "cpu", "cpu_numerics": PINNED, "torch_threads": 1}
    path = tmp_path / "b.json"
    created = create_baseline(write_run(tmp_path / "base", meta=cpu), path)
    assert created.cpu_numerics == PINNED and created.torch_threads == 1
    assert load_baseline(path).to_json() == created.to_json()

    same = compare(write_run(tmp_path / "same", meta=cpu), path)
    assert not [w for w in same.warnings if "numerics" in w or "threads" in w]

    other = {"device": "cpu", "cpu_numerics": dict(PINNED, MKL_CBWR=None), "torch_threads": 2}
    moved = compare(write_run(tmp_path / "other", meta=other), path)
    assert moved.exit_code == EXIT_OK  # said, never gated
    [numerics] = [w for w in moved.warnings if "CPU numerics differ" in w]
    assert "MKL_CBWR 'COMPATIBLE,STRICT' → None" in numerics and "saebench numerics" in numerics
    assert "torch_cpu_capability" not in numerics
    assert any("torch threads differ: baseline 1, run 2" in w for w in moved.warnings)
    older_run = compare(write_run(tmp_path / "older", meta={"device": "cpu"}), path)
    assert any("run records no CPU numerics" in w for w in older_run.warnings)

    gpu = {"device": "cuda", "cpu_numerics": {}, "torch_threads": 2}
    assert not [
        w
        for w in compare(write_run(tmp_path / "gpu", meta=gpu), path).warnings
        if "numerics" in w or "threads" in w
    ]


def test_a_baseline_without_cpu_numerics_says_to_recreate_it(tmp_path):
    path = tmp_path / "old.json"
    create_baseline(write_run(tmp_path / "base", meta={"device": "cpu"}), path)
    assert "cpu_numerics" not in json.loads(path.read_text())
    cpu = {"device": "cpu", "cpu_numerics": PINNED, "torch_threads": 1}
    result = compare(write_run(tmp_path / "new", meta=cpu), path)
    assert any("records no CPU numerics" in w and "baseline create" in w for w in result.warnings)


def test_library_versions_the_baseline_lacks_are_one_note_not_a_difference(tmp_path):
    path = tmp_path / "old.json"
    create_baseline(write_run(tmp_path / "base"), path)  # versions: saebench only
    versions = {"saebench": "0.1.0", "numpy": "2.4.0", "scipy": "1.16.0"}
    result = compare(write_run(tmp_path / "new", meta={"versions": versions}), path)
    [note] = [w for w in result.warnings if "version" in w]
    assert "does not record the version of numpy, scipy" in note and "baseline create" in note
    bumped = {"saebench": "0.2.0"}
    result = compare(write_run(tmp_path / "bumped", meta={"versions": bumped}), path)
    assert [w for w in result.warnings if "version" in w] == [
        "saebench version differs: baseline 0.1.0, run 0.2.0"
    ]


def test_run_without_a_baseline_method_cannot_compare(tmp_path, baseline):
    values = {k: v for k, v in BASE.items() if k[0] != "gated"}
    config = dict(CONFIG, methods={"topk": [16]})
    result = compare(write_run(tmp_path / "topk_only", values=values, config=config), baseline)
    assert result.exit_code == EXIT_CANNOT_COMPARE
    assert ("methods", {"topk": [16], "gated": [1.0]}, {"topk": [16]}) in result.config_diffs
    assert "gated knob=1 frontier/fvu" in format_text(result)


def test_extra_method_in_run_is_not_gated(tmp_path, baseline):
    values = {**BASE, ("l1", 0.01, "frontier", "fvu"): [0.9, 0.9, 0.9]}
    config = dict(CONFIG, methods={"topk": [16], "gated": [1.0], "l1": [0.01]})
    result = compare(write_run(tmp_path / "more", values=values, config=config), baseline)
    assert result.exit_code == EXIT_OK
    assert result.not_in_baseline == ["l1 knob=0.01 frontier"]


def test_failed_cell_is_a_regression_with_its_reason(tmp_path, baseline):
    run = write_run(tmp_path / "crash", failed=[("gated", 1.0, "frontier")])
    result = compare(run, baseline)
    assert result.exit_code == EXIT_REGRESSION
    missing = [r for r in result.regressions if r.verdict == "missing"]
    assert [(r.method, r.metric) for r in missing] == [("gated", "fvu")]
    assert "3 of 3 cell(s) failed: training failed: RuntimeError: NaN" in format_text(result)


def test_metric_no_longer_reported_is_a_regression(tmp_path, baseline):
    values = {k: v for k, v in BASE.items() if k != ("topk", 16, "frontier", "fvu")}
    result = compare(write_run(tmp_path / "nofvu", values=values), baseline)
    assert result.exit_code == EXIT_REGRESSION
    assert result.regressions[0].reason == "the task no longer reports this metric"


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "does not exist"),
        ("{not json", "not valid JSON"),
        ('{"entries": []}', "not a saebench baseline"),
        (
            '{"format": "saebench-baseline", "format_version": 1, "config": {}, "entries": [{}]}',
            "entry 0 lacks",
        ),
    ],
)
def test_missing_or_corrupt_baseline_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "baseline.json"
    if content is not None:
        path.write_text(content)
    run = write_run(tmp_path / "run")
    result = CliRunner().invoke(
        cli, ["check", str(run), "--baseline", str(path), "--junit", str(tmp_path / "gate.xml")]
    )
    assert result.exit_code == EXIT_CANNOT_COMPARE
    assert message in result.output and "saebench baseline create" in result.output
    assert "Traceback" not in result.output
    suite = ET.parse(tmp_path / "gate.xml").getroot().find("testsuite")
    assert suite.get("errors") == "1"


def test_missing_run_dir_is_a_clear_error(tmp_path, baseline):
    result = CliRunner().invoke(cli, ["check", str(tmp_path / "nope"), "--baseline", str(baseline)])
    assert result.exit_code == EXIT_CANNOT_COMPARE and "does not exist" in result.output


def test_disagreeing_plugin_direction_is_reported(tmp_path, baseline):
    data = json.loads(baseline.read_text())
    for entry in data["entries"]:  # edit the file as a person would
        if entry["metric"] == "fvu":
            entry["floor"] = 0.5
    baseline.write_text(json.dumps(data))
    result = compare(write_run(tmp_path / "rerun"), baseline)
    assert any("fvu" in w and "floor=0.01" in w and "floor=0.5" in w for w in result.warnings)


def test_junit_and_markdown_reports(tmp_path, baseline):
    run = write_run(tmp_path / "worse", values=shifted(("topk", "fvu"), +0.1))
    junit, md = tmp_path / "out" / "gate.xml", tmp_path / "out" / "gate.md"
    result = CliRunner().invoke(
        cli,
        [
            "check",
            str(run),
            "--baseline",
            str(baseline),
            "--junit",
            str(junit),
            "--markdown",
            str(md),
        ],
    )
    assert result.exit_code == EXIT_REGRESSION
    suite = ET.parse(junit).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == int(suite.get("tests")) == 3  # gated metrics only (l0 is descriptive)
    failed = [c for c in cases if c.find("failure") is not None]
    assert [(c.get("classname"), c.get("name")) for c in failed] == [
        ("saebench.toyworld.topk.knob16.frontier", "fvu")
    ]
    assert suite.get("failures") == "1"
    text = md.read_text()
    assert text.startswith("# saebench quality gate: ❌ REGRESSION")
    assert "| REGRESSED | topk | 16 | frontier | fvu |" in text


def test_junit_for_incomparable_run_has_one_error(tmp_path, baseline):
    result = compare(write_run(tmp_path / "wide", config=dict(CONFIG, preset="default")), baseline)
    root = ET.fromstring(junit_xml(result).split("\n", 1)[1])
    error = root.find("testsuite/testcase/error")
    assert error is not None and "preset" in error.get("message")


def test_bad_z_is_rejected(tmp_path, baseline):
    with pytest.raises(ConfigError, match="positive"):
        compare(write_run(tmp_path / "run"), baseline, z=0)


def test_assert_no_regression_helper(tmp_path, baseline):
    assert_no_regression(write_run(tmp_path / "same"), baseline)
    worse = write_run(tmp_path / "worse", values=shifted(("gated", "fvu"), +0.2))
    with pytest.raises(AssertionError, match=r"REGRESSION[\s\S]*gated .*fvu"):
        assert_no_regression(worse, baseline)


def test_quality_gate_fixture_from_saebench_testing(saebench_quality_gate, tmp_path, baseline):
    # provided by the saebench.testing pytest plugin (pytest11 entry point): one line in CI
    assert saebench_quality_gate(baseline, run_dir=write_run(tmp_path / "same")).exit_code == 0
    worse = write_run(tmp_path / "worse", values=shifted(("topk", "explained_variance"), -0.2))
    with pytest.raises(AssertionError, match="explained_variance"):
        saebench_quality_gate(baseline, run_dir=worse)


def test_failed_cell_reason_from_the_run_json_summary(tmp_path, baseline):
    # A run whose cells/ folder is gone still names why an entry is missing.
    run = write_run(tmp_path / "crash", failed=[("gated", 1.0, "frontier")], cell_files=False)
    result = compare(run, baseline)
    assert result.exit_code == EXIT_REGRESSION
    assert "3 of 3 cell(s) failed: training failed: RuntimeError: NaN" in format_text(result)


def test_knobs_are_compared_by_value(tmp_path, baseline):
    # Old baselines spelled knobs with "%.10g" ("16", "1"); runs write 16.0 / 1.0 to the CSV and
    # run.json may hold 16 or 16.0: all the same knob.
    data = json.loads(baseline.read_text())
    for entry in data["entries"]:
        entry["knob"] = {"16": "16", "1": "1.0"}[entry["knob"]]
    baseline.write_text(json.dumps(data))
    config = dict(CONFIG, methods={"topk": [16.0], "gated": [1]})
    result = compare(write_run(tmp_path / "rerun", config=config), baseline)
    assert not result.not_covered and {r.knob for r in result.rows} == {"16", "1"}
    assert ("methods", CONFIG["methods"], config["methods"]) not in result.config_diffs


# --------------------------------------------------------------------------- check --rerun


class FakeRun:
    """Stands in for saebench.runner.run: records the request, writes a finished run."""

    def __init__(self, values=BASE, error: Exception | None = None):
        self.values, self.error, self.requests = values, error, []

    def __call__(self, request, echo=print):
        self.requests.append(request)
        echo("model toyworld on cpu (fake)")
        if self.error is not None:
            raise self.error
        seeds = tuple(range(request.seeds))
        values = {key: per_seed[: len(seeds)] for key, per_seed in self.values.items()}
        return write_run(Path(request.out), values=values, seeds=seeds)


@pytest.fixture
def fake_run(monkeypatch):
    fake = FakeRun()
    monkeypatch.setattr(runner, "run", fake)
    return fake


def test_check_rerun_repeats_the_baseline_config(tmp_path, baseline, fake_run):
    out = tmp_path / "rerun"
    result = CliRunner().invoke(
        cli, ["check", "--rerun", str(baseline), "--out", str(out), "--seeds", "2"]
    )
    assert result.exit_code == EXIT_OK, result.output
    assert "PASS" in result.output and (out / "run.json").exists()
    (request,) = fake_run.requests
    assert (request.model, request.hook, request.preset) == (MODEL, HOOK, "smoke")
    assert sorted(request.methods) == ["gated", "topk"] and request.tasks == ["frontier"]
    assert request.sweeps == {"topk": [16.0], "gated": [1.0]}
    assert (request.seeds, request.out, request.dataset) == (2, out, None)
    assert request.device == "auto"  # the baseline records no device: the runner's default
    assert request.progress is False and request.command.startswith("saebench check --rerun")


def test_check_rerun_defaults_to_one_seed_in_a_temp_dir(baseline, fake_run):
    result = CliRunner().invoke(cli, ["check", "--rerun", str(baseline), "--device", "cpu"])
    assert result.exit_code == EXIT_OK, result.output
    (request,) = fake_run.requests
    assert (request.seeds, request.device) == (1, "cpu")
    assert not request.out.exists()  # the temporary run directory is removed afterwards


def test_check_rerun_uses_the_baselines_device(tmp_path, baseline, fake_run):
    data = json.loads(baseline.read_text())
    data["device"] = "cpu"
    baseline.write_text(json.dumps(data))
    request = rerun_request(load_baseline(baseline), tmp_path / "out")
    assert request.device == "cpu" and request.seeds == 1


def test_check_rerun_trains_each_sae_on_the_baselines_budget(tmp_path, baseline):
    assert rerun_request(load_baseline(baseline), tmp_path / "a").train_tokens is None
    data = json.loads(baseline.read_text())
    data["config"]["train.total_tokens"] = 192_000  # made with --train-tokens 192000
    baseline.write_text(json.dumps(data))
    assert rerun_request(load_baseline(baseline), tmp_path / "b").train_tokens == 192_000


def test_check_rerun_trains_each_sae_at_the_baselines_width(tmp_path, baseline):
    data = json.loads(baseline.read_text())
    preset_width = data["config"]["d_sae"]
    assert rerun_request(load_baseline(baseline), tmp_path / "a").expansion is None
    data["config"]["d_sae"] = 2 * data["config"]["d_in"]  # made with --expansion 2
    assert data["config"]["d_sae"] != preset_width
    baseline.write_text(json.dumps(data))
    assert rerun_request(load_baseline(baseline), tmp_path / "b").expansion == 2


def test_check_rerun_regression_exits_1_with_reports(tmp_path, baseline, monkeypatch):
    # a one-seed rerun against 3 baseline seeds: the band is 22σ = 0.22 here
    monkeypatch.setattr(runner, "run", FakeRun(values=shifted(("topk", "fvu"), +0.3)))
    junit, md = tmp_path / "gate.xml", tmp_path / "gate.md"
    result = CliRunner().invoke(
        cli,
        ["check", "--rerun", str(baseline), "--junit", str(junit), "--markdown", str(md)],
    )
    assert result.exit_code == EXIT_REGRESSION, result.output
    assert any(ln.startswith("REGRESSED") and "fvu" in ln for ln in result.output.splitlines())
    assert ET.parse(junit).getroot().find("testsuite").get("failures") == "1"
    assert md.read_text().startswith("# saebench quality gate: ❌ REGRESSION")


def test_check_rerun_crash_exits_2_and_still_writes_reports(tmp_path, baseline, monkeypatch):
    monkeypatch.setattr(runner, "run", FakeRun(error=RuntimeError("CUDA out of memory")))
    junit = tmp_path / "gate.xml"
    result = CliRunner().invoke(cli, ["check", "--rerun", str(baseline), "--junit", str(junit)])
    assert result.exit_code == EXIT_CANNOT_COMPARE
    assert "crashed (RuntimeError: CUDA out of memory)" in result.output
    assert "model toyworld on cpu (fake)" in result.output  # the run's log, shown on a crash
    assert ET.parse(junit).getroot().find("testsuite").get("errors") == "1"


def test_check_rerun_of_a_corrupt_baseline_runs_nothing(tmp_path, fake_run):
    path = tmp_path / "b.json"
    path.write_text("{not json")
    result = CliRunner().invoke(cli, ["check", "--rerun", str(path)])
    assert result.exit_code == EXIT_CANNOT_COMPARE and "not valid JSON" in result.output
    assert not fake_run.requests


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"preset": None}, "its config lacks ['preset'], so its run cannot be repeated"),
        ({"methods": {"topk": "16"}}, "config field 'methods' is {'topk': '16'}, which must be"),
        ({"tasks": []}, "config field 'tasks' is [], which must be a list of task names"),
    ],
)
def test_rerun_needs_a_complete_config(baseline, fake_run, edit, message):
    data = json.loads(baseline.read_text())
    for name, value in edit.items():
        if value is None:
            del data["config"][name]
        else:
            data["config"][name] = value
    baseline.write_text(json.dumps(data))
    result = CliRunner().invoke(cli, ["check", "--rerun", str(baseline)])
    assert result.exit_code == EXIT_CANNOT_COMPARE and message in result.output, result.output
    assert "saebench baseline create" in result.output and not fake_run.requests


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "exactly one of RUN_DIR"),
        (["RUN", "--rerun", "B"], "exactly one of RUN_DIR"),
        (["RUN"], "Missing option '--baseline'"),
        (["RUN", "--baseline", "B", "--seeds", "3"], "only apply with --rerun"),
        (["--rerun", "B", "--baseline", "B"], "drop --baseline"),
        (["--rerun", "B", "--seeds", "0"], "--seeds"),
    ],
)
def test_check_arguments(args, message, fake_run):
    result = CliRunner().invoke(cli, ["check", *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not fake_run.requests


def test_bad_z_is_rejected_before_the_rerun(baseline, fake_run):
    result = CliRunner().invoke(cli, ["check", "--rerun", str(baseline), "--z", "-1"])
    assert result.exit_code == EXIT_CANNOT_COMPARE and "positive" in result.output
    assert not fake_run.requests


def test_run_and_check(tmp_path, baseline, monkeypatch, fake_run):
    assert run_and_check(baseline, tmp_path / "same").exit_code == EXIT_OK
    monkeypatch.setattr(runner, "run", FakeRun(values=shifted(("gated", "fvu"), +0.2)))
    with pytest.raises(AssertionError, match=r"REGRESSION[\s\S]*gated .*fvu"):
        run_and_check(baseline, tmp_path / "worse")


def test_quality_gate_fixture_reruns_the_baseline(saebench_quality_gate, baseline, fake_run):
    assert isinstance(saebench_quality_gate, QualityGate)
    assert saebench_quality_gate(baseline, seeds=2, device="cpu").exit_code == EXIT_OK
    (request,) = fake_run.requests
    assert (request.seeds, request.device, request.out.name) == (2, "cpu", "saebench-gate-run")


def test_gate_is_a_builtin_plugin_with_its_commands():
    import saebench.gate
    from saebench import plugins

    plugins.load_plugins()
    assert plugins.pm.get_plugin("saebench.gate") is saebench.gate
    callers = {h.name for h in plugins.pm.get_hookcallers(saebench.gate)}
    assert callers == {"register_commands"}
    assert {"check", "baseline"} <= set(cli.commands)


def test_a_nan_seed_is_a_regression_naming_it(tmp_path, baseline):
    values = dict(BASE)
    values[("gated", 1.0, "frontier", "fvu")] = [0.100, float("nan"), 0.099]
    result = compare(write_run(tmp_path / "nan", values=values), baseline)
    assert result.exit_code == EXIT_REGRESSION
    (row,) = result.regressions
    assert (row.method, row.metric, row.verdict) == ("gated", "fvu", "missing")
    assert row.reason.startswith("1 of 3 seed(s) reported nan (not a finite number")


# --------------------------------------------------------------------------- no ok cell


def _with_command(run, command):
    """Record the command line in run.json, as `saebench run` does."""
    layout = RunDir(run)
    layout.write_run_json(dict(layout.read_run_json(), command=command))
    return run


def test_baseline_refuses_a_method_that_failed_on_every_seed(tmp_path):
    run = write_run(tmp_path / "run", failed=[("gated", 1.0, "frontier")])
    with pytest.raises(ConfigError) as error:
        build_baseline(run)
    text = str(error.value)
    assert "1 configured (method, knob, task) of the run has no ok cell" in text
    assert "gated knob=1 on frontier: 3 of 3 cell(s) failed: training failed: RuntimeError" in text
    assert "--retry-failed" in text and f"{run}/results.md" in text
    # The CLI: exit 2, one line naming it, no baseline written, no traceback.
    out = tmp_path / "b.json"
    result = CliRunner().invoke(cli, ["baseline", "create", str(run), "--out", str(out)])
    assert result.exit_code == 2 and "gated knob=1 on frontier" in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_baseline_fix_names_the_runs_own_command(tmp_path):
    command = "saebench run --methods topk,gated --preset smoke --seeds 3 --out /tmp/base"
    run = _with_command(write_run(tmp_path / "run", failed=[("gated", 1.0, "frontier")]), command)
    with pytest.raises(ConfigError, match=rf"rerun `{command} --retry-failed`"):
        build_baseline(run)


def test_baseline_refuses_a_planned_entry_without_any_cell(tmp_path):
    # The config plans loss_recovered too, but no cell of it was ever recorded.
    run = write_run(tmp_path / "run", config=dict(CONFIG, tasks=["frontier", "loss_recovered"]))
    with pytest.raises(ConfigError) as error:
        build_baseline(run)
    text = str(error.value)
    assert "2 configured (method, knob, task) of the run have no ok cell" in text
    assert "topk knob=16 on loss_recovered: no cell recorded (the run is incomplete" in text
    assert "gated knob=1 on loss_recovered" in text


def test_baseline_refuses_a_metric_that_is_nan_on_every_seed(tmp_path):
    values = dict(BASE)
    values[("gated", 1.0, "frontier", "fvu")] = [math.nan] * 3
    with pytest.raises(ConfigError) as error:
        build_baseline(write_run(tmp_path / "run", values=values))
    assert "fewer than 3 finished seeds" in str(error.value)
    assert "gated knob=1 frontier/fvu (0 finite seeds)" in str(error.value)


@pytest.mark.skipif("uninformative" not in CELL_STATUSES, reason="no uninformative cell status")
def test_baseline_accepts_an_entry_whose_cells_are_uninformative_on_purpose(tmp_path):
    values = {k: v for k, v in BASE.items() if k[0] != "gated"}
    run = write_run(tmp_path / "run", values=values)
    for seed in (0, 1, 2):
        why = "too few live latents to probe"
        RunDir(run).write_cell(Cell("gated", "k", 1.0, seed, "frontier", "uninformative", why))
    baseline = build_baseline(run)
    assert {e.method for e in baseline.entries} == {"topk"}


def test_check_fails_when_a_baseline_method_failed_on_every_seed_and_task(tmp_path, baseline):
    run = write_run(tmp_path / "crash", failed=[("topk", 16, "frontier")])
    result = CliRunner().invoke(cli, ["check", str(run), "--baseline", str(baseline)])
    assert result.exit_code == EXIT_REGRESSION, result.output
    missing = [ln for ln in result.output.splitlines() if ln.startswith("MISSING")]
    assert len(missing) == 2 and all("topk" in ln for ln in missing)  # fvu, explained_variance
    assert "topk knob=16 frontier/fvu: 3 of 3 cell(s) failed: training failed" in result.output


def test_check_fails_when_a_baseline_entry_has_no_cell_at_all(tmp_path, baseline):
    values = {k: v for k, v in BASE.items() if k[0] != "gated"}
    result = compare(write_run(tmp_path / "partial", values=values), baseline)
    assert result.exit_code == EXIT_REGRESSION
    (row,) = result.regressions
    assert (row.method, row.verdict) == ("gated", "missing")
    assert row.reason.startswith("no finished cell (the run is incomplete")


def test_extra_run_method_with_no_ok_cell_fails_the_check_naming_it(tmp_path, baseline):
    config = dict(CONFIG, methods={"topk": [16], "gated": [1.0], "l1": [0.01]})
    run = write_run(tmp_path / "more", config=config, failed=[("l1", 0.01, "frontier")])
    result = compare(run, baseline)
    assert result.exit_code == EXIT_REGRESSION and result.status == "REGRESSION"
    assert not result.regressions and result.not_in_baseline == []
    reason = "3 of 3 cell(s) failed: training failed: RuntimeError: NaN"
    assert result.unfinished == [f"l1 knob=0.01 frontier: {reason}"]
    text = format_text(result)
    assert "not in the baseline, and no ok cell (fails the check)" in text
    assert f"  l1 knob=0.01 frontier: {reason}" in text and "1 configured entry" in text
    suite = ET.fromstring(junit_xml(result).split("\n", 1)[1]).find("testsuite")
    (case,) = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert case.get("name") == "l1 knob=0.01 frontier" and suite.get("failures") == "1"
    assert "l1 knob=0.01 frontier" in markdown(result)


def test_a_baseline_that_silently_lost_a_method_is_reported(tmp_path, baseline):
    # Made before `baseline create` refused such runs: its config plans gated, no entry has it.
    data = json.loads(baseline.read_text())
    data["entries"] = [e for e in data["entries"] if e["method"] != "gated"]
    baseline.write_text(json.dumps(data))
    result = compare(write_run(tmp_path / "rerun"), baseline)
    assert result.not_in_baseline == ["gated knob=1 frontier"]
    (note,) = [w for w in result.warnings if "no entry" in w]
    assert "plans gated knob=1 frontier" in note and "not gated" in note
    assert "saebench baseline create" in note
    assert "not in the baseline (not gated): gated knob=1 frontier" in markdown(result)
