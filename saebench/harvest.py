"""Harvest activations once, cache them on disk, serve shuffled batches from memory-mapped shards.

The key (`cache_key`) hashes everything that determines the activations: the model and a
fingerprint of its weights, the hook, the content hash of the --dataset file (None: the model's
own corpus), the token budgets, seed, context size, shard size and HARVEST_VERSION. Special tokens
(BOS/PAD/EOS/...) never enter the activations.

An entry is written into a temp directory under a per-key lock and renamed into place, with a
manifest (every file's size, .npy shape and dtype, sha256) that every open checks. A bad entry is
moved to <cache>/.quarantine/ and harvested again; temp directories of dead harvests are removed.
docs/cache.md describes the layout and the `saebench cache ls|verify|clean` commands.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from saebench.errors import ConfigError, SaebenchError
from saebench.models import ACCEPTED_HOOKS_TEXT, FileCorpus

SHARD_TOKENS = 65_536
DEFAULT_CACHE = Path(os.environ.get("SAEBENCH_CACHE", ".saebench_cache"))
# Part of every key: bump it whenever the harvesting code changes what it writes (tokens, packing,
# files, manifest), so entries of older code are never reused for the new code's numbers.
HARVEST_VERSION = 2

INFO = "info.json"
MANIFEST = "manifest.json"
QUARANTINE = ".quarantine"
OWNER = ".harvester"  # "host pid" of the process filling a temp dir; removed before publishing
EVAL_FILES = ("eval_acts.npy", "eval_tokens.npy", "eval_mask.npy")
ENTRY_NAME = re.compile(r"[0-9a-f]{20}")
TEMP_NAME = re.compile(r"\.(?P<key>[0-9a-f]{20})\..+\.(tmp|old)")
LOCK_NAME = re.compile(r"\.(?P<key>[0-9a-f]{20})\.lock")
# A temp dir nobody on this host is known to own is a leftover once untouched this long (its
# harvester refreshes OWNER after every shard).
STALE_TEMP_SECONDS = 3600
# Verify-on-open hashes files up to this size whole and larger ones at SAMPLE_BLOCKS evenly spaced
# blocks (first and last included): all of a smoke entry (14 MB, ~11 ms), ~25 MiB of a default
# one (215 MB). `saebench cache verify` hashes everything. docs/cache.md has the timings.
FULL_HASH_ON_OPEN_BYTES = 16 << 20
SAMPLE_BLOCKS = 8
SAMPLE_BLOCK_BYTES = 256 << 10
# _tokens_for asks the corpus for more texts at most this often before it gives up with an error.
MAX_CORPUS_CALLS = 100

Echo = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- tokens -------------------------------------------------------------------------------------


def weights_fingerprint(bridge) -> str:
    """Cheap identity of the weights: a hash of a few summary numbers of every tensor."""
    digest = hashlib.sha256()
    for name, tensor in sorted(bridge.state_dict().items()):
        if torch.is_tensor(tensor) and tensor.is_floating_point() and tensor.numel():
            flat = tensor.detach().float().flatten()
            digest.update(
                f"{name}{tuple(tensor.shape)}{flat.sum().item():.6e}{flat[:8].tolist()}".encode()
            )
    # The toy model's local attention lives in a mask buffer, which state_dict() leaves out;
    # two models that differ only in it compute different activations.
    config = getattr(bridge, "cfg", None)
    if local_layers := getattr(config, "local_attention_layers", None):
        window = getattr(config, "local_attention_window", None)
        digest.update(f"local_attention{local_layers}{window}".encode())
    return digest.hexdigest()[:16]


class _Packer:
    """Rows of BOS + whole texts packed until full, built incrementally: each distinct text is
    tokenised once, however often the corpus repeats it or the caller asks for more. A text
    longer than a row is split into row-sized pieces rather than cut."""

    def __init__(self, tokenizer, context_size: int, special_ids: Iterable[int] = ()):
        bos = tokenizer.bos_token_id
        self.bos = bos if bos is not None else tokenizer.cls_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.tokenizer, self.context_size = tokenizer, context_size
        self.special = frozenset(special_ids)
        self.rows: list[list[int]] = []
        self.row: list[int] = [self.bos]
        self.closed_real = 0  # real (non-special) tokens in self.rows
        self._ids: dict[str, list[int]] = {}

    def add(self, texts: Iterable[str]) -> None:
        width = self.context_size - 1
        for text in texts:
            ids = self._ids.get(text)
            if ids is None:
                ids = self._ids[text] = self.tokenizer.encode(text, add_special_tokens=False)
            for start in range(0, len(ids), width):
                piece = ids[start : start + width]
                if len(self.row) + len(piece) > self.context_size:
                    self.closed_real += self._real(self.row)
                    self.rows.append(self.row)
                    self.row = [self.bos]
                self.row.extend(piece)

    def _real(self, row: list[int]) -> int:
        return sum(1 for token in row if token not in self.special)

    @property
    def real_tokens(self) -> int:
        return self.closed_real + self._real(self.row)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [*self.rows, self.row]
        tokens = torch.full((len(rows), self.context_size), self.pad, dtype=torch.long)
        for index, ids in enumerate(rows):
            tokens[index, : len(ids)] = torch.tensor(ids)
        lengths = torch.tensor([len(ids) for ids in rows])
        return tokens, torch.arange(self.context_size)[None] < lengths[:, None]


def pack_texts(tokenizer, texts, context_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[n, ctx] token rows: BOS + whole texts packed until full, padded; and the in-row mask."""
    packer = _Packer(tokenizer, context_size)
    packer.add(texts)
    return packer.tensors()


