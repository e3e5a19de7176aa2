"""ioi task: formulas against hand-computed values, and a fake model whose IOI circuit is known.

The fake (tests/doubles/fake_world.py) holds e_IO + e_S + e_order at the final token in separate
one-hot blocks and answers from all three, so the identity dictionary is the ideal SAE: F1 = 1,
sufficiency = 1, necessity = 0, and the IO-only and S-only edits move the answer like the
supervised edits (a Pos-only edit loses to IO and S there, and its gate closes).
The validity gates open on it; it closes on a variant whose answer ignores the hook (every patch
is inert) and on one that does no IOI; on the shipped model it opens at the default hook and
closes at blocks.0 (whose final token holds only that token's embedding).
"""

from pathlib import Path

import numpy as np
import pytest
import torch
from doubles.context import fake_world_handle, task_context
from doubles.fake_world import HOOK, FakeWorldBridge, planted_sae, random_sae

from saebench.errors import SaebenchError
from saebench.interventions import best_latent_f1, length_batches, run_patched
from saebench.specs import ModelHandle
from saebench.work import task_validity
from saebench_tasks import ioi


class InertHook(FakeWorldBridge):
    """Answers from the clean activations: no patch at the hook changes anything."""

    def _readout(self, tokens, acts):
        return super()._readout(tokens, self._acts(tokens))


class Silent(FakeWorldBridge):
    def _readout(self, tokens, acts):
        return torch.zeros(tokens.shape[0], 1, self.vocab_size)


def variant(bridge_class):
    return fake_world_handle(bridge_class, name=bridge_class.__name__)


def spec():
    registered = []
    ioi.register_tasks(registered.append)
    return registered[0]


@pytest.fixture(scope="module")
def model():
    return fake_world_handle()


def context(model, sae, cache, tmp_path=Path("."), hook=HOOK):
    return task_context(model, hook=hook, sae=sae, cache=cache, artifacts_dir=tmp_path, task="ioi")


@pytest.fixture(scope="module")
def shared_cache():
    return {}


@pytest.fixture(scope="module")
def scores(model, shared_cache):
    cache = shared_cache
    d = model.bridge.d_model
    return {
        name: ioi.run(context(model, sae, cache))
        for name, sae in (("planted", planted_sae(d)), ("random", random_sae(d, 2 * d)))
    }


def test_best_latent_f1_matches_hand_counts():
    active = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=torch.bool)
    label = torch.tensor([1, 1, 0, 0], dtype=torch.bool)
    precision, recall, f1 = best_latent_f1(active, label)
    # latent 0: tp 2, predicted 2 -> P 1, R 1; latent 1: tp 1, predicted 2 -> P .5, R .5;
    # latent 2 never fires -> 0.
    assert precision.tolist() == [1.0, 0.5, 0.0]
    assert recall.tolist() == [1.0, 0.5, 0.0]
    assert f1.tolist() == pytest.approx([1.0, 0.5, 0.0])


def test_length_batches_groups_equal_lengths_in_bounded_batches():
    sequences = [[0] * n for n in (3, 1, 3, 3, 1, 2)]
    assert list(length_batches(sequences, 2)) == [[0, 2], [3], [1, 4], [5]]


def test_run_patched_replaces_only_the_given_position(model):
    bridge = model.bridge
    tokens = [bridge.to_tokens("when mary and john went to the store , john gave a drink to")[0]]
    acts, clean = run_patched(bridge, HOOK, tokens, [len(tokens[0]) - 1])
    mary = bridge.index("io", "mary")
    assert acts[0, mary] == 1.0
    edited = acts.clone()
    edited[0, mary], edited[0, bridge.index("io", "tom")] = 0.0, 1.0
    _, logits = run_patched(bridge, HOOK, tokens, [len(tokens[0]) - 1], lambda a, idx: edited[idx])
    tom = model.tokenizer.encode(" tom", add_special_tokens=False)[0]
    assert logits[0].argmax() == tom and clean[0].argmax() != tom


