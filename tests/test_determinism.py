"""Identical training gives bit-identical SAEs on CPU, for every built-in method.

TopK is trained with dead latents, so its AuxK path (masked top-k among dead latents, scatter,
decode) runs too. See docs/regression-gate.md, "Determinism"."""

from __future__ import annotations

import pytest
import torch

from saebench import plugins
from saebench.synthetic import SuperpositionStream
from saebench.training import TrainConfig, train_sae

# (method, knob): the built-in trainable methods, then the calibration baselines (fitted).
METHODS = [
    ("topk", 2),
    ("gated", 1.0),
    ("l1", 1.0),
    ("tanh", 0.5),
    ("pca", 4),
    ("identity", 0),
    ("random", 4),
]


@pytest.fixture(scope="module")
def store():
    return SuperpositionStream(32, 8, firing_prob=0.06, seed=3).store(4_000, 500)


@pytest.fixture(autouse=True, scope="module")
def two_threads():
    """Two threads where there are two cores, so parallel kernels run in parallel."""
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, min(2, previous)))
    yield
    torch.set_num_threads(previous)


def config(seed: int = 7) -> TrainConfig:
    # A wide dictionary and a short dead window: TopK ends with dead latents, so AuxK is active.
    return TrainConfig(
        d_sae=256,
        total_tokens=8_000,
        batch_size=128,
        lr=3e-3,
        progress=False,
        dead_window_tokens=2_000,
        seed=seed,
    )


def state(sae) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in sae.state_dict().items()}


@pytest.mark.parametrize("name, knob", METHODS, ids=[name for name, _ in METHODS])
def test_same_seed_same_store_gives_bit_identical_weights(store, name, knob):
    method = plugins.get_method(name)
    first, log = train_sae(method, knob, store, config())
    if name == "topk":
        assert log["dead_latents"] > 0 and log["final_train"]["auxk"] > 0  # AuxK ran
    second, _ = train_sae(method, knob, store, config())
    a, b = state(first), state(second)
    assert a.keys() == b.keys()
    differing = {
        key: float((a[key].double() - b[key].double()).abs().max())
        for key in a
        if not torch.equal(a[key], b[key])
    }
    assert not differing, f"{name}: parameters differ between identical runs: {differing}"
    assert first.cfg == second.cfg


def test_another_seed_gives_other_weights(store):
    method = plugins.get_method("topk")
    a, _ = train_sae(method, 2, store, config(seed=7))
    b, _ = train_sae(method, 2, store, config(seed=8))
    assert not torch.equal(a.W_dec, b.W_dec)  # the test above is not vacuous
