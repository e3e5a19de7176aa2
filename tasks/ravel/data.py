"""RAVEL's prompts and pairs, and the SAE-independent site they are measured at."""

from __future__ import annotations

import random

import torch

from saebench.errors import SaebenchError
from saebench.interventions import prefix_end, run_patched, tokenize
from saebench_tasks.ravel import config
from saebench_tasks.ravel.patching import outcomes_many, whole_swap


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
                        position=prefix_end(bridge, prefix),
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


def check_enough_pairs(train_pairs, test_pairs, test_prompts):
    for (attribute, kind), pairs in test_pairs.items():
        if len(pairs) < config.MIN_PAIRS or len(train_pairs[(attribute, kind)]) < config.MIN_PAIRS:
            correct = sum(p["correct"] for p in test_prompts)
            raise SaebenchError(
                f"only {len(pairs)} usable held-out {kind} pairs for {attribute} (need "
                f"{config.MIN_PAIRS}); the model answers {correct}/{len(test_prompts)} held-out fact "
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
    n = config.N_PAIRS.get(ctx.preset, config.N_PAIRS["default"])
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
