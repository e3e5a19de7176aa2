"""Circle scores: planted circles score high, shuffled values and noise do not; the task runs."""

import math

import numpy as np
import pytest
import torch
from doubles.context import task_context

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


def brute_force_plane_fidelity(raw, reconstruction, values, basis):
    present = sorted(set(values.tolist()))
    true = np.array([(raw[values == v] @ basis.T).mean(0) for v in present])
    made = np.array([(reconstruction[values == v] @ basis.T).mean(0) for v in present])
    true -= true.mean(0)
    made -= made.mean(0)
    return 1 - ((true - made) ** 2).sum() / (true**2).sum()


def test_plane_fidelity_matches_brute_force_and_its_anchors():
    points, values = planted(7, 1, n=200, noise=0.3)
    basis = circles.value_plane(points, values)
    rng = np.random.default_rng(4)
    noisy = 0.8 * points + 0.2 * rng.normal(size=points.shape) + 3.0  # an offset is ignored
    assert circles.plane_fidelity(points, noisy, values, basis) == pytest.approx(
        brute_force_plane_fidelity(points, noisy, values, basis), abs=1e-12
    )
    assert circles.plane_fidelity(points, points, values, basis) == pytest.approx(1.0)
    assert circles.plane_fidelity(points, 0.5 * points, values, basis) == pytest.approx(0.75)
    assert circles.plane_fidelity(points, np.zeros_like(points), values, basis) == 0.0


def test_plane_fidelity_scores_held_out_points_in_a_plane_fitted_elsewhere():
    """The task's use: the plane from train points, the score on other points with unequal
    counts per value and one value missing; value_plane agrees with an independent PCA."""
    from sklearn.decomposition import PCA

    train, train_values = planted(7, 1, n=300, noise=0.3, seed=1)
    test, test_values = planted(7, 1, n=120, noise=0.3, seed=2)
    keep = (test_values != 3) & ((test_values != 5) | (np.arange(120) % 3 == 0))
    test, test_values = test[keep], test_values[keep]
    basis = circles.value_plane(train, train_values)
    centroids = np.array([train[train_values == v].mean(0) for v in range(7)])
    reference = PCA(2).fit(centroids).components_
    assert np.allclose(np.abs(basis @ reference.T), np.eye(2), atol=1e-8)
    noisy = test + 0.4 * np.random.default_rng(3).normal(size=test.shape)
    assert circles.plane_fidelity(test, noisy, test_values, basis) == pytest.approx(
        brute_force_plane_fidelity(test, noisy, test_values, basis), abs=1e-12
    )


def test_plane_fidelity_is_undefined_without_raw_spread_and_refuses_mismatched_shapes():
    """Every value's points are the same spread-out cloud (up to 1e-9): the centroids coincide
    while the points do not, so there is no value plane to reproduce."""
    rng = np.random.default_rng(5)
    cloud = rng.normal(size=(14, 16))
    same = np.concatenate([cloud + 1e-9 * rng.normal(size=cloud.shape) for _ in range(7)])
    values = np.repeat(np.arange(7), 14)
    basis = np.eye(16)[:2]
    assert math.isnan(circles.plane_fidelity(same, same, values, basis))
    with pytest.raises(ValueError, match="differ"):
        circles.plane_fidelity(same, same[:50], values[:50], basis)


def test_plane_fidelity_is_low_when_the_same_codes_write_other_directions():
    """The shuffled-decoder case: a reconstruction with the raw points' circle, exactly, in a
    plane orthogonal to the model's. Its own circle R² is perfect; its fidelity is 0."""
    points, values = planted(7, 1, n=200, noise=0.05)
    basis = circles.value_plane(points, values)
    complement = np.linalg.svd(np.eye(16) - basis.T @ basis)[0][:, :2].T  # ⟂ to the plane
    moved = (points @ basis.T) @ complement
    assert circles.circularity(moved, values, 7)["r2"] > 0.95
    assert abs(circles.plane_fidelity(points, moved, values, basis)) < 1e-9


@pytest.fixture(scope="module")
def shared_cache():
    """One `ctx.once` cache for the module's toy-model tests (smoke preset): the prompts, points
    and raw references are computed once, as in a run."""
    return {}


