"""What every format reader and writer shares: errors that name the file, the field and the fix;
safe file reads; shape checks; the exact weight foldings; building the inference SAE.

Every reader turns its format into `Weights` (saebench's parameterisation: W_enc [d_in, d_sae],
b_enc, W_dec [d_sae, d_in], b_dec, plus r_mag/b_mag for gated, threshold for jumprelu, k for
topk) and hands it to `to_sae`, so the loaded object is always one of the inference classes of
saebench.architectures and reloads without the reader.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from saebench.architectures import ARCHITECTURES
from saebench.errors import ConfigError

# The floating dtypes SAELens accepts in cfg.json's "dtype" (sae_lens.constants.DTYPE_MAP).
DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "torch.float32": torch.float32,
    "torch.float64": torch.float64,
    "torch.float16": torch.float16,
    "torch.bfloat16": torch.bfloat16,
}


class FormatError(ConfigError):
    """A saved SAE that cannot be read as it is: names the file, the field and the fix."""


def bad(file: Path | str, field_name: str | None, problem: str, fix: str) -> FormatError:
    where = f"{file}" + (f": {field_name}" if field_name else "")
    return FormatError(f"{where}: {problem}. Fix: {fix}")


def read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise bad(path, None, f"missing ({what})", f"put the {what} beside the weights") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise bad(
            path, None, f"cannot be read as JSON ({error})", f"restore the {what} file"
        ) from None
    if not isinstance(data, dict):
        raise bad(path, None, f"holds a {type(data).__name__}, not a JSON object", "restore it")
    return data


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.exists():
        raise bad(path, None, "missing (the weights)", "copy the weights file into the directory")
    try:
        return load_file(str(path))
    except Exception as error:  # noqa: BLE001 — safetensors raises several types
        raise bad(
            path,
            None,
            f"cannot be read as safetensors ({type(error).__name__}: {error})",
            "download or save the weights again (the file is truncated or not safetensors)",
        ) from None


def int_field(file: Path, cfg: dict[str, Any], name: str, fix: str) -> int:
    value = cfg.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        problem = "missing" if value is None else f"is {value!r}, not a whole number"
        raise bad(file, name, problem, fix)
    if int(value) < 1:
        raise bad(file, name, f"is {value}, must be at least 1", fix)
    return int(value)


def tensor(
    file: Path, state: dict[str, torch.Tensor], name: str, shape: tuple[int, ...], fix: str
) -> torch.Tensor:
    """state[name] as float32 with the expected shape, or an error naming both."""
    if name not in state:
        raise bad(file, name, f"missing (found {', '.join(sorted(state)) or 'no tensors'})", fix)
    value = state[name]
    if not isinstance(value, torch.Tensor):
        raise bad(file, name, f"is a {type(value).__name__}, not a tensor", fix)
    if tuple(value.shape) != shape:
        raise bad(file, name, f"has shape {tuple(value.shape)}, expected {shape}", fix)
    if not value.is_floating_point():
        raise bad(file, name, f"has dtype {value.dtype}, expected a floating dtype", fix)
    return value.detach().to(torch.float32).contiguous()


@dataclass
class Weights:
    """An SAE in saebench's parameterisation, before it becomes an inference object."""

    architecture: str
    W_enc: torch.Tensor
    b_enc: torch.Tensor
    W_dec: torch.Tensor
    b_dec: torch.Tensor
    apply_b_dec_to_input: bool = True
    r_mag: torch.Tensor | None = None
    b_mag: torch.Tensor | None = None
    threshold: torch.Tensor | None = None
    k: int | None = None
    folds: list[str] = field(default_factory=list)  # what was folded in, in order

    @property
    def d_in(self) -> int:
        return int(self.W_enc.shape[0])

    @property
    def d_sae(self) -> int:
        return int(self.W_enc.shape[1])

    def check_finite(self, file: Path) -> None:
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "r_mag", "b_mag", "threshold"):
            value = getattr(self, name)
            if value is not None and not torch.isfinite(value).all():
                raise bad(
                    file,
                    name,
                    "holds NaN or infinite values",
                    "use a checkpoint whose weights are finite",
                )


def fold_decoder_norm(w: Weights) -> None:
    """Make each decoder row unit norm, scaling the encoder to keep x̂ (and the top-k choice):
    W_dec /= n, W_enc *= n, b_enc *= n (b_mag and threshold too) with n = ‖W_dec row‖. The
    latents become f·n: exactly what SAELens's `rescale_acts_by_decoder_norm` TopK returns and
    what dictionary_learning's AutoEncoder.from_pretrained(normalize_decoder=True) gives. Rows
    of norm 0 are left as they are (they decode to nothing either way)."""
    norms = w.W_dec.norm(dim=1)
    n = torch.where(norms > 0, norms, torch.ones_like(norms))
    w.W_dec = w.W_dec / n[:, None]
    w.W_enc = w.W_enc * n[None, :]
    w.b_enc = w.b_enc * n
    if w.b_mag is not None:
        w.b_mag = w.b_mag * n
    if w.threshold is not None:
        w.threshold = w.threshold * n
    w.folds.append("decoder_norm")


