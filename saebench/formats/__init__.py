"""Readers and writers of the anchors' SAE layouts: SAELens (`saelens`, and the hub form
`saelens:RELEASE/ID` in `hub`), dictionary_learning (`dictionary_learning`) and EleutherAI's
sparsify (`sparsify`). The public entry points are saebench.saved_format.load_sae / save_sae;
`load` here is the dispatcher they use.

Every reader returns one of saebench.architectures' inference SAEs, with `.metadata` (model_name,
hook_name, context_size, ... as the files record them), `.cfg` (JSON: where it came from and
what was folded into the weights) and `.extras` (not saved: the raw config, SAELens's log
feature sparsity, ...). A directory that cannot be read as it is fails with a FormatError (a
ConfigError) that names the file, the field and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

from saebench.formats import dictionary_learning, saelens, sparsify
from saebench.formats.common import FormatError
from saebench.formats.hub import PREFIX as HUB_PREFIX
from saebench.formats.hub import is_hub_name, load_hub

FORMATS = ("saelens", "dictionary_learning", "sparsify")
EXPECTED = (
    f"{saelens.CONFIG} + {saelens.WEIGHTS} (SAELens), {dictionary_learning.AE} + "
    f"{dictionary_learning.CONFIG} (dictionary_learning) or {sparsify.CONFIG} + "
    f"{sparsify.WEIGHTS} (sparsify)"
)
MARKERS = (saelens.WEIGHTS, sparsify.WEIGHTS, dictionary_learning.AE)


def detect(directory: Path) -> str | None:
    if saelens.is_saelens_directory(directory):
        return "saelens"
    if sparsify.is_sparsify_directory(directory):
        return "sparsify"
    if dictionary_learning.is_dictionary_learning_directory(directory):
        return "dictionary_learning"
    return None


def load(path: str | os.PathLike, device="cpu", *, scaling_factor: float | None = None):
    """The SAE saved at `path` (a directory, a file in one, or `saelens:RELEASE/ID`)."""
    if is_hub_name(os.fspath(path)):
        return load_hub(os.fspath(path), device, scaling_factor=scaling_factor)
    directory = Path(path).expanduser()
    if directory.is_file() and directory.name in (*MARKERS, saelens.CONFIG, "config.json"):
        directory = directory.parent
    if not directory.exists():
        raise FormatError(
            f"{directory}: no such directory. Fix: pass a saved SAE directory ({EXPECTED}) "
            f"or {HUB_PREFIX}RELEASE/ID"
        )
    if not directory.is_dir():
        raise FormatError(f"{directory}: not a directory. Fix: pass the folder holding {EXPECTED}")
    kind = detect(directory)
    if kind is not None and scaling_factor is not None and kind != "saelens":
        raise FormatError(
            f"{directory}: scaling_factor is for SAELens SAEs with normalize_activations "
            f"'expected_average_only_in'; this is a {kind} SAE, whose weights read raw "
            "activations. Fix: drop scaling_factor"
        )
    if kind == "saelens":
        return saelens.load_saelens(directory, device, scaling_factor=scaling_factor)
    if kind == "sparsify":
        return sparsify.load_sparsify(directory, device)
    if kind == "dictionary_learning":
        return dictionary_learning.load_dictionary_learning(directory, device)
    raise _no_sae(directory)


def _no_sae(directory: Path) -> FormatError:
    children = sorted(
        child.name
        for child in directory.iterdir()
        if child.is_dir() and any((child / name).exists() for name in MARKERS)
    )
    if children:
        shown = ", ".join(children[:4]) + (", ..." if len(children) > 4 else "")
        return FormatError(
            f"{directory} holds {len(children)} SAEs in subfolders ({shown}), not one. Fix: "
            "load one subfolder (saebench eval --sae and pretrained: take the whole directory)"
        )
    if (directory / saelens.CONFIG).exists():
        return FormatError(
            f"{directory / saelens.CONFIG} has no weights beside it: expected "
            f"{saelens.WEIGHTS} (SAELens) or {sparsify.WEIGHTS} (sparsify). Fix: copy the "
            "weights file into the directory"
        )
    if (directory / dictionary_learning.CONFIG).exists():
        return FormatError(
            f"{directory / dictionary_learning.CONFIG} has no {dictionary_learning.AE} beside "
            "it. Fix: copy the dictionary_learning weights (ae.pt) into the directory"
        )
    return FormatError(f"no SAE in {directory}: expected {EXPECTED}. Fix: pass an SAE directory")


__all__ = ["FORMATS", "FormatError", "detect", "load"]
