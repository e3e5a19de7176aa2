"""Circle scores: planted circles score high, shuffled values and noise do not; the task runs."""
import math

import numpy as np
import pytest
import torch

from saebench import circles


def planted(period, k, n=300, noise=0.05, d=16, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, period, n)
    angle = 2 * math.pi * k * values / period
    basis = np.linalg.qr(rng.normal(size=(d, 2)))[0]
    points = np.column_stack([np.cos(angle), np.sin(angle)]) @ basis.T
    return points + noise * rng.normal(size=(n, d)), values


@pytest.mark.parametrize("period,k", [(7, 1), (7, 3), (12, 5)])
def test_planted_circle_is_found_at_its_frequency(period, k):
    points, values = planted(period, k)
    result = circles.circularity(points, values, period)
    assert result["r2"] > 0.95 and result["excess"] > 0.5
    assert result["frequency"] == k and result["order"] == 1.0
    assert result["variance_top2"] > 0.9


def test_random_points_are_not_circular():
    rng = np.random.default_rng(1)
    values = rng.integers(0, 7, 300)
    result = circles.circularity(rng.normal(size=(300, 16)), values, 7)
    assert result["excess"] < 0.05


def test_circle_task_runs_on_the_toy_model_and_finds_the_raw_circle(toy_handle, tmp_path):
    """Well-formed metrics, and the raw day representation is circular beyond the null. (Whether
    an SAE's concept latents keep the circle is what the task measures; a random dictionary is
    not guaranteed to lose it, since random projections of a plane keep the plane.)"""
    from saebench.harvest import harvest
    from saebench.specs import TaskContext
    from saebench_plugins.random_dict import RandomBaseline
    from saebench_tasks import circular

    store = harvest(toy_handle, toy_handle.default_hook, 2000, 3000, cache_dir=tmp_path)
    sae = RandomBaseline(128, 512, 8).fit(store.eval_acts)
    ctx = TaskContext(model=toy_handle, hook=toy_handle.default_hook, sae=sae,
                      eval_acts=store.eval_acts, eval_tokens=None, eval_mask=None, device="cpu",
                      preset="smoke", seed=0, cache={}, artifacts_dir=None)
    metrics = circular.run(ctx)
    assert all(np.isfinite(v) for v in metrics.values())
    assert metrics["raw_day_circle_excess_r2"] > 0.1
    assert 0 <= metrics["day_cyclic_order"] <= 1 and metrics["day_latents_selected"] <= 14
