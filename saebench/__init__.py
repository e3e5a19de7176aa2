"""saebench: a plugin-based benchmark suite for sparse autoencoders on language-model activations.

The public plugin API: `hookimpl` marks a plugin's hook implementations; the records it
registers are `MethodSpec`, `TaskSpec` (with `MetricInfo` per metric) and `ModelSpec`.
"""

from saebench.hookspecs import hookimpl
from saebench.specs import MethodSpec, MetricInfo, ModelSpec, TaskSpec

__version__ = "0.1.0"

__all__ = ["MethodSpec", "MetricInfo", "ModelSpec", "TaskSpec", "__version__", "hookimpl"]
