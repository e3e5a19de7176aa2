"""The plugin machinery: registration, attribution, duplicates, unknown names, env filtering."""

import importlib.metadata
import types

import click
import pytest
import torch
from click.testing import CliRunner

from saebench import plugins
from saebench.cli import cli
from saebench.errors import DuplicateNameError, PluginError, SaebenchError, UnknownNameError
from saebench.hookspecs import hookimpl
from saebench.specs import MethodSpec, MetricInfo, ModelSpec, TaskSpec
from saebench.testing import check_task_conformance


def _method(name):
    return MethodSpec(
        name=name,
        description="test method",
        knob="k",
        build=lambda **kw: None,
        sweeps={"smoke": [1]},
    )


def _plugin_module(module_name, **hooks):
    module = types.ModuleType(module_name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


@pytest.fixture
def register_plugin():
    registered = []

    def register(module):
        plugins.pm.register(module, name=module.__name__)
        registered.append(module)
        return module

    yield register
    for module in registered:
        plugins.pm.unregister(module)


def test_builtins_are_ordinary_plugins():
    names = {summary["name"] for summary in plugins.plugin_summaries()}
    assert "saebench.models" in names
    assert any(name.startswith("saebench_plugins.") for name in names)
    assert any(name.startswith("saebench_tasks.") for name in names)


def test_registered_method_is_attributed_to_its_plugin(register_plugin):
    register_plugin(
        _plugin_module("my_plugin", register_methods=lambda register: register(_method("mine")))
    )
    spec = plugins.get_method("mine")
    assert spec.plugin == "my_plugin"


def test_duplicate_name_fails_naming_both_plugins(register_plugin):
    register_plugin(
        _plugin_module("first_plugin", register_methods=lambda register: register(_method("twin")))
    )
    register_plugin(
        _plugin_module("second_plugin", register_methods=lambda register: register(_method("twin")))
    )
    with pytest.raises(DuplicateNameError) as error:
        plugins.get_methods()
    assert "first_plugin" in str(error.value) and "second_plugin" in str(error.value)


def test_duplicate_of_a_builtin_names_the_builtin(register_plugin):
    builtin = next(iter(plugins.get_tasks().values()))
    register_plugin(
        _plugin_module(
            "copycat",
            register_tasks=lambda register: register(
                TaskSpec(name=builtin.name, description="x", run=lambda ctx: {}, metrics={})
            ),
        )
    )
    with pytest.raises(DuplicateNameError, match=builtin.plugin):
        plugins.get_tasks()


@pytest.mark.parametrize(
    "getter,kind", [(plugins.get_method, "method"), (plugins.get_task, "task")]
)
def test_unknown_name_lists_what_is_available(getter, kind):
    with pytest.raises(UnknownNameError) as error:
        getter("no-such-thing")
    message = str(error.value)
    assert f"unknown {kind} 'no-such-thing'" in message
    assert "Available" in message


def test_every_hook_can_be_implemented(register_plugin):
    """A plugin implementing all four hooks is called for each (the hooks' meta-test partner)."""
    seen = []
    module = _plugin_module(
        "all_hooks",
        register_methods=lambda register: seen.append("methods") or register(_method("m_all")),
        register_tasks=lambda register: (
            seen.append("tasks")
            or register(
                TaskSpec(
                    name="t_all",
                    description="x",
                    run=lambda ctx: {"a": 1.0},
                    metrics={"a": MetricInfo(True)},
                )
            )
        ),
        register_models=lambda register: (
            seen.append("models")
            or register(ModelSpec(name="md_all", description="x", load=lambda **kw: None))
        ),
        register_commands=lambda cli: seen.append("commands"),
    )
    register_plugin(module)
    assert "m_all" in plugins.get_methods()
    assert "t_all" in plugins.get_tasks()
    assert "md_all" in plugins.get_models()
    group = click.Group("scratch")
    plugins.pm.hook.register_commands(cli=group)
    assert "world" in group.commands  # the built-in toy-world plugin's commands
    assert set(seen) == {"methods", "tasks", "models", "commands"}


def test_hook_register_methods(register_plugin):
    """A registered method reaches the core attributed to its plugin, and `saebench list` shows it.

    The core calls `build(d_in=, d_sae=, knob=)` (no options argument); the built-ins come
    through the same hook."""
    calls = []
    pca = plugins.get_method("pca")

    def build(d_in, d_sae, knob):
        calls.append((d_in, d_sae, knob))
        return pca.build(d_in=d_in, d_sae=d_sae, knob=knob)

    spec = MethodSpec(
        name="hooked_pca",
        description="PCA, registered by a test plugin",
        knob="unused",
        build=build,
        sweeps={"smoke": [0]},
        trainable=False,
    )
    register_plugin(
        _plugin_module("method_plugin", register_methods=lambda register: register(spec))
    )
    collected = []
    plugins.pm.hook.register_methods(register=collected.append)
    assert {s.name for s in collected} == set(plugins.get_methods())
    assert {"topk", "hooked_pca"} <= set(plugins.get_methods())

    got = plugins.get_method("hooked_pca")
    assert got.plugin == "method_plugin" and plugins.get_method("topk").plugin.startswith(
        "saebench_plugins."
    )
    sample = torch.randn(256, 8)
    sae = got.build(d_in=8, d_sae=16, knob=8).fit(sample)
    assert calls == [(8, 16, 8)]
    assert torch.allclose(sae(sample), sample, atol=1e-4)  # PCA with all components is exact

    listed = CliRunner().invoke(cli, ["list"])
    assert listed.exit_code == 0, listed.output
    line = next(row for row in listed.output.splitlines() if "hooked_pca" in row)
    assert "PCA, registered by a test plugin" in line and "[method_plugin]" in line


def test_hook_register_tasks(register_plugin):
    """A registered task runs through the conformance kit; supports(model, options) gets two args."""
    seen_supports = []

    def supports(model, options):
        seen_supports.append((model, options))
        return None if options.get("ok", "yes") == "yes" else "refused by option ok=no"

    def run(ctx):
        with torch.no_grad():
            reconstruction = ctx.sae(ctx.eval_acts)
        return {"mean_sq_error": (reconstruction - ctx.eval_acts).pow(2).mean().item()}

    spec = TaskSpec(
        name="hooked_mse",
        description="MSE, registered by a test plugin",
        run=run,
        metrics={"mean_sq_error": MetricInfo(higher_is_better=False, headline=True)},
        supports=supports,
        options={"ok": "yes or no"},
    )
    register_plugin(_plugin_module("task_plugin", register_tasks=lambda register: register(spec)))

    got = plugins.get_task("hooked_mse")
    assert got.plugin == "task_plugin"
    assert got.metric_info("mean_sq_error").headline
    metrics = check_task_conformance(got)
    assert set(metrics) == {"mean_sq_error"} and metrics["mean_sq_error"] < 1e-6  # PCA SAE
    assert got.supports(None, {}) is None
    assert got.supports(None, {"ok": "no"}) == "refused by option ok=no"
    assert seen_supports == [(None, {}), (None, {"ok": "no"})]
    assert "frontier" in plugins.get_tasks()  # built-in tasks come through the same hook


def test_hook_register_models(register_plugin):
    """`--model NAME` and `--model NAME:SOURCE` reach the registered load(device=, source=, dataset=)."""
    calls = []

    def load(device, source=None, dataset=None):
        calls.append({"device": device, "source": source, "dataset": dataset})
        return f"handle for {source}"

    register_plugin(
        _plugin_module(
            "model_plugin",
            register_models=lambda register: register(
                ModelSpec(name="hooked_model", description="a fake model", load=load)
            ),
        )
    )
    from saebench.models import resolve_model

    assert plugins.get_models()["hooked_model"].plugin == "model_plugin"
    assert resolve_model("hooked_model") == "handle for None"
    assert resolve_model("hooked_model:/some/dir", dataset="texts.jsonl") == "handle for /some/dir"
    assert calls == [
        {"device": "cpu", "source": None, "dataset": None},
        {"device": "cpu", "source": "/some/dir", "dataset": "texts.jsonl"},
    ]
    assert "toyworld" in plugins.get_models()  # the built-in model comes through the same hook


def test_hook_register_commands(register_plugin):
    """A plugin's command is added to the group the hook receives, and runs."""

    def register_commands(cli):
        @cli.command()
        @click.option("--name", default="world")
        def hello(name):
            """Say hello."""
            click.echo(f"hello {name}")

    register_plugin(_plugin_module("command_plugin", register_commands=register_commands))
    group = click.Group("scratch")
    plugins.pm.hook.register_commands(cli=group)
    assert {"hello", "world"} <= set(group.commands)  # ours and the toy world's built-in group
    result = CliRunner().invoke(group, ["hello", "--name", "saebench"])
    assert result.exit_code == 0, result.output
    assert result.output == "hello saebench\n"
    assert "world" in cli.commands  # the real CLI gets its plugin commands the same way


def test_env_var_restricts_third_party_plugins(monkeypatch):
    """SAEBENCH_LOAD_PLUGINS='' loads no entry-point plugin; a name loads only that one."""
    loaded = []

    class FakeEntryPoint:
        def __init__(self, name):
            self.name, self.dist = name, None

        def load(self):
            loaded.append(self.name)
            return _plugin_module(f"ep_{self.name}")

    fake = [FakeEntryPoint("alpha"), FakeEntryPoint("beta")]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: fake)
    for env, expected in (("", []), ("beta", ["beta"]), (None, ["alpha", "beta"])):
        loaded.clear()
        if env is None:
            monkeypatch.delenv(plugins.LOAD_ENV, raising=False)
        else:
            monkeypatch.setenv(plugins.LOAD_ENV, env)
        monkeypatch.setattr(plugins, "_loaded", False)
        plugins.load_plugins()
        assert loaded == expected, env
        for entry_point in fake:
            plugin = plugins.pm.get_plugin(entry_point.name)
            if plugin is not None:
                plugins.pm.unregister(plugin)