def fold_input_scale(w: Weights, scale: float) -> None:
    """An SAE trained on x·scale, made to read raw x: W_enc *= scale, W_dec /= scale,
    b_dec /= scale (SAELens's fold_activation_norm_scaling_factor; the latents are unchanged)."""
    w.W_enc = w.W_enc * scale
    w.W_dec = w.W_dec / scale
    w.b_dec = w.b_dec / scale
    w.folds.append(f"input_scale={scale!r}")


def scale_biases(w: Weights, factor: float) -> None:
    """dictionary_learning's scale_biases: an SAE trained on x/factor made to read raw x, with
    latents ×factor (biases and thresholds scale, weights do not)."""
    w.b_enc = w.b_enc * factor
    w.b_dec = w.b_dec * factor
    if w.b_mag is not None:
        w.b_mag = w.b_mag * factor
    if w.threshold is not None:
        w.threshold = w.threshold * factor
    w.folds.append(f"scale_biases={factor!r}")


def set_b_dec_to_input(w: Weights, apply: bool) -> None:
    """Rewrite the encoder biases so the SAE does (or does not) subtract b_dec from its input,
    with the same outputs: (x − b_dec)·W + b' = x·W + b  ⇔  b' = b + b_dec·W."""
    if w.apply_b_dec_to_input == apply:
        return
    sign = 1.0 if apply else -1.0
    shift = w.b_dec @ w.W_enc
    w.b_enc = w.b_enc + sign * shift
    if w.b_mag is not None and w.r_mag is not None:
        w.b_mag = w.b_mag + sign * shift * torch.exp(w.r_mag)
    w.apply_b_dec_to_input = apply


def to_sae(
    w: Weights,
    file: Path,
    cfg: dict[str, Any],
    metadata: dict[str, Any],
    extras: dict[str, Any],
    device: str | torch.device = "cpu",
):
    """The inference SAE (one of saebench.architectures) holding `w`, with `.cfg` (JSON-safe:
    the source and what was folded), `.metadata` (model_name, hook_name, context_size, ... as
    the files record them) and `.extras` (not saved: e.g. SAELens's log feature sparsity)."""
    if w.architecture not in ARCHITECTURES:
        raise bad(
            file,
            "architecture",
            f"{w.architecture!r} is not an saebench architecture",
            f"use one of {', '.join(ARCHITECTURES)}",
        )
    w.check_finite(file)
    kwargs: dict[str, Any] = {"apply_b_dec_to_input": w.apply_b_dec_to_input}
    if w.architecture == "topk":
        if w.k is None or not 1 <= w.k <= w.d_sae:
            raise bad(
                file,
                "k",
                f"is {w.k}, must be between 1 and d_sae={w.d_sae}",
                "record the k the SAE was trained with",
            )
        kwargs["k"] = int(w.k)
    sae: Any = ARCHITECTURES[w.architecture](w.d_in, w.d_sae, **kwargs)
    with torch.no_grad():
        sae.W_enc.copy_(w.W_enc)
        sae.b_enc.copy_(w.b_enc)
        sae.W_dec.copy_(w.W_dec)
        sae.b_dec.copy_(w.b_dec)
        if w.architecture == "gated":
            assert w.r_mag is not None and w.b_mag is not None
            sae.r_mag.copy_(w.r_mag)
            sae.b_mag.copy_(w.b_mag)
        if w.architecture == "jumprelu":
            assert w.threshold is not None
            sae.threshold.copy_(w.threshold.expand(w.d_sae))
    sae.cfg = {**cfg, **({"folded": list(w.folds)} if w.folds else {})}
    sae.metadata = dict(metadata)
    sae.extras = dict(extras)
    return sae.to(device).eval()


def weights_of(sae) -> Weights:
    """The Weights of an inference SAE (float32 CPU copies), for the writers."""
    state = {name: t.detach().cpu().float().clone() for name, t in sae.state_dict().items()}
    architecture = sae.architecture
    if architecture not in ARCHITECTURES:
        raise ConfigError(
            f"an SAE of architecture {architecture!r} cannot be written; saved SAEs must be one "
            f"of {', '.join(ARCHITECTURES)} (saebench.architectures)"
        )
    return Weights(
        architecture=architecture,
        W_enc=state["W_enc"],
        b_enc=state["b_enc"],
        W_dec=state["W_dec"],
        b_dec=state["b_dec"],
        apply_b_dec_to_input=bool(sae.apply_b_dec_to_input),
        r_mag=state.get("r_mag"),
        b_mag=state.get("b_mag"),
        threshold=state.get("threshold"),
        k=int(sae.k) if architecture == "topk" else None,
    )


def json_safe(value: Any) -> Any:
    """`value` with tensors and non-finite floats made JSON-writable (for cfg and metadata)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, torch.Tensor):
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
