"""The reliability audit: each lens against hand computations, and `saebench audit` on a real
smoke run (small, but every lens measured)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from saebench import plugins
from saebench.audit import (
    MIN_AGREEMENT,
    Z_95,
    audit_metrics,
    ground_truth_agreement,
    reseed_noise,
    trajectory_move,
    unreliable_metrics,
)
from saebench.cli import cli
from saebench.synthetic import SuperpositionStream
from saebench.training import TrainConfig, train_group


def tidy(rows):
    """rows: (method, knob, seed, metric, value) -> the run's tidy frame."""
    return pd.DataFrame(
        [
            {"model": "m", "hook": "h", "method": m, "knob": k, "seed": s, "task": "t"}
            | {"metric": metric, "value": v}
            for m, k, s, metric, v in rows
        ]
    )


def test_reseed_noise_pools_seed_variance_and_compares_with_the_spread():
    values = {("a", 1): [1.0, 1.2, 1.1], ("a", 2): [2.0, 2.4], ("b", 1): [5.0]}
    frame = tidy((m, k, s, "x", v) for (m, k), vs in values.items() for s, v in enumerate(vs))
    noise = reseed_noise(frame, "x")
    # Pooled over the two seeded configurations, weighted by their degrees of freedom.
    pooled = math.sqrt((2 * np.var([1.0, 1.2, 1.1], ddof=1) + 1 * np.var([2.0, 2.4], ddof=1)) / 3)
    assert noise.pooled_std == pytest.approx(pooled)
    assert noise.min_trusted_difference == pytest.approx(Z_95 * math.sqrt(2) * pooled)
    assert noise.config_spread == pytest.approx(5.0 - 1.1)
    assert noise.n_configs == 2 and noise.passes
    assert reseed_noise(tidy([("a", 1, 0, "x", 1.0)]), "x") is None  # one seed: not measured
    noisy = tidy(
        (m, k, s, "x", v)
        for (m, k), vs in {("a", 1): [0, 1], ("a", 2): [0.2, 1.1]}.items()
        for s, v in enumerate(vs)
    )
    assert not reseed_noise(noisy, "x").passes  # seeds scatter more than configurations differ


@pytest.mark.parametrize(
    "values, higher, passes, why",
    [
        ((0.5, 0.7, 0.9), True, True, "improves monotonically"),
        ((0.9, 0.7, 0.5), False, True, "lower is better and it falls"),
        ((0.5, 0.51, 0.52), True, False, "moves less than the noise"),
        ((0.5, 1.0, 0.7), True, False, "steps back by more than the noise"),
        ((0.9, 0.7, 0.5), True, False, "moves, but toward worse"),
    ],
)
def test_trajectory_lens(values, higher, passes, why):
    move = trajectory_move((0.1, 0.3, 1.0), values, noise=0.05, higher_is_better=higher)
    assert move.passes is passes, why


def test_trajectory_without_a_noise_estimate_cannot_pass():
    assert not trajectory_move((0.1, 1.0), (0.1, 0.9), math.nan, True).passes


