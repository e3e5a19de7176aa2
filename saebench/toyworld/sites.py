"""Site checks: is what a task patches present and causal at the SAE's hook?

Each check patches raw activations (no SAE) at one position of a prompt with the activation of
the same position in a source prompt, and counts how often the answer becomes the source's.
These are the references the intervention tasks need before their numbers mean anything
(issue 15): a task whose site check fails is uninformative at that hook.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

import torch

from saebench.interventions import prefix_end, run_patched, tokenize, word_position
from saebench.toyworld.world import DAYS, MONTHS, answer_token_id, operand_word


@dataclass(frozen=True)
class SiteCheck:
    """One site check: `value` (share of pairs whose answer became the source's) vs `target`."""

    name: str
    value: float
    target: float
    n_pairs: int
    clean_accuracy: float
    description: str

    @property
    def passed(self) -> bool:
        return self.value >= self.target

    def as_dict(self) -> dict:
        return asdict(self) | {"passed": self.passed}


@torch.no_grad()
def swap_hit_rate(bridge, hook, prompts, pairs, device=None) -> tuple[float, float]:
    """prompts: dicts with tokens, position, answer; pairs: (base index, source index, expected
    answer id). Returns (share of pairs whose patched argmax is the expected id, clean accuracy
    of the prompts)."""
    tokens = [p["tokens"] for p in prompts]
    positions = [p["position"] for p in prompts]
    acts, logits = run_patched(bridge, hook, tokens, positions, device=device)
    clean = (logits.argmax(-1).cpu() == torch.tensor([p["answer"] for p in prompts])).double()
    bases = [b for b, _, _ in pairs]
    new = acts[torch.tensor([s for _, s, _ in pairs])]

    def edit(chosen, indices):
        return new[indices].to(chosen.device)

    _, patched = run_patched(
        bridge, hook, [tokens[b] for b in bases], [positions[b] for b in bases], edit, device
    )
    expected = torch.tensor([e for _, _, e in pairs])
    return (patched.argmax(-1).cpu() == expected).double().mean().item(), clean.mean().item()


def entity_swap_checks(
    bridge, tokenizer, world, hook: str, n_pairs: int = 400, seed: int = 0, device=None
) -> list[SiteCheck]:
    """Per attribute: swap the whole activation of the last entity token from a city with
    another value; the answer should become the source's value (RAVEL's ceiling)."""
    rng = random.Random(seed)
    checks = []
    for attribute in world.attributes:
        templates = world.fact_templates[attribute][:-1]
        prompts = []
        for city in world.cities:
            for template in templates:
                text = template.format(e=city["city"])
                prompts.append(
                    {
                        "city": city,
                        "text": text,
                        "position": prefix_end(bridge, template.split("{e}")[0] + city["city"]),
                        "answer": answer_token_id(tokenizer, city[attribute].split()[0]),
                    }
                )
        for prompt, tok in zip(prompts, tokenize(bridge, [p["text"] for p in prompts])):
            prompt["tokens"] = tok
        pairs: list[tuple[int, int, int]] = []
        while len(pairs) < n_pairs:
            b, s = rng.randrange(len(prompts)), rng.randrange(len(prompts))
            if prompts[b]["answer"] != prompts[s]["answer"]:
                pairs.append((b, s, prompts[s]["answer"]))
        value, clean = swap_hit_rate(bridge, hook, prompts, pairs, device)
        checks.append(
            SiteCheck(
                f"entity_swap_{attribute}",
                value,
                0.9,
                len(pairs),
                clean,
                f"{hook}, last entity token, whole activation from a city with another "
                f"{attribute}: share of answers that become the source's {attribute}",
            )
        )
    return checks


def operand_patch_checks(
    bridge, tokenizer, world, hook: str, n_pairs: int = 400, seed: int = 0, device=None
) -> list[SiteCheck]:
    """Per kind (day, month): patch the operand token ("monday" in "three days from monday is")
    with the same token position of a prompt with another operand and the same offset; the
    answer should become (source operand + offset)."""
    rng = random.Random(seed)
    checks = []
    for kind, values in (("day", DAYS), ("month", MONTHS)):
        period = len(values)
        prompts = []
        for example in world.generate("calendar", 8 * n_pairs, seed=seed + 17):
            labels = example.labels
            if labels["mention"] or labels["kind"] != kind:
                continue
            prompts.append(
                {
                    "text": example.prompt,
                    "start": labels["start"],
                    "offset": labels["offset"],
                    "position": word_position(bridge, example.prompt, operand_word(example)),
                    "answer": answer_token_id(tokenizer, values[labels["answer"]]),
                }
            )
        for prompt, tok in zip(prompts, tokenize(bridge, [p["text"] for p in prompts])):
            prompt["tokens"] = tok
        by_offset: dict[int, list[int]] = {}
        for i, p in enumerate(prompts):
            by_offset.setdefault(p["offset"], []).append(i)
        pairs: list[tuple[int, int, int]] = []
        offsets = sorted(o for o, members in by_offset.items() if len(members) > 1)
        while offsets and len(pairs) < n_pairs:
            members = by_offset[rng.choice(offsets)]
            b, s = rng.choice(members), rng.choice(members)
            if prompts[b]["start"] == prompts[s]["start"]:
                continue
            target = values[(prompts[s]["start"] + prompts[b]["offset"]) % period]
            pairs.append((b, s, answer_token_id(tokenizer, target)))
        value, clean = swap_hit_rate(bridge, hook, prompts, pairs, device)
        checks.append(
            SiteCheck(
                f"operand_patch_{kind}",
                value,
                0.9,
                len(pairs),
                clean,
                f"{hook}, {kind} operand token, activation from a prompt with another {kind} "
                f"and the same offset: share of answers that become source {kind} + offset",
            )
        )
    return checks


@torch.no_grad()
def ioi_edit_checks(
    bridge, tokenizer, world, hook: str, n_prompts: int = 200, seed: int = 0, device=None
) -> list[SiteCheck]:
    """Per IOI attribute (IO, S, Pos; saebench.toyworld.ioi_edits): at the final token, the
    whole activation from the one-attribute counterfactual, and the supervised edit of that
    attribute alone (dictionary fitted on 3·n_prompts training prompts), each scored by the
    share of held-out prompts whose answer becomes the edit's target (target 0.8)."""
    from saebench.interventions import replace_with
    from saebench.toyworld.ioi_edits import (
        ATTRIBUTE_EDITS,
        EDIT_TARGETS,
        IOI_ATTRIBUTES,
        counterfactual,
        new_io_name,
        supervised_dictionary,
    )

    def final_run(prompts, edit=None):
        tokens = tokenize(bridge, prompts)
        return run_patched(bridge, hook, tokens, [len(t) - 1 for t in tokens], edit, device)

    def name_ids(names):
        return torch.tensor([answer_token_id(tokenizer, n) for n in names])

    train = world.generate("ioi", 3 * n_prompts, seed=seed, split="train")
    intercept, dictionary = supervised_dictionary(train, final_run([e.prompt for e in train])[0])
    evaluation = world.generate("ioi", n_prompts, seed=seed, split="heldout")
    acts, logits = final_run([e.prompt for e in evaluation])
    correct = logits.argmax(-1).cpu() == name_ids([e.labels["io"] for e in evaluation])
    io_names = [n for n in world.names if ("io", n) in dictionary]
    cfs = {
        a: [
            counterfactual(e.labels, e.prompt, a, new_io_name(io_names, e.labels, seed, i))
            for i, e in enumerate(evaluation)
        ]
        for a in ATTRIBUTE_EDITS
    }
    cf_runs = {a: final_run([c.prompt for c in cs]) for a, cs in cfs.items()}
    # Every value an edit goes from or to must have a dictionary direction.
    known = torch.tensor(
        [
            all((r, e.labels[n]) in dictionary for r in ("io", "s") for n in ("io", "s"))
            for e in evaluation
        ]
    )
    usable = correct & known
    for a, cs in cfs.items():
        usable &= cf_runs[a][1].argmax(-1).cpu() == name_ids([c.answer for c in cs])
    rows = usable.nonzero()[:, 0]
    label_of = dict(IOI_ATTRIBUTES)
    checks = []
    for a, cs in cfs.items():
        chosen = [cs[r] for r in rows.tolist()]
        base = [evaluation[r] for r in rows.tolist()]
        target = name_ids([c.target for c in chosen])
        delta = torch.stack(
            [
                dictionary[(a, c.to_value)] - dictionary[(a, e.labels[label_of[a]])]
                for c, e in zip(chosen, base)
            ]
            or [torch.zeros_like(intercept)]  # nothing usable (an untrained model): scored 0
        ).to(acts.dtype)[: len(chosen)]
        edits = {
            "patch": cf_runs[a][0][rows],
            "supervised_edit": acts[rows] + delta.to(acts.device),
        }
        for kind, new_acts in edits.items():
            hit = 0.0
            if len(rows):
                _, out = final_run([e.prompt for e in base], replace_with(new_acts))
                hit = (out.argmax(-1).cpu() == target).double().mean().item()
            what = "whole activation from" if kind == "patch" else "supervised edit toward"
            checks.append(
                SiteCheck(
                    f"ioi_{a}_{kind}",
                    hit,
                    0.8,
                    len(rows),
                    correct.double().mean().item(),
                    f"{hook}, final token, {what} the {a}-only counterfactual: share of "
                    f"held-out prompts whose answer becomes {EDIT_TARGETS[a]}",
                )
            )
    return checks


def all_checks(bridge, tokenizer, world, hook: str, n_pairs: int, device=None) -> list[SiteCheck]:
    """Every site check at `hook`: the entity swaps, the operand patches, the IOI edits."""
    checks = entity_swap_checks(bridge, tokenizer, world, hook, n_pairs, device=device)
    checks += operand_patch_checks(bridge, tokenizer, world, hook, n_pairs, device=device)
    return checks + ioi_edit_checks(bridge, tokenizer, world, hook, n_pairs, device=device)


def site_checks(bridge, tokenizer, world, hook: str, n_pairs: int = 300, device=None) -> dict:
    """{name: SiteCheck.as_dict()} of every site check at `hook` (values rounded to 1e-4)."""
    checks = all_checks(bridge, tokenizer, world, hook, n_pairs, device)
    return {
        c.name: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in c.as_dict().items()}
        for c in checks
    }
