"""The on-disk layout of one run. This module is the only code that spells it.

    RUN/run.json                                   config, provenance, timings, cell summary
    RUN/results.csv, RUN/results.md                tidy results and the summary (from cells/)
    RUN/cells/<method>__<knob>__seed<k>__<task>.json   one finished cell (a `Cell`)
    RUN/saes/<method>/<knob>/seed<k>/              one SAE (SAELens layout) + train_log.json
    RUN/saes/<method>/<knob>/seed<k>/artifacts/<task>/   a task's extra outputs for that SAE
    RUN/plots/                                     every plot of the run

Every other module (runner, results, plots, the gate, tasks' plot functions) asks a `RunDir`
for a path instead of building one, so the layout can change in one place.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from saebench.fileio import write_json, write_text

# ok: metrics recorded. failed: the method or task is at fault (deterministic: rerun only with
# --retry-failed). error: the environment was (disk, I/O, memory, interruption): retried on every
# rerun. uninformative: the task's validity check says its number would mean nothing here.
CELL_STATUSES = ("ok", "failed", "error", "uninformative")
DONE_STATUSES = ("ok", "failed", "uninformative")  # a rerun skips these (failed: unless asked)
TRAIN_LOG = "train_log.json"  # beside the saved SAE (cfg.json + weights, saebench.saved_format)


SAE_CONFIG = "cfg.json"  # what marks a directory as a saved SAE (saebench.saved_format.CONFIG)


def is_saved_sae(directory: Path) -> bool:
    return (directory / SAE_CONFIG).exists()


def knob_label(value: float) -> str:
    """The one spelling of a knob value in paths, ids and tables: 16, 0.001, 1.3."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass(frozen=True, order=True)
class SaeKey:
    """One SAE of the run matrix: a method at one knob value and seed."""

    method: str
    knob: float
    seed: int

    @property
    def label(self) -> str:
        return f"{self.method}__{knob_label(self.knob)}__seed{self.seed}"

    def cell_id(self, task: str) -> str:
        return f"{self.label}__{task}"


@dataclass
class Cell:
    """One finished (SAE, task) evaluation: its status, metrics or failure reason."""

    method: str
    knob_name: str
    knob: float
    seed: int
    task: str
    status: str
    reason: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    # The task's validity references (saebench.specs.Validity.to_json), when it declares any.
    validity: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.status not in CELL_STATUSES:
            raise ValueError(f"cell status {self.status!r} is not one of {CELL_STATUSES}")

    @property
    def sae(self) -> SaeKey:
        return SaeKey(self.method, self.knob, self.seed)

    @property
    def id(self) -> str:
        return self.sae.cell_id(self.task)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, **asdict(self), "seconds": round(self.seconds, 3)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cell:
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in names})


