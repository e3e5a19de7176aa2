"""Per-token feature absorption (Chanin et al. 2024; SAEBench's calculator), as pure functions.

For one parent value (a first letter, a topic) with ground-truth probe direction p̂ (unit), a
token x the probe calls positive, an SAE code z and decoder rows d_i:

* latent i's probe projection is its contribution to the reconstruction along the probe,
  π_i = z_i (d_i · p̂) (SAEBench writes z_i cos(d_i, p̂), the same for unit-norm decoders);
* the token's probe projection P is (x − b_dec) · p̂ (what the latents have to account for);
* M = Σ_{i ∈ main} π_i is what the main latents carry.

Full absorption (SAEBench's `is_full_absorption`): every main latent is silent (|z_i| < eps),
the latent with the largest π has cos(d, p̂) ≥ full_cos, P > 0, and that latent carries at
least `share` of P.

Absorption fraction (Demian Till's, SAEBench's `absorption_fraction`): the absorbers are the
latents outside the main set with cos(d, p̂) ≥ fraction_cos and π > 0; A is the sum of the (at
most max_absorbers) largest absorber projections. It is 0 when M ≥ P or A < share · P, 1 when
M ≤ 0, and otherwise min(A, P − M) / (min(A, P − M) + M): the share of the probe direction the
reconstruction carries through absorbers rather than through the main latents. So a main
latent that fires weakly while an absorber carries the rest scores between 0 and 1 (partial
absorption).

Neither rule asks whether an absorber is specific to the child: a second latent that fires on
every child of the parent (a duplicate of the parent latent, which the F1-jump rule leaves out
of the main set because it adds no F1) counts as an absorber. `eligible` restricts both rules
to given latents; the task's child-specific variant passes the latents that fire on fewer than
half of the parent's train tokens (a diagnostic of this benchmark, not SAEBench's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from saebench_tasks.absorption import config


@dataclass(frozen=True)
class Thresholds:
    """SAEBench's absorption thresholds (see config)."""

    full_cos: float = config.FULL_ABSORPTION_COS
    fraction_cos: float = config.FRACTION_COS
    share: float = config.PROJECTION_SHARE
    max_absorbers: int = config.MAX_ABSORBERS
    eps: float = config.FIRING_EPS


SAEBENCH = Thresholds()  # the defaults every cell uses


@dataclass(frozen=True)
class TokenAbsorption:
    """Per scored token: the absorption fraction in [0, 1] and whether it is fully absorbed."""

    fraction: torch.Tensor  # float64 [n]
    full: torch.Tensor  # bool [n]
    main_share: torch.Tensor  # float64 [n]: M / P clipped to [0, 1] (0 where P <= 0)


def probe_alignment(
    decoder: torch.Tensor, probe: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(d_i · p̂, cos(d_i, p̂)) for every decoder row d_i [d_sae, d_in] and probe direction
    [d_in] (normalised here). A zero row has cosine 0."""
    unit = probe.double() / probe.double().norm()
    dot = decoder.double() @ unit
    norms = decoder.double().norm(dim=1)
    cos = torch.where(norms > 0, dot / norms.clamp_min(1e-30), torch.zeros_like(dot))
    return dot, cos


def token_absorption(
    codes: torch.Tensor,
    dot: torch.Tensor,
    cos: torch.Tensor,
    probe_projection: torch.Tensor,
    main: torch.Tensor,
    thresholds: Thresholds = SAEBENCH,
    eligible: torch.Tensor | None = None,
) -> TokenAbsorption:
    """Full absorption and absorption fraction of each token (module docstring).

    codes [n, d_sae]: the SAE's latents on the scored tokens; dot, cos [d_sae]: from
    `probe_alignment`; probe_projection [n]: (x − b_dec) · p̂; main: the main latents' ids.
    eligible (bool [d_sae], optional): the only latents that may absorb, for both rules
    (None: every latent, as SAEBench)."""
    codes = codes.double()
    total = probe_projection.double()
    n, width = codes.shape
    main = torch.as_tensor(main, dtype=torch.long)
    projections = codes * dot[None, :]
    is_main = torch.zeros(width, dtype=torch.bool)
    is_main[main] = True
    carried = projections[:, main].sum(dim=1)  # M
    positive = total > 0
    if eligible is None:
        eligible = torch.ones(width, dtype=torch.bool)

    # Absorption fraction.
    may_absorb = (~is_main) & eligible & (cos >= thresholds.fraction_cos)
    candidates = torch.where(
        may_absorb[None, :] & (projections > 0), projections, torch.zeros_like(projections)
    )
    absorbed = candidates.topk(min(thresholds.max_absorbers, width), dim=1).values.sum(dim=1)
    safe_total = torch.where(positive, total, torch.ones_like(total))
    enough = positive & (absorbed / safe_total >= thresholds.share)
    counted = torch.minimum(absorbed, total - carried)
    partial = (counted / (counted + carried).clamp_min(1e-30)).clamp(0.0, 1.0)
    fraction = torch.where(carried <= 0, torch.ones_like(total), partial)
    fraction = torch.where(enough & (carried < total), fraction, torch.zeros_like(total))

    # Full absorption by a single latent.
    silent = (
        (codes[:, main].abs() < thresholds.eps).all(dim=1)
        if len(main)
        else torch.ones(n, dtype=torch.bool)
    )
    ranked = torch.where(eligible[None, :], projections, torch.full_like(projections, -torch.inf))
    top = ranked.argmax(dim=1)
    top_projection = projections.gather(1, top[:, None])[:, 0]
    full = (
        silent
        & positive
        & eligible[top]
        & (cos[top] >= thresholds.full_cos)
        & (top_projection / safe_total >= thresholds.share)
    )
    main_share = torch.where(
        positive, (carried / safe_total).clamp(0.0, 1.0), torch.zeros_like(total)
    )
    return TokenAbsorption(fraction=fraction, full=full, main_share=main_share)


@dataclass(frozen=True)
class ValueAbsorption:
    """Absorption of one parent value on its held-out true-positive tokens."""

    value: str
    n_tokens: int  # held-out tokens of the value that the raw probe calls positive
    fraction: float  # mean absorption fraction (SAEBench's mean_absorption_fraction)
    full_rate: float  # share fully absorbed (SAEBench's full_absorption_rate)
    specific_fraction: float  # the same two with child-specific absorbers only
    specific_full_rate: float
    n_main: int  # main latents (SAEBench's num_split_features)
    main_share: float  # mean share of the probe projection the main latents carry
    main_f1: float  # held-out F1 of the main latents' k-sparse probe


def value_absorption(
    value: str,
    scores: TokenAbsorption,
    specific: TokenAbsorption,
    n_main: int,
    main_f1: float,
) -> ValueAbsorption:
    """Means over the value's scored tokens (NaN when it has none); `specific`: the same
    tokens scored with child-specific absorbers only."""
    n = len(scores.fraction)

    def mean(values: torch.Tensor) -> float:
        return float(values.double().mean()) if n else float("nan")

    return ValueAbsorption(
        value=value,
        n_tokens=n,
        fraction=mean(scores.fraction),
        full_rate=mean(scores.full),
        specific_fraction=mean(specific.fraction),
        specific_full_rate=mean(specific.full),
        n_main=n_main,
        main_share=mean(scores.main_share),
        main_f1=main_f1,
    )
