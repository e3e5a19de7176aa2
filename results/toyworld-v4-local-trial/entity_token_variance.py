"""Share of the last entity token's variance at blocks.1 (fact prompts) explained by the class
means of the city, of each attribute and of each syllable (η², descriptive): why an SAE keeps
city-level latents there. Usage: python entity_token_variance.py [--hook HOOK] CHECKPOINT_DIR ...
(default hook blocks.1.hook_resid_pre)."""

import sys

import numpy as np

from saebench.interventions import run_patched, tokenize
from saebench.toyworld import load_world
from saebench.toyworld.model import load_checkpoint
from saebench_tasks.ground_truth.units import last_word_of

DEFAULT_HOOK = "blocks.1.hook_resid_pre"


def eta2(x: np.ndarray, labels: list[str]) -> float:
    """Between-class sum of squares over the total (class means of `labels`)."""
    x = x - x.mean(0)
    between = 0.0
    for value in set(labels):
        rows = [i for i, label in enumerate(labels) if label == value]
        between += len(rows) * float((x[rows].mean(0) ** 2).sum())
    return between / float((x**2).sum())


def main(directories: list[str], hook: str = DEFAULT_HOOK) -> None:
    for directory in directories:
        bridge, _, _, record = load_checkpoint(directory)
        world = load_world(record)
        examples = world.generate("facts", 3000, seed=11)
        positions = [
            last_word_of(e.prompt.split(), e.labels["entity"].split()) + 1  # + BOS
            for e in examples
        ]
        tokens = tokenize(bridge, [e.prompt for e in examples])
        acts, _ = run_patched(bridge, hook, tokens, positions)
        x = acts.double().numpy()
        table = {c["city"]: c for c in world.cities}
        cities = [e.labels["entity"] for e in examples]
        shares = {"city": eta2(x, cities)}
        for attribute in world.attributes:
            shares[attribute] = eta2(x, [table[c][attribute] for c in cities])
        shares["prefix"] = eta2(x, [c.split()[0] for c in cities])
        shares["suffix"] = eta2(x, [c.split()[1] for c in cities])
        rounded = {k: round(v, 3) for k, v in shares.items()}
        print(directory, hook, {"n_cities": len(world.cities), **rounded})


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--hook"]:
        main(args[2:], args[1])
    else:
        main(args)
