"""`saebench synthetic`: the SynthSAEBench-style benchmark as a command (a built-in plugin: it
registers the command through the register_commands hook)."""

from __future__ import annotations

from pathlib import Path

import click

from saebench.hookspecs import hookimpl


def _names(value: str) -> list[str]:
    names = [item.strip() for item in value.split(",") if item.strip()]
    if not names:
        raise click.BadParameter("give at least one method, e.g. --methods topk,l1")
    if len(set(names)) != len(names):
        raise click.BadParameter(f"{value!r} names a method twice; list each once")
    return names


def _sweeps(values: tuple[str, ...]) -> dict[str, list[float]]:
    sweeps: dict[str, list[float]] = {}
    for value in values:
        method, sep, knobs = value.partition("=")
        items = [v.strip() for v in knobs.split(",") if v.strip()]
        if not sep or not method.strip() or not items:
            raise click.BadParameter(
                f"{value!r} must look like METHOD=v1,v2 (e.g. topk=4,6,8)", param_hint="--sweep"
            )
        if method.strip() in sweeps:
            raise click.BadParameter(
                f"{method.strip()!r} is swept twice; give all its values in one --sweep",
                param_hint="--sweep",
            )
        try:
            sweeps[method.strip()] = [float(v) for v in items]
        except ValueError as error:
            raise click.BadParameter(f"{value!r}: values must be numbers ({error})") from None
    return sweeps


@click.command(name="synthetic")
@click.option(
    "--methods",
    required=True,
    help="Comma-separated methods to sweep (see `saebench list`), e.g. topk,batchtopk,l1.",
)
@click.option(
    "--preset",
    type=click.Choice(["smoke", "cpu", "published"]),
    default="cpu",
    show_default=True,
    help="smoke: seconds; cpu: 2,048 features in 128 dims; published: SynthSAEBench-16k (GPU).",
)
@click.option("--seeds", type=click.IntRange(min=1), default=2, show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Output directory; rerunning with the same one resumes (finished SAEs are skipped).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--sweep",
    multiple=True,
    help="METHOD=v1,v2: train exactly these knobs for METHOD instead of searching; repeatable.",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Knob-search refinement rounds after the first guess (see docs/synthetic.md).",
)
@click.option("--stream-seed", type=int, default=None, help="The stream's seed (default: 0).")
@click.option("--train-samples", type=click.IntRange(min=1), default=None, help="Per SAE.")
@click.option("--eval-samples", type=click.IntRange(min=1), default=None, help="Held out.")
def synthetic(
    methods, preset, seeds, out, device, sweep, rounds, stream_seed, train_samples, eval_samples
):
    """Sweep METHODS on a synthetic stream with a known dictionary (SynthSAEBench's kind) and
    score each SAE on held-out samples: MCC, uniqueness, per-latent precision/recall/F1,
    explained variance, L0, dead latents, shrinkage, absorption on the hierarchy.

    Writes OUT/rows.csv (one row per method, knob and seed) and OUT/results.md (every metric at
    the stream's true L0 and at matched L0, mean ± 95% t-interval over seeds)."""
    from saebench.fileio import write_text
    from saebench.models import resolve_device
    from saebench.synth.bench import REPORT_FILE, BenchPlan, run_bench
    from saebench.synth.presets import get_synth_preset
    from saebench.synth.report import markdown_report

    names = _names(methods)
    chosen = get_synth_preset(preset).with_overrides(
        stream_seed=stream_seed, train_samples=train_samples, eval_samples=eval_samples
    )
    plan = BenchPlan(
        methods=names,
        preset=chosen,
        seeds=list(range(seeds)),
        out=out,
        device=str(resolve_device(device)),
        sweeps=_sweeps(sweep),
        rounds=rounds,
    )
    result = run_bench(plan, echo=click.echo)
    report = markdown_report(result.rows, result.card, names, result.seconds)
    write_text(out / REPORT_FILE, report)
    click.echo(report)
    click.echo(f"{result.trained} SAE(s) trained in {result.seconds:.0f}s; wrote {out}")


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(synthetic)
