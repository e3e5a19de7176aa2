"""A synthetic superposition stream: sparse features with known directions, plus recovery scores.

n_features sparse, non-negative features, each with a fixed unit direction in d < n_features
dimensions, are summed into an activation x = Σ_i a_i u_i. Because the true directions are known,
a trained SAE can be scored by how well its decoder rows recover them (the method tests use
`mean_max_cosine` and `fraction_recovered`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from saebench.activations import InMemoryStore
from saebench.errors import ConfigError


class SuperpositionStream:
    """Sparse features in superposition.

    firing_prob: one probability for every feature, or one per feature (length n_features).
    Active features take magnitudes uniform in [magnitude_low, magnitude_high] (strictly positive,
    so "fired" is well defined). `noise_std` adds isotropic Gaussian noise to x.
    """

    def __init__(
        self,
        n_features: int,
        d: int,
        firing_prob: float | Sequence[float] = 0.02,
        seed: int = 0,
        magnitude_low: float = 0.5,
        magnitude_high: float = 1.5,
        noise_std: float = 0.0,
    ):
        if not 0 < d <= n_features:
            raise ConfigError(
                f"SuperpositionStream needs 0 < d <= n_features (got d={d}, "
                f"n_features={n_features}); superposition means d < n_features"
            )
        probs = torch.as_tensor(firing_prob, dtype=torch.float32).flatten()
        if probs.numel() == 1:
            probs = probs.expand(n_features).clone()
        if probs.numel() != n_features or not ((probs >= 0) & (probs <= 1)).all():
            raise ConfigError(
                f"firing_prob must be one probability in [0, 1] or {n_features} "
                f"of them; got {probs.numel()} values"
            )
        if not 0 < magnitude_low <= magnitude_high:
            raise ConfigError("need 0 < magnitude_low <= magnitude_high")
        self.n_features, self.d, self.seed = n_features, d, seed
        self.firing_probs = probs
        self.magnitude_low, self.magnitude_high = magnitude_low, magnitude_high
        self.noise_std = noise_std
        generator = torch.Generator().manual_seed(seed)
        directions = torch.randn(n_features, d, generator=generator)
        self.true_directions = directions / directions.norm(dim=1, keepdim=True)
        # A separate stream of randomness for samples, so directions depend on the seed only.
        self._generator = torch.Generator().manual_seed(seed + 1)

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(acts [n, d], feature_activations [n, n_features]); successive calls differ."""
        g = self._generator
        active = torch.rand(n, self.n_features, generator=g) < self.firing_probs
        span = self.magnitude_high - self.magnitude_low
        magnitudes = self.magnitude_low + span * torch.rand(n, self.n_features, generator=g)
        features = active * magnitudes
        acts = features @ self.true_directions
        if self.noise_std:
            acts = acts + self.noise_std * torch.randn(n, self.d, generator=g)
        return acts, features

    def store(self, n_train: int, n_eval: int = 0) -> InMemoryStore:
        """An in-memory activation store (train and held-out eval split) for training SAEs."""
        acts, _ = self.sample(n_train + n_eval)
        return InMemoryStore(acts[:n_train], acts[n_train:] if n_eval else None)


def _unit_rows(matrix: torch.Tensor) -> torch.Tensor:
    matrix = torch.as_tensor(matrix).detach().float().cpu()
    return matrix / matrix.norm(dim=1, keepdim=True).clamp_min(1e-12)


def max_cosines(learned: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """For each true direction [n, d], the best cosine with any learned direction [m, d]."""
    learned, true = _unit_rows(learned), _unit_rows(true)
    if learned.shape[1] != true.shape[1]:
        raise ConfigError(
            f"learned directions have d={learned.shape[1]} but true ones "
            f"d={true.shape[1]}; pass decoder rows W_dec [d_sae, d_in]"
        )
    return (true @ learned.T).max(dim=1).values


def mean_max_cosine(learned: torch.Tensor, true: torch.Tensor) -> float:
    """Mean over true features of the max cosine similarity with any learned direction."""
    return max_cosines(learned, true).mean().item()


def fraction_recovered(learned: torch.Tensor, true: torch.Tensor, threshold: float = 0.9) -> float:
    """Share of true features matched by some learned direction with cosine >= threshold."""
    return (max_cosines(learned, true) >= threshold).float().mean().item()
