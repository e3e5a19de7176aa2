"""The driver of a run: plan it, harvest once, hand the work to an executor, write the results.

A cell is (method, knob, seed, task). Every finished cell (ok or failed, with its reason) is
written atomically through `RunDir` by this driver, so rerunning the same command resumes:
finished cells are skipped and saved SAEs are reloaded instead of retrained. A failing cell never
stops the run. Where the work runs (this process, a local Ray, a Ray cluster, GPUs) is the
executor's business: `saebench.executors`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import saebench.models
from saebench.errors import ConfigError
from saebench.executors import Execution, get_executor
from saebench.planner import (
    RunPlan,
    RunRequest,
    config_differences,
    default_run_dir,
    make_plan,
    validate_request,
)
from saebench.pretrained import check_recorded_model_and_hook, is_pretrained
from saebench.rundir import DONE_STATUSES, RunDir
from saebench.specs import L0
from saebench.work import CellOutcome, WorkerSpec, WorkerState

__all__ = ["RunRequest", "Runner", "run"]


def recorded_config(run_dir: RunDir) -> dict | None:
    """The config of the run already in `run_dir` (None: a fresh directory). Cells without a
    readable run.json cannot be vouched for: refused, naming the fix, never silently merged."""
    has_cells = run_dir.cells_dir.exists() and any(run_dir.cells_dir.glob("*.json"))
    if not run_dir.run_json.exists():
        if has_cells:
            raise ConfigError(
                f"{run_dir.root} has cell files but no run.json, so nothing says which command "
                f"made them; pass a new --out, or delete {run_dir.cells_dir} to recompute"
            )
        return None
    try:
        config = json.loads(run_dir.run_json.read_text())["config"]
        if not isinstance(config, dict):
            raise TypeError("config is not an object")
    except (ValueError, KeyError, TypeError) as error:
        aside = run_dir.quarantine(run_dir.run_json)
        raise ConfigError(
            f"{run_dir.run_json} is unreadable ({type(error).__name__}: {error}; moved to "
            f"{aside}), so the cells in {run_dir.root} cannot be matched to this command; pass "
            f"a new --out, or delete {run_dir.cells_dir} to recompute them"
        ) from None
    return config


def adds_tasks(difference: tuple[str, Any, Any]) -> bool:
    """A resume that only adds tasks: every finished cell stays valid (a cell is one SAE and
    one task), so the new tasks' cells run on the saved SAEs and nothing else is redone."""
    key, was, now = difference
    return (
        key == "tasks" and isinstance(was, list) and isinstance(now, list) and set(was) <= set(now)
    )


def check_resume(run_dir: RunDir, config: dict, ignore: frozenset[str] = frozenset()) -> None:
    """A run directory may only be resumed by the command that started it, or by one that adds
    tasks to it. `ignore`: keys that cannot be known yet (before the model loads, e.g. d_in)."""
    old = recorded_config(run_dir)
    if old is None:
        return
    differences = [
        difference
        for difference in config_differences(
            {k: v for k, v in old.items() if k not in ignore},
            {k: v for k, v in config.items() if k not in ignore},
        )
        if not adds_tasks(difference)
    ]
    if differences:
        old_hook = next((was for key, was, _ in differences if key == "hook"), None)
        # A model's default hook can move between releases (toy world v4 did): say how to
        # resume at the old one rather than send the user back to a command that now differs.
        hook_hint = (
            f"; to resume at the run's hook pass --hook {old_hook} (the model's default hook "
            "may have changed since)"
            if old_hook
            else ""
        )
        old_width = next((was for key, was, _ in differences if key == "d_sae"), None)
        if isinstance(old_width, int) and isinstance(old.get("d_in"), int) and old["d_in"] > 0:
            hook_hint += (
                f"; to resume at the run's width pass --expansion {old_width // old['d_in']}"
            )
        raise ConfigError(
            f"{run_dir.root} holds a run with a different config ("
            + "; ".join(
                f"{key}: {was!r} (existing run) vs {now!r} (this command)"
                for key, was, now in differences
            )
            + "). Pass a new --out to start a separate run, or rerun the original command to "
            f"resume it (adding tasks to --tasks is allowed: only their cells run){hook_hint}"
        )


