"""Is the last entity token additive in its parts? Joint least squares of the activation (3,000
fact prompts) on one-hot syllables and one-hot attribute values, fitted on the prompts of 2/3 of
the cities and scored (R²) on the other third, against the city's own class means (η², in-sample, the
ceiling of any function of the city). The held-out R² is a lower bound on the additive share:
each held-out city's own code counts against it, and the fit has ~42 columns on 96 cities. So
the share is also estimated as variance components: the additive model's adjusted R² on the
144 city means, times η². An additive code (syllables + attribute values) is what an SAE could
split into attribute latents; what it leaves is a city-specific code.
Usage: python entity_token_additive.py [--hook HOOK] CHECKPOINT_DIR ..."""

import sys

import numpy as np

from saebench.interventions import run_patched, tokenize
from saebench.toyworld import load_world
from saebench.toyworld.model import load_checkpoint
from saebench_tasks.ground_truth.units import last_word_of

DEFAULT_HOOK = "blocks.1.hook_resid_pre"


def one_hot(labels: list[str]) -> np.ndarray:
    values = sorted(set(labels))
    return np.array([[label == v for v in values] for label in labels], dtype=float)


def held_out_r2(x: np.ndarray, design: np.ndarray, train: np.ndarray) -> float:
    design = np.hstack([design, np.ones((len(x), 1))])
    coef, *_ = np.linalg.lstsq(design[train], x[train], rcond=None)
    test = ~train
    residual = x[test] - design[test] @ coef
    centred = x[test] - x[train].mean(0)
    return 1.0 - float((residual**2).sum()) / float((centred**2).sum())


def main(directories: list[str], hook: str = DEFAULT_HOOK) -> None:
    shares_adjusted: dict[str, dict[str, float]] = {}
    for directory in directories:
        bridge, _, _, record = load_checkpoint(directory)
        world = load_world(record)
        examples = world.generate("facts", 3000, seed=11)
        positions = [
            last_word_of(e.prompt.split(), e.labels["entity"].split()) + 1  # + BOS
            for e in examples
        ]
        acts, _ = run_patched(
            bridge, hook, tokenize(bridge, [e.prompt for e in examples]), positions
        )
        x = acts.double().numpy()
        table = {c["city"]: c for c in world.cities}
        cities = [e.labels["entity"] for e in examples]
        rng = np.random.default_rng(0)
        names = sorted(set(cities))
        held = set(rng.choice(names, size=len(names) // 3, replace=False).tolist())
        train = np.array([c not in held for c in cities])
        syllables = np.hstack(
            [one_hot([c.split()[0] for c in cities]), one_hot([c.split()[1] for c in cities])]
        )
        attributes = np.hstack([one_hot([table[c][a] for c in cities]) for a in world.attributes])
        x_centred = x - x.mean(0)
        city_means = {
            c: x_centred[[i for i, k in enumerate(cities) if k == c]].mean(0) for c in names
        }
        city_eta2 = sum(
            cities.count(c) * float((m**2).sum()) for c, m in city_means.items()
        ) / float((x_centred**2).sum())
        # Variance components on the 144 city means (weighted by prompt count): the share of
        # the between-city variance an additive model explains, adjusted for its parameters
        # (R²_adj = 1 − (1 − R²)(n − 1)/(n − p − 1), n cities, p one-hot columns), times η².
        means = np.array([city_means[c] for c in names])
        weights = np.array([cities.count(c) for c in names], dtype=float)
        index = {c: cities.index(c) for c in names}
        for label, design in (
            ("syllables", syllables),
            ("attributes", attributes),
            ("syllables+attributes", np.hstack([syllables, attributes])),
        ):
            rows = design[[index[c] for c in names]]
            rows = np.hstack([rows, np.ones((len(names), 1))])
            rank = np.linalg.matrix_rank(rows)
            w = np.sqrt(weights)[:, None]
            coef, *_ = np.linalg.lstsq(rows * w, means * w, rcond=None)
            residual = ((means - rows @ coef) ** 2 * weights[:, None]).sum()
            total = (means**2 * weights[:, None]).sum()
            r2 = 1.0 - residual / total
            n, p = len(names), rank - 1
            adjusted = 1.0 - (1.0 - r2) * (n - 1) / (n - p - 1)
            shares_adj = shares_adjusted.setdefault(directory, {})
            shares_adj[f"{label}_share_adjusted"] = round(float(city_eta2 * adjusted), 3)
        shares = {
            "city_eta2": city_eta2,
            "syllables": held_out_r2(x, syllables, train),
            "attributes": held_out_r2(x, attributes, train),
            "syllables+attributes": held_out_r2(x, np.hstack([syllables, attributes]), train),
        }
        rounded = {k: round(v, 3) for k, v in shares.items()}
        print(directory, hook, {"held_out_cities": len(held), **rounded}, flush=True)
        print("   variance components (share of all variance):", shares_adjusted[directory])


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--hook"]:
        main(args[2:], args[1])
    else:
        main(args)
