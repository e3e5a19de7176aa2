"""Latent selection for one attribute by a learned binary mask (SAEBench's MDBM).

One mask logit m_j per latent, 0 at the start. During training the mask is σ(m / T), the
temperature T annealed log-linearly from 1 to 1e-4; the patched activation of a base prompt at
the entity token is h_b + ((z_s − z_b) ⊙ mask) W_dec (the error term kept, see the package
docstring), and the loss is the cross-entropy of the patched final logits against the expected
answer: the source's value on cause pairs, the base's own answer on isolate pairs. Only m is
trained (Adam), on the training-template pairs; at test the mask is hard, m > 0.

A latent that neither pair of any batch activates has z_s − z_b = 0, no gradient, and stays
out of the mask (m = 0 is not > 0).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict

import torch

from saebench_tasks.ravel import config


def temperatures(steps: int) -> list[float]:
    """Log-linear schedule from MDBM_TEMPERATURES[0] to [1] over `steps` steps."""
    first, last = (math.log10(t) for t in config.MDBM_TEMPERATURES)
    if steps == 1:
        return [10**first]
    return [10 ** (first + (last - first) * i / (steps - 1)) for i in range(steps)]


def batches(pairs, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """`steps` batches of pair indices, each from one base-prompt length (so they stack without
    padding), cycling over shuffled epochs."""
    rng = random.Random(seed)
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, pair in enumerate(pairs):
        by_length[len(pair[0]["tokens"])].append(index)
    out: list[list[int]] = []
    while len(out) < steps:
        epoch = []
        for members in by_length.values():
            members = members[:]
            rng.shuffle(members)
            epoch += [members[i : i + batch_size] for i in range(0, len(members), batch_size)]
        rng.shuffle(epoch)
        out += epoch
    return out[:steps]


def patched_logits(ctx, tokens, positions, new_acts):
    """Final-position logits with the activations at `positions` replaced by `new_acts`,
    differentiable in new_acts (the model's own weights get no gradient: see train_mask)."""
    rows = torch.arange(tokens.shape[0], device=tokens.device)

    def hook_fn(activation, hook=None):
        patched = activation.clone()
        patched[rows, positions] = new_acts.to(activation.dtype)
        return patched

    logits = ctx.model.bridge.run_with_hooks(
        tokens, fwd_hooks=[(ctx.hook, hook_fn)], return_type="logits"
    )
    return logits[:, -1]


def train_mask(ctx, sae, pairs, seed: int) -> torch.Tensor:
    """The trained mask logits m [d_sae] (CPU) on `pairs` (cause and isolate pairs of one
    attribute, as (base, source, expected answer id, other answer id)); SAEBench's hard mask
    is m > 0 (see `budgeted` for the one the task scores)."""
    device = ctx.device
    with torch.no_grad():
        base = torch.stack([p[0]["act"] for p in pairs]).to(device)
        source = torch.stack([p[1]["act"] for p in pairs]).to(device)
        delta = (sae.encode(source) - sae.encode(base)).float()
        decoder = sae.W_dec.detach().float()
    expected = torch.tensor([p[2] for p in pairs], device=device)
    epochs_steps = math.ceil(config.MDBM_EPOCHS * len(pairs) / config.MDBM_BATCH)
    steps = max(epochs_steps, config.MDBM_MIN_STEPS.get(ctx.preset, 200))
    logits_mask = torch.zeros(delta.shape[1], device=device, requires_grad=True)
    optimizer = torch.optim.Adam([logits_mask], lr=config.MDBM_LR)
    for indices, temperature in zip(
        batches(pairs, config.MDBM_BATCH, steps, seed), temperatures(steps)
    ):
        index = torch.tensor(indices, device=device)
        tokens = torch.stack([pairs[i][0]["tokens"] for i in indices]).to(device)
        positions = torch.tensor([pairs[i][0]["position"] for i in indices], device=device)
        with torch.enable_grad():  # run() is under no_grad
            mask = torch.sigmoid(logits_mask / temperature)
            new = base[index].float() + (delta[index] * mask) @ decoder
            loss = torch.nn.functional.cross_entropy(
                patched_logits(ctx, tokens, positions, new).float(), expected[index]
            )
            # Only the mask: the model's and the SAE's parameters accumulate nothing.
            (gradient,) = torch.autograd.grad(loss, [logits_mask])
        optimizer.zero_grad()
        logits_mask.grad = gradient
        optimizer.step()
    return logits_mask.detach().cpu()


def budgeted(mask_logits: torch.Tensor, budget: int) -> torch.Tensor:
    """Indices of the hard mask (m > 0) cut to its `budget` largest logits, in descending order.

    Without a budget the mask has no sparsity pressure: on a wide random dictionary it learns
    the attribute's subspace from hundreds of latents (a DAS-like rotation, not a dictionary
    feature) and scores like a planted one (issue 15 review: random 8× at 1000 steps 0.976 vs
    planted 1.00). A dictionary that has disentangled the attribute needs about one latent per
    value, so the task scores the mask cut to the attribute's number of values."""
    positive = torch.nonzero(mask_logits > 0).flatten()
    order = positive[mask_logits[positive].argsort(descending=True)]
    return order[:budget]
