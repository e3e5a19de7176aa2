"""SAELens-compatible save/load round trips; dictionary_learning's format; clear errors."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from saebench.architectures import GatedSAE, JumpReLUSAE, TopKSAE
from saebench.errors import ConfigError
from saebench.sae import SAE
from saebench.saved_format import load_sae, save_sae

METADATA = {
    "model_name": "toyworld",
    "hook_name": "blocks.1.hook_resid_pre",
    "context_size": 64,
    "prepend_bos": True,
}


def randomised(sae):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return sae


@pytest.mark.parametrize(
    "make",
    [
        lambda: SAE(6, 10),
        lambda: SAE(6, 10, apply_b_dec_to_input=False),
        lambda: GatedSAE(6, 10),
        lambda: TopKSAE(6, 10, k=3),
        lambda: JumpReLUSAE(6, 10),
    ],
)
def test_round_trip_preserves_outputs(tmp_path, make):
    sae = randomised(make())
    sae.cfg = {"method": "x", "knob": 1.0}
    loaded = load_sae(save_sae(sae, tmp_path / "sae", METADATA))
    x = torch.randn(32, 6)
    assert type(loaded) is type(sae)
    assert torch.allclose(loaded(x), sae(x), atol=1e-6)
    assert loaded.metadata == METADATA and loaded.cfg == sae.cfg


def test_cfg_json_has_the_saelens_fields(tmp_path):
    save_sae(randomised(TopKSAE(6, 10, k=3)), tmp_path / "sae", METADATA)
    cfg = json.loads((tmp_path / "sae" / "cfg.json").read_text())
    assert {
        "d_in": 6,
        "d_sae": 10,
        "architecture": "topk",
        "k": 3,
        "dtype": "float32",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "device": "cpu",
        "rescale_acts_by_decoder_norm": False,
    }.items() <= cfg.items()
    assert cfg["metadata"] == METADATA
    weights = load_file(str(tmp_path / "sae" / "sae_weights.safetensors"))
    assert weights["W_enc"].shape == (6, 10) and weights["W_dec"].shape == (10, 6)


def test_gated_uses_saelens_parameter_names(tmp_path):
    save_sae(randomised(GatedSAE(6, 10)), tmp_path / "sae")
    names = set(load_file(str(tmp_path / "sae" / "sae_weights.safetensors")))
    assert names == {"W_enc", "b_gate", "r_mag", "b_mag", "W_dec", "b_dec"}


def test_save_overwrites_atomically_and_leaves_no_temp_dirs(tmp_path):
    save_sae(randomised(SAE(6, 10)), tmp_path / "sae")
    save_sae(randomised(SAE(6, 12)), tmp_path / "sae")
    assert load_sae(tmp_path / "sae").d_sae == 12
    assert [p.name for p in tmp_path.iterdir()] == ["sae"]


def test_missing_directory_names_the_expected_files(tmp_path):
    with pytest.raises(ConfigError, match="sae_weights.safetensors"):
        load_sae(tmp_path)


def test_unknown_architecture_and_bad_shapes_are_clear_errors(tmp_path):
    save_sae(randomised(SAE(6, 10)), tmp_path / "sae")
    cfg_path = tmp_path / "sae" / "cfg.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "architecture": "matryoshka"}))
    with pytest.raises(ConfigError, match="supported: standard"):
        load_sae(tmp_path / "sae")
    cfg_path.write_text(json.dumps({**cfg, "d_sae": 11}))
    with pytest.raises(ConfigError, match="shape"):
        load_sae(tmp_path / "sae")
    cfg_path.write_text(json.dumps({**cfg, "normalize_activations": "expected_average_only_in"}))
    with pytest.raises(ConfigError, match="scaling_factor=s"):
        load_sae(tmp_path / "sae")


def test_loads_a_saelens_file_written_elsewhere(tmp_path):
    """A hand-written SAELens directory (as SAELens itself writes it) loads and encodes."""
    torch.manual_seed(0)
    weights = {
        "W_enc": torch.randn(4, 8),
        "b_enc": torch.randn(8),
        "W_dec": torch.randn(8, 4),
        "b_dec": torch.randn(4),
    }
    (tmp_path / "sae").mkdir()
    save_file(weights, str(tmp_path / "sae" / "sae_weights.safetensors"))
    (tmp_path / "sae" / "cfg.json").write_text(
        json.dumps(
            {
                "d_in": 4,
                "d_sae": 8,
                "architecture": "standard",
                "apply_b_dec_to_input": True,
                "normalize_activations": "none",
                "dtype": "float32",
            }
        )
    )
    sae = load_sae(tmp_path / "sae")
    x = torch.randn(3, 4)
    f = torch.relu((x - weights["b_dec"]) @ weights["W_enc"] + weights["b_enc"])
    assert torch.allclose(sae(x), f @ weights["W_dec"] + weights["b_dec"], atol=1e-6)


def dictionary_learning_dir(tmp_path, state, trainer):
    (tmp_path / "dl").mkdir()
    torch.save(state, tmp_path / "dl" / "ae.pt")
    (tmp_path / "dl" / "config.json").write_text(json.dumps({"trainer": trainer}))
    return tmp_path / "dl"


def test_dictionary_learning_standard_is_transposed(tmp_path):
    torch.manual_seed(0)
    encoder, decoder = torch.nn.Linear(4, 8), torch.nn.Linear(8, 4, bias=False)
    bias = torch.randn(4)
    state = {
        "encoder.weight": encoder.weight.data,
        "encoder.bias": encoder.bias.data,
        "decoder.weight": decoder.weight.data,
        "bias": bias,
    }
    sae = load_sae(dictionary_learning_dir(tmp_path, state, {"dict_class": "AutoEncoder"}))
    x = torch.randn(5, 4)
    # dictionary_learning's AutoEncoder: f = ReLU(encoder(x − bias)), x̂ = decoder(f) + bias.
    with torch.no_grad():
        expected = decoder(torch.relu(encoder(x - bias))) + bias
    assert torch.allclose(sae(x), expected, atol=1e-5)


def test_dictionary_learning_topk_and_batchtopk(tmp_path):
    torch.manual_seed(0)
    state = {
        "encoder.weight": torch.randn(8, 4),
        "encoder.bias": torch.randn(8),
        "decoder.weight": torch.randn(4, 8),
        "b_dec": torch.randn(4),
        "k": torch.tensor(2),
    }
    topk = load_sae(dictionary_learning_dir(tmp_path, state, {"k": 2}))
    assert topk.architecture == "topk" and topk.k == 2
    state["threshold"] = torch.tensor(0.3)
    (tmp_path / "dl" / "ae.pt").unlink()
    torch.save(state, tmp_path / "dl" / "ae.pt")
    (tmp_path / "dl" / "config.json").write_text(
        json.dumps({"trainer": {"dict_class": "BatchTopKSAE", "k": 2}})
    )
    batchtopk = load_sae(tmp_path / "dl")
    assert batchtopk.architecture == "jumprelu"
    assert torch.allclose(batchtopk.threshold, torch.full((8,), 0.3))
