"""`saebench audit RUN_DIR`: the reliability lenses of saebench.audit on a finished run.

Lenses (a) and (c) read the run's results. Lens (b) retrains one SAE of the run (a learned
method at its middle knob, seed 0, the run's exact training config) keeping copies at fractions
of its budget, and runs every task of the run on each copy. Writes RUN_DIR/audit.json and
RUN_DIR/audit.md; results.md is rewritten to mark the unreliable metrics. A built-in plugin:
registered through the register_commands hook.
"""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from saebench.hookspecs import hookimpl


def train_config_of(config: dict[str, Any]):
    """The TrainConfig a run recorded (its `train.*` fields)."""
    from saebench.training import TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    values: dict[str, Any] = {
        key.removeprefix("train."): tuple(value) if isinstance(value, list) else value
        for key, value in config.items()
        if key.startswith("train.") and key.removeprefix("train.") in names
    }
    return TrainConfig(**values, progress=False)


def trajectory_scores(
    run_dir, method: str, knob: float, fractions, device: str, cache_dir: str | None, echo
) -> dict[float, dict[str, float]]:
    """Lens (b)'s inputs: every task's metrics on one SAE at `fractions` of its budget."""
    import torch

    from saebench import plugins
    from saebench.harvest import harvest
    from saebench.models import resolve_device, resolve_model
    from saebench.rundir import SaeKey
    from saebench.training import train_group
    from saebench.work import WorkerSpec, WorkerState, evaluate_cell

    config = run_dir.read_run_json()["config"]
    device_ = resolve_device(device)
    model_argument = config.get("model_argument") or config["model"]
    model = resolve_model(model_argument, device_, config.get("dataset"))
    store = harvest(
        model,
        config["hook"],
        config["n_train_tokens"],
        config["n_eval_tokens"],
        seed=0,
        cache_dir=Path(cache_dir) if cache_dir else None,
        device=device_,
        dataset=config.get("dataset"),
        echo=echo,
    )
    spec = plugins.get_method(method)
    cfg = train_config_of(config)
    torch.manual_seed(0)
    (member,) = train_group(spec, [(knob, 0)], store, cfg, device_, snapshots=fractions)
    if member.error is not None:
        raise click.ClickException(f"audit: training {method} {knob} failed: {member.error}")
    tasks = plugins.get_tasks()
    run_tasks = {name: tasks[name] for name in config["tasks"] if name in tasks}
    worker = WorkerSpec(
        model=model_argument,
        dataset=config.get("dataset"),
        hook=config["hook"],
        device=str(device_),
        store_dir=str(store.directory),
        preset=config["preset"],
        train_config=cfg,
        task_options=dict(config.get("task_options") or {}),
    )
    state = WorkerState(
        model=model,
        store=store,
        methods=plugins.get_methods(),
        tasks=run_tasks,
        device=device_,
    )
    scores: dict[float, dict[str, float]] = {}
    for fraction, sae in sorted(member.snapshots.items()):
        scores[fraction] = {}
        for task in run_tasks:
            artifacts = run_dir.root / "audit" / f"trajectory_{fraction:g}" / task
            outcome = evaluate_cell(worker, state, SaeKey(method, knob, 0), task, sae, artifacts)
            if outcome.cell.ok:
                scores[fraction].update(outcome.cell.metrics)
            else:
                echo(f"  audit: {task} at {fraction:.0%}: {outcome.cell.status}")
        echo(f"  audit: scored {method} {knob:g} at {fraction:.0%} of its budget")
    return scores


