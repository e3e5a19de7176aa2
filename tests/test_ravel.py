"""ravel task: η², interchange arithmetic, the validity gate, and a fake model whose fact
storage is known.

The fake (tests/doubles/fake_world.py) stores a city's country, continent and language as
one-hot blocks at the city token and answers from the asked block, so the identity dictionary
can swap one attribute without touching the others, while the whole-residual swap moves all.
Variants of it move the facts to the final token (the entity token is inert: the gate closes)
or know no facts at all. On the shipped model the gate closes at the default hook (the 2-layer
model has moved the facts off the city token by blocks.1) and opens at blocks.0.
"""

import pytest
import torch
from doubles.context import fake_world_handle, task_context
from doubles.fake_world import HOOK, FakeWorldBridge, planted_sae, random_sae

from saebench.errors import SaebenchError
from saebench.interventions import latent_swap, separation_scores
from saebench.rundir import RunDir
from saebench.work import task_validity
from saebench_tasks import ravel


class LateFacts(FakeWorldBridge):
    """Copies the city's facts to the final token before the hook and answers from there: a
    patch at the city token changes nothing, one at the final token moves every attribute."""

    def _acts(self, tokens):
        acts = super()._acts(tokens)
        acts[:, -1] += self.token_table[tokens[:, :-1]].sum(1)
        return acts

    def _readout(self, tokens, acts):
        city = torch.isin(tokens, torch.tensor(list(self.city_ids)))
        acts = torch.where(city[..., None], acts[:, -1:], acts)  # the city reads the final token
        return super()._readout(tokens, acts)


class NoFacts(FakeWorldBridge):
    def _readout(self, tokens, acts):
        return torch.zeros(tokens.shape[0], 1, self.vocab_size)


def handle(bridge_class=FakeWorldBridge):
    return fake_world_handle(bridge_class)


def context(model, sae=None, cache=None, hook=HOOK):
    return task_context(model, hook=hook, sae=sae, cache=cache, task="ravel")


@pytest.fixture(scope="module")
def model():
    return handle()


@pytest.fixture(scope="module")
def shared_cache():
    return {}


@pytest.fixture(scope="module")
def scores(model, shared_cache):
    d = model.bridge.d_model
    out = {}
    for name, sae in (("planted", planted_sae(d)), ("random", random_sae(d, 2 * d))):
        out[name] = ravel.run(context(model, sae, shared_cache))
    return out


def model_cities():
    from saebench.toyworld import load_world

    return load_world().cities


def spec():
    registered = []
    ravel.register_tasks(registered.append)
    return registered[0]


def test_separation_scores_by_hand():
    # latent 0 is the label itself (η² = 1); latent 1 varies only within groups (η² = 0);
    # latent 2 is constant (defined as 0).
    codes = torch.tensor([[1.0, 1.0, 3.0], [1.0, -1.0, 3.0], [0.0, 1.0, 3.0], [0.0, -1.0, 3.0]])
    eta = separation_scores(codes, ["a", "a", "b", "b"])
    assert eta.tolist() == pytest.approx([1.0, 0.0, 0.0])


def test_latent_swap_with_and_without_error_term():
    sae = planted_sae(3)
    with torch.no_grad():
        sae.W_dec.mul_(0.5)  # a lossy SAE: x̂ = x / 2
    base, source = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[5.0, 6.0, 7.0]])
    latents = torch.tensor([1])
    kept = latent_swap(sae, base, source, latents, keep_error=True)
    dropped = latent_swap(sae, base, source, latents, keep_error=False)
    assert kept.tolist() == [[1.0, 4.0, 3.0]]  # base + (6 − 2) · 0.5 on dim 1
    assert dropped.tolist() == [[0.5, 3.0, 1.5]]  # decode(1, 6, 3) = halves


def test_whole_residual_swap_causes_everything_and_isolates_nothing(scores):
    planted = scores["planted"]
    assert planted["ravel_model_accuracy"] == 1.0
    for attribute in ("country", "continent", "language"):
        assert planted[f"ravel_residual_swap_cause_{attribute}"] == 1.0
        assert planted[f"ravel_residual_swap_isolate_{attribute}"] == 0.0


def test_planted_dictionary_disentangles(scores):
    planted = scores["planted"]
    assert planted["ravel_disentangle_continent"] == 1.0
    assert planted["ravel_isolate"] == 1.0
    assert planted["ravel_disentangle"] > 0.85
    assert planted["ravel_disentangle"] > planted["ravel_residual_swap_disentangle"] + 0.3
    assert planted["ravel_disentangle"] > planted["ravel_random_set_disentangle"] + 0.3
    # The mask is small: the planted attribute blocks, not the whole dictionary.
    assert planted["ravel_n_latents_continent"] <= len(set(c["continent"] for c in model_cities()))


