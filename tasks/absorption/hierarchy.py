"""Parent → child hierarchies of the toy world, and the tokens each one is measured on.

A hierarchy maps child words (the tokens) to one parent value each, as the first letter does
a word in Chanin et al. Candidates, in order of preference:

* `first_letter`: the spelling family's words → their first letter, read at the word in
  "{word} starts with the letter …" / "{word} is spelled …" (worlds with a spelling family:
  toy world v2; the paper's family). A word-level model without it cannot know spelling.
* `topic`: the topic nouns → their topic, read at the first noun of a probing sentence
  ("the friend likes the soup", whose left context says nothing about the topic). Nouns that
  are also objects or places ("ball") are left out: their parent is ambiguous.
* `city_<attribute>`: the cities → an attribute (v1: continent, country; v2: country,
  language, climate), read at the city's last token after each training fact template's head.

Only parent values with at least MIN_WORDS child words are kept. The child words of each value
are split into train and held-out words (stratified, fixed seed): probes and main latents are
fitted on the train words' tokens, absorption is scored on the held-out words' tokens.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from saebench_tasks.absorption import config


@dataclass(frozen=True)
class Hierarchy:
    """One candidate hierarchy: child word → parent value, and the texts it is read in."""

    name: str
    description: str
    parent_of: dict[str, str]  # child word -> parent value (values with >= MIN_WORDS words)
    prefixes: tuple[tuple[str, str], ...]  # (text ending at the child word, the child word)

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.parent_of.values())))


def safe_name(value: str) -> str:
    """A parent value as a metric-name suffix ("north america" → "north_america")."""
    return re.sub(r"[^0-9A-Za-z]+", "_", value).strip("_") or "blank"


def _keep_frequent(parent_of: dict[str, str]) -> dict[str, str]:
    counts: dict[str, int] = defaultdict(int)
    for value in parent_of.values():
        counts[value] += 1
    return {w: v for w, v in parent_of.items() if counts[v] >= config.MIN_WORDS}


def _make(name, description, parent_of, prefixes) -> Hierarchy | None:
    parent_of = _keep_frequent(parent_of)
    prefixes = tuple((text, word) for text, word in prefixes if word in parent_of)
    if len(set(parent_of.values())) < config.MIN_VALUES or not prefixes:
        return None
    return Hierarchy(name, description, parent_of, prefixes)


def first_letter(world, n_texts: int) -> Hierarchy | None:
    if "spelling" not in getattr(world, "families", ()):
        return None
    examples = world.generate("spelling", n_texts, seed=config.DATA_SEED)
    words = {e.labels["word"] for e in examples}
    return _make(
        "first_letter",
        "spelling-family words → first letter, at the word opening a spelling prompt",
        {w: w[0] for w in words},
        [(e.labels["word"], e.labels["word"]) for e in examples],
    )


def topic(world, n_texts: int) -> Hierarchy | None:
    from saebench.toyworld.world import NAMES, OBJECTS, PLACES, TOPICS

    ambiguous = set(NAMES) | set(OBJECTS) | set(PLACES)
    parent_of = {w: t for t, words in TOPICS.items() for w in words if w not in ambiguous}
    prefixes = []
    for example in world.generate("probing", n_texts, seed=config.DATA_SEED):
        words = example.text.split()  # "the {subject} {verb} the {noun1} and the {noun2} ..."
        prefixes.append((" ".join(words[:5]), words[4]))
    return _make(
        "topic", "topic nouns → topic, at the first noun of a probing sentence", parent_of, prefixes
    )


def city_attribute(world, attribute: str) -> Hierarchy | None:
    heads = sorted(
        {
            template.split("{e}")[0]
            for templates in world.fact_templates.values()
            for template in templates[:-1]  # the last template of each attribute is held out
        }
    )
    parent_of = {c["city"]: c[attribute] for c in world.cities}
    prefixes = [(head + city, city) for city in sorted(parent_of) for head in heads]
    return _make(
        f"city_{attribute}",
        f"cities → {attribute}, at the city's last token after each training fact template's "
        f"head ({len(heads)} heads)",
        parent_of,
        prefixes,
    )


def candidates(world, n_texts: int) -> list[Hierarchy]:
    """The world's candidate hierarchies, in order of preference (module docstring)."""
    found = [first_letter(world, n_texts), topic(world, n_texts)]
    found += [city_attribute(world, a) for a in getattr(world, "attributes", ())]
    return [h for h in found if h is not None]


def split_words(parent_of: dict[str, str], seed: int = config.DATA_SEED) -> frozenset[str]:
    """The held-out child words: TEST_FRACTION of each value's words (rounded, at least one),
    drawn with a fixed seed; at least two words of every value stay for training."""
    rng = np.random.default_rng(seed)
    by_value: dict[str, list[str]] = defaultdict(list)
    for word, value in sorted(parent_of.items()):
        by_value[value].append(word)
    held_out: set[str] = set()
    for value in sorted(by_value):
        words = list(rng.permutation(by_value[value]))
        n_test = min(max(1, round(config.TEST_FRACTION * len(words))), len(words) - 2)
        held_out.update(words[:n_test])
    return frozenset(held_out)
