"""Two SAEs side by side: latents matched one-to-one by decoder cosine, and the ground-truth
values each dictionary has a latent for that the other lacks.

The matching is the assignment that maximises the summed cosine between matched decoder
directions (the Hungarian algorithm, scipy's linear_sum_assignment; rectangular when the widths
differ: every latent of the narrower SAE gets a partner). A greedy nearest neighbour would give
two latents of A the same partner in B and overstate how alike the dictionaries are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from saebench.rundir import SaeKey

# The assignment is O(n³) in time and builds an n × n cost matrix: a 4096-wide pair takes
# seconds, a 16k-wide one (the full preset) would take hours. Wider pairs are not matched.
MAX_MATCH = 4096
CAPTURED_F1 = 0.5  # a value is captured when its best latent's held-out F1 reaches this
SHARED_COSINE = 0.9  # matched pairs at least this close count as the same direction


@dataclass(frozen=True)
class Matching:
    """A one-to-one matching of A's latents to B's: partner[i] in B (-1: none when B is
    narrower) and the cosine of each pair."""

    partner: np.ndarray  # int [d_sae_a]
    cosine: np.ndarray  # float [d_sae_a], NaN where unmatched

    @property
    def mean_cosine(self) -> float:
        matched = self.cosine[self.partner >= 0]
        return float(matched.mean()) if len(matched) else float("nan")

    def fraction_above(self, threshold: float = SHARED_COSINE) -> float:
        matched = self.cosine[self.partner >= 0]
        return float((matched >= threshold).mean()) if len(matched) else float("nan")

    def inverse(self, d_sae_b: int | None = None) -> Matching:
        """The same matching seen from B: B's latent j -> its partner in A (-1: none)."""
        width = d_sae_b if d_sae_b is not None else int(self.partner.max(initial=-1)) + 1
        partner = np.full(width, -1, dtype=np.int64)
        cosine = np.full(width, np.nan)
        rows = np.flatnonzero(self.partner >= 0)
        partner[self.partner[rows]] = rows
        cosine[self.partner[rows]] = self.cosine[rows]
        return Matching(partner=partner, cosine=cosine)


@dataclass(frozen=True)
class Captured:
    """Ground-truth values with a latent at F1 >= CAPTURED_F1 in one SAE only, or in both."""

    only_a: tuple[tuple[str, float, float], ...]  # (label, F1 in A, F1 in B)
    only_b: tuple[tuple[str, float, float], ...]
    both: tuple[str, ...]
    neither: int


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm (a zero row stays zero: cosine 0 with everything)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def cosine_matrix(decoder_a: np.ndarray, decoder_b: np.ndarray) -> np.ndarray:
    """[d_sae_a, d_sae_b] cosine between decoder rows (W_dec is [d_sae, d_in])."""
    return unit_rows(decoder_a) @ unit_rows(decoder_b).T


def match_latents(decoder_a: np.ndarray, decoder_b: np.ndarray) -> Matching:
    """The one-to-one matching of decoder directions with the largest total cosine."""
    from scipy.optimize import linear_sum_assignment

    cosine = cosine_matrix(decoder_a, decoder_b)
    rows, columns = linear_sum_assignment(cosine, maximize=True)
    partner = np.full(cosine.shape[0], -1, dtype=np.int64)
    partner[rows] = columns
    values = np.full(cosine.shape[0], np.nan)
    values[rows] = cosine[rows, columns]
    return Matching(partner=partner, cosine=values)


def captured_labels(
    names: tuple[str, ...] | list[str], f1_a: np.ndarray, f1_b: np.ndarray
) -> Captured:
    """Split the labels by which SAE has a latent for them (held-out F1 of the train-picked
    latent, saebench.report.groundtruth.LatentLabels.label_f1). Sorted by the gap."""
    a, b = np.asarray(f1_a) >= CAPTURED_F1, np.asarray(f1_b) >= CAPTURED_F1
    rows = list(zip(names, np.asarray(f1_a, float), np.asarray(f1_b, float)))
    only_a = sorted(
        ((n, float(x), float(y)) for (n, x, y), keep in zip(rows, a & ~b) if keep),
        key=lambda r: r[2] - r[1],
    )
    only_b = sorted(
        ((n, float(x), float(y)) for (n, x, y), keep in zip(rows, b & ~a) if keep),
        key=lambda r: r[1] - r[2],
    )
    return Captured(
        only_a=tuple(only_a),
        only_b=tuple(only_b),
        both=tuple(n for n, keep in zip(names, a & b) if keep),
        neither=int((~a & ~b).sum()),
    )


@dataclass(frozen=True)
class PairComparison:
    """SAE A against SAE B: the matching and, with ground truth for both, what each captures."""

    a: SaeKey
    b: SaeKey
    d_sae_b: int
    matching: Matching
    captured: Captured | None
    captured_reason: str = ""  # why `captured` is None

    def inverse(self) -> Matching:
        return self.matching.inverse(self.d_sae_b)


def compare_pair(
    a: SaeKey,
    b: SaeKey,
    decoder_a: np.ndarray,
    decoder_b: np.ndarray,
    truth_a: tuple[list[str], list[float]] | None,
    truth_b: tuple[list[str], list[float]] | None,
) -> PairComparison:
    """Match A's latents to B's; `truth_*`: (label names, held-out F1 per label) or None."""
    matching = match_latents(decoder_a, decoder_b)
    captured, reason = None, ""
    if truth_a is None or truth_b is None:
        reason = "No ground truth for both SAEs: nothing to say about captured values."
    elif list(truth_a[0]) != list(truth_b[0]):
        reason = "The two SAEs were labelled on different ground-truth examples: rebuild both."
    else:
        captured = captured_labels(truth_a[0], np.asarray(truth_a[1]), np.asarray(truth_b[1]))
    return PairComparison(a, b, int(np.asarray(decoder_b).shape[0]), matching, captured, reason)
