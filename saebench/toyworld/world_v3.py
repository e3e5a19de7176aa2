"""Toy world v3 (a candidate, not shipped): v2 with the two changes its recipe was missing.

v2's shipped model meets the entity and operand site checks at `blocks.1.hook_resid_pre`, but
the same recipe with seed 1 does not, and its held-out fact templates miss their target
(docs/toyworld.md). v3 changes only the fact prompts:

- **The subject is marked by its neighbours, not by its position.** Most fact prompts name a
  second city in a clause ("unlike {d}"), placed before the subject or right after it. The
  question's city is then neither the most recent city nor the first, and the bag of syllables
  a first-layer attention head could collect at the final token names two cities in both
  pairings. So the final token cannot recover the subject without reading the composed,
  context-marked entity at the city's own last token: the route v2's seed 0 took and seed 1
  did not (v2: the final token composed the city from the syllables it read directly).
- **Compositional templates.** Every attribute has two question tails ("the country is", "you
  are in the country of"), and five sentence frames place the city ("in {e} …", "if you visit
  {e} …"). An attribute's held-out template is a frame it never appears in (with its first
  tail), while that frame is trained with the other attributes and the tail with the other
  frames. v2's held-out templates shared one frame no training template used, and the small
  model could not read the attribute off an unseen frame.

Everything else (names, calendar, IOI, probing, spelling, cities and their attributes) is v2's.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from saebench.toyworld.world import NAMES, Example
from saebench.toyworld.world_v2 import DISTRACTOR_CITY_CLAUSES, WorldV2, filler, template_words

WORLD_VERSION = 3

FRAMES = (
    "in {e} {t}",
    "the city of {e} is where {t}",
    "{e} is a place where {t}",
    "if you visit {e} {t}",
    "we know that in {e} {t}",
)
TAILS = {
    "country": ("the country is", "you are in the country of"),
    "language": ("people speak", "the language is"),
    "climate": ("the weather is", "most days are"),
}
# The frame each attribute never appears in while training: its held-out template's frame.
HELDOUT_FRAME = {"country": 3, "language": 2, "climate": 1}


def fact_templates_v3() -> dict[str, tuple[str, ...]]:
    """Per attribute: every (frame, tail) but the held-out frame, then the held-out template
    (held-out frame, first tail) last, as every task expects of `fact_templates`."""
    templates = {}
    for attribute, tails in TAILS.items():
        held = HELDOUT_FRAME[attribute]
        trained = [
            FRAMES[f].replace("{t}", tail)
            for f in range(len(FRAMES))
            if f != held
            for tail in tails
        ]
        templates[attribute] = (*trained, FRAMES[held].replace("{t}", tails[0]))
    return templates


FACT_TEMPLATES_V3 = fact_templates_v3()


class WorldV3(WorldV2):
    """WorldV2 with subject-marked distractors and compositional fact templates."""

    version = WORLD_VERSION
    fact_templates: Mapping[str, tuple[str, ...]] = FACT_TEMPLATES_V3

    def __init__(self, seed: int = 0, max_day_offset: int = 11, distractor_rate: float = 0.8):
        super().__init__(seed=seed, max_day_offset=max_day_offset, distractor_rate=distractor_rate)

    def _fact(self, rng: random.Random, split: str) -> Example:
        city, attribute, template_id = self._fact_question(rng, split)
        placement = "none"
        prefix, entity = "", city["city"] + filler(rng, lead=" ,")
        if rng.random() < self.distractor_rate:
            other = rng.choice([c for c in self.cities if c["city"] != city["city"]])["city"]
            if rng.random() < 0.5:
                placement = "before"
                clause = rng.choice(DISTRACTOR_CITY_CLAUSES)
                prefix = clause.format(n=rng.choice(NAMES), d=other) + " "
            else:
                placement = "after"
                entity = f"{city['city']} , unlike {other} ,"
        prompt = prefix + self.fact_templates[attribute][template_id].format(e=entity)
        return self._fact_example(city, attribute, template_id, prompt, placement)

    def words(self) -> set[str]:
        return super().words() | template_words(FACT_TEMPLATES_V3)  # v2's templates' words too
