"""pytest-benchmark of the engine's training step per method, alone and as a group of 4 (tiny
dims; times are reported, never asserted; `saebench bench` measures the issue's shapes)."""

import math

import pytest
import torch

from saebench import plugins
from saebench.training import TrainConfig, build_group, make_optimizer, optimization_step

pytest.importorskip("pytest_benchmark")

TRAINABLE = ["l1", "gated", "topk", "tanh"]
KNOBS = {"l1": 1.0, "gated": 1.0, "tanh": 1.0, "topk": 8}


@pytest.mark.parametrize("group_size", [1, 4])
@pytest.mark.parametrize("name", TRAINABLE)
def test_training_step(benchmark, name, group_size):
    torch.manual_seed(0)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    d_in, d_sae, batch = 32, 256, 256
    group = build_group(plugins.get_method(name), d_in, d_sae, [KNOBS[name]] * group_size)
    group.initialize(torch.randn(1024, d_in), list(range(group_size)), "mean")
    group.set_dead_window(batch)  # latents go dead after one step: TopK's AuxK is timed too
    cfg = TrainConfig(d_sae=d_sae, total_tokens=batch, batch_size=batch, progress=False)
    optimizer = make_optimizer(group, cfg, torch.device("cpu"))
    x = torch.randn(batch, d_in)

    def step():
        return optimization_step(group, optimizer, x, 1.0, 1.0, "float32").loss.item()

    try:
        loss = benchmark(step)
    finally:
        torch.set_num_threads(previous)
    benchmark.extra_info["sae_tokens_per_step"] = batch * group_size
    assert math.isfinite(loss)  # the step ran and produced a usable loss
