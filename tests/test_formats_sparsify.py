"""EleutherAI sparsify's per-hookpoint folders (cfg.json + sae.safetensors) load to its outputs.

The reference is SparseCoder.encode/decode (sparsify/sparse_coder.py, fused_encoder.py,
utils.eager_decode) written out in torch: ReLU(encoder(x − b_dec)), its top-k, and
embedding_bag over W_dec plus b_dec. Files are laid out as save_to_disk writes them:
safetensors.torch.save_model of the module (encoder.weight [m, d], encoder.bias, W_dec [m, d],
b_dec) and cfg.json = SparseCoderConfig.to_dict() + d_in; config.json of the run above.
"""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from saebench.errors import ConfigError
from saebench.formats.sparsify import transformer_lens_hook
from saebench.saved_format import load_sae

D, M, K = 6, 24, 4


def sparse_coder_cfg(**fields):
    cfg = {
        "activation": "topk",
        "expansion_factor": 4,
        "normalize_decoder": True,
        "num_latents": 0,
        "k": K,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": D,
    }
    cfg.update(fields)
    return cfg


def sparse_coder_state(seed=0, m=M, d=D):
    g = torch.Generator().manual_seed(seed)
    return {
        "encoder.weight": torch.randn(m, d, generator=g),
        "encoder.bias": torch.randn(m, generator=g) * 0.5 - 0.2,
        "W_dec": torch.randn(m, d, generator=g) * 0.5,
        "b_dec": torch.randn(d, generator=g) * 0.3,
    }


def write_sparsify(run, hookpoint, cfg, state, dtype=torch.float32, run_config=None):
    folder = run / hookpoint
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(dtype) for k, v in state.items()}, str(folder / "sae.safetensors"))
    (folder / "cfg.json").write_text(json.dumps(cfg))
    if run_config is not None:
        (run / "config.json").write_text(json.dumps(run_config))
    return folder


def sparsify_reference(state, x, k=K):
    s = {n: v.double() for n, v in state.items()}
    pre = F.relu(F.linear(x.double() - s["b_dec"], s["encoder.weight"], s["encoder.bias"]))
    top_acts, top_indices = torch.topk(pre, k, dim=-1, sorted=False)
    x_hat = F.embedding_bag(top_indices, s["W_dec"], per_sample_weights=top_acts, mode="sum")
    dense = torch.zeros_like(pre).scatter(-1, top_indices, top_acts)
    return dense, x_hat + s["b_dec"]


def inputs(n=64, seed=1):
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed)) * 1.5


