"""Harvest activations once, cache them on disk, serve shuffled batches from memory-mapped shards.

Key: a hash of (model, weights fingerprint, hook, dataset, token budgets, seed, context size).
A cache entry is written to a temp directory and renamed into place, so an interrupted harvest
never leaves a half entry. Special tokens (BOS/PAD/EOS/...) never enter the activations.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from saebench.fileio import atomic_directory

SHARD_TOKENS = 65_536
DEFAULT_CACHE = Path(os.environ.get("SAEBENCH_CACHE", ".saebench_cache"))


def weights_fingerprint(bridge) -> str:
    """Cheap identity of the weights: a hash of a few summary numbers of every tensor."""
    digest = hashlib.sha256()
    for name, tensor in sorted(bridge.state_dict().items()):
        if torch.is_tensor(tensor) and tensor.is_floating_point() and tensor.numel():
            flat = tensor.detach().float().flatten()
            digest.update(
                f"{name}{tuple(tensor.shape)}{flat.sum().item():.6e}{flat[:8].tolist()}".encode()
            )
    return digest.hexdigest()[:16]


def pack_texts(tokenizer, texts, context_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[n, ctx] token rows: BOS + whole texts packed until full, padded; and the real-token mask."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows, row = [], [bos]
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False)[: context_size - 1]
        if len(row) + len(ids) > context_size:
            rows.append(row)
            row = [bos]
        row = row + ids
    rows.append(row)
    tokens = torch.full((len(rows), context_size), pad, dtype=torch.long)
    for index, ids in enumerate(rows):
        tokens[index, : len(ids)] = torch.tensor(ids)
    lengths = torch.tensor([len(ids) for ids in rows])
    mask = torch.arange(context_size)[None] < lengths[:, None]
    return tokens, mask


def real_token_mask(tokens: torch.Tensor, in_row: torch.Tensor, special_ids) -> torch.Tensor:
    mask = in_row.clone()
    for special in special_ids:
        mask &= tokens != special
    return mask


def _tokens_for(handle, split: str, n_tokens: int, seed: int):
    """Pack corpus texts until at least n_tokens real tokens."""
    texts, chunk = [], 0
    while True:
        texts += handle.corpus(split, max(64, n_tokens // 8), seed * 1000 + chunk)
        chunk += 1
        tokens, in_row = pack_texts(handle.tokenizer, texts, handle.context_size)
        mask = real_token_mask(tokens, in_row, handle.special_token_ids)
        if mask.sum() >= n_tokens or chunk > 1000:
            # Keep just enough rows for n_tokens real tokens (the budget, not the overshoot).
            rows = int((mask.sum(1).cumsum(0) < n_tokens).sum()) + 1
            return tokens[:rows], mask[:rows]


@torch.no_grad()
def activations_at(
    handle, hook: str, tokens: torch.Tensor, mask: torch.Tensor, device, batch_size: int = 32
):
    """Yield [n_real_tokens_in_batch, d] float32 CPU activations, batch by batch."""
    for start in range(0, len(tokens), batch_size):
        batch = tokens[start : start + batch_size].to(device)
        _, cache = handle.bridge.run_with_cache(batch, names_filter=hook)
        acts = cache[hook].float().cpu()
        yield acts[mask[start : start + batch_size]]


class HarvestedStore:
    """The ActivationSource over one cache entry (see saebench.activations)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.info = json.loads((self.directory / "info.json").read_text())
        self.shards = sorted(self.directory.glob("train_*.npy"))
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


def cache_key(handle, hook, n_train_tokens, n_eval_tokens, seed, dataset_id) -> tuple[str, dict]:
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
        "format": 1,
    }
    key = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:20]
    return key, described


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


def harvest(
    handle,
    hook: str,
    n_train_tokens: int,
    n_eval_tokens: int,
    seed: int = 0,
    cache_dir: Path | None = None,
    device="cpu",
    batch_size: int = 32,
    dataset_id: str = "corpus",
) -> HarvestedStore:
    """Harvest (or reuse) train and eval activations at `hook`; return the store."""
    cache_dir = Path(cache_dir or DEFAULT_CACHE)
    key, described = cache_key(handle, hook, n_train_tokens, n_eval_tokens, seed, dataset_id)
    directory = cache_dir / key
    if (directory / "info.json").exists():
        return HarvestedStore(directory)
    with atomic_directory(directory) as tmp:
        d_in, total = _write_train_shards(
            tmp, handle, hook, n_train_tokens, seed, device, batch_size
        )
        eval_info = _write_eval(tmp, handle, hook, n_eval_tokens, seed + 1, device, batch_size)
        info = dict(described, key=key, d_in=d_in, n_train_tokens=total, **eval_info)
        (tmp / "info.json").write_text(json.dumps(info, indent=2))
    return HarvestedStore(directory)
