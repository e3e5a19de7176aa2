"""SAELens directories, written as SAELens writes them, load to SAELens's own outputs.

The reference is SAELens 6's inference path written out from its source (sae_lens/saes/*.py,
loading/pretrained_sae_loaders.py): cast to cfg.json's dtype, fold the norm scaling factor as
fold_activation_norm_scaling_factor does, then encode/decode per architecture. It never calls
saebench's classes. Also: exported SAEs reload to the same outputs, and bad directories fail
naming the file, the field and the fix. Model-free, CPU, a few ms each.
"""

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from saebench.architectures import GatedSAE, JumpReLUSAE, TopKSAE
from saebench.errors import ConfigError
from saebench.formats import hub
from saebench.sae import SAE
from saebench.saved_format import estimate_scaling_factor, load_sae, save_sae, write_sae

D_IN, D_SAE = 6, 16
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
METADATA6 = {
    "sae_lens_version": "6.18.0",
    "sae_lens_training_version": "6.18.0",
    "model_name": "gpt2",
    "hook_name": "blocks.3.hook_resid_pre",
    "hook_head_index": None,
    "context_size": 128,
    "prepend_bos": True,
    "seqpos_slice": [None],
    "model_from_pretrained_kwargs": {},
    "dataset_path": "monology/pile-uncopyrighted",
}


def random_state(architecture, d_in=D_IN, d_sae=D_SAE, seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {
        "W_enc": torch.randn(d_in, d_sae, generator=g),
        "W_dec": torch.randn(d_sae, d_in, generator=g) * 0.7,
        "b_dec": torch.randn(d_in, generator=g) * 0.3,
    }
    if architecture == "gated":
        state["b_gate"] = torch.randn(d_sae, generator=g) * 0.5
        state["r_mag"] = torch.randn(d_sae, generator=g) * 0.3
        state["b_mag"] = torch.randn(d_sae, generator=g) * 0.5
    else:
        state["b_enc"] = torch.randn(d_sae, generator=g) * 0.5 - 0.3
    if architecture == "jumprelu":
        state["threshold"] = torch.rand(d_sae, generator=g) * 2.0 - 0.8  # some below 0
    return state


def saelens6_cfg(architecture, d_in=D_IN, d_sae=D_SAE, **fields):
    """cfg.json as SAELens 6's SAEConfig.to_dict() writes it."""
    cfg = {
        "d_in": d_in,
        "d_sae": d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": dict(METADATA6),
        "architecture": architecture,
    }
    if architecture == "topk":
        cfg.update(k=4, rescale_acts_by_decoder_norm=False)
    cfg.update(fields)
    return cfg


def write_dir(path, cfg, state, dtype=None, extra_files=None):
    path.mkdir(parents=True, exist_ok=True)
    dtype = dtype or DTYPES.get(cfg.get("dtype", "float32"), torch.float32)
    save_file(
        {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()},
        str(path / "sae_weights.safetensors"),
    )
    (path / "cfg.json").write_text(json.dumps(cfg))
    for name, content in (extra_files or {}).items():
        (path / name).write_text(json.dumps(content))
    return path


def saelens_reference(cfg, state, x, scaling_factor=None):
    """(feature_acts, sae_out) as SAELens 6 computes them for raw inputs x (float64)."""
    dtype = DTYPES[cfg.get("dtype", "float32")]
    s = {k: v.to(dtype).double() for k, v in state.items()}
    arch = cfg["architecture"]
    if arch in ("batchtopk", "matryoshka_batchtopk"):  # process_state_dict_for_saving_inference
        if cfg.get("rescale_acts_by_decoder_norm", True):
            n = s["W_dec"].norm(dim=-1)
            s["b_enc"], s["W_enc"], s["W_dec"] = (
                s["b_enc"] * n,
                s["W_enc"] * n,
                s["W_dec"] / n[:, None],
            )
        s["threshold"] = torch.ones_like(s["b_enc"]) * s.pop("topk_threshold")
        arch = "jumprelu"
    if scaling_factor is not None:  # fold_activation_norm_scaling_factor
        s["W_enc"], s["W_dec"], s["b_dec"] = (
            s["W_enc"] * scaling_factor,
            s["W_dec"] / scaling_factor,
            s["b_dec"] / scaling_factor,
        )
    x = x.double()
    sae_in = x - s["b_dec"] * cfg.get("apply_b_dec_to_input", True)
    rescale = arch == "topk" and cfg.get("rescale_acts_by_decoder_norm", False)
    if arch == "gated":
        active = (sae_in @ s["W_enc"] + s["b_gate"] > 0).double()
        f = active * torch.relu(sae_in @ (s["W_enc"] * s["r_mag"].exp()) + s["b_mag"])
    else:
        hidden = sae_in @ s["W_enc"] + s["b_enc"]
        if arch == "standard":
            f = torch.relu(hidden)
        elif arch == "jumprelu":
            f = torch.relu(hidden) * (hidden > s["threshold"]).double()
        else:
            if rescale:
                hidden = hidden * s["W_dec"].norm(dim=-1)
            values, indices = torch.topk(hidden, k=cfg["k"], dim=-1, sorted=False)
            f = torch.zeros_like(hidden).scatter(-1, indices, values.relu())
    acts = f / s["W_dec"].norm(dim=-1) if rescale else f
    scale = s.get("scaling_factor")  # SAELens < 6: apply_finetuning_scaling_factor
    if scale is not None and cfg.get("finetuning_scaling_factor"):
        acts = acts * scale
    return f, acts @ s["W_dec"] + s["b_dec"]


def assert_matches(sae, cfg, state, x, scaling_factor=None):
    f_ref, x_hat_ref = saelens_reference(cfg, state, x, scaling_factor)
    with torch.no_grad():
        f, x_hat = sae.encode(x), sae(x)
    assert torch.allclose(f.double(), f_ref, atol=1e-5), (f.double() - f_ref).abs().max()
    assert torch.allclose(x_hat.double(), x_hat_ref, atol=1e-5)
    assert (f > 0).float().mean() > 0.05, "the test input should fire some latents"


def inputs(n=64, d=D_IN, seed=1):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) * 1.5


