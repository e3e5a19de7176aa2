"""End to end through the real CLI on the smoke preset (toy-world model, offline).

The smoke run here covers every task and is compared metric by metric with a stored copy of the
same command's results.csv, made before the runner was split into planner and executors: the
same command on the same commit must give the same numbers (tests/reference_results.py).
"""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from reference_results import SMOKE_ARGS, assert_matches_stored_smoke_results

from saebench.cli import cli


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = CliRunner().invoke(
        cli,
        ["run", *SMOKE_ARGS, "--device", "cpu", "--out", str(out), "--no-progress"],
        env={"SAEBENCH_CACHE": str(tmp_path_factory.mktemp("cli_cache"))},
    )
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.mark.slow  # shares one ~1 min smoke run (real toy model)
def test_smoke_results_match_the_stored_copy(smoke_run):
    out, _ = smoke_run
    assert_matches_stored_smoke_results(out / "results.csv")


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
    # The named methods plus every calibration baseline the run adds on its own.
    assert set(frame.method) == {"topk", "gated", "random", "pca", "identity"}
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["config"]["model"] == "toyworld"
    assert {"saebench", "torch", "transformer_lens"} <= set(run["versions"])
    from importlib.metadata import version

    assert run["versions"]["transformer_lens"] == version("transformer_lens")
    for numeric in ("numpy", "scipy", "scikit-learn", "pandas"):
        assert run["versions"][numeric] == version(numeric)
    assert run["torch_threads"] >= 1
    assert run["device"] == "cpu" or run["device"].startswith("cuda")
    assert run["timings_seconds"] and all(v >= 0 for v in run["timings_seconds"].values())
    assert run["config"]["seeds"] and run["harvest"]
    # what the float kernels were: the suite runs under portable numerics (tests/conftest.py)
    assert run["cpu_numerics"]["torch_cpu_capability"] == "AVX2"
    assert run["cpu_numerics"]["MKL_CBWR"] == "COMPATIBLE,STRICT"
    # RAVEL's validity gate closes on the toy model at this hook (docs/calibration.md).
    assert all(cell["status"] == "ok" for cell in run["cells"] if cell["task"] != "ravel")
    assert {cell["status"] for cell in run["cells"] if cell["task"] == "ravel"} == {"uninformative"}
    for plot in ("frontier_l0_fvu.png", "frontier_l0_delta_ce.png", "feature_density.png"):
        assert (out / "plots" / plot).stat().st_size > 1000
    assert (out / "saes/topk/16/seed0/sae_weights.safetensors").exists()
    frontier_dir = out / "saes/topk/16/seed0/artifacts/frontier"
    histogram = json.loads((frontier_dir / "log10_density_histogram.json").read_text())
    density = np.load(frontier_dir / "feature_density.npy")
    assert len(histogram["bin_edges"]) == len(histogram["counts"]) + 1
    # every latent is in a bin or never fired (densities below 1e-7 cannot occur on a few k tokens)
    assert sum(histogram["counts"]) + histogram["never_fired_eval"] == len(density)


@pytest.mark.slow  # shares one ~1 min smoke run (real toy model)
def test_trained_sae_beats_random_dictionary_at_the_same_l0(smoke_run):
    out, _ = smoke_run
    frame = pd.read_csv(out / "results.csv")
    value = frame.set_index(["method", "metric"]).value
    # TopK keeps k pre-activations and ReLU drops the negative ones: L0 <= k.
    assert value["random", "l0"] == 16 and 15 <= value["topk", "l0"] <= 16
    assert value["topk", "fvu"] < value["random", "fvu"]
    assert value["topk", "delta_ce"] < value["random", "delta_ce"]
    assert 0 < value["topk", "loss_recovered_zero"] <= 1.0


