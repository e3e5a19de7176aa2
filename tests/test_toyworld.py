"""The toy world: deterministic generation, labels that match the fact tables, splits that hold
out what they claim to, a tokenizer that round-trips, and the shipped model's behaviour."""

import json
import re

import pytest
import torch
from click.testing import CliRunner

from saebench.toyworld import World, answer_token_id, evaluate, load_world
from saebench.toyworld.world import BE, DAYS, MONTHS, NUMBER_WORDS, VERBS, load_cities


@pytest.fixture(scope="module")
def world():
    return load_world()


@pytest.mark.parametrize("family", World.families)
def test_generation_is_deterministic(world, family):
    assert world.generate(family, 50, seed=3) == World(seed=0).generate(family, 50, seed=3)
    assert world.generate(family, 50, seed=3) != world.generate(family, 50, seed=4)


def test_ioi_labels_match_the_text(world):
    for example in world.generate("ioi", 300, seed=1) + world.generate("ioi", 300, 1, "heldout"):
        words = example.prompt.split()
        io, s = example.labels["io"], example.labels["s"]
        assert example.answer == io and io != s
        assert words.count(s) == 2 and words.count(io) == 1  # S repeated, IO once
        first = next(w for w in words if w in (io, s))
        assert (first == io) == (example.labels["order"] == "ABBA")
        assert example.labels["answer_position"] == len(words)


def test_calendar_answers_are_modular_arithmetic(world):
    for example in world.generate("calendar", 400, seed=2):
        labels = example.labels
        if labels["mention"]:
            continue
        values = DAYS if labels["kind"] == "day" else MONTHS
        assert labels["answer"] == (labels["start"] + labels["offset"]) % len(values)
        assert example.answer == values[labels["answer"]]
        assert values[labels["start"]] in example.prompt.split()
        if not example.prompt.startswith("the "):
            assert example.prompt.split()[0] == NUMBER_WORDS[labels["offset"]]


def test_longer_day_offsets_keep_the_arithmetic_and_the_split():
    # Offsets up to eleven ("nine days from monday is wednesday"): a 77-pair table that a
    # model cannot cover without modular arithmetic. Pairs held out with offsets 1..6 stay
    # held out, so the split only grows.
    short, long = World(0, max_day_offset=6), World(0, max_day_offset=11)
    assert set(short.calendar_pairs("day", "heldout")) < set(long.calendar_pairs("day", "heldout"))
    assert (
        len(long.calendar_pairs("day", "train")) + len(long.calendar_pairs("day", "heldout")) == 77
    )
    examples = [e for e in long.generate("calendar", 3000, seed=3) if not e.labels["mention"]]
    offsets = {e.labels["offset"] for e in examples if e.labels["kind"] == "day"}
    assert offsets == set(range(1, 12))
    for example in examples:
        values = DAYS if example.labels["kind"] == "day" else MONTHS
        assert (
            example.answer
            == values[(example.labels["start"] + example.labels["offset"]) % len(values)]
        )
    with pytest.raises(ValueError, match="max_day_offset"):
        World(0, max_day_offset=12)


def test_corpus_mix_is_respected_and_checked(world):
    texts = world.corpus("train", 200, seed=1, mix={"calendar": 1.0})
    calendar_words = set(DAYS) | set(MONTHS)
    assert all(calendar_words & set(text.split()) for text in texts)
    with pytest.raises(ValueError, match="choose from"):
        world.corpus("train", 10, mix={"poetry": 1.0})


def test_fact_labels_come_from_the_city_table(world):
    table = {row["city"]: row for row in load_cities()}
    assert len(table) >= 60
    for example in world.generate("facts", 300, seed=4):
        row = table[example.labels["entity"]]
        assert example.labels["value"] == row[example.labels["attribute"]]
        assert example.answer == row[example.labels["attribute"]].split()[0]
        assert example.labels["entity"] in example.prompt.split()


def test_probing_labels_agree_with_the_grammar(world):
    examples = world.generate("probing", 400, seed=5)
    for example in examples:
        labels, words = example.labels, example.text.split()
        be = BE[(labels["tense"], labels["number"])]
        assert words[-3] == be  # "the <subject> <be> there ."
        verb = words[2]
        forms = {form for verb_forms in VERBS for form in verb_forms}
        assert verb in forms
        if labels["tense"] == "past":
            assert verb.endswith("ed")
        assert ("not" in words) == labels["negated"]
    # Labels are not collinear: every combination of tense and number occurs.
    combos = {(e.labels["tense"], e.labels["number"], e.labels["sentiment"]) for e in examples}
    assert len(combos) == 8