def toy_context(toy_handle, cache, sae=None, eval_acts=None, artifacts_dir=None):
    return task_context(
        toy_handle,
        sae=sae,
        eval_acts=eval_acts,
        cache=cache,
        artifacts_dir=artifacts_dir,
        task="circular",
    )


def test_circle_task_runs_on_the_toy_model_and_scores_held_out_points(
    toy_handle, shared_cache, tmp_path
):
    """Well-formed metrics; the points scored and saved are the held-out half only."""
    from saebench.harvest import harvest
    from saebench_plugins.random_dict import RandomBaseline
    from saebench_tasks import circular
    from saebench_tasks.circular.data import ROTATION_PROMPTS, halves

    store = harvest(toy_handle, toy_handle.default_hook, 2000, 3000, cache_dir=tmp_path)
    sae = RandomBaseline(128, 512, 8).fit(store.eval_acts)
    ctx = toy_context(toy_handle, shared_cache, sae, store.eval_acts, tmp_path / "artifacts")
    metrics = circular.run(ctx)
    assert all(np.isfinite(v) for v in metrics.values())
    assert 0 <= metrics["day_cyclic_order"] <= 1 and metrics["day_latents_selected"] <= 14
    _, test = halves(ROTATION_PROMPTS["smoke"])
    saved = np.load(tmp_path / "artifacts" / circular.POINTS_FILE)
    assert len(saved["day_values"]) == len(saved["day_raw_points"]) == len(test)


def test_validity_closes_every_gate_on_the_toy_model(toy_handle, shared_cache):
    """The references at the default hook, without an SAE. Measured (smoke preset): raw rotation
    days 0.129 (95% lower end 0.093; chance 0.143, needs > 0.429), months 0.084 (0.053; chance
    0.083, needs > 0.25); raw circle R² days 0.56 (lower end 0.22) vs relabelled null95 0.58,
    months 0.21 (0.05) vs 0.29. (Default preset: rotation 0.150 / 0.105, circle 0.41 / 0.15, all
    closed too.) The rotation is at chance and the day/month points are no more circular than
    their value clusters in random order (issue 15)."""
    from saebench_tasks import circular

    checks = {c.name: c for c in circular.validity(toy_context(toy_handle, shared_cache))}
    assert set(checks) == {
        "raw_day_rotation_accuracy",
        "raw_month_rotation_accuracy",
        "raw_day_circle_r2",
        "raw_month_circle_r2",
    }
    assert not any(c.informative for c in checks.values())
    assert checks["raw_day_rotation_accuracy"].chance == pytest.approx(1 / 7)
    assert checks["raw_month_rotation_accuracy"].chance == pytest.approx(1 / 12)
    assert checks["raw_day_rotation_accuracy"].low < 3 / 7
    rotation, circle = checks["raw_day_rotation_accuracy"], checks["raw_day_circle_r2"]
    assert rotation.covers("day_rotation_accuracy")
    assert not rotation.covers("raw_day_rotation_accuracy")
    assert not rotation.covers("month_rotation_accuracy")
    for name in ("day_circle_fidelity", "day_circle_excess_r2", "day_cyclic_order"):
        assert circle.covers(name)
    for name in ("raw_day_circle_excess_r2", "day_latents_selected", "month_circle_r2"):
        assert not circle.covers(name)


def planted_day_dictionary(words, values, seed=0):
    """Per day, a latent along that day's mean operand-token activation minus the overall mean,
    plus 18 random filler latents (25 latents in all); returns (dictionary, sample)."""
    from doubles.planted import planted_value_dictionary

    return planted_value_dictionary(words, values, 7, filler=18, seed=seed), words


@pytest.fixture(scope="module")
def planted_runs(toy_handle, shared_cache):
    """(metrics of the planted day dictionary, metrics of a random dictionary), smoke preset."""
    from saebench_plugins.random_dict import RandomBaseline
    from saebench_tasks import circular

    cache = shared_cache
    ctx = toy_context(toy_handle, cache)
    words, values, _ = circular.concept_points(ctx)["day"]
    planted, sample = planted_day_dictionary(words, values)
    torch.manual_seed(0)
    random = RandomBaseline(sample.shape[1], 512, 8).fit(sample)
    ideal = circular.run(toy_context(toy_handle, cache, planted, sample))
    rand = circular.run(toy_context(toy_handle, cache, random, sample))
    return ideal, rand