def test_normalised_scores_put_the_no_op_at_0_and_the_whole_swap_at_0_5(scores):
    """cause / swap cause and (isolate − swap isolate)/(1 − swap isolate): the planted mask
    is at the top of both scales; a whole swap would sit at (1, 0) → ½, a no-op at (0, 1) → ½."""
    planted = scores["planted"]
    assert ravel.normalised(1.0, 0.0, 1.0, 0.0) == (1.0, 0.0, 0.5)
    assert ravel.normalised(0.0, 1.0, 1.0, 0.0) == (0.0, 1.0, 0.5)
    assert ravel.normalised(0.4, 0.9, 0.8, 0.5) == pytest.approx((0.5, 0.8, 0.65))
    # Clipped to [0, 1]; no scale where a reference leaves under a quarter of room.
    assert ravel.normalised(0.9, 0.2, 0.5, 0.4) == (1.0, 0.0, 0.5)
    cause, isolate, score = ravel.normalised(0.5, 0.8, 1.0, 23 / 24)
    assert cause == 0.5 and isolate != isolate and score != score
    assert planted["ravel_normalised_disentangle"] > 0.85
    assert (
        planted["ravel_normalised_disentangle"]
        > scores["random"]["ravel_normalised_disentangle"] + 0.1
    )


def test_mdbm_masks_only_the_attribute_s_block_of_the_planted_dictionary(model, shared_cache):
    """On the fake, the identity dictionary stores each attribute in its own one-hot block:
    the learned mask for continent selects continent latents and none of the other blocks."""
    bridge = model.bridge
    ctx = context(model, planted_sae(bridge.d_model), shared_cache)
    prep = ravel.prepare(ctx)
    train = (
        prep["train_pairs"][("continent", "cause")] + prep["train_pairs"][("continent", "isolate")]
    )
    mask = ravel.train_mask(ctx, ctx.sae, train, seed=0) > 0
    start = bridge.offsets["continent"]
    block = torch.zeros(bridge.d_model, dtype=torch.bool)
    block[start : start + len(bridge.blocks["continent"])] = True
    assert mask[block].any() and not mask[~block].any()
    logits = ravel.train_mask(ctx, ctx.sae, train, seed=0)
    cut = ravel.budgeted(logits, 2)
    rest = [i for i in torch.nonzero(mask).flatten().tolist() if i not in cut.tolist()]
    assert len(cut) == 2 and logits[cut].min() >= logits[rest].max()
    assert set(ravel.budgeted(logits, 10**6).tolist()) == set(
        torch.nonzero(mask).flatten().tolist()
    )


def test_mdbm_schedule_and_batches():
    from saebench_tasks.ravel.mdbm import batches, temperatures

    schedule = temperatures(5)
    assert schedule[0] == pytest.approx(1.0) and schedule[-1] == pytest.approx(1e-4)
    assert all(a > b for a, b in zip(schedule, schedule[1:]))
    pairs = [({"tokens": torch.zeros(n)},) for n in (3, 3, 4, 3, 4)]
    out = batches(pairs, batch_size=2, steps=7, seed=0)
    assert len(out) == 7
    for batch in out:  # one length per batch, at most batch_size
        assert len({len(pairs[i][0]["tokens"]) for i in batch}) == 1 and len(batch) <= 2
    assert sorted(i for batch in out[:3] for i in batch) == [0, 1, 2, 3, 4]  # one epoch


def test_random_dictionary_scores_clearly_worse(scores):
    """A learned mask over a 2×-overcomplete random frame approximates an attribute's subspace
    with hundreds of latents (DAS-like): unbudgeted, random scores 0.85 against planted 0.94.
    Cut to one latent per value (the task's score), random falls to the no-op's 0.5."""
    random, planted = scores["random"], scores["planted"]
    assert random["ravel_disentangle"] < planted["ravel_disentangle"] - 0.3
    # The planted latents are attribute-level (continent and language; country, 38 values for
    # 62 cities, nearly names the city and is not judged); a random frame's latents are not.
    assert planted["ravel_attribute_latent_share"] > random["ravel_attribute_latent_share"] + 0.2
    # SAEBench's unbudgeted mask is what a wide random frame games: hundreds of latents.
    assert random["ravel_unbounded_disentangle"] > random["ravel_disentangle"] + 0.2
    assert random["ravel_unbounded_n_latents_country"] > 4 * random["ravel_n_latents_country"]


def test_plot_writes_a_bar_chart(tmp_path):
    import pandas as pd

    rows = [
        dict(
            model="m",
            hook=HOOK,
            method=method,
            knob=1.0,
            seed=0,
            task="ravel",  # noqa: C408
            metric=f"ravel_disentangle_{a}",
            value=v,
        )
        for method, v in (("topk", 0.7), ("random", 0.5))
        for a in ("country", "continent", "language")
    ]
    paths = ravel.plot(pd.DataFrame(rows), RunDir(tmp_path))
    assert len(paths) == 1 and paths[0].exists() and paths[0].stat().st_size > 0


