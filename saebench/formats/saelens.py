"""SAELens's on-disk layout, read and written as SAELens 6 reads and writes it (field names from
sae_lens/saes/sae.py, */_sae.py and sae_lens/loading/pretrained_sae_loaders.py, v6.18).

A directory holds `sae_weights.safetensors` (W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_dec,
and b_enc, or b_gate + r_mag + b_mag for gated, plus threshold for jumprelu), `cfg.json` (d_in,
d_sae, dtype, device, apply_b_dec_to_input, normalize_activations, reshape_activations,
architecture, metadata{model_name, hook_name, context_size, ...}; k and
rescale_acts_by_decoder_norm for topk) and optionally `sparsity.safetensors` ({"sparsity":
log10 feature density}) and, in a training checkpoint, `activation_scaler.json`
({"scaling_factor": s}).

Reading follows SAELens's forward pass exactly, folding into plain weights what is exact:
- standard: f = ReLU((x − b_dec·a)·W_enc + b_enc); x̂ = f·W_dec + b_dec (a = apply_b_dec_to_input).
- gated: f = 1[(x−b_dec·a)·W_enc + b_gate > 0] · ReLU((x−b_dec·a)·(W_enc ⊙ exp r_mag) + b_mag).
- jumprelu: f = ReLU(z)·1[z > θ]; saebench's JumpReLU is z·1[z > θ], equal once θ := max(θ, 0).
- topk: f = scatter(TopK_k(z)) then ReLU. `rescale_acts_by_decoder_norm` (z·‖W_dec,i‖ before the
  top-k, f/‖W_dec,i‖ before decoding) is folded: W_enc·n, b_enc·n, W_dec/n give the same f and x̂.
- batchtopk / matryoshka_batchtopk (a training checkpoint; SAELens saves the finished SAE as
  jumprelu): threshold := topk_threshold after the decoder-norm fold, as
  BatchTopKTrainingSAE.process_state_dict_for_saving_inference does.
- normalize_activations: "none"; "expected_average_only_in" (trained on x·s, s = √d_in / E‖x‖):
  s is folded as SAELens's fold_activation_norm_scaling_factor does (W_enc·s, W_dec/s, b_dec/s),
  s from the `scaling_factor` argument or activation_scaler.json, else refused;
  "constant_norm_rescale" and "layer_norm" scale each token by a factor of that token, which no
  weight can hold and saebench's SAE has no hook for: refused.
- pre-6.0 files (no metadata.sae_lens_version): the renames of handle_pre_6_0_config
  (hook_point → hook_name, activation_fn_str, boolean normalize_activations, top-level metadata),
  activation_fn "topk" → architecture topk, and the old finetuning `scaling_factor` (x̂ =
  (f ⊙ s)·W_dec + b_dec) folded into W_dec's rows.
- reshape_activations "hook_z": SAELens flattens [..., n_heads, d_head] to [..., n_heads·d_head]
  before encoding and unflattens x̂; the loaded SAE reads the flattened vectors (d_in =
  n_heads·d_head) and records reshape_activations in its cfg. (saebench's harvest does not read
  per-head hooks yet, so such an SAE loads but `saebench eval` refuses its hook.)
- dtype: every tensor is cast to cfg.json's dtype (as SAELens's loader does), then to float32.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch

from saebench.formats.common import (
    DTYPES,
    Weights,
    bad,
    fold_decoder_norm,
    fold_input_scale,
    int_field,
    json_safe,
    read_json,
    read_safetensors,
    tensor,
    to_sae,
    weights_of,
)

WEIGHTS = "sae_weights.safetensors"
CONFIG = "cfg.json"
SPARSITY = "sparsity.safetensors"
SCALER = "activation_scaler.json"
# Written into exported cfg.json's metadata: SAELens reads a config as 6.x only when it carries a
# sae_lens_version ≥ 6 (handle_config_defaulting); otherwise it drops the nested metadata.
FORMAT_VERSION = "6.0.0"

# sae_lens.loading.pretrained_sae_loaders.LLM_METADATA_KEYS: top-level keys of a pre-6.0 config
# that SAELens moves into metadata.
LLM_METADATA_KEYS = (
    "model_name",
    "hook_name",
    "model_class_name",
    "hook_head_index",
    "model_from_pretrained_kwargs",
    "prepend_bos",
    "exclude_special_tokens",
    "neuronpedia_id",
    "context_size",
    "seqpos_slice",
    "dataset_path",
    "sae_lens_version",
    "sae_lens_training_version",
    "hook_name_out",
    "hook_head_index_out",
)
PRE_6_RENAMES = {
    "hook_point": "hook_name",
    "hook_point_head_index": "hook_head_index",
    "activation_fn_str": "activation_fn",
}
READABLE = ("standard", "gated", "topk", "jumprelu", "batchtopk", "matryoshka_batchtopk")
SUPPORTED_TEXT = (
    "standard, gated, topk, jumprelu, batchtopk and matryoshka_batchtopk (training checkpoints; "
    "SAELens saves finished ones as jumprelu)"
)
TRANSCODERS = ("transcoder", "skip_transcoder", "jumprelu_transcoder")
NORMALIZATIONS = ("none", "expected_average_only_in", "constant_norm_rescale", "layer_norm")


def is_saelens_directory(directory: Path) -> bool:
    return (directory / WEIGHTS).exists()


def _major_version(version: Any) -> int | None:
    match = re.match(r"\s*v?(\d+)", str(version)) if version else None
    return int(match.group(1)) if match else None


def defaulted_config(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, metadata) as SAELens 6 sees `raw` (handle_config_defaulting)."""
    nested: dict[str, Any] = raw["metadata"] if isinstance(raw.get("metadata"), dict) else {}
    version = raw.get("sae_lens_version") or nested.get("sae_lens_version")
    major = _major_version(version)
    if major is not None and major >= 6:
        return dict(raw), dict(nested)
    cfg = {PRE_6_RENAMES.get(key, key): value for key, value in raw.items()}
    cfg.setdefault("apply_b_dec_to_input", True)
    cfg.setdefault("architecture", "standard")
    cfg.setdefault("activation_fn", "relu")
    hook_name = cfg.get("hook_name") or nested.get("hook_name") or ""
    cfg.setdefault("reshape_activations", "hook_z" if "hook_z" in str(hook_name) else "none")
    kwargs = cfg.get("activation_fn_kwargs")
    if cfg.get("activation_fn") == "topk" and isinstance(kwargs, dict) and kwargs.get("k"):
        cfg["architecture"] = "topk"
        cfg["k"] = kwargs["k"]
    if isinstance(cfg.get("normalize_activations"), bool):
        cfg["normalize_activations"] = (
            "expected_average_only_in" if cfg["normalize_activations"] else "none"
        )
    if cfg.get("normalize_activations") is None:
        cfg["normalize_activations"] = "none"
    metadata = {key: cfg[key] for key in LLM_METADATA_KEYS if key in cfg}
    metadata.update(nested)  # saebench's own files keep their metadata nested
    return cfg, metadata


