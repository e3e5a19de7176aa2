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


def test_decoder_stays_unit_norm_and_the_saved_sae_loads_without_the_plugin(tmp_path):
    stream = SuperpositionStream(64, 16, firing_prob=0.04, seed=0)
    store = stream.store(20_000, 2_000)
    cfg = TrainConfig(d_sae=64, total_tokens=40_000, batch_size=256, lr=3e-3, progress=False)
    sae, log = train_sae(spec(), 1.0, store, cfg)
    # The engine folds the input scale s into the weights (W_dec / s): the rows keep one norm.
    norms = sae.W_dec.norm(dim=1)
    assert torch.allclose(norms, norms[0].expand_as(norms), rtol=1e-4)
    assert torch.allclose(norms, torch.full_like(norms, 1 / sae.cfg["input_scale"]), rtol=1e-4)
    assert sae.cfg["sparsity_penalty"] == "l1" and sae.cfg["l1_coefficient"] == 1.0
    loaded = load_sae(save_sae(sae, tmp_path / "sae", {"model_name": "synthetic"}))
    assert type(loaded).__name__ == "SAE" and loaded.architecture == "standard"
    assert torch.allclose(loaded(store.eval_acts), sae(store.eval_acts), atol=1e-5)


def test_a_negative_coefficient_is_a_clear_error():
    with pytest.raises(ValueError, match="below the minimum"):
        spec().check_knob(-1.0)
