"""Task `ravel`: RAVEL-style disentanglement of city attributes (Huang et al. 2024).

Intervention: at layer ctx.hook, at the entity's last token, copy the selected SAE latents of a
source prompt (same template, another city) into the base prompt. We KEEP the SAE error term
(h_b + (z_s − z_b)[S] W_dec[S]), so only the chosen latents act and a poor reconstruction does not
by itself break "isolate"; the RAVEL/SAEBench anchors drop it (decode(z_b with z_s[S])), so our
numbers are not directly comparable to theirs.

Selection (a documented cheaper stand-in for MDBM, no gradients): the N_CANDIDATES latents with
the highest η² for attribute A (share of variance at the entity token, training templates,
explained by A's value) are each swapped alone on training-template pairs and ranked by the
gain in cause + isolate logit margins; the set size k ∈ {1, 2, 4, …, 64} ∪ {#latents with a
positive gain} is the one with the best disentangle score on training-template pairs. Scores
come from the held-out template only (RAVEL's template split; the cities are shared, RAVEL's
entity split is not used): nothing is picked on the pairs that are scored.

Cause(A): base and source prompts ask A; share where the answer becomes the source's value.
Isolate(A): prompts ask B ≠ A (and the cities differ in B); share where B keeps the base value.
Disentangle = ½(cause + isolate), per attribute and averaged. Only prompts the clean model
answers correctly are used (base and source). Controls: whole residual swap (cause ≈ 1, isolate
poor) and a random latent set of the same size. Chance levels (MetricInfo.chance) are those of a
no-op, the dictionary that changes nothing: cause 0 (pairs are chosen so that the source's value
differs from the base answer), isolate 1, disentangle 0.5. The whole-residual swap also scores
0.5 wherever it causes everything and isolates nothing.

Validity gate (`validity`, SAE-independent, measured once per model and hook): the whole
activation of the last entity token at ctx.hook swapped from the source, on every cause pair
(training and held-out templates), must give the source's value beyond chance: the lower end of
a 95% percentile bootstrap over pairs (saebench.stats.bootstrap_interval) above chance +
GATE_MARGIN, where chance = max(rate at which the unpatched base already answers the source's
value, 1 / number of values of the attribute). One gate on all cause pairs pooled (the same
number per attribute when the model knows the facts; chance weighted by pairs), which governs
the whole task: closed, every cell is `uninformative`; and one per attribute, which governs that
attribute's metrics and the averages. If the entity token does not carry the attributes at
ctx.hook, no latent swap there can move them, and the task says so instead of scoring.

Position fallback (outside the runner only): when that gate is closed, `run` called directly
intervenes at the final token instead and reports ravel_at_final_token = 1 (small models move
the entity's attributes to the final token before ctx.hook: in the 2-layer toy model only the
embedding of the city token matters at blocks.1). The final token of a prompt asking A carries
A's answer, so there the task measures the answer's representation, not the entity's: the
whole swap and a no-op both score disentangle 0.5. The runner never scores it (the gate is
closed there); the RAVEL paper and SAEBench intervene at the entity token only.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from saebench.errors import SaebenchError
from saebench.hookspecs import hookimpl
from saebench.interventions import patched_final_logits, run_patched, separation_scores, tokenize
from saebench.metrics import finite
from saebench.specs import MetricInfo, ModelHandle, TaskSpec, Validity
from saebench.stats import bootstrap_interval

if TYPE_CHECKING:
    import pandas as pd

    from saebench.rundir import RunDir

N_PAIRS = {"smoke": 24, "default": 96, "full": 300}  # per attribute, per kind (cause/isolate)
SET_SIZES = (1, 2, 4, 8, 16, 32, 64)
# latents (by η²) whose lone swap is tried during selection, per preset
N_CANDIDATES = {"smoke": 80, "default": 128, "full": 256}
MIN_PAIRS = 8
MIN_SWAP_CAUSE = 0.5  # at the final token (fallback), below this the layer carries nothing
# The whole-activation swap at the entity token must beat chance by this much (its 95% lower end):
# at least a quarter of the answers moved beyond chance, or the task measures nothing there.
GATE_MARGIN = 0.25
CONFIDENCE = 0.95

METRICS = {
    "ravel_model_accuracy": MetricInfo(None, description="clean accuracy, held-out template"),
    "ravel_at_final_token": MetricInfo(
        None, description="1: intervened at the final token (entity-token gate closed)"
    ),
    # Chance: a no-op (cause 0 by construction of the pairs, isolate 1, disentangle 0.5).
    "ravel_cause*": MetricInfo(True, floor=0.05, chance=0.0),
    "ravel_isolate*": MetricInfo(True, floor=0.05, chance=1.0),
    "ravel_disentangle*": MetricInfo(True, floor=0.05, chance=0.5),
    "ravel_n_latents_*": MetricInfo(None),
    "ravel_random_set_*": MetricInfo(None, description="same-size random latent set", chance=0.5),
    "ravel_residual_swap_cause*": MetricInfo(None, description="whole activation", chance=0.0),
    "ravel_residual_swap_isolate*": MetricInfo(None, description="whole activation", chance=1.0),
    "ravel_residual_swap_*": MetricInfo(None, description="whole activation swapped", chance=0.5),
}


def first_word(value: str) -> str:
    return value.split()[0]


def make_prompts(world, tokenizer, bridge, template_ids):
    """Every (city, attribute, template) prompt: dicts with tokens, entity position, answer id."""
    from saebench.toyworld.world import answer_token_id

    prompts = []
    for city in world.cities:
        for attribute in world.attributes:
            for template_id in template_ids:
                template = world.fact_templates[attribute][template_id]
                text = template.format(e=city["city"])
                prefix = template.split("{e}")[0] + city["city"]
                prompts.append(
                    dict(  # noqa: C408
                        city=city,
                        attribute=attribute,
                        template=template_id,
                        text=text,
                        position=len(tokenize(bridge, [prefix.strip()])[0]) - 1,
                        answer=answer_token_id(tokenizer, first_word(city[attribute])),
                    )
                )
    tokens = tokenize(bridge, [p["text"] for p in prompts])
    for prompt, tok in zip(prompts, tokens):
        prompt["tokens"] = tok
    return prompts


def clean_pass(ctx, prompts):
    """Activation at the intervention position, clean final logits and correctness of every
    prompt (in place)."""
    acts, logits = run_patched(
        ctx.model.bridge,
        ctx.hook,
        [p["tokens"] for p in prompts],
        [p["position"] for p in prompts],
        device=ctx.device,
    )
    logits = logits.cpu()
    correct = logits.argmax(-1) == torch.tensor([p["answer"] for p in prompts])
    for prompt, act, row, ok in zip(prompts, acts, logits, correct):
        prompt["act"], prompt["logits"], prompt["correct"] = act, row, bool(ok)


def make_pairs(prompts, attributes, n_pairs, seed):
    """(base, source, expected answer id, attribute swapped, kind) tuples; cause and isolate."""
    rng = random.Random(seed)
    by_question = {}  # (asked attribute, template) -> its prompts, one per city
    for prompt in prompts:
        by_question.setdefault((prompt["attribute"], prompt["template"]), []).append(prompt)
    # The answer word of every prompt's city for every attribute, looked up once, not per pair.
    words = {id(p): {a: first_word(p["city"][a]) for a in attributes} for p in prompts}
    pairs = {}
    for target in attributes:
        for kind in ("cause", "isolate"):
            candidates = []
            asked = [target] if kind == "cause" else [a for a in attributes if a != target]
            for base in prompts:
                if base["attribute"] not in asked or not base["correct"]:
                    continue
                asked_attr, base_words = base["attribute"], words[id(base)]
                for source in by_question[(asked_attr, base["template"])]:
                    if not source["correct"]:
                        continue
                    # Informative pairs only: the source differs in the swapped attribute, and
                    # (isolate) also in the asked one, so a full swap would change the answer.
                    source_words = words[id(source)]
                    if source_words[target] == base_words[target]:
                        continue
                    if source_words[asked_attr] == base_words[asked_attr]:
                        continue
                    # (expected answer, the answer a full swap would give / the clean answer)
                    expected, other_answer = (
                        (source["answer"], base["answer"])
                        if kind == "cause"
                        else (base["answer"], source["answer"])
                    )
                    candidates.append((base, source, expected, other_answer))
            rng.shuffle(candidates)
            pairs[(target, kind)] = candidates[:n_pairs]
    return pairs


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


def check_enough_pairs(train_pairs, test_pairs, test_prompts):
    for (attribute, kind), pairs in test_pairs.items():
        if len(pairs) < MIN_PAIRS or len(train_pairs[(attribute, kind)]) < MIN_PAIRS:
            correct = sum(p["correct"] for p in test_prompts)
            raise SaebenchError(
                f"only {len(pairs)} usable held-out {kind} pairs for {attribute} (need "
                f"{MIN_PAIRS}); the model answers {correct}/{len(test_prompts)} held-out fact "
                f"prompts correctly. ravel needs a model that knows the city facts (train the "
                f"toy world longer, or drop --tasks ravel for this model)"
            )


def site(ctx) -> dict:
    """SAE-independent, at the last entity token, computed once per (preset, seed): prompts
    with their clean passes, training / held-out pairs, and for every attribute the outcome of
    the whole-activation swap on each cause pair (training and held-out templates) and the
    rate at which the unpatched base already gives the source's value. Never refuses a model:
    one that does not know the facts has few pairs, and the gate reports it."""
    return ctx.once(("site", ctx.preset, ctx.seed), lambda: _site(ctx))


def _site(ctx) -> dict:
    world, bridge = ctx.model.world, ctx.model.bridge
    heldout = len(world.fact_templates["country"]) - 1
    train_prompts = make_prompts(world, ctx.model.tokenizer, bridge, range(heldout))
    test_prompts = make_prompts(world, ctx.model.tokenizer, bridge, [heldout])
    clean_pass(ctx, train_prompts)
    clean_pass(ctx, test_prompts)
    n = N_PAIRS.get(ctx.preset, N_PAIRS["default"])
    attributes = list(world.attributes)
    train_pairs = make_pairs(train_prompts, attributes, n, ctx.seed)
    test_pairs = make_pairs(test_prompts, attributes, n, ctx.seed + 1)
    cause = [train_pairs[(a, "cause")] + test_pairs[(a, "cause")] for a in attributes]
    swapped = outcomes_many(ctx, [(pairs, whole_swap) for pairs in cause])
    unpatched = [
        sum(int(base["logits"].argmax()) == expected for base, _, expected, _ in pairs)
        / max(len(pairs), 1)
        for pairs in cause
    ]
    return dict(  # noqa: C408
        attributes=attributes,
        train_prompts=train_prompts,
        test_prompts=test_prompts,
        train_pairs=train_pairs,
        test_pairs=test_pairs,
        swapped=dict(zip(attributes, swapped)),
        unpatched=dict(zip(attributes, unpatched)),
        n_values={a: len({first_word(c[a]) for c in world.cities}) for a in attributes},
    )


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


def prepare(ctx) -> dict:
    """SAE-independent part, computed once per (preset, seed): the site's prompts and pairs,
    the position to intervene at and the whole-residual-swap controls. Refuses a model that
    does not know the facts, or whose layer carries them at neither position."""
    return ctx.once(("prepared", ctx.preset, ctx.seed), lambda: _prepare(ctx))


def _prepare(ctx) -> dict:
    found = site(ctx)
    attributes = found["attributes"]
    train_pairs, test_pairs = found["train_pairs"], found["test_pairs"]
    train_prompts, test_prompts = found["train_prompts"], found["test_prompts"]
    check_enough_pairs(train_pairs, test_pairs, test_prompts)
    at_entity = ctx.once(("entity gate", ctx.preset, ctx.seed), lambda: validity(ctx)[0])
    if not at_entity.informative:
        # The fallback (see the module docstring): copies of the prompts at the final token,
        # the same pairs (they depend only on clean answers, the same at every position).
        train_prompts = [dict(p, position=len(p["tokens"]) - 1) for p in train_prompts]
        test_prompts = [dict(p, position=len(p["tokens"]) - 1) for p in test_prompts]
        clean_pass(ctx, train_prompts)
        clean_pass(ctx, test_prompts)
        n = N_PAIRS.get(ctx.preset, N_PAIRS["default"])
        train_pairs = make_pairs(train_prompts, attributes, n, ctx.seed)
        test_pairs = make_pairs(test_prompts, attributes, n, ctx.seed + 1)
        swap_cause = sum(
            score_many(ctx, [(train_pairs[(a, "cause")], whole_swap) for a in attributes])
        ) / len(attributes)
        if swap_cause < MIN_SWAP_CAUSE:
            raise SaebenchError(
                f"swapping the whole activation at {ctx.hook} changes {at_entity.reference:.0%} "
                f"of the fact answers at the entity token and {swap_cause:.0%} at the final "
                f"token: this layer does not carry the attributes; pick another --hook for ravel"
            )
    metrics = {
        "ravel_model_accuracy": sum(p["correct"] for p in test_prompts) / len(test_prompts),
        "ravel_at_final_token": float(not at_entity.informative),
    }
    for attribute in attributes:
        cause, isolate, score = disentangle(ctx, test_pairs, attribute, whole_swap)
        metrics[f"ravel_residual_swap_cause_{attribute}"] = cause
        metrics[f"ravel_residual_swap_isolate_{attribute}"] = isolate
        metrics[f"ravel_residual_swap_disentangle_{attribute}"] = score
    metrics["ravel_residual_swap_disentangle"] = sum(
        metrics[f"ravel_residual_swap_disentangle_{a}"] for a in attributes
    ) / len(attributes)
    train_acts = torch.stack([p["act"] for p in train_prompts])
    return dict(  # noqa: C408
        attributes=attributes,
        train_prompts=train_prompts,
        train_acts=train_acts,
        train_pairs=train_pairs,
        test_pairs=test_pairs,
        metrics=metrics,
    )


@torch.no_grad()
def single_swap_margins(ctx, pairs, sae, candidates):
    """Mean logit margin of `pairs` when each candidate latent alone is swapped in, [C], and
    with no swap (scalar). All C patched copies go through the model in one batched call; a
    copy whose candidate is equal in both codes is no patch and keeps its clean logits, so only
    the copies the swap moves are run (a sparse code leaves most copies unmoved)."""
    base = torch.stack([p[0]["act"] for p in pairs]).to(ctx.device)
    source = torch.stack([p[1]["act"] for p in pairs]).to(ctx.device)
    difference = (sae.encode(source) - sae.encode(base))[:, candidates]  # [n, C]
    new = base[None] + difference.T[..., None] * sae.W_dec[candidates][:, None, :]  # [C, n, d]
    copies = len(candidates) + 1
    new = torch.cat([base[None], new]).reshape(-1, base.shape[-1])
    logits = base_logits(ctx, [p[0] for p in pairs] * copies, base.repeat(copies, 1), new)
    logits = logits.reshape(copies, len(pairs), -1)
    rows = torch.arange(len(pairs))
    expected = torch.tensor([p[2] for p in pairs])
    other = torch.tensor([p[3] for p in pairs])
    # Only the two logits each margin needs are widened to float64, not the whole vocabulary.
    margins = (logits[:, rows, expected].double() - logits[:, rows, other].double()).mean(1)
    return margins[1:], margins[0]


def unranked(order: torch.Tensor, d_sae: int) -> torch.Tensor:
    """The latents not in `order`, ascending (they follow the ranked ones in a latent set)."""
    rest = torch.ones(d_sae, dtype=torch.bool)
    rest[order.cpu()] = False
    return torch.nonzero(rest).flatten().to(order.device, order.dtype)


def rank_latents(ctx, sae, codes, prompts, pairs, attribute):
    """(latent order, sorted scores): candidates by η² (share of a latent's variance at the entity
    token explained by the attribute's value), then ordered by their causal effect when swapped
    alone on training pairs: cause margin + isolate margin (logit of the wanted answer minus the
    alternative), relative to no swap. η² alone cannot tell a country latent from its language's
    latent when the two are confounded (japan/japanese); the single-latent swaps can."""
    eta = separation_scores(codes, [p["city"][attribute] for p in prompts])
    candidates = eta.argsort(descending=True)[: N_CANDIDATES.get(ctx.preset, 128)]
    candidates = candidates[eta[candidates] > 0]
    scores = torch.zeros(len(candidates), dtype=torch.float64)
    for kind in ("cause", "isolate"):
        margins, baseline = single_swap_margins(ctx, pairs[(attribute, kind)], sae, candidates)
        scores += margins - baseline
    order = scores.argsort(descending=True)
    return candidates[order], scores[order]


@torch.no_grad()
def run(ctx) -> dict:
    prep = prepare(ctx)
    sae = ctx.sae
    metrics = dict(prep["metrics"])
    codes = sae.encode(prep["train_acts"].to(ctx.device))
    d_sae = codes.shape[-1]
    generator = torch.Generator().manual_seed(ctx.seed)

    encoded = {}  # id(pair list) -> (base codes, source codes): encode each pair list once

    def swap(latents):
        """Copy `latents` from the source's code, keeping the base's SAE error term (the
        same as saebench.interventions.latent_swap, with the codes cached)."""
        latents = latents.to(ctx.device)

        def patch(base, source, pairs):
            if id(pairs) not in encoded:
                encoded[id(pairs)] = (sae.encode(base), sae.encode(source))
            z_base, z_source = encoded[id(pairs)]
            return base + (z_source[:, latents] - z_base[:, latents]) @ sae.W_dec[latents]

        return patch

    for attribute in prep["attributes"]:
        order, scores = rank_latents(
            ctx, sae, codes, prep["train_prompts"], prep["train_pairs"], attribute
        )
        # Fixed sizes plus "every latent whose lone swap helps": a block of latents for one
        # attribute rarely has a power-of-two size.
        sizes = sorted(
            {k for k in SET_SIZES if k <= len(order)} | {int((scores > 0).sum())} - {0}
        ) or [1]
        order = torch.cat([order, unranked(order, d_sae)])
        on_train = disentangle_many(
            ctx, prep["train_pairs"], attribute, [swap(order[:k]) for k in sizes]
        )
        train_scores = [score for _, _, score in on_train]
        best_k = sizes[train_scores.index(max(train_scores))]  # the first of equal bests
        random_set = torch.randperm(d_sae, generator=generator)[:best_k]
        (cause, isolate, score), (_, _, random_score) = disentangle_many(
            ctx, prep["test_pairs"], attribute, [swap(order[:best_k]), swap(random_set)]
        )
        metrics[f"ravel_cause_{attribute}"] = cause
        metrics[f"ravel_isolate_{attribute}"] = isolate
        metrics[f"ravel_disentangle_{attribute}"] = score
        metrics[f"ravel_n_latents_{attribute}"] = float(best_k)
        metrics[f"ravel_random_set_disentangle_{attribute}"] = random_score
    attributes = prep["attributes"]
    for name in ("cause", "isolate", "disentangle", "random_set_disentangle"):
        metrics[f"ravel_{name}"] = sum(metrics[f"ravel_{name}_{a}"] for a in attributes) / len(
            attributes
        )
    return {name: finite(name, value) for name, value in metrics.items()}


def supports(model: ModelHandle, options: dict[str, str]) -> str | None:
    if getattr(model, "world", None) is None:
        return (
            f"{model.name} has no toy world: ravel needs city-fact prompts with known "
            "attributes (use --model toyworld)"
        )
    return None


def plot(results: pd.DataFrame, run_dir: RunDir) -> list[Path]:
    """Disentangle score per attribute per method (best knob per method, seed-mean)."""
    from saebench.fileio import save_figure
    from saebench.plots import pyplot

    rows = results[results.metric.str.match(r"ravel_disentangle_")]
    if rows.empty:
        return []
    rows = rows.assign(attribute=rows.metric.str.replace("ravel_disentangle_", "", regex=False))
    means = rows.groupby(["method", "knob", "attribute"], as_index=False).value.mean()
    plt, sns = pyplot()
    grid = sns.catplot(
        data=means,
        x="attribute",
        y="value",
        hue="method",
        kind="bar",
        errorbar=None,
        height=3.5,
        aspect=1.6,
    )
    grid.set_axis_labels("attribute", "disentangle (½ cause + ½ isolate)")
    path = run_dir.plot_path("ravel_disentangle.png")
    save_figure(grid, path, dpi=120)
    plt.close("all")
    return [path]


@hookimpl
def register_tasks(register):
    register(
        TaskSpec(
            name="ravel",
            description="RAVEL interchange interventions on city attributes: cause, isolate, "
            "disentangle vs whole-residual swap and random latent sets",
            run=run,
            metrics=METRICS,
            supports=supports,
            plot=plot,
            validity=validity,
        )
    )