class RunDir:
    """Paths and atomic reads/writes of one run directory."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.quarantined: list[tuple[Path, Path, str]] = []

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    def __fspath__(self) -> str:
        return str(self.root)

    # ------------------------------------------------------------------ paths
    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def results_csv(self) -> Path:
        return self.root / "results.csv"

    @property
    def results_md(self) -> Path:
        return self.root / "results.md"

    @property
    def aggregated_csv(self) -> Path:
        """Mean, std and 95% interval over seeds per (method, knob, task, metric)."""
        return self.root / "results_aggregated.csv"

    @property
    def comparisons_csv(self) -> Path:
        """Every learned method vs every calibration baseline at matched L0, with verdicts."""
        return self.root / "comparisons.csv"

    @property
    def audit_json(self) -> Path:
        """`saebench audit`'s reliability lenses of every headline metric."""
        return self.root / "audit.json"

    def read_audit(self) -> dict[str, Any] | None:
        if not self.audit_json.exists():
            return None
        return json.loads(self.audit_json.read_text())

    @property
    def cells_dir(self) -> Path:
        return self.root / "cells"

    @property
    def lock_path(self) -> Path:
        return self.root / ".lock"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    def plot_path(self, name: str) -> Path:
        return self.plots_dir / name

    def cell_path(self, sae: SaeKey, task: str) -> Path:
        return self.cells_dir / f"{sae.cell_id(task)}.json"

    def sae_dir(self, sae: SaeKey) -> Path:
        return self.root / "saes" / sae.method / knob_label(sae.knob) / f"seed{sae.seed}"

    def train_log_path(self, sae: SaeKey) -> Path:
        return self.sae_dir(sae) / TRAIN_LOG

    def artifacts_dir(self, sae: SaeKey, task: str) -> Path:
        return self.sae_dir(sae) / "artifacts" / task

    def traceback_path(self, sae: SaeKey, task: str) -> Path:
        return self.sae_dir(sae) / "artifacts" / f"{task}.traceback.txt"

    def artifact_path(self, sae: SaeKey, task: str, name: str) -> Path:
        return self.artifacts_dir(sae, task) / name

    # ------------------------------------------------------------------ what exists
    def exists(self) -> bool:
        return self.run_json.exists()

    def saved_saes(self) -> Iterator[tuple[SaeKey, Path]]:
        """Every SAE saved in this run, as (key, directory), sorted by method, knob, seed."""
        found = []
        for cfg in (self.root / "saes").glob(f"*/*/seed*/{SAE_CONFIG}"):
            directory = cfg.parent
            method, knob, seed = directory.parent.parent.name, directory.parent.name, directory.name
            try:
                found.append((SaeKey(method, float(knob), int(seed[len("seed") :])), directory))
            except ValueError:
                continue  # not a folder saebench wrote
        yield from sorted(found)

    def has_sae(self, sae: SaeKey) -> bool:
        return is_saved_sae(self.sae_dir(sae))

    # ------------------------------------------------------------------ cells
    def write_cell(self, cell: Cell) -> Path:
        path = self.cell_path(cell.sae, cell.task)
        write_json(path, cell.to_json())
        return path

    def read_cell(self, sae: SaeKey, task: str) -> Cell | None:
        """The finished cell, or None when there is none. An unreadable cell file (empty,
        truncated, not a cell) is moved aside to cells/.unreadable/ and counts as missing, so
        the cell is recomputed: `quarantined` lists (file, where it went, why)."""
        path = self.cell_path(sae, task)
        if not path.exists():
            return None
        try:
            return Cell.from_json(json.loads(path.read_text()))
        except (ValueError, TypeError) as error:  # JSONDecodeError is a ValueError
            reason = f"{type(error).__name__}: {error}"
            self.quarantined.append((path, self.quarantine(path), reason))
            return None

    def quarantine(self, path: Path) -> Path:
        """Move an unreadable file of this run aside (never delete what a user may inspect)."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = (
            self.root
            / ".unreadable"
            / f"{path.relative_to(self.root).as_posix().replace('/', '__')}.{stamp}"
        )
        aside.parent.mkdir(parents=True, exist_ok=True)
        path.replace(aside)
        return aside

    def read_cells(self) -> list[Cell]:
        """Every cell file, sorted by id; an unreadable one is an error naming it."""
        if not self.cells_dir.exists():
            return []
        cells = []
        for path in sorted(self.cells_dir.glob("*.json")):
            try:
                cells.append(Cell.from_json(json.loads(path.read_text())))
            except (ValueError, TypeError) as error:
                raise ValueError(
                    f"cannot read the cell file {path} ({error}); rerun the `saebench run` "
                    "command that made it: it moves the file aside and recomputes the cell"
                ) from None
        return cells

    def write_traceback(self, sae: SaeKey, task: str, text: str) -> None:
        write_text(self.traceback_path(sae, task), text)

    # ------------------------------------------------------------------ run.json, logs
    def write_run_json(self, data: dict[str, Any]) -> None:
        write_json(self.run_json, data)

    def read_run_json(self) -> dict[str, Any]:
        if not self.run_json.exists():
            raise FileNotFoundError(
                f"{self.run_json} does not exist: is {self.root} a saebench run directory?"
            )
        return json.loads(self.run_json.read_text())

    def train_logs(self) -> dict[str, dict[str, Any]]:
        """{'saes/<method>/<knob>/seed<k>': train log} for every SAE with a log."""
        logs = {}
        for sae, directory in self.saved_saes():
            path = self.train_log_path(sae)
            if path.exists():
                logs[str(directory.relative_to(self.root))] = json.loads(path.read_text())
        return logs
