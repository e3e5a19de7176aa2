"""The prompts and activations `circular` scores, and their train / held-out halves.

Everything here is SAE-independent and computed once per (model, hook, preset) through
`ctx.once`, so the validity references and every cell read the same points and splits.
"""

from __future__ import annotations

import numpy as np
import torch

from saebench.interventions import run_patched, tokenize
from saebench.probing import example_activations, split_indices

N_EXAMPLES = {"smoke": 210, "default": 700, "full": 2000}
DATA_SEED = 31
ROTATION_PROMPTS = {"smoke": 150, "default": 400, "full": 1000}
# Fixed, not the SAE's seed: every cell and the raw references share the same halves.
SPLIT_SEED = DATA_SEED + 2
TRAIN_FRACTION = 0.5


def halves(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices of n items: the pick (latents, cluster, plane, centroids) is made
    on train, the score on held-out."""
    train, test = split_indices(n, SPLIT_SEED, TRAIN_FRACTION)
    return np.sort(train), np.sort(test)


def concept_points(ctx):
    """{kind: (activations at the value word [n, d], values [n], period)}: once per run."""
    return ctx.once(("concept_points", ctx.preset), lambda: _concept_points(ctx))


def _concept_points(ctx):
    from saebench.toyworld.world import DAYS, MONTHS

    n = N_EXAMPLES.get(ctx.preset, 700)
    examples = ctx.model.world.generate("calendar", 4 * n, seed=DATA_SEED)
    points = {}
    for kind, names in (("day", DAYS), ("month", MONTHS)):
        chosen = [e for e in examples if e.labels["kind"] == kind][:n]
        acts = example_activations(
            ctx.model.bridge, ctx.model.tokenizer, ctx.hook, [e.text for e in chosen], ctx.device
        )
        rows = torch.stack(
            [a[e.text.split().index(names[e.labels["start"]])] for a, e in zip(acts, chosen)]
        )
        points[kind] = (rows, np.array([e.labels["start"] for e in chosen]), len(names))
    return points


def arithmetic_prompts(ctx):
    """{kind: (token lists, clean last-position activations [n, d], answers [n], period,
    answer-word token ids [period])} for trained "N days from X is" prompts; once per run."""
    return ctx.once(("rotation_prompts", ctx.preset), lambda: _arithmetic_prompts(ctx))


def _arithmetic_prompts(ctx):
    from saebench.toyworld.world import DAYS, MONTHS, answer_token_id

    n = ROTATION_PROMPTS.get(ctx.preset, 400)
    examples = [
        e
        for e in ctx.model.world.generate("calendar", 6 * n, seed=DATA_SEED + 1)
        if not e.labels["mention"]
    ]
    prompts = {}
    for kind, names in (("day", DAYS), ("month", MONTHS)):
        chosen = [e for e in examples if e.labels["kind"] == kind][:n]
        tokens = tokenize(ctx.model.bridge, [e.prompt for e in chosen])
        positions = [len(t) - 1 for t in tokens]
        acts, _ = run_patched(ctx.model.bridge, ctx.hook, tokens, positions, device=ctx.device)
        answer_ids = torch.tensor([answer_token_id(ctx.model.tokenizer, v) for v in names])
        prompts[kind] = (
            tokens,
            acts.float().cpu(),
            np.array([e.labels["answer"] for e in chosen]),
            len(names),
            answer_ids,
        )
    return prompts
