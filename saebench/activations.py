"""The activation-source protocol SAE training reads from, and an in-memory implementation.

Disk-backed harvesting from a model lives in `saebench.harvest` (HarvestedStore); it implements
the same protocol, so training and tasks never care where activations came from.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch


class ActivationSource(Protocol):
    d_in: int
    n_train_tokens: int

    def train_batches(self, batch_size: int, seed: int, device) -> Iterator[torch.Tensor]:
        """Endless shuffled float32 batches [batch_size, d_in]; reshuffles every epoch."""

    def sample(self, n: int, seed: int) -> torch.Tensor:
        """A random sample of n training activations (CPU float32), for init and scaling."""


class InMemoryStore:
    """Activations held in a tensor: for tests, synthetic streams and small runs."""

    def __init__(self, train_acts: torch.Tensor, eval_acts: torch.Tensor | None = None):
        self.train_acts = train_acts.float().cpu()
        self.eval_acts = None if eval_acts is None else eval_acts.float().cpu()
        self.n_train_tokens, self.d_in = self.train_acts.shape

    def train_batches(self, batch_size: int, seed: int, device) -> Iterator[torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        while True:
            order = torch.randperm(self.n_train_tokens, generator=generator)
            for start in range(0, self.n_train_tokens - batch_size + 1, batch_size):
                yield self.train_acts[order[start : start + batch_size]].to(device)

    def sample(self, n: int, seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        n = min(n, self.n_train_tokens)
        return self.train_acts[torch.randperm(self.n_train_tokens, generator=generator)[:n]]
