"""The plugin machinery: registration, attribution, duplicates, unknown names, env filtering."""

import importlib.metadata
import types

import pytest

from saebench import plugins
from saebench.errors import DuplicateNameError, UnknownNameError
from saebench.hookspecs import hookimpl
from saebench.specs import MethodSpec, MetricInfo, ModelSpec, TaskSpec


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
    import click

    group = click.Group("scratch")
    plugins.pm.hook.register_commands(cli=group)
    assert "world" in group.commands  # the built-in toy-world plugin's commands
    assert set(seen) == {"methods", "tasks", "models", "commands"}


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
