"""Toy world v4 (a candidate world): its cities and its shifted calendar operands, without a
model."""

from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from saebench.interventions import word_position
from saebench.toyworld import load_world
from saebench.toyworld.world import DAYS, MONTHS, operand_word
from saebench.toyworld.world_v2 import COUNTRIES, LANGUAGES, WorldV2
from saebench.toyworld.world_v4 import CITY_PREFIXES_V4, CITY_SUFFIXES_V4, SHIFT_WORDS, WorldV4
from saebench_tasks.ground_truth.units import operand_index

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world():
    return WorldV4(seed=0)


@pytest.fixture(scope="module")
def arithmetic(world):
    return [e for e in world.generate("calendar", 3000, seed=5) if not e.labels["mention"]]


def test_144_cities_no_syllable_names_one_and_no_attribute_implies_another(world):
    names = [c["city"] for c in world.cities]
    assert len(set(names)) == 144 == len(CITY_PREFIXES_V4) * len(CITY_SUFFIXES_V4)
    prefixes = Counter(n.split()[0] for n in names)
    suffixes = Counter(n.split()[1] for n in names)
    assert set(prefixes.values()) == {12} and set(suffixes.values()) == {12}
    pairs = Counter((c["country"], c["language"]) for c in world.cities)
    assert set(pairs) == {(c, g) for c in COUNTRIES for g in LANGUAGES}  # every pair occurs
    assert set(pairs.values()) <= {2, 3}
    assert set(Counter(c["climate"] for c in world.cities).values()) == {24}
    assert WorldV4(seed=0).cities == world.cities  # deterministic in the seed


def test_the_answer_counts_from_the_effective_operand_the_prompt_names_with_its_shift(
    world, arithmetic
):
    assert {e.labels["shift"] for e in arithmetic} == {-1, 0, 1}
    for e in arithmetic:
        labels = e.labels
        values = DAYS if labels["kind"] == "day" else MONTHS
        period = len(values)
        assert (labels["named"] + labels["shift"]) % period == labels["start"]
        assert e.answer == values[(labels["start"] + labels["offset"]) % period]
        words = e.prompt.split()
        at = len(words) - 1 - words[::-1].index(operand_word(e))
        unit = "day" if labels["kind"] == "day" else "month"
        if labels["shift"]:
            assert words[at - 3 : at] == ["the", unit, SHIFT_WORDS[labels["shift"]]]
        else:
            assert words[at - 1] not in SHIFT_WORDS.values()
        assert labels["distractor"] is None or labels["distractor"] != labels["start"]
    share = sum(e.labels["distractor"] is not None for e in arithmetic) / len(arithmetic)
    assert 0.7 < share < 0.9


def test_held_out_calendar_pairs_are_effective_operands_and_never_trained(world, arithmetic):
    for e in world.generate("calendar", 400, seed=6, split="heldout"):
        if not e.labels["mention"]:
            assert world.is_heldout_calendar(
                e.labels["kind"], e.labels["start"], e.labels["offset"]
            )
    for e in arithmetic:  # the training split
        assert not world.is_heldout_calendar(
            e.labels["kind"], e.labels["start"], e.labels["offset"]
        )


def test_no_day_or_month_word_follows_the_operand_and_the_distractor_ends_before_it(arithmetic):
    calendar_words = set(DAYS) | set(MONTHS)
    for e in arithmetic:
        words = e.prompt.split()
        mentions = [i for i, w in enumerate(words) if w in calendar_words]
        assert words[mentions[-1]] == operand_word(e)  # the operand is the last mention
        if e.labels["distractor"] is not None:
            clause_end = words.index(".")  # every distractor clause is one sentence first
            assert len(mentions) == 2 and mentions[0] < clause_end < mentions[1]
        else:
            assert len(mentions) == 1


class _WordTokenizer:
    """A bridge stand-in for word_position: one token per word after BOS."""

    def to_tokens(self, text):
        import torch

        return torch.zeros(1, len(text.split()) + 1, dtype=torch.long)


def test_interventions_find_the_operand_word_after_a_distractor_naming_the_same_word(
    world, arithmetic
):
    same_word = [
        e
        for e in arithmetic
        if e.labels["distractor"] is not None and e.prompt.split().count(operand_word(e)) == 2
    ]
    assert same_word, "no prompt whose distractor names the operand's day word"
    for e in same_word[:20]:
        words = e.prompt.split()
        last = len(words) - 1 - words[::-1].index(operand_word(e))
        assert operand_index(e) == last
        assert word_position(_WordTokenizer(), e.prompt, operand_word(e)) == last + 1  # BOS


def test_operand_word_is_the_operand_itself_before_v4():
    for e in WorldV2(seed=0).generate("calendar", 200, seed=1):
        values = DAYS if e.labels["kind"] == "day" else MONTHS
        assert operand_word(e) == values[e.labels["start"]]


def test_vocabulary_covers_every_text_and_a_version_4_record_loads_v4(world):
    texts = world.corpus("train", 2000, seed=9) + world.corpus("heldout", 300, seed=9)
    assert {w for t in texts for w in t.split()} <= set(world.vocabulary)
    assert isinstance(load_world({"world_version": 4}), WorldV4)


