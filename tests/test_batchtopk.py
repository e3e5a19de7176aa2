"""The built-in BatchTopK method (plugins/batchtopk.py): conformance, the saved jumprelu form,
batch-level L0 during training, the inference threshold, and the published direction (BatchTopK
reconstructs better than TopK at matched L0, Bussmann et al. 2024)."""

import json
from dataclasses import replace

import pytest
import torch

from saebench import plugins
from saebench.architectures import JumpReLUSAE
from saebench.errors import ConfigError
from saebench.saved_format import load_sae, save_sae
from saebench.synthetic import SuperpositionStream
from saebench.testing import check_method_conformance
from saebench.training import TrainConfig, train_group, train_sae
from saebench_plugins import batchtopk

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def spec(fast: bool = True):
    method = plugins.get_method("batchtopk")
    return method if fast else replace(method, build_group=None)  # the per-SAE reference


def config(tokens: int, d_sae: int = 64, **overrides) -> TrainConfig:
    settings = {"batch_size": 256, "lr": 3e-3, "progress": False, "dead_window_tokens": 5_000}
    return TrainConfig(d_sae=d_sae, total_tokens=tokens, **{**settings, **overrides})


@pytest.fixture(scope="module")
def store():
    return SuperpositionStream(64, 16, firing_prob=0.04, seed=0).store(20_000, 2_000)


def l0(sae, x) -> float:
    with torch.no_grad():
        return (sae.encode(x) != 0).float().sum(-1).mean().item()


def fvu(sae, x) -> float:
    with torch.no_grad():
        error = (x - sae(x)).pow(2).sum()
    return (error / (x - x.mean(0)).pow(2).sum()).item()


@pytest.mark.slow
def test_conformance():
    findings = check_method_conformance(spec())
    # The stacked fast path trains the SAEs the dense reference trains (checked inside).
    assert findings["group_matches_build"] is not None
    low, high = sorted(findings["l0_by_knob"])
    assert findings["l0_by_knob"][low] < findings["l0_by_knob"][high]


@pytest.mark.parametrize("fast", [True, False], ids=["group", "reference"])
def test_saved_sae_reloads_as_jumprelu_with_one_threshold(tmp_path, store, fast):
    sae, _ = train_sae(spec(fast), 4, store, config(30_000))
    assert sae.architecture == "jumprelu"
    assert torch.unique(sae.threshold).numel() == 1 and float(sae.threshold[0]) > 0
    directory = save_sae(sae, tmp_path / "sae", {"model_name": "synthetic"})
    loaded = load_sae(directory)
    assert type(loaded) is JumpReLUSAE  # loads without the plugin
    x = store.eval_acts
    with torch.no_grad():
        f, f_loaded = sae.encode(x), loaded.encode(x)
        assert (f_loaded - f).abs().max().item() <= 1e-5
        assert (loaded.decode(f) - sae.decode(f)).abs().max().item() <= 1e-5
        assert (loaded(x) - sae(x)).abs().max().item() <= 1e-5
    cfg = json.loads((directory / "cfg.json").read_text())
    assert cfg["architecture"] == "jumprelu" and "k" not in cfg  # not mistaken for a TopK
    recipe = cfg["saebench"]
    assert recipe["k"] == 4 and recipe["method"] == "batchtopk"
    assert recipe["threshold_beta"] == batchtopk.THRESHOLD_BETA
    assert recipe["loss"].startswith("gao2024") and recipe["auxk_alpha"] == 1 / 32


def test_batch_topk_keeps_k_per_token_on_average_not_per_token():
    acts = torch.relu(torch.randn(256, 64, generator=torch.Generator().manual_seed(0)))
    f, kept = batchtopk.batch_topk(acts, 4)
    per_token = (f > 0).sum(-1)
    assert per_token.sum().item() == 4 * 256 and kept.numel() == 4 * 256
    assert per_token.min() < 4 < per_token.max()  # variable per token
    assert torch.equal(f[f > 0].sort().values, kept.sort().values)


@pytest.mark.parametrize("fast", [True, False], ids=["group", "reference"])
def test_training_l0_is_exactly_k_and_inference_l0_close_to_it(store, fast):
    k = 4
    sae, log = train_sae(spec(fast), k, store, config(30_000))
    # Every training step keeps k·B of the batch: each curve point's mean L0 is exactly k.
    assert all(abs(point - k) < 1e-5 for point in log["curve"]["l0"]), log["curve"]["l0"]
    assert log["l0"] == pytest.approx(k, abs=1e-5)
    # At inference the learned θ replaces the batch: L0 close to k, per token variable.
    assert 0.75 * k <= l0(sae, store.eval_acts) <= 1.33 * k
    assert log["final_train"]["threshold"] == pytest.approx(float(sae.threshold[0]), rel=1e-5)


