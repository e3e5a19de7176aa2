"""The planner is a pure function of the request and the registries: no model, no disk."""

import types

import pytest

from saebench import plugins
from saebench.errors import ConfigError, UnknownNameError
from saebench.planner import (
    RunRequest,
    TrainingGroup,
    choose_tasks,
    make_plan,
    training_groups,
    validate_request,
)
from saebench.rundir import SaeKey
from saebench.specs import MetricInfo, TaskSpec


def test_validation_needs_no_model_and_orders_saes_method_knob_seed():
    valid = validate_request(
        RunRequest(
            methods=["topk", "l1"],
            preset="smoke",
            seeds=2,
            sweeps={"topk": [8, 16]},
            baselines=False,
        )
    )
    assert [(s.method, s.knob, s.seed) for s in valid.saes[:4]] == [
        ("topk", 8, 0),
        ("topk", 8, 1),
        ("topk", 16, 0),
        ("topk", 16, 1),
    ]
    assert all(isinstance(s.knob, int) for s in valid.saes if s.method == "topk")
    assert {s.method for s in valid.saes} == {"topk", "l1"}


@pytest.mark.parametrize(
    "kwargs,error,text",
    [
        ({"methods": []}, ConfigError, "--methods is empty"),
        ({"methods": ["topkk"]}, UnknownNameError, "Available methods"),
        ({"tasks": ["nope"]}, UnknownNameError, "Available tasks"),
        ({"sweeps": {"gated": [1.0]}}, ConfigError, "not in --methods"),
        ({"sweeps": {"topk": [0]}}, ConfigError, "below the minimum"),
        ({"seeds": 0}, ConfigError, "at least 1"),
        ({"executor": "dask"}, ConfigError, "unknown --executor"),
        ({"preset": "huge"}, ConfigError, "unknown preset"),
        ({"train_tokens": 100}, ConfigError, "less than one batch.*pass at least 512"),
        ({"expansion": 0}, ConfigError, "--expansion must be at least 1"),
    ],
)
def test_bad_requests_fail_before_any_model_loads(kwargs, error, text):
    with pytest.raises(error, match=text):
        validate_request(RunRequest(**{"methods": ["topk"], "preset": "smoke", **kwargs}))


def test_training_groups_gather_each_methods_knobs_and_seeds_in_run_order():
    saes = (SaeKey("topk", 8, 0), SaeKey("topk", 16, 0), SaeKey("l1", 1.0, 0), SaeKey("topk", 8, 1))
    assert training_groups(saes) == (
        TrainingGroup("topk", (SaeKey("topk", 8, 0), SaeKey("topk", 16, 0), SaeKey("topk", 8, 1))),
        TrainingGroup("l1", (SaeKey("l1", 1.0, 0),)),
    )


def _model(**attributes):
    return types.SimpleNamespace(name="fake", info={"source": "/x"}, **attributes)


def _task(name, reason=None, options=None):
    return TaskSpec(
        name=name,
        description=name,
        run=lambda ctx: {},
        metrics={"m": MetricInfo(None)},
        supports=lambda model, opts: reason,
        options=options or {},
    )


def test_default_tasks_skip_unsupported_ones_with_the_reason_and_named_ones_fail():
    tasks = {"b": _task("b"), "a": _task("a"), "picky": _task("picky", "needs a unicorn")}
    chosen, skipped = choose_tasks(RunRequest(methods=["topk"]), tasks, _model())
    assert list(chosen) == ["a", "b"] and skipped == {"picky": "needs a unicorn"}
    with pytest.raises(ConfigError, match="cannot run on model 'fake': needs a unicorn"):
        choose_tasks(RunRequest(methods=["topk"], tasks=["picky"]), tasks, _model())


def test_task_options_must_name_a_task_of_the_run_and_a_declared_option():
    tasks = {"a": _task("a", options={"mode": "how"})}
    request = RunRequest(methods=["topk"], task_options={"a": {"mood": "x"}})
    with pytest.raises(ConfigError, match="no option 'mood'; its options: mode: how"):
        choose_tasks(request, tasks, _model())
    request = RunRequest(methods=["topk"], task_options={"zzz": {"mode": "x"}})
    with pytest.raises(ConfigError, match="not a task of this run"):
        choose_tasks(request, tasks, _model())


def test_the_plan_config_is_what_resume_and_the_gate_compare():
    request = RunRequest(
        methods=["topk"], tasks=["a"], preset="smoke", sweeps={"topk": [8, 4]}, baselines=False
    )
    plan = make_plan(request, _model(), "blocks.0.hook_resid_pre", tasks={"a": _task("a")})
    config = plan.config(d_in=32)
    assert config["methods"] == {"topk": [4, 8]} and config["seeds"] == [0]
    assert config["d_sae"] == plan.preset.expansion * 32 and config["hook"].startswith("blocks.0")
    assert config["model"] == "fake" and config["model_source"] == "/x"
    assert "task_options" not in config  # absent unless set: older baselines still match
    assert "train.seed" not in config and "train.progress" not in config
    assert str(plan.run_dir.root) == "results/toyworld-smoke-topk"  # from --model, the default
    assert [g.method for g in plan.groups] == ["topk"]


