"""Save SAEs in the SAELens layout; load SAELens, dictionary_learning and sparsify SAEs.

`save_sae` writes `sae_weights.safetensors` (W_enc [d, m], b_enc, W_dec [m, d], b_dec, plus
b_gate (for b_enc)/r_mag/b_mag for gated, threshold for jumprelu) and `cfg.json` with the fields
SAELens 6's SAEConfig writes (d_in, d_sae, dtype, device, apply_b_dec_to_input,
normalize_activations "none", reshape_activations, architecture, k, metadata{...}) plus the
saebench recipe under "saebench".

`load_sae` reads any of the anchors' layouts, or `saelens:RELEASE/ID` through the Hugging Face
cache, and returns one of saebench.architectures' inference SAEs that computes what the anchor's
library computes (see saebench/formats/ for each format's definition and what is folded into
the weights or refused). The SAE carries `.metadata` (model_name, hook_name, context_size, ...),
`.cfg` and `.extras` (e.g. extras["log_feature_sparsity"] from SAELens's sparsity.safetensors).
`write_sae` writes an SAE in the SAELens or dictionary_learning layout for those libraries
(`saebench export`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from saebench.fileio import atomic_directory
from saebench.formats import FormatError, load
from saebench.formats import dictionary_learning as _dl
from saebench.formats import saelens as _saelens
from saebench.formats.common import weights_of

WEIGHTS = _saelens.WEIGHTS
CONFIG = _saelens.CONFIG
INFERENCE_PARAMETERS = ("W_enc", "b_enc", "W_dec", "b_dec", "r_mag", "b_mag", "threshold")
EXPORT_FORMATS = ("saelens", "dictionary_learning")


def save_sae(sae, directory: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write the SAE atomically: a temp directory renamed into place (replacing an old one)."""
    from safetensors.torch import save_file

    w = weights_of(sae)
    with atomic_directory(directory) as tmp:
        save_file(_saelens.saelens_state(w), str(tmp / WEIGHTS))
        cfg = _saelens.saelens_config(w, dict(metadata or {}), dict(sae.cfg))
        (tmp / CONFIG).write_text(json.dumps(cfg, indent=2, default=str) + "\n")
    return Path(directory)


def load_sae(
    directory: str | os.PathLike,
    device: str | torch.device = "cpu",
    *,
    scaling_factor: float | None = None,
):
    """Load a saved SAE: a SAELens, dictionary_learning or sparsify directory (or a file in
    one), or `saelens:RELEASE/ID`. `scaling_factor` is the s of a SAELens SAE trained with
    normalize_activations="expected_average_only_in" (on x·s) that stores none; it is folded
    into the weights so the SAE reads raw activations."""
    return load(directory, device, scaling_factor=scaling_factor)


def write_sae(sae, directory: str | os.PathLike, format: str, metadata: dict | None = None) -> Path:
    """Write `sae` atomically in `format`'s own layout (exactly as SAELens / dictionary_learning
    write theirs), so that library loads it: SAELens's SAE.load_from_disk(directory), or
    dictionary_learning's utils.load_dictionary(directory). Refuses what the library would
    compute differently (a negative JumpReLU threshold)."""
    metadata = dict(metadata if metadata is not None else getattr(sae, "metadata", {}) or {})
    recipe = dict(getattr(sae, "cfg", {}) or {})
    w = _saelens.export_weights(sae, str(directory))
    if format == "saelens":
        from safetensors.torch import save_file

        with atomic_directory(directory) as tmp:
            save_file(_saelens.saelens_state(w), str(tmp / WEIGHTS))
            cfg = _saelens.saelens_config(w, _saelens.saelens_export_metadata(metadata), recipe)
            (tmp / CONFIG).write_text(json.dumps(cfg, indent=2) + "\n")
        return Path(directory)
    if format == "dictionary_learning":
        dict_class, state = _dl.dictionary_learning_files(w)
        config = _dl.dictionary_learning_config(dict_class, w, metadata, recipe)
        with atomic_directory(directory) as tmp:
            torch.save(state, tmp / _dl.AE)
            (tmp / _dl.CONFIG).write_text(json.dumps(config, indent=4) + "\n")
        return Path(directory)
    raise FormatError(
        f"unknown export format {format!r}. Fix: use one of {', '.join(EXPORT_FORMATS)}"
    )


def estimate_scaling_factor(activations: torch.Tensor) -> float:
    """SAELens's expected_average_only_in factor s = √d_in / E‖x‖ (ActivationScaler) of
    activations [n, d_in]: pass it as load_sae(..., scaling_factor=s) for an SAE that stores
    none (use the activations it was trained on: same model, hook and data distribution)."""
    x = activations.reshape(-1, activations.shape[-1]).float()
    mean_norm = float(x.norm(dim=-1).mean())
    if not (math.isfinite(mean_norm) and mean_norm > 0):
        raise FormatError(
            f"cannot estimate a scaling factor: the activations' mean norm is {mean_norm}. "
            "Fix: pass real activations of the SAE's hook"
        )
    return math.sqrt(x.shape[-1]) / mean_norm


__all__: list[Any] = [
    "CONFIG",
    "EXPORT_FORMATS",
    "WEIGHTS",
    "estimate_scaling_factor",
    "load_sae",
    "save_sae",
    "write_sae",
]