def test_threshold_is_the_ema_of_the_smallest_positive_kept_activation():
    sae = batchtopk.build(d_in=8, d_sae=16, knob=2)
    generator = torch.Generator().manual_seed(0)
    sae.initialize(torch.randn(512, 8, generator=generator), generator=generator)
    batches = [torch.randn(64, 8, generator=generator) for _ in range(3)]

    def smallest_kept(x):
        with torch.no_grad():
            _, kept = batchtopk.batch_topk(torch.relu(sae.pre_acts(x)), 2)
        return kept[kept > 0].min().item()

    expected = None
    for x in batches:
        m = smallest_kept(x)  # the weights do not change here: no optimiser step
        sae.training_loss(x, 1.0)
        beta = batchtopk.THRESHOLD_BETA
        expected = m if expected is None else beta * expected + (1 - beta) * m
        assert sae.threshold.tolist() == pytest.approx([expected] * 16, rel=1e-6)
    sae.eval()
    sae.training_loss(batches[0], 1.0)  # not a training batch: θ stays
    assert sae.threshold[0].item() == pytest.approx(expected, rel=1e-6)


def test_group_and_reference_learn_the_same_threshold(store):
    members = [(4, 0), (8, 1)]
    fast = train_group(spec(), members, store, config(10_240))
    looped = train_group(spec(fast=False), members, store, config(10_240))
    for a, b in zip(fast, looped):
        assert a.error is None and b.error is None
        assert float(a.sae.threshold[0]) == pytest.approx(float(b.sae.threshold[0]), rel=1e-3)
        assert a.log["curve"]["l0"] == pytest.approx(b.log["curve"]["l0"], abs=1e-5)
        assert a.sae.cfg["k"] == b.sae.cfg["k"] and a.sae.cfg["threshold_beta"] == 0.9


def test_k_above_d_sae_is_a_clear_error():
    with pytest.raises(ConfigError, match="--sweep batchtopk"):
        batchtopk.build(d_in=16, d_sae=32, knob=64)
    with pytest.raises(ConfigError, match="--sweep batchtopk"):
        batchtopk.build_group(d_in=16, d_sae=32, knobs=[8, 64])


def matched_l0(d: int, seed: int = 0) -> dict[str, float]:
    """BatchTopK (k=3) against TopK (k=3 and 4) on 64 features of firing probability 0.05 in d
    dimensions, the same engine, budget (100k tokens, lr 1e-2 as the smoke/default presets) and d_sae = 64.

    Compared at BatchTopK's inference L0 (its θ, not the batch): TopK's FVU there is read off the
    chord between its two runs, whose L0s bracket it. FVU falls convexly with L0, so the chord
    sits a little above TopK's curve; BatchTopK's L0 lies within 0.1 of TopK k=3's, where the
    chord and the curve meet, so the bias is small."""
    store = SuperpositionStream(64, d, firing_prob=0.05, seed=seed).store(40_000, 4_000)
    x = store.eval_acts
    cfg = config(100_000, lr=1e-2)
    low, high = train_group(plugins.get_method("topk"), [(3, 0), (4, 0)], store, cfg)
    (btk,) = train_group(spec(), [(3, 0)], store, cfg)
    (l0_low, fvu_low), (l0_high, fvu_high) = [(l0(m.sae, x), fvu(m.sae, x)) for m in (low, high)]
    l0_btk = l0(btk.sae, x)
    assert l0_low <= l0_btk <= l0_high, (l0_low, l0_btk, l0_high)
    chord = fvu_low + (fvu_high - fvu_low) * (l0_btk - l0_low) / (l0_high - l0_low)
    return {
        "l0_batchtopk": l0_btk,
        "fvu_batchtopk": fvu(btk.sae, x),
        "fvu_topk_matched": chord,
        "fvu_topk_k4": fvu_high,
    }


@pytest.mark.slow
def test_batchtopk_beats_topk_at_matched_l0_when_features_are_recoverable():
    """The published direction (Bussmann et al. 2024: lower NMSE than TopK at the same L0).
    Measured (stream seeds 0/1/2, d = 32): BatchTopK FVU 0.098/0.171/0.147 at L0 2.96/2.97/3.00
    vs TopK 0.163/0.191/0.193 at matched L0. (TopK at k = 4, L0 ≈ 3.85, gets 0.117/0.147/0.145:
    BatchTopK beats that larger L0 on seed 0 only.)"""
    found = matched_l0(d=32)
    assert found["fvu_batchtopk"] <= found["fvu_topk_matched"], found


@pytest.mark.slow
@pytest.mark.xfail(
    strict=False,
    reason="does not reproduce under heavy superposition at this scale: 64 features in 16 "
    "dimensions, BatchTopK FVU 0.212 vs TopK 0.194 at matched L0 2.98 (also at firing "
    "probability 0.04, stream seeds 0/1: 0.181 vs 0.165, 0.212 vs 0.192). The published "
    "comparison is on LLM activations; on this toy the advantage needs recoverable features "
    "(d = 32, the test above)",
)
def test_batchtopk_beats_topk_at_matched_l0_under_heavy_superposition():
    found = matched_l0(d=16)
    assert found["fvu_batchtopk"] <= found["fvu_topk_matched"], found
