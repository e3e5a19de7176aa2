"""Task `loss_recovered`: next-token loss with the SAE spliced into the forward pass.

CE_sae vs clean, zero- and mean-ablation: the scores (CE_abl − CE_sae)/(CE_abl − CE_clean), the
raw ΔCE = CE_sae − CE_clean (the most honest number) and KL scores. Special positions (BOS/PAD)
are never spliced; CE counts every position whose target is a real token. As a plumbing check,
splicing x̂ + (x − x̂) must give the clean CE exactly, or the cell fails.
"""

from __future__ import annotations

import torch

from saebench.errors import SaebenchError
from saebench.hookspecs import hookimpl
from saebench.metrics import finite, kl_score, loss_recovered_score
from saebench.specs import MetricInfo, ModelHandle, TaskSpec

BATCH = 32

METRICS = {
    "ce_clean": MetricInfo(None),
    "ce_zero_ablation": MetricInfo(None),
    "ce_mean_ablation": MetricInfo(None),
    "ce_sae": MetricInfo(False, floor=0.02),
    "delta_ce": MetricInfo(False, floor=0.02, description="CE_sae − CE_clean", headline=True),
    "loss_recovered_zero": MetricInfo(True, floor=0.02, headline=True),
    "loss_recovered_mean": MetricInfo(True, floor=0.02),
    "kl_sae": MetricInfo(False, floor=0.02),
    "kl_score_zero": MetricInfo(True, floor=0.02),
    "kl_score_mean": MetricInfo(True, floor=0.02, headline=True),
}


def splice(replacement, positions):
    """A hook that swaps the activation at `positions` (bool [batch, seq]) for replacement(x)."""

    def hook_fn(activation, hook):
        new = activation.clone()
        new[positions] = replacement(activation[positions]).to(activation.dtype)
        return new

    return hook_fn


def error_term_replacement(sae):
    """x̂ + (x − x̂) in float64: exactly x after rounding, yet it runs through the SAE."""

    def replace(x):
        x_hat = sae(x).double()
        return (x_hat + (x.double() - x_hat)).to(x.dtype)

    return replace


@torch.no_grad()
def losses(bridge, hook, tokens, mask, replacement, clean_logprobs_fn=None):
    """(mean CE over real targets, mean KL(clean ‖ modified)) with `replacement` at the hook."""
    total_ce, total_kl, count = 0.0, 0.0, 0
    for start in range(0, len(tokens), BATCH):
        batch, positions = tokens[start : start + BATCH], mask[start : start + BATCH]
        if replacement is None:
            logits = bridge(batch)
        else:
            logits = bridge.run_with_hooks(
                batch, fwd_hooks=[(hook, splice(replacement, positions))], return_type="logits"
            )
        logprobs = torch.log_softmax(logits[:, :-1].double(), dim=-1)
        targets, counted = batch[:, 1:], positions[:, 1:]
        ce = -logprobs.gather(-1, targets[..., None])[..., 0]
        total_ce += ce[counted].sum().item()
        if clean_logprobs_fn is not None:
            clean = torch.log_softmax(bridge(batch)[:, :-1].double(), dim=-1)
            kl = (clean.exp() * (clean - logprobs)).sum(-1)
            total_kl += kl[counted].sum().item()
        count += int(counted.sum())
    return total_ce / count, total_kl / count


def clean_and_ablations(ctx, tokens, mask) -> dict[str, float]:
    """Clean and ablation losses do not depend on the SAE: computed once per eval token set."""
    key = ("clean_and_ablations", tuple(tokens.shape), int(tokens.sum()))
    return ctx.once(key, lambda: _clean_and_ablations(ctx, tokens, mask))


def _clean_and_ablations(ctx, tokens, mask) -> dict[str, float]:
    bridge = ctx.model.bridge
    mean = ctx.eval_acts.mean(0).to(ctx.device)
    ce_clean, _ = losses(bridge, ctx.hook, tokens, mask, None)
    ce_zero, kl_zero = losses(bridge, ctx.hook, tokens, mask, torch.zeros_like, True)
    ce_mean, kl_mean = losses(bridge, ctx.hook, tokens, mask, lambda x: mean.expand_as(x), True)
    return dict(
        ce_clean=ce_clean,
        ce_zero_ablation=ce_zero,
        kl_zero=kl_zero,
        ce_mean_ablation=ce_mean,
        kl_mean=kl_mean,
    )


def run(ctx) -> dict:
    tokens, mask = ctx.eval_tokens.to(ctx.device), ctx.eval_mask.to(ctx.device)
    base = clean_and_ablations(ctx, tokens, mask)
    ce_error, _ = losses(ctx.model.bridge, ctx.hook, tokens, mask, error_term_replacement(ctx.sae))
    if abs(ce_error - base["ce_clean"]) > 1e-6:
        raise SaebenchError(
            f"splicing x̂ + (x − x̂) gave CE {ce_error} instead of the clean "
            f"{base['ce_clean']}: the splice at {ctx.hook} is broken"
        )
    ce_sae, kl_sae = losses(ctx.model.bridge, ctx.hook, tokens, mask, ctx.sae, True)
    metrics = {
        "ce_clean": base["ce_clean"],
        "ce_zero_ablation": base["ce_zero_ablation"],
        "ce_mean_ablation": base["ce_mean_ablation"],
        "ce_sae": ce_sae,
        "delta_ce": ce_sae - base["ce_clean"],
        "loss_recovered_zero": loss_recovered_score(
            base["ce_zero_ablation"], ce_sae, base["ce_clean"]
        ),
        "loss_recovered_mean": loss_recovered_score(
            base["ce_mean_ablation"], ce_sae, base["ce_clean"]
        ),
        "kl_sae": kl_sae,
        "kl_score_zero": kl_score(base["kl_zero"], kl_sae),
        "kl_score_mean": kl_score(base["kl_mean"], kl_sae),
    }
    return {name: finite(name, value) for name, value in metrics.items()}


def supports(model: ModelHandle, options: dict[str, str]) -> str | None:
    if not model.is_causal_lm:
        return f"{model.name} is not a causal language model (no next-token loss)"
    return None


def plot(results, run_dir) -> list:
    """The L0–ΔCE frontier (Pareto line per method)."""
    from saebench.plots import frontier_plot

    path = run_dir.plot_path("frontier_l0_delta_ce.png")
    message = frontier_plot(results, path, "delta_ce", "ΔCE (nats, SAE spliced − clean)")
    return [path] if message.startswith("wrote") else []


@hookimpl
def register_tasks(register):
    register(
        TaskSpec(
            name="loss_recovered",
            description="CE/KL with the SAE spliced in vs clean, zero- and mean-ablation; ΔCE",
            run=run,
            metrics=METRICS,
            supports=supports,
            plot=plot,
        )
    )