# --------------------------------------------------------------------------- broken plugins


def _raise(error):
    def hook(register):
        raise error

    return hook


def test_a_hook_that_raises_names_the_plugin_the_hook_and_the_fix(register_plugin):
    register_plugin(
        _plugin_module("broken_plugin", register_methods=_raise(RuntimeError("boom\nsecond")))
    )
    with pytest.raises(PluginError) as error:
        plugins.get_methods()
    message = str(error.value)
    assert isinstance(error.value, SaebenchError)
    assert message.startswith(
        "plugin 'broken_plugin' failed in its register_methods hook: RuntimeError: boom second."
    )
    assert "Fix or uninstall the plugin, or skip it with SAEBENCH_LOAD_PLUGINS=" in message
    assert "\n" not in message
    assert "frontier" in plugins.get_tasks()  # the other hooks still work


def test_a_bad_spec_passed_to_register_names_the_plugin(register_plugin):
    register_plugin(
        _plugin_module("sloppy_plugin", register_tasks=lambda register: register("frontier2"))
    )
    with pytest.raises(PluginError, match=r"'sloppy_plugin' failed in its register_tasks hook"):
        plugins.get_tasks()


def test_a_raising_hook_via_the_cli_is_one_line_and_exit_2(register_plugin):
    register_plugin(
        _plugin_module("broken_plugin", register_methods=_raise(ValueError("no weights")))
    )
    result = CliRunner().invoke(cli, ["list"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: plugin 'broken_plugin' failed in its register_methods hook")
    assert "ValueError: no weights" in line and "SAEBENCH_LOAD_PLUGINS=" in line


class _EntryPoint:
    """Stands in for an importlib.metadata entry point of the saebench group."""

    def __init__(self, name, load):
        self.name, self.value, self.dist, self._load = name, f"{name}_pkg.plugin", None, load

    def load(self):
        return self._load()


def _bad_signature(register, extra):  # hookspec register_methods takes `register` only
    pass


@pytest.mark.parametrize(
    "load, what",
    [
        (_raise(SyntaxError("invalid syntax (plugin.py, line 3)")), "to import"),
        (_raise(ImportError("No module named 'numba'")), "to import"),
        (lambda _: _plugin_module("ep_bad", register_methods=_bad_signature), "to register"),
    ],
)
def test_an_entry_point_that_fails_to_load_names_it(monkeypatch, load, what):
    entry_points = [_EntryPoint("broken", lambda: load(None)), _EntryPoint("fine", object)]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: entry_points)
    monkeypatch.delenv(plugins.LOAD_ENV, raising=False)
    monkeypatch.setattr(plugins, "_loaded", False)
    try:
        with pytest.raises(PluginError) as error:
            plugins.load_plugins()
        message = str(error.value)
        assert message.startswith(f"plugin 'broken' failed {what}")
        assert "skip it with SAEBENCH_LOAD_PLUGINS=fine listing the others" in message
        assert plugins._loaded is False  # the next call tries again instead of carrying on
        monkeypatch.setenv(plugins.LOAD_ENV, "fine")
        plugins.load_plugins()  # skipping it, as the message says, works
        assert plugins.pm.get_plugin("broken") is None and plugins.pm.get_plugin("fine")
    finally:
        for name in ("broken", "fine"):
            if plugins.pm.get_plugin(name) is not None:
                plugins.pm.unregister(name=name)
