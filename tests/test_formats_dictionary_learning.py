"""dictionary_learning's ae.pt + config.json, for every class it ships, load to its outputs.

The reference is each class's encode/decode from dictionary_learning (dictionary.py,
trainers/top_k.py, batch_top_k.py, matryoshka_batch_top_k.py) written out with
torch.nn.functional.linear on the state_dict, as utils.load_dictionary builds it (AutoEncoder
via from_pretrained(normalize_decoder=True)). The files are laid out as the library writes
them: state_dict keys, nn.Linear [out, in] weights, int32 k and float32 threshold buffers, and
config.json {"trainer": trainer.config, "buffer": buffer.config}. Model-free, a few ms each.
"""

import json

import pytest
import torch
import torch.nn.functional as F

from saebench.architectures import GatedSAE, JumpReLUSAE, TopKSAE
from saebench.errors import ConfigError
from saebench.sae import SAE
from saebench.saved_format import load_sae, write_sae

D, M = 6, 16
TRAINER_CLASS = {
    "AutoEncoder": "StandardTrainer",
    "AutoEncoderNew": "StandardTrainerNew",
    "GatedAutoEncoder": "GatedSAETrainer",
    "AutoEncoderTopK": "TopKTrainer",
    "BatchTopKSAE": "BatchTopKTrainer",
    "MatryoshkaBatchTopKSAE": "MatryoshkaBatchTopKTrainer",
    "JumpReluAutoEncoder": "JumpReluTrainer",
}