CASES = {
    "standard": ("standard", {}),
    "standard_no_b_dec": ("standard", {"apply_b_dec_to_input": False}),
    "gated": ("gated", {}),
    "topk": ("topk", {}),
    "topk_rescaled": ("topk", {"rescale_acts_by_decoder_norm": True}),
    "jumprelu": ("jumprelu", {}),
}


@pytest.mark.parametrize("case", CASES)
def test_saelens6_directories_load_to_saelens_outputs(tmp_path, case):
    arch, fields = CASES[case]
    cfg, state = saelens6_cfg(arch, **fields), random_state(arch)
    sae = load_sae(write_dir(tmp_path / "sae", cfg, state))
    assert sae.architecture == arch and (sae.d_in, sae.d_sae) == (D_IN, D_SAE)
    assert_matches(sae, cfg, state, inputs())
    assert sae.metadata["hook_name"] == "blocks.3.hook_resid_pre"
    assert sae.metadata["model_name"] == "gpt2" and sae.metadata["context_size"] == 128
    json.dumps(sae.cfg)  # JSON-safe: a run saves it


@pytest.mark.parametrize("arch", ["batchtopk", "matryoshka_batchtopk"])
@pytest.mark.parametrize("rescale", [True, False])
def test_batchtopk_training_checkpoints_load_as_jumprelu(tmp_path, arch, rescale):
    cfg = saelens6_cfg(arch, k=3.5, rescale_acts_by_decoder_norm=rescale, topk_threshold_lr=0.01)
    state = random_state("standard")
    state["topk_threshold"] = torch.tensor(0.4, dtype=torch.double)
    sae = load_sae(write_dir(tmp_path / "sae", cfg, state))
    assert sae.architecture == "jumprelu"
    assert_matches(sae, cfg, state, inputs())


