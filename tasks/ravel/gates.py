"""The validity gates: the whole entity-token activation must move each attribute's answer."""

from __future__ import annotations

import torch

from saebench.specs import Validity
from saebench.stats import bootstrap_interval
from saebench_tasks.ravel.config import CONFIDENCE, GATE_MARGIN, MIN_PAIRS
from saebench_tasks.ravel.data import site


def gate(name, hits, chance, description, governs=()) -> Validity:
    """The Validity of per-pair outcomes `hits` (bool [n]): their mean with the lower end of a
    95% percentile bootstrap over pairs. Fewer than MIN_PAIRS pairs: closed (lower end 0)."""
    if len(hits) < MIN_PAIRS:
        description = f"only {len(hits)} usable pairs (need {MIN_PAIRS}), closed; {description}"
        reference, low = (hits.double().mean().item() if len(hits) else 0.0), 0.0
    else:
        interval = bootstrap_interval(hits.double().numpy(), confidence=CONFIDENCE)
        reference, low = interval.mean, interval.low
    return Validity(name, reference, low, chance, GATE_MARGIN, description, tuple(governs))


def validity(ctx) -> list[Validity]:
    """The task's references (never touches ctx.sae): the whole-activation swap at the last
    entity token must move each attribute's answer to the source's value beyond chance. The
    first check governs the task; one per attribute governs that attribute and the averages."""
    found = site(ctx)
    attributes = found["attributes"]
    chances = {a: max(found["unpatched"][a], 1 / found["n_values"][a]) for a in attributes}
    prompts = found["train_prompts"] + found["test_prompts"]
    known = sum(p["correct"] for p in prompts)

    def level(a):
        return f"{a} max({found['unpatched'][a]:.2g} unpatched, 1/{found['n_values'][a]})"

    described = (
        f"whole activation at {ctx.hook}, last entity token, swapped from a city with another "
        f"value: share of {sum(len(found['swapped'][a]) for a in attributes)} cause pairs whose "
        f"answer becomes the source's value (the model answers {known}/{len(prompts)} fact "
        f"prompts); chance: {', '.join(level(a) for a in attributes)}"
    )

    averages = ("ravel_cause", "ravel_isolate", "ravel_disentangle", "ravel_random_set_disentangle")
    pooled = torch.cat([found["swapped"][a] for a in attributes])
    # The pooled chance weights attributes by their pairs, as the pooled reference does.
    weights = [len(found["swapped"][a]) or 1 for a in attributes]
    chance = sum(w * chances[a] for w, a in zip(weights, attributes)) / sum(weights)
    checks = [gate("ravel_entity_swap_cause", pooled, chance, described)]
    for a in attributes:
        checks.append(
            gate(
                f"ravel_entity_swap_cause_{a}",
                found["swapped"][a],
                chances[a],
                f"the same, {a} only: {len(found['swapped'][a])} pairs; chance {level(a)}",
                governs=(f"ravel_*_{a}", *averages),
            )
        )
    return checks