def test_planted_day_dictionary_reproduces_the_models_plane_and_its_shuffle_does_not(
    toy_handle, shared_cache, planted_runs
):
    """circle fidelity reads the decoder: the planted day latents put each day's centroid where
    the raw activations have it; the same dictionary with its decoder rows permuted fires the same
    latents (its own-plane circle R² stays high) but writes elsewhere, and scores no better than
    random. (Direct task calls: the gate that drops these numbers on v1 is not applied.)"""
    from saebench.testing import shuffled_sae
    from saebench_tasks import circular

    ideal, rand = planted_runs
    words, values, _ = circular.concept_points(toy_context(toy_handle, shared_cache))["day"]
    planted, sample = planted_day_dictionary(words, values)
    shuffled = circular.run(
        toy_context(toy_handle, shared_cache, shuffled_sae(planted, seed=1), sample)
    )
    # Measured on v1 at smoke size: planted 0.57 (its filler latents are selected too and add
    # noise to the plane), random 0.01, shuffled -0.20.
    assert ideal["day_circle_fidelity"] > 0.4
    assert ideal["day_circle_fidelity"] - rand["day_circle_fidelity"] > 0.3
    assert shuffled["day_circle_fidelity"] < rand["day_circle_fidelity"] + 0.1
    assert shuffled["day_latents_selected"] == ideal["day_latents_selected"]


def test_planted_day_dictionary_rotation_is_at_chance_like_raw(planted_runs):
    """On the v1 model the operand token is inert at the default hook (site check 0%): the
    circle-plane intervention leaves the answer where it was, so its hits sit near chance for
    raw and planted alike and the day gate closes; these numbers are dropped from every cell."""
    ideal, rand = planted_runs
    raw = ideal["raw_day_rotation_accuracy"]
    assert raw < 3 / 7 and ideal["day_rotation_accuracy"] < 3 / 7
    assert rand["raw_day_rotation_accuracy"] == raw  # same prompts, same reference
    assert rand["day_rotation_accuracy"] == 0.0


@pytest.mark.xfail(
    strict=True,
    reason="issue 15: at blocks.1 of the 2-layer toy model the day operand is causally inert "
    "(raw intervention at chance 1/7); on toy world v2 it passes (tests/test_toyworld_v2.py)",
)
def test_planted_day_dictionary_steers_well_above_chance_and_random(planted_runs):
    ideal, rand = planted_runs
    assert ideal["raw_day_rotation_accuracy"] > 3 / 7
    assert ideal["day_rotation_accuracy"] - rand["day_rotation_accuracy"] > 2 / 7


def test_move_in_plane_sets_coordinates_and_keeps_the_rest():
    rng = np.random.default_rng(3)
    basis = np.linalg.qr(rng.normal(size=(6, 2)))[0].T
    acts, target = rng.normal(size=(5, 6)), rng.normal(size=(5, 2))
    moved = circles.move_in_plane(acts, basis, target)
    assert np.allclose(moved @ basis.T, target)
    complement = np.eye(6) - basis.T @ basis
    assert np.allclose(moved @ complement, acts @ complement)


class AngleBridge:
    """A fake model whose answer is the angle of the hook activation's first two coordinates:
    token i of a prompt is its answer value, the activation at the last position is
    (cos, sin)(2πv/p) plus a third, irrelevant coordinate."""

    def __init__(self, period):
        self.period = period

    def run_with_hooks(self, tokens, fwd_hooks=(), return_type="logits"):
        assert return_type == "logits"
        values = tokens[:, -1].double()
        angle = 2 * math.pi * values / self.period
        acts = torch.stack([torch.cos(angle), torch.sin(angle), torch.ones_like(angle)], -1)
        acts = acts[:, None, :].repeat(1, tokens.shape[1], 1).float()
        for _, fn in fwd_hooks:
            acts = fn(acts, hook=None)
        last = acts[:, -1].double()
        theta = torch.atan2(last[:, 1], last[:, 0])
        targets = 2 * math.pi * torch.arange(self.period) / self.period
        logits = torch.cos(theta[:, None] - targets[None])
        return logits[:, None, :].repeat(1, tokens.shape[1], 1)


