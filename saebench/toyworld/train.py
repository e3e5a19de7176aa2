"""Reproduce the shipped toy-world checkpoint: `saebench world train` calls train_and_save.

Version 1 (the shipped default): two stages. Stage 0 trains a fresh model on the core world (day offsets 1..6). Stage 1
("calendar") trains it further on a calendar-heavy mix with day offsets up to eleven, lists of
consecutive days/months and strong weight decay: the pressure that turns the memorised
(start, offset) table into arithmetic that covers held-out pairs (docs/toyworld.md).
Version 2 (`--version 2`, train_and_save_v2): the same two-stage shape on toy world v2.
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
    MODEL_CONFIG_LOCAL_LAYER0,
    MODEL_CONFIG_V2,
    TRAIN_DEFAULTS,
    TRAIN_V2_DEFAULTS,
    V2_CALENDAR_STAGE,
    V2_DEFAULT_HOOK,
    default_hook_of,
    default_hook_rule,
    save_checkpoint,
    train_model,
    v2_calendar_decay,
)

# The hooks whose site checks the v2 training probe and record report.
V2_SITE_HOOKS = ("blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre", "blocks.3.hook_resid_pre")


def provenance() -> dict:
    """Where a checkpoint was trained: its record's machine and library fields."""
    return {
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }


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
        **provenance(),
        "history": history,
        "stages": stages,
        "max_day_offset": world.max_day_offset,
    }
    if evaluate:
        from saebench.toyworld.evaluate import behaviour_report

        record["metrics"] = behaviour_report(bridge, tokenizer, world)
    save_checkpoint(bridge, tokenizer, out, record)
    return record


def v2_probe(tokenizer, world, hooks=V2_SITE_HOOKS):
    """The v1 training probe plus the site checks at each of `hooks` (150 pairs each)."""
    from saebench.toyworld.evaluate import training_probe
    from saebench.toyworld.sites import all_checks

    def probe(bridge):
        report = training_probe(bridge, tokenizer, world)
        for hook in hooks:
            layer = hook.split(".")[1]
            checks = all_checks(bridge, tokenizer, world, hook, n_pairs=150)
            report |= {f"{c.name}@{layer}": round(c.value, 3) for c in checks}
        return report

    return probe


def train_and_save_v2(
    out: Path,
    evaluate: bool = True,
    log=print,
    calendar_steps: int | None = None,
    world_version: int = 2,
    local_layer0: bool = False,
    **overrides,
):
    """Toy world v2 (issue 15), two stages: a 4-layer model trained on WorldV2's mix, then the
    v2 calendar stage (V2_CALENDAR_STAGE: strong weight decay past layer 0 only, layer 0's
    attention frozen). The record carries world_version 2 (so `--model toyworld:DIR` builds
    WorldV2), the default hook and the site checks at V2_SITE_HOOKS. `world_version=3` trains
    the same recipe on the v3 candidate world (saebench.toyworld.world_v3), 4 on v4
    (world_v4); `local_layer0` limits layer 0's attention to each token itself, the previous
    token and BOS (MODEL_CONFIG_LOCAL_LAYER0)."""
    from saebench.toyworld import world_class
    from saebench.toyworld.tokenizer import build_tokenizer

    settings = dict(TRAIN_V2_DEFAULTS, **overrides)
    calendar = V2_CALENDAR_STAGE.copy()
    if calendar_steps is not None:
        calendar["steps"] = calendar_steps
    world = world_class(world_version)(seed=0)
    model_config = MODEL_CONFIG_LOCAL_LAYER0 if local_layer0 else MODEL_CONFIG_V2
    out = Path(out)
    tokenizer = build_tokenizer(world.vocabulary, out.parent / f".{out.name}.tokenizer")
    start = time.time()
    log(f"stage 0: toy world v{world_version}")
    bridge, history = train_model(
        world,
        tokenizer,
        log=log,
        probe=v2_probe(tokenizer, world),
        model_config=model_config,
        mix=world.MIX,
        **settings,
    )
    stages = [
        {
            "name": "v2",
            "settings": settings,
            "seconds": round(time.time() - start, 1),
            "history": history,
        }
    ]
    if calendar["steps"] > 0:
        stage_start = time.time()
        log("stage 1: calendar (weight decay past layer 0)")
        bridge, calendar_history = train_model(
            world,
            tokenizer,
            log=log,
            probe=v2_probe(tokenizer, world),
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
            decay_of=v2_calendar_decay(calendar),
        )
        for parameter in bridge.original_model.parameters():
            parameter.requires_grad_(True)  # the frozen ones too, for whoever trains it next
        stages.append(
            {
                "name": "calendar",
                "settings": calendar,
                "seconds": round(time.time() - stage_start, 1),
                "history": calendar_history,
            }
        )
    options = dict(
        overrides, **({} if calendar_steps is None else {"calendar_steps": calendar_steps})
    )
    command = [f"saebench world train --version {world_version}"]
    command += [f"--{k.replace('_', '-')} {v}" for k, v in options.items()]
    command += [f"--out {out}"] + (["--local-layer0"] if local_layer0 else [])
    record = {
        "command": " ".join(command),
        "world_version": world_version,
        "default_hook": V2_DEFAULT_HOOK,
        "settings": settings,
        "model_config": model_config,
        "train_seconds": round(time.time() - start, 1),
        **provenance(),
        "history": history,
        "stages": stages,
        "max_day_offset": world.max_day_offset,
    }
    if evaluate:
        record |= v2_evaluation(bridge, tokenizer, world)
        checks, attributes = record["site_checks"], world.attributes
        record["default_hook"] = default_hook_of(world_version, checks, attributes)
    record["default_hook_rule"] = default_hook_rule(
        world_version, record.get("site_checks"), world.attributes
    )
    log(f"default hook {record['default_hook_rule']}")
    save_checkpoint(bridge, tokenizer, out, record)
    return record


def v2_evaluation(bridge, tokenizer, world) -> dict:
    """The record's "metrics" (behaviour report) and "site_checks" at every V2_SITE_HOOKS."""
    from saebench.toyworld.evaluate import behaviour_report
    from saebench.toyworld.sites import site_checks

    # The site checks once per hook below, not again at the default hook inside the report.
    return {
        "metrics": behaviour_report(bridge, tokenizer, world, sites=False),
        "site_checks": {
            hook: site_checks(bridge, tokenizer, world, hook) for hook in V2_SITE_HOOKS
        },
    }
