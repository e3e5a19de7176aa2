"""The toy world's IOI edits: one-attribute counterfactuals (Makelov, Lange & Nanda 2024),
each with the answer an edit of that attribute alone should give on the base prompt, and the
supervised dictionary the edits use. Shared by the `ioi` task and the world's site checks.

A base prompt has two names: IO (said once) and S (said twice, last just before the answer).
- io: IO → a third name C, in both the prompt and the answer (the paper's `with_changed_ioname`).
  The base prompt does not contain C, so only an activation that carries the IO name itself can
  produce it; a model that copies the non-S name from context has IO absent at the final token.
- s: S → the IO's name. In a two-name prompt IO is the name that is not S, so S cannot change
  alone without the answer staying put (the paper's `with_changed_sname` to a new name leaves
  the answer unchanged); the counterfactual is therefore the two names exchanged, and the edit
  moves only the S direction. Target: the base's S name (the other name of the base prompt).
- pos: the order of the first clause flipped (ABBA ↔ BABA), both names kept, so the
  counterfactual's answer is unchanged. An edit of Pos alone tells the final token that the IO
  stands at the other position; on the base prompt that position holds S, so the target is S.

Targets are names, checked against the argmax of the edited run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

ATTRIBUTE_EDITS = ("io", "s", "pos")
IOI_ATTRIBUTES = (("io", "io"), ("s", "s"), ("pos", "order"))  # (attribute, label key)
EDIT_TARGETS = {
    "io": "the counterfactual's new IO name (absent from the base prompt)",
    "s": "the base's S name (S set to the IO's name, so IO becomes the other name)",
    "pos": "the base's S name (the name at the counterfactual IO's position)",
}


@dataclass(frozen=True)
class Counterfactual:
    """`prompt`: the counterfactual; `answer`: the model's expected answer on it; `target`: the
    answer an edit of `attribute` alone should give on the base prompt; `to_value`: the
    attribute's value in the counterfactual (the supervised edit goes from the base's value)."""

    attribute: str
    prompt: str
    answer: str
    target: str
    to_value: str


def flipped(order: str) -> str:
    return "BABA" if order == "ABBA" else "ABBA"


def counterfactual(labels: dict, prompt: str, attribute: str, new_name: str) -> Counterfactual:
    """The one-attribute counterfactual of an IOI prompt (labels: io, s, order)."""
    io, s, order = labels["io"], labels["s"], labels["order"]
    words = prompt.split()
    if attribute == "io":
        if new_name in (io, s):
            raise ValueError(f"the new IO name must not be in the prompt, got {new_name!r}")
        return Counterfactual(
            "io", " ".join(new_name if w == io else w for w in words), new_name, new_name, new_name
        )
    if attribute == "s":
        exchanged = " ".join(s if w == io else io if w == s else w for w in words)
        return Counterfactual("s", exchanged, s, s, io)
    if attribute == "pos":
        first_io, first_s = words.index(io), words.index(s)
        words[first_io], words[first_s] = s, io
        return Counterfactual("pos", " ".join(words), io, s, flipped(order))
    raise ValueError(f"unknown IOI attribute {attribute!r}; choose from {ATTRIBUTE_EDITS}")


def new_io_name(names: list[str], labels: dict, seed: int, index: int) -> str:
    """A name that is neither IO nor S, fixed by (seed, index) so reruns pick the same."""
    others = [n for n in names if n not in (labels["io"], labels["s"])]
    return random.Random(seed * 1_000_003 + index).choice(others)


def supervised_dictionary(train, train_acts) -> tuple[torch.Tensor, dict]:
    """The additive model a ≈ c + Σ_i u_{i,v_i} over IO, S and Pos, fitted jointly by least
    squares on the one-hot design (the paper's alternative to per-attribute class means, and the
    one that stays right when, in a finite sample, one attribute's value predicts another's:
    with a few prompts per name the IO = A class mean also carries whichever S names those
    prompts had). Returns (c, {(attribute, value): u}); only differences of u within an
    attribute and the fitted c + Σ u are determined, and those are what the task uses."""
    columns = [("intercept", None)]
    for attribute, label in IOI_ATTRIBUTES:
        columns += [(attribute, v) for v in sorted({e.labels[label] for e in train})]
    label_of = dict(IOI_ATTRIBUTES)
    design = torch.zeros(len(train), len(columns), dtype=torch.float64)
    design[:, 0] = 1.0
    index = {c: j for j, c in enumerate(columns)}
    for row, e in enumerate(train):
        for attribute in label_of:
            design[row, index[(attribute, e.labels[label_of[attribute]])]] = 1.0
    targets = train_acts.double().cpu()
    # Minimum-norm solution: the design is rank-deficient (each block sums to the intercept).
    weights = torch.linalg.pinv(design) @ targets
    weights = weights.to(train_acts.device)
    dictionary = {c: weights[j] for c, j in index.items() if c[0] != "intercept"}
    return weights[0], dictionary
