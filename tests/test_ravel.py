"""ravel task: η², interchange arithmetic, and a fake model whose fact storage is known.

The fake (tests/doubles/fake_world.py) stores a city's country, continent and language as
one-hot blocks at the city token and answers from the asked block, so the identity dictionary
can swap one attribute without touching the others, while the whole-residual swap moves all.
"""

from pathlib import Path

import pytest
import torch
from doubles.fake_world import HOOK, FakeWorldBridge, planted_sae, random_sae

from saebench.interventions import latent_swap, separation_scores
from saebench.rundir import RunDir
from saebench.specs import ModelHandle, TaskContext
from saebench_tasks import ravel


@pytest.fixture(scope="module")
def model():
    from saebench.toyworld import load_world
    from saebench.toyworld.model import CHECKPOINT_DIR
    from saebench.toyworld.tokenizer import load_tokenizer

    world = load_world()
    tokenizer = load_tokenizer(CHECKPOINT_DIR / "tokenizer")
    return ModelHandle(
        name="fake",
        bridge=FakeWorldBridge(world, tokenizer),
        tokenizer=tokenizer,
        default_hook=HOOK,
        context_size=32,
        corpus=lambda *a: [],
        world=world,
    )


@pytest.fixture(scope="module")
def scores(model):
    cache = {}
    d = model.bridge.d_model
    out = {}
    for name, sae in (("planted", planted_sae(d)), ("random", random_sae(d, 2 * d))):
        ctx = TaskContext(
            model=model,
            hook=HOOK,
            sae=sae,
            eval_acts=None,
            eval_tokens=None,
            eval_mask=None,
            device="cpu",
            preset="smoke",
            seed=0,
            cache=cache,
            artifacts_dir=Path("."),
        )
        out[name] = ravel.run(ctx)
    return out


def test_separation_scores_by_hand():
    # latent 0 is the label itself (η² = 1); latent 1 varies only within groups (η² = 0);
    # latent 2 is constant (defined as 0).
    codes = torch.tensor([[1.0, 1.0, 3.0], [1.0, -1.0, 3.0], [0.0, 1.0, 3.0], [0.0, -1.0, 3.0]])
    eta = separation_scores(codes, ["a", "a", "b", "b"])
    assert eta.tolist() == pytest.approx([1.0, 0.0, 0.0])


def test_latent_swap_with_and_without_error_term():
    sae = planted_sae(3)
    with torch.no_grad():
        sae.W_dec.mul_(0.5)  # a lossy SAE: x̂ = x / 2
    base, source = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[5.0, 6.0, 7.0]])
    latents = torch.tensor([1])
    kept = latent_swap(sae, base, source, latents, keep_error=True)
    dropped = latent_swap(sae, base, source, latents, keep_error=False)
    assert kept.tolist() == [[1.0, 4.0, 3.0]]  # base + (6 − 2) · 0.5 on dim 1
    assert dropped.tolist() == [[0.5, 3.0, 1.5]]  # decode(1, 6, 3) = halves


def test_whole_residual_swap_causes_everything_and_isolates_nothing(scores):
    planted = scores["planted"]
    assert planted["ravel_model_accuracy"] == 1.0
    for attribute in ("country", "continent", "language"):
        assert planted[f"ravel_residual_swap_cause_{attribute}"] == 1.0
        assert planted[f"ravel_residual_swap_isolate_{attribute}"] == 0.0


def test_planted_dictionary_disentangles(scores):
    planted = scores["planted"]
    assert planted["ravel_disentangle_continent"] == 1.0
    assert planted["ravel_isolate"] == 1.0
    assert planted["ravel_disentangle"] > 0.85
    assert planted["ravel_disentangle"] > planted["ravel_residual_swap_disentangle"] + 0.3
    assert planted["ravel_disentangle"] > planted["ravel_random_set_disentangle"] + 0.3


def test_random_dictionary_scores_clearly_worse(scores):
    assert scores["random"]["ravel_disentangle"] < scores["planted"]["ravel_disentangle"] - 0.3
    assert scores["random"]["ravel_cause"] < 0.5


def test_plot_writes_a_bar_chart(tmp_path):
    import pandas as pd

    rows = [
        dict(
            model="m",
            hook=HOOK,
            method=method,
            knob=1.0,
            seed=0,
            task="ravel",  # noqa: C408
            metric=f"ravel_disentangle_{a}",
            value=v,
        )
        for method, v in (("topk", 0.7), ("random", 0.5))
        for a in ("country", "continent", "language")
    ]
    paths = ravel.plot(pd.DataFrame(rows), RunDir(tmp_path))
    assert len(paths) == 1 and paths[0].exists() and paths[0].stat().st_size > 0
