"""Atomic writes: nothing saebench writes is ever left half-written."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _honour_umask(path: Path, mode: int) -> None:
    """mkstemp/mkdtemp create 0600/0700 whatever the umask: give what we publish the modes a
    plain open()/mkdir() would, so collaborators on a shared filesystem can read the run."""
    with contextlib.suppress(OSError):
        os.chmod(path, mode & ~_umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The data is fsynced before the rename, so a crash never publishes an empty file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        _fsync(Path(tmp))
        _honour_umask(Path(tmp), 0o666)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary directory beside `path`; publish it as `path` only if the block
    succeeds, replacing any directory already there. On failure `path` is left as it was and the
    temporary directory is removed.

    What the block wrote is fsynced before the rename, so a crash right after it cannot leave a
    published directory whose files are still empty on disk.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        _fsync_tree(tmp)
        # Some writers (safetensors) create 0600 files whatever the umask: fix every file.
        for directory, _, files in os.walk(tmp):
            _honour_umask(Path(directory), 0o777)
            for name in files:
                _honour_umask(Path(directory) / name, 0o666)
        _replace_directory(tmp, path)
        _fsync(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _replace_directory(new: Path, path: Path) -> None:
    """Rename `new` onto `path`. A rename cannot replace a non-empty directory, so an existing
    one is first renamed aside (readers see the old or the new tree, never a mix) and then
    deleted; if the second rename fails the old tree is put back."""
    if not path.exists():
        os.replace(new, path)
        return
    old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
    os.replace(path, old)
    try:
        os.replace(new, path)
    except BaseException:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for directory, _, files in os.walk(root):
        for name in files:
            _fsync(Path(directory) / name)
        _fsync(Path(directory))


def _fsync(path: Path) -> None:
    """Flush one file or directory entry to disk (directories: where the OS allows it)."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() and hasattr(os, "O_DIRECTORY") else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # e.g. directories cannot be opened on Windows
        return
    try:
        with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
            os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def save_figure(fig, path: str | os.PathLike, **kwargs) -> None:
    """`fig.savefig(path)` atomically; `fig` may be a matplotlib Figure or a seaborn grid."""
    path = Path(path)
    with atomic_path(path) as tmp:
        # The temp name ends in .tmp, so name the format or matplotlib would guess from that.
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **kwargs)
