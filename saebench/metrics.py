"""Pure metric functions. Each is unit-tested against a brute-force reference. Aggregates are
over tokens; sums run in float64 so large eval sets stay exact.

Definitions (x an eval activation, x̂ its reconstruction, f the latents, x̄ the eval-set mean):
L0 = mean #{f_i ≠ 0}; FVU = Σ‖x − x̂‖² / Σ‖x − x̄‖²; relative reconstruction bias
= E‖x̂‖² / E⟨x, x̂⟩ (Wright & Sharkey 2024; < 1 means shrinkage); loss recovered
= (CE_abl − CE_sae) / (CE_abl − CE_clean) and the KL score (KL_abl − KL_sae) / KL_abl, as in
SAEBench (Karvonen et al. 2025). `never_fired_eval` counts latents that never fire on the eval
tokens: on a few thousand tokens that flags rare latents, not dead ones (the training-window dead
count is training's `dead_latents` / `dead_fraction`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from saebench.errors import SaebenchError


class MetricIsNaN(SaebenchError):
    """A metric came out NaN/inf: the cell fails with this reason (never a sentinel value)."""


def finite(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise MetricIsNaN(f"metric {name} is {value}; the SAE output is not finite")
    return value


class ReconstructionStats:
    """Streaming accumulator for the frontier metrics over batches of (x, f, x̂)."""

    def __init__(self, d_sae: int):
        self.n = 0
        self.sum_x: torch.Tensor | None = None  # Σx, on the CPU in float64
        self.sum_x_sq = 0.0  # Σ‖x‖²
        self.sum_err = 0.0  # Σ‖x − x̂‖²
        self.sum_xhat_sq = 0.0  # Σ‖x̂‖²
        self.sum_dot = 0.0  # Σ⟨x, x̂⟩
        self.sum_cos = 0.0
        self.sum_norm_ratio = 0.0
        self.sum_l0 = 0.0
        self.fire_counts = torch.zeros(d_sae, dtype=torch.float64)

    @torch.no_grad()
    def update(self, x: torch.Tensor, f: torch.Tensor, x_hat: torch.Tensor) -> None:
        x, x_hat = x.double(), x_hat.double()
        self.n += x.shape[0]
        batch_sum = x.sum(0).cpu()
        self.sum_x = batch_sum if self.sum_x is None else self.sum_x + batch_sum
        x_norm, x_hat_norm = x.norm(dim=-1), x_hat.norm(dim=-1)
        self.sum_x_sq += x_norm.pow(2).sum().item()
        self.sum_err += (x - x_hat).pow(2).sum().item()
        self.sum_xhat_sq += x_hat_norm.pow(2).sum().item()
        dots = (x * x_hat).sum(-1)
        self.sum_dot += dots.sum().item()
        self.sum_cos += (dots / (x_norm * x_hat_norm).clamp_min(1e-12)).sum().item()
        self.sum_norm_ratio += (x_hat_norm / x_norm.clamp_min(1e-12)).sum().item()
        active = f != 0
        self.sum_l0 += active.sum().item()
        self.fire_counts += active.sum(0).double().cpu()

    def results(self) -> tuple[dict[str, float], np.ndarray]:
        """(metric name -> value, per-latent firing density [d_sae])."""
        assert self.sum_x is not None, "results() needs at least one update()"
        n = self.n
        # Σ‖x − x̄‖² = Σ‖x‖² − n‖x̄‖² (x̄ the eval-set mean; not the mean of x², a known bug).
        total_variance = self.sum_x_sq - (self.sum_x.pow(2).sum().item() / n)
        density = (self.fire_counts / n).numpy()
        out = {
            "l0": self.sum_l0 / n,
            "mse": self.sum_err / n,
            "fvu": self.sum_err / total_variance,
            "cosine_similarity": self.sum_cos / n,
            "l2_ratio": self.sum_norm_ratio / n,
            "relative_reconstruction_bias": self.sum_xhat_sq / self.sum_dot,
            "never_fired_eval": float(dead_count(density)),
            "dense_1e-2": float((density > 1e-2).sum()),
            "dense_1e-3": float((density > 1e-3).sum()),
            "eval_tokens": float(n),
        }
        out["explained_variance"] = 1.0 - out["fvu"]
        return {name: finite(name, value) for name, value in out.items()}, density


# ---- single-shot versions (the accumulator's brute-force twins, handy for users) ----------
def l0(f: torch.Tensor) -> float:
    return (f != 0).double().sum(-1).mean().item()


def mse(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    return (x.double() - x_hat.double()).pow(2).sum(-1).mean().item()


def fvu(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    x, x_hat = x.double(), x_hat.double()
    return ((x - x_hat).pow(2).sum() / (x - x.mean(0)).pow(2).sum()).item()


def relative_reconstruction_bias(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    x, x_hat = x.double(), x_hat.double()
    return (x_hat.pow(2).sum() / (x * x_hat).sum()).item()


def feature_density(f: torch.Tensor) -> np.ndarray:
    return (f != 0).double().mean(0).cpu().numpy()


def dead_count(density: np.ndarray) -> int:
    """Latents with density 0: never fired on the tokens the density was measured on."""
    return int((np.asarray(density) == 0).sum())


def log10_density_histogram(density: np.ndarray, bins: int = 40, low: float = -7.0):
    """Histogram of log10(density) for latents that fired; those that never did (density 0,
    no log) counted separately."""
    density = np.asarray(density)
    live = density[density > 0]
    counts, edges = np.histogram(np.log10(live), bins=bins, range=(low, 0.0))
    return counts, edges, int((density == 0).sum())


# ---- loss recovered ------------------------------------------------------------------------
def loss_recovered_score(ce_ablation: float, ce_sae: float, ce_clean: float) -> float:
    """(CE_abl − CE_sae) / (CE_abl − CE_clean): 1 = as good as clean, 0 = as bad as ablating."""
    denominator = ce_ablation - ce_clean
    if abs(denominator) < 1e-12:
        raise MetricIsNaN("ablation does not change the loss, so loss recovered is undefined")
    return (ce_ablation - ce_sae) / denominator


def kl_score(kl_ablation: float, kl_sae: float) -> float:
    if abs(kl_ablation) < 1e-12:
        raise MetricIsNaN("ablation KL is 0, so the KL score is undefined")
    return (kl_ablation - kl_sae) / kl_ablation


# ---- frontier helpers ------------------------------------------------------------------------
def pareto_frontier(l0s, values, lower_is_better: bool = True) -> list[int]:
    """Indices of the points not dominated (fewer-or-equal L0 and better-or-equal value)."""
    l0s, values = np.asarray(l0s, float), np.asarray(values, float)
    sign = 1.0 if lower_is_better else -1.0
    order = np.lexsort((sign * values, l0s))
    frontier, best = [], math.inf
    for index in order:
        if sign * values[index] < best:
            frontier.append(int(index))
            best = sign * values[index]
    return frontier


def interpolate_at_l0(l0s, values, target_l0: float) -> float:
    """Linear interpolation in log L0 along a method's points; NaN outside the covered range."""
    l0s, values = np.asarray(l0s, float), np.asarray(values, float)
    keep = l0s > 0
    l0s, values = l0s[keep], values[keep]
    if len(l0s) == 0 or target_l0 <= 0:
        return math.nan
    order = np.argsort(l0s)
    log_l0, values = np.log(l0s[order]), values[order]
    target = math.log(target_l0)
    if target < log_l0[0] - 1e-9 or target > log_l0[-1] + 1e-9:
        return math.nan
    return float(np.interp(target, log_l0, values))


def matched_l0_targets(per_method_l0s: dict, n: int = 3) -> list[float]:
    """Up to n L0 values (geometric spacing) inside every method's covered L0 range."""
    ranges = [(min(v), max(v)) for v in per_method_l0s.values() if len(v)]
    if not ranges:
        return []
    low, high = max(r[0] for r in ranges), min(r[1] for r in ranges)
    if low <= 0 or low > high:
        return []
    if n == 1 or math.isclose(low, high):
        return [float(math.sqrt(low * high))]
    return [float(v) for v in np.geomspace(low, high, n)]
