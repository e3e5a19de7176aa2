"""Task `circular` (Engels et al. 2024): are days of the week and months on a circle in the
SAE's features?

Points: the activation at the day (month) word of calendar sentences. Latent selection is blind
to angles (it never looks at the quantity being scored, or even a random dictionary could be
picked to look circular): the ≤ 2p latents most specific to that concept's tokens (mean activation on them over mean activation on all eval tokens, among latents firing
on ≥ 5% of them). The points are reconstructed from those latents only, projected on their top-2
PCs, and scored by the best-frequency circle R² minus a permuted-label null (95th percentile),
the cyclic order of the value centroids, and the variance share of the top-2 PCs. The same
analysis on the raw activations is the ceiling (raw_*).

Engels et al.'s own grouping is reported too (cluster_*): decoder directions are spectrally
clustered on their cosine-similarity graph, and the cluster whose reconstruction carries the most
between-value variance of the points (angle-blind) is scored the same way.

Rotation intervention (rotation_*): on "N days from X is" prompts, at the last position (where a
2-layer model has already gathered X and N, so patching the X token itself changes nothing), the
activation's coordinates in a 2-D plane are replaced by the mean coordinates of prompts whose
answer is k steps further; success = the model's answer moves by k (k = 1, 2, 3). The plane comes
from the answer-value centroids of the raw activations (ceiling) or of the reconstruction from the
SAE's most answer-selective latents (η², angle-blind); the edit always uses raw coordinates, so the
SAE contributes only its plane.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from saebench.circles import (
    between_value_variance,
    circularity,
    decoder_clusters,
    move_in_plane,
    value_plane,
)
from saebench.hookspecs import hookimpl
from saebench.interventions import run_patched, separation_scores, tokenize
from saebench.probing import example_activations
from saebench.rundir import RunDir, SaeKey
from saebench.specs import MetricInfo, ModelHandle, TaskSpec

if TYPE_CHECKING:
    import pandas as pd

N_EXAMPLES = {"smoke": 210, "default": 700, "full": 2000}
DATA_SEED = 31
ROTATION_PROMPTS = {"smoke": 150, "default": 400, "full": 1000}
ROTATION_STEPS = (1, 2, 3)
NAME = "circular"
POINTS_FILE = "circle_points.npz"


def concept_points(ctx):
    """{kind: (activations at the value word [n, d], values [n], period)}: once per run."""
    return ctx.once(("concept_points", ctx.preset), lambda: _concept_points(ctx))


def _concept_points(ctx):
    from saebench.toyworld.world import DAYS, MONTHS

    n = N_EXAMPLES.get(ctx.preset, 700)
    examples = ctx.model.world.generate("calendar", 4 * n, seed=DATA_SEED)
    points = {}
    for kind, names in (("day", DAYS), ("month", MONTHS)):
        chosen = [e for e in examples if e.labels["kind"] == kind][:n]
        acts = example_activations(
            ctx.model.bridge, ctx.model.tokenizer, ctx.hook, [e.text for e in chosen], ctx.device
        )
        rows = torch.stack(
            [a[e.text.split().index(names[e.labels["start"]])] for a, e in zip(acts, chosen)]
        )
        points[kind] = (rows, np.array([e.labels["start"] for e in chosen]), len(names))
    return points


def select_latents(f_concept: torch.Tensor, f_all: torch.Tensor, period: int) -> torch.Tensor:
    """Indices of the ≤ 2p latents most specific to the concept's tokens (angle-blind)."""
    fires = (f_concept > 0).float().mean(0)
    specificity = f_concept.mean(0) / (f_all.mean(0) + 1e-6)
    specificity[fires < 0.05] = -1
    chosen = torch.argsort(specificity, descending=True)[: 2 * period]
    return chosen[specificity[chosen] > 0]


def arithmetic_prompts(ctx):
    """{kind: (token lists, clean last-position activations [n, d], answers [n], period,
    answer-word token ids [period])} for trained "N days from X is" prompts; once per run."""
    return ctx.once(("rotation_prompts", ctx.preset), lambda: _arithmetic_prompts(ctx))


