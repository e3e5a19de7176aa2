"""The units of work every executor runs: train (or load) one SAE, evaluate one cell.

Both are plain functions of picklable inputs (`WorkerSpec`, `SaeKey`, paths), so the local
executor calls them in-process and the Ray executor calls them in workers. A worker keeps one
`WorkerState` (the loaded model, the activation store, the tasks' shared cache) per process, so a
worker that runs many cells loads the model once.

Nothing here writes a cell file: a unit returns its `Cell` and the driver writes it through
`RunDir`, so a crashed worker loses only the cell it was running.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from saebench import plugins
from saebench.fileio import write_json
from saebench.rundir import TRAIN_LOG, Cell, SaeKey, is_saved_sae, knob_label
from saebench.specs import MethodSpec, ModelHandle, TaskContext, TaskSpec, Validity
from saebench.training import TrainConfig


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to rebuild the run's world: picklable, no tensors."""

    model: str  # the --model string
    dataset: str | None
    hook: str
    device: str  # the model's device where the worker runs ("cuda" = its own GPU)
    store_dir: str  # the activation cache entry (a shared path on a cluster)
    preset: str
    train_config: TrainConfig
    task_options: dict[str, dict[str, str]] = field(default_factory=dict)
    model_metadata: dict[str, Any] = field(default_factory=dict)  # written into cfg.json
    progress: bool = False
    sae_device: str | None = None  # where SAEs train (None: beside the model)
    # Set per worker: several torch processes on few cores must not oversubscribe threads.
    torch_threads: int | None = None
    # `pretrained:PATH` methods of the run: not in the plugin registry, rebuilt per worker.
    pretrained: tuple[str, ...] = ()

    @property
    def state_key(self) -> tuple:
        """What a worker's loaded model, store and task cache depend on."""
        return (self.model, self.dataset, self.hook, self.device, self.sae_device, self.store_dir)


@dataclass
class WorkerState:
    """What one process keeps between units of work of the same run."""

    model: ModelHandle
    store: Any  # saebench.harvest.HarvestedStore
    methods: dict[str, MethodSpec]
    tasks: dict[str, TaskSpec]
    device: torch.device  # the model's: harvesting and every task's forward passes
    sae_device: torch.device | None = None  # where SAEs train (None: `device`)
    task_cache: dict = field(default_factory=dict)

    @property
    def training_device(self) -> torch.device:
        return self.sae_device or self.device


@dataclass(frozen=True)
class TrainOutcome:
    sae: SaeKey
    ok: bool
    message: str  # what happened, for the log ("trained in 2.8s", "reusing saved SAE", reason)
    reason: str | None = None  # why training failed: the reason its cells record
    status: str = "failed"  # the status its cells get: failed, or error (the environment)


@dataclass(frozen=True)
class CellOutcome:
    cell: Cell
    traceback: str | None = None  # the formatted traceback of a failed cell


class NonFiniteSAE(ValueError):
    """The SAE outputs NaN or inf: every score computed from it would be meaningless."""


_STATES: dict[tuple, WorkerState] = {}


def worker_state(spec: WorkerSpec) -> WorkerState:
    """This process's state for `spec`, loading the model and opening the store on first use."""
    key = spec.state_key
    if key not in _STATES:
        from saebench.harvest import HarvestedStore
        from saebench.models import resolve_device, resolve_model

        if spec.torch_threads:
            torch.set_num_threads(spec.torch_threads)
        from saebench.pretrained import pretrained_spec

        device = resolve_device(spec.device)
        loaded = [pretrained_spec(argument) for argument in spec.pretrained]
        _STATES[key] = WorkerState(
            model=resolve_model(spec.model, device, spec.dataset),
            store=HarvestedStore(Path(spec.store_dir)),
            methods={**plugins.get_methods(), **{m.name: m for m in loaded}},
            tasks=plugins.get_tasks(),
            device=device,
            sae_device=resolve_device(spec.sae_device) if spec.sae_device else None,
        )
    return _STATES[key]


# Exceptions that say the environment failed (disk full, I/O, memory), not the method or the
# task: their cells are `error`, retried on every rerun instead of being frozen as `failed`.
ENVIRONMENT_ERRORS: tuple[type[BaseException], ...] = (OSError, MemoryError)


def status_for(error: BaseException) -> str:
    return "error" if isinstance(error, ENVIRONMENT_ERRORS) else "failed"


def train_one(
    spec: WorkerSpec, state: WorkerState, key: SaeKey, sae_dir: Path
) -> tuple[Any, TrainOutcome]:
    """`train_group` for one SAE."""
    ((sae, outcome),) = train_group(spec, state, [key], {key: sae_dir})
    return sae, outcome


