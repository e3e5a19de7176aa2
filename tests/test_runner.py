"""The runner: bad inputs, a diverging method, a failing task, an interrupted run that resumes."""

import json
import types
from dataclasses import replace

import pytest

from saebench import plugins
from saebench.errors import ConfigError, UnknownNameError
from saebench.hookspecs import hookimpl
from saebench.presets import PRESETS
from saebench.runner import Runner, RunRequest
from saebench.specs import MethodSpec, MetricInfo, TaskSpec
from saebench_plugins.l1 import L1SAE


class NaNSAE(L1SAE):
    """Produces NaN as soon as it trains: the cell must fail with the reason, the run go on."""

    def training_loss(self, x, sparsity_scale):
        loss, f, logs = super().training_loss(x, sparsity_scale)
        return loss * float("nan"), f, logs


class NaNAtInferenceSAE(L1SAE):
    """Trains normally, then outputs NaN latents: a task would turn them into a 0.0 score."""

    def encode(self, x):
        latents = super().encode(x)
        return latents if self.training else latents * float("nan")


CALLS = {
    "count": 0,
    "interrupt_at": None,
    "flaky_fails": True,
    "flaky_runs": 0,
    "flaky_error": RuntimeError,
}


def counting_task(ctx):
    CALLS["count"] += 1
    if CALLS["count"] == CALLS["interrupt_at"]:
        raise KeyboardInterrupt  # what Ctrl-C mid-run looks like
    return {"decoder_norm": float(ctx.sae.W_dec.detach().norm())}


def flaky_task(ctx):
    CALLS["flaky_runs"] += 1
    if CALLS["flaky_fails"]:
        raise CALLS["flaky_error"]("the disk was full this time")
    return {"decoder_norm": 1.0}


def broken_task(ctx):
    raise RuntimeError("this task is broken on purpose")


@pytest.fixture
def test_plugin():
    module = types.ModuleType("runner_test_plugin")
    module.register_methods = hookimpl(
        lambda register: [
            register(
                MethodSpec(
                    name="nan_method",
                    description="diverges",
                    knob="l1_coefficient",
                    build=lambda d_in, d_sae, knob: NaNSAE(d_in, d_sae, l1_coefficient=knob),
                    sweeps={"smoke": [1.0]},
                )
            ),
            register(
                MethodSpec(
                    name="nan_at_inference",
                    description="NaN latents after training",
                    knob="l1_coefficient",
                    build=lambda d_in, d_sae, knob: NaNAtInferenceSAE(
                        d_in, d_sae, l1_coefficient=knob
                    ),
                    sweeps={"smoke": [1.0]},
                )
            ),
        ]
    )
    module.register_tasks = hookimpl(
        lambda register: [
            register(
                TaskSpec(
                    name="counting",
                    description="counts calls",
                    run=counting_task,
                    metrics={"decoder_norm": MetricInfo(None)},
                )
            ),
            register(
                TaskSpec(name="broken", description="always raises", run=broken_task, metrics={})
            ),
            register(
                TaskSpec(
                    name="flaky",
                    description="fails until told not to",
                    run=flaky_task,
                    metrics={"decoder_norm": MetricInfo(None)},
                )
            ),
        ]
    )
    plugins.pm.register(module, name="runner_test_plugin")
    CALLS.update(
        count=0, interrupt_at=None, flaky_fails=True, flaky_runs=0, flaky_error=RuntimeError
    )
    yield
    plugins.pm.unregister(module)


@pytest.fixture(autouse=True)
def tiny_smoke_preset(monkeypatch):
    """Smoke shrunk further: these tests check the runner's bookkeeping, not SAE quality."""
    monkeypatch.setitem(
        PRESETS,
        "smoke",
        replace(
            PRESETS["smoke"],
            n_train_tokens=4096,
            train_tokens_per_sae=4096,
            n_eval_tokens=512,
            expansion=2,
            batch_size=256,
            dead_window_tokens=2048,
        ),
    )


@pytest.fixture(scope="module")
def harvest_cache(tmp_path_factory):
    """One activation harvest shared by every run in this file (the cache key pins the budget)."""
    return tmp_path_factory.mktemp("harvest_cache")


