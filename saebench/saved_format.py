"""Save and load SAEs in the SAELens-compatible format; also read dictionary_learning's.

SAELens layout: `sae_weights.safetensors` (W_enc [d, m], b_enc, W_dec [m, d], b_dec, plus
r_mag/b_mag for gated, threshold for jumprelu) and `cfg.json` (d_in, d_sae, dtype,
architecture, apply_b_dec_to_input, normalize_activations, k, metadata{...}, saebench recipe).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from saebench.architectures import ARCHITECTURES
from saebench.errors import ConfigError
from saebench.fileio import atomic_directory

WEIGHTS = "sae_weights.safetensors"
CONFIG = "cfg.json"
INFERENCE_PARAMETERS = ("W_enc", "b_enc", "W_dec", "b_dec", "r_mag", "b_mag", "threshold")


def save_sae(sae, directory: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write the SAE atomically: a temp directory renamed into place (replacing an old one)."""
    from safetensors.torch import save_file

    with atomic_directory(directory) as tmp:
        save_file(_inference_state(sae), str(tmp / WEIGHTS))
        cfg = _saelens_cfg(sae, metadata)
        (tmp / CONFIG).write_text(json.dumps(cfg, indent=2, default=str) + "\n")
    return Path(directory)


def _inference_state(sae) -> dict[str, torch.Tensor]:
    """The inference tensors, float32 on CPU, under their SAELens names."""
    state = {
        name: tensor.detach().cpu().float().contiguous()
        for name, tensor in sae.state_dict().items()
        if name in INFERENCE_PARAMETERS
    }
    if sae.architecture == "gated":
        state["b_gate"] = state.pop("b_enc")  # SAELens names the gate bias b_gate
    return state


def _saelens_cfg(sae, metadata: dict | None) -> dict:
    cfg = {
        "d_in": sae.d_in,
        "d_sae": sae.d_sae,
        "dtype": "float32",
        "architecture": sae.architecture,
        "apply_b_dec_to_input": sae.apply_b_dec_to_input,
        # Normalisation is folded into the weights: the saved SAE works on raw activations.
        "normalize_activations": "none",
        "metadata": dict(metadata or {}),
        "saebench": sae.cfg,
    }
    if hasattr(sae, "k"):
        cfg["k"] = sae.k
    return cfg


def load_sae(directory, device="cpu"):
    """Load a saved SAE (SAELens format, or dictionary_learning's ae.pt + config.json)."""
    directory = Path(directory)
    if (directory / WEIGHTS).exists():
        return _load_saelens(directory, device)
    if (directory / "ae.pt").exists():
        return _load_dictionary_learning(directory, device)
    raise ConfigError(
        f"no SAE in {directory}: expected {WEIGHTS} + {CONFIG} (SAELens) "
        f"or ae.pt + config.json (dictionary_learning)"
    )


def _build(architecture: str, d_in: int, d_sae: int, apply_b_dec: bool, k=None, cfg=None):
    if architecture not in ARCHITECTURES:
        raise ConfigError(
            f"unknown SAE architecture {architecture!r}; supported: {', '.join(ARCHITECTURES)}"
        )
    extra = {"k": k} if architecture == "topk" else {}
    sae = ARCHITECTURES[architecture](d_in, d_sae, apply_b_dec_to_input=apply_b_dec, **extra)
    sae.cfg = dict(cfg or {})
    return sae


def _load_saelens(directory: Path, device):
    from safetensors.torch import load_file

    cfg = json.loads((directory / CONFIG).read_text())
    architecture = cfg.get("architecture", "standard")
    sae = _build(
        architecture,
        cfg["d_in"],
        cfg["d_sae"],
        cfg.get("apply_b_dec_to_input", True),
        k=cfg.get("k"),
        cfg=cfg.get("saebench", {}),
    )
    state = load_file(str(directory / WEIGHTS))
    if cfg.get("normalize_activations") not in (None, "none"):
        raise ConfigError(
            f"{directory}: normalize_activations={cfg['normalize_activations']!r} "
            f"is not supported; fold the scale into the weights first"
        )
    if "b_gate" in state:
        state["b_enc"] = state.pop("b_gate")
    missing = {"W_enc", "b_enc", "W_dec", "b_dec"} - set(state)
    if architecture == "gated":
        missing |= {"r_mag", "b_mag"} - set(state)
    if architecture == "jumprelu":
        missing |= {"threshold"} - set(state)
    if missing:
        raise ConfigError(
            f"{directory / WEIGHTS} lacks {sorted(missing)} needed by a "
            f"{architecture!r} SAE; re-save it with saebench.saved_format.save_sae"
        )
    for name, tensor in state.items():
        expected = getattr(sae, name, None)
        if expected is not None and expected.shape != tensor.shape:
            raise ConfigError(
                f"{directory / WEIGHTS}: {name} has shape {tuple(tensor.shape)} "
                f"but cfg.json (d_in={cfg['d_in']}, d_sae={cfg['d_sae']}) implies "
                f"{tuple(expected.shape)}"
            )
    sae.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    sae.metadata = cfg.get("metadata", {})
    return sae.to(device).eval()


def _load_dictionary_learning(directory: Path, device):
    """dictionary_learning's ae.pt (+ config.json).

    nn.Linear layouts (AutoEncoder, AutoEncoderTopK, BatchTopKSAE) store encoder.weight [m, d]
    and decoder.weight [d, m], so they are transposed; JumpReluAutoEncoder already stores
    W_enc [d, m] / W_dec [m, d]. A `threshold` (BatchTopK's uniform scalar, or JumpReLU's per
    latent vector) makes it a jumprelu SAE; a `k` without threshold makes it topk.
    """
    state = torch.load(directory / "ae.pt", map_location="cpu", weights_only=True)
    config = {}
    if (directory / "config.json").exists():
        config = json.loads((directory / "config.json").read_text()).get("trainer", {})
    if "W_enc" in state:
        W_enc, W_dec = state["W_enc"], state["W_dec"]
        b_enc, b_dec = state.get("b_enc"), state.get("b_dec")
    elif "encoder.weight" in state:
        W_enc, W_dec = state["encoder.weight"].T, state["decoder.weight"].T
        b_enc, b_dec = state.get("encoder.bias"), state.get("b_dec", state.get("bias"))
    else:
        raise ConfigError(
            f"{directory / 'ae.pt'}: expected encoder.weight/decoder.weight "
            f"(nn.Linear) or W_enc/W_dec; found {sorted(state)}"
        )
    d_in, d_sae = W_enc.shape
    k = state.get("k", config.get("k"))
    threshold = state.get("threshold")
    if threshold is not None and float(torch.as_tensor(threshold).float().max()) >= 0:
        architecture = "jumprelu"
    elif k is not None:
        architecture = "topk"
    else:
        architecture = "standard"
    sae = _build(
        architecture,
        d_in,
        d_sae,
        True,
        k=int(k) if architecture == "topk" else None,
        cfg={"source": "dictionary_learning", "trainer": config},
    )
    with torch.no_grad():
        sae.W_enc.copy_(W_enc)
        sae.W_dec.copy_(W_dec)
        sae.b_enc.copy_(b_enc if b_enc is not None else torch.zeros(d_sae))
        sae.b_dec.copy_(b_dec if b_dec is not None else torch.zeros(d_in))
        if architecture == "jumprelu":
            sae.threshold.copy_(torch.as_tensor(threshold).float().expand(d_sae))
    return sae.to(device).eval()
