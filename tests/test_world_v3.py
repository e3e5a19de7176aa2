"""Toy world v3 (the candidate world): its fact prompts, without a model."""

import pytest
from click.testing import CliRunner

from saebench.toyworld import load_world
from saebench.toyworld.world_v3 import FACT_TEMPLATES_V3, FRAMES, HELDOUT_FRAME, TAILS, WorldV3


@pytest.fixture(scope="module")
def world():
    return WorldV3(seed=0)


def frame_and_tail(template: str) -> tuple[int, str]:
    for f, frame in enumerate(FRAMES):
        for tails in TAILS.values():
            for tail in tails:
                if frame.replace("{t}", tail) == template:
                    return f, tail
    raise AssertionError(template)


def test_each_held_out_template_is_a_new_combination_of_a_trained_frame_and_tail():
    for attribute, templates in FACT_TEMPLATES_V3.items():
        *trained, held_out = templates
        held_frame, held_tail = frame_and_tail(held_out)
        assert held_frame == HELDOUT_FRAME[attribute] and held_tail == TAILS[attribute][0]
        trained_frames = {frame_and_tail(t)[0] for t in trained}
        # the attribute never meets its held-out frame in training ...
        assert held_frame not in trained_frames
        # ... but the frame is trained with the other attributes, and the tail with other frames
        for other, other_templates in FACT_TEMPLATES_V3.items():
            if other != attribute:
                assert held_frame in {frame_and_tail(t)[0] for t in other_templates[:-1]}
        assert any(frame_and_tail(t)[1] == held_tail for t in trained)


def test_distractors_name_another_city_before_or_right_after_the_subject(world):
    examples = world.generate("facts", 600, seed=3)
    placements = {e.labels["distractor"] for e in examples}
    assert placements == {"none", "before", "after"}
    cities = [c["city"] for c in world.cities]
    for e in examples:
        named = [c for c in cities if f" {c} " in f" {e.prompt} "]
        assert e.labels["entity"] in named
        if e.labels["distractor"] == "none":
            assert named == [e.labels["entity"]]
        else:
            assert len(named) == 2
            subject_at = e.prompt.index(e.labels["entity"])
            other = next(c for c in named if c != e.labels["entity"])
            assert (e.prompt.index(other) > subject_at) == (e.labels["distractor"] == "after")
        assert (
            e.answer
            == next(c for c in world.cities if c["city"] == e.labels["entity"])[
                e.labels["attribute"]
            ]
        )
    share = sum(e.labels["distractor"] != "none" for e in examples) / len(examples)
    assert 0.7 < share < 0.9


def test_held_out_split_uses_only_the_held_out_template_and_the_vocabulary_covers_all(world):
    for e in world.generate("facts", 200, seed=4, split="heldout"):
        assert e.labels["template"] == len(FACT_TEMPLATES_V3[e.labels["attribute"]]) - 1
    vocabulary = set(world.vocabulary)
    texts = world.corpus("train", 2000, seed=9) + world.corpus("heldout", 300, seed=9)
    assert {w for t in texts for w in t.split()} <= vocabulary


def test_a_version_3_record_loads_the_v3_world_and_training_it_needs_an_out_directory():
    assert isinstance(load_world({"world_version": 3}), WorldV3)
    from saebench.cli import cli

    result = CliRunner().invoke(cli, ["world", "train", "--version", "3"])
    assert result.exit_code == 2 and "--out" in result.output


def test_local_layer0_is_refused_for_the_two_layer_v1_model(tmp_path):
    from saebench.cli import cli

    result = CliRunner().invoke(
        cli, ["world", "train", "--local-layer0", "--out", str(tmp_path / "ck")]
    )
    assert result.exit_code == 2 and "--version 2, 3 or 4" in result.output
    assert not (tmp_path / "ck").exists()
