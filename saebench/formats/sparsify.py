"""EleutherAI sparsify's layout (sparsify/sparse_coder.py, config.py): one folder per hookpoint,
named after it, holding `cfg.json` (SparseCoderConfig.to_dict() + d_in: activation, k,
num_latents, expansion_factor, normalize_decoder, multi_topk, skip_connection, transcode; legacy
files also `signed`) and `sae.safetensors` (safetensors.torch.save_model of the module:
encoder.weight [m, d_in], encoder.bias [m], W_dec [m, d_in], b_dec [d_in], and W_skip
[d_in, d_in] with a skip connection). The run folder above holds `config.json` (the training
run: model, ctx_len, hookpoints, ...).

SparseCoder.encode/decode: z = ReLU(encoder(x − b_dec)), the top-k of z (activation "topk"),
x̂ = Σ top_acts·W_dec[top_indices] + b_dec. ReLU before the top-k equals saebench's TopK
(top-k first, ReLU after) on every latent, so it is a topk SAE with W_enc = encoder.weightᵀ.
normalize_decoder and multi_topk only change training. Refused, as no saebench architecture
computes them: activation "groupmax" (the max of each of k contiguous groups), transcoders
(transcode: they predict a module's output from its input, without the b_dec centring), a
non-zero skip connection W_skip (x̂ += x·W_skipᵀ), and legacy signed SAEs (top-k by |z| with
signed activations).

Hookpoints are module names of the model's base model (forward hooks on their output); they map
to TransformerLens hooks: `layers.N` / `h.N` / `layer.N` → blocks.N.hook_resid_post, `….N.mlp`
→ blocks.N.hook_mlp_out, `….N.self_attn` / `.attn` / `.attention` → blocks.N.hook_attn_out,
`….N.mlp.act` / `.mlp.act_fn` → blocks.N.mlp.hook_post, `embed_tokens` / `embed_in` / `wte` →
hook_embed (a prefix like `model.`, `transformer.` or `gpt_neox.` is ignored). Other names keep
hook_name unset (metadata.sparsify_hookpoint has them); pass --hook for those.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from saebench.formats.common import (
    Weights,
    bad,
    int_field,
    json_safe,
    read_json,
    read_safetensors,
    tensor,
    to_sae,
)

WEIGHTS = "sae.safetensors"
CONFIG = "cfg.json"
RUN_CONFIG = "config.json"

_PREFIX = r"(?:(?:model|transformer|gpt_neox|base_model|language_model)\.)*"
_LAYER = r"(?:layers|h|layer|blocks|encoder\.layer)\.(\d+)"
HOOKPOINTS = [
    (re.compile(rf"{_PREFIX}{_LAYER}"), "blocks.{}.hook_resid_post"),
    (re.compile(rf"{_PREFIX}{_LAYER}\.mlp"), "blocks.{}.hook_mlp_out"),
    (re.compile(rf"{_PREFIX}{_LAYER}\.(?:self_attn|attn|attention)"), "blocks.{}.hook_attn_out"),
    (re.compile(rf"{_PREFIX}{_LAYER}\.mlp\.(?:act|act_fn)"), "blocks.{}.mlp.hook_post"),
    (re.compile(rf"{_PREFIX}(?:embed_tokens|embed_in|wte)"), "hook_embed"),
]


def is_sparsify_directory(directory: Path) -> bool:
    return (directory / WEIGHTS).exists()


def transformer_lens_hook(hookpoint: str) -> str | None:
    """The TransformerLens hook name of a sparsify hookpoint, or None when there is none."""
    for pattern, template in HOOKPOINTS:
        match = pattern.fullmatch(hookpoint)
        if match:
            return template.format(*match.groups())
    return None


def _metadata(directory: Path) -> dict[str, Any]:
    metadata: dict[str, Any] = {"sparsify_hookpoint": directory.name}
    hook = transformer_lens_hook(directory.name)
    if hook is not None:
        metadata["hook_name"] = hook
    run_config = directory.parent / RUN_CONFIG
    if run_config.exists():
        run = read_json(run_config, "sparsify run config")
        if isinstance(run.get("model"), str):
            metadata["model_name"] = run["model"]
        if isinstance(run.get("ctx_len"), int):
            metadata["context_size"] = run["ctx_len"]
    return metadata


def load_sparsify(directory: Path, device: str | torch.device = "cpu"):
    cfg_path = directory / CONFIG
    weights_path = directory / WEIGHTS
    cfg = read_json(cfg_path, "sparsify config (cfg.json)")
    d_in = int_field(cfg_path, cfg, "d_in", "sparsify's save_to_disk writes d_in into cfg.json")
    if cfg.get("signed"):
        raise bad(
            cfg_path,
            "signed",
            "is true: a legacy signed SAE keeps the top-k by |z| with their "
            "signs, and saebench's latents are non-negative",
            "use an unsigned sparsify SAE",
        )
    if cfg.get("transcode"):
        raise bad(
            cfg_path,
            "transcode",
            "is true: a transcoder predicts a module's output from its "
            "input; saebench scores SAEs that reconstruct the activations they read",
            "pass a sparsify SAE (transcode false)",
        )
    activation = cfg.get("activation", "topk")
    if activation != "topk":
        raise bad(
            cfg_path,
            "activation",
            f"is {activation!r}: no saebench architecture computes it "
            "(groupmax keeps the max of each of k contiguous groups)",
            "use a topk SAE",
        )
    expansion = cfg.get("expansion_factor", 32)
    num_latents = cfg.get("num_latents") or (
        d_in * expansion if isinstance(expansion, int) else None
    )
    if not isinstance(num_latents, int) or num_latents < 1:
        raise bad(
            cfg_path,
            "num_latents",
            f"is {cfg.get('num_latents')!r} with expansion_factor {expansion!r}",
            "record num_latents (or expansion_factor) as sparsify writes them",
        )
    k = cfg.get("k", 32)  # SparseCoderConfig's default
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_latents:
        raise bad(cfg_path, "k", f"is {k!r}, must be in 1..{num_latents}", "record the k trained")
    state = read_safetensors(weights_path)
    fix = (
        f"the weights do not match cfg.json (d_in={d_in}, {num_latents} latents); save the SAE "
        "again with sparsify's SparseCoder.save_to_disk"
    )
    if "W_skip" in state:
        skip = tensor(weights_path, state, "W_skip", (d_in, d_in), fix)
        if bool(skip.abs().max() > 0):
            raise bad(
                weights_path,
                "W_skip",
                "is a non-zero skip connection (x̂ += x·W_skipᵀ), which "
                "no saebench architecture has",
                "use a sparsify SAE without skip_connection",
            )
    elif cfg.get("skip_connection"):
        raise bad(weights_path, "W_skip", "missing though cfg.json sets skip_connection", fix)
    w = Weights(
        "topk",
        W_enc=tensor(weights_path, state, "encoder.weight", (num_latents, d_in), fix).T,
        b_enc=tensor(weights_path, state, "encoder.bias", (num_latents,), fix),
        W_dec=tensor(weights_path, state, "W_dec", (num_latents, d_in), fix),
        b_dec=tensor(weights_path, state, "b_dec", (d_in,), fix),
        apply_b_dec_to_input=True,
        k=k,
    )
    w.W_enc = w.W_enc.contiguous()
    dtype = next(iter(state.values())).dtype if state else torch.float32
    recipe = {
        "source_format": "sparsify",
        "source": str(directory),
        "k": k,
        "dtype": str(dtype).removeprefix("torch."),
        "normalize_decoder": cfg.get("normalize_decoder"),
        "multi_topk": cfg.get("multi_topk"),
    }
    extras = {"format": "sparsify", "path": str(directory), "cfg": json_safe(cfg)}
    return to_sae(w, weights_path, json_safe(recipe), _metadata(directory), extras, device)