def test_rotation_intervention_moves_the_answer_only_in_the_right_plane():
    from types import SimpleNamespace

    from saebench_tasks.circular.rotation import rotation_hits

    period = 7
    prompts = angle_prompts(period)
    ctx = SimpleNamespace(model=SimpleNamespace(bridge=AngleBridge(period)), hook="h", device="cpu")
    rows = np.arange(len(prompts.starts))
    acts = prompts.acts.numpy()
    right = circles.value_plane(acts, prompts.starts)
    centroids = circles.value_coordinates(acts @ right.T, prompts.starts, period)
    assert np.nanmean(rotation_hits(ctx, prompts, rows, right, centroids)) == 1.0
    wrong = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])  # half in the irrelevant direction
    centroids = circles.value_coordinates(acts @ wrong.T, prompts.starts, period)
    assert np.nanmean(rotation_hits(ctx, prompts, rows, wrong, centroids)) < 0.5


def angle_prompts(period, n=140):
    """OperandPrompts for AngleBridge: operand v at the last position, offset 0, so the
    answer after moving the operand to v + k is v + k."""
    from saebench_tasks.circular.data import OperandPrompts

    starts = np.arange(n) % period
    angle = 2 * np.pi * starts / period
    return OperandPrompts(
        tokens=[torch.tensor([0, int(v)]) for v in starts],
        positions=[1] * n,
        acts=torch.tensor(
            np.column_stack([np.cos(angle), np.sin(angle), np.ones_like(angle)]),
            dtype=torch.float32,
        ),
        starts=starts,
        offsets=np.zeros(n, dtype=int),
        answers=starts,
        period=period,
        answer_ids=torch.arange(period),
    )


