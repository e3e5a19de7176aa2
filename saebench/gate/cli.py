"""The gate's commands: `saebench baseline create` and `saebench check` (registered through the
register_commands hook, as any plugin's commands are)."""

from __future__ import annotations

import sys
import tempfile
import traceback
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import click

from saebench.errors import SaebenchError
from saebench.gate.baseline import create_baseline, load_baseline
from saebench.gate.compare import DEFAULT_Z, GateResult, check_z, compare, rerun_request
from saebench.gate.report import format_text, write_junit, write_markdown
from saebench.hookspecs import hookimpl
from saebench.rundir import knob_label

if TYPE_CHECKING:
    from saebench.runner import RunRequest


class RerunError(SaebenchError):
    """The rerun of a baseline's configuration crashed, so nothing could be compared."""


@click.group(name="baseline")
def baseline_group() -> None:
    """Noise-aware quality baselines for the regression gate."""


@baseline_group.command(name="create")
@click.argument("run_dir", type=click.Path())
@click.option(
    "--out",
    type=click.Path(),
    default=None,
    help="Baseline file (default: results/baselines/<run dir name>.json).",
)
def create_command(run_dir: str, out: str | None) -> None:
    """Store per-metric mean, seed std and direction from RUN_DIR (≥ 3 seeds)."""
    path = Path(out or Path("results") / "baselines" / f"{Path(run_dir).resolve().name}.json")
    baseline = create_baseline(run_dir, path)
    click.echo(
        f"wrote {path}: {len(baseline.entries)} entries ({len(baseline.gated_entries)} gated) "
        f"from {len(baseline.seeds)} seeds"
    )


@click.command(name="check")
@click.argument("run_dir", type=click.Path(), required=False)
@click.option(
    "--baseline",
    "baseline_path",
    type=click.Path(),
    default=None,
    help="Baseline JSON written by `saebench baseline create` (to compare RUN_DIR with).",
)
@click.option(
    "--rerun",
    "rerun_path",
    type=click.Path(),
    default=None,
    metavar="BASELINE",
    help="Instead of RUN_DIR: rerun this baseline's configuration, then compare with it.",
)
@click.option(
    "--out",
    type=click.Path(),
    default=None,
    help="With --rerun: the run directory (default: a temporary one, removed afterwards).",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=None,
    help="With --rerun: seeds per SAE (default: 1, compared with the baseline's σ).",
)
@click.option(
    "--device",
    default=None,
    help="With --rerun: auto, cpu or cuda (default: the device the baseline was made on).",
)
@click.option(
    "--z",
    type=float,
    default=DEFAULT_Z,
    show_default=True,
    help="Regression threshold in pooled seed standard deviations.",
)
@click.option("--markdown", type=click.Path(), default=None, help="Write a Markdown summary.")
@click.option("--junit", type=click.Path(), default=None, help="Write JUnit XML for CI.")
@click.option("--show-all", is_flag=True, help="Print every compared metric, not only moves.")
def check_command(
    run_dir: str | None,
    baseline_path: str | None,
    rerun_path: str | None,
    out: str | None,
    seeds: int | None,
    device: str | None,
    z: float,
    markdown: str | None,
    junit: str | None,
    show_all: bool,
) -> None:
    """Exit 0 if RUN_DIR (or the --rerun of a baseline) is within noise of the baseline, 1 on
    a regression, 2 if the two cannot be compared (different config, unreadable files)."""
    _check_arguments(run_dir, baseline_path, rerun_path, out, seeds, device)
    with ExitStack() as cleanup:
        if rerun_path is not None:
            baseline_path = rerun_path
            run_dir = out or str(_temporary_dir(cleanup) / "run")
        assert run_dir is not None and baseline_path is not None  # _check_arguments made sure
        try:
            if rerun_path is not None:
                check_z(z)  # before the run, not after it
                _rerun(rerun_path, run_dir, seeds or 1, device)
            result = compare(run_dir, baseline_path, z)
        except SaebenchError as error:
            # Reports still get written so CI shows why nothing was compared.
            unusable = GateResult(str(run_dir), str(baseline_path), z)
            unusable.config_diffs = [("input", "usable baseline and run", str(error))]
            _write_reports(unusable, markdown, junit, say=False)
            raise
        click.echo(format_text(result, show_all=show_all))
        _write_reports(result, markdown, junit)
    sys.exit(result.exit_code)


def _check_arguments(
    run_dir: str | None,
    baseline_path: str | None,
    rerun_path: str | None,
    out: str | None,
    seeds: int | None,
    device: str | None,
) -> None:
    """Exactly one of RUN_DIR / --rerun, and only the options that go with it."""
    if (run_dir is None) == (rerun_path is None):
        raise click.UsageError(
            "pass exactly one of RUN_DIR (a finished run, with --baseline) or --rerun BASELINE"
        )
    if rerun_path is not None and baseline_path is not None:
        raise click.UsageError("--rerun BASELINE already names the baseline; drop --baseline")
    if run_dir is not None and baseline_path is None:
        raise click.UsageError("Missing option '--baseline' (the baseline to compare RUN_DIR with)")
    if run_dir is not None and (out, seeds, device) != (None, None, None):
        raise click.UsageError(
            "--out, --seeds and --device only apply with --rerun; RUN_DIR is already a run"
        )


def _temporary_dir(cleanup: ExitStack) -> Path:
    return Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="saebench-check-")))


def _rerun(baseline_path: str, run_dir: str, seeds: int, device: str | None) -> None:
    """Rerun the baseline's configuration; a crash is exit 2 (nothing compared), not 1."""
    from saebench import runner

    # A bad baseline fails here, before anything runs.
    request = rerun_request(
        load_baseline(baseline_path), run_dir, seeds, device, path=baseline_path
    )
    click.echo(f"rerunning {baseline_path}: {_describe(request)}, into {run_dir}")
    log: list[str] = []
    try:
        runner.run(request, echo=lambda *parts: log.append(" ".join(map(str, parts))))
    except SaebenchError:
        raise
    except Exception as error:
        # The run's own output is only worth reading when it crashed.
        click.echo("\n".join([*log, traceback.format_exc()]), err=True)
        raise RerunError(
            f"the rerun of {baseline_path} crashed ({type(error).__name__}: {error}), so "
            f"nothing was compared; fix the error above, or pass --out DIR to keep the partial "
            f"run and resume it with the same command"
        ) from None


def _describe(request: RunRequest) -> str:
    methods = ", ".join(
        f"{name}={','.join(knob_label(k) for k in request.sweeps.get(name, []))}"
        for name in request.methods
    )
    return (
        f"{request.model} {request.hook}, preset {request.preset}, {methods} on "
        f"{','.join(request.tasks or [])}, {request.seeds} seed(s) on {request.device}"
    )


def _write_reports(
    result: GateResult, markdown: str | None, junit: str | None, say: bool = True
) -> None:
    for path, writer in ((markdown, write_markdown), (junit, write_junit)):
        if path:
            writer(result, path)
            if say:
                click.echo(f"wrote {path}")


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(baseline_group)
    cli.add_command(check_command)