def test_heldout_split_holds_out_what_it_claims(world):
    train = world.generate("ioi", 2000, seed=6)
    assert not any(world.is_heldout_pair(e.labels["io"], e.labels["s"]) for e in train)
    heldout = world.generate("ioi", 300, seed=6, split="heldout")
    assert all(world.is_heldout_pair(e.labels["io"], e.labels["s"]) for e in heldout)
    facts = world.generate("facts", 500, seed=6)
    assert all(e.labels["template"] != 3 for e in facts)
    assert all(e.labels["template"] == 3 for e in world.generate("facts", 50, 6, "heldout"))
    calendar = [e for e in world.generate("calendar", 1000, seed=6) if not e.labels["mention"]]
    assert not any(
        world.is_heldout_calendar(e.labels["kind"], e.labels["start"], e.labels["offset"])
        for e in calendar
    )
    corpus = " ".join(world.corpus("train", 3000, seed=1))
    for kind, values in (("day", DAYS), ("month", MONTHS)):
        for start, offset in world.calendar_pairs(kind, "heldout"):
            answer = values[(start + offset) % len(values)]
            pattern = (
                rf"\b{NUMBER_WORDS[offset]} {kind}s? (from|after) {values[start]} is {answer}\b"
            )
            assert not re.search(pattern, corpus), pattern


def test_tokenizer_round_trips_every_corpus_text(toy_handle, world):
    tokenizer = toy_handle.tokenizer
    unk = tokenizer.unk_token_id
    for text in world.corpus("train", 300, seed=2) + world.corpus("heldout", 100, seed=2):
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert unk not in ids, text
        assert tokenizer.decode(ids) == text
    assert answer_token_id(tokenizer, "mary") == tokenizer.convert_tokens_to_ids("mary")


def test_shipped_checkpoint_does_the_tasks(toy_handle, world):
    """Targets from the issue, on held-out prompts. IOI on the held-out template is reported
    without a target (docs/toyworld.md)."""
    bridge, tokenizer = toy_handle.bridge, toy_handle.tokenizer
    ioi = evaluate.ioi_metrics(bridge, tokenizer, world, 200)
    assert ioi["ioi_accuracy"] >= 0.95 and ioi["ioi_logit_diff"] > 5
    calendar = evaluate.calendar_metrics(bridge, tokenizer, world, 200)
    assert calendar["day_arithmetic_trained"] >= 0.95
    assert calendar["month_arithmetic_trained"] >= 0.95
    # held-out (start, offset) pairs: arithmetic, not a memorised table
    assert calendar["day_arithmetic_heldout"] >= 0.70
    assert calendar["month_arithmetic_heldout"] >= 0.70
    facts = evaluate.fact_metrics(bridge, tokenizer, world, 300)
    for attribute in ("country", "continent", "language"):
        assert facts[f"recall_{attribute}_trained"] >= 0.95
        assert facts[f"recall_{attribute}_heldout"] >= 0.70


def test_probing_labels_are_not_solved_by_one_raw_dimension(toy_handle, world):
    # The probe ceiling must be high while no single residual dimension reaches ~98%
    # (otherwise every SAE ties at the ceiling and probing cannot separate methods).
    metrics = evaluate.probing_metrics(
        toy_handle.bridge, toy_handle.tokenizer, world, 400, toy_handle.default_hook
    )
    assert metrics["probe_best_single_dim_max"] < 0.98
    assert metrics["probe_tense"] >= 0.95 and metrics["probe_number"] >= 0.95
    # topics need more than one direction: on average the full probe beats the best dimension
    topics = [k for k in metrics if k.startswith("probe_topic_") and not k.endswith("_dim")]
    full = sum(metrics[k] for k in topics) / len(topics)
    single = sum(metrics[f"{k}_best_single_dim"] for k in topics) / len(topics)
    assert full > single + 0.02


def test_checkpoint_record_says_how_it_was_made(toy_handle):
    from saebench.toyworld.model import CHECKPOINT_DIR

    record = json.loads((CHECKPOINT_DIR / "train_record.json").read_text())
    assert record["settings"]["seed"] == 0 and record["settings"]["steps"] >= 1000
    assert "ioi_accuracy" in record["metrics"] and record["history"][-1]["step"] > 0
    assert [stage["name"] for stage in record["stages"]] == ["core", "calendar"]
    assert record["metrics"]["targets_missed"] == []


