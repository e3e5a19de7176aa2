"""What every executor receives and must do."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from saebench.planner import RunPlan
from saebench.rundir import SaeKey
from saebench.work import CellOutcome, WorkerSpec, WorkerState, failed_cells


@dataclass
class Execution:
    """One executor call: the plan, what is still to do, and how to report progress."""

    plan: RunPlan
    worker: WorkerSpec
    pending: dict[SaeKey, list[str]]  # SAE -> its tasks still to run (SAEs with none are absent)
    record: Callable[[CellOutcome], None]  # the driver writes the cell through RunDir
    echo: Callable[[str], None]
    # The driver's own loaded model and store: an in-process executor reuses them.
    driver_state: WorkerState

    def knob_name(self, key: SaeKey) -> str:
        return self.plan.methods[key.method].knob

    def fail(self, key: SaeKey, tasks: list[str], reason: str, status: str = "failed") -> None:
        """Record `tasks` of the SAE `key` as not run, with the reason (training failed, its
        worker died): every executor reports an unrunnable SAE the same way."""
        for cell in failed_cells(self.knob_name(key), key, tasks, reason, status):
            self.record(CellOutcome(cell))


class Executor(Protocol):
    name: str

    def cell_threads(self) -> int:
        """The torch threads each cell trains and evaluates at (recorded in run.json: a
        reduction split over more threads adds in another order)."""

    def execute(self, execution: Execution) -> None:
        """Run every pending cell and `record` each as it finishes (ok or failed)."""