# Config keys that depend on the harvested activations' width: unknown before the harvest.
AFTER_HARVEST = frozenset({"d_in", "d_sae", "train.d_sae"})


def acquire_lock(run_dir: RunDir) -> Any:
    """Hold RUN/.lock for this process's lifetime (the OS drops it if the process dies): a
    second run into the same directory stops with a message instead of training everything too."""
    import fcntl

    if run_dir.root.exists() and not run_dir.root.is_dir():
        raise ConfigError(f"--out {run_dir.root} is a file; pass a directory (new or a run's)")
    try:
        run_dir.root.mkdir(parents=True, exist_ok=True)
        handle = open(run_dir.lock_path, "a+")  # noqa: SIM115 — held until release_lock
    except OSError as error:
        raise ConfigError(
            f"cannot write to --out {run_dir.root} ({error.strerror}); pass a writable --out"
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(
            f"{run_dir.root} is in use by another saebench run ({holder}); wait for it to "
            "finish (rerunning the same command then resumes), or pass another --out"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}\n")
    handle.flush()
    return handle


def release_lock(handle: Any) -> None:
    import fcntl

    if handle is not None and not handle.closed:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def check_disk_space(plan: RunPlan, model: Any, cache_dir: Path | None) -> None:
    """Refuse a run whose activation cache and saved SAEs cannot fit, before harvesting."""
    from saebench.harvest import DEFAULT_CACHE

    d_in = int(getattr(getattr(model.bridge, "cfg", None), "d_model", 0) or 0)
    if not d_in:
        return
    bytes_per_float = 4
    needs = {
        Path(cache_dir or DEFAULT_CACHE): (plan.preset.n_train_tokens + plan.preset.n_eval_tokens)
        * d_in
        * bytes_per_float,
        plan.run_dir.root: len(plan.saes) * 2 * plan.expansion * d_in * d_in * bytes_per_float,
    }
    for where, need in needs.items():
        probe = where
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        if need > free:
            raise ConfigError(
                f"{where} needs about {need / 2**20:,.0f} MiB for this run but {probe} has "
                f"{free / 2**20:,.0f} MiB free; free some space or pass another "
                + ("--cache" if where != plan.run_dir.root else "--out")
            )


def previous_invocations(run_dir: RunDir) -> list[dict[str, Any]]:
    """Every earlier invocation recorded in run.json (a resumed run keeps its history)."""
    try:
        invocations = json.loads(run_dir.run_json.read_text()).get("invocations", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [i for i in invocations if isinstance(i, dict)] if isinstance(invocations, list) else []


def request_device(request: RunRequest, driver_device) -> str:
    """The device string the units of work run on: the driver's own for the local executor;
    what was asked for with Ray (its workers may have GPUs the driver lacks)."""
    if request.executor == "ray" and request.device != "auto":
        return request.device
    return str(driver_device)


class Runner:
    def __init__(self, request: RunRequest, echo: Callable[[str], None] = print):
        self.request, self.echo = request, echo
        valid = validate_request(request)  # bad flags fail before the model loads
        self.invocation_started = time.time()
        self._lock = acquire_lock(RunDir(request.out or default_run_dir(request, valid.preset)))
        try:
            self._prepare(request)
        except BaseException:
            release_lock(self._lock)  # a run that cannot start must not block the next one
            raise

    def _prepare(self, request: RunRequest) -> None:
        self.executor = get_executor(
            request.executor,
            request.ray_address,
            request.workers,
            request.max_retries,
            request.device,
        )
        self.device = self._driver_device(request)
        self.sae_device = (
            saebench.models.resolve_device(request.sae_device) if request.sae_device else None
        )
        started = time.time()
        self.model = saebench.models.resolve_model(request.model, self.device, request.dataset)
        self.hook = saebench.models.validate_hook(self.model, request.hook)
        for method in request.methods:
            if is_pretrained(method):
                check_recorded_model_and_hook(method, self.model.name, request.model, self.hook)
        self.timings = {"load_model": time.time() - started}
        self.plan: RunPlan = make_plan(request, self.model, self.hook)
        # What the existing run says, checked before the expensive harvest (d_in comes later).
        check_resume(self.plan.run_dir, self.plan.config(d_in=0), ignore=AFTER_HARVEST)
        check_disk_space(self.plan, self.model, self.request.cache_dir)

    def _driver_device(self, request: RunRequest):
        """Where this process loads the model and harvests. With Ray, --device cuda names the
        workers' device: a driver without CUDA (a CPU-only head node) harvests on its CPU."""
        import torch

        if (
            request.executor == "ray"
            and request.device.startswith("cuda")
            and not torch.cuda.is_available()
        ):
            self.echo(f"driver has no CUDA: harvesting on cpu, Ray tasks run on {request.device}")
            return torch.device("cpu")
        return saebench.models.resolve_device(request.device)

    @property
    def run_dir(self) -> Path:
        return self.plan.run_dir.root

    def run(self) -> Path:
        plan = self.plan
        started = time.time()
        self.echo(
            f"model {self.model.name} on {self.device}; hook {self.hook}; "
            f"preset {plan.preset.name}; {len(plan.saes)} SAEs × {len(plan.tasks)} tasks"
            + (f"; SAEs on {self.sae_device}" if self.sae_device else "")
            + (f"; executor {self.executor.name}" if self.executor.name != "local" else "")
        )
        self._warn_without_l0()
        try:
            return self._run(started)
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM: finished cells are on disk; say so where the next reader looks.
            self._mark_interrupted()
            raise
        finally:
            release_lock(self._lock)

    def _warn_without_l0(self) -> None:
        """Say before training, not only in results.md, that baselines without an L0 axis
        calibrate nothing."""
        from saebench.calibration import declares_l0, tasks_reporting_l0
        from saebench.results import calibration_baselines

        plan = self.plan
        if not set(calibration_baselines()) & {key.method for key in plan.saes}:
            return
        if any(declares_l0(task) for task in plan.tasks.values()):
            return
        reporters = " or ".join(tasks_reporting_l0()) or "a task that reports it"
        self.echo(
            f"  warning: no task of this run reports {L0}, so its scores cannot be read against "
            f"the baselines at matched L0: add {reporters} to --tasks"
        )

    def _run(self, started: float) -> Path:
        from saebench.harvest import harvest

        plan, run_dir = self.plan, self.plan.run_dir
        store = harvest(
            self.model,
            self.hook,
            plan.preset.n_train_tokens,
            plan.preset.n_eval_tokens,
            seed=0,
            cache_dir=self.request.cache_dir,
            device=self.device,
            dataset=self.request.dataset,
            echo=self.echo,
        )
        self.timings["harvest"] = time.time() - started
        config = plan.config(store.d_in)
        check_resume(run_dir, config)
        run_dir.cells_dir.mkdir(parents=True, exist_ok=True)
        self._store = store
        self._previous_invocations = previous_invocations(run_dir)
        self._write_run_json(config, store, "running")
        executed = time.time()
        self.executor.execute(self._execution(store))
        self.timings["execute"] = time.time() - executed
        self.timings["total"] = time.time() - started
        self._finish(config, store)
        return run_dir.root

    def _pending(self) -> dict:
        """SAE -> its tasks without a finished cell (failed ones too with --retry-failed)."""
        pending = {}
        for key in self.plan.saes:
            tasks = []
            for task in self.plan.tasks:
                cell = self.plan.run_dir.read_cell(key, task)
                if (
                    cell is None
                    or cell.status not in DONE_STATUSES
                    or (self.request.retry_failed and cell.status == "failed")
                ):
                    tasks.append(task)
            if tasks:
                pending[key] = tasks
        for path, aside, why in self.plan.run_dir.quarantined:
            self.echo(f"  unreadable cell file {path} ({why}): moved to {aside}; recomputing it")
        self.plan.run_dir.quarantined.clear()
        return pending

    def _execution(self, store) -> Execution:
        plan = self.plan
        worker = WorkerSpec(
            model=self.request.model,
            dataset=self.request.dataset,
            hook=self.hook,
            device=request_device(self.request, self.device),
            sae_device=self.request.sae_device,
            store_dir=str(Path(store.directory).resolve()),
            preset=plan.preset.name,
            train_config=plan.train_config(store.d_in),
            task_options=dict(self.request.task_options),
            model_metadata={
                "model_name": self.model.name,
                "hook_name": self.hook,
                "context_size": self.model.context_size,
                "prepend_bos": True,
            },
            progress=self.request.progress,
            pretrained=tuple(m for m in self.request.methods if is_pretrained(m)),
        )
        state = WorkerState(
            model=self.model,
            store=store,
            methods=dict(plan.methods),
            tasks=dict(plan.tasks),
            device=self.device,
            sae_device=self.sae_device,
        )
        return Execution(
            plan=plan,
            worker=worker,
            pending=self._pending(),
            record=self._record,
            echo=self.echo,
            driver_state=state,
        )

    def _record(self, outcome: CellOutcome) -> None:
        cell, run_dir = outcome.cell, self.plan.run_dir
        run_dir.write_cell(cell)
        where = f"{cell.sae.label} " if self.executor.name != "local" else ""
        if cell.ok:
            self.echo(f"    {where}{cell.task}: ok ({cell.seconds:.1f}s)")
        elif cell.status == "uninformative":
            # Not a failure: the task's own reference says no SAE's number would mean anything.
            self.echo(f"    {where}{cell.task}: uninformative at this hook (see results.md)")
        else:
            self.echo(f"    {where}{cell.task}: FAILED — {cell.reason}")
        if outcome.traceback:
            run_dir.write_traceback(cell.sae, cell.task, outcome.traceback)

    def _write_run_json(self, config: dict, store, status: str) -> None:
        from saebench.results import run_metadata

        self.plan.run_dir.write_run_json(
            run_metadata(
                self.plan,
                config,
                harvest_info=store.info,
                device=str(self.device),
                sae_device=str(self.sae_device or self.device),
                model_info=self.model.info,
                timings=self.timings,
                status=status,
                executor=self.executor.name,
                torch_threads=self.executor.cell_threads(),
                invocations=[*self._previous_invocations, self._invocation(status)],
            )
        )

    def _invocation(self, status: str) -> dict[str, Any]:
        return {
            "started_at": time.strftime(
                "%Y-%m-%dT%H:%M:%S%z", time.localtime(self.invocation_started)
            ),
            "command": self.request.command,
            "executor": self.executor.name,
            "status": status,
            "timings_seconds": {k: round(v, 2) for k, v in self.timings.items()},
        }

    def _mark_interrupted(self) -> None:
        store = getattr(self, "_store", None)
        if store is None:  # interrupted before run.json existed: nothing to mark
            return
        self.timings["total"] = time.time() - self.invocation_started
        # The interruption itself is what the user must hear about, not a failed status write.
        with contextlib.suppress(OSError):
            self._write_run_json(self.plan.config(store.d_in), store, "interrupted")

    def _finish(self, config: dict, store) -> None:
        from saebench.plots import make_plots
        from saebench.results import planned_cells, write_results

        plan = self.plan
        cells = planned_cells(plan.run_dir, plan)
        frame = write_results(plan.run_dir, cells, plan.tasks, self.model.name, self.hook)
        self._write_run_json(config, store, "complete")
        for message in make_plots(plan.run_dir, frame, plan.tasks):
            self.echo(f"  plot: {message}")
        try:  # after the results are on disk: a report that fails never loses the run
            from saebench.report import end_of_run_report

            result = end_of_run_report(plan.run_dir, self.model, store, self.device, self.echo)
            if result is not None:
                self.echo(f"  report: {result.summary()}")
        except Exception as error:  # noqa: BLE001 — the report is a view of the results
            self.echo(
                f"  report: WARNING: not written ({type(error).__name__}: {error}); the results "
                f"are complete: rerun `saebench report {plan.run_dir.root}`"
            )


def run(request: RunRequest, echo: Callable[[str], None] = print) -> Path:
    """Plan, execute and write one run; return its directory."""
    return Runner(request, echo).run()
