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
    ctx = TaskContext(
        model=toy_handle,
        hook=toy_handle.default_hook,
        sae=sae,
        eval_acts=store.eval_acts,
        eval_tokens=None,
        eval_mask=None,
        device="cpu",
        preset="smoke",
        seed=0,
        cache={},
        artifacts_dir=None,
    )
    metrics = circular.run(ctx)
    assert all(np.isfinite(v) for v in metrics.values())
    assert metrics["raw_day_circle_excess_r2"] > 0.1
    assert 0 <= metrics["day_cyclic_order"] <= 1 and metrics["day_latents_selected"] <= 14


def test_planted_day_dictionary_beats_random_on_the_rotation_in_its_own_plane(toy_handle):
    """A dictionary that holds the day circle (per day, a latent along that day's mean activation
    minus the overall mean, at the day word and at the last position of the "N days from X is"
    prompts, plus random filler latents) rotates the model's answer about as well as the raw
    plane does; a random dictionary's plane does not. Only the rotation separates them: the best
    decoder cluster's circle score is capped by the data's own circle (raw ≈ 0.30), and random
    clusters of a 512-latent dictionary keep much of it, so that score is not asserted."""
    from saebench.sae import SAE
    from saebench.specs import TaskContext
    from saebench_plugins.random_dict import RandomBaseline
    from saebench_tasks import circular

    cache = {}

    def context(sae, eval_acts):
        return TaskContext(
            model=toy_handle,
            hook=toy_handle.default_hook,
            sae=sae,
            eval_acts=eval_acts,
            eval_tokens=None,
            eval_mask=None,
            device=torch.device("cpu"),
            preset="smoke",
            seed=0,
            cache=cache,
            artifacts_dir=None,
        )

    words, values, period = circular.concept_points(context(None, None))["day"]
    _, answer_acts, answers, _, _ = circular.arithmetic_prompts(context(None, None))["day"]
    sample = torch.cat([words, answer_acts])  # real activations: eval set and random's fit
    d_in = sample.shape[1]

    directions, centres = [], []
    for acts, labels in ((words, values), (answer_acts, answers)):
        centre = acts.mean(0)
        for v in range(period):
            direction = acts[torch.from_numpy(labels == v)].mean(0) - centre
            directions.append(direction / direction.norm())
            centres.append(centre)
    rng = np.random.default_rng(0)
    filler = torch.tensor(rng.normal(size=(18, d_in)), dtype=torch.float32)  # 32 latents in all
    directions = torch.cat([torch.stack(directions), filler / filler.norm(dim=1, keepdim=True)])
    centres = torch.cat([torch.stack(centres), sample.mean(0).expand(len(filler), d_in)])
    planted = SAE(d_in, len(directions))
    with torch.no_grad():  # latent i fires when (x - its centre) points along its direction
        planted.W_enc.copy_(directions.T)
        planted.W_dec.copy_(directions)
        planted.b_dec.copy_(sample.mean(0))
        planted.b_enc.copy_(-((centres - sample.mean(0)) * directions).sum(1))
    torch.manual_seed(0)
    random = RandomBaseline(d_in, 512, 8).fit(sample)

    ideal = circular.run(context(planted, sample))
    rand = circular.run(context(random, sample))
    # Measured (smoke preset, shipped checkpoint): raw-plane rotation 0.22; planted 0.17
    # (0.16-0.20 over 6 filler seeds; 0.12-0.20 with 50 filler latents); random 0.0 (k = 4 or 8,
    # 64 or 512 latents, 4 seeds each). Cluster circle excess R² (not asserted): planted
    # 0.21 here (0.21-0.43 across variants), random 0.15-0.27, raw 0.30.
    raw = ideal["raw_day_rotation_accuracy"]
    assert raw > 0.1, f"the raw day plane no longer steers the answer ({raw:.2f})"
    assert ideal["day_rotation_accuracy"] - rand["day_rotation_accuracy"] > 0.4 * raw
    assert rand["raw_day_rotation_accuracy"] == raw  # same prompts, same ceiling


def test_decoder_clusters_recover_planted_groups():
    rng = np.random.default_rng(0)
    centres = np.linalg.qr(rng.normal(size=(32, 3)))[0].T  # three orthogonal directions
    rows = np.concatenate([centre + 0.1 * rng.normal(size=(10, 32)) for centre in centres])
    labels = circles.decoder_clusters(rows, 3, seed=0)
    truth = np.repeat(np.arange(3), 10)
    for group in range(3):  # each planted group is one cluster, and the clusters differ
        assert len(set(labels[truth == group])) == 1
    assert len(set(labels)) == 3


def test_between_value_variance_matches_brute_force():
    rng = np.random.default_rng(2)
    points, values = rng.normal(size=(40, 3)), rng.integers(0, 4, 40)
    centre = points.mean(0)
    expected = sum(
        ((points[values == v].mean(0) - centre) ** 2).sum() for v in values
    )  # one term per point, as n_v copies of its group's term
    assert circles.between_value_variance(points, values) == pytest.approx(expected)


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

    from saebench_tasks import circular

    period = 7
    answers = np.arange(140) % period
    tokens = [torch.tensor([0, int(v)]) for v in answers]
    ctx = SimpleNamespace(model=SimpleNamespace(bridge=AngleBridge(period)), hook="h", device="cpu")
    angle = 2 * np.pi * answers / period
    acts = np.column_stack([np.cos(angle), np.sin(angle), np.ones_like(angle)])
    answer_ids = torch.arange(period)
    right = circles.value_plane(acts, answers)
    assert circular.rotation_accuracy(ctx, tokens, acts, answers, period, answer_ids, right) == 1.0
    wrong = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])  # half in the irrelevant direction
    assert circular.rotation_accuracy(ctx, tokens, acts, answers, period, answer_ids, wrong) < 0.5


def test_plot_shows_selected_latents_and_best_decoder_cluster(tmp_path, monkeypatch):
    """Artifacts as circular.run saves them; each kind's figure has raw + one row per method
    with the selected-latents panel and the decoder-cluster panel (absent cluster: a note)."""
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
                f"{kind}_points": points[:, :8],
            }
            if method == "topk":  # relu: no decoder cluster found
                arrays[f"{kind}_cluster_points"] = points[:, 8:]
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
                    ("", "cluster_circle_excess_r2"),
                    ("", "latents_selected"),
                    ("", "cluster_size"),
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
    assert len(day) == 5  # raw once, then (selected, cluster) for each of 2 methods
    assert sum("selected latents" in t for t in day) == 2
    assert sum("best decoder cluster" in t for t in day) == 2
    assert all("excess R² 0.50" in t for t in day)
