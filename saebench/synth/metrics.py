"""SynthSAEBench's ground-truth metrics, as SAELens's `synthetic.evals` defines them.

Pure functions of tensors (decoder rows, true directions, activations), plus `MetricAccumulator`,
which adds them up over held-out batches so memory stays bounded at any size.

- MCC: the one-to-one matching of decoder rows to true directions that maximises the summed
  |cosine| (Hungarian algorithm), and the mean |cosine| over the min(d_sae, n_features) matched
  pairs (O'Neill et al. 2025's mean correlation coefficient).
- Uniqueness: each latent's best match is the true feature of largest |cosine| with its decoder
  row; uniqueness = distinct best matches / d_sae (1: no two latents track the same feature).
- Per-latent precision / recall / F1: latent i, as a detector of its best match j (as above),
  counts TP = #(f_i > 0 ∧ a_j > 0), FP = #(f_i > 0 ∧ a_j = 0), FN = #(f_i = 0 ∧ a_j > 0) on the
  held-out samples; precision TP/(TP+FP), recall TP/(TP+FN), F1 their harmonic mean, each 0 where
  undefined; reported as means over all d_sae latents (a dead latent scores 0).
- Explained variance: 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² (x̄ the held-out mean).
- L0: mean number of latents with f > 0 per sample. Dead: latents that never fire on the
  held-out samples (count and fraction).
- Shrinkage: mean over samples of ‖x̂‖ / ‖x‖ (samples with ‖x‖ ≤ 1e-6 skipped); < 1 means the
  SAE shrinks its reconstructions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from saebench.errors import ConfigError

MIN_INPUT_NORM = 1e-6  # shrinkage is undefined on (near-)zero inputs


def unit_rows(matrix: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    matrix = matrix.detach().to(dtype)
    return matrix / matrix.norm(dim=1, keepdim=True).clamp_min(1e-12)


def cosines(
    learned: torch.Tensor, true: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Signed cosines [m, n] between learned rows [m, d] and true rows [n, d]. The matching
    metrics use float64, so identical directions give exactly 1, never 1 + rounding."""
    if learned.shape[1] != true.shape[1]:
        raise ConfigError(
            f"decoder rows have d={learned.shape[1]} but the true directions d={true.shape[1]};"
            " pass W_dec [d_sae, d_in] of an SAE trained on this stream"
        )
    return unit_rows(learned, dtype) @ unit_rows(true.to(learned.device), dtype).T


