"""Task `ravel`: RAVEL disentanglement of city attributes (Huang et al. 2024; SAEBench's MDBM).

Intervention: at layer ctx.hook, at the entity's last token, copy the selected SAE latents of a
source prompt (same template, another city) into the base prompt. We KEEP the SAE error term
(h_b + (z_s − z_b)[S] W_dec[S]), so only the chosen latents act and a poor reconstruction does not
by itself break "isolate"; SAEBench drops it (decode(z_b with z_s[S]); its `add_error=False`
default), so our numbers are not directly comparable to theirs.

Selection (`mdbm`): SAEBench's learned binary mask, one per attribute, trained on the
training-template pairs (cause pairs target the source's value, isolate pairs the base's
answer); the hard mask (m > 0), cut to its B largest logits with B the attribute's number of
values (`mdbm.budgeted`: without a budget a learned mask over a wide random dictionary finds the
attribute's subspace and scores like a planted dictionary; SAEBench's unbudgeted score is kept as
ravel_unbounded_*), is scored on the held-out template only (RAVEL's template split; the
cities are shared, RAVEL's entity split is not used): nothing is picked on the pairs that are
scored. Departure: SAEBench trains 2 epochs over thousands of pairs; we train at least
config.MDBM_MIN_STEPS steps over a few hundred (the schedule needs steps to anneal).

Cause(A): base and source prompts ask A; share where the answer becomes the source's value.
Isolate(A): prompts ask B ≠ A (and the cities differ in B); share where B keeps the base value.
Disentangle = ½(cause + isolate), per attribute and averaged. Only prompts the clean model
answers correctly are used (base and source). On toy world v2 the attributes are independent by
construction, so "change A, keep B" is always a coherent counterfactual; on v1's real cities
they are not (country implies continent), which caps isolate for any dictionary.

References, SAE-independent, per attribute: the no-op (cause 0 by construction of the pairs,
isolate 1, disentangle 0.5: MetricInfo.chance) and the whole-activation swap (cause ≈ 1,
isolate ≈ 0, disentangle ≈ 0.5 too). Because both references sit at 0.5, disentangle is
normalised per component: cause / swap cause (floor: the no-op's 0) and
(isolate − swap isolate) / (1 − swap isolate) (floor: the swap's isolate, ceiling: the no-op's
1), clipped to [0, 1] and left out where a reference leaves less than NORMALISE_MIN_RANGE of
room; ravel_normalised_* is their mean. A random latent set of the mask's size is the dictionary
control. ravel_supervised_* is the supervised reference (supervised.py): a dictionary that
knows the attributes, one class-mean offset per value at the entity token. Reported, not gated:
with dependent attributes (v1's real cities, where country implies continent) its offsets carry
the dependent attribute too and it cannot isolate by construction; on toy world v2, where the
attributes are independent, it says whether they are separable directions at the site at all
(trial B: country cause 0.54 / isolate 0.71 at blocks.2, so not yet).

What the latents encode (specificity.py, descriptive): ravel_entities_per_latent, the median
number of cities driving a live latent at the entity token, and ravel_attribute_latent_share,
the share of live latents whose variation over the training prompts is one attribute's
(η²(attribute) / η²(city) > 0.8). A dictionary of per-city latents (a lookup table, what a wide
SAE can afford with few cities) scores the no-op's 0.5 however good its reconstruction: these
two numbers show when that is why.

Validity gate (`gates.validity`, SAE-independent, measured once per model and hook): the whole
activation of the last entity token at ctx.hook swapped from the source, on every cause pair
(training and held-out templates), must give the source's value beyond chance: the lower end of
a 95% percentile bootstrap over pairs above chance + GATE_MARGIN, where chance = max(rate at
which the unpatched base already answers the source's value, 1 / number of values). One gate on
all cause pairs pooled governs the whole task (closed: every cell is `uninformative`), one per
attribute governs that attribute's metrics and the averages. `run` called directly on a closed
gate raises with the measured number: the task never moves to another position.
"""

