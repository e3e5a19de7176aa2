"""Atomic writes: nothing saebench writes is ever left half-written."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def save_figure(fig, path, **kwargs) -> None:
    """`fig.savefig(path)` atomically; `fig` may be a matplotlib Figure or a seaborn grid."""
    path = Path(path)
    with atomic_path(path) as tmp:
        # The temp name ends in .tmp, so name the format or matplotlib would guess from that.
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **kwargs)
