"""The synthetic stream: SynthSAEBench's generator, written from the paper's description.

x = Σ_i a_i u_i + b, with n_features unit directions u_i in d < n_features dimensions (the ground
truth a trained SAE is scored against) and sparse non-negative activations a. Every step follows
SynthSAEBench (Chanin & Garriga-Alonso 2026, the SAELens `synthetic` module); departures are in
docs/synthetic.md.

1. Firing probabilities, Zipfian in the feature index: p_r ∝ r^-e, rescaled linearly so the
   first feature fires with max_prob and the last with min_prob.
2. Hierarchy (a forest, built breadth first): `roots` root features take the first indices,
   each non-leaf node gets `branching` children down to `depth` levels below the roots; the
   children of every parent are mutually exclusive. A child may fire only when its parent fires,
   and its magnitude is scaled by parent activation / parent mean magnitude
   (scale_children_by_parent). Features past the forest fire on their own.
3. Compensation: a child's probability is raised to p_i / p_parent · (1 + Σ_siblings p_j /
   p_parent) (clipped at 1), so its marginal rate after gating and exclusion is near p_i.
4. Correlated firing, a Gaussian copula with low-rank-plus-diagonal correlation: z = F ε +
   √diag · η, with F [n_features, rank] ~ N(0, scale²), diag = 1 − ‖F_i‖², ε ~ N(0, I_rank),
   η ~ N(0, I); feature i fires when z_i > Φ⁻¹(1 − p_i) (its marginal stays p_i).
5. Magnitudes: a_i = ReLU(μ_i + σ_i ξ) when feature i fires, μ_i linear from
   magnitude_start (first feature) to magnitude_end (last), σ_i ~ |N(σ_mean, σ_std²)| once.
6. Directions: Gaussian, unit-normed, then `orthogonalize_steps` Adam steps on
   Σ_{i≠j} (u_i·u_j)² + n Σ_i (‖u_i‖² − 1)² and normalised again; b has norm bias_norm.

Everything is a deterministic function of the config's seed; samples are deterministic in the
seed they are drawn with (`sample(n, seed)`), so a training stream and a held-out set are
reproducible and never overlap by accident (different derived seeds).
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from dataclasses import asdict, dataclass, field

import torch

from saebench.errors import ConfigError


def derived_seed(*parts: object) -> int:
    """A stable 63-bit seed from any parts (not Python's salted hash): the same in every run."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass(frozen=True)
class HierarchySpec:
    """A forest of complete trees. `depth` counts levels below the roots (SAELens's max_depth:
    depth 1 is roots with leaf children), so a tree has Σ_{l=0..depth} branching^l features."""

    roots: int
    branching: int
    depth: int
    mutually_exclusive: bool = True
    scale_children_by_parent: bool = True
    compensate: bool = True

    @property
    def tree_size(self) -> int:
        return sum(self.branching**level for level in range(self.depth + 1))


@dataclass(frozen=True)
class StreamConfig:
    """Everything that defines a stream. The defaults are SynthSAEBench-16k's values."""

    n_features: int
    d: int
    hierarchy: HierarchySpec | None = None
    zipf_exponent: float = 0.5
    max_prob: float = 0.4
    min_prob: float = 5e-4
    correlation_rank: int = 25
    correlation_scale: float = 0.1
    magnitude_start: float = 5.0
    magnitude_end: float = 4.0
    magnitude_std_mean: float = 0.5
    magnitude_std_std: float = 0.5
    orthogonalize_steps: int = 100
    orthogonalize_lr: float = 3e-4
    bias_norm: float = 0.5
    seed: int = 0

    def check(self) -> None:
        """Raise ConfigError naming the fix for a config that cannot be built."""
        if not 0 < self.d < self.n_features:
            raise ConfigError(
                f"synthetic stream needs 0 < d < n_features (got d={self.d}, n_features="
                f"{self.n_features}); superposition means more features than dimensions"
            )
        if not 0 < self.min_prob < self.max_prob <= 1:
            raise ConfigError(
                f"need 0 < min_prob < max_prob <= 1 (got {self.min_prob}, {self.max_prob})"
            )
        if self.zipf_exponent <= 0:
            raise ConfigError(f"zipf_exponent must be > 0 (got {self.zipf_exponent})")
        if self.correlation_rank < 0 or self.correlation_scale < 0:
            raise ConfigError("correlation_rank and correlation_scale must be >= 0")
        if self.magnitude_start <= 0 or self.magnitude_end <= 0:
            raise ConfigError("magnitude_start and magnitude_end must be > 0")
        h = self.hierarchy
        if h is not None:
            if h.roots < 1 or h.branching < 2 or h.depth < 1:
                raise ConfigError(
                    f"hierarchy needs roots >= 1, branching >= 2, depth >= 1 (got {h.roots}, "
                    f"{h.branching}, {h.depth}); pass hierarchy=None for none"
                )
            if h.roots * h.tree_size > self.n_features:
                raise ConfigError(
                    f"the hierarchy has {h.roots * h.tree_size} features but the stream only "
                    f"{self.n_features}; use fewer roots or a smaller depth"
                )

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Hierarchy:
    """The forest as index tensors. parent[i] = -1 for roots and features outside the forest;
    depth[i] = -1 outside the forest, 0 for roots. groups[l-1] [G, branching]: the sibling sets
    at level l (each the children of one parent, exclusive when `mutually_exclusive`);
    group_parents[l-1] [G]: their parents (at level l-1)."""

    parent: torch.Tensor
    depth: torch.Tensor
    groups: list[torch.Tensor]
    group_parents: list[torch.Tensor]
    mutually_exclusive: bool
    scale_children_by_parent: bool

    @property
    def pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(parents, children) of every parent-child edge, level by level."""
        if not self.groups:
            empty = torch.empty(0, dtype=torch.long)
            return empty, empty
        children = torch.cat([g.flatten() for g in self.groups])
        parents = torch.cat(
            [p.repeat_interleave(g.shape[1]) for g, p in zip(self.groups, self.group_parents)]
        )
        return parents, children

    @property
    def top_level(self) -> torch.Tensor:
        """Features sampled directly (roots and features outside the forest), ascending."""
        return (self.depth <= 0).nonzero().flatten()

    def siblings(self) -> dict[int, list[int]]:
        """Feature -> the other children of its parent (for the compensation factor)."""
        out: dict[int, list[int]] = {}
        for level in self.groups:
            for row in level.tolist():
                for i in row:
                    out[i] = [j for j in row if j != i]
        return out


def build_hierarchy(n_features: int, spec: HierarchySpec | None) -> Hierarchy:
    """Breadth-first forest: roots get indices 0..roots-1, then level 1, and so on (so, with
    Zipfian rates by index, parents are more frequent than their children)."""
    parent = torch.full((n_features,), -1, dtype=torch.long)
    depth = torch.full((n_features,), -1, dtype=torch.long)
    if spec is None:
        return Hierarchy(parent, depth, [], [], False, False)
    next_index = spec.roots
    depth[: spec.roots] = 0
    frontier: deque[int] = deque(range(spec.roots))
    groups: dict[int, list[list[int]]] = {}
    parents_of: dict[int, list[int]] = {}
    while frontier:
        node = frontier.popleft()
        level = int(depth[node]) + 1
        if level > spec.depth:
            continue
        children = list(range(next_index, next_index + spec.branching))
        next_index += spec.branching
        parent[children] = node
        depth[children] = level
        frontier.extend(children)
        groups.setdefault(level, []).append(children)
        parents_of.setdefault(level, []).append(node)
    levels = sorted(groups)
    return Hierarchy(
        parent,
        depth,
        [torch.tensor(groups[lv], dtype=torch.long) for lv in levels],
        [torch.tensor(parents_of[lv], dtype=torch.long) for lv in levels],
        spec.mutually_exclusive,
        spec.scale_children_by_parent,
    )


def zipf_probabilities(n: int, exponent: float, max_prob: float, min_prob: float) -> torch.Tensor:
    """p_r ∝ r^-exponent for r = 1..n, rescaled linearly onto [min_prob, max_prob]."""
    raw = torch.arange(1, n + 1, dtype=torch.float64) ** -exponent
    scaled = (raw - raw[-1]) / (raw[0] - raw[-1])
    return (min_prob + (max_prob - min_prob) * scaled).float()


def compensated_probabilities(base: torch.Tensor, hierarchy: Hierarchy) -> torch.Tensor:
    """Raise each child's firing probability so gating by its parent (and losing exclusion
    draws to its siblings) brings its marginal rate back near the base one (SAELens's
    compute_probability_correction_factors: base probabilities throughout, clipped at 1)."""
    corrected = base.clone().double()
    siblings = hierarchy.siblings() if hierarchy.mutually_exclusive else {}
    parents, children = hierarchy.pairs
    for par, child in zip(parents.tolist(), children.tolist()):
        p_parent = float(base[par])
        factor = 1.0 / p_parent
        if child in siblings:
            factor *= 1.0 + sum(float(base[j]) for j in siblings[child]) / p_parent
        corrected[child] = float(base[child]) * factor
    return corrected.clamp(max=1.0).float()


def orthogonalize(directions: torch.Tensor, steps: int, lr: float) -> torch.Tensor:
    """Adam on L = Σ_{i≠j} (u_i·u_j)² + n Σ_i (‖u_i‖² − 1)², then unit-normed (SAELens's
    orthogonalize_embeddings). The gradient is formed exactly without the n×n Gram matrix:
    ∇L = 4 [U (UᵀU) − diag(G) U + n (diag(G) − 1) U] with diag(G)_i = ‖u_i‖², O(n·d²)."""
    u = directions.detach().clone()
    u = u / u.norm(dim=1, keepdim=True)
    if steps <= 0:
        return u
    u.requires_grad_(True)
    optimizer = torch.optim.Adam([u], lr=lr)
    n = u.shape[0]
    for _ in range(steps):
        with torch.no_grad():
            sq = u.pow(2).sum(1, keepdim=True)
            grad = 4 * (u @ (u.T @ u) - sq * u + n * (sq - 1) * u)
        u.grad = grad
        optimizer.step()
    with torch.no_grad():
        return (u / u.norm(dim=1, keepdim=True)).detach()


@dataclass
class SynthBatch:
    """x [N, d] and the ground-truth feature activations a [N, n_features] behind it."""

    acts: torch.Tensor
    features: torch.Tensor


@dataclass
class SynthStream:
    """A built stream: its config and every tensor sampling needs (on `device`)."""

    config: StreamConfig
    directions: torch.Tensor  # [n_features, d], unit rows: the true dictionary
    bias: torch.Tensor  # [d]
    base_probs: torch.Tensor  # [n_features]: the Zipfian target rates
    fire_probs: torch.Tensor  # [n_features]: after compensation (what the copula thresholds)
    mean_magnitudes: torch.Tensor  # [n_features]
    std_magnitudes: torch.Tensor  # [n_features]
    corr_factor: torch.Tensor  # [n_features, rank]
    corr_diag: torch.Tensor  # [n_features]
    threshold: torch.Tensor  # [n_features]: Φ⁻¹(1 − fire_probs)
    top_features: torch.Tensor  # roots and free features (sampled densely), ascending
    hierarchy: Hierarchy
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def n_features(self) -> int:
        return self.config.n_features

    @property
    def d(self) -> int:
        return self.config.d

    def to(self, device: torch.device | str) -> SynthStream:
        device = torch.device(device)
        moved = {
            name: getattr(self, name).to(device)
            for name in (
                "directions",
                "bias",
                "base_probs",
                "fire_probs",
                "mean_magnitudes",
                "std_magnitudes",
                "corr_factor",
                "corr_diag",
                "threshold",
                "top_features",
            )
        }
        return SynthStream(config=self.config, hierarchy=self.hierarchy, device=device, **moved)

    @torch.no_grad()
    def sample(self, n: int, seed: int) -> SynthBatch:
        """n samples drawn with a generator seeded by `seed` (same seed, same samples)."""
        generator = torch.Generator(device=self.device).manual_seed(int(seed) % 2**63)
        return self.sample_with(n, generator)

    @torch.no_grad()
    def sample_with(self, n: int, generator: torch.Generator) -> SynthBatch:
        """n samples drawn from `generator` (advancing it): for an endless training stream."""
        features = self._feature_activations(n, generator)
        acts = features @ self.directions + self.bias
        return SynthBatch(acts, features)

    def _feature_activations(self, n: int, g: torch.Generator) -> torch.Tensor:
        """Top-down: the roots and free features densely, then each level's children only under
        parents that fired. Given the copula's shared factor ε the features' noises are
        independent, so skipping the children of silent parents (which gating would zero) gives
        the same distribution as sampling everything and gating, for a fraction of the cost."""
        top = self.top_features
        shared = torch.randn(n, self.corr_factor.shape[1], generator=g, device=self.device)
        a = torch.zeros(n, self.n_features, device=self.device)
        a[:, top] = self._draw(shared, top, g)
        h = self.hierarchy
        for group, group_parent in zip(h.groups, h.group_parents):
            group, group_parent = group.to(self.device), group_parent.to(self.device)
            parent_value = a[:, group_parent]  # [N, G]
            rows, which = (parent_value > 0).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
            children = group[which]  # [E, branching]
            values = self._draw(shared[rows], children, g)
            if h.mutually_exclusive:
                values = self._keep_one(values, g)
            if h.scale_children_by_parent:
                scale = parent_value[rows, which] / self.mean_magnitudes[group_parent[which]]
                values = values * scale[:, None]
            a[rows[:, None], children] = values
        return a

    def _draw(
        self, shared: torch.Tensor, features: torch.Tensor, g: torch.Generator
    ) -> torch.Tensor:
        """Activations [E, k] of `features` ([k], the same for every row, or [E, k]) for the
        samples whose copula factors are `shared` [E, rank]: fire when F_i·ε + √diag_i·η >
        Φ⁻¹(1 − p_i), then magnitude ReLU(μ_i + σ_i ξ)."""
        dev = self.device
        shape = (shared.shape[0], features.shape[-1])
        if features.dim() == 1:
            z = shared @ self.corr_factor[features].T
        else:
            z = torch.einsum("er,ekr->ek", shared, self.corr_factor[features])
        noise = torch.randn(shape, generator=g, device=dev)
        z = z + noise * self.corr_diag[features].sqrt()
        fired = z > self.threshold[features]
        jitter = torch.randn(shape, generator=g, device=dev)
        magnitude = self.mean_magnitudes[features] + jitter * self.std_magnitudes[features]
        return torch.relu(magnitude) * fired

    @staticmethod
    def _keep_one(values: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Mutual exclusion: of each row's active siblings keep one, uniformly at random."""
        active = values > 0
        scores = torch.rand(values.shape, generator=g, device=values.device)
        scores = torch.where(active, scores, torch.full_like(scores, -1.0))
        winner = torch.zeros_like(active).scatter_(-1, scores.argmax(-1, keepdim=True), True)
        return values * (active & winner)


