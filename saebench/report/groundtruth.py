"""Which ground-truth label does each latent fire on? Held-out precision and recall per latent.

The toy world (`ModelHandle.world`) generates labelled examples of each family it declares
(`World.variables()`: family -> variable -> possible values). Every example gets, for every
variable of its family, the value it has (or none: a continent prompt does not say which day it
is). A latent *fires on* an example when it is active at any of its tokens; the label
`variable=value` is *positive* on the examples that have that value and negative on every other
example, of any family: a latent that fires on "eight" in calendar prompts and on "and" in
every probing sentence is no "offset=8" latent.

For each latent the label with the best F1 on a train half of the examples is picked, and its
precision P(label | fires), recall P(fires | label) and F1 are measured on the other, held-out
half: picking the best of hundreds of labels and scoring it on the same examples is biased
upwards (the same protocol as the tasks' held-out detectors, saebench.probing). Per label, the
latent picked on train and its held-out F1 say whether the dictionary has a latent for that
value at all (the comparison view's "captured").

Only the world's generic contract is read (generate, variables, Example.labels); no task is
named. Labels are read from an example's `labels` directly, or through the world's two label
shapes that name the variable indirectly: {"attribute": VAR, "value": VALUE} (a fact prompt) and
{"kind": VAR, "start": INDEX} (a calendar prompt, INDEX into VAR's values); an example about an
entity of the world's fact table (`world.cities`) knows every attribute of that entity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Fewer positives than this in either half: a held-out precision/recall too noisy to show.
MIN_POSITIVES = 3
LABEL_SEED = 4_243  # the examples' generator seed (apart from every task's data seed)
SPLIT_SEED = 4_244


@dataclass(frozen=True)
class LabelledExamples:
    """World examples with boolean ground-truth labels, split once into train / held-out."""

    texts: tuple[str, ...]
    families: tuple[str, ...]  # per example
    names: tuple[str, ...]  # per label column: "variable=value", e.g. "country=france"
    positive: np.ndarray  # bool [n_examples, n_labels]: the example has that value
    train: np.ndarray  # bool [n_examples]: in the train half (else held out)


@dataclass(frozen=True)
class LatentLabels:
    """Per latent, the label picked on train (-1: none fires with F1 > 0) and its held-out
    precision, recall and F1; per label, the latent picked on train and its held-out F1."""

    label: np.ndarray  # int [d_sae]
    precision: np.ndarray  # float [d_sae]
    recall: np.ndarray
    f1: np.ndarray
    label_latent: np.ndarray  # int [n_labels]
    label_f1: np.ndarray  # float [n_labels]


def label_value(
    labels: Mapping[str, Any],
    variable: str,
    values: Sequence[Any],
    entities: Mapping[str, Mapping[str, Any]],
) -> str | None:
    """The example's value of `variable` as a string, or None when the example does not say
    (or says something outside the variable's declared values)."""
    found: Any = None
    if variable in labels:
        found = labels[variable]
    elif labels.get("attribute") == variable:
        found = labels.get("value")
    elif labels.get("kind") == variable and isinstance(labels.get("start"), int):
        start = labels["start"]
        found = values[start] if 0 <= start < len(values) else None
    elif str(labels.get("entity")) in entities:
        found = entities[str(labels["entity"])].get(variable)
    if found is None:
        return None
    declared = {str(v) for v in values}
    return str(found) if str(found) in declared else None


def world_examples(world, n_per_family: int, seed: int = LABEL_SEED) -> LabelledExamples | None:
    """`n_per_family` labelled examples of every family with variables; None when the world
    yields no label with MIN_POSITIVES positives in each half."""
    entities = {
        str(row.get("city", row.get("entity"))): row for row in getattr(world, "cities", []) or []
    }
    texts: list[str] = []
    families: list[str] = []
    rows: list[dict[str, str]] = []  # per example: variable -> its value
    names: dict[str, tuple[str, str]] = {}  # label name -> (variable, value)
    for family, variables in world.variables().items():
        if not variables:
            continue
        try:
            examples = world.generate(family, n_per_family, seed=seed)
        except ValueError:  # a declared family this world cannot generate on its own
            continue
        # One example per text: a repeated text has identical activations, and one copy on
        # each side of the split would score a memorised train row as held out.
        unique: dict[str, object] = {}
        for candidate in examples:
            unique.setdefault(candidate.text, candidate)
        examples = list(unique.values())
        for example in examples:
            known: dict[str, str] = {}
            for variable, values in variables.items():
                value = label_value(example.labels, variable, list(values), entities)
                if value is not None:
                    known[variable] = value
                    names.setdefault(f"{variable}={value}", (variable, value))
            texts.append(example.text)
            families.append(family)
            rows.append(known)
    if not texts:
        return None
    ordered = sorted(names)
    positive = np.array(
        [[row.get(names[n][0]) == names[n][1] for n in ordered] for row in rows], dtype=bool
    ).reshape(len(rows), len(ordered))
    train = split_halves(families, SPLIT_SEED)
    enough = ((positive & train[:, None]).sum(0) >= MIN_POSITIVES) & (
        (positive & ~train[:, None]).sum(0) >= MIN_POSITIVES
    )
    if not enough.any():
        return None
    return LabelledExamples(
        texts=tuple(texts),
        families=tuple(families),
        names=tuple(n for n, keep in zip(ordered, enough) if keep),
        positive=positive[:, enough],
        train=train,
    )


def split_halves(groups: Sequence[str], seed: int) -> np.ndarray:
    """bool [n]: a seeded half of each group's examples is train (the rest held out)."""
    rng = np.random.default_rng(seed)
    groups_array = np.asarray(groups)
    train = np.zeros(len(groups_array), dtype=bool)
    for group in sorted(set(groups)):  # sorted: the same draws in the same order every time
        members = rng.permutation(np.flatnonzero(groups_array == group))
        train[members[: len(members) // 2]] = True
    return train


def counts(
    fires: np.ndarray, positive: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true positives [n_labels, d_sae], firings [d_sae], positives [n_labels]) over `rows`
    (bool [n_examples]). Exact: sums of 0/1 far below 2**53."""
    active = fires[rows].astype(np.float64)
    hits = positive[rows].astype(np.float64)
    return hits.T @ active, active.sum(0), hits.sum(0)


def f1_from_counts(tp: np.ndarray, fired: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """[n_labels, d_sae] F1 = 2·TP / (fired + positives) (= 2PR/(P+R)); 0 without a true
    positive. `fired` [d_sae], `positives` [n_labels]."""
    denominator = np.asarray(fired)[None, :] + np.asarray(positives)[:, None]
    return np.where(tp > 0, 2 * tp / np.maximum(denominator, 1), 0.0)


def label_latents(fires: np.ndarray, examples: LabelledExamples) -> LatentLabels:
    """Per latent and per label, the train-picked match scored on the held-out half.

    `fires`: bool [n_examples, d_sae], the latent active anywhere in the example."""
    fires = np.asarray(fires, dtype=bool)
    train, test = examples.train, ~examples.train
    tp, fired, positives = counts(fires, examples.positive, train)
    train_f1 = f1_from_counts(tp, fired, positives)  # [n_labels, d_sae]
    tp_test, fired_test, positives_test = counts(fires, examples.positive, test)
    test_f1 = f1_from_counts(tp_test, fired_test, positives_test)
    latents = np.arange(fires.shape[1])
    label = train_f1.argmax(0)
    picked_tp = tp_test[label, latents]
    precision = picked_tp / np.maximum(fired_test, 1)
    recall = picked_tp / np.maximum(positives_test[label], 1)
    none = train_f1.max(0) <= 0
    label_latent = train_f1.argmax(1)
    return LatentLabels(
        label=np.where(none, -1, label).astype(np.int64),
        precision=np.where(none, 0.0, precision),
        recall=np.where(none, 0.0, recall),
        f1=np.where(none, 0.0, test_f1[label, latents]),
        label_latent=label_latent.astype(np.int64),
        label_f1=test_f1[np.arange(len(examples.names)), label_latent],
    )
