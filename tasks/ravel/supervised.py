"""The supervised reference of `ravel`: can a dictionary that knows the attributes disentangle
them at this site?

The supervised dictionary has one direction per (attribute, value): the mean activation at the
last entity token of the training-template prompts whose city has that value, minus the mean
of all of them (as IOI's supervised dictionary). Its swap of attribute A moves the base by
u_{A, source value} − u_{A, base value}. If even that cannot change A without touching the
others (disentangle near the no-op's 0.5), the entity token carries the entity but not its
attributes as separable directions, and no SAE can be scored on disentangling them there: the
whole-entity swap alone (`gates`) cannot tell the two apart.
"""

from __future__ import annotations

import torch


def value_offsets(prompts, attribute: str) -> dict[str, torch.Tensor]:
    """{value: mean activation of its prompts − mean of all} at the entity token."""
    acts = torch.stack([p["act"] for p in prompts]).double()
    mean = acts.mean(0)
    values = [p["city"][attribute] for p in prompts]
    return {
        value: acts[torch.tensor([v == value for v in values])].mean(0) - mean
        for value in sorted(set(values))
    }


def supervised_patch(prompts, attribute: str):
    """patch(base, source, pairs) for patching.outcomes_many: the supervised swap of
    `attribute` (values never seen on train prompts move nothing)."""
    offsets = value_offsets(prompts, attribute)
    zero = torch.zeros_like(next(iter(offsets.values())))

    def patch(base, source, pairs):
        moves = [
            offsets.get(s["city"][attribute], zero) - offsets.get(b["city"][attribute], zero)
            for b, s, *_ in pairs
        ]
        return base + torch.stack(moves).to(base.device, base.dtype)

    return patch
