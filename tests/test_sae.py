"""SAE formulas against hand computation; baselines behave as documented."""

import pytest
import torch

from saebench import plugins
from saebench.architectures import GatedSAE, JumpReLUSAE, TopKSAE
from saebench.sae import SAE, auxk_loss, geometric_median, initial_b_dec, squared_error


def small_sae(cls=SAE, **kwargs):
    torch.manual_seed(0)
    sae = cls(3, 4, **kwargs)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn_like(p))
    return sae


def test_standard_encode_decode_by_hand():
    sae = small_sae()
    x = torch.randn(5, 3)
    f = torch.clamp((x - sae.b_dec) @ sae.W_enc + sae.b_enc, min=0)
    assert torch.allclose(sae.encode(x), f)
    assert torch.allclose(sae(x), f @ sae.W_dec + sae.b_dec)


def test_standard_without_b_dec_subtraction():
    sae = small_sae(apply_b_dec_to_input=False)
    x = torch.randn(5, 3)
    assert torch.allclose(sae.encode(x), torch.relu(x @ sae.W_enc + sae.b_enc))


def test_topk_keeps_the_k_largest_per_token():
    sae = small_sae(TopKSAE, k=2)
    x = torch.randn(6, 3)
    z = sae.pre_acts(x)
    f = sae.encode(x)
    for row_z, row_f in zip(z, f):
        top = sorted(range(4), key=lambda i: -row_z[i].item())[:2]
        expected = torch.zeros(4)
        expected[top] = torch.relu(row_z[top])
        assert torch.allclose(row_f, expected)


def test_topk_rejects_k_above_d_sae():
    with pytest.raises(ValueError, match="lower k"):
        TopKSAE(3, 4, k=5)
    from saebench.errors import ConfigError

    with pytest.raises(ConfigError, match="k=5 is more than the SAE's d_sae=4.*values <= 4"):
        plugins.get_method("topk").build(d_in=3, d_sae=4, knob=5)
    with pytest.raises(ConfigError, match="lower k"):
        plugins.get_method("random").build(d_in=3, d_sae=4, knob=5)


def test_auxk_loss_by_hand():
    torch.manual_seed(0)
    z, error, W_dec = torch.randn(5, 6), torch.randn(5, 3), torch.randn(6, 3)
    dead = torch.tensor([True, False, True, True, False, False])
    assert auxk_loss(z, error, W_dec, torch.zeros(6, dtype=torch.bool), k_aux=2) == 0
    # Per token: keep the 2 largest pre-activations among latents 0, 2, 3, ReLU, decode.
    f_aux = torch.zeros_like(z)
    for row in range(5):
        ranked = sorted((0, 2, 3), key=lambda i: -z[row, i].item())[:2]
        f_aux[row, ranked] = torch.relu(z[row, ranked])
    expected = squared_error(error, f_aux @ W_dec) / (error - error.mean(0)).pow(2).sum(-1).mean()
    assert torch.allclose(auxk_loss(z, error, W_dec, dead, k_aux=2), expected)
    # k_aux above the number of dead latents uses them all.
    assert torch.isfinite(auxk_loss(z, error, W_dec, dead, k_aux=10))


def test_gated_encode_by_hand():
    sae = small_sae(GatedSAE)
    x = torch.randn(5, 3)
    centred = x - sae.b_dec
    gate = centred @ sae.W_enc + sae.b_enc
    magnitude = centred @ (sae.W_enc * sae.r_mag.exp()) + sae.b_mag
    assert torch.allclose(sae.encode(x), (gate > 0).float() * torch.relu(magnitude))


def test_jumprelu_zeroes_below_threshold():
    sae = small_sae(JumpReLUSAE)
    x = torch.randn(5, 3)
    z = sae.pre_acts(x)
    assert torch.allclose(sae.encode(x), torch.where(z > sae.threshold, z, torch.zeros_like(z)))


def test_squared_error_is_mean_over_tokens_of_sum_over_dims():
    x, x_hat = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    assert squared_error(x, x_hat).item() == pytest.approx((5 + 9) / 2)


def test_fold_input_scale_matches_scaled_model():
    spec = plugins.get_method("topk")
    sae = spec.build(d_in=8, d_sae=16, knob=3)
    torch.manual_seed(1)
    sae.initialize(torch.randn(100, 8))
    x = torch.randn(20, 8) * 5
    scale = 0.37
    with torch.no_grad():
        expected = sae(x * scale) / scale
        sae.fold_input_scale(scale)
        assert torch.allclose(sae(x), expected, atol=1e-5)
    assert sae.cfg["folded_input_scale"] == scale


def test_initial_b_dec_options():
    sample = torch.randn(50, 4) + 2
    assert torch.allclose(initial_b_dec(sample, "mean"), sample.mean(0))
    assert torch.equal(initial_b_dec(sample, "zero"), torch.zeros(4))
    assert torch.allclose(initial_b_dec(sample, "geometric_median"), geometric_median(sample))
    with pytest.raises(ValueError, match="geometric_median, mean or zero"):
        initial_b_dec(sample, "median")


def test_tied_init_and_decoder_norms():
    sae = plugins.get_method("l1").build(d_in=8, d_sae=32, knob=1.0)
    sae.initialize(torch.randn(64, 8))
    assert torch.allclose(sae.W_enc, sae.W_dec.T)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.full((32,), 0.1))  # April-2024 recipe


def test_dead_latents_are_counted_in_tokens():
    sae = plugins.get_method("topk").build(d_in=4, d_sae=3, knob=1)
    sae.dead_window_tokens = 10
    f = torch.tensor([[1.0, 0.0, 0.0]] * 6)
    sae.record_firing(f)
    assert sae.tokens_since_fired.tolist() == [0, 6, 6] and not sae.dead_mask().any()
    sae.record_firing(f)
    assert sae.dead_mask().tolist() == [False, True, True]


@pytest.mark.parametrize("name", ["identity", "pca"])
def test_signed_pair_baselines_reconstruct_exactly(name):
    torch.manual_seed(0)
    sample = torch.randn(500, 6) @ torch.randn(6, 6) + 3
    sae = plugins.get_method(name).build(d_in=6, d_sae=0, knob=6).fit(sample)
    assert sae.d_sae == 12
    assert torch.allclose(sae(sample), sample, atol=1e-4)
    # ReLU keeps one of each ± pair: at most d_in latents fire per token.
    assert ((sae.encode(sample) > 0).sum(-1) <= 6).all()


def test_pca_latents_are_principal_directions():
    torch.manual_seed(0)
    sample = torch.randn(2000, 3) * torch.tensor([5.0, 1.0, 0.2])
    sae = plugins.get_method("pca").build(d_in=3, d_sae=0, knob=3).fit(sample)
    assert abs(sae.W_dec[0] @ torch.tensor([1.0, 0.0, 0.0])) > 0.99


def test_random_baseline_has_l0_k_and_least_squares_scale():
    torch.manual_seed(0)
    sample = torch.randn(400, 8)
    sae = plugins.get_method("random").build(d_in=8, d_sae=32, knob=3).fit(sample)
    f = sae.encode(sample)
    assert ((f > 0).sum(-1) <= 3).all()
    # The fitted scale minimises the squared error: nudging it either way is worse.
    centred = sample - sae.b_dec
    base = f @ sae.W_dec
    errors = [(centred - c * base).pow(2).sum().item() for c in (0.95, 1.0, 1.05)]
    assert errors[1] < errors[0] and errors[1] < errors[2]
