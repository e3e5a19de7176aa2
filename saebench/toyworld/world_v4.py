"""Toy world v4 (`--model toyworld-v4`): v3 with a composed calendar operand and more cities.

v3 with a local first layer (`--local-layer0`) meets the entity site checks on two seeds, but
two things still keep the intervention tasks from separating methods (docs/toyworld.md):

- **The operand is copied to the next token.** Layer 0's previous-token attention leaves the
  day's embedding at the token after it, and that copy is what later layers read, so patching
  the day's own token at blocks.1 moves no answer. The city does not have this problem: its
  name is two tokens, and the token after it receives only the second syllable. v4 composes
  the operand the same way: it is "monday", "the day after monday" or "the day before monday"
  (month: "the month after may"), and the answer counts from the *effective* day. The token
  after the day word then receives only the named day, not the shift, so a copy there is
  not the operand; the day word's own position, which sees "after" / "before" through the
  local layer, is where the effective day can be composed before the hook. Distractor days
  carry a shift too, so collecting "after" and the named day anywhere in the prompt does not
  recover the operand either.
- **Few cities make a lookup table cheap.** With 64 cities a trained SAE keeps about one
  latent per pair of cities at the entity token, and no latent is attribute-level. v4 has
  144 cities (12 × 12 syllables) with the same 8 countries, 8 languages and 6 climates, so
  each value is shared by 16-24 cities: the hope was that attribute latents would then pay
  for themselves (they did not: docs/toyworld.md, "The first v4 trials").

Labels: `start` is the effective operand (what the answer counts from, what the circular task
groups by), `named` the index of the day or month word in the prompt, `shift` their difference.
`saebench.toyworld.world.operand_word` gives the word to intervene on in every world version.
"""

from __future__ import annotations

import random

from saebench.toyworld.world import _stable_hash
from saebench.toyworld.world_v2 import (
    CITY_PREFIXES,
    CITY_SUFFIXES,
    COUNTRIES,
    LANGUAGES,
    city_records,
)
from saebench.toyworld.world_v3 import WorldV3

WORLD_VERSION = 4

CITY_PREFIXES_V4 = [*CITY_PREFIXES, "gar", "pim", "hol", "sav"]
CITY_SUFFIXES_V4 = [*CITY_SUFFIXES, "ela", "orn", "ivo", "ast"]
# The operand's shift and the words that state it, between "the {unit}" and the named value.
SHIFT_WORDS = {1: "after", -1: "before"}
SHIFTS = (0, 1, -1)


def cities_v4(seed: int) -> list[dict]:
    """144 two-token cities. Country × language cycles through the 64 pairs in shuffled
    rounds (each pair 2 or 3 times), climate is an independent balanced assignment, so no
    attribute is implied by another. Deterministic in `seed`."""
    rng = random.Random(_stable_hash(seed, "cities-v4"))
    names = [f"{p} {s}" for p in CITY_PREFIXES_V4 for s in CITY_SUFFIXES_V4]
    pairs: list[tuple[str, str]] = []
    while len(pairs) < len(names):
        round_ = [(c, g) for c in COUNTRIES for g in LANGUAGES]
        rng.shuffle(round_)
        pairs += round_
    pairs = pairs[: len(names)]
    rng.shuffle(pairs)
    return city_records(names, pairs, rng)


def operand_phrase(values: list[str], unit: str, named: int, shift: int) -> str:
    """The operand as the prompt states it: "monday" (shift 0), "the day after monday" (+1),
    "the day before monday" (−1)."""
    if shift == 0:
        return values[named]
    return f"the {unit} {SHIFT_WORDS[shift]} {values[named]}"


class WorldV4(WorldV3):
    """WorldV3 with 144 cities and shifted calendar operands (module docstring)."""

    version = WORLD_VERSION

    def __init__(self, seed: int = 0, max_day_offset: int = 11, distractor_rate: float = 0.8):
        super().__init__(seed=seed, max_day_offset=max_day_offset, distractor_rate=distractor_rate)
        self.cities = cities_v4(seed)

    def _operand(
        self, rng: random.Random, values: list[str], unit: str, index: int
    ) -> tuple[str, dict]:
        """The effective value `index` stated with a random shift from the named one."""
        shift = rng.choice(SHIFTS)
        named = (index - shift) % len(values)
        return operand_phrase(values, unit, named, shift), {"named": named, "shift": shift}

    def words(self) -> set[str]:
        return super().words() | set(CITY_PREFIXES_V4 + CITY_SUFFIXES_V4) | {"the", "before"}
