"""SAEs trained elsewhere as methods of a run: `--methods topk,pretrained:PATH`, `saebench eval`.

`pretrained:PATH` names one saved SAE (a directory saebench.saved_format.load_sae reads:
SAELens, dictionary_learning, sparsify) or a directory of them (one per subfolder, sorted by
name). A directory of SAEs is one method whose knob is the SAE's index in that order, so a
family trained at several sparsities gets an L0 curve and enters the matched-L0 comparison like
any sweep. The SAEs are loaded, not trained ("fitted" by loading, `trainable=False`), and must
read the run's activations: their d_in must match, and the hook and model they record in their
metadata must not contradict the run's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saebench.errors import ConfigError
from saebench.specs import MethodSpec

PREFIX = "pretrained:"
# Files that mark a directory as one saved SAE, per format.
SAE_FILES = ("cfg.json", "ae.pt", "sae.safetensors", "sae_weights.safetensors")


def is_pretrained(name: str) -> bool:
    return name.startswith(PREFIX)


def is_sae_directory(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in SAE_FILES)


HUB_PREFIX = "saelens:"  # saelens:RELEASE/ID, resolved by saebench.saved_format.load_sae


def sae_paths(path: str | Path) -> list[Path | str]:
    """The SAEs PATH names: a hub name (saelens:RELEASE/ID) as it is, a saved SAE directory, or
    every SAE directory below PATH (at any depth, e.g. an exported run's <method>/<knob>/seedN),
    sorted by their path relative to it."""
    if str(path).startswith(HUB_PREFIX):
        return [str(path)]
    root = Path(path).expanduser()
    if not root.exists():
        raise ConfigError(f"pretrained SAE path {root} does not exist; pass a saved SAE directory")
    if is_sae_directory(root):
        return [root]
    found: list[Path | str] = sorted(
        {p.parent for name in SAE_FILES for p in root.rglob(name) if is_sae_directory(p.parent)}
    )
    if not found:
        raise ConfigError(
            f"{root} holds no saved SAE: expected cfg.json + sae_weights.safetensors (SAELens), "
            "ae.pt + config.json (dictionary_learning) or cfg.json + sae.safetensors (sparsify), "
            "in it or in its subfolders"
        )
    return found


def method_name(path: str | Path) -> str:
    """A run-directory-safe method name for PATH: pretrained-<folder name> (or the hub id)."""
    text = str(path)
    name = text.removeprefix(HUB_PREFIX) if text.startswith(HUB_PREFIX) else None
    if name is None:
        name = Path(path).expanduser().resolve().name
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
    return f"pretrained-{label or 'sae'}"


@dataclass(frozen=True)
class PretrainedSAE:
    """The `build` result of a pretrained method: `fit` loads the SAE instead of fitting one."""

    path: Path | str
    method: str

    def fit(self, sample) -> Any:
        from saebench.saved_format import load_sae

        sae = load_sae(self.path)
        d_in = int(sample.shape[1])
        if sae.d_in != d_in:
            raise ConfigError(
                f"{self.path}: the SAE reads d_in={sae.d_in}, but the run's activations have "
                f"d_in={d_in}; pass the --model/--hook the SAE was trained on"
            )
        sae.cfg = {**getattr(sae, "cfg", {}), "pretrained_from": str(self.path)}
        return sae


def pretrained_spec(argument: str) -> MethodSpec:
    """The MethodSpec of `pretrained:PATH` (its knobs: the SAEs' indices)."""
    path = argument.removeprefix(PREFIX)
    if not path:
        raise ConfigError("pretrained: needs a path, e.g. --methods pretrained:/path/to/sae")
    paths = sae_paths(path)
    name = method_name(path)

    def build(d_in: int, d_sae: int, knob: float) -> PretrainedSAE:
        index = int(knob)
        if not 0 <= index < len(paths):
            raise ConfigError(f"{name}: no SAE number {index} (it has {len(paths)})")
        return PretrainedSAE(paths[index], name)

    listing = ", ".join(f"{i}: {Path(str(p)).name}" for i, p in enumerate(paths))
    knobs = list(range(len(paths)))
    return MethodSpec(
        name=name,
        description=f"pretrained SAE(s) from {Path(path).expanduser()} ({listing})",
        knob="index",
        build=build,
        sweeps={preset: knobs for preset in ("smoke", "default", "full")},
        knob_is_integer=True,
        knob_min=0,
        knob_max=len(paths) - 1,
        trainable=False,
        plugin="pretrained",
    )


def recorded_metadata(argument: str) -> list[tuple[Path | str, dict]]:
    """(path, metadata) of every SAE `pretrained:PATH` names: model_name, hook_name, ... as
    their files record them (empty when a format records none)."""
    from saebench.saved_format import load_sae

    out = []
    for path in sae_paths(argument.removeprefix(PREFIX)):
        sae = load_sae(path)
        out.append((path, dict(getattr(sae, "metadata", None) or {})))
    return out


def check_recorded_model_and_hook(argument: str, model: str, model_argument: str, hook: str):
    """Refuse a run whose model or hook contradicts what an SAE records in its metadata."""
    for path, metadata in recorded_metadata(argument):
        recorded_hook = metadata.get("hook_name")
        if recorded_hook and recorded_hook != hook:
            raise ConfigError(
                f"{path} was trained on hook {recorded_hook!r}, but this run reads {hook!r}; "
                f"pass --hook {recorded_hook} (or another SAE)"
            )
        recorded_model = metadata.get("model_name")
        if (
            recorded_model
            and recorded_model not in (model, model_argument)
            and not (model_argument.endswith(str(recorded_model)))
        ):
            raise ConfigError(
                f"{path} was trained on model {recorded_model!r}, but this run loads {model!r} "
                f"(--model {model_argument}); pass the SAE's model, e.g. --model "
                f"hf:{recorded_model}"
            )
