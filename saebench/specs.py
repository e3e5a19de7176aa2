"""The records plugins register (methods, tasks, models) and the objects passed between them.

These are the contracts between the core and every plugin: keep them small and documented.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

# The sparsity axis: the one metric name core relies on. A task that reports it for every SAE
# (the built-in `frontier` does) gives L0 curves and matched-L0 comparisons their x-axis.
L0 = "l0"


@dataclass(frozen=True)
class MethodSpec:
    """A dictionary-learning method with one sparsity knob to sweep.

    build(d_in=, d_sae=, knob=) returns a `saebench.sae.TrainableSAE` (or a baseline that is
    fitted in closed form, with `trainable=False`). SAEs with the same method, d_in and d_sae
    form one training group of the run plan and are trained in one pass over the stream: by
    `build_group(d_in=, d_sae=, knobs=)` when given (a `saebench.groups.SAEGroup` with stacked
    parameters, the fast path), else by one `build` per member on the same batches.
    """

    name: str
    description: str
    knob: str  # the sparsity knob's name, e.g. "l1_coefficient" or "k"
    build: Callable[..., Any]
    sweeps: Mapping[str, Sequence[float]]  # preset name -> knob values swept by default
    knob_is_integer: bool = False
    knob_min: float | None = None  # smallest valid knob value (inclusive); None: unbounded
    # Largest valid knob value (inclusive); None: unbounded. Checked before the model loads, so
    # only a bound that needs no d_in / d_sae (TopK's k <= d_sae is checked when it is built).
    knob_max: float | None = None
    trainable: bool = True  # False: fitted in closed form from an activation sample (baselines)
    # A calibration baseline (a dictionary that learned nothing: random directions, the neuron
    # basis, PCA): every task score is read against these; results say when none ran.
    calibration: bool = False
    # Optional fast path: every knob and seed of a training group as one stacked module.
    build_group: Callable[..., Any] | None = None
    plugin: str = ""  # filled in at registration: the plugin that registered it

    def check_knob(self, value: float) -> float:
        """Validate one knob value; raise ValueError that names the fix."""
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{self.name}: {self.knob}={value} is not a finite number")
        if self.knob_is_integer and float(value) != int(value):
            raise ValueError(f"{self.name}: {self.knob} must be an integer, got {value}")
        if self.knob_min is not None and value < self.knob_min:
            raise ValueError(
                f"{self.name}: {self.knob}={value} is below the minimum {self.knob_min}; "
                f"pass values >= {self.knob_min} in --sweep {self.name}=..."
            )
        if self.knob_max is not None and value > self.knob_max:
            raise ValueError(
                f"{self.name}: {self.knob}={value} is above the maximum {self.knob_max}; "
                f"pass values <= {self.knob_max} in --sweep {self.name}=..."
            )
        return int(value) if self.knob_is_integer else float(value)


@dataclass(frozen=True)
class MetricInfo:
    """What a metric means for comparisons and the regression gate."""

    higher_is_better: bool | None  # None: descriptive only (never gated)
    floor: float = 0.0  # absolute change below which a move is never a regression
    description: str = ""
    # A headline metric is a column of the run's summary table and (when it has a direction)
    # of the matched-L0 heatmap. A task that marks none contributes all its directional metrics.
    headline: bool = False
    # The score a dictionary that knows nothing would get on an accuracy-like metric (1/n_classes,
    # the majority rate, 0.5 for AUROC): printed next to the metric. None: no chance level.
    chance: float | None = None
    # True: the metric scores agreement with a known ground truth (toy-world labels, a synthetic
    # stream's true dictionary). `saebench audit` correlates the other metrics with it.
    ground_truth: bool = False
    # False: the value does not come from the SAE at the run's L0 (e.g. a second SAE trained
    # inside the task on another stream), so it is not compared with baselines at matched L0.
    comparable_at_l0: bool = True


@dataclass(frozen=True)
class Validity:
    """One SAE-independent reference of a task, measured once per (model, hook).

    It shows that what the task measures is present and causal at the hook (a probe on the raw
    activations, a supervised direction, the whole-activation patch). The reference passes when
    the lower end of its 95% interval is above chance + margin. When it fails, the metrics it
    `governs` (fnmatch patterns; empty: every metric of the task) mean nothing on this model: an
    all-task failure records the cells as `uninformative`, a partial one drops those metrics.
    """

    name: str  # what was measured, e.g. "raw_probe_acc_k5_mean"
    reference: float
    low: float  # lower end of the reference's 95% interval
    chance: float
    margin: float
    description: str = ""  # how the reference was measured, for results.md
    governs: tuple[str, ...] = ()

    @property
    def informative(self) -> bool:
        return self.low > self.chance + self.margin

    def covers(self, metric: str) -> bool:
        return not self.governs or any(fnmatch.fnmatchcase(metric, p) for p in self.governs)

    def summary(self) -> str:
        verdict = "passes" if self.informative else "fails"
        return (
            f"{self.name} = {self.reference:.3g} (95% lower end {self.low:.3g}) {verdict}: needs "
            f"> chance {self.chance:.3g} + margin {self.margin:.3g}"
            + (f" ({self.description})" if self.description else "")
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reference": self.reference,
            "low": self.low,
            "chance": self.chance,
            "margin": self.margin,
            "description": self.description,
            "governs": list(self.governs),
            "informative": self.informative,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Validity:
        return cls(
            name=data["name"],
            reference=float(data["reference"]),
            low=float(data["low"]),
            chance=float(data["chance"]),
            margin=float(data["margin"]),
            description=data.get("description", ""),
            governs=tuple(data.get("governs", ())),
        )


@dataclass(frozen=True)
class TaskSpec:
    """An evaluation of one trained SAE.

    run(ctx: TaskContext) -> dict[metric name, float]. `metrics` maps metric names (or fnmatch
    patterns such as "probe_acc_k*") to MetricInfo; every metric a task returns must match one.
    supports(model: ModelHandle, options: dict[str, str]) -> None when the task can run on that
    model with those --task-option values (empty when none were given), else the reason.
    plot(results: pandas.DataFrame, run_dir: saebench.rundir.RunDir) -> list[Path], optional
    task-specific plots (ask `run_dir` for paths: `run_dir.plot_path(name)`, artifacts).
    options: {name: help} the task accepts via `--task-option TASK.NAME=VALUE` (ctx.options).
    validity(ctx: TaskContext) -> list[Validity], optional: the task's SAE-independent
    references, called with `ctx.sae = None` once per process and (model, hook); see Validity.
    """

    name: str
    description: str
    run: Callable[[TaskContext], Mapping[str, float]]
    metrics: Mapping[str, MetricInfo]
    supports: Callable[[ModelHandle, dict[str, str]], str | None] = lambda model, options: None
    plot: Callable[..., list] | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    validity: Callable[[TaskContext], Sequence[Validity]] | None = None
    plugin: str = ""

    def metric_info(self, metric: str) -> MetricInfo:
        if metric in self.metrics:
            return self.metrics[metric]
        for pattern, info in self.metrics.items():
            if fnmatch.fnmatchcase(metric, pattern):
                return info
        raise KeyError(
            f"task {self.name!r} returned metric {metric!r} that it does not declare; "
            f"add it to the task's `metrics` (declared: {', '.join(self.metrics)})"
        )


@dataclass
class ModelHandle:
    """A loaded model plus what the runner and tasks need to know about it."""

    name: str
    bridge: Any  # transformer_lens TransformerBridge
    tokenizer: Any  # a Hugging Face tokenizer
    default_hook: str
    context_size: int
    # corpus(split, n_texts, seed) -> list of texts to harvest activations from
    corpus: Callable[[str, int, int], list[str]]
    is_causal_lm: bool = True  # False for encoders (no next-token loss)
    special_token_ids: frozenset[int] = frozenset()
    world: Any = None  # the toy world (ground-truth labels) when the model has one
    info: dict = field(default_factory=dict)  # provenance: source path, sizes, metrics

    def hook_names(self) -> list[str]:
        return sorted(self.bridge.hook_dict)


@dataclass(frozen=True)
class ModelSpec:
    """A named model.

    The runner calls load(device=torch.device, source=str | None, dataset=str | None) and gets
    a ModelHandle. `source` is what follows the colon in `--model NAME:SOURCE` (a hub name or a
    local directory; None without a colon); `dataset` is the `--dataset` file to harvest from
    instead of the model's own corpus (None: the model's corpus).
    """

    name: str
    description: str
    load: Callable[..., ModelHandle]
    plugin: str = ""


@dataclass
class TaskContext:
    """Everything a task needs to evaluate one SAE (one cell of the run matrix)."""

    model: ModelHandle
    hook: str
    sae: Any  # saebench.sae.SAE on `device`, in eval mode, working on raw activations
    eval_acts: Any  # torch.Tensor [n_tokens, d_in]: held-out activations, special tokens masked
    eval_tokens: Any  # torch.LongTensor [n_seqs, ctx]: held-out token ids for loss-type tasks
    eval_mask: Any  # torch.BoolTensor [n_seqs, ctx]: True where a token is not special/padding
    device: Any
    preset: str
    seed: int
    cache: dict  # shared by all cells of one (model, hook) in one process; use `once`
    artifacts_dir: Path  # per-cell folder for a task's extra outputs (e.g. points for plots)
    method: str = ""
    knob: float = 0.0
    options: dict = field(default_factory=dict)  # this task's --task-option values (strings)
    task: str = ""  # the task being run: `once` keys are namespaced by it

    def once(self, key: Any, compute: Callable[[], T]) -> T:
        """compute() the first time (task, key) is asked for in this process, then reuse it.

        For work that does not depend on the SAE (clean-model forwards, prompts, references):
        the key must name everything the result depends on besides the model and hook. Keys are
        namespaced by the task and by the module that defines `compute`, so two tasks never
        collide, even on a hand-built context whose `task` is not set.
        """
        namespaced = (self.task, getattr(compute, "__module__", None), key)
        if namespaced not in self.cache:
            self.cache[namespaced] = compute()
        return self.cache[namespaced]
