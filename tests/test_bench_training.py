"""pytest-benchmark of one training step per method (tiny dims; no timing assertions)."""

import math

import pytest
import torch

from saebench import plugins

pytest.importorskip("pytest_benchmark")

TRAINABLE = ["l1", "gated", "topk", "tanh"]
KNOBS = {"l1": 1.0, "gated": 1.0, "tanh": 1.0, "topk": 8}


@pytest.mark.parametrize("name", TRAINABLE)
def test_training_step(benchmark, name):
    torch.manual_seed(0)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    sae = plugins.get_method(name).build(d_in=32, d_sae=256, knob=KNOBS[name])
    x = torch.randn(256, 32)
    sae.initialize(x)
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-4)

    def step():
        loss, f, _ = sae.training_loss(x, 1.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sae.project_decoder_grad()
        optimizer.step()
        sae.renormalize_decoder()
        sae.record_firing(f.detach())
        return loss.item()

    try:
        loss = benchmark(step)
    finally:
        torch.set_num_threads(previous)
    assert math.isfinite(loss)  # the step ran and produced a usable loss