def train_group(
    spec: WorkerSpec, state: WorkerState, keys: list[SaeKey], sae_dirs: dict[SaeKey, Path]
) -> list[tuple[Any, TrainOutcome]]:
    """Load each SAE saved in its directory; train the others of the group in one pass (same
    method, same batches) and save each. [(sae or None, outcome)] in the order of `keys`.

    A member trains the same alone or in a group, so a resumed run that trains only the missing
    SAEs gives the same SAEs. A trained SAE is never thrown away because saving failed: it is
    returned, its cells run on it, and the message says it was not saved."""
    results: dict[SaeKey, tuple[Any, TrainOutcome]] = {}
    notes: dict[SaeKey, str] = {}
    to_train = []
    for key in keys:
        sae, note = load_saved(state, sae_dirs[key])
        if sae is not None:
            results[key] = (
                sae,
                TrainOutcome(key, True, f"{label_of(state, key)}: reusing saved SAE"),
            )
        else:
            notes[key] = note
            to_train.append(key)
    if to_train:
        for key, result in zip(to_train, _train_and_save(spec, state, to_train, sae_dirs, notes)):
            results[key] = result
    return [results[key] for key in keys]


def label_of(state: WorkerState, key: SaeKey) -> str:
    method = state.methods[key.method]
    return f"{key.method} {method.knob}={knob_label(key.knob)} seed {key.seed}"


def load_saved(state: WorkerState, sae_dir: Path) -> tuple[Any, str]:
    """(the SAE saved in `sae_dir` or None, a note). A saved SAE that fails to load is moved
    aside (kept for inspection) and trained again."""
    from saebench.saved_format import load_sae

    if not is_saved_sae(sae_dir):
        return None, ""
    try:
        return load_sae(sae_dir, state.training_device).eval(), ""
    except Exception as error:  # noqa: BLE001 — a damaged saved SAE is trained again
        aside = sae_dir.with_name(f".{sae_dir.name}.unreadable.{time.strftime('%Y%m%dT%H%M%S')}")
        sae_dir.replace(aside)
        return None, (
            f"; the saved SAE could not be loaded ({type(error).__name__}: {error}), "
            f"moved to {aside}, trained again"
        )


def _train_and_save(
    spec: WorkerSpec,
    state: WorkerState,
    keys: list[SaeKey],
    sae_dirs: dict[SaeKey, Path],
    notes: dict[SaeKey, str],
) -> list[tuple[Any, TrainOutcome]]:
    from saebench.training import train_group as train_members

    method = state.methods[keys[0].method]
    config = replace(spec.train_config, progress=spec.progress)
    try:
        members = train_members(
            method, [(k.knob, k.seed) for k in keys], state.store, config, state.training_device
        )
    except Exception as error:  # noqa: BLE001 — a failed group fails its cells, not the run
        reason = f"training failed: {type(error).__name__}: {error}"
        return [
            (
                None,
                TrainOutcome(
                    k, False, f"{label_of(state, k)}: {reason}", reason, status_for(error)
                ),
            )
            for k in keys
        ]
    results = []
    for key, member in zip(keys, members):
        label = label_of(state, key)
        if member.error is not None:
            failure = member.error
            reason = f"training failed: {type(failure).__name__}: {failure}"
            results.append(
                (None, TrainOutcome(key, False, f"{label}: {reason}", reason, status_for(failure)))
            )
            continue
        log = member.log
        rate = log.get("tokens_per_second")
        together = f", {log['group_size']} SAEs in one pass" if log.get("group_size", 1) > 1 else ""
        message = (
            f"{label}: trained in {log['seconds']:.1f}s"
            + (f" ({rate:,.0f} SAE-tokens/s{together})" if rate else "")
            + notes.get(key, "")
        )
        try:
            save(member.sae, log, sae_dirs[key], spec.model_metadata)
        except OSError as error:
            message += (
                f"; NOT SAVED ({type(error).__name__}: {error}): its cells run on the SAE in "
                "memory, the next run trains it again"
            )
        results.append((member.sae.eval(), TrainOutcome(key, True, message)))
    return results


def save(sae: Any, log: dict[str, Any], sae_dir: Path, metadata: dict[str, Any]) -> None:
    """The SAE (SAELens layout) and its training log, published together or not at all."""
    from saebench.saved_format import save_sae

    save_sae(sae, sae_dir, metadata=metadata)
    try:
        write_json(sae_dir / TRAIN_LOG, log)
    except OSError:
        # Without its log the folder would be reused as if complete: take the SAE back out.
        import shutil

        shutil.rmtree(sae_dir, ignore_errors=True)
        raise


