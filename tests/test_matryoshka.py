"""The built-in Matryoshka BatchTopK method: conformance, its recipe, the saved JumpReLU round
trip, and the published direction (Bussmann et al. 2025): the first prefix reconstructs x on its
own, which the first m_1 latents of a TopK SAE (whose latents have no order) cannot."""

import copy
import json

import pytest
import torch

from saebench import plugins
from saebench.errors import ConfigError
from saebench.sae import total_variance
from saebench.saved_format import load_sae, save_sae
from saebench.synthetic import SuperpositionStream
from saebench.training import TrainConfig, train_sae
from saebench_plugins import matryoshka

pytestmark = pytest.mark.usefixtures("one_torch_thread")

K = 4
D_IN, D_SAE, N_FEATURES = 16, 64, 64


def spec():
    return plugins.get_method("matryoshka")


def fvu(x, x_hat) -> float:
    return (x - x_hat).pow(2).sum(-1).mean().item() / total_variance(x)


def prefix_fvu(sae, x, m: int) -> float:
    """FVU of x̂ from the SAE's first m latents alone (the others zeroed), with b_dec."""
    with torch.no_grad():
        f = sae.encode(x).clone()
        f[:, m:] = 0
        return fvu(x, sae.decode(f))


def by_frequency(sae, x):
    """A copy of `sae` with its latents reordered from most to least often firing on x."""
    with torch.no_grad():
        order = (sae.encode(x) > 0).float().mean(0).argsort(descending=True)
        reordered = copy.deepcopy(sae)
        reordered.W_enc.copy_(sae.W_enc[:, order])
        reordered.b_enc.copy_(sae.b_enc[order])
        reordered.W_dec.copy_(sae.W_dec[order])
    return reordered


@pytest.fixture(scope="module")
def zipf_store():
    """Features with Zipf-like frequencies (as in language-model activations): a few frequent
    features carry most of the variance, which a good first prefix should find."""
    probs = 0.3 / torch.arange(1, N_FEATURES + 1).float()
    stream = SuperpositionStream(N_FEATURES, D_IN, firing_prob=probs.tolist(), seed=3)
    return stream.store(40_000, 4_000)


def train(name, store, tokens=80_000, seed=0):
    cfg = TrainConfig(
        d_sae=D_SAE,
        total_tokens=tokens,
        batch_size=256,
        lr=3e-3,
        progress=False,
        seed=seed,
        dead_window_tokens=5_000,
    )
    return train_sae(plugins.get_method(name), K, store, cfg)


@pytest.fixture(scope="module")
def trained(zipf_store):
    return {name: train(name, zipf_store) for name in ("matryoshka", "topk")}


def test_conformance(saebench_method_conformance):
    saebench_method_conformance(spec())


def test_prefix_sizes_double_from_a_sixteenth():
    assert matryoshka.prefix_sizes(64) == [4, 8, 16, 32, 64]
    assert matryoshka.prefix_sizes(3072) == [192, 384, 768, 1536, 3072]
    assert matryoshka.prefix_sizes(8) == [1, 2, 4, 8]  # duplicates dropped, never 0
    with pytest.raises(ConfigError, match="fractions"):
        matryoshka.prefix_sizes(64, [0.0, 1.0])


def test_batch_topk_keeps_k_times_batch_over_the_whole_batch():
    acts = torch.rand(8, 32)
    f, kept = matryoshka.batch_topk(acts, 3)
    assert (f != 0).sum().item() == 24 and kept.numel() == 24
    # the kept entries are exactly the 24 largest of the batch, wherever they are
    assert torch.equal(torch.sort(f[f != 0]).values, torch.sort(acts.flatten()).values[-24:])


def test_loss_is_the_sum_of_the_prefix_losses():
    sae = spec().build(d_in=D_IN, d_sae=D_SAE, knob=K)
    x = torch.randn(128, D_IN)
    torch.manual_seed(0)
    sae.initialize(x)
    sae.eval()  # no θ update
    loss, f, logs = sae.training_loss(x, 1.0)
    assert ((f != 0).sum() == K * 128).item()
    expected = 0.0
    for m in sae.prefix_sizes:
        masked = f.clone()
        masked[:, m:] = 0
        expected += (x - sae.decode(masked)).pow(2).sum(-1).mean()
    # no latent is dead yet, so AuxK is 0 and the loss is the summed prefix losses / Var(x)
    assert logs["auxk"] == 0
    assert loss.item() == pytest.approx((expected / sae.input_variance).item(), rel=1e-5)
    assert logs["mse"] == pytest.approx((x - sae.decode(f)).pow(2).sum(-1).mean().item(), rel=1e-5)


