"""The thin `saebench` command line. Plugins add commands through the register_commands hook."""

from __future__ import annotations

import json
import shlex
import signal
import sys

import click

from saebench import plugins
from saebench.errors import SaebenchError
from saebench.planner import EXECUTORS
from saebench.presets import PRESETS


class _Group(click.Group):
    """Print saebench errors as one clear line (they name the fix) instead of a traceback."""

    def invoke(self, ctx):
        if _plugin_error is not None:
            click.echo(f"Error: {_plugin_error}", err=True)
            sys.exit(2)
        try:
            return super().invoke(ctx)
        except SaebenchError as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(2)
        except OSError as error:
            # The environment failed outside any cell (disk full, read-only or missing path):
            # one line, and what was written so far is kept for the rerun to resume from.
            where = f" ({error.filename})" if error.filename else ""
            click.echo(
                f"Error: {error.strerror or error}{where}. Fix that (free space, a writable "
                "path), then rerun the same command: finished work is kept and resumed.",
                err=True,
            )
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


@cli.command(name="numerics")
def numerics_command():
    """Print the shell exports for portable CPU numerics: the same float results on any x86-64
    CPU kind with AVX2 (ATen's AVX2 kernels, MKL's reproducible branch, fixed oneDNN/OpenBLAS/numpy
    kernels). They must be set before Python starts: `eval "$(saebench numerics)"`. The test
    suite and scripts/ci_gate.sh run under them; run.json records what a run ran under."""
    from saebench.numerics import export_lines

    click.echo(export_lines())


class CommaList(click.ParamType):
    """`a,b, c` -> ['a', 'b', 'c'] (empty items dropped)."""

    name = "LIST"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        return [item.strip() for item in str(value).split(",") if item.strip()]


class Sweep(click.ParamType):
    """`METHOD=v1,v2` -> ('METHOD', [v1, v2]); a bad value fails here, naming the fix."""

    name = "METHOD=V1,V2"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        method, sep, values = str(value).partition("=")
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not method.strip() or not items:
            self.fail(f"{value!r} must look like METHOD=v1,v2 (e.g. topk=8,16,32)", param, ctx)
        try:
            return method.strip(), [float(v) for v in items]
        except ValueError as error:
            self.fail(f"{value!r}: values must be numbers ({error})", param, ctx)


class TaskOption(click.ParamType):
    """`TASK.NAME=VALUE` -> ('TASK', 'NAME', 'VALUE')."""

    name = "TASK.NAME=VALUE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        key, sep, option_value = str(value).partition("=")
        task, dot, name = key.strip().partition(".")
        if not sep or not dot or not task or not name:
            self.fail(
                f"{value!r} must look like TASK.NAME=VALUE (e.g. sparse_probing.pooling=last)",
                param,
                ctx,
            )
        return task, name, option_value.strip()


class Device(click.ParamType):
    """auto, cpu, cuda or cuda:N (whether CUDA is there is checked when the run starts)."""

    name = "auto|cpu|cuda|cuda:N"

    def convert(self, value, param, ctx):
        text = str(value).strip()
        base, colon, index = text.partition(":")
        # ASCII digits only: str.isdigit() also accepts "٣" or "²", which torch refuses.
        digits = index.isascii() and index.isdigit()
        if text in ("auto", "cpu", "cuda") or (base == "cuda" and colon and digits):
            return text
        self.fail(f"{value!r} is not a device; use auto, cpu, cuda or cuda:N", param, ctx)


EXIT_CELLS_FAILED, EXIT_INTERRUPTED = 1, 130


