"""Toy world v2: the same families, built so a deeper model computes them where the tasks look.

What v1 lacked (issue 15): at the SAE's hook the entity, the calendar operand and the attribute
representations were already gone from the positions the tasks patch, because a single attention
layer could copy a one-token entity or day straight to the final token. v2 makes that shortcut
fail, so the model must build the representation at the operand's own position first:

- **Cities have two-token names** (8 prefixes × 8 suffixes; neither token alone names a city),
  so the last entity token has to compose the entity before anything can look its facts up.
- **Distractors and variable distances.** Fact and calendar prompts often mention another
  city / day earlier in the same text, and a random filler phrase (often empty) sits between
  the operand and the question; the calendar operand comes first ("if today is monday , then in
  three days it will be"). So the final token can find the operand neither by content alone
  (the distractor has the same kind) nor by a fixed relative position (a first-layer
  previous-token head): the operand's own position has to mark itself from its left context.
  (Trial A, without fillers and with v1's "three days from monday is", had the day operand
  copied to the final token before blocks.1: 0% of answers moved by an operand patch.)
- **Independent attributes.** Country, language and climate are assigned to cities by
  independent seeded permutations (every (country, language) pair once), so "change the country,
  keep the language" is a coherent counterfactual (RAVEL's isolate) and no attribute is implied
  by another. The fact table is fictional on purpose; answers are still single English words.
- **Biographies name the city once**, then state its attributes in a random order with
  pronouns: knowing all attributes at the name is what predicts the text (the "knowledge
  augmentation" recipe of Allen-Zhu & Li, 2023, Part 3.1).
- **Sentiment has a consequence.** Probing texts end with "so the {subject} was happy/sad",
  which depends on the negation-resolved sentiment: a label that needs context and that the
  model has a reason to compute. The example's prompt stops before the consequence word, and
  probes read the prompt (`probe_text`): the word itself would give the label away.
- **Spelling** (issue 17, absorption): "{word} starts with {letter}" and "{word} is spelled
  l e t t e r s" for the world's nouns and names, a first-letter family as in Chanin et al.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from saebench.toyworld.world import (
    DAYS,
    FAMILIES,
    MONTHS,
    NAMES,
    NUMBER_WORDS,
    OBJECTS,
    PLACES,
    TOPICS,
    Example,
    World,
    _stable_hash,
)

WORLD_VERSION = 2

# fmt: off
CITY_PREFIXES = ["bel", "kor", "val", "mar", "tes", "dun", "ros", "fal"]
CITY_SUFFIXES = ["ora", "ith", "una", "esk", "ado", "ine", "upe", "amo"]
COUNTRIES = ["france", "spain", "italy", "japan", "brazil", "egypt", "canada", "india"]
LANGUAGES = ["french", "spanish", "italian", "japanese", "portuguese", "arabic", "english", "hindi"]
CLIMATES = ["rainy", "sunny", "snowy", "windy", "foggy", "humid"]
LETTERS = list("abcdefghijklmnopqrstuvwxyz")
# fmt: on
ATTRIBUTES = ("country", "language", "climate")

FACT_TEMPLATES_V2 = {
    "country": (
        "{e} is a city in the country of",
        "the city of {e} is located in the country of",
        "{e} belongs to the country of",
        "if you visit {e} you are in the country of",
    ),
    "language": (
        "people in {e} speak",
        "the main language spoken in {e} is",
        "in {e} most people speak",
        "if you visit {e} you will hear people speak",
    ),
    "climate": (
        "the weather in {e} is usually",
        "{e} is known for weather that is",
        "most days in {e} are",
        "if you visit {e} the weather will be",
    ),
}
# Sentences stating one attribute of a city already named ("it" / "there" refer back to it).
BIOGRAPHY_SENTENCES = {
    "country": ("it is in the country of {v} .", "it belongs to {v} ."),
    "language": ("people there speak {v} .", "the language there is {v} ."),
    "climate": ("the weather there is {v} .", "most days there are {v} ."),
}
DISTRACTOR_CITY_CLAUSES = (
    "{n} used to live in {d} .",
    "after a week in {d} ,",
    "{n} flew from {d} .",
    "unlike {d} ,",
)
DISTRACTOR_DAY_CLAUSES = (
    "{n} arrived on {d} .",
    "the {p} was closed on {d} .",
    "{n} left in {d} .",
    "the {p} opened in {d} .",
)
CONSEQUENCE = {"positive": "happy", "negative": "sad"}
# Arithmetic prompts: the operand {x} first, then a variable-length filler {f}, then the offset.
CALENDAR_TEMPLATES = (
    "if today is {x} , {f} then in {n} {units} it will be",
    "starting on {x} {f} and counting {n} {units} forward we reach",
    "from {x} , {f} {n} {units} later it is",
    "{x} was the start . {f} {n} {units} later it is",
)
FILLERS = ("", "", "as we know ,", "of course ,", "by the way ,", "as everyone agrees ,")


def filler(rng: random.Random, lead: str = "") -> str:
    """A random filler phrase (often empty), so positions relative to the answer vary."""
    words = rng.choice(FILLERS)
    return f"{lead} {words}" if words else ""


def fictional_cities(seed: int) -> list[dict]:
    """64 two-token cities; country × language a random bijection onto the 8 × 8 pairs, climate
    an independent balanced assignment. Deterministic in `seed`."""
    rng = random.Random(_stable_hash(seed, "cities-v2"))
    names = [f"{p} {s}" for p in CITY_PREFIXES for s in CITY_SUFFIXES]
    pairs = [(c, g) for c in COUNTRIES for g in LANGUAGES]
    rng.shuffle(pairs)
    return city_records(names, pairs, rng)


def city_records(names: list[str], pairs: list[tuple[str, str]], rng: random.Random) -> list[dict]:
    """One record per city name: its (country, language) pair, in order, and a climate from a
    balanced assignment shuffled by `rng` (independent of the pairs)."""
    climates = [CLIMATES[i % len(CLIMATES)] for i in range(len(names))]
    rng.shuffle(climates)
    return [
        {"city": name, "country": country, "language": language, "climate": climate}
        for name, (country, language), climate in zip(names, pairs, climates)
    ]


def template_words(templates: Mapping[str, tuple[str, ...]]) -> set[str]:
    """The words of fact templates, without the entity slot."""
    return {w for group in templates.values() for t in group for w in t.replace("{e}", "").split()}


def spelling_words() -> list[str]:
    """The words the spelling family spells: the world's nouns and names (not the cities'
    syllables, which only occur inside names)."""
    words = set(NAMES + PLACES + OBJECTS) | {w for lexicon in TOPICS.values() for w in lexicon}
    return sorted(words)


class WorldV2(World):
    """World with the v2 facts, calendar, probing and spelling (module docstring)."""

    version = WORLD_VERSION
    families: tuple[str, ...] = (*FAMILIES, "spelling")
    fact_templates: Mapping[str, tuple[str, ...]] = FACT_TEMPLATES_V2

    def __init__(self, seed: int = 0, max_day_offset: int = 11, distractor_rate: float = 0.5):
        super().__init__(seed=seed, max_day_offset=max_day_offset)
        self.cities = fictional_cities(seed)
        self.attributes = ATTRIBUTES
        self.distractor_rate = distractor_rate

    # ---- facts ----------------------------------------------------------------------------
    def _distractor_city(self, rng: random.Random, city: dict) -> str:
        other = rng.choice([c for c in self.cities if c["city"] != city["city"]])
        clause = rng.choice(DISTRACTOR_CITY_CLAUSES)
        return clause.format(n=rng.choice(NAMES), d=other["city"]) + " "

    def _fact_question(self, rng: random.Random, split: str) -> tuple[dict, str, int]:
        """(city, attribute, template id): the held-out split asks with the last template."""
        city = rng.choice(self.cities)
        attribute = rng.choice(self.attributes)
        templates = self.fact_templates[attribute]
        template_id = (
            len(templates) - 1 if split == "heldout" else rng.randrange(len(templates) - 1)
        )
        return city, attribute, template_id

    @staticmethod
    def _fact_example(city: dict, attribute: str, template_id: int, prompt: str, distractor):
        value = city[attribute]
        labels = {
            "entity": city["city"],
            "attribute": attribute,
            "value": value,
            "template": template_id,
            "distractor": distractor,
        }
        return Example(f"{prompt} {value} .", prompt, value, "facts", labels)

    def _fact(self, rng: random.Random, split: str) -> Example:
        city, attribute, template_id = self._fact_question(rng, split)
        prefix = self._distractor_city(rng, city) if rng.random() < self.distractor_rate else ""
        entity = city["city"] + filler(rng, lead=" ,")
        prompt = prefix + self.fact_templates[attribute][template_id].format(e=entity)
        return self._fact_example(city, attribute, template_id, prompt, bool(prefix))

    def _biography(self, rng: random.Random) -> Example:
        city = rng.choice(self.cities)
        sentences = [f"{city['city']} is a city ."]
        order = list(self.attributes)
        rng.shuffle(order)
        for attribute in order:
            sentence = rng.choice(BIOGRAPHY_SENTENCES[attribute])
            sentences.append(sentence.format(v=city[attribute]))
        return Example(
            " ".join(sentences),
            "",
            "",
            "facts",
            {"entity": city["city"], "attribute": "biography", "value": "", "template": -1},
        )

    # ---- calendar ----------------------------------------------------------------------
    def _calendar(self, rng: random.Random, split: str) -> Example:
        """v1's mentions; arithmetic prompts rewritten so the operand is never a fixed number of
        tokens before the final one (a first-layer previous-token head would copy it straight
        to the answer position), optionally after a distractor naming another value. How a
        value is stated is `_operand`'s (world v4 overrides it)."""
        example = super()._calendar(rng, split)
        labels = example.labels
        if labels["mention"]:
            labels["distractor"] = None
            return example
        kind, start, offset = labels["kind"], labels["start"], labels["offset"]
        values = DAYS if kind == "day" else MONTHS
        unit = "day" if kind == "day" else "month"
        units = unit + ("s" if offset > 1 else "")
        operand, operand_labels = self._operand(rng, values, unit, start)
        template = rng.choice(CALENDAR_TEMPLATES)
        prompt = template.format(x=operand, n=NUMBER_WORDS[offset], units=units, f=filler(rng))
        prompt = " ".join(prompt.split())
        labels |= operand_labels
        labels["distractor"] = None
        if rng.random() < self.distractor_rate:
            other = rng.choice([i for i in range(len(values)) if i != start])
            stated, _ = self._operand(rng, values, unit, other)
            clauses = DISTRACTOR_DAY_CLAUSES[:2] if kind == "day" else DISTRACTOR_DAY_CLAUSES[2:]
            clause = rng.choice(clauses).format(n=rng.choice(NAMES), d=stated, p=rng.choice(PLACES))
            prompt = f"{clause} {prompt}"
            labels["distractor"] = other
        answer = values[labels["answer"]]
        return Example(f"{prompt} {answer} .", prompt, answer, "calendar", labels)

    def _operand(
        self, rng: random.Random, values: list[str], unit: str, index: int
    ) -> tuple[str, dict]:
        """The calendar value `index` as a prompt states it, and the labels that says how
        (v2: its own name, no labels; no draw from `rng`)."""
        return values[index], {}

    # ---- probing --------------------------------------------------------------------------
    def _probing(self, rng: random.Random) -> Example:
        example = super()._probing(rng)
        number = example.labels["number"]
        subject = example.text.split()[1]
        be = "was" if number == "singular" else "were"
        # The consequence word states the sentiment: the prompt stops before it, so a probe
        # that reads the prompt (saebench.toyworld.world.probe_text) still needs the context.
        example.prompt = f"{example.text} so the {subject} {be}"
        example.answer = CONSEQUENCE[example.labels["sentiment"]]
        example.text = f"{example.prompt} {example.answer} ."
        return example

    # ---- spelling -------------------------------------------------------------------------
    def _spelling(self, rng: random.Random) -> Example:
        word = rng.choice(spelling_words())
        if rng.random() < 0.5:
            prompt, answer = f"{word} starts with the letter", word[0]
            text = f"{prompt} {answer} ."
        else:
            prompt, answer = f"{word} is spelled", word[0]
            text = f"{prompt} {' '.join(word)} ."
        return Example(text, prompt, answer, "spelling", {"word": word, "first_letter": word[0]})

    # ---- public API -----------------------------------------------------------------------
    def generate(self, family: str, n: int, seed: int = 0, split: str = "train") -> list[Example]:
        if family != "spelling":
            return super().generate(family, n, seed=seed, split=split)
        rng = random.Random(_stable_hash(self.seed, family, seed, split))
        return [self._spelling(rng) for _ in range(n)]

    MIX = {
        "ioi": 0.2,
        "calendar": 0.2,
        "facts": 0.18,
        "biography": 0.12,
        "probing": 0.1,
        "filler": 0.05,
        "calendar_list": 0.1,
        "spelling": 0.05,
    }

    def corpus(
        self, split: str = "train", n_texts: int = 1000, seed: int = 0, mix: dict | None = None
    ) -> list[str]:
        mix = mix or self.MIX
        spelling_share = mix.get("spelling", 0.0)
        rest = {k: v for k, v in mix.items() if k != "spelling"}
        texts = super().corpus(split, n_texts, seed, mix=rest)
        if spelling_share <= 0:
            return texts
        # Replace a seeded share of the texts with spelling texts (the base mixture stays exact).
        rng = random.Random(_stable_hash(self.seed, "corpus-spelling", split, seed))
        total = sum(mix.values())
        return [
            self._spelling(rng).text if rng.random() < spelling_share / total else t for t in texts
        ]

    def variables(self) -> dict[str, dict[str, list]]:
        variables = super().variables()
        variables["spelling"] = {"first_letter": sorted({w[0] for w in spelling_words()})}
        return variables

    def words(self) -> set[str]:
        words = super().words()
        words.update(CITY_PREFIXES + CITY_SUFFIXES + COUNTRIES + LANGUAGES + CLIMATES + LETTERS)
        words.update(["happy", "sad", "starts", "with", "letter", "spelled", "weather", "usually"])
        for sentences in BIOGRAPHY_SENTENCES.values():
            for sentence in sentences:
                words.update(sentence.replace("{v}", "").split())
        words.update(template_words(FACT_TEMPLATES_V2))
        for clause in DISTRACTOR_CITY_CLAUSES + DISTRACTOR_DAY_CLAUSES + CALENDAR_TEMPLATES:
            words.update(clause.format(n="", d="", p="", x="", f="", units="", unit="").split())
        for phrase in FILLERS:
            words.update(phrase.split())
        words.update(NUMBER_WORDS)
        return words
