"""The shipped toy world v2 checkpoint (`--model toyworld-v2`, issue 15): its record and its
site checks at the default hook, measured again here, meet their targets; the tasks' validity
gates agree with the site checks (slow: loads the model and patches a few hundred prompts)."""

import json

import pytest
import torch
from doubles.context import task_context
from doubles.planted import NearestValueDictionary, planted_value_dictionary

from saebench.toyworld.model import CHECKPOINT_V2_DIR, V2_DEFAULT_HOOK

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def handle():
    from saebench.toyworld.plugin import load_toyworld_v2

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_toyworld_v2(device="cpu")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def record():
    return json.loads((CHECKPOINT_V2_DIR / "train_record.json").read_text())


def context(handle, task, hook=None):
    return task_context(handle, hook=hook, artifacts_dir=None, task=task)


def test_the_record_meets_every_behaviour_target_and_names_its_hook(handle, record):
    assert record["world_version"] == 2 and record["default_hook"] == V2_DEFAULT_HOOK
    assert handle.default_hook == V2_DEFAULT_HOOK and handle.bridge.cfg.n_layers == 4
    assert [s["name"] for s in record["stages"]] == ["v2", "calendar"]
    # Every IOI, calendar and trained-fact target is met. Two held-out fact templates are not
    # (language 0.61, climate 0.58 against 0.70): the price of the v2 calendar stage, measured
    # and documented in docs/toyworld.md; a retrained checkpoint that meets them drops this.
    assert record["metrics"]["targets_missed"] == [
        "recall_climate_heldout",
        "recall_language_heldout",
    ]
    assert record["metrics"]["recall_country_heldout"] >= 0.7


def test_entity_and_operand_sites_pass_at_the_default_hook(handle, record):
    from saebench.toyworld.sites import entity_swap_checks, operand_patch_checks

    bridge, tokenizer, world = handle.bridge, handle.tokenizer, handle.world
    checks = entity_swap_checks(bridge, tokenizer, world, V2_DEFAULT_HOOK, n_pairs=150)
    checks += operand_patch_checks(bridge, tokenizer, world, V2_DEFAULT_HOOK, n_pairs=150)
    assert len(checks) == len(world.attributes) + 2
    for check in checks:
        assert check.passed, check
        assert record["site_checks"][V2_DEFAULT_HOOK][check.name]["passed"]
    # One layer later the operand has been read out, as the docs say: the site is blocks.1.
    later = operand_patch_checks(bridge, tokenizer, world, "blocks.2.hook_resid_pre", 60)
    assert all(c.value < 0.1 for c in later)


def test_ravel_and_circular_gates_open_and_ioi_matches_its_site_checks(handle, record):
    from saebench_tasks import circular, ioi, ravel

    assert all(g.informative for g in ravel.validity(context(handle, "ravel")))
    circle = {g.name: g for g in circular.validity(context(handle, "circular"))}
    assert any(g.informative for name, g in circle.items() if "rotation" in name), circle
    sites = record["site_checks"][V2_DEFAULT_HOOK]
    gates = {g.name: g for g in ioi.validity(context(handle, "ioi"))}
    for attribute in ("io", "s", "pos"):
        site = sites[f"ioi_{attribute}_patch"]
        gate = gates[f"ioi_{attribute}_residual_patch_edit_acc"]
        # An attribute the site check finds absent is not scored by the task.
        if not site["passed"]:
            assert gate.reference < 0.8


def test_ravel_planted_dictionary_beats_random_and_the_references_bracket_it(handle):
    """On v2 the attributes are separable directions at the entity token: a dictionary planted
    on them (one latent per value), selected by the task's own learned mask, beats a random
    dictionary (which does no better than the no-op's 0.5); the whole swap moves every
    attribute (cause near 1, isolate near 0)."""
    from saebench_plugins.random_dict import RandomBaseline
    from saebench_tasks import ravel

    ctx = context(handle, "ravel")
    prompts = ravel.site(ctx)["train_prompts"]
    sample = torch.stack([p["act"] for p in prompts]).float()
    torch.manual_seed(0)
    random = ravel.run(replace_sae(ctx, RandomBaseline(sample.shape[1], 512, 16).fit(sample)))
    planted = ravel.run(replace_sae(ctx, planted_attributes(prompts, handle.world.attributes)))
    assert abs(random["ravel_disentangle"] - 0.5) < 0.05
    assert planted["ravel_disentangle"] > random["ravel_disentangle"] + 0.1
    assert planted["ravel_supervised_disentangle"] > random["ravel_disentangle"] + 0.15
    # What the latents encode: the planted ones are attribute-level, random ones are not.
    assert planted["ravel_attribute_latent_share"] > random["ravel_attribute_latent_share"] + 0.5
    for attribute in handle.world.attributes:
        assert planted[f"ravel_residual_swap_cause_{attribute}"] > 0.8
        assert planted[f"ravel_residual_swap_isolate_{attribute}"] < 0.2