def _terminate_like_interrupt():
    """SIGTERM (a batch scheduler, `kill`) ends the run as Ctrl-C does: run.json says
    "interrupted" and the next run resumes. Returns the previous handler."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (e.g. an embedding application): leave it be
        return signal.getsignal(signal.SIGTERM)


def sweeps_from(pairs) -> dict[str, list[float]]:
    """Repeated --sweep flags; naming one method twice is refused rather than half-kept."""
    sweeps: dict[str, list[float]] = {}
    for method, values in pairs:
        if method in sweeps:
            raise click.BadParameter(
                f"{method!r} is swept twice; give all its values in one --sweep {method}=v1,v2",
                param_hint="--sweep",
            )
        sweeps[method] = values
    return sweeps


def task_options_from(triples) -> dict[str, dict[str, str]]:
    options: dict[str, dict[str, str]] = {}
    for task, name, value in triples:
        options.setdefault(task, {})[name] = value
    return options


@cli.command()
@click.option(
    "--methods",
    required=True,
    type=CommaList(),
    help="Comma list of methods, e.g. topk,gated (see `saebench list`); pretrained:PATH adds "
    "an SAE trained elsewhere (or a directory of them), as `saebench eval` does.",
)
@click.option(
    "--tasks",
    default=None,
    type=CommaList(),
    help="Comma list of tasks (default: every task that supports the model).",
)
@click.option(
    "--model",
    default="toyworld",
    show_default=True,
    help="toyworld, toyworld-random (the same architecture with random weights: a control), "
    "minilm, hf:<hub name or local directory>, or toyworld:<checkpoint directory> (e.g. from "
    "`saebench world train --out`).",
)
@click.option(
    "--hook", default=None, help="Hook point (default: residual stream at the middle layer)."
)
@click.option("--preset", type=click.Choice(list(PRESETS)), default="default", show_default=True)
@click.option(
    "--sweep",
    multiple=True,
    type=Sweep(),
    help="Override a method's sparsity sweep; repeatable, once per method.",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=None,
    help="Seeds per SAE (default: the preset's).",
)
@click.option(
    "--baselines/--no-baselines",
    default=True,
    show_default=True,
    help="Add every calibration baseline (random, pca, identity, ...) over its sweep, so each "
    "score is read against dictionaries that learned nothing at the same L0.",
)
@click.option(
    "--device",
    type=Device(),
    default="auto",
    show_default=True,
    help="auto, cpu, cuda or cuda:N. With --executor ray and cuda, Ray gives each task a GPU.",
)
@click.option(
    "--sae-device",
    type=Device(),
    default=None,
    help="Train the SAEs on another device than the model's (e.g. --device cuda:0 --sae-device "
    "cuda:1); tasks move each SAE to the model's device. Local executor only.",
)
@click.option(
    "--executor",
    type=click.Choice(list(EXECUTORS)),
    default="local",
    show_default=True,
    help="local: this process. ray: Ray tasks on a local Ray or a cluster (pip install -e '.[ray]').",
)
@click.option(
    "--ray-address",
    default=None,
    help="Join a running Ray cluster (auto or HOST:PORT); default: start a local Ray.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="CPUs of the local Ray (one torch thread per task; default: all cores).",
)
@click.option(
    "--max-retries",
    type=click.IntRange(min=0),
    default=None,
    help="Ray: reruns of a unit whose worker died before its cells are recorded as failed "
    "(default: 2).",
)
@click.option(
    "--out",
    type=click.Path(),
    default=None,
    help="Run directory (default: results/<model>-<preset>-<methods>).",
)
@click.option("--dataset", type=click.Path(), default=None, help="Text/JSONL file to harvest from.")
@click.option(
    "--cache",
    "cache_dir",
    type=click.Path(),
    default=None,
    envvar="SAEBENCH_CACHE",
    help="Activation cache directory (default: .saebench_cache; on a Ray cluster, a shared path).",
)
@click.option(
    "--task-option",
    "task_options",
    multiple=True,
    type=TaskOption(),
    help="A task's own setting, e.g. sparse_probing.data=labels.csv (repeatable).",
)
@click.option("--retry-failed", is_flag=True, help="On resume, rerun cells that failed before.")
@click.option(
    "--allow-failures",
    is_flag=True,
    help="Exit 0 even when cells failed (default: exit 1, so CI notices).",
)
@click.option("--no-progress", is_flag=True, help="Hide training progress bars.")
@click.option(
    "--compile",
    "compile_step",
    is_flag=True,
    help="torch.compile the training loss of the dense methods (faster on long runs; the first "
    "step of each method pays the compile).",
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "bfloat16"]),
    default="float32",
    show_default=True,
    help="Autocast dtype of the training forward (bfloat16 for GPUs; weights stay fp32).",
)
@click.option(
    "--train-tokens",
    type=click.IntRange(min=1),
    default=None,
    help="Tokens each SAE trains on (default: the preset's; epochs over the harvest when more). "
    "The default preset stops short of convergence: `saebench converge` measures how far.",
)
@click.option(
    "--expansion",
    type=click.IntRange(min=1),
    default=None,
    help="Dictionary width as a multiple of the hook's width, d_sae = expansion × d_in "
    "(default: the preset's). Every method and baseline of the run gets it.",
)
def run(
    methods,
    tasks,
    model,
    hook,
    preset,
    sweep,
    seeds,
    baselines,
    device,
    sae_device,
    executor,
    ray_address,
    workers,
    max_retries,
    out,
    dataset,
    cache_dir,
    task_options,
    retry_failed,
    allow_failures,
    no_progress,
    compile_step,
    dtype,
    train_tokens,
    expansion,
):
    """Train each method over its sparsity sweep on one activation stream; evaluate every task.

    Exit codes: 0 every cell ok (or --allow-failures), 1 some cell failed or hit an environment
    error, 2 bad input (the message names the fix), 130 interrupted (rerun to resume).
    """
    from pathlib import Path

    from saebench.runner import RunRequest

    request = RunRequest(
        methods=methods,
        tasks=tasks,
        model=model,
        hook=hook,
        preset=preset,
        sweeps=sweeps_from(sweep),
        seeds=seeds,
        baselines=baselines,
        device=device,
        sae_device=sae_device,
        out=Path(out) if out else None,
        dataset=dataset,
        cache_dir=Path(cache_dir) if cache_dir else None,
        retry_failed=retry_failed,
        progress=not no_progress,
        compile=compile_step,
        dtype=dtype,
        train_tokens=train_tokens,
        expansion=expansion,
        task_options=task_options_from(task_options),
        command=shlex.join(["saebench", *sys.argv[1:]]),
        executor=executor,
        ray_address=ray_address,
        workers=workers,
        max_retries=max_retries,
    )
    execute_request(request, allow_failures)


def execute_request(request, allow_failures: bool = False) -> None:
    """Run `request` as `saebench run` does: SIGTERM as an interrupt, the frontier table, and
    the exit code (1 when a cell failed, 130 when interrupted). `saebench eval` shares it."""
    from saebench.results import frontier_table, load_results, planned_cells
    from saebench.runner import Runner

    previous = _terminate_like_interrupt()
    try:
        runner = Runner(request, echo=click.echo)
        runner.run()
    except KeyboardInterrupt:
        out = f" in {request.out}" if request.out else ""
        click.echo(
            f"Interrupted: the finished cells are saved{out}; rerun the same command to resume.",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    plan, run_dir = runner.plan, runner.plan.run_dir
    table = frontier_table(load_results(run_dir), plan.tasks)
    if not table.empty:
        click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    click.echo(f"results: {run_dir.results_csv}, {run_dir.run_json}, plots in {run_dir.plots_dir}/")
    bad = [c for c in planned_cells(run_dir, plan) if c.status in ("failed", "error")]
    if bad:
        errors = sum(c.status == "error" for c in bad)
        click.echo(
            f"{len(bad)} cell(s) did not finish ({errors} environment error(s), retried by "
            f"rerunning; {len(bad) - errors} failed, rerun with --retry-failed after a fix); "
            f"reasons in {run_dir.results_md}",
            err=True,
        )
        if not allow_failures:
            sys.exit(EXIT_CELLS_FAILED)


@cli.command()
@click.option(
    "--methods",
    type=CommaList(),
    default="topk,l1,tanh,gated",
    show_default=True,
    help="Methods whose training step to time.",
)
@click.option(
    "--shape",
    "shapes",
    multiple=True,
    help="d_in,d_sae,batch (repeatable; default: 512,8192,1024 128,1024,1024 128,2048,1024).",
)
@click.option(
    "--group-size",
    "group_sizes",
    type=int,
    multiple=True,
    help="SAEs trained together per step (repeatable; default: 1 and 12).",
)
@click.option("--k", type=int, default=32, show_default=True, help="TopK's k.")
@click.option("--repeats", type=int, default=10, show_default=True, help="Timed steps (median).")
@click.option("--threads", type=int, default=None, help="torch threads (default: torch's).")
@click.option(
    "--dead-fraction",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of latents held dead (TopK then pays for AuxK).",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write results here.")
def bench(methods, shapes, group_sizes, k, repeats, threads, dead_fraction, json_path):
    """Time one training step of each method on random data, against the measured matmul
    roofline of this machine. Run it with nothing else running."""
    from pathlib import Path

    import torch

    from saebench import bench as benchmark

    if threads:
        torch.set_num_threads(threads)
    try:
        parsed = [tuple(int(v) for v in s.split(",")) for s in shapes] or list(benchmark.SHAPES)
        if any(len(s) != 3 for s in parsed):
            raise ValueError
    except ValueError:
        raise click.BadParameter("give --shape as three integers: d_in,d_sae,batch") from None
    machine, results = benchmark.bench_steps(
        methods,
        parsed,
        group_sizes or (1, 12),
        k=k,
        repeats=repeats,
        dead_fraction=dead_fraction,
        echo=click.echo,
    )
    if json_path:
        from saebench.fileio import write_json

        write_json(Path(json_path), benchmark.as_json(machine, results))
        click.echo(f"wrote {json_path}")


@cli.command()
@click.option(
    "--methods",
    type=CommaList(),
    default="topk,gated,l1,tanh",
    show_default=True,
    help="Methods to check (each over its preset sweep).",
)
@click.option("--model", default="toyworld", show_default=True, help="As for `saebench run`.")
@click.option("--hook", default=None, help="Hook point (default: the model's).")
@click.option("--preset", type=click.Choice(list(PRESETS)), default="default", show_default=True)
@click.option("--factor", type=float, default=4.0, show_default=True, help="Longer run's budget ×.")
@click.option(
    "--tolerance", type=float, default=0.10, show_default=True, help="Allowed relative change."
)
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--device", type=Device(), default="cpu", show_default=True)
@click.option("--cache", "cache_dir", type=click.Path(), default=None, envvar="SAEBENCH_CACHE")
@click.option("--tokens", type=int, default=None, help="Budget per SAE (default: the preset's).")
@click.option("--batch-size", type=int, default=None, help="Default: the preset's.")
@click.option("--lr", type=float, default=None, help="Default: the preset's.")
@click.option("--compile", "compile_step", is_flag=True, help="As for `saebench run`.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write rows here.")
def converge(
    methods,
    model,
    hook,
    preset,
    factor,
    tolerance,
    seeds,
    device,
    cache_dir,
    tokens,
    batch_size,
    lr,
    compile_step,
    json_path,
):
    """Check that a preset's training budget has converged: each method's sweep trained at the
    budget and at FACTOR× it on the same activations; final eval FVU and L0 must agree within
    the tolerance. Exits 1 when a method has not converged."""
    from dataclasses import asdict
    from pathlib import Path

    from saebench.convergence import check_convergence, format_rows
    from saebench.harvest import harvest
    from saebench.models import resolve_device, resolve_model
    from saebench.presets import get_preset

    chosen = get_preset(preset)
    torch_device = resolve_device(device)
    handle = resolve_model(model, torch_device, None)
    hook = hook or handle.default_hook
    store = harvest(
        handle,
        hook,
        chosen.n_train_tokens,
        chosen.n_eval_tokens,
        cache_dir=Path(cache_dir) if cache_dir else None,
        device=torch_device,
    )
    cfg = chosen.train_config(
        store.d_in,
        total_tokens=tokens or chosen.train_tokens_per_sae,
        batch_size=batch_size or chosen.batch_size,
        lr=lr or chosen.lr,
        compile=compile_step,
    )
    rows = []
    for name in methods:
        method = plugins.get_method(name)
        knobs = list(method.sweeps.get(preset) or method.sweeps.get("default") or [])
        method_rows = check_convergence(
            method, knobs, store, cfg, factor, range(seeds), torch_device, click.echo
        )
        click.echo(format_rows(method_rows, factor, tolerance))
        rows += method_rows
    if json_path:
        from saebench.fileio import write_json

        write_json(
            Path(json_path),
            [dict(asdict(r), converged=r.converged(tolerance)) for r in rows],
        )
    late = sorted({r.method for r in rows if not r.converged(tolerance)})
    if late:
        click.echo(f"not converged within {tolerance:.0%}: {', '.join(late)}", err=True)
        sys.exit(1)


# A plugin that fails to load must not turn every command into a traceback at import time: the
# error is kept and reported by the group as one line (exit 2) when a command runs.
_plugin_error: SaebenchError | None = None
try:
    plugins.load_plugins()
    plugins.pm.hook.register_commands(cli=cli)
except SaebenchError as error:
    _plugin_error = error
