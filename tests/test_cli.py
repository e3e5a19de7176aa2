"""End to end through the real CLI on the smoke preset (toy-world model, offline)."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from saebench.cli import cli


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "--methods",
            "topk,random",
            "--preset",
            "smoke",
            "--tasks",
            "frontier,loss_recovered",
            "--device",
            "auto",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.mark.slow  # shares one ~1 min smoke run (real toy model)
def test_cli_run_writes_results_run_json_and_plots(smoke_run):
    out, output = smoke_run
    assert f"results: {out}/results.csv" in output
    frame = pd.read_csv(out / "results.csv")
    assert list(frame.columns) == [
        "model",
        "hook",
        "method",
        "knob",
        "seed",
        "task",
        "metric",
        "value",
    ]
    assert set(frame.method) == {"topk", "random"}
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["config"]["model"] == "toyworld"
    assert {"saebench", "torch", "transformer_lens"} <= set(run["versions"])
    from importlib.metadata import version

    assert run["versions"]["transformer_lens"] == version("transformer_lens")
    assert run["device"] == "cpu" or run["device"].startswith("cuda")
    assert run["timings_seconds"] and all(v >= 0 for v in run["timings_seconds"].values())
    assert run["config"]["seeds"] and run["harvest"]
    assert all(cell["status"] == "ok" for cell in run["cells"])
    for plot in ("frontier_l0_fvu.png", "frontier_l0_delta_ce.png", "feature_density.png"):
        assert (out / "plots" / plot).stat().st_size > 1000
    assert (out / "saes/topk/16/seed0/sae_weights.safetensors").exists()
    frontier_dir = out / "saes/topk/16/seed0/artifacts/frontier"
    histogram = json.loads((frontier_dir / "log10_density_histogram.json").read_text())
    density = np.load(frontier_dir / "feature_density.npy")
    assert len(histogram["bin_edges"]) == len(histogram["counts"]) + 1
    # every latent is in a bin or dead (densities below 1e-7 cannot occur on a few k tokens)
    assert sum(histogram["counts"]) + histogram["dead"] == len(density)


@pytest.mark.slow  # shares one ~1 min smoke run (real toy model)
def test_trained_sae_beats_random_dictionary_at_the_same_l0(smoke_run):
    out, _ = smoke_run
    frame = pd.read_csv(out / "results.csv")
    value = frame.set_index(["method", "metric"]).value
    assert value["topk", "l0"] == value["random", "l0"] == 16
    assert value["topk", "fvu"] < value["random", "fvu"]
    assert value["topk", "delta_ce"] < value["random", "delta_ce"]
    assert 0 < value["topk", "loss_recovered_zero"] <= 1.0


@pytest.mark.slow  # shares one ~1 min smoke run (real toy model)
def test_rerun_resumes_and_recomputes_nothing(smoke_run):
    out, _ = smoke_run
    before = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "--methods",
            "topk,random",
            "--preset",
            "smoke",
            "--tasks",
            "frontier,loss_recovered",
            "--device",
            "auto",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    after = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert before == after


def test_cli_errors_are_one_line_naming_the_fix():
    result = CliRunner().invoke(cli, ["run", "--methods", "topkk", "--preset", "smoke"])
    assert result.exit_code == 2
    assert "unknown method 'topkk'" in result.output and "Available methods" in result.output


def test_list_and_plugins_commands():
    result = CliRunner().invoke(cli, ["list"])
    assert result.exit_code == 0
    for name in ("topk", "gated", "l1", "tanh", "frontier", "loss_recovered", "toyworld"):
        assert name in result.output
    summaries = json.loads(CliRunner().invoke(cli, ["plugins"]).output)
    assert any("register_methods" in s["hooks"] for s in summaries)
