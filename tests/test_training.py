"""The shared training engine: schedule, scaling, config recording, logs, errors."""

import json
import math

import pytest
import torch

from saebench import plugins
from saebench.activations import InMemoryStore
from saebench.errors import ConfigError, SaebenchError
from saebench.synthetic import SuperpositionStream
from saebench.training import TrainConfig, effective_config, input_scale, lr_multiplier, train_sae

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def store():
    return SuperpositionStream(32, 8, firing_prob=0.06, seed=3).store(4_000, 500)


def tiny_config(**overrides):
    return TrainConfig(
        **{
            "d_sae": 16,
            "total_tokens": 8_000,
            "batch_size": 128,
            "lr": 3e-3,
            "progress": False,
            "dead_window_tokens": 2_000,
            **overrides,
        }
    )


def test_input_scale_makes_mean_norm_sqrt_d():
    sample = torch.randn(1000, 9) * 4
    scale = input_scale(sample, "expected_norm_sqrt_d")
    assert (sample * scale).norm(dim=1).mean().item() == pytest.approx(3.0, rel=1e-5)
    assert input_scale(sample, "none") == 1.0
    with pytest.raises(ValueError, match="expected_norm_sqrt_d"):
        input_scale(sample, "unit_variance")
    with pytest.raises(ConfigError, match="normalize='none'"):
        input_scale(torch.zeros(10, 4), "expected_norm_sqrt_d")


def test_lr_multiplier_matches_hand_values():
    # 10 steps, warmup 20% (2 steps), decay over the last 20% (steps 8, 9).
    values = [lr_multiplier(s, 10, 0.2, 0.2) for s in range(10)]
    assert values == pytest.approx([0.5, 1, 1, 1, 1, 1, 1, 1, 1.0, 0.5])


def test_log_has_the_contract_fields(store):
    sae, log = train_sae(plugins.get_method("topk"), 2, store, tiny_config())
    for key in (
        "tokens_seen",
        "seconds",
        "tokens_per_second",
        "loss",
        "mse",
        "l0",
        "dead_latents",
        "input_scale",
        "config",
    ):
        assert key in log, key
    assert log["tokens_seen"] == (8_000 // 128) * 128
    assert log["l0"] <= 2 + 1e-6
    json.dumps(log)  # the runner writes it as JSON
    assert not sae.training and sae.cfg["train_config"]["d_sae"] == 16


def test_batch_size_is_clipped_to_the_store():
    small = InMemoryStore(torch.randn(100, 8), torch.randn(20, 8))
    _sae, log = train_sae(
        plugins.get_method("l1"), 1.0, small, tiny_config(batch_size=1024, total_tokens=1_000)
    )
    assert log["config"]["batch_size"] == 100 and log["steps"] == 10


def test_method_recipe_overrides_are_applied_and_recorded(store):
    gated = plugins.get_method("gated").build(d_in=8, d_sae=16, knob=1.0)
    assert effective_config(tiny_config(), gated).adam_betas == (0.0, 0.999)
    sae, log = train_sae(plugins.get_method("gated"), 1.0, store, tiny_config())
    assert sae.cfg["recipe_overrides"] == {"adam_betas": [0.0, 0.999]}
    assert log["config"]["adam_betas"] == [0.0, 0.999]


def test_training_is_reproducible_with_a_seed(store):
    a, _ = train_sae(plugins.get_method("l1"), 1.0, store, tiny_config(seed=5))
    b, _ = train_sae(plugins.get_method("l1"), 1.0, store, tiny_config(seed=5))
    assert torch.equal(a.W_dec, b.W_dec)


def test_baselines_are_fitted_not_trained(store):
    sae, log = train_sae(plugins.get_method("pca"), store.eval_acts.shape[1], store, tiny_config())
    assert log["trainable"] is False and log["tokens_seen"] == 0
    assert torch.allclose(sae(store.eval_acts), store.eval_acts, atol=1e-4)


def test_bad_knob_is_a_clear_error(store):
    with pytest.raises(ValueError, match="integer"):
        train_sae(plugins.get_method("topk"), 2.5, store, tiny_config())
    with pytest.raises(ValueError, match="minimum"):
        train_sae(plugins.get_method("l1"), -1.0, store, tiny_config())
    with pytest.raises(ConfigError, match=">= 1"):
        train_sae(plugins.get_method("l1"), 1.0, store, tiny_config(total_tokens=0))


def test_divergence_is_a_saebench_error(store):
    from saebench.training import TrainingDiverged

    assert issubclass(TrainingDiverged, SaebenchError)
    huge = InMemoryStore(store.train_acts * 1e30, store.eval_acts)
    # Scaling hides the magnitude, so a 1e30 input only overflows without normalisation.
    with pytest.raises(TrainingDiverged, match="non-finite by"):
        train_sae(plugins.get_method("l1"), 1.0, huge, tiny_config(normalize="none"))


def test_trained_sae_reconstructs_better_than_its_init(store):
    sae, log = train_sae(plugins.get_method("topk"), 3, store, tiny_config(total_tokens=20_000))
    x = store.eval_acts
    with torch.no_grad():
        fvu = ((x - sae(x)).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()
    assert fvu < 0.5 and math.isfinite(log["tokens_per_second"])


def test_topk_training_starts_from_the_geometric_median(store):
    # lr = 0 freezes the parameters at their initialisation, so b_dec must be the geometric
    # median of the init sample (scale-equivariant, so folding the input scale keeps it).
    from saebench.sae import geometric_median

    cfg = tiny_config(lr=0.0, total_tokens=256)
    sae, _ = train_sae(plugins.get_method("topk"), 2, store, cfg)
    sample = store.sample(cfg.init_sample_tokens, cfg.seed)
    assert torch.allclose(sae.b_dec, geometric_median(sample), atol=1e-4)
    assert not torch.allclose(sae.b_dec, sample.mean(0), atol=1e-3)  # not just the mean


def test_progress_bar_names_method_and_knob(store, capsys):
    train_sae(plugins.get_method("topk"), 2, store, tiny_config(progress=True, total_tokens=1280))
    err = capsys.readouterr().err
    assert "topk k=2" in err and "/10 " in err  # total steps = 1280 tokens / 128 per batch
