"""Reproduce the shipped toy-world checkpoint: `saebench world train` calls train_and_save.

Two stages. Stage 0 trains a fresh model on the core world (day offsets 1..6). Stage 1
("calendar") trains it further on a calendar-heavy mix with day offsets up to eleven, lists of
consecutive days/months and strong weight decay: the pressure that turns the memorised
(start, offset) table into arithmetic that covers held-out pairs (docs/toyworld.md).
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import torch

from saebench.toyworld.model import (
    CALENDAR_STAGE,
    CHECKPOINT_DIR,
    TRAIN_DEFAULTS,
    save_checkpoint,
    train_model,
)


def train_and_save(
    out: Path = CHECKPOINT_DIR,
    evaluate: bool = True,
    log=print,
    calendar_steps: int | None = None,
    **overrides,
):
    from saebench.toyworld.evaluate import training_probe
    from saebench.toyworld.tokenizer import build_tokenizer
    from saebench.toyworld.world import CORE_MAX_DAY_OFFSET, World

    settings = dict(TRAIN_DEFAULTS, **overrides)
    calendar = CALENDAR_STAGE.copy()
    if calendar_steps is not None:
        calendar["steps"] = calendar_steps
    world = World(seed=0, max_day_offset=CORE_MAX_DAY_OFFSET)
    out = Path(out)
    tokenizer_dir = out.parent / f".{out.name}.tokenizer"
    tokenizer = build_tokenizer(world.vocabulary, tokenizer_dir)

    start = time.time()
    log("stage 0: core world")
    bridge, history = train_model(
        world, tokenizer, log=log, probe=lambda b: training_probe(b, tokenizer, world), **settings
    )
    stages = [
        {
            "name": "core",
            "settings": settings,
            "seconds": round(time.time() - start, 1),
            "history": history,
        }
    ]
    if calendar["steps"] > 0:
        stage_start = time.time()
        log("stage 1: calendar")
        world = World(seed=0, max_day_offset=calendar["max_day_offset"])
        bridge, calendar_history = train_model(
            world,
            tokenizer,
            log=log,
            probe=lambda b: training_probe(b, tokenizer, world),
            probe_every=500,
            bridge=bridge,
            stage=1,
            mix=calendar["mix"],
            steps=calendar["steps"],
            lr=calendar["lr"],
            weight_decay=calendar["weight_decay"],
            warmup=calendar["warmup"],
            batch_size=settings["batch_size"],
            seed=settings["seed"],
        )
        stages.append(
            {
                "name": "calendar",
                "settings": calendar,
                "seconds": round(time.time() - stage_start, 1),
                "history": calendar_history,
            }
        )
    seconds = time.time() - start
    options = dict(
        overrides, **({} if calendar_steps is None else {"calendar_steps": calendar_steps})
    )
    record = {
        "command": "saebench world train "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in options.items()),
        "settings": settings,
        "train_seconds": round(seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "history": history,
        "stages": stages,
        "max_day_offset": world.max_day_offset,
    }
    if evaluate:
        from saebench.toyworld.evaluate import behaviour_report

        record["metrics"] = behaviour_report(bridge, tokenizer, world)
    save_checkpoint(bridge, tokenizer, out, record)
    return record