def test_a_tiny_training_run_lowers_the_loss(world, tmp_path):
    from saebench.toyworld.model import train_model
    from saebench.toyworld.tokenizer import build_tokenizer

    torch.manual_seed(0)
    tokenizer = build_tokenizer(world.vocabulary, tmp_path / "tok")
    bridge, history = train_model(
        world,
        tokenizer,
        steps=25,
        batch_size=8,
        lr=3e-3,
        weight_decay=0.0,
        warmup=2,
        seed=0,
        log_every=24,
        log=lambda *a: None,
    )
    assert history[-1]["loss"] < history[0]["loss"] - 1.0
    # A later curriculum stage trains the same model further, on its own data stream.
    before = {k: v.clone() for k, v in bridge.original_model.named_parameters()}
    again, stage_history = train_model(
        world,
        tokenizer,
        steps=5,
        batch_size=8,
        lr=1e-3,
        weight_decay=1.0,
        warmup=1,
        seed=0,
        log_every=4,
        log=lambda *a: None,
        bridge=bridge,
        mix={"calendar": 1.0},
        stage=1,
    )
    assert again is bridge
    assert any(not torch.equal(before[k], v) for k, v in again.original_model.named_parameters())
    assert stage_history[-1]["loss"] < history[0]["loss"]


def test_world_eval_json_offline(monkeypatch):
    from saebench.cli import cli

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(cli, ["world", "eval", "--json", "--quick", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    for key in (
        "ioi_accuracy",
        "ioi_logit_diff",
        "day_arithmetic_trained",
        "month_arithmetic_heldout",
        "recall_language_heldout",
        "heldout_loss",
    ):
        assert report[key] >= 0 or key == "ioi_logit_diff"
    assert isinstance(report["targets_missed"], list)
    assert report["site_hook"] == "blocks.1.hook_resid_pre"
    for name in ("entity_swap_country", "operand_patch_day", "operand_patch_month"):
        check = report["site_checks"][name]
        assert check["target"] == 0.9 and 0 <= check["value"] <= 1
        assert (name in report["sites_missed"]) == (not check["passed"])
    for attribute in ("io", "s", "pos"):
        for kind in ("patch", "supervised_edit"):
            check = report["site_checks"][f"ioi_{attribute}_{kind}"]
            assert check["target"] == 0.8 and 0 <= check["value"] <= 1


def test_training_probe_runs_on_its_own_schedule(world, tmp_path):
    from saebench.toyworld.model import train_model
    from saebench.toyworld.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(world.vocabulary, tmp_path / "tok")
    calls = []
    _, history = train_model(
        world,
        tokenizer,
        steps=7,
        batch_size=2,
        lr=1e-3,
        weight_decay=0.0,
        warmup=1,
        seed=0,
        log_every=100,
        log=lambda *a: None,
        probe=lambda b: calls.append(1) or {"probe": len(calls)},
        probe_every=3,
    )
    # logged at 0 (log step) and 6 (last); probed at 3 and 6 although 3 is not a log step
    assert [(e["step"], e.get("probe")) for e in history] == [(0, None), (3, 1), (6, 2)]


def test_world_train_runs_both_stages_and_the_result_loads(tmp_path, monkeypatch):
    # The reproduction path end to end, on a few steps: stage 0, stage 1 (calendar), record,
    # then the checkpoint is usable as --model toyworld:DIR.
    from saebench.cli import cli
    from saebench.models import resolve_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "toy"
    result = CliRunner().invoke(
        cli, ["world", "train", "--steps", "3", "--calendar-steps", "2", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "train_record.json").read_text())
    assert [s["name"] for s in record["stages"]] == ["core", "calendar"]
    assert record["stages"][1]["settings"]["steps"] == 2 and record["max_day_offset"] == 11
    assert record["command"] == "saebench world train --steps 3 --calendar-steps 2"
    assert record["stages"][1]["history"][-1]["step"] == 1
    assert "day_arithmetic_heldout" in record["metrics"]
    assert resolve_model(f"toyworld:{out}", "cpu").info["source"] == str(out)


def test_site_checks_swap_the_embedding_trivially_and_find_v1_s_hook_empty(toy_handle):
    """At blocks.0.hook_resid_pre the activation is the token's embedding, so swapping it must
    move every answer (the check's own sanity); on the v1 model at its default hook the entity
    and the day operand are already copied to the final token (issue 15), so it moves none."""
    from saebench.toyworld.sites import entity_swap_checks, operand_patch_checks

    bridge, tokenizer, world = toy_handle.bridge, toy_handle.tokenizer, toy_handle.world
    for hook, low, high in (
        ("blocks.0.hook_resid_pre", 0.95, 1.0),
        (toy_handle.default_hook, 0.0, 0.1),
    ):
        checks = entity_swap_checks(bridge, tokenizer, world, hook, n_pairs=60)
        checks += operand_patch_checks(bridge, tokenizer, world, hook, n_pairs=60)
        assert {c.name for c in checks} == {
            *(f"entity_swap_{a}" for a in world.attributes),
            "operand_patch_day",
            "operand_patch_month",
        }
        for check in checks:
            assert check.n_pairs == 60 and check.clean_accuracy > 0.95
            assert low <= check.value <= high, (hook, check)
            assert check.passed == (check.value >= check.target)


def test_ioi_site_checks_find_only_s_at_v1_s_hook(toy_handle):
    """On the v1 model at blocks.1 the final token carries S (the IO/S-exchanged patch and the
    S-only supervised edit move the answer), not the IO name nor its position (issue 15)."""
    from saebench.toyworld.sites import ioi_edit_checks

    bridge, tokenizer, world = toy_handle.bridge, toy_handle.tokenizer, toy_handle.world
    checks = {
        c.name: c for c in ioi_edit_checks(bridge, tokenizer, world, toy_handle.default_hook, 80)
    }
    assert set(checks) == {
        f"ioi_{a}_{k}" for a in ("io", "s", "pos") for k in ("patch", "supervised_edit")
    }
    assert checks["ioi_s_patch"].passed and checks["ioi_s_supervised_edit"].value > 0.9
    for name in ("ioi_io_patch", "ioi_io_supervised_edit", "ioi_pos_patch"):
        assert checks[name].value < 0.1 and not checks[name].passed
    assert all(c.n_pairs > 40 for c in checks.values())


def test_world_train_version_2_builds_a_4_layer_model_on_world_v2(tmp_path, monkeypatch):
    """The v2 reproduction path on a few steps: the record says world_version 2 and carries
    the site checks, and `--model toyworld:DIR` loads a 4-layer model with WorldV2 and the
    middle hook."""
    from saebench.cli import cli
    from saebench.models import resolve_model
    from saebench.toyworld.world_v2 import WorldV2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "toy2"
    result = CliRunner().invoke(
        cli,
        [
            "world",
            "train",
            "--version",
            "2",
            "--steps",
            "3",
            "--calendar-steps",
            "2",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "train_record.json").read_text())
    assert record["world_version"] == 2
    assert "--steps 3 --calendar-steps 2 --out " in record["command"]
    assert [s["name"] for s in record["stages"]] == ["v2", "calendar"]
    calendar = record["stages"][1]["settings"]
    assert calendar["steps"] == 2 and calendar["weight_decay"] == 2.0
    assert record["default_hook"] == "blocks.1.hook_resid_pre"
    assert set(record["site_checks"]) == {f"blocks.{i}.hook_resid_pre" for i in (1, 2, 3)}
    assert "entity_swap_climate" in record["site_checks"]["blocks.2.hook_resid_pre"]
    assert "ioi_pos_supervised_edit" in record["site_checks"]["blocks.3.hook_resid_pre"]
    handle = resolve_model(f"toyworld:{out}", "cpu")
    assert isinstance(handle.world, WorldV2) and handle.bridge.cfg.n_layers == 4
    assert handle.default_hook == "blocks.1.hook_resid_pre"


def test_v2_calendar_stage_freezes_layer_0_attention_and_decays_only_later_layers(tmp_path):
    from saebench.toyworld.model import (
        MODEL_CONFIG_V2,
        V2_CALENDAR_STAGE,
        boot,
        parameter_groups,
        v2_calendar_decay,
    )
    from saebench.toyworld.tokenizer import build_tokenizer
    from saebench.toyworld.world_v2 import WorldV2

    tokenizer = build_tokenizer(WorldV2(seed=0).vocabulary, tmp_path / "tok")
    model = boot(dict(MODEL_CONFIG_V2, d_vocab=len(tokenizer), seed=0), tokenizer).original_model
    decay_of = v2_calendar_decay(V2_CALENDAR_STAGE)
    groups = parameter_groups(model, 0.1, decay_of)
    by_decay = {g["weight_decay"]: {id(p) for p in g["params"]} for g in groups}
    assert set(by_decay) == {0.0, 2.0}
    for name, parameter in model.named_parameters():
        layer0 = name.startswith("layers.0.")
        if layer0 and (".attn." in name or ".ln1." in name):
            assert not parameter.requires_grad and all(
                id(parameter) not in g for g in by_decay.values()
            )
        elif layer0 or name.startswith(("tok_embed", "pos")):
            assert id(parameter) in by_decay[0.0], name
        else:
            assert id(parameter) in by_decay[2.0], name
    # Without a rule every parameter gets the one weight decay.
    plain = parameter_groups(model, 0.1)
    assert [g["weight_decay"] for g in plain] == [0.1]
    assert len(plain[0]["params"]) == len(list(model.parameters()))
