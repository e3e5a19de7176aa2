"""A synthetic mini-English world whose latent variables we know.

Every generated sentence comes with its ground-truth labels. The same template and fact tables
work with a real tokenizer (GPT-2 BPE): prompts are plain lower-case English, answers are single
words (use `answer_token_id` to get the first token of " word" under any tokenizer).

Families:
  ioi       Wang et al. indirect-object prompts, ABBA and BABA orders.
  calendar  day/month arithmetic ("three days from monday is thursday") and plain mentions.
  facts     RAVEL-style city facts (country, continent, language) and biography paragraphs.
  probing   sentences labelled with topic, sentiment, tense and number (not collinear).
  filler    grammatical narrative sentences mixing the vocabulary.

split="heldout" gives what training never sees: unseen IOI name pairs, held-out fact templates,
held-out (start, offset) calendar pairs.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"

# One line per word table (data, not code): the formatter would give every word its own line.
# fmt: off
NAMES = ["mary", "john", "alice", "bob", "tom", "anna", "james", "emma", "david", "sarah", "paul", "laura", "mark", "kate", "peter", "lucy", "george", "helen", "frank", "rose", "henry", "grace", "jack", "ella", "adam", "nina", "carl", "olga", "dan", "eva", "fred", "iris", "hugo", "ivy", "ian", "jane", "kevin", "lily", "leo", "maya", "max", "nora", "oscar", "pam", "ralph", "ruth", "sam", "tina", "victor", "wendy", "will", "zoe", "ben", "amy", "chris", "diana", "eric", "fiona", "gary", "holly", "luke", "mia", "neil", "opal"]
PLACES = ["store", "park", "school", "garden", "beach", "office", "market", "library", "station", "cafe", "museum", "river", "farm", "bakery", "hospital", "church"]
OBJECTS = ["drink", "book", "ball", "apple", "letter", "ring", "flower", "cake", "pen", "key", "hat", "bag", "lamp", "cup", "coin", "map"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven"]
# fmt: on

IOI_TEMPLATES = (
    "when {A} and {B} went to the {place} , {S} gave a {object} to",
    "then {A} and {B} had a long argument . afterwards {S} said to",
    "after {A} and {B} went to the {place} , {S} gave a {object} to",
    "while {A} and {B} were at the {place} , {S} handed the {object} to",
    "{A} and {B} had fun at the {place} . {S} gave a {object} to",
    "when {A} and {B} got a {object} at the {place} , {S} decided to give it to",
)
# Indices of IOI templates used only for evaluation (never trained).
IOI_HELDOUT_TEMPLATES = (5,)

FACT_TEMPLATES = {
    "country": (
        "{e} is a city in the country of",
        "the city of {e} is located in the country of",
        "{e} belongs to the country of",
        "if you visit {e} you are in the country of",
    ),
    "continent": (
        "{e} is a city on the continent of",
        "the city of {e} lies on the continent of",
        "{e} can be found on the continent of",
        "if you visit {e} you are on the continent of",
    ),
    "language": (
        "people in {e} speak",
        "the main language spoken in {e} is",
        "in {e} most people speak",
        "if you visit {e} you will hear people speak",
    ),
}
# The last template of each attribute is held out of training.
FACT_HELDOUT_TEMPLATE = 3

# fmt: off
TOPICS = {
    "sports": ["match", "goal", "team", "coach", "ball", "game", "player", "stadium"],
    "food": ["soup", "bread", "dinner", "recipe", "cheese", "kitchen", "meal", "sauce"],
    "music": ["song", "band", "guitar", "concert", "album", "singer", "piano", "melody"],
    "weather": ["rain", "storm", "wind", "snow", "cloud", "sunshine", "forecast", "thunder"],
    "science": ["experiment", "theory", "laboratory", "data", "atom", "telescope", "research", "microscope"],
    "travel": ["journey", "flight", "hotel", "ticket", "passport", "luggage", "tour", "airport"],
}
# fmt: on
POSITIVE_ADJ = ["great", "wonderful", "pleasant", "lovely", "excellent"]
NEGATIVE_ADJ = ["awful", "terrible", "boring", "horrible", "dreadful"]
# (singular subject, plural subject)
SUBJECTS = (
    ("friend", "friends"),
    ("neighbor", "neighbors"),
    ("teacher", "teachers"),
    ("student", "students"),
    ("child", "children"),
    ("visitor", "visitors"),
)
# verb forms: (present singular, present plural, past)
VERBS = (
    ("likes", "like", "liked"),
    ("describes", "describe", "described"),
    ("mentions", "mention", "mentioned"),
    ("discusses", "discuss", "discussed"),
)
BE = {
    ("present", "singular"): "is",
    ("present", "plural"): "are",
    ("past", "singular"): "was",
    ("past", "plural"): "were",
}
FAMILIES = ("ioi", "calendar", "facts", "probing", "filler")
# Day offsets of the first training stage (and of every checkpoint made before the calendar
# stage existed); World's default, eleven, is the calendar stage's.
CORE_MAX_DAY_OFFSET = 6
SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")


@dataclass
class Example:
    """One generated text. `prompt` + " " + `answer` is the part the model must complete."""

    text: str
    prompt: str
    answer: str
    family: str
    labels: dict = field(default_factory=dict)


def probe_text(example: Example) -> str:
    """The text a probe of `example`'s labels reads: its prompt when it has one (a v2 probing
    sentence ends in a consequence word that states the sentiment; its prompt stops before that
    word), else the whole text (v1's probing sentences have no prompt)."""
    return example.prompt or example.text


def _stable_hash(*parts) -> int:
    # Python's hash() is salted per process; splits must not be.
    value = 0
    for char in "|".join(map(str, parts)):
        value = (value * 131 + ord(char)) % 1_000_003
    return value


def load_cities() -> list[dict]:
    with open(DATA_DIR / "cities.csv", newline="") as handle:
        return list(csv.DictReader(handle))


class World:
    """The generator. Deterministic: the same (seed, family, n, split) gives the same examples."""

    families: tuple[str, ...] = FAMILIES
    names = NAMES
    fact_templates: Mapping[str, tuple[str, ...]] = FACT_TEMPLATES

    def __init__(self, seed: int = 0, max_day_offset: int = 11):
        self.seed = seed
        # Offsets 1..6 make the day table 42 pairs, small enough to memorise; offsets up to
        # eleven ("nine days from monday") give 77, and only modular arithmetic covers them.
        # The first training stage uses CORE_MAX_DAY_OFFSET (6).
        if not 1 <= max_day_offset < len(NUMBER_WORDS):
            raise ValueError(
                f"max_day_offset must be in 1..{len(NUMBER_WORDS) - 1}, got {max_day_offset}"
            )
        self.max_day_offset = max_day_offset
        self.cities = load_cities()
        self.attributes = ("country", "continent", "language")

    # ---- splits -------------------------------------------------------------------------
    def is_heldout_pair(self, name_a: str, name_b: str) -> bool:
        """About 20% of unordered IOI name pairs are never seen in training."""
        first, second = sorted((name_a, name_b))
        return _stable_hash(self.seed, "pair", first, second) % 5 == 0

    def is_heldout_calendar(self, kind: str, start: int, offset: int) -> bool:
        """About 15% of (start, offset) pairs are held out (forces an algorithm, not a table)."""
        return _stable_hash(self.seed, kind, start, offset) % 7 == 0

    def calendar_pairs(self, kind: str, split: str) -> list[tuple[int, int]]:
        period, max_offset = (7, self.max_day_offset) if kind == "day" else (12, 11)
        pairs = [(s, o) for s in range(period) for o in range(1, max_offset + 1)]
        want_heldout = split == "heldout"
        return [p for p in pairs if self.is_heldout_calendar(kind, *p) == want_heldout]

    # ---- families -------------------------------------------------------------------------
    def _ioi(self, rng: random.Random, split: str) -> Example:
        heldout = split == "heldout"
        while True:
            io, s = rng.sample(NAMES, 2)
            if self.is_heldout_pair(io, s) == heldout:
                break
        templates = [
            i for i in range(len(IOI_TEMPLATES)) if (i in IOI_HELDOUT_TEMPLATES) == heldout
        ]
        if heldout:
            templates = list(range(len(IOI_TEMPLATES)))  # unseen pairs on every template
        template_id = rng.choice(templates)
        order = rng.choice(("ABBA", "BABA"))
        first, second = (io, s) if order == "ABBA" else (s, io)
        prompt = IOI_TEMPLATES[template_id].format(
            A=first, B=second, S=s, place=rng.choice(PLACES), object=rng.choice(OBJECTS)
        )
        answer_position = len(prompt.split())  # index (in words) of the answer
        return Example(
            f"{prompt} {io} .",
            prompt,
            io,
            "ioi",
            {
                "io": io,
                "s": s,
                "order": order,
                "answer_position": answer_position,
                "template": template_id,
            },
        )

    def _calendar(self, rng: random.Random, split: str) -> Example:
        kind = rng.choice(("day", "day", "month"))
        values = DAYS if kind == "day" else MONTHS
        if split == "train" and rng.random() < 0.2:
            # Plain mentions: the same day/month tokens in other contexts.
            index = rng.randrange(len(values))
            template = rng.choice(
                (
                    "{n} met {m} on {v} at the {p} .",
                    "on {v} {n} went to the {p} .",
                    "{n} was born in {v} .",
                    "the {p} is closed every {v} .",
                )
                if kind == "day"
                else (
                    "{n} was born in {v} .",
                    "in {v} {n} went to the {p} .",
                    "the {p} opens again in {v} .",
                    "{n} and {m} met in {v} .",
                )
            )
            text = template.format(
                n=rng.choice(NAMES), m=rng.choice(NAMES), v=values[index], p=rng.choice(PLACES)
            )
            return Example(
                text,
                "",
                "",
                "calendar",
                {"kind": kind, "start": index, "offset": 0, "answer": index, "mention": True},
            )
        start, offset = rng.choice(self.calendar_pairs(kind, split))
        period = len(values)
        answer = (start + offset) % period
        unit = "day" if kind == "day" else "month"
        if offset == 1 and rng.random() < 0.5:
            prompt = f"the {unit} after {values[start]} is"
        else:
            plural = unit + ("s" if offset > 1 else "")
            word = rng.choice(("from", "after"))
            prompt = f"{NUMBER_WORDS[offset]} {plural} {word} {values[start]} is"
        return Example(
            f"{prompt} {values[answer]} .",
            prompt,
            values[answer],
            "calendar",
            {"kind": kind, "start": start, "offset": offset, "answer": answer, "mention": False},
        )

    def _calendar_list(self, rng: random.Random) -> Example:
        """Consecutive days or months, wrapping round ("friday , saturday , sunday , monday"):
        the order that real text teaches, and arithmetic prompts then have to compose."""
        kind = rng.choice(("day", "month"))
        values = DAYS if kind == "day" else MONTHS
        start, length = rng.randrange(len(values)), rng.randint(3, len(values))
        run = [values[(start + i) % len(values)] for i in range(length)]
        if rng.random() < 0.5:
            text = f"the {kind}s are {' , '.join(run)} ."
        else:
            text = f"{' then '.join(run)} ."
        return Example(
            text,
            "",
            "",
            "calendar",
            {
                "kind": kind,
                "start": start,
                "offset": 0,
                "answer": start,
                "mention": True,
                "list_length": length,
            },
        )

    def _fact(self, rng: random.Random, split: str) -> Example:
        city = rng.choice(self.cities)
        attribute = rng.choice(self.attributes)
        templates = FACT_TEMPLATES[attribute]
        template_id = (
            FACT_HELDOUT_TEMPLATE if split == "heldout" else rng.randrange(FACT_HELDOUT_TEMPLATE)
        )
        prompt = templates[template_id].format(e=city["city"])
        value = city[attribute]
        answer = value.split()[0]
        return Example(
            f"{prompt} {value} .",
            prompt,
            answer,
            "facts",
            {
                "entity": city["city"],
                "attribute": attribute,
                "value": value,
                "template": template_id,
            },
        )

    def _biography(self, rng: random.Random) -> Example:
        """Entity named once, then several attribute sentences (helps facts generalise)."""
        city = rng.choice(self.cities)
        name = city["city"]
        sentences = [f"{name} is a city ."]
        order = list(self.attributes)
        rng.shuffle(order)
        for attribute in order:
            pronoun_template = rng.choice(FACT_TEMPLATES[attribute][:FACT_HELDOUT_TEMPLATE])
            sentences.append(f"{pronoun_template.format(e=name)} {city[attribute]} .")
        return Example(
            " ".join(sentences),
            "",
            "",
            "facts",
            {"entity": name, "attribute": "biography", "value": "", "template": -1},
        )

    def _probing(self, rng: random.Random) -> Example:
        topic = rng.choice(sorted(TOPICS))
        sentiment = rng.choice(("positive", "negative"))
        tense = rng.choice(("present", "past"))
        number = rng.choice(("singular", "plural"))
        noun1 = rng.choice(TOPICS[topic])
        # Topic-skewed, not topic-exclusive: the second noun is often from another topic.
        other = rng.choice(sorted(TOPICS)) if rng.random() < 0.5 else topic
        noun2 = rng.choice(TOPICS[other])
        subject = rng.choice(SUBJECTS)[0 if number == "singular" else 1]
        verb = rng.choice(VERBS)
        verb_form = verb[2] if tense == "past" else verb[0 if number == "singular" else 1]
        negated = rng.random() < 0.4
        # Negation flips the adjective's polarity, so sentiment needs context, not one word.
        adjectives = POSITIVE_ADJ if (sentiment == "positive") != negated else NEGATIVE_ADJ
        be = BE[(tense, number)]
        neg = " not" if negated else ""
        text = (
            f"the {subject} {verb_form} the {noun1} and the {noun2} . "
            f"it {BE[(tense, 'singular')]}{neg} {rng.choice(adjectives)} . "
            f"the {subject} {be} there ."
        )
        return Example(
            text,
            "",
            "",
            "probing",
            {
                "topic": topic,
                "sentiment": sentiment,
                "tense": tense,
                "number": number,
                "negated": negated,
            },
        )

    def _filler(self, rng: random.Random) -> Example:
        template = rng.choice(
            (
                "{n} walked to the {p} and found a {o} .",
                "the {o} was on the table near the {p} .",
                "{n} and {m} talked about the {o} at the {p} .",
                "yesterday {n} bought a {o} and gave it to {m} .",
                "{n} lost a {o} in the {p} but {m} found it .",
            )
        )
        text = template.format(
            n=rng.choice(NAMES), m=rng.choice(NAMES), p=rng.choice(PLACES), o=rng.choice(OBJECTS)
        )
        return Example(text, "", "", "filler", {})

    # ---- public API -----------------------------------------------------------------------
    def generate(self, family: str, n: int, seed: int = 0, split: str = "train") -> list[Example]:
        """n labelled examples of one family, deterministic in (world seed, family, n, seed, split)."""
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        rng = random.Random(_stable_hash(self.seed, family, seed, split))
        make = {
            "ioi": lambda: self._ioi(rng, split),
            "calendar": lambda: self._calendar(rng, split),
            "facts": lambda: self._fact(rng, split),
            "probing": lambda: self._probing(rng),
            "filler": lambda: self._filler(rng),
        }[family]
        return [make() for _ in range(n)]

    # Training mix: calendar-heavy (circles need it), facts with biographies.
    # "calendar_list" (consecutive days/months) is for a curriculum stage's mix; weight 0 here
    # keeps the first stage's stream exactly as it was (choices() draws one number either way).
    MIX = {
        "ioi": 0.25,
        "calendar": 0.25,
        "facts": 0.2,
        "biography": 0.1,
        "probing": 0.1,
        "filler": 0.1,
        "calendar_list": 0.0,
    }

    def corpus(
        self, split: str = "train", n_texts: int = 1000, seed: int = 0, mix: dict | None = None
    ) -> list[str]:
        """The mixed text stream the model is trained on (split "train") or evaluated on
        ("eval": different seeds, same distribution; "heldout": held-out pairs/templates).
        `mix` (family → weight, keys as in MIX) replaces the default mixture."""
        generate_split = "heldout" if split == "heldout" else "train"
        rng = random.Random(_stable_hash(self.seed, "corpus", split, seed))
        mix = mix or self.MIX
        if set(mix) - set(self.MIX):
            raise ValueError(
                f"unknown corpus kinds {sorted(set(mix) - set(self.MIX))}; "
                f"choose from {', '.join(self.MIX)}"
            )
        kinds, weights = zip(*mix.items())
        texts = []
        for _ in range(n_texts):
            kind = rng.choices(kinds, weights)[0]
            if kind == "biography":
                texts.append(self._biography(rng).text)
            elif kind == "ioi":
                texts.append(self._ioi(rng, generate_split).text)
            elif kind == "calendar":
                texts.append(self._calendar(rng, generate_split).text)
            elif kind == "facts":
                texts.append(self._fact(rng, generate_split).text)
            elif kind == "probing":
                texts.append(self._probing(rng).text)
            elif kind == "calendar_list":
                texts.append(self._calendar_list(rng).text)
            else:
                texts.append(self._filler(rng).text)
        return texts

    def variables(self) -> dict[str, dict[str, list]]:
        """Ground-truth variables per family and their possible values."""
        return {
            "ioi": {"io": list(NAMES), "s": list(NAMES), "order": ["ABBA", "BABA"]},
            "calendar": {"day": list(DAYS), "month": list(MONTHS), "offset": list(range(1, 12))},
            "facts": {
                attribute: sorted({c[attribute] for c in self.cities})
                for attribute in self.attributes
            }
            | {"entity": [c["city"] for c in self.cities]},
            "probing": {
                "topic": sorted(TOPICS),
                "sentiment": ["positive", "negative"],
                "tense": ["present", "past"],
                "number": ["singular", "plural"],
            },
            "filler": {},
        }

    @cached_property
    def vocabulary(self) -> list[str]:
        """Every word the world can produce, in a fixed order (specials first)."""
        return list(SPECIAL_TOKENS) + sorted(self.words())

    def words(self) -> set[str]:
        """The set behind `vocabulary` (subclasses add their own words)."""
        words = set()
        for family in FAMILIES:
            for split in ("train", "heldout"):
                for example in self.generate(family, 3000, seed=12345, split=split):
                    words.update(example.text.split())
        for texts in (self.corpus("train", 2000, 7),):
            for text in texts:
                words.update(text.split())
        words.update(NAMES + PLACES + OBJECTS + DAYS + MONTHS + NUMBER_WORDS)
        for city in self.cities:
            for value in city.values():
                words.update(value.split())
        for lexicon in TOPICS.values():
            words.update(lexicon)
        return words


def probing_labels(examples) -> dict[tuple[str, str], list[bool]]:
    """The binary probing labels of `probing` examples: {(variable, positive value): flags}.
    Each topic vs the rest, and sentiment=positive, tense=past, number=plural."""
    labels = {("topic", t): [e.labels["topic"] == t for e in examples] for t in sorted(TOPICS)}
    for variable, positive in (("sentiment", "positive"), ("tense", "past"), ("number", "plural")):
        labels[(variable, positive)] = [e.labels[variable] == positive for e in examples]
    return labels


def probing_label_names(examples) -> dict[str, list[bool]]:
    """probing_labels keyed by one flat name each: "topic_food", ..., "sentiment", "tense",
    "number" (the names reports and probing results use)."""
    return {
        (f"topic_{value}" if variable == "topic" else variable): flags
        for (variable, value), flags in probing_labels(examples).items()
    }


def answer_token_id(tokenizer, word: str) -> int:
    """Id of the first token of `word` as it appears after a space, under any tokenizer."""
    ids = tokenizer.encode(" " + word, add_special_tokens=False)
    if not ids:
        raise ValueError(f"tokenizer produced no token for {word!r}")
    return ids[0]


def operand_word(example: Example) -> str:
    """The day or month word of a calendar arithmetic prompt: where the operand is patched.
    Worlds before v4 name the operand itself (labels["start"]); v4 may name the day its shift
    counts from ("the day after monday": labels["named"], saebench.toyworld.world_v4)."""
    labels = example.labels
    values = DAYS if labels["kind"] == "day" else MONTHS
    return values[labels.get("named", labels["start"])]