def _scaling_factor(
    cfg_path: Path, normalize: str, given: float | None, scaler_path: Path | None
) -> float | None:
    factor: Any = given
    source = "the scaling_factor argument"
    if factor is None and scaler_path is not None and scaler_path.exists():
        factor = read_json(scaler_path, "SAELens activation scaler").get("scaling_factor")
        source = str(scaler_path)
    if normalize != "expected_average_only_in":
        if given is not None:
            raise bad(
                cfg_path,
                "normalize_activations",
                f"is {normalize!r}, so the weights already read raw activations, but a "
                f"scaling_factor={given} was given",
                "drop the scaling_factor argument",
            )
        return None
    if factor is None:
        raise bad(
            cfg_path,
            "normalize_activations",
            "is 'expected_average_only_in' (the SAE was trained on activations scaled by "
            "s = √d_in / E‖x‖) but no scaling factor is stored (no activation_scaler.json "
            "beside it)",
            "pass it: load_sae(path, scaling_factor=s) (SAELens's pretrained_saes.yaml lists "
            "norm_scaling_factor for released SAEs), or estimate it from the activations the "
            "SAE reads with saebench.saved_format.estimate_scaling_factor(acts)",
        )
    if (
        isinstance(factor, bool)
        or not isinstance(factor, int | float)
        or not (math.isfinite(factor) and factor > 0)
    ):
        raise bad(
            cfg_path,
            "normalize_activations",
            f"needs a positive finite scaling factor; {source} gives {factor!r}",
            "pass scaling_factor=s with s = √d_in / E‖x‖ over the SAE's activations",
        )
    return float(factor)


