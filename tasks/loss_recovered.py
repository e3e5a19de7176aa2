"""Task `loss_recovered`: next-token loss with the SAE spliced into the forward pass.

Protocol. x̂ replaces the activation at the hook on every non-special position (BOS/PAD are never
spliced); CE counts every position whose target is a real token. Reported:
- `delta_ce` (the headline) = CE_sae − CE_clean in nats, with `delta_ce__boot_low` /
  `delta_ce__boot_high`: a 95% percentile bootstrap over eval sequences (paired: each sequence's
  CE difference). ΔCE is a token mean over sequences of unequal length, so the bootstrapped items
  are the ratio's linearised terms R + (s_i − R·c_i)/c̄ (s_i a sequence's summed difference, c_i
  its target count; their mean is exactly R), fed to saebench.stats.bootstrap_interval.
- `kl_div` = mean per-token KL(P_clean ‖ P_sae), the one KL (with its bootstrap interval).
- `loss_recovered_zero` / `loss_recovered_mean` = (CE_abl − CE_sae)/(CE_abl − CE_clean) against
  zero / mean ablation: reported, not headlined (zero-ablating the residual costs ~5 nats on the
  toy model, so even a random dictionary scores 0.87).
As a plumbing check, splicing x̂ + (x − x̂) must give the clean CE exactly (on the first eval
batch), or the cell fails. What does not depend on the SAE (clean log-probs, clean and ablation
losses) is computed once per process and shared by every cell.

Validity (once per (model, hook), no SAE): mean-ablating the hook must raise CE, the lower end of
its 95% bootstrap interval above 0 + ABLATION_MARGIN nats, or the loss does not depend on what
the hook carries and the whole task is uninformative; the same for zero ablation governs
`loss_recovered_zero` only.

Departures from SAEBench (Karvonen et al. 2025): it headlines the zero-ablation loss recovered
and reports KL scores normalised by the ablation KL; here ΔCE is the headline, and the KL is the
raw KL only (a KL normalised by the ablation KL moves with loss_recovered_* and added a second,
differently named headline).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from saebench.errors import SaebenchError
from saebench.hookspecs import hookimpl
from saebench.metrics import finite, loss_recovered_score
from saebench.specs import MetricInfo, ModelHandle, TaskSpec, Validity
from saebench.stats import Interval, bootstrap_interval

BATCH = 32
# Clean log-probs are kept between cells up to this many bytes; beyond it (a large vocabulary
# or eval set) every cell recomputes them batch by batch instead.
CLEAN_LOGPROBS_BUDGET = 512 * 2**20
# An ablation must cost more than this (nats, lower 95% bound) for the hook to matter to the
# loss: 5× the ΔCE regression floor, so SAEs have room to differ by more than noise.
ABLATION_MARGIN = 0.1
LOW, HIGH = "__boot_low", "__boot_high"

METRICS = {
    "ce_clean": MetricInfo(None, description="clean CE (nats per target token)"),
    "ce_zero_ablation": MetricInfo(None, description="CE with the hook zero-ablated"),
    "ce_mean_ablation": MetricInfo(None, description="CE with the hook mean-ablated"),
    "ce_sae": MetricInfo(None, description="CE with the SAE spliced in (gated as delta_ce)"),
    "delta_ce": MetricInfo(
        False, floor=0.02, description="CE_sae − CE_clean (nats)", headline=True
    ),
    "kl_div": MetricInfo(
        False, floor=0.02, description="mean per-token KL(P_clean ‖ P_sae) (nats)"
    ),
    "loss_recovered_zero": MetricInfo(
        True, floor=0.02, description="(CE_zero − CE_sae)/(CE_zero − CE_clean)"
    ),
    "loss_recovered_mean": MetricInfo(
        True, floor=0.02, description="(CE_mean − CE_sae)/(CE_mean − CE_clean)"
    ),
    f"*{LOW}": MetricInfo(None, description="lower end of the 95% bootstrap over sequences"),
    f"*{HIGH}": MetricInfo(None, description="upper end of the 95% bootstrap over sequences"),
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


@dataclass(frozen=True)
class SequenceLosses:
    """Per eval sequence: summed CE and KL over its real targets, and how many there are
    (float64 numpy [n_seqs]). Token means are sums over counts, never means of means."""

    ce: np.ndarray
    kl: np.ndarray
    counts: np.ndarray

    @property
    def mean_ce(self) -> float:
        return float(self.ce.sum() / self.counts.sum())

    @property
    def mean_kl(self) -> float:
        return float(self.kl.sum() / self.counts.sum())


def sequence_losses(tokens, mask, logprobs, clean_logprobs=None) -> SequenceLosses:
    """SequenceLosses from per-batch log-probs (an iterable in batch_rows order); KL is 0
    without clean_logprobs(batch index)."""
    ce_parts, kl_parts, count_parts = [], [], []
    for index, (rows, batch_logprobs) in enumerate(zip(batch_rows(len(tokens)), logprobs)):
        targets, counted = tokens[rows, 1:], mask[rows, 1:]
        ce = -batch_logprobs.gather(-1, targets[..., None])[..., 0]
        ce_parts.append((ce * counted).sum(-1))
        kl = torch.zeros_like(ce)
        if clean_logprobs is not None:
            clean = clean_logprobs(index)
            kl = (clean.exp() * (clean - batch_logprobs)).sum(-1)
        kl_parts.append((kl * counted).sum(-1))
        count_parts.append(counted.sum(-1).double())
    return SequenceLosses(
        *(torch.cat(parts).cpu().numpy() for parts in (ce_parts, kl_parts, count_parts))
    )


def ce_and_kl(tokens, mask, logprobs, clean_logprobs=None) -> tuple[float, float]:
    """(mean CE over real targets, mean KL(clean ‖ modified)); see sequence_losses."""
    per_sequence = sequence_losses(tokens, mask, logprobs, clean_logprobs)
    return per_sequence.mean_ce, per_sequence.mean_kl


@torch.no_grad()
def patched_sequence_losses(
    bridge, hook, tokens, mask, replacement, clean_logprobs=None
) -> SequenceLosses:
    """SequenceLosses with `replacement` at the hook (None: the clean model); KL against
    clean_logprobs(batch index), 0 without it."""
    logprobs = (
        logprobs_of(patched_logits(bridge, hook, tokens[rows], mask[rows], replacement))
        for rows in batch_rows(len(tokens))
    )
    return sequence_losses(tokens, mask, logprobs, clean_logprobs)


def losses(bridge, hook, tokens, mask, replacement, clean_logprobs=None) -> tuple[float, float]:
    """(mean CE over real targets, mean KL(clean ‖ modified)); see patched_sequence_losses."""
    per_sequence = patched_sequence_losses(bridge, hook, tokens, mask, replacement, clean_logprobs)
    return per_sequence.mean_ce, per_sequence.mean_kl


def token_mean_interval(sums: np.ndarray, counts: np.ndarray) -> Interval:
    """95% bootstrap over sequences of the token mean Σ sums / Σ counts: the percentile bootstrap
    of the linearised items R + (s_i − R·c_i)/c̄, whose mean is R (delta method for a ratio)."""
    ratio = sums.sum() / counts.sum()
    return bootstrap_interval(ratio + (sums - ratio * counts) / counts.mean())


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
    first = clean.rows[0]
    ablate = {"zero": torch.zeros_like, "mean": lambda x: mean.expand_as(x)}
    return dict(
        clean=clean,
        clean_losses=sequence_losses(tokens, mask, logprobs),
        ce_clean_first_batch=ce_and_kl(tokens[first], mask[first], [clean.logprobs(0)])[0],
        ablations={
            name: patched_sequence_losses(bridge, ctx.hook, tokens, mask, replacement)
            for name, replacement in ablate.items()
        },
    )


def ablation_validity(name: str, ablated: SequenceLosses, clean: SequenceLosses, governs=()):
    """Validity: the CE increase from ablating the hook (paired over sequences) against 0."""
    interval = token_mean_interval(ablated.ce - clean.ce, clean.counts)
    return Validity(
        name=f"{name}_ablation_delta_ce",
        reference=ablated.mean_ce - clean.mean_ce,
        low=interval.low,
        chance=0.0,
        margin=ABLATION_MARGIN,
        description=(
            f"CE increase (nats) from {name}-ablating the hook, 95% bootstrap over "
            f"{interval.n} eval sequences"
        ),
        governs=governs,
    )


def validity(ctx) -> list[Validity]:
    """Mean ablation gates the whole task; zero ablation gates loss_recovered_zero."""
    base = clean_and_ablations(ctx, ctx.eval_tokens.to(ctx.device), ctx.eval_mask.to(ctx.device))
    clean, ablations = base["clean_losses"], base["ablations"]
    return [
        ablation_validity("mean", ablations["mean"], clean),
        ablation_validity("zero", ablations["zero"], clean, governs=("loss_recovered_zero",)),
    ]


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


def with_interval(name: str, value: float, interval: Interval) -> dict[str, float]:
    return {name: value, name + LOW: interval.low, name + HIGH: interval.high}


def run(ctx) -> dict:
    tokens, mask = ctx.eval_tokens.to(ctx.device), ctx.eval_mask.to(ctx.device)
    base = clean_and_ablations(ctx, tokens, mask)
    check_error_term_splice(ctx, tokens, mask, base)
    spliced = patched_sequence_losses(
        ctx.model.bridge, ctx.hook, tokens, mask, ctx.sae, base["clean"].logprobs
    )
    clean, ablations = base["clean_losses"], base["ablations"]
    ce_clean, ce_sae = clean.mean_ce, spliced.mean_ce
    metrics = {
        "ce_clean": ce_clean,
        "ce_zero_ablation": ablations["zero"].mean_ce,
        "ce_mean_ablation": ablations["mean"].mean_ce,
        "ce_sae": ce_sae,
        **with_interval(
            "delta_ce", ce_sae - ce_clean, token_mean_interval(spliced.ce - clean.ce, clean.counts)
        ),
        **with_interval("kl_div", spliced.mean_kl, token_mean_interval(spliced.kl, clean.counts)),
        **{
            f"loss_recovered_{name}": loss_recovered_score(ablated.mean_ce, ce_sae, ce_clean)
            for name, ablated in ablations.items()
        },
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
            description="ΔCE (headline, bootstrap interval) and KL with the SAE spliced in; loss recovered vs zero/mean ablation",
            run=run,
            metrics=METRICS,
            supports=supports,
            plot=plot,
            validity=validity,
        )
    )
