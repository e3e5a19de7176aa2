"""loss_recovered on the toy model: plumbing checks with SAEs whose answer is known."""

import pytest
import torch

from saebench.harvest import harvest
from saebench.sae import SAE
from saebench.specs import TaskContext
from saebench_plugins.identity import IdentityBaseline
from saebench_tasks import loss_recovered


@pytest.fixture(scope="module")
def store(toy_handle, tmp_path_factory):
    return harvest(
        toy_handle, toy_handle.default_hook, 2000, 1500, cache_dir=tmp_path_factory.mktemp("cache")
    )


def context(toy_handle, store, sae, cache=None):
    return TaskContext(
        model=toy_handle,
        hook=toy_handle.default_hook,
        sae=sae,
        eval_acts=store.eval_acts,
        eval_tokens=store.eval_tokens,
        eval_mask=store.eval_mask,
        device=torch.device("cpu"),
        preset="smoke",
        seed=0,
        cache={} if cache is None else cache,
        artifacts_dir=None,
    )


def test_error_term_splice_reproduces_clean_ce_exactly(toy_handle, store):
    sae = IdentityBaseline(128).fit(store.eval_acts)
    with torch.no_grad():
        sae.W_dec.mul_(0.3)  # a bad SAE: the error term must still restore x exactly
    tokens, mask = store.eval_tokens, store.eval_mask
    ce_clean, _ = loss_recovered.losses(
        toy_handle.bridge, toy_handle.default_hook, tokens, mask, None
    )
    ce_error, _ = loss_recovered.losses(
        toy_handle.bridge,
        toy_handle.default_hook,
        tokens,
        mask,
        loss_recovered.error_term_replacement(sae),
    )
    assert ce_error == ce_clean


def test_perfect_reconstruction_recovers_all_the_loss(toy_handle, store):
    metrics = loss_recovered.run(
        context(toy_handle, store, IdentityBaseline(128).fit(store.eval_acts))
    )
    assert metrics["loss_recovered_zero"] == pytest.approx(1.0, abs=1e-4)
    assert metrics["delta_ce"] == pytest.approx(0.0, abs=1e-4)
    assert metrics["kl_sae"] == pytest.approx(0.0, abs=1e-5)
    assert metrics["ce_zero_ablation"] > metrics["ce_clean"]


def test_zero_output_sae_scores_zero_against_zero_ablation(toy_handle, store):
    sae = SAE(128, 8)  # all-zero weights: x̂ = 0 everywhere
    metrics = loss_recovered.run(context(toy_handle, store, sae))
    assert metrics["loss_recovered_zero"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["kl_score_zero"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["delta_ce"] > 0


def test_clean_and_ablation_losses_are_computed_once(toy_handle, store, monkeypatch):
    cache = {}
    loss_recovered.run(context(toy_handle, store, SAE(128, 8), cache))
    calls = []
    original = loss_recovered.losses
    monkeypatch.setattr(
        loss_recovered, "losses", lambda *a, **k: calls.append(a[4]) or original(*a, **k)
    )
    loss_recovered.run(context(toy_handle, store, SAE(128, 8), cache))
    assert None not in calls  # no clean forward pass the second time
    assert len(calls) == 2  # the error-term check and the SAE splice