def middle_learned_config(frame, calibration: set[str]) -> tuple[str, float] | None:
    """The learned method whose L0 moves least with the seed (a fixed-L0 method such as TopK,
    so movement along training is not a change of sparsity), at its middle knob."""
    from saebench.specs import L0

    learned = [m for m in dict.fromkeys(frame.method) if m not in calibration]
    if not learned:
        return None
    l0 = frame[frame.metric == L0]

    def l0_spread(method: str) -> float:
        per_knob = l0[l0.method == method].groupby("knob")["value"]
        spread = (per_knob.std() / per_knob.mean().abs().clip(lower=1e-12)).fillna(0.0)
        return float(spread.mean()) if len(spread) else math.inf

    steadiest = min(learned, key=l0_spread)
    knobs = sorted(frame[frame.method == steadiest].knob.unique())
    return steadiest, float(knobs[len(knobs) // 2])


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--trajectory/--no-trajectory",
    default=True,
    show_default=True,
    help="Lens (b): retrain one SAE and score it along its training (costs one training and "
    "every task × each fraction).",
)
@click.option("--method", default=None, help="Lens (b)'s method (default: the run's first).")
@click.option("--knob", type=float, default=None, help="Lens (b)'s knob (default: the middle).")
@click.option(
    "--fractions",
    default="0.1,0.3,1",
    show_default=True,
    help="Fractions of the training budget scored by lens (b).",
)
@click.option("--device", default="cpu", show_default=True)
@click.option("--cache", "cache_dir", default=None, envvar="SAEBENCH_CACHE", type=click.Path())
def audit(run_dir, trajectory, method, knob, fractions, device, cache_dir):
    """Reliability of every headline metric of RUN_DIR: (a) reseed noise, (b) movement along a
    training trajectory, (c) agreement with ground truth. Writes audit.json and audit.md."""
    from saebench import plugins
    from saebench.audit import audit_markdown, audit_metrics
    from saebench.calibration import directional_metrics
    from saebench.fileio import write_json, write_text
    from saebench.results import load_results, rewrite_results
    from saebench.rundir import RunDir

    root = RunDir(run_dir)
    frame = load_results(root)
    tasks = plugins.get_tasks()
    methods = plugins.get_methods()
    calibration = {n for n, m in methods.items() if m.calibration}
    metrics = directional_metrics(frame, tasks)
    ground_truth = {
        metric: value
        for metric, value in metrics.items()
        if tasks[value[0]].metric_info(metric).ground_truth
    }
    scores = None
    chosen = None
    if trajectory:
        try:
            steps = tuple(sorted(float(f) for f in fractions.split(",")))
        except ValueError:
            raise click.BadParameter(
                f"{fractions!r}: give fractions like 0.1,0.3,1", param_hint="--fractions"
            ) from None
        chosen = middle_learned_config(frame, calibration)
        if method is not None:
            chosen = (method, knob if knob is not None else chosen[1] if chosen else math.nan)
        if chosen is None or math.isnan(chosen[1]):
            raise click.ClickException(
                "audit: no learned method in the run for lens (b); pass --method and --knob, "
                "or --no-trajectory"
            )
        scores = trajectory_scores(
            root, chosen[0], chosen[1], steps, device, cache_dir, echo=click.echo
        )
    # Lenses (a) and (c) read the learned methods only: the baselines' spread and their easy
    # agreement with ground truth would make any metric look reliable.
    learned = frame[~frame.method.isin(calibration)]
    audits = audit_metrics(learned, metrics, ground_truth, scores)
    write_json(
        root.audit_json,
        {
            "trajectory_sae": None if chosen is None else {"method": chosen[0], "knob": chosen[1]},
            "trajectory_scores": {str(k): v for k, v in (scores or {}).items()},
            "metrics": [a.to_json() for a in audits],
        },
    )
    text = audit_markdown(audits)
    write_text(root.root / "audit.md", "# saebench audit\n\n" + text)
    rewrite_results(root)
    click.echo(text)
    unreliable = [a.metric for a in audits if a.unreliable]
    click.echo(
        f"{len(unreliable)} of {len(audits)} metrics unreliable"
        + (f": {', '.join(unreliable)}" if unreliable else "")
        + f"; wrote {root.audit_json}"
    )


@hookimpl
def register_commands(cli):
    cli.add_command(audit)