def test_saved_as_jumprelu_batchtopk_has_a_uniform_threshold(tmp_path):
    """What BatchTopKTrainingSAE.save_inference_model writes: architecture jumprelu."""
    cfg, state = saelens6_cfg("jumprelu"), random_state("standard")
    state["threshold"] = torch.full((D_SAE,), 0.35)
    sae = load_sae(write_dir(tmp_path / "sae", cfg, state))
    assert torch.allclose(sae.threshold, torch.full((D_SAE,), 0.35))
    assert_matches(sae, cfg, state, inputs())


@pytest.mark.parametrize("arch", ["standard", "gated", "topk", "jumprelu"])
def test_expected_average_only_in_folds_the_stored_factor(tmp_path, arch):
    fields = {"normalize_activations": "expected_average_only_in"}
    if arch == "topk":
        fields["rescale_acts_by_decoder_norm"] = True
    cfg, state = saelens6_cfg(arch, **fields), random_state(arch)
    x = inputs() * 7.0
    factor = math.sqrt(D_IN) / float(x.norm(dim=-1).mean())
    path = write_dir(
        tmp_path / "sae",
        cfg,
        state,
        extra_files={"activation_scaler.json": {"scaling_factor": factor}},
    )
    sae = load_sae(path)
    assert_matches(sae, cfg, state, x, scaling_factor=factor)
    assert any("input_scale" in step for step in sae.cfg["folded"])


def test_expected_average_only_in_takes_a_given_or_estimated_factor(tmp_path):
    cfg = saelens6_cfg("standard", normalize_activations="expected_average_only_in")
    state = random_state("standard")
    path = write_dir(tmp_path / "sae", cfg, state)
    with pytest.raises(ConfigError) as error:
        load_sae(path)
    message = str(error.value)
    assert "cfg.json: normalize_activations" in message and "scaling_factor" in message
    assert "estimate_scaling_factor" in message
    x = inputs() * 3.0
    factor = estimate_scaling_factor(x)
    assert factor == pytest.approx(math.sqrt(D_IN) / float(x.norm(dim=-1).mean()))
    assert_matches(load_sae(path, scaling_factor=factor), cfg, state, x, scaling_factor=factor)


def test_scaling_factor_for_an_unnormalised_sae_is_refused(tmp_path):
    path = write_dir(tmp_path / "sae", saelens6_cfg("standard"), random_state("standard"))
    with pytest.raises(ConfigError, match="drop the scaling_factor"):
        load_sae(path, scaling_factor=2.0)


@pytest.mark.parametrize("how", ["constant_norm_rescale", "layer_norm"])
def test_input_dependent_normalisations_are_refused_with_the_reason(tmp_path, how):
    path = write_dir(
        tmp_path / "sae",
        saelens6_cfg("standard", normalize_activations=how),
        random_state("standard"),
    )
    with pytest.raises(ConfigError) as error:
        load_sae(path)
    message = str(error.value)
    assert f"cfg.json: normalize_activations: is {how!r}" in message
    assert "per-input normalisation" in message and "Fix:" in message


@pytest.mark.parametrize(
    "stored, declared",
    [
        (torch.float16, "float16"),
        (torch.bfloat16, "bfloat16"),
        (torch.float32, "bfloat16"),
    ],
)
def test_dtype_is_honoured_as_saelens_casts(tmp_path, stored, declared):
    cfg, state = saelens6_cfg("jumprelu", dtype=declared), random_state("jumprelu")
    sae = load_sae(write_dir(tmp_path / "sae", cfg, state, dtype=stored))
    expected = state["W_enc"].to(stored).to(DTYPES[declared]).float()
    assert torch.equal(sae.W_enc, expected) and sae.W_enc.dtype == torch.float32
    assert_matches(sae, cfg, state, inputs())


