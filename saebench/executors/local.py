"""The in-process executor: each training group in one pass, then the cells of its SAEs."""

from __future__ import annotations

from saebench.executors.base import Execution
from saebench.work import evaluate_cell, train_group


class LocalExecutor:
    name = "local"

    def cell_threads(self) -> int:
        import torch

        return torch.get_num_threads()  # in this process, as the driver has it

    def execute(self, execution: Execution) -> None:
        plan, state, spec = execution.plan, execution.driver_state, execution.worker
        for group in plan.groups:
            keys = [key for key in group.saes if execution.pending.get(key)]
            if not keys:
                continue
            dirs = {key: plan.run_dir.sae_dir(key) for key in keys}
            for key, (sae, outcome) in zip(keys, train_group(spec, state, keys, dirs)):
                execution.echo(f"  {outcome.message}")
                tasks = execution.pending[key]
                if sae is None:
                    execution.fail(key, tasks, outcome.reason or outcome.message, outcome.status)
                    continue
                for task in tasks:
                    artifacts = plan.run_dir.artifacts_dir(key, task)
                    execution.record(evaluate_cell(spec, state, key, task, sae, artifacts))