@pytest.fixture
def request_for(tmp_path, harvest_cache, toy_handle, monkeypatch):
    import saebench.models

    real_resolve = saebench.models.resolve_model

    def resolve_reusing_the_session_model(name, device="cpu", dataset=None):
        # Loading the toy model costs ~10 s; every run here may share one (they never mutate it).
        if name == "toyworld" and dataset is None:
            return toy_handle
        return real_resolve(name, device, dataset)

    monkeypatch.setattr(saebench.models, "resolve_model", resolve_reusing_the_session_model)

    def build(**kwargs):
        defaults = {
            "methods": ["topk", "nan_method"],
            "tasks": ["counting", "broken"],
            "preset": "smoke",
            "device": "cpu",
            "out": tmp_path / "run",
            "cache_dir": harvest_cache,
            "progress": False,
            "sweeps": {"topk": [4.0, 8.0]},
            "baselines": False,  # runner mechanics: exactly the methods named
        }
        defaults.update(kwargs)
        return RunRequest(**defaults)

    return build


def cells(run_dir):
    return {
        c["id"]: c for c in (json.loads(p.read_text()) for p in (run_dir / "cells").glob("*.json"))
    }


def test_failures_are_recorded_and_the_run_completes(tmp_path, request_for, test_plugin):
    run_dir = Runner(request_for(), echo=lambda *a: None).run()
    found = cells(run_dir)
    assert found["nan_method__1__seed0__counting"]["status"] == "failed"
    assert "TrainingDiverged" in found["nan_method__1__seed0__counting"]["reason"]
    assert found["topk__4__seed0__broken"]["status"] == "failed"
    assert "broken on purpose" in found["topk__4__seed0__broken"]["reason"]
    assert found["topk__8__seed0__counting"]["status"] == "ok"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "complete" and len(run["cells"]) == 6
    assert "broken on purpose" in (run_dir / "results.md").read_text()


def test_interrupted_run_resumes_without_redoing_finished_cells(tmp_path, request_for, test_plugin):
    CALLS["interrupt_at"] = 2  # die in the second SAE's first task
    with pytest.raises(KeyboardInterrupt):
        Runner(
            request_for(methods=["topk"], tasks=["counting"], sweeps={"topk": [4.0, 8.0, 16.0]}),
            echo=lambda *a: None,
        ).run()
    assert set(cells(tmp_path / "run")) == {"topk__4__seed0__counting"}
    saved = tmp_path / "run/saes/topk/8/seed0/cfg.json"
    assert saved.exists()  # the SAE trained before the interrupt is kept
    messages = []
    CALLS.update(count=0, interrupt_at=None)
    Runner(
        request_for(methods=["topk"], tasks=["counting"], sweeps={"topk": [4.0, 8.0, 16.0]}),
        echo=messages.append,
    ).run()
    assert CALLS["count"] == 2  # k=8 (reused SAE) and k=16; k=4 was not recomputed
    assert any("topk k=8 seed 0: reusing saved SAE" in m for m in messages)
    assert len(cells(tmp_path / "run")) == 3


def test_a_resume_at_another_hook_names_the_runs_hook(tmp_path):
    from saebench.rundir import RunDir
    from saebench.runner import check_resume

    layout = RunDir(tmp_path / "run")
    layout.root.mkdir()
    layout.write_run_json({"config": {"model": "toyworld-v4", "hook": "blocks.1.hook_resid_pre"}})
    moved = {"model": "toyworld-v4", "hook": "blocks.2.hook_resid_pre"}
    with pytest.raises(ConfigError, match="pass --hook blocks.1.hook_resid_pre"):
        check_resume(layout, moved)
    with pytest.raises(ConfigError) as other:
        check_resume(layout, {"model": "toyworld", "hook": "blocks.1.hook_resid_pre"})
    assert "--hook" not in str(other.value)


def test_a_resume_at_another_width_names_the_runs_expansion(tmp_path):
    from saebench.rundir import RunDir
    from saebench.runner import check_resume

    layout = RunDir(tmp_path / "run")
    layout.root.mkdir()
    layout.write_run_json({"config": {"model": "toyworld", "d_in": 128, "d_sae": 256}})
    with pytest.raises(ConfigError, match="pass --expansion 2"):
        check_resume(layout, {"model": "toyworld", "d_in": 128, "d_sae": 1024})


def test_resume_refuses_a_different_config(tmp_path, request_for, test_plugin):
    Runner(
        request_for(methods=["topk"], tasks=["counting"], sweeps={"topk": [4.0]}),
        echo=lambda *a: None,
    ).run()
    with pytest.raises(ConfigError, match="different config.*--out"):
        Runner(
            request_for(methods=["topk"], tasks=["counting"], sweeps={"topk": [8.0]}),
            echo=lambda *a: None,
        ).run()


