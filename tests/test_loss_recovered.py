"""loss_recovered on the toy model: plumbing checks with SAEs whose answer is known, the ΔCE
bootstrap interval, and the ablation validity gate opening (toy model) and closing (a hook the
loss ignores)."""

import numpy as np
import pytest
import torch
from doubles.context import task_context

from saebench.harvest import harvest
from saebench.sae import SAE
from saebench_plugins.identity import IdentityBaseline
from saebench_tasks import loss_recovered


@pytest.fixture(scope="module")
def store(toy_handle, tmp_path_factory):
    return harvest(
        toy_handle, toy_handle.default_hook, 2000, 1500, cache_dir=tmp_path_factory.mktemp("cache")
    )


def context(toy_handle, store, sae, cache=None):
    return task_context(
        toy_handle,
        sae=sae,
        eval_acts=store.eval_acts,
        eval_tokens=store.eval_tokens,
        eval_mask=store.eval_mask,
        cache=cache,
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
    assert metrics["delta_ce__boot_low"] == pytest.approx(0.0, abs=1e-4)
    assert metrics["delta_ce__boot_high"] == pytest.approx(0.0, abs=1e-4)
    assert metrics["kl_div"] == pytest.approx(0.0, abs=1e-5)
    assert metrics["ce_zero_ablation"] > metrics["ce_clean"]


def test_zero_output_sae_scores_zero_against_zero_ablation(toy_handle, store):
    sae = SAE(128, 8)  # all-zero weights: x̂ = 0 everywhere
    metrics = loss_recovered.run(context(toy_handle, store, sae))
    assert metrics["loss_recovered_zero"] == pytest.approx(0.0, abs=1e-6)
    zero_cost = metrics["ce_zero_ablation"] - metrics["ce_clean"]
    assert metrics["delta_ce"] == pytest.approx(zero_cost, rel=1e-9)
    assert metrics["delta_ce__boot_low"] < metrics["delta_ce"] < metrics["delta_ce__boot_high"]
    assert metrics["kl_div"] > 0


def test_clean_and_ablation_losses_are_computed_once(toy_handle, store, monkeypatch):
    cache = {}
    loss_recovered.run(context(toy_handle, store, SAE(128, 8), cache))
    calls = []
    original = loss_recovered.patched_sequence_losses
    monkeypatch.setattr(
        loss_recovered,
        "patched_sequence_losses",
        lambda *a, **k: calls.append(a[4]) or original(*a, **k),
    )
    loss_recovered.run(context(toy_handle, store, SAE(128, 8), cache))
    assert None not in calls  # no clean forward pass the second time
    assert len(calls) == 2  # the error-term check and the SAE splice


class CountingBridge:
    """The toy bridge, counting its forward passes (clean and patched)."""

    def __init__(self, bridge):
        self.bridge, self.clean, self.patched = bridge, 0, 0

    def __call__(self, tokens):
        self.clean += 1
        return self.bridge(tokens)

    def run_with_hooks(self, *args, **kwargs):
        self.patched += 1
        return self.bridge.run_with_hooks(*args, **kwargs)


def test_a_later_cell_runs_one_patched_pass_plus_one_check_batch(toy_handle, store):
    from dataclasses import replace

    counting = CountingBridge(toy_handle.bridge)
    handle = replace(toy_handle, bridge=counting)
    cache = {}
    loss_recovered.run(context(handle, store, SAE(128, 8), cache))
    counting.clean = counting.patched = 0
    loss_recovered.run(context(handle, store, SAE(128, 8), cache))
    n_batches = len(loss_recovered.batch_rows(len(store.eval_tokens)))
    assert counting.clean == 0  # clean log-probs come from the cache
    assert counting.patched == n_batches + 1  # the SAE splice, the splice check on one batch


def test_ce_and_kl_match_torch_per_token_losses():
    torch.manual_seed(0)
    n, length, vocab = 70, 9, 11  # more than two batches, the last one short
    tokens = torch.randint(0, vocab, (n, length))
    mask = torch.rand(n, length) < 0.8
    logits, clean_logits = torch.randn(n, length, vocab), torch.randn(n, length, vocab)
    rows = loss_recovered.batch_rows(n)
    ce, kl = loss_recovered.ce_and_kl(
        tokens,
        mask,
        [loss_recovered.logprobs_of(logits[r]) for r in rows],
        lambda i: loss_recovered.logprobs_of(clean_logits[rows[i]]),
    )
    counted = mask[:, 1:]
    logprobs = torch.log_softmax(logits[:, :-1].double(), -1)
    clean = torch.log_softmax(clean_logits[:, :-1].double(), -1)
    token_ce = torch.nn.functional.nll_loss(
        logprobs.reshape(-1, vocab), tokens[:, 1:].reshape(-1), reduction="none"
    ).reshape(n, length - 1)
    token_kl = torch.nn.functional.kl_div(logprobs, clean, log_target=True, reduction="none").sum(
        -1
    )
    assert ce == pytest.approx(token_ce[counted].mean().item(), rel=1e-12)
    assert kl == pytest.approx(token_kl[counted].mean().item(), rel=1e-12)


def test_cached_clean_logprobs_equal_recomputed_ones(toy_handle, store):
    tokens = store.eval_tokens[:70]
    kept = loss_recovered.CleanLogprobs(toy_handle.bridge, tokens)
    recomputed = loss_recovered.CleanLogprobs(toy_handle.bridge, tokens, budget=0)
    assert kept.kept is not None and recomputed.kept is None
    for index, rows in enumerate(loss_recovered.batch_rows(len(tokens))):
        with torch.no_grad():
            fresh = loss_recovered.logprobs_of(toy_handle.bridge(tokens[rows]))
        assert torch.equal(kept.logprobs(index), fresh)
        assert torch.equal(recomputed.logprobs(index), fresh)


def test_metrics_do_not_depend_on_whether_clean_logprobs_fit_the_budget(
    toy_handle, store, monkeypatch
):
    sae = IdentityBaseline(128).fit(store.eval_acts)
    with torch.no_grad():
        sae.W_dec.mul_(0.7)
    cached = loss_recovered.run(context(toy_handle, store, sae))
    monkeypatch.setattr(loss_recovered, "CLEAN_LOGPROBS_BUDGET", 0)
    assert loss_recovered.run(context(toy_handle, store, sae)) == cached


def test_a_broken_splice_fails_the_cell(toy_handle, store, monkeypatch):
    from saebench.errors import SaebenchError

    monkeypatch.setattr(loss_recovered, "error_term_replacement", lambda sae: lambda x: 0.5 * x)
    with pytest.raises(SaebenchError, match="splice"):
        loss_recovered.run(context(toy_handle, store, SAE(128, 8)))


def test_sequence_losses_sum_to_the_token_means():
    torch.manual_seed(1)
    n, length, vocab = 40, 7, 5
    tokens = torch.randint(0, vocab, (n, length))
    mask = torch.rand(n, length) < 0.7
    logits, clean_logits = torch.randn(n, length, vocab), torch.randn(n, length, vocab)
    rows = loss_recovered.batch_rows(n)
    per_sequence = loss_recovered.sequence_losses(
        tokens,
        mask,
        [loss_recovered.logprobs_of(logits[r]) for r in rows],
        lambda i: loss_recovered.logprobs_of(clean_logits[rows[i]]),
    )
    logprobs = torch.log_softmax(logits[:, :-1].double(), -1)
    token_ce = -logprobs.gather(-1, tokens[:, 1:, None])[..., 0]
    for i in (0, 17, 39):
        counted = mask[i, 1:]
        assert per_sequence.counts[i] == counted.sum()
        assert per_sequence.ce[i] == pytest.approx(token_ce[i][counted].sum().item(), rel=1e-12)
    assert per_sequence.mean_ce == pytest.approx(token_ce[mask[:, 1:]].mean().item(), rel=1e-12)


def test_token_mean_interval_is_the_ratio_with_a_bootstrap_around_it():
    from saebench.stats import bootstrap_interval

    rng = np.random.default_rng(0)
    counts = rng.integers(30, 64, 300).astype(float)
    sums = counts * 0.3 + rng.normal(0, 2.0, 300)
    interval = loss_recovered.token_mean_interval(sums, counts)
    assert interval.mean == pytest.approx(sums.sum() / counts.sum(), rel=1e-12)
    # Against a direct bootstrap of the ratio (the same resamples): equal up to O(1/n).
    draws = np.random.default_rng(0).integers(0, 300, size=(2000, 300))
    ratios = sums[draws].sum(1) / counts[draws].sum(1)
    low, high = np.quantile(ratios, [0.025, 0.975])
    assert interval.low == pytest.approx(low, abs=0.1 * (high - low))
    assert interval.high == pytest.approx(high, abs=0.1 * (high - low))
    # Equal counts: exactly the bootstrap of per-sequence means.
    equal = loss_recovered.token_mean_interval(sums, np.full(300, 50.0))
    assert equal.low == pytest.approx(bootstrap_interval(sums / 50.0).low, rel=1e-12)


def test_ablation_gate_opens_on_the_toy_model(toy_handle, store):
    """Measured (this 1,500-token eval set, 28 sequences): mean ablation +5.39 nats (95% lower
    end 5.22), zero ablation +4.85 (4.70); far above the 0.1-nat margin. No SAE is needed."""
    checks = {c.name: c for c in loss_recovered.validity(context(toy_handle, store, None))}
    assert set(checks) == {"mean_ablation_delta_ce", "zero_ablation_delta_ce"}
    assert all(c.informative and c.chance == 0.0 for c in checks.values())
    assert checks["mean_ablation_delta_ce"].governs == ()  # gates the whole task
    assert checks["zero_ablation_delta_ce"].covers("loss_recovered_zero")
    assert not checks["zero_ablation_delta_ce"].covers("delta_ce")


class HookIgnoringBridge:
    """The toy bridge with a hook the loss never reads: patched runs equal clean runs."""

    def __init__(self, bridge):
        self.bridge = bridge

    def __call__(self, tokens):
        return self.bridge(tokens)

    def run_with_hooks(self, tokens, fwd_hooks=(), return_type="logits"):
        return self.bridge(tokens)


def test_ablation_gate_closes_when_the_hook_does_not_matter(toy_handle, store):
    from dataclasses import replace

    handle = replace(toy_handle, bridge=HookIgnoringBridge(toy_handle.bridge))
    checks = loss_recovered.validity(context(handle, store, None))
    assert [c.informative for c in checks] == [False, False]
    assert all(c.reference == 0.0 and c.low == 0.0 for c in checks)


def test_declared_metrics_cover_the_intervals_and_one_kl():
    spec = loss_recovered.METRICS
    assert not any(name.startswith("kl_score") for name in spec)
    assert [name for name, info in spec.items() if info.headline] == ["delta_ce"]
    from saebench.specs import TaskSpec

    task = TaskSpec("loss_recovered", "", lambda ctx: {}, spec)
    for name in ("delta_ce__boot_low", "delta_ce__boot_high", "kl_div__boot_low"):
        assert task.metric_info(name).higher_is_better is None
