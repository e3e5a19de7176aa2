"""`saebench eval --sae PATH ...`: score SAEs trained elsewhere with every task, the baselines and
the calibration layer, exactly as `saebench run` scores its own (a built-in plugin: registered
through the register_commands hook). Each --sae is one method (`pretrained:PATH`); a directory
of SAEs is one method whose knob is the SAE's index, so a family gets an L0 curve.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from saebench.hookspecs import hookimpl


def default_model_and_hook(paths: list[str]) -> tuple[str | None, str | None]:
    """The model and hook the SAEs record (their first agreeing metadata), as --model/--hook."""
    from saebench.errors import ConfigError
    from saebench.pretrained import recorded_metadata

    models, hooks = set(), set()
    for path in paths:
        for _, metadata in recorded_metadata(path):
            if metadata.get("model_name"):
                models.add(str(metadata["model_name"]))
            if metadata.get("hook_name"):
                hooks.add(str(metadata["hook_name"]))
    if len(hooks) > 1:
        raise ConfigError(
            f"the SAEs record different hooks {sorted(hooks)}; evaluate one hook at a time "
            "(pass --hook and only the SAEs trained on it)"
        )
    if len(models) > 1:
        raise ConfigError(
            f"the SAEs record different models {sorted(models)}; pass --model and only the SAEs "
            "trained on it"
        )
    model = next(iter(models), None)
    if model is not None and model.split(":")[0] not in ("toyworld", "toyworld-random", "minilm"):
        model = f"hf:{model}"  # a Hugging Face name, as SAELens records it
    return model, next(iter(hooks), None)


@click.command(name="eval")
@click.option(
    "--sae",
    "saes",
    multiple=True,
    required=True,
    help="A saved SAE directory (SAELens, dictionary_learning, sparsify), a directory of them, "
    "or saelens:RELEASE/ID from the local Hugging Face cache; repeatable.",
)
@click.option("--model", default=None, help="Default: the model the SAEs record.")
@click.option("--hook", default=None, help="Default: the hook the SAEs record.")
@click.option("--tasks", default=None, help="Comma list (default: every task the model supports).")
@click.option(
    "--preset",
    type=click.Choice(["smoke", "default", "full"]),
    default="default",
    show_default=True,
    help="Eval sizes and the baselines' seeds.",
)
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Seeds of the baselines.")
@click.option("--baselines/--no-baselines", default=True, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--out", type=click.Path(), default=None, help="Run directory.")
@click.option("--cache", "cache_dir", type=click.Path(), default=None, envvar="SAEBENCH_CACHE")
@click.option("--no-progress", is_flag=True)
@click.option("--allow-failures", is_flag=True, help="Exit 0 even when cells failed.")
def eval_command(
    saes,
    model,
    hook,
    tasks,
    preset,
    seeds,
    baselines,
    device,
    out,
    cache_dir,
    no_progress,
    allow_failures,
):
    """Score SAEs trained elsewhere (SAELens, dictionary_learning, sparsify directories): every
    task, calibrated against the baselines at matched L0. Model and hook default to what the
    SAEs record. Exit codes as `saebench run`."""
    from saebench.cli import execute_request
    from saebench.pretrained import PREFIX
    from saebench.runner import RunRequest

    recorded_model, recorded_hook = default_model_and_hook(list(saes))
    request = RunRequest(
        methods=[PREFIX + str(path) for path in saes],
        tasks=[t for t in tasks.split(",") if t] if tasks else None,
        model=model or recorded_model or "toyworld",
        hook=hook or recorded_hook,
        preset=preset,
        seeds=seeds,
        baselines=baselines,
        device=device,
        out=Path(out) if out else None,
        cache_dir=Path(cache_dir) if cache_dir else None,
        progress=not no_progress,
        command=shlex.join(["saebench", *sys.argv[1:]]),
    )
    execute_request(request, allow_failures)


@hookimpl
def register_commands(cli):
    cli.add_command(eval_command)
