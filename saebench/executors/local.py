"""The in-process executor: SAEs one after another, each SAE's cells right after it trains."""

from __future__ import annotations

from saebench.executors.base import Execution
from saebench.work import evaluate_cell, train_one


class LocalExecutor:
    name = "local"

    def execute(self, execution: Execution) -> None:
        plan, state, spec = execution.plan, execution.driver_state, execution.worker
        for group in plan.groups:
            for key in group.saes:
                tasks = execution.pending.get(key)
                if not tasks:
                    continue
                sae, outcome = train_one(spec, state, key, plan.run_dir.sae_dir(key))
                execution.echo(f"  {outcome.message}")
                if sae is None:
                    execution.fail(key, tasks, outcome.reason or outcome.message, outcome.status)
                    continue
                for task in tasks:
                    artifacts = plan.run_dir.artifacts_dir(key, task)
                    execution.record(evaluate_cell(spec, state, key, task, sae, artifacts))
