"""Tasks that misbehave the way a Ray worker can: die once, die always, report their threads,
or take a known time.

Registered by hand in the test process and through SAEBENCH_PLUGIN_MODULES in Ray workers (the
workers are other processes: they must import it by name).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from saebench import MetricInfo, TaskSpec, hookimpl


def _die_once(ctx):
    # The marker lives outside the worker, so the retry (a new worker) sees the first attempt.
    marker = Path(ctx.options["marker"])
    if not marker.exists():
        marker.write_text("the first attempt died here\n")
        os._exit(1)
    return {"attempts_survived": 1.0}


def _die_always(ctx):
    os._exit(1)


def _threads(ctx):
    return {"torch_threads": float(torch.get_num_threads())}


def _slow(ctx):
    # A cell that takes a known time, so an interrupt can land mid-run on any machine.
    time.sleep(float(ctx.options.get("seconds", "1")))
    return {"slept": 1.0}


@hookimpl
def register_tasks(register):
    register(
        TaskSpec(
            name="dies_once",
            description="kills its worker on the first attempt",
            run=_die_once,
            metrics={"attempts_survived": MetricInfo(None)},
            options={"marker": "file that records the first attempt"},
        )
    )
    register(
        TaskSpec(
            name="dies_always",
            description="kills its worker every time",
            run=_die_always,
            metrics={},
        )
    )
    register(
        TaskSpec(
            name="slow_cell",
            description="sleeps, then reports",
            run=_slow,
            metrics={"slept": MetricInfo(None)},
            options={"seconds": "how long each cell sleeps (default 1)"},
        )
    )
    register(
        TaskSpec(
            name="torch_threads",
            description="reports torch's thread count in the worker",
            run=_threads,
            metrics={"torch_threads": MetricInfo(None)},
        )
    )