def test_plot_shows_raw_and_selected_latents(tmp_path, monkeypatch):
    """Artifacts as circular.run saves them; each kind's figure has raw once + the
    selected-latents panel of each method (absent points: a note)."""
    import pandas as pd

    from saebench import fileio
    from saebench.rundir import RunDir, SaeKey
    from saebench_tasks import circular

    run_dir = RunDir(tmp_path)
    rows, titles = [], {}
    for method, knob in (("topk", 16), ("relu", 0.5)):
        arrays = {}
        for kind, period in (("day", 7), ("month", 12)):
            points, values = planted(period, 1, n=120)
            arrays |= {
                f"{kind}_values": values,
                f"{kind}_raw_points": points,
            }
            if method == "topk":  # relu: no selected latents
                arrays[f"{kind}_points"] = points[:, :8]
            rows += [
                {
                    "method": method,
                    "knob": knob,
                    "seed": 0,
                    "task": "circular",
                    "metric": f"{prefix}{kind}_{name}",
                    "value": 0.5,
                }
                for prefix, name in (
                    ("", "circle_excess_r2"),
                    ("raw_", "circle_excess_r2"),
                    ("", "circle_fidelity"),
                    ("", "latents_selected"),
                )
            ]
        directory = run_dir.artifacts_dir(SaeKey(method, knob, 0), "circular")
        directory.mkdir(parents=True)
        np.savez(directory / "circle_points.npz", **arrays)

    original = fileio.save_figure

    def recording(fig, path, **kwargs):
        titles[path.name] = [ax.get_title() for ax in fig.axes]
        original(fig, path, **kwargs)

    monkeypatch.setattr(fileio, "save_figure", recording)
    paths = circular.plot(pd.DataFrame(rows), run_dir)
    assert [p.name for p in paths] == ["circular_day.png", "circular_month.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)
    day = titles["circular_day.png"]
    assert len(day) == 3  # raw once, then the selected latents of each of 2 methods
    assert sum("selected latents" in t for t in day) == 2
    assert all("excess R² 0.50" in t for t in day)
    assert sum("fidelity 0.50" in t for t in day) == 2  # SAE panels only: raw is the reference


def clusters_in_random_order(period, n=350, noise=0.3, d=16, seed=0):
    """Well-separated value clusters in a plane at random (non-cyclic) positions."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, period, n)
    centres = rng.normal(size=(period, 2)) @ np.linalg.qr(rng.normal(size=(d, 2)))[0].T
    return centres[values] + noise * rng.normal(size=(n, d)), values


def test_circle_gate_opens_on_a_planted_circle_and_closes_on_clusters_in_random_order():
    from saebench_tasks.circular.validity import circle_validity

    points, values = planted(7, 1, n=350, noise=0.3)
    opened = circle_validity("day", circles.circle_reference(points, values, 7))
    assert opened.informative, opened.summary()
    points, values = clusters_in_random_order(7)
    reference = circles.circle_reference(points, values, 7)
    closed = circle_validity("day", reference)
    assert not closed.informative, closed.summary()
    # The per-point permuted-label null cannot tell: separated clusters beat it by far.
    assert circles.circularity(points, values, 7)["excess"] > 0.3


def test_bootstrap_circle_r2_equals_refitting_every_resample():
    points, values = planted(7, 2, n=80, noise=0.5)
    values[values == 6] = 5  # a value absent from the data: no centroid row
    fast = circles.bootstrap_circle_r2(points, values, 7, n_resamples=30, seed=3, chunk=7)
    rng = np.random.default_rng(3)
    for r in range(30):
        rows = rng.integers(0, len(values), size=len(values))
        projected, _ = circles.between_value_plane(points[rows], values[rows])
        assert fast[r] == pytest.approx(circles.circle_r2(projected, values[rows], 7)[0], abs=1e-9)


def test_rotation_gate_opens_when_the_plane_steers_and_closes_at_chance():
    from types import SimpleNamespace

    from saebench_tasks.circular import rotation
    from saebench_tasks.circular.validity import rotation_validity

    period = 7
    prompts = angle_prompts(period)
    ctx = SimpleNamespace(model=SimpleNamespace(bridge=AngleBridge(period)), hook="h", device="cpu")
    train, _ = rotation.halves(len(prompts.starts))
    basis = circles.value_plane(prompts.acts.numpy()[train], prompts.starts[train])
    rates = rotation.held_out_rates(ctx, prompts, basis)
    assert len(rates) == len(prompts.starts) - len(train) and (rates == 1.0).all()
    assert rotation_validity("day", rates, period).informative
    at_chance = (np.random.default_rng(0).random(300) < 1 / period).astype(float)
    assert not rotation_validity("day", at_chance, period).informative


def test_per_prompt_rates_skip_unusable_steps():
    from saebench_tasks.circular.rotation import per_prompt

    hits = np.array([[1.0, 0.0, np.nan], [np.nan, np.nan, np.nan], [1.0, 1.0, 1.0]])
    rates = per_prompt(hits)
    assert rates[0] == 0.5 and np.isnan(rates[1]) and rates[2] == 1.0


def test_halves_are_disjoint_fixed_and_cover_everything():
    from saebench_tasks.circular.data import halves

    train, test = halves(101)
    assert len(set(train) & set(test)) == 0 and sorted([*train, *test]) == list(range(101))
    assert np.array_equal(halves(101)[0], train)


def test_registered_task_declares_chance_validity_and_descriptive_raw_references():
    from saebench import plugins

    task = plugins.get_tasks()["circular"]
    assert task.validity is not None
    assert task.metric_info("day_rotation_accuracy").chance == pytest.approx(1 / 7)
    assert task.metric_info("month_rotation_accuracy").chance == pytest.approx(1 / 12)
    assert task.metric_info("raw_day_rotation_accuracy").chance == pytest.approx(1 / 7)
    for raw in ("raw_day_rotation_accuracy", "raw_month_circle_excess_r2"):
        assert task.metric_info(raw).higher_is_better is None  # references are never gated
    assert task.metric_info("day_circle_fidelity").higher_is_better is True
    # Reads the latent codes (a permuted decoder keeps it): described, never ranked.
    assert task.metric_info("day_circle_excess_r2").higher_is_better is None


def test_plot_falls_back_to_each_methods_median_knob_when_the_circle_score_was_dropped():
    import pandas as pd

    from saebench_tasks.circular.plot import chosen_saes

    rows = [
        {"method": m, "knob": k, "seed": s, "metric": "day_latents_selected", "value": 3.0}
        for m, knobs in (("topk", (4, 16, 64)), ("l1", (0.5, 1.0)))
        for k in knobs
        for s in (0, 1)
    ]
    chosen = chosen_saes(pd.DataFrame(rows))
    assert sorted(zip(chosen.method, chosen.knob, chosen.seed)) == [("l1", 0.5, 0), ("topk", 16, 0)]
    assert chosen_saes(pd.DataFrame(columns=["method", "knob", "seed", "metric", "value"])) is None
