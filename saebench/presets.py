"""Run presets: how many tokens, how wide, how many seeds.

smoke: < 1 min on 2 CPU cores for two methods (tests, CI gate). default: several sparsity levels
per method, 3 seeds, with the calibration baselines (topk,gated: ~25 min on 2 CPU cores; four
methods ~50 min). full: GPU scale.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from saebench.errors import ConfigError

if TYPE_CHECKING:
    from saebench.training import TrainConfig


@dataclass(frozen=True)
class Preset:
    name: str
    n_train_tokens: int  # harvested once, shared by every method of the run
    train_tokens_per_sae: int  # tokens each SAE sees (epochs over the harvest when larger)
    n_eval_tokens: int
    expansion: int  # d_sae = expansion × d_in
    batch_size: int
    lr: float
    seeds: int
    dead_window_tokens: int

    def train_config(self, d_in: int, **overrides) -> TrainConfig:
        """The TrainConfig of an SAE on d_in-dimensional activations (overrides: any field)."""
        from saebench.training import TrainConfig

        cfg = TrainConfig(
            d_sae=self.expansion * d_in,
            total_tokens=self.train_tokens_per_sae,
            batch_size=self.batch_size,
            lr=self.lr,
            dead_window_tokens=self.dead_window_tokens,
            progress=False,
        )
        return replace(cfg, **overrides)


PRESETS = {
    "smoke": Preset(
        "smoke",
        n_train_tokens=24_000,
        train_tokens_per_sae=48_000,
        n_eval_tokens=3_000,
        expansion=4,
        batch_size=512,
        lr=1e-2,
        seeds=1,
        dead_window_tokens=20_000,
    ),
    "default": Preset(
        "default",
        n_train_tokens=400_000,
        train_tokens_per_sae=600_000,
        n_eval_tokens=20_000,
        expansion=8,
        batch_size=1024,
        # Chosen with `saebench converge` (docs/training.md): at 1e-3 every method was still
        # far from its 4×-budget answer; 3e-2 destabilises Gated.
        lr=1e-2,
        # Three seeds: the fewest that give an interval over seeds (issue 14).
        seeds=3,
        dead_window_tokens=200_000,
    ),
    "full": Preset(
        "full",
        n_train_tokens=20_000_000,
        train_tokens_per_sae=100_000_000,
        n_eval_tokens=200_000,
        expansion=16,
        batch_size=4096,
        lr=4e-4,
        seeds=3,
        dead_window_tokens=5_000_000,
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]
