"""The run matrix: methods × sparsity knobs × seeds × tasks on one shared activation stream.

A cell is (method, knob, seed, task). Each finished cell (ok or failed, with its reason) is
written atomically to cells/<id>.json, so rerunning the same command resumes: finished cells
are skipped and saved SAEs are reloaded instead of retrained. A failing cell never stops the run.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from saebench import plugins
from saebench.errors import ConfigError
from saebench.fileio import write_json, write_text
from saebench.presets import get_preset
from saebench.specs import TaskContext


@dataclass
class RunRequest:
    methods: list[str]
    tasks: list[str] | None = None  # None: every task that supports the model
    model: str = "toyworld"
    hook: str | None = None
    preset: str = "default"
    sweeps: dict[str, list[float]] = field(default_factory=dict)  # method -> knob values
    seeds: int | None = None
    device: str = "auto"
    out: Path | None = None
    dataset: str | None = None
    cache_dir: Path | None = None
    retry_failed: bool = False
    progress: bool = True
    task_options: dict[str, dict[str, str]] = field(default_factory=dict)  # task -> {key: value}


def parse_sweep(texts) -> dict[str, list[float]]:
    """['topk=8,16', 'l1=1e-3'] -> {'topk': [8.0, 16.0], 'l1': [0.001]}."""
    sweeps = {}
    for text in texts or ():
        method, sep, values = text.partition("=")
        if not sep or not values.strip():
            raise ConfigError(f"--sweep {text!r} must look like METHOD=v1,v2 (e.g. topk=8,16,32)")
        try:
            sweeps[method.strip()] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError as error:
            raise ConfigError(f"--sweep {text!r}: values must be numbers ({error})") from None
    return sweeps


def parse_task_options(texts) -> dict[str, dict[str, str]]:
    """['sparse_probing.pooling=last'] -> {'sparse_probing': {'pooling': 'last'}}."""
    options: dict[str, dict[str, str]] = {}
    for text in texts or ():
        key, sep, value = text.partition("=")
        task, dot, name = key.strip().partition(".")
        if not sep or not dot or not task or not name:
            raise ConfigError(
                f"--task-option {text!r} must look like TASK.NAME=VALUE "
                "(e.g. sparse_probing.pooling=last)"
            )
        options.setdefault(task, {})[name] = value.strip()
    return options


def check_task_options(options: dict, tasks: dict) -> None:
    """Every option names a task of this run and an option that task declares."""
    for task_name, values in options.items():
        if task_name not in tasks:
            raise ConfigError(
                f"--task-option for {task_name!r}, which is not a task of this run "
                f"(tasks: {', '.join(sorted(tasks)) or 'none'})"
            )
        declared = tasks[task_name].options
        for name in values:
            if name not in declared:
                listing = "; ".join(f"{k}: {v}" for k, v in declared.items()) or "none"
                raise ConfigError(
                    f"task {task_name!r} has no option {name!r}; its options: {listing}"
                )


def knob_label(value) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def cell_id(method: str, knob, seed: int, task: str) -> str:
    return f"{method}__{knob_label(knob)}__seed{seed}__{task}"


def plan(request: RunRequest, methods: dict, preset) -> list[tuple]:
    """[(method spec, knob, seed)] after validating methods and sweeps."""
    unknown_sweeps = set(request.sweeps) - set(request.methods)
    if unknown_sweeps:
        raise ConfigError(
            f"--sweep names {sorted(unknown_sweeps)} which are not in --methods "
            f"{','.join(request.methods)}; add them to --methods or drop the sweep"
        )
    n_seeds = request.seeds if request.seeds is not None else preset.seeds
    if n_seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {n_seeds}")
    jobs = []
    for name in request.methods:
        spec = methods[name]
        knobs = request.sweeps.get(name) or list(spec.sweeps.get(preset.name, []))
        if not knobs:
            raise ConfigError(
                f"method {name!r} has no sweep for preset {preset.name!r}; "
                f"pass --sweep {name}=v1,v2"
            )
        for knob in knobs:
            try:
                knob = spec.check_knob(knob)
            except ValueError as error:
                raise ConfigError(f"invalid --sweep value: {error}") from None
            for seed in range(n_seeds):
                jobs.append((spec, knob, seed))
    return jobs


def _config_diff(old: dict, new: dict) -> list[str]:
    return [
        f"{key}: {old.get(key)!r} (existing run) vs {new.get(key)!r} (this command)"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]


class Runner:
    def __init__(self, request: RunRequest, echo=print):
        from saebench.models import resolve_device, resolve_model, validate_hook

        self.request, self.echo = request, echo
        self.preset = get_preset(request.preset)
        if not request.methods:
            raise ConfigError("--methods is empty; name at least one (see `saebench list`)")
        all_methods = plugins.get_methods()
        for name in request.methods:
            plugins.lookup("method", name, all_methods)
        all_tasks = plugins.get_tasks()
        for name in request.tasks or ():
            plugins.lookup("task", name, all_tasks)
        self.jobs = plan(request, all_methods, self.preset)
        self.device = resolve_device(request.device)
        started = time.time()
        self.model = resolve_model(request.model, self.device, request.dataset)
        self.hook = validate_hook(self.model, request.hook)
        self.timings = {"load_model": time.time() - started}
        self.skipped_tasks = {}

        def supports(name, spec):
            options = request.task_options.get(name)
            return spec.supports(self.model, options) if options else spec.supports(self.model)

        if request.tasks is None:
            self.tasks = {}
            for name, spec in sorted(all_tasks.items()):
                reason = supports(name, spec)
                if reason is None:
                    self.tasks[name] = spec
                else:
                    self.skipped_tasks[name] = reason
        else:
            self.tasks = {name: all_tasks[name] for name in request.tasks}
            for name, spec in self.tasks.items():
                reason = supports(name, spec)
                if reason is not None:
                    raise ConfigError(
                        f"task {name!r} cannot run on model {self.model.name!r}: "
                        f"{reason}. Drop it from --tasks"
                    )
        check_task_options(request.task_options, self.tasks)
        default_out = Path("results") / (
            f"{Path(request.model).name.replace(':', '-')}-"
            f"{self.preset.name}-{'-'.join(request.methods)}"
        )
        self.run_dir = Path(request.out or default_out)

    def config(self, d_in: int) -> dict:
        from saebench.training import TrainConfig

        train = TrainConfig(
            d_sae=self.preset.expansion * d_in,
            total_tokens=self.preset.train_tokens_per_sae,
            batch_size=self.preset.batch_size,
            lr=self.preset.lr,
            dead_window_tokens=self.preset.dead_window_tokens,
            progress=False,
        )
        train_fields = {
            f"train.{k}": v for k, v in vars(train).items() if k not in ("seed", "progress")
        }
        return {
            "model": self.model.name,
            "model_source": self.model.info.get("source"),
            "hook": self.hook,
            "preset": self.preset.name,
            "dataset": self.request.dataset,
            "n_train_tokens": self.preset.n_train_tokens,
            "n_eval_tokens": self.preset.n_eval_tokens,
            "d_in": d_in,
            "d_sae": train.d_sae,
            "tasks": sorted(self.tasks),
            "methods": {
                spec.name: sorted({knob for s, knob, _ in self.jobs if s is spec})
                for spec, _, _ in self.jobs
            },
            "seeds": sorted({seed for _, _, seed in self.jobs}),
            **{k: list(v) if isinstance(v, tuple) else v for k, v in train_fields.items()},
            # Only when set, so runs and baselines made before task options existed still match.
            **({"task_options": self.request.task_options} if self.request.task_options else {}),
        }, train

    def check_resume(self, config: dict) -> None:
        run_json = self.run_dir / "run.json"
        if run_json.exists():
            try:
                old = json.loads(run_json.read_text()).get("config", {})
            except json.JSONDecodeError:
                old = None
            if old is not None and old != config:
                raise ConfigError(
                    f"{self.run_dir} holds a run with a different config ("
                    + "; ".join(_config_diff(old, config))
                    + "). Pass a new --out to start a "
                    "separate run, or rerun the original command to resume it"
                )

    def run(self) -> Path:
        from saebench.harvest import harvest

        started = time.time()
        self.echo(
            f"model {self.model.name} on {self.device}; hook {self.hook}; "
            f"preset {self.preset.name}; {len(self.jobs)} SAEs × {len(self.tasks)} tasks"
        )
        store = harvest(
            self.model,
            self.hook,
            self.preset.n_train_tokens,
            self.preset.n_eval_tokens,
            seed=0,
            cache_dir=self.request.cache_dir,
            device=self.device,
        )
        self.timings["harvest"] = time.time() - started
        config, train_config = self.config(store.d_in)
        self.check_resume(config)
        (self.run_dir / "cells").mkdir(parents=True, exist_ok=True)
        self.write_run_json(config, store, status="running")
        shared_cache: dict = {}
        for spec, knob, seed in self.jobs:
            self.run_sae(spec, knob, seed, store, train_config, shared_cache)
        self.timings["total"] = time.time() - started
        self.finish(config, store)
        return self.run_dir

    def _cell_path(self, cid: str) -> Path:
        return self.run_dir / "cells" / f"{cid}.json"

    def _done(self, cid: str) -> bool:
        path = self._cell_path(cid)
        if not path.exists():
            return False
        return self.request.retry_failed is False or json.loads(path.read_text())["status"] == "ok"

    def _write_cell(self, spec, knob, seed, task, status, metrics=None, reason=None, seconds=0.0):
        cid = cell_id(spec.name, knob, seed, task)
        write_json(
            self._cell_path(cid),
            {
                "id": cid,
                "method": spec.name,
                "knob_name": spec.knob,
                "knob": knob,
                "seed": seed,
                "task": task,
                "status": status,
                "reason": reason,
                "metrics": metrics or {},
                "seconds": round(seconds, 3),
            },
        )

    def run_sae(self, spec, knob, seed, store, train_config, shared_cache) -> None:
        from dataclasses import replace

        from saebench.saved_format import load_sae, save_sae
        from saebench.training import train_sae

        pending = [t for t in self.tasks if not self._done(cell_id(spec.name, knob, seed, t))]
        if not pending:
            return
        sae_dir = self.run_dir / "saes" / spec.name / knob_label(knob) / f"seed{seed}"
        label = f"{spec.name} {spec.knob}={knob_label(knob)} seed {seed}"
        try:
            if (sae_dir / "cfg.json").exists():
                sae = load_sae(sae_dir, self.device)
                self.echo(f"  {label}: reusing saved SAE")
            else:
                torch.manual_seed(seed)
                sae, log = train_sae(
                    spec,
                    knob,
                    store,
                    replace(train_config, seed=seed, progress=self.request.progress),
                    self.device,
                )
                save_sae(
                    sae,
                    sae_dir,
                    metadata={
                        "model_name": self.model.name,
                        "hook_name": self.hook,
                        "context_size": self.model.context_size,
                        "prepend_bos": True,
                    },
                )
                write_json(sae_dir / "train_log.json", log)
                rate = log.get("tokens_per_second")
                self.echo(
                    f"  {label}: trained in {log['seconds']:.1f}s"
                    + (f" ({rate:,.0f} tokens/s)" if rate else "")
                )
        except Exception as error:  # noqa: BLE001 — a failed SAE fails its cells, not the run
            reason = f"training failed: {type(error).__name__}: {error}"
            self.echo(f"  {label}: {reason}")
            for task in pending:
                self._write_cell(spec, knob, seed, task, "failed", reason=reason)
            return
        sae.eval()
        for task in pending:
            self.run_cell(spec, knob, seed, task, sae, store, shared_cache, sae_dir)

    def run_cell(self, spec, knob, seed, task_name, sae, store, shared_cache, sae_dir) -> None:
        task = self.tasks[task_name]
        ctx = TaskContext(
            model=self.model,
            hook=self.hook,
            sae=sae,
            eval_acts=store.eval_acts,
            eval_tokens=store.eval_tokens,
            eval_mask=store.eval_mask,
            device=self.device,
            preset=self.preset.name,
            seed=seed,
            cache=shared_cache,
            artifacts_dir=sae_dir / "artifacts" / task_name,
            method=spec.name,
            knob=knob,
            options=dict(self.request.task_options.get(task_name, {})),
        )
        started = time.time()
        try:
            metrics = dict(task.run(ctx))
            for name, value in metrics.items():
                task.metric_info(name)  # undeclared metric: a bug in the task, fail loudly
                if not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise ValueError(f"metric {name} is {value!r}, not a finite number")
            self._write_cell(
                spec,
                knob,
                seed,
                task_name,
                "ok",
                {k: float(v) for k, v in metrics.items()},
                seconds=time.time() - started,
            )
            self.echo(f"    {task_name}: ok ({time.time() - started:.1f}s)")
        except Exception as error:  # noqa: BLE001 — record and continue
            reason = f"{type(error).__name__}: {error}"
            self._write_cell(
                spec, knob, seed, task_name, "failed", reason=reason, seconds=time.time() - started
            )
            self.echo(f"    {task_name}: FAILED — {reason}")
            write_text(sae_dir / "artifacts" / f"{task_name}.traceback.txt", traceback.format_exc())

    def write_run_json(self, config, store, status) -> None:
        from saebench.results import run_metadata

        write_json(self.run_dir / "run.json", run_metadata(self, config, store, status))

    def finish(self, config, store) -> None:
        from saebench.plots import make_plots
        from saebench.results import write_results

        frame = write_results(self.run_dir, model=self.model.name, hook=self.hook, tasks=self.tasks)
        self.write_run_json(config, store, status="complete")
        for message in make_plots(self.run_dir, frame, self.tasks):
            self.echo(f"  plot: {message}")


def run(request: RunRequest, echo=print) -> Path:
    return Runner(request, echo).run()