def test_a_rerun_may_add_tasks_and_runs_only_their_cells(tmp_path, request_for, test_plugin):
    request = request_for(methods=["topk"], tasks=["counting"], sweeps={"topk": [4.0]})
    Runner(request, echo=lambda *a: None).run()
    first = tmp_path / "run/cells/topk__4__seed0__counting.json"
    before = (first.stat().st_mtime_ns, first.read_text())
    messages: list[str] = []
    more = request_for(methods=["topk"], tasks=["counting", "frontier"], sweeps={"topk": [4.0]})
    Runner(more, echo=messages.append).run()
    assert (first.stat().st_mtime_ns, first.read_text()) == before  # not recomputed
    assert set(cells(tmp_path / "run")) == {"topk__4__seed0__counting", "topk__4__seed0__frontier"}
    assert any("reusing saved SAE" in m for m in messages)
    run = json.loads((tmp_path / "run/run.json").read_text())
    assert run["config"]["tasks"] == ["counting", "frontier"] and run["status"] == "complete"
    # Dropping a task is still a different run: its cells would be orphaned.
    fewer = request_for(methods=["topk"], tasks=["frontier"], sweeps={"topk": [4.0]})
    with pytest.raises(ConfigError, match="tasks.*adding tasks to --tasks is allowed"):
        Runner(fewer, echo=lambda *a: None).run()


@pytest.mark.parametrize(
    "kwargs,error,text",
    [
        ({"methods": ["topkk"]}, UnknownNameError, "Available methods: .*topk"),
        ({"tasks": ["frontierr"]}, UnknownNameError, "Available tasks: .*frontier"),
        ({"model": "gpt-17"}, UnknownNameError, "hf:<hub name"),
        ({"hook": "blocks.9.hook_resid_pre"}, ConfigError, "has no hook"),
        ({"sweeps": {"topk": [0.0]}}, ConfigError, "below the minimum"),
        ({"sweeps": {"topk": [2.5]}}, ConfigError, "must be an integer"),
        ({"sweeps": {"l1": [1.0]}}, ConfigError, "not in --methods"),
        ({"seeds": 0}, ConfigError, "at least 1"),
        ({"preset": "huge"}, ConfigError, "choose from smoke, default, full"),
        ({"methods": []}, ConfigError, "--methods is empty"),
    ],
)
def test_bad_input_names_the_fix(request_for, kwargs, error, text):
    base = {"methods": ["topk"], "tasks": ["frontier"]}
    base.update(kwargs)
    with pytest.raises(error, match=text):
        Runner(request_for(**{**base, "sweeps": kwargs.get("sweeps", {})}), echo=lambda *a: None)


def test_loss_recovered_task_is_skipped_for_encoders():
    from saebench_tasks.loss_recovered import supports

    assert supports(types.SimpleNamespace(is_causal_lm=False, name="minilm"), {})
    assert supports(types.SimpleNamespace(is_causal_lm=True, name="x"), {}) is None


def test_task_options_reach_the_task_and_the_recorded_config(tmp_path, request_for, monkeypatch):
    seen = []
    spec = TaskSpec(
        name="optioned",
        description="echoes its options",
        run=lambda ctx: seen.append(dict(ctx.options)) or {"n": 1.0},
        metrics={"n": MetricInfo(None)},
        options={"mode": "how to run"},
    )
    module = types.ModuleType("options_test_plugin")
    module.register_tasks = hookimpl(lambda register: register(spec))
    plugins.pm.register(module, name="options_test_plugin")
    try:
        with pytest.raises(ConfigError, match="no option 'mood'.*mode"):
            Runner(
                request_for(
                    methods=["topk"],
                    tasks=["optioned"],
                    sweeps={"topk": [4.0]},
                    task_options={"optioned": {"mood": "x"}},
                ),
                echo=lambda *a: None,
            )
        run_dir = Runner(
            request_for(
                methods=["topk"],
                tasks=["optioned"],
                sweeps={"topk": [4.0]},
                task_options={"optioned": {"mode": "fast"}},
            ),
            echo=lambda *a: None,
        ).run()
    finally:
        plugins.pm.unregister(module)
    assert seen == [{"mode": "fast"}]
    config = json.loads((run_dir / "run.json").read_text())["config"]
    assert config["task_options"] == {"optioned": {"mode": "fast"}}