def test_gradient_reaches_each_prefix_from_its_own_loss():
    """Prefix j's reconstruction uses only latents < m_j: later decoder rows get no gradient
    from the first prefix's loss."""
    sae = spec().build(d_in=D_IN, d_sae=D_SAE, knob=K)
    x = torch.randn(64, D_IN)
    sae.initialize(x)
    f, _ = matryoshka.batch_topk(torch.relu(sae.pre_acts(x)), K)
    first = sae.prefix_reconstructions(f)[0]
    (x - first).pow(2).sum().backward()
    m_1 = sae.prefix_sizes[0]
    assert sae.W_dec.grad[m_1:].abs().max().item() == 0
    assert sae.W_dec.grad[:m_1].abs().max().item() > 0


def test_recipe_is_recorded_and_round_trips_as_uniform_jumprelu(trained, zipf_store, tmp_path):
    sae, log = trained["matryoshka"]
    assert log["l0"] == pytest.approx(K, abs=1e-6)  # k·B kept per batch: mean L0 is exactly k
    assert sae.architecture == "jumprelu" and torch.unique(sae.threshold).numel() == 1
    assert sae.threshold[0].item() > 0
    for field in ("prefix_sizes", "prefix_loss_reduction", "threshold_ema", "auxk_alpha", "k"):
        assert field in sae.cfg, field
    assert sae.cfg["prefix_sizes"] == [4, 8, 16, 32, 64]
    x = zipf_store.eval_acts
    with torch.no_grad():
        l0 = (sae.encode(x) != 0).float().sum(-1).mean().item()
    assert K / 2 <= l0 <= 2 * K  # the EMA threshold reproduces the training sparsity roughly
    directory = save_sae(sae, tmp_path / "sae", {"model_name": "synthetic"})
    saved = json.loads((directory / "cfg.json").read_text())
    assert saved["architecture"] == "jumprelu"
    assert saved["saebench"]["method"] == "matryoshka"
    assert saved["saebench"]["prefix_sizes"] == [4, 8, 16, 32, 64]
    loaded = load_sae(directory)
    assert type(loaded).__name__ == "JumpReLUSAE"  # loads without this plugin
    with torch.no_grad():
        assert torch.allclose(loaded.encode(x), sae.encode(x), atol=1e-5)
        assert torch.allclose(loaded(x), sae(x), atol=1e-5)
    # the prefix order survives the save: the first m_1 latents of the loaded SAE are prefix 1
    assert prefix_fvu(loaded, x, 4) == pytest.approx(prefix_fvu(sae, x, 4), abs=1e-5)


def test_first_prefix_reconstructs_on_its_own(trained, zipf_store):
    """Bussmann et al. 2025: Matryoshka's smallest dictionary reconstructs x without the rest.
    The first m_1 latents of a TopK SAE trained the same way (same k, budget, batches) are an
    arbitrary subset of its dictionary and explain far less."""
    x = zipf_store.eval_acts
    mat, _ = trained["matryoshka"]
    topk, _ = trained["topk"]
    m_1 = mat.cfg["prefix_sizes"][0]
    numbers = {
        "matryoshka_prefix1": prefix_fvu(mat, x, m_1),
        "topk_first_m1": prefix_fvu(topk, x, m_1),
        "topk_most_frequent_m1": prefix_fvu(by_frequency(topk, x), x, m_1),
        "matryoshka_full": prefix_fvu(mat, x, D_SAE),
        "topk_full": prefix_fvu(topk, x, D_SAE),
    }
    print("FVU", {name: round(value, 4) for name, value in numbers.items()})
    assert numbers["matryoshka_prefix1"] < 0.75 * numbers["topk_first_m1"], numbers
    # even TopK's best-ordered prefix (its m_1 most frequent latents) does worse: Matryoshka's
    # first latents are shaped to reconstruct together, not just the most frequent ones
    assert numbers["matryoshka_prefix1"] < 0.9 * numbers["topk_most_frequent_m1"], numbers
    # and the price is small: the full Matryoshka dictionary still reconstructs well
    assert numbers["matryoshka_full"] < 0.5, numbers