def test_sparsity_file_is_returned_as_extra_info(tmp_path):
    path = write_dir(tmp_path / "sae", saelens6_cfg("standard"), random_state("standard"))
    sparsity = torch.rand(D_SAE).log10()
    save_file({"sparsity": sparsity}, str(path / "sparsity.safetensors"))
    sae = load_sae(path)
    assert torch.equal(sae.extras["log_feature_sparsity"], sparsity)
    assert sae.extras["format"] == "saelens"
    save_file({"sparsity": torch.zeros(3)}, str(path / "sparsity.safetensors"))
    with pytest.raises(ConfigError, match="sparsity.safetensors: sparsity: has shape"):
        load_sae(path)


def test_pre_6_config_loads_with_saelens_renames_and_finetuning_scale(tmp_path):
    """A SAELens 3-5 cfg.json: top-level hook_point/model_name, activation_fn_str topk with
    activation_fn_kwargs, boolean normalize_activations, a finetuning scaling_factor."""
    cfg = {
        "architecture": "standard",
        "d_in": D_IN,
        "d_sae": D_SAE,
        "dtype": "float32",
        "model_name": "gpt2-small",
        "hook_point": "blocks.8.hook_resid_pre",
        "hook_point_layer": 8,
        "hook_point_head_index": None,
        "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": 5},
        "apply_b_dec_to_input": False,
        "finetuning_scaling_factor": True,
        "context_size": 64,
        "normalize_activations": False,
        "sae_lens_training_version": "3.13.0",
    }
    state = random_state("standard")
    state["scaling_factor"] = torch.rand(D_SAE) + 0.5
    sae = load_sae(write_dir(tmp_path / "sae", cfg, state))
    assert sae.architecture == "topk" and sae.k == 5
    assert sae.metadata["hook_name"] == "blocks.8.hook_resid_pre"
    assert sae.metadata["model_name"] == "gpt2-small" and sae.metadata["context_size"] == 64
    assert_matches(sae, {**cfg, "architecture": "topk", "k": 5}, state, inputs())


def test_finetuning_scale_without_its_flag_is_refused_as_saelens_does(tmp_path):
    cfg = {"d_in": D_IN, "d_sae": D_SAE, "dtype": "float32", "architecture": "standard"}
    state = random_state("standard")
    state["scaling_factor"] = torch.full((D_SAE,), 2.0)
    with pytest.raises(ConfigError, match="finetuning_scaling_factor: is false"):
        load_sae(write_dir(tmp_path / "sae", cfg, state))
    state["scaling_factor"] = torch.ones(D_SAE)  # all ones: dropped, as SAELens does
    load_sae(write_dir(tmp_path / "ones", cfg, state))


def test_hook_z_sae_reads_flattened_heads(tmp_path):
    n_heads, d_head = 2, 3
    metadata = {**METADATA6, "hook_name": "blocks.2.attn.hook_z"}
    cfg = saelens6_cfg("standard", reshape_activations="hook_z", metadata=metadata)
    state = random_state("standard")
    sae = load_sae(write_dir(tmp_path / "sae", cfg, state))
    assert sae.cfg["reshape_activations"] == "hook_z" and sae.d_in == n_heads * d_head
    z = torch.randn(10, n_heads, d_head)
    flat = z.reshape(10, n_heads * d_head)  # einops "... n_heads d_head -> ... (n_heads d_head)"
    f_ref, out_ref = saelens_reference(cfg, state, flat)
    assert torch.allclose(sae.encode(flat).double(), f_ref, atol=1e-5)
    assert torch.allclose(
        sae(flat).reshape(10, n_heads, d_head).double(),
        out_ref.reshape(10, n_heads, d_head),
        atol=1e-5,
    )


def test_log_threshold_checkpoint_reads_exp(tmp_path):
    cfg, state = saelens6_cfg("jumprelu"), random_state("jumprelu")
    state["threshold"] = state["threshold"].abs() + 0.05
    logged = {k: v for k, v in state.items() if k != "threshold"}
    logged["log_threshold"] = state["threshold"].log()
    sae = load_sae(write_dir(tmp_path / "sae", cfg, logged))
    assert torch.allclose(sae.threshold, state["threshold"], atol=1e-6)