def state_of(dict_class, seed=0, decoder_scale=0.7, threshold=0.3, k=3):
    """A state_dict with the keys, shapes and dtypes dict_class's module has."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    if dict_class == "AutoEncoder":
        return {
            "bias": r(D, scale=0.3),
            "encoder.weight": r(M, D),
            "encoder.bias": r(M, scale=0.5) - 0.3,
            "decoder.weight": r(D, M, scale=decoder_scale),
        }
    if dict_class == "AutoEncoderNew":
        return {
            "encoder.weight": r(M, D),
            "encoder.bias": r(M, scale=0.5) - 0.3,
            "decoder.weight": r(D, M, scale=decoder_scale),
            "decoder.bias": r(D, scale=0.3),
        }
    if dict_class == "GatedAutoEncoder":
        return {
            "decoder_bias": r(D, scale=0.3),
            "encoder.weight": r(M, D),
            "r_mag": r(M, scale=0.3),
            "gate_bias": r(M, scale=0.5),
            "mag_bias": r(M, scale=0.5),
            "decoder.weight": r(D, M, scale=decoder_scale),
        }
    if dict_class in ("AutoEncoderTopK", "BatchTopKSAE"):
        return {
            "k": torch.tensor(k, dtype=torch.int),
            "threshold": torch.tensor(threshold),
            "decoder.weight": r(D, M, scale=decoder_scale),
            "encoder.weight": r(M, D),
            "encoder.bias": r(M, scale=0.5) - 0.3,
            "b_dec": r(D, scale=0.3),
        }
    if dict_class == "MatryoshkaBatchTopKSAE":
        return {
            "k": torch.tensor(k, dtype=torch.int),
            "threshold": torch.tensor(threshold),
            "group_sizes": torch.tensor([4, 4, 8]),
            "W_enc": r(D, M),
            "b_enc": r(M, scale=0.5) - 0.3,
            "W_dec": r(M, D, scale=decoder_scale),
            "b_dec": r(D, scale=0.3),
        }
    if dict_class == "JumpReluAutoEncoder":
        return {
            "W_enc": r(D, M),
            "b_enc": r(M, scale=0.5),
            "W_dec": r(M, D, scale=decoder_scale),
            "b_dec": r(D, scale=0.3),
            "threshold": torch.rand(M, generator=g) * 1.5 - 0.3,
        }
    raise AssertionError(dict_class)


def trainer_config(dict_class, **extra):
    config = {
        "trainer_class": TRAINER_CLASS[dict_class],
        "dict_class": dict_class,
        "lr": 1e-4,
        "steps": 1000,
        "seed": 0,
        "activation_dim": D,
        "dict_size": M,
        "device": "cuda:0",
        "layer": 3,
        "lm_name": "EleutherAI/pythia-70m-deduped",
        "wandb_name": "x",
        "submodule_name": "resid_post_layer_3",
    }
    if dict_class in ("AutoEncoderTopK", "BatchTopKSAE", "MatryoshkaBatchTopKSAE"):
        config["k"] = 3
    if dict_class == "MatryoshkaBatchTopKSAE":
        config.update(group_fractions=[0.25, 0.25, 0.5], group_sizes=[4, 4, 8])
    config.update(extra)
    return config


def write_dl(path, state, trainer=None, buffer=None):
    path.mkdir(parents=True, exist_ok=True)
    torch.save(state, path / "ae.pt")
    if trainer is None and (path / "config.json").exists():
        (path / "config.json").unlink()
    if trainer is not None:
        config = {"trainer": trainer}
        config["buffer"] = buffer or {
            "d_submodule": D,
            "io": "out",
            "n_ctxs": 3000,
            "ctx_len": 128,
            "refresh_batch_size": 512,
            "out_batch_size": 8192,
            "device": "cuda:0",
        }
        (path / "config.json").write_text(json.dumps(config, indent=4))
    return path


def dl_reference(dict_class, state, x, k=None):
    """(f, x̂) of dictionary_learning's default encode/decode after load_dictionary."""
    s = {n: v.double() if v.is_floating_point() else v for n, v in state.items()}
    x = x.double()
    if dict_class == "AutoEncoder":
        enc, enc_b, dec = s["encoder.weight"], s["encoder.bias"], s["decoder.weight"]
        norms = dec.norm(dim=0)
        if not torch.allclose(norms, torch.ones_like(norms)):  # from_pretrained normalize_decoder
            dec, enc, enc_b = dec / norms, enc * norms[:, None], enc_b * norms
        f = torch.relu(F.linear(x - s["bias"], enc, enc_b))
        return f, F.linear(f, dec) + s["bias"]
    if dict_class == "AutoEncoderNew":
        f = torch.relu(F.linear(x, s["encoder.weight"], s["encoder.bias"]))
        return f, F.linear(f, s["decoder.weight"], s["decoder.bias"])
    if dict_class == "GatedAutoEncoder":
        x_enc = F.linear(x - s["decoder_bias"], s["encoder.weight"])
        f_gate = (x_enc + s["gate_bias"] > 0).double()
        f = f_gate * torch.relu(s["r_mag"].exp() * x_enc + s["mag_bias"])
        return f, F.linear(f, s["decoder.weight"]) + s["decoder_bias"]
    if dict_class in ("AutoEncoderTopK", "BatchTopKSAE"):
        post = torch.relu(F.linear(x - s["b_dec"], s["encoder.weight"], s["encoder.bias"]))
        if dict_class == "AutoEncoderTopK":
            top = post.topk(k if k is not None else int(s["k"]), sorted=False, dim=-1)
            f = torch.zeros_like(post).scatter_(-1, top.indices, top.values)
        else:
            f = post * (post > s["threshold"])
        return f, F.linear(f, s["decoder.weight"]) + s["b_dec"]
    if dict_class == "MatryoshkaBatchTopKSAE":
        post = torch.relu((x - s["b_dec"]) @ s["W_enc"] + s["b_enc"])
        f = post * (post > s["threshold"])
        f[:, int(s["group_sizes"].sum()) :] = 0
        return f, f @ s["W_dec"] + s["b_dec"]
    if dict_class == "JumpReluAutoEncoder":
        pre = x @ s["W_enc"] + s["b_enc"]  # apply_b_dec_to_input is False after loading
        f = torch.relu(pre * (pre > s["threshold"]))
        return f, f @ s["W_dec"] + s["b_dec"]
    raise AssertionError(dict_class)


