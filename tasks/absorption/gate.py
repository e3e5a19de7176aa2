"""Which hierarchy the task measures at a hook, and the validity gate on it (SAE-independent).

Every candidate hierarchy of the world (hierarchy.candidates, in order of preference) gets its
raw-activation probes at ctx.hook; the task measures the first candidate whose held-out probe
F1 passes the gate (95% lower end above probe.threshold), or the one named by
`--task-option absorption.hierarchy=NAME`. When none passes, the gate reports the candidate
with the highest lower end, and it fails: the cells are `uninformative`, never measured on
another hook or position.
"""

from __future__ import annotations

from dataclasses import dataclass

from saebench.errors import ConfigError, SaebenchError
from saebench.specs import Validity
from saebench_tasks.absorption import config
from saebench_tasks.absorption.hierarchy import candidates
from saebench_tasks.absorption.probe import (
    GroundTruth,
    concept_tokens,
    ground_truth,
    passes,
    threshold,
)


@dataclass(frozen=True)
class Choice:
    """The hierarchy the task measures, with every candidate's ground truth at the hook."""

    truth: GroundTruth  # the chosen hierarchy's
    considered: tuple[GroundTruth, ...]  # every candidate's, in order of preference
    forced: bool  # named by the hierarchy option


def _measure(ctx) -> tuple[GroundTruth, ...]:
    world = ctx.model.world
    n_texts = config.N_TEXTS.get(ctx.preset, config.N_TEXTS["default"])
    return tuple(ground_truth(concept_tokens(ctx, h)) for h in candidates(world, n_texts))


def choose(ctx) -> Choice:
    """The hierarchy to measure (module docstring): once per (preset, options)."""
    key = ("choice", ctx.preset, tuple(sorted(ctx.options.items())))
    return ctx.once(key, lambda: _choose(ctx))


def _choose(ctx) -> Choice:
    considered = _measure(ctx)
    if not considered:
        raise SaebenchError(
            f"{ctx.model.name}'s world has no hierarchy with {config.MIN_VALUES}+ parent values "
            f"of {config.MIN_WORDS}+ child words each"
        )
    wanted = ctx.options.get("hierarchy")
    if wanted is not None:
        named = [t for t in considered if t.tokens.hierarchy.name == wanted]
        if not named:
            names = ", ".join(t.tokens.hierarchy.name for t in considered)
            raise ConfigError(f"absorption.hierarchy={wanted!r}: this world offers {names}")
        return Choice(named[0], considered, forced=True)
    passing = [t for t in considered if passes(t)]
    best = passing[0] if passing else max(considered, key=lambda t: t.f1_low - threshold(t.chance))
    return Choice(best, considered, forced=False)


def validity(ctx) -> list[Validity]:
    """The chosen hierarchy's raw probe: mean held-out F1 over parent values, with a 95%
    interval resampling held-out words. Governs the whole task. Never touches ctx.sae."""
    choice = choose(ctx)
    truth = choice.truth
    others = "; ".join(
        f"{t.tokens.hierarchy.name} {t.f1:.2f} (low {t.f1_low:.2f})" for t in choice.considered
    )
    if choice.forced:
        how = "named by absorption.hierarchy"
    elif passes(truth):
        how = "the first candidate that passes"
    else:
        how = "no candidate passes; the closest"
    description = (
        f"hierarchy {truth.tokens.hierarchy.name} ({how}): "
        f"{truth.tokens.hierarchy.description}; one-vs-rest logistic probe per parent value on "
        f"raw activations of train words, F1 on {len(set(truth.tokens.words[truth.tokens.held_out]))} "
        f"held-out words' tokens, 95% bootstrap over held-out words; chance: always positive. "
        f"Candidates at {ctx.hook}: {others}"
    )
    return [
        Validity(
            name="absorption_raw_probe_f1",
            reference=truth.f1,
            low=truth.f1_low,
            chance=truth.chance,
            margin=threshold(truth.chance) - truth.chance,
            description=description,
        )
    ]
