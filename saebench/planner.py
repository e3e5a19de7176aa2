"""The run planner: a pure function from a `RunRequest` to a `RunPlan`.

The plan is everything the executors need and nothing they must decide: the validated methods
with their knobs and seeds, the tasks that run (and the ones skipped, with reasons), the config
that resume and the regression gate compare, and the *training groups* — the SAEs that can share
one pass over the activation stream (same method and shape, different knobs or seeds).

`validate_request` needs no model, so bad flags fail before the model loads and activations are
harvested; `make_plan` adds what needs the loaded model (hook, which tasks support it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saebench import plugins
from saebench.errors import ConfigError
from saebench.presets import Preset, get_preset
from saebench.pretrained import is_pretrained, method_name, pretrained_spec
from saebench.rundir import RunDir, SaeKey, knob_label
from saebench.specs import MethodSpec, ModelHandle, TaskSpec

if TYPE_CHECKING:  # the planner stays importable without torch (the gate uses it)
    from saebench.training import TrainConfig

EXECUTORS = ("local", "ray")
DEFAULT_MAX_RETRIES = 2  # Ray: reruns of a unit whose worker died


@dataclass
class RunRequest:
    """What the user asked for (the CLI's flags, already parsed)."""

    methods: list[str]
    tasks: list[str] | None = None  # None: every task that supports the model
    model: str = "toyworld"
    hook: str | None = None
    preset: str = "default"
    sweeps: dict[str, list[float]] = field(default_factory=dict)  # method -> knob values
    seeds: int | None = None
    # Add every calibration baseline not named in `methods` when a learned method is compared.
    baselines: bool = True
    device: str = "auto"  # the model's device (harvest, task forwards); SAEs too by default
    sae_device: str | None = None  # where SAEs train, when not beside the model (local only)
    out: Path | None = None
    dataset: str | None = None
    cache_dir: Path | None = None
    retry_failed: bool = False
    progress: bool = True
    compile: bool = False  # torch.compile the training step of methods that allow it
    dtype: str = "float32"  # the training forward's autocast dtype (bfloat16 on GPU)
    train_tokens: int | None = None  # tokens each SAE trains on (None: the preset's)
    expansion: int | None = None  # d_sae = expansion × d_in (None: the preset's)
    task_options: dict[str, dict[str, str]] = field(default_factory=dict)  # task -> {key: value}
    command: str | None = None  # the command line, recorded in run.json
    executor: str = "local"
    ray_address: str | None = None  # None: start a local Ray; "auto" or HOST:PORT: join one
    workers: int | None = None  # parallel Ray workers on a local Ray (default: CPU count)
    max_retries: int | None = None  # Ray: reruns of a unit whose worker died (None: default)


@dataclass(frozen=True)
class TrainingGroup:
    """SAEs of one method and shape that can be trained in one pass over the stream."""

    method: str
    saes: tuple[SaeKey, ...]


@dataclass(frozen=True)
class ValidatedRequest:
    """The model-free half of a plan."""

    preset: Preset
    methods: dict[str, MethodSpec]  # in --methods order
    saes: tuple[SaeKey, ...]  # method-major, then knob, then seed (the run's order)


@dataclass(frozen=True)
class RunPlan:
    request: RunRequest
    preset: Preset
    methods: dict[str, MethodSpec]
    saes: tuple[SaeKey, ...]
    groups: tuple[TrainingGroup, ...]
    tasks: dict[str, TaskSpec]  # sorted by name: the order cells of one SAE run in
    skipped_tasks: dict[str, str]  # task -> why it does not run on this model
    model_name: str
    model_source: str | None
    hook: str
    run_dir: RunDir

    def task_options(self, task: str) -> dict[str, str]:
        return dict(self.request.task_options.get(task, {}))

    def train_config(self, d_in: int) -> TrainConfig:
        return self.preset.train_config(
            d_in,
            compile=self.request.compile,
            dtype=self.request.dtype,
            total_tokens=self.request.train_tokens or self.preset.train_tokens_per_sae,
            d_sae=self.expansion * d_in,
        )

    @property
    def expansion(self) -> int:
        return self.request.expansion or self.preset.expansion

    def config(self, d_in: int) -> dict[str, Any]:
        """What resume and the regression gate compare: everything that changes the numbers."""
        train = self.train_config(d_in)
        train_fields = {
            f"train.{k}": list(v) if isinstance(v, tuple) else v
            for k, v in vars(train).items()
            if k not in ("seed", "progress")
        }
        return {
            "model": self.model_name,
            # The --model argument when it says more than the name (toyworld:<dir>, hf:<dir>):
            # what `saebench check --rerun` must load. Absent otherwise, so older baselines match.
            **(
                {"model_argument": self.request.model}
                if self.request.model != self.model_name
                else {}
            ),
            "model_source": self.model_source,
            "hook": self.hook,
            "preset": self.preset.name,
            "dataset": self.request.dataset,
            "n_train_tokens": self.preset.n_train_tokens,
            "n_eval_tokens": self.preset.n_eval_tokens,
            "d_in": d_in,
            "d_sae": train.d_sae,
            "tasks": sorted(self.tasks),
            "methods": {
                name: sorted({sae.knob for sae in self.saes if sae.method == name})
                for name in self.methods
            },
            "seeds": sorted({sae.seed for sae in self.saes}),
            **train_fields,
            # Only when set, so runs and baselines made before task options existed still match.
            **({"task_options": self.request.task_options} if self.request.task_options else {}),
        }


ABSENT = "(absent)"


def config_differences(
    old: dict[str, Any], new: dict[str, Any], ignore: frozenset[str] | set[str] = frozenset()
) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) for every differing config key not in `ignore`; a missing key
    reads as None when comparing and shows as "(absent)"."""
    return [
        (key, old.get(key, ABSENT), new.get(key, ABSENT))
        for key in sorted(set(old) | set(new))
        if key not in ignore and old.get(key) != new.get(key)
    ]


def default_run_dir(request: RunRequest, preset: Preset) -> Path:
    model = Path(request.model).name.replace(":", "-")
    methods = [method_name(m) if is_pretrained(m) else m for m in request.methods]
    return Path("results") / f"{model}-{preset.name}-{'-'.join(methods)}"


def validate_request(
    request: RunRequest,
    methods: dict[str, MethodSpec] | None = None,
    tasks: dict[str, TaskSpec] | None = None,
) -> ValidatedRequest:
    """Check everything that needs no model: names, sweeps, knob values, seeds, executor, the
    task options' task and option names."""
    max_saes = 100_000  # far above any real run; stops a typo'd --seeds 10**30 from hanging
    methods = plugins.get_methods() if methods is None else methods
    tasks = plugins.get_tasks() if tasks is None else tasks
    preset = get_preset(request.preset)
    if not request.methods:
        raise ConfigError("--methods is empty; name at least one (see `saebench list`)")
    if request.tasks is not None and not request.tasks:
        raise ConfigError(
            "--tasks is empty; name at least one (see `saebench list`), or drop --tasks to run "
            "every task that supports the model"
        )
    if request.executor not in EXECUTORS:
        raise ConfigError(
            f"unknown --executor {request.executor!r}; choose from {', '.join(EXECUTORS)}"
        )
    chosen = {}
    for name in request.methods:
        if is_pretrained(name):
            spec = pretrained_spec(name)
            if spec.name in chosen:
                raise ConfigError(
                    f"two pretrained paths give the method name {spec.name!r}; rename one folder"
                )
            chosen[spec.name] = spec
        else:
            chosen[name] = plugins.lookup("method", name, methods)
    if request.baselines and any(not spec.calibration for spec in chosen.values()):
        # A score means little until it is read against dictionaries that learned nothing.
        for name, spec in methods.items():
            if spec.calibration and name not in chosen and spec.sweeps.get(preset.name):
                chosen[name] = spec
    for name in request.tasks or ():
        plugins.lookup("task", name, tasks)
    # The option names are known without the model; which tasks support it is checked later.
    check_task_options(
        request.task_options,
        tasks if request.tasks is None else {name: tasks[name] for name in request.tasks},
    )
    unknown_sweeps = set(request.sweeps) - set(chosen)
    if unknown_sweeps:
        raise ConfigError(
            f"--sweep names {sorted(unknown_sweeps)} which are not in --methods "
            f"{','.join(request.methods)}; add them to --methods or drop the sweep"
        )
    check_executor_flags(request)
    if request.train_tokens is not None and request.train_tokens < preset.batch_size:
        raise ConfigError(
            f"--train-tokens {request.train_tokens:,} is less than one batch of preset "
            f"{preset.name!r} ({preset.batch_size:,} tokens); pass at least {preset.batch_size:,}"
        )
    if request.expansion is not None and request.expansion < 1:
        raise ConfigError(f"--expansion must be at least 1, got {request.expansion}")
    n_seeds = request.seeds if request.seeds is not None else preset.seeds
    if n_seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {n_seeds}")
    sweeps = {
        name: request.sweeps.get(name) or list(spec.sweeps.get(preset.name, []))
        for name, spec in chosen.items()
    }
    n_saes = n_seeds * sum(len(knobs) for knobs in sweeps.values())
    if n_saes > max_saes:
        raise ConfigError(
            f"this run would train {n_saes:,} SAEs ({n_seeds:,} seed(s) × "
            f"{sum(len(knobs) for knobs in sweeps.values())} knob value(s)); saebench plans at "
            f"most {max_saes:,} per run: lower --seeds or the --sweep values, or split the run"
        )
    saes = []
    for name, spec in chosen.items():
        knobs = sweeps[name]
        if not knobs:
            raise ConfigError(
                f"method {name!r} has no sweep for preset {preset.name!r}; "
                f"pass --sweep {name}=v1,v2"
            )
        checked_knobs: list[float] = []
        for knob in knobs:
            try:
                checked = spec.check_knob(knob)
            except ValueError as error:
                raise ConfigError(f"invalid --sweep value: {error}") from None
            if checked in checked_knobs:
                raise ConfigError(
                    f"--sweep {name} repeats {spec.knob}={knob_label(checked)}; "
                    "give each value once"
                )
            checked_knobs.append(checked)
            saes += [SaeKey(name, checked, seed) for seed in range(n_seeds)]
    return ValidatedRequest(preset, chosen, tuple(saes))


