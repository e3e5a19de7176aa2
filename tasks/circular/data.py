"""The prompts and activations `circular` scores, and their train / held-out halves.

Everything is read at the operand token of "N days from X is" prompts (the X), where Engels et
al. intervene and where, on a model whose hook carries it (toy world v2's site check), patching
moves the answer. Everything here is SAE-independent and computed once per (model, hook, preset)
through `ctx.once`, so the validity references and every cell read the same points and splits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from saebench.interventions import run_patched, tokenize, word_position
from saebench.probing import split_indices

DATA_SEED = 31
ROTATION_PROMPTS = {"smoke": 150, "default": 400, "full": 1000}
# Fixed, not the SAE's seed: every cell and the raw references share the same halves.
SPLIT_SEED = DATA_SEED + 2
TRAIN_FRACTION = 0.5


@dataclass(frozen=True)
class OperandPrompts:
    """Arithmetic prompts of one kind, read at the operand token."""

    tokens: list[torch.Tensor]
    positions: list[int]  # index of the operand token (its last occurrence) in each prompt
    acts: torch.Tensor  # [n, d] clean activations at the operand token, float32, CPU
    starts: np.ndarray  # operand value per prompt
    offsets: np.ndarray
    answers: np.ndarray  # (start + offset) % period
    period: int
    answer_ids: torch.Tensor  # [period] token id of each value word


def halves(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices of n items: the pick (latents, plane, centroids) is made on
    train, the score on held-out."""
    train, test = split_indices(n, SPLIT_SEED, TRAIN_FRACTION)
    return np.sort(train), np.sort(test)


def arithmetic_prompts(ctx) -> dict[str, OperandPrompts]:
    """{kind: OperandPrompts} for trained-split arithmetic prompts; once per run."""
    return ctx.once(("operand_prompts", ctx.preset, ctx.hook), lambda: _arithmetic_prompts(ctx))


def _arithmetic_prompts(ctx):
    from saebench.toyworld.world import DAYS, MONTHS, answer_token_id, operand_word

    n = ROTATION_PROMPTS.get(ctx.preset, 400)
    examples = [
        e
        for e in ctx.model.world.generate("calendar", 6 * n, seed=DATA_SEED + 1)
        if not e.labels["mention"]
    ]
    bridge = ctx.model.bridge
    prompts = {}
    for kind, names in (("day", DAYS), ("month", MONTHS)):
        chosen = [e for e in examples if e.labels["kind"] == kind][:n]
        tokens = tokenize(bridge, [e.prompt for e in chosen])
        positions = [word_position(bridge, e.prompt, operand_word(e)) for e in chosen]
        acts, _ = run_patched(bridge, ctx.hook, tokens, positions, device=ctx.device)
        prompts[kind] = OperandPrompts(
            tokens=tokens,
            positions=positions,
            acts=acts.float().cpu(),
            starts=np.array([e.labels["start"] for e in chosen]),
            offsets=np.array([e.labels["offset"] for e in chosen]),
            answers=np.array([e.labels["answer"] for e in chosen]),
            period=len(names),
            answer_ids=torch.tensor([answer_token_id(ctx.model.tokenizer, v) for v in names]),
        )
    return prompts


def concept_points(ctx) -> dict[str, tuple[torch.Tensor, np.ndarray, int]]:
    """{kind: (operand-token activations [n, d], operand values [n], period)}."""
    return {kind: (p.acts, p.starts, p.period) for kind, p in arithmetic_prompts(ctx).items()}