def test_planted_dictionary_is_ideal(scores):
    planted = scores["planted"]
    assert planted["ioi_model_accuracy"] == 1.0
    assert planted["ioi_f1_io"] == planted["ioi_f1_s"] == planted["ioi_f1_pos"] == 1.0
    assert planted["ioi_mcc_io"] == planted["ioi_mcc_s"] == planted["ioi_mcc_pos"] == 1.0
    assert planted["ioi_sae_sufficiency"] == pytest.approx(1.0, abs=1e-6)
    assert planted["ioi_sae_necessity"] == pytest.approx(0.0, abs=1e-6)
    assert planted["ioi_supervised_sufficiency"] > 0.95
    # The fake reads IO, S and the context: the IO-only and S-only edits move its answer, a
    # Pos-only edit loses to them (its whole-activation patch misses the target too).
    for attribute in ("io", "s"):
        assert planted[f"ioi_{attribute}_residual_patch_edit_acc"] == 1.0
        assert planted[f"ioi_{attribute}_supervised_edit_acc"] == 1.0
        assert planted[f"ioi_{attribute}_sae_edit_acc_k8"] == 1.0  # flat past 2·L0
        assert planted[f"ioi_{attribute}_sae_edit_reaches_half"] == 1.0
    # IO-only: two coordinates change (IO A off, C on), so k = 2 suffices; k = 1 turns C on
    # while A stays, and A still wins.
    assert planted["ioi_io_sae_edit_acc_k2"] == 1.0 > planted["ioi_io_sae_edit_acc_k1"]
    assert planted["ioi_io_sae_edit_k50"] == 2
    # S-only: the counterfactual's code differs in four coordinates (S and, with it, IO), and
    # the SAE edit copies the largest differences whatever their attribute: k = 4 suffices.
    assert planted["ioi_s_sae_edit_acc_k4"] == 1.0 > planted["ioi_s_sae_edit_acc_k1"]
    assert planted["ioi_s_sae_edit_k50"] in (2, 4)
    assert planted["ioi_pos_residual_patch_edit_acc"] == 0.0


def test_random_dictionary_scores_clearly_worse(scores):
    planted, random = scores["planted"], scores["random"]
    assert random["ioi_mcc_mean"] < planted["ioi_mcc_mean"] - 0.5
    for attribute in ("io", "s"):
        # A curve that never gets halfway is censored at twice its end, so it ranks last.
        assert random[f"ioi_{attribute}_sae_edit_k50"] > planted[f"ioi_{attribute}_sae_edit_k50"]
        k4 = f"ioi_{attribute}_sae_edit_acc_k4"
        assert random[k4] < planted[k4] - 0.5
        # The supervised numbers do not depend on the SAE.
        key = f"ioi_{attribute}_supervised_edit_acc"
        assert random[key] == planted[key]


def test_counterfactuals_change_one_attribute_and_name_the_edit_target():
    from saebench.toyworld.ioi_edits import counterfactual, new_io_name

    prompt = "when mary and john went to the store , john gave a drink to"
    labels = {"io": "mary", "s": "john", "order": "ABBA"}
    io = counterfactual(labels, prompt, "io", "tom")
    assert io.prompt == "when tom and john went to the store , john gave a drink to"
    assert (io.answer, io.target, io.to_value) == ("tom", "tom", "tom")
    s = counterfactual(labels, prompt, "s", "tom")
    assert s.prompt == "when john and mary went to the store , mary gave a drink to"
    assert (s.answer, s.target, s.to_value) == ("john", "john", "mary")
    pos = counterfactual(labels, prompt, "pos", "tom")
    assert pos.prompt == "when john and mary went to the store , john gave a drink to"
    assert (pos.answer, pos.target, pos.to_value) == ("mary", "john", "BABA")
    baba = {"io": "mary", "s": "john", "order": "BABA"}
    back = counterfactual(baba, pos.prompt, "pos", "tom")
    assert back.prompt == prompt and back.to_value == "ABBA"
    with pytest.raises(ValueError, match="must not be in the prompt"):
        counterfactual(labels, prompt, "io", "john")
    names = ["mary", "john", "tom", "ann"]
    picked = {new_io_name(names, labels, seed=0, index=i) for i in range(40)}
    assert picked == {"tom", "ann"}
    assert new_io_name(names, labels, 3, 7) == new_io_name(names, labels, 3, 7)


def test_model_that_fails_ioi_is_refused_and_closes_the_gate(model):
    silent = variant(Silent)
    cache = {}
    (check,) = ioi.validity(context(silent, None, cache))
    assert not check.informative and "does IOI" in check.description
    with pytest.raises(SaebenchError, match="does IOI"):
        ioi.run(context(silent, planted_sae(silent.bridge.d_model), cache))


def test_gate_arithmetic_on_constructed_outcomes():
    hits = torch.arange(100) < 90
    opened = ioi.gate("g", hits, 0.6, "")
    assert opened.reference == pytest.approx(0.9) and opened.low < 0.9 and opened.informative
    assert not ioi.gate("g", hits, 0.8, "").informative  # 0.9 is not 0.8 + margin beyond noise
    assert not ioi.gate("g", torch.zeros(100, dtype=torch.bool), 0.0, "").informative


