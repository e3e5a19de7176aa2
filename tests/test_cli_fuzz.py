"""Property-based fuzzing of `saebench run`'s flags (hypothesis): whatever text they hold, the
command ends with exit 0 or 2 and an error line, never a Python traceback.

The model never loads: `saebench.models.resolve_model` raises a sentinel ConfigError, so flags
that pass every model-free check stop right there (exit 2, naming the sentinel)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saebench import models
from saebench.cli import cli
from saebench.errors import ConfigError
from saebench.planner import RunRequest, validate_request
from saebench.specs import MethodSpec

SENTINEL = "fuzz sentinel: every model-free check passed"
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def no_model(monkeypatch, tmp_path):
    """Stop `saebench run` where the model would load; run in an empty directory."""

    def stop(*args, **kwargs):
        raise ConfigError(SENTINEL)

    monkeypatch.setattr(models, "resolve_model", stop)
    monkeypatch.chdir(tmp_path)


def invoke(args: list[str]):
    return CliRunner().invoke(cli, ["run", *args])


def assert_clean(args: list[str]) -> str:
    """Exit 0 or 2, no traceback, and an error line on exit 2; returns the output."""
    result = invoke(args)
    context = f"saebench run {args!r} ->\n{result.output}"
    assert result.exception is None or isinstance(result.exception, SystemExit), context
    assert result.exit_code in (0, 2), context
    assert "Traceback" not in result.output, context
    if result.exit_code == 2:
        assert "Error" in result.output, context
    return result.output


# --------------------------------------------------------------------------- strategies

ANY_TEXT = st.text(max_size=40)  # any code point, lone surrogates included (argv can hold them)
NUMBERS = st.one_of(
    st.floats().map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(
        ["nan", "inf", "-inf", "1e400", "-1e-400", "-0", "1_000", "٣", "0x10", " 8 ", "9" * 400]
    ),
    ANY_TEXT,
)
NAMES = st.one_of(
    st.sampled_from(
        ["topk", "gated", "l1", "tanh", "pca", "identity", "random", "frontier", "nosuch", ""]
    ),
    ANY_TEXT,
)
SWEEPS = st.one_of(
    ANY_TEXT,
    st.builds(
        lambda method, values, sep: f"{method}{sep}{','.join(values)}",
        NAMES,
        st.lists(NUMBERS, max_size=4),
        st.sampled_from(["=", " = ", "==", ":", ""]),
    ),
)
TASK_OPTIONS = st.one_of(
    ANY_TEXT,
    st.builds(
        lambda task, name, value: f"{task}.{name}={value}",
        NAMES,
        st.one_of(st.sampled_from(["pooling", "data", "n"]), ANY_TEXT),
        ANY_TEXT,
    ),
)
DEVICES = st.one_of(
    ANY_TEXT,
    st.sampled_from(
        ["auto", "cpu", "cuda", "cuda:0", "cuda:7", "cuda:٣", "cuda:-1", "cuda:", "cpu:0", "mps"]
    ),
)
COMMA_LISTS = st.one_of(ANY_TEXT, st.lists(NAMES, max_size=4).map(",".join))
COUNTS = st.one_of(NUMBERS, st.integers(min_value=-5, max_value=10**30).map(str))
# Each flag's values: arbitrary text, and text shaped like what the flag expects.
VALUES = {
    "--methods": COMMA_LISTS,
    "--tasks": COMMA_LISTS,
    "--device": DEVICES,
    "--seeds": COUNTS,
    "--preset": st.one_of(st.sampled_from(["smoke", "default", "full"]), ANY_TEXT),
    "--executor": st.one_of(st.sampled_from(["local", "ray"]), ANY_TEXT),
    "--workers": COUNTS,
    "--sweep": SWEEPS,
    "--task-option": TASK_OPTIONS,
}
REPEATABLE = ("--sweep", "--task-option")
VALID = ["--methods", "topk", "--tasks", "frontier", "--preset", "smoke", "--device", "cpu"]


@st.composite
def run_arguments(draw) -> list[str]:
    """Every flag absent or given (the repeatable ones 0-3 times), each with a drawn value."""
    args = ["--out", "fuzz-run", "--no-progress"]
    for flag, values in VALUES.items():
        repeats = draw(st.integers(0, 3 if flag in REPEATABLE else 1))
        for _ in range(repeats):
            args += [flag, draw(values)]
    return args


@st.composite
def one_flag_changed(draw) -> list[str]:
    """A valid command with one or two flags set to drawn values (others as given)."""
    args = list(VALID)
    for flag in draw(st.lists(st.sampled_from(list(VALUES)), min_size=1, max_size=2)):
        if flag in args:
            at = args.index(flag)
            del args[at : at + 2]
        args += [flag, draw(VALUES[flag])]
    return [*args, "--out", "fuzz-run"]


# --------------------------------------------------------------------------- properties


@FUZZ
@given(args=run_arguments())
def test_any_flags_give_exit_0_or_2_and_no_traceback(no_model, args):
    assert_clean(args)


@FUZZ
@given(args=one_flag_changed())
def test_a_valid_command_with_flags_changed(no_model, args):
    assert_clean(args)


@FUZZ
@given(sweep=SWEEPS, seeds=COUNTS)
def test_sweeps_and_seeds_of_every_method(no_model, sweep, seeds):
    methods = "topk,gated,l1,tanh,pca,identity,random"
    assert_clean(["--methods", methods, "--sweep", sweep, "--seeds", seeds, "--device", "cpu"])


# --------------------------------------------------------------------------- found by fuzzing


def test_a_valid_command_reaches_the_model_load(no_model):
    output = assert_clean(["--methods", "topk", "--preset", "smoke", "--device", "cpu"])
    assert SENTINEL in output


@pytest.mark.parametrize(
    "args, message",
    [
        # range(10**30) seeds: the planner would build 10**30 SAE keys (hang, then MemoryError)
        (["--methods", "topk", "--seeds", str(10**30)], "SAEs"),
        (["--methods", "topk", "--sweep", "topk=1e30", "--seeds", "3"], None),
        # an empty --tasks ran no task at all, silently
        (["--methods", "topk", "--tasks", ","], "--tasks is empty"),
        # int("٣") == 3 in Python: not a CUDA index torch accepts
        (["--methods", "topk", "--device", "cuda:٣"], "is not a device"),
        (["--methods", "topk", "--task-option", "nosuch.x=1"], "not a task of this run"),
        (["--methods", "topk", "--task-option", "frontier.nosuch=1"], "has no option 'nosuch'"),
        (["--methods", "topk", "--tasks", "frontier", "--task-option", "ioi.x=1"], "not a task"),
    ],
)
def test_fixed_inputs(no_model, args, message):
    output = assert_clean([*args, "--preset", "smoke", "--out", "fuzz-run"])
    assert (message or SENTINEL) in output


def test_knob_max_is_checked_before_the_model_loads():
    spec = MethodSpec(
        name="bounded",
        description="a method with a largest knob value",
        knob="k",
        build=lambda **kw: None,
        sweeps={"smoke": [4]},
        knob_min=1,
        knob_max=64,
    )
    request = RunRequest(methods=["bounded"], preset="smoke", sweeps={"bounded": [128.0]})
    with pytest.raises(ConfigError, match=r"bounded: k=128.0 is above the maximum 64"):
        validate_request(request, methods={"bounded": spec}, tasks={})
    request.sweeps = {"bounded": [64.0]}
    assert validate_request(request, methods={"bounded": spec}, tasks={}).saes


def test_topk_k_above_d_sae_fails_at_build_in_one_line_naming_d_sae():
    # d_sae = expansion × d_in is only known after the harvest, so k <= d_sae is checked here.
    from saebench import plugins

    with pytest.raises(ConfigError) as error:
        plugins.get_method("topk").build(d_in=8, d_sae=32, knob=1e9)
    message = str(error.value)
    assert message.startswith("topk: k=1000000000 is more than the SAE's d_sae=32 latents")
    assert "expansion × d_in = 4 × 8" in message and "<= 32" in message and "\n" not in message
    assert plugins.get_method("topk").build(d_in=8, d_sae=32, knob=32).k == 32
