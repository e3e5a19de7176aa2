"""saebench: a plugin-based benchmark suite for sparse autoencoders on language-model activations.

The public plugin API: `hookimpl` marks a plugin's hook implementations; the records it
registers are `MethodSpec`, `TaskSpec` (with `MetricInfo` per metric) and `ModelSpec`; a task's
`run` receives a `TaskContext` (its `model` a `ModelHandle`), and its `plot` a `RunDir` that it
asks for paths (`SaeKey` names one SAE of the run).
"""

from saebench.hookspecs import hookimpl
from saebench.rundir import RunDir, SaeKey
from saebench.specs import MethodSpec, MetricInfo, ModelHandle, ModelSpec, TaskContext, TaskSpec

__version__ = "0.1.0"

__all__ = [
    "MethodSpec",
    "MetricInfo",
    "ModelHandle",
    "ModelSpec",
    "RunDir",
    "SaeKey",
    "TaskContext",
    "TaskSpec",
    "__version__",
    "hookimpl",
]
