"""`saebench report RUN_DIR [--out report.html]`: the run as one self-contained HTML page (a
built-in plugin: it registers the command through the register_commands hook)."""

from __future__ import annotations

from pathlib import Path

import click

from saebench.hookspecs import hookimpl


@click.command(name="report")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the page (default: RUN_DIR/report.html).",
)
@click.option(
    "--latents",
    default="auto",
    show_default=True,
    metavar="auto|all|none|LIST",
    help="SAEs with latent dashboards: auto (one per learned method, lowest seed, at the knob "
    "nearest the run's median L0), all, none, or a comma list of METHOD__KNOB__seedK or "
    "METHOD:KNOB:SEED.",
)
@click.option(
    "--max-saes",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="At most this many SAEs with --latents auto.",
)
@click.option("--device", default="cpu", show_default=True, help="Where dashboards are computed.")
@click.option(
    "--cache",
    "cache_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="SAEBENCH_CACHE",
    help="Activation cache of the run (only read when a dashboard is not cached yet).",
)
@click.option("--no-images", is_flag=True, help="Leave the run's PNG plots out of the page.")
def report(
    run_dir: Path,
    out: Path | None,
    latents: str,
    max_saes: int,
    device: str,
    cache_dir: Path | None,
    no_images: bool,
) -> None:
    """Write RUN_DIR as one self-contained HTML page: config, verdicts, task plots and tables,
    failed cells, training, per-latent dashboards and a two-SAE comparison.

    Dashboards are cached in each SAE's artifacts/report_latents/: a second build reuses them
    without loading the model."""
    from saebench.errors import SaebenchError
    from saebench.report.build import build_report

    try:
        result = build_report(
            run_dir,
            out,
            latents=latents,
            max_saes=max_saes,
            device=device,
            cache_dir=cache_dir,
            images=not no_images,
            echo=click.echo,
        )
    except (SaebenchError, FileNotFoundError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(result.summary())
    click.echo("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items()))


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(report)