def _arithmetic_prompts(ctx):
    from saebench.toyworld.world import DAYS, MONTHS, answer_token_id

    n = ROTATION_PROMPTS.get(ctx.preset, 400)
    examples = [
        e
        for e in ctx.model.world.generate("calendar", 6 * n, seed=DATA_SEED + 1)
        if not e.labels["mention"]
    ]
    prompts = {}
    for kind, names in (("day", DAYS), ("month", MONTHS)):
        chosen = [e for e in examples if e.labels["kind"] == kind][:n]
        tokens = tokenize(ctx.model.bridge, [e.prompt for e in chosen])
        positions = [len(t) - 1 for t in tokens]
        acts, _ = run_patched(ctx.model.bridge, ctx.hook, tokens, positions, device=ctx.device)
        answer_ids = torch.tensor([answer_token_id(ctx.model.tokenizer, v) for v in names])
        prompts[kind] = (
            tokens,
            acts.float().cpu(),
            np.array([e.labels["answer"] for e in chosen]),
            len(names),
            answer_ids,
        )
    return prompts


def rotation_accuracy(
    ctx,
    tokens,
    acts: np.ndarray,
    answers: np.ndarray,
    period: int,
    answer_ids: torch.Tensor,
    basis: np.ndarray,
) -> float:
    """Share of (prompt, k) whose answer moves by k when the plane's coordinates are moved to the
    mean coordinates of answer + k."""
    coords = acts @ basis.T
    centroids = np.stack(
        [
            coords[answers == v].mean(0) if (answers == v).any() else np.full(2, np.nan)
            for v in range(period)
        ]
    )
    positions = [len(t) - 1 for t in tokens]
    targets = [(answers + k) % period for k in ROTATION_STEPS]
    # Every step's edited prompts in one batched run (a prompt's logits do not depend on its
    # batch), not one run per step.
    new = np.concatenate(
        [move_in_plane(acts, basis, np.nan_to_num(centroids[target])) for target in targets]
    )
    new_acts = torch.tensor(new, dtype=torch.float32)

    def edit(chosen, indices):
        return new_acts[indices.cpu()].to(chosen.device)

    steps = len(ROTATION_STEPS)
    _, logits = run_patched(
        ctx.model.bridge, ctx.hook, list(tokens) * steps, positions * steps, edit, ctx.device
    )
    predicted = logits.argmax(-1).cpu().reshape(steps, len(tokens))
    hits = [
        (step_predicted == answer_ids[target]).numpy()[~np.isnan(centroids[target]).any(1)]
        for step_predicted, target in zip(predicted, targets)
    ]
    return float(np.concatenate(hits).mean())


def raw_rotation_accuracy(ctx, kind: str, tokens, acts, answers, period, answer_ids) -> float:
    """rotation_accuracy in the plane of the raw activations' answer centroids (the ceiling):
    it does not depend on the SAE, so it runs once per kind."""
    return ctx.once(
        ("raw_rotation_accuracy", ctx.preset, kind),
        lambda: rotation_accuracy(
            ctx, tokens, acts, answers, period, answer_ids, value_plane(acts, answers)
        ),
    )