def load_saelens(
    directory: Path,
    device: str | torch.device = "cpu",
    *,
    scaling_factor: float | None = None,
    cfg_path: Path | None = None,
    weights_path: Path | None = None,
    sparsity_path: Path | None = None,
    cfg_overrides: dict[str, Any] | None = None,
    source: str | None = None,
):
    """The SAE of a SAELens directory (or of explicit files, as the hub resolver passes them)."""
    cfg_path = cfg_path or directory / CONFIG
    weights_path = weights_path or directory / WEIGHTS
    if sparsity_path is None and (directory / SPARSITY).exists():
        sparsity_path = directory / SPARSITY
    raw = read_json(cfg_path, "SAELens config (cfg.json)")
    if cfg_overrides:
        raw = {**raw, **cfg_overrides}
    cfg, metadata = defaulted_config(raw)
    ours = isinstance(raw.get("saebench"), dict)  # written by saebench: its semantics exactly
    architecture = cfg.get("architecture", "standard")
    if architecture in TRANSCODERS:
        raise bad(
            cfg_path,
            "architecture",
            f"is {architecture!r}: a transcoder maps one hook's activations to another's, "
            "saebench scores SAEs that reconstruct their input",
            "pass an SAE (standard, gated, topk, jumprelu)",
        )
    if architecture not in READABLE:
        raise bad(
            cfg_path,
            "architecture",
            f"{architecture!r} is unknown; supported: {SUPPORTED_TEXT}",
            "pass an SAE of one of these architectures (or convert it with SAELens)",
        )
    size_fix = "cfg.json must record the SAE's sizes (SAELens writes d_in and d_sae)"
    d_in = int_field(cfg_path, cfg, "d_in", size_fix)
    d_sae = int_field(cfg_path, cfg, "d_sae", size_fix)
    dtype_name = str(cfg.get("dtype") or "float32")
    if dtype_name not in DTYPES:
        raise bad(
            cfg_path,
            "dtype",
            f"{dtype_name!r} is not a dtype SAELens knows",
            f"set it to one of {', '.join(k for k in DTYPES if '.' not in k)}",
        )
    normalize = str(cfg.get("normalize_activations") or "none")
    if normalize not in NORMALIZATIONS:
        raise bad(
            cfg_path,
            "normalize_activations",
            f"{normalize!r} is unknown",
            f"use one of {', '.join(NORMALIZATIONS)}",
        )
    if normalize in ("constant_norm_rescale", "layer_norm"):
        how = (
            "rescales every token to norm √d_in and divides x̂ by the same factor"
            if normalize == "constant_norm_rescale"
            else "subtracts each token's mean, divides by its std, and undoes both on x̂"
        )
        raise bad(
            cfg_path,
            "normalize_activations",
            f"is {normalize!r}: SAELens {how}. That factor belongs to each input token, so no "
            "weight can hold it, and saebench's SAE classes have no per-input normalisation "
            "step (encode and decode are separate calls)",
            "use an SAE trained with normalize_activations 'none' or "
            "'expected_average_only_in', or score this one in SAELens",
        )
    reshape = str(cfg.get("reshape_activations") or "none")
    if reshape not in ("none", "hook_z"):
        raise bad(cfg_path, "reshape_activations", f"{reshape!r} is unknown", "use none or hook_z")
    activation = cfg.get("activation_fn", "relu")
    if activation not in ("relu", "topk", None):
        raise bad(
            cfg_path,
            "activation_fn",
            f"is {activation!r}; only relu (and topk) SAEs exist in saebench",
            "pass an SAE with a ReLU, TopK, JumpReLU or gated activation",
        )
    factor = _scaling_factor(cfg_path, normalize, scaling_factor, directory / SCALER)

    state = {
        name: value.to(DTYPES[dtype_name]) if value.is_floating_point() else value
        for name, value in read_safetensors(weights_path).items()
    }
    fix = (
        f"the weights do not match cfg.json (d_in={d_in}, d_sae={d_sae}); save the SAE again "
        "with SAELens (SAE.save_model) or saebench (saebench.saved_format.save_sae)"
    )
    gated = architecture == "gated"
    w = Weights(
        architecture=architecture,
        W_enc=tensor(weights_path, state, "W_enc", (d_in, d_sae), fix),
        b_enc=tensor(weights_path, state, "b_gate" if gated else "b_enc", (d_sae,), fix),
        W_dec=tensor(weights_path, state, "W_dec", (d_sae, d_in), fix),
        b_dec=tensor(weights_path, state, "b_dec", (d_in,), fix),
        apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
    )
    if gated:
        w.r_mag = tensor(weights_path, state, "r_mag", (d_sae,), fix)
        w.b_mag = tensor(weights_path, state, "b_mag", (d_sae,), fix)
    _fold_finetuning_scale(w, state, cfg, cfg_path, weights_path, d_sae, fix)
    if factor is not None:
        fold_input_scale(w, factor)
    threshold: torch.Tensor | None = None
    if architecture == "jumprelu":
        if "threshold" not in state and "log_threshold" in state:
            threshold = torch.exp(tensor(weights_path, state, "log_threshold", (d_sae,), fix))
        else:
            threshold = tensor(weights_path, state, "threshold", (d_sae,), fix)
    if architecture == "topk":
        w.k = _k(cfg_path, cfg, d_sae)
    if architecture in ("batchtopk", "matryoshka_batchtopk"):
        if "threshold" in state:
            threshold = tensor(weights_path, state, "threshold", (d_sae,), fix)
        else:
            threshold = tensor(weights_path, state, "topk_threshold", (), fix).expand(d_sae)
        w.architecture = "jumprelu"
    rescale_default = architecture in ("batchtopk", "matryoshka_batchtopk")
    rescale = bool(cfg.get("rescale_acts_by_decoder_norm", rescale_default))
    if rescale and architecture in ("topk", "batchtopk", "matryoshka_batchtopk"):
        fold_decoder_norm(w)  # the fold scales no threshold: none is set yet
    if threshold is not None:
        # SAELens applies ReLU before the jump: ReLU(z)·1[z > θ] = z·1[z > max(θ, 0)].
        w.threshold = threshold.clone() if ours else threshold.clamp_min(0.0)

    extras: dict[str, Any] = {
        "format": "saelens",
        "path": source or str(directory),
        "cfg": json_safe(raw),
        "log_feature_sparsity": _sparsity(sparsity_path, d_sae),
    }
    if ours:
        recipe = dict(raw["saebench"])
    else:
        recipe = {
            "source_format": "saelens",
            "source": source or str(directory),
            "architecture_saved": architecture,
            "dtype": dtype_name,
            "apply_b_dec_to_input": w.apply_b_dec_to_input,
            "normalize_activations": normalize,
            "reshape_activations": reshape,
            **({"k": w.k} if w.k is not None else {}),
            **({"scaling_factor": factor} if factor is not None else {}),
            **({"rescale_acts_by_decoder_norm": rescale} if rescale_default or w.k else {}),
        }
    if reshape == "hook_z":
        recipe["reshape_activations"] = "hook_z"
    return to_sae(w, cfg_path, json_safe(recipe), metadata, extras, device)