def planted_attributes(prompts, attributes):
    """A supervised dictionary at the entity token: one latent per (attribute, value) whose
    decoder row is the value's mean offset; the code is, per attribute, a one-hot of the nearest
    value offset."""
    acts = torch.stack([p["act"] for p in prompts]).float()
    centre = acts.mean(0)
    blocks = []
    for attribute in attributes:
        values = sorted({p["city"][attribute] for p in prompts})
        members = [torch.tensor([p["city"][attribute] == v for p in prompts]) for v in values]
        blocks.append([acts[m].mean(0) - centre for m in members])
    return NearestValueDictionary(centre, blocks)


@pytest.mark.parametrize("kind, period", [("day", 7), ("month", 12)])
def test_circular_planted_dictionary_steers_well_above_random(handle, kind, period):
    """The day and month operands are causal at blocks.1 (site checks) and the raw circle-plane
    intervention moves the answer on more than 3 x chance of the held-out prompts (at smoke
    size the day gate, which asks that of its 95% lower end, still closes); a dictionary
    planted on the value centroids steers the answer far more often than a random one (which
    never does). On v1 the same day test is an expected failure (tests/test_circular.py): the
    operand is inert there."""
    from saebench_plugins.random_dict import RandomBaseline
    from saebench_tasks import circular

    ctx = context(handle, "circular")
    words, values, _ = circular.concept_points(ctx)[kind]
    planted = planted_value_dictionary(words, values, period)
    torch.manual_seed(0)
    random = RandomBaseline(words.shape[1], 512, 8).fit(words)
    ideal = circular.run(replace_sae(ctx, planted, words))
    rand = circular.run(replace_sae(ctx, random, words))
    assert ideal[f"raw_{kind}_rotation_accuracy"] > 3 / period
    assert rand[f"{kind}_rotation_accuracy"] < 1 / period
    assert ideal[f"{kind}_rotation_accuracy"] - rand[f"{kind}_rotation_accuracy"] > 2 / period


def replace_sae(ctx, sae, sample=None):
    from dataclasses import replace

    return replace(ctx, sae=sae, eval_acts=sample)


def test_every_task_runs_on_v2_through_the_cli(handle, tmp_path):
    """`saebench run --model toyworld-v2` with every task (one smoke run, ~30 s): every task
    that supports v2 has a cell for every dictionary, none fails (a task written for v1's
    one-word cities or attribute names would), the tasks whose gates open on v2 are scored, and
    ground_truth scores the v2 fact attributes at the city's last token."""
    from click.testing import CliRunner

    from saebench import plugins
    from saebench.cli import cli

    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "--model",
            "toyworld-v2",
            "--methods",
            "topk",
            "--preset",
            "smoke",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--no-progress",
        ],
        env={"SAEBENCH_CACHE": str(tmp_path / "cache")},
    )
    assert result.exit_code == 0, result.output
    cells = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    assert all(c["status"] in ("ok", "uninformative") for c in cells), [
        (c["id"], c["status"], c["reason"]) for c in cells if c["status"] != "ok"
    ]
    supported = {n for n, t in plugins.get_tasks().items() if t.supports(handle, {}) is None}
    by_task: dict[str, set] = {}
    for c in cells:
        by_task.setdefault(c["task"], set()).add((c["method"], c["status"]))
    assert set(by_task) == supported
    for task in ("frontier", "ravel", "circular", "ground_truth", "sparse_probing"):
        assert {status for _, status in by_task[task]} == {"ok"}, (task, by_task[task])
    assert {method for method, _ in by_task["ravel"]} >= {"topk", "random", "pca"}
    ground_truth = next(c for c in cells if c["task"] == "ground_truth" and c["method"] == "topk")[
        "metrics"
    ]
    for attribute in ("country", "language", "climate"):
        assert f"gt_mcc_{attribute}" in ground_truth
