"""Save and load SAEs in the SAELens-compatible format; also read dictionary_learning's.

SAELens layout: `sae_weights.safetensors` (W_enc [d, m], b_enc, W_dec [m, d], b_dec, plus
r_mag/b_mag for gated, threshold for jumprelu) and `cfg.json` (d_in, d_sae, dtype,
architecture, apply_b_dec_to_input, normalize_activations, k, metadata{...}, saebench recipe).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from saebench.architectures import ARCHITECTURES
from saebench.errors import ConfigError

WEIGHTS = "sae_weights.safetensors"
CONFIG = "cfg.json"
INFERENCE_PARAMETERS = ("W_enc", "b_enc", "W_dec", "b_dec", "r_mag", "b_mag", "threshold")


def save_sae(sae, directory, metadata: dict | None = None) -> Path:
    """Write the SAE atomically: a temp directory renamed into place."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in
                 sae.state_dict().items() if name in INFERENCE_PARAMETERS}
        save_file(state, str(tmp / WEIGHTS))
        cfg = {
            "d_in": sae.d_in, "d_sae": sae.d_sae, "dtype": "float32",
            "architecture": sae.architecture,
            "apply_b_dec_to_input": sae.apply_b_dec_to_input,
            # Normalisation is folded into the weights: the saved SAE works on raw activations.
            "normalize_activations": "none",
            "metadata": dict(metadata or {}),
            "saebench": sae.cfg,
        }
        if hasattr(sae, "k"):
            cfg["k"] = sae.k
        (tmp / CONFIG).write_text(json.dumps(cfg, indent=2, default=str) + "\n")
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load_sae(directory, device="cpu"):
    """Load a saved SAE (SAELens format, or dictionary_learning's ae.pt + config.json)."""
    directory = Path(directory)
    if (directory / WEIGHTS).exists():
        return _load_saelens(directory, device)
    if (directory / "ae.pt").exists():
        return _load_dictionary_learning(directory, device)
    raise ConfigError(f"no SAE in {directory}: expected {WEIGHTS} + {CONFIG} (SAELens) "
                      f"or ae.pt + config.json (dictionary_learning)")


def _build(architecture: str, d_in: int, d_sae: int, apply_b_dec: bool, k=None, cfg=None):
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"unknown SAE architecture {architecture!r}; "
                          f"supported: {', '.join(ARCHITECTURES)}")
    extra = {"k": k} if architecture == "topk" else {}
    sae = ARCHITECTURES[architecture](d_in, d_sae, apply_b_dec_to_input=apply_b_dec, **extra)
    sae.cfg = dict(cfg or {})
    return sae


def _load_saelens(directory: Path, device):
    from safetensors.torch import load_file

    cfg = json.loads((directory / CONFIG).read_text())
    architecture = cfg.get("architecture", "standard")
    sae = _build(architecture, cfg["d_in"], cfg["d_sae"], cfg.get("apply_b_dec_to_input", True),
                 k=cfg.get("k"), cfg=cfg.get("saebench", {}))
    state = load_file(str(directory / WEIGHTS))
    if cfg.get("normalize_activations") not in (None, "none"):
        raise ConfigError(f"{directory}: normalize_activations={cfg['normalize_activations']!r} "
                          f"is not supported; fold the scale into the weights first")
    sae.load_state_dict(state, strict=False)
    missing = {"W_enc", "b_enc", "W_dec", "b_dec"} - set(state)
    if missing:
        raise ConfigError(f"{directory / WEIGHTS} lacks {sorted(missing)}")
    sae.metadata = cfg.get("metadata", {})
    return sae.to(device).eval()


def _load_dictionary_learning(directory: Path, device):
    """dictionary_learning stores nn.Linear weights: encoder.weight [m, d], decoder.weight [d, m]."""
    state = torch.load(directory / "ae.pt", map_location="cpu", weights_only=True)
    config = {}
    if (directory / "config.json").exists():
        config = json.loads((directory / "config.json").read_text()).get("trainer", {})
    encoder, decoder = state["encoder.weight"], state["decoder.weight"]
    d_sae, d_in = encoder.shape
    k = state.get("k", config.get("k"))
    architecture = "topk" if k is not None else "standard"
    sae = _build(architecture, d_in, d_sae, True, k=int(k) if k is not None else None)
    with torch.no_grad():
        sae.W_enc.copy_(encoder.T)
        sae.W_dec.copy_(decoder.T)
        sae.b_enc.copy_(state.get("encoder.bias", torch.zeros(d_sae)))
        sae.b_dec.copy_(state.get("b_dec", state.get("bias", torch.zeros(d_in))))
    return sae.to(device).eval()
