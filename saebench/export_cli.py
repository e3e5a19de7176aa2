"""`saebench export RUN_DIR --format saelens|dictionary_learning [--out DIR]`: write every SAE a
run saved (RUN_DIR/saes/**/cfg.json) in an anchor's own layout, so it loads in that library
(a built-in plugin: it registers the command through the register_commands hook).

Each SAE keeps its relative path (OUT/<method>/<knob>/seed<k>/): SAELens's
SAE.load_from_disk(path) reads the saelens export, dictionary_learning's
utils.load_dictionary(path) the dictionary_learning one, with the same x̂ and latents as in
saebench (dictionary_learning's AutoEncoder normalises decoder columns, so there the latents of a
standard SAE whose decoder rows are not unit norm are f·‖W_dec,i‖, x̂ unchanged). OUT/export.json
lists what was written. An SAE that cannot be written (e.g. a negative JumpReLU threshold, which
both libraries compute differently) is reported and skipped; the command then exits 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from saebench.hookspecs import hookimpl


def run_saes(run_dir: Path) -> list[Path]:
    """Every saved SAE directory under RUN_DIR/saes (a cfg.json beside its weights), sorted;
    hidden folders (temp dirs, SAEs set aside as unreadable) and task artifacts are skipped."""
    from saebench.saved_format import CONFIG, WEIGHTS

    root = run_dir / "saes"
    found = []
    for cfg in root.rglob(CONFIG) if root.is_dir() else []:
        parts = cfg.relative_to(root).parts
        if any(part.startswith(".") or part == "artifacts" for part in parts[:-1]):
            continue
        if (cfg.parent / WEIGHTS).exists():
            found.append(cfg.parent)
    return sorted(found)


def export_run(
    run_dir: Path, format: str, out: Path, echo=click.echo
) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """Write every SAE of `run_dir` into `out` in `format`: (written entries, failures)."""
    from saebench.errors import SaebenchError
    from saebench.saved_format import load_sae, write_sae

    written: list[dict[str, Any]] = []
    failures: list[tuple[Path, str]] = []
    root = run_dir / "saes"
    for source in run_saes(run_dir):
        relative = source.relative_to(root)
        target = out / relative
        try:
            sae = load_sae(source)
            write_sae(sae, target, format, getattr(sae, "metadata", None))
        except (SaebenchError, OSError, ValueError) as error:
            failures.append((source, f"{type(error).__name__}: {error}"))
            echo(f"not exported {relative}: {error}", err=True)
            continue
        written.append(
            {
                "source": str(source),
                "path": relative.as_posix(),
                "architecture": sae.architecture,
                "d_in": sae.d_in,
                "d_sae": sae.d_sae,
                "method": sae.cfg.get("method") if isinstance(sae.cfg, dict) else None,
            }
        )
        echo(f"exported {relative} ({sae.architecture}, d_sae={sae.d_sae})")
    return written, failures


@click.command(name="export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--format",
    "format_",
    type=click.Choice(["saelens", "dictionary_learning"]),
    required=True,
    help="saelens: sae_weights.safetensors + cfg.json; dictionary_learning: ae.pt + config.json.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output directory (default: RUN_DIR/export/<format>).",
)
def export(run_dir: Path, format_: str, out: Path | None) -> None:
    """Write every SAE of RUN_DIR in SAELens's or dictionary_learning's layout.

    Each SAE keeps its path under saes/ (OUT/<method>/<knob>/seed<k>/); SAELens loads it with
    SAE.load_from_disk, dictionary_learning with utils.load_dictionary."""
    from saebench.fileio import write_text

    out = out if out is not None else run_dir / "export" / format_
    written, failures = export_run(run_dir, format_, out)
    if not written and not failures:
        raise click.ClickException(
            f"no saved SAEs under {run_dir / 'saes'} (expected saes/<method>/<knob>/seed<k>/ "
            "with cfg.json + sae_weights.safetensors); pass a run directory saebench wrote"
        )
    manifest = {
        "format": format_,
        "run": str(run_dir),
        "saes": written,
        "failed": [{"source": str(path), "error": error} for path, error in failures],
    }
    write_text(out / "export.json", json.dumps(manifest, indent=2) + "\n")
    click.echo(f"{len(written)} SAE(s) written to {out} ({format_})")
    if failures:
        click.echo(f"{len(failures)} SAE(s) could not be exported (see above)", err=True)
        raise SystemExit(1)


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(export)
