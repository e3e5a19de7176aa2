"""The built-in JumpReLU method (Rajamanoharan et al. 2024): conformance, the saved format, the
straight-through estimators, and the published direction (θ and L0 respond to λ)."""

import math

import pytest
import torch

from saebench import plugins
from saebench.activations import InMemoryStore
from saebench.architectures import JumpReLUSAE
from saebench.saved_format import load_sae, save_sae
from saebench.testing import check_method_conformance, superposition_acts
from saebench.training import TrainConfig, train_group
from saebench_plugins import jumprelu as jr

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def method():
    return plugins.get_method("jumprelu")


@pytest.fixture(scope="module")
def store():
    acts, _ = superposition_acts(42_000, n_features=64, d=16, p=0.04, seed=1)
    return InMemoryStore(acts[:40_000], acts[40_000:])


def config(tokens: int, **overrides) -> TrainConfig:
    cfg = dict(
        d_sae=64,
        total_tokens=tokens,
        batch_size=256,
        lr=3e-3,
        progress=False,
        dead_window_tokens=5_000,
    )
    return TrainConfig(**{**cfg, **overrides})


@pytest.mark.slow
def test_jumprelu_conformance(method):
    """The kit, with 10× its default budget: λ acts only through θ, and Adam moves log θ by about
    lr per step, so at the default 40k tokens (156 steps at lr 3e-3) θ stays near its 0.001·√d
    init and L0 is the same for every λ (measured: 29.6). 400k tokens give lr·steps ≈ 4.7."""
    findings = check_method_conformance(method, tokens=400_000)
    l0 = list(findings["l0_by_knob"].values())
    assert l0[0] > l0[-1]
    assert findings["group_matches_build"] < 1e-4


def test_knob_must_be_positive(method):
    with pytest.raises(ValueError, match="minimum"):
        method.check_knob(0.0)
    with pytest.raises(Exception, match="must be > 0"):
        jr.build(d_in=4, d_sae=8, knob=0.0)


def test_recipe_is_recorded_in_cfg(method, store, tmp_path):
    (member,) = train_group(method, [(0.01, 0)], store, config(2_560))
    cfg = member.sae.cfg
    assert cfg["l0_coefficient"] == 0.01 and cfg["ste_kernel"] == "rectangle"
    assert cfg["bandwidth"] == pytest.approx(0.001 * math.sqrt(16))
    assert cfg["threshold_init"] == pytest.approx(0.001 * math.sqrt(16))
    assert cfg["train_config"]["adam_betas"] == [0.0, 0.999]  # the paper's β1 = 0
    assert cfg["train_config"]["init_b_dec"] == "zero"
    assert cfg["recipe_overrides"] == {"adam_betas": [0.0, 0.999], "init_b_dec": "zero"}
    save_sae(member.sae, tmp_path / "sae")
    import json

    saved = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert saved["architecture"] == "jumprelu" and saved["apply_b_dec_to_input"] is False
    assert saved["saebench"]["bandwidth_paper_scale"] == 0.001


@pytest.mark.parametrize("fast", [True, False], ids=["group", "per_sae"])
def test_save_load_round_trip_as_jumprelu(method, store, tmp_path, fast):
    """Both training paths save a plain JumpReLU SAE that reloads without the plugin."""
    from dataclasses import replace

    spec = method if fast else replace(method, build_group=None)
    (member,) = train_group(spec, [(0.01, 0)], store, config(5_120))
    sae = member.sae
    if not fast:
        assert isinstance(sae, jr.TrainableJumpReLUSAE)
        assert "log_threshold" in sae.state_dict() and "threshold" in sae.state_dict()
    x = store.eval_acts[:512]
    save_sae(sae, tmp_path / "sae", metadata={"model_name": "test"})
    loaded = load_sae(tmp_path / "sae")
    assert type(loaded) is JumpReLUSAE
    assert torch.allclose(loaded.threshold, sae.threshold.detach(), atol=1e-7)
    with torch.no_grad():
        f, f_loaded = sae.encode(x), loaded.encode(x)
        assert (f != 0).float().sum(-1).mean() > 0  # something fires: the test means something
        assert (f_loaded - f).abs().max() <= 1e-5
        assert (loaded.decode(f_loaded) - sae.decode(f)).abs().max() <= 1e-5