from __future__ import annotations

import torch

from saebench.errors import SaebenchError
from saebench.hookspecs import hookimpl
from saebench.metrics import finite
from saebench.specs import MetricInfo, ModelHandle, TaskSpec
from saebench_tasks.ravel import config  # noqa: F401  (tests shrink its sizes)
from saebench_tasks.ravel.config import GATE_MARGIN  # noqa: F401  (re-exported for tests)
from saebench_tasks.ravel.data import (  # noqa: F401  (the task's building blocks)
    check_enough_pairs,
    clean_pass,
    first_word,
    make_pairs,
    make_prompts,
    site,
)
from saebench_tasks.ravel.gates import gate, validity
from saebench_tasks.ravel.mdbm import budgeted, train_mask
from saebench_tasks.ravel.patching import (  # noqa: F401
    disentangle,
    disentangle_many,
    outcomes_many,
    score_many,
    whole_swap,
)
from saebench_tasks.ravel.plot import plot
from saebench_tasks.ravel.specificity import latent_specificity
from saebench_tasks.ravel.supervised import supervised_patch

__all__ = ["METRICS", "gate", "plot", "prepare", "register_tasks", "run", "supports", "validity"]

NORMALISE_MIN_RANGE = 0.25  # a reference must leave this much room to normalise by

METRICS = {
    "ravel_model_accuracy": MetricInfo(None, description="clean accuracy, held-out template"),
    # Chance: a no-op (cause 0 by construction of the pairs, isolate 1, disentangle 0.5).
    "ravel_cause*": MetricInfo(True, floor=0.05, chance=0.0),
    "ravel_isolate*": MetricInfo(True, floor=0.05, chance=1.0),
    "ravel_disentangle*": MetricInfo(True, floor=0.05, chance=0.5),
    "ravel_normalised_cause*": MetricInfo(
        True, floor=0.05, chance=0.0, description="cause / whole-swap cause"
    ),
    "ravel_normalised_isolate*": MetricInfo(
        True, floor=0.05, description="(isolate − swap isolate) / (1 − swap isolate)"
    ),
    "ravel_normalised_disentangle*": MetricInfo(
        True, floor=0.05, description="mean of the normalised cause and isolate"
    ),
    "ravel_n_latents_*": MetricInfo(None, description="size of the budgeted MDBM mask"),
    "ravel_unbounded_*": MetricInfo(
        None, description="SAEBench's MDBM mask without a latent budget (see mdbm.budgeted)"
    ),
    "ravel_random_set_*": MetricInfo(None, description="same-size random latent set", chance=0.5),
    "ravel_supervised_cause*": MetricInfo(None, description="supervised dictionary", chance=0.0),
    "ravel_supervised_isolate*": MetricInfo(None, description="supervised dictionary", chance=1.0),
    "ravel_supervised_disentangle*": MetricInfo(
        None, description="supervised dictionary (class-mean offsets per value)", chance=0.5
    ),
    "ravel_residual_swap_cause*": MetricInfo(None, description="whole activation", chance=0.0),
    "ravel_residual_swap_isolate*": MetricInfo(None, description="whole activation", chance=1.0),
    "ravel_residual_swap_*": MetricInfo(None, description="whole activation swapped", chance=0.5),
    # What the latents at the entity token encode (specificity.py): why a score is what it is.
    "ravel_entities_per_latent": MetricInfo(
        None, description="median number of cities driving a live latent at the entity token"
    ),
    "ravel_attribute_latent_share": MetricInfo(
        None, description="share of live latents whose variation is one attribute's (η² ratio)"
    ),
}


def prepare(ctx) -> dict:
    """SAE-independent part, computed once per (preset, seed): the site's prompts and pairs and
    the whole-activation references. Refuses a model that does not know the facts, or whose
    entity token does not carry them at ctx.hook (the gate's measured number in the message)."""
    return ctx.once(("prepared", ctx.preset, ctx.seed), lambda: _prepare(ctx))