def check_executor_flags(request: RunRequest) -> None:
    """Ray's flags mean nothing to the local executor: refuse them rather than ignore them."""
    if request.executor == "local":
        given = [
            flag
            for flag, value in (
                ("--ray-address", request.ray_address),
                ("--workers", request.workers),
                ("--max-retries", request.max_retries),
            )
            if value is not None
        ]
        if given:
            raise ConfigError(
                f"{', '.join(given)} only apply to --executor ray; add --executor ray or drop them"
            )
    if request.executor == "ray" and request.sae_device is not None:
        raise ConfigError(
            "--sae-device is for --executor local: with Ray every task gets its own device "
            "(pass --device cuda and Ray assigns one GPU per task); drop --sae-device"
        )
    if request.workers is not None and request.ray_address:
        raise ConfigError(
            "--workers sizes the local Ray this run starts; a cluster joined with --ray-address "
            "has its own CPUs (set them with `ray start --num-cpus`): drop --workers"
        )
    if request.max_retries is not None and request.max_retries < 0:
        raise ConfigError(f"--max-retries must be 0 or more, got {request.max_retries}")


def training_groups(saes: tuple[SaeKey, ...]) -> tuple[TrainingGroup, ...]:
    """One group per method (every SAE of a run has the preset's d_sae), in run order."""
    by_method: dict[str, list[SaeKey]] = {}
    for sae in saes:
        by_method.setdefault(sae.method, []).append(sae)
    return tuple(TrainingGroup(method, tuple(keys)) for method, keys in by_method.items())