def test_trainable_state_dict_loads_from_a_saved_threshold():
    sae = jr.build(d_in=4, d_sae=6, knob=0.1)
    threshold = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    state = {k: v for k, v in sae.state_dict().items() if k != "log_threshold"}
    state["threshold"] = threshold
    sae.load_state_dict(state)
    assert torch.allclose(sae.threshold, threshold)


def tiny_example():
    """z values placed inside and outside the rectangle window |z − θ| < ε/2, none on its edge."""
    eps = 0.1
    theta = torch.tensor([0.5, 1.0, 0.2])
    z = torch.tensor(
        [
            [0.52, 0.90, 0.26],  # in, out (below), out (above: 0.26 − 0.2 > 0.05)
            [0.47, 1.03, 0.17],  # in, in, in
            [0.80, 0.96, 0.00],  # out, in, out
            [0.40, 1.20, 0.24],  # out, out, in
        ]
    )
    upstream = torch.tensor(
        [[0.3, -1.0, 2.0], [-0.7, 0.4, 1.5], [0.9, -0.2, -1.1], [0.5, 0.8, -0.6]]
    )
    return z, theta, eps, upstream


def test_ste_threshold_gradients_match_the_rectangle_kernel_formula():
    z, theta, eps, upstream = tiny_example()
    inside = torch.tensor(
        [[1, 0, 0], [1, 1, 1], [0, 1, 0], [0, 0, 1]], dtype=torch.float32
    )  # K((z − θ)/ε), by hand
    assert torch.equal(jr.rectangle((z - theta) / eps), inside)

    t = theta.clone().requires_grad_(True)
    zz = z.clone().requires_grad_(True)
    (jr.jumprelu(zz, t, eps) * upstream).sum().backward()
    # ð/ðθ JumpReLU = −(θ/ε) K; ∂/∂z = H(z − θ).
    expected = (-(theta / eps) * inside * upstream).sum(0)
    assert torch.allclose(t.grad, expected, atol=1e-6)
    assert torch.allclose(zz.grad, (z > theta).float() * upstream)
    # One entry by hand: latent 0 has rows 0 and 1 in the window: −(0.5/0.1)(0.3 − 0.7) = 2.
    assert t.grad[0].item() == pytest.approx(2.0, abs=1e-5)

    t = theta.clone().requires_grad_(True)
    zz = z.clone().requires_grad_(True)
    (jr.step(zz, t, eps) * upstream).sum().backward()
    # ð/ðθ H = −(1/ε) K; no gradient to z.
    assert torch.allclose(t.grad, (-(1 / eps) * inside * upstream).sum(0), atol=1e-5)
    assert zz.grad is None or torch.count_nonzero(zz.grad) == 0


def test_step_ste_is_the_central_finite_difference_with_step_epsilon():
    """−(1/ε)·Σ K((z − θ)/ε) = [Σ H(z − θ − ε/2) − Σ H(z − θ + ε/2)] / ε: the rectangle STE of
    the L0 count is its finite difference over one bandwidth."""
    z, theta, eps, _ = tiny_example()
    t = theta.clone().requires_grad_(True)
    jr.step(z, t, eps).sum().backward()

    def l0(th):
        return (z > th).float().sum(0)

    finite = (l0(theta + eps / 2) - l0(theta - eps / 2)) / eps
    assert torch.allclose(t.grad, finite, atol=1e-4)


def test_jumprelu_ste_matches_the_derivative_of_the_expected_output():
    """The paper's pseudo-derivative is the derivative of E[z·H(z − θ)] = −θ·p(θ): with z drawn
    from a known density, the summed STE over many samples (a KDE) estimates it."""
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(400_000, 1, generator=generator)
    theta = torch.tensor([0.7], requires_grad=True)
    eps = 0.05
    jr.jumprelu(z, theta, eps).mean().backward()
    density = math.exp(-(0.7**2) / 2) / math.sqrt(2 * math.pi)
    assert theta.grad.item() == pytest.approx(-0.7 * density, rel=0.03)