def failed_cells(
    knob_name: str, key: SaeKey, tasks: list[str], reason: str, status: str = "failed"
) -> list[Cell]:
    """The cells of an SAE that could not be trained (or whose worker died), with the reason."""
    return [
        Cell(key.method, knob_name, key.knob, key.seed, task, status, reason=reason)
        for task in tasks
    ]


def non_finite_outputs(sae: Any, eval_acts: Any, device: torch.device, n: int = 2048) -> str | None:
    """Why the SAE's latents or reconstructions on (a sample of) the eval activations are not
    finite, or None. A task would otherwise turn NaN into a plausible score (0.0)."""
    if eval_acts is None or len(eval_acts) == 0:
        return None
    with torch.no_grad():
        x = eval_acts[:n].to(device)
        latents = sae.encode(x)
        if not torch.isfinite(latents).all():
            return "the SAE's latents on the eval activations are not finite (NaN or inf)"
        if not torch.isfinite(sae.decode(latents)).all():
            return "the SAE's reconstructions of the eval activations are not finite (NaN or inf)"
    return None


def task_validity(task: TaskSpec, ctx: TaskContext) -> list[Validity]:
    """The task's validity references, measured once per process on a context without the SAE
    (so a reference can never depend on the dictionary being scored), with seed 0's data."""
    if task.validity is None:
        return []
    validity = task.validity
    return ctx.once(
        ("validity", ctx.preset, tuple(sorted(ctx.options.items()))),
        # Seed 0's data for every cell: the gate must not depend on which seed ran first.
        lambda: list(validity(replace(ctx, sae=None, method="", knob=0.0, seed=0))),
    )


def evaluate_cell(
    spec: WorkerSpec, state: WorkerState, key: SaeKey, task_name: str, sae, artifacts_dir: Path
) -> CellOutcome:
    """Run one task on one SAE; a task that raises or returns a bad metric fails its cell."""
    task = state.tasks[task_name]
    knob_name = state.methods[key.method].knob
    # Tasks splice the SAE into the model's forward pass: it joins the model on its device.
    sae = sae.to(state.device)
    ctx = TaskContext(
        model=state.model,
        hook=spec.hook,
        sae=sae,
        eval_acts=state.store.eval_acts,
        eval_tokens=state.store.eval_tokens,
        eval_mask=state.store.eval_mask,
        device=state.device,
        preset=spec.preset,
        seed=key.seed,
        cache=state.task_cache,
        artifacts_dir=artifacts_dir,
        method=key.method,
        knob=key.knob,
        options=dict(spec.task_options.get(task_name, {})),
        task=task_name,
    )
    started = time.time()
    try:
        checks = task_validity(task, ctx)
        failing = [check for check in checks if not check.informative]
        validity = [check.to_json() for check in checks]
        if any(not check.governs for check in failing):
            # The thing the task measures is absent at this hook: no SAE's number means anything.
            reason = "; ".join(check.summary() for check in failing)
            cell = Cell(
                key.method,
                knob_name,
                key.knob,
                key.seed,
                task_name,
                "uninformative",
                reason=f"validity check failed: {reason}",
                seconds=time.time() - started,
                validity=validity,
            )
            return CellOutcome(cell)
        broken = non_finite_outputs(sae, state.store.eval_acts, state.device)
        if broken:
            raise NonFiniteSAE(broken)
        metrics = dict(task.run(ctx))
        for name in metrics:
            task.metric_info(name)  # undeclared metric: a bug in the task, fail loudly
        # A metric a failing reference governs is not reported, so it may be undefined (NaN);
        # every metric that is reported must be a finite number.
        metrics = {
            name: value
            for name, value in metrics.items()
            if not any(check.covers(name) for check in failing)
        }
        for name, value in metrics.items():
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"metric {name} is {value!r}, not a finite number")
        cell = Cell(
            key.method,
            knob_name,
            key.knob,
            key.seed,
            task_name,
            "ok",
            metrics={k: float(v) for k, v in metrics.items()},
            seconds=time.time() - started,
            validity=validity,
        )
        return CellOutcome(cell)
    except Exception as error:  # noqa: BLE001 — record and continue
        cell = Cell(
            key.method,
            knob_name,
            key.knob,
            key.seed,
            task_name,
            status_for(error),
            reason=f"{type(error).__name__}: {error}",
            seconds=time.time() - started,
        )
        return CellOutcome(cell, traceback.format_exc())