def test_gate_arithmetic_on_constructed_outcomes():
    def hits(n_true, n):
        return torch.arange(n) < n_true

    moved = ravel.gate("g", hits(40, 48), 0.1, "")
    assert moved.reference == pytest.approx(40 / 48)
    assert 0.1 + ravel.GATE_MARGIN < moved.low < moved.reference and moved.informative
    # Above chance, but not by the margin once the interval is taken into account.
    assert not ravel.gate("g", hits(18, 48), 0.1, "").informative
    assert not ravel.gate("g", hits(0, 48), 0.0, "").informative
    few = ravel.gate("g", hits(7, 7), 0.0, "x")  # all moved, but too few pairs to trust
    assert few.reference == 1.0 and few.low == 0.0 and not few.informative
    assert few.description.startswith("only 7 usable pairs")


def test_gate_opens_where_the_entity_token_carries_the_facts(model, shared_cache, scores):
    checks = task_validity(spec(), context(model, sae=None, cache=shared_cache))
    assert [c.name for c in checks] == [
        "ravel_entity_swap_cause",
        *(f"ravel_entity_swap_cause_{a}" for a in ("country", "continent", "language")),
    ]
    assert all(c.informative and c.reference == 1.0 for c in checks)
    overall, country = checks[0], checks[1]
    assert overall.governs == () and country.covers("ravel_cause_country")
    assert country.covers("ravel_disentangle") and not country.covers("ravel_cause_language")
    n_countries = len({c["country"] for c in model.world.cities})
    assert country.chance == pytest.approx(1 / n_countries)  # the unpatched rate is 0


def test_gate_closes_where_the_entity_token_is_inert():
    late = handle(LateFacts)
    cache = {}
    checks = ravel.validity(context(late, cache=cache))
    assert all(c.reference == 0.0 and not c.informative for c in checks)
    assert "last entity token" in checks[0].description
    # Called directly, the task refuses with the measured number; it never moves position.
    with pytest.raises(SaebenchError, match="uninformative at .* 0% of cause pairs"):
        ravel.run(context(late, planted_sae(late.bridge.d_model), cache))


def test_a_model_without_the_facts_closes_the_gate_instead_of_failing():
    silent = handle(NoFacts)
    checks = ravel.validity(context(silent))
    assert not any(c.informative for c in checks)
    assert checks[0].description.startswith("only 0 usable pairs")
    assert "answers 0/" in checks[0].description
    with pytest.raises(SaebenchError, match="knows the city facts"):
        ravel.run(context(silent, planted_sae(silent.bridge.d_model)))


def test_chance_levels_are_declared():
    task = spec()
    assert task.metric_info("ravel_cause_country").chance == 0.0
    assert task.metric_info("ravel_isolate").chance == 1.0
    assert task.metric_info("ravel_disentangle_language").chance == 0.5
    assert task.metric_info("ravel_residual_swap_isolate_country").chance == 1.0
    assert task.metric_info("ravel_residual_swap_disentangle").chance == 0.5


@pytest.mark.slow
def test_gate_on_the_shipped_model_closes_at_the_default_hook_and_opens_at_layer_0(monkeypatch):
    from saebench.toyworld.plugin import load_toyworld

    monkeypatch.setattr(ravel.config, "N_PAIRS", {"smoke": 12, "default": 12})
    real = load_toyworld(device="cpu")
    closed = ravel.validity(context(real, hook=real.default_hook))
    opened = ravel.validity(context(real, hook="blocks.0.hook_resid_pre"))
    assert real.default_hook == "blocks.1.hook_resid_pre"
    assert not any(c.informative for c in closed) and closed[0].reference < 0.05
    assert all(c.informative for c in opened) and opened[0].reference > 0.9


def test_supervised_patch_moves_the_base_by_the_value_offsets():
    from saebench_tasks.ravel.supervised import supervised_patch, value_offsets

    def prompt(country, act):
        return {"city": {"country": country}, "act": torch.tensor(act)}

    prompts = [prompt("a", [1.0, 0.0]), prompt("a", [3.0, 0.0]), prompt("b", [0.0, 4.0])]
    offsets = value_offsets(prompts, "country")  # mean (4/3, 4/3)
    assert torch.allclose(offsets["a"], torch.tensor([2 - 4 / 3, -4 / 3], dtype=torch.float64))
    base, source = prompts[0], prompts[2]
    moved = supervised_patch(prompts, "country")(
        base["act"][None], source["act"][None], [(base, source, 0, 0)]
    )
    assert torch.allclose(moved[0], base["act"] + (offsets["b"] - offsets["a"]).float())


def test_supervised_reference_is_reported_with_every_cell(scores):
    planted = scores["planted"]
    assert (
        scores["random"]["ravel_supervised_disentangle"] == planted["ravel_supervised_disentangle"]
    )
    for a in ("country", "continent", "language"):
        assert 0 <= planted[f"ravel_supervised_cause_{a}"] <= 1
    # The fake's continent is a function of the country: a class-mean continent offset moves
    # continent alone and isolates; the country offset drags continent and language with it.
    assert (
        planted["ravel_supervised_isolate_continent"] > planted["ravel_supervised_isolate_country"]
    )