def _prepare(ctx) -> dict:
    found = site(ctx)
    attributes = found["attributes"]
    train_pairs, test_pairs = found["train_pairs"], found["test_pairs"]
    check_enough_pairs(train_pairs, test_pairs, found["test_prompts"])
    at_entity = ctx.once(("entity gate", ctx.preset, ctx.seed), lambda: validity(ctx)[0])
    if not at_entity.informative:
        raise SaebenchError(
            f"ravel is uninformative at {ctx.hook}: swapping the whole last-entity-token "
            f"activation gives the source's value on {at_entity.reference:.0%} of cause pairs "
            f"(95% lower end {at_entity.low:.0%}; needs > chance {at_entity.chance:.0%} + "
            f"{GATE_MARGIN:.0%}), so no latent swap there can move the attributes; pick a "
            f"--hook where the entity carries them (`saebench world eval` reports the site "
            f"checks)"
        )
    test_prompts = found["test_prompts"]
    metrics = {"ravel_model_accuracy": sum(p["correct"] for p in test_prompts) / len(test_prompts)}
    swap = {}
    for attribute in attributes:
        swap[attribute] = disentangle(ctx, test_pairs, attribute, whole_swap)
        cause, isolate, score = swap[attribute]
        metrics[f"ravel_residual_swap_cause_{attribute}"] = cause
        metrics[f"ravel_residual_swap_isolate_{attribute}"] = isolate
        metrics[f"ravel_residual_swap_disentangle_{attribute}"] = score
    for attribute in attributes:
        patch = supervised_patch(found["train_prompts"], attribute)
        cause, isolate, score = disentangle(ctx, test_pairs, attribute, patch)
        metrics[f"ravel_supervised_cause_{attribute}"] = cause
        metrics[f"ravel_supervised_isolate_{attribute}"] = isolate
        metrics[f"ravel_supervised_disentangle_{attribute}"] = score
    metrics["ravel_supervised_disentangle"] = sum(
        metrics[f"ravel_supervised_disentangle_{a}"] for a in attributes
    ) / len(attributes)
    metrics["ravel_residual_swap_disentangle"] = sum(
        metrics[f"ravel_residual_swap_disentangle_{a}"] for a in attributes
    ) / len(attributes)
    return dict(  # noqa: C408
        attributes=attributes,
        train_pairs=train_pairs,
        test_pairs=test_pairs,
        swap=swap,
        n_values=found["n_values"],
        train_prompts=found["train_prompts"],
        metrics=metrics,
    )


def normalised(cause, isolate, swap_cause, swap_isolate) -> tuple[float, float, float]:
    """(cause, isolate, disentangle) on the scale no-op → whole swap (see the docstring),
    clipped to [0, 1]; NaN where a reference leaves less than NORMALISE_MIN_RANGE of room (the
    swap moves too few answers, or isolates almost everything), since dividing by a small
    range only amplifies pair noise."""
    room_cause, room_isolate = swap_cause, 1 - swap_isolate
    n_cause = cause / room_cause if room_cause >= NORMALISE_MIN_RANGE else float("nan")
    n_isolate = (
        (isolate - swap_isolate) / room_isolate
        if room_isolate >= NORMALISE_MIN_RANGE
        else float("nan")
    )
    n_cause, n_isolate = (min(max(v, 0.0), 1.0) if v == v else v for v in (n_cause, n_isolate))
    return n_cause, n_isolate, (n_cause + n_isolate) / 2


def latent_patch(sae, latents: torch.Tensor, device):
    """patch(base, source, pairs): copy `latents` from the source's code, keeping the base's
    SAE error term. Codes are encoded once per pair list."""
    latents = latents.to(device)
    encoded: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def patch(base, source, pairs):
        if id(pairs) not in encoded:
            encoded[id(pairs)] = (sae.encode(base), sae.encode(source))
        z_base, z_source = encoded[id(pairs)]
        return base + (z_source[:, latents] - z_base[:, latents]) @ sae.W_dec[latents]

    return patch