def _k(cfg_path: Path, cfg: dict[str, Any], d_sae: int) -> int:
    k = cfg.get("k")
    if (
        isinstance(k, bool)
        or not isinstance(k, int | float)
        or k != int(k)
        or not (1 <= k <= d_sae)
    ):
        raise bad(
            cfg_path,
            "k",
            "missing" if k is None else f"is {k!r}, not a whole number in 1..d_sae={d_sae}",
            "record the k the TopK SAE was trained with",
        )
    return int(k)


def _fold_finetuning_scale(w, state, cfg, cfg_path, weights_path, d_sae, fix) -> None:
    """SAELens < 6's finetuning scaling factor s: x̂ = (f ⊙ s)·W_dec + b_dec, i.e. W_dec rows ·s.
    All ones means none (SAELens drops it); otherwise cfg must say finetuning_scaling_factor."""
    name = "scaling_factor" if "scaling_factor" in state else "finetuning_scaling_factor"
    if name not in state:
        return
    s = tensor(weights_path, state, name, (d_sae,), fix)
    if torch.allclose(s, torch.ones_like(s)):
        return
    if not cfg.get("finetuning_scaling_factor"):
        raise bad(
            cfg_path,
            "finetuning_scaling_factor",
            f"is false, but {weights_path.name} holds a {name} that is not all ones",
            "set finetuning_scaling_factor to true if the SAE was fine-tuned with it, or drop "
            "the tensor (SAELens refuses this combination too)",
        )
    w.W_dec = w.W_dec * s[:, None]
    w.folds.append("finetuning_scaling_factor")


