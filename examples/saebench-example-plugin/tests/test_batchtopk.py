"""The example plugin checks itself with saebench's plugin-author kit (saebench.testing)."""

import pytest
import torch

import saebench_example_plugin as plugin
from saebench.saved_format import load_sae, save_sae
from saebench.synthetic import SuperpositionStream
from saebench.training import TrainConfig, train_sae


def spec():
    found = []
    plugin.register_methods(register=found.append)
    return found[0]


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_conformance(saebench_method_conformance):
    saebench_method_conformance(spec())


def test_batch_l0_is_k_during_training_and_close_at_inference(tmp_path):
    stream = SuperpositionStream(64, 16, firing_prob=0.04, seed=0)
    store = stream.store(20_000, 2_000)
    cfg = TrainConfig(
        d_sae=64,
        total_tokens=60_000,
        batch_size=256,
        lr=3e-3,
        progress=False,
        dead_window_tokens=5_000,
    )
    sae, log = train_sae(spec(), 4, store, cfg)
    assert log["l0"] == pytest.approx(4, abs=1e-6)  # k·B kept per batch, so mean L0 is exactly k
    with torch.no_grad():
        l0 = (sae.encode(store.eval_acts) != 0).float().sum(-1).mean().item()
    assert 2 <= l0 <= 8  # the EMA threshold reproduces the training sparsity roughly
    assert sae.architecture == "jumprelu" and torch.unique(sae.threshold).numel() == 1
    loaded = load_sae(save_sae(sae, tmp_path / "sae", {"model_name": "synthetic"}))
    assert type(loaded).__name__ == "JumpReLUSAE"  # loads without this plugin
    assert torch.allclose(loaded(store.eval_acts), sae(store.eval_acts), atol=1e-5)


def test_k_above_d_sae_is_a_clear_error():
    from saebench.errors import ConfigError

    with pytest.raises(ConfigError, match="lower k"):
        spec().build(d_in=16, d_sae=32, knob=64)