def test_default_tasks_are_every_task_that_supports_the_model(request_for, test_plugin):
    # No --tasks: every registered task the model supports, and the rest recorded with a reason.
    picky = TaskSpec(
        name="picky",
        description="never supports anything",
        run=counting_task,
        metrics={},
        supports=lambda model, options: "needs a unicorn model",
    )
    module = types.ModuleType("picky_plugin")
    module.register_tasks = hookimpl(lambda register: register(picky))
    plugins.pm.register(module, name="picky_plugin")
    try:
        runner = Runner(request_for(tasks=None), echo=lambda *a: None)
    finally:
        plugins.pm.unregister(module)
    # picky is unregistered again here, so get_tasks() lists exactly the ones that should run
    assert set(runner.plan.tasks) == set(plugins.get_tasks())
    assert {"frontier", "loss_recovered", "ravel", "counting"} <= set(runner.plan.tasks)
    assert runner.plan.skipped_tasks == {"picky": "needs a unicorn model"}


def test_retry_failed_reruns_failed_cells_only(tmp_path, request_for, test_plugin):
    def run(**kwargs):
        request = request_for(
            methods=["topk"], tasks=["counting", "flaky"], sweeps={"topk": [4.0]}, **kwargs
        )
        Runner(request, echo=lambda *a: None).run()
        return cells(tmp_path / "run")

    first = run()
    assert first["topk__4__seed0__flaky"]["status"] == "failed"
    assert "disk was full" in first["topk__4__seed0__flaky"]["reason"]
    assert CALLS == {**CALLS, "count": 1, "flaky_runs": 1}
    CALLS["flaky_fails"] = False
    assert run()["topk__4__seed0__flaky"]["status"] == "failed"  # plain rerun: kept as it was
    assert CALLS["flaky_runs"] == 1
    retried = run(retry_failed=True)
    assert retried["topk__4__seed0__flaky"]["status"] == "ok"
    assert CALLS["flaky_runs"] == 2 and CALLS["count"] == 1  # the ok cell was not recomputed
    assert retried["topk__4__seed0__counting"] == first["topk__4__seed0__counting"]


def test_environment_errors_are_retried_on_every_rerun(tmp_path, request_for, test_plugin):
    # An OSError (disk full, I/O) is the environment's fault: status `error`, not frozen.
    CALLS["flaky_error"] = OSError
    request = request_for(methods=["topk"], tasks=["counting", "flaky"], sweeps={"topk": [4.0]})
    Runner(request, echo=lambda *a: None).run()
    cell = cells(tmp_path / "run")["topk__4__seed0__flaky"]
    assert cell["status"] == "error" and "OSError: the disk was full" in cell["reason"]
    CALLS["flaky_fails"] = False
    Runner(request, echo=lambda *a: None).run()  # no --retry-failed needed
    assert cells(tmp_path / "run")["topk__4__seed0__flaky"]["status"] == "ok"
    assert CALLS["count"] == 1  # the ok cell was not recomputed
    invocations = json.loads((tmp_path / "run" / "run.json").read_text())["invocations"]
    assert [i["status"] for i in invocations] == ["complete", "complete"]  # both calls kept


def test_an_unreadable_cell_file_is_moved_aside_and_recomputed(tmp_path, request_for, test_plugin):
    request = request_for(methods=["topk"], tasks=["counting"], sweeps={"topk": [4.0]})
    Runner(request, echo=lambda *a: None).run()
    cell_file = tmp_path / "run" / "cells" / "topk__4__seed0__counting.json"
    cell_file.write_text("")  # what a crash on a filesystem without fsync can leave
    messages = []
    Runner(request, echo=messages.append).run()
    assert json.loads(cell_file.read_text())["status"] == "ok"
    assert any("unreadable cell file" in m and str(cell_file) in m for m in messages)
    assert list((tmp_path / "run" / ".unreadable").iterdir())  # kept for inspection


def test_cells_without_a_readable_run_json_are_never_merged(tmp_path, request_for, test_plugin):
    request = request_for(methods=["topk"], tasks=["counting"], sweeps={"topk": [4.0]})
    Runner(request, echo=lambda *a: None).run()
    run_json = tmp_path / "run" / "run.json"
    run_json.write_text("{not json")
    with pytest.raises(ConfigError, match="run.json is unreadable.*moved to.*new --out"):
        Runner(request, echo=lambda *a: None)
    assert not run_json.exists()  # moved aside, not deleted
    with pytest.raises(ConfigError, match="has cell files but no run.json"):
        Runner(request, echo=lambda *a: None)


def test_a_second_run_into_the_same_directory_is_refused_while_the_first_holds_it(
    tmp_path, request_for, test_plugin
):
    request = request_for(methods=["topk"], tasks=["counting"], sweeps={"topk": [4.0]})
    first = Runner(request, echo=lambda *a: None)  # holds RUN/.lock until its run ends
    with pytest.raises(ConfigError, match="in use by another saebench run.*pid"):
        Runner(request, echo=lambda *a: None)
    first.run()
    Runner(request, echo=lambda *a: None).run()  # released: a rerun resumes


