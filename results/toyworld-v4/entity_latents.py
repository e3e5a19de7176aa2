"""What do an SAE's latents at the last entity token code? For every live latent (firing on more
than 1% of 3,000 fact prompts) the correlation ratio η²(labels) of its activation, divided by
η²(city): 1 when the latent's city means depend on those labels alone. A latent is assigned to
the coarsest label whose ratio exceeds 0.8 (the ravel task's ATTRIBUTE_LEVEL), trying in order:
one attribute (country, language, climate: 6-8 values), one syllable of the name (first,
second: 12 values each); otherwise it is "city-specific" (its city means need finer groups, or
the city itself). Pairs of attributes are not tried: with 44-64 values over 144 cities they
nearly name the city, and a random dictionary's latents reach 0.85 on them. Latents whose
variation is mostly not the city's (η²(city) < 0.1: template or context) are "not entity".
Usage: python entity_latents.py HOOK RUN_DIR METHOD KNOB"""

import sys
from collections import Counter
from pathlib import Path

import torch

from saebench.interventions import run_patched, separation_scores, tokenize
from saebench.saved_format import load_sae
from saebench.toyworld import load_world
from saebench.toyworld.model import load_checkpoint
from saebench_tasks.ground_truth.units import last_word_of
from saebench_tasks.ravel.specificity import ATTRIBUTE_LEVEL, ENTITY_DEPENDENT, LIVE_RATE

CHECKPOINT = Path(__file__).parents[2] / "saebench" / "toyworld" / "checkpoint_v4"


def entity_token_activations(hook: str):
    bridge, _, _, record = load_checkpoint(CHECKPOINT)
    world = load_world(record)
    examples = world.generate("facts", 3000, seed=11)
    positions = [
        last_word_of(e.prompt.split(), e.labels["entity"].split()) + 1  # + BOS
        for e in examples
    ]
    acts, _ = run_patched(bridge, hook, tokenize(bridge, [e.prompt for e in examples]), positions)
    table = {c["city"]: c for c in world.cities}
    cities = [e.labels["entity"] for e in examples]
    attributes = list(world.attributes)
    labels = {a: [table[c][a] for c in cities] for a in attributes}
    labels["first syllable"] = [c.split()[0] for c in cities]
    labels["second syllable"] = [c.split()[1] for c in cities]
    return acts, cities, labels, [*attributes, "first syllable", "second syllable"]


def classify(
    codes: torch.Tensor, cities: list, labels: dict, order: list
) -> tuple[Counter, dict[str, float]]:
    live = (codes != 0).double().mean(0) > LIVE_RATE
    codes = codes[:, live]
    by_city = separation_scores(codes, cities)
    ratios = {
        name: separation_scores(codes, labels[name]) / by_city.clamp_min(1e-12) for name in order
    }
    kinds: Counter = Counter()
    for j in range(codes.shape[1]):
        if by_city[j] < ENTITY_DEPENDENT:
            kinds["not entity"] += 1
            continue
        kind = next((name for name in order if ratios[name][j] > ATTRIBUTE_LEVEL), "city-specific")
        kinds[kind] += 1
    # The best latent per label among the entity-dependent ones: how close any latent comes.
    entity = by_city >= ENTITY_DEPENDENT
    best = {name: float(ratios[name][entity].max()) for name in order if bool(entity.any())}
    return kinds, best


def main(hook: str, run_dir: str, method: str, knob: str) -> None:
    acts, cities, labels, order = entity_token_activations(hook)
    print(f"{run_dir} {method} {knob} at {hook}: live latents at the entity token by kind")
    for seed_dir in sorted((Path(run_dir) / "saes" / method / knob).glob("seed*")):
        sae = load_sae(seed_dir)
        with torch.no_grad():
            codes = sae.encode(acts)
        kinds, best = classify(codes, cities, labels, order)
        total = sum(kinds.values())
        shares = ", ".join(f"{k} {v} ({v / total:.2f})" for k, v in kinds.most_common())
        print(f"  {seed_dir.name}: {total} live; {shares}")
        print(
            "    best ratio η²(label)/η²(city) of any latent: "
            + ", ".join(f"{name} {value:.2f}" for name, value in best.items())
        )


if __name__ == "__main__":
    main(*sys.argv[1:5])