@pytest.mark.slow  # shares one ~1 min smoke run (real toy model)
def test_rerun_resumes_and_recomputes_nothing(smoke_run):
    out, _ = smoke_run
    before = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    result = CliRunner().invoke(
        cli, ["run", *SMOKE_ARGS, "--device", "cpu", "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "trained in" not in result.output  # nothing retrained
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


@pytest.mark.parametrize(
    "args,text",
    [
        (["--sweep", "topk"], "must look like METHOD=v1,v2"),
        (["--sweep", "topk="], "must look like METHOD=v1,v2"),
        (["--sweep", "topk=,"], "must look like METHOD=v1,v2"),
        (["--sweep", "topk=a,b"], "values must be numbers"),
        (["--sweep", "topk=8", "--sweep", "topk=16"], "swept twice"),
        (["--task-option", "ravel"], "TASK.NAME=VALUE"),
        (["--task-option", "ravel=1"], "TASK.NAME=VALUE"),
        (["--device", "mps"], "not a device; use auto, cpu, cuda or cuda:N"),
        (["--device", "cpu:abc"], "not a device"),
        (["--device", "cuda:x"], "not a device"),
        (["--sae-device", "mps"], "not a device"),
        (["--executor", "dask"], "'dask' is not one of 'local', 'ray'"),
        (["--preset", "huge"], "'huge' is not one of 'smoke', 'default', 'full'"),
        (["--seeds", "0"], "0 is not in the range x>=1"),
        (["--workers", "0"], "x>=1"),
        (["--train-tokens", "0"], "0 is not in the range x>=1"),
    ],
)
def test_bad_flags_fail_in_the_cli_layer_with_one_line(args, text):
    # Parameter types reject these before anything loads: click's usage error, exit 2.
    result = CliRunner().invoke(cli, ["run", "--methods", "topk", *args])
    assert result.exit_code == 2, result.output
    assert text in result.output
    assert "Traceback" not in result.output


def test_train_tokens_below_one_batch_fail_before_anything_loads():
    result = CliRunner().invoke(
        cli, ["run", "--methods", "topk", "--preset", "smoke", "--train-tokens", "100"]
    )
    assert result.exit_code == 2, result.output
    assert "less than one batch" in result.output and "pass at least 512" in result.output


def test_parameter_types_parse_sweeps_and_task_options():
    from saebench.cli import Device, Sweep, TaskOption, sweeps_from, task_options_from

    assert Sweep().convert("topk=8,16", None, None) == ("topk", [8.0, 16.0])
    assert Sweep().convert("l1=1e-3", None, None) == ("l1", [0.001])
    assert sweeps_from([("topk", [8.0]), ("l1", [0.1])]) == {"topk": [8.0], "l1": [0.1]}
    option = TaskOption().convert("sparse_probing.pooling= last", None, None)
    assert option == ("sparse_probing", "pooling", "last")
    assert task_options_from([option, ("ravel", "k", "2")]) == {
        "sparse_probing": {"pooling": "last"},
        "ravel": {"k": "2"},
    }
    assert [Device().convert(d, None, None) for d in ("auto", "cpu", "cuda", "cuda:1")] == [
        "auto",
        "cpu",
        "cuda",
        "cuda:1",
    ]


@pytest.mark.slow  # a real (tiny) smoke run
def test_failed_cells_make_the_exit_code_non_zero_unless_allowed(tmp_path):
    import types

    from saebench import MetricInfo, TaskSpec, hookimpl, plugins

    def broken(ctx):
        raise RuntimeError("broken on purpose")

    module = types.ModuleType("exit_code_plugin")
    module.register_tasks = hookimpl(
        lambda register: register(
            TaskSpec(
                name="broken_task",
                description="raises",
                run=broken,
                metrics={"x": MetricInfo(None)},
            )
        )
    )
    plugins.pm.register(module, name="exit_code_plugin")
    try:
        args = ["run", "--methods", "random", "--tasks", "frontier,broken_task", "--preset"]
        args += ["smoke", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "run")]
        env = {"SAEBENCH_CACHE": str(tmp_path / "cache")}
        failed = CliRunner().invoke(cli, args, env=env)
        assert failed.exit_code == 1, failed.output
        assert "1 cell(s) did not finish (0 environment error(s)" in failed.output
        allowed = CliRunner().invoke(cli, [*args, "--allow-failures"], env=env)
        assert allowed.exit_code == 0, allowed.output
        run = json.loads((tmp_path / "run" / "run.json").read_text())
        assert [i["status"] for i in run["invocations"]] == ["complete", "complete"]
        assert run["cell_counts"] == {"failed": 1, "ok": 1}
    finally:
        plugins.pm.unregister(module)


@pytest.mark.slow  # two real processes on the smoke preset
def test_a_run_killed_with_sigkill_resumes_exactly(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "run"
    command = [str(Path(sys.executable).parent / "saebench"), "run", "--methods", "random"]
    command += ["--sweep", "random=4,8,16,32", "--tasks", "frontier,loss_recovered"]
    command += ["--preset", "smoke"]
    command += ["--device", "cpu", "--no-progress", "--out", str(out)]
    command += ["--cache", str(tmp_path / "cache")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(list((out / "cells").glob("*.json"))) < 2:
        assert process.poll() is None
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)  # no cleanup at all: the lock dies with the process
    process.wait(timeout=60)
    finished = {p.name: p.read_text() for p in (out / "cells").glob("*.json")}
    assert 2 <= len(finished) < 8, "the kill came too late to test resume"
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    after = {p.name: p.read_text() for p in (out / "cells").glob("*.json")}
    assert len(after) == 8 and {name: after[name] for name in finished} == finished
    frame = pd.read_csv(out / "results.csv")
    assert not frame.duplicated(["method", "knob", "seed", "task", "metric"]).any()
    assert frame.groupby(["knob", "task"]).ngroups == 8  # every cell once, none missing


def test_a_plugin_that_fails_to_import_is_one_line_from_the_console_script(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "badplug.py").write_text('raise RuntimeError("boom at import")\n')
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "SAEBENCH_PLUGIN_MODULES": "badplug"}
    saebench = str(Path(sys.executable).parent / "saebench")
    result = subprocess.run(
        [saebench, "list"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        "plugin 'badplug' failed to import" in result.stderr and "boom at import" in result.stderr
    )