def assert_matches(sae, state, x):
    f_ref, x_hat_ref = sparsify_reference(state, x)
    with torch.no_grad():
        assert torch.allclose(sae.encode(x).double(), f_ref, atol=1e-5)
        assert torch.allclose(sae(x).double(), x_hat_ref, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_loads_to_sparse_coder_outputs(tmp_path, dtype):
    state = sparse_coder_state()
    run_config = {
        "model": "EleutherAI/pythia-160m",
        "ctx_len": 2048,
        "hookpoints": ["layers.3"],
        "sae": sparse_coder_cfg(),
    }
    folder = write_sparsify(
        tmp_path / "run", "layers.3", sparse_coder_cfg(), state, dtype, run_config
    )
    sae = load_sae(folder)
    assert sae.architecture == "topk" and sae.k == K and sae.d_sae == M
    assert_matches(sae, {k: v.to(dtype) for k, v in state.items()}, inputs())
    assert sae.metadata == {
        "sparsify_hookpoint": "layers.3",
        "hook_name": "blocks.3.hook_resid_post",
        "model_name": "EleutherAI/pythia-160m",
        "context_size": 2048,
    }
    json.dumps(sae.cfg)


def test_fewer_positive_latents_than_k_match_too(tmp_path):
    state = sparse_coder_state()
    state["encoder.bias"] = state["encoder.bias"] - 4.0  # most pre-activations negative
    sae = load_sae(write_sparsify(tmp_path, "layers.0", sparse_coder_cfg(), state))
    assert_matches(sae, state, inputs())


def test_num_latents_overrides_expansion_factor_and_zero_skip_is_fine(tmp_path):
    state = sparse_coder_state(m=10)
    state["W_skip"] = torch.zeros(D, D)
    cfg = sparse_coder_cfg(num_latents=10, skip_connection=True)
    sae = load_sae(write_sparsify(tmp_path, "layers.1.mlp", cfg, state))
    assert sae.d_sae == 10 and sae.metadata["hook_name"] == "blocks.1.hook_mlp_out"


@pytest.mark.parametrize(
    "hookpoint, hook",
    [
        ("layers.3", "blocks.3.hook_resid_post"),
        ("h.0", "blocks.0.hook_resid_post"),
        ("gpt_neox.layers.11", "blocks.11.hook_resid_post"),
        ("model.layers.7.mlp", "blocks.7.hook_mlp_out"),
        ("layers.2.self_attn", "blocks.2.hook_attn_out"),
        ("h.5.attn", "blocks.5.hook_attn_out"),
        ("layers.4.attention", "blocks.4.hook_attn_out"),
        ("h.1.mlp.act", "blocks.1.mlp.hook_post"),
        ("embed_tokens", "hook_embed"),
        ("embed_in", "hook_embed"),
        ("layers.3.input_layernorm", None),
        ("lm_head", None),
    ],
)
def test_hookpoints_map_to_transformer_lens_hooks(hookpoint, hook):
    assert transformer_lens_hook(hookpoint) == hook


def test_unmapped_hookpoint_keeps_the_raw_name(tmp_path):
    sae = load_sae(
        write_sparsify(
            tmp_path,
            "layers.3.post_feedforward_layernorm",
            sparse_coder_cfg(),
            sparse_coder_state(),
        )
    )
    assert "hook_name" not in sae.metadata
    assert sae.metadata["sparsify_hookpoint"] == "layers.3.post_feedforward_layernorm"


@pytest.mark.parametrize(
    "fields, state_change, match",
    [
        ({"activation": "groupmax"}, None, "cfg.json: activation: is 'groupmax'"),
        ({"transcode": True}, None, "cfg.json: transcode: is true"),
        ({"signed": True}, None, "cfg.json: signed: is true"),
        (
            {"skip_connection": True},
            {"W_skip": torch.eye(D)},
            "sae.safetensors: W_skip: is a non-zero",
        ),
        ({"skip_connection": True}, {}, "sae.safetensors: W_skip: missing"),
        ({"d_in": None}, None, "cfg.json: d_in: missing"),
        ({"k": 100}, None, r"cfg.json: k: is 100, must be in 1..24"),
        ({"num_latents": 30}, None, r"encoder.weight: has shape \(24, 6\), expected \(30, 6\)"),
        ({}, {"W_dec": None}, "sae.safetensors: W_dec: missing"),
    ],
)
def test_what_cannot_be_represented_is_refused(tmp_path, fields, state_change, match):
    cfg = sparse_coder_cfg(**fields)
    if cfg["d_in"] is None:
        del cfg["d_in"]
    state = sparse_coder_state()
    for name, value in (state_change or {}).items():
        if value is None:
            del state[name]
        else:
            state[name] = value
    with pytest.raises(ConfigError, match=match) as error:
        load_sae(write_sparsify(tmp_path, "layers.0", cfg, state))
    assert "Fix:" in str(error.value)


def test_a_sparsify_run_directory_says_to_pick_a_hookpoint(tmp_path):
    for hookpoint in ("layers.0", "layers.1"):
        write_sparsify(tmp_path / "run", hookpoint, sparse_coder_cfg(), sparse_coder_state())
    (tmp_path / "run" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="holds 2 SAEs in subfolders"):
        load_sae(tmp_path / "run")
