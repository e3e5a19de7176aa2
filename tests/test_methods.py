"""Every built-in method passes the plugin conformance kit, and the methods behave as published."""

import pytest
import torch

from saebench import plugins
from saebench.activations import InMemoryStore
from saebench.synthetic import mean_max_cosine
from saebench.testing import superposition_acts
from saebench.training import TrainConfig, lr_multiplier, train_sae

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BUILTIN = ["l1", "gated", "topk", "tanh", "identity", "pca", "random"]


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_method_conformance(name, saebench_method_conformance):
    saebench_method_conformance(plugins.get_method(name))


@pytest.fixture(scope="module")
def stream():
    torch.manual_seed(0)
    acts, directions = superposition_acts(42_000, n_features=64, d=16, p=0.04, seed=1)
    return InMemoryStore(acts[:40_000], acts[40_000:]), directions


def train(name, knob, store, tokens=160_000, d_sae=64, seed=0):
    cfg = TrainConfig(
        d_sae=d_sae,
        total_tokens=tokens,
        batch_size=256,
        lr=3e-3,
        progress=False,
        seed=seed,
        dead_window_tokens=5_000,
    )
    return train_sae(plugins.get_method(name), knob, store, cfg)[0]


def recovery(sae, true_directions):
    return mean_max_cosine(sae.W_dec, true_directions)


def shrinkage(sae, x):
    with torch.no_grad():
        x_hat = sae(x)
    return (x_hat.pow(2).sum() / (x * x_hat).sum()).item()


def test_trained_saes_recover_true_features_better_than_random(stream):
    store, directions = stream
    random_score = recovery(train("random", 4, store), directions)
    for name, knob in (("topk", 4), ("l1", 1.0)):
        score = recovery(train(name, knob, store), directions)
        assert score > random_score + 0.2, (name, score, random_score)
        assert score > 0.8, (name, score)


def test_l1_shrinks_and_topk_does_not(stream):
    store, _ = stream
    x = store.eval_acts
    assert shrinkage(train("l1", 2.0, store), x) < 0.95
    assert abs(shrinkage(train("topk", 4, store), x) - 1.0) < 0.05


def test_topk_l0_equals_k(stream):
    store, _ = stream
    sae = train("topk", 3, store, tokens=20_000)
    assert ((sae.encode(store.eval_acts) > 0).sum(-1) <= 3).all()


def test_gradient_projection_keeps_decoder_rows_unit_norm(stream):
    store, _ = stream
    spec = plugins.get_method("topk")
    sae = spec.build(d_in=16, d_sae=64, knob=4)
    sae.initialize(store.sample(1000, 0))
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-2)
    for x in list(zip(range(20), store.train_batches(128, 0, "cpu"))):
        loss, _, _ = sae.training_loss(x[1], 1.0)
        optimizer.zero_grad()
        loss.backward()
        sae.project_decoder_grad()
        # After projection the gradient is orthogonal to each row.
        unit = sae.W_dec / sae.W_dec.norm(dim=1, keepdim=True)
        assert (sae.W_dec.grad * unit).sum(1).abs().max() < 1e-5
        optimizer.step()
        sae.renormalize_decoder()
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(64), atol=1e-5)


def test_gated_aux_loss_does_not_train_the_decoder(stream):
    from saebench.sae import squared_error

    store, _ = stream
    sae = plugins.get_method("gated").build(d_in=16, d_sae=64, knob=1.0)
    sae.initialize(store.sample(1000, 0))
    x = store.eval_acts[:256]
    # With the sparsity term switched off, the full loss is mse + aux: if aux is detached from
    # the decoder, the decoder's gradient is exactly the reconstruction's.
    loss, _, logs = sae.training_loss(x, 0.0)
    assert logs["aux"] > 0
    loss.backward()
    full_grad, gate_grad = sae.W_dec.grad.clone(), sae.W_enc.grad.clone()
    sae.zero_grad()
    squared_error(x, sae(x)).backward()
    assert torch.allclose(full_grad, sae.W_dec.grad, atol=1e-6)
    assert not torch.allclose(gate_grad, sae.W_enc.grad)  # ...while aux does train the gate