def _sparsity(path: Path | None, d_sae: int) -> torch.Tensor | None:
    if path is None:
        return None
    state = read_safetensors(path)
    return tensor(path, state, "sparsity", (d_sae,), f"delete {path.name} (it is optional)")


# --------------------------------------------------------------------------- writing
def saelens_state(w: Weights) -> dict[str, torch.Tensor]:
    """The tensors under SAELens's names (gated's encoder bias is b_gate), float32."""
    state = {"W_enc": w.W_enc, "W_dec": w.W_dec, "b_dec": w.b_dec}
    if w.architecture == "gated":
        assert w.r_mag is not None and w.b_mag is not None
        state.update(b_gate=w.b_enc, r_mag=w.r_mag, b_mag=w.b_mag)
    else:
        state["b_enc"] = w.b_enc
    if w.architecture == "jumprelu":
        assert w.threshold is not None
        state["threshold"] = w.threshold
    return {name: value.detach().cpu().float().contiguous() for name, value in state.items()}


def saelens_config(w: Weights, metadata: dict[str, Any], recipe: dict[str, Any]) -> dict:
    """cfg.json with the fields SAELens 6's SAEConfig.to_dict writes (plus saebench's recipe,
    which SAELens ignores: its from_dict keeps only its dataclass fields)."""
    cfg: dict[str, Any] = {
        "d_in": w.d_in,
        "d_sae": w.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": w.apply_b_dec_to_input,
        # Normalisation is folded into the weights: the saved SAE works on raw activations.
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": json_safe(metadata),
        "architecture": w.architecture,
    }
    if w.architecture == "topk":
        cfg["k"] = w.k
        cfg["rescale_acts_by_decoder_norm"] = False
    cfg["saebench"] = json_safe(recipe)
    return cfg


def export_weights(sae, where: str) -> Weights:
    """The SAE's Weights for a file SAELens reads, refusing what SAELens would compute
    differently: a JumpReLU threshold below 0 (SAELens applies ReLU before the jump)."""
    w = weights_of(sae)
    if w.threshold is not None and bool((w.threshold < 0).any()):
        n = int((w.threshold < 0).sum())
        raise bad(
            where,
            "threshold",
            f"{n} latent(s) have a negative JumpReLU threshold; SAELens and dictionary_learning "
            "apply ReLU before the jump, so they would zero activations saebench keeps",
            "export an SAE whose thresholds are ≥ 0 (the jumprelu/batchtopk recipes keep them "
            "positive)",
        )
    return w


def saelens_export_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    from saebench import __version__

    return {
        "sae_lens_version": FORMAT_VERSION,
        "sae_lens_training_version": None,
        **metadata,
        "saebench_version": __version__,
    }
