"""The thin `saebench` command line. Plugins add commands through the register_commands hook."""
from __future__ import annotations

import json
import sys

import click

from saebench import plugins
from saebench.errors import SaebenchError


class _Group(click.Group):
    """Print saebench errors as one clear line (they name the fix) instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SaebenchError as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="saebench")
def cli():
    """saebench: train and compare sparse autoencoders on language-model activations."""


@cli.command(name="list")
def list_command():
    """List methods, tasks and models with the plugin that provides each."""
    for kind, specs in (
        ("methods", plugins.get_methods()),
        ("tasks", plugins.get_tasks()),
        ("models", plugins.get_models()),
    ):
        click.echo(f"{kind}:")
        for name, spec in sorted(specs.items()):
            click.echo(f"  {name:<16} {spec.description}  [{spec.plugin}]")


@cli.command(name="plugins")
def plugins_command():
    """Show installed plugins as JSON: name, version, hooks."""
    click.echo(json.dumps(plugins.plugin_summaries(), indent=2))


plugins.load_plugins()
plugins.pm.hook.register_commands(cli=cli)
