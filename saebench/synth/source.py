"""What the shared training engine reads: the stream as an `ActivationSource`.

Two forms. `StreamSource` draws fresh batches from the stream for every step (SynthSAEBench
trains on an endless stream: no sample is seen twice); it is the GPU preset's. On CPU, generating
a batch costs about as much as a training step and every method would pay it again, so the CPU
presets draw one finite training set once (`finite_store`) and train epochs over it.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from saebench.activations import InMemoryStore
from saebench.synth.generator import SynthStream, derived_seed


class StreamSource:
    """Endless fresh batches: batch t of `train_batches(b, seed, device)` is a deterministic
    function of (stream seed, seed, t); `sample(n, seed)` draws the init sample the same way."""

    def __init__(self, stream: SynthStream, planned_tokens: int):
        self.stream = stream
        self.d_in = stream.d
        # The engine clips its batch to this: any budget the run plans fits.
        self.n_train_tokens = max(1, int(planned_tokens))

    def train_batches(self, batch_size: int, seed: int, device) -> Iterator[torch.Tensor]:
        generator = torch.Generator(device=self.stream.device).manual_seed(
            derived_seed("synth-train", self.stream.config.seed, seed)
        )
        while True:
            yield self.stream.sample_with(batch_size, generator).acts.to(device)

    def sample(self, n: int, seed: int) -> torch.Tensor:
        return self.stream.sample(
            n, derived_seed("synth-init", self.stream.config.seed, seed)
        ).acts.cpu()


def finite_store(
    stream: SynthStream, n_train: int, seed: int = 0, chunk: int = 16_384
) -> InMemoryStore:
    """n_train samples drawn once (in chunks, so the features matrix stays small)."""
    generator = torch.Generator(device=stream.device).manual_seed(
        derived_seed("synth-store", stream.config.seed, seed)
    )
    parts = []
    done = 0
    while done < n_train:
        size = min(chunk, n_train - done)
        parts.append(stream.sample_with(size, generator).acts.cpu())
        done += size
    return InMemoryStore(torch.cat(parts))
