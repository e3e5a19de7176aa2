"""Executors run a plan's units of work (train an SAE group, evaluate a cell) somewhere.

`local` runs them in this process, in plan order. `ray` runs them as Ray tasks on a local Ray or
a cluster, with declared resources. Both report every finished cell to the driver, which writes
it through `RunDir`: the executors never write cell files themselves.
"""

from __future__ import annotations

from saebench.errors import ConfigError
from saebench.executors.base import Execution, Executor
from saebench.planner import DEFAULT_MAX_RETRIES, EXECUTORS


def get_executor(
    name: str,
    ray_address: str | None = None,
    workers: int | None = None,
    max_retries: int | None = None,
    device: str = "cpu",
) -> Executor:
    if name == "local":
        from saebench.executors.local import LocalExecutor

        return LocalExecutor()
    if name == "ray":
        from saebench.executors.ray_executor import RayExecutor

        retries = DEFAULT_MAX_RETRIES if max_retries is None else max_retries
        return RayExecutor(address=ray_address, workers=workers, max_retries=retries, device=device)
    raise ConfigError(f"unknown executor {name!r}; choose from {', '.join(EXECUTORS)}")


__all__ = ["Execution", "Executor", "get_executor"]
