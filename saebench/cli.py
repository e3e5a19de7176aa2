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


def _comma_list(value):
    return [item.strip() for item in value.split(",") if item.strip()] if value else None


@cli.command()
@click.option(
    "--methods", required=True, help="Comma list of methods, e.g. topk,gated (see `saebench list`)."
)
@click.option(
    "--tasks",
    default=None,
    help="Comma list of tasks (default: every task that supports the model).",
)
@click.option(
    "--model",
    default="toyworld",
    show_default=True,
    help="toyworld, minilm, hf:<hub name or local directory>, or "
    "toyworld:<checkpoint directory> (e.g. from `saebench world train --out`).",
)
@click.option(
    "--hook", default=None, help="Hook point (default: residual stream at the middle layer)."
)
@click.option(
    "--preset",
    type=click.Choice(["smoke", "default", "full"]),
    default="default",
    show_default=True,
)
@click.option(
    "--sweep",
    multiple=True,
    metavar="METHOD=V1,V2",
    help="Override a method's sparsity sweep; repeatable.",
)
@click.option("--seeds", type=int, default=None, help="Seeds per SAE (default: the preset's).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option(
    "--out",
    type=click.Path(),
    default=None,
    help="Run directory (default: results/<model>-<preset>-<methods>).",
)
@click.option("--dataset", type=click.Path(), default=None, help="Text/JSONL file to harvest from.")
@click.option(
    "--task-option",
    "task_options",
    multiple=True,
    metavar="TASK.NAME=VALUE",
    help="A task's own setting, e.g. sparse_probing.data=labels.csv (repeatable).",
)
@click.option("--retry-failed", is_flag=True, help="On resume, rerun cells that failed before.")
@click.option("--no-progress", is_flag=True, help="Hide training progress bars.")
def run(
    methods,
    tasks,
    model,
    hook,
    preset,
    sweep,
    seeds,
    device,
    out,
    dataset,
    task_options,
    retry_failed,
    no_progress,
):
    """Train each method over its sparsity sweep on one activation stream; evaluate every task."""
    from saebench.results import frontier_table
    from saebench.runner import Runner, RunRequest, parse_sweep, parse_task_options

    request = RunRequest(
        methods=_comma_list(methods),
        tasks=_comma_list(tasks),
        model=model,
        hook=hook,
        preset=preset,
        sweeps=parse_sweep(sweep),
        seeds=seeds,
        device=device,
        out=out,
        dataset=dataset,
        retry_failed=retry_failed,
        progress=not no_progress,
        task_options=parse_task_options(task_options),
    )
    request.command = "saebench " + " ".join(sys.argv[1:])
    run_dir = Runner(request, echo=click.echo).run()
    from saebench.results import load_cells, load_results

    table = frontier_table(load_results(run_dir))
    if not table.empty:
        click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    failed = [c for c in load_cells(run_dir) if c["status"] != "ok"]
    if failed:
        click.echo(f"{len(failed)} cell(s) failed; reasons in {run_dir}/results.md")
    click.echo(f"results: {run_dir}/results.csv, {run_dir}/run.json, plots in {run_dir}/plots/")


plugins.load_plugins()
plugins.pm.hook.register_commands(cli=cli)
