"""Exact feature absorption on the synthetic hierarchy, read off the learned dictionary.

Absorption (Chanin et al. 2024, "A is for Absorption"): when a child feature fires (and so, by the
hierarchy, its parent), the SAE's latent for the child also writes the parent's direction, and the
parent's own latent stays silent (full absorption) or fires while the child's latent carries
part of the parent (partial absorption). On real models this is estimated with probes; on the
synthetic stream the parent directions, the hierarchy and the true activations are known, so it
is counted exactly.

For every parent-child edge (P, C) of the hierarchy, with true directions u_P, u_C, decoder rows
w_l and their unit rows ŵ_l:
- child latents L_C = {l : ŵ_l · u_C >= align} (the latents aligned with the child; an absorbing
  one writes u_C + u_P, still aligned with u_C);
- parent latents L_P = {l : ŵ_l · u_P >= align, and ŵ_l · u_C' < align for every child C' of P}
  (aligned with the parent, but not a child's absorbing latent);
- an edge is scored only when L_C is not empty (a child without a latent cannot absorb).
On every held-out sample where C fires (true activations a_P, a_C > 0), with SAE latents f:
  s_P = Σ_{l∈L_P} f_l (w_l · u_P)   how much of u_P the parent's latents write,
  s_C = Σ_{l∈L_C} f_l (w_l · u_P)   how much of u_P the child's latents write,
  carried = s_C⁺ / a_P              the share of the parent's true magnitude the child carries;
  full absorption:    no latent of L_P fires and carried >= carry,
  partial absorption: some latent of L_P fires and carried >= carry,
  absorbed fraction:  s_C⁺ / (s_C⁺ + s_P⁺) (where the sum is > 0).
Rates are per edge (over that edge's child-firing samples, edges with >= min_events of them)
and then averaged over edges; `n_edges` says how many were scored.

A clean dictionary (w_l = u_l, each latent firing with its feature) has no full absorption (the
parent latent fires whenever the child does) and carried = a_C (u_C·u_P) / a_P, far below
`carry` when true directions are near-orthogonal; a dictionary whose child latents write
u_C + u_P and whose parent latent fires only when no child does scores full absorption near 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from saebench.synth.generator import Hierarchy
from saebench.synth.metrics import cosines

ALIGN = 0.5  # cosine above which a latent counts as aligned with a true direction
CARRY = 0.5  # share of the parent's magnitude the child's latents must write to count
MIN_EVENTS = 10  # child-firing samples an edge needs to get a rate


@dataclass(frozen=True)
class AbsorptionResult:
    full: float  # mean over scored edges of the full-absorption rate
    partial: float  # mean over scored edges of the partial-absorption rate
    absorbed_fraction: float  # mean over scored edges of the mean s_C⁺ / (s_C⁺ + s_P⁺)
    n_edges: int  # edges scored (child has a latent and >= min_events child-firing samples)
    n_edges_total: int  # edges in the hierarchy

    def to_json(self) -> dict:
        return asdict(self)


class AbsorptionAccumulator:
    """Counts absorption events over held-out batches (see the module docstring)."""

    def __init__(
        self,
        decoder: torch.Tensor,
        true: torch.Tensor,
        hierarchy: Hierarchy,
        align: float = ALIGN,
        carry: float = CARRY,
        min_events: int = MIN_EVENTS,
    ):
        self.carry, self.min_events = carry, min_events
        decoder = decoder.detach().float()
        true = true.detach().float().to(decoder.device)
        parents, children = hierarchy.pairs
        self.parents, self.children = parents.to(decoder.device), children.to(decoder.device)
        n_pairs = len(parents)
        self.n_pairs = n_pairs
        cos = cosines(decoder, true)  # [m, n]
        child_aligned = cos[:, self.children] >= align  # [m, P]
        # A latent aligned with any child of the pair's parent is that child's, not the parent's.
        per_parent = torch.zeros(decoder.shape[0], true.shape[0], device=decoder.device)
        per_parent.index_add_(1, self.parents, child_aligned.float())
        parent_aligned = (cos[:, self.parents] >= align) & (per_parent[:, self.parents] == 0)
        writes_parent = decoder @ true[self.parents].T  # [m, P]: w_l · u_P
        # Only edges whose child has a latent can be scored: keep just their columns (dense
        # matmuls beat sparse ones at these sizes, on CPU and GPU alike).
        self.has_child_latent = child_aligned.any(0).cpu()
        keep = self.has_child_latent.nonzero().flatten().to(decoder.device)
        self.kept = keep.cpu()
        self.parents_kept, self.children_kept = self.parents[keep], self.children[keep]
        self.child_write = (child_aligned.float() * writes_parent)[:, keep]
        self.parent_write = (parent_aligned.float() * writes_parent)[:, keep]
        self.parent_member = parent_aligned.float()[:, keep]
        zeros = torch.zeros(n_pairs, dtype=torch.float64)
        self.events, self.full, self.partial = zeros.clone(), zeros.clone(), zeros.clone()
        self.fraction_sum, self.fraction_n = zeros.clone(), zeros.clone()

    def add(self, latents: torch.Tensor, features: torch.Tensor) -> None:
        if len(self.kept) == 0:
            return
        latents = latents.float()
        s_parent = latents @ self.parent_write  # [N, kept]
        s_child = (latents @ self.child_write).clamp_min(0)
        parent_fires = (latents > 0).float() @ self.parent_member > 0
        child_on = features[:, self.children_kept] > 0
        a_parent = features[:, self.parents_kept]
        carried = s_child / a_parent.clamp_min(1e-12)
        carries = child_on & (carried >= self.carry)
        total = s_child + s_parent.clamp_min(0)
        defined = child_on & (total > 0)
        fraction = torch.where(defined, s_child / total.clamp_min(1e-12), torch.zeros_like(total))
        for name, value in (
            ("events", child_on),
            ("full", carries & ~parent_fires),
            ("partial", carries & parent_fires),
            ("fraction_sum", fraction),
            ("fraction_n", defined),
        ):
            getattr(self, name)[self.kept] += value.sum(0).double().cpu()

    def result(self) -> AbsorptionResult:
        scored = self.has_child_latent & (self.events >= self.min_events)
        n = int(scored.sum())
        if n == 0:
            nan = float("nan")
            return AbsorptionResult(nan, nan, nan, 0, self.n_pairs)
        events = self.events[scored]
        fraction = torch.where(
            self.fraction_n[scored] > 0,
            self.fraction_sum[scored] / self.fraction_n[scored].clamp_min(1),
            torch.zeros(n, dtype=torch.float64),
        )
        return AbsorptionResult(
            full=float((self.full[scored] / events).mean()),
            partial=float((self.partial[scored] / events).mean()),
            absorbed_fraction=float(fraction.mean()),
            n_edges=n,
            n_edges_total=self.n_pairs,
        )


def absorption(
    latents: torch.Tensor,
    features: torch.Tensor,
    decoder: torch.Tensor,
    true: torch.Tensor,
    hierarchy: Hierarchy,
    align: float = ALIGN,
    carry: float = CARRY,
    min_events: int = MIN_EVENTS,
) -> AbsorptionResult:
    """Absorption of one batch of latents [N, m] given true activations [N, n] (see above)."""
    accumulator = AbsorptionAccumulator(decoder, true, hierarchy, align, carry, min_events)
    accumulator.add(latents, features)
    return accumulator.result()
