"""dictionary_learning's layout (saprmarks/dictionary_learning: dictionary.py, trainers/*.py,
utils.load_dictionary): `ae.pt` (torch.save of the dictionary's state_dict) and `config.json`
({"trainer": trainer.config, "buffer": buffer.config}); trainer.dict_class names the class.

nn.Linear stores weight [out, in], so encoder.weight is W_encᵀ [d_sae, d_in] and decoder.weight
is W_decᵀ [d_in, d_sae]. Per class (what load_dictionary builds, and its default encode):
- AutoEncoder (StandardTrainer, StandardTrainerAprilUpdate, PAnnealTrainer): encoder.weight,
  encoder.bias, decoder.weight, bias; f = ReLU(encoder(x − bias)), x̂ = decoder(f) + bias.
  from_pretrained(normalize_decoder=True), which load_dictionary uses, rescales decoder columns
  to unit norm (encoder rows and bias ×‖d_i‖) unless they already are: read the same way.
- AutoEncoderNew (the earlier April-update class): f = ReLU(encoder(x)), x̂ = decoder(f) with
  decoder.bias: no input centring (apply_b_dec_to_input = False).
- GatedAutoEncoder: encoder.weight (no bias), decoder_bias, r_mag, gate_bias, mag_bias,
  decoder.weight; π = encoder(x − decoder_bias); f = 1[π + gate_bias > 0]·ReLU(e^{r_mag}π +
  mag_bias).
- AutoEncoderTopK: encoder (+bias), decoder.weight, b_dec, k, threshold; default encode is the
  per-token top-k of ReLU(encoder(x − b_dec)) (the threshold is only used on request): topk.
- BatchTopKSAE: same tensors; default encode is ReLU(z)·1[ReLU(z) > threshold] with one scalar
  threshold (−1 before it is learned): jumprelu with θ = max(threshold, 0) for every latent.
- MatryoshkaBatchTopKSAE: W_enc [d_in, d_sae], b_enc, W_dec, b_dec, k, threshold, group_sizes;
  encoded like BatchTopKSAE (every group active after loading): jumprelu; group_sizes recorded.
- JumpReluAutoEncoder: W_enc, b_enc, W_dec, b_dec, threshold [d_sae]; f = ReLU(z·1[z > θ])
  with apply_b_dec_to_input False (a plain attribute, not saved): jumprelu, θ := max(θ, 0).
The activations were normalised during training only if config.json says norm_factor; the final
ae.pt is saved with scale_biases(norm_factor) applied, so it reads raw activations. A
mid-training backup (`{"step", "ae", "optimizer", "config", "norm_factor"}`) is read like the
final file: its biases are scaled by norm_factor as the final save would.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from saebench.formats.common import (
    Weights,
    bad,
    fold_decoder_norm,
    json_safe,
    read_json,
    scale_biases,
    set_b_dec_to_input,
    tensor,
    to_sae,
)

AE = "ae.pt"
CONFIG = "config.json"
TL_HOOK = re.compile(r"blocks\.\d+\.hook_\w+")
SUBMODULE = re.compile(r"(resid_post|resid_pre|resid_mid|mlp_out|attn_out)_layer_(\d+)")

Converter = Callable[[dict[str, Any], dict[str, Any], Path, Path], tuple[Weights, dict[str, Any]]]


def is_dictionary_learning_directory(directory: Path) -> bool:
    return (directory / AE).exists()


def _fix(ae_path: Path) -> str:
    return (
        f"{ae_path.name} must be the state_dict dictionary_learning saves (torch.save("
        "ae.state_dict(), 'ae.pt')) of the class config.json's trainer.dict_class names"
    )


def _shape(ae: Path, state: dict[str, Any], name: str, ndim: int) -> tuple[int, ...]:
    value = state.get(name)
    if not isinstance(value, torch.Tensor) or value.ndim != ndim:
        found = tuple(value.shape) if isinstance(value, torch.Tensor) else "missing"
        raise bad(
            ae,
            name,
            f"is {found}, expected a {ndim}-d tensor (found keys {', '.join(sorted(state))})",
            _fix(ae),
        )
    return tuple(value.shape)


def _autoencoder(state, trainer, ae, config) -> tuple[Weights, dict[str, Any]]:
    d_sae, d_in = _shape(ae, state, "encoder.weight", 2)
    fix = _fix(ae)
    decoder = tensor(ae, state, "decoder.weight", (d_in, d_sae), fix)
    w = Weights(
        "standard",
        W_enc=tensor(ae, state, "encoder.weight", (d_sae, d_in), fix).T.contiguous(),
        b_enc=tensor(ae, state, "encoder.bias", (d_sae,), fix),
        W_dec=decoder.T.contiguous(),
        b_dec=tensor(ae, state, "bias", (d_in,), fix),
        apply_b_dec_to_input=True,
    )
    norms = decoder.norm(dim=0)
    if not torch.allclose(norms, torch.ones_like(norms)):
        fold_decoder_norm(w)  # AutoEncoder.from_pretrained(normalize_decoder=True)
    return w, {}


def _autoencoder_new(state, trainer, ae, config) -> tuple[Weights, dict[str, Any]]:
    d_sae, d_in = _shape(ae, state, "encoder.weight", 2)
    fix = _fix(ae)
    w = Weights(
        "standard",
        W_enc=tensor(ae, state, "encoder.weight", (d_sae, d_in), fix).T.contiguous(),
        b_enc=tensor(ae, state, "encoder.bias", (d_sae,), fix),
        W_dec=tensor(ae, state, "decoder.weight", (d_in, d_sae), fix).T.contiguous(),
        b_dec=tensor(ae, state, "decoder.bias", (d_in,), fix),
        apply_b_dec_to_input=False,
    )
    return w, {}


def _gated(state, trainer, ae, config) -> tuple[Weights, dict[str, Any]]:
    d_sae, d_in = _shape(ae, state, "encoder.weight", 2)
    fix = _fix(ae)
    w = Weights(
        "gated",
        W_enc=tensor(ae, state, "encoder.weight", (d_sae, d_in), fix).T.contiguous(),
        b_enc=tensor(ae, state, "gate_bias", (d_sae,), fix),
        W_dec=tensor(ae, state, "decoder.weight", (d_in, d_sae), fix).T.contiguous(),
        b_dec=tensor(ae, state, "decoder_bias", (d_in,), fix),
        apply_b_dec_to_input=True,
        r_mag=tensor(ae, state, "r_mag", (d_sae,), fix),
        b_mag=tensor(ae, state, "mag_bias", (d_sae,), fix),
    )
    return w, {}


def _k(state, trainer, ae: Path, config: Path) -> int:
    """k as load_dictionary passes it (config's trainer.k), checked against ae.pt's k buffer
    as from_pretrained does."""
    stored = state.get("k")
    stored_k = int(stored.item()) if isinstance(stored, torch.Tensor) else None
    k = trainer.get("k", stored_k)
    if isinstance(k, bool) or not isinstance(k, int | float) or int(k) != k or k < 1:
        raise bad(
            config,
            "trainer.k",
            "missing" if k is None else f"is {k!r}",
            "record the k the SAE was trained with (or keep the k buffer in ae.pt)",
        )
    if stored_k is not None and int(k) != stored_k:
        raise bad(
            config,
            "trainer.k",
            f"is {k} but {ae.name} holds k={stored_k}",
            "make them agree (dictionary_learning's from_pretrained refuses this too)",
        )
    return int(k)


def _scalar_threshold(ae: Path, state: dict[str, Any], d_sae: int) -> torch.Tensor:
    threshold = tensor(ae, state, "threshold", (), _fix(ae))
    # ReLU(z)·1[ReLU(z) > t] = z·1[z > max(t, 0)]: −1 (not learned yet) means plain ReLU.
    return threshold.clamp_min(0.0).expand(d_sae).clone()


def _topk(state, trainer, ae, config) -> tuple[Weights, dict[str, Any]]:
    d_sae, d_in = _shape(ae, state, "encoder.weight", 2)
    fix = _fix(ae)
    w = Weights(
        "topk",
        W_enc=tensor(ae, state, "encoder.weight", (d_sae, d_in), fix).T.contiguous(),
        b_enc=tensor(ae, state, "encoder.bias", (d_sae,), fix),
        W_dec=tensor(ae, state, "decoder.weight", (d_in, d_sae), fix).T.contiguous(),
        b_dec=tensor(ae, state, "b_dec", (d_in,), fix),
        apply_b_dec_to_input=True,
        k=_k(state, trainer, ae, config),
    )
    info: dict[str, Any] = {}
    if isinstance(state.get("threshold"), torch.Tensor):
        info["unused_threshold"] = float(state["threshold"].float())
    return w, info


def _batchtopk(state, trainer, ae, config) -> tuple[Weights, dict[str, Any]]:
    w, _ = _topk(state, trainer, ae, config)
    w.architecture, w.threshold = "jumprelu", _scalar_threshold(ae, state, w.d_sae)
    k, w.k = w.k, None
    return w, {"k": k, "threshold": float(w.threshold[0]) if w.d_sae else 0.0}


def _matryoshka(state, trainer, ae, config) -> tuple[Weights, dict[str, Any]]:
    d_in, d_sae = _shape(ae, state, "W_enc", 2)
    fix = _fix(ae)
    w = Weights(
        "jumprelu",
        W_enc=tensor(ae, state, "W_enc", (d_in, d_sae), fix),
        b_enc=tensor(ae, state, "b_enc", (d_sae,), fix),
        W_dec=tensor(ae, state, "W_dec", (d_sae, d_in), fix),
        b_dec=tensor(ae, state, "b_dec", (d_in,), fix),
        apply_b_dec_to_input=True,
        threshold=_scalar_threshold(ae, state, d_sae),
    )
    groups = state.get("group_sizes")
    group_sizes = [int(g) for g in groups.tolist()] if isinstance(groups, torch.Tensor) else None
    group_sizes = group_sizes or trainer.get("group_sizes")
    if not group_sizes or sum(group_sizes) != d_sae:
        raise bad(
            ae,
            "group_sizes",
            f"is {group_sizes}, must be positive sizes summing to d_sae={d_sae}",
            _fix(ae),
        )
    return w, {"k": _k(state, trainer, ae, config), "group_sizes": list(group_sizes)}


def _jumprelu(state, trainer, ae, config) -> tuple[Weights, dict[str, Any]]:
    d_in, d_sae = _shape(ae, state, "W_enc", 2)
    fix = _fix(ae)
    w = Weights(
        "jumprelu",
        W_enc=tensor(ae, state, "W_enc", (d_in, d_sae), fix),
        b_enc=tensor(ae, state, "b_enc", (d_sae,), fix),
        W_dec=tensor(ae, state, "W_dec", (d_sae, d_in), fix),
        b_dec=tensor(ae, state, "b_dec", (d_in,), fix),
        apply_b_dec_to_input=False,  # JumpReluAutoEncoder's default after from_pretrained
        threshold=tensor(ae, state, "threshold", (d_sae,), fix).clamp_min(0.0),
    )
    return w, {}


CONVERTERS: dict[str, Converter] = {
    "AutoEncoder": _autoencoder,
    "AutoEncoderNew": _autoencoder_new,
    "GatedAutoEncoder": _gated,
    "AutoEncoderTopK": _topk,
    "BatchTopKSAE": _batchtopk,
    "MatryoshkaBatchTopKSAE": _matryoshka,
    "JumpReluAutoEncoder": _jumprelu,
}


def _detect(state: dict[str, Any], ae: Path, config: Path) -> str:
    """The class of a state_dict without config.json (its key set is unique, but for TopK)."""
    keys = set(state)
    if {"encoder.weight", "gate_bias", "mag_bias", "r_mag", "decoder_bias"} <= keys:
        return "GatedAutoEncoder"
    if {"W_enc", "group_sizes"} <= keys:
        return "MatryoshkaBatchTopKSAE"
    if "W_enc" in keys:
        return "JumpReluAutoEncoder"
    if {"encoder.weight", "bias"} <= keys:
        return "AutoEncoder"
    if {"encoder.weight", "decoder.bias"} <= keys:
        return "AutoEncoderNew"
    if {"encoder.weight", "b_dec"} <= keys:
        if "threshold" not in keys:
            return "AutoEncoderTopK"
        raise bad(
            config,
            "trainer.dict_class",
            f"missing, and {ae.name}'s tensors fit both AutoEncoderTopK (per-token top-k) and "
            "BatchTopKSAE (a learned threshold), which encode differently",
            'add config.json with {"trainer": {"dict_class": "AutoEncoderTopK"}} or '
            '"BatchTopKSAE" (dictionary_learning writes it beside ae.pt)',
        )
    raise bad(
        ae,
        None,
        f"holds tensors {', '.join(sorted(keys))}, no dictionary_learning class saebench knows",
        f"save one of {', '.join(CONVERTERS)}",
    )


def hook_from_config(trainer: dict[str, Any], buffer: dict[str, Any]) -> dict[str, Any]:
    """model_name, hook_name, context_size as far as config.json tells them."""
    metadata: dict[str, Any] = {}
    if trainer.get("lm_name"):
        metadata["model_name"] = trainer["lm_name"]
    if isinstance(buffer.get("ctx_len"), int):
        metadata["context_size"] = buffer["ctx_len"]
    submodule = trainer.get("submodule_name")
    layer = trainer.get("layer")
    match = SUBMODULE.fullmatch(str(submodule)) if submodule else None
    if submodule and TL_HOOK.fullmatch(str(submodule)):
        metadata["hook_name"] = submodule
    elif match:
        metadata["hook_name"] = f"blocks.{match.group(2)}.hook_{match.group(1)}"
    elif not submodule and isinstance(layer, int) and buffer.get("io", "out") == "out":
        # utils.get_submodule: the layer module itself, whose output is the residual stream
        # after block `layer`.
        metadata["hook_name"] = f"blocks.{layer}.hook_resid_post"
        metadata["hook_name_source"] = "trainer.layer (the output of layers[layer])"
    if layer is not None:
        metadata["layer"] = layer
    if submodule:
        metadata["submodule_name"] = submodule
    return metadata


def load_dictionary_learning(directory: Path, device: str | torch.device = "cpu"):
    ae = directory / AE
    config_path = directory / CONFIG
    try:
        raw = torch.load(ae, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 — pickle and zip errors have many types
        raise bad(
            ae,
            None,
            f"cannot be read by torch.load(weights_only=True) ({type(error).__name__}: {error})",
            _fix(ae),
        ) from None
    if not isinstance(raw, dict):
        raise bad(ae, None, f"holds a {type(raw).__name__}, not a state_dict", _fix(ae))
    norm_factor = None
    config = read_json(config_path, "dictionary_learning config") if config_path.exists() else {}
    trainer = config.get("trainer") or {}
    buffer = config.get("buffer") or {}
    if not isinstance(trainer, dict) or not isinstance(buffer, dict):
        raise bad(config_path, "trainer", "is not a JSON object", "restore config.json")
    state: dict[str, Any] = raw
    if isinstance(raw.get("ae"), dict):  # a mid-training backup
        state = raw["ae"]
        norm_factor = raw.get("norm_factor")
        if not trainer and isinstance(raw.get("config"), dict):
            trainer = raw["config"]
    dict_class = trainer.get("dict_class") or _detect(state, ae, config_path)
    if dict_class not in CONVERTERS:
        raise bad(
            config_path,
            "trainer.dict_class",
            f"{dict_class!r} is not a dictionary class saebench reads",
            f"use one of {', '.join(CONVERTERS)}",
        )
    w, info = CONVERTERS[dict_class](state, trainer, ae, config_path)
    for field_name, size in (("activation_dim", w.d_in), ("dict_size", w.d_sae)):
        stated = trainer.get(field_name)
        if isinstance(stated, int) and stated != size:
            raise bad(
                config_path,
                f"trainer.{field_name}",
                f"is {stated} but {ae.name} implies {size}",
                "use the config.json that was saved with this ae.pt",
            )
    if isinstance(norm_factor, int | float) and not isinstance(norm_factor, bool):
        scale_biases(w, float(norm_factor))
    recipe = {
        "source_format": "dictionary_learning",
        "source": str(directory),
        "dict_class": dict_class,
        "trainer_class": trainer.get("trainer_class"),
        "apply_b_dec_to_input": w.apply_b_dec_to_input,
        **({"k": w.k} if w.k is not None else {}),
        **info,
    }
    extras = {"format": "dictionary_learning", "path": str(directory), "config": json_safe(config)}
    return to_sae(
        w, ae, json_safe(recipe), json_safe(hook_from_config(trainer, buffer)), extras, device
    )


# --------------------------------------------------------------------------- writing
def dictionary_learning_files(w: Weights) -> tuple[str, dict[str, torch.Tensor]]:
    """(dict_class, state_dict) in dictionary_learning's layout for saebench Weights, with the
    same f and x̂ under that class's default encode/decode (for AutoEncoder: after
    from_pretrained's decoder normalisation, i.e. f·‖W_dec,i‖; the decoder is written already
    normalised so every reader agrees)."""
    if w.architecture == "standard" and w.apply_b_dec_to_input:
        fold_decoder_norm(w)
        state = {
            "bias": w.b_dec,
            "encoder.weight": w.W_enc.T,
            "encoder.bias": w.b_enc,
            "decoder.weight": w.W_dec.T,
        }
        return "AutoEncoder", _contiguous(state)
    if w.architecture == "standard":
        state = {
            "encoder.weight": w.W_enc.T,
            "encoder.bias": w.b_enc,
            "decoder.weight": w.W_dec.T,
            "decoder.bias": w.b_dec,
        }
        return "AutoEncoderNew", _contiguous(state)
    if w.architecture == "gated":
        set_b_dec_to_input(w, True)
        assert w.r_mag is not None and w.b_mag is not None
        state = {
            "decoder_bias": w.b_dec,
            "encoder.weight": w.W_enc.T,
            "r_mag": w.r_mag,
            "gate_bias": w.b_enc,
            "mag_bias": w.b_mag,
            "decoder.weight": w.W_dec.T,
        }
        return "GatedAutoEncoder", _contiguous(state)
    if w.architecture == "topk":
        set_b_dec_to_input(w, True)
        state = {
            "k": torch.tensor(int(w.k or 0), dtype=torch.int),
            "threshold": torch.tensor(-1.0, dtype=torch.float32),
            "decoder.weight": w.W_dec.T,
            "encoder.weight": w.W_enc.T,
            "encoder.bias": w.b_enc,
            "b_dec": w.b_dec,
        }
        return "AutoEncoderTopK", _contiguous(state)
    if w.architecture == "jumprelu":
        set_b_dec_to_input(w, False)
        assert w.threshold is not None
        state = {
            "W_enc": w.W_enc,
            "b_enc": w.b_enc,
            "W_dec": w.W_dec,
            "b_dec": w.b_dec,
            "threshold": w.threshold,
        }
        return "JumpReluAutoEncoder", _contiguous(state)
    raise bad("ae.pt", "architecture", f"{w.architecture!r} has no dictionary_learning class", "")


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        name: value.detach().cpu().contiguous()
        if not value.is_floating_point()
        else value.detach().cpu().float().contiguous()
        for name, value in state.items()
    }


def dictionary_learning_config(
    dict_class: str, w: Weights, metadata: dict[str, Any], recipe: dict[str, Any]
) -> dict[str, Any]:
    hook = metadata.get("hook_name")
    layer_match = re.match(r"blocks\.(\d+)\.(hook_resid_pre)?", str(hook)) if hook else None
    layer = None
    if layer_match:  # dictionary_learning's layer: the block whose output (or part) it reads
        layer = int(layer_match.group(1)) - (1 if layer_match.group(2) else 0)
    trainer: dict[str, Any] = {
        "dict_class": dict_class,
        "trainer_class": f"saebench:{recipe.get('method', 'unknown')}",
        "activation_dim": w.d_in,
        "dict_size": w.d_sae,
        "lm_name": metadata.get("model_name"),
        "layer": layer if layer is None or layer >= 0 else None,
        "submodule_name": hook,
        "saebench": recipe,
    }
    if dict_class == "AutoEncoderTopK":
        trainer["k"] = w.k
    buffer: dict[str, Any] = {"d_submodule": w.d_in, "io": "out"}
    if metadata.get("context_size") is not None:
        buffer["ctx_len"] = metadata["context_size"]
    return json_safe({"trainer": trainer, "buffer": buffer})