def test_loss_gradient_on_log_threshold_matches_the_hand_computation():
    """Through the whole loss (group path): ∂L/∂log θ_i = θ_i·(1/B)Σ_b K_bi/ε ·
    (−θ_i·∂‖x − x̂‖²/∂f_bi − d_in·λ), with ∂‖x − x̂‖²/∂f_bi = −2 (x_b − x̂_b)·d_i."""
    torch.manual_seed(0)
    d_in, d_sae, lam = 4, 5, 0.02
    group = jr.JumpReLUGroup(d_in, d_sae, [lam])
    x = torch.randn(256, d_in)
    group.initialize(x, [0], "zero")
    eps = 0.4  # a wide window, so every latent has tokens inside it
    group.bandwidth = eps
    with torch.no_grad():
        group.log_threshold.fill_(math.log(0.3))
        group.b_dec.copy_(torch.randn(d_in) * 0.1)
    out = group.training_loss(x, 1.0)
    out.loss.backward()

    W = group.W_enc_rows[0].detach()
    D = group.W_dec[0].detach()
    theta = group.log_threshold[0].detach().exp()
    z = x @ W.T + group.b_enc[0].detach()
    f = z * (z > theta)
    residual = x - (f @ D + group.b_dec[0].detach())
    dmse_df = -2 * residual @ D.T / len(x)  # mean over tokens
    kernel = ((z - theta).abs() < eps / 2).float() / eps
    d_theta = (kernel * (-theta * dmse_df)).sum(0) - d_in * lam * kernel.mean(0)
    expected = theta * d_theta
    assert kernel.sum(0).min() > 0
    assert torch.allclose(group.log_threshold.grad[0], expected, atol=1e-5, rtol=1e-4)


def test_group_loss_and_gradients_match_the_per_sae_reference():
    torch.manual_seed(0)
    d_in, d_sae, knobs = 8, 16, [0.01, 0.05]
    x = torch.randn(128, d_in)
    group = jr.JumpReLUGroup(d_in, d_sae, knobs)
    group.initialize(x, [0, 1], "zero")
    saes = [jr.build(d_in, d_sae, k) for k in knobs]
    for index, sae in enumerate(saes):
        sae.initialize(x, "zero", generator=torch.Generator().manual_seed(index))
        assert torch.allclose(sae.W_dec, group.W_dec[index])
    out = group.training_loss(x, 0.5)
    out.loss.backward()
    for index, sae in enumerate(saes):
        loss, f, logs = sae.training_loss(x, 0.5)
        loss.backward()
        assert loss.item() == pytest.approx(out.member_loss[index].item(), rel=1e-5)
        assert logs["sparsity"] == pytest.approx(out.extras["sparsity"][index].item())
        assert torch.allclose(sae.log_threshold.grad, group.log_threshold.grad[index], atol=1e-6)
        assert torch.allclose(sae.W_enc.grad.T, group.W_enc_rows.grad[index], atol=1e-5)
        assert torch.allclose(sae.W_dec.grad, group.W_dec.grad[index], atol=1e-5)


PUBLISHED_KNOBS = [1e-4, 1e-3, 1e-2]


@pytest.fixture(scope="module")
def published(method, store):
    """One group over three λ on the synthetic stream (d = 16, 64 features, p = 0.04), with the
    default preset's lr and about its number of steps (lr·steps ≈ 6: log θ moves at most ≈ lr
    per Adam step, so the budget must let θ travel from its 0.001·√d init)."""
    cfg = config(160_000, lr=1e-2)
    return train_group(method, [(k, 0) for k in PUBLISHED_KNOBS], store, cfg)


def test_published_direction_l0_falls_and_thresholds_rise_with_lambda(published, store):
    x = store.eval_acts
    l0s, thresholds = [], []
    for member in published:
        assert member.error is None
        with torch.no_grad():
            l0s.append((member.sae.encode(x) != 0).float().sum(-1).mean().item())
        thresholds.append(member.sae.threshold.mean().item())
    init = published[0].sae.cfg["threshold_init"]
    print("L0 by λ", dict(zip(PUBLISHED_KNOBS, l0s)), "mean θ", thresholds, "init", init)
    assert all(b < a for a, b in zip(l0s, l0s[1:])), f"L0 not falling with λ: {l0s}"
    assert all(b > a for a, b in zip(thresholds, thresholds[1:])), f"θ not rising: {thresholds}"
    assert l0s[-1] < 0.75 * l0s[0], l0s
    assert thresholds[-1] > 10 * init, (thresholds, init)  # the L0 term pushed θ up
