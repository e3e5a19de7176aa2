"""The hooks a saebench plugin can implement. Each receives a `register` callback (or the CLI).

docs/writing-plugins.md documents every hook under a heading with its exact signature, and
tests/test_hookspecs_meta.py fails if a hook lacks that heading, a docstring or a `test_hook_*`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from saebench.specs import MethodSpec, ModelSpec, TaskSpec

hookspec = pluggy.HookspecMarker("saebench")
hookimpl = pluggy.HookimplMarker("saebench")


@hookspec
def register_methods(register: Callable[[MethodSpec], None]) -> None:
    """Register SAE training methods: call register(MethodSpec(...)) once per method."""


@hookspec
def register_tasks(register: Callable[[TaskSpec], None]) -> None:
    """Register evaluation tasks: call register(TaskSpec(...)) once per task."""


@hookspec
def register_models(register: Callable[[ModelSpec], None]) -> None:
    """Register models to harvest activations from: call register(ModelSpec(...)) once per model."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add extra commands to the `saebench` click group `cli`."""
