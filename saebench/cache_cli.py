"""`saebench cache ls|verify|clean`: inspect, check and tidy the activation cache (a built-in
plugin: it registers its commands through the register_commands hook). See docs/cache.md."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from saebench import harvest
from saebench.hookspecs import hookimpl

cache_option = click.option(
    "--cache",
    "cache_dir",
    type=click.Path(file_okay=False),
    default=None,
    envvar="SAEBENCH_CACHE",
    help="Activation cache directory (default: $SAEBENCH_CACHE, else .saebench_cache).",
)


def _cache_dir(cache_dir: str | None) -> Path:
    # harvest.DEFAULT_CACHE is read now, not at import, so it is the one harvest() uses.
    return Path(cache_dir) if cache_dir else Path(harvest.DEFAULT_CACHE)


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.1f} MiB"


def _dataset_label(info: dict) -> str:
    if info.get("dataset_file"):
        return f"{info['dataset_file']} (sha256 {str(info.get('dataset'))[:8]})"
    if "dataset" not in info:
        return "?"
    return "model corpus" if info["dataset"] is None else str(info["dataset"])[:16]


@dataclass(frozen=True)
class Entry:
    key: str
    path: Path
    info: dict  # info.json as far as it could be read ({} when it could not)
    bytes: int
    problem: str | None  # None: ok
    stale: bool = False

    @property
    def status(self) -> str:
        if self.problem is None:
            return "ok"
        return "stale" if self.stale else "corrupt"


def cache_entries(cache_dir: Path, full: bool = False) -> list[Entry]:
    """Every entry of the cache, checked as on open (`full`: every byte hashed)."""
    if not cache_dir.is_dir():
        return []
    entries = []
    for path in sorted(cache_dir.iterdir()):
        if not (harvest.ENTRY_NAME.fullmatch(path.name) and path.is_dir()):
            continue
        problem, stale = None, False
        try:
            harvest.verify_entry(path, full)
        except harvest.CacheEntryError as error:
            problem, stale = error.problem, error.stale
        entries.append(
            Entry(path.name, path, _read_info(path), harvest.disk_size(path), problem, stale)
        )
    return entries


def _read_info(directory: Path) -> dict:
    try:
        info = json.loads((directory / harvest.INFO).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def clean_cache(
    cache_dir: Path,
    everything: bool = False,
    stale: bool = False,
    echo: Callable[[str], None] = click.echo,
) -> int:
    """Remove every harvest temp dir (except one a live harvest holds the lock of), the
    quarantine, unheld lock files; with `stale` also stale entries, with `everything` every
    entry. Returns the bytes freed."""
    freed = 0
    doomed: list[Path] = []
    for path, key in harvest.temp_dirs(cache_dir):
        if harvest.lock_is_held(cache_dir, key):
            echo(f"kept {path.name}: a harvest of {key} is running")
        else:
            doomed.append(path)
    if (cache_dir / harvest.QUARANTINE).exists():
        doomed.append(cache_dir / harvest.QUARANTINE)
    if everything or stale:
        doomed += [e.path for e in cache_entries(cache_dir) if everything or e.stale]
    for path in doomed:
        size = harvest.disk_size(path)
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            freed += size
            echo(f"removed {path.name} ({size / 2**20:,.1f} MiB)")
    for path in sorted(cache_dir.glob(".*.lock")) if cache_dir.is_dir() else []:
        match = harvest.LOCK_NAME.fullmatch(path.name)
        if match and not harvest.lock_is_held(cache_dir, match["key"]):
            with contextlib.suppress(OSError):
                path.unlink()
    return freed


@click.group()
def cache() -> None:
    """The activation cache: list, verify and clean its entries (docs/cache.md)."""


@cache.command(name="ls")
@cache_option
def ls_command(cache_dir: str | None) -> None:
    """List entries: key, model, hook, dataset, tokens, size, created, status.

    The status is checked as on open (sizes, shapes, sampled hashes): ok, stale (written by
    older code: harvested again on next use) or corrupt (quarantined and harvested again on
    next use)."""
    directory = _cache_dir(cache_dir)
    entries = cache_entries(directory)
    if not entries:
        click.echo(f"no cache entries in {directory}")
    for entry in entries:
        info = entry.info
        tokens = f"{info.get('n_train_tokens', '?')}+{info.get('n_eval_tokens_actual', '?')}"
        click.echo(
            f"{entry.key}  {info.get('model', '?')}  {info.get('hook', '?')}  "
            f"{_dataset_label(info)}  {tokens} tokens  {_mib(entry.bytes)}  "
            f"{info.get('created', '?')}  {entry.status}"
            + (f" ({entry.problem})" if entry.problem else "")
        )
    leftovers = harvest.temp_dirs(directory)
    quarantined = directory / harvest.QUARANTINE
    if leftovers or quarantined.exists():
        click.echo(
            f"{len(leftovers)} temp dir(s) of harvests, quarantine "
            f"{_mib(harvest.disk_size(quarantined)) if quarantined.exists() else 'empty'}: "
            "`saebench cache clean` removes them"
        )


@cache.command()
@cache_option
@click.option("--quarantine", "move", is_flag=True, help="Move bad entries to .quarantine/.")
@click.argument("keys", nargs=-1)
def verify(cache_dir: str | None, move: bool, keys: tuple[str, ...]) -> None:
    """Hash every byte of every entry (or of KEYS) against its manifest.

    Exits 1 naming the corrupt entries; --quarantine moves them aside (the next run that needs
    one harvests it again). Stale entries are reported but do not fail."""
    directory = _cache_dir(cache_dir)
    entries = [e for e in cache_entries(directory, full=True) if not keys or e.key in keys]
    unknown = sorted(set(keys) - {e.key for e in entries})
    if unknown:
        raise click.BadParameter(f"no such entries in {directory}: {', '.join(unknown)}")
    bad = [entry for entry in entries if entry.status == "corrupt"]
    for entry in entries:
        click.echo(f"{entry.key}  {entry.status}" + (f": {entry.problem}" if entry.problem else ""))
        if move and entry in bad:
            click.echo(f"  moved to {harvest.quarantine(entry.path, entry.problem or '')}")
    click.echo(f"{len(entries)} entries verified, {len(bad)} corrupt")
    if bad:
        click.echo(f"corrupt: {', '.join(e.key for e in bad)}", err=True)
        raise SystemExit(1)


@cache.command()
@cache_option
@click.option("--all", "everything", is_flag=True, help="Remove every entry too.")
@click.option("--stale", is_flag=True, help="Remove stale entries (written by older code) too.")
def clean(cache_dir: str | None, everything: bool, stale: bool) -> None:
    """Remove leftovers of dead harvests and the quarantine (--stale, --all: entries too).

    Removes every temp dir of a harvest (except one a running harvest holds the lock of), the
    .quarantine folder and unused lock files; --stale also entries written by older code, --all
    every entry."""
    directory = _cache_dir(cache_dir)
    freed = clean_cache(directory, everything=everything, stale=stale, echo=click.echo)
    click.echo(f"freed {_mib(freed)} in {directory}")


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(cache)
