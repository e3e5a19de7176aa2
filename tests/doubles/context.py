"""The two objects every task test builds: a TaskContext and a fake-world ModelHandle.

One builder each, so a field added to TaskContext or ModelHandle is set in one place and every
test keeps constructing a valid record.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from saebench import TaskContext
from saebench.specs import ModelHandle


def task_context(
    model: Any = None,
    *,
    hook: str | None = None,
    sae: Any = None,
    eval_acts: Any = None,
    cache: dict | None = None,
    artifacts_dir: Path | None = Path("."),
    task: str = "",
    **fields: Any,
) -> TaskContext:
    """A smoke-preset, seed-0, CPU context; `hook` defaults to the model's default hook."""
    if hook is None:
        hook = model.default_hook if model is not None else ""
    return TaskContext(
        model=model,
        hook=hook,
        sae=sae,
        eval_acts=eval_acts,
        eval_tokens=fields.pop("eval_tokens", None),
        eval_mask=fields.pop("eval_mask", None),
        device=fields.pop("device", "cpu"),
        preset=fields.pop("preset", "smoke"),
        seed=fields.pop("seed", 0),
        cache={} if cache is None else cache,
        artifacts_dir=artifacts_dir,
        task=task,
        **fields,
    )


@functools.cache
def _v1_world_and_tokenizer():
    from saebench.toyworld import load_world
    from saebench.toyworld.model import CHECKPOINT_DIR
    from saebench.toyworld.tokenizer import load_tokenizer

    return load_world(), load_tokenizer(CHECKPOINT_DIR / "tokenizer")


def fake_world_handle(bridge_class: type | None = None, name: str = "fake") -> ModelHandle:
    """The v1 toy world and tokenizer behind a FakeWorldBridge (or a subclass of it)."""
    from doubles.fake_world import HOOK, FakeWorldBridge

    world, tokenizer = _v1_world_and_tokenizer()
    return ModelHandle(
        name=name,
        bridge=(bridge_class or FakeWorldBridge)(world, tokenizer),
        tokenizer=tokenizer,
        default_hook=HOOK,
        context_size=32,
        corpus=lambda *a: [],
        world=world,
    )
