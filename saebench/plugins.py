"""The plugin manager: built-ins are ordinary plugins; third-party ones come from entry points.

SAEBENCH_LOAD_PLUGINS restricts which third-party plugins load: a comma-separated list of
distribution/entry-point names ("" loads none). Built-ins always load.
SAEBENCH_PLUGIN_MODULES registers importable modules as plugins without packaging them (a
comma-separated list of module names): a plugin under development, or one a Ray worker must
load because the driver registered it by hand.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import pkgutil
from dataclasses import replace

import pluggy

from saebench import hookspecs
from saebench.errors import DuplicateNameError, PluginError, UnknownNameError

LOAD_ENV = "SAEBENCH_LOAD_PLUGINS"
MODULES_ENV = "SAEBENCH_PLUGIN_MODULES"
ENTRY_POINT_GROUP = "saebench"
# Built-in plugin packages: every module in them is a plugin (no list to keep in sync).
BUILTIN_PACKAGES = ("saebench_plugins", "saebench_tasks")
BUILTIN_MODULES = (
    "saebench.models",
    "saebench.toyworld.plugin",
    "saebench.gate",
    "saebench.cache_cli",
    "saebench.audit_cli",
    "saebench.eval_cli",
    "saebench.export_cli",
    "saebench.report.cli",
    "saebench.synth.cli",
)

pm = pluggy.PluginManager("saebench")
pm.add_hookspecs(hookspecs)
_loaded = False
_versions: dict[str, str] = {}  # entry-point plugin name -> its distribution's version
_module_plugins: set[str] = set()  # plugins registered from SAEBENCH_PLUGIN_MODULES


def _builtin_module_names() -> list[str]:
    names = list(BUILTIN_MODULES)
    for package_name in BUILTIN_PACKAGES:
        package = importlib.import_module(package_name)
        names += [
            f"{package_name}.{info.name}"
            for info in pkgutil.iter_modules(package.__path__)
            if not info.name.startswith("_")
        ]
    return names


def _plugin_fix(plugin_name: str) -> str:
    """How to get past a broken plugin: fix it, uninstall it, or load the others only."""
    if plugin_name in _builtin_module_names():
        return "It is built into saebench: reinstall saebench, or report the bug"
    if plugin_name in _module_plugins:
        return f"Fix the module, or drop it from {MODULES_ENV}"
    others = sorted(
        {
            entry_point.name
            for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
            if entry_point.name != plugin_name
        }
    )
    skip = (
        f"{LOAD_ENV}={','.join(others)} listing the others"
        if others
        else f"{LOAD_ENV}= (no other third-party plugin is installed)"
    )
    return f"Fix or uninstall the plugin, or skip it with {skip}"


def _plugin_failed(plugin_name: str, what: str, error: BaseException) -> PluginError:
    """One line: which plugin, what failed, the exception, the fix."""
    detail = " ".join(str(error).split()) or "(no message)"
    return PluginError(
        f"plugin {plugin_name!r} failed {what}: {type(error).__name__}: {detail}. "
        f"{_plugin_fix(plugin_name)}"
    )


def load_plugins() -> None:
    """Register built-ins and (filtered) entry-point plugins once per process.

    A plugin that fails to import or register raises PluginError naming it (and the next call
    tries again, rather than carrying on with the plugins registered so far)."""
    global _loaded
    if _loaded:
        return
    _loaded = True  # first: a plugin that imports saebench.cli calls back in here
    try:
        _register_all()
    except BaseException:
        _loaded = False
        raise


def _register_all() -> None:
    for module_name in _builtin_module_names():
        if pm.get_plugin(module_name) is None:
            pm.register(importlib.import_module(module_name), name=module_name)
    allowed = os.environ.get(LOAD_ENV)
    allowed_names = (
        None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    )
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist_name = entry_point.dist.name if entry_point.dist else entry_point.name
        if allowed_names is not None and not ({entry_point.name, dist_name} & allowed_names):
            continue
        if pm.get_plugin(entry_point.name) is None:
            try:
                plugin = entry_point.load()
            except Exception as error:
                raise _plugin_failed(
                    entry_point.name, f"to import (entry point {entry_point.value!r})", error
                ) from error
            _register(plugin, entry_point.name)
            if entry_point.dist is not None:
                _versions[entry_point.name] = entry_point.dist.version
    for module_name in filter(
        None, (n.strip() for n in os.environ.get(MODULES_ENV, "").split(","))
    ):
        if pm.get_plugin(module_name) is None:
            _module_plugins.add(module_name)
            try:
                module = importlib.import_module(module_name)
            except ImportError as error:
                raise UnknownNameError(
                    f"{MODULES_ENV} names {module_name!r}, which cannot be imported ({error}); "
                    f"fix the name or PYTHONPATH, or unset {MODULES_ENV}"
                ) from None
            except Exception as error:
                raise _plugin_failed(
                    module_name, f"to import (from {MODULES_ENV})", error
                ) from error
            _register(module, module_name)


def _register(plugin: object, name: str) -> None:
    try:
        pm.register(plugin, name=name)
    except Exception as error:  # pluggy.PluginValidationError: a hookimpl that fits no hookspec
        raise _plugin_failed(name, "to register", error) from error


def _collect(hook_name: str, kind: str) -> dict:
    """Call one register_* hook per plugin, attributing each name to its plugin."""
    load_plugins()
    found: dict = {}
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        plugin_name = pm.get_name(impl.plugin)

        def register(spec, _plugin=plugin_name):
            if spec.name in found:
                raise DuplicateNameError(
                    f"{kind} {spec.name!r} is registered twice: by plugin "
                    f"{found[spec.name].plugin!r} and by plugin {_plugin!r}. Rename one, or "
                    f"restrict third-party plugins with {LOAD_ENV}=..."
                )
            found[spec.name] = replace(spec, plugin=_plugin)

        try:
            impl.function(register=register)
        except DuplicateNameError:
            raise
        except Exception as error:
            raise _plugin_failed(str(plugin_name), f"in its {hook_name} hook", error) from error
    return found


def get_methods() -> dict:
    return _collect("register_methods", "method")


def get_tasks() -> dict:
    return _collect("register_tasks", "task")


def get_models() -> dict:
    return _collect("register_models", "model")


def lookup(kind: str, name: str, available: dict):
    """Return available[name] or fail listing what is available."""
    if name not in available:
        raise UnknownNameError(
            f"unknown {kind} {name!r}. Available {kind}s: {', '.join(sorted(available)) or '(none)'}. "
            f"Check the spelling, or install the plugin that provides it "
            f"(`saebench plugins` lists what is installed)."
        )
    return available[name]


def get_method(name: str):
    return lookup("method", name, get_methods())


def get_task(name: str):
    return lookup("task", name, get_tasks())


def plugin_summaries() -> list[dict]:
    """JSON-able description of every registered plugin: name, version, hooks."""
    load_plugins()
    summaries = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        assert name is not None  # every plugin in pm.get_plugins() was registered with a name
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        version = _versions.get(name)
        if version is None and name.split(".")[0] in {"saebench", *BUILTIN_PACKAGES}:
            from saebench import __version__ as version
        summaries.append({"name": name, "version": version, "hooks": hooks})
    return sorted(summaries, key=lambda s: s["name"])