def hungarian_matching(learned: torch.Tensor, true: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the one-to-one matching that maximises the summed |cosine|."""
    from scipy.optimize import linear_sum_assignment

    similarity = cosines(learned, true, torch.float64).abs().cpu().numpy()
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    return rows, cols


def mcc(learned: torch.Tensor, true: torch.Tensor) -> float:
    """Mean |cosine| over the Hungarian-matched pairs (min(m, n) of them)."""
    similarity = cosines(learned, true, torch.float64).abs().cpu()
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(similarity.numpy(), maximize=True)
    return float(similarity[torch.as_tensor(rows), torch.as_tensor(cols)].mean())


def best_matches(learned: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """For every learned row, the index of the true direction of largest |cosine|."""
    return cosines(learned, true, torch.float64).abs().argmax(dim=1)


def uniqueness(learned: torch.Tensor, true: torch.Tensor) -> float:
    """Distinct best matches / number of learned rows."""
    if learned.shape[0] == 0:
        return 0.0
    return len(torch.unique(best_matches(learned, true))) / learned.shape[0]


@dataclass
class DetectionCounts:
    """Per-latent confusion counts [m] of "latent fires" against "its matched feature fires"."""

    tp: torch.Tensor
    fp: torch.Tensor
    fn: torch.Tensor
    tn: torch.Tensor

    @classmethod
    def zeros(cls, m: int) -> DetectionCounts:
        z = torch.zeros(m, dtype=torch.float64)
        return cls(z.clone(), z.clone(), z.clone(), z.clone())

    def add(self, latents: torch.Tensor, features: torch.Tensor, matches: torch.Tensor) -> None:
        fires = latents > 0
        truth = features[:, matches.to(features.device)] > 0
        self.tp += (fires & truth).sum(0).double().cpu()
        self.fp += (fires & ~truth).sum(0).double().cpu()
        self.fn += (~fires & truth).sum(0).double().cpu()
        self.tn += (~fires & ~truth).sum(0).double().cpu()


@dataclass(frozen=True)
class LatentScores:
    """Per-latent precision, recall and F1 [m] (0 where undefined)."""

    precision: torch.Tensor
    recall: torch.Tensor
    f1: torch.Tensor


def latent_scores(counts: DetectionCounts) -> LatentScores:
    def ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))

    precision = ratio(counts.tp, counts.tp + counts.fp)
    recall = ratio(counts.tp, counts.tp + counts.fn)
    f1 = ratio(2 * precision * recall, precision + recall)
    return LatentScores(precision, recall, f1)


@dataclass(frozen=True)
class SynthMetrics:
    """Every metric of one SAE on held-out samples of a stream."""

    mcc: float
    uniqueness: float
    precision: float
    recall: float
    f1: float
    explained_variance: float
    l0: float
    dead_latents: int
    dead_fraction: float
    shrinkage: float
    n_samples: int

    def to_json(self) -> dict:
        return asdict(self)


class MetricAccumulator:
    """Adds held-out batches up; `result()` gives SynthMetrics. Decoder-only metrics (MCC,
    uniqueness) and the latent -> feature matches are computed once, up front."""

    def __init__(self, decoder: torch.Tensor, true: torch.Tensor):
        self.decoder, self.true = decoder.detach(), true.detach()
        self.matches = best_matches(self.decoder, self.true)
        m = decoder.shape[0]
        self.counts = DetectionCounts.zeros(m)
        self.ever_fired = torch.zeros(m, dtype=torch.bool)
        self.n = 0
        self.active = 0.0
        self.sum_x = torch.zeros(decoder.shape[1], dtype=torch.float64)
        self.sum_sq_x = 0.0
        self.sum_sq_error = 0.0
        self.shrink_sum, self.shrink_n = 0.0, 0

    def add(
        self, x: torch.Tensor, x_hat: torch.Tensor, latents: torch.Tensor, features: torch.Tensor
    ) -> None:
        self.counts.add(latents, features, self.matches)
        fires = latents > 0
        self.ever_fired |= fires.any(0).cpu()
        self.n += x.shape[0]
        self.active += float(fires.sum())
        x64, x_hat64 = x.double(), x_hat.double()
        self.sum_x += x64.sum(0).cpu()
        self.sum_sq_x += float(x64.pow(2).sum())
        self.sum_sq_error += float((x64 - x_hat64).pow(2).sum())
        norms = x64.norm(dim=1)
        valid = norms > MIN_INPUT_NORM
        self.shrink_sum += float((x_hat64.norm(dim=1)[valid] / norms[valid]).sum())
        self.shrink_n += int(valid.sum())

    def result(self) -> SynthMetrics:
        if self.n == 0:
            raise ConfigError("no held-out samples were added; evaluate on n_samples >= 1")
        scores = latent_scores(self.counts)
        mean_x = self.sum_x / self.n
        variance = self.sum_sq_x / self.n - float(mean_x.pow(2).sum())
        m = self.decoder.shape[0]
        dead = int((~self.ever_fired).sum())
        return SynthMetrics(
            mcc=mcc(self.decoder, self.true),
            uniqueness=uniqueness(self.decoder, self.true),
            precision=float(scores.precision.mean()),
            recall=float(scores.recall.mean()),
            f1=float(scores.f1.mean()),
            explained_variance=explained_from(self.sum_sq_error / self.n, variance),
            l0=self.active / self.n,
            dead_latents=dead,
            dead_fraction=dead / m,
            shrinkage=self.shrink_sum / self.shrink_n if self.shrink_n else float("nan"),
            n_samples=self.n,
        )


def explained_from(mse: float, variance: float) -> float:
    """1 − MSE / Var; a constant input is explained fully only if reconstructed exactly."""
    if variance < 1e-12:
        return 1.0 if mse < 1e-12 else 0.0
    return 1.0 - mse / variance


def explained_variance(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² on one batch (the accumulator's formula)."""
    x64, x_hat64 = x.double(), x_hat.double()
    variance = float((x64 - x64.mean(0)).pow(2).sum(1).mean())
    return explained_from(float((x64 - x_hat64).pow(2).sum(1).mean()), variance)


def shrinkage(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Mean ‖x̂‖ / ‖x‖ over samples with ‖x‖ > MIN_INPUT_NORM."""
    norms = x.double().norm(dim=1)
    valid = norms > MIN_INPUT_NORM
    return float((x_hat.double().norm(dim=1)[valid] / norms[valid]).mean())