def test_gate_opens_where_the_final_token_carries_the_names(model, shared_cache, scores):
    checks = {c.name: c for c in task_validity(spec(), context(model, None, shared_cache))}
    # The fake carries IO, S and order at the final token: a raw probe decodes all three.
    present = [checks[f"ioi_present_{a}"] for a in ("io", "s", "pos")]
    assert all(c.informative for c in present) and present[0].covers("ioi_mcc_io")
    assert present[0].covers("ioi_mcc_mean") and not present[0].covers("ioi_mcc_s")
    task = checks["ioi_residual_patch_edit_acc"]
    assert task.governs == () and task.informative and task.reference == 1.0
    for attribute in ("io", "s"):
        patch = checks[f"ioi_{attribute}_residual_patch_edit_acc"]
        supervised = checks[f"ioi_{attribute}_supervised_edit_acc"]
        assert patch.informative and supervised.informative
        assert patch.covers(f"ioi_{attribute}_sae_edit_k50")
        assert not patch.covers("ioi_mcc_mean") and not patch.covers("ioi_pos_sae_edit_k50")
        assert supervised.covers(f"ioi_{attribute}_sae_edit_acc_k2")
        assert not supervised.covers(f"ioi_{attribute}_ablation_edit_acc")
    # Chance: the clean run never gives the IO-only target; mean ablation rarely does.
    io = checks["ioi_io_residual_patch_edit_acc"]
    assert io.chance == scores["planted"]["ioi_io_ablation_edit_acc"] < 0.2
    # Pos-only: the patch misses its target, so Pos's edit metrics are not scored.
    assert not checks["ioi_pos_residual_patch_edit_acc"].informative


def test_gate_closes_where_patching_the_hook_changes_nothing(model):
    inert = variant(InertHook)
    checks = ioi.validity(context(inert, None, {}))
    patches = [c for c in checks if "patch" in c.name or "supervised" in c.name]
    assert len(patches) == 7 and all(c.reference == 0.0 for c in patches)
    assert not any(c.informative for c in patches)


def test_chance_levels_are_declared():
    task = spec()
    assert task.metric_info("ioi_model_accuracy").chance == ioi.NAME_GUESS == 0.5
    # An edit's floor is what erasing alone achieves at the hook (measured), not a constant.
    assert task.metric_info("ioi_s_sae_edit_acc_k2").chance is None
    assert task.metric_info("ioi_pos_sae_edit_k50").higher_is_better is False
    assert task.metric_info("ioi_mcc_pos").chance == 0.0  # an always-on latent scores 0
    assert task.metric_info("ioi_f1_pos").higher_is_better is None  # F1 is descriptive now


@pytest.mark.slow
def test_gate_on_the_shipped_model_opens_at_the_default_hook_and_closes_at_layer_0():
    from saebench.toyworld.plugin import load_toyworld

    real = load_toyworld(device="cpu")
    opened = ioi.validity(context(real, None, {}, hook=real.default_hook))
    closed = ioi.validity(context(real, None, {}, hook="blocks.0.hook_resid_pre"))
    assert real.default_hook == "blocks.1.hook_resid_pre"
    assert opened[0].name == "ioi_residual_patch_edit_acc"
    assert opened[0].informative and opened[0].reference > 0.95
    assert not closed[0].informative and closed[0].reference < 0.05


def test_supports_needs_a_world(model):
    assert ioi.supports(model, {}) is None
    no_world = ModelHandle(
        name="gpt2",
        bridge=None,
        tokenizer=None,
        default_hook=HOOK,
        context_size=8,
        corpus=lambda *a: [],
    )
    assert "toy world" in ioi.supports(no_world, {})


def test_presence_chance_is_the_largest_held_out_share():
    from types import SimpleNamespace

    from saebench_tasks.ioi.scoring import majority_rate

    held_out = [SimpleNamespace(labels={"order": o}) for o in ["BABA"] * 31 + ["ABBA"] * 18]
    assert majority_rate(held_out, "order") == pytest.approx(31 / 49)


def test_edit_curve_is_a_fixed_grid_of_powers_of_two():
    assert ioi.edit_curve_ks(4096) == [1, 2, 4, 8, 16, 32, 64, 128, ioi.MAX_EDIT_K]
    assert ioi.edit_curve_ks(100) == [1, 2, 4, 8, 16, 32, 64]
    assert ioi.edit_curve_ks(1) == [1]


def test_latent_mcc_matches_sklearn_and_gives_always_on_zero():
    from sklearn.metrics import matthews_corrcoef

    from saebench.interventions import latent_mcc

    rng = np.random.default_rng(0)
    active = torch.tensor(rng.random((60, 5)) < 0.4)
    active[:, 3] = True  # always on
    active[:, 4] = False  # never on
    labels = torch.tensor(rng.random((60, 3)) < 0.5)
    table = latent_mcc(active, labels)
    assert table.shape == (3, 5)
    for j in range(3):
        for i in range(5):
            expected = matthews_corrcoef(labels[:, j].numpy(), active[:, i].numpy())
            assert table[j, i].item() == pytest.approx(expected, abs=1e-12)
    assert table[:, 3].abs().max() == 0 and table[:, 4].abs().max() == 0
    assert torch.equal(latent_mcc(active, labels[:, 1]), table[1])
    assert latent_mcc(labels[:, :1], labels[:, 0]).item() == pytest.approx(1.0)