# --------------------------------------------------------------------------- errors
def test_bad_directories_name_file_field_and_fix(tmp_path):
    good_cfg, good_state = saelens6_cfg("gated"), random_state("gated")
    path = write_dir(tmp_path / "sae", good_cfg, good_state)

    def fails(cfg=None, state=None, match=""):
        write_dir(path, cfg or good_cfg, state or good_state)
        with pytest.raises(ConfigError, match=match) as error:
            load_sae(path)
        assert "Fix:" in str(error.value)

    fails(
        state={k: v for k, v in good_state.items() if k != "r_mag"},
        match=r"sae_weights.safetensors: r_mag: missing",
    )
    fails(
        state={**good_state, "W_dec": torch.zeros(D_SAE, D_IN + 1)},
        match=r"W_dec: has shape \(16, 7\), expected \(16, 6\)",
    )
    fails(cfg={**good_cfg, "architecture": "matryoshka"}, match="supported: standard, gated")
    fails(cfg={**good_cfg, "architecture": "skip_transcoder"}, match="transcoder")
    fails(cfg={k: v for k, v in good_cfg.items() if k != "d_sae"}, match="cfg.json: d_sae: missing")
    fails(cfg={**good_cfg, "dtype": "int8"}, match="cfg.json: dtype")
    fails(cfg={**good_cfg, "normalize_activations": "whiten"}, match="normalize_activations")
    topk_state = random_state("topk")
    fails(
        cfg={**good_cfg, "architecture": "topk", "k": None},
        state=topk_state,
        match="cfg.json: k: missing",
    )
    fails(cfg={**good_cfg, "architecture": "topk", "k": 99}, state=topk_state, match="cfg.json: k")
    (path / "sae_weights.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ConfigError, match="cannot be read as safetensors"):
        load_sae(path)
    (path / "sae_weights.safetensors").unlink()
    with pytest.raises(ConfigError, match="cfg.json has no weights beside it"):
        load_sae(path)
    (path / "cfg.json").write_text("{not json")
    save_file(good_state, str(path / "sae_weights.safetensors"))
    with pytest.raises(ConfigError, match="cfg.json: cannot be read as JSON"):
        load_sae(path)
    (path / "cfg.json").unlink()
    with pytest.raises(ConfigError, match="cfg.json: missing"):
        load_sae(path)


def test_a_directory_of_saes_says_to_load_one(tmp_path):
    for name in ("a", "b"):
        write_dir(tmp_path / "run" / name, saelens6_cfg("standard"), random_state("standard"))
    with pytest.raises(ConfigError, match=r"holds 2 SAEs in subfolders \(a, b\)"):
        load_sae(tmp_path / "run")
    assert load_sae(tmp_path / "run" / "a" / "cfg.json").d_sae == D_SAE  # a file in one: its dir


# --------------------------------------------------------------------------- the hub form
def fake_hub_cache(cache, repo, folder, cfg, state):
    """The Hugging Face cache layout: models--OWNER--NAME/{refs/main, snapshots/<commit>/...}."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    write_dir(root / "snapshots" / commit / folder, cfg, state)


def test_hub_form_offline_fails_telling_to_pass_a_local_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ConfigError) as error:
        load_sae("saelens:someone/some-saes/layer_3")
    message = str(error.value)
    assert "HF_HUB_OFFLINE=1" in message and "pass a local directory" in message
    with pytest.raises(ConfigError, match="sae_lens is not installed"):
        load_sae("saelens:gpt2-small-res-jb/blocks.8.hook_resid_pre")
    with pytest.raises(ConfigError, match="no SAE id"):
        load_sae("saelens:gpt2-small-res-jb")


def test_hub_form_reads_the_local_cache_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    cfg, state = saelens6_cfg("topk"), random_state("topk")
    fake_hub_cache(tmp_path / "cache", "someone/some-saes", "layer_3", cfg, state)
    sae = load_sae("saelens:someone/some-saes/layer_3")
    assert_matches(sae, cfg, state, inputs())
    assert sae.extras["repo_id"] == "someone/some-saes" and sae.extras["folder"] == "layer_3"


def test_hub_release_names_resolve_through_saelens_release_table(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    cfg = saelens6_cfg("standard", normalize_activations="expected_average_only_in")
    state = random_state("standard")
    fake_hub_cache(tmp_path / "cache", "jbloom/res-saes", "blocks_12_16384", cfg, state)
    table = {
        "my-release": {
            "repo_id": "jbloom/res-saes",
            "conversion_func": None,
            "saes": [
                {
                    "id": "blocks.12.hook_resid_post",
                    "path": "blocks_12_16384",
                    "norm_scaling_factor": 0.25,
                }
            ],
        },
        "converted": {
            "repo_id": "google/x",
            "conversion_func": "gemma_2",
            "saes": [{"id": "a", "path": "a"}],
        },
    }
    monkeypatch.setattr(hub, "release_table", lambda: table)
    sae = load_sae("saelens:my-release/blocks.12.hook_resid_post")
    assert_matches(sae, cfg, state, inputs(), scaling_factor=0.25)
    with pytest.raises(ConfigError, match="has no SAE 'nope'"):
        load_sae("saelens:my-release/nope")
    with pytest.raises(ConfigError, match="conversion_func 'gemma_2'"):
        load_sae("saelens:converted/a")


# --------------------------------------------------------------------------- writing
def randomised(sae, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            if name == "threshold":
                p.abs_()
    sae.cfg = {"method": "test", "knob": 1.0}
    return sae


EXPORTED = [
    lambda: SAE(D_IN, D_SAE),
    lambda: SAE(D_IN, D_SAE, apply_b_dec_to_input=False),
    lambda: GatedSAE(D_IN, D_SAE),
    lambda: TopKSAE(D_IN, D_SAE, k=3),
    lambda: JumpReLUSAE(D_IN, D_SAE),
]


@pytest.mark.parametrize("make", EXPORTED)
def test_export_is_what_saelens_reads_and_reloads(tmp_path, make):
    sae = randomised(make())
    metadata = {"model_name": "toyworld", "hook_name": "blocks.1.hook_resid_pre"}
    path = write_sae(sae, tmp_path / "out", "saelens", metadata)
    cfg = json.loads((path / "cfg.json").read_text())
    saelens_fields = {
        "d_in",
        "d_sae",
        "dtype",
        "device",
        "apply_b_dec_to_input",
        "normalize_activations",
        "reshape_activations",
        "metadata",
        "architecture",
    }
    topk_fields = {"k", "rescale_acts_by_decoder_norm"} if sae.architecture == "topk" else set()
    assert set(cfg) == saelens_fields | topk_fields | {"saebench"}
    assert cfg["metadata"]["sae_lens_version"].startswith("6.")
    from safetensors.torch import load_file

    state = load_file(str(path / "sae_weights.safetensors"))
    assert all(v.dtype == torch.float32 for v in state.values())
    x = inputs()
    f_ref, x_hat_ref = saelens_reference(cfg, state, x)
    with torch.no_grad():
        assert torch.allclose(sae.encode(x).double(), f_ref, atol=1e-5)
        assert torch.allclose(sae(x).double(), x_hat_ref, atol=1e-5)
    loaded = load_sae(path)
    assert type(loaded) is type(sae) and loaded.metadata["hook_name"] == metadata["hook_name"]
    with torch.no_grad():
        assert torch.allclose(loaded(x), sae(x), atol=1e-6)


def test_export_refuses_a_negative_jumprelu_threshold(tmp_path):
    sae = randomised(JumpReLUSAE(D_IN, D_SAE))
    with torch.no_grad():
        sae.threshold[0] = -0.5
    with pytest.raises(ConfigError, match="threshold: 1 latent"):
        write_sae(sae, tmp_path / "out", "saelens")
    # saebench's own save keeps saebench's semantics (z·1[z > θ]) exactly.
    loaded = load_sae(save_sae(sae, tmp_path / "own"))
    x = inputs()
    assert torch.allclose(loaded(x), sae(x), atol=1e-6)