def test_train_tokens_override_the_presets_budget_and_are_compared():
    def plan(train_tokens=None):
        request = RunRequest(
            methods=["topk"],
            tasks=["a"],
            preset="smoke",
            baselines=False,
            train_tokens=train_tokens,
        )
        return make_plan(request, _model(), "blocks.0.hook_resid_pre", tasks={"a": _task("a")})

    default, longer = plan(), plan(train_tokens=4 * 48_000)
    assert default.train_config(32).total_tokens == default.preset.train_tokens_per_sae
    assert longer.train_config(32).total_tokens == 192_000
    assert longer.config(32)["train.total_tokens"] == 192_000
    # a resumed run or a gate rerun with another budget is another configuration
    assert default.config(32)["train.total_tokens"] != longer.config(32)["train.total_tokens"]


def test_expansion_overrides_the_presets_width_and_is_compared():
    def plan(expansion=None):
        request = RunRequest(
            methods=["topk"], tasks=["a"], preset="smoke", baselines=False, expansion=expansion
        )
        return make_plan(request, _model(), "blocks.0.hook_resid_pre", tasks={"a": _task("a")})

    default, narrow = plan(), plan(expansion=1)
    assert default.train_config(32).d_sae == default.preset.expansion * 32
    assert narrow.train_config(32).d_sae == 32 and narrow.config(32)["d_sae"] == 32
    assert default.config(32)["d_sae"] != narrow.config(32)["d_sae"]  # resume refuses the change


def test_plans_use_the_registered_plugins_by_default():
    valid = validate_request(RunRequest(methods=["topk"], preset="smoke", baselines=False))
    assert valid.methods == {"topk": plugins.get_methods()["topk"]}
    assert [s.knob for s in valid.saes] == list(plugins.get_methods()["topk"].sweeps["smoke"])


def test_a_learned_method_brings_every_calibration_baseline_over_its_sweep():
    registered = plugins.get_methods()
    valid = validate_request(RunRequest(methods=["topk"], preset="default", seeds=3))
    baselines = sorted(n for n, spec in registered.items() if spec.calibration)
    assert baselines and sorted(set(valid.methods) - {"topk"}) == baselines
    for name in baselines:
        spec = registered[name]
        planned = [s for s in valid.saes if s.method == name]
        assert sorted({s.knob for s in planned}) == sorted(spec.sweeps["default"])
        # Every seed, even for a deterministic fit: the seed also varies the tasks' data
        # (probe splits, prompts), which is noise the comparison must see on both sides.
        assert {s.seed for s in planned} == {0, 1, 2}
    # Baselines alone are a calibration run: nothing is added, and --no-baselines adds nothing.
    alone = validate_request(RunRequest(methods=["random"], preset="smoke"))
    assert list(alone.methods) == ["random"]
    off = validate_request(RunRequest(methods=["topk"], preset="smoke", baselines=False))
    assert list(off.methods) == ["topk"]


def test_a_repeated_knob_is_refused_rather_than_trained_twice():
    with pytest.raises(ConfigError, match="--sweep topk repeats k=16; give each value once"):
        validate_request(RunRequest(methods=["topk"], preset="smoke", sweeps={"topk": [16, 16.0]}))


@pytest.mark.parametrize(
    "kwargs,text",
    [
        ({"ray_address": "auto"}, "--ray-address only apply to --executor ray"),
        ({"workers": 2, "max_retries": 1}, "--workers, --max-retries only apply"),
        ({"executor": "ray", "workers": 2, "ray_address": "auto"}, "drop --workers"),
        ({"executor": "ray", "max_retries": -1}, "--max-retries must be 0 or more"),
        ({"executor": "ray", "sae_device": "cpu"}, "--sae-device is for --executor local"),
    ],
)
def test_ray_flags_are_refused_where_they_would_be_ignored(kwargs, text):
    with pytest.raises(ConfigError, match=text):
        validate_request(RunRequest(methods=["topk"], preset="smoke", **kwargs))


def test_the_model_argument_is_recorded_only_when_it_says_more_than_the_name():
    tasks = {"a": _task("a")}
    plain = make_plan(RunRequest(methods=["topk"], model="fake"), _model(), "h", tasks=tasks)
    assert "model_argument" not in plain.config(8)  # older baselines keep matching
    custom = RunRequest(methods=["topk"], model="fake:/ckpt")
    config = make_plan(custom, _model(), "h", tasks=tasks).config(8)
    assert config["model_argument"] == "fake:/ckpt"  # what `check --rerun` must load
