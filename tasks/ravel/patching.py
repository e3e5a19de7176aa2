"""Interchange interventions at the entity token, batched: many patches, few forward passes."""

from __future__ import annotations

import torch

from saebench.interventions import patched_final_logits


def base_logits(ctx, bases, clean_acts, new_acts):
    """Final logits [n, vocab] of the prompts `bases` with their activation at the intervention
    position replaced by new_acts; bases the patch leaves unchanged keep their clean logits
    without a forward (see saebench.interventions.patched_final_logits)."""
    return patched_final_logits(
        ctx.model.bridge,
        ctx.hook,
        [b["tokens"] for b in bases],
        [b["position"] for b in bases],
        new_acts,
        clean_acts,
        torch.stack([b["logits"] for b in bases]),
        device=ctx.device,
    )


@torch.no_grad()
def outcomes_many(ctx, jobs) -> list[torch.Tensor]:
    """For each (pairs, make_patch) job, a bool per pair: is the answer the expected one once
    the base prompt is patched at the intervention position? make_patch(base [n,d], source
    [n,d], pairs) -> new activations [n,d]. The patched prompts of every job go through the
    model together, so many small interventions cost few large forward passes."""
    bases, clean, new = [], [], []
    for pairs, make_patch in jobs:
        if not pairs:
            continue
        base = torch.stack([p[0]["act"] for p in pairs]).to(ctx.device)
        source = torch.stack([p[1]["act"] for p in pairs]).to(ctx.device)
        bases += [p[0] for p in pairs]
        clean.append(base)
        new.append(make_patch(base, source, pairs))
    if not bases:
        return [torch.zeros(0, dtype=torch.bool) for _ in jobs]
    logits = base_logits(ctx, bases, torch.cat(clean), torch.cat(new)).argmax(-1).cpu()
    answers = logits.split([len(pairs) for pairs, _ in jobs])
    return [
        answer == torch.tensor([p[2] for p in pairs], dtype=answer.dtype)
        for (pairs, _), answer in zip(jobs, answers)
    ]


def score_many(ctx, jobs) -> list[float]:
    """For each (pairs, make_patch) job, the share of pairs whose patched answer is the
    expected one (see outcomes_many; NaN for a job without pairs)."""
    return [hits.double().mean().item() for hits in outcomes_many(ctx, jobs)]


def score_pairs(ctx, pairs, make_patch):
    """Share of pairs whose patched answer is the expected one."""
    return score_many(ctx, [(pairs, make_patch)])[0]


def disentangle_many(ctx, pairs, attribute, patches) -> list[tuple[float, float, float]]:
    """(cause, isolate, disentangle) of each patch, all scored in one batched call."""
    kinds = ("cause", "isolate")
    scores = score_many(
        ctx, [(pairs[(attribute, kind)], patch) for patch in patches for kind in kinds]
    )
    return [
        (cause, isolate, (cause + isolate) / 2)
        for cause, isolate in zip(scores[0::2], scores[1::2])
    ]


def disentangle(ctx, pairs, attribute, make_patch):
    return disentangle_many(ctx, pairs, attribute, [make_patch])[0]


def whole_swap(base, source, pairs):
    """The control patch: the source's whole activation."""
    return source