def inputs(n=64, seed=1):
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed)) * 1.5


def assert_matches(sae, dict_class, state, x, k=None):
    f_ref, x_hat_ref = dl_reference(dict_class, state, x, k)
    with torch.no_grad():
        f, x_hat = sae.encode(x), sae(x)
    assert torch.allclose(f.double(), f_ref, atol=1e-5), (f.double() - f_ref).abs().max()
    assert torch.allclose(x_hat.double(), x_hat_ref, atol=1e-5)
    assert (f > 0).float().mean() > 0.05


@pytest.mark.parametrize("dict_class", list(TRAINER_CLASS))
def test_every_class_loads_to_dictionary_learning_outputs(tmp_path, dict_class):
    state = state_of(dict_class)
    sae = load_sae(write_dl(tmp_path / "dl", state, trainer_config(dict_class)))
    assert (sae.d_in, sae.d_sae) == (D, M)
    assert_matches(sae, dict_class, state, inputs())
    assert sae.metadata["model_name"] == "EleutherAI/pythia-70m-deduped"
    assert sae.metadata["hook_name"] == "blocks.3.hook_resid_post"
    assert sae.metadata["context_size"] == 128
    assert sae.cfg["dict_class"] == dict_class
    json.dumps(sae.cfg)


@pytest.mark.parametrize(
    "dict_class, architecture",
    [
        ("AutoEncoderTopK", "topk"),
        ("BatchTopKSAE", "jumprelu"),
        ("MatryoshkaBatchTopKSAE", "jumprelu"),
        ("JumpReluAutoEncoder", "jumprelu"),
        ("GatedAutoEncoder", "gated"),
        ("AutoEncoder", "standard"),
    ],
)
def test_classes_map_to_saebench_architectures(tmp_path, dict_class, architecture):
    sae = load_sae(write_dl(tmp_path / "dl", state_of(dict_class), trainer_config(dict_class)))
    assert sae.architecture == architecture
    if dict_class == "AutoEncoderTopK":
        assert sae.k == 3
    if dict_class == "MatryoshkaBatchTopKSAE":
        assert sae.cfg["group_sizes"] == [4, 4, 8]


def test_unit_norm_autoencoder_is_not_rescaled(tmp_path):
    state = state_of("AutoEncoder")
    state["decoder.weight"] = state["decoder.weight"] / state["decoder.weight"].norm(dim=0)
    sae = load_sae(write_dl(tmp_path / "dl", state, trainer_config("AutoEncoder")))
    assert "folded" not in sae.cfg
    assert_matches(sae, "AutoEncoder", state, inputs())


@pytest.mark.parametrize("threshold", [-1.0, 0.0, 0.4])
def test_batchtopk_threshold_including_unlearned(tmp_path, threshold):
    state = state_of("BatchTopKSAE", threshold=threshold)
    sae = load_sae(write_dl(tmp_path / "dl", state, trainer_config("BatchTopKSAE")))
    assert_matches(sae, "BatchTopKSAE", state, inputs())
    assert torch.allclose(sae.threshold, torch.full((M,), max(threshold, 0.0)))


def test_bfloat16_weights_load_as_float32(tmp_path):
    state = {
        k: v.to(torch.bfloat16) if v.is_floating_point() else v
        for k, v in state_of("AutoEncoderTopK").items()
    }
    sae = load_sae(write_dl(tmp_path / "dl", state, trainer_config("AutoEncoderTopK")))
    assert sae.W_enc.dtype == torch.float32
    assert_matches(sae, "AutoEncoderTopK", state, inputs())


