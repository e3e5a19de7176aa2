"""Reproduce the shipped toy-world checkpoint: `saebench world train` calls train_and_save."""
from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import torch

from saebench.toyworld.model import CHECKPOINT_DIR, TRAIN_DEFAULTS, save_checkpoint, train_model


def train_and_save(out: Path = CHECKPOINT_DIR, evaluate: bool = True, log=print, **overrides):
    from saebench.toyworld.tokenizer import build_tokenizer
    from saebench.toyworld.world import World

    settings = dict(TRAIN_DEFAULTS, **overrides)
    world = World(seed=0)
    out = Path(out)
    tokenizer_dir = out.parent / f".{out.name}.tokenizer"
    tokenizer = build_tokenizer(world.vocabulary, tokenizer_dir)
    from saebench.toyworld.evaluate import training_probe

    start = time.time()
    bridge, history = train_model(world, tokenizer, log=log,
                                  probe=lambda b: training_probe(b, tokenizer, world), **settings)
    seconds = time.time() - start
    record = {
        "command": "saebench world train " + " ".join(f"--{k.replace('_', '-')} {v}"
                                                      for k, v in overrides.items()),
        "settings": settings, "train_seconds": round(seconds, 1),
        "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
        "python": sys.version.split()[0], "torch": torch.__version__, "history": history,
    }
    if evaluate:
        from saebench.toyworld.evaluate import behaviour_report

        record["metrics"] = behaviour_report(bridge, tokenizer, world)
    save_checkpoint(bridge, tokenizer, out, record)
    return record
