"""Task `loss_recovered`: next-token loss with the SAE spliced into the forward pass.

CE_sae vs clean, zero- and mean-ablation: the scores (CE_abl − CE_sae)/(CE_abl − CE_clean), the
raw ΔCE = CE_sae − CE_clean (the most honest number) and KL scores. Special positions (BOS/PAD)
are never spliced; CE counts every position whose target is a real token. As a plumbing check,
splicing x̂ + (x − x̂) must give the clean CE exactly (on the first eval batch), or the cell
fails. What does not depend on the SAE (clean log-probs, clean and ablation losses) is computed
once per process and shared by every cell.
"""

from __future__ import annotations

import torch

from saebench.errors import SaebenchError
from saebench.hookspecs import hookimpl
from saebench.metrics import finite, kl_score, loss_recovered_score
from saebench.specs import MetricInfo, ModelHandle, TaskSpec

BATCH = 32
# Clean log-probs are kept between cells up to this many bytes; beyond it (a large vocabulary
# or eval set) every cell recomputes them batch by batch instead.
CLEAN_LOGPROBS_BUDGET = 512 * 2**20

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


def batch_rows(n: int) -> list[slice]:
    return [slice(start, start + BATCH) for start in range(0, n, BATCH)]


def logprobs_of(logits: torch.Tensor) -> torch.Tensor:
    """Next-token log-probs in float64: ΔCE and KL are small differences of large sums."""
    return torch.log_softmax(logits[:, :-1].double(), dim=-1)


def patched_logits(bridge, hook, batch, positions, replacement) -> torch.Tensor:
    if replacement is None:
        return bridge(batch)
    return bridge.run_with_hooks(
        batch, fwd_hooks=[(hook, splice(replacement, positions))], return_type="logits"
    )


def ce_and_kl(tokens, mask, logprobs, clean_logprobs=None) -> tuple[float, float]:
    """(mean CE over real targets, mean KL(clean ‖ modified)) from per-batch log-probs (an
    iterable in batch_rows order); KL is 0.0 without clean_logprobs(batch index)."""
    total_ce, total_kl, count = 0.0, 0.0, 0
    for index, (rows, batch_logprobs) in enumerate(zip(batch_rows(len(tokens)), logprobs)):
        targets, counted = tokens[rows, 1:], mask[rows, 1:]
        ce = -batch_logprobs.gather(-1, targets[..., None])[..., 0]
        total_ce += ce[counted].sum().item()
        if clean_logprobs is not None:
            clean = clean_logprobs(index)
            kl = (clean.exp() * (clean - batch_logprobs)).sum(-1)
            total_kl += kl[counted].sum().item()
        count += int(counted.sum())
    return total_ce / count, total_kl / count


@torch.no_grad()
def losses(bridge, hook, tokens, mask, replacement, clean_logprobs=None):
    """(mean CE over real targets, mean KL(clean ‖ modified)) with `replacement` at the hook
    (None: the clean model); KL against clean_logprobs(batch index), 0.0 without it."""
    logprobs = (
        logprobs_of(patched_logits(bridge, hook, tokens[rows], mask[rows], replacement))
        for rows in batch_rows(len(tokens))
    )
    return ce_and_kl(tokens, mask, logprobs, clean_logprobs)


class CleanLogprobs:
    """The clean model's next-token log-probs per batch of `tokens`: the KL reference of every
    splice and the clean CE.

    Kept in memory when they fit in `budget` bytes, so the clean forwards run once per eval
    token set; otherwise recomputed on every request. Either way logprobs(i) is the same."""

    def __init__(self, bridge, tokens, budget: int | None = None):
        budget = CLEAN_LOGPROBS_BUDGET if budget is None else budget
        self.bridge, self.tokens = bridge, tokens
        self.rows = batch_rows(len(tokens))
        first = self._compute(0)
        bytes_per_sequence = first.element_size() * first[0].numel()
        self.kept: list[torch.Tensor] | None = None
        if bytes_per_sequence * len(tokens) <= budget:
            self.kept = [first] + [self._compute(index) for index in range(1, len(self.rows))]

    @torch.no_grad()
    def _compute(self, index: int) -> torch.Tensor:
        return logprobs_of(self.bridge(self.tokens[self.rows[index]]))

    def logprobs(self, index: int) -> torch.Tensor:
        return self.kept[index] if self.kept is not None else self._compute(index)


def clean_and_ablations(ctx, tokens, mask) -> dict:
    """Clean and ablation losses and the clean log-probs do not depend on the SAE: computed
    once per eval token set."""
    key = ("clean_and_ablations", tuple(tokens.shape), int(tokens.sum()))
    return ctx.once(key, lambda: _clean_and_ablations(ctx, tokens, mask))


def _clean_and_ablations(ctx, tokens, mask) -> dict:
    bridge = ctx.model.bridge
    mean = ctx.eval_acts.mean(0).to(ctx.device)
    clean = CleanLogprobs(bridge, tokens)
    logprobs = (clean.logprobs(index) for index in range(len(clean.rows)))
    ce_clean, _ = ce_and_kl(tokens, mask, logprobs)
    first = clean.rows[0]
    ce_clean_first, _ = ce_and_kl(tokens[first], mask[first], [clean.logprobs(0)])
    ce_zero, kl_zero = losses(bridge, ctx.hook, tokens, mask, torch.zeros_like, clean.logprobs)
    ce_mean, kl_mean = losses(
        bridge, ctx.hook, tokens, mask, lambda x: mean.expand_as(x), clean.logprobs
    )
    return dict(
        clean=clean,
        ce_clean=ce_clean,
        ce_clean_first_batch=ce_clean_first,
        ce_zero_ablation=ce_zero,
        kl_zero=kl_zero,
        ce_mean_ablation=ce_mean,
        kl_mean=kl_mean,
    )


def check_error_term_splice(ctx, tokens, mask, base) -> None:
    """Splicing x̂ + (x − x̂) must give the clean CE exactly, or the splice is broken. One batch
    is enough to catch broken plumbing and keeps the check cheap."""
    first = batch_rows(len(tokens))[0]
    replacement = error_term_replacement(ctx.sae)
    ce_error, _ = losses(ctx.model.bridge, ctx.hook, tokens[first], mask[first], replacement)
    if abs(ce_error - base["ce_clean_first_batch"]) > 1e-6:
        raise SaebenchError(
            f"splicing x̂ + (x − x̂) gave CE {ce_error} on the first eval batch instead of the "
            f"clean {base['ce_clean_first_batch']}: the splice at {ctx.hook} is broken"
        )


def run(ctx) -> dict:
    tokens, mask = ctx.eval_tokens.to(ctx.device), ctx.eval_mask.to(ctx.device)
    base = clean_and_ablations(ctx, tokens, mask)
    check_error_term_splice(ctx, tokens, mask, base)
    ce_sae, kl_sae = losses(
        ctx.model.bridge, ctx.hook, tokens, mask, ctx.sae, base["clean"].logprobs
    )
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
