"""The `synthetic` command end to end on the smoke preset (CliRunner), its resume, its errors,
and the knob search and tables it is built from."""

import math
import types

import pytest
from click.testing import CliRunner

from saebench.cli import cli
from saebench.stats import seed_interval
from saebench.synth.bench import (
    ROWS_FILE,
    BenchRow,
    meeting_targets,
    plan_knobs,
    rows_from_csv,
    rows_to_csv,
)
from saebench.synth.report import ranking, value_at


def method(**overrides):
    fields = dict(
        name="m",
        knob="c",
        knob_is_integer=False,
        knob_min=0.0,
        knob_max=None,
        sweeps={"default": [1.0, 10.0]},
    )
    return types.SimpleNamespace(**{**fields, **overrides})


def row(method_name="m", knob=1.0, seed=0, l0=5.0, f1=0.5, **extra):
    values = dict(
        method=method_name,
        knob=knob,
        seed=seed,
        round=0,
        l0=l0,
        mcc=0.5,
        uniqueness=0.9,
        precision=0.5,
        recall=0.5,
        f1=f1,
        explained_variance=0.8,
        shrinkage=0.9,
        dead_latents=1,
        dead_fraction=0.01,
        absorption_full=0.1,
        absorption_partial=0.0,
        absorbed_fraction=0.2,
        absorption_edges=3,
        train_fvu=0.2,
        train_seconds=1.0,
        train_samples=100,
        eval_samples=10,
    )
    return BenchRow(**{**values, **extra})


def test_first_guess_integer_knob_is_the_target_else_the_default_sweep():
    assert plan_knobs(method(knob_is_integer=True, knob_min=1), [2.4, 6.0, 8.6], [], 0.15) == [
        2.0,
        6.0,
        9.0,
    ]
    assert plan_knobs(method(), [3.0], [], 0.15) == [1.0, 10.0]


def test_refinement_interpolates_in_log_log_and_skips_met_targets():
    points = [(1.0, 40.0), (10.0, 4.0)]  # L0 = 40 / knob
    assert plan_knobs(method(), [4.2, 8.0], points, 0.15) == [pytest.approx(5.0)]
    assert meeting_targets(points, [4.2, 8.0]) == [10.0]


def test_refinement_extrapolates_at_most_ten_fold_and_clamps_to_bounds():
    points = [(1.0, 40.0), (2.0, 20.0)]
    assert plan_knobs(method(), [0.001], points, 0.15) == [pytest.approx(20.0)]
    assert plan_knobs(method(knob_max=5.0), [1.0], points, 0.15) == [5.0]


def test_flat_l0_gives_no_proposal():
    assert plan_knobs(method(), [3.0], [(1.0, 40.0), (10.0, 40.5)], 0.15) == []


def test_rows_round_trip_through_csv():
    rows = [row(), row(knob=2.0, seed=1, l0=math.nan, error="ValueError: boom")]
    back = rows_from_csv(rows_to_csv(rows))
    assert back[0] == rows[0]
    assert back[1].error == "ValueError: boom" and math.isnan(back[1].l0)


def test_value_at_interpolates_each_seed_in_log_l0():
    rows = [
        row(seed=s, knob=k, l0=l0, f1=f1)
        for s in (0, 1)
        for k, l0, f1 in ((1, 2.0, 0.2 + s / 10), (2, 8.0, 0.6 + s / 10))
    ]
    got = value_at(rows, "m", "f1", 4.0)  # halfway in log L0
    expected = seed_interval([0.4, 0.5])
    assert got.mean == pytest.approx(expected.mean) and got.high == pytest.approx(expected.high)
    assert math.isnan(value_at(rows, "m", "f1", 16.0).mean)  # never extrapolated


def test_ranking_uses_intervals():
    rows = [
        row("a", seed=s, knob=k, l0=l0, f1=0.9 + s / 100)
        for s in (0, 1)
        for k, l0 in ((1, 2.0), (2, 8.0))
    ]
    rows += [
        row("b", seed=s, knob=k, l0=l0, f1=0.1 + s / 100)
        for s in (0, 1)
        for k, l0 in ((1, 2.0), (2, 8.0))
    ]
    assert ranking(rows, ["b", "a"], "f1", 4.0) == "a > b"


SMOKE = [
    "synthetic",
    "--preset",
    "smoke",
    "--seeds",
    "1",
    "--device",
    "cpu",
    "--train-samples",
    "4096",
]


def test_cli_smoke_end_to_end_and_resume(tmp_path):
    out = tmp_path / "synth"
    args = [*SMOKE, "--methods", "topk,random", "--sweep", "topk=2,4", "--out", str(out)]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    rows = rows_from_csv((out / ROWS_FILE).read_text())
    assert {(r.method, r.knob) for r in rows} >= {("topk", 2.0), ("topk", 4.0)}
    assert {r.method for r in rows} == {"topk", "random"}
    assert all(r.ok and 0 <= r.f1 <= 1 and 0 < r.mcc <= 1 for r in rows)
    report = (out / "results.md").read_text()
    assert "## At the true L0" in report and "| topk | 1 |" in report
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "0 SAE(s) trained" in again.output
    changed = CliRunner().invoke(cli, [*args[:-2], "--eval-samples", "500", "--out", str(out)])
    assert (
        changed.exit_code == 2 and "other settings" in changed.output and "--out" in changed.output
    )
    # A second seed resumes the same run: only the new seed's SAEs are trained.
    more = [*args]
    more[more.index("--seeds") + 1] = "2"
    added = CliRunner().invoke(cli, more)
    assert added.exit_code == 0, added.output
    rows_after = rows_from_csv((out / ROWS_FILE).read_text())
    assert {r.seed for r in rows_after} == {0, 1}
    assert {(r.method, r.knob, r.seed) for r in rows} <= {
        (r.method, r.knob, r.seed) for r in rows_after
    }


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--methods", "nosuch"], "nosuch"),
        (["--methods", "topk", "--sweep", "topk"], "METHOD=v1,v2"),
        (["--methods", "topk", "--sweep", "l1=3"], "not in --methods"),
        (["--methods", "topk,topk"], "twice"),
        (["--methods", "topk", "--sweep", "topk=0"], "minimum"),
    ],
)
def test_cli_bad_input_names_the_fix(tmp_path, extra, message):
    result = CliRunner().invoke(cli, [*SMOKE, *extra, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert message in result.output


def test_held_out_samples_are_the_same_cached_or_redrawn(monkeypatch):
    import torch

    from saebench.architectures import TopKSAE
    from saebench.synth.bench import HeldOut, evaluate_sae
    from saebench.synth.generator import build_stream
    from saebench.synth.presets import get_synth_preset

    stream = build_stream(get_synth_preset("smoke").stream)
    sae = TopKSAE(stream.d, 64, k=3)
    with torch.no_grad():
        sae.W_dec.copy_(stream.directions[:64])
        sae.W_enc.copy_(stream.directions[:64].T)
    cached = HeldOut(stream, 1_500, seed=5, batch=500)
    monkeypatch.setattr(HeldOut, "CACHE_ELEMENTS", 0)
    redrawn = HeldOut(stream, 1_500, seed=5, batch=500)
    assert cached.cached is not None and redrawn.cached is None
    assert evaluate_sae(sae, cached) == evaluate_sae(sae, redrawn)
    metrics, absorbed = evaluate_sae(sae, redrawn)
    assert metrics.n_samples == 1_500 and metrics.l0 <= 3
