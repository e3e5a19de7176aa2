"""The driver of a run: plan it, harvest once, hand the work to an executor, write the results.

A cell is (method, knob, seed, task). Every finished cell (ok or failed, with its reason) is
written atomically through `RunDir` by this driver, so rerunning the same command resumes:
finished cells are skipped and saved SAEs are reloaded instead of retrained. A failing cell never
stops the run. Where the work runs (this process, a local Ray, a Ray cluster, GPUs) is the
executor's business: `saebench.executors`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import saebench.models
from saebench.errors import ConfigError
from saebench.executors import Execution, get_executor
from saebench.planner import (
    RunPlan,
    RunRequest,
    config_differences,
    make_plan,
    validate_request,
)
from saebench.rundir import RunDir
from saebench.work import CellOutcome, WorkerSpec, WorkerState

__all__ = ["RunRequest", "Runner", "run"]


def check_resume(run_dir: RunDir, config: dict) -> None:
    """A run directory may only be resumed by the command that started it."""
    if not run_dir.exists():
        return
    try:
        old = run_dir.read_run_json().get("config", {})
    except ValueError:  # an unreadable run.json: nothing to compare against
        return
    differences = config_differences(old, config)
    if differences:
        raise ConfigError(
            f"{run_dir.root} holds a run with a different config ("
            + "; ".join(
                f"{key}: {was!r} (existing run) vs {now!r} (this command)"
                for key, was, now in differences
            )
            + "). Pass a new --out to start a separate run, or rerun the original command to "
            "resume it"
        )


def request_device(request: RunRequest, driver_device) -> str:
    """The device string the units of work run on: the driver's own for the local executor;
    what was asked for with Ray (its workers may have GPUs the driver lacks)."""
    if request.executor == "ray" and request.device != "auto":
        return request.device
    return str(driver_device)


class Runner:
    def __init__(self, request: RunRequest, echo: Callable[[str], None] = print):
        self.request, self.echo = request, echo
        validate_request(request)  # bad flags fail before the model loads
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
        self.timings = {"load_model": time.time() - started}
        self.plan: RunPlan = make_plan(request, self.model, self.hook)

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
        from saebench.harvest import harvest

        plan, run_dir = self.plan, self.plan.run_dir
        started = time.time()
        self.echo(
            f"model {self.model.name} on {self.device}; hook {self.hook}; "
            f"preset {plan.preset.name}; {len(plan.saes)} SAEs × {len(plan.tasks)} tasks"
            + (f"; SAEs on {self.sae_device}" if self.sae_device else "")
            + (f"; executor {self.executor.name}" if self.executor.name != "local" else "")
        )
        store = harvest(
            self.model,
            self.hook,
            plan.preset.n_train_tokens,
            plan.preset.n_eval_tokens,
            seed=0,
            cache_dir=self.request.cache_dir,
            device=self.device,
        )
        self.timings["harvest"] = time.time() - started
        config = plan.config(store.d_in)
        check_resume(run_dir, config)
        run_dir.cells_dir.mkdir(parents=True, exist_ok=True)
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
                if cell is None or (self.request.retry_failed and not cell.ok):
                    tasks.append(task)
            if tasks:
                pending[key] = tasks
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
            )
        )

    def _finish(self, config: dict, store) -> None:
        from saebench.plots import make_plots
        from saebench.results import planned_cells, write_results

        plan = self.plan
        cells = planned_cells(plan.run_dir, plan)
        frame = write_results(plan.run_dir, cells, plan.tasks, self.model.name, self.hook)
        self._write_run_json(config, store, "complete")
        for message in make_plots(plan.run_dir, frame, plan.tasks):
            self.echo(f"  plot: {message}")


def run(request: RunRequest, echo: Callable[[str], None] = print) -> Path:
    """Plan, execute and write one run; return its directory."""
    return Runner(request, echo).run()
