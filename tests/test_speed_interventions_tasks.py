"""The tasks' batched and vectorised paths equal the one-at-a-time code they replaced.

Each reference below is the earlier per-latent / per-value / per-step implementation, kept here
only to pin the fast path: ravel's latent-set scores, ioi's best-latent
F1 table, the circle score's permutation null, and circular's rotation steps.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from doubles.context import fake_world_handle, task_context
from doubles.fake_world import random_sae

from saebench import circles
from saebench.interventions import best_latent_f1, run_patched
from saebench_tasks import circular, ioi, ravel


@pytest.fixture(scope="module")
def ravel_setup():
    model = fake_world_handle()
    sae = random_sae(model.bridge.d_model, 2 * model.bridge.d_model)
    ctx = task_context(model, sae=sae)
    return ctx, ravel.prepare(ctx)


def patch_all(ctx, pairs, new):
    """The reference path: every base prompt through the model with its new activation."""
    return run_patched(
        ctx.model.bridge,
        ctx.hook,
        [p[0]["tokens"] for p in pairs],
        [p[0]["position"] for p in pairs],
        lambda acts, idx: new[idx],
    )[1]


@torch.no_grad()
def test_ravel_score_many_equals_scoring_each_job_alone(ravel_setup):
    ctx, prep = ravel_setup
    sae = ctx.sae

    def swap(latents):
        def patch(base, source, pairs):
            z_base, z_source = sae.encode(base), sae.encode(source)
            return base + (z_source[:, latents] - z_base[:, latents]) @ sae.W_dec[latents]

        return patch

    jobs = [
        (prep["train_pairs"][(attribute, kind)], patch)
        for attribute in ("country", "language")
        for kind in ("cause", "isolate")
        for patch in (swap(torch.arange(k)) for k in (1, 8, 2 * sae.d_in))
    ] + [(prep["test_pairs"][("continent", "cause")], ravel.whole_swap)]
    expected = []
    for pairs, patch in jobs:
        base = torch.stack([p[0]["act"] for p in pairs])
        source = torch.stack([p[1]["act"] for p in pairs])
        logits = patch_all(ctx, pairs, patch(base, source, pairs))
        answers = torch.tensor([p[2] for p in pairs])
        expected.append((logits.argmax(-1) == answers).double().mean().item())
    assert ravel.score_many(ctx, jobs) == expected


def reference_interpretability(train, train_codes, evaluation, eval_codes):
    """One value and one latent at a time, MCC by sklearn's formula (the selection) and by
    hand counts (precision, recall, F1)."""
    from sklearn.metrics import matthews_corrcoef

    out = {}
    for attribute, label in (("io", "io"), ("s", "s"), ("pos", "order")):
        train_values = [e.labels[label] for e in train]
        eval_values = [e.labels[label] for e in evaluation]
        scores = []
        for value in sorted(set(eval_values)):
            train_label = np.array([v == value for v in train_values])
            if not train_label.any():
                continue
            train_mcc = [
                matthews_corrcoef(train_label, (train_codes[:, j] > 0).numpy())
                for j in range(train_codes.shape[1])
            ]
            best = max(range(len(train_mcc)), key=lambda j: (train_mcc[j], -j))  # first best
            eval_label = np.array([v == value for v in eval_values])
            fired = (eval_codes[:, best] > 0).numpy()
            mcc = matthews_corrcoef(eval_label, fired)
            p, r, f = best_latent_f1(torch.tensor(fired)[:, None], torch.tensor(eval_label))
            scores.append((mcc, p.item(), r.item(), f.item()))
        for i, name in enumerate(("mcc", "precision", "recall", "f1")):
            out[f"ioi_{name}_{attribute}"] = sum(s[i] for s in scores) / max(len(scores), 1)
    for name in ("mcc", "f1"):
        out[f"ioi_{name}_mean"] = (
            out[f"ioi_{name}_io"] + out[f"ioi_{name}_s"] + out[f"ioi_{name}_pos"]
        ) / 3
    return out


def test_ioi_interpretability_equals_one_value_at_a_time():
    rng = np.random.default_rng(0)
    names = ["ann", "bob", "cy", "dee", "eve"]

    def examples(n, pool):
        return [
            SimpleNamespace(
                labels={
                    "io": rng.choice(pool),
                    "s": rng.choice(pool),
                    "order": rng.choice(["ABBA", "BABA"]),
                }
            )
            for _ in range(n)
        ]

    train, evaluation = examples(300, names[:4]), examples(80, names)  # "eve": never trained
    generator = torch.Generator().manual_seed(0)
    # Sparse codes with ties (many latents fire identically), as a TopK SAE gives.
    train_codes = torch.relu(torch.randn(300, 40, generator=generator) - 1).round()
    eval_codes = torch.relu(torch.randn(80, 40, generator=generator) - 1).round()
    fast = ioi.interpretability(train, train_codes, evaluation, eval_codes)
    slow = reference_interpretability(train, train_codes, evaluation, eval_codes)
    assert fast.keys() == slow.keys()
    assert all(fast[k] == pytest.approx(slow[k], abs=1e-12) for k in fast)


def reference_score(points, values, period):
    centre = points.mean(0)
    centroids = np.stack([points[values == v].mean(0) for v in np.unique(values)]) - centre
    _, _, vt = np.linalg.svd(centroids, full_matrices=False)
    return circles.circle_r2((points - centre) @ vt[:2].T, values, period)[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("period", [7, 12])
def test_circle_null_equals_one_permutation_at_a_time(dtype, period):
    rng = np.random.default_rng(period)
    points = (rng.normal(size=(300, 16)) * 5 + 2).astype(dtype)
    values = rng.integers(0, period, 300)
    centroids = circles.value_centroids(points, values)
    masked = np.stack([points[values == v].mean(0) for v in np.unique(values)])
    assert centroids.dtype == masked.dtype and np.array_equal(centroids, masked)
    shuffled = np.stack([rng.permutation(values) for _ in range(10)])
    fast = circles.null_r2(points, shuffled, period)
    slow = [reference_score(points, s, period) for s in shuffled]
    assert fast == pytest.approx(slow, abs=1e-12)


def test_batched_circle_fit_handles_a_degenerate_design_like_lstsq():
    rng = np.random.default_rng(1)
    line = rng.normal(size=(100, 1))
    projected = np.hstack([line, 3 * line])  # rank 1: lstsq drops the second direction
    values = rng.integers(0, 7, 100)
    fast = circles.batched_circle_r2(projected[None], values[None], 7)
    assert fast[0] == pytest.approx(circles.circle_r2(projected, values, 7)[0], abs=1e-12)


class AngleBridge:
    """Answers with the angle of the last position's first two hook coordinates (exact, no
    matrix multiply, so rows never depend on their batch)."""

    def __init__(self, period):
        self.period = period

    def run_with_hooks(self, tokens, fwd_hooks=(), return_type="logits"):
        angle = 2 * math.pi * tokens[:, -1].double() / self.period
        acts = torch.stack([torch.cos(angle), torch.sin(angle), torch.ones_like(angle)], -1)
        acts = acts[:, None, :].repeat(1, tokens.shape[1], 1).float()
        for _, fn in fwd_hooks:
            acts = fn(acts, hook=None)
        last = acts[:, -1].double()
        theta = torch.atan2(last[:, 1], last[:, 0])
        targets = 2 * math.pi * torch.arange(self.period) / self.period
        return torch.cos(theta[:, None] - targets[None])[:, None, :]


def reference_rotation_accuracy(ctx, prompts, basis):
    """One run per step, every prompt, the pre-batching code."""
    acts, starts, period = prompts.acts.numpy(), prompts.starts, prompts.period
    coords = acts @ basis.T
    centroids = np.stack(
        [
            coords[starts == v].mean(0) if (starts == v).any() else np.full(2, np.nan)
            for v in range(period)
        ]
    )
    hits = []
    for k in circular.ROTATION_STEPS:
        moved = (starts + k) % period
        usable = ~np.isnan(centroids[moved]).any(1)
        new_acts = torch.tensor(
            circles.move_in_plane(acts, basis, np.nan_to_num(centroids[moved])),
            dtype=torch.float32,
        )
        _, logits = run_patched(
            ctx.model.bridge,
            ctx.hook,
            prompts.tokens,
            prompts.positions,
            lambda a, idx, new=new_acts: new[idx],
        )
        want = prompts.answer_ids[(moved + prompts.offsets) % period]
        hits.append((logits.argmax(-1) == want).numpy()[usable])
    return float(np.concatenate(hits).mean())


def test_rotation_steps_in_one_run_equal_one_run_per_step():
    from saebench_tasks.circular.data import OperandPrompts

    period = 7
    rng = np.random.default_rng(0)
    starts = rng.choice([0, 1, 2, 4, 5], 60)  # values 3 and 6 absent: some targets unusable
    ctx = SimpleNamespace(model=SimpleNamespace(bridge=AngleBridge(period)), hook="h", device="cpu")
    angle = 2 * np.pi * starts / period
    acts = np.column_stack([np.cos(angle), np.sin(angle), np.ones_like(angle)])
    acts = acts + 0.3 * rng.normal(size=acts.shape)
    prompts = OperandPrompts(
        tokens=[torch.tensor([0, int(v)]) for v in starts],
        positions=[1] * len(starts),
        acts=torch.tensor(acts, dtype=torch.float32),
        starts=starts,
        offsets=np.zeros(len(starts), dtype=int),
        answers=starts,
        period=period,
        answer_ids=torch.arange(period),
    )
    rows = np.arange(len(starts))
    for basis in (circles.value_plane(acts, starts), np.array([[0.0, 0.6, 0.8], [1.0, 0, 0]])):
        coords = prompts.acts.numpy() @ basis.T
        centroids = circles.value_coordinates(coords, starts, period)
        fast = float(np.nanmean(circular.rotation_hits(ctx, prompts, rows, basis, centroids)))
        assert fast == pytest.approx(reference_rotation_accuracy(ctx, prompts, basis), abs=1e-12)