def choose_tasks(
    request: RunRequest, tasks: dict[str, TaskSpec], model: ModelHandle
) -> tuple[dict[str, TaskSpec], dict[str, str]]:
    """(tasks that run, skipped task -> reason). Named tasks that cannot run are an error."""
    chosen, skipped = {}, {}
    names = sorted(tasks) if request.tasks is None else list(request.tasks)
    for name in names:
        spec = tasks[name]
        reason = spec.supports(model, dict(request.task_options.get(name, {})))
        if reason is None:
            chosen[name] = spec
        elif request.tasks is None:
            skipped[name] = reason
        else:
            raise ConfigError(
                f"task {name!r} cannot run on model {model.name!r}: {reason}. Drop it from --tasks"
            )
    check_task_options(request.task_options, chosen)
    return dict(sorted(chosen.items())), skipped


def check_task_options(options: dict[str, dict[str, str]], tasks: dict[str, TaskSpec]) -> None:
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


def make_plan(
    request: RunRequest,
    model: ModelHandle,
    hook: str,
    methods: dict[str, MethodSpec] | None = None,
    tasks: dict[str, TaskSpec] | None = None,
) -> RunPlan:
    """The whole plan, for a loaded model and its validated hook."""
    tasks = plugins.get_tasks() if tasks is None else tasks
    valid = validate_request(request, methods, tasks)
    chosen, skipped = choose_tasks(request, tasks, model)
    return RunPlan(
        request=request,
        preset=valid.preset,
        methods=valid.methods,
        saes=valid.saes,
        groups=training_groups(valid.saes),
        tasks=chosen,
        skipped_tasks=skipped,
        model_name=model.name,
        model_source=model.info.get("source"),
        hook=hook,
        run_dir=RunDir(request.out or default_run_dir(request, valid.preset)),
    )