def test_without_config_json_the_class_is_read_from_the_keys(tmp_path):
    for dict_class in (
        "AutoEncoder",
        "GatedAutoEncoder",
        "JumpReluAutoEncoder",
        "MatryoshkaBatchTopKSAE",
        "AutoEncoderNew",
    ):
        state = state_of(dict_class)
        sae = load_sae(write_dl(tmp_path / dict_class, state))
        assert_matches(sae, dict_class, state, inputs())
        assert sae.metadata == {}
    topk = state_of("AutoEncoderTopK")
    with pytest.raises(ConfigError, match="AutoEncoderTopK .*BatchTopKSAE"):
        load_sae(write_dl(tmp_path / "topk", topk))
    topk.pop("threshold")  # older AutoEncoderTopK files: no threshold buffer
    assert load_sae(write_dl(tmp_path / "old-topk", topk)).architecture == "topk"


def test_config_k_wins_as_load_dictionary_passes_it(tmp_path):
    state = state_of("AutoEncoderTopK")
    state.pop("k")
    sae = load_sae(write_dl(tmp_path / "dl", state, trainer_config("AutoEncoderTopK", k=5)))
    assert sae.k == 5
    assert_matches(sae, "AutoEncoderTopK", state, inputs(), k=5)
    state["k"] = torch.tensor(3, dtype=torch.int)
    with pytest.raises(ConfigError, match=r"trainer.k: is 5 but ae.pt holds k=3"):
        load_sae(write_dl(tmp_path / "dl", state, trainer_config("AutoEncoderTopK", k=5)))


def test_mid_training_backup_is_read_with_its_norm_factor(tmp_path):
    """training.py's backup: {"step", "ae", "optimizer", "config", "norm_factor"}, saved while
    the biases are in normalised units; the final save applies scale_biases(norm_factor)."""
    state = state_of("JumpReluAutoEncoder")
    state["threshold"] = state["threshold"].abs()
    norm = 2.5
    backup = {
        "step": 10,
        "ae": state,
        "optimizer": {},
        "config": trainer_config("JumpReluAutoEncoder"),
        "norm_factor": norm,
    }
    sae = load_sae(write_dl(tmp_path / "dl", backup))
    final = dict(state)
    for name in ("b_enc", "b_dec", "threshold"):  # JumpReluAutoEncoder.scale_biases
        final[name] = state[name] * norm
    assert_matches(sae, "JumpReluAutoEncoder", final, inputs())


@pytest.mark.parametrize(
    "submodule, layer, hook",
    [
        ("resid_post_layer_5", 5, "blocks.5.hook_resid_post"),
        ("blocks.2.hook_mlp_out", 2, "blocks.2.hook_mlp_out"),
        (None, 4, "blocks.4.hook_resid_post"),
        ("gpt_neox.layers.4.attention", 4, None),
    ],
)
def test_hook_names_from_config(tmp_path, submodule, layer, hook):
    config = trainer_config("AutoEncoder", submodule_name=submodule, layer=layer)
    sae = load_sae(write_dl(tmp_path / "dl", state_of("AutoEncoder"), config))
    assert sae.metadata.get("hook_name") == hook
    assert sae.metadata["layer"] == layer


