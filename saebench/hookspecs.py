"""The hooks a saebench plugin can implement. Each receives a `register` callback (or the CLI)."""

import pluggy

hookspec = pluggy.HookspecMarker("saebench")
hookimpl = pluggy.HookimplMarker("saebench")


@hookspec
def register_methods(register):
    """Register SAE training methods: call register(MethodSpec(...)) once per method."""


@hookspec
def register_tasks(register):
    """Register evaluation tasks: call register(TaskSpec(...)) once per task."""


@hookspec
def register_models(register):
    """Register models to harvest activations from: call register(ModelSpec(...)) once per model."""


@hookspec
def register_commands(cli):
    """Add extra commands to the `saebench` click group `cli`."""