def test_version_4_trains_the_shipped_recipe_into_the_shipped_directory(monkeypatch):
    """`saebench world train --version 4` is the recipe of the shipped checkpoint: the settings
    its record holds, its calendar steps and its local first layer, written where it ships."""
    import json

    import saebench.toyworld.train as train
    from saebench.cli import cli
    from saebench.toyworld.model import CHECKPOINT_V4_DIR, TRAIN_V2_DEFAULTS

    calls = []
    monkeypatch.setattr(train, "train_and_save_v2", lambda out, **kw: calls.append((out, kw)) or {})
    assert CliRunner().invoke(cli, ["world", "train", "--version", "4"]).exit_code == 0
    out, options = calls[0]
    assert out == CHECKPOINT_V4_DIR and options["world_version"] == 4
    record = json.loads((CHECKPOINT_V4_DIR / "train_record.json").read_text())
    settings = dict(TRAIN_V2_DEFAULTS, **{k: options[k] for k in TRAIN_V2_DEFAULTS if k in options})
    assert settings == record["settings"]
    assert options["calendar_steps"] == record["stages"][1]["settings"]["steps"]
    assert options["local_layer0"] and record["model_config"]["local_attention_layers"] == [0]
    # Each part of the recipe can still be changed.
    args = ["world", "train", "--version", "4", "--global-layer0", "--calendar-steps", "5"]
    assert CliRunner().invoke(cli, [*args, "--out", "x"]).exit_code == 0
    assert calls[1][0] == "x" and calls[1][1]["calendar_steps"] == 5
    assert "local_layer0" not in calls[1][1]


@pytest.mark.parametrize("option", [["--seed", "1"], ["--global-layer0"], ["--steps", "10"]])
def test_a_changed_recipe_never_lands_in_the_shipped_directory(monkeypatch, option):
    import saebench.toyworld.train as train
    from saebench.cli import cli

    calls = []
    monkeypatch.setattr(train, "train_and_save_v2", lambda out, **kw: calls.append(out) or {})
    result = CliRunner().invoke(cli, ["world", "train", "--version", "4", *option])
    assert result.exit_code == 2 and "--out DIR" in result.output and option[0] in result.output
    assert calls == []


def test_v4_is_hooked_at_the_deepest_layer_where_its_entity_and_operand_sites_pass():
    import json

    from saebench.toyworld.model import (
        CHECKPOINT_V4_DIR,
        V4_DEFAULT_HOOK,
        default_hook_of,
        default_hook_rule,
    )

    attributes = ("country",)
    names = ("entity_swap_country", "operand_patch_day", "operand_patch_month", "ioi_io_patch")

    def checks(*passed):
        return {name: {"passed": ok} for name, ok in zip(names, passed)}

    sites = {
        "blocks.1.hook_resid_pre": checks(True, True, True, False),
        "blocks.2.hook_resid_pre": checks(True, True, True, False),
        "blocks.3.hook_resid_pre": checks(True, False, True, True),  # IO does not count
        "blocks.3.hook_resid_post": checks(True, True, True, True),  # not a resid_pre hook
    }
    assert default_hook_of(4, sites, attributes) == "blocks.2.hook_resid_pre"
    assert "deepest hook where every" in default_hook_rule(4, sites, attributes)
    sites["blocks.2.hook_resid_pre"] = checks(False, True, True, True)
    assert default_hook_of(4, sites, attributes) == "blocks.1.hook_resid_pre"
    # A hook that measured none of the needed checks does not pass by default.
    sites["blocks.2.hook_resid_pre"] = {"ioi_io_patch": {"passed": True}}
    assert default_hook_of(4, sites, attributes) == "blocks.1.hook_resid_pre"
    # A needed attribute never measured: no hook passes, blocks.1 as designed, and it says so.
    assert default_hook_of(4, sites, ("country", "climate")) == "blocks.1.hook_resid_pre"
    rule = default_hook_rule(4, sites, ("country", "climate"))
    assert "no hook passed" in rule and "--hook" in rule
    assert default_hook_of(4, None) == "blocks.1.hook_resid_pre"  # not measured
    assert "no site checks measured" in default_hook_rule(4, None)
    every = {h: checks(True, True, True, True) for h in sites}
    assert default_hook_of(2, every, attributes) == "blocks.1.hook_resid_pre"
    assert default_hook_of(3, every, attributes) == "blocks.1.hook_resid_pre"

    # The shipped record follows the rule: blocks.2, where it measured every site. Seed 1 of
    # the same recipe misses both operand checks there (day 0.89, month 0.58): blocks.1.
    record = json.loads((CHECKPOINT_V4_DIR / "train_record.json").read_text())
    world = load_world(record)
    assert record["default_hook"] == V4_DEFAULT_HOOK
    assert default_hook_of(4, record["site_checks"], world.attributes) == V4_DEFAULT_HOOK
    assert record["default_hook_rule"].startswith(
        default_hook_rule(4, record["site_checks"], world.attributes)
    )
    seed1 = json.loads((REPO / "results/toyworld-v4/train_record_seed1.json").read_text())
    assert default_hook_of(4, seed1["site_checks"], world.attributes) == seed1["default_hook"]
    assert seed1["default_hook"] == "blocks.1.hook_resid_pre"


def test_one_version_table_serves_records_and_training():
    from saebench.toyworld import World, world_class
    from saebench.toyworld.world_v3 import WorldV3

    expected = {1: World, 2: WorldV2, 3: WorldV3, 4: WorldV4}
    for version, cls in expected.items():
        assert world_class(version) is cls
        assert type(load_world({"world_version": version})) is cls
    with pytest.raises(ValueError, match="use 1, 2, 3 or 4"):
        world_class(5)