def test_auxk_revives_dead_latents(stream):
    store, _ = stream
    spec = plugins.get_method("topk")
    sae = spec.build(d_in=16, d_sae=64, knob=2)
    sae.initialize(store.sample(1000, 0))
    sae.dead_window_tokens = 0  # everything counts as dead: the aux loss must reach them
    x = store.eval_acts[:8]  # 8 tokens × k=2 leaves most of the 64 latents never selected
    loss, f, logs = sae.training_loss(x, 1.0)
    assert logs["auxk"] > 0
    loss.backward()
    never_selected = (f == 0).all(0)
    assert never_selected.sum() > 32
    assert sae.W_enc.grad[:, never_selected].abs().sum() > 0


def test_saved_sae_on_raw_inputs_matches_training_on_scaled_inputs(stream):
    store, _ = stream
    raw = store.eval_acts[:128] * 7.0  # a scale far from √d
    scaled_store = InMemoryStore(store.train_acts * 7.0, raw)
    sae = train("topk", 4, scaled_store, tokens=20_000)
    scale = sae.cfg["input_scale"]
    assert abs(scale - 1 / 7.0 * (16**0.5) / store.train_acts.norm(dim=1).mean().item()) < 1e-2
    # Undo the fold by hand and compare: SAE_raw(x) == SAE_scaled(x·s)/s.
    unfolded = plugins.get_method("topk").build(d_in=16, d_sae=64, knob=4)
    unfolded.load_state_dict(sae.state_dict(), strict=False)
    with torch.no_grad():
        unfolded.W_enc /= scale
        unfolded.b_dec *= scale
        unfolded.W_dec *= scale
        assert torch.allclose(sae(raw), unfolded(raw * scale) / scale, atol=1e-4)


class PoisonedStore(InMemoryStore):
    """Clean sample (so scaling succeeds) but NaN batches after a few steps: a divergence."""

    def train_batches(self, batch_size, seed, device):
        for step, batch in enumerate(super().train_batches(batch_size, seed, device)):
            yield batch if step < 5 else batch * float("nan")


def test_nan_loss_raises_training_diverged(stream):
    from saebench.errors import SaebenchError
    from saebench.training import TrainingDiverged

    store, _ = stream
    with pytest.raises(TrainingDiverged, match="lower the learning rate") as caught:
        train("l1", 1.0, PoisonedStore(store.train_acts, store.eval_acts), tokens=20_000)
    assert isinstance(caught.value, SaebenchError)  # the runner records the cell as failed


def test_lr_schedule_warms_up_then_decays_to_zero():
    values = [lr_multiplier(s, 100, 0.1, 0.2) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == 1.0 and values[50] == 1.0
    assert values[80] == 1.0 and values[99] == pytest.approx(0.05)


def test_geometric_median_against_brute_force():
    from saebench.sae import geometric_median

    torch.manual_seed(0)
    points = torch.randn(200, 2) + torch.tensor([3.0, -1.0])
    points[:20] += 50  # outliers pull the mean, not the median
    median = geometric_median(points)

    def cost(p):
        return (points - p).norm(dim=1).sum()

    grid = [median + torch.tensor([dx, dy]) for dx in (-0.05, 0, 0.05) for dy in (-0.05, 0, 0.05)]
    assert all(cost(median) <= cost(g) + 1e-3 for g in grid)
    assert (median - torch.tensor([3.0, -1.0])).norm() < 0.5


def test_gated_decoder_rows_do_not_collapse_and_l0_falls_with_training(stream):
    """Without unit-norm rows the penalty shrinks ‖d_i‖ to 0 and those latents fire for free."""
    store, _ = stream
    x = store.eval_acts

    def l0(sae):
        with torch.no_grad():
            return (sae.encode(x) != 0).float().sum(-1).mean().item()

    short = train("gated", 1.0, store, tokens=40_000)
    long = train("gated", 1.0, store, tokens=240_000)
    assert torch.allclose(
        long.W_dec.norm(dim=1) * long.cfg["input_scale"], torch.ones(64), atol=1e-4
    )  # unit rows in the normalised space (scale folded in)
    assert l0(long) < l0(short)
