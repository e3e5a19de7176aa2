"""Task `frontier`: reconstruction quality vs sparsity on the held-out eval activations.

`never_fired_eval` counts latents silent on every eval token. On the eval set (20k tokens at the
default preset) that marks rare latents, not dead ones: a latent firing once in 100k tokens is
alive. The dead count that matters for training (no firing over the last `dead_window_tokens`
training tokens) is a separate metric, `dead_latents` / `dead_fraction` in each SAE's train log.
"""

from __future__ import annotations

import numpy as np
import torch

from saebench.fileio import write_json
from saebench.hookspecs import hookimpl
from saebench.metrics import ReconstructionStats, log10_density_histogram
from saebench.specs import MetricInfo, TaskSpec

NAME = "frontier"
BATCH = 4096
DENSITY_ARTIFACT = "feature_density.npy"

METRICS = {
    "l0": MetricInfo(None, description="mean number of active latents per token", headline=True),
    "mse": MetricInfo(False, floor=0.0, description="mean per-token ‖x − x̂‖² (raw units)"),
    "fvu": MetricInfo(
        False, floor=0.01, description="fraction of variance unexplained", headline=True
    ),
    "explained_variance": MetricInfo(True, floor=0.01, description="1 − FVU"),
    "cosine_similarity": MetricInfo(True, floor=0.01, description="mean cos(x, x̂)", headline=True),
    "l2_ratio": MetricInfo(None, description="mean ‖x̂‖/‖x‖"),
    "relative_reconstruction_bias": MetricInfo(
        None, description="E‖x̂‖²/E⟨x,x̂⟩; < 1 means shrinkage", headline=True
    ),
    "never_fired_eval": MetricInfo(
        None,
        description=(
            "latents that never fire on the eval tokens: rare at this token count, not "
            "necessarily dead (training's dead count is in the train log)"
        ),
        headline=True,
    ),
    "dense_1e-2": MetricInfo(
        None, description="latents firing on > 1% of eval tokens", headline=True
    ),
    "dense_1e-3": MetricInfo(
        None, description="latents firing on > 0.1% of eval tokens", headline=True
    ),
    "eval_tokens": MetricInfo(
        None, description="eval token count (never_fired_eval and dense counts depend on it)"
    ),
}


@torch.no_grad()
def run(ctx) -> dict:
    stats = ReconstructionStats(ctx.sae.d_sae)
    for start in range(0, len(ctx.eval_acts), BATCH):
        x = ctx.eval_acts[start : start + BATCH].to(ctx.device)
        f = ctx.sae.encode(x)
        stats.update(x, f, ctx.sae.decode(f))
    metrics, density = stats.results()
    ctx.artifacts_dir.mkdir(parents=True, exist_ok=True)
    np.save(ctx.artifacts_dir / DENSITY_ARTIFACT, density)
    # The log-density histogram as numbers, not only as a plot, so runs can be compared without
    # re-reading every density vector (never-fired latents are a separate count: log10(0) has
    # no bin).
    counts, edges, never_fired = log10_density_histogram(density)
    write_json(
        ctx.artifacts_dir / "log10_density_histogram.json",
        {
            "bin_edges": [round(float(e), 4) for e in edges],
            "counts": counts.tolist(),
            "never_fired_eval": never_fired,
            "eval_tokens": int(metrics["eval_tokens"]),
        },
    )
    return metrics


def plot(results, run_dir) -> list:
    """The L0–FVU frontier (Pareto line per method) and the feature-density histograms."""
    from saebench.plots import density_plot, frontier_plot

    fvu, density = (
        run_dir.plot_path("frontier_l0_fvu.png"),
        run_dir.plot_path("feature_density.png"),
    )
    messages = {
        fvu: frontier_plot(results, fvu, "fvu", "FVU (fraction of variance unexplained)"),
        density: density_plot(run_dir, density, NAME, DENSITY_ARTIFACT),
    }
    return [path for path, message in messages.items() if message.startswith("wrote")]


@hookimpl
def register_tasks(register):
    register(
        TaskSpec(
            name=NAME,
            description="L0, MSE, FVU, cosine, L2 ratio, shrinkage, never-fired/dense latents on held-out tokens",
            run=run,
            metrics=METRICS,
            plot=plot,
        )
    )