def gt_frame(metric_of, n=8, seed=0):
    """Configurations whose ground-truth score depends on L0 and on a per-config quality q."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        l0, quality = 2.0 ** (i % 4 + 2), rng.normal()
        gt = 0.1 * math.log(l0) + quality
        rows += [
            ("m", i, 0, "l0", l0),
            ("m", i, 0, "gt", gt),
            ("m", i, 0, "x", metric_of(l0, quality)),
        ]
    return tidy(rows)


def test_ground_truth_agreement_sees_quality_beyond_sparsity():
    good = ground_truth_agreement(gt_frame(lambda l0, q: q + 0.01), "x", True, "gt", True)
    assert good.partial_spearman > 0.9 and good.passes
    flipped = ground_truth_agreement(gt_frame(lambda l0, q: q), "x", False, "gt", True)
    assert flipped.partial_spearman < 0 and not flipped.passes  # lower-is-better: anti-agrees
    # A metric that only tracks L0 says nothing about quality once L0 is out; with 8
    # configurations that is no evidence of disagreement either: it does not fail (c).
    sparsity = ground_truth_agreement(
        gt_frame(lambda l0, q: math.log(l0), seed=1), "x", True, "gt", True
    )
    assert abs(sparsity.partial_spearman) < MIN_AGREEMENT
    assert sparsity.partial_high >= MIN_AGREEMENT and sparsity.passes
    assert ground_truth_agreement(gt_frame(lambda l0, q: q, n=3), "x", True, "gt", True) is None
    constant = gt_frame(lambda l0, q: q)
    constant.loc[constant.metric == "gt", "value"] = 0.5
    assert ground_truth_agreement(constant, "x", True, "gt", True) is None  # not measurable


def test_audit_marks_a_metric_failing_any_lens():
    two_seeds = [
        (m, k, seed, metric, v + 0.01 * seed)
        for m, k, _, metric, v in gt_frame(lambda l0, q: q)[
            ["method", "knob", "seed", "metric", "value"]
        ].itertuples(index=False, name=None)
        for seed in (0, 1)
    ]
    frame = tidy(two_seeds)
    audits = audit_metrics(
        frame,
        {"x": ("t", True, 0.0)},
        {"gt": ("t", True, 0.0)},
        trajectory={0.1: {"x": 0.1}, 1.0: {"x": 0.1}},  # did not move
    )
    (audit,) = audits
    assert audit.reseed is not None and audit.reseed.passes
    assert audit.trajectory is not None and not audit.trajectory.passes
    assert audit.unreliable and "along training it moves less than" in audit.failures[0]
    assert unreliable_metrics({"metrics": [audit.to_json()]}) == {"x"}
    json.dumps(audit.to_json(), allow_nan=False)  # NaN written as null
    # Without a noise estimate (one seed) the trajectory is not measured, not failed.
    (one_seed,) = audit_metrics(
        gt_frame(lambda l0, q: q), {"x": ("t", True, 0.0)}, {}, {0.1: {"x": 0.1}, 1.0: {"x": 0.9}}
    )
    assert one_seed.trajectory is None and not one_seed.unreliable


def test_snapshots_keep_the_same_sae_along_its_training():
    torch.manual_seed(0)
    store = SuperpositionStream(32, 16, firing_prob=0.05, seed=1).store(4_096, 512)
    cfg = TrainConfig(d_sae=32, total_tokens=4_096, batch_size=256, lr=1e-2, progress=False)
    method = plugins.get_method("topk")
    (member,) = train_group(method, [(4, 0)], store, cfg, snapshots=(0.25, 1.0))
    assert sorted(member.snapshots) == [0.25, 1.0]
    assert torch.equal(member.snapshots[1.0].W_dec, member.sae.W_dec)
    assert not torch.equal(member.snapshots[0.25].W_dec, member.sae.W_dec)
    # A snapshot is a copy: it works on raw activations like the final SAE.
    x = store.eval_acts
    assert member.snapshots[0.25](x).shape == x.shape
    with pytest.raises(ValueError, match="fractions"):
        train_group(method, [(4, 0)], store, cfg, snapshots=(1.5,))


@pytest.mark.slow  # one small real run (2 seeds) and one retraining scored at 3 checkpoints
def test_saebench_audit_runs_every_lens_on_a_smoke_run(tmp_path):
    out = tmp_path / "run"
    env = {"SAEBENCH_CACHE": str(tmp_path / "cache")}
    runner = CliRunner()
    ran = runner.invoke(
        cli,
        [
            "run",
            "--methods",
            "topk",
            "--preset",
            "smoke",
            "--seeds",
            "2",
            "--sweep",
            "topk=8,16,32",
            "--tasks",
            "frontier,ground_truth",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--no-progress",
            "--no-baselines",
        ],
        env=env,
    )
    assert ran.exit_code == 0, ran.output
    audited = runner.invoke(cli, ["audit", str(out), "--fractions", "0.2,0.5,1"], env=env)
    assert audited.exit_code == 0, audited.output
    audit = json.loads((out / "audit.json").read_text())
    assert audit["trajectory_sae"] == {"method": "topk", "knob": 16.0}
    assert sorted(audit["trajectory_scores"]) == ["0.2", "0.5", "1.0"]
    rows = {row["metric"]: row for row in audit["metrics"]}
    assert rows["fvu"]["reseed"]["n_configs"] == 3
    # FVU falls along training by far more than seed noise: it passes the trajectory lens.
    assert rows["fvu"]["trajectory"]["passes"], rows["fvu"]
    assert "## Reliability (`saebench audit`)" in (out / "results.md").read_text()
    assert "| fvu | frontier |" in (out / "audit.md").read_text()
