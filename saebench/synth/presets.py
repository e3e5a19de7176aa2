"""Sizes of the `synthetic` benchmark: a stream plus how SAEs are trained and scored on it.

- `published`: SynthSAEBench-16k (16,384 features in 768 dimensions, 128 roots, branching 4,
  depth 3, true L0 ≈ 34) with the paper's SAE width 4,096, batch 1,024 and lr 3e-4 on a fresh
  stream; 200M samples per SAE as in the paper. GPU only.
- `cpu`: the same construction shrunk for 2 CPU cores: 2,048 features in 128 dimensions, 16
  roots (the forest holds the same 66% of the features), SAE width 512 (the paper's 1/4 of the
  features). Firing rates are the paper's × 0.55 (p_max 0.22, p_min 2.75e-4), so the true L0
  (≈ 6.0) keeps the paper's L0 / d ≈ 0.045. A finite training set of 300k samples, 600k samples
  per SAE (two epochs) at lr 1e-2: the budget the main runner's default preset trains with,
  ~15 min for six methods × 2 seeds on 2 shared cores. It is a quick check, not converged: the
  methods' ranking moves towards the paper's with --train-samples 2400000 (docs/synthetic.md).
- `smoke`: seconds, for tests.

Sweep targets are `l0_factors` × the stream's measured true L0 (see `bench.plan_knobs`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from saebench.errors import ConfigError
from saebench.synth.generator import HierarchySpec, StreamConfig


@dataclass(frozen=True)
class SynthPreset:
    name: str
    stream: StreamConfig
    d_sae: int
    train_samples: int  # samples each SAE trains on
    store_samples: int | None  # a finite training set of this size; None: fresh batches
    batch_size: int
    lr: float
    eval_samples: int  # held-out samples every metric is computed on
    firing_samples: int  # samples the true L0 is measured on
    dead_window: int  # training samples without firing after which a latent is dead (AuxK)
    l0_factors: tuple[float, ...] = (0.6, 1.0, 1.4)
    eval_batch: int = 4096

    def to_json(self) -> dict:
        out = asdict(self)
        out["l0_factors"] = list(self.l0_factors)
        return out

    def with_overrides(self, **overrides) -> SynthPreset:
        """The preset with some fields replaced (None values are ignored)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if "stream_seed" in given:
            given["stream"] = replace(self.stream, seed=int(given.pop("stream_seed")))
        return replace(self, **given)


PUBLISHED_STREAM = StreamConfig(
    n_features=16_384, d=768, hierarchy=HierarchySpec(roots=128, branching=4, depth=3)
)

SYNTH_PRESETS = {
    "smoke": SynthPreset(
        "smoke",
        stream=StreamConfig(
            n_features=256,
            d=32,
            hierarchy=HierarchySpec(roots=4, branching=4, depth=2),
            max_prob=0.3,
            min_prob=2e-3,
            correlation_rank=8,
            orthogonalize_steps=20,
        ),
        d_sae=64,
        train_samples=20_000,
        store_samples=10_000,
        batch_size=512,
        lr=1e-2,
        eval_samples=2_000,
        firing_samples=10_000,
        dead_window=5_000,
        l0_factors=(0.7, 1.3),
        eval_batch=1_000,
    ),
    "cpu": SynthPreset(
        "cpu",
        stream=StreamConfig(
            n_features=2_048,
            d=128,
            hierarchy=HierarchySpec(roots=16, branching=4, depth=3),
            max_prob=0.22,
            min_prob=2.75e-4,
        ),
        d_sae=512,
        train_samples=600_000,
        store_samples=300_000,
        batch_size=1_024,
        lr=1e-2,
        eval_samples=20_000,
        firing_samples=200_000,
        dead_window=100_000,
    ),
    "published": SynthPreset(
        "published",
        stream=PUBLISHED_STREAM,
        d_sae=4_096,
        train_samples=200_000_000,
        store_samples=None,
        batch_size=1_024,
        lr=3e-4,
        eval_samples=500_000,
        firing_samples=1_000_000,
        dead_window=10_000_000,
        l0_factors=(0.55, 0.72, 1.0, 1.3),
    ),
}


def get_synth_preset(name: str) -> SynthPreset:
    if name not in SYNTH_PRESETS:
        raise ConfigError(
            f"unknown synthetic preset {name!r}; choose from {', '.join(SYNTH_PRESETS)}"
        )
    return SYNTH_PRESETS[name]