def build_stream(config: StreamConfig, device: torch.device | str = "cpu") -> SynthStream:
    """Build the stream a config defines (deterministic in config.seed)."""
    config.check()
    n, d = config.n_features, config.d
    g = torch.Generator().manual_seed(derived_seed("synth-stream", config.seed))
    raw = torch.randn(n, d, generator=g)
    bias_direction = torch.randn(d, generator=g)
    factor = torch.randn(n, config.correlation_rank, generator=g) * config.correlation_scale
    std = (config.magnitude_std_mean + config.magnitude_std_std * torch.randn(n, generator=g)).abs()
    row_sq = factor.pow(2).sum(1)
    if config.correlation_rank and bool((row_sq >= 1).any()):
        # SAELens's fix: shrink F so the largest row norm² is 0.99 (diag must stay positive).
        factor = factor * math.sqrt(0.99 / float(row_sq.max()))
        row_sq = factor.pow(2).sum(1)
    hierarchy = build_hierarchy(n, config.hierarchy)
    base = zipf_probabilities(n, config.zipf_exponent, config.max_prob, config.min_prob)
    compensate = config.hierarchy is not None and config.hierarchy.compensate
    fire = compensated_probabilities(base, hierarchy) if compensate else base.clone()
    stream = SynthStream(
        config=config,
        directions=orthogonalize(raw, config.orthogonalize_steps, config.orthogonalize_lr),
        bias=config.bias_norm * bias_direction / bias_direction.norm(),
        base_probs=base,
        fire_probs=fire,
        mean_magnitudes=torch.linspace(config.magnitude_start, config.magnitude_end, n),
        std_magnitudes=std,
        corr_factor=factor,
        corr_diag=1 - row_sq,
        # Φ⁻¹(1 − p) in float64 (1 − p must not round to 0 early); p = 1 gives −inf, so such a
        # feature always fires, the copula's limit.
        threshold=torch.special.ndtri(1 - fire.double()).float(),
        top_features=hierarchy.top_level,
        hierarchy=hierarchy,
    )
    return stream.to(device)


