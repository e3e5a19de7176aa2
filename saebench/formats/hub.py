"""`saelens:RELEASE/ID`: a SAELens release resolved through the Hugging Face cache.

RELEASE/ID is looked up in SAELens's release table (sae_lens/pretrained_saes.yaml, read from an
installed sae_lens without importing it) as SAE.from_pretrained does: the release gives the repo
and the ID the folder (and, for some, norm_scaling_factor and config_overrides). A RELEASE that
is not in the table is taken as a Hugging Face repo, `saelens:OWNER/REPO/FOLDER`, as SAELens
does for a release name containing "/". The files come from huggingface_hub: with
HF_HUB_OFFLINE=1 only from the local cache. Anything that cannot be fetched fails with a message
telling the user to pass a local directory instead. Only releases in the SAELens layout
(conversion_func null) are read; other releases need SAELens's own converters.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from saebench.formats.common import FormatError, read_json
from saebench.formats.saelens import CONFIG, SPARSITY, WEIGHTS, load_saelens

PREFIX = "saelens:"
OFFLINE_VALUES = ("1", "true", "yes", "on")


def is_hub_name(name: Any) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def release_table() -> dict[str, Any] | None:
    """SAELens's pretrained_saes.yaml as a dict, or None when sae_lens is not installed."""
    spec = importlib.util.find_spec("sae_lens")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained_saes.yaml"
    if not path.exists():
        return None
    yaml = importlib.import_module("yaml")  # PyYAML (a dependency of transformers)
    data = yaml.safe_load(path.read_text())
    return data if isinstance(data, dict) else None


def _offline() -> bool:
    import huggingface_hub.constants as hf_constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return bool(getattr(hf_constants, "HF_HUB_OFFLINE", False)) or env in OFFLINE_VALUES


def resolve(name: str) -> dict[str, Any]:
    """{repo_id, folder, release, sae_id, scaling_factor, cfg_overrides} for `name`."""
    rest = name[len(PREFIX) :].strip("/")
    release, _, sae_id = rest.partition("/")
    usage = (
        "write saelens:RELEASE/ID (a SAELens release and SAE id, e.g. "
        "saelens:gpt2-small-res-jb/blocks.8.hook_resid_pre) or saelens:OWNER/REPO/FOLDER, "
        "or pass a local SAE directory"
    )
    if not release or not sae_id:
        raise FormatError(f"{name!r}: no SAE id after the release. Fix: {usage}")
    table = release_table()
    if table is not None and release in table:
        entry = table[release] or {}
        saes = {s.get("id"): s for s in entry.get("saes") or [] if isinstance(s, dict)}
        if sae_id not in saes:
            valid = ", ".join(str(i) for i in list(saes)[:5]) + (", ..." if len(saes) > 5 else "")
            raise FormatError(
                f"{name!r}: SAELens release {release!r} has no SAE {sae_id!r}. Fix: use one of "
                f"its ids ({valid})"
            )
        converter = entry.get("conversion_func")
        if converter:
            raise FormatError(
                f"{name!r}: release {release!r} is stored in another layout (SAELens converts it "
                f"with conversion_func {converter!r}), not SAELens's. Fix: convert it with SAELens "
                "(SAE.from_pretrained(release, id).save_model(DIR)) and pass DIR"
            )
        sae = saes[sae_id]
        return {
            "repo_id": entry["repo_id"],
            "folder": str(sae["path"]).strip("/"),
            "release": release,
            "sae_id": sae_id,
            "scaling_factor": sae.get("norm_scaling_factor"),
            "cfg_overrides": dict(entry.get("config_overrides") or {}),
        }
    parts = rest.split("/")
    note = (
        ""
        if table is not None
        else " (sae_lens is not installed, so release names cannot be looked up: it was read "
        "as OWNER/REPO/FOLDER)"
    )
    return {
        "repo_id": "/".join(parts[:2]),
        "folder": "/".join(parts[2:]),
        "release": None,
        "sae_id": None,
        "scaling_factor": None,
        "cfg_overrides": {},
        "note": note,
    }


def _download(
    info: dict[str, Any], filename: str, name: str, optional: bool = False
) -> Path | None:
    from huggingface_hub import hf_hub_download

    path = f"{info['folder']}/{filename}" if info["folder"] else filename
    offline = _offline()
    try:
        downloaded = hf_hub_download(
            repo_id=info["repo_id"],
            filename=path,
            cache_dir=os.environ.get("HF_HUB_CACHE") or None,
            local_files_only=offline,
        )
        return Path(downloaded)
    except Exception as error:  # noqa: BLE001 — offline, unreachable, missing: all end here
        if optional:
            return None
        why = (
            "HF_HUB_OFFLINE=1 and it is not in the local Hugging Face cache"
            if offline
            else f"the Hugging Face Hub could not provide it ({type(error).__name__})"
        )
        raise FormatError(
            f"{name!r}: cannot fetch {info['repo_id']}/{path}: {why}{info.get('note', '')}. "
            f"Fix: pass a local directory instead (download {CONFIG} and {WEIGHTS} of "
            f"{info['repo_id']}/{info['folder'] or '.'} and give its path), or fetch it into "
            "the cache while online"
        ) from None


def load_hub(name: str, device="cpu", *, scaling_factor: float | None = None):
    info = resolve(name)
    cfg_path = _download(info, CONFIG, name)
    weights_path = _download(info, WEIGHTS, name)
    sparsity_path = _download(info, SPARSITY, name, optional=True)
    assert cfg_path is not None and weights_path is not None  # not optional: raised otherwise
    factor = scaling_factor if scaling_factor is not None else info["scaling_factor"]
    normalize = read_json(cfg_path, "SAELens config (cfg.json)").get("normalize_activations")
    if normalize != "expected_average_only_in" and scaling_factor is None:
        factor = None  # the release table's factor only applies to such SAEs (as in SAELens)
    sae = load_saelens(
        cfg_path.parent,
        device,
        scaling_factor=factor,
        cfg_path=cfg_path,
        weights_path=weights_path,
        sparsity_path=sparsity_path,
        cfg_overrides=info["cfg_overrides"],
        source=name,
    )
    sae.extras.update(repo_id=info["repo_id"], folder=info["folder"])
    return sae