@torch.no_grad()
def run(ctx) -> dict:
    prep = prepare(ctx)
    sae = ctx.sae
    metrics = dict(prep["metrics"])
    generator = torch.Generator().manual_seed(ctx.seed)
    d_sae = sae.W_dec.shape[0]
    attributes = prep["attributes"]
    for number, attribute in enumerate(attributes):
        train = (
            prep["train_pairs"][(attribute, "cause")] + prep["train_pairs"][(attribute, "isolate")]
        )
        mask_logits = train_mask(ctx, sae, train, seed=ctx.seed * 1000 + number)
        unbounded = torch.nonzero(mask_logits > 0).flatten()
        chosen = budgeted(mask_logits, prep["n_values"][attribute])
        random_set = torch.randperm(d_sae, generator=generator)[: len(chosen)]
        (cause, isolate, score), (_, _, random_score), (_, _, unbounded_score) = disentangle_many(
            ctx,
            prep["test_pairs"],
            attribute,
            [
                latent_patch(sae, chosen, ctx.device),
                latent_patch(sae, random_set, ctx.device),
                latent_patch(sae, unbounded, ctx.device),
            ],
        )
        metrics[f"ravel_unbounded_disentangle_{attribute}"] = unbounded_score
        metrics[f"ravel_unbounded_n_latents_{attribute}"] = float(len(unbounded))
        swap_cause, swap_isolate, _ = prep["swap"][attribute]
        n_cause, n_isolate, n_score = normalised(cause, isolate, swap_cause, swap_isolate)
        metrics[f"ravel_cause_{attribute}"] = cause
        metrics[f"ravel_isolate_{attribute}"] = isolate
        metrics[f"ravel_disentangle_{attribute}"] = score
        for name, value in (("cause", n_cause), ("isolate", n_isolate), ("disentangle", n_score)):
            if value == value:  # NaN: the references coincide, there is no scale to report
                metrics[f"ravel_normalised_{name}_{attribute}"] = value
        metrics[f"ravel_n_latents_{attribute}"] = float(len(chosen))
        metrics[f"ravel_random_set_disentangle_{attribute}"] = random_score
    metrics.update(specificity_metrics(sae, prep["train_prompts"], attributes, ctx.device))
    for name in (
        "cause",
        "isolate",
        "disentangle",
        "normalised_cause",
        "normalised_isolate",
        "normalised_disentangle",
        "random_set_disentangle",
        "unbounded_disentangle",
    ):
        values = [
            metrics[f"ravel_{name}_{a}"] for a in attributes if f"ravel_{name}_{a}" in metrics
        ]
        if values:
            metrics[f"ravel_{name}"] = sum(values) / len(values)
    return {name: finite(name, value) for name, value in metrics.items()}


def specificity_metrics(sae, prompts, attributes, device) -> dict[str, float]:
    """The latents' entity- vs attribute-level make-up on the training prompts (descriptive)."""
    acts = torch.stack([p["act"] for p in prompts]).to(device)
    codes = sae.encode(acts).detach().cpu()
    found = latent_specificity(
        codes,
        [p["city"]["city"] for p in prompts],
        {a: [p["city"][a] for p in prompts] for a in attributes},
    )
    return {f"ravel_{name}": value for name, value in found.items() if value == value}


def supports(model: ModelHandle, options: dict[str, str]) -> str | None:
    if getattr(model, "world", None) is None:
        return (
            f"{model.name} has no toy world: ravel needs city-fact prompts with known "
            "attributes (use --model toyworld)"
        )
    return None


@hookimpl
def register_tasks(register):
    register(
        TaskSpec(
            name="ravel",
            description="RAVEL interchange interventions on city attributes (MDBM latent "
            "masks): cause, isolate, disentangle vs whole swap and random latent sets",
            run=run,
            metrics=METRICS,
            supports=supports,
            plot=plot,
            validity=validity,
        )
    )