def real_token_mask(tokens: torch.Tensor, in_row: torch.Tensor, special_ids) -> torch.Tensor:
    mask = in_row.clone()
    for special in special_ids:
        mask &= tokens != special
    return mask


def _corpus_name(handle, split: str) -> str:
    if isinstance(handle.corpus, FileCorpus):
        return f"--dataset {handle.corpus.path}"
    return f"the {split} corpus of model {handle.name}"


def _tokens_for(handle, split: str, n_tokens: int, seed: int):
    """Pack corpus texts until at least n_tokens real tokens; a corpus that cannot get there in
    MAX_CORPUS_CALLS requests fails at once with a ConfigError instead of looping."""
    packer = _Packer(handle.tokenizer, handle.context_size, handle.special_token_ids)
    per_call = max(64, n_tokens // 8)
    for call in range(MAX_CORPUS_CALLS):
        packer.add(handle.corpus(split, per_call, seed * 1000 + call))
        if packer.real_tokens >= n_tokens:
            break
        _check_progress(handle, split, n_tokens, (call + 1) * per_call, packer.real_tokens)
    tokens, in_row = packer.tensors()
    mask = real_token_mask(tokens, in_row, handle.special_token_ids)
    # Keep just enough rows for n_tokens real tokens (the budget, not the overshoot).
    rows = int((mask.sum(1).cumsum(0) < n_tokens).sum()) + 1
    return tokens[:rows], mask[:rows]


def _check_progress(handle, split: str, n_tokens: int, n_texts: int, real: int) -> None:
    """Fail fast when the budget is out of reach: no known token at all, or too few per text to
    get there within MAX_CORPUS_CALLS requests."""
    source = _corpus_name(handle, split)
    if real == 0:
        raise ConfigError(
            f"{source} yields no tokens the model {handle.name} knows ({n_texts:,} texts gave "
            "only special or unknown tokens): its words are outside the model's vocabulary; "
            "pass a --dataset in the model's language, or a model whose tokenizer covers it"
        )
    per_call = max(64, n_tokens // 8)
    if real / n_texts * per_call * MAX_CORPUS_CALLS < n_tokens:
        raise ConfigError(
            f"{source} yields too few tokens the model {handle.name} knows ({real:,} in "
            f"{n_texts:,} texts, {n_tokens:,} needed): most of its words are outside the "
            "model's vocabulary; pass a --dataset the tokenizer covers, or a smaller --preset"
        )


# --- activations --------------------------------------------------------------------------------


@torch.no_grad()
def activations_at(
    handle, hook: str, tokens: torch.Tensor, mask: torch.Tensor, device, batch_size: int = 32
):
    """Yield [n_real_tokens_in_batch, d] float32 CPU activations, batch by batch."""
    for start in range(0, len(tokens), batch_size):
        batch = tokens[start : start + batch_size].to(device)
        _, cache = handle.bridge.run_with_cache(batch, names_filter=hook)
        acts = cache[hook]
        if acts.dim() != 3 or tuple(acts.shape[:2]) != tuple(batch.shape):
            raise ConfigError(
                f"hook {hook} gives activations of shape {tuple(acts.shape)}, not one vector per "
                f"token ([batch, position, d]); harvest {ACCEPTED_HOOKS_TEXT}"
            )
        yield acts.float().cpu()[mask[start : start + batch_size]]


# --- manifest -----------------------------------------------------------------------------------


class CacheEntryError(SaebenchError):
    """A cache entry that must not be used: corrupt (it disagrees with its manifest) or stale
    (written by older code). `harvest` quarantines it and harvests again."""

    def __init__(self, directory: Path, problem: str, stale: bool = False):
        self.directory, self.problem, self.stale = Path(directory), problem, stale
        super().__init__(
            f"activation cache entry {self.directory.name} ({self.directory}) {problem}; "
            "rerun the command to harvest it again, or run `saebench cache verify --quarantine`"
        )


def _sample_ranges(size: int) -> list[tuple[int, int]]:
    """(offset, length) of the blocks a sampled hash reads: evenly spaced, first and last."""
    if size <= SAMPLE_BLOCKS * SAMPLE_BLOCK_BYTES:
        return [(0, size)]
    step = (size - SAMPLE_BLOCK_BYTES) / (SAMPLE_BLOCKS - 1)
    return [(round(i * step), SAMPLE_BLOCK_BYTES) for i in range(SAMPLE_BLOCKS)]


def _sha256(path: Path, ranges: list[tuple[int, int]] | None = None) -> str:
    """sha256 of the whole file, or of the given byte ranges in order."""
    with open(path, "rb") as file:
        if ranges is None:
            return hashlib.file_digest(file, "sha256").hexdigest()
        digest = hashlib.sha256()
        for offset, length in ranges:
            file.seek(offset)
            digest.update(file.read(length))
        return digest.hexdigest()


def _npy_header(path: Path) -> tuple[list[int], str]:
    """(shape, dtype string) from a .npy header, without reading the data."""
    with open(path, "rb") as file:
        version = np.lib.format.read_magic(file)
        readers = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }
        if version not in readers:
            raise ValueError(f"unsupported .npy version {version}")
        shape, _, dtype = readers[version](file)
    return list(shape), dtype.str


def _file_record(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    record: dict[str, Any] = {"bytes": size, "sha256": _sha256(path)}
    if size > FULL_HASH_ON_OPEN_BYTES:
        record["sampled_sha256"] = _sha256(path, _sample_ranges(size))
    if path.suffix == ".npy":
        record["shape"], record["dtype"] = _npy_header(path)
    return record


def write_manifest(directory: Path, key: str) -> None:
    """manifest.json: size, sha256 (and a sampled sha256 for large files), .npy shape and dtype
    of every file of the entry."""
    files = {
        path.name: _file_record(path)
        for path in sorted(directory.iterdir())
        if path.is_file() and path.name != MANIFEST
    }
    manifest = {"harvester_version": HARVEST_VERSION, "key": key, "files": files}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.exists():
        if (directory / INFO).exists():
            raise CacheEntryError(
                directory, "has no manifest.json (written by older saebench code)", stale=True
            )
        raise CacheEntryError(directory, "has neither manifest.json nor info.json")
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        if not all(isinstance(record, dict) for record in files.values()):
            raise TypeError("a file record is not an object")
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CacheEntryError(directory, f"has a corrupt manifest.json ({error})") from None
    version = manifest.get("harvester_version")
    if version != HARVEST_VERSION:
        raise CacheEntryError(
            directory,
            f"was written by harvester version {version} (this code writes {HARVEST_VERSION})",
            stale=True,
        )
    if manifest.get("key") != directory.name:
        raise CacheEntryError(directory, f"has the manifest of entry {manifest.get('key')}")
    return manifest


def _file_problem(path: Path, record: dict[str, Any], full: bool) -> str | None:
    """What is wrong with one file against its manifest record (None: nothing)."""
    if not path.is_file():
        return "is missing"
    size, expected = path.stat().st_size, record.get("bytes")
    if size != expected:
        said = f"{expected:,}" if isinstance(expected, int) else repr(expected)
        return f"has {size:,} bytes where the manifest says {said} (truncated?)"
    if "shape" in record:
        try:
            header = _npy_header(path)
        except ValueError as error:
            return f"has no valid .npy header ({error})"
        if header != (record["shape"], record.get("dtype")):
            return f"holds {header} where the manifest says {(record['shape'], record['dtype'])}"
    if full or "sampled_sha256" not in record:
        if _sha256(path) != record.get("sha256"):
            return "does not match its sha256 in the manifest (its bytes changed)"
    elif _sha256(path, _sample_ranges(size)) != record["sampled_sha256"]:
        return "does not match its sampled sha256 in the manifest (its bytes changed)"
    return None


def verify_entry(directory: Path, full: bool = False) -> tuple[dict[str, Any], list[Path]]:
    """(info.json, train shards) of an entry after checking every file against its manifest:
    sizes and .npy headers; hashes of small files and sampled blocks of large ones, or of every
    byte with `full`. Raises CacheEntryError naming what is wrong."""
    directory = Path(directory)
    files = _read_manifest(directory)["files"]
    shards = sorted(name for name in files if name.startswith("train_"))
    missing = sorted({INFO, *EVAL_FILES} - set(files))
    if missing or not shards:
        raise CacheEntryError(directory, f"has a manifest without {missing or 'train shards'}")
    for name, record in sorted(files.items()):
        problem = _file_problem(directory / name, record, full)
        if problem:
            raise CacheEntryError(directory, f"is corrupt: {name} {problem}")
    try:
        info = json.loads((directory / INFO).read_text())
        consistent = info["key"] == directory.name and info["n_train_tokens"] == sum(
            files[name]["shape"][0] for name in shards
        )
    except (ValueError, KeyError, TypeError, IndexError):
        consistent = False
    if not consistent:
        raise CacheEntryError(directory, "is corrupt: info.json disagrees with its manifest")
    # The manifest's shards, not a glob: a stray train_*.npy is never served.
    return info, [directory / name for name in shards]


class HarvestedStore:
    """The ActivationSource over one cache entry (see saebench.activations). Opening it checks
    the entry against its manifest (`full`: every byte) and raises CacheEntryError if it is bad."""

    def __init__(self, directory: Path, full: bool = False):
        self.directory = Path(directory)
        self.info, self.shards = verify_entry(self.directory, full)
        self.d_in = self.info["d_in"]
        self.n_train_tokens = self.info["n_train_tokens"]
        self.eval_acts = torch.from_numpy(np.load(self.directory / "eval_acts.npy"))
        self.eval_tokens = torch.from_numpy(np.load(self.directory / "eval_tokens.npy"))
        self.eval_mask = torch.from_numpy(np.load(self.directory / "eval_mask.npy"))

    def _shard(self, index):
        return np.load(self.shards[index], mmap_mode="r")

    def train_batches(self, batch_size: int, seed: int, device):
        """Endless batches: shard order and within-shard order reshuffled every epoch."""
        generator = np.random.default_rng(seed)
        while True:
            for shard_index in generator.permutation(len(self.shards)):
                shard = self._shard(shard_index)
                order = generator.permutation(len(shard))
                for start in range(0, len(order) - batch_size + 1, batch_size):
                    rows = np.sort(order[start : start + batch_size])  # sorted reads are faster
                    yield torch.from_numpy(np.ascontiguousarray(shard[rows])).to(device)

    def sample(self, n: int, seed: int) -> torch.Tensor:
        generator = np.random.default_rng(seed)
        per_shard = [self._shard(i) for i in range(len(self.shards))]
        sizes = np.array([len(s) for s in per_shard])
        picks = np.sort(generator.choice(sizes.sum(), size=min(n, sizes.sum()), replace=False))
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        rows = [
            per_shard[i][picks[(picks >= bounds[i]) & (picks < bounds[i + 1])] - bounds[i]]
            for i in range(len(per_shard))
        ]
        return torch.from_numpy(np.concatenate(rows)).float()


# --- key ----------------------------------------------------------------------------------------


def dataset_id(handle, dataset: str | os.PathLike | None = None) -> str | None:
    """sha256 of the bytes of the dataset file the handle's corpus was read from (None: the
    model's own corpus). `dataset`, when given, must be that file."""
    corpus = handle.corpus
    if isinstance(corpus, FileCorpus):
        if dataset is not None and Path(dataset).expanduser().resolve() != corpus.path.resolve():
            raise ConfigError(
                f"harvest was asked for dataset {dataset} but model {handle.name} was loaded "
                f"with --dataset {corpus.path}; load the model with the dataset to harvest"
            )
        return corpus.sha256
    if dataset is None:
        return None
    # A model plugin that reads --dataset its own way: key by the file's content all the same.
    path = Path(dataset).expanduser()
    if not path.is_file():
        raise ConfigError(f"dataset file {path} does not exist or is not a file")
    return _sha256(path)


def cache_key(handle, hook, n_train_tokens, n_eval_tokens, seed, dataset_id) -> tuple[str, dict]:
    """(key, what it hashes): everything that determines the entry's contents."""
    described = {
        "model": handle.name,
        "source": handle.info.get("source"),
        "weights": weights_fingerprint(handle.bridge),
        "hook": hook,
        "dataset": dataset_id,
        "n_train_tokens": n_train_tokens,
        "n_eval_tokens": n_eval_tokens,
        "seed": seed,
        "context_size": handle.context_size,
        "shard_tokens": SHARD_TOKENS,  # the shard layout decides the order batches are served in
        "harvester_version": HARVEST_VERSION,
    }
    key = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:20]
    return key, described


# --- locks, leftovers, quarantine ---------------------------------------------------------------


def _lock_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / f".{key}.lock"


@contextlib.contextmanager
def key_lock(cache_dir: Path, key: str, echo: Echo = _stderr) -> Iterator[None]:
    """Hold <cache>/.<key>.lock (flock; the OS drops it if the process dies). The holder deletes
    the file as it lets go, so a waiter that then gets the lock on the deleted file retries."""
    path = _lock_path(cache_dir, key)
    waited = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not waited:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "?"
                echo(f"waiting for another process (host, pid: {holder}) harvesting entry {key}")
                waited = True
            fcntl.flock(fd, fcntl.LOCK_EX)
        if _same_file(fd, path):
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{socket.gethostname()} {os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def lock_is_held(cache_dir: Path, key: str) -> bool:
    """Whether a live process holds the key's lock (a harvest of that key is under way)."""
    try:
        fd = os.open(_lock_path(cache_dir, key), os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _owner(directory: Path) -> tuple[str, int] | None:
    try:
        host, pid = (directory / OWNER).read_text().split()
        return host, int(pid)
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _dead_reason(directory: Path, key: str, cache_dir: Path) -> str | None:
    """Why a temp dir is a dead harvest's leftover; None while its harvest may be running."""
    owner = _owner(directory)
    if owner and owner[0] == socket.gethostname():
        if not _pid_alive(owner[1]):
            return f"its harvester, pid {owner[1]}, is gone"
        # A live pid without the key's lock is a reused pid, not the harvester.
        return None if lock_is_held(cache_dir, key) else f"pid {owner[1]} holds no lock on it"
    stamps = [p.stat().st_mtime for p in (directory, directory / OWNER) if p.exists()]
    age = time.time() - max(stamps, default=0.0)
    if age > STALE_TEMP_SECONDS and not lock_is_held(cache_dir, key):
        return f"untouched for {age / 3600:.1f} h"
    return None


def temp_dirs(cache_dir: Path) -> list[tuple[Path, str]]:
    """Every temp dir of a harvest in the cache with its key."""
    if not cache_dir.is_dir():
        return []
    found = []
    for path in sorted(cache_dir.iterdir()):
        match = TEMP_NAME.fullmatch(path.name)
        if match and path.is_dir():
            found.append((path, match["key"]))
    return found


def disk_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).stat().st_size
    return total


def remove_leftovers(cache_dir: Path, echo: Echo = _stderr) -> list[Path]:
    """Delete the temp dirs of harvests that died (killed, crashed machine); never a live one's."""
    removed = []
    for path, key in temp_dirs(cache_dir):
        reason = _dead_reason(path, key, cache_dir)
        if reason is None:
            continue
        size = disk_size(path)
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            echo(f"removed {path.name} ({size / 2**20:,.1f} MiB), left by a dead harvest: {reason}")
            removed.append(path)
    return removed


def quarantine(directory: Path, reason: str) -> Path:
    """Move an entry aside to <cache>/.quarantine/<key>-<UTC time> with a note of why."""
    folder = directory.parent / QUARANTINE
    folder.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target, n = folder / f"{directory.name}-{stamp}", 1
    while target.exists():
        target, n = folder / f"{directory.name}-{stamp}-{n}", n + 1
    os.replace(directory, target)
    with contextlib.suppress(OSError):
        (target / "QUARANTINED.txt").write_text(reason + "\n")
    return target


# --- harvesting ---------------------------------------------------------------------------------


def _write_train_shards(
    directory: Path, handle, hook: str, n_train_tokens: int, seed: int, device, batch_size: int
) -> tuple[int | None, int]:
    """Train activations as train_NNNN.npy shards of about SHARD_TOKENS rows: (d_in, tokens)."""
    tokens, mask = _tokens_for(handle, "train", n_train_tokens, seed)
    buffer, shard_index, total, d_in = [], 0, 0, None
    for acts in activations_at(handle, hook, tokens, mask, device, batch_size):
        acts = acts[: n_train_tokens - total]
        buffer.append(acts.numpy())
        total += len(acts)
        d_in = acts.shape[1]
        if sum(len(b) for b in buffer) >= SHARD_TOKENS or total >= n_train_tokens:
            np.save(directory / f"train_{shard_index:04d}.npy", np.concatenate(buffer))
            buffer, shard_index = [], shard_index + 1
            with contextlib.suppress(OSError):
                os.utime(directory / OWNER)  # a heartbeat: this temp dir is alive
        if total >= n_train_tokens:
            break
    return d_in, total


def _write_eval(
    directory: Path, handle, hook: str, n_eval_tokens: int, seed: int, device, batch_size: int
) -> dict[str, int]:
    """Held-out activations, token rows and real-token mask; returns their sizes for info.json."""
    eval_tokens, eval_in_row = _tokens_for(handle, "eval", n_eval_tokens, seed)
    eval_mask = real_token_mask(eval_tokens, eval_in_row, handle.special_token_ids)
    eval_acts = torch.cat(
        list(activations_at(handle, hook, eval_tokens, eval_mask, device, batch_size))
    )
    np.save(directory / "eval_acts.npy", eval_acts.numpy())
    np.save(directory / "eval_tokens.npy", eval_tokens.numpy())
    np.save(directory / "eval_mask.npy", eval_mask.numpy())
    return {"n_eval_tokens_actual": int(eval_mask.sum()), "n_eval_sequences": len(eval_tokens)}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
            os.fsync(fd)
    finally:
        os.close(fd)


def _honour_umask(directory: Path) -> None:
    """mkdtemp makes 0700 directories: give the entry the mode a plain mkdir would, so others
    sharing the cache (a Ray cluster's nodes, colleagues) can read it."""
    mask = os.umask(0)
    os.umask(mask)
    with contextlib.suppress(OSError):
        os.chmod(directory, 0o777 & ~mask)


def _publish(tmp: Path, directory: Path) -> bool:
    """Rename the finished temp dir into place; False when another process got there first."""
    try:
        os.rename(tmp, directory)
    except OSError as error:
        if error.errno in (errno.ENOTEMPTY, errno.EEXIST) and directory.is_dir():
            return False
        raise
    return True


@dataclass(frozen=True)
class _Job:
    """What one harvest runs: the cache key is computed from all of it but device and batch."""

    handle: Any
    hook: str
    n_train_tokens: int
    n_eval_tokens: int
    seed: int
    device: Any
    batch_size: int


def _harvest_entry(directory: Path, described: dict, job: _Job, echo: Echo) -> None:
    """Write the entry into a temp dir (owned: host and pid) and rename it into place."""
    key = directory.name
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{key}.", suffix=".tmp"))
    try:
        (tmp / OWNER).write_text(f"{socket.gethostname()} {os.getpid()}\n")
        handle, hook, device, batch = job.handle, job.hook, job.device, job.batch_size
        d_in, total = _write_train_shards(
            tmp, handle, hook, job.n_train_tokens, job.seed, device, batch
        )
        eval_info = _write_eval(tmp, handle, hook, job.n_eval_tokens, job.seed + 1, device, batch)
        corpus = handle.corpus
        info = dict(
            described,
            key=key,
            d_in=d_in,
            n_train_tokens=total,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            dataset_file=str(corpus.path.resolve()) if isinstance(corpus, FileCorpus) else None,
            **eval_info,
        )
        (tmp / INFO).write_text(json.dumps(info, indent=2))
        (tmp / OWNER).unlink()
        write_manifest(tmp, key)
        # Flushed before the rename: a crash right after it cannot publish empty files.
        for path in [*tmp.iterdir(), tmp]:
            _fsync(path)
        _honour_umask(tmp)
        if not _publish(tmp, directory):
            echo(f"cache entry {key} was published by another process first; using that one")
        _fsync(directory.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _open_or_quarantine(directory: Path, echo: Echo) -> HarvestedStore | None:
    """The verified store, or None when there is none (a bad entry is quarantined first)."""
    if not directory.exists():
        return None
    try:
        return HarvestedStore(directory)
    except CacheEntryError as error:
        where = quarantine(directory, error.problem)
        echo(
            f"cache entry {directory.name} {error.problem}: moved it to {where}; harvesting it "
            "again"
        )
        return None


def harvest(
    handle,
    hook: str,
    n_train_tokens: int,
    n_eval_tokens: int,
    seed: int = 0,
    cache_dir: Path | None = None,
    device="cpu",
    batch_size: int = 32,
    dataset: str | os.PathLike | None = None,
    echo: Echo | None = None,
) -> HarvestedStore:
    """Harvest (or reuse) train and eval activations at `hook`; return the store.

    `dataset`: the --dataset file the handle was loaded with (checked against the handle, which
    knows it anyway). `echo` gets the one-line notices (waiting for another harvest, a bad
    entry quarantined, leftovers removed); default: stderr."""
    echo = echo or _stderr
    cache_dir = Path(cache_dir or DEFAULT_CACHE)
    key, described = cache_key(
        handle, hook, n_train_tokens, n_eval_tokens, seed, dataset_id(handle, dataset)
    )
    directory = cache_dir / key
    if directory.is_dir():
        # The common case, a warm entry, without touching the lock (a read-only cache works);
        # anything wrong is looked at again under the lock.
        with contextlib.suppress(CacheEntryError, OSError):
            return HarvestedStore(directory)
    cache_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers(cache_dir, echo)
    with key_lock(cache_dir, key, echo):
        store = _open_or_quarantine(directory, echo)  # another process may have just made it
        if store is None:
            job = _Job(handle, hook, n_train_tokens, n_eval_tokens, seed, device, batch_size)
            _harvest_entry(directory, described, job, echo)
            store = HarvestedStore(directory)
    return store
