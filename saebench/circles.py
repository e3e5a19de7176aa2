"""Pure circle-scoring helpers for the `circular` task (Engels et al. 2024, "Not All Language
Model Features Are Linear", arXiv:2405.14860).

A representation of p cyclic values (7 days, 12 months) is circular when its top-2 principal
components place value v at angle 2πkv/p for some frequency k. The score is the best R² of
fitting (cos, sin)(2πkv/p) from the 2 PCs, minus the 95th percentile of the same score under
permuted labels: with few values a flexible fit looks circular by chance, so only the excess
over that null means anything.

That null permutes labels point by point, so it destroys the value clusters themselves: any
representation that separates the values in a plane beats it. Whether the values are also in
cyclic order is asked by `circle_reference` (the `circular` task's validity reference): the same
R² against a null that relabels whole values (v -> π(v) for every point), which keeps the clusters
and the plane and changes only which value sits where, with a bootstrap over points.
"""

from __future__ import annotations

import math

import numpy as np


def circle_r2(projected: np.ndarray, values: np.ndarray, period: int) -> tuple[float, int]:
    """Best R² over frequencies k (coprime to p, k ≤ p/2) of a linear map from the 2-D points to
    (cos 2πkv/p, sin 2πkv/p); returns (R², k)."""
    design = np.column_stack([projected, np.ones(len(projected))])
    best = (-math.inf, 0)
    for k in range(1, period // 2 + 1):
        if math.gcd(k, period) != 1:
            continue
        angle = 2 * math.pi * k * values / period
        target = np.column_stack([np.cos(angle), np.sin(angle)])
        coef, *_ = np.linalg.lstsq(design, target, rcond=None)
        residual = ((target - design @ coef) ** 2).sum()
        total = ((target - target.mean(0)) ** 2).sum()
        best = max(best, (1 - residual / total, k))
    return float(best[0]), best[1]


def value_centroids(points: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mean point of each value present, in sorted value order: [n_values, d]."""
    # Rows grouped by a stable sort, so each mean adds its rows in their original order, as
    # points[values == v].mean(0) does, without a mask per value.
    order = np.argsort(values, kind="stable")
    _, starts = np.unique(values[order], return_index=True)
    ends = [*starts[1:], len(values)]
    grouped = points[order]
    # sum / count: the value mean() returns, without its per-call overhead.
    return np.stack([grouped[a:b].sum(0) / int(b - a) for a, b in zip(starts, ends)])


def between_value_plane(points: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, float]:
    """Project points on the top-2 PCs of the per-value centroids (the plane that separates the
    values, ignoring context variance), and the share of the centroids' variance it holds."""
    centre = points.mean(0)
    centroids = value_centroids(points, values) - centre
    _, singular, vt = np.linalg.svd(centroids, full_matrices=False)
    total = (singular**2).sum()
    fraction = float((singular[:2] ** 2).sum() / total) if total > 0 else 0.0
    return (points - centre) @ vt[:2].T, fraction


def _score(points, values, period):
    projected, variance = between_value_plane(points, values)
    r2, k = circle_r2(projected, values, period)
    return projected, variance, r2, k


def circularity(
    points: np.ndarray, values: np.ndarray, period: int, n_null: int = 100, seed: int = 0
) -> dict:
    """Circle R² in the plane of the value centroids, its permuted-label null (95th percentile;
    the plane is re-fitted for every permutation, so the null pays the same selection cost), the
    excess, the variance share of that plane, the best frequency, and the cyclic order."""
    projected, variance, r2, k = _score(points, values, period)
    rng = np.random.default_rng(seed)
    shuffled = np.stack([rng.permutation(values) for _ in range(n_null)])
    null95 = float(np.percentile(null_r2(points, shuffled, period), 95))
    return {
        "r2": r2,
        "null95": null95,
        "excess": r2 - null95,
        "variance_top2": variance,
        "frequency": float(k),
        "order": cyclic_order_agreement(projected, values, period, k),
    }


def null_r2(points: np.ndarray, shuffled: np.ndarray, period: int) -> np.ndarray:
    """_score's R² for every row of shuffled [P, n] (permuted values): each permutation's plane
    as between_value_plane finds it (the same operations, stacked where numpy gives the same
    bits), then every circle fit at once (see batched_circle_r2)."""
    centre = points.mean(0)
    centred = points - centre
    centroids = np.stack([value_centroids(points, values) - centre for values in shuffled])
    _, _, vt = np.linalg.svd(centroids, full_matrices=False)  # LAPACK per matrix, as unstacked
    projected = np.stack([centred @ plane[:2].T for plane in vt])
    return batched_circle_r2(projected, shuffled, period)


def batched_circle_r2(projected: np.ndarray, values: np.ndarray, period: int) -> np.ndarray:
    """circle_r2's R² for a stack of point sets, projected [P, n, 2] with values [P, n]: the
    same least-squares fits (lstsq's rank cut-off included) as stacked array operations, equal
    up to float64 rounding."""
    design = np.concatenate([projected, np.ones_like(projected[..., :1])], axis=-1)
    design = design.astype(np.float64)  # as circle_r2's column_stack with float64 ones
    # The fitted values of a least-squares fit are the projection on the design's column space.
    u, singular, _ = np.linalg.svd(design, full_matrices=False)
    cutoff = np.finfo(design.dtype).eps * max(design.shape[1:]) * singular[:, :1]
    u = u * (singular > cutoff)[:, None, :]  # lstsq (rcond=None) ignores tiny directions
    best = np.full(len(design), -np.inf)
    for k in range(1, period // 2 + 1):
        if math.gcd(k, period) != 1:
            continue
        angle = 2 * math.pi * k * values / period
        target = np.stack([np.cos(angle), np.sin(angle)], axis=-1)  # [P, n, 2]
        fitted = u @ (u.transpose(0, 2, 1) @ target)
        residual = ((target - fitted) ** 2).sum((1, 2))
        total = ((target - target.mean(1, keepdims=True)) ** 2).sum((1, 2))
        best = np.maximum(best, 1 - residual / total)
    return best


def cyclic_order_agreement(projected: np.ndarray, values: np.ndarray, period: int, k: int) -> float:
    """Share of values whose centroid's angular neighbour (at frequency k) is the expected one."""
    if k == 0:
        return 0.0
    centroids = np.array(
        [
            projected[values == v].mean(0) if (values == v).any() else [np.nan] * 2
            for v in range(period)
        ]
    )
    angles = np.arctan2(centroids[:, 1], centroids[:, 0])
    order = [v for v in np.argsort(angles) if not np.isnan(angles[v])]
    if len(order) < 3:
        return 0.0
    # Value v sits at angle 2πkv/p, so the angular neighbour of v is v ± k⁻¹ (mod p).
    inverse = pow(k, -1, period)
    steps = [(order[(i + 1) % len(order)] - value) % period for i, value in enumerate(order)]
    forward = sum(step == inverse for step in steps)
    backward = sum(step == (-inverse) % period for step in steps)
    return max(forward, backward) / len(order)


def value_plane(points: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Orthonormal basis [2, d] of the top-2 PCs of the per-value centroids of `points`
    (centred on the centroids' mean, so unequal value counts do not tilt it)."""
    centroids = value_centroids(points, values)
    _, _, vt = np.linalg.svd(centroids - centroids.mean(0), full_matrices=False)
    return vt[:2]


def plane_fidelity(
    raw: np.ndarray, reconstruction: np.ndarray, values: np.ndarray, basis: np.ndarray
) -> float:
    """How much of the model's value plane `basis` [2, d] (fitted on other, raw points) the
    reconstruction reproduces: 1 − Σ_v ‖C_v − Ĉ_v‖² / Σ_v ‖C_v‖², where C_v and Ĉ_v are the
    plane coordinates of value v's centroid in `raw` and in `reconstruction` (rows paired),
    each set centred on its mean over values. Nothing is fitted to the reconstruction, so a
    decoder that writes the right codes into other directions scores about 0, not 1.

    Range (−∞, 1]: 1 is the raw centroids exactly, 0 a reconstruction with no spread in the
    plane (a no-op, a constant), below 0 a wrong arrangement. Scale counts: a reconstruction
    α·raw scores 1 − (1 − α)², so shrinkage (an L1 penalty's) costs fidelity, as it costs the
    model the value. Only the plane is read: error outside it is not. NaN when the raw
    centroids (nearly) coincide in the plane, where the score is undefined."""
    if raw.shape != reconstruction.shape:
        raise ValueError(f"raw {raw.shape} and reconstruction {reconstruction.shape} differ")
    true = value_centroids(raw @ basis.T, values)
    made = value_centroids(reconstruction @ basis.T, values)
    true, made = true - true.mean(0), made - made.mean(0)
    spread = float((true**2).sum())
    scale = float(((raw - raw.mean(0)) ** 2).sum(1).mean()) * len(true)
    if not spread > 1e-9 * scale:
        return float("nan")
    return 1.0 - float(((true - made) ** 2).sum()) / spread


def move_in_plane(acts: np.ndarray, basis: np.ndarray, target_coords: np.ndarray) -> np.ndarray:
    """Replace each activation's coordinates in the plane `basis` [2, d] by target_coords [n, 2],
    leaving the orthogonal complement untouched (the rotation intervention)."""
    return acts - (acts @ basis.T) @ basis + target_coords @ basis


def value_coordinates(coords: np.ndarray, values: np.ndarray, period: int) -> np.ndarray:
    """Mean row of `coords` [n, c] for every value 0..period-1: [period, c], NaN rows for
    values absent from `values`."""
    out = np.full((period, coords.shape[1]), np.nan)
    for v in np.unique(values):
        out[v] = coords[values == v].mean(0)
    return out


def relabelled_null_r2(
    points: np.ndarray, values: np.ndarray, period: int, n_null: int = 1000, seed: int = 0
) -> np.ndarray:
    """_score's R² after each of n_null random relabellings of whole values (every point of
    value v gets π(v)): the value-centroid plane is unchanged (the set of centroids is), so the
    null is "the values are separated in that plane, in no particular order"."""
    projected, _ = between_value_plane(points, values)
    rng = np.random.default_rng(seed)
    permutations = np.stack([rng.permutation(period) for _ in range(n_null)])
    stacked = np.broadcast_to(projected, (n_null, *projected.shape))
    return batched_circle_r2(stacked, permutations[:, values], period)


def bootstrap_circle_r2(
    points: np.ndarray,
    values: np.ndarray,
    period: int,
    n_resamples: int = 2000,
    seed: int = 0,
    chunk: int = 100,
) -> np.ndarray:
    """_score's R² on n_resamples resamples of the points (with replacement; the plane is refit
    every time). Resample r draws rng.integers(0, n, size=n) from default_rng(seed), r in order,
    as saebench.stats.bootstrap_interval does for a mean; `chunk` resamples are scored at once
    (the same fits as _score, stacked; equal up to float rounding)."""
    rng = np.random.default_rng(seed)
    n = len(values)
    x = points.astype(np.float64)
    onehot = (values[:, None] == np.arange(period)).astype(np.float64)  # [n, p]
    out = np.empty(n_resamples)
    for start in range(0, n_resamples, chunk):
        rows = rng.integers(0, n, size=(min(chunk, n_resamples - start), n))
        # Resample r as multiplicities of the original points: means are weighted sums.
        weights = np.stack([np.bincount(r, minlength=n) for r in rows]).astype(np.float64)
        members = weights[:, None, :] * onehot.T[None]  # [R, p, n]
        counts = members.sum(-1)  # [R, p]
        centroids = (members @ x) / np.maximum(counts, 1)[..., None]  # [R, p, d]
        centre = (weights @ x / n)[:, None, :]  # [R, 1, d]
        # Absent values get no centroid row (as value_centroids): zero rows leave the SVD as is.
        centred = (centroids - centre) * (counts > 0)[..., None]
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        planes = vt[:, :2].transpose(0, 2, 1)  # [R, d, 2]
        projected = x @ planes - centre @ planes  # every original point, in each plane
        resampled = np.take_along_axis(projected, rows[..., None], axis=1)
        out[start : start + len(rows)] = batched_circle_r2(resampled, values[rows], period)
    return out


def circle_reference(
    points: np.ndarray,
    values: np.ndarray,
    period: int,
    seed: int = 0,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    n_null: int = 1000,
) -> dict:
    """Circle R² of `points` with its percentile bootstrap interval over points (low, high) and
    the value-relabelling null (its mean and 95th percentile): the circle is there when low is
    above null95."""
    _, _, r2, k = _score(points, values, period)
    boots = bootstrap_circle_r2(points, values, period, n_resamples, seed)
    low, high = np.quantile(boots, [(1 - confidence) / 2, (1 + confidence) / 2])
    null = relabelled_null_r2(points, values, period, n_null, seed)
    return {
        "r2": r2,
        "frequency": float(k),
        "low": float(low),
        "high": float(high),
        "null_mean": float(null.mean()),
        "null95": float(np.percentile(null, 95)),
    }