def test_bad_directories_name_file_field_and_fix(tmp_path):
    path = tmp_path / "dl"

    def fails(state, trainer, match):
        write_dl(path, state, trainer)
        with pytest.raises(ConfigError, match=match) as error:
            load_sae(path)
        assert "Fix:" in str(error.value)

    good = state_of("GatedAutoEncoder")
    fails(
        {k: v for k, v in good.items() if k != "mag_bias"},
        trainer_config("GatedAutoEncoder"),
        r"ae.pt: mag_bias: missing",
    )
    fails(
        {**good, "decoder.weight": torch.zeros(D, M + 1)},
        trainer_config("GatedAutoEncoder"),
        r"ae.pt: decoder.weight: has shape \(6, 17\), expected \(6, 16\)",
    )
    fails(
        good,
        {**trainer_config("GatedAutoEncoder"), "dict_class": "SparseCoder"},
        r"config.json: trainer.dict_class: 'SparseCoder' is not",
    )
    fails(
        good,
        trainer_config("GatedAutoEncoder", dict_size=32),
        r"config.json: trainer.dict_size: is 32 but ae.pt implies 16",
    )
    fails({"something": torch.zeros(3)}, None, "no dictionary_learning class")
    bad_groups = {**state_of("MatryoshkaBatchTopKSAE"), "group_sizes": torch.tensor([4, 4])}
    fails(bad_groups, trainer_config("MatryoshkaBatchTopKSAE", group_sizes=[4, 4]), "group_sizes")
    (path / "ae.pt").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="ae.pt: cannot be read by torch.load"):
        load_sae(path)
    (path / "ae.pt").unlink()
    with pytest.raises(ConfigError, match="config.json has no ae.pt beside it"):
        load_sae(path)


# --------------------------------------------------------------------------- writing
def randomised(sae, seed=0, unit_decoder=False):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            if name == "threshold":
                p.abs_()
        if unit_decoder:
            sae.W_dec.div_(sae.W_dec.norm(dim=1, keepdim=True))
    sae.cfg = {"method": "test", "knob": 1.0}
    return sae


@pytest.mark.parametrize(
    "make, dict_class",
    [
        (lambda: SAE(D, M), "AutoEncoder"),
        (lambda: SAE(D, M, apply_b_dec_to_input=False), "AutoEncoderNew"),
        (lambda: GatedSAE(D, M), "GatedAutoEncoder"),
        (lambda: GatedSAE(D, M, apply_b_dec_to_input=False), "GatedAutoEncoder"),
        (lambda: TopKSAE(D, M, k=3), "AutoEncoderTopK"),
        (lambda: TopKSAE(D, M, k=3, apply_b_dec_to_input=False), "AutoEncoderTopK"),
        (lambda: JumpReLUSAE(D, M), "JumpReluAutoEncoder"),
    ],
)
@pytest.mark.parametrize("unit_decoder", [False, True])
def test_export_is_what_dictionary_learning_reads_and_reloads(
    tmp_path, make, dict_class, unit_decoder
):
    sae = randomised(make(), unit_decoder=unit_decoder)
    metadata = {
        "model_name": "toyworld",
        "hook_name": "blocks.1.hook_resid_pre",
        "context_size": 64,
    }
    path = write_sae(sae, tmp_path / "out", "dictionary_learning", metadata)
    config = json.loads((path / "config.json").read_text())
    assert config["trainer"]["dict_class"] == dict_class
    # hook_resid_pre of block 1 is the output of layer 0 (dictionary_learning's convention);
    # submodule_name keeps the exact TransformerLens hook.
    assert config["trainer"]["layer"] == 0 and config["buffer"]["ctx_len"] == 64
    assert config["trainer"]["submodule_name"] == "blocks.1.hook_resid_pre"
    state = torch.load(path / "ae.pt", weights_only=True)
    x = inputs()
    f_ref, x_hat_ref = dl_reference(dict_class, state, x)
    with torch.no_grad():
        f, x_hat = sae.encode(x).double(), sae(x).double()
    assert torch.allclose(x_hat, x_hat_ref, atol=1e-5)
    if dict_class == "AutoEncoder":  # from_pretrained normalises: latents × ‖W_dec row‖
        f = f * sae.W_dec.norm(dim=1).double()
    assert torch.allclose(f, f_ref, atol=1e-5)
    loaded = load_sae(path)
    assert loaded.architecture == sae.architecture
    assert loaded.metadata["hook_name"] == "blocks.1.hook_resid_pre"
    with torch.no_grad():
        assert torch.allclose(loaded(x).double(), x_hat_ref, atol=1e-5)
        assert torch.allclose(loaded.encode(x).double(), f_ref, atol=1e-5)
