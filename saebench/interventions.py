"""Shared helpers for tasks that read or patch one activation per prompt (ravel, ioi).

Every helper works through `bridge.run_with_hooks(tokens, fwd_hooks=[(hook, fn)], return_type=
"logits")` only, so a tiny fake bridge with that one method is enough for unit tests. Prompts are
grouped by token length instead of padded (`length_batches`, also used by saebench.probing and
the toy world's report): padding would shift positions, the toy tokenizer and GPT-2 both lack a
reliable left-padding path through TransformerBridge, and in a bidirectional encoder padding
would leak into every position.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence, Sized

import torch

BATCH = 256


def tokenize(bridge, prompts: Sequence[str]) -> list[torch.Tensor]:
    """One 1-D token tensor per prompt (BOS prepended, as bridge.to_tokens does)."""
    return [bridge.to_tokens(prompt)[0] for prompt in prompts]


def length_batches(sequences: Sequence[Sized], batch_size: int) -> Iterator[list[int]]:
    """Indices of `sequences` grouped by length (lengths in order of first appearance, indices
    ascending), in batches of at most `batch_size`: each batch stacks without padding."""
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, sequence in enumerate(sequences):
        by_length[len(sequence)].append(index)
    for indices in by_length.values():
        for start in range(0, len(indices), batch_size):
            yield indices[start : start + batch_size]


@torch.no_grad()
def run_patched(
    bridge,
    hook: str,
    token_lists: Sequence[torch.Tensor],
    positions: Sequence[int],
    edit: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    device=None,
):
    """(activations at `positions` [n, d], final-position logits [n, vocab]).

    edit(acts [b, d], indices LongTensor [b]) -> replacement activations [b, d] at each prompt's
    position (indices say which prompts of the full list are in the batch); None: clean run.
    Returned activations are the clean ones (before the edit).
    """
    n = len(token_lists)
    acts_out: dict[int, torch.Tensor] = {}  # prompt index -> its row; every index gets one
    logits_out: dict[int, torch.Tensor] = {}
    for indices in length_batches(token_lists, BATCH):
        tokens = torch.stack([token_lists[i] for i in indices])
        if device is not None:
            tokens = tokens.to(device)
        rows = torch.arange(len(indices), device=tokens.device)
        pos = torch.tensor([positions[i] for i in indices], device=tokens.device)
        captured: dict[str, torch.Tensor] = {}

        def hook_fn(activation, hook=None, rows=rows, pos=pos, indices=indices, captured=captured):
            chosen = activation[rows, pos]
            captured["acts"] = chosen.detach().clone()
            if edit is None:
                return activation
            new = activation.clone()
            index_tensor = torch.tensor(indices, device=activation.device)
            new[rows, pos] = edit(chosen, index_tensor).to(activation.dtype)
            return new

        logits = bridge.run_with_hooks(tokens, fwd_hooks=[(hook, hook_fn)], return_type="logits")
        for row, index in enumerate(indices):
            acts_out[index] = captured["acts"][row]
            logits_out[index] = logits[row, -1]
    return (
        torch.stack([acts_out[i] for i in range(n)]),
        torch.stack([logits_out[i] for i in range(n)]),
    )


def replace_with(new_acts: torch.Tensor) -> Callable:
    """An edit that replaces prompt i's activation by new_acts[i]."""
    return lambda acts, indices: new_acts[indices.to(new_acts.device)].to(acts.device)


def latent_swap(
    sae, base: torch.Tensor, source: torch.Tensor, latents: torch.Tensor, keep_error: bool = True
) -> torch.Tensor:
    """Interchange: copy `latents` of the source's SAE code into the base's and decode.

    keep_error=True returns h_b + (z_s − z_b)[S] @ W_dec[S], i.e. the SAE error term of the base
    is kept, so only the chosen latents act; keep_error=False returns decode(z_b with z_s[S]),
    as the RAVEL/SAEBench anchors do (the reconstruction error then also moves the output).
    """
    z_base, z_source = sae.encode(base), sae.encode(source)
    if keep_error:
        delta = (z_source[:, latents] - z_base[:, latents]) @ sae.W_dec[latents]
        return base + delta
    z_new = z_base.clone()
    z_new[:, latents] = z_source[:, latents]
    return sae.decode(z_new)


def best_latent_f1(active: torch.Tensor, label: torch.Tensor):
    """For a bool predicate matrix active [n, m] and bool label [n]: per-latent (precision,
    recall, f1) as float tensors [m]. Empty denominators count as 0."""
    active, label = active.bool(), label.bool()
    tp = (active & label[:, None]).sum(0).double()
    predicted = active.sum(0).double()
    positives = label.sum().double()
    precision = torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.zeros_like(tp))
    recall = tp / positives.clamp_min(1)
    denominator = precision + recall
    f1 = torch.where(
        denominator > 0, 2 * precision * recall / denominator.clamp_min(1e-12), torch.zeros_like(tp)
    )
    return precision, recall, f1


def separation_scores(codes: torch.Tensor, values: Sequence[str]) -> torch.Tensor:
    """Per-latent share of variance explained by a categorical variable (η², in [0, 1]).

    η² = Σ_v n_v (mean_v − mean)² / Σ (f − mean)²; 0 for latents that never vary.
    """
    codes = codes.double()
    mean = codes.mean(0)
    total = ((codes - mean) ** 2).sum(0)
    between = torch.zeros_like(mean)
    for value in sorted(set(values)):
        members = torch.tensor([v == value for v in values], device=codes.device)
        between += members.sum() * (codes[members].mean(0) - mean) ** 2
    return torch.where(total > 1e-12, between / total.clamp_min(1e-12), torch.zeros_like(total))
