"""The Ray executor for real, on a local Ray with 2 CPUs: the smoke preset gives the stored
results, a worker that dies is retried or its cell recorded as failed with the reason, torch runs
one thread per worker, and an interrupted Ray run resumes without recomputing finished cells."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reference_results import (
    RAY_RELATIVE_TOLERANCE,
    STORED_SMOKE_ONE_THREAD,
    assert_matches_stored_smoke_results,
)

from saebench import plugins
from saebench.runner import RunRequest, run

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")
pytestmark = pytest.mark.slow

TESTS_DIR = Path(__file__).parent


@pytest.fixture(scope="module")
def ray_cache(tmp_path_factory):
    """One activation harvest for every run in this file (the driver harvests, workers read)."""
    return tmp_path_factory.mktemp("ray_cache")


@pytest.fixture
def misbehaving_tasks(monkeypatch):
    """tests/ray_test_plugin.py registered here and importable by name in the Ray workers."""
    import ray_test_plugin

    monkeypatch.setenv("SAEBENCH_PLUGIN_MODULES", "ray_test_plugin")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")])
    )
    plugins.pm.register(ray_test_plugin, name="ray_test_plugin")
    yield
    plugins.pm.unregister(ray_test_plugin)


def cells(run_dir: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (run_dir / "cells").glob("*.json")}


def test_ray_smoke_run_matches_the_stored_local_results(tmp_path, ray_cache):
    out = tmp_path / "run"
    request = RunRequest(
        methods=["topk", "gated", "random"],
        preset="smoke",
        device="cpu",
        out=out,
        cache_dir=ray_cache,
        progress=False,
        executor="ray",
        workers=2,
    )
    run(request, echo=lambda *_: None)
    assert_matches_stored_smoke_results(
        out / "results.csv", rtol=RAY_RELATIVE_TOLERANCE, stored_csv=STORED_SMOKE_ONE_THREAD
    )
    meta = json.loads((out / "run.json").read_text())
    assert meta["executor"] == "ray" and meta["status"] == "complete"
    assert meta["torch_threads"] == 1  # the workers' (one CPU per task), not the driver's
    assert (out / "saes/topk/16/seed0/sae_weights.safetensors").exists()
    # artifacts come back from the workers through the object store into the run directory
    assert (out / "saes/topk/16/seed0/artifacts/frontier/feature_density.npy").exists()


def test_dead_workers_are_retried_then_recorded_and_torch_uses_one_thread(
    tmp_path, ray_cache, misbehaving_tasks
):
    out, marker = tmp_path / "run", tmp_path / "first_attempt"
    request = RunRequest(
        methods=["random"],
        tasks=["dies_once", "dies_always", "torch_threads"],
        preset="smoke",
        device="cpu",
        out=out,
        cache_dir=ray_cache,
        progress=False,
        executor="ray",
        workers=2,
        max_retries=1,
        task_options={"dies_once": {"marker": str(marker)}},
    )
    run(request, echo=lambda *_: None)
    found = cells(out)
    assert marker.exists()  # the first attempt really died
    assert found["random__16__seed0__dies_once"]["status"] == "ok"  # the retry finished it
    always = found["random__16__seed0__dies_always"]
    assert always["status"] == "error"  # the environment's fault: retried on the next run
    assert "ray worker died (1 retries used)" in always["reason"]
    threads = found["random__16__seed0__torch_threads"]
    assert threads["metrics"] == {
        "torch_threads": 1.0
    }  # one thread per worker, no oversubscription
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def with_default_sigint() -> None:
    """A job started with `&` by a non-interactive shell (`nohup bash .ci/run &`) inherits
    SIGINT ignored, and Python keeps an ignored SIGINT ignored: the run would never see this
    test's Ctrl-C and finish every cell. The child gets the default disposition back."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# SIGINT is Ctrl-C; SIGTERM is a batch scheduler or `kill` (ray.init replaces the CLI's
# SIGTERM handler unless the executor restores it).
@pytest.mark.parametrize("interrupt", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_an_interrupted_ray_run_resumes_without_recomputing_finished_cells(
    tmp_path, ray_cache, interrupt
):
    out = tmp_path / "run"
    command = [
        str(Path(sys.executable).parent / "saebench"),
        "run",
        "--methods",
        "random",
        "--sweep",
        "random=2,3,4,6,8,12,16,24,32,48,64,128",
        "--seeds",
        "3",
        "--tasks",
        # slow_cell sleeps 1 s per cell (36 of them on 2 workers): the interrupt lands mid-run
        # however fast the real tasks are
        "frontier,slow_cell",
        "--task-option",
        "slow_cell.seconds=1",
        "--preset",
        "smoke",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--no-progress",
        "--executor",
        "ray",
        "--workers",
        "2",
        "--cache",
        str(ray_cache),
    ]
    tests_dir = str(Path(__file__).parent)  # ray_test_plugin, importable by the CLI and workers
    path = os.pathsep.join(p for p in (tests_dir, os.environ.get("PYTHONPATH")) if p)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "SAEBENCH_PLUGIN_MODULES": "ray_test_plugin",
        "PYTHONPATH": path,
    }
    log = tmp_path / "interrupted_run.log"  # a file, not a pipe nobody reads while it runs
    with log.open("w") as stdout:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=with_default_sigint,
        )
        deadline = time.time() + 300
        while time.time() < deadline and len(list((out / "cells").glob("*.json"))) < 2:
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
        process.send_signal(interrupt)
        process.wait(timeout=120)
    output = log.read_text()
    assert process.returncode == 130, output  # the CLI's "interrupted" exit, not a crash
    finished = {
        p.name: (p.stat().st_mtime_ns, p.read_text()) for p in (out / "cells").glob("*.json")
    }
    assert 2 <= len(finished) < 72, "the interrupt came too late to test resume"
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted", output
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    after = {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in (out / "cells").glob("*.json")}
    assert len(after) == 72 and all(json.loads(t)["status"] == "ok" for _, t in after.values())
    assert {name: after[name] for name in finished} == finished  # none rewritten
    assert json.loads((out / "run.json").read_text())["status"] == "complete"


def test_a_run_joins_a_running_ray_cluster_by_address(tmp_path, ray_cache):
    # `ray start` enables token authentication; a driver joining by HOST:PORT must say so, and
    # Ray reads that setting when it is imported: hence a separate saebench process. The head
    # runs with --block so that stopping it stops only this cluster, never someone else's.
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
    with socket.socket() as probe:  # a free port for the head node
        probe.bind(("", 0))
        port = str(probe.getsockname()[1])
    head = subprocess.Popen(
        [str(bin_dir / "ray"), "start", "--head", "--block", "--num-cpus", "2", "--port", port]
        + ["--include-dashboard", "false"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        address = None
        for line in head.stdout:
            found = re.search(r"ray start --address='([^']+)'", line)
            if found:
                address = found.group(1)
                break
        assert address, "the head node never printed its address"
        out = tmp_path / "run"
        command = [
            str(bin_dir / "saebench"),
            "run",
            "--methods",
            "random",
            "--sweep",
            "random=8,16",
        ]
        command += ["--tasks", "frontier", "--preset", "smoke", "--device", "cpu", "--no-progress"]
        command += ["--out", str(out), "--cache", str(ray_cache), "--executor", "ray"]
        result = subprocess.run(
            [*command, "--ray-address", address],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert len(cells(out)) == 2 and all(c["status"] == "ok" for c in cells(out).values())
        assert head.poll() is None  # the cluster outlives the run that joined it
    finally:
        head.send_signal(signal.SIGTERM)
        head.wait(timeout=120)
