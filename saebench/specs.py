"""The records plugins register (methods, tasks, models) and the objects passed between them.

These are the contracts between the core and every plugin: keep them small and documented.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

PRESETS = ("smoke", "default", "full")


@dataclass(frozen=True)
class MethodSpec:
    """A dictionary-learning method with one sparsity knob to sweep.

    build(d_in=, d_sae=, knob=, options=) returns a `saebench.sae.TrainableSAE` (or a baseline
    that is fitted in closed form, with `trainable=False`).
    """

    name: str
    description: str
    knob: str  # the sparsity knob's name, e.g. "l1_coefficient" or "k"
    build: Callable[..., Any]
    sweeps: Mapping[str, Sequence[float]]  # preset name -> knob values swept by default
    knob_is_integer: bool = False
    knob_min: float | None = None  # smallest valid knob value (inclusive); None: unbounded
    trainable: bool = True  # False: fitted in closed form from an activation sample (baselines)
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
        return int(value) if self.knob_is_integer else float(value)


@dataclass(frozen=True)
class MetricInfo:
    """What a metric means for comparisons and the regression gate."""

    higher_is_better: bool | None  # None: descriptive only (never gated)
    floor: float = 0.0  # absolute change below which a move is never a regression
    description: str = ""


@dataclass(frozen=True)
class TaskSpec:
    """An evaluation of one trained SAE.

    run(ctx: TaskContext) -> dict[metric name, float]. `metrics` maps metric names (or fnmatch
    patterns such as "probe_acc_k*") to MetricInfo; every metric a task returns must match one.
    supports(model: ModelHandle) -> None when the task can run on that model, else the reason;
    a task that declares `options` gets supports(model, options) when the user set any.
    plot(results: pandas.DataFrame, run_dir: Path) -> list[Path], optional task-specific plots.
    options: {name: help} the task accepts via `--task-option TASK.NAME=VALUE` (ctx.options).
    """

    name: str
    description: str
    run: Callable[["TaskContext"], Mapping[str, float]]
    metrics: Mapping[str, MetricInfo]
    supports: Callable[..., str | None] = lambda model, options=None: None
    plot: Callable[..., list] | None = None
    options: Mapping[str, str] = field(default_factory=dict)
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
    """A named model. load(device=, source=) -> ModelHandle; `source` is for "hf:<name or dir>"."""

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
    cache: dict  # shared by all cells of one (model, hook): reuse clean-model results here
    artifacts_dir: Path  # per-cell folder for a task's extra outputs (e.g. points for plots)
    method: str = ""
    knob: float = 0.0
    options: dict = field(default_factory=dict)  # this task's --task-option values (strings)