@dataclass(frozen=True)
class FiringSummary:
    """The stream's measured sparsity: true L0 (mean active features per sample) with its
    standard error, the L0 restricted to the `width` most frequent features (what a width-`width`
    SAE can represent; the paper reports at this L0), and every feature's firing rate."""

    true_l0: float
    true_l0_se: float
    width: int
    true_l0_top: float
    n_samples: int
    rates: list[float]

    def to_json(self) -> dict:
        out = asdict(self)
        out.pop("rates")
        return out


@torch.no_grad()
def measure_firing(
    stream: SynthStream, n_samples: int, width: int, seed: int, batch: int = 8192
) -> FiringSummary:
    """True L0 by a large sample (exact in expectation; the copula and the exclusion draws make a
    closed form impractical), in batches so memory stays bounded."""
    counts = torch.zeros(stream.n_features, dtype=torch.float64, device=stream.device)
    per_sample: list[torch.Tensor] = []
    generator = torch.Generator(device=stream.device).manual_seed(seed % 2**63)
    done = 0
    while done < n_samples:
        size = min(batch, n_samples - done)
        fired = stream.sample_with(size, generator).features > 0
        counts += fired.sum(0, dtype=torch.float64)
        per_sample.append(fired.sum(1).double().cpu())
        done += size
    l0s = torch.cat(per_sample)
    rates = (counts / n_samples).cpu()
    width = min(width, stream.n_features)
    top = float(rates.sort(descending=True).values[:width].sum())
    return FiringSummary(
        true_l0=float(l0s.mean()),
        true_l0_se=float(l0s.std() / math.sqrt(max(1, n_samples))),
        width=width,
        true_l0_top=top,
        n_samples=n_samples,
        rates=rates.tolist(),
    )
