"""Toy world v2's generator (issue 15): two-token cities with independent attributes,
distractors that a single attention layer cannot tell from the operand, sentiment with a
consequence, and a first-letter spelling family."""

from collections import Counter

import pytest

from saebench.toyworld.world import probe_text
from saebench.toyworld.world_v2 import (
    ATTRIBUTES,
    CITY_PREFIXES,
    CITY_SUFFIXES,
    WorldV2,
    fictional_cities,
)


@pytest.fixture(scope="module")
def world():
    return WorldV2(seed=0)


def test_cities_need_both_tokens_and_attributes_are_independent(world):
    cities = world.cities
    assert len(cities) == len(CITY_PREFIXES) * len(CITY_SUFFIXES)
    assert all(len(c["city"].split()) == 2 for c in cities)
    # Neither token alone names a city: every prefix and suffix is shared by 8 cities.
    assert set(Counter(c["city"].split()[0] for c in cities).values()) == {8}
    assert set(Counter(c["city"].split()[1] for c in cities).values()) == {8}
    # Every (country, language) pair exactly once: neither implies the other.
    assert len({(c["country"], c["language"]) for c in cities}) == len(cities)
    counts = Counter(c["climate"] for c in cities)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert fictional_cities(0) == cities and fictional_cities(1) != cities
    assert world.attributes == ATTRIBUTES


def test_fact_prompts_end_with_the_entity_then_the_question(world):
    examples = world.generate("facts", 400, seed=3)
    with_distractor = [e for e in examples if e.labels["distractor"]]
    assert 0.35 < len(with_distractor) / len(examples) < 0.65
    for e in examples:
        city = next(c for c in world.cities if c["city"] == e.labels["entity"])
        assert e.answer == city[e.labels["attribute"]] == e.labels["value"]
        assert e.text == f"{e.prompt} {e.answer} ."
        assert e.prompt.count(e.labels["entity"]) >= 1
    heldout = world.generate("facts", 50, seed=3, split="heldout")
    assert {e.labels["template"] for e in heldout} == {3}


def test_calendar_distractors_name_another_value_before_the_question(world):
    from saebench.toyworld.world import DAYS, MONTHS

    examples = [e for e in world.generate("calendar", 600, seed=4) if not e.labels["mention"]]
    distracted = [e for e in examples if e.labels["distractor"] is not None]
    assert 0.35 < len(distracted) / len(examples) < 0.65
    for e in distracted:
        values = DAYS if e.labels["kind"] == "day" else MONTHS
        other, start = values[e.labels["distractor"]], values[e.labels["start"]]
        assert other != start and e.prompt.index(other) < e.prompt.rindex(start)
        answer = values[(e.labels["start"] + e.labels["offset"]) % len(values)]
        assert e.answer == answer


def test_probing_texts_state_the_negation_resolved_sentiment(world):
    for e in world.generate("probing", 200, seed=5):
        feeling = "happy" if e.labels["sentiment"] == "positive" else "sad"
        assert e.text.endswith(f"{feeling} .")
        # What a probe reads stops before the word that states the label.
        assert e.text == f"{probe_text(e)} {e.answer} ." and e.answer == feeling
        assert not {"happy", "sad"} & set(probe_text(e).split())


def test_v1_probing_texts_are_read_whole():
    from saebench.toyworld.world import World

    for e in World(seed=0).generate("probing", 50, seed=5):
        assert e.prompt == "" and probe_text(e) == e.text


def test_spelling_family_and_the_vocabulary_covers_every_text(world):
    spelled = world.generate("spelling", 100, seed=6)
    assert all(e.answer == e.labels["word"][0] == e.labels["first_letter"] for e in spelled)
    vocabulary = set(world.vocabulary)
    texts = world.corpus("train", 3000, seed=9) + world.corpus("heldout", 500, seed=9)
    assert {w for t in texts for w in t.split()} <= vocabulary
    assert any(t.endswith(" .") and " starts with the letter " in t for t in texts)
    assert "spelling" in world.families and "first_letter" in world.variables()["spelling"]