def cluster_labels(ctx) -> np.ndarray:
    """Decoder cluster id of every latent (Engels et al.'s grouping, about 32 latents each)."""
    W_dec = ctx.sae.W_dec.detach().cpu()
    return decoder_clusters(W_dec.numpy(), max(2, len(W_dec) // 32), seed=ctx.seed)


def best_cluster(
    ctx,
    rows: torch.Tensor,
    f: torch.Tensor,
    values: np.ndarray,
    labels: Callable[[], np.ndarray] | None = None,
):
    """(latent indices, reconstruction) of the decoder cluster carrying the most between-value
    variance of the concept points; clusters over latents that fire on some concept token.
    labels() -> cluster_labels(ctx), when the caller shares one clustering between concepts."""
    alive = torch.nonzero((f > 0).any(0)).flatten()
    if len(alive) < 2:
        return alive, None
    W_dec = ctx.sae.W_dec.detach().cpu()
    labels = labels() if labels is not None else cluster_labels(ctx)
    best, best_score = None, 0.0
    for cluster in np.unique(labels[alive.numpy()]):
        members = alive[torch.from_numpy(labels[alive.numpy()] == cluster)]
        if len(members) < 2:
            continue
        reconstruction = (f[:, members] @ W_dec[members]).numpy()
        score = between_value_variance(reconstruction, values)
        if score > best_score:
            best, best_score = (members, reconstruction), score
    return best if best else (alive[:0], None)


NO_CIRCLE = {"excess": 0.0, "r2": 0.0, "variance_top2": 0.0, "order": 0.0, "frequency": 0.0}


def raw_circularity(ctx, kind: str, rows: torch.Tensor, values: np.ndarray, period: int) -> dict:
    """circularity of the raw concept points (the ceiling): the same for every SAE."""
    return ctx.once(
        ("raw_circularity", ctx.preset, kind, ctx.seed),
        lambda: circularity(rows.numpy(), values, period, seed=ctx.seed),
    )


def run(ctx) -> dict:
    metrics, artifacts = {}, {}
    # The SAE's decoder clusters serve both concepts: cluster once per cell, when first needed.
    labels = functools.cache(lambda: cluster_labels(ctx))
    with torch.no_grad():
        f_all = ctx.sae.encode(ctx.eval_acts[:20_000].to(ctx.device)).cpu()
        for kind, (rows, values, period) in concept_points(ctx).items():
            raw = raw_circularity(ctx, kind, rows, values, period)
            f = ctx.sae.encode(rows.to(ctx.device)).cpu()
            latents = select_latents(f, f_all, period)
            metrics[f"{kind}_latents_selected"] = float(len(latents))
            if len(latents) >= 2:
                reconstruction = f[:, latents] @ ctx.sae.W_dec[latents].detach().cpu()
                scored = circularity(reconstruction.numpy(), values, period, seed=ctx.seed)
                artifacts[f"{kind}_points"] = reconstruction.numpy()
            else:  # no concept-specific latents: nothing circular to find
                scored = dict(NO_CIRCLE)
            metrics[f"{kind}_circle_excess_r2"] = scored["excess"]
            metrics[f"{kind}_circle_r2"] = scored["r2"]
            metrics[f"{kind}_cyclic_order"] = scored["order"]
            metrics[f"{kind}_variance_top2"] = scored["variance_top2"]
            metrics[f"{kind}_frequency"] = scored["frequency"]
            metrics[f"raw_{kind}_circle_excess_r2"] = raw["excess"]
            metrics[f"raw_{kind}_cyclic_order"] = raw["order"]
            metrics[f"raw_{kind}_frequency"] = raw["frequency"]
            members, cluster_points = best_cluster(ctx, rows, f, values, labels)
            clustered = (
                circularity(cluster_points, values, period, seed=ctx.seed)
                if cluster_points is not None
                else dict(NO_CIRCLE)
            )
            metrics[f"{kind}_cluster_size"] = float(len(members))
            metrics[f"{kind}_cluster_circle_excess_r2"] = clustered["excess"]
            metrics[f"{kind}_cluster_cyclic_order"] = clustered["order"]
            if cluster_points is not None:
                artifacts[f"{kind}_cluster_points"] = cluster_points
            artifacts[f"{kind}_values"] = values
            artifacts[f"{kind}_raw_points"] = rows.numpy()
        for kind, (tokens, acts, answers, period, answer_ids) in arithmetic_prompts(ctx).items():
            metrics[f"raw_{kind}_rotation_accuracy"] = raw_rotation_accuracy(
                ctx, kind, tokens, acts.numpy(), answers, period, answer_ids
            )
            codes = ctx.sae.encode(acts.to(ctx.device)).cpu()
            selectivity = separation_scores(codes, list(answers))
            selectivity[(codes > 0).float().mean(0) < 0.05] = -1
            chosen = torch.argsort(selectivity, descending=True)[: 2 * period]
            chosen = chosen[selectivity[chosen] > 0]
            if len(chosen) >= 2:
                reconstruction = (codes[:, chosen] @ ctx.sae.W_dec[chosen].detach().cpu()).numpy()
                basis = value_plane(reconstruction, answers)
                metrics[f"{kind}_rotation_accuracy"] = rotation_accuracy(
                    ctx, tokens, acts.numpy(), answers, period, answer_ids, basis
                )
            else:
                metrics[f"{kind}_rotation_accuracy"] = 0.0
    if ctx.artifacts_dir is not None and artifacts:
        save_points(ctx.artifacts_dir, artifacts)
    return metrics


def save_points(directory: Path, arrays: dict[str, np.ndarray]) -> None:
    """Points for the circle plots, written atomically."""
    from saebench.fileio import atomic_path

    with atomic_path(directory / POINTS_FILE) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)  # a file object: savez would append ".npz" to a name


def plot(results: pd.DataFrame, run_dir: RunDir) -> list[Path]:
    """Per kind (day, month), one row per method, at the sparsity level with that method's best
    day circle: the reconstruction from the latents chosen by select_latents next to the best
    decoder cluster's, each in the plane of its value centroids; raw activations (the ceiling)
    lead the first row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from saebench.circles import between_value_plane, value_centroids
    from saebench.fileio import save_figure
    from saebench.toyworld.world import DAYS, MONTHS

    scores = results[results.metric == "day_circle_excess_r2"]
    if scores.empty:
        return []
    chosen = scores.sort_values("value").groupby("method").tail(1).sort_values("method")

    def metric(row, name):
        hit = results[
            (results.method == row.method)
            & (results.knob == row.knob)
            & (results.seed == row.seed)
            & (results.metric == name)
        ].value
        return float(hit.iloc[0]) if len(hit) else None

    def title(text, excess):
        return text + ("" if excess is None else f"\nexcess R² {excess:.2f}")

    def count(n):
        return "" if n is None else f" (n={n:.0f})"

    def draw(ax, text, points, values, names):
        ax.set_title(text, fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
        if points is None:
            ax.text(0.5, 0.5, "none found", ha="center", va="center", transform=ax.transAxes)
            return
        projected, _ = between_value_plane(points, values)
        present = np.unique(values)
        centroids = value_centroids(projected, values)
        # hsv wraps (0 and 1 are both red): span a full period so neighbours differ in colour.
        colours = {"cmap": "hsv", "vmin": 0, "vmax": len(names)}
        ax.scatter(*projected.T, c=values, s=4, alpha=0.3, **colours)
        loop = np.vstack([centroids, centroids[:1]])  # close the cycle: last value -> first
        ax.plot(*loop.T, color="0.4", lw=1, zorder=1)
        ax.scatter(*centroids.T, c=present, s=60, edgecolor="k", zorder=2, **colours)
        for v, (x, y) in zip(present, centroids):
            ax.annotate(
                names[v][:3] if v < len(names) else str(v),
                (x, y),
                fontsize=8,
                xytext=(3, 3),
                textcoords="offset points",
            )

    paths = []
    for kind, names in (("day", DAYS), ("month", MONTHS)):
        panels = []
        for row in chosen.itertuples():
            sae = SaeKey(row.method, float(row.knob), int(row.seed))
            path = run_dir.artifact_path(sae, NAME, POINTS_FILE)
            if path.exists():
                panels.append((row, np.load(path)))
        if not panels:
            continue
        fig, axes = plt.subplots(len(panels), 3, figsize=(9.5, 3.4 * len(panels)), squeeze=False)
        values = panels[0][1][f"{kind}_values"]
        raw_excess = metric(panels[0][0], f"raw_{kind}_circle_excess_r2")
        draw(
            axes[0, 0],
            title("raw activations", raw_excess),
            panels[0][1][f"{kind}_raw_points"],
            values,
            names,
        )
        for (row, data), (raw_ax, selected_ax, cluster_ax) in zip(panels, axes):
            if raw_ax is not axes[0, 0]:
                raw_ax.remove()  # raw is the same for every SAE: drawn once
            label = f"{row.method} ({row.knob:g})"
            draw(
                selected_ax,
                title(
                    f"{label}: selected latents" + count(metric(row, f"{kind}_latents_selected")),
                    metric(row, f"{kind}_circle_excess_r2"),
                ),
                data.get(f"{kind}_points"),
                values,
                names,
            )
            draw(
                cluster_ax,
                title(
                    f"{label}: best decoder cluster" + count(metric(row, f"{kind}_cluster_size")),
                    metric(row, f"{kind}_cluster_circle_excess_r2"),
                ),
                data.get(f"{kind}_cluster_points"),
                values,
                names,
            )
        fig.suptitle(f"{kind} tokens in the plane of their value centroids")
        fig.tight_layout()
        path = run_dir.plot_path(f"circular_{kind}.png")
        save_figure(fig, path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def supports(model: ModelHandle, options: dict[str, str]) -> str | None:
    if model.world is None:
        return "circular needs calendar prompts with known values (the toy world)"
    return None


@hookimpl
def register_tasks(register):
    register(
        TaskSpec(
            name=NAME,
            description="Circle score of day/month features reconstructed from concept-specific latents vs raw",
            run=run,
            supports=supports,
            plot=plot,
            metrics={
                "*_circle_excess_r2": MetricInfo(True, floor=0.05),
                "*_circle_r2": MetricInfo(None),
                "*_cyclic_order": MetricInfo(None),
                "*_variance_top2": MetricInfo(None),
                "*_frequency": MetricInfo(None),
                "*_latents_selected": MetricInfo(None),
                "*_cluster_size": MetricInfo(None),
                "*_rotation_accuracy": MetricInfo(True, floor=0.05),
            },
        )
    )