def test_a_different_config_is_refused_before_the_harvest(
    tmp_path, request_for, test_plugin, monkeypatch
):
    Runner(
        request_for(methods=["topk"], tasks=["counting"], sweeps={"topk": [4.0]}), echo=print
    ).run()
    import saebench.harvest

    monkeypatch.setattr(saebench.harvest, "harvest", lambda *a, **k: pytest.fail("harvested"))
    with pytest.raises(ConfigError, match="different config.*methods"):
        Runner(request_for(methods=["topk"], tasks=["counting"], sweeps={"topk": [8.0]}))


def test_an_sae_with_non_finite_outputs_fails_its_cells_instead_of_scoring(
    tmp_path, request_for, test_plugin
):
    run_dir = Runner(
        request_for(methods=["nan_at_inference"], tasks=["counting"], sweeps={}),
        echo=lambda *a: None,
    ).run()
    cell = cells(run_dir)["nan_at_inference__1__seed0__counting"]
    assert (
        cell["status"] == "failed"
        and "latents on the eval activations are not finite" in cell["reason"]
    )
    assert CALLS["count"] == 0  # the task never saw the NaN SAE


def test_a_trained_sae_is_kept_when_saving_it_fails(
    tmp_path, request_for, test_plugin, monkeypatch
):
    import errno

    import saebench.saved_format

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(saebench.saved_format, "save_sae", disk_full)
    messages = []
    request = request_for(methods=["topk"], tasks=["counting"], sweeps={"topk": [4.0]})
    Runner(request, echo=messages.append).run()
    assert cells(tmp_path / "run")["topk__4__seed0__counting"]["status"] == "ok"  # ran in memory
    assert any("NOT SAVED" in m and "No space left" in m for m in messages)
    assert not (tmp_path / "run" / "saes" / "topk" / "4" / "seed0" / "cfg.json").exists()


def test_an_out_that_is_a_file_is_refused_before_anything_loads(tmp_path, request_for):
    (tmp_path / "afile").write_text("")
    with pytest.raises(ConfigError, match="is a file; pass a directory"):
        Runner(request_for(methods=["topk"], tasks=["frontier"], out=tmp_path / "afile"))


def test_environment_errors_outside_cells_are_one_line_in_the_cli(monkeypatch):
    import errno

    from click.testing import CliRunner

    import saebench.runner
    from saebench.cli import cli

    def disk_full(self, request, echo=print):
        raise OSError(errno.ENOSPC, "No space left on device", "/out/cells/x.json")

    monkeypatch.setattr(saebench.runner.Runner, "__init__", disk_full)
    result = CliRunner().invoke(cli, ["run", "--methods", "topk", "--preset", "smoke"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert (
        "No space left on device (/out/cells/x.json)" in result.output and "rerun" in result.output
    )


def test_a_damaged_saved_sae_is_moved_aside_and_trained_again(tmp_path, request_for, test_plugin):
    request = request_for(methods=["topk"], tasks=["counting"], sweeps={"topk": [4.0]})
    Runner(request, echo=lambda *a: None).run()
    sae_dir = tmp_path / "run" / "saes" / "topk" / "4" / "seed0"
    (sae_dir / "cfg.json").write_text("{truncated")
    (tmp_path / "run" / "cells" / "topk__4__seed0__counting.json").unlink()  # its cell reruns
    messages = []
    Runner(request, echo=messages.append).run()
    assert cells(tmp_path / "run")["topk__4__seed0__counting"]["status"] == "ok"
    assert any("could not be loaded" in m and "trained again" in m for m in messages)
    assert json.loads((sae_dir / "cfg.json").read_text())["architecture"] == "topk"
    assert list(sae_dir.parent.glob(".seed0.unreadable.*"))  # kept for inspection


def test_a_run_with_baselines_but_no_l0_task_warns_before_training(
    tmp_path, request_for, test_plugin
):
    said: list[str] = []
    request = request_for(
        methods=["topk", "random"], tasks=["counting"], sweeps={"topk": [4.0], "random": [4.0]}
    )
    Runner(request, echo=said.append).run()
    warning = [line for line in said if "no task of this run reports l0" in line]
    assert warning and "add frontier to --tasks" in warning[0]
    said.clear()
    with_l0 = request_for(
        methods=["topk", "random"],
        tasks=["counting", "frontier"],
        sweeps={"topk": [4.0], "random": [4.0]},
        out=tmp_path / "with_l0",
    )
    Runner(with_l0, echo=said.append).run()
    assert not [line for line in said if "reports l0" in line]
